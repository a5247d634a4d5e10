//! Per-database activity from `pg_stat_database` and sizes from `pg_database_size`: commits,
//! rollbacks, block reads and hits, tuples, temporary files, deadlocks and (14+) session
//! counts as counters, backends as a gauge, and the cache hit ratio of the last interval.
//!
//! The hit ratio is computed from the change of `blks_hit` and `blks_read` since the previous
//! poll, not from lifetime totals (which hide a cache that just went cold behind months of
//! history). There is no sample on the first poll, when nothing was read in the interval, or
//! when the counters were reset in between (a counter went backwards or `stats_reset` moved).
//!
//! Template databases are left out: nobody works in them.

use std::collections::HashMap;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue::{self, Desc};
use crate::pg::ServerVersion;

/// One `pg_stat_database` column exported as a metric.
struct Column {
    /// SQL yielding float8 (or NULL) from `s` (pg_stat_database).
    expr: &'static str,
    desc: &'static Desc,
    /// First major version that has it.
    since: u32,
}

const fn column(expr: &'static str, desc: &'static Desc, since: u32) -> Column {
    Column { expr, desc, since }
}

const COLUMNS: &[Column] = &[
    column(
        "s.numbackends::float8",
        &catalogue::PG_STAT_DATABASE_NUMBACKENDS,
        13,
    ),
    column(
        "s.xact_commit::float8",
        &catalogue::PG_STAT_DATABASE_XACT_COMMIT_TOTAL,
        13,
    ),
    column(
        "s.xact_rollback::float8",
        &catalogue::PG_STAT_DATABASE_XACT_ROLLBACK_TOTAL,
        13,
    ),
    column(
        "s.blks_read::float8",
        &catalogue::PG_STAT_DATABASE_BLKS_READ_TOTAL,
        13,
    ),
    column(
        "s.blks_hit::float8",
        &catalogue::PG_STAT_DATABASE_BLKS_HIT_TOTAL,
        13,
    ),
    column(
        "s.tup_returned::float8",
        &catalogue::PG_STAT_DATABASE_TUP_RETURNED_TOTAL,
        13,
    ),
    column(
        "s.tup_fetched::float8",
        &catalogue::PG_STAT_DATABASE_TUP_FETCHED_TOTAL,
        13,
    ),
    column(
        "s.tup_inserted::float8",
        &catalogue::PG_STAT_DATABASE_TUP_INSERTED_TOTAL,
        13,
    ),
    column(
        "s.tup_updated::float8",
        &catalogue::PG_STAT_DATABASE_TUP_UPDATED_TOTAL,
        13,
    ),
    column(
        "s.tup_deleted::float8",
        &catalogue::PG_STAT_DATABASE_TUP_DELETED_TOTAL,
        13,
    ),
    column(
        "s.conflicts::float8",
        &catalogue::PG_STAT_DATABASE_CONFLICTS_TOTAL,
        13,
    ),
    column(
        "s.temp_files::float8",
        &catalogue::PG_STAT_DATABASE_TEMP_FILES_TOTAL,
        13,
    ),
    column(
        "s.temp_bytes::float8",
        &catalogue::PG_STAT_DATABASE_TEMP_BYTES_TOTAL,
        13,
    ),
    column(
        "s.deadlocks::float8",
        &catalogue::PG_STAT_DATABASE_DEADLOCKS_TOTAL,
        13,
    ),
    column(
        "s.checksum_failures::float8",
        &catalogue::PG_STAT_DATABASE_CHECKSUM_FAILURES_TOTAL,
        13,
    ),
    column(
        "(s.blk_read_time / 1000)::float8",
        &catalogue::PG_STAT_DATABASE_BLK_READ_TIME_SECONDS_TOTAL,
        13,
    ),
    column(
        "(s.blk_write_time / 1000)::float8",
        &catalogue::PG_STAT_DATABASE_BLK_WRITE_TIME_SECONDS_TOTAL,
        13,
    ),
    column(
        "(s.session_time / 1000)::float8",
        &catalogue::PG_STAT_DATABASE_SESSION_TIME_SECONDS_TOTAL,
        14,
    ),
    column(
        "(s.active_time / 1000)::float8",
        &catalogue::PG_STAT_DATABASE_ACTIVE_TIME_SECONDS_TOTAL,
        14,
    ),
    column(
        "(s.idle_in_transaction_time / 1000)::float8",
        &catalogue::PG_STAT_DATABASE_IDLE_IN_TRANSACTION_TIME_SECONDS_TOTAL,
        14,
    ),
    column(
        "s.sessions::float8",
        &catalogue::PG_STAT_DATABASE_SESSIONS_TOTAL,
        14,
    ),
    column(
        "s.sessions_abandoned::float8",
        &catalogue::PG_STAT_DATABASE_SESSIONS_ABANDONED_TOTAL,
        14,
    ),
    column(
        "s.sessions_fatal::float8",
        &catalogue::PG_STAT_DATABASE_SESSIONS_FATAL_TOTAL,
        14,
    ),
    column(
        "s.sessions_killed::float8",
        &catalogue::PG_STAT_DATABASE_SESSIONS_KILLED_TOTAL,
        14,
    ),
];

