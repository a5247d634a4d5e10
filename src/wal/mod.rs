//! The WAL archive: `wal-push` (archive_command) and `wal-get` (restore_command), and the
//! lookups backups, expire and check make in the archive.
//!
//! Both commands are short-lived and on PostgreSQL's critical path (one call per 16 MiB
//! segment), so they are plain synchronous code: no async runtime, no thread pool.
//!
//! Layer: operation. Uses: backup, repo, state. Used by: backup, check, collect, drill, restore,
//! rpo.

pub mod datadir;
pub mod get;
pub mod header;
pub mod name;
pub mod prefetch;
pub mod push;
pub mod replay;
pub mod timeline;
pub mod verify;
pub mod xacts;

use std::io;
use std::path::PathBuf;

use crate::repo::{Compression, Key, Kind, Meta, Repo, RepoError};
pub use name::{Lsn, WalFileKind, WalName};

/// Why a WAL command failed. Messages name the file and the repository path.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("refusing {path}: {why}")]
    NotWal { path: PathBuf, why: String },
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error(
        "{name} is already archived at {stored} with different content; refusing to overwrite it (two clusters writing to one repository, or a damaged pg_wal?) Investigate before removing either copy"
    )]
    Conflict { name: String, stored: PathBuf },
}

/// The object `name` is stored as with compression `c`.
pub fn stored_key(name: &WalName, c: Compression) -> Key {
    Key::wal(format!("{}{}", name.name, c.suffix()))
}

/// The WAL file a stored object name holds, and its compression.
pub fn parse_stored(stored: &str) -> Option<(WalName, Compression)> {
    let (base, c) = Compression::ALL
        .iter()
        .filter(|c| !c.suffix().is_empty())
        .find_map(|c| stored.strip_suffix(c.suffix()).map(|b| (b, *c)))
        .unwrap_or((stored, Compression::None));
    WalName::parse(base).map(|n| (n, c))
}

/// Finds the stored copy of `name` in any compression. `Ok(None)` only when it is certainly
/// absent; any other problem reading the archive is an error.
pub fn find(repo: &Repo, name: &WalName) -> Result<Option<(Meta, Compression)>, RepoError> {
    let keys: Vec<Key> = Compression::ALL
        .iter()
        .map(|&c| stored_key(name, c))
        .collect();
    let Some(meta) = repo.storage().stat_first(&keys)? else {
        return Ok(None);
    };
    let c = Compression::ALL
        .iter()
        .zip(&keys)
        .find(|(_, k)| **k == meta.key)
        .map_or(Compression::None, |(c, _)| *c);
    Ok(Some((meta, c)))
}

/// Reads and decompresses a stored WAL file completely.
pub fn read_stored(repo: &Repo, key: &Key, c: Compression) -> Result<Vec<u8>, RepoError> {
    use std::io::Read;
    let io_err = |source| RepoError::Io {
        path: repo.locate(key),
        action: "read",
        source,
    };
    let Some(file) = repo.storage().get(key)? else {
        return Err(io_err(io::Error::from(io::ErrorKind::NotFound)));
    };
    let mut out = Vec::with_capacity(16 << 20);
    crate::repo::compress::decoder(c, io::BufReader::new(file))
        .and_then(|mut d| d.read_to_end(&mut out))
        .map_err(io_err)?;
    Ok(out)
}

/// Every stored WAL file of the archive (segments, `.partial`, `.backup` and `.history`
/// files) with its name, compression and stored size and time, sorted by stored name.
pub fn list_stored(
    repo: &Repo,
    prefix: &str,
) -> Result<Vec<(WalName, Compression, Meta)>, RepoError> {
    Ok(repo
        .storage()
        .list(Kind::Wal, prefix)?
        .into_iter()
        .filter_map(|m| parse_stored(&m.key.name).map(|(n, c)| (n, c, m)))
        .collect())
}

/// [`list_stored`] of the whole archive for monitoring: from the storage's listing index
/// (see [`crate::repo::Storage::list_recent`]), cheap on a large archive in object storage.
pub fn list_stored_recent(repo: &Repo) -> Result<Vec<(WalName, Compression, Meta)>, RepoError> {
    Ok(repo
        .storage()
        .list_recent(Kind::Wal)?
        .into_iter()
        .filter_map(|m| parse_stored(&m.key.name).map(|(n, c)| (n, c, m)))
        .collect())
}

