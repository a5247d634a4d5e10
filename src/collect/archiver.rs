//! WAL archiving health from `pg_stat_archiver`: archived and failed counts, and how long ago
//! the last segment was archived. The RPO itself (committed work the archive lacks, along the
//! server's timeline history) is the recovery collector's, see [`crate::rpo`]. On a standby the
//! view only counts what the standby itself archived (archive_mode = always).

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;

pub struct Archiver;

impl Collector for Archiver {
    fn name(&self) -> &'static str {
        "archiver"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let row = ctx
                .client
                .query_one(
                    "SELECT archived_count::float8, failed_count::float8, \
                     extract(epoch FROM now() - last_archived_time)::float8, \
                     extract(epoch FROM now() - last_failed_time)::float8, \
                     coalesce(last_failed_time > last_archived_time \
                              OR (last_failed_time IS NOT NULL AND last_archived_time IS NULL), false), \
                     last_failed_wal \
                     FROM pg_stat_archiver",
                    &[],
                )
                .await
                .map_err(|e| CollectError::query("pg_stat_archiver", &e))?;
            let archived: f64 = row.get(0);
            let failed: f64 = row.get(1);
            let last_age: Option<f64> = row.get(2);
            let failed_age: Option<f64> = row.get(3);
            let failing: bool = row.get(4);
            // The file archiving is stuck on: PostgreSQL retries it and nothing after it is
            // archived until it succeeds, so the alert can name it (one series at a time).
            let failing_wal: Option<String> = row.get::<_, Option<String>>(5).filter(|_| failing);
            let mut families = vec![
                Family::of(&catalogue::PG_STAT_ARCHIVER_ARCHIVED_TOTAL).with(&[], archived),
                Family::of(&catalogue::PG_STAT_ARCHIVER_FAILED_TOTAL).with(&[], failed),
                Family::of(&catalogue::DBAGENT_ARCHIVER_FAILING).with(
                    &failing_wal
                        .as_deref()
                        .map(|wal| vec![("wal", wal)])
                        .unwrap_or_default(),
                    if failing { 1.0 } else { 0.0 },
                ),
            ];
            if let Some(age) = last_age {
                families.push(
                    Family::of(&catalogue::PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE_SECONDS)
                        .with_baseline()
                        .with(&[], age.max(0.0)),
                );
            }
            if let Some(age) = failed_age {
                families.push(
                    Family::of(&catalogue::DBAGENT_ARCHIVER_LAST_FAILURE_AGE_SECONDS)
                        .with(&[], age.max(0.0)),
                );
            }
            Ok(Output::families(families))
        })
    }
}
