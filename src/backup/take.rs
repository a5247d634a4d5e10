//! Taking a backup: run the server-version-matched `pg_basebackup` in tar format and stream
//! each tar archive through compression and SHA-256 straight into the repository, in one pass
//! and without an uncompressed copy on disk.
//!
//! How the streaming works: `pg_basebackup -D -` refuses clusters with tablespaces, so dbagent
//! points `-D` at an empty work directory and, as soon as pg_basebackup has checked that it is
//! empty (its verbose "initiating base backup" line, printed before it asks the server for
//! data), creates named pipes there under the names pg_basebackup will open: `base.tar` and
//! `<oid>.tar` per tablespace. One reader thread per pipe compresses and hashes what arrives.
//! Should pg_basebackup ever create one of those files first, `mkfifo` fails and the backup
//! is aborted: it can never silently write an uncompressed copy.
//!
//! Who compresses (`backup.compress_on`): by default the server, when its build has the
//! algorithm (zstd or lz4, PostgreSQL 15+, `--compress=server-zstd:level=N,workers=N`). Then
//! pg_basebackup receives and passes on about 1/15 of the bytes, the pipes are named
//! `base.tar.zst` etc., and dbagent stores the stream as it comes while decompressing a copy
//! in memory: that proves the stream decodes and gives the uncompressed size. Otherwise
//! pg_basebackup sends plain tar and dbagent compresses (the only way on builds without zstd,
//! such as the PostgreSQL 18 wheel). The stored files are the same format either way.
//!
//! A backup becomes visible only at the very end: its work directory is hidden
//! (`backups/.partial-<ID>`), renamed to `backups/<ID>` once every file is durable and the WAL
//! from its start to its stop LSN is in the archive, and `manifest.json` is written last.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::manifest::{BackupFile, BackupManifest, MANIFEST_FILE, MANIFEST_FORMAT, Tablespace};
use crate::config::{Checkpoint, CompressOn};
use crate::pg::{PgTarget, ResolvedConnInfo, ServerVersion};
use crate::repo::{Compression, Repo, RepoError, compress, durable};
use crate::wal::{self, Lsn, WalName, name::segment_name};

/// Why a backup failed. Every message says what to do; the work directory is removed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Pg(#[from] crate::pg::PgError),
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("{0}")]
    Refused(String),
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
    #[error("WAL segment {segment} needed by backup {id} did not reach the archive within {}s; the backup was discarded. Check WAL archiving (`dbagent check`) and raise backup.wal_timeout if archiving is just slow", timeout.as_secs())]
    WalTimeout {
        id: String,
        segment: String,
        timeout: Duration,
    },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// What the server told us before the backup.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub version: ServerVersion,
    pub system_identifier: u64,
    pub wal_segment_size: u64,
    pub tablespaces: Vec<Tablespace>,
    /// Estimated size of the backup (all tablespaces), for progress.
    pub estimated_size: u64,
    pub archive_mode: String,
    pub in_recovery: bool,
    /// Algorithms the server can compress a base backup with (PostgreSQL 15+, by its build).
    pub server_compression: Vec<Compression>,
}