/// Every archived segment, .partial and .backup file in the archive, sorted by name.
pub fn list_segments(repo: &Repo) -> Result<Vec<WalName>, RepoError> {
    let mut out: Vec<WalName> = list_stored(repo, "")?
        .into_iter()
        .map(|(n, _, _)| n)
        .filter(|n| n.kind != WalFileKind::History)
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What the archive holds after a standby's replay position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreplayed {
    /// The first archived segment after the replay position (the one the standby needs next).
    pub first: String,
    /// How many archived segments lie after the replay position.
    pub segments: usize,
    /// When the first of them was archived (its stored copy's modification time).
    pub archived_at: std::time::SystemTime,
}

impl Unreplayed {
    /// How long, at `now`, the archive has held this WAL beyond an apply delay of
    /// `apply_delay` seconds (a delayed standby lags on purpose).
    pub fn stalled_seconds(&self, now: std::time::SystemTime, apply_delay: f64) -> f64 {
        let age = now
            .duration_since(self.archived_at)
            .map_or(0.0, |d| d.as_secs_f64());
        (age - apply_delay).max(0.0)
    }
}

/// The archived segments a standby replaying at `replay` on timeline `timeline` has not
/// replayed: segments that start at or after `replay` (the one holding it mid-way was fetched
/// already; at a segment boundary the next one was not), on that timeline or a later one (a
/// standby follows a newer timeline; an older one is history it left). `Ok(None)` when there
/// are none.
pub fn unreplayed(
    repo: &Repo,
    replay: Lsn,
    timeline: u32,
    seg_size: u64,
) -> Result<Option<Unreplayed>, RepoError> {
    let mut after: Vec<(WalName, Meta)> = list_stored_recent(repo)?
        .into_iter()
        .filter(|(w, _, _)| {
            w.kind == WalFileKind::Segment
                && w.tli >= timeline
                && w.segno(seg_size).saturating_mul(seg_size) >= replay.0
        })
        .map(|(w, _, m)| (w, m))
        .collect();
    after.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let Some((first, meta)) = after.iter().min_by_key(|(w, _)| (w.segno(seg_size), w.tli)) else {
        return Ok(None);
    };
    Ok(Some(Unreplayed {
        first: first.name.clone(),
        segments: after.len(),
        archived_at: meta.modified,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreplayed_wal_starts_at_the_replay_position() {
        const SEG: u64 = 16 << 20;
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(dir.path());
        let tl1 = dir.path().join("wal/0000000100000000");
        let tl2 = dir.path().join("wal/0000000200000000");
        std::fs::create_dir_all(&tl1).unwrap();
        std::fs::create_dir_all(&tl2).unwrap();
        for n in 3..=5 {
            std::fs::write(tl1.join(format!("00000001000000000000000{n}.zst")), b"").unwrap();
        }
        std::fs::write(tl2.join("000000020000000000000006.zst"), b"").unwrap();
        let at = |lsn: u64, tli| unreplayed(&repo, Lsn(lsn), tli, SEG).unwrap();
        // Mid-way through segment 4: 5 and 6 (a later timeline) are ahead.
        let u = at(4 * SEG + 100, 1).unwrap();
        assert_eq!(
            (u.first.as_str(), u.segments),
            ("000000010000000000000005", 2)
        );
        // At the start of segment 4 (3 replayed to its end): 4 has not been fetched.
        assert_eq!(at(4 * SEG, 1).unwrap().first, "000000010000000000000004");
        // On timeline 2, timeline 1's segments are history it left.
        let u = at(4 * SEG + 100, 2).unwrap();
        assert_eq!(
            (u.first.as_str(), u.segments),
            ("000000020000000000000006", 1)
        );
        assert_eq!(at(7 * SEG, 1), None);
        let later = u.archived_at + std::time::Duration::from_secs(100);
        assert_eq!(u.stalled_seconds(later, 30.0).round(), 70.0);
        assert_eq!(u.stalled_seconds(later, 300.0), 0.0);
    }
}
