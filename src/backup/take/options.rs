//! How to take a backup, and where its progress goes.

use std::path::PathBuf;
use std::time::Duration;

use crate::backup::manifest::BackupType;
use crate::config::{Checkpoint, CompressOn};
use crate::repo::Compression;

/// How to take this backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub label: Option<String>,
    pub compression: Compression,
    pub level: i32,
    /// Compression threads (0 = one per core).
    pub threads: u32,
    pub compress_on: CompressOn,
    pub checkpoint: Checkpoint,
    pub wal_timeout: Duration,
    pub lock_wait: Duration,
    pub bin_dir: Option<PathBuf>,
    /// Full, or incremental against the newest backup (PostgreSQL 17+, see `incremental`).
    pub backup_type: BackupType,
}

/// Receives progress: the CLI draws a bar on a terminal, logs lines otherwise.
pub trait Progress: Send + Sync {
    /// A new phase ("streaming", "waiting for WAL", ...).
    fn phase(&self, phase: &str);
    /// Uncompressed bytes received so far, and the estimated total.
    fn bytes(&self, done: u64, total: u64);
}

/// A Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {
    fn phase(&self, _: &str) {}
    fn bytes(&self, _: u64, _: u64) {}
}
