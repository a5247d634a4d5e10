//! `dbagent info`: the repository at a glance, like `pgbackrest info` or `barman
//! show-server`: the backups (count, oldest, newest, sizes), the WAL archive per timeline with
//! its gaps named, the recoverable window now (the earliest and the latest point a restore to a
//! time reaches), the repository's size, the last drill and its RTO, and the RPO now.
//!
//! The window is computed with the planner's own functions ([`crate::restore::timeline`] to
//! follow the histories, [`crate::restore::window`] for the unbroken WAL and its newest commit),
//! and by the planner's own rule for choosing a backup (the newest one that ended before the
//! target), so a target inside it is one `dbagent restore` accepts and one outside it is one
//! it refuses.
//!
//! Layer: observation. Uses: backup, config, drill, pg, repo, restore, rpo, units, wal.

use serde::Serialize;

use crate::backup::manifest::{self, BackupManifest};
use crate::backup::verify::WalRange;
use crate::config::Config;
use crate::repo::{Kind, Repo, RepoError};
use crate::restore::target::{Target, TimelineChoice};
use crate::restore::timeline::{self, BackupPos, Refusal};
use crate::restore::window::{self, Commit};
use crate::wal::name::{Lsn, segment_name};
use crate::wal::timeline::{Origin, Timelines};

/// Why the repository could not be summed up.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("cannot read the WAL archive {dir}: {source}")]
    Wal {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the repository {0} holds nothing yet (no repo.json, no backup, no WAL): take a backup with `dbagent backup` (and set archive_command to `dbagent wal-push %p`)"
    )]
    Empty(std::path::PathBuf),
}

/// Everything `dbagent info` shows; `--json` prints exactly this (docs/info.md).
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub repository: RepositorySummary,
    pub backups: BackupsSummary,
    /// One entry per timeline of the archive, oldest first.
    pub wal: Vec<TimelineArchive>,
    /// The recoverable window, one entry per history a restore can follow (one unless the
    /// history branched after a backup and both branches went on).
    pub window: Vec<Window>,
    pub last_drill: Option<crate::drill::LastDrill>,
    pub rpo: RpoNow,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositorySummary {
    pub location: String,
    pub system_identifier: Option<String>,
    pub pg_major: Option<u32>,
    pub wal_segment_size: u64,
    /// Everything stored: backups, WAL and the rest (restore points, records).
    pub size_bytes: u64,
    pub backups_bytes: u64,
    pub wal_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupsSummary {
    pub count: usize,
    /// Stored (compressed) and original sizes, all complete backups together.
    pub stored_bytes: u64,
    pub original_bytes: u64,
    pub oldest: Option<BackupBrief>,
    pub newest: Option<BackupBrief>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupBrief {
    pub id: String,
    pub label: Option<String>,
    pub timeline: u32,
    pub start_time: jiff::Timestamp,
    pub stop_time: jiff::Timestamp,
    pub stop_lsn: Lsn,
    pub stored_bytes: u64,
    pub original_bytes: u64,
    /// `full` or `incremental`.
    #[serde(rename = "type")]
    pub backup_type: &'static str,
    /// The backup an incremental was taken against; null for a full backup.
    pub parent: Option<String>,
}

impl BackupBrief {
    fn of(m: &BackupManifest) -> BackupBrief {
        BackupBrief {
            id: m.id.clone(),
            label: m.label.clone(),
            timeline: m.timeline,
            start_time: m.start_time,
            stop_time: m.stop_time,
            stop_lsn: m.stop_lsn,
            stored_bytes: m.stored_size(),
            original_bytes: m.size(),
            backup_type: m.backup_type.as_str(),
            parent: crate::backup::chain::parent_of(m).map(str::to_string),
        }
    }
}

/// The archived segments of one timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineArchive {
    pub timeline: u32,
    /// `(parent, branch LSN)` from the history file; none for timeline 1.
    pub parent: Option<u32>,
    pub branch_lsn: Option<Lsn>,
    /// `promotion`, `restore`, `copy`, ... when dbagent recorded it.
    pub origin: Option<&'static str>,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    pub segments: u64,
    pub stored_bytes: u64,
    pub newest_archived_at: Option<jiff::Timestamp>,
    /// Segments missing between the first and the last.
    pub gaps: Vec<Gap>,
}

/// Missing segments `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub first: String,
    pub last: String,
    pub segments: u64,
}

