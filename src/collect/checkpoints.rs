//! Checkpoint and background writer activity: checkpoints by cause (a high share of requested
//! checkpoints means max_wal_size is too small), the time spent writing and syncing them, and
//! who wrote dirty buffers (checkpointer, background writer, backends). PostgreSQL 17 moved
//! the checkpoint counters to `pg_stat_checkpointer`; `pg::sql::checkpointer_counters` picks
//! the view, and the metric names stay the same across versions so dashboards keep working:
//! on 17 and later the `pg_stat_bgwriter_checkpoints_timed_total`, `_checkpoints_req_total`,
//! checkpoint write/sync times and `_buffers_checkpoint_total` are read from
//! pg_stat_checkpointer's `num_timed`, `num_requested`, `write_time`, `sync_time` and
//! `buffers_written`. On 17 and later the same columns are also served under
//! postgres_exporter's `pg_stat_checkpointer_*` names (milliseconds, like the exporter).
//!
//! For alert rules, which compare one poll's values, it also derives
//! `dbagent_checkpoints_requested_ratio`: the share of requested checkpoints among those of
//! the last hour, from the counters it saw in that hour.

use std::collections::VecDeque;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue::{self, Desc};
use crate::pg::sql;

/// Column of `checkpointer_counters`, the metric, and the factor to base units.
const COUNTERS: &[(&str, &Desc, f64)] = &[
    (
        "timed",
        &catalogue::PG_STAT_BGWRITER_CHECKPOINTS_TIMED_TOTAL,
        1.0,
    ),
    (
        "requested",
        &catalogue::PG_STAT_BGWRITER_CHECKPOINTS_REQ_TOTAL,
        1.0,
    ),
    ("done", &catalogue::PG_STAT_CHECKPOINTER_NUM_DONE_TOTAL, 1.0),
    (
        "restartpoints_timed",
        &catalogue::PG_STAT_CHECKPOINTER_RESTARTPOINTS_TIMED_TOTAL,
        1.0,
    ),
    (
        "restartpoints_requested",
        &catalogue::PG_STAT_CHECKPOINTER_RESTARTPOINTS_REQ_TOTAL,
        1.0,
    ),
    (
        "restartpoints_done",
        &catalogue::PG_STAT_CHECKPOINTER_RESTARTPOINTS_DONE_TOTAL,
        1.0,
    ),
    (
        "write_time_ms",
        &catalogue::PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_SECONDS_TOTAL,
        0.001,
    ),
    (
        "sync_time_ms",
        &catalogue::PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_SECONDS_TOTAL,
        0.001,
    ),
    (
        "buffers_checkpoint",
        &catalogue::PG_STAT_BGWRITER_BUFFERS_CHECKPOINT_TOTAL,
        1.0,
    ),
    (
        "buffers_clean",
        &catalogue::PG_STAT_BGWRITER_BUFFERS_CLEAN_TOTAL,
        1.0,
    ),
    (
        "maxwritten_clean",
        &catalogue::PG_STAT_BGWRITER_MAXWRITTEN_CLEAN_TOTAL,
        1.0,
    ),
    (
        "buffers_backend",
        &catalogue::PG_STAT_BGWRITER_BUFFERS_BACKEND_TOTAL,
        1.0,
    ),
    (
        "buffers_backend_fsync",
        &catalogue::PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC_TOTAL,
        1.0,
    ),
    (
        "buffers_alloc",
        &catalogue::PG_STAT_BGWRITER_BUFFERS_ALLOC_TOTAL,
        1.0,
    ),
];

/// postgres_exporter's pg_stat_checkpointer families (17 and later): column, metric. The
/// times stay in milliseconds, as the exporter serves them.
const CHECKPOINTER: &[(&str, &Desc)] = &[
    ("timed", &catalogue::PG_STAT_CHECKPOINTER_NUM_TIMED_TOTAL),
    (
        "requested",
        &catalogue::PG_STAT_CHECKPOINTER_NUM_REQUESTED_TOTAL,
    ),
    (
        "write_time_ms",
        &catalogue::PG_STAT_CHECKPOINTER_WRITE_TIME_TOTAL,
    ),
    (
        "sync_time_ms",
        &catalogue::PG_STAT_CHECKPOINTER_SYNC_TIME_TOTAL,
    ),
    (
        "buffers_checkpoint",
        &catalogue::PG_STAT_CHECKPOINTER_BUFFERS_WRITTEN_TOTAL,
    ),
    (
        "checkpointer_stats_reset",
        &catalogue::PG_STAT_CHECKPOINTER_STATS_RESET_TOTAL,
    ),
    // 18 and later (NULL on 17); not in the exporter, named in its style.
    (
        "slru_written",
        &catalogue::PG_STAT_CHECKPOINTER_SLRU_WRITTEN_TOTAL,
    ),
];