/// Reads what a backup needs to know from the server.
pub async fn server_facts(target: &PgTarget) -> Result<ServerFacts, BackupError> {
    let client = target.connect().await?;
    let q = |what: &'static str| move |e: tokio_postgres::Error| target.query_error(what, &e);
    let version = ServerVersion::detect(&client)
        .await
        .map_err(q("server version"))?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text, \
             (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
             current_setting('archive_mode'), pg_is_in_recovery(), \
             (SELECT coalesce(sum(pg_tablespace_size(oid)), 0)::bigint FROM pg_tablespace), \
             (SELECT array_to_string(enumvals, ',') FROM pg_settings WHERE name = 'wal_compression')",
            &[],
        )
        .await
        .map_err(q("backup facts"))?;
    let sysid: String = row.get(0);
    // The server's build options are not visible over SQL, but wal_compression offers lz4 and
    // zstd exactly when the server was built with them, and base backups (15+) use the same
    // libraries.
    let wal_compression: Option<String> = row.get(5);
    let server_compression = if version.major() >= 15 {
        wal_compression
            .unwrap_or_default()
            .split(',')
            .filter_map(|v| match v {
                "zstd" => Some(Compression::Zstd),
                "lz4" => Some(Compression::Lz4),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let tablespaces = client
        .query(
            "SELECT oid::bigint, spcname::text, pg_tablespace_location(oid) FROM pg_tablespace \
             WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid",
            &[],
        )
        .await
        .map_err(q("tablespaces"))?
        .iter()
        .map(|r| Tablespace {
            oid: u32::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            name: r.get(1),
            location: r.get(2),
        })
        .collect();
    Ok(ServerFacts {
        version,
        system_identifier: sysid.parse().map_err(|_| {
            BackupError::Refused(format!(
                "the server returned an invalid system identifier `{sysid}`"
            ))
        })?,
        wal_segment_size: u64::try_from(row.get::<_, i64>(1)).unwrap_or(16 << 20),
        archive_mode: row.get(2),
        in_recovery: row.get(3),
        estimated_size: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        tablespaces,
        server_compression,
    })
}

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

/// Removes the work directory unless the backup completed.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Takes a backup of the server described by `info`/`facts` into `repo`.
pub fn take(
    repo: &Repo,
    target: &PgTarget,
    facts: &ServerFacts,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupManifest, BackupError> {
    if facts.in_recovery {
        return Err(BackupError::Refused(
            "the server is a standby; dbagent backs up the primary (point postgres.conninfo at it)"
                .into(),
        ));
    }
    if facts.archive_mode == "off" {
        return Err(BackupError::Refused(
            "archive_mode is off: a backup is only usable with its WAL archived; set archive_mode = on and archive_command to dbagent wal-push (`dbagent check` shows how)".into(),
        ));
    }
    let major = facts.version.major();
    let server_can = opts.compression != Compression::None
        && facts.server_compression.contains(&opts.compression);
    let on_server = match opts.compress_on {
        CompressOn::Dbagent => false,
        CompressOn::Auto => server_can,
        CompressOn::Server if server_can || opts.compression == Compression::None => {
            opts.compression != Compression::None
        }
        CompressOn::Server => {
            return Err(BackupError::Refused(format!(
                "backup.compress_on is server, but the server cannot compress this backup with {}: dbagent has PostgreSQL 15+ compress with zstd or lz4 when its build has them, and this PostgreSQL {} offers {}; set backup.compress_on: auto or dbagent, or another repository.compression",
                opts.compression.as_str(),
                facts.version.text,
                if facts.server_compression.is_empty() {
                    "neither".to_string()
                } else {
                    facts
                        .server_compression
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                }
            )));
        }
    };
    let pg_basebackup = find_pg_basebackup(opts.bin_dir.as_deref(), major)?;
    repo.bind(facts.system_identifier, Some(major), facts.wal_segment_size)?;
    let _lock = repo.lock("backup", opts.lock_wait)?;
    remove_stale_work_dirs(repo);

    let start_time = jiff::Timestamp::now();
    let id = new_id(repo, start_time);
    let backups = repo.backups_dir();
    durable::create_dir_all_durable(&backups).map_err(io_err(&backups, "create"))?;
    let work = WorkDir {
        path: backups.join(format!(".partial-{id}")),
        keep: false,
    };
    let pgbb_dir = work.path.join("pg_basebackup");
    std::fs::create_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "create"))?;
    durable::inherit_owner(&pgbb_dir, &work.path).map_err(io_err(&pgbb_dir, "chown"))?;
    tracing::info!(backup = %id, "Starting backup with {}", pg_basebackup.display());
    progress.phase("checkpoint");

    let label = opts
        .label
        .clone()
        .unwrap_or_else(|| format!("dbagent {id}"));
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
    } else {
        opts.threads
    };
    let mut run = PgBaseBackupRun {
        bin: &pg_basebackup,
        on_server,
        threads,
        target,
        facts,
        opts,
        work: &work.path,
        pgbb_dir: &pgbb_dir,
        label: &label,
        id: &id,
        progress,
    };
    let mut attempt = 1;
    let (mut files, waiting_since) = loop {
        match run.stream() {
            Err(BackupError::LostRace(what)) if attempt < 3 => {
                tracing::warn!(backup = %id, attempt, "{what}; retrying");
                let _ = std::fs::remove_dir_all(&pgbb_dir);
                std::fs::create_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "create"))?;
                durable::inherit_owner(&pgbb_dir, &work.path)
                    .map_err(io_err(&pgbb_dir, "chown"))?;
                attempt += 1;
            }
            Err(BackupError::LostRace(what)) => {
                return Err(BackupError::BaseBackup(format!(
                    "{what} three times; nothing was kept. Run the backup again"
                )));
            }
            // The server said it has the algorithm but could not use it as asked (a libzstd
            // without worker threads, say): under `auto`, compress in dbagent instead.
            Err(BackupError::BaseBackup(msg))
                if run.on_server
                    && opts.compress_on == CompressOn::Auto
                    && msg.contains("compress") =>
            {
                tracing::warn!(backup = %id, "The server could not compress the backup ({msg}); compressing in dbagent instead");
                let _ = std::fs::remove_dir_all(&pgbb_dir);
                for entry in std::fs::read_dir(&work.path).map_err(io_err(&work.path, "list"))? {
                    let path = entry.map_err(io_err(&work.path, "list"))?.path();
                    if path != pgbb_dir {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                std::fs::create_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "create"))?;
                durable::inherit_owner(&pgbb_dir, &work.path)
                    .map_err(io_err(&pgbb_dir, "chown"))?;
                run.on_server = false;
            }
            other => break other?,
        }
    };

    let compressed_by = if run.on_server { "server" } else { "dbagent" };
    // PostgreSQL's own manifest: kept as it is, and the source of the WAL range.
    let pg_manifest = std::fs::read(pgbb_dir.join("backup_manifest"))
        .map_err(io_err(&pgbb_dir.join("backup_manifest"), "read"))?;
    let (timeline, start_lsn, stop_lsn) = wal_range(&pg_manifest)?;
    durable::create_new(&work.path, "backup_manifest", |f| f.write_all(&pg_manifest))
        .map_err(io_err(&work.path.join("backup_manifest"), "write"))?;
    files.push(BackupFile {
        name: "backup_manifest".into(),
        size: pg_manifest.len() as u64,
        stored_size: pg_manifest.len() as u64,
        sha256: hex::encode(Sha256::digest(&pg_manifest)),
        tablespace: None,
    });
    std::fs::remove_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "remove"))?;

    // Complete only when the WAL from start to stop is in *this* archive (safety invariant 3):
    // the server only waited for archive_command to succeed, wherever it archives to.
    if waiting_since.is_none() {
        progress.phase("waiting for WAL");
    }
    let seg = facts.wal_segment_size;
    let first = start_lsn.segno(seg);
    let last = stop_lsn.segno(seg);
    let deadline = waiting_since.unwrap_or_else(Instant::now) + opts.wal_timeout;
    for segno in first..=last {
        let name = segment_name(timeline, segno, seg);
        let parsed = WalName::parse(&name)
            .ok_or_else(|| BackupError::Refused(format!("bad segment name {name}")))?;
        loop {
            match wal::find(repo, &parsed) {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Ok(None) => {
                    return Err(BackupError::WalTimeout {
                        id: id.clone(),
                        segment: name,
                        timeout: opts.wal_timeout,
                    });
                }
                Err(e) => return Err(io_err(&repo.wal_dir(), "read")(e)),
            }
        }
    }

    // Publish: the directory under its real name, then manifest.json last.
    durable::sync_dir(&work.path).map_err(io_err(&work.path, "fsync"))?;
    let final_dir = backups.join(&id);
    std::fs::rename(&work.path, &final_dir)
        .map_err(io_err(&final_dir, "rename the backup into"))?;
    let mut work = work;
    work.keep = true;
    durable::sync_dir(&backups).map_err(io_err(&backups, "fsync"))?;
    let stop_time = jiff::Timestamp::now();
    let manifest = BackupManifest {
        format: MANIFEST_FORMAT,
        id: id.clone(),
        label: opts.label.clone(),
        system_identifier: facts.system_identifier.to_string(),
        pg_version: facts.version.text.clone(),
        pg_major: major,
        timeline,
        start_lsn,
        stop_lsn,
        wal_start: segment_name(timeline, first, seg),
        wal_stop: segment_name(timeline, last, seg),
        wal_segment_size: seg,
        start_time,
        stop_time,
        compression: opts.compression,
        compressed_by: compressed_by.into(),
        files,
        dbagent_version: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Refused(format!("cannot encode manifest.json: {e}")))?;
    let result = durable::create_new(&final_dir, MANIFEST_FILE, |f| {
        f.write_all(&json)?;
        f.write_all(b"\n")
    });
    if let Err(e) = result {
        // Without its manifest the directory is not a backup; do not leave it behind.
        let _ = std::fs::remove_dir_all(&final_dir);
        return Err(io_err(&final_dir.join(MANIFEST_FILE), "write")(e));
    }
    tracing::info!(backup = %id, "Backup complete");
    Ok(manifest)
}