/// A point a restore reaches: `--target time:TIME` (and `lsn:LSN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    pub time: jiff::Timestamp,
    pub lsn: Lsn,
    /// The backup a restore to this point starts from.
    pub backup: String,
}

/// One stretch of time every point of which a restore reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub earliest: Point,
    pub latest: Point,
}

/// The recoverable window along one history.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The timeline a restore follows (recovery_target_timeline).
    pub timeline: u32,
    /// None when no time can be restored to (no commit after the backups in the archive).
    pub earliest: Option<Point>,
    pub latest: Option<Point>,
    /// The newest transaction the archive holds there: a time target stops just before it
    /// (`latest.time` is one microsecond earlier); `--target latest` replays it too.
    pub last_commit: Option<Commit>,
    /// More than one when a gap in the WAL leaves times between backups unreachable.
    pub intervals: Vec<Interval>,
    /// The gap that ends the WAL replay can read, when segments after it are archived.
    pub ends_at_gap: Option<Gap>,
}

/// The RPO now, asked of the server when it answers.
#[derive(Debug, Clone, Serialize)]
pub struct RpoNow {
    /// Seconds of committed work at risk; none when the server could not be asked.
    pub seconds: Option<f64>,
    /// How it was judged (see `dbagent check`'s rpo), or `unavailable`.
    pub basis: String,
    pub detail: String,
}

/// Reads the repository (no server needed). The RPO is filled in by the caller
/// ([`rpo_now`]); here it is `unavailable`.
pub fn gather(config: &Config) -> Result<Info, InfoError> {
    let repo = config.repo()?;
    let info = repo.info()?;
    let backups = manifest::list(&repo)?;
    let wal_listing = repo.storage().list_recent(Kind::Wal)?;
    if info.is_none() && backups.is_empty() && wal_listing.is_empty() {
        return Err(InfoError::Empty(repo.location().to_path_buf()));
    }
    let seg_size = info
        .as_ref()
        .map_or(16 << 20, |i| i.wal_segment_size)
        .max(1);
    let wal_dir = repo.locate_kind(Kind::Wal);
    let timelines = Timelines::read_recent(&repo, seg_size).map_err(|source| InfoError::Wal {
        dir: wal_dir.clone(),
        source,
    })?;
    let wal_bytes: u64 = wal_listing.iter().map(|m| m.size).sum();
    let backups_bytes: u64 = repo
        .storage()
        .list(Kind::Backup, "")?
        .iter()
        .map(|m| m.size)
        .sum();
    let other_bytes: u64 = [Kind::Timeline, Kind::RestorePoint]
        .iter()
        .filter_map(|k| repo.storage().list(*k, "").ok())
        .flatten()
        .map(|m| m.size)
        .sum();
    let window = windows(&repo, &timelines, &backups).map_err(|source| InfoError::Wal {
        dir: wal_dir,
        source,
    })?;
    Ok(Info {
        repository: RepositorySummary {
            location: repo.location().display().to_string(),
            system_identifier: info.as_ref().map(|i| i.system_identifier.clone()),
            pg_major: info.as_ref().and_then(|i| i.pg_major),
            wal_segment_size: seg_size,
            size_bytes: backups_bytes + wal_bytes + other_bytes,
            backups_bytes,
            wal_bytes,
        },
        backups: BackupsSummary {
            count: backups.len(),
            stored_bytes: backups.iter().map(|m| m.stored_size()).sum(),
            original_bytes: backups.iter().map(|m| m.size()).sum(),
            oldest: backups.first().map(BackupBrief::of),
            newest: backups.last().map(BackupBrief::of),
        },
        wal: archive(&timelines),
        window,
        last_drill: crate::drill::last(&config.state_dir).ok().flatten(),
        rpo: RpoNow {
            seconds: None,
            basis: "unavailable".into(),
            detail: "not asked".into(),
        },
    })
}

