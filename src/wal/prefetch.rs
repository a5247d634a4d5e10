//! WAL prefetch for `wal-get`: while PostgreSQL replays segment N, the next segments are
//! already fetched, decompressed and checked in a spool directory, so that a later `wal-get`
//! is a rename and replay, not archive retrieval, sets the pace of recovery.
//!
//! wal-get is a short-lived process that PostgreSQL waits for, so the fetching is done by a
//! detached worker (`dbagent wal-prefetch-worker`, its own session, no stdio) that wal-get
//! starts and never waits for. One worker at a time: it holds `SPOOL/lock`; wal-get records
//! the segment it was asked for in `SPOOL/want`, and a running worker picks that up when it
//! finishes a pass.
//!
//! A spooled file is never trusted on its own. Its name records the identity of the stored
//! copy it came from (compression, inode, size, mtime); wal-get hands it out only when the
//! archive still holds that very file (the same lookup, with the same exit codes, as without
//! prefetch), and when its size and page header match the segment asked for. On any doubt it
//! is removed and the segment is fetched from the archive. Worker files are fsynced before
//! they get their final name, so a crash cannot leave a torn file under a valid name.
//!
//! The spool is removed when recovery ends, so that a promoted server does not keep up to
//! `depth` segments it will never read in its pg_wal. The worker stays up to [`LINGER`] after
//! the last new request (a later wal-get hands it the next request instead of starting another
//! worker), watching the data directory it runs in: when the server was in recovery and its
//! signal files are gone (promoted), it removes the spool. What it misses (a server promoted
//! long after its last archive fetch) the next `wal-push` removes: archive_command runs on a
//! primary, and wal-push calls [`remove_spool`] when its data directory is not in recovery.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::datadir::{DataDir, Mode};
use super::find;
use super::header::{LONG_HEADER_LEN, SegmentHeader};
use super::name::{WalFileKind, WalName, segment_name};
use crate::repo::{Compression, Meta, Repo, RepoInfo, compress};

/// The spool directory's default name, beside the file PostgreSQL asks for (in pg_wal).
pub const SPOOL_NAME: &str = "dbagent-prefetch";
const LOCK_FILE: &str = "lock";
const WANT_FILE: &str = "want";
/// Temp files older than this were left by a worker that died; they are removed.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// How long a worker stays after the last new request, for the next one and to notice the end
/// of recovery.
pub const LINGER: Duration = Duration::from_secs(30);
/// How often a lingering worker looks for a new request and at the signal files.
const POLL: Duration = Duration::from_millis(200);
/// At most this many passes per worker (a wal-get that keeps asking gets a new one then).
const MAX_PASSES: usize = 10_000;

/// Where prefetched segments for `dest` wait: the configured directory, or
/// `<directory of dest>/dbagent-prefetch`; always absolute (the worker may run elsewhere).
pub fn spool_dir(dest: &Path, configured: Option<&Path>) -> PathBuf {
    let dir = match configured {
        Some(d) => d.to_path_buf(),
        None => dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(SPOOL_NAME),
    };
    if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or(dir)
    }
}

/// The identity of one stored copy in the archive: a spooled file is valid only while the
/// archive still holds exactly this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredId {
    pub compression: Compression,
    /// [`Meta::version`].
    pub version: String,
}

impl StoredId {
    pub fn of(meta: &Meta, compression: Compression) -> StoredId {
        StoredId {
            compression,
            version: meta.version.clone(),
        }
    }

    /// The spool file name of segment `name` fetched from this stored copy.
    fn entry_name(&self, name: &str) -> String {
        format!("{name}.{}.{}", self.compression.as_str(), self.version)
    }
}

/// The segment a spool entry holds (its first 24 characters), if it is an entry at all.
fn entry_segment(file: &str) -> Option<&str> {
    if file.starts_with('.') || file.len() <= 25 || file.as_bytes()[24] != b'.' {
        return None;
    }
    let seg = &file[..24];
    WalName::parse(seg)
        .filter(|w| w.kind == WalFileKind::Segment)
        .map(|_| seg)
}

/// The `depth` segments after `name` on its timeline.
pub fn window(name: &WalName, depth: u32, seg_size: u64) -> Vec<String> {
    let segno = name.segno(seg_size);
    (1..=u64::from(depth))
        .map(|i| segment_name(name.tli, segno + i, seg_size))
        .collect()
}

