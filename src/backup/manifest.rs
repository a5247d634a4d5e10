//! `backups/<ID>/manifest.json`: what a complete backup is. It is written last, atomically,
//! only once every file is durable and the WAL from the start to the stop LSN is archived; a
//! backup directory without it does not exist for list, verify, restore or expire.

use serde::{Deserialize, Serialize};

use crate::repo::{Compression, Key, Kind, Repo, RepoError};
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
    /// For an archive dbagent compressed with zstd as independent frames: the stored index of
    /// its frames (`<name>.idx`, see `repo::seekable`), which lets a delta restore pass over
    /// unchanged data without decompressing it. None in older backups and for other archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexFile>,
}

/// The stored index of a seekable archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    /// File name inside the backup directory, e.g. `base.tar.zst.idx`.
    pub name: String,
    /// Size in the repository.
    pub size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
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
    /// `full`, or `incremental` (PostgreSQL 17+ `pg_basebackup --incremental`: restorable
    /// only together with its parent chain, combined at restore).
    #[serde(default)]
    pub backup_type: BackupType,
    /// For an incremental backup: the ID of the backup it was taken against (full or
    /// incremental). None for a full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Where the backup was read from. None in manifests written before this was recorded
    /// (those were all taken on the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_from: Option<TakenFrom>,
}

/// `full` or `incremental`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    #[default]
    Full,
    Incremental,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
        }
    }
}

/// The server a backup was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakenFrom {
    /// `primary` or `standby`.
    pub role: String,
    /// host:port (or socket directory:port) of that server, no password.
    pub server: String,
}

fn dbagent() -> String {
    "dbagent".into()
}

impl BackupManifest {
    /// Total uncompressed size.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Total size in the repository (archive indexes included).
    pub fn stored_size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.stored_size + f.index.as_ref().map_or(0, |i| i.size))
            .sum()
    }

    pub fn duration_seconds(&self) -> f64 {
        (self.stop_time - self.start_time)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0)
    }
}

/// File `file` of backup `id`.
pub fn backup_key(id: &str, file: &str) -> Key {
    Key::backup(id, file)
}

/// Reads the manifest of backup `id`; `Ok(None)` when there is none (an interrupted
/// backup, which does not exist).
pub fn read_manifest(repo: &Repo, id: &str) -> Result<Option<BackupManifest>, RepoError> {
    repo.read_json(&Key::backup(id, MANIFEST_FILE))
}

/// Every complete backup, oldest first. Backups in progress and backups without
/// manifest.json are skipped.
pub fn list(repo: &Repo) -> Result<Vec<BackupManifest>, RepoError> {
    let mut out = Vec::new();
    for meta in repo.storage().list(Kind::Backup, "")? {
        let Some((id, file)) = meta.key.backup_parts() else {
            continue;
        };
        if file != MANIFEST_FILE {
            continue;
        }
        if let Some(m) = read_manifest(repo, id)? {
            out.push(m);
        }
    }
    out.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
    Ok(out)
}
