//! Backups: taking one (`run`), and the catalog of complete backups (`manifest`).
//!
//! Layer: operation. Uses: config, pg, repo, units, wal. Used by: check, collect, drill, http, restore,
//! wal.

pub mod chain;
pub mod expire;
pub mod manifest;
pub mod take;
pub mod verify;