/// One run of pg_basebackup, streamed through the pipes into the work directory.
struct PgBaseBackupRun<'a> {
    bin: &'a Path,
    /// The server compresses (pg_basebackup --compress=server-...); dbagent stores as is.
    on_server: bool,
    /// Compression threads (zstd workers on the server, or in dbagent).
    threads: u32,
    target: &'a PgTarget,
    facts: &'a ServerFacts,
    opts: &'a BackupOptions,
    work: &'a Path,
    pgbb_dir: &'a Path,
    label: &'a str,
    id: &'a str,
    progress: &'a dyn Progress,
}

impl PgBaseBackupRun<'_> {
    /// The stored files and, if the server had to wait for WAL archiving, since when.
    fn stream(&self) -> Result<(Vec<BackupFile>, Option<Instant>), BackupError> {
        let PgBaseBackupRun {
            bin: pg_basebackup,
            on_server,
            threads,
            target,
            facts,
            opts,
            work,
            pgbb_dir,
            label,
            id,
            progress,
        } = *self;
        let app_name = format!("dbagent-backup-{}", std::process::id());
        // pg_basebackup names what the server compressed after its algorithm: the pipes must
        // carry those names.
        let sent_suffix = if on_server {
            opts.compression.suffix()
        } else {
            ""
        };
        let mut archives = vec![(format!("base.tar{sent_suffix}"), None)];
        for ts in &facts.tablespaces {
            archives.push((format!("{}.tar{sent_suffix}", ts.oid), Some(ts.clone())));
        }
        let server_compress = on_server.then(|| server_compress_spec(opts, threads));
        // Watch the directory before pg_basebackup starts: its emptiness check opens and closes
        // it, and at that moment the pipes go in.
        let gate = FifoGate::arm(
            pgbb_dir,
            archives.iter().map(|(n, _)| pgbb_dir.join(n)).collect(),
        )?;
        let mut child = spawn_pg_basebackup(
            pg_basebackup,
            target.info(),
            pgbb_dir,
            label,
            &app_name,
            opts.checkpoint,
            server_compress.as_deref(),
        )?;
        let server_phase = PhaseProbe::start(target.clone(), app_name);
        let child_pid = child.id();
        let stderr = child.stderr.take();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let log_reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let Some(stderr) = stderr else { return };
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    tracing::debug!(target: "pg_basebackup", "{line}");
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            })
        };
        match gate.wait(&mut child) {
            Ok(()) => {}
            Err(GateError::Lost(what)) => {
                kill(child_pid);
                let _ = child.wait();
                let _ = log_reader.join();
                return Err(BackupError::LostRace(what));
            }
            Err(GateError::Exited(status)) => {
                let _ = log_reader.join();
                return Err(BackupError::BaseBackup(format!(
                    "{} (exit {status})",
                    last_lines(&log)
                )));
            }
            Err(GateError::Io(e)) => {
                kill(child_pid);
                let _ = child.wait();
                return Err(io_err(pgbb_dir, "create pipes in")(e));
            }
        }
        let done = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for (name, ts) in &archives {
            let fifo = pgbb_dir.join(name);
            let stored_name = format!("{name}{}", opts.compression.suffix()).replacen(
                &format!("{sent_suffix}{sent_suffix}"),
                sent_suffix,
                1,
            );
            let job = StreamJob {
                on_server,
                fifo,
                dest: work.join(&stored_name),
                stored_name,
                tablespace: ts.clone(),
                compression: opts.compression,
                level: opts.level,
                threads,
                done: Arc::clone(&done),
                child_pid,
            };
            readers.push(std::thread::spawn(move || job.run()));
        }
        progress.phase("streaming");

        let mut waiting_since: Option<Instant> = None;
        let status = loop {
            match child
                .try_wait()
                .map_err(io_err(pg_basebackup, "wait for"))?
            {
                Some(status) => break status,
                None => {
                    if server_phase.waiting_for_wal() {
                        let since = *waiting_since.get_or_insert_with(|| {
                            progress.phase("waiting for WAL");
                            Instant::now()
                        });
                        if since.elapsed() > opts.wal_timeout {
                            kill(child_pid);
                            let _ = child.wait();
                            for (name, _) in &archives {
                                release_reader(&pgbb_dir.join(name));
                            }
                            for r in readers {
                                let _ = r.join();
                            }
                            return Err(BackupError::WalTimeout {
                                id: id.to_string(),
                                segment: "holding its stop LSN (PostgreSQL is still waiting for archive_command to archive it)".into(),
                                timeout: opts.wal_timeout,
                            });
                        }
                    } else {
                        progress.bytes(done.load(Ordering::Relaxed), facts.estimated_size);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        // Readers still waiting for pg_basebackup to open their pipe (a tablespace dropped during
        // the backup, or a failed run) are released with an empty stream.
        for (name, _) in &archives {
            release_reader(&pgbb_dir.join(name));
        }
        let _ = log_reader.join();
        let mut files = Vec::new();
        let mut first_error = None;
        for r in readers {
            match r.join() {
                Ok(Ok(Some(f))) => files.push(f),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error
                        .get_or_insert(BackupError::Refused("a streaming thread panicked".into()));
                }
            }
        }
        if !status.success() {
            return Err(first_error.unwrap_or_else(|| {
                BackupError::BaseBackup(format!("{} (exit {status})", last_lines(&log)))
            }));
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !files.iter().any(|f| f.name.starts_with("base.tar")) {
            return Err(BackupError::BaseBackup(
                "pg_basebackup finished without sending base.tar".into(),
            ));
        }
        // An archive dbagent had no pipe for (a tablespace created during the backup) was
        // written as a plain file and is not in the backup: refuse rather than lose it.
        let unexpected: Vec<String> = std::fs::read_dir(pgbb_dir)
            .map_err(io_err(pgbb_dir, "list"))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tar"))
            .collect();
        if !unexpected.is_empty() {
            return Err(BackupError::BaseBackup(format!(
                "pg_basebackup sent {} that did not exist when the backup started (a tablespace created during the backup?); nothing was kept. Run the backup again",
                unexpected.join(", ")
            )));
        }
        progress.bytes(done.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
        Ok((files, waiting_since))
    }
}

/// Why the pipes could not be put in place.
enum GateError {
    /// pg_basebackup created one of its files first.
    Lost(String),
    /// pg_basebackup ended before checking its directory.
    Exited(std::process::ExitStatus),
    Io(io::Error),
}

/// Creates the named pipes the moment pg_basebackup has checked that its directory is empty
/// (the close of that directory, seen through inotify), long before it has connected to the
/// server and opens its first archive.
struct FifoGate {
    rx: mpsc::Receiver<Result<(), GateError>>,
    cancel: Arc<AtomicBool>,
    dir: PathBuf,
}

impl FifoGate {
    fn arm(dir: &Path, fifos: Vec<PathBuf>) -> Result<FifoGate, BackupError> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let to_io = |e: nix::Error| io_err(dir, "watch")(io::Error::from(e));
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(to_io)?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CLOSE_NOWRITE | AddWatchFlags::IN_CREATE,
            )
            .map_err(to_io)?;
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let owner_dir = dir.to_path_buf();
        std::thread::spawn(move || {
            loop {
                let events = match inotify.read_events() {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(GateError::Io(io::Error::from(e))));
                        return;
                    }
                };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                for ev in events {
                    if ev.mask.contains(AddWatchFlags::IN_CREATE) {
                        let name = ev
                            .name
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let _ = tx.send(Err(GateError::Lost(format!(
                            "pg_basebackup created {name} before dbagent could put its pipe there"
                        ))));
                        return;
                    }
                    if ev.mask.contains(AddWatchFlags::IN_CLOSE_NOWRITE) && ev.name.is_none() {
                        let result = fifos.iter().try_for_each(|f| {
                            match nix::unistd::mkfifo(
                                f,
                                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
                            ) {
                                Ok(()) => durable::inherit_owner(f, &owner_dir).map_err(GateError::Io),
                                Err(nix::errno::Errno::EEXIST) => Err(GateError::Lost(format!(
                                    "pg_basebackup opened {} before dbagent could put its pipe there",
                                    f.display()
                                ))),
                                Err(e) => Err(GateError::Io(io::Error::from(e))),
                            }
                        });
                        let _ = tx.send(result);
                        return;
                    }
                }
            }
        });
        Ok(FifoGate {
            rx,
            cancel,
            dir: dir.to_path_buf(),
        })
    }

    /// Waits until the pipes are in place (or pg_basebackup ends first).
    fn wait(&self, child: &mut Child) -> Result<(), GateError> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(GateError::Io(io::Error::other("the pipe watcher stopped")));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait().map_err(GateError::Io)? {
                        return Err(GateError::Exited(status));
                    }
                }
            }
        }
    }
}

