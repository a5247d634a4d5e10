//! `backups/<ID>/manifest.json`: what a complete backup is. It is written last, atomically,
//! only once every file is durable and the WAL from the start to the stop LSN is archived; a
//! backup directory without it does not exist for list, verify, restore or expire.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::repo::{Compression, Repo, RepoError};
use crate::wal::Lsn;

/// The manifest format this build writes.
pub const MANIFEST_FORMAT: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

/// One stored file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    /// File name inside the backup directory, e.g. `base.tar.zst`, `16385.tar.zst`.
    pub name: String,
    /// Uncompressed size (what pg_basebackup produced).
    pub size: u64,
    /// Size in the repository.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// For a tablespace archive: its OID and location on the backed-up server.
    pub tablespace: Option<Tablespace>,
}

/// A tablespace captured in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tablespace {
    pub oid: u32,
    pub name: String,
    pub location: String,
}

/// manifest.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub format: u32,
    /// `20261121T061500Z`: the start time in UTC; sorts chronologically.
    pub id: String,
    pub label: Option<String>,
    pub system_identifier: String,
    pub pg_version: String,
    pub pg_major: u32,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    /// First and last WAL segment the backup needs to become consistent.
    pub wal_start: String,
    pub wal_stop: String,
    pub wal_segment_size: u64,
    pub start_time: jiff::Timestamp,
    pub stop_time: jiff::Timestamp,
    pub compression: Compression,
    /// Who compressed the archives: `server` (pg_basebackup --compress=server-...) or
    /// `dbagent`. The stored format is the same.
    #[serde(default = "dbagent")]
    pub compressed_by: String,
    /// The tar archives, then `backup_manifest` (PostgreSQL's own, stored uncompressed).
    pub files: Vec<BackupFile>,
    pub dbagent_version: String,
}

fn dbagent() -> String {
    "dbagent".into()
}

impl BackupManifest {
    /// Total uncompressed size.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Total size in the repository.
    pub fn stored_size(&self) -> u64 {
        self.files.iter().map(|f| f.stored_size).sum()
    }

    pub fn duration_seconds(&self) -> f64 {
        (self.stop_time - self.start_time)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0)
    }
}

/// The directory of backup `id`.
pub fn backup_dir(repo: &Repo, id: &str) -> PathBuf {
    repo.backups_dir().join(id)
}

/// Reads the manifest of the backup in `dir`; `Ok(None)` when there is none (an interrupted
/// backup, which does not exist).
pub fn read_manifest(dir: &Path) -> Result<Option<BackupManifest>, RepoError> {
    crate::repo::read_json(&dir.join(MANIFEST_FILE))
}

/// Every complete backup, oldest first. Hidden directories (in-progress work) and directories
/// without manifest.json are skipped.
pub fn list(repo: &Repo) -> Result<Vec<BackupManifest>, RepoError> {
    let dir = repo.backups_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RepoError::Io {
                path: dir,
                action: "list",
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RepoError::Io {
            path: dir.clone(),
            action: "list",
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        if let Some(m) = read_manifest(&entry.path())? {
            out.push(m);
        }
    }
    out.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
    Ok(out)
}
