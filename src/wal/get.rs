//! `dbagent wal-get NAME DEST`, PostgreSQL's restore_command. Its exit code decides whether
//! recovery goes on, ends, waits or aborts, so it is exact: 0 restored; 1 only when the file is
//! certainly not in a readable archive; and whenever the archive cannot be read, a stored copy
//! is damaged or the copy cannot be written, a code chosen by the server's mode:
//!
//! - in standby mode (`standby.signal`) PostgreSQL retries a failed restore_command for ever
//!   (and tries streaming in between), so wal-get exits [`EXIT_RETRY`] (75, EX_TEMPFAIL; any
//!   status from 1 to 125 is retried) and says why on stderr, which lands in the server log:
//!   a repository outage never takes a standby down;
//! - in a restore (`recovery.signal` alone), or when the mode cannot be told, it exits
//!   [`EXIT_UNAVAILABLE`] (126; anything above 125 makes PostgreSQL abort recovery) rather
//!   than let recovery end short of its target and promote.
//!
//! A damaged stored copy is never handed to PostgreSQL: it is decompressed into a temp file
//! (the compression's own checksum is checked), a segment's size and page header are checked
//! against its name and the repository, and only then is it renamed to DEST.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::datadir::Mode;
use super::find;
use super::header::LONG_HEADER_LEN;
use super::name::{WalFileKind, WalName};
use super::prefetch::{self, StoredId};
use crate::repo::{Compression, Key, Kind, Repo, RepoInfo, compress};

/// Exit status when the file is certainly not in the archive.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Exit status of a failure in standby mode: EX_TEMPFAIL. PostgreSQL retries restore_command
/// on any status from 1 to 125.
pub const EXIT_RETRY: u8 = 75;
/// Exit status of a failure during a restore: PostgreSQL aborts recovery on > 125.
pub const EXIT_UNAVAILABLE: u8 = 126;

/// Why a file could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{name} is not in the WAL archive {archive}")]
    NotFound { name: String, archive: PathBuf },
    /// The archive (or DEST) cannot be used now.
    #[error("{0}")]
    Unavailable(String),
    /// The stored copy is damaged; nothing was handed to PostgreSQL.
    #[error(
        "the archived copy {stored} is damaged: {why}; it was not handed to PostgreSQL (replace it from another copy of the repository)"
    )]
    Damaged { stored: PathBuf, why: String },
}

impl GetError {
    /// The exit status for this error when the server is in `mode` (`None`: unknown).
    pub fn exit_code(&self, mode: Option<Mode>) -> u8 {
        match self {
            GetError::NotFound { .. } => EXIT_NOT_FOUND,
            GetError::Unavailable(_) | GetError::Damaged { .. } => failure_exit_code(mode),
        }
    }
}

