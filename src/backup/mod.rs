//! Backups: taking one (`run`), and the catalog of complete backups (`manifest`).

pub mod expire;
pub mod manifest;
pub mod take;
pub mod verify;
