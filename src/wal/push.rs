//! `dbagent wal-push PATH`, PostgreSQL's archive_command. Exit 0 only once the file is durable
//! in the repository; the same content twice is fine; different content under an archived
//! name, a file that is not a complete WAL segment (or history/partial/backup file) of this
//! cluster, or any write error is a non-zero exit with nothing half-written left visible.
//!
//! Which cluster archives is read from the control file of the data directory archive_command
//! runs in (or `postgres.pgdata`), so the first push into an empty repository binds it to that
//! cluster whatever the file is: a promoted standby offers its new timeline's history file
//! first, and PostgreSQL offers nothing else until that is archived.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::datadir::{ControlData, DataDir, DataDirError};
use super::header::SegmentHeader;
use super::name::{WalFileKind, WalName};
use super::{WalError, find, read_stored, stored_key};
use crate::repo::{Compression, Created, Key, Kind, Repo, compress};

/// How to store pushed files.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub compression: Compression,
    pub level: i32,
    /// Compression threads for one segment (zstd splits a 16 MiB segment into jobs).
    pub threads: u32,
    /// The configured data directory (`postgres.pgdata`): where the control file is read when
    /// wal-push does not run in a data directory.
    pub pgdata: Option<PathBuf>,
}

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushOutcome {
    pub name: String,
    pub stored: PathBuf,
    /// The identical file was already archived; nothing was written.
    pub already_archived: bool,
    pub bytes: u64,
}

/// Archives the WAL file at `path`.
pub fn push(repo: &Repo, path: &Path, opts: &PushOptions) -> Result<PushOutcome, WalError> {
    let refuse = |why: String| WalError::NotWal {
        path: path.to_path_buf(),
        why,
    };
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| refuse("no file name".into()))?;
    let name = WalName::parse(file_name).ok_or_else(|| {
        refuse("not a WAL segment, .partial, .history or .backup file name".into())
    })?;
    let read_err = |source| WalError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    // Mapped, not read: copying 16 MiB into fresh memory costs more than compressing it.
    // SAFETY: PostgreSQL does not modify or truncate a WAL file while archive_command runs on
    // it (it is recycled only after archiving succeeded); were it changed anyway, the content
    // checks below or the stored copy's own checksum would catch it on the next push/get.
    let map = if len == 0 {
        None
    } else {
        Some(unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)?)
    };
    let data: &[u8] = map.as_deref().unwrap_or(&[]);
    let local = local_cluster(path, opts);
    // Whether the archive has it already, looked up while the repository's binding is read
    // (two round trips at once on an object store).
    let mut found = None;

    match name.kind {
        WalFileKind::Segment | WalFileKind::Partial => {
            let header = SegmentHeader::parse(data).map_err(|e| refuse(e.to_string()))?;
            let seg_size = u64::from(header.seg_size);
            if data.len() as u64 != seg_size {
                return Err(refuse(format!(
                    "incomplete segment: {} bytes, the segment size is {seg_size}",
                    data.len()
                )));
            }
            let expected_addr = name.segno(seg_size) * seg_size;
            if header.page_addr != expected_addr {
                return Err(refuse(format!(
                    "its header says it starts at WAL address {:X}, the name says {expected_addr:X}",
                    header.page_addr
                )));
            }
            if header.tli > name.tli {
                return Err(refuse(format!(
                    "its header is on timeline {}, after the name's timeline {}",
                    header.tli, name.tli
                )));
            }
            let control = local.as_ref().and_then(|c| c.as_ref().ok());
            if let Some(c) = control
                && c.system_identifier != header.system_identifier
            {
                return Err(refuse(format!(
                    "its header says it belongs to the cluster with system identifier {}, but the cluster archiving it has system identifier {} (control file {}); a segment of another cluster was put into this pg_wal: move it away",
                    header.system_identifier,
                    c.system_identifier,
                    c.path.display()
                )));
            }
            let major = control
                .and_then(|c| c.pg_major)
                .or_else(|| header.pg_major());
            let (bound, looked_up) = std::thread::scope(|s| {
                let lookup = s.spawn(|| find(repo, &name));
                let bound = repo.bind(header.system_identifier, major, seg_size);
                (bound, lookup.join())
            });
            let info = bound?;
            found = looked_up.ok();
            if info.wal_segment_size != seg_size {
                return Err(refuse(format!(
                    "segment size {seg_size} differs from the repository's {}",
                    info.wal_segment_size
                )));
            }
        }
        WalFileKind::History | WalFileKind::BackupHistory => {
            if data.len() > 1 << 20 || std::str::from_utf8(data).is_err() {
                return Err(refuse("not a text history file".into()));
            }
            bind_from_control_file(repo, &local).map_err(|e| match e {
                BindError::Refused(why) => refuse(why),
                BindError::Wal(e) => e,
            })?;
        }
    }

    if let Some(outcome) = compare_existing(repo, &name, data, found)? {
        return Ok(outcome);
    }
    let key = stored_key(&name, opts.compression);
    let target = repo.locate(&key);
    remove_stale_temps(repo, &name);
    let created = repo.storage().create_new(&key, &mut |f| {
        let writer = io::BufWriter::with_capacity(1 << 20, f);
        let mut enc = compress::encoder(opts.compression, opts.level, opts.threads, writer)?;
        enc.write_all(data)?;
        enc.finish()
    })?;
    if name.kind == WalFileKind::History {
        record_timeline(repo, &name, data, path, opts);
    }
    match created {
        Created::Created => Ok(PushOutcome {
            name: name.name.clone(),
            stored: target,
            already_archived: false,
            bytes: data.len() as u64,
        }),
        // Another push of the same name won the race: same rules as a retry.
        Created::AlreadyExists => {
            compare_existing(repo, &name, data, None)?.ok_or_else(|| WalError::Io {
                path: target,
                action: "find",
                source: io::Error::other("the archived copy vanished while pushing"),
            })
        }
    }
}