impl Drop for FifoGate {
    fn drop(&mut self) {
        // Wake the watcher if it is still waiting: opening the directory is an event.
        self.cancel.store(true, Ordering::Relaxed);
        let _ = std::fs::read_dir(&self.dir);
    }
}

/// Watches the server's side of the backup (pg_stat_progress_basebackup) on a connection of
/// its own: the server waits, without limit, for the stop segment to be archived before it
/// lets pg_basebackup finish, and only the server can say that this is what it is doing.
struct PhaseProbe {
    waiting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl PhaseProbe {
    fn start(target: PgTarget, app_name: String) -> PhaseProbe {
        let waiting = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (Arc::clone(&waiting), Arc::clone(&stop));
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = target.connect().await else {
                    return;
                };
                while !s.load(Ordering::Relaxed) {
                    let row = client
                        .query_opt(
                            "SELECT p.phase FROM pg_stat_progress_basebackup p \
                             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
                            &[&app_name],
                        )
                        .await;
                    if let Ok(Some(row)) = row {
                        let phase: String = row.get(0);
                        w.store(
                            phase.starts_with("waiting for wal archiving"),
                            Ordering::Relaxed,
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
        });
        PhaseProbe { waiting, stop }
    }

    fn waiting_for_wal(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Drop for PhaseProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One pipe → compressor → hasher → repository file.
struct StreamJob {
    /// The stream arrives compressed (by the server): store it as is, decode a copy to check.
    on_server: bool,
    fifo: PathBuf,
    dest: PathBuf,
    stored_name: String,
    tablespace: Option<Tablespace>,
    compression: Compression,
    level: i32,
    threads: u32,
    done: Arc<AtomicU64>,
    child_pid: u32,
}

impl StreamJob {
    /// Ok(None) when pg_basebackup never sent this archive.
    fn run(self) -> Result<Option<BackupFile>, BackupError> {
        let mut input = std::fs::File::open(&self.fifo).map_err(io_err(&self.fifo, "open"))?;
        // A 1 MiB pipe instead of 64 KiB: fewer context switches between pg_basebackup and
        // this reader. Best effort (the system limit may be lower).
        let _ = nix::fcntl::fcntl(&input, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let result = self.stream(&mut input);
        if result.is_err() {
            // Stop pg_basebackup (it would block on the full pipe) and drain what it wrote.
            kill(self.child_pid);
            let _ = io::copy(&mut input, &mut io::sink());
            let _ = std::fs::remove_file(&self.dest);
        }
        result
    }

    fn stream(&self, input: &mut std::fs::File) -> Result<Option<BackupFile>, BackupError> {
        let mut buf = vec![0u8; 1 << 20];
        let mut first = input.read(&mut buf).map_err(io_err(&self.fifo, "read"))?;
        if first == 0 {
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.dest)
            .map_err(io_err(&self.dest, "create"))?;
        if let Some(dir) = self.dest.parent() {
            durable::inherit_owner(&self.dest, dir).map_err(io_err(&self.dest, "chown"))?;
        }
        let sync_handle = file.try_clone().map_err(io_err(&self.dest, "open"))?;
        let hashed = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        let state = hashed.state();
        let size = if self.on_server {
            self.store_compressed(input, &buf[..first], hashed)?
        } else {
            let mut enc = compress::encoder(self.compression, self.level, self.threads, hashed)
                .map_err(io_err(&self.dest, "start compressing"))?;
            let mut size = 0u64;
            loop {
                enc.write_all(&buf[..first])
                    .map_err(io_err(&self.dest, "write"))?;
                size += first as u64;
                self.done.fetch_add(first as u64, Ordering::Relaxed);
                first = input.read(&mut buf).map_err(io_err(&self.fifo, "read"))?;
                if first == 0 {
                    break;
                }
            }
            enc.finish().map_err(io_err(&self.dest, "write"))?;
            size
        };
        sync_handle
            .sync_all()
            .map_err(io_err(&self.dest, "fsync"))?;
        let (sha256, stored_size) = state
            .lock()
            .map(|s| (hex::encode(s.0.clone().finalize()), s.1))
            .map_err(|_| BackupError::Refused("hash state poisoned".into()))?;
        Ok(Some(BackupFile {
            name: self.stored_name.clone(),
            size,
            stored_size,
            sha256,
            tablespace: self.tablespace.clone(),
        }))
    }
}

impl StreamJob {
    /// Stores a stream the server compressed, byte for byte, while decoding it in memory:
    /// returns the uncompressed size. A stream that does not decode fails the backup.
    fn store_compressed(
        &self,
        input: &mut std::fs::File,
        first: &[u8],
        mut out: HashingWriter<io::BufWriter<std::fs::File>>,
    ) -> Result<u64, BackupError> {
        let tee = Tee {
            head: io::Cursor::new(first.to_vec()),
            input,
            out: &mut out,
            write_error: None,
        };
        let mut tee = io::BufReader::with_capacity(1 << 20, tee);
        let mut counter = Counter {
            done: &self.done,
            n: 0,
        };
        let decoded = compress::decoder(self.compression, &mut tee)
            .and_then(|mut d| io::copy(&mut d, &mut counter));
        // Bytes after the last frame would be stored without being checked: refuse them.
        let trailing = decoded
            .as_ref()
            .ok()
            .map(|_| io::copy(&mut tee, &mut io::sink()));
        let mut tee = tee.into_inner();
        if let Some(e) = tee.write_error.take() {
            return Err(io_err(&self.dest, "write")(e));
        }
        decoded.map_err(|e| {
            BackupError::BaseBackup(format!(
                "the {} stream the server sent for {} does not decode: {e}",
                self.compression.as_str(),
                self.stored_name
            ))
        })?;
        match trailing {
            Some(Ok(0)) | None => {}
            Some(Ok(n)) => {
                return Err(BackupError::BaseBackup(format!(
                    "the server sent {n} bytes after the end of the {} stream of {}",
                    self.compression.as_str(),
                    self.stored_name
                )));
            }
            Some(Err(e)) => return Err(io_err(&self.fifo, "read")(e)),
        }
        out.flush().map_err(io_err(&self.dest, "write"))?;
        Ok(counter.n)
    }
}

/// Reads `head` then `input`, writing every byte read to `out` on the way.
struct Tee<'a, W: Write> {
    head: io::Cursor<Vec<u8>>,
    input: &'a mut std::fs::File,
    out: &'a mut W,
    /// A failed write, reported as such rather than as a decoding error.
    write_error: Option<io::Error>,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.head.read(buf)?;
        if n == 0 {
            n = self.input.read(buf)?;
        }
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "cannot write the repository file"));
        }
        Ok(n)
    }
}

