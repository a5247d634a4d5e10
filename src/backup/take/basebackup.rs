//! Running pg_basebackup: its command line (connection, checkpoint, server-side compression),
//! supervising one run (pipes in place, one stream thread per archive, progress, the wait for
//! WAL archiving, errors from its stderr), and finding the binary of the server's version.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{BackupError, io_err};
use super::facts::ServerFacts;
use super::options::{BackupOptions, Progress};
use super::stream::StreamJob;
use super::watch::{FifoGate, GateError, PhaseProbe, kill};
use crate::backup::manifest::{BackupFile, Tablespace};
use crate::config::Checkpoint;
use crate::pg::{PgTarget, ResolvedConnInfo};
use crate::repo::Compression;
use crate::repo::storage::BackupWriter;

/// One run of pg_basebackup, streamed through the pipes into the work directory.
pub(super) struct PgBaseBackupRun<'a> {
    pub(super) bin: &'a Path,
    /// The server compresses (pg_basebackup --compress=server-...); dbagent stores as is.
    pub(super) on_server: bool,
    /// Compression threads (zstd workers on the server, or in dbagent).
    pub(super) threads: u32,
    pub(super) target: &'a PgTarget,
    pub(super) facts: &'a ServerFacts,
    pub(super) opts: &'a BackupOptions,
    pub(super) work: &'a Path,
    pub(super) backup: &'a Arc<dyn BackupWriter>,
    pub(super) pgbb_dir: &'a Path,
    pub(super) label: &'a str,
    pub(super) id: &'a str,
    pub(super) progress: &'a dyn Progress,
    /// The parent's backup_manifest, for `pg_basebackup --incremental`.
    pub(super) incremental: Option<&'a Path>,
}

