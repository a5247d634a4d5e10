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

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Kind, Output};
use crate::pg::ServerVersion;

/// One `pg_stat_database` column exported as a metric.
struct Column {
    /// SQL yielding float8 (or NULL) from `s` (pg_stat_database).
    expr: &'static str,
    name: &'static str,
    help: &'static str,
    kind: Kind,
    /// First major version that has it.
    since: u32,
}

const fn counter(expr: &'static str, name: &'static str, help: &'static str, since: u32) -> Column {
    Column {
        expr,
        name,
        help,
        kind: Kind::Counter,
        since,
    }
}

const COLUMNS: &[Column] = &[
    Column {
        expr: "s.numbackends::float8",
        name: "pg_stat_database_numbackends",
        help: "Backends currently connected to the database.",
        kind: Kind::Gauge,
        since: 13,
    },
    counter(
        "s.xact_commit::float8",
        "pg_stat_database_xact_commit_total",
        "Transactions committed in the database.",
        13,
    ),
    counter(
        "s.xact_rollback::float8",
        "pg_stat_database_xact_rollback_total",
        "Transactions rolled back in the database.",
        13,
    ),
    counter(
        "s.blks_read::float8",
        "pg_stat_database_blks_read_total",
        "Disk blocks read into shared buffers (not found in the buffer cache) in the database.",
        13,
    ),
    counter(
        "s.blks_hit::float8",
        "pg_stat_database_blks_hit_total",
        "Disk blocks found already in the buffer cache in the database.",
        13,
    ),
    counter(
        "s.tup_returned::float8",
        "pg_stat_database_tup_returned_total",
        "Rows returned by sequential scans and index entries returned by index scans in the database.",
        13,
    ),
    counter(
        "s.tup_fetched::float8",
        "pg_stat_database_tup_fetched_total",
        "Live rows fetched by index scans in the database.",
        13,
    ),
    counter(
        "s.tup_inserted::float8",
        "pg_stat_database_tup_inserted_total",
        "Rows inserted in the database.",
        13,
    ),
    counter(
        "s.tup_updated::float8",
        "pg_stat_database_tup_updated_total",
        "Rows updated in the database.",
        13,
    ),
    counter(
        "s.tup_deleted::float8",
        "pg_stat_database_tup_deleted_total",
        "Rows deleted in the database.",
        13,
    ),
    counter(
        "s.conflicts::float8",
        "pg_stat_database_conflicts_total",
        "Queries cancelled by recovery conflicts in the database (standbys only).",
        13,
    ),
    counter(
        "s.temp_files::float8",
        "pg_stat_database_temp_files_total",
        "Temporary files created by queries in the database.",
        13,
    ),
    counter(
        "s.temp_bytes::float8",
        "pg_stat_database_temp_bytes_total",
        "Bytes written to temporary files by queries in the database.",
        13,
    ),
    counter(
        "s.deadlocks::float8",
        "pg_stat_database_deadlocks_total",
        "Deadlocks detected in the database.",
        13,
    ),
    counter(
        "s.checksum_failures::float8",
        "pg_stat_database_checksum_failures_total",
        "Data page checksum failures detected in the database (only with data checksums on).",
        13,
    ),
    counter(
        "(s.blk_read_time / 1000)::float8",
        "pg_stat_database_blk_read_time_seconds_total",
        "Seconds spent reading data file blocks in the database (only with track_io_timing on).",
        13,
    ),
    counter(
        "(s.blk_write_time / 1000)::float8",
        "pg_stat_database_blk_write_time_seconds_total",
        "Seconds spent writing data file blocks in the database (only with track_io_timing on).",
        13,
    ),
    counter(
        "(s.session_time / 1000)::float8",
        "pg_stat_database_session_time_seconds_total",
        "Seconds sessions spent connected to the database.",
        14,
    ),
    counter(
        "(s.active_time / 1000)::float8",
        "pg_stat_database_active_time_seconds_total",
        "Seconds sessions spent executing statements in the database.",
        14,
    ),
    counter(
        "(s.idle_in_transaction_time / 1000)::float8",
        "pg_stat_database_idle_in_transaction_time_seconds_total",
        "Seconds sessions spent idle inside a transaction in the database.",
        14,
    ),
    counter(
        "s.sessions::float8",
        "pg_stat_database_sessions_total",
        "Sessions established to the database.",
        14,
    ),
    counter(
        "s.sessions_abandoned::float8",
        "pg_stat_database_sessions_abandoned_total",
        "Sessions to the database ended because the client went away.",
        14,
    ),
    counter(
        "s.sessions_fatal::float8",
        "pg_stat_database_sessions_fatal_total",
        "Sessions to the database ended by a fatal error.",
        14,
    ),
    counter(
        "s.sessions_killed::float8",
        "pg_stat_database_sessions_killed_total",
        "Sessions to the database ended by operator intervention.",
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
            let mut families: Vec<Family> = cols
                .iter()
                .map(|c| match c.kind {
                    Kind::Gauge => Family::gauge(c.name, c.help),
                    Kind::Counter => Family::counter(c.name, c.help),
                })
                .collect();
            let mut ratio = Family::gauge(
                "dbagent_database_cache_hit_ratio",
                "Share of block requests served from the buffer cache since the previous poll (blks_hit / (blks_hit + blks_read)).",
            )
            .with_baseline();
            let mut size = Family::gauge(
                "pg_database_size_bytes",
                "Disk space used by the database (read every monitor.slow_interval).",
            )
            .with_baseline();
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
