//! `dbagent wal verify`: is the WAL that recovery from the kept backups needs in the archive,
//! complete and intact, and do the archive's timeline histories agree with each other?
//!
//! Three steps, in the shape of every decision here:
//! 1. [`gather`] lists the repository into plain facts: the backups, every stored segment with
//!    its on-disk identity (stored file, size, modification time), every history file and
//!    timeline record as read (or why it could not be), and the [`Timelines`] built from them.
//!    It builds `Timelines` itself rather than calling [`Timelines::read`] because it must
//!    report what `read` refuses (a history file that does not decompress) or skips (a timeline
//!    record that does not parse).
//! 2. [`decide`], pure: which segments are needed. For every timeline of the archive, along its
//!    path ([`Timelines::path`]), from the first segment of the oldest kept backup that can
//!    reach it (a backup on a timeline of its path that started before the path left that
//!    timeline) to the newest archived segment on the path (and at least to the backup's own
//!    last segment when the backup is on that timeline); each segment is read from the timeline
//!    [`timeline_of`] names. Without any backup, from the oldest archived segment on the path.
//!    Also the history conflicts (see [`ProblemKind`]).
//! 3. Each needed segment is checked: present; decompresses completely (zstd and lz4 check
//!    their content checksum, gzip its CRC-32); exactly one segment long; its long page header
//!    has the WAL address its name says, the repository's segment size and system identifier,
//!    and a timeline not after its name's. Segments stored uncompressed (`compression: none`)
//!    have no checksum: damage inside their records is not detected here.
//!
//! Results persist in state.db (table `wal_verified`, keyed by repository and segment name): a
//! later run re-reads a segment only when its stored file name, size or modification time
//! changed, or with `--full`. Each run is recorded (`wal_verify_runs`), which `check`
//! (`wal_verify`) and the `wal_verify` collector read without touching the archive.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::header::SegmentHeader;
use super::name::{Lsn, WalFileKind, WalName, segment_name};
use super::timeline::{TimelineRecord, Timelines, parse_history, timeline_of};
use crate::backup::manifest;
use crate::repo::{Compression, Key, Kind, Meta, Repo, RepoError, compress};
use crate::state::{StateDb, StateError};

/// Runs kept per repository in `wal_verify_runs`.
const RUNS_KEPT: i64 = 100;
/// Problems kept per run in `wal_verify_runs.problems` (the command prints them all).
const PROBLEMS_KEPT: usize = 20;
/// A needed range longer than this (256 TiB of 16 MiB segments) is not WAL but a stray file.
const MAX_RANGE: u64 = 1 << 24;
/// Cache rows written per transaction while reading.
const BATCH: usize = 64;

/// Why the archive could not be verified (as opposed to problems found in it).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "repository {path} has no repo.json: nothing was archived or backed up into it yet; check repository.path"
    )]
    NoRepository { path: PathBuf },
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error(
        "cannot list the WAL archive {path}: {source}; check that it is mounted and readable by this user"
    )]
    List { path: PathBuf, source: io::Error },
    #[error(
        "the WAL needed along timeline {tli} would run from {first} to {last}, {count} segments: a stray file in the WAL archive? Move it aside and run again"
    )]
    Range {
        tli: u32,
        first: String,
        last: String,
        count: u64,
    },
    #[error("{0}")]
    State(#[from] StateError),
}

/// A stored object of the archive and its identity on disk: a cached result applies while the
/// identity is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The object.
    pub key: Key,
    /// Relative to the repository root: `wal/0000000100000000/000000010000000000000003.zst`.
    pub file: String,
    pub compression: Compression,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// A history file as read: its lines, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFile {
    pub file: String,
    pub content: Result<Vec<(u32, Lsn)>, (ProblemKind, String)>,
}

/// A timeline record (`timelines/<TLI>.json`) as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFile {
    pub file: String,
    pub content: Result<TimelineRecord, String>,
}

/// What verification needs to know of a kept backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStart {
    pub id: String,
    pub timeline: u32,
    pub start_lsn: Lsn,
    /// First and last segment it needs to become consistent.
    pub first: u64,
    pub last: u64,
}

/// The repository as plain facts.
#[derive(Debug, Clone)]
pub struct Facts {
    pub system_identifier: u64,
    pub seg_size: u64,
    /// Oldest first.
    pub backups: Vec<BackupStart>,
    /// Complete segments by (timeline, segment number).
    pub segments: BTreeMap<(u32, u64), Stored>,
    pub histories: BTreeMap<u32, HistoryFile>,
    /// By the timeline number of the record's file name.
    pub records: BTreeMap<u32, RecordFile>,
    pub timelines: Timelines,
}

/// What can be wrong, as a stable identifier (`kind` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A needed segment is not in the archive.
    Missing,
    /// A needed segment does not decompress, or is not a complete segment of this cluster at
    /// the place its name says.
    Damaged,
    /// A needed segment's stored file cannot be opened or read (permissions, I/O error).
    Unreadable,
    /// A history file cannot be opened or read.
    HistoryUnreadable,
    /// A history file does not decompress or does not parse.
    HistoryDamaged,
    /// A timeline after 1 has segments, a record or a backup, but no history file.
    HistoryMissing,
    /// A history names a parent timeline whose own history is not in the archive.
    UnknownParent,
    /// A history does not continue its parent's history (its earlier lines differ).
    NotDescendant,
    /// A history file no wal-push of this repository recorded, of a timeline without any
    /// archived segment: copied in from elsewhere? `recovery_target_timeline = 'latest'`
    /// would follow it.
    ForeignHistory,
    /// A timeline record that cannot be read or parsed.
    RecordDamaged,
    /// A timeline record that disagrees with the history file of its timeline: two servers
    /// created timelines with one number.
    RecordMismatch,
    /// Segments of a timeline from before the point its history says it began: another
    /// timeline with the same number.
    SegmentBeforeBranch,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Damaged => "damaged",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::HistoryUnreadable => "history_unreadable",
            ProblemKind::HistoryDamaged => "history_damaged",
            ProblemKind::HistoryMissing => "history_missing",
            ProblemKind::UnknownParent => "unknown_parent",
            ProblemKind::NotDescendant => "not_descendant",
            ProblemKind::ForeignHistory => "foreign_history",
            ProblemKind::RecordDamaged => "record_damaged",
            ProblemKind::RecordMismatch => "record_mismatch",
            ProblemKind::SegmentBeforeBranch => "segment_before_branch",
        }
    }

    /// A problem of a needed segment (as opposed to a history conflict).
    pub fn is_segment(self) -> bool {
        matches!(
            self,
            ProblemKind::Missing | ProblemKind::Damaged | ProblemKind::Unreadable
        )
    }
}

/// One problem: a segment (`name` is its name) or a history conflict (`name` is the history
/// file or record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub timeline: u32,
    pub name: String,
    /// The stored file, relative to the repository, when there is one.
    pub file: Option<String>,
    /// What is wrong, for people.
    pub problem: String,
}

/// How verification treats a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Its path is verified from a kept backup (or, with no backup, from its oldest archived
    /// segment) to the newest archived segment on it.
    Followed,
    /// It left the path of every kept backup before that backup started: recovery from the
    /// kept backups never reads it.
    NotReachable,
    /// Its history file is missing or damaged, so its path is unknown.
    NoHistory,
}

/// Why a segment is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The oldest kept backup whose recovery reads it (none without backups).
    pub backup: Option<String>,
    /// The timeline along whose path it is needed (the first one found).
    pub via: u32,
}

/// The decision of [`decide`].
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub needed: BTreeMap<(u32, u64), Need>,
    pub coverage: BTreeMap<u32, (Coverage, Option<String>)>,
    pub conflicts: Vec<Problem>,
}

/// The key of a repository in state.db (see [`crate::repo::Storage::identity`]).
pub fn repository_key(repo: &Repo) -> String {
    repo.storage().identity()
}