impl PgBaseBackupRun<'_> {
    /// The stored files and, if the server had to wait for WAL archiving, since when.
    pub(super) fn stream(&self) -> Result<(Vec<BackupFile>, Option<Instant>), BackupError> {
        let PgBaseBackupRun {
            bin: pg_basebackup,
            on_server,
            threads,
            target,
            facts,
            opts,
            work,
            backup,
            pgbb_dir,
            label,
            id,
            progress,
            incremental,
        } = *self;
        let app_name = format!("dbagent-backup-{}", std::process::id());
        // pg_basebackup names what the server compressed after its algorithm: the pipes must
        // carry those names.
        let sent_suffix = if on_server {
            opts.compression.suffix()
        } else {
            ""
        };
        let archives = archives(&facts.tablespaces, sent_suffix);
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
            incremental,
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
            let stored_name = stored_name(name, opts.compression, sent_suffix);
            let job = StreamJob {
                on_server,
                fifo,
                dest: work.join(&stored_name),
                backup: Arc::clone(backup),
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
                            for (r, (name, _)) in readers.into_iter().zip(&archives) {
                                let _ = join_released(r, &pgbb_dir.join(name));
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
                    // Short: the backup is complete only once this loop sees pg_basebackup exit.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        // Readers still waiting for pg_basebackup to open their pipe (a tablespace dropped during
        // the backup, or a failed run) are released with an empty stream.
        let _ = log_reader.join();
        let mut files = Vec::new();
        let mut first_error = None;
        for (r, (name, _)) in readers.into_iter().zip(&archives) {
            match join_released(r, &pgbb_dir.join(name)) {
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

/// The archives pg_basebackup sends, under the names it writes them (`base.tar`, `<oid>.tar`,
/// with the algorithm's suffix when the server compresses), each with its tablespace.
fn archives(tablespaces: &[Tablespace], sent_suffix: &str) -> Vec<(String, Option<Tablespace>)> {
    let mut archives = vec![(format!("base.tar{sent_suffix}"), None)];
    for ts in tablespaces {
        archives.push((format!("{}.tar{sent_suffix}", ts.oid), Some(ts.clone())));
    }
    archives
}

/// The name an archive is stored under in the repository: with the repository's compression
/// suffix, once, whoever compressed it.
fn stored_name(name: &str, compression: Compression, sent_suffix: &str) -> String {
    format!("{name}{}", compression.suffix()).replacen(
        &format!("{sent_suffix}{sent_suffix}"),
        sent_suffix,
        1,
    )
}

/// Joins the reader of `fifo` once pg_basebackup has ended, releasing it from open() as often
/// as it takes: a reader thread that had not reached open() yet when pg_basebackup failed (a
/// fast failure right after the pipes were made) cannot be released before it gets there.
fn join_released<T>(reader: std::thread::JoinHandle<T>, fifo: &Path) -> std::thread::Result<T> {
    while !reader.is_finished() {
        release_reader(fifo);
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join()
}

/// Unblocks a reader still waiting in open() on `fifo` by opening and closing its write end.
fn release_reader(fifo: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo);
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

#[allow(clippy::too_many_arguments)] // one per pg_basebackup option it sets
fn spawn_pg_basebackup(
    bin: &Path,
    info: &ResolvedConnInfo,
    dir: &Path,
    label: &str,
    app_name: &str,
    checkpoint: Checkpoint,
    server_compress: Option<&str>,
    incremental: Option<&Path>,
) -> Result<Child, BackupError> {
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
            // On failure pg_basebackup would empty its directory, unlinking the pipes a reader
            // may still be waiting to open (it would wait forever); dbagent removes the work
            // directory itself.
            "--no-clean",
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
        .args(incremental.map(|m| {
            let mut arg = std::ffi::OsString::from("--incremental=");
            arg.push(m);
            arg
        }))
        .arg(format!("--dbname={}", conninfo(info, app_name)))
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

/// The connection string pg_basebackup gets (`--dbname`): where and as whom, never the
/// password (that goes through PGPASSWORD).
fn conninfo(info: &ResolvedConnInfo, app_name: &str) -> String {
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
    conninfo.join(" ")
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompressOn;
    use crate::pg::conninfo::ConnInfo;

    fn opts(compression: Compression, level: i32) -> BackupOptions {
        BackupOptions {
            label: None,
            compression,
            level,
            threads: 0,
            compress_on: CompressOn::Auto,
            checkpoint: Checkpoint::Fast,
            wal_timeout: Duration::from_secs(60),
            lock_wait: Duration::from_secs(0),
            bin_dir: None,
            backup_type: crate::backup::manifest::BackupType::Full,
        }
    }

    fn ts(oid: u32) -> Tablespace {
        Tablespace {
            oid,
            name: format!("ts{oid}"),
            location: format!("/srv/ts{oid}"),
        }
    }

    #[test]
    fn server_compress_spec_uses_default_levels_and_workers_only_when_parallel() {
        let zstd = opts(Compression::Zstd, 0);
        assert_eq!(server_compress_spec(&zstd, 1), "server-zstd:level=3");
        assert_eq!(
            server_compress_spec(&zstd, 4),
            "server-zstd:level=3,workers=4"
        );
        assert_eq!(
            server_compress_spec(&opts(Compression::Zstd, 9), 1),
            "server-zstd:level=9"
        );
        assert_eq!(
            server_compress_spec(&opts(Compression::Lz4, 0), 4),
            "server-lz4"
        );
        assert_eq!(
            server_compress_spec(&opts(Compression::Lz4, 5), 4),
            "server-lz4:level=5"
        );
        assert_eq!(
            server_compress_spec(&opts(Compression::Gzip, 0), 1),
            "server-gzip:level=6"
        );
        assert_eq!(server_compress_spec(&opts(Compression::None, 0), 1), "none");
    }

    #[test]
    fn archives_are_base_then_one_per_tablespace_with_the_suffix_the_server_sends() {
        let names = |suffix| {
            archives(&[ts(16390), ts(16400)], suffix)
                .into_iter()
                .map(|(n, t)| (n, t.map(|t| t.oid)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(""),
            vec![
                ("base.tar".to_string(), None),
                ("16390.tar".to_string(), Some(16390)),
                ("16400.tar".to_string(), Some(16400)),
            ]
        );
        assert_eq!(names(".zst")[0].0, "base.tar.zst");
        assert_eq!(names(".zst")[2].0, "16400.tar.zst");
    }

    #[test]
    fn stored_names_carry_the_repository_suffix_once_whoever_compressed() {
        // dbagent compresses: the pipe carries plain tar.
        assert_eq!(
            stored_name("base.tar", Compression::Zstd, ""),
            "base.tar.zst"
        );
        assert_eq!(
            stored_name("16390.tar", Compression::Lz4, ""),
            "16390.tar.lz4"
        );
        assert_eq!(stored_name("base.tar", Compression::None, ""), "base.tar");
        // The server compresses: the pipe is already named after the algorithm.
        assert_eq!(
            stored_name("base.tar.zst", Compression::Zstd, ".zst"),
            "base.tar.zst"
        );
        assert_eq!(
            stored_name("16390.tar.lz4", Compression::Lz4, ".lz4"),
            "16390.tar.lz4"
        );
    }

    #[test]
    fn conninfo_quotes_values_and_never_carries_the_password() {
        let info = ConnInfo::parse(
            "host=/var/run/postgresql port=5433 user=o'brien password=secret sslmode=require \
             sslrootcert=/etc/ca.pem connect_timeout=3 dbname=app",
        )
        .and_then(|c| c.resolve(&|_| None))
        .expect("conninfo");
        assert_eq!(
            conninfo(&info, "dbagent-backup-42"),
            "host='/var/run/postgresql' port=5433 user='o\\'brien' sslmode=require \
             application_name=dbagent-backup-42 sslrootcert='/etc/ca.pem' connect_timeout=3"
        );
    }

    #[test]
    fn quote_escapes_backslashes_and_quotes() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote(r"a\b'c"), r"'a\\b\'c'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn last_lines_prefers_errors_else_the_last_three() {
        let log = |lines: &[&str]| Mutex::new(lines.iter().map(|l| l.to_string()).collect());
        assert_eq!(
            last_lines(&log(&[
                "pg_basebackup: initiating base backup",
                "pg_basebackup: error: could not connect",
                "pg_basebackup: removing data directory",
                "FATAL: role \"x\" does not exist",
            ])),
            "pg_basebackup: error: could not connect; FATAL: role \"x\" does not exist"
        );
        assert_eq!(last_lines(&log(&["a", "b", "c", "d"])), "b; c; d");
        assert_eq!(last_lines(&log(&[])), "");
    }
}
