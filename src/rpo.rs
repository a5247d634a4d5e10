//! The recovery point: how much committed work would be lost if the server were lost now. One
//! answer for `dbagent_rpo_seconds`, the `rpo` check and `/api/v1/status`.
//!
//! What the archive holds is judged along the server's own timeline history
//! ([`Timelines::newest_on_path`]), never by comparing file names: a copy restored elsewhere
//! that archived a newer timeline into the same repository is not progress of this server.
//!
//! Data is at risk only when a transaction committed in WAL the archive lacks. WAL that holds
//! no commit (a standby snapshot or a checkpoint on an idle server, which `archive_timeout`
//! does not switch for) puts nothing at risk, so an idle primary reads RPO 0 however long it
//! idles. Which transactions the archive already holds as committed is read from the archived
//! WAL itself ([`crate::wal::xacts`]); which are committed now, the server says
//! (`pg_xact_status`). A transaction committed now but not in the archive is data at risk.
//!
//! How old the oldest such commit is:
//! - `dbagent run` polls: it counts from the last poll at which that commit had certainly not
//!   happened yet (its transaction ID was not assigned, or the server had not written past the
//!   archive), so it is at most one poll interval early, never late ([`Tracker`]);
//! - without that history (`dbagent check`, the first poll): the commit's own timestamp when
//!   `track_commit_timestamp` is on; otherwise the time the newest archived segment arrived,
//!   bounded by `archive_timeout` while archiving works and only the current segment is unarchived
//!   (PostgreSQL switches such a segment within archive_timeout of the commit).
//!
//! When nothing is archived on the server's history yet, RPO counts from the oldest WAL the
//! archive lacks: the oldest segment waiting for archive_command (`pg_ls_archive_statusdir`),
//! or the server's start when none is waiting yet. So `dbagent_rpo_seconds` exists, and grows,
//! on a cluster whose archiving never worked.
//!
//! Layer: operation. Uses: pg, repo, units, wal. Used by: check, collect, drill.

use std::collections::VecDeque;

use serde::Serialize;
use tokio_postgres::Client;

use crate::repo::Repo;
use crate::wal::name::{Lsn, segment_name};
use crate::wal::timeline::Timelines;
use crate::wal::xacts::{Follower, XactState, full_xid};

/// At most this many transaction IDs assigned after the archive are asked about per poll;
/// beyond them, the first one counts as committed (the archive is far behind anyway).
const MAX_CANDIDATES: u64 = 200_000;
/// Poll samples kept at most (more than a day at a 15 s interval).
const MAX_SAMPLES: usize = 10_000;

/// What the server says about its WAL, read in one round trip.
#[derive(Debug, Clone, Serialize)]
pub struct ServerWal {
    pub in_recovery: bool,
    /// The timeline the server writes (a primary) or replays (a standby).
    pub timeline: u32,
    /// The insert position (a primary) or the replay position (a standby).
    pub position: Lsn,
    /// The next full transaction ID, read just before `position`.
    pub next_xid: u64,
    pub seg_size: u64,
    pub track_commit_timestamp: bool,
    /// archive_timeout in seconds (0 = off).
    pub archive_timeout: u64,
    /// pg_stat_archiver says the last attempt failed.
    pub archiving_failing: bool,
    pub started_at: jiff::Timestamp,
}

/// Server facts: the snapshot's xmax is read before the position, so a transaction the
/// snapshot shows as assigned has its records below the position.
const SERVER_SQL: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
    CASE WHEN pg_is_in_recovery() THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), \
         (SELECT timeline_id FROM pg_control_checkpoint())) END, \
    pg_snapshot_xmax(pg_current_snapshot())::text, \
    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text \
         ELSE pg_current_wal_insert_lsn()::text END, \
    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
    current_setting('track_commit_timestamp') = 'on', \
    (SELECT setting::bigint FROM pg_settings WHERE name = 'archive_timeout'), \
    COALESCE(a.last_failed_time > COALESCE(a.last_archived_time, '-infinity'), false), \
    extract(epoch FROM pg_postmaster_start_time())::float8 \
    FROM pg_stat_archiver a";