/// Each timeline's archived segments and the gaps between them.
pub fn archive(tl: &Timelines) -> Vec<TimelineArchive> {
    let seg = tl.seg_size;
    tl.timelines
        .values()
        .map(|t| {
            let mut gaps = Vec::new();
            let mut prev: Option<u64> = None;
            for &segno in t.segments.keys() {
                if let Some(p) = prev
                    && segno > p + 1
                {
                    gaps.push(Gap {
                        first: segment_name(t.tli, p + 1, seg),
                        last: segment_name(t.tli, segno - 1, seg),
                        segments: segno - p - 1,
                    });
                }
                prev = Some(segno);
            }
            TimelineArchive {
                timeline: t.tli,
                parent: t.parent().map(|p| p.0),
                branch_lsn: t.parent().map(|p| p.1),
                origin: t.origin().map(Origin::as_str),
                first_segment: t
                    .segments
                    .keys()
                    .next()
                    .map(|s| segment_name(t.tli, *s, seg)),
                last_segment: t
                    .segments
                    .keys()
                    .next_back()
                    .map(|s| segment_name(t.tli, *s, seg)),
                segments: t.segments.len() as u64,
                stored_bytes: t.stored_bytes.values().sum(),
                newest_archived_at: t.last_archived(),
                gaps,
            }
        })
        .collect()
}

/// What one backup reaches along one history, as the planner sees it for a time target.
#[derive(Debug, Clone)]
pub struct Reach {
    /// The backup's end: a time target from it on is restored from this backup (until the
    /// next backup's end).
    pub earliest: Point,
    /// The newest commit after the backup's end in the WAL replay can read from it; none
    /// when there is none, or when the backup cannot reach anything on this history (its
    /// own WAL is incomplete, or the timeline decision refuses it).
    pub commit: Option<Commit>,
    /// The gap that ends the WAL replay can read from it.
    pub gap: Option<Gap>,
}

impl Reach {
    /// A backup that reaches nothing on a history; it still ends the previous backup's
    /// stretch, since the planner would choose it for later times.
    fn nothing(m: &BackupManifest) -> Reach {
        Reach {
            earliest: Point {
                time: m.stop_time,
                lsn: m.stop_lsn,
                backup: m.id.clone(),
            },
            commit: None,
            gap: None,
        }
    }
}

/// The stretches of time a restore reaches, from each backup's reach (oldest backup first):
/// a time `T` is restored from the newest backup that ended at or before it, and reached when
/// that backup's WAL holds a commit after `T`. Adjacent stretches are merged.
pub fn intervals(reaches: &[Reach]) -> Vec<Interval> {
    let micro = jiff::SignedDuration::from_micros(1);
    let mut out: Vec<Interval> = Vec::new();
    for (i, r) in reaches.iter().enumerate() {
        let Some(c) = r.commit else {
            continue;
        };
        let mut latest = Point {
            time: c.latest_target(),
            lsn: c.lsn,
            backup: r.earliest.backup.clone(),
        };
        // From the next backup's end on, the planner restores from that one.
        if let Some(next) = reaches.get(i + 1)
            && next.earliest.time <= latest.time
        {
            latest = Point {
                time: next.earliest.time - micro,
                lsn: next.earliest.lsn,
                backup: r.earliest.backup.clone(),
            };
        }
        if latest.time < r.earliest.time {
            continue;
        }
        match out.last_mut() {
            Some(prev) if prev.latest.time + micro >= r.earliest.time => prev.latest = latest,
            _ => out.push(Interval {
                earliest: r.earliest.clone(),
                latest,
            }),
        }
    }
    out
}

