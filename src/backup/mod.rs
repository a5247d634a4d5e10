//! Backups: taking one (`run`), and the catalog of complete backups (`manifest`).

pub mod manifest;
pub mod expire;
pub mod verify;