/// The exit status of any failure other than "not in the archive" in `mode`: a retry in
/// standby mode, an abort otherwise (a restore, or a mode that cannot be told).
pub fn failure_exit_code(mode: Option<Mode>) -> u8 {
    match mode {
        Some(Mode::Standby) => EXIT_RETRY,
        Some(Mode::Restore | Mode::NotInRecovery) | None => EXIT_UNAVAILABLE,
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
        archive: repo.locate_kind(Kind::Wal),
    };
    let unavailable = |what: String| GetError::Unavailable(what);
    // An archive root that is missing (unmounted storage) is not "no such segment".
    repo.storage().check_present().map_err(unavailable)?;
    let info = repo.info().map_err(|e| unavailable(e.to_string()))?;
    let Some(wal_name) = WalName::parse(name) else {
        return Err(not_found());
    };
    let (stored_meta, c) = match find(repo, &wal_name) {
        Ok(Some(found)) => found,
        Ok(None) => {
            // Make sure "absent" is not "unreadable".
            let key = super::stored_key(&wal_name, Compression::None);
            return match repo.storage().confirm_absent(&key) {
                Ok(()) => Err(not_found()),
                Err(e) => Err(unavailable(e)),
            };
        }
        Err(e) => {
            return Err(unavailable(format!(
                "cannot look up {name} in {}: {e}",
                repo.locate_kind(Kind::Wal).display()
            )));
        }
    };
    let stored = repo.locate(&stored_meta.key);
    let prefetch = prefetch.filter(|p| p.depth > 0 && wal_name.kind == WalFileKind::Segment);
    if let (Some(p), Some(info)) = (prefetch, info.as_ref()) {
        match prefetch::request(&p.spool, &wal_name, &p.config) {
            Ok(()) => {
                tracing::debug!(spool = %p.spool.display(), "Prefetch requested after {name}")
            }
            Err(e) => tracing::debug!(spool = %p.spool.display(), "No prefetch: {e}"),
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
    let result = restore_checked(
        repo,
        &stored_meta.key,
        c,
        &wal_name,
        info.as_ref(),
        &tmp,
        dest,
    );
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    match result {
        Ok(bytes) => Ok(Got {
            bytes,
            from_spool: false,
        }),
        Err(Failure::Damaged(why)) => Err(GetError::Damaged { stored, why }),
        Err(Failure::Read(e)) => Err(unavailable(format!(
            "cannot read the archived copy {} of {name}: {e}",
            stored.display()
        ))),
        Err(Failure::Write(e)) => Err(unavailable(format!(
            "cannot write {name} to {}: {e}",
            dest.display()
        ))),
    }
}

/// Why restoring one stored copy failed.
enum Failure {
    /// The stored copy cannot be read.
    Read(io::Error),
    /// It does not decompress, or is not what its name says.
    Damaged(String),
    /// The temp file or DEST cannot be written.
    Write(io::Error),
}

/// Decompresses `stored` into `tmp`, checks it and renames it to `dest`.
fn restore_checked(
    repo: &Repo,
    stored: &Key,
    c: Compression,
    name: &WalName,
    info: Option<&RepoInfo>,
    tmp: &Path,
    dest: &Path,
) -> Result<u64, Failure> {
    let file = repo
        .storage()
        .get(stored)
        .map_err(|e| Failure::Read(e.into()))?
        .ok_or_else(|| Failure::Read(io::Error::from(io::ErrorKind::NotFound)))?;
    let src = io::BufReader::with_capacity(1 << 20, file);
    let mut dec = compress::decoder(c, src).map_err(|e| Failure::Damaged(e.to_string()))?;
    let mut out =
        io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp).map_err(Failure::Write)?);
    let mut head = Vec::with_capacity(LONG_HEADER_LEN);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The file was opened, so a failing read is almost always bad content (a
            // decompression or checksum error); either way it is not handed out.
            Err(e) => return Err(Failure::Damaged(e.to_string())),
        };
        if head.len() < LONG_HEADER_LEN {
            let take = (LONG_HEADER_LEN - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        out.write_all(&buf[..n]).map_err(Failure::Write)?;
        total += n as u64;
    }
    out.flush().map_err(Failure::Write)?;
    drop(out);
    check_content(name, &head, total, tmp, info).map_err(Failure::Damaged)?;
    std::fs::rename(tmp, dest).map_err(Failure::Write)?;
    Ok(total)
}

/// What can be checked of a restored file without trusting it: a segment's size and page
/// header (cluster, segment size, timeline and address against its name); a history file is
/// text.
fn check_content(
    name: &WalName,
    head: &[u8],
    len: u64,
    restored: &Path,
    info: Option<&RepoInfo>,
) -> Result<(), String> {
    match (name.kind, info) {
        (WalFileKind::Segment, Some(info)) => prefetch::check_segment(head, len, name, info),
        (WalFileKind::History | WalFileKind::BackupHistory, _) => {
            let text = std::fs::read(restored).map_err(|e| e.to_string())?;
            std::str::from_utf8(&text)
                .map(drop)
                .map_err(|_| "not a text file".to_string())
        }
        _ => Ok(()),
    }
}
