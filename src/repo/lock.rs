//! The repository locks: runs that must not overlap (two backups, a backup and an expire) take
//! an exclusive lock on `REPO/lock`; a second run waits up to `repository.lock_wait` and then
//! fails with a message naming the holder. Runs that read a backup and its WAL for a long
//! time (a drill) hold `REPO/lock.use` shared, which only a run that deletes (expire) takes
//! exclusively: expire cannot remove what a drill is restoring, and a drill never stops a
//! backup. The kernel releases a lock when its holder dies, so a killed run never leaves the
//! repository locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::RepoError;

/// Held while the lock is held; dropping it releases the lock.
#[derive(Debug)]
pub struct RepoLock {
    file: File,
    path: PathBuf,
    /// Other readers may still hold it: the holder text is left for them.
    shared: bool,
}

impl RepoLock {
    /// Takes the exclusive lock for `what` (e.g. "backup"), waiting up to `wait`.
    pub fn acquire(path: &Path, what: &str, wait: Duration) -> Result<RepoLock, RepoError> {
        RepoLock::take(path, what, wait, false)
    }

    /// Takes the lock shared with other readers for `what` (e.g. "drill"), waiting up to
    /// `wait` for an exclusive holder to finish.
    pub fn acquire_shared(path: &Path, what: &str, wait: Duration) -> Result<RepoLock, RepoError> {
        RepoLock::take(path, what, wait, true)
    }

    fn take(path: &Path, what: &str, wait: Duration, shared: bool) -> Result<RepoLock, RepoError> {
        let io = |source| RepoError::Io {
            path: path.to_path_buf(),
            action: "open the repository lock",
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if let Some(dir) = path.parent() {
            super::durable::inherit_owner(path, dir).map_err(io)?;
        }
        let deadline = Instant::now() + wait;
        loop {
            let attempt = if shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match attempt {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        let mut holder = String::new();
                        let _ = file.read_to_string(&mut holder);
                        return Err(RepoError::Locked {
                            path: path.to_path_buf(),
                            what: what.to_string(),
                            holder: holder.trim().to_string(),
                            waited: wait,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let holder = format!(
            "{what} (pid {}, since {})",
            std::process::id(),
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or(jiff::Timestamp::now())
        );
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.write_all(holder.as_bytes());
        Ok(RepoLock {
            file,
            path: path.to_path_buf(),
            shared,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if !self.shared {
            let _ = self.file.set_len(0);
        }
        let _ = self.file.unlock();
    }
}