impl ServerWal {
    pub async fn read(client: &Client) -> Result<ServerWal, String> {
        let r = client
            .query_one(SERVER_SQL, &[])
            .await
            .map_err(|e| crate::pg::error_detail(&e))?;
        let in_recovery: bool = r.get(0);
        let timeline = match (r.get::<_, Option<String>>(1), r.get::<_, Option<i32>>(2)) {
            (Some(file), _) => file
                .get(..8)
                .and_then(|t| u32::from_str_radix(t, 16).ok())
                .ok_or_else(|| format!("unexpected WAL file name {file}"))?,
            (None, Some(t)) => u32::try_from(t).map_err(|_| format!("timeline {t}"))?,
            (None, None) => return Err("the standby reports no timeline".into()),
        };
        let next: String = r.get(3);
        let position: Option<String> = r.get(4);
        let position = position
            .as_deref()
            .and_then(Lsn::parse)
            .ok_or("the server reports no WAL position (a standby that replayed nothing yet)")?;
        let started: f64 = r.get(9);
        Ok(ServerWal {
            in_recovery,
            timeline,
            position,
            next_xid: next
                .parse()
                .map_err(|_| format!("unexpected transaction ID {next}"))?,
            seg_size: r
                .get::<_, Option<i64>>(5)
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| s.is_power_of_two())
                .unwrap_or(16 << 20),
            track_commit_timestamp: r.get(6),
            archive_timeout: r
                .get::<_, Option<i64>>(7)
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
            archiving_failing: r.get(8),
            started_at: jiff::Timestamp::from_millisecond((started * 1000.0) as i64)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        })
    }
}

/// The newest archived segment on the server's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Newest {
    pub segment: String,
    pub timeline: u32,
    #[serde(skip)]
    pub segno: u64,
    pub archived_at: jiff::Timestamp,
}

/// Another branch in the archive: a timeline that is not on the server's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherTimeline {
    pub timeline: u32,
    /// "a copy restored on host X at T", from its record, when known.
    pub description: String,
}

/// What the archive holds for the server's history.
#[derive(Debug, Clone)]
pub struct ArchiveView {
    pub newest: Option<Newest>,
    /// The archive's transactions at the end of `newest` (`None`: no standby snapshot in its
    /// last segments; `Err`: the WAL could not be read).
    pub xacts: Option<Result<Option<XactState>, String>>,
    /// The server's timeline has no history file in the archive.
    pub history_missing: bool,
    /// The server's history as text (`1→2`).
    pub path_text: String,
    pub other_timelines: Vec<OtherTimeline>,
}

/// Reads the archive for a server on `tli`. `follower` follows the archive's transactions
/// between calls (the sidecar keeps it), so each archived segment is read once.
pub fn read_archive(
    repo: &Repo,
    seg_size: u64,
    tli: u32,
    follower: &mut Option<Follower>,
) -> std::io::Result<ArchiveView> {
    let timelines = Timelines::read_recent(repo, seg_size)?;
    let history_missing = timelines.path(tli).is_none();
    let newest = timelines
        .newest_on_path(tli, 0)
        .map(|(t, segno, at)| Newest {
            segment: segment_name(t, segno, seg_size),
            timeline: t,
            segno,
            archived_at: at,
        });
    let other_timelines = other_timelines(&timelines, tli);
    let xacts = newest.as_ref().map(|n| {
        let f = match follower {
            Some(f) if f.timeline() == tli => f,
            _ => follower.insert(Follower::new(tli, seg_size)),
        };
        f.advance(repo, &timelines, n.segno)
            .map_err(|e| e.to_string())
    });
    Ok(ArchiveView {
        newest,
        xacts,
        history_missing,
        path_text: timelines.path_text(tli),
        other_timelines,
    })
}

/// Timelines of the archive that are not on the path of `tli`, described for people.
pub fn other_timelines(timelines: &Timelines, tli: u32) -> Vec<OtherTimeline> {
    let on_path: Vec<u32> = timelines
        .path(tli)
        .map(|p| p.iter().map(|s| s.timeline).collect())
        .unwrap_or_else(|| vec![tli]);
    timelines
        .timelines
        .values()
        .filter(|t| !on_path.contains(&t.tli))
        .map(|t| OtherTimeline {
            timeline: t.tli,
            description: timelines.describe(t.tli),
        })
        .collect()
}

/// Committed transactions the archive does not hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unarchived {
    /// The lowest such transaction ID (full), if any.
    pub oldest_xid: Option<u64>,
    /// The oldest commit time among them (needs track_commit_timestamp).
    pub oldest_commit: Option<jiff::Timestamp>,
}