/// Checks that `len` bytes starting with `head` are segment `name` of this repository's
/// cluster: the right size, a long page header with the cluster's system identifier, the
/// segment size and the WAL address the name implies, on the name's timeline or an earlier one.
pub fn check_segment(head: &[u8], len: u64, name: &WalName, info: &RepoInfo) -> Result<(), String> {
    let seg_size = info.wal_segment_size;
    if len != seg_size {
        return Err(format!("{len} bytes, a segment has {seg_size}"));
    }
    let h = SegmentHeader::parse(head).map_err(|e| e.to_string())?;
    if h.system_identifier.to_string() != info.system_identifier {
        return Err(format!(
            "system identifier {} is not the repository's {}",
            h.system_identifier, info.system_identifier
        ));
    }
    if u64::from(h.seg_size) != seg_size {
        return Err(format!("segment size {} in the header", h.seg_size));
    }
    let addr = name.segno(seg_size) * seg_size;
    // The first segment of a new timeline starts as a copy of the old timeline's, so its
    // first page carries the older timeline: a header timeline after the name's is wrong, an
    // earlier one is not (the rule wal-push applies too).
    if h.page_addr != addr || h.tli > name.tli {
        return Err(format!(
            "the header is of timeline {} at {:X}, the name says timeline {} at {addr:X}",
            h.tli, h.page_addr, name.tli
        ));
    }
    Ok(())
}

