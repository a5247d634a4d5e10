//! Durable, atomic file creation: write to a hidden temp name in the target directory, fsync,
//! link to the final name (which fails if the name exists, so nothing is ever overwritten),
//! remove the temp name, fsync the directory. A crash leaves either nothing or the whole file
//! under its final name; a leftover temp file starts with `.` and is ignored by every reader.
//!
//! Ownership: when dbagent runs as root (`sudo dbagent backup`), everything it creates takes
//! the owner of the directory it is created in, so the repository stays writable by the
//! PostgreSQL OS user that runs archive_command.

/// Durable writes of local files that are not repository objects (the restore marker in a
/// data directory being restored, its recovery settings): the same rules as the repository's,
/// for callers outside it. Repository objects go through [`super::Storage`].
pub mod local {
    pub use super::{inherit_owner, replace, sync_dir};
}

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What [`create_new`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// The file now exists under its final name, durably.
    Created,
    /// A file of that name already existed; nothing was written.
    AlreadyExists,
}

/// The hidden temp path used while writing `name` in `dir`.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// A temp file whose writer is still alive but that is older than this was left by a writer
/// that hangs (or a recycled PID); removing it only makes that writer fail and retry.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Removes the temp files ([`temp_path`]) of `names` in `dir` that a killed writer left
/// behind: those whose process is gone, and any older than [`STALE_TEMP_AGE`]. A temp file of
/// this process or of a live writer is kept. Best effort (a writer that exits meanwhile
/// removes its own); returns the paths removed.
pub fn remove_stale_temps(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some((stem, pid)) = file
            .to_str()
            .and_then(|f| f.strip_prefix('.'))
            .and_then(|f| f.strip_suffix(".tmp"))
            .and_then(|f| f.rsplit_once('.'))
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == own || !names.contains(&stem) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if (old || !process_alive(pid)) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Whether a process with this PID exists (owned by anyone).
fn process_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(Errno::ESRCH)
    )
}

/// Creates `dir/name` with the bytes `write` produces, durably and without ever replacing an
/// existing file. On any error the temp file is removed and nothing is visible under `name`.
pub fn create_new(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<Created> {
    let final_path = dir.join(name);
    let tmp = temp_path(dir, name);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        inherit_owner(&tmp, dir)?;
        match std::fs::hard_link(&tmp, &final_path) {
            Ok(()) => Ok(Created::Created),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::AlreadyExists),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = result?;
    sync_dir(dir)?;
    Ok(created)
}

/// Writes `dir/name`, replacing an existing file atomically (temp + fsync + rename + dir
/// fsync). For files that are rewritten on purpose (catalogs), never for WAL or backups.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(dir, name);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        inherit_owner(&tmp, dir)?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// fsyncs a directory so that entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry was added.
pub fn create_dir_all_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        inherit_owner(dir, parent)?;
        sync_dir(parent)?;
    }
    Ok(())
}

/// When running as root, gives `path` the owner of `dir` (unless that is root too).
pub fn inherit_owner(path: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let meta = std::fs::metadata(dir)?;
    if meta.uid() == 0 && meta.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_new_never_overwrites_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = create_new(dir.path(), "a", |f| f.write_all(b"one")).unwrap();
        assert_eq!(r, Created::Created);
        let r = create_new(dir.path(), "a", |f| f.write_all(b"two")).unwrap();
        assert_eq!(r, Created::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        let err = create_new(dir.path(), "b", |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a")]);
    }

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let files = [
            format!(".seg.zst.{dead}.tmp"),
            format!(".seg.zst.{}.tmp", live.id()),
            format!(".seg.zst.{}.tmp", std::process::id()),
            format!(".other.{dead}.tmp"),
            "seg.zst".to_string(),
        ];
        for f in &files {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let removed = remove_stale_temps(dir.path(), &["seg.zst", "seg"]);
        let mut live = live;
        let _ = live.kill();
        let _ = live.wait();
        assert_eq!(removed, vec![dir.path().join(&files[0])]);
        for f in &files[1..] {
            assert!(dir.path().join(f).exists(), "{f} was removed");
        }
    }
}