/// How far back `dbagent_checkpoints_requested_ratio` looks.
const WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// The checkpoint counters of one poll.
#[derive(Debug, Clone, Copy)]
struct Counts {
    at: jiff::Timestamp,
    timed: f64,
    requested: f64,
}

#[derive(Default)]
pub struct Checkpoints {
    /// The counters of the polls of the last hour, oldest first.
    window: VecDeque<Counts>,
}

impl Checkpoints {
    /// Records this poll's counters and returns the requested share over the window, if a
    /// checkpoint was counted in it. A counter that went down (statistics reset) starts the
    /// window again.
    fn requested_ratio(&mut self, now: Counts) -> Option<f64> {
        if self
            .window
            .back()
            .is_some_and(|last| now.timed < last.timed || now.requested < last.requested)
        {
            self.window.clear();
        }
        // Keep the newest sample at least WINDOW old as the base of the window.
        while self.window.len() >= 2 && now.at.duration_since(self.window[1].at) >= WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(now);
        let base = self.window.front()?;
        let timed = now.timed - base.timed;
        let requested = now.requested - base.requested;
        (timed + requested > 0.0).then(|| requested / (timed + requested))
    }
}

impl Collector for Checkpoints {
    fn name(&self) -> &'static str {
        "checkpoints"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let row = ctx
                .client
                .query_one(sql::checkpointer_counters(ctx.version), &[])
                .await
                .map_err(|e| CollectError::query("checkpointer statistics", &e))?;
            let get = |column: &str| -> Result<Option<f64>, CollectError> {
                row.try_get(column)
                    .map_err(|e| CollectError::query("checkpointer statistics", &e))
            };
            let mut families = Vec::with_capacity(COUNTERS.len() + CHECKPOINTER.len() + 1);
            for (column, desc, factor) in COUNTERS {
                if let Some(v) = get(column)? {
                    families.push(Family::of(desc).with(&[], v * factor));
                }
            }
            if ctx.version.major() >= 17 {
                for (column, desc) in CHECKPOINTER {
                    if let Some(v) = get(column)? {
                        families.push(Family::of(desc).with(&[], v));
                    }
                }
            }
            if let (Some(timed), Some(requested)) = (get("timed")?, get("requested")?) {
                let now = Counts {
                    at: ctx.now,
                    timed,
                    requested,
                };
                if let Some(ratio) = self.requested_ratio(now) {
                    families.push(
                        Family::of(&catalogue::DBAGENT_CHECKPOINTS_REQUESTED_RATIO)
                            .with(&[], ratio),
                    );
                }
            }
            Ok(Output::families(families))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, timed: f64, requested: f64) -> Counts {
        Counts {
            at: jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap(),
            timed,
            requested,
        }
    }

    #[test]
    fn the_requested_ratio_covers_the_last_hour() {
        let mut c = Checkpoints::default();
        assert_eq!(c.requested_ratio(at(0, 10.0, 5.0)), None);
        assert_eq!(c.requested_ratio(at(60, 10.0, 5.0)), None);
        assert_eq!(c.requested_ratio(at(120, 11.0, 8.0)), Some(0.75));
        // The base is the newest poll at least an hour old (here the one at 60 s).
        assert_eq!(c.requested_ratio(at(3700, 12.0, 8.0)), Some(0.6));
        // Two hours in, the requested ones have left the window.
        assert_eq!(c.requested_ratio(at(7400, 13.0, 8.0)), Some(0.0));
        // A reset starts again.
        assert_eq!(c.requested_ratio(at(7460, 0.0, 0.0)), None);
        assert_eq!(c.requested_ratio(at(7520, 0.0, 1.0)), Some(1.0));
    }
}