/// The columns this server has.
fn columns(v: &ServerVersion) -> impl Iterator<Item = &'static Column> {
    let major = v.major();
    COLUMNS.iter().filter(move |c| c.since <= major)
}

/// datname, blks_hit, blks_read, stats_reset (epoch), size (NULL without CONNECT), then one
/// value per [`columns`].
/// Sizes only when `with_size`: pg_database_size stats every file of every database, which
/// costs ~100 ms with 10,000 tables, so it runs every `monitor.slow_interval`.
fn sql(v: &ServerVersion, with_size: bool) -> String {
    let mut sql = String::from(
        "SELECT d.datname::text, s.blks_hit::float8, s.blks_read::float8, \
         extract(epoch FROM s.stats_reset)::float8, ",
    );
    sql.push_str(if with_size {
        "CASE WHEN has_database_privilege(d.oid, 'CONNECT') \
              THEN pg_database_size(d.oid)::float8 END"
    } else {
        "NULL::float8"
    });
    for c in columns(v) {
        sql.push_str(", ");
        sql.push_str(c.expr);
    }
    sql.push_str(
        " FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid \
         WHERE NOT d.datistemplate AND d.datallowconn ORDER BY d.datname",
    );
    sql
}

/// pg_stat_database_conflicts as postgres_exporter exports it (labels datid and datname).
async fn conflicts(ctx: &Ctx<'_>) -> Result<Vec<Family>, CollectError> {
    let descs = [
        &catalogue::PG_STAT_DATABASE_CONFLICTS_CONFL_TABLESPACE,
        &catalogue::PG_STAT_DATABASE_CONFLICTS_CONFL_LOCK,
        &catalogue::PG_STAT_DATABASE_CONFLICTS_CONFL_SNAPSHOT,
        &catalogue::PG_STAT_DATABASE_CONFLICTS_CONFL_BUFFERPIN,
        &catalogue::PG_STAT_DATABASE_CONFLICTS_CONFL_DEADLOCK,
    ];
    let rows = ctx
        .client
        .query(
            "SELECT datid::text, datname::text, confl_tablespace::float8, confl_lock::float8, \
             confl_snapshot::float8, confl_bufferpin::float8, confl_deadlock::float8 \
             FROM pg_stat_database_conflicts ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| CollectError::query("pg_stat_database_conflicts", &e))?;
    let mut families: Vec<Family> = descs.iter().map(|d| Family::of(d)).collect();
    for r in &rows {
        let (datid, datname): (String, String) = (r.get(0), r.get(1));
        for (i, f) in families.iter_mut().enumerate() {
            f.push(&[("datid", &datid), ("datname", &datname)], r.get(2 + i));
        }
    }
    Ok(families)
}

/// What the previous poll saw of one database, for the hit ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Blocks {
    hit: f64,
    read: f64,
    stats_reset: Option<f64>,
}