/// Asks the server which transactions that the archive holds as not (yet) committed are
/// committed now.
pub async fn unarchived_commits(
    client: &Client,
    server: &ServerWal,
    archived: &XactState,
    with_commit_time: bool,
) -> Result<Unarchived, String> {
    let next = server.next_xid;
    let running: Vec<i64> = archived
        .running
        .iter()
        .map(|x| full_xid(*x, next))
        .filter(|x| *x < next)
        .filter_map(|x| i64::try_from(x).ok())
        .collect();
    let lo = full_xid(archived.next_xid, next);
    let (lo, hi, truncated) = if lo >= next {
        (0, -1, false)
    } else {
        let hi = next - 1;
        let capped = hi.min(lo + MAX_CANDIDATES - 1);
        (
            i64::try_from(lo).unwrap_or(i64::MAX),
            i64::try_from(capped).unwrap_or(i64::MAX),
            capped < hi,
        )
    };
    let e = |e: tokio_postgres::Error| crate::pg::error_detail(&e);
    let row = client
        .query_one(
            "SELECT (SELECT min(x) FROM unnest($1::bigint[]) x \
                     WHERE pg_xact_status(x::text::xid8) = 'committed'), \
                    (SELECT x FROM generate_series($2::bigint, $3::bigint) x \
                     WHERE pg_xact_status(x::text::xid8) = 'committed' LIMIT 1)",
            &[&running, &lo, &hi],
        )
        .await
        .map_err(e)?;
    let a: Option<i64> = row.get(0);
    let b: Option<i64> = row.get(1);
    let b = b.or((truncated && b.is_none()).then_some(lo));
    let oldest_xid = match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .and_then(|x| u64::try_from(x).ok());
    let mut out = Unarchived {
        oldest_xid,
        oldest_commit: None,
    };
    if with_commit_time && oldest_xid.is_some() {
        let row = client
            .query_one(
                "SELECT extract(epoch FROM min(pg_xact_commit_timestamp((x % 4294967296)::text::xid)))::float8 \
                 FROM (SELECT unnest($1::bigint[]) AS x UNION ALL \
                       SELECT generate_series($2::bigint, $3::bigint)) c \
                 WHERE pg_xact_status(x::text::xid8) = 'committed'",
                &[&running, &lo, &hi],
            )
            .await
            .map_err(e)?;
        let t: Option<f64> = row.get(0);
        out.oldest_commit =
            t.and_then(|t| jiff::Timestamp::from_millisecond((t * 1000.0) as i64).ok());
    }
    Ok(out)
}

/// How the RPO was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The server has written nothing past the newest archived segment.
    AllArchived,
    /// The WAL past the archive holds no committed transaction.
    NoUnarchivedCommit,
    /// Counted from the sidecar's last poll before the oldest unarchived commit.
    Polls,
    /// The oldest unarchived commit's own timestamp (track_commit_timestamp).
    CommitTimestamp,
    /// The newest archived segment's arrival, bounded by archive_timeout.
    ArchiveTimeout,
    /// The newest archived segment's arrival.
    ArchiveAge,
    /// Nothing archived on the server's history: the oldest WAL the archive lacks.
    NothingArchived,
}

/// The recovery point now.
#[derive(Debug, Clone, Serialize)]
pub struct Rpo {
    pub seconds: f64,
    /// Since when committed data has been at risk (absent when RPO is 0).
    pub at_risk_since: Option<jiff::Timestamp>,
    pub basis: Basis,
    /// One sentence saying what was found, for `check` and people.
    pub detail: String,
    pub server_timeline: u32,
    pub server_position: Lsn,
    pub newest_archived: Option<Newest>,
    /// The lowest committed transaction ID that the archive lacks.
    pub oldest_unarchived_xid: Option<u64>,
    pub other_timelines: Vec<OtherTimeline>,
}

/// When the unarchived WAL began for a server with nothing archived on its history: the
/// oldest segment waiting for archive_command, or the server's start.
pub async fn oldest_unarchived_wal(client: &Client, server: &ServerWal) -> jiff::Timestamp {
    let waiting: Option<f64> = client
        .query_one(
            "SELECT extract(epoch FROM min(modification))::float8 FROM pg_ls_archive_statusdir() \
             WHERE name LIKE '%.ready'",
            &[],
        )
        .await
        .ok()
        .and_then(|r| r.get(0));
    let waiting = waiting.and_then(|t| jiff::Timestamp::from_millisecond((t * 1000.0) as i64).ok());
    match waiting {
        Some(w) if w < server.started_at => w,
        _ => server.started_at,
    }
}

fn seconds_since(now: jiff::Timestamp, t: jiff::Timestamp) -> f64 {
    (now - t).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0)
}

