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
pub(super) struct PhaseProbe {
    waiting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

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

    pub(super) fn waiting_for_wal(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Drop for PhaseProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
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
