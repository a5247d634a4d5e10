//! Which timeline a restore follows: decided from the target and the archive's timeline
//! histories before anything is written, never left to `recovery_target_timeline = latest`
//! (the newest timeline in the archive, which may be a test copy's branch).
//!
//! The rule: the target is reached along the history that held it at that moment. A branch
//! that left that history before the target is never followed. Test copies (timelines recorded
//! with origin `copy`, and everything descending from them) are never followed unless asked
//! with `--timeline N`. Where the archive alone cannot decide (two histories both hold the
//! target), the decision is a refusal that lists the candidates.
//!
//! Everything here is a pure function of [`Timelines`] (the facts gathered from the archive),
//! the backup and the target, so it is property-tested.

use serde::Serialize;

use super::target::{Target, TimelineChoice};
use crate::wal::Lsn;
use crate::wal::timeline::{Origin, Step, Timelines, timeline_at, timeline_of};

/// One timeline a target could be reached on, as shown when the plan refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub timeline: u32,
    pub parent: Option<u32>,
    pub branch_lsn: Option<Lsn>,
    pub began: Option<jiff::Timestamp>,
    pub origin: Option<&'static str>,
    pub newest_archived: Option<jiff::Timestamp>,
}

impl Candidate {
    fn of(tl: &Timelines, tli: u32) -> Candidate {
        let t = tl.get(tli);
        Candidate {
            timeline: tli,
            parent: t.and_then(|t| t.parent()).map(|p| p.0),
            branch_lsn: t.and_then(|t| t.parent()).map(|p| p.1),
            began: t.and_then(|t| t.began()),
            origin: t.and_then(|t| t.origin()).map(Origin::as_str),
            newest_archived: t.and_then(|t| t.last_archived()),
        }
    }

    /// `timeline 3 (branched from 1 at 0/9000060, began 2026-..., promotion)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (self.parent, self.branch_lsn) {
            (Some(p), Some(l)) => parts.push(format!("branched from {p} at {l}")),
            _ => parts.push("the first timeline".into()),
        }
        if let Some(b) = self.began {
            parts.push(format!("began {}", b.strftime("%Y-%m-%d %H:%M:%S UTC")));
        }
        parts.push(self.origin.unwrap_or("origin not recorded").to_string());
        if let Some(n) = self.newest_archived {
            parts.push(format!(
                "newest WAL archived {}",
                n.strftime("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        format!("timeline {} ({})", self.timeline, parts.join(", "))
    }
}

/// The timeline a restore follows and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// recovery_target_timeline, always a number.
    pub timeline: u32,
    pub path: Vec<Step>,
    /// One line: why this timeline.
    pub why: String,
    /// Timelines of the archive that were left out, with the reason (copies, other branches).
    pub left_out: Vec<String>,
}

/// Why no timeline could be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Several histories hold the target: the candidates.
    Ambiguous {
        what: String,
        candidates: Vec<Candidate>,
    },
    /// `--timeline N` (or the restore point's timeline) does not descend from the backup.
    NotADescendant { tli: u32, why: String },
    /// The history file of a needed timeline is missing or damaged.
    NoHistory { tli: u32 },
    /// No timeline of the archive reaches the target: where each history ends.
    Unreachable { what: String, latest: String },
}

/// The backup as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct BackupPos {
    pub timeline: u32,
    pub stop_lsn: Lsn,
    pub stop_time: jiff::Timestamp,
}

/// Timelines that descend from the backup's timeline at the backup's end (the backup's own
/// included), in order; the ones that lie under a copy (after the backup's timeline) apart.
fn subtree(tl: &Timelines, b: BackupPos) -> (Vec<u32>, Vec<u32>) {
    let mut live = Vec::new();
    let mut copies = Vec::new();
    let mut all: Vec<u32> = tl.timelines.keys().copied().collect();
    if !all.contains(&b.timeline) {
        all.push(b.timeline);
        all.sort_unstable();
    }
    for tli in all {
        if !tl.descends_at(b.timeline, tli, b.stop_lsn) {
            continue;
        }
        let under_copy = tl.path(tli).is_some_and(|path| {
            path.iter()
                .skip_while(|s| s.timeline != b.timeline)
                .skip(1)
                .any(|s| tl.get(s.timeline).and_then(|t| t.origin()) == Some(Origin::Copy))
        });
        if under_copy {
            copies.push(tli);
        } else {
            live.push(tli);
        }
    }
    (live, copies)
}