/// The hit ratio of the interval between `prev` and `now`, if there is a meaningful one.
fn hit_ratio(prev: Option<&Blocks>, now: &Blocks) -> Option<f64> {
    let prev = prev?;
    if prev.stats_reset != now.stats_reset {
        return None;
    }
    let hit = now.hit - prev.hit;
    let read = now.read - prev.read;
    if hit < 0.0 || read < 0.0 || hit + read <= 0.0 {
        return None;
    }
    Some(hit / (hit + read))
}

#[derive(Default)]
pub struct Databases {
    previous: HashMap<String, Blocks>,
    /// Sizes from the last size read, served until the next one.
    sizes: HashMap<String, f64>,
    sizes_at: Option<std::time::Instant>,
}

impl Collector for Databases {
    fn name(&self) -> &'static str {
        "databases"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let with_size = self
                .sizes_at
                .is_none_or(|t| t.elapsed() >= ctx.config.slow_interval);
            let rows = ctx
                .client
                .query(&sql(ctx.version, with_size), &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_database", &e))?;
            if with_size {
                self.sizes.clear();
                self.sizes_at = Some(std::time::Instant::now());
            }
            let cols: Vec<&Column> = columns(ctx.version).collect();
            let mut families: Vec<Family> = cols.iter().map(|c| Family::of(c.desc)).collect();
            let mut ratio =
                Family::of(&catalogue::DBAGENT_DATABASE_CACHE_HIT_RATIO).with_baseline();
            let mut size = Family::of(&catalogue::PG_DATABASE_SIZE_BYTES).with_baseline();
            let mut seen = HashMap::with_capacity(rows.len());
            for row in &rows {
                let datname: String = row.get(0);
                let labels = [("datname", datname.as_str())];
                let hit: Option<f64> = row.get(1);
                let read: Option<f64> = row.get(2);
                if let (Some(hit), Some(read)) = (hit, read) {
                    let now = Blocks {
                        hit,
                        read,
                        stats_reset: row.get(3),
                    };
                    if let Some(r) = hit_ratio(self.previous.get(&datname), &now) {
                        ratio.push(&labels, r);
                    }
                    seen.insert(datname.clone(), now);
                }
                if let Some(bytes) = row.get::<_, Option<f64>>(4) {
                    self.sizes.insert(datname.clone(), bytes);
                }
                if let Some(bytes) = self.sizes.get(&datname) {
                    size.push(&labels, *bytes);
                }
                for (i, family) in families.iter_mut().enumerate() {
                    if let Some(value) = row.get::<_, Option<f64>>(5 + i) {
                        family.push(&labels, value);
                    }
                }
            }
            // Dropped databases are forgotten with this.
            self.previous = seen;
            families.push(ratio);
            families.push(size);
            families.extend(conflicts(ctx).await?);
            Ok(Output::families(families))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(hit: f64, read: f64, reset: Option<f64>) -> Blocks {
        Blocks {
            hit,
            read,
            stats_reset: reset,
        }
    }

    #[test]
    fn hit_ratio_uses_the_interval_and_skips_resets() {
        assert_eq!(hit_ratio(None, &b(10.0, 0.0, None)), None);
        assert_eq!(
            hit_ratio(Some(&b(10.0, 10.0, None)), &b(40.0, 20.0, None)),
            Some(0.75)
        );
        // Nothing read in the interval.
        assert_eq!(
            hit_ratio(Some(&b(10.0, 10.0, None)), &b(10.0, 10.0, None)),
            None
        );
        // A counter went backwards.
        assert_eq!(
            hit_ratio(Some(&b(100.0, 10.0, None)), &b(5.0, 20.0, None)),
            None
        );
        // Reset, and grew past the old values since.
        assert_eq!(
            hit_ratio(Some(&b(10.0, 10.0, Some(1.0))), &b(50.0, 20.0, Some(2.0))),
            None
        );
    }

    #[test]
    fn version_picks_columns() {
        let v13 = ServerVersion::from_num(130000, "13.0");
        let v18 = ServerVersion::from_num(180000, "18.0");
        assert!(!sql(&v13, true).contains("session_time"));
        assert!(sql(&v18, false).contains("session_time"));
    }
}
