//! Why a backup failed (below every part of `take`, which all return it).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pg::programs;
use crate::repo::RepoError;

/// Why a backup failed. Every message says what to do; the work directory is removed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{0}")]
    Refused(String),
    /// An incremental backup cannot be taken (server before 17, no parent, WAL summarization
    /// off, lagging or not reaching back to the parent); a full backup could.
    #[error("{0}")]
    NoIncremental(String),
    #[error(transparent)]
    NoProgram(#[from] programs::NotFound),
    #[error("pg_basebackup failed: {0}")]
    BaseBackup(String),
    #[error("{0}")]
    LostRace(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("WAL segment {segment} needed by backup {id} did not reach the archive within {}; the backup was discarded. Check WAL archiving (`dbagent check`) and raise backup.wal_timeout if archiving is just slow", crate::units::human_duration_of(*timeout))]
    WalTimeout {
        id: String,
        segment: String,
        timeout: Duration,
    },
}

pub(super) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}
