//! Checkpoint and background writer activity: checkpoints by cause (a high share of requested
//! checkpoints means max_wal_size is too small), the time spent writing and syncing them, and
//! who wrote dirty buffers (checkpointer, background writer, backends). PostgreSQL 17 moved
//! the checkpoint counters to `pg_stat_checkpointer`; `pg::sql::checkpointer_counters` picks
//! the view, and the metric names stay the same across versions so dashboards keep working.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::pg::sql;

/// Column of `checkpointer_counters`, metric name, HELP, and the factor to base units.
const COUNTERS: &[(&str, &str, &str, f64)] = &[
    (
        "timed",
        "pg_stat_bgwriter_checkpoints_timed_total",
        "Checkpoints started because checkpoint_timeout elapsed (scheduled).",
        1.0,
    ),
    (
        "requested",
        "pg_stat_bgwriter_checkpoints_req_total",
        "Checkpoints requested (CHECKPOINT, max_wal_size reached, backups, shutdown).",
        1.0,
    ),
    (
        "done",
        "pg_stat_checkpointer_num_done_total",
        "Checkpoints completed (PostgreSQL 18 and later).",
        1.0,
    ),
    (
        "restartpoints_timed",
        "pg_stat_checkpointer_restartpoints_timed_total",
        "Restartpoints (checkpoints on a standby) started because checkpoint_timeout elapsed (PostgreSQL 17 and later).",
        1.0,
    ),
    (
        "restartpoints_requested",
        "pg_stat_checkpointer_restartpoints_req_total",
        "Restartpoints requested (PostgreSQL 17 and later).",
        1.0,
    ),
    (
        "restartpoints_done",
        "pg_stat_checkpointer_restartpoints_done_total",
        "Restartpoints completed (PostgreSQL 17 and later).",
        1.0,
    ),
    (
        "write_time_ms",
        "pg_stat_bgwriter_checkpoint_write_time_seconds_total",
        "Seconds checkpoints spent writing buffers to files.",
        0.001,
    ),
    (
        "sync_time_ms",
        "pg_stat_bgwriter_checkpoint_sync_time_seconds_total",
        "Seconds checkpoints spent syncing files to disk.",
        0.001,
    ),
    (
        "buffers_checkpoint",
        "pg_stat_bgwriter_buffers_checkpoint_total",
        "Buffers written by checkpoints.",
        1.0,
    ),
    (
        "buffers_clean",
        "pg_stat_bgwriter_buffers_clean_total",
        "Buffers written by the background writer.",
        1.0,
    ),
    (
        "maxwritten_clean",
        "pg_stat_bgwriter_maxwritten_clean_total",
        "Times the background writer stopped a round because it had written bgwriter_lru_maxpages buffers.",
        1.0,
    ),
    (
        "buffers_backend",
        "pg_stat_bgwriter_buffers_backend_total",
        "Buffers written directly by backends (before PostgreSQL 17).",
        1.0,
    ),
    (
        "buffers_backend_fsync",
        "pg_stat_bgwriter_buffers_backend_fsync_total",
        "Times a backend had to fsync a file itself (before PostgreSQL 17).",
        1.0,
    ),
    (
        "buffers_alloc",
        "pg_stat_bgwriter_buffers_alloc_total",
        "Buffers allocated.",
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
            for (column, name, help, factor) in COUNTERS {
                let value: Option<f64> = row
                    .try_get(*column)
                    .map_err(|e| CollectError::query("checkpointer statistics", &e))?;
                if let Some(v) = value {
                    families.push(Family::counter(name, help).with(&[], v * factor));
                }
            }
            Ok(Output::families(families))
        })
    }
}
