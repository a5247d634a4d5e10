//! Point-in-time restore: [`plan::make`] computes and proves a [`plan::RestorePlan`] without
//! writing anything; [`execute`] extracts the backup and writes the recovery settings;
//! [`start_and_follow`] starts the restored server as its data directory's owner, follows
//! recovery through its log and reports where it ended. `dbagent restore`, `drill` and the
//! guided restore all go through these three steps.
//!
//! Layer: operation. Uses: backup, pg, repo, units, wal. Used by: drill.

pub mod chain;
pub mod delta;
pub mod extract;
pub mod guided;
pub mod plan;
pub mod points;
pub mod recovery;
pub mod target;
pub mod timeline;
pub mod window;

use std::io::{self, BufRead, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::manifest;
use crate::repo::Repo;
use crate::wal::Lsn;
use plan::{Action, RestorePlan};

pub use plan::{PlanError, Request};

/// Why a restore failed after its plan was proven.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{source}; {cleanup}")]
    Extract {
        source: extract::ExtractError,
        cleanup: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Recovery(String),
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> RestoreError + 'a {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// What [`execute`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Executed {
    pub files: Vec<String>,
    pub members: u64,
    pub stored_bytes: u64,
    pub seconds: f64,
}

/// Removes everything inside `dir` (not `dir` itself).
fn empty_dir(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Creates `dir` (mode 0700) and its parents.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Hands everything under `dir` (and `dir`) to `uid:gid`, not following symlinks.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Carries out `plan`: extracts the backup (verifying every archive's checksum as it goes),
/// points tablespaces at their locations, writes the recovery settings and hands the files to
/// the data directory's owner. On any failure what was written is removed again.
pub fn execute(
    repo: &Repo,
    plan: &RestorePlan,
    progress: &mut dyn FnMut(&str),
) -> Result<Executed, RestoreError> {
    let started = Instant::now();
    // The plan was proven moments ago; the one thing that could have changed meanwhile and
    // must never be overwritten is a server starting in the directory.
    if let Some(pid) = plan::running_postmaster(&plan.to) {
        return Err(PlanError::InUse {
            dir: plan.to.clone(),
            pid,
        }
        .into());
    }
    // A delta plan keeps the directory's files: extracting over them (and emptying the
    // directory on failure) is not what it proved.
    if plan.delta.is_some() {
        return Err(RestoreError::Start(format!(
            "the plan for {} is a --delta plan: carry it out with restore::delta::execute",
            plan.to.display()
        )));
    }
    if plan.replaces_existing {
        progress(&format!(
            "removing the current contents of {} (--force)",
            plan.to.display()
        ));
        empty_dir(&plan.to).map_err(io_err(&plan.to, "empty (--force)"))?;
    }
    let result = extract_all(repo, plan, progress);
    match result {
        Ok(mut done) => {
            done.seconds = started.elapsed().as_secs_f64();
            Ok(done)
        }
        Err(e) => {
            let mut failed = Vec::new();
            for dir in std::iter::once(&plan.to).chain(plan.tablespaces.iter().map(|t| &t.location))
            {
                if let Err(err) = empty_dir(dir) {
                    failed.push(format!("{}: {err}", dir.display()));
                }
            }
            let cleanup = if failed.is_empty() {
                format!("nothing was left in {}", plan.to.display())
            } else {
                format!(
                    "could not remove what was written ({}); remove it by hand",
                    failed.join(", ")
                )
            };
            Err(e.with_cleanup(cleanup))
        }
    }
}

impl RestoreError {
    /// A failure while writing the files, with what became of what was written (`cleanup`);
    /// other errors are returned as they are.
    pub(crate) fn with_cleanup(self, cleanup: String) -> RestoreError {
        match self {
            RestoreError::Extract { source, .. } => RestoreError::Extract { source, cleanup },
            RestoreError::Io {
                path,
                action,
                source,
            } => RestoreError::Extract {
                source: extract::ExtractError::Io {
                    path,
                    action,
                    source,
                },
                cleanup,
            },
            other => other,
        }
    }
}

/// How many stored files a restore downloads and extracts at once.
const EXTRACT_PARALLEL: usize = 4;

/// Streams one stored file of backup `id` down and extracts it into `dest`, verifying its
/// SHA-256 as it goes.
fn extract_file(
    repo: &Repo,
    id: &str,
    compression: crate::repo::Compression,
    file: &manifest::BackupFile,
    dest: &Path,
) -> Result<extract::Extracted, extract::ExtractError> {
    let key = manifest::backup_key(id, &file.name);
    let opened = match repo.storage().get(&key) {
        Ok(Some(raw)) => Ok(raw),
        Ok(None) => Err(extract::ExtractError::Io {
            path: repo.locate(&key),
            action: "open",
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }),
        Err(crate::repo::RepoError::Io { path, source, .. }) => Err(extract::ExtractError::Io {
            path,
            action: "open",
            source,
        }),
        Err(e) => Err(extract::ExtractError::Io {
            path: repo.locate(&key),
            action: "open",
            source: e.into(),
        }),
    };
    opened.and_then(|raw| extract::extract_archive(raw, file, compression, dest))
}

fn extract_all(
    repo: &Repo,
    plan: &RestorePlan,
    progress: &mut dyn FnMut(&str),
) -> Result<Executed, RestoreError> {
    let m = &plan.manifest;
    create_private_dir(&plan.to).map_err(io_err(&plan.to, "create"))?;
    for t in &plan.tablespaces {
        create_private_dir(&t.location).map_err(io_err(&t.location, "create"))?;
    }
    // An incremental backup: the full is streamed into the target and the incrementals applied in place.
    let mut done = match &plan.chain {
        Some(c) => {
            let d = chain::execute(repo, &plan.to, c, progress).map_err(|e| match e {
                chain::ExecError::Extract(source) => RestoreError::Extract {
                    source,
                    cleanup: String::new(),
                },
                chain::ExecError::Io {
                    path,
                    action,
                    source,
                } => RestoreError::Io {
                    path,
                    action,
                    source,
                },
                chain::ExecError::Failed(msg) => RestoreError::Recovery(msg),
            })?;
            Executed {
                files: d.files,
                members: d.members,
                stored_bytes: d.stored_bytes,
                seconds: 0.0,
            }
        }
        None => Executed {
            files: Vec::new(),
            members: 0,
            stored_bytes: 0,
            seconds: 0.0,
        },
    };
    let files = if plan.chain.is_some() {
        &[][..]
    } else {
        &m.files[..]
    };
    // Each stored file is streamed down and extracted on its own thread (up to
    // EXTRACT_PARALLEL at once): an object store serves several downloads faster than one.
    let mut jobs = Vec::new();
    for file in files {
        if file.name == "backup_manifest" {
            continue;
        }
        let dest = match &file.tablespace {
            None => plan.to.clone(),
            Some(t) => plan
                .tablespaces
                .iter()
                .find(|p| p.oid == t.oid)
                .map(|p| p.location.clone())
                .ok_or_else(|| {
                    RestoreError::Recovery(format!(
                        "the plan has no location for tablespace {} (OID {})",
                        t.name, t.oid
                    ))
                })?,
        };
        jobs.push((file, dest));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut first_error = None;
    let mut extracted: Vec<Option<String>> = vec![None; jobs.len()];
    std::thread::scope(|scope| {
        for _ in 0..EXTRACT_PARALLEL.min(jobs.len()) {
            let tx = tx.clone();
            let (jobs, next, stop) = (&jobs, &next, &stop);
            scope.spawn(move || {
                use std::sync::atomic::Ordering;
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((file, dest)) = jobs.get(i) else {
                        return;
                    };
                    let t0 = Instant::now();
                    let r = extract_file(repo, &m.id, m.compression, file, dest);
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if tx.send((i, r, t0.elapsed())).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for (i, r, took) in rx {
            let (file, dest) = &jobs[i];
            match r {
                Ok(x) => {
                    progress(&format!(
                        "extracted {} into {} ({} members, SHA-256 verified, {})",
                        file.name,
                        dest.display(),
                        x.members,
                        crate::units::human_duration_of(took)
                    ));
                    done.members += x.members;
                    done.stored_bytes += x.stored_bytes;
                    extracted[i] = Some(x.file);
                }
                Err(source) => {
                    first_error.get_or_insert(RestoreError::Extract {
                        source,
                        cleanup: String::new(),
                    });
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    // In the manifest's order, whatever order they finished in.
    done.files.extend(extracted.into_iter().flatten());
    finish_files(plan)?;
    Ok(done)
}

/// The steps after the backup's files are in place, the same for every kind of restore:
/// tablespace_map pointed at the planned locations, the recovery settings, the restore marker,
/// and the files handed to the data directory's owner.
fn finish_files(plan: &RestorePlan) -> Result<(), RestoreError> {
    let m = &plan.manifest;
    let locations: Vec<(u32, PathBuf)> = plan
        .tablespaces
        .iter()
        .map(|t| (t.oid, t.location.clone()))
        .collect();
    extract::rewrite_tablespace_map(&plan.to, &locations)
        .map_err(io_err(&plan.to, "rewrite tablespace_map in"))?;
    recovery::write(&plan.to, &plan.settings, &m.id)
        .map_err(io_err(&plan.to, "write the recovery settings in"))?;
    // Tells wal-push, when this server archives a new timeline, that a restore created it
    // (and whether it is the cluster itself or a copy).
    crate::wal::timeline::write_marker(
        &plan.to,
        &crate::wal::timeline::RestoreMarker {
            backup: m.id.clone(),
            restored_at: jiff::Timestamp::now(),
            in_place: plan.in_place,
            archive: plan.archive,
        },
    )
    .map_err(io_err(&plan.to, "write the restore marker in"))?;
    if let Some(o) = &plan.owner {
        chown_tree(&plan.to, o.uid, o.gid).map_err(io_err(&plan.to, "chown"))?;
        for t in &plan.tablespaces {
            chown_tree(&t.location, o.uid, o.gid).map_err(io_err(&t.location, "chown"))?;
        }
    }
    Ok(())
}

/// The port a data directory's server listens on: the last `port` setting of
/// postgresql.auto.conf, else of postgresql.conf, else 5432.
pub fn configured_port(data: &Path) -> u16 {
    let last_port = |file: &str| -> Option<u16> {
        let text = std::fs::read_to_string(data.join(file)).ok()?;
        text.lines().rev().find_map(|l| {
            let l = l.split('#').next()?.trim();
            let (k, v) = l
                .split_once('=')
                .or_else(|| l.split_once(char::is_whitespace))?;
            (k.trim() == "port")
                .then(|| v.trim().trim_matches('\'').parse::<u16>().ok())
                .flatten()
        })
    };
    last_port("postgresql.auto.conf")
        .or_else(|| last_port("postgresql.conf"))
        .unwrap_or(5432)
}

/// Whether something holds TCP `port` on the loopback address.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
        || std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(300),
        )
        .is_ok()
}

/// Before `--start` without `--port`: when the port the restored server would use is held by
/// another server (the source, typically), picks a free loopback port and appends it to
/// postgresql.auto.conf. Returns `(busy, chosen)` when it moved.
pub fn move_off_busy_port(plan: &RestorePlan) -> Result<Option<(u16, u16)>, RestoreError> {
    if plan.settings.iter().any(|s| s.name == "port") {
        return Ok(None);
    }
    let busy = configured_port(&plan.to);
    if !port_in_use(busy) {
        return Ok(None);
    }
    let chosen = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| RestoreError::Start(format!("cannot find a free port: {e}")))?;
    let auto = plan.to.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&auto)
        .map_err(io_err(&auto, "open"))?;
    use std::io::Write;
    writeln!(
        f,
        "port = {chosen}    # dbagent restore --start: port {busy} is in use by another server"
    )
    .and_then(|()| f.sync_all())
    .map_err(io_err(&auto, "write"))?;
    Ok(Some((busy, chosen)))
}

/// The directory of a restored copy's own unix socket, next to its data directory
/// (`/srv/restored` → `/srv/restored.socket`): a copy must not put its socket in the
/// source's socket directory. `None` when the socket's path would be too long (108 bytes).
pub fn socket_dir(to: &Path) -> Option<PathBuf> {
    let mut name = to.file_name()?.to_os_string();
    name.push(".socket");
    let dir = to.with_file_name(name);
    (dir.as_os_str().len() + "/.s.PGSQL.65535".len() < 108).then_some(dir)
}

/// The socket directory the plan gives the restored server (`unix_socket_directories`).
fn planned_socket_dir(plan: &RestorePlan) -> Option<PathBuf> {
    plan.settings
        .iter()
        .rev()
        .find(|s| s.name == "unix_socket_directories")
        .map(|s| PathBuf::from(&s.value))
}

/// Creates the socket directory the plan gives the restored server, owned by the server's
/// OS user (mode 0755: the socket itself is reachable as PostgreSQL's default allows).
pub fn prepare_socket_dir(plan: &RestorePlan) -> Result<Option<PathBuf>, RestoreError> {
    let Some(dir) = planned_socket_dir(plan) else {
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&dir, "set the permissions of"))?;
    if let Some(o) = &plan.owner {
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(o.uid)),
            Some(nix::unistd::Gid::from_raw(o.gid)),
        )
        .map_err(|e| io_err(&dir, "change the owner of")(io::Error::from(e)))?;
    }
    Ok(Some(dir))
}

/// The authentication method of the first pg_hba.conf line for a connection of `kind`
/// (`local`, or `host` for TCP on loopback) to database `postgres` as `user`.
fn hba_method(hba: &str, kind: &str, user: &str) -> Option<String> {
    hba.lines().find_map(|l| {
        let f: Vec<&str> = l.split('#').next()?.split_whitespace().collect();
        let (t, db, u) = (*f.first()?, *f.get(1)?, *f.get(2)?);
        let type_ok = match kind {
            "local" => t == "local",
            _ => t.starts_with("host"),
        };
        let db_ok = db.split(',').any(|d| matches!(d, "all" | "postgres"));
        let user_ok = u.split(',').any(|x| x == "all" || x == user);
        if !(type_ok && db_ok && user_ok) {
            return None;
        }
        // `host` lines name an address before the method.
        let method = if t == "local" { f.get(3) } else { f.get(4) };
        method.map(|m| m.to_string())
    })
}

/// The psql command that connects to the restored server now listening on `port`: through
/// its own socket directory when it has one (else TCP on loopback), as the user the restored
/// pg_hba.conf lets in: the configured user (`conn_user`) when it trusts or asks a password,
/// the server's OS user for `peer`. A password method gets a note saying whose password.
pub fn psql_command(plan: &RestorePlan, port: u16, conn_user: Option<&str>) -> String {
    let os_user = plan.owner.as_ref().map(|o| o.user.clone()).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
    });
    let user = conn_user
        .map(str::to_string)
        .or_else(|| os_user.clone())
        .unwrap_or_else(|| "postgres".into());
    let hba = std::fs::read_to_string(plan.to.join("pg_hba.conf")).unwrap_or_default();
    let (host, kind) = match planned_socket_dir(plan) {
        Some(dir) => (dir.display().to_string(), "local"),
        None => ("127.0.0.1".to_string(), "host"),
    };
    let method = hba_method(&hba, kind, &user);
    let (user, sudo, note) = match method.as_deref() {
        Some("peer" | "ident") => {
            let os = os_user.unwrap_or_else(|| "postgres".into());
            let sudo = plan.owner.as_ref().map_or(String::new(), |o| {
                format!("sudo -u {} ", recovery::shell_quote(&o.user))
            });
            (os, sudo, String::new())
        }
        Some("md5" | "scram-sha-256" | "password") => (
            user.clone(),
            String::new(),
            format!(" (asks for the password of {user}, as on the source server)"),
        ),
        _ => (user, String::new(), String::new()),
    };
    let conninfo = format!("host={host} port={port} dbname=postgres user={user}");
    format!("{sudo}psql {}{note}", recovery::shell_quote(&conninfo))
}

/// The log file the restored server writes while dbagent follows it.
pub fn log_path(plan: &RestorePlan) -> PathBuf {
    plan.to.join("restore.log")
}

/// The command that starts the restored server, as a user would type it.
pub fn start_command(plan: &RestorePlan, pg_ctl: &Path) -> String {
    let sudo = match &plan.owner {
        Some(o) => format!("sudo -u {} ", recovery::shell_quote(&o.user)),
        None => String::new(),
    };
    format!(
        "{sudo}{} -D {} -l {} start",
        recovery::shell_quote(&pg_ctl.display().to_string()),
        recovery::shell_quote(&plan.to.display().to_string()),
        recovery::shell_quote(&log_path(plan).display().to_string())
    )
}

/// Where recovery ended, as the server reported it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// `promoted` (running, read-write), `paused` (running, in recovery), `shut_down`.
    pub state: String,
    pub reached_target: bool,
    pub lsn: Option<Lsn>,
    /// The time of the last transaction replayed, as the server logged it.
    pub last_transaction_time: Option<String>,
    pub timeline: u32,
    /// The server's line saying where it stopped (`recovery stopping before commit ...`).
    pub stop: Option<String>,
    pub segments_restored: u64,
    pub seconds: f64,
    pub log: PathBuf,
    pub port: Option<u16>,
}

/// What the log said so far.
#[derive(Debug, Default)]
struct LogState {
    restored: u64,
    /// Every WAL segment restored from the archive, by name.
    restored_segments: Vec<String>,
    last_restored: Option<String>,
    consistent: bool,
    stop: Option<String>,
    redo_done: Option<Lsn>,
    last_tx: Option<String>,
    new_tli: Option<u32>,
    archive_recovery_complete: bool,
    ready: bool,
    paused: bool,
    shutdown_at_target: bool,
    not_reached: bool,
    fatal: Vec<String>,
}

fn quoted(line: &str) -> Option<&str> {
    let start = line.find('"')? + 1;
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

fn lsn_after(line: &str, key: &str) -> Option<Lsn> {
    let rest = &line[line.find(key)? + key.len()..];
    let token: String = rest
        .trim_start()
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '/')
        .collect();
    Lsn::parse(&token)
}

impl LogState {
    fn feed(&mut self, line: &str) {
        if line.contains("restored log file \"") && line.contains("from archive") {
            self.restored += 1;
            self.last_restored = quoted(line).map(str::to_string);
            if let Some(name) = quoted(line)
                && name.len() == 24
            {
                self.restored_segments.push(name.to_string());
            }
        } else if line.contains("consistent recovery state reached") {
            self.consistent = true;
        } else if line.contains("recovery stopping ") {
            let at = line.find("recovery stopping ").unwrap_or(0);
            self.stop = Some(line[at..].trim().to_string());
        } else if line.contains("redo done at ") {
            self.redo_done = lsn_after(line, "redo done at ");
        } else if let Some(at) = line.find("last completed transaction was at log time ") {
            self.last_tx = Some(
                line[at + "last completed transaction was at log time ".len()..]
                    .trim()
                    .to_string(),
            );
        } else if let Some(at) = line.find("selected new timeline ID: ") {
            self.new_tli = line[at + "selected new timeline ID: ".len()..]
                .trim()
                .parse()
                .ok();
        } else if line.contains("archive recovery complete") {
            self.archive_recovery_complete = true;
        } else if line.contains("database system is ready to accept connections") {
            self.ready = true;
        } else if line.contains("pausing at the end of recovery")
            || line.contains("recovery has paused")
        {
            self.paused = true;
        } else if line.contains("shutdown at recovery target") {
            self.shutdown_at_target = true;
        }
        if line.contains("recovery ended before configured recovery target was reached") {
            self.not_reached = true;
        }
        if line.contains("FATAL:") || line.contains("PANIC:") {
            self.fatal.push(line.trim().to_string());
        }
    }
}

/// Whether the process `pid` is alive.
fn alive(pid: i32) -> bool {
    use nix::errno::Errno;
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(Errno::EPERM)
    ) && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Starts the restored server with `pg_ctl` as the data directory's owner and follows its
/// log until recovery ends: promoted, paused or shut down at the target (success when the
/// requested target was reached), or the server stopped (failure, with its FATAL lines).
pub fn start_and_follow(
    plan: &RestorePlan,
    pg_ctl: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, RestoreError> {
    let started = Instant::now();
    let log = log_path(plan);
    let mut cmd = Command::new(pg_ctl);
    cmd.arg("-D")
        .arg(&plan.to)
        .arg("-l")
        .arg(&log)
        .arg("-W")
        .arg("start")
        .current_dir(&plan.to)
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::null());
    if let Some(o) = &plan.owner {
        use std::os::unix::process::CommandExt;
        cmd.uid(o.uid).gid(o.gid);
        cmd.env("HOME", &plan.to);
    }
    let out = cmd
        .output()
        .map_err(|e| RestoreError::Start(format!("cannot run {}: {e}", pg_ctl.display())))?;
    if !out.status.success() {
        return Err(RestoreError::Start(format!(
            "{} start failed ({}): {}; the data directory {} is restored: fix the cause and run `{}`",
            pg_ctl.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            plan.to.display(),
            start_command(plan, pg_ctl)
        )));
    }
    let port = plan
        .settings
        .iter()
        .find(|s| s.name == "port")
        .and_then(|s| s.value.parse().ok());
    progress(&format!(
        "started PostgreSQL in {} (log {}), following recovery",
        plan.to.display(),
        log.display()
    ));
    let mut state = LogState::default();
    let mut offset = 0u64;
    let mut pid: Option<i32> = None;
    let mut last_report = Instant::now();
    let mut reported = 0u64;
    let mut gone_since: Option<Instant> = None;
    loop {
        // New log lines.
        if let Ok(mut f) = std::fs::File::open(&log)
            && f.seek(io::SeekFrom::Start(offset)).is_ok()
        {
            {
                let mut reader = io::BufReader::new(f);
                let mut line = String::new();
                while let Ok(n) = reader.read_line(&mut line) {
                    if n == 0 || !line.ends_with('\n') {
                        break;
                    }
                    offset += n as u64;
                    state.feed(&line);
                    line.clear();
                }
            }
        }
        if state.restored > reported && last_report.elapsed() >= Duration::from_secs(1) {
            progress(&format!(
                "replayed {} of about {} WAL segments (last {})",
                state.restored,
                plan.wal.segments,
                state.last_restored.as_deref().unwrap_or("?")
            ));
            reported = state.restored;
            last_report = Instant::now();
        }
        if pid.is_none() {
            pid = std::fs::read_to_string(plan.to.join("postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
        }
        let running = pid.is_some_and(alive);
        let promoted = state.ready && (state.archive_recovery_complete || state.new_tli.is_some());
        let done = promoted || (running && state.paused) || (state.shutdown_at_target && !running);
        if done || (!running && (pid.is_some() || started.elapsed() > Duration::from_secs(30))) {
            // Give the log a moment to be complete when the server has just exited.
            if !running && !done && gone_since.is_none() {
                gone_since = Some(Instant::now());
            }
            if done || gone_since.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
                return finish(plan, state, done, promoted, port, log, started);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finish(
    plan: &RestorePlan,
    state: LogState,
    done: bool,
    promoted: bool,
    port: Option<u16>,
    log: PathBuf,
    started: Instant,
) -> Result<Outcome, RestoreError> {
    let reached = match plan.target.kind {
        "latest" => promoted && !state.not_reached,
        "immediate" => state.stop.is_some() || (promoted && state.consistent),
        _ => state.stop.is_some() && !state.not_reached,
    };
    let state_name = if promoted {
        "promoted"
    } else if state.paused {
        "paused"
    } else if state.shutdown_at_target {
        "shut_down"
    } else {
        "stopped"
    };
    let outcome = Outcome {
        state: state_name.into(),
        reached_target: reached,
        lsn: state
            .stop
            .as_deref()
            .and_then(|s| lsn_after(s, "(LSN) "))
            .or(state.redo_done),
        last_transaction_time: state.last_tx.clone().or_else(|| {
            state
                .stop
                .as_deref()
                .and_then(|s| s.split_once(", time ").map(|(_, t)| t.trim().to_string()))
        }),
        timeline: state.new_tli.unwrap_or(plan.timeline.target_timeline),
        stop: state.stop.clone(),
        segments_restored: state.restored,
        seconds: started.elapsed().as_secs_f64(),
        log: log.clone(),
        port,
    };
    let off_path = if done {
        off_history(plan, &state)
    } else {
        None
    };
    if done && reached && off_path.is_none() {
        return Ok(outcome);
    }
    let why = if let Some(off) = off_path {
        format!(
            "recovery left the chosen history (timeline {}, path {}): {off}; the restored data is not from the history that held {}",
            plan.timeline.target_timeline,
            plan.timeline
                .path
                .iter()
                .map(|s| s.timeline.to_string())
                .collect::<Vec<_>>()
                .join(" -> "),
            plan.target.description
        )
    } else if state.not_reached {
        format!(
            "recovery ended before reaching {}: the archive has no WAL beyond {} (the target is later than the newest archived WAL, or on another timeline)",
            plan.target.description,
            state.last_restored.as_deref().unwrap_or("the backup")
        )
    } else if let Some(f) = state.fatal.last() {
        format!("recovery aborted: {f}")
    } else if done {
        format!(
            "recovery ended ({state_name}) without the server saying it reached {}",
            plan.target.description
        )
    } else {
        "the server stopped during recovery without a FATAL message".into()
    };
    let tail = if done && plan.action != Some(Action::Shutdown) {
        "; the server is still running: stop it with pg_ctl stop before restoring again".to_string()
    } else {
        "; the server is stopped and was not promoted. Fix the cause and resume recovery with pg_ctl start, or restore again".to_string()
    };
    Err(RestoreError::Recovery(format!(
        "{why}{tail} (log {})",
        log.display()
    )))
}

/// Whether recovery replayed WAL off the plan's timeline path: a segment read from another
/// timeline than the path assigns to it, or a new timeline whose history does not continue
/// the path. `None` when it stayed on the path.
fn off_history(plan: &RestorePlan, state: &LogState) -> Option<String> {
    use crate::wal::timeline::timeline_of;
    let path = &plan.timeline.path;
    let seg = plan.manifest.wal_segment_size;
    for name in &state.restored_segments {
        let Some(w) = crate::wal::WalName::parse(name) else {
            continue;
        };
        let want = timeline_of(path, w.segno(seg), seg);
        if w.tli != want {
            return Some(format!(
                "segment {name} was replayed, but the path reads that position from timeline {want}"
            ));
        }
    }
    let new_tli = state.new_tli?;
    let history = plan
        .to
        .join("pg_wal")
        .join(format!("{new_tli:08X}.history"));
    let text = std::fs::read_to_string(&history).ok()?;
    let lines = crate::wal::timeline::parse_history(&text).ok()?;
    let Some(&(parent, _)) = lines.last() else {
        return Some(format!("{} is empty", history.display()));
    };
    if !path.iter().any(|s| s.timeline == parent) {
        return Some(format!(
            "the new timeline {new_tli} branched from timeline {parent}, which is not on the path"
        ));
    }
    for (tli, switch) in &lines[..lines.len() - 1] {
        if !path
            .iter()
            .any(|s| s.timeline == *tli && s.end == Some(*switch))
        {
            return Some(format!(
                "the new timeline's history passes timeline {tli} until {switch}, which the path does not"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_pg_hba_line_decides_how_psql_connects() {
        let hba = "# comment\nlocal replication all trust\nlocal all postgres peer\nlocal all all scram-sha-256\nhost all all 127.0.0.1/32 md5\n";
        assert_eq!(
            hba_method(hba, "local", "postgres").as_deref(),
            Some("peer")
        );
        assert_eq!(
            hba_method(hba, "local", "dbagent").as_deref(),
            Some("scram-sha-256")
        );
        assert_eq!(hba_method(hba, "host", "dbagent").as_deref(), Some("md5"));
        assert_eq!(hba_method("", "local", "x"), None);
        assert_eq!(
            socket_dir(Path::new("/srv/restored")),
            Some(PathBuf::from("/srv/restored.socket"))
        );
        assert_eq!(socket_dir(&Path::new("/x").join("y".repeat(100))), None);
    }

    #[test]
    fn a_segment_replayed_off_the_chosen_path_is_caught() {
        use crate::restore::timeline::tests::{build, facts, request};
        // Timeline 2, a copy, branched from 1 at segment 3; timeline 1 ran on.
        let tl = build(&[(0, 2, true, 8, None)]);
        let plan = plan::decide(
            &request(plan::Target::Latest, plan::TimelineChoice::Latest),
            &facts(tl),
        )
        .unwrap();
        assert_eq!(plan.timeline.target_timeline, 1);
        let mut s = LogState::default();
        for seg in ["000000010000000000000002", "000000010000000000000004"] {
            s.feed(&format!("LOG:  restored log file \"{seg}\" from archive"));
        }
        assert_eq!(off_history(&plan, &s), None);
        s.feed("LOG:  restored log file \"000000020000000000000005\" from archive");
        let off = off_history(&plan, &s).unwrap();
        assert!(off.contains("000000020000000000000005"), "{off}");
    }

    #[test]
    fn reads_the_server_log() {
        let mut s = LogState::default();
        for line in [
            "2026-11-21 10:00:00.000 UTC [1] LOG:  restored log file \"000000010000000000000003\" from archive",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  consistent recovery state reached at 0/3000100",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  recovery stopping after WAL location (LSN) \"0/3000208\"",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  redo done at 0/3000208 system usage: CPU: user: 0.00 s",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  last completed transaction was at log time 2026-11-21 09:59:00.1+00",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  selected new timeline ID: 2",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  archive recovery complete",
            "2026-11-21 10:00:00.000 UTC [1] LOG:  database system is ready to accept connections",
        ] {
            s.feed(line);
        }
        assert_eq!(s.restored, 1);
        assert_eq!(s.last_restored.as_deref(), Some("000000010000000000000003"));
        assert!(s.consistent && s.ready && s.archive_recovery_complete);
        assert_eq!(s.new_tli, Some(2));
        assert_eq!(s.redo_done, Some(Lsn(0x3000208)));
        assert_eq!(
            lsn_after(s.stop.as_deref().unwrap(), "(LSN) "),
            Some(Lsn(0x3000208))
        );
        assert_eq!(s.last_tx.as_deref(), Some("2026-11-21 09:59:00.1+00"));
    }
}