/// Whether `parent` kept writing after `child` branched from it: it archived a complete
/// segment at or after the branch point's segment, after the child began.
fn kept_running(tl: &Timelines, parent: u32, child: u32) -> bool {
    let (Some(p), Some(c)) = (tl.get(parent), tl.get(child)) else {
        return false;
    };
    let Some((_, switch)) = c.parent() else {
        return false;
    };
    let from = switch.segno(tl.seg_size);
    let began = c.began();
    p.segments
        .range(from..)
        .any(|(_, at)| began.is_none_or(|b| *at > b))
}

/// The heads among `set`: timelines with no child in `set`, or that kept running after one.
fn heads(tl: &Timelines, set: &[u32]) -> Vec<u32> {
    set.iter()
        .copied()
        .filter(|&t| {
            let kids: Vec<u32> = tl
                .children(t)
                .into_iter()
                .filter(|k| set.contains(k))
                .collect();
            kids.is_empty() || kids.iter().any(|&k| kept_running(tl, t, k))
        })
        .collect()
}

/// Follows `x` to its successor while it has exactly one successor in `set` and stopped
/// where that successor began (a failover): the same history, with the WAL of the switch
/// segment on the successor.
fn continuation(tl: &Timelines, set: &[u32], mut x: u32) -> u32 {
    loop {
        let kids: Vec<u32> = tl
            .children(x)
            .into_iter()
            .filter(|k| set.contains(k))
            .collect();
        match kids.as_slice() {
            [k] if !kept_running(tl, x, *k) => x = *k,
            _ => return x,
        }
    }
}

/// Whether WAL archived at `last` was written at or after `t`, to the second: an object
/// store keeps modification times in whole seconds (S3's Last-Modified), so a segment holding
/// a commit made at 10:00:00.7 can read as archived at 10:00:00.
fn archived_by(last: jiff::Timestamp, t: jiff::Timestamp) -> bool {
    last.as_second() >= t.as_second()
}

/// Whether the WAL of `tli` itself (not its ancestors') reaches segment `segno`.
fn own_wal_reaches(tl: &Timelines, tli: u32, segno: u64) -> bool {
    tl.get(tli)
        .is_some_and(|t| t.segments.range(segno..).next().is_some())
}

/// Among `set`, the timeline to write as recovery_target_timeline so that position `lsn` is
/// read on `holder`: `holder` itself when its own archived WAL has the segment, else the
/// lowest descendant whose path reads that segment from a timeline that has it.
fn reader_for(tl: &Timelines, set: &[u32], holder: u32, lsn: Lsn) -> u32 {
    let segno = lsn.segno(tl.seg_size);
    if tl.has_segment(holder, segno) || own_wal_reaches(tl, holder, segno) {
        return holder;
    }
    set.iter()
        .copied()
        .filter(|&t| {
            tl.path(t).is_some_and(|p| {
                timeline_at(&p, lsn) == holder
                    && tl.has_segment(timeline_of(&p, segno, tl.seg_size), segno)
            })
        })
        .min()
        .unwrap_or(holder)
}

