//! Timelines in the WAL archive. An archive holds several: failovers, and copies restored from
//! it that were promoted. This module turns the archive into plain facts about them (each
//! timeline's history, when it began, where it came from, which segments of it are archived
//! and when) and answers the questions every reader of a multi-timeline archive asks: the path
//! of timelines that leads to a timeline, which timeline a segment is read from along it, and
//! the newest archived WAL along a server's own history. Restore planning, RPO, `check`,
//! `drill` and `wal verify` all read timelines through here, never by comparing file names.
//!
//! What dbagent knows about a timeline is recorded once, when its history file is archived:
//!
//! ```text
//! REPO/timelines/<TLI>.json    {timeline, parent, switch_lsn, began, host, data_directory,
//!                               origin: promotion|restore|copy, restored_from}
//! ```
//!
//! `origin` comes from the restore marker (`dbagent_restore.json`) that `dbagent restore`
//! leaves in the data directory it restores: a data directory restored somewhere else than the
//! cluster's own `postgres.pgdata` (a test copy) records its timelines as `copy`, a restore in
//! place as `restore`, and a data directory without a marker (a promoted standby) as
//! `promotion`. Restore planning never follows a copy's timeline unless asked.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::name::{Lsn, WalFileKind};
use crate::repo::{Key, Kind, Repo, local};

/// The marker `dbagent restore` writes into the data directory it restores.
pub const RESTORE_MARKER: &str = "dbagent_restore.json";

/// Where a timeline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A server without a restore marker was promoted (a failover, a switchover).
    Promotion,
    /// `dbagent restore` into the cluster's own data directory: the cluster's new history.
    Restore,
    /// `dbagent restore` elsewhere with `--archive`: a test copy, never followed by default.
    Copy,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Promotion => "promotion",
            Origin::Restore => "restore",
            Origin::Copy => "copy",
        }
    }
}

/// `REPO/timelines/<TLI>.json`, written once when the timeline's history file is archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineRecord {
    pub timeline: u32,
    /// The timeline it branched from and where (the last line of its history file).
    pub parent: Option<u32>,
    pub switch_lsn: Option<Lsn>,
    /// When its history file was archived: just after the promotion that created it.
    pub began: jiff::Timestamp,
    pub host: String,
    pub data_directory: Option<String>,
    pub origin: Origin,
    /// For restores: the backup the data directory was restored from.
    #[serde(default)]
    pub restored_from: Option<String>,
}

/// What `dbagent restore` leaves in a restored data directory, so that the timelines it
/// creates are recorded with their origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreMarker {
    pub backup: String,
    pub restored_at: jiff::Timestamp,
    /// Restored into the cluster's own `postgres.pgdata`.
    pub in_place: bool,
    /// Archiving into the source repository was asked for (`--archive`) or kept (in place).
    pub archive: bool,
}

impl RestoreMarker {
    pub fn origin(&self) -> Origin {
        if self.in_place {
            Origin::Restore
        } else {
            Origin::Copy
        }
    }
}