fn human(secs: f64) -> String {
    crate::units::human_duration(secs)
}

/// Computes the RPO. `polls` (the sidecar's [`Tracker`]) dates the oldest unarchived commit
/// from poll history; without it the one-shot estimates apply (see the module doc).
pub async fn assess(
    client: &Client,
    server: &ServerWal,
    archive: &ArchiveView,
    polls: Option<&Tracker>,
    now: jiff::Timestamp,
) -> Rpo {
    let mut rpo = Rpo {
        seconds: 0.0,
        at_risk_since: None,
        basis: Basis::AllArchived,
        detail: String::new(),
        server_timeline: server.timeline,
        server_position: server.position,
        newest_archived: archive.newest.clone(),
        oldest_unarchived_xid: None,
        other_timelines: archive.other_timelines.clone(),
    };
    let others = describe_others(&archive.other_timelines, server.timeline);
    let Some(newest) = &archive.newest else {
        let since = oldest_unarchived_wal(client, server).await;
        rpo.seconds = seconds_since(now, since);
        rpo.at_risk_since = Some(since);
        rpo.basis = Basis::NothingArchived;
        let why = if archive.history_missing {
            format!(
                "the history file of the server's timeline {} is not in the archive",
                server.timeline
            )
        } else {
            format!(
                "no WAL of the server's timeline history ({}) is archived yet",
                archive.path_text
            )
        };
        rpo.detail = format!(
            "{why}{others}; counting from the oldest WAL the archive lacks ({since}, {} ago)",
            human(rpo.seconds)
        );
        return rpo;
    };
    let covered_end = Lsn((newest.segno + 1) * server.seg_size);
    let archived_ago = human(seconds_since(now, newest.archived_at));
    if server.position <= covered_end {
        rpo.detail = format!(
            "everything the server wrote (up to {}) is archived (newest {}, {archived_ago} ago){others}",
            server.position, newest.segment
        );
        return rpo;
    }
    // The archive's transactions at its end, then the server's view of them.
    let with_time = server.track_commit_timestamp && polls.is_none_or(|p| p.samples.is_empty());
    let unarchived = match &archive.xacts {
        Some(Ok(Some(state))) => match unarchived_commits(client, server, state, with_time).await {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!(error = %e, "Cannot ask the server which transactions committed");
                None
            }
        },
        _ => None,
    };
    if let Some(u) = &unarchived
        && u.oldest_xid.is_none()
    {
        rpo.basis = Basis::NoUnarchivedCommit;
        rpo.detail = format!(
            "no transaction committed after the newest archived WAL ({}, {archived_ago} ago): the server's WAL since then ({} .. {}) holds no commit, so nothing is at risk{others}",
            newest.segment, covered_end, server.position
        );
        return rpo;
    }
    rpo.oldest_unarchived_xid = unarchived.as_ref().and_then(|u| u.oldest_xid);
    let what = match (&archive.xacts, &unarchived) {
        (_, Some(_)) => "committed transactions are not archived yet".to_string(),
        (Some(Ok(None)), _) => "the server wrote WAL past the newest archived segment, and the archive's last segments hold no standby snapshot to tell whether it holds a commit (counted as if it did)".to_string(),
        (Some(Err(e)), _) => format!(
            "the server wrote WAL past the newest archived segment, and the archived WAL cannot be read to tell whether it holds a commit ({e}; counted as if it did)"
        ),
        _ => "the server wrote WAL past the newest archived segment (counted as holding a commit)"
            .to_string(),
    };
    let tracked = polls.and_then(|p| p.since(covered_end, rpo.oldest_unarchived_xid));
    let (since, basis, how) = if let Some(t) = tracked {
        (
            t,
            Basis::Polls,
            "counted from the last poll before the oldest of them".to_string(),
        )
    } else if let Some(t) = unarchived.as_ref().and_then(|u| u.oldest_commit) {
        (
            t,
            Basis::CommitTimestamp,
            "counted from the oldest one's commit timestamp".to_string(),
        )
    } else {
        let only_current = server.position.segno(server.seg_size) <= newest.segno + 1;
        let bound = now - jiff::SignedDuration::from_secs(server.archive_timeout as i64);
        if !server.in_recovery
            && !server.archiving_failing
            && server.archive_timeout > 0
            && only_current
            && bound > newest.archived_at
        {
            (
                bound,
                Basis::ArchiveTimeout,
                format!(
                    "archiving works and only the current segment is unarchived, which archive_timeout ({}) switches at most that long after a commit",
                    human(server.archive_timeout as f64)
                ),
            )
        } else {
            (
                newest.archived_at,
                Basis::ArchiveAge,
                "counted from the arrival of the newest archived segment".to_string(),
            )
        }
    };
    rpo.seconds = seconds_since(now, since);
    rpo.at_risk_since = Some(since);
    rpo.basis = basis;
    rpo.detail = format!(
        "{what} ({how}); newest archived {} {archived_ago} ago, the server is at {}{others}",
        newest.segment, server.position
    );
    rpo
}

