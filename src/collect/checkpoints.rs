//! Checkpoint and background writer activity: checkpoints by cause (a high share of requested
//! checkpoints means max_wal_size is too small), the time spent writing and syncing them, and
//! who wrote dirty buffers (checkpointer, background writer, backends). PostgreSQL 17 moved
//! the checkpoint counters to `pg_stat_checkpointer`; `pg::sql::checkpointer_counters` picks
//! the view, and the metric names stay the same across versions so dashboards keep working.

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

pub struct Checkpoints;

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
            let mut families = Vec::with_capacity(COUNTERS.len());
            for (column, desc, factor) in COUNTERS {
                let value: Option<f64> = row
                    .try_get(*column)
                    .map_err(|e| CollectError::query("checkpointer statistics", &e))?;
                if let Some(v) = value {
                    families.push(Family::of(desc).with(&[], v * factor));
                }
            }
            Ok(Output::families(families))
        })
    }
}