/// Reads the restore marker of a data directory; `None` when there is none (or unreadable).
pub fn read_marker(data_dir: &Path) -> Option<RestoreMarker> {
    let text = std::fs::read_to_string(data_dir.join(RESTORE_MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the restore marker into a data directory being restored (before it is handed to its
/// owner).
pub fn write_marker(data_dir: &Path, marker: &RestoreMarker) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(marker).map_err(io::Error::other)?;
    local::replace(data_dir, RESTORE_MARKER, &bytes)
}

/// The object of the record of timeline `tli`.
fn record_key(tli: u32) -> Key {
    Key::timeline(format!("{tli:08X}.json"))
}

/// Records what is known about timeline `tli` whose history file (`history`, its text) was
/// just archived from the data directory `data_dir`. Written once: a record already there is
/// kept (the first archiver of a timeline is the one that created it).
pub fn record_archived_history(
    repo: &Repo,
    tli: u32,
    history: &str,
    data_dir: Option<&Path>,
) -> io::Result<()> {
    let key = record_key(tli);
    if repo.storage().stat(&key)?.is_some() {
        return Ok(());
    }
    let parsed = parse_history(history).unwrap_or_default();
    let marker = data_dir.and_then(read_marker);
    let record = TimelineRecord {
        timeline: tli,
        parent: parsed.last().map(|(p, _)| *p),
        switch_lsn: parsed.last().map(|(_, l)| *l),
        began: jiff::Timestamp::now(),
        host: hostname(),
        data_directory: data_dir.map(|d| d.display().to_string()),
        origin: marker
            .as_ref()
            .map_or(Origin::Promotion, RestoreMarker::origin),
        restored_from: marker.map(|m| m.backup),
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
    repo.storage()
        .create_new(&key, &mut |f| f.write_all(&bytes))?;
    Ok(())
}

/// This host's name, for records meant for humans.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Parses a timeline history file: `(parent timeline, switch point)` per line, oldest first.
pub fn parse_history(text: &str) -> Result<Vec<(u32, Lsn)>, String> {
    let mut out: Vec<(u32, Lsn)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let tli = fields
            .next()
            .and_then(|f| f.parse::<u32>().ok())
            .ok_or_else(|| format!("line {}: no timeline number", i + 1))?;
        let lsn = fields
            .next()
            .and_then(Lsn::parse)
            .ok_or_else(|| format!("line {}: no switch point LSN", i + 1))?;
        if let Some(&(prev_tli, prev_lsn)) = out.last()
            && (tli <= prev_tli || lsn < prev_lsn)
        {
            return Err(format!("line {}: timelines or LSNs go backwards", i + 1));
        }
        out.push((tli, lsn));
    }
    Ok(out)
}

/// One timeline on a path: WAL in `[begin, end)` is read from it (`end` none for the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub timeline: u32,
    pub begin: Lsn,
    pub end: Option<Lsn>,
}

/// The path of steps that a history (`(parent, switch)` lines) gives timeline `tli`.
pub fn path_from_history(tli: u32, history: &[(u32, Lsn)]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut begin = Lsn(0);
    for &(parent, switch) in history {
        steps.push(Step {
            timeline: parent,
            begin,
            end: Some(switch),
        });
        begin = switch;
    }
    steps.push(Step {
        timeline: tli,
        begin,
        end: None,
    });
    steps
}

/// The timeline segment `segno` is read from along `path`: the newest step that has begun by
/// then (the segment holding a switch point is read from the new timeline, as PostgreSQL does).
pub fn timeline_of(path: &[Step], segno: u64, seg_size: u64) -> u32 {
    path.iter()
        .rev()
        .find(|s| s.begin.segno(seg_size) <= segno)
        .map_or_else(|| path.first().map_or(1, |s| s.timeline), |s| s.timeline)
}

/// The timeline holding position `lsn` along `path`.
pub fn timeline_at(path: &[Step], lsn: Lsn) -> u32 {
    path.iter()
        .rev()
        .find(|s| s.begin <= lsn)
        .map_or_else(|| path.first().map_or(1, |s| s.timeline), |s| s.timeline)
}

/// One timeline as the archive shows it.
#[derive(Debug, Clone, Default)]
pub struct ArchivedTimeline {
    pub tli: u32,
    /// Its history (`(parent, switch)` lines); empty for timeline 1. `None` when its history
    /// file is not in the archive (or damaged: see `history_error`).
    pub history: Option<Vec<(u32, Lsn)>>,
    pub history_error: Option<String>,
    /// When its history file was archived (the file's modification time).
    pub history_archived_at: Option<jiff::Timestamp>,
    pub record: Option<TimelineRecord>,
    /// Complete segments of this timeline in the archive: segment number → when archived.
    pub segments: BTreeMap<u64, jiff::Timestamp>,
    /// Stored (compressed) size of each complete segment.
    pub stored_bytes: BTreeMap<u64, u64>,
    /// `.partial` segments of this timeline (segment numbers).
    pub partials: BTreeSet<u64>,
}

impl ArchivedTimeline {
    /// When the timeline began: its record, else its history file's archive time.
    pub fn began(&self) -> Option<jiff::Timestamp> {
        self.record
            .as_ref()
            .map(|r| r.began)
            .or(self.history_archived_at)
    }

    /// Where it came from, when recorded.
    pub fn origin(&self) -> Option<Origin> {
        self.record.as_ref().map(|r| r.origin)
    }

    /// Its parent and the switch point, from its history.
    pub fn parent(&self) -> Option<(u32, Lsn)> {
        self.history.as_ref().and_then(|h| h.last().copied())
    }

    /// When its newest complete segment was archived.
    pub fn last_archived(&self) -> Option<jiff::Timestamp> {
        self.segments.values().max().copied()
    }
}

/// Every timeline of the archive, as plain facts (read once by [`Timelines::read`]).
#[derive(Debug, Clone, Default)]
pub struct Timelines {
    pub seg_size: u64,
    pub timelines: BTreeMap<u32, ArchivedTimeline>,
}

impl Timelines {
    /// Reads the archive's history files, timeline records and segment listing.
    pub fn read(repo: &Repo, seg_size: u64) -> io::Result<Timelines> {
        Timelines::read_listed(repo, seg_size, super::list_stored(repo, "")?)
    }

    /// [`Timelines::read`] for monitoring: the segment listing comes from the storage's
    /// listing index (see [`crate::repo::Storage::list_recent`]).
    pub fn read_recent(repo: &Repo, seg_size: u64) -> io::Result<Timelines> {
        Timelines::read_listed(repo, seg_size, super::list_stored_recent(repo)?)
    }

    fn read_listed(
        repo: &Repo,
        seg_size: u64,
        listed: Vec<(super::WalName, crate::repo::Compression, crate::repo::Meta)>,
    ) -> io::Result<Timelines> {
        let mut out = Timelines {
            seg_size,
            timelines: BTreeMap::new(),
        };
        for (name, c, meta) in listed {
            let t = out.entry(name.tli);
            match name.kind {
                WalFileKind::Segment => {
                    let at = jiff::Timestamp::try_from(meta.modified).map_err(io::Error::other)?;
                    t.segments.insert(name.segno(seg_size), at);
                    t.stored_bytes.insert(name.segno(seg_size), meta.size);
                }
                WalFileKind::Partial => {
                    t.partials.insert(name.segno(seg_size));
                }
                WalFileKind::History => {
                    let at = jiff::Timestamp::try_from(meta.modified).map_err(io::Error::other)?;
                    let bytes = super::read_stored(repo, &meta.key, c)?;
                    t.history_archived_at = Some(at);
                    match parse_history(&String::from_utf8_lossy(&bytes)) {
                        Ok(h) => t.history = Some(h),
                        Err(e) => t.history_error = Some(e),
                    }
                }
                WalFileKind::BackupHistory => {}
            }
        }
        for meta in repo.storage().list(Kind::Timeline, "")? {
            let Some(stem) = meta.key.name.strip_suffix(".json") else {
                continue;
            };
            let Ok(tli) = u32::from_str_radix(stem, 16) else {
                continue;
            };
            let Some(text) = repo.storage().read(&meta.key)? else {
                continue;
            };
            if let Ok(r) = serde_json::from_slice::<TimelineRecord>(&text)
                && r.timeline == tli
            {
                out.entry(tli).record = Some(r);
            }
        }
        if let Some(t) = out.timelines.get_mut(&1) {
            t.history.get_or_insert_with(Vec::new);
        }
        Ok(out)
    }

    fn entry(&mut self, tli: u32) -> &mut ArchivedTimeline {
        self.timelines
            .entry(tli)
            .or_insert_with(|| ArchivedTimeline {
                tli,
                history: (tli == 1).then(Vec::new),
                ..ArchivedTimeline::default()
            })
    }

    pub fn get(&self, tli: u32) -> Option<&ArchivedTimeline> {
        self.timelines.get(&tli)
    }

    /// The path to `tli` from its history (timeline 1 needs none); `None` when its history
    /// file is missing or damaged.
    pub fn path(&self, tli: u32) -> Option<Vec<Step>> {
        if tli == 1 {
            return Some(path_from_history(1, &[]));
        }
        let h = self.timelines.get(&tli)?.history.as_ref()?;
        Some(path_from_history(tli, h))
    }

    /// Whether timeline `a` is on the path of `b` (or is `b`) and `b`'s path leaves `a` no
    /// earlier than `at`.
    pub fn descends_at(&self, a: u32, b: u32, at: Lsn) -> bool {
        let Some(path) = self.path(b) else {
            return false;
        };
        path.iter()
            .any(|s| s.timeline == a && s.end.is_none_or(|end| end >= at))
    }

    /// The children of `tli`: timelines whose history names it as their immediate parent.
    pub fn children(&self, tli: u32) -> Vec<u32> {
        self.timelines
            .values()
            .filter(|t| t.parent().map(|(p, _)| p) == Some(tli))
            .map(|t| t.tli)
            .collect()
    }

    /// Whether the archive holds the complete segment `segno` of timeline `tli`.
    pub fn has_segment(&self, tli: u32, segno: u64) -> bool {
        self.timelines
            .get(&tli)
            .is_some_and(|t| t.segments.contains_key(&segno))
    }

    /// The newest complete segment along the path of `tli` (from segment `from` on): its
    /// timeline, number and archive time. Each timeline counts only in the stretch of the path
    /// it is read in, so a segment of another branch is never taken for progress.
    pub fn newest_on_path(&self, tli: u32, from: u64) -> Option<(u32, u64, jiff::Timestamp)> {
        self.stretches(tli, from)?
            .into_iter()
            .filter_map(|(t, range)| {
                let (segno, at) = t.segments.range(range).next_back()?;
                Some((t.tli, *segno, *at))
            })
            .max_by_key(|(_, segno, _)| *segno)
    }

    /// The stretches of the path of `tli` (from segment `from` on): each timeline with the
    /// segment numbers it is read for. `None` when its history is unknown.
    fn stretches(
        &self,
        tli: u32,
        from: u64,
    ) -> Option<Vec<(&ArchivedTimeline, std::ops::Range<u64>)>> {
        let path = self.path(tli)?;
        let seg = self.seg_size;
        Some(
            path.iter()
                .enumerate()
                .filter_map(|(i, step)| {
                    let lo = step.begin.segno(seg).max(from);
                    let hi = path.get(i + 1).map_or(u64::MAX, |n| n.begin.segno(seg));
                    let t = self.timelines.get(&step.timeline)?;
                    (hi > lo).then_some((t, lo..hi))
                })
                .collect(),
        )
    }

    /// The first segment missing along the path of `tli` in `[first, last]`, and how many are.
    pub fn missing_on_path(&self, tli: u32, first: u64, last: u64) -> Vec<String> {
        let Some(path) = self.path(tli) else {
            return Vec::new();
        };
        (first..=last)
            .filter_map(|segno| {
                let on = timeline_of(&path, segno, self.seg_size);
                (!self.has_segment(on, segno))
                    .then(|| super::name::segment_name(on, segno, self.seg_size))
            })
            .collect()
    }
}

/// Helpers for readers that build the facts themselves: `wal verify` must report what
/// [`Timelines::read`] refuses (a damaged history file) or skips (a record that does not parse),
/// so it lists the archive on its own and fills a `Timelines` with what it could read.
impl Timelines {
    /// No timeline yet, for a segment size.
    pub fn new(seg_size: u64) -> Timelines {
        Timelines {
            seg_size,
            timelines: BTreeMap::new(),
        }
    }

    /// The facts about timeline `tli`, created empty (timeline 1 with its empty history) when
    /// not known yet.
    pub fn timeline_mut(&mut self, tli: u32) -> &mut ArchivedTimeline {
        self.entry(tli)
    }

    /// The oldest complete segment along the path of `tli` from segment `from` on: its
    /// timeline and number. Each timeline counts only in the stretch of the path it is read in,
    /// as in [`Timelines::newest_on_path`].
    pub fn oldest_on_path(&self, tli: u32, from: u64) -> Option<(u32, u64)> {
        self.stretches(tli, from)?
            .into_iter()
            .find_map(|(t, range)| t.segments.range(range).next().map(|(s, _)| (t.tli, *s)))
    }
}

/// Helpers for the readers that judge WAL along a server's history (RPO, `check`, `drill`).
impl Timelines {
    /// Where timeline `tli` came from, for messages: "a copy restored on host X at T, data
    /// directory D, from backup B", "a promotion on host X at T", or what is known without a
    /// record.
    pub fn describe(&self, tli: u32) -> String {
        let Some(t) = self.timelines.get(&tli) else {
            return "not in the archive".into();
        };
        match &t.record {
            Some(r) => {
                let what = match r.origin {
                    Origin::Copy => "a copy restored",
                    Origin::Restore => "a restore in place",
                    Origin::Promotion => "a promotion",
                };
                let mut out = format!(
                    "{what} on host {} at {}",
                    r.host,
                    r.began.round(jiff::Unit::Second).unwrap_or(r.began)
                );
                if let Some(d) = &r.data_directory {
                    out.push_str(&format!(", data directory {d}"));
                }
                if let Some(b) = &r.restored_from {
                    out.push_str(&format!(", from backup {b}"));
                }
                out
            }
            None => match t.history_archived_at {
                Some(at) => format!(
                    "no record of its origin; its history file was archived at {}",
                    at.round(jiff::Unit::Second).unwrap_or(at)
                ),
                None => "no history file in the archive".into(),
            },
        }
    }

    /// The newest timeline that is not a recorded copy: the primary's, as far as the archive
    /// can tell when the primary cannot be asked.
    pub fn newest_not_copy(&self) -> Option<u32> {
        self.timelines
            .values()
            .rev()
            .find(|t| t.origin() != Some(Origin::Copy))
            .map(|t| t.tli)
    }

    /// The path of `tli` as text: `1→2→5`.
    pub fn path_text(&self, tli: u32) -> String {
        match self.path(tli) {
            Some(p) => p
                .iter()
                .map(|s| s.timeline.to_string())
                .collect::<Vec<_>>()
                .join("→"),
            None => format!("{tli} (history file missing)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_files_parse_and_segments_follow_the_switch() {
        let h = parse_history(
            "1\t0/5000060\tno recovery target specified\n\n2\t0/9000000\tat restore point \"x\"\n",
        )
        .unwrap();
        assert_eq!(h, vec![(1, Lsn(0x5000060)), (2, Lsn(0x9000000))]);
        assert!(parse_history("2\t0/5\n1\t0/6\n").is_err());
        let path = path_from_history(3, &h);
        let seg = 16 << 20;
        assert_eq!(timeline_of(&path, 4, seg), 1);
        assert_eq!(timeline_of(&path, 5, seg), 2);
        assert_eq!(timeline_of(&path, 8, seg), 2);
        assert_eq!(timeline_of(&path, 9, seg), 3);
        assert_eq!(timeline_of(&path, 100, seg), 3);
        assert_eq!(timeline_at(&path, Lsn(0x5000000)), 1);
        assert_eq!(timeline_at(&path, Lsn(0x5000060)), 2);
    }

    #[test]
    fn newest_on_path_ignores_other_branches() {
        let seg = 16 << 20;
        let now = jiff::Timestamp::now();
        let mut t = Timelines {
            seg_size: seg,
            timelines: BTreeMap::new(),
        };
        // Timeline 1 ran to segment 9; timeline 2 branched at segment 5 and reached 6;
        // timeline 3 branched from 1 at segment 7 and reached 8.
        for s in 1..=9 {
            t.entry(1).segments.insert(s, now);
        }
        t.entry(2).history = Some(vec![(1, Lsn(5 * seg + 0x60))]);
        for s in 5..=6 {
            t.entry(2).segments.insert(s, now);
        }
        t.entry(3).history = Some(vec![(1, Lsn(7 * seg + 0x60))]);
        for s in 7..=8 {
            t.entry(3).segments.insert(s, now);
        }
        assert_eq!(t.newest_on_path(1, 0).map(|b| (b.0, b.1)), Some((1, 9)));
        assert_eq!(t.newest_on_path(2, 0).map(|b| (b.0, b.1)), Some((2, 6)));
        assert_eq!(t.newest_on_path(3, 0).map(|b| (b.0, b.1)), Some((3, 8)));
        assert_eq!(t.children(1), vec![2, 3]);
        assert!(t.descends_at(1, 3, Lsn(7 * seg)));
        assert!(!t.descends_at(1, 2, Lsn(6 * seg)));
        assert_eq!(t.missing_on_path(2, 1, 7), vec!["000000020000000000000007"]);
    }
}