/// Counts the decoded bytes (and reports them as progress).
struct Counter<'a> {
    done: &'a AtomicU64,
    n: u64,
}

impl Write for Counter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.n += buf.len() as u64;
        self.done.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// pg_basebackup's `--compress` for server-side compression.
fn server_compress_spec(opts: &BackupOptions, threads: u32) -> String {
    let level = if opts.level == 0 {
        opts.compression.default_level()
    } else {
        opts.level
    };
    match opts.compression {
        Compression::Zstd if threads > 1 => format!("server-zstd:level={level},workers={threads}"),
        Compression::Zstd => format!("server-zstd:level={level}"),
        Compression::Lz4 if opts.level > 0 => format!("server-lz4:level={level}"),
        Compression::Lz4 => "server-lz4".into(),
        Compression::Gzip => format!("server-gzip:level={level}"),
        Compression::None => "none".into(),
    }
}

type HashState = Arc<Mutex<(Sha256, u64)>>;

/// Hashes and counts the bytes on their way to the repository file.
struct HashingWriter<W> {
    inner: W,
    state: HashState,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            state: Arc::new(Mutex::new((Sha256::new(), 0))),
        }
    }
    fn state(&self) -> HashState {
        Arc::clone(&self.state)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut s = self
            .state
            .lock()
            .map_err(|_| io::Error::other("hash state poisoned"))?;
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Unblocks a reader still waiting in open() on `fifo` by opening and closing its write end.
fn release_reader(fifo: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo);
}

fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

fn last_lines(log: &Mutex<Vec<String>>) -> String {
    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("error") || l.contains("FATAL"))
        .collect();
    let chosen: Vec<&String> = if errors.is_empty() {
        lines.iter().rev().take(3).rev().collect()
    } else {
        errors
    };
    chosen
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `20261121T061500Z`, made unique within the repository.
fn new_id(repo: &Repo, t: jiff::Timestamp) -> String {
    let base = t.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut id = base.clone();
    let mut n = 1;
    while repo.backups_dir().join(&id).exists()
        || repo.backups_dir().join(format!(".partial-{id}")).exists()
    {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// Work directories of interrupted backups (we hold the lock, so none is in progress).
fn remove_stale_work_dirs(repo: &Repo) {
    let Ok(entries) = std::fs::read_dir(repo.backups_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".partial-"))
        {
            tracing::info!(dir = %e.path().display(), "Removing the work directory of an interrupted backup");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The `pg_basebackup` of the server's major version: `bin_dir`, then Debian's
/// /usr/lib/postgresql/<major>/bin, then PATH.
pub fn find_pg_basebackup(bin_dir: Option<&Path>, major: u32) -> Result<PathBuf, BackupError> {
    let mut candidates = Vec::new();
    if let Some(dir) = bin_dir {
        candidates.push(dir.join("pg_basebackup"));
    } else {
        candidates.push(PathBuf::from(format!(
            "/usr/lib/postgresql/{major}/bin/pg_basebackup"
        )));
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("pg_basebackup")));
        }
    }
    let mut seen = Vec::new();
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        let out = Command::new(&c).arg("--version").output();
        let version = out
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let found_major = version
            .split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse::<u32>().ok());
        if found_major == Some(major) {
            return Ok(c);
        }
        seen.push(format!("{} ({version})", c.display()));
    }
    Err(BackupError::Refused(format!(
        "no pg_basebackup for PostgreSQL {major} found{}; install the PostgreSQL {major} client tools or set postgres.bin_dir",
        if seen.is_empty() {
            String::new()
        } else {
            format!(" (found {})", seen.join(", "))
        }
    )))
}

