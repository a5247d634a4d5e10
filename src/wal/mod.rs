//! The WAL archive: `wal-push` (archive_command) and `wal-get` (restore_command), and the
//! lookups backups, expire and check make in the archive.
//!
//! Both commands are short-lived and on PostgreSQL's critical path (one call per 16 MiB
//! segment), so they are plain synchronous code: no async runtime, no thread pool.

pub mod get;
pub mod header;
pub mod name;
pub mod prefetch;
pub mod push;
pub mod timeline;
pub mod xacts;

use std::io;
use std::path::{Path, PathBuf};

use crate::repo::{Compression, Repo, RepoError};
pub use name::{Lsn, WalFileKind, WalName};

/// Why a WAL command failed. Messages name the file and the repository path.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("refusing {path}: {why}")]
    NotWal { path: PathBuf, why: String },
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error(
        "{name} is already archived at {stored} with different content; refusing to overwrite it (two clusters writing to one repository, or a damaged pg_wal?) Investigate before removing either copy"
    )]
    Conflict { name: String, stored: PathBuf },
}

/// Where `name` is stored with compression `c`.
pub fn stored_path(repo: &Repo, name: &WalName, c: Compression) -> PathBuf {
    let file = format!("{}{}", name.name, c.suffix());
    match name.archive_dir() {
        Some(dir) => repo.wal_dir().join(dir).join(file),
        None => repo.wal_dir().join(file),
    }
}

/// Finds the stored copy of `name` in any compression. `Ok(None)` only when it is certainly
/// absent; any other problem reading the archive is an error.
pub fn find(repo: &Repo, name: &WalName) -> io::Result<Option<(PathBuf, Compression)>> {
    for c in Compression::ALL {
        let path = stored_path(repo, name, c);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(Some((path, c))),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Reads and decompresses a stored WAL file completely.
pub fn read_stored(path: &Path, c: Compression) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(16 << 20);
    crate::repo::compress::decoder(c, io::BufReader::new(file))?.read_to_end(&mut out)?;
    Ok(out)
}

/// Every archived segment, .partial and .backup file in the archive, sorted by name.
pub fn list_segments(repo: &Repo) -> io::Result<Vec<WalName>> {
    let mut out = Vec::new();
    let top = repo.wal_dir();
    let entries = match std::fs::read_dir(&top) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let fname = file.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            if fname.starts_with('.') {
                continue;
            }
            let base = Compression::ALL
                .iter()
                .filter(|c| !c.suffix().is_empty())
                .find_map(|c| fname.strip_suffix(c.suffix()))
                .unwrap_or(fname);
            if let Some(name) = WalName::parse(base) {
                out.push(name);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
