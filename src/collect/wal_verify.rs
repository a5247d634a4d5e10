//! The last `dbagent wal verify` as signals, read from the agent's state database (never from
//! the archive): when it ran, how many needed WAL segments it found intact, missing, damaged
//! or unreadable, how many timeline history conflicts, and the WAL range it verified. Nothing
//! is exported before the first verification of the configured repository. The shipped rules
//! `WalArchiveDamaged` and `WalHistoryConflict` read these.

use std::path::PathBuf;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;
use crate::repo::Repo;
use crate::wal::verify::{self, LastRun};

/// The `wal_verify` collector.
pub struct WalVerify;

/// The metric families of a recorded verification, `now` being the time of the poll.
pub fn families(r: &LastRun, now: jiff::Timestamp) -> Vec<Family> {
    let finished = r.finished_at.as_millisecond() as f64 / 1000.0;
    let age = (now - r.finished_at)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0);
    let mut segments = Family::of(&catalogue::DBAGENT_WAL_VERIFY_SEGMENTS);
    for (result, n) in [
        ("ok", r.segments_ok),
        ("missing", r.segments_missing),
        ("damaged", r.segments_damaged),
        ("unreadable", r.segments_unreadable),
    ] {
        segments.push(&[("result", result)], n as f64);
    }
    let mut out = vec![
        Family::of(&catalogue::DBAGENT_WAL_VERIFY_LAST_RUN_TIMESTAMP_SECONDS).with(&[], finished),
        Family::of(&catalogue::DBAGENT_WAL_VERIFY_AGE_SECONDS).with(&[], age),
        segments,
        Family::of(&catalogue::DBAGENT_WAL_VERIFY_HISTORY_CONFLICTS)
            .with(&[], r.history_conflicts as f64),
    ];
    if let (Some(start), Some(end)) = (r.start_lsn, r.end_lsn) {
        out.push(
            Family::of(&catalogue::DBAGENT_WAL_VERIFY_RANGE_START_LSN_BYTES)
                .with(&[], start.0 as f64),
        );
        out.push(
            Family::of(&catalogue::DBAGENT_WAL_VERIFY_RANGE_END_LSN_BYTES).with(&[], end.0 as f64),
        );
    }
    out
}

fn read(repo: Repo, state_dir: PathBuf) -> Result<Option<LastRun>, String> {
    verify::last_run(&state_dir, &repo).map_err(|e| e.to_string())
}

impl Collector for WalVerify {
    fn name(&self) -> &'static str {
        "wal_verify"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let (Some(repo), Some(state)) = (ctx.repository, ctx.state_dir) else {
                return Ok(Output::default());
            };
            let (repo, state) = (repo.clone(), state.to_path_buf());
            let last = tokio::task::spawn_blocking(move || read(repo, state))
                .await
                .map_err(|e| CollectError::Other(e.to_string()))?
                .map_err(CollectError::Other)?;
            Ok(Output::families(
                last.map(|r| families(&r, ctx.now)).unwrap_or_default(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Lsn;

    #[test]
    fn wal_verify_families_carry_counts_range_and_age() {
        let now = jiff::Timestamp::now();
        let r = LastRun {
            finished_at: now - jiff::SignedDuration::from_secs(60),
            ok: false,
            full: false,
            segments_needed: 9,
            segments_ok: 7,
            segments_missing: 1,
            segments_damaged: 1,
            segments_unreadable: 0,
            history_conflicts: 2,
            segments_read: 1,
            segments_cached: 7,
            first_segment: None,
            last_segment: None,
            start_lsn: Some(Lsn(0x2000000)),
            end_lsn: Some(Lsn(0xB000000)),
            problems: Vec::new(),
        };
        let f = families(&r, now);
        let text = crate::metrics::render(&f);
        for line in [
            "dbagent_wal_verify_segments{result=\"missing\"} 1",
            "dbagent_wal_verify_segments{result=\"ok\"} 7",
            "dbagent_wal_verify_history_conflicts 2",
            "dbagent_wal_verify_range_start_lsn_bytes 33554432",
            "dbagent_wal_verify_age_seconds 60",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