/// If `name` is already archived: Ok(Some) when the content is identical, Conflict when not.
/// `found` is a lookup already made (else it is made here).
fn compare_existing(
    repo: &Repo,
    name: &WalName,
    data: &[u8],
    found: Option<Result<Option<(crate::repo::Meta, Compression)>, crate::repo::RepoError>>,
) -> Result<Option<PushOutcome>, WalError> {
    let found = found
        .unwrap_or_else(|| find(repo, name))
        .map_err(|e| WalError::Io {
            path: repo.locate_kind(Kind::Wal),
            action: "look up in",
            source: e.into(),
        })?;
    let Some((stored, c)) = found else {
        return Ok(None);
    };
    match read_stored(repo, &stored.key, c) {
        Ok(existing) if existing == data => {
            // A previous push may have died between link and directory fsync.
            repo.storage().ensure_durable(&stored.key)?;
            Ok(Some(PushOutcome {
                name: name.name.clone(),
                stored: repo.locate(&stored.key),
                already_archived: true,
                bytes: data.len() as u64,
            }))
        }
        _ => Err(WalError::Conflict {
            name: name.name.clone(),
            stored: repo.locate(&stored.key),
        }),
    }
}

/// Records the timeline whose history file was just archived (when it began, where, and
/// whether a restore or a promotion created it). Best effort: a record that cannot be written
/// must not stop archiving, so a failure is logged and the push still succeeds.
fn record_timeline(repo: &Repo, name: &WalName, data: &[u8], path: &Path, opts: &PushOptions) {
    let text = String::from_utf8_lossy(data);
    let dir = local_data_dir(path, opts).map(|d| d.path().to_path_buf());
    if let Err(e) = super::timeline::record_archived_history(repo, name.tli, &text, dir.as_deref())
    {
        tracing::warn!(
            file = %name.name,
            repository = %repo.location().display(),
            "Could not record timeline {} in the repository: {e}",
            name.tli
        );
    }
}

/// The control file of the cluster that archives: in the data directory archive_command runs
/// in, the one holding `pg_wal/PATH`, or `postgres.pgdata`. `None` when there is none.
fn local_cluster(path: &Path, opts: &PushOptions) -> Option<Result<ControlData, DataDirError>> {
    local_data_dir(path, opts).map(|d| d.control())
}

/// The data directory of the server that runs this push: the working directory
/// (archive_command runs in the data directory), else the one holding `pg_wal/PATH`, else
/// `postgres.pgdata`.
fn local_data_dir(path: &Path, opts: &PushOptions) -> Option<DataDir> {
    let beside = path
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "pg_wal"))
        .and_then(Path::parent);
    DataDir::locate(beside.into_iter().chain(opts.pgdata.as_deref()))
}

enum BindError {
    Refused(String),
    Wal(WalError),
}

impl From<crate::repo::RepoError> for BindError {
    fn from(e: crate::repo::RepoError) -> BindError {
        BindError::Wal(e.into())
    }
}

/// A history or backup history file does not say which cluster wrote it; the control file of
/// the cluster archiving it does. Binds an empty repository to that cluster, or checks that
/// the repository is its own (a file of another cluster is refused).
fn bind_from_control_file(
    repo: &Repo,
    local: &Option<Result<ControlData, DataDirError>>,
) -> Result<(), BindError> {
    let bound = repo.info()?;
    match (local, bound) {
        (Some(Ok(c)), bound) => {
            let Some(seg_size) = bound
                .as_ref()
                .map(|i| i.wal_segment_size)
                .or_else(|| c.wal_segment_size())
            else {
                return Err(BindError::Refused(format!(
                    "the repository {} is not created yet and the WAL segment size of the cluster is unknown: its pg_wal holds no segment file",
                    repo.location().display()
                )));
            };
            repo.bind(c.system_identifier, c.pg_major, seg_size)?;
            Ok(())
        }
        (Some(Err(e)), Some(_)) => {
            tracing::warn!("Cannot check which cluster this file belongs to: {e}");
            Ok(())
        }
        (None, Some(_)) => Ok(()),
        (Some(Err(e)), None) => Err(BindError::Refused(format!(
            "the repository {} is not created yet and the cluster archiving this file is unknown: {e}; make the control file readable by the user running wal-push",
            repo.location().display()
        ))),
        (None, None) => Err(BindError::Refused(format!(
            "the repository {} is not created yet and this file does not say which cluster it belongs to, nor is wal-push running in a data directory (archive_command runs in one); set postgres.pgdata",
            repo.location().display()
        ))),
    }
}

/// Removes what a killed earlier push of `name` left (see [`Storage::remove_stale_writes`]);
/// it holds nothing anyone reads.
fn remove_stale_temps(repo: &Repo, name: &WalName) {
    let stored: Vec<Key> = Compression::ALL
        .iter()
        .map(|c| stored_key(name, *c))
        .collect();
    for path in repo.storage().remove_stale_writes(&stored) {
        tracing::info!(file = %path.display(), "Removed a temp file a killed wal-push left");
    }
}
