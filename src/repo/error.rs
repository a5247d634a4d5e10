//! Why the repository cannot be used: one error type for the repository's files and its
//! lock, below both (`mod.rs` and `lock.rs` use it), and the format number its messages name.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The repository format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Why the repository cannot be used. Every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{path} is damaged: {detail}; restore it from a copy or move the repository aside")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "repository {path} belongs to another cluster (system identifier {repo}, this one is {found}); point repository.path at this cluster's repository"
    )]
    OtherCluster {
        path: PathBuf,
        repo: String,
        found: String,
    },
    #[error(
        "repository {path} has format {found}, this dbagent reads format {FORMAT}; upgrade dbagent"
    )]
    Format { path: PathBuf, found: u32 },
    #[error("repository {path} is locked by {holder} (waited {} for {what}); wait for it to finish or raise repository.lock_wait", crate::units::human_duration_of(*waited))]
    Locked {
        path: PathBuf,
        what: String,
        holder: String,
        waited: Duration,
    },
}

impl From<RepoError> for io::Error {
    /// For code that reports the repository's errors as I/O errors: the message keeps the
    /// object and the action, the kind is the underlying one.
    fn from(e: RepoError) -> io::Error {
        let kind = match &e {
            RepoError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}