fn history_name(tli: u32) -> String {
    format!("{tli:08X}.history")
}

/// Where `key` is inside the repository, for reports.
fn relative(repo: &Repo, key: &Key) -> String {
    let path = repo.locate(key);
    path.strip_prefix(repo.location())
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// The compression a stored file name ends with, and the name without it.
fn split_compression(fname: &str) -> (&str, Compression) {
    Compression::ALL
        .iter()
        .filter(|c| !c.suffix().is_empty())
        .find_map(|c| fname.strip_suffix(c.suffix()).map(|b| (b, *c)))
        .unwrap_or((fname, Compression::None))
}

fn rank(c: Compression) -> usize {
    Compression::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or(usize::MAX)
}

fn stored_of(repo: &Repo, meta: &Meta, c: Compression) -> Stored {
    Stored {
        key: meta.key.clone(),
        file: relative(repo, &meta.key),
        compression: c,
        size: meta.size,
        mtime_ns: meta
            .modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
    }
}

fn mtime(meta: &Meta) -> jiff::Timestamp {
    jiff::Timestamp::try_from(meta.modified).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Reads the repository into [`Facts`]. Errors only when the repository itself cannot be read
/// (no repo.json, an unlistable directory, an unreadable manifest); problems with single files
/// become facts.
pub fn gather(repo: &Repo) -> Result<Facts, VerifyError> {
    let info = repo.info()?.ok_or_else(|| VerifyError::NoRepository {
        path: repo.location().to_path_buf(),
    })?;
    let system_identifier =
        info.system_identifier
            .parse::<u64>()
            .map_err(|_| RepoError::Corrupt {
                path: repo.locate(&Key::repo_info()),
                detail: format!(
                    "system_identifier {:?} is not a number",
                    info.system_identifier
                ),
            })?;
    let seg = info.wal_segment_size;
    if !seg.is_power_of_two() || !(1 << 20..=1 << 30).contains(&seg) {
        return Err(RepoError::Corrupt {
            path: repo.locate(&Key::repo_info()),
            detail: format!("implausible wal_segment_size {seg}"),
        }
        .into());
    }
    let backups = manifest::list(repo)?
        .into_iter()
        .map(|m| {
            let first = WalName::parse(&m.wal_start)
                .map_or_else(|| m.start_lsn.segno(seg), |w| w.segno(seg));
            let last =
                WalName::parse(&m.wal_stop).map_or_else(|| m.stop_lsn.segno(seg), |w| w.segno(seg));
            BackupStart {
                id: m.id,
                timeline: m.timeline,
                start_lsn: m.start_lsn,
                first,
                last: last.max(first),
            }
        })
        .collect();
    let mut facts = Facts {
        system_identifier,
        seg_size: seg,
        backups,
        segments: BTreeMap::new(),
        histories: BTreeMap::new(),
        records: BTreeMap::new(),
        timelines: Timelines::new(seg),
    };
    let list_err = |e: RepoError| match e {
        RepoError::Io { path, source, .. } => VerifyError::List { path, source },
        e => VerifyError::from(e),
    };
    let mut history_rank: BTreeMap<u32, usize> = BTreeMap::new();
    for meta in repo.storage().list(Kind::Wal, "").map_err(list_err)? {
        let (base, c) = split_compression(&meta.key.name);
        let Some(name) = WalName::parse(base) else {
            continue;
        };
        let segno = name.segno(seg);
        match name.kind {
            WalFileKind::Segment => {
                let stored = stored_of(repo, &meta, c);
                let key = (name.tli, segno);
                // Two compressions of one name: the one wal-get would use.
                let t = facts.timelines.timeline_mut(name.tli);
                t.segments.insert(segno, mtime(&meta));
                if facts
                    .segments
                    .get(&key)
                    .is_none_or(|s| rank(c) < rank(s.compression))
                {
                    t.stored_bytes.insert(segno, stored.size);
                    facts.segments.insert(key, stored);
                }
            }
            WalFileKind::Partial => {
                facts
                    .timelines
                    .timeline_mut(name.tli)
                    .partials
                    .insert(segno);
            }
            WalFileKind::History => {
                if history_rank.get(&name.tli).is_some_and(|r| *r <= rank(c)) {
                    continue;
                }
                history_rank.insert(name.tli, rank(c));
                let content = read_history(repo, &meta.key, c);
                let t = facts.timelines.timeline_mut(name.tli);
                t.history_archived_at = Some(mtime(&meta));
                match &content {
                    Ok(h) => {
                        t.history = Some(h.clone());
                        t.history_error = None;
                    }
                    Err((_, e)) => {
                        t.history = None;
                        t.history_error = Some(e.clone());
                    }
                }
                facts.histories.insert(
                    name.tli,
                    HistoryFile {
                        file: relative(repo, &meta.key),
                        content,
                    },
                );
            }
            WalFileKind::BackupHistory => {}
        }
    }
    for meta in repo.storage().list(Kind::Timeline, "").map_err(list_err)? {
        let Some(stem) = meta.key.name.strip_suffix(".json") else {
            continue;
        };
        if stem.len() != 8 {
            continue;
        }
        let Ok(tli) = u32::from_str_radix(stem, 16) else {
            continue;
        };
        let content = match repo.storage().read(&meta.key) {
            Ok(Some(text)) => serde_json::from_slice::<TimelineRecord>(&text)
                .map_err(|e| format!("does not parse: {e}")),
            Ok(None) => continue,
            Err(RepoError::Io { source: e, .. }) => Err(format!("cannot be read: {e}")),
            Err(e) => Err(format!("cannot be read: {e}")),
        };
        if let Ok(r) = &content
            && r.timeline == tli
        {
            facts.timelines.timeline_mut(tli).record = Some(r.clone());
        }
        facts.records.insert(
            tli,
            RecordFile {
                file: relative(repo, &meta.key),
                content,
            },
        );
    }
    Ok(facts)
}

/// A history file's lines, or why it cannot be had.
fn read_history(
    repo: &Repo,
    key: &Key,
    c: Compression,
) -> Result<Vec<(u32, Lsn)>, (ProblemKind, String)> {
    let opened = match repo.storage().get(key) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(io::Error::from(io::ErrorKind::NotFound)),
        Err(RepoError::Io { source, .. }) => Err(source),
        Err(e) => Err(io::Error::other(e.to_string())),
    };
    let file = opened.map_err(|e| {
        (
            ProblemKind::HistoryUnreadable,
            format!("cannot be opened: {e}"),
        )
    })?;
    let mut bytes = Vec::new();
    compress::decoder(c, io::BufReader::new(file))
        .and_then(|d| d.take(1 << 20).read_to_end(&mut bytes))
        .map_err(|e| {
            let kind = if e.raw_os_error().is_some() {
                ProblemKind::HistoryUnreadable
            } else {
                ProblemKind::HistoryDamaged
            };
            (kind, format!("cannot be read ({}): {e}", c.as_str()))
        })?;
    parse_history(&String::from_utf8_lossy(&bytes))
        .map_err(|e| (ProblemKind::HistoryDamaged, format!("does not parse: {e}")))
}

/// Which segments are needed along which timeline, and the history conflicts. Pure: reads only
/// `facts`.
pub fn decide(facts: &Facts) -> Result<Plan, VerifyError> {
    let seg = facts.seg_size;
    let mut plan = Plan {
        conflicts: conflicts(facts),
        ..Plan::default()
    };
    // A backup's timeline without a usable history is still followed on its own, from the
    // backup's start: its own WAL is needed whatever its history says.
    let orphans: Vec<u32> = facts
        .backups
        .iter()
        .map(|b| b.timeline)
        .filter(|t| facts.timelines.path(*t).is_none())
        .collect();
    let patched;
    let tl = if orphans.is_empty() {
        &facts.timelines
    } else {
        let mut t = facts.timelines.clone();
        for tli in orphans {
            let at = t.timeline_mut(tli);
            at.history = Some(Vec::new());
        }
        patched = t;
        &patched
    };
    // Every timeline of the archive, and those of the backups even with nothing archived.
    let mut tlis: Vec<u32> = tl
        .timelines
        .keys()
        .copied()
        .chain(facts.backups.iter().map(|b| b.timeline))
        .collect();
    tlis.sort_unstable();
    tlis.dedup();
    for tli in tlis {
        let Some(path) = tl.path(tli) else {
            plan.coverage.insert(tli, (Coverage::NoHistory, None));
            continue;
        };
        let reach: Vec<&BackupStart> = facts
            .backups
            .iter()
            .filter(|b| tl.descends_at(b.timeline, tli, b.start_lsn))
            .collect();
        let (from, backup) = match reach.iter().min_by_key(|b| (b.first, b.id.as_str())) {
            Some(b) => (b.first, Some(b.id.clone())),
            None if facts.backups.is_empty() => match tl.oldest_on_path(tli, 0) {
                Some((_, s)) => (s, None),
                None => {
                    plan.coverage.insert(tli, (Coverage::Followed, None));
                    continue;
                }
            },
            None => {
                plan.coverage.insert(tli, (Coverage::NotReachable, None));
                continue;
            }
        };
        plan.coverage
            .insert(tli, (Coverage::Followed, backup.clone()));
        let mut last = tl.newest_on_path(tli, from).map(|(_, s, _)| s);
        for b in reach.iter().filter(|b| b.timeline == tli) {
            last = Some(last.map_or(b.last, |l| l.max(b.last)));
        }
        let Some(last) = last.filter(|l| *l >= from) else {
            continue;
        };
        if last - from >= MAX_RANGE {
            return Err(VerifyError::Range {
                tli,
                first: segment_name(timeline_of(&path, from, seg), from, seg),
                last: segment_name(timeline_of(&path, last, seg), last, seg),
                count: last - from + 1,
            });
        }
        for segno in from..=last {
            let on = timeline_of(&path, segno, seg);
            plan.needed.entry((on, segno)).or_insert_with(|| Need {
                backup: backup.clone(),
                via: tli,
            });
        }
    }
    Ok(plan)
}

/// The history conflicts of the archive (see [`ProblemKind`]).
fn conflicts(facts: &Facts) -> Vec<Problem> {
    let seg = facts.seg_size;
    let tl = &facts.timelines;
    let mut out = Vec::new();
    let mut push = |kind, timeline, name: String, file: Option<&String>, problem: String| {
        out.push(Problem {
            kind,
            timeline,
            name,
            file: file.cloned(),
            problem,
        });
    };
    for (&tli, h) in &facts.histories {
        let name = history_name(tli);
        let lines = match &h.content {
            Err((kind, detail)) => {
                push(
                    *kind,
                    tli,
                    name,
                    Some(&h.file),
                    format!(
                        "{detail}; recovery cannot follow timeline {tli} (restore it from a copy or from pg_wal/{} of the server that created the timeline)",
                        history_name(tli)
                    ),
                );
                continue;
            }
            Ok(lines) => lines,
        };
        if tli == 1 {
            continue;
        }
        let Some(&(parent, switch)) = lines.last() else {
            push(
                ProblemKind::HistoryDamaged,
                tli,
                name,
                Some(&h.file),
                format!("names no parent timeline; timeline {tli} must have branched from one"),
            );
            continue;
        };
        if parent >= tli {
            push(
                ProblemKind::HistoryDamaged,
                tli,
                name,
                Some(&h.file),
                format!(
                    "says timeline {tli} branched from timeline {parent}, which is not an earlier timeline"
                ),
            );
            continue;
        }
        let earlier = &lines[..lines.len() - 1];
        if parent == 1 {
            if !earlier.is_empty() {
                push(
                    ProblemKind::NotDescendant,
                    tli,
                    name.clone(),
                    Some(&h.file),
                    format!(
                        "says timeline {tli} branched from timeline 1 at {switch} after {}, but timeline 1 has no earlier history",
                        render_lines(earlier)
                    ),
                );
            }
        } else {
            match facts.histories.get(&parent).map(|p| &p.content) {
                None => push(
                    ProblemKind::UnknownParent,
                    tli,
                    name.clone(),
                    Some(&h.file),
                    format!(
                        "says timeline {tli} branched from timeline {parent} at {switch}, but the archive has no history of timeline {parent} ({}): a history file from another cluster or server? Recovery cannot follow timeline {tli}",
                        history_name(parent)
                    ),
                ),
                Some(Err(_)) => {}
                Some(Ok(p)) if p.as_slice() != earlier => push(
                    ProblemKind::NotDescendant,
                    tli,
                    name.clone(),
                    Some(&h.file),
                    format!(
                        "says timeline {tli} branched from timeline {parent} at {switch} after {}, but {} says timeline {parent} came from {}: the histories do not descend from one another (a history file from another cluster or server?)",
                        render_lines(earlier),
                        history_name(parent),
                        render_lines(p)
                    ),
                ),
                Some(Ok(_)) => {}
            }
        }
        let at = tl.get(tli);
        let before: Vec<u64> = at
            .map(|t| {
                t.segments
                    .range(..switch.segno(seg))
                    .map(|(s, _)| *s)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(first) = before.first() {
            push(
                ProblemKind::SegmentBeforeBranch,
                tli,
                name.clone(),
                Some(&h.file),
                format!(
                    "says timeline {tli} began at {switch}, but the archive holds {} segment(s) of timeline {tli} from before it, the first {}: two servers used timeline number {tli}",
                    before.len(),
                    segment_name(tli, *first, seg)
                ),
            );
        }
        let archived_any = at.is_some_and(|t| !t.segments.is_empty() || !t.partials.is_empty());
        if !archived_any && !facts.records.contains_key(&tli) {
            push(
                ProblemKind::ForeignHistory,
                tli,
                name,
                Some(&h.file),
                format!(
                    "is in the archive but no wal-push of this repository recorded it (no timelines/{tli:08X}.json) and no segment of timeline {tli} was archived: a history file copied in from elsewhere? PostgreSQL's recovery_target_timeline = 'latest' would follow it and end recovery at {switch}; remove it if no server created timeline {tli}"
                ),
            );
        }
    }
    for (&tli, r) in &facts.records {
        let name = format!("timelines/{tli:08X}.json");
        match &r.content {
            Err(e) => push(
                ProblemKind::RecordDamaged,
                tli,
                name,
                Some(&r.file),
                format!("{e}; it says where timeline {tli} came from"),
            ),
            Ok(rec) if rec.timeline != tli => push(
                ProblemKind::RecordMismatch,
                tli,
                name,
                Some(&r.file),
                format!("is about timeline {}, not {tli}", rec.timeline),
            ),
            Ok(rec) => {
                let Some(Ok(lines)) = facts.histories.get(&tli).map(|h| &h.content) else {
                    continue;
                };
                let from_history = lines.last().copied();
                let from_record = rec.parent.zip(rec.switch_lsn);
                if from_history != from_record {
                    let say = |p: Option<(u32, Lsn)>| {
                        p.map_or("no parent".to_string(), |(p, l)| {
                            format!("timeline {p} at {l}")
                        })
                    };
                    push(
                        ProblemKind::RecordMismatch,
                        tli,
                        name,
                        Some(&r.file),
                        format!(
                            "says timeline {tli} (recorded from host {}, data directory {}) branched from {}, but {} says from {}: two servers created a timeline {tli}",
                            rec.host,
                            rec.data_directory.as_deref().unwrap_or("unknown"),
                            say(from_record),
                            history_name(tli),
                            say(from_history)
                        ),
                    );
                }
            }
        }
    }
    let backup_tlis: Vec<u32> = facts.backups.iter().map(|b| b.timeline).collect();
    let mut tlis: Vec<u32> = tl.timelines.keys().copied().chain(backup_tlis).collect();
    tlis.sort_unstable();
    tlis.dedup();
    for tli in tlis {
        if tli == 1 || facts.histories.contains_key(&tli) {
            continue;
        }
        let t = tl.get(tli);
        let mut why = Vec::new();
        if let Some(t) = t {
            if !t.segments.is_empty() || !t.partials.is_empty() {
                why.push("archived segments".to_string());
            }
            if t.record.is_some() || facts.records.contains_key(&tli) {
                why.push(format!("a record (timelines/{tli:08X}.json)"));
            }
        }
        if let Some(b) = facts.backups.iter().find(|b| b.timeline == tli) {
            why.push(format!("backup {}", b.id));
        }
        if why.is_empty() {
            continue;
        }
        push(
            ProblemKind::HistoryMissing,
            tli,
            history_name(tli),
            None,
            format!(
                "timeline {tli} has {} but its history file is not in the archive: recovery cannot follow it to its parent; archive pg_wal/{} of the server that created timeline {tli} (dbagent wal-push)",
                why.join(" and "),
                history_name(tli)
            ),
        );
    }
    out.sort_by_key(|a| (a.timeline, a.kind));
    out
}

fn render_lines(lines: &[(u32, Lsn)]) -> String {
    if lines.is_empty() {
        return "nothing (timeline 1)".into();
    }
    lines
        .iter()
        .map(|(t, l)| format!("timeline {t} until {l}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks decompressed bytes stored as segment `segno` of timeline `tli`: one segment long, a
/// long page header at the right WAL address, this cluster's system identifier and segment
/// size, a timeline not after the name's.
pub fn check_segment(
    bytes: &[u8],
    tli: u32,
    segno: u64,
    seg_size: u64,
    system_identifier: u64,
) -> Result<(), String> {
    if bytes.len() as u64 != seg_size {
        return Err(if bytes.len() as u64 > seg_size {
            format!("decompresses to more than a segment ({seg_size} bytes)")
        } else {
            format!(
                "decompresses to {} bytes, a segment is {seg_size}: truncated",
                bytes.len()
            )
        });
    }
    let h = SegmentHeader::parse(bytes).map_err(|e| format!("{e} at its start"))?;
    if u64::from(h.seg_size) != seg_size {
        return Err(format!(
            "its header says the segment size is {}, the repository's is {seg_size}",
            h.seg_size
        ));
    }
    let expected = segno * seg_size;
    if h.page_addr != expected {
        return Err(format!(
            "its header says it starts at WAL address {}, its name says {}",
            Lsn(h.page_addr),
            Lsn(expected)
        ));
    }
    if h.system_identifier != system_identifier {
        return Err(format!(
            "its header belongs to cluster {}, the repository's is {system_identifier}",
            h.system_identifier
        ));
    }
    if h.tli == 0 || h.tli > tli {
        return Err(format!(
            "its header is on timeline {}, its name on timeline {tli}",
            h.tli
        ));
    }
    Ok(())
}

/// The result of reading one stored segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Damaged(String),
    Unreadable(String),
    /// Removed between the listing and the read.
    Vanished,
}

fn read_segment(repo: &Repo, s: &Stored, tli: u32, segno: u64, facts: &Facts) -> Outcome {
    let file = match repo.storage().get(&s.key) {
        Ok(Some(f)) => f,
        Ok(None) => return Outcome::Vanished,
        Err(RepoError::Io { source: e, .. }) => {
            return Outcome::Unreadable(format!("cannot be opened: {e}"));
        }
        Err(e) => return Outcome::Unreadable(format!("cannot be opened: {e}")),
    };
    let seg = facts.seg_size;
    let mut bytes = Vec::with_capacity(usize::try_from(seg).unwrap_or(16 << 20));
    let read = compress::decoder(s.compression, io::BufReader::with_capacity(1 << 20, file))
        .and_then(|d| d.take(seg + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        return if e.raw_os_error().is_some() {
            Outcome::Unreadable(format!("cannot be read: {e}"))
        } else {
            Outcome::Damaged(format!(
                "does not decompress ({}): {e}",
                s.compression.as_str()
            ))
        };
    }
    match check_segment(&bytes, tli, segno, seg, facts.system_identifier) {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Damaged(e),
    }
}

/// Options of one verification.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Re-read every needed segment, whatever state.db remembers.
    pub full: bool,
}

/// One timeline in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineReport {
    pub timeline: u32,
    /// Where it branched from (its history's last line); none for timeline 1.
    pub parent: Option<u32>,
    pub switch_lsn: Option<Lsn>,
    /// Its history file, when in the archive.
    pub history_file: Option<String>,
    /// promotion, restore or copy, when recorded.
    pub origin: Option<&'static str>,
    pub coverage: Coverage,
    /// The oldest kept backup whose recovery follows it.
    pub from_backup: Option<String>,
    /// First and last needed segment of this timeline.
    pub first: Option<String>,
    pub last: Option<String>,
    pub segments_needed: u64,
    pub segments_ok: u64,
    pub segments_missing: u64,
    pub segments_damaged: u64,
    pub segments_unreadable: u64,
    /// Complete segments of this timeline in the archive, needed or not.
    pub segments_archived: u64,
}

/// The verified range: the first and last needed segment (over every timeline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub first: String,
    pub last: String,
    /// Start of the first and end of the last segment.
    pub start_lsn: Lsn,
    pub end_lsn: Lsn,
}

/// The result of `dbagent wal verify` (`--json` prints exactly this).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nothing missing, damaged or unreadable, and no history conflict.
    pub ok: bool,
    pub repository: String,
    pub system_identifier: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub full: bool,
    /// The oldest kept backup (where the needed WAL starts); none without backups.
    pub oldest_backup: Option<String>,
    pub range: Option<Range>,
    pub segments_needed: u64,
    pub segments_ok: u64,
    pub segments_missing: u64,
    pub segments_damaged: u64,
    pub segments_unreadable: u64,
    pub history_conflicts: u64,
    /// Needed segments read from the archive in this run.
    pub segments_read: u64,
    /// Needed segments whose result was taken from state.db (stored file unchanged).
    pub segments_cached: u64,
    pub timelines: Vec<TimelineReport>,
    /// Segment problems by timeline and segment, then history conflicts.
    pub problems: Vec<Problem>,
}

/// A cached result.
#[derive(Debug, Clone)]
struct CacheRow {
    stored: String,
    size: u64,
    mtime_ns: i64,
    ok: bool,
    detail: Option<String>,
}

impl CacheRow {
    fn matches(&self, s: &Stored) -> bool {
        self.stored == s.file && self.size == s.size && self.mtime_ns == s.mtime_ns
    }
}

fn load_cache(db: &StateDb, key: &str) -> Result<HashMap<String, CacheRow>, StateError> {
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT name, stored, size, mtime_ns, result, detail FROM wal_verified WHERE repository = ?1",
        )
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map([key], |r| {
            let size: i64 = r.get(2)?;
            let result: String = r.get(4)?;
            Ok((
                r.get::<_, String>(0)?,
                CacheRow {
                    stored: r.get(1)?,
                    size: u64::try_from(size).unwrap_or(u64::MAX),
                    mtime_ns: r.get(3)?,
                    ok: result == "ok",
                    detail: r.get(5)?,
                },
            ))
        })
        .map_err(|e| db.err(e))?;
    let mut out = HashMap::new();
    for row in rows {
        let (name, row) = row.map_err(|e| db.err(e))?;
        out.insert(name, row);
    }
    Ok(out)
}

/// A result to remember: (segment name, stored file, ok, detail).
type Remember = (String, Stored, bool, Option<String>);

fn store_results(db: &mut StateDb, key: &str, rows: &[Remember]) -> Result<(), StateError> {
    if rows.is_empty() {
        return Ok(());
    }
    let path = db.path().to_path_buf();
    let err = |e| StateError::from_sqlite(&path, e);
    let now = jiff::Timestamp::now().as_millisecond();
    let tx = db.conn_mut().transaction().map_err(err)?;
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO wal_verified (repository, name, stored, size, mtime_ns, result, detail, verified_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (repository, name) DO UPDATE SET stored = excluded.stored,
                   size = excluded.size, mtime_ns = excluded.mtime_ns, result = excluded.result,
                   detail = excluded.detail, verified_ms = excluded.verified_ms",
            )
            .map_err(err)?;
        for (name, s, ok, detail) in rows {
            stmt.execute(params![
                key,
                name,
                s.file,
                i64::try_from(s.size).unwrap_or(i64::MAX),
                s.mtime_ns,
                if *ok { "ok" } else { "damaged" },
                detail,
                now
            ])
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}

/// Verifies the archive of `repo`, remembering results in `db`. `progress(done, total)` is
/// called after each segment read from the archive.
pub fn run(
    repo: &Repo,
    db: &mut StateDb,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, VerifyError> {
    let started_at = jiff::Timestamp::now();
    let facts = gather(repo)?;
    let plan = decide(&facts)?;
    let key = repository_key(repo);
    let cache = load_cache(db, &key)?;
    let seg = facts.seg_size;

    let mut outcomes: BTreeMap<(u32, u64), Outcome> = BTreeMap::new();
    let mut to_read: Vec<((u32, u64), &Stored)> = Vec::new();
    let mut cached = 0u64;
    for &(tli, segno) in plan.needed.keys() {
        let Some(s) = facts.segments.get(&(tli, segno)) else {
            continue;
        };
        let name = segment_name(tli, segno, seg);
        match cache.get(&name) {
            Some(row) if !opts.full && row.matches(s) => {
                cached += 1;
                outcomes.insert(
                    (tli, segno),
                    if row.ok {
                        Outcome::Ok
                    } else {
                        Outcome::Damaged(row.detail.clone().unwrap_or_else(|| "damaged".into()))
                    },
                );
            }
            _ => to_read.push(((tli, segno), s)),
        }
    }

    let total = to_read.len() as u64;
    let mut read = 0u64;
    let mut pending: Vec<Remember> = Vec::new();
    let mut store_error: Option<StateError> = None;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(to_read.len().max(1));
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, to_read, facts) = (&next, &to_read, &facts);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(((tli, segno), s)) = to_read.get(i) else {
                        return;
                    };
                    let outcome = read_segment(repo, s, *tli, *segno, facts);
                    if tx.send((i, outcome)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for (i, outcome) in rx {
            let ((tli, segno), s) = to_read[i];
            read += 1;
            progress(read, total);
            let name = segment_name(tli, segno, seg);
            match &outcome {
                Outcome::Ok => pending.push((name, s.clone(), true, None)),
                Outcome::Damaged(d) => pending.push((name, s.clone(), false, Some(d.clone()))),
                Outcome::Unreadable(_) | Outcome::Vanished => {}
            }
            outcomes.insert((tli, segno), outcome);
            if pending.len() >= BATCH && store_error.is_none() {
                if let Err(e) = store_results(db, &key, &pending) {
                    store_error = Some(e);
                }
                pending.clear();
            }
        }
    });
    if let Some(e) = store_error {
        return Err(e.into());
    }
    store_results(db, &key, &pending)?;

    let report = build_report(
        repo, &facts, &plan, &outcomes, opts, started_at, read, cached,
    );
    record_run(db, &key, &report, &cache, &plan, seg)?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    repo: &Repo,
    facts: &Facts,
    plan: &Plan,
    outcomes: &BTreeMap<(u32, u64), Outcome>,
    opts: &Options,
    started_at: jiff::Timestamp,
    read: u64,
    cached: u64,
) -> Report {
    let seg = facts.seg_size;
    let mut problems = Vec::new();
    let mut per: BTreeMap<u32, TimelineReport> = BTreeMap::new();
    let all_tlis = facts
        .timelines
        .timelines
        .keys()
        .copied()
        .chain(plan.coverage.keys().copied())
        .chain(plan.needed.keys().map(|(t, _)| *t));
    for tli in all_tlis {
        per.entry(tli).or_insert_with(|| {
            let t = facts.timelines.get(tli);
            let parent = t.and_then(|t| t.parent());
            let (coverage, from_backup) = plan
                .coverage
                .get(&tli)
                .cloned()
                .unwrap_or((Coverage::NoHistory, None));
            TimelineReport {
                timeline: tli,
                parent: parent.map(|p| p.0),
                switch_lsn: parent.map(|p| p.1),
                history_file: facts.histories.get(&tli).map(|_| history_name(tli)),
                origin: t.and_then(|t| t.origin()).map(|o| o.as_str()),
                coverage,
                from_backup,
                first: None,
                last: None,
                segments_needed: 0,
                segments_ok: 0,
                segments_missing: 0,
                segments_damaged: 0,
                segments_unreadable: 0,
                segments_archived: t.map_or(0, |t| t.segments.len() as u64),
            }
        });
    }
    let (mut ok, mut missing, mut damaged, mut unreadable) = (0u64, 0u64, 0u64, 0u64);
    for (&(tli, segno), need) in &plan.needed {
        let name = segment_name(tli, segno, seg);
        let Some(t) = per.get_mut(&tli) else {
            continue;
        };
        t.segments_needed += 1;
        if t.first.is_none() {
            t.first = Some(name.clone());
        }
        t.last = Some(name.clone());
        let stored = facts.segments.get(&(tli, segno)).map(|s| s.file.clone());
        let by = match &need.backup {
            Some(b) => format!("recovery from backup {b}"),
            None => "recovery".to_string(),
        };
        let via = if need.via == tli {
            format!("timeline {tli}")
        } else {
            format!("the history of timeline {}", need.via)
        };
        let outcome = outcomes.get(&(tli, segno));
        let problem = match (outcome, &stored) {
            (_, None) | (Some(Outcome::Vanished), _) => {
                t.segments_missing += 1;
                missing += 1;
                Some((
                    ProblemKind::Missing,
                    None,
                    format!(
                        "is not in the archive: {by} along {via} stops before it; take a new backup now (dbagent backup) and find out how it was lost"
                    ),
                ))
            }
            (Some(Outcome::Ok), _) => {
                t.segments_ok += 1;
                ok += 1;
                None
            }
            (Some(Outcome::Damaged(d)), Some(f)) => {
                t.segments_damaged += 1;
                damaged += 1;
                Some((
                    ProblemKind::Damaged,
                    Some(f.clone()),
                    format!(
                        "{f} {d}: {by} along {via} stops before it; take a new backup now, and restore the file from a copy of the repository if there is one"
                    ),
                ))
            }
            (Some(Outcome::Unreadable(d)), Some(f)) => {
                t.segments_unreadable += 1;
                unreadable += 1;
                Some((
                    ProblemKind::Unreadable,
                    Some(f.clone()),
                    format!(
                        "{f} {d}: {by} along {via} needs it; make it readable by the dbagent and PostgreSQL OS users"
                    ),
                ))
            }
            (None, Some(_)) => None,
        };
        if let Some((kind, file, problem)) = problem {
            problems.push(Problem {
                kind,
                timeline: tli,
                name,
                file,
                problem,
            });
        }
    }
    problems.extend(plan.conflicts.iter().cloned());
    let range = match (
        plan.needed.keys().min_by_key(|(t, s)| (*s, *t)),
        plan.needed.keys().max_by_key(|(t, s)| (*s, *t)),
    ) {
        (Some(&(ft, fs)), Some(&(lt, ls))) => Some(Range {
            first: segment_name(ft, fs, seg),
            last: segment_name(lt, ls, seg),
            start_lsn: Lsn(fs * seg),
            end_lsn: Lsn((ls + 1) * seg),
        }),
        _ => None,
    };
    let history_conflicts = plan.conflicts.len() as u64;
    Report {
        ok: problems.is_empty(),
        repository: repo.location().display().to_string(),
        system_identifier: facts.system_identifier.to_string(),
        started_at,
        finished_at: jiff::Timestamp::now(),
        full: opts.full,
        oldest_backup: facts.backups.first().map(|b| b.id.clone()),
        range,
        segments_needed: plan.needed.len() as u64,
        segments_ok: ok,
        segments_missing: missing,
        segments_damaged: damaged,
        segments_unreadable: unreadable,
        history_conflicts,
        segments_read: read,
        segments_cached: cached,
        timelines: per.into_values().collect(),
        problems,
    }
}

/// Records the run and forgets cached results of segments no longer needed.
fn record_run(
    db: &mut StateDb,
    key: &str,
    r: &Report,
    cache: &HashMap<String, CacheRow>,
    plan: &Plan,
    seg: u64,
) -> Result<(), StateError> {
    let path = db.path().to_path_buf();
    let err = |e| StateError::from_sqlite(&path, e);
    let needed: std::collections::HashSet<String> = plan
        .needed
        .keys()
        .map(|(t, s)| segment_name(*t, *s, seg))
        .collect();
    let problems: Vec<&Problem> = r.problems.iter().take(PROBLEMS_KEPT).collect();
    let problems = serde_json::to_string(&problems).unwrap_or_else(|_| "[]".into());
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let tx = db.conn_mut().transaction().map_err(err)?;
    {
        let mut forget = tx
            .prepare("DELETE FROM wal_verified WHERE repository = ?1 AND name = ?2")
            .map_err(err)?;
        for name in cache.keys().filter(|n| !needed.contains(*n)) {
            forget.execute(params![key, name]).map_err(err)?;
        }
    }
    tx.execute(
        "INSERT INTO wal_verify_runs (repository, started_ms, finished_ms, full, ok,
            segments_needed, segments_ok, segments_missing, segments_damaged, segments_unreadable,
            history_conflicts, segments_read, segments_cached, first_segment, last_segment,
            start_lsn, end_lsn, problems)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            key,
            r.started_at.as_millisecond(),
            r.finished_at.as_millisecond(),
            r.full,
            r.ok,
            n(r.segments_needed),
            n(r.segments_ok),
            n(r.segments_missing),
            n(r.segments_damaged),
            n(r.segments_unreadable),
            n(r.history_conflicts),
            n(r.segments_read),
            n(r.segments_cached),
            r.range.as_ref().map(|g| g.first.clone()),
            r.range.as_ref().map(|g| g.last.clone()),
            r.range.as_ref().map(|g| g.start_lsn.to_string()),
            r.range.as_ref().map(|g| g.end_lsn.to_string()),
            problems,
        ],
    )
    .map_err(err)?;
    tx.execute(
        "DELETE FROM wal_verify_runs WHERE repository = ?1 AND id NOT IN
           (SELECT id FROM wal_verify_runs WHERE repository = ?1 ORDER BY finished_ms DESC, id DESC LIMIT ?2)",
        params![key, RUNS_KEPT],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// The last recorded verification of a repository, as `check` and the collector read it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    pub finished_at: jiff::Timestamp,
    pub ok: bool,
    pub full: bool,
    pub segments_needed: u64,
    pub segments_ok: u64,
    pub segments_missing: u64,
    pub segments_damaged: u64,
    pub segments_unreadable: u64,
    pub history_conflicts: u64,
    pub segments_read: u64,
    pub segments_cached: u64,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    pub start_lsn: Option<Lsn>,
    pub end_lsn: Option<Lsn>,
    /// The first problems of the run.
    pub problems: Vec<Problem>,
}