/// The recoverable window per history, by the planner's rules: a time target is restored
/// from the newest backup that ended at or before it (backups on a test copy's timeline are
/// never chosen), along the history the timeline decision follows, and reached when the
/// unbroken WAL from that backup holds a commit after it.
pub fn windows(
    repo: &Repo,
    tl: &Timelines,
    backups: &[BackupManifest],
) -> std::io::Result<Vec<Window>> {
    let copy_tli = |tli: u32| {
        tl.path(tli).is_some_and(|p| {
            p.iter()
                .any(|s| tl.get(s.timeline).and_then(|t| t.origin()) == Some(Origin::Copy))
        })
    };
    // An incremental whose chain is broken restores nothing.
    let eligible: Vec<&BackupManifest> = backups
        .iter()
        .filter(|m| !copy_tli(m.timeline) && crate::backup::chain::chain(backups, &m.id).is_ok())
        .collect();
    // The newest commit found up to (history, end of run), and from which segment it was
    // looked for: backups whose WAL ends at the same place share one read of the archive.
    let mut found: std::collections::HashMap<(u32, u64), (u64, Option<Commit>)> =
        Default::default();
    // Each eligible backup's reach on the histories it leads to.
    let mut rows: Vec<(&BackupManifest, std::collections::BTreeMap<u32, Reach>)> = Vec::new();
    for m in &eligible {
        let mut reach_on = std::collections::BTreeMap::new();
        let pos = BackupPos {
            timeline: m.timeline,
            stop_lsn: m.stop_lsn,
            stop_time: m.stop_time,
        };
        let heads: Vec<u32> =
            match timeline::decide(tl, pos, &Target::Latest, None, TimelineChoice::Latest) {
                Ok(d) => vec![d.timeline],
                Err(Refusal::Ambiguous { candidates, .. }) => {
                    candidates.iter().map(|c| c.timeline).collect()
                }
                Err(_) => Vec::new(),
            };
        let range = WalRange::of(m).ok();
        for head in heads {
            let (Some(path), Some(range)) = (tl.path(head), range.as_ref()) else {
                continue;
            };
            let first = range.first;
            let newest = tl
                .newest_on_path(head, first)
                .map_or(range.last, |(_, s, _)| s)
                .max(range.last);
            let mut reach = Reach::nothing(m);
            // A backup whose own WAL is incomplete reaches nothing.
            if let Some(run) = window::contiguous_end(tl, &path, first, newest)
                && run >= range.last
            {
                let commit = match found.get(&(head, run)) {
                    Some((_, Some(c))) if c.lsn.segno(tl.seg_size) >= first => Some(*c),
                    Some((_, Some(_))) => None,
                    Some((from, None)) if *from <= first => None,
                    _ => {
                        let c = window::last_commit(repo, tl, &path, first, run)?;
                        found.insert((head, run), (first, c));
                        c
                    }
                };
                reach.commit = commit.filter(|c| c.stops(m.stop_time, true));
                reach.gap = window::gap_after(tl, &path, run, newest).map(|(f, l)| {
                    let n = |s: &str| {
                        crate::wal::name::WalName::parse(s).map_or(0, |w| w.segno(tl.seg_size))
                    };
                    Gap {
                        segments: n(&l) - n(&f) + 1,
                        first: f,
                        last: l,
                    }
                });
            }
            reach_on.insert(head, reach);
        }
        rows.push((m, reach_on));
    }
    let heads: std::collections::BTreeSet<u32> =
        rows.iter().flat_map(|(_, r)| r.keys().copied()).collect();
    let mut out = Vec::new();
    for head in heads {
        // Every eligible backup counts on every history: the planner chooses by time alone.
        let reaches: Vec<Reach> = rows
            .iter()
            .map(|(m, r)| r.get(&head).cloned().unwrap_or_else(|| Reach::nothing(m)))
            .collect();
        let intervals = intervals(&reaches);
        let last = reaches.last();
        out.push(Window {
            timeline: head,
            earliest: intervals.first().map(|i| i.earliest.clone()),
            latest: intervals.last().map(|i| i.latest.clone()),
            last_commit: last.and_then(|r| r.commit),
            intervals,
            ends_at_gap: last.and_then(|r| r.gap.clone()),
        });
    }
    Ok(out)
}

