//! Running pg_basebackup: its command line (connection, checkpoint, server-side compression),
//! supervising one run (pipes in place, one stream thread per archive, progress, the wait for
//! WAL archiving, errors from its stderr), and finding the binary of the server's version.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::stream::StreamJob;
use super::watch::{FifoGate, GateError, PhaseProbe};
use super::{BackupError, BackupOptions, Progress, ServerFacts, io_err};
use crate::backup::manifest::BackupFile;
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

/// Unblocks a reader still waiting in open() on `fifo` by opening and closing its write end.
fn release_reader(fifo: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo);
}

pub(super) fn kill(pid: u32) {
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
