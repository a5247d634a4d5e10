//! How far the archived WAL reaches for a restore to a time: the unbroken run of archived
//! segments from a backup along a timeline's history, and the newest transaction committed in
//! it. PostgreSQL stops a `recovery_target_time` recovery at the first transaction that
//! committed after the target; when the replayed WAL holds none, recovery ends before the
//! target and the server refuses to start. So the latest time a restore reaches is just
//! before the newest commit the archive holds, and a segment missing from the archive ends
//! what can be replayed there.
//!
//! The planner (`plan.rs`) refuses a time target with these functions, and `dbagent info`
//! computes the recoverable window with them, so the two cannot disagree.

use std::io;

use serde::Serialize;

use crate::wal::name::{Lsn, WalName, segment_name};
use crate::wal::timeline::{Step, Timelines, timeline_of};
use crate::wal::xacts::Scanner;

/// A commit record in the archived WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Commit {
    pub time: jiff::Timestamp,
    /// Where the commit record starts.
    pub lsn: Lsn,
}

impl Commit {
    /// The latest `recovery_target_time` (inclusive, the default) that stops at this commit:
    /// one microsecond before it (PostgreSQL's timestamps are in microseconds).
    pub fn latest_target(&self) -> jiff::Timestamp {
        self.time - jiff::SignedDuration::from_micros(1)
    }

    /// Whether recovery to time `t` stops at (or before) this commit: it committed after `t`
    /// (or at `t`, for an exclusive target).
    pub fn stops(&self, t: jiff::Timestamp, inclusive: bool) -> bool {
        if inclusive {
            self.time > t
        } else {
            self.time >= t
        }
    }
}

/// The last segment of the unbroken run of archived segments along `path` from `first`, up
/// to `newest`; `None` when `first` itself is missing.
pub fn contiguous_end(tl: &Timelines, path: &[Step], first: u64, newest: u64) -> Option<u64> {
    let mut last = None;
    for segno in first..=newest {
        if !tl.has_segment(timeline_of(path, segno, tl.seg_size), segno) {
            break;
        }
        last = Some(segno);
    }
    last
}

/// The first segment missing along `path` after `last` (the end of an unbroken run), when the
/// archive holds a later one (up to `newest`): the gap that ends the run, as `(first missing,
/// last missing)` segment names.
pub fn gap_after(
    tl: &Timelines,
    path: &[Step],
    last: u64,
    newest: u64,
) -> Option<(String, String)> {
    if last >= newest {
        return None;
    }
    let seg = tl.seg_size;
    let name = |segno: u64| segment_name(timeline_of(path, segno, seg), segno, seg);
    let mut end = last + 1;
    while end < newest && !tl.has_segment(timeline_of(path, end + 1, seg), end + 1) {
        end += 1;
    }
    Some((name(last + 1), name(end)))
}

/// The newest commit record in the archived segments `first..=last` along `path`, read back
/// from `last` (1, 4, 16, ... segments at a time) until one is found. Reads WAL only.
pub fn last_commit(
    repo: &crate::repo::Repo,
    tl: &Timelines,
    path: &[Step],
    first: u64,
    last: u64,
) -> io::Result<Option<Commit>> {
    let seg = tl.seg_size;
    let mut n = 1u64;
    loop {
        let from = last.saturating_sub(n - 1).max(first);
        let mut scanner = Scanner::new(seg);
        for segno in from..=last {
            let text = segment_name(timeline_of(path, segno, seg), segno, seg);
            let Some(name) = WalName::parse(&text) else {
                continue;
            };
            match crate::wal::find(repo, &name)? {
                Some((stored, c)) => {
                    let bytes = crate::wal::read_stored(repo, &stored.key, c)?;
                    scanner.feed(segno * seg, &bytes).map_err(|e| {
                        io::Error::other(format!("archived WAL segment {text}: {e}"))
                    })?;
                }
                // A gap: only what follows it is one stream.
                None => scanner = Scanner::new(seg),
            }
        }
        if let Some((time, lsn)) = scanner.last_commit() {
            return Ok(Some(Commit { time, lsn }));
        }
        if from <= first {
            return Ok(None);
        }
        n = n.saturating_mul(4);
    }
}