/// The RPO now: asks the server (as `dbagent check` does); when it cannot be asked, says why.
pub async fn rpo_now(config: &Config) -> RpoNow {
    let unavailable = |detail: String| RpoNow {
        seconds: None,
        basis: "unavailable".into(),
        detail,
    };
    let target = match crate::pg::PgTarget::new(&config.postgres.conninfo, config.session_options())
    {
        Ok(t) => t,
        Err(e) => return unavailable(format!("the server cannot be asked: {e}")),
    };
    let client = match target.connect().await {
        Ok(c) => c,
        Err(e) => return unavailable(format!("the server cannot be asked: {e}")),
    };
    let server = match crate::rpo::ServerWal::read(&client).await {
        Ok(s) => s,
        Err(e) => return unavailable(format!("the server's WAL position cannot be read: {e}")),
    };
    let repo = match config.repo() {
        Ok(r) => r,
        Err(e) => return unavailable(e.to_string()),
    };
    let (seg, tli) = (server.seg_size, server.timeline);
    let archive =
        tokio::task::spawn_blocking(move || crate::rpo::read_archive(&repo, seg, tli, &mut None))
            .await;
    let archive = match archive {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return unavailable(format!("cannot read the WAL archive: {e}")),
        Err(e) => return unavailable(e.to_string()),
    };
    let rpo = crate::rpo::assess(&client, &server, &archive, None, jiff::Timestamp::now()).await;
    RpoNow {
        seconds: Some(rpo.seconds),
        basis: serde_json::to_value(rpo.basis)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        detail: rpo.detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u32) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + i64::from(s)).unwrap()
    }

    fn reach(id: &str, end: u32, commit: Option<u32>) -> Reach {
        Reach {
            earliest: Point {
                time: at(end),
                lsn: Lsn(u64::from(end) << 24),
                backup: id.into(),
            },
            commit: commit.map(|c| Commit {
                time: at(c),
                lsn: Lsn(u64::from(c) << 24),
            }),
            gap: None,
        }
    }

    #[test]
    fn backups_whose_wal_reaches_the_next_one_make_one_stretch() {
        let micro = jiff::SignedDuration::from_micros(1);
        let got = intervals(&[reach("A", 10, Some(40)), reach("B", 20, Some(50))]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].earliest.time, at(10));
        assert_eq!(got[0].latest.time, at(50) - micro);
        assert_eq!(got[0].latest.backup, "B");
    }

    #[test]
    fn a_gap_after_a_backup_leaves_the_times_until_the_next_one_unreachable() {
        let micro = jiff::SignedDuration::from_micros(1);
        // A's WAL ends (a gap) with a commit at 15; B ended at 20.
        let got = intervals(&[reach("A", 10, Some(15)), reach("B", 20, Some(50))]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].latest.time, at(15) - micro);
        assert_eq!(got[1].earliest.time, at(20));
        assert_eq!(got[1].latest.time, at(50) - micro);
    }

    #[test]
    fn a_backup_that_reaches_nothing_still_ends_the_stretch_before_it() {
        let micro = jiff::SignedDuration::from_micros(1);
        // B's own WAL is incomplete: the planner would choose it from 20 on, and fail.
        let got = intervals(&[
            reach("A", 10, Some(40)),
            reach("B", 20, None),
            reach("C", 30, Some(50)),
        ]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].latest.time, at(20) - micro);
        assert_eq!(got[1].earliest.time, at(30));
        // No commit after a backup: no time at all.
        assert!(intervals(&[reach("A", 10, None)]).is_empty());
    }
}