/// The last verification of `repo` recorded in the state database of `state_dir`; `None` when
/// there is no database, no table yet, or no run of this repository. Opens read-only.
pub fn last_run(state_dir: &Path, repo: &Repo) -> Result<Option<LastRun>, StateError> {
    let Some(db) = StateDb::open_existing(state_dir)? else {
        return Ok(None);
    };
    if !db.has_table("wal_verify_runs")? {
        return Ok(None);
    }
    let key = repository_key(repo);
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    let row = db.conn().query_row(
        "SELECT finished_ms, ok, full, segments_needed, segments_ok, segments_missing,
                segments_damaged, segments_unreadable, history_conflicts, segments_read,
                segments_cached, first_segment, last_segment, start_lsn, end_lsn, problems
         FROM wal_verify_runs WHERE repository = ?1 ORDER BY finished_ms DESC, id DESC LIMIT 1",
        [&key],
        |r| {
            let ms: i64 = r.get(0)?;
            let lsn = |s: Option<String>| s.as_deref().and_then(Lsn::parse);
            let problems: String = r.get(15)?;
            Ok(LastRun {
                finished_at: jiff::Timestamp::from_millisecond(ms)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                ok: r.get(1)?,
                full: r.get(2)?,
                segments_needed: u(r.get(3)?),
                segments_ok: u(r.get(4)?),
                segments_missing: u(r.get(5)?),
                segments_damaged: u(r.get(6)?),
                segments_unreadable: u(r.get(7)?),
                history_conflicts: u(r.get(8)?),
                segments_read: u(r.get(9)?),
                segments_cached: u(r.get(10)?),
                first_segment: r.get(11)?,
                last_segment: r.get(12)?,
                start_lsn: lsn(r.get(13)?),
                end_lsn: lsn(r.get(14)?),
                problems: serde_json::from_str(&problems).unwrap_or_default(),
            })
        },
    );
    match row {
        Ok(r) => Ok(Some(r)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(db.err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn stored(tli: u32, segno: u64) -> Stored {
        Stored {
            key: Key::wal(format!("{}.zst", segment_name(tli, segno, SEG))),
            file: format!("wal/x/{}.zst", segment_name(tli, segno, SEG)),
            compression: Compression::Zstd,
            size: 100,
            mtime_ns: 1,
        }
    }

    /// Facts with segments `segs` of each timeline, histories and backups.
    fn facts(
        segs: &[(u32, std::ops::RangeInclusive<u64>)],
        histories: &[(u32, &str)],
        backups: &[(u32, u64, u64)],
    ) -> Facts {
        let mut f = Facts {
            system_identifier: 7,
            seg_size: SEG,
            backups: backups
                .iter()
                .enumerate()
                .map(|(i, &(tli, first, last))| BackupStart {
                    id: format!("B{i}"),
                    timeline: tli,
                    start_lsn: Lsn(first * SEG + 0x28),
                    first,
                    last,
                })
                .collect(),
            segments: BTreeMap::new(),
            histories: BTreeMap::new(),
            records: BTreeMap::new(),
            timelines: Timelines::new(SEG),
        };
        for (tli, range) in segs {
            for s in range.clone() {
                f.segments.insert((*tli, s), stored(*tli, s));
                f.timelines
                    .timeline_mut(*tli)
                    .segments
                    .insert(s, jiff::Timestamp::UNIX_EPOCH);
            }
        }
        for (tli, text) in histories {
            let content = parse_history(text).map_err(|e| (ProblemKind::HistoryDamaged, e));
            let t = f.timelines.timeline_mut(*tli);
            t.history = content.clone().ok();
            f.histories.insert(
                *tli,
                HistoryFile {
                    file: format!("wal/{}", history_name(*tli)),
                    content,
                },
            );
            // Recorded by wal-push, as every history archived by dbagent is.
            let parsed = parse_history(text).unwrap_or_default();
            f.records.insert(
                *tli,
                RecordFile {
                    file: format!("timelines/{tli:08X}.json"),
                    content: Ok(record(*tli, parsed.last().copied())),
                },
            );
        }
        f
    }

    fn record(tli: u32, parent: Option<(u32, Lsn)>) -> TimelineRecord {
        TimelineRecord {
            timeline: tli,
            parent: parent.map(|p| p.0),
            switch_lsn: parent.map(|p| p.1),
            began: jiff::Timestamp::UNIX_EPOCH,
            host: "db1".into(),
            data_directory: Some("/pg".into()),
            origin: super::super::timeline::Origin::Promotion,
            restored_from: None,
        }
    }

    fn needed(p: &Plan) -> Vec<(u32, u64)> {
        p.needed.keys().copied().collect()
    }

    fn kinds(p: &Plan) -> Vec<(ProblemKind, u32)> {
        p.conflicts.iter().map(|c| (c.kind, c.timeline)).collect()
    }

    #[test]
    fn needed_runs_from_the_oldest_backup_to_the_newest_segment() {
        let f = facts(&[(1, 1..=9)], &[], &[(1, 3, 4), (1, 6, 6)]);
        let p = decide(&f).unwrap();
        assert_eq!(needed(&p), (3..=9).map(|s| (1, s)).collect::<Vec<_>>());
        assert_eq!(p.needed[&(1, 5)].backup.as_deref(), Some("B0"));
        assert!(p.conflicts.is_empty());
        // A backup whose WAL is not archived yet: its own segments are needed all the same.
        let f = facts(&[(1, 1..=3)], &[], &[(1, 3, 5)]);
        assert_eq!(needed(&decide(&f).unwrap()), vec![(1, 3), (1, 4), (1, 5)]);
        // Without backups, from the oldest archived segment.
        let f = facts(&[(1, 4..=6)], &[], &[]);
        assert_eq!(needed(&decide(&f).unwrap()), vec![(1, 4), (1, 5), (1, 6)]);
    }

    #[test]
    fn needed_follows_each_timeline_from_its_switch_point() {
        // Timeline 2 branched from 1 in segment 5; timeline 1 went on to 7 (the old primary).
        let f = facts(
            &[(1, 2..=7), (2, 5..=8)],
            &[(2, "1\t0/5000060\tno recovery target specified\n")],
            &[(1, 2, 2)],
        );
        let p = decide(&f).unwrap();
        let mut want: Vec<(u32, u64)> = (2..=7).map(|s| (1, s)).collect();
        want.extend((5..=8).map(|s| (2, s)));
        want.sort_unstable();
        assert_eq!(needed(&p), want);
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        assert_eq!(p.coverage[&2].0, Coverage::Followed);
        // Segment 4 of timeline 1 lost: needed by both paths, named once.
        let mut f2 = f.clone();
        f2.segments.remove(&(1, 4));
        assert!(decide(&f2).unwrap().needed.contains_key(&(1, 4)));
    }

    #[test]
    fn a_timeline_that_left_before_the_oldest_backup_is_not_needed() {
        // Timeline 2 branched at segment 3; the only backup is on timeline 1 from segment 5.
        let f = facts(
            &[(1, 1..=8), (2, 3..=4)],
            &[(2, "1\t0/3000060\tx\n")],
            &[(1, 5, 5)],
        );
        let p = decide(&f).unwrap();
        assert_eq!(p.coverage[&2].0, Coverage::NotReachable);
        assert_eq!(needed(&p), (5..=8).map(|s| (1, s)).collect::<Vec<_>>());
    }

    #[test]
    fn a_backup_on_a_timeline_without_history_is_verified_on_its_own() {
        let f = facts(&[(1, 1..=3), (2, 4..=6)], &[], &[(2, 4, 5)]);
        let p = decide(&f).unwrap();
        assert!(needed(&p).contains(&(2, 4)) && needed(&p).contains(&(2, 6)));
        assert_eq!(kinds(&p), vec![(ProblemKind::HistoryMissing, 2)]);
    }

    #[test]
    fn histories_that_disagree_are_conflicts() {
        let two = "1\t0/5000060\tx\n";
        // 3 claims 2 came from 1 at another point than 2's own history says.
        let f = facts(
            &[(1, 1..=9), (2, 5..=9)],
            &[(2, two), (3, "1\t0/4000000\tx\n2\t0/9000000\ty\n")],
            &[(1, 1, 1)],
        );
        let p = decide(&f).unwrap();
        assert!(
            kinds(&p).contains(&(ProblemKind::NotDescendant, 3)),
            "{:?}",
            p.conflicts
        );
        // 3 claims a parent the archive does not know.
        let f = facts(
            &[(1, 1..=9)],
            &[(3, "1\t0/4000000\tx\n2\t0/9000000\ty\n")],
            &[(1, 1, 1)],
        );
        let p = decide(&f).unwrap();
        assert!(
            kinds(&p).contains(&(ProblemKind::UnknownParent, 3)),
            "{:?}",
            p.conflicts
        );
        let msg = &p.conflicts[0].problem;
        assert!(msg.contains("00000002.history"), "{msg}");
        // A parent not before the child, and a history from a parent that is 1 with more lines.
        let f = facts(
            &[(1, 1..=9)],
            &[(2, "1\t0/3000000\tx\n2\t0/5000000\tx\n")],
            &[(1, 1, 1)],
        );
        assert!(kinds(&decide(&f).unwrap()).contains(&(ProblemKind::HistoryDamaged, 2)));
        // Damaged history text.
        let f = facts(&[(1, 1..=9)], &[(2, "garbage\n")], &[(1, 1, 1)]);
        assert!(kinds(&decide(&f).unwrap()).contains(&(ProblemKind::HistoryDamaged, 2)));
    }

    #[test]
    fn foreign_histories_and_two_timelines_with_one_number_are_conflicts() {
        // A history nobody recorded, of a timeline without segments.
        let mut f = facts(&[(1, 1..=9)], &[(2, "1\t0/3000000\tx\n")], &[(1, 1, 1)]);
        f.records.clear();
        assert_eq!(
            kinds(&decide(&f).unwrap()),
            vec![(ProblemKind::ForeignHistory, 2)]
        );
        // The record says 2 branched elsewhere than its history file says.
        let mut f = facts(
            &[(1, 1..=9), (2, 3..=4)],
            &[(2, "1\t0/3000000\tx\n")],
            &[(1, 1, 1)],
        );
        f.records.insert(
            2,
            RecordFile {
                file: "timelines/00000002.json".into(),
                content: Ok(record(2, Some((1, Lsn(0x7000000))))),
            },
        );
        let p = decide(&f).unwrap();
        assert_eq!(kinds(&p), vec![(ProblemKind::RecordMismatch, 2)]);
        assert!(p.conflicts[0].problem.contains("two servers"));
        // Segments of 2 from before its history says it began.
        let f = facts(
            &[(1, 1..=9), (2, 1..=4)],
            &[(2, "1\t0/3000000\tx\n")],
            &[(1, 1, 1)],
        );
        let p = decide(&f).unwrap();
        assert_eq!(kinds(&p), vec![(ProblemKind::SegmentBeforeBranch, 2)]);
        assert!(
            p.conflicts[0].problem.contains("000000020000000000000001"),
            "{}",
            p.conflicts[0].problem
        );
        // Segments without a history.
        let f = facts(&[(1, 1..=9), (3, 5..=6)], &[], &[(1, 1, 1)]);
        assert_eq!(
            kinds(&decide(&f).unwrap()),
            vec![(ProblemKind::HistoryMissing, 3)]
        );
    }

    fn header(sysid: u64, tli: u32, page_addr: u64) -> Vec<u8> {
        let mut b = vec![0u8; SEG as usize];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
        b[4..8].copy_from_slice(&tli.to_le_bytes());
        b[8..16].copy_from_slice(&page_addr.to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn segment_content_is_checked_against_its_name_and_the_repository() {
        assert_eq!(check_segment(&header(7, 1, 3 * SEG), 1, 3, SEG, 7), Ok(()));
        // A new timeline's first segment starts with its parent's page header.
        assert_eq!(check_segment(&header(7, 1, 3 * SEG), 2, 3, SEG, 7), Ok(()));
        let e = check_segment(&header(7, 1, 3 * SEG), 1, 4, SEG, 7).unwrap_err();
        assert!(e.contains("starts at WAL address 0/3000000"), "{e}");
        let e = check_segment(&header(8, 1, 3 * SEG), 1, 3, SEG, 7).unwrap_err();
        assert!(e.contains("cluster 8"), "{e}");
        let e = check_segment(&header(7, 2, 3 * SEG), 1, 3, SEG, 7).unwrap_err();
        assert!(e.contains("timeline 2"), "{e}");
        let e = check_segment(&header(7, 1, 3 * SEG)[..1000], 1, 3, SEG, 7).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = check_segment(&vec![0; SEG as usize], 1, 3, SEG, 7).unwrap_err();
        assert!(e.contains("no WAL long page header"), "{e}");
    }

    /// A repository in a temp dir with stored segments of cluster 7 (fake but well-formed).
    struct TempRepo {
        dir: tempfile::TempDir,
        repo: Repo,
    }

    impl TempRepo {
        fn new() -> TempRepo {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repo::at(dir.path().join("repo"));
            repo.bind(7, Some(15), SEG).unwrap();
            TempRepo { dir, repo }
        }

        fn store(&self, key: &Key, c: Compression, bytes: &[u8]) -> PathBuf {
            self.repo
                .storage()
                .create_new(key, &mut |f| {
                    let mut e = compress::encoder(c, 1, 1, f)?;
                    e.write_all(bytes)?;
                    e.finish()
                })
                .unwrap();
            self.repo.locate(key)
        }

        fn segment(&self, tli: u32, segno: u64, c: Compression) -> PathBuf {
            let name = WalName::parse(&segment_name(tli, segno, SEG)).unwrap();
            let key = super::super::stored_key(&name, c);
            self.store(&key, c, &header(7, tli.min(1), segno * SEG))
        }

        fn history(&self, tli: u32, text: &str) {
            let key = Key::wal(format!("{}.zst", history_name(tli)));
            self.store(&key, Compression::Zstd, text.as_bytes());
            super::super::timeline::record_archived_history(&self.repo, tli, text, None).unwrap();
        }
    }

    #[test]
    fn gather_sees_what_timelines_read_sees_and_reports_what_it_refuses() {
        let t = TempRepo::new();
        for s in 1..=4 {
            t.segment(1, s, Compression::Zstd);
        }
        t.segment(1, 5, Compression::None);
        t.segment(2, 4, Compression::Lz4);
        let partial = Key::wal("000000010000000000000004.partial");
        t.repo.storage().put(&partial, b"x").unwrap();
        t.history(2, "1\t0/4000060\tno recovery target specified\n");
        let f = gather(&t.repo).unwrap();
        let r = Timelines::read(&t.repo, SEG).unwrap();
        assert_eq!(
            f.timelines.timelines.keys().collect::<Vec<_>>(),
            r.timelines.keys().collect::<Vec<_>>()
        );
        for (tli, want) in &r.timelines {
            let got = &f.timelines.timelines[tli];
            assert_eq!(got.history, want.history, "timeline {tli}");
            assert_eq!(got.record, want.record, "timeline {tli}");
            assert_eq!(got.partials, want.partials, "timeline {tli}");
            assert_eq!(got.stored_bytes, want.stored_bytes, "timeline {tli}");
            assert_eq!(
                got.segments.keys().collect::<Vec<_>>(),
                want.segments.keys().collect::<Vec<_>>(),
                "timeline {tli}"
            );
        }
        assert_eq!(f.segments[&(1, 5)].compression, Compression::None);
        assert_eq!(f.segments[&(2, 4)].compression, Compression::Lz4);
        assert_eq!(
            f.segments[&(1, 2)].file,
            "wal/0000000100000000/000000010000000000000002.zst"
        );
        // A history file that does not decompress: Timelines::read gives up, gather reports it.
        let damaged = Key::wal("00000003.history.zst");
        t.repo.storage().put(&damaged, b"not zstd").unwrap();
        assert!(Timelines::read(&t.repo, SEG).is_err());
        let f = gather(&t.repo).unwrap();
        assert!(matches!(
            f.histories[&3].content,
            Err((ProblemKind::HistoryDamaged, _))
        ));
        assert!(kinds(&decide(&f).unwrap()).contains(&(ProblemKind::HistoryDamaged, 3)));
        drop(t.dir);
    }

    #[test]
    fn results_are_remembered_until_the_stored_file_changes() {
        let t = TempRepo::new();
        let state = t.dir.path().join("state");
        let mut db = StateDb::open(&state).unwrap();
        for s in 1..=4 {
            t.segment(1, s, Compression::Zstd);
        }
        let mut calls = 0;
        let opts = Options::default();
        let r = run(&t.repo, &mut db, &opts, &mut |_, _| calls += 1).unwrap();
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(
            (r.segments_needed, r.segments_read, r.segments_cached),
            (4, 4, 0)
        );
        assert_eq!(calls, 4);
        let r = run(&t.repo, &mut db, &opts, &mut |_, _| {}).unwrap();
        assert_eq!((r.segments_read, r.segments_cached), (0, 4));
        // Another file under the name (rewritten): read again, and it is damaged.
        let path = t.segment(1, 3, Compression::Zstd);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let r = run(&t.repo, &mut db, &opts, &mut |_, _| {}).unwrap();
        assert_eq!((r.segments_read, r.segments_cached), (1, 3));
        assert_eq!(r.segments_damaged, 1);
        assert_eq!(r.problems[0].name, "000000010000000000000003");
        // Damaged results are remembered too; --full reads everything.
        let r = run(&t.repo, &mut db, &opts, &mut |_, _| {}).unwrap();
        assert_eq!((r.segments_read, r.segments_damaged), (0, 1));
        let full = Options { full: true };
        let r = run(&t.repo, &mut db, &full, &mut |_, _| {}).unwrap();
        assert_eq!((r.segments_read, r.segments_damaged), (4, 1));
        // What check and the collector read.
        let last = last_run(&state, &t.repo).unwrap().unwrap();
        assert_eq!(
            (
                last.segments_needed,
                last.segments_damaged,
                last.segments_read
            ),
            (4, 1, 4)
        );
        assert_eq!(last.problems.len(), 1);
        assert_eq!(last.start_lsn, Some(Lsn(SEG)));
        assert_eq!(last.end_lsn, Some(Lsn(5 * SEG)));
        // Another repository has no run yet.
        let other = Repo::at(t.dir.path().join("other"));
        assert_eq!(last_run(&state, &other).unwrap(), None);
    }

    proptest::proptest! {
        /// Along one timeline the needed segments are exactly those from the oldest backup's
        /// first segment to the newest archived one (or the backup's last), whatever is
        /// archived; each absent one is needed all the same.
        #[test]
        fn needed_is_the_range_from_the_oldest_backup_to_the_newest_segment(
            present in proptest::collection::btree_set(1u64..300, 0..80),
            first in 1u64..300,
            len in 0u64..3,
            second in proptest::option::of(1u64..300),
        ) {
            let mut backups = vec![(1, first, first + len)];
            if let Some(s) = second {
                backups.push((1, s, s));
            }
            let mut f = facts(&[], &[], &backups);
            for s in &present {
                f.segments.insert((1, *s), stored(1, *s));
                f.timelines.timeline_mut(1).segments.insert(*s, jiff::Timestamp::UNIX_EPOCH);
            }
            let p = decide(&f).unwrap();
            let from = backups.iter().map(|b| b.1).min().unwrap_or(first);
            let to = present
                .iter()
                .copied()
                .filter(|s| *s >= from)
                .chain(backups.iter().map(|b| b.2))
                .max()
                .unwrap_or(from);
            proptest::prop_assert_eq!(needed(&p), (from..=to).map(|s| (1, s)).collect::<Vec<_>>());
            proptest::prop_assert!(p.conflicts.is_empty());
        }
    }
}