/// Where each head's archived WAL ends, for "the latest point that can be restored to".
fn latest_points(tl: &Timelines, set: &[u32]) -> String {
    let hs = heads(tl, set);
    let mut parts = Vec::new();
    for h in hs {
        if let Some((on, segno, at)) = tl.newest_on_path(h, 0) {
            parts.push(format!(
                "timeline {h}: segment {} archived {}",
                crate::wal::name::segment_name(on, segno, tl.seg_size),
                at.strftime("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
    }
    if parts.is_empty() {
        "no WAL after the backup is archived".into()
    } else {
        parts.join("; ")
    }
}

fn decided(
    tl: &Timelines,
    tli: u32,
    why: String,
    left_out: Vec<String>,
) -> Result<Decision, Refusal> {
    let path = tl.path(tli).ok_or(Refusal::NoHistory { tli })?;
    Ok(Decision {
        timeline: tli,
        path,
        why,
        left_out,
    })
}

/// Decides the timeline for `target` restored from backup `b`. `point` is the recorded
/// restore point's `(timeline, lsn)` for `name:` targets.
pub fn decide(
    tl: &Timelines,
    b: BackupPos,
    target: &Target,
    point: Option<(u32, Lsn)>,
    choice: TimelineChoice,
) -> Result<Decision, Refusal> {
    let (live, copies) = subtree(tl, b);
    let mut left_out: Vec<String> = copies
        .iter()
        .map(|c| {
            format!(
                "{}: a test copy (not followed unless --timeline {c})",
                Candidate::of(tl, *c).describe()
            )
        })
        .collect();
    let others: Vec<u32> = tl
        .timelines
        .keys()
        .copied()
        .filter(|t| !live.contains(t) && !copies.contains(t))
        .collect();
    if !others.is_empty() {
        left_out.push(format!(
            "timelines {} do not descend from the backup's timeline {} after the backup",
            others
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            b.timeline
        ));
    }
    match choice {
        TimelineChoice::Id(n) => {
            if !tl.descends_at(b.timeline, n, b.stop_lsn) {
                return Err(if n != b.timeline && tl.path(n).is_none() {
                    Refusal::NoHistory { tli: n }
                } else {
                    Refusal::NotADescendant {
                        tli: n,
                        why: format!(
                            "timeline {n}'s history does not pass through the backup's timeline {} at the backup's end ({})",
                            b.timeline, b.stop_lsn
                        ),
                    }
                });
            }
            return decided(tl, n, format!("--timeline {n} was given"), Vec::new());
        }
        TimelineChoice::Current => {
            return decided(
                tl,
                b.timeline,
                format!("--timeline current: the backup's timeline {}", b.timeline),
                Vec::new(),
            );
        }
        TimelineChoice::Latest => {}
    }
    let ambiguous = |what: String, cands: &[u32]| Refusal::Ambiguous {
        what,
        candidates: cands.iter().map(|c| Candidate::of(tl, *c)).collect(),
    };
    match target {
        Target::Immediate => decided(
            tl,
            b.timeline,
            format!(
                "recovery stops when the backup is consistent, on its own timeline {}",
                b.timeline
            ),
            left_out,
        ),
        Target::Latest | Target::Xid(_) => {
            let hs = heads(tl, &live);
            match hs.as_slice() {
                [one] => {
                    let why = if *one == b.timeline {
                        format!(
                            "timeline {one} is the only history after the backup that is still written (no failover after the backup)"
                        )
                    } else {
                        format!(
                            "timeline {one} is the newest timeline of the backup's history: every timeline between them stopped where its successor began"
                        )
                    };
                    decided(tl, *one, why, left_out)
                }
                [] => decided(
                    tl,
                    b.timeline,
                    "no other history descends from the backup".into(),
                    left_out,
                ),
                many => Err(ambiguous(
                    match target {
                        Target::Xid(x) => format!(
                            "transaction {x}: several histories went on after the backup, and where a transaction committed is only known during replay"
                        ),
                        _ => "the newest archived WAL: several histories went on after the backup"
                            .into(),
                    },
                    many,
                )),
            }
        }
        Target::Lsn(_) | Target::Name(_) => {
            let lsn = match (target, point) {
                (_, Some((_, l))) => l,
                (Target::Lsn(l), None) => *l,
                _ => {
                    // An unrecorded restore point: its position is unknown, as for an xid.
                    let hs = heads(tl, &live);
                    return match hs.as_slice() {
                        [one] => decided(
                            tl,
                            *one,
                            format!("timeline {one} is the only history after the backup"),
                            left_out,
                        ),
                        [] => decided(tl, b.timeline, "the backup's timeline".into(), left_out),
                        many => Err(ambiguous(
                            format!(
                                "{}: several histories went on after the backup",
                                target.describe()
                            ),
                            many,
                        )),
                    };
                }
            };
            if let Some((ptli, _)) = point {
                // A recorded restore point names its timeline: that is the history.
                let all: Vec<u32> = live.iter().chain(copies.iter()).copied().collect();
                if !all.contains(&ptli) {
                    return Err(Refusal::NotADescendant {
                        tli: ptli,
                        why: format!(
                            "the restore point was created on timeline {ptli}, which does not descend from the backup's timeline {} after the backup",
                            b.timeline
                        ),
                    });
                }
                let reader = reader_for(tl, &all, ptli, lsn);
                return decided(
                    tl,
                    reader,
                    format!("the restore point was created on timeline {ptli} at {lsn}"),
                    left_out,
                );
            }
            let segno = lsn.segno(tl.seg_size);
            let mut holders: Vec<u32> = Vec::new();
            for &t in &live {
                let Some(path) = tl.path(t) else { continue };
                let on = timeline_at(&path, lsn);
                let holds = if on == t {
                    own_wal_reaches(tl, t, segno)
                } else {
                    // Read on an ancestor that this history left after `lsn`.
                    live.contains(&on) || on == b.timeline
                };
                if holds && !holders.contains(&on) {
                    holders.push(on);
                }
            }
            // An ancestor whose own WAL does not reach the LSN, but whose successor begins
            // after it, holds it too: drop holders that only appear through such a path when
            // another holder is the same history.
            holders.sort_unstable();
            match holders.as_slice() {
                [one] => {
                    let reader = reader_for(tl, &live, *one, lsn);
                    decided(
                        tl,
                        reader,
                        format!(
                            "LSN {lsn} lies on timeline {one}, the only history after the backup that reached it"
                        ),
                        left_out,
                    )
                }
                [] => Err(Refusal::Unreachable {
                    what: format!("LSN {lsn}"),
                    latest: latest_points(tl, &live),
                }),
                many => Err(ambiguous(
                    format!(
                        "LSN {lsn} exists on several histories (each wrote its own WAL at that position)"
                    ),
                    many,
                )),
            }
        }
        Target::Time(t) => {
            let t = *t;
            // A history is live at `t` when it had begun (the backup's timeline always had)
            // and archived WAL at or after `t`.
            let began = |x: u32| -> Option<jiff::Timestamp> {
                if x == b.timeline {
                    None
                } else {
                    tl.get(x).and_then(|a| a.began())
                }
            };
            let live_at: Vec<u32> = live
                .iter()
                .copied()
                .filter(|&x| {
                    began(x).is_none_or(|bg| bg <= t)
                        && tl
                            .get(x)
                            .and_then(|a| a.last_archived())
                            .is_some_and(|last| archived_by(last, t))
                })
                .collect();
            match live_at.as_slice() {
                [one] => decided(
                    tl,
                    continuation(tl, &live, *one),
                    format!(
                        "timeline {one} is the only history that was being written at {}",
                        t.strftime("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    left_out,
                ),
                [] => {
                    // Between a history's end and its successor's start (a failover): the
                    // successor that began after `t` from a parent that had stopped by then.
                    let next: Vec<u32> = live
                        .iter()
                        .copied()
                        .filter(|&x| {
                            began(x).is_some_and(|bg| bg > t)
                                && tl.get(x).and_then(|a| a.parent()).is_some_and(|(p, _)| {
                                    (p == b.timeline || live.contains(&p))
                                        && tl
                                            .get(p)
                                            .and_then(|a| a.last_archived())
                                            .is_none_or(|last| !archived_by(last, t))
                                        && !live_at.contains(&p)
                                })
                                && tl.get(x).is_some_and(|a| !a.segments.is_empty())
                        })
                        .collect();
                    // Only the first successor of each chain counts.
                    let first: Vec<u32> = next
                        .iter()
                        .copied()
                        .filter(|&x| {
                            tl.get(x)
                                .and_then(|a| a.parent())
                                .is_none_or(|(p, _)| !next.contains(&p))
                        })
                        .collect();
                    match first.as_slice() {
                        [one] => decided(
                            tl,
                            *one,
                            format!(
                                "no history was being written at {}: timeline {one} took over after its parent stopped, so recovery stops where it began",
                                t.strftime("%Y-%m-%d %H:%M:%S UTC")
                            ),
                            left_out,
                        ),
                        [] => Err(Refusal::Unreachable {
                            what: format!("time {}", t.strftime("%Y-%m-%d %H:%M:%S UTC")),
                            latest: latest_points(tl, &live),
                        }),
                        many => Err(ambiguous(
                            format!("time {}", t.strftime("%Y-%m-%d %H:%M:%S UTC")),
                            many,
                        )),
                    }
                }
                many => Err(ambiguous(
                    format!(
                        "time {}: several histories were being written then (one branched before it and kept running)",
                        t.strftime("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    many,
                )),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Property tests of the pure planning step: for any set of timelines, histories and
    //! targets, the path is an ancestor chain through the backup, never through a copy unless
    //! asked, every segment up to the target along it is proven or named missing, and a target
    //! that several histories hold is refused.

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::backup::manifest::BackupManifest;
    use crate::repo::Compression;
    use crate::restore::plan::{self, Action, DirFacts, Facts, PlanError, Request};
    use crate::wal::timeline::{ArchivedTimeline, TimelineRecord};

    const SEG: u64 = 16 << 20;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// One generated timeline: parent index, switch segment offset, copy?, last segment offset,
    /// whether one of its segments is missing.
    pub(crate) type Gen = (usize, u64, bool, u64, Option<u64>);

    pub(crate) fn build(gens: &[Gen]) -> Timelines {
        let mut tl = Timelines {
            seg_size: SEG,
            timelines: BTreeMap::new(),
        };
        // Timeline 1 from segment 0.
        let mut starts: Vec<u64> = vec![0];
        let mut t1 = ArchivedTimeline {
            tli: 1,
            history: Some(Vec::new()),
            ..ArchivedTimeline::default()
        };
        for s in 0..=12 {
            t1.segments.insert(s, at(s as i64 * 10 + 5));
        }
        tl.timelines.insert(1, t1);
        for (i, &(parent, switch_off, copy, len, hole)) in gens.iter().enumerate() {
            let tli = i as u32 + 2;
            let parent = (parent % (i + 1)) as u32 + 1;
            let pstart = starts[parent as usize - 1];
            let switch = pstart + 1 + switch_off;
            starts.push(switch);
            let switch_lsn = Lsn(switch * SEG + 0x60);
            let mut history = tl.timelines[&parent].history.clone().unwrap_or_default();
            history.push((parent, switch_lsn));
            let began = at(switch as i64 * 10 + 7);
            let mut t = ArchivedTimeline {
                tli,
                history: Some(history),
                record: Some(TimelineRecord {
                    timeline: tli,
                    parent: Some(parent),
                    switch_lsn: Some(switch_lsn),
                    began,
                    host: "h".into(),
                    data_directory: None,
                    origin: if copy {
                        Origin::Copy
                    } else {
                        Origin::Promotion
                    },
                    restored_from: None,
                }),
                history_archived_at: Some(began),
                ..ArchivedTimeline::default()
            };
            for s in switch..=switch + len {
                if Some(s) != hole.map(|h| switch + h) {
                    t.segments.insert(s, at(s as i64 * 10 + 8 + tli as i64));
                }
            }
            tl.timelines.insert(tli, t);
        }
        tl
    }

    fn manifest() -> BackupManifest {
        BackupManifest {
            format: 1,
            id: "B".into(),
            label: None,
            system_identifier: "1".into(),
            pg_version: "15.0".into(),
            pg_major: 15,
            timeline: 1,
            start_lsn: Lsn(SEG + 0x28),
            stop_lsn: Lsn(SEG + 0x100),
            wal_start: "000000010000000000000001".into(),
            wal_stop: "000000010000000000000001".into(),
            wal_segment_size: SEG,
            start_time: at(10),
            stop_time: at(12),
            compression: Compression::None,
            compressed_by: "dbagent".into(),
            files: Vec::new(),
            dbagent_version: "test".into(),
            backup_type: Default::default(),
            parent: None,
            taken_from: None,
        }
    }

    pub(crate) fn facts(tl: Timelines) -> Facts {
        Facts {
            now: at(100_000),
            repo_root: PathBuf::from("/repo"),
            wal_dir: PathBuf::from("/repo/wal"),
            manifest_paths: Default::default(),
            running_pid: None,
            dir: DirFacts::default(),
            backups: vec![manifest()],
            point: None,
            point_names: Vec::new(),
            timelines: tl,
            tablespace_dirs: Vec::new(),
            root: false,
            dir_owner_name: None,
            postgres_user: None,
            staging: Default::default(),
        }
    }

    pub(crate) fn request(target: Target, timeline: TimelineChoice) -> Request {
        Request {
            to: PathBuf::from("/restore/here"),
            target,
            backup: None,
            action: Action::Promote,
            exclusive: false,
            timeline,
            force: false,
            tablespace_map: Vec::new(),
            restore_command: "true".into(),
            port: None,
            no_archive: true,
            in_place: false,
            notes: Vec::new(),
            extra_settings: Vec::new(),
            staging: None,
            bin_dir: None,
        }
    }

    /// Timelines not under a copy that descend from the backup (timeline 1 at its end).
    fn not_copy(tl: &Timelines, tli: u32) -> bool {
        tl.descends_at(1, tli, manifest().stop_lsn)
            && tl.path(tli).is_some_and(|p| {
                p.iter()
                    .all(|s| tl.get(s.timeline).and_then(|t| t.origin()) != Some(Origin::Copy))
            })
    }

    fn target_strategy() -> impl Strategy<Value = Target> {
        prop_oneof![
            Just(Target::Latest),
            Just(Target::Immediate),
            (1u64..40, 0u64..SEG).prop_map(|(s, o)| Target::Lsn(Lsn(s * SEG + o))),
            (20i64..400).prop_map(|s| Target::Time(at(s))),
            Just(Target::Xid(1000)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn timeline_decisions_follow_one_history_and_prove_every_segment(
            gens in proptest::collection::vec(
                (0usize..5, 0u64..8, proptest::bool::weighted(0.35), 0u64..12,
                 proptest::option::weighted(0.15, 0u64..12)),
                0..5,
            ),
            target in target_strategy(),
            pick in proptest::option::weighted(0.2, 1u32..7),
        ) {
            let tl = build(&gens);
            let choice = pick.map_or(TimelineChoice::Latest, TimelineChoice::Id);
            let req = request(target.clone(), choice);
            let f = facts(tl.clone());
            match plan::decide(&req, &f) {
                Ok(p) => {
                    let path = &p.timeline.path;
                    // An ancestor chain ending at the chosen timeline, through the backup.
                    prop_assert_eq!(Some(path.clone()), tl.path(p.timeline.target_timeline));
                    prop_assert_eq!(path.first().map(|s| s.timeline), Some(1));
                    for w in path.windows(2) {
                        prop_assert_eq!(w[0].end, Some(w[1].begin));
                        prop_assert_eq!(
                            tl.get(w[1].timeline).and_then(|t| t.parent()),
                            Some((w[0].timeline, w[1].begin))
                        );
                    }
                    if pick.is_none() {
                        prop_assert!(not_copy(&tl, p.timeline.target_timeline), "followed a copy: {:?}", p.timeline);
                    }
                    // Every segment from the backup's start to the plan's end is archived on
                    // the timeline the path reads it from.
                    let first = 1u64;
                    let last = crate::wal::WalName::parse(&p.wal.last).unwrap().segno(SEG);
                    for segno in first..=last {
                        let on = timeline_of(path, segno, SEG);
                        prop_assert!(tl.has_segment(on, segno), "segment {} of {} not archived", segno, on);
                    }
                    if let Target::Lsn(l) = &target {
                        prop_assert!(last >= l.segno(SEG));
                    }
                    // A time that two uncopied histories were both written at is never decided.
                    if let (Target::Time(t), None) = (&target, pick) {
                        let live: Vec<u32> = tl.timelines.keys().copied().filter(|&x| {
                            not_copy(&tl, x)
                                && (x == 1 || tl.get(x).and_then(|a| a.began()).is_some_and(|b| b <= *t))
                                && tl.get(x).and_then(|a| a.last_archived()).is_some_and(|l| l >= *t)
                        }).collect();
                        prop_assert!(live.len() <= 1, "time {} on {:?} decided {:?}", t, live, p.timeline);
                        if let [one] = live.as_slice() {
                            prop_assert!(path.iter().any(|s| s.timeline == *one));
                        }
                    }
                    // An LSN that two uncopied histories each wrote is never decided.
                    if let (Target::Lsn(l), None) = (&target, pick) {
                        let holders: std::collections::BTreeSet<u32> = tl.timelines.keys().copied()
                            .filter(|&x| not_copy(&tl, x))
                            .filter_map(|x| {
                                let path = tl.path(x)?;
                                let on = timeline_at(&path, *l);
                                let reaches = on != x || tl.get(x)?.segments.range(l.segno(SEG)..).next().is_some();
                                reaches.then_some(on)
                            })
                            .collect();
                        prop_assert!(holders.len() <= 1, "lsn {} held by {:?}", l, holders);
                        prop_assert_eq!(holders.iter().next().copied(), Some(timeline_at(path, *l)));
                    }
                }
                Err(PlanError::MissingWal { segment, .. }) => {
                    // The named segment is truly absent.
                    let w = crate::wal::WalName::parse(&segment).unwrap();
                    prop_assert!(!tl.has_segment(w.tli, w.segno(SEG)), "{} is archived", segment);
                }
                Err(PlanError::AmbiguousTimeline { candidates, options, .. }) => {
                    prop_assert!(pick.is_none());
                    prop_assert!(options.contains("--timeline"), "{}", options);
                    prop_assert!(candidates.contains("timeline"), "{}", candidates);
                }
                Err(PlanError::Unreachable { .. })
                | Err(PlanError::NotAnAncestor { .. })
                | Err(PlanError::MissingHistory { .. })
                | Err(PlanError::NoBackupBefore { .. })
                | Err(PlanError::BackupAfterTarget { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected refusal: {}", e),
            }
        }
    }

    #[test]
    fn a_copy_that_kept_running_is_left_out_and_a_second_promotion_is_ambiguous() {
        // Timeline 1 runs on; timeline 2 (a copy) branched at segment 3 and ran on.
        let copy = build(&[(0, 2, true, 8, None)]);
        let p = plan::decide(
            &request(Target::Latest, TimelineChoice::Latest),
            &facts(copy),
        )
        .unwrap();
        assert_eq!(p.timeline.target_timeline, 1);
        assert!(p.timeline.left_out.iter().any(|l| l.contains("copy")));
        // The same branch recorded as a promotion: two histories went on.
        let split = build(&[(0, 2, false, 8, None)]);
        let err = plan::decide(
            &request(Target::Latest, TimelineChoice::Latest),
            &facts(split),
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::AmbiguousTimeline { .. }), "{err}");
        assert!(
            err.to_string().contains("--timeline 1 or --timeline 2"),
            "{err}"
        );
    }
}