fn spawn_pg_basebackup(
    bin: &Path,
    info: &ResolvedConnInfo,
    dir: &Path,
    label: &str,
    app_name: &str,
    checkpoint: Checkpoint,
    server_compress: Option<&str>,
) -> Result<Child, BackupError> {
    let mut conninfo = vec![
        format!(
            "host={}",
            quote(info.hosts.first().map_or("localhost", String::as_str))
        ),
        format!("port={}", info.ports.first().copied().unwrap_or(5432)),
        format!("user={}", quote(&info.user)),
        format!("sslmode={}", info.sslmode.as_str()),
        format!("application_name={app_name}"),
    ];
    for (k, v) in [
        ("sslrootcert", &info.sslrootcert),
        ("sslcert", &info.sslcert),
        ("sslkey", &info.sslkey),
    ] {
        if let Some(v) = v {
            conninfo.push(format!("{k}={}", quote(v)));
        }
    }
    if let Some(t) = info.connect_timeout {
        conninfo.push(format!("connect_timeout={}", t.as_secs()));
    }
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    // The password goes through the environment, never the command line (visible in ps).
    if let Some(p) = &info.password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.env("LC_ALL", "C")
        .arg("--pgdata")
        .arg(dir)
        .args([
            "--format=tar",
            "--wal-method=none",
            "--no-sync",
            "--verbose",
        ])
        .arg(format!(
            "--checkpoint={}",
            match checkpoint {
                Checkpoint::Fast => "fast",
                Checkpoint::Spread => "spread",
            }
        ))
        .arg(format!("--label={label}"))
        .args(server_compress.map(|c| format!("--compress={c}")))
        .arg(format!("--dbname={}", conninfo.join(" ")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // If dbagent dies (kill -9), pg_basebackup must not go on: the kernel sends it SIGTERM.
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
    // parent; it is the only thing done between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(io::Error::from)
        });
    }
    cmd.spawn().map_err(io_err(bin, "run"))
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Timeline and LSN range from PostgreSQL's backup_manifest ("WAL-Ranges").
fn wal_range(manifest: &[u8]) -> Result<(u32, Lsn, Lsn), BackupError> {
    let bad = |what: &str| BackupError::BaseBackup(format!("backup_manifest: {what}"));
    let v: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| bad(&e.to_string()))?;
    let ranges = v["WAL-Ranges"]
        .as_array()
        .ok_or_else(|| bad("no WAL-Ranges"))?;
    let first = ranges.first().ok_or_else(|| bad("empty WAL-Ranges"))?;
    let last = ranges.last().ok_or_else(|| bad("empty WAL-Ranges"))?;
    let lsn = |r: &serde_json::Value, k: &str| {
        r[k].as_str()
            .and_then(Lsn::parse)
            .ok_or_else(|| bad(&format!("bad {k}")))
    };
    let timeline = last["Timeline"]
        .as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .ok_or_else(|| bad("bad Timeline"))?;
    Ok((timeline, lsn(first, "Start-LSN")?, lsn(last, "End-LSN")?))
}