fn describe_others(others: &[OtherTimeline], tli: u32) -> String {
    if others.is_empty() {
        return String::new();
    }
    let list: Vec<String> = others
        .iter()
        .map(|o| format!("{} ({})", o.timeline, o.description))
        .collect();
    format!(
        "; not counted: timeline {} of the archive, not on the history of the server's timeline {tli}",
        list.join(", ")
    )
}

/// One poll's position and transaction counter.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: jiff::Timestamp,
    position: Lsn,
    next_xid: u64,
}

/// The sidecar's poll history, which dates the oldest unarchived commit: it happened after the
/// last poll at which the server had not yet written past the archive, and after the last poll
/// at which its transaction ID was not yet assigned.
#[derive(Debug, Default)]
pub struct Tracker {
    timeline: Option<u32>,
    samples: VecDeque<Sample>,
    /// Follows the archive's transactions between polls.
    pub follower: Option<Follower>,
}

impl Tracker {
    /// Records this poll (after assessing it). A new server timeline starts afresh.
    pub fn record(&mut self, at: jiff::Timestamp, server: &ServerWal, covered_end: Option<Lsn>) {
        if self.timeline != Some(server.timeline) {
            self.samples.clear();
            self.timeline = Some(server.timeline);
        }
        // Samples older than the newest one within the archive can no longer matter.
        if let Some(end) = covered_end
            && let Some(i) = self.samples.iter().rposition(|s| s.position <= end)
        {
            self.samples.drain(..i);
        }
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at,
            position: server.position,
            next_xid: server.next_xid,
        });
    }

    /// The lower bound on the oldest unarchived commit's time (see the type's doc).
    pub fn since(&self, covered_end: Lsn, oldest_xid: Option<u64>) -> Option<jiff::Timestamp> {
        let by_position = self
            .samples
            .iter()
            .rev()
            .find(|s| s.position <= covered_end)
            .map(|s| s.at);
        let by_xid = oldest_xid.and_then(|x| {
            self.samples
                .iter()
                .rev()
                .find(|s| s.next_xid <= x)
                .map(|s| s.at)
        });
        match (by_position, by_xid) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(position: u64, next_xid: u64) -> ServerWal {
        ServerWal {
            in_recovery: false,
            timeline: 1,
            position: Lsn(position),
            next_xid,
            seg_size: 16 << 20,
            track_commit_timestamp: false,
            archive_timeout: 60,
            archiving_failing: false,
            started_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn polls_date_the_oldest_unarchived_commit_from_both_bounds() {
        let t0 = jiff::Timestamp::now();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let mut tr = Tracker::default();
        let end = Lsn(0x3000000);
        tr.record(at(0), &server(0x2FF0000, 100), Some(end));
        tr.record(at(15), &server(0x3000000, 105), Some(end));
        tr.record(at(30), &server(0x3000100, 105), Some(end));
        tr.record(at(45), &server(0x3000200, 106), Some(end));
        // The server wrote past the archive's end after the poll at 15; transaction 100 was
        // assigned before the first poll, so the position decides.
        assert_eq!(tr.since(end, Some(100)), Some(at(15)));
        // 105 was not assigned at 30, 106 not at 45: the later bound wins.
        assert_eq!(tr.since(end, Some(105)), Some(at(30)));
        assert_eq!(tr.since(end, Some(106)), Some(at(45)));
        // Older samples go once a newer one lies within the archive.
        tr.record(at(60), &server(0x3000300, 106), Some(Lsn(0x4000000)));
        assert_eq!(tr.since(Lsn(0x4000000), None), Some(at(60)));
        assert_eq!(tr.samples.len(), 2);
        // A new timeline forgets the old history.
        let mut s = server(0x5000000, 107);
        s.timeline = 2;
        tr.record(at(75), &s, None);
        assert_eq!(tr.samples.len(), 1);
    }
}
