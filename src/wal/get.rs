//! `dbagent wal-get NAME DEST`, PostgreSQL's restore_command. Its exit code decides whether
//! recovery goes on, ends, or aborts, so it is exact: 0 restored; 1 only when the file is
//! certainly not in a readable archive; 126 (above 125, which makes PostgreSQL abort recovery
//! rather than end it short of its target) whenever the archive cannot be read or the copy
//! cannot be written.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::name::{WalFileKind, WalName};
use super::prefetch::{self, StoredId};
use super::{find, stored_path};
use crate::repo::{Compression, Repo, compress};

/// Exit status when the archive cannot be used: PostgreSQL aborts recovery on > 125.
pub const EXIT_UNAVAILABLE: u8 = 126;

/// Why a file could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{name} is not in the WAL archive {archive}")]
    NotFound { name: String, archive: PathBuf },
    #[error("{0}")]
    Unavailable(String),
}

impl GetError {
    pub fn exit_code(&self) -> u8 {
        match self {
            GetError::NotFound { .. } => 1,
            GetError::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }
}

/// Prefetch settings of one wal-get (see [`prefetch`]).
#[derive(Debug, Clone)]
pub struct Prefetch {
    /// How many segments to fetch ahead; 0 = off.
    pub depth: u32,
    /// The spool directory.
    pub spool: PathBuf,
    /// The configuration file the worker is started with.
    pub config: PathBuf,
}

/// What one wal-get did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Got {
    pub bytes: u64,
    /// Handed out from the prefetch spool rather than decompressed from the archive now.
    pub from_spool: bool,
}

/// Restores `name` from the archive to `dest`, atomically (temp file + rename).
pub fn get(repo: &Repo, name: &str, dest: &Path) -> Result<u64, GetError> {
    get_with(repo, name, dest, None).map(|g| g.bytes)
}

/// [`get`], with prefetch: a segment is taken from the spool when a checked copy of the very
/// stored file the archive holds now is there, and the next segments are requested. The
/// archive is looked up exactly as without prefetch, so the exit codes are the same.
pub fn get_with(
    repo: &Repo,
    name: &str,
    dest: &Path,
    prefetch: Option<&Prefetch>,
) -> Result<Got, GetError> {
    let not_found = || GetError::NotFound {
        name: name.to_string(),
        archive: repo.wal_dir(),
    };
    let unavailable = |what: String| GetError::Unavailable(what);
    // An archive root that is missing (unmounted storage) is not "no such segment".
    match std::fs::metadata(repo.root()) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(unavailable(format!(
                "repository {} is not a directory",
                repo.root().display()
            )));
        }
        Err(e) => {
            return Err(unavailable(format!(
                "cannot read the repository {}: {e}; is it mounted and readable by this user?",
                repo.root().display()
            )));
        }
    }
    let info = repo.info().map_err(|e| unavailable(e.to_string()))?;
    let Some(wal_name) = WalName::parse(name) else {
        return Err(not_found());
    };
    let (stored, c) = match find(repo, &wal_name) {
        Ok(Some(found)) => found,
        Ok(None) => {
            // Make sure "absent" is not "unreadable": the directory itself must be listable.
            let dir = stored_path(repo, &wal_name, Compression::None)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| repo.wal_dir());
            return match std::fs::read_dir(&dir) {
                Ok(_) => Err(not_found()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found()),
                Err(e) => Err(unavailable(format!("cannot read {}: {e}", dir.display()))),
            };
        }
        Err(e) => {
            return Err(unavailable(format!(
                "cannot look up {name} in {}: {e}",
                repo.wal_dir().display()
            )));
        }
    };
    // The stored file itself must be readable: a spooled copy never hides an archive that
    // cannot be read.
    let stored_meta = std::fs::metadata(&stored)
        .map_err(|e| unavailable(format!("cannot read {}: {e}", stored.display())))?;
    let prefetch = prefetch.filter(|p| p.depth > 0 && wal_name.kind == WalFileKind::Segment);
    if let (Some(p), Some(info)) = (prefetch, info.as_ref()) {
        if let Err(e) = prefetch::request(&p.spool, &wal_name, &p.config) {
            tracing::debug!(spool = %p.spool.display(), "No prefetch: {e}");
        }
        let id = StoredId::of(&stored_meta, c);
        let taken = prefetch::take(&p.spool, &wal_name, &id, info, dest);
        prefetch::clean(&p.spool, &wal_name, p.depth, info.wal_segment_size);
        match taken {
            Ok(Some(bytes)) => {
                return Ok(Got {
                    bytes,
                    from_spool: true,
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(spool = %p.spool.display(), "Prefetched {name} not used: {e}");
            }
        }
    }
    let file_name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| unavailable(format!("destination {} has no file name", dest.display())))?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{file_name}.dbagent.{}.tmp", std::process::id()));
    let result = (|| -> io::Result<u64> {
        let src = io::BufReader::with_capacity(1 << 20, std::fs::File::open(&stored)?);
        let mut dec = compress::decoder(c, src)?;
        let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        let n = io::copy(&mut dec, &mut out)?;
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, dest)?;
        Ok(n)
    })();
    match result {
        Ok(bytes) => Ok(Got {
            bytes,
            from_spool: false,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(unavailable(format!(
                "cannot restore {name} from {} to {}: {e}",
                stored.display(),
                dest.display()
            )))
        }
    }
}