/// Hands out the spooled copy of `name` made from the stored copy `id` by renaming it to
/// `dest`. `Ok(None)` when there is none or it does not pass the checks (it is removed
/// then); other spooled copies of `name` (from a replaced stored file) are removed as well.
pub fn take(
    spool: &Path,
    name: &WalName,
    id: &StoredId,
    info: &RepoInfo,
    dest: &Path,
) -> io::Result<Option<u64>> {
    let wanted = id.entry_name(&name.name);
    let entries = match std::fs::read_dir(spool) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut found = None;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if entry_segment(file) != Some(name.name.as_str()) {
            continue;
        }
        if file == wanted {
            found = Some(entry.path());
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let Some(path) = found else { return Ok(None) };
    let verdict = (|| -> io::Result<Result<u64, String>> {
        let mut f = File::open(&path)?;
        let len = f.metadata()?.len();
        let mut head = [0u8; LONG_HEADER_LEN];
        f.read_exact(&mut head)?;
        Ok(check_segment(&head, len, name, info).map(|()| len))
    })();
    let len = match verdict {
        Ok(Ok(len)) => len,
        Ok(Err(why)) => {
            tracing::warn!(file = %path.display(), "Discarding a prefetched segment: {why}");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), "Discarding a prefetched segment: {e}");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
    };
    match std::fs::rename(&path, dest) {
        Ok(()) => Ok(Some(len)),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            // A prefetch_dir on another filesystem: copy beside dest, then rename.
            let tmp = temp_beside(dest);
            let copied = std::fs::copy(&path, &tmp).and_then(|n| {
                std::fs::rename(&tmp, dest)?;
                Ok(n)
            });
            let _ = std::fs::remove_file(&path);
            match copied {
                Ok(n) => Ok(Some(n)),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    }
}

fn temp_beside(dest: &Path) -> PathBuf {
    let file = dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal");
    dest.with_file_name(format!(".{file}.dbagent.{}.tmp", std::process::id()))
}

/// Removes what the spool no longer needs after `requested` was asked for: every entry that is
/// not one of the next `depth` segments, and temp files a dead worker left. Best effort.
pub fn clean(spool: &Path, requested: &WalName, depth: u32, seg_size: u64) {
    let keep = window(requested, depth, seg_size);
    let Ok(entries) = std::fs::read_dir(spool) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let stale = match entry_segment(file) {
            Some(seg) => !keep.iter().any(|k| k == seg),
            None => {
                file.starts_with('.')
                    && file.ends_with(".tmp")
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > STALE_TEMP)
            }
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Records that `requested` was asked for and starts a worker unless one is running. Never
/// waits for the worker; errors only mean no prefetch this time.
pub fn request(spool: &Path, requested: &WalName, config: &Path) -> io::Result<()> {
    create_spool(spool)?;
    // A hint, not data: temp + rename so the worker never reads half a name; no fsync.
    let tmp = spool.join(format!(".{WANT_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, requested.name.as_bytes())?;
    std::fs::rename(&tmp, spool.join(WANT_FILE))?;
    let lock = open_lock(spool)?;
    match lock.try_lock() {
        Ok(()) => drop(lock),
        // A worker is running; it reads `want` again before it exits.
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    spawn_worker(spool, config)
}

fn create_spool(spool: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(spool) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && spool.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_lock(spool: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(spool.join(LOCK_FILE))
}

fn spawn_worker(spool: &Path, config: &Path) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    let config = if config.is_absolute() {
        config.to_path_buf()
    } else {
        std::env::current_dir()?.join(config)
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--config")
        .arg(config)
        .arg("wal-prefetch-worker")
        .arg(spool)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent; it is the
    // only thing done between fork and exec. Its own session: signals PostgreSQL or a
    // terminal sends to wal-get's process group do not reach the worker, and wal-get can
    // exit at once.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(io::Error::from));
    }
    // Not waited for: when wal-get exits the worker is reparented to init, which reaps it.
    cmd.spawn().map(drop)
}

/// What fetching one segment into the spool came to.
enum Fetched {
    Spooled,
    Absent,
    Skipped,
}

/// The worker: holds the spool lock, fetches the window after `SPOOL/want` in parallel, and
/// goes on while wal-get keeps asking for new segments; then stays [`LINGER`] for a new
/// request. `datadir` is the data directory of the server it fetches for: when that server
/// was in recovery and has left it, the worker removes the spool and exits. Exits at once when
/// another worker holds the lock.
pub fn run_worker(
    repo: &Repo,
    spool: &Path,
    depth: u32,
    datadir: Option<&DataDir>,
) -> io::Result<()> {
    if depth == 0 {
        return Ok(());
    }
    let Some(info) = repo.info().map_err(io::Error::other)? else {
        return Ok(());
    };
    let lock = open_lock(spool)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Only a server seen in recovery can be seen leaving it.
    let watched = datadir.filter(|d| d.mode() != Mode::NotInRecovery);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(depth as usize)
        .max(1);
    let mut done = String::new();
    let mut passes = 0;
    let mut idle_since = Instant::now();
    while passes < MAX_PASSES {
        let want = match std::fs::read_to_string(spool.join(WANT_FILE)) {
            Ok(w) => w,
            // The spool was removed (by wal-push after a promotion, or by hand).
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(_) => String::new(),
        };
        if want == done {
            if watched.is_some_and(|d| d.mode() == Mode::NotInRecovery) {
                drop(lock);
                remove_spool(spool);
                return Ok(());
            }
            if idle_since.elapsed() >= LINGER {
                break;
            }
            std::thread::sleep(POLL);
            continue;
        }
        passes += 1;
        let Some(requested) = WalName::parse(want.trim()) else {
            break;
        };
        if requested.kind != WalFileKind::Segment {
            break;
        }
        let names = window(&requested, depth, info.wal_segment_size);
        let next = AtomicUsize::new(0);
        let absent_from = AtomicUsize::new(usize::MAX);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (next, absent_from, names, info) = (&next, &absent_from, &names, &info);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= names.len() || i > absent_from.load(Ordering::SeqCst) {
                            return;
                        }
                        match fetch_one(repo, info, spool, &names[i], t) {
                            Ok(Fetched::Absent) => {
                                absent_from.fetch_min(i, Ordering::SeqCst);
                            }
                            Ok(Fetched::Spooled | Fetched::Skipped) => {}
                            Err(e) => {
                                tracing::debug!(file = %names[i], "Prefetch failed: {e}");
                                // The archive is not readable now: wal-get will say so itself.
                                absent_from.fetch_min(i, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        done = want;
        idle_since = Instant::now();
    }
    drop(lock);
    Ok(())
}

/// Removes the spool: the files prefetch made (entries, temp files, `lock`, `want`), then the
/// directory if nothing else is in it (a configured prefetch_dir may hold other things). Best
/// effort; true when the directory is gone.
pub fn remove_spool(spool: &Path) -> bool {
    let entries = match std::fs::read_dir(spool) {
        Ok(e) => e,
        Err(e) => return e.kind() == io::ErrorKind::NotFound,
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let ours = entry_segment(file).is_some()
            || file == LOCK_FILE
            || file == WANT_FILE
            || (file.starts_with('.') && file.ends_with(".tmp"));
        if ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    std::fs::remove_dir(spool).is_ok()
}

/// Fetches `name` into the spool unless it is there already.
fn fetch_one(
    repo: &Repo,
    info: &RepoInfo,
    spool: &Path,
    name: &str,
    thread: usize,
) -> io::Result<Fetched> {
    let Some(wal_name) = WalName::parse(name) else {
        return Ok(Fetched::Absent);
    };
    let already = std::fs::read_dir(spool)?
        .flatten()
        .any(|e| e.file_name().to_str().and_then(entry_segment) == Some(name));
    if already {
        return Ok(Fetched::Skipped);
    }
    let Some((stored, c)) = find(repo, &wal_name)? else {
        return Ok(Fetched::Absent);
    };
    let id = StoredId::of(&stored, c);
    let Some(file) = repo.storage().get(&stored.key)? else {
        return Ok(Fetched::Absent);
    };
    let mut bytes = Vec::with_capacity(info.wal_segment_size as usize);
    compress::decoder(c, io::BufReader::with_capacity(1 << 20, file))?
        .take(info.wal_segment_size + 1)
        .read_to_end(&mut bytes)?;
    // Changed while it was read (rewritten in place): leave it to wal-get.
    match repo.storage().stat(&stored.key)? {
        Some(now) if StoredId::of(&now, c) == id => {}
        _ => return Ok(Fetched::Skipped),
    }
    if let Err(why) = check_segment(&bytes, bytes.len() as u64, &wal_name, info) {
        tracing::debug!(file = name, "Not prefetched: {why}");
        return Ok(Fetched::Skipped);
    }
    let tmp = spool.join(format!(".{name}.{}.{thread}.tmp", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut out = File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&tmp, spool.join(id.entry_name(name)))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Fetched::Spooled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_timeline_across_log_boundaries() {
        let n = WalName::parse("0000000200000001000000FE").unwrap();
        assert_eq!(
            window(&n, 3, 16 << 20),
            [
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        assert!(window(&n, 0, 16 << 20).is_empty());
    }

    #[test]
    fn a_segment_may_start_on_an_earlier_timeline_never_a_later_one() {
        let info = RepoInfo {
            format: crate::repo::FORMAT,
            system_identifier: "42".into(),
            pg_major: Some(15),
            wal_segment_size: 16 << 20,
            created_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let head = |tli: u32| {
            let mut b = vec![0u8; LONG_HEADER_LEN];
            b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
            b[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
            b[4..8].copy_from_slice(&tli.to_le_bytes());
            b[8..16].copy_from_slice(&0x0600_0000u64.to_le_bytes());
            b[24..32].copy_from_slice(&42u64.to_le_bytes());
            b[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
            b[36..40].copy_from_slice(&8192u32.to_le_bytes());
            b
        };
        // The first segment of timeline 2 is a copy of timeline 1's up to the switch.
        let name = WalName::parse("000000020000000000000006").unwrap();
        assert_eq!(check_segment(&head(1), 16 << 20, &name, &info), Ok(()));
        assert_eq!(check_segment(&head(2), 16 << 20, &name, &info), Ok(()));
        assert!(check_segment(&head(3), 16 << 20, &name, &info).is_err());
        assert!(check_segment(&head(2), 8 << 20, &name, &info).is_err());
        let other = WalName::parse("000000020000000000000007").unwrap();
        assert!(check_segment(&head(2), 16 << 20, &other, &info).is_err());
    }

    #[test]
    fn spool_entries_are_recognised_by_their_segment_name() {
        assert_eq!(
            entry_segment("000000010000000000000003.zstd.12.34.56"),
            Some("000000010000000000000003")
        );
        assert_eq!(entry_segment(".000000010000000000000003.1.tmp"), None);
        assert_eq!(entry_segment("lock"), None);
        assert_eq!(entry_segment("want"), None);
        assert_eq!(entry_segment("00000002.history.x"), None);
    }
}
