//! What dbagent watches while pg_basebackup runs: its work directory, to put the named pipes
//! in place the moment it has checked that the directory is empty (`FifoGate`), and the
//! server's side of the backup, to tell a wait for WAL archiving from a stall (`PhaseProbe`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::error::{BackupError, io_err};
use crate::pg::PgTarget;
use crate::repo::local;

/// Why the pipes could not be put in place.
pub(super) enum GateError {
    /// pg_basebackup created one of its files first.
    Lost(String),
    /// pg_basebackup ended before checking its directory.
    Exited(std::process::ExitStatus),
    Io(io::Error),
}

/// Creates the named pipes the moment pg_basebackup has checked that its directory is empty
/// (the close of that directory, seen through inotify), long before it has connected to the
/// server and opens its first archive.
pub(super) struct FifoGate {
    rx: mpsc::Receiver<Result<(), GateError>>,
    cancel: Arc<AtomicBool>,
    dir: PathBuf,
}

impl FifoGate {
    pub(super) fn arm(dir: &Path, fifos: Vec<PathBuf>) -> Result<FifoGate, BackupError> {
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
                                Ok(()) => local::inherit_owner(f, &owner_dir).map_err(GateError::Io),
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
    pub(super) fn wait(&self, child: &mut Child) -> Result<(), GateError> {
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
///
/// It also shortens that wait. PostgreSQL checks whether the segment is archived once a
/// second (`do_pg_backup_stop` sleeps on its latch for 1 s between checks), so every backup
/// would end up to a second after its WAL is safe. When the archiver's count of archived
/// files moves while the server waits, the probe wakes the backup's walsender with SIGHUP
/// (it sets the process's latch; the walsender then rechecks at once, and rereads its
/// configuration files, which changes nothing). Only a process that is provably that
/// walsender is signalled: see [`wake_walsender`].
pub(super) struct PhaseProbe {
    waiting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// How often the probe asks the server while the backup streams.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How often while the server waits for WAL archiving (to wake it soon after).
const PROBE_WAITING_EVERY: Duration = Duration::from_millis(25);

impl PhaseProbe {
    pub(super) fn start(target: PgTarget, app_name: String) -> PhaseProbe {
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
                // The archived count the walsender was last woken for (None: not yet).
                let mut woken_for: Option<i64> = None;
                let mut can_wake = true;
                while !s.load(Ordering::Relaxed) {
                    let row = client
                        .query_opt(
                            "SELECT p.phase, p.pid, \
                             (SELECT archived_count FROM pg_stat_archiver) \
                             FROM pg_stat_progress_basebackup p \
                             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
                            &[&app_name],
                        )
                        .await;
                    let mut is_waiting = false;
                    if let Ok(Some(row)) = row {
                        let phase: Option<String> = row.get(0);
                        let pid: Option<i32> = row.get(1);
                        let archived: Option<i64> = row.get(2);
                        is_waiting = phase
                            .as_deref()
                            .is_some_and(|p| p.starts_with("waiting for wal archiving"));
                        w.store(is_waiting, Ordering::Relaxed);
                        if is_waiting
                            && can_wake
                            && let (Some(pid), Some(n)) = (pid, archived)
                            && woken_for != Some(n)
                        {
                            woken_for = Some(n);
                            can_wake = wake_walsender(pid);
                        }
                    }
                    tokio::time::sleep(if is_waiting {
                        PROBE_WAITING_EVERY
                    } else {
                        PROBE_EVERY
                    })
                    .await;
                }
            });
        });
        PhaseProbe { waiting, stop }
    }

    pub(super) fn waiting_for_wal(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Drop for PhaseProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends SIGHUP to the walsender `pid` (as the server numbers it) if, and only if, this host's
/// process of that number is a PostgreSQL walsender whose parent runs the same program (its
/// postmaster). dbagent in another PID namespace (a container without a shared process
/// namespace), or without the right to signal it, sees no such process or gets EPERM: then
/// nothing is sent and false is returned (do not try again); the server notices within its
/// own one-second poll.
pub(super) fn wake_walsender(pid: i32) -> bool {
    if !is_walsender(pid) {
        tracing::debug!(
            pid,
            "not waking the backup's walsender: no such walsender visible from here"
        );
        return false;
    }
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    ) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(pid, error = %e, "could not wake the backup's walsender");
            false
        }
    }
}

/// Whether `/proc/PID` is a PostgreSQL walsender: its title says so (`postgres: [cluster:]
/// walsender ...`) and its parent runs the same executable.
pub fn is_walsender(pid: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let title = String::from_utf8_lossy(&cmdline);
    if !title.starts_with("postgres:") || !title.contains("walsender") {
        return false;
    }
    let Some(ppid) = std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .as_deref()
        .and_then(parent_pid)
    else {
        return false;
    };
    let exe = |p: &Path| std::fs::read_link(p.join("exe")).ok();
    match (exe(&proc_dir), exe(&PathBuf::from(format!("/proc/{ppid}")))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The parent PID from the text of `/proc/PID/stat` (`pid (comm) state ppid ...`; comm may
/// hold spaces and parentheses, so read after the last `)`).
fn parent_pid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Asks pg_basebackup (by PID) to stop: SIGTERM, best effort.
pub(super) fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_reads_past_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(parent_pid("4242 (postgres) S 17 4242 4242 0 -1"), Some(17));
        assert_eq!(parent_pid("7 (a (b) c) R 1 7 7 0"), Some(1));
        assert_eq!(parent_pid("garbage"), None);
        assert_eq!(parent_pid("9 (x) S notanumber"), None);
    }

    #[test]
    fn only_a_postgres_walsender_is_ever_signalled() {
        // This test process is not a walsender: it must not be signalled (SIGHUP would end it).
        assert!(!is_walsender(std::process::id() as i32));
        assert!(!wake_walsender(std::process::id() as i32));
        // init, and PIDs that cannot exist.
        assert!(!is_walsender(1));
        assert!(!is_walsender(0));
        assert!(!is_walsender(-5));
        assert!(!is_walsender(i32::MAX));
    }
}
