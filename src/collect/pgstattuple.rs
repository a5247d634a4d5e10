//! Exact bloat figures through the pgstattuple extension, on a slow schedule
//! (`monitor.pgstattuple_interval`, e.g. 7d; 0s = off, the default). Unlike the `bloat`
//! estimates, pgstattuple READS every page of the relations it measures, so it runs rarely and
//! only on the largest tables of each watched database (the top `monitor.top_tables` by pages
//! in each, at least `monitor.bloat_min_size`; the `monitor.top_tables` largest measured across
//! the cluster keep their series) and their btree indexes, one statement each, each bounded
//! by the poll connection's statement_timeout: a relation that takes longer is skipped and
//! counted, never retried in a loop. Relations locked AccessExclusive are skipped.
//!
//! Needs `CREATE EXTENSION pgstattuple` in each database to measure and a role allowed to run it
//! (superuser, or pg_stat_scan_tables, which pg_monitor includes). Without the extension the
//! collector reports `dbagent_pgstattuple_available 0` (no watched database has it) and
//! nothing else.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, FoldFuture, Output, PerDatabase};
use crate::config::MonitorConfig;
use crate::metrics::TopFold;
use crate::metrics::catalogue;

/// The largest tables of the database read, not locked AccessExclusive right now.
const CANDIDATES_SQL: &str = "\
WITH locked AS ( \
  SELECT l.relation FROM pg_catalog.pg_locks l \
  WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())) \
SELECT c.oid::bigint, n.nspname::text, c.relname::text \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'm') \
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
  AND c.relpages::bigint * current_setting('block_size')::bigint >= $1 \
  AND c.oid NOT IN (SELECT relation FROM locked WHERE relation IS NOT NULL) \
ORDER BY c.relpages DESC LIMIT $2";

/// The btree indexes of one table, not locked AccessExclusive.
const INDEXES_SQL: &str = "\
SELECT i.indexrelid::bigint, ic.relname::text \
FROM pg_catalog.pg_index i \
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
WHERE i.indrelid = $1::bigint::oid AND am.amname = 'btree' AND i.indisvalid \
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'relation' \
                  AND l.relation = i.indexrelid AND l.mode = 'AccessExclusiveLock')";

/// One measured table and its btree indexes' leaf density.
struct Measured {
    datname: Arc<str>,
    schema: String,
    rel: String,
    len: f64,
    dead: f64,
    free: f64,
    indexes: Vec<(String, f64)>,
}

impl Measured {
    fn ratio(&self) -> f64 {
        if self.len > 0.0 {
            (self.dead + self.free) / self.len
        } else {
            0.0
        }
    }
}

/// The `pgstattuple` collector: the largest tables of each watched database are measured; the
/// `monitor.top_tables` largest across the cluster keep their series.
pub struct PgStatTuple {
    tables: TopFold<Measured, ()>,
    /// Watched databases where the extension is created, and where it is not.
    available: Vec<String>,
    unavailable: Vec<String>,
    skipped: Vec<serde_json::Value>,
}

impl Default for PgStatTuple {
    fn default() -> Self {
        PgStatTuple {
            tables: TopFold::new(0, |m| m.len, |(), _| {}),
            available: Vec::new(),
            unavailable: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl Collector for PgStatTuple {
    fn name(&self) -> &'static str {
        "pgstattuple"
    }

    fn interval(&self, config: &MonitorConfig) -> Option<Duration> {
        // Off: run every poll but do nothing (no query at all).
        (!config.pgstattuple_interval.is_zero()).then_some(config.pgstattuple_interval)
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move { super::collect_one(self, ctx).await })
    }

    fn per_database(&mut self) -> Option<&mut dyn PerDatabase> {
        Some(self)
    }
}

impl PerDatabase for PgStatTuple {
    fn collect_database<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> FoldFuture<'a> {
        Box::pin(async move {
            if ctx.config.pgstattuple_interval.is_zero() {
                return Ok(());
            }
            let available = ctx
                .client
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgstattuple'",
                    &[],
                )
                .await
                .map_err(|e| CollectError::query("pg_extension", &e))?
                .is_some();
            if !available {
                self.unavailable.push(ctx.dbname.to_string());
                return Ok(());
            }
            let min_size = i64::try_from(ctx.config.bloat_min_size).unwrap_or(i64::MAX);
            let limit = i64::try_from(ctx.config.top_tables).unwrap_or(i64::MAX);
            let candidates = ctx
                .client
                .query(CANDIDATES_SQL, &[&min_size, &limit])
                .await
                .map_err(|e| CollectError::query("pgstattuple candidates", &e))?;
            let datname: Arc<str> = ctx.dbname.into();
            let mut measured = Vec::new();
            let mut skipped = Vec::new();
            for row in &candidates {
                let oid: i64 = row.get(0);
                let schema: String = row.get(1);
                let rel: String = row.get(2);
                let m = ctx
                    .client
                    .query_one(
                        "SELECT table_len::float8, dead_tuple_len::float8, free_space::float8 \
                         FROM pgstattuple($1::bigint::oid::regclass)",
                        &[&oid],
                    )
                    .await;
                let m = match m {
                    Ok(m) => m,
                    Err(e) if e.is_closed() => return Err(CollectError::query("pgstattuple", &e)),
                    Err(e) => {
                        skipped.push(json!({
                            "datname": &*datname,
                            "relation": format!("{schema}.{rel}"),
                            "error": crate::pg::error_detail(&e),
                        }));
                        continue;
                    }
                };
                let mut table = Measured {
                    datname: datname.clone(),
                    len: m.get(0),
                    dead: m.get(1),
                    free: m.get(2),
                    indexes: Vec::new(),
                    schema,
                    rel,
                };
                let idx = ctx
                    .client
                    .query(INDEXES_SQL, &[&oid])
                    .await
                    .map_err(|e| CollectError::query("pgstattuple indexes", &e))?;
                for i in &idx {
                    let ioid: i64 = i.get(0);
                    let iname: String = i.get(1);
                    let stat = ctx
                        .client
                        .query_one(
                            "SELECT avg_leaf_density::float8 FROM pgstatindex($1::bigint::oid::regclass)",
                            &[&ioid],
                        )
                        .await;
                    match stat {
                        Ok(s) => {
                            let d: f64 = s.get(0);
                            // An empty index reports NaN.
                            if d.is_finite() {
                                table.indexes.push((iname, d / 100.0));
                            }
                        }
                        Err(e) if e.is_closed() => {
                            return Err(CollectError::query("pgstatindex", &e));
                        }
                        Err(e) => skipped.push(json!({
                            "datname": &*datname,
                            "relation": format!("{}.{iname}", table.schema),
                            "error": crate::pg::error_detail(&e),
                        })),
                    }
                }
                measured.push(table);
            }
            self.tables.set_n(ctx.config.top_tables);
            for m in measured {
                self.tables.push(m);
            }
            self.skipped.extend(skipped);
            self.available.push(ctx.dbname.to_string());
            Ok(())
        })
    }

    fn finish(&mut self, config: &MonitorConfig) -> Output {
        let available = std::mem::take(&mut self.available);
        let unavailable = std::mem::take(&mut self.unavailable);
        let skipped = std::mem::take(&mut self.skipped);
        let (top, (), _) = self.tables.finish();
        if config.pgstattuple_interval.is_zero() {
            return Output::default();
        }
        let mut families = vec![
            Family::of(&catalogue::DBAGENT_PGSTATTUPLE_AVAILABLE)
                .with(&[], if available.is_empty() { 0.0 } else { 1.0 }),
        ];
        if available.is_empty() {
            return Output {
                families,
                status: Some(json!({
                    "available": false,
                    "reason": "CREATE EXTENSION pgstattuple in the watched databases to get exact figures",
                    "unavailable_in": unavailable,
                })),
            };
        }
        let mut dead = Family::of(&catalogue::DBAGENT_TABLE_EXACT_DEAD_TUPLE_BYTES);
        let mut free = Family::of(&catalogue::DBAGENT_TABLE_EXACT_FREE_BYTES);
        let mut ratio = Family::of(&catalogue::DBAGENT_TABLE_EXACT_BLOAT_RATIO);
        let mut density = Family::of(&catalogue::DBAGENT_INDEX_EXACT_LEAF_DENSITY_RATIO);
        let mut tables = Vec::new();
        for t in &top {
            let labels = [
                ("datname", &*t.datname),
                ("schemaname", t.schema.as_str()),
                ("relname", t.rel.as_str()),
            ];
            dead.push(&labels, t.dead);
            free.push(&labels, t.free);
            ratio.push(&labels, t.ratio());
            let mut indexes = Vec::new();
            for (iname, d) in &t.indexes {
                density.push(
                    &[
                        ("datname", &*t.datname),
                        ("schemaname", t.schema.as_str()),
                        ("relname", t.rel.as_str()),
                        ("indexrelname", iname.as_str()),
                    ],
                    *d,
                );
                indexes.push(json!({"indexrelname": iname, "leaf_density": d}));
            }
            tables.push(json!({
                "datname": &*t.datname,
                "schemaname": t.schema,
                "relname": t.rel,
                "size_bytes": t.len,
                "dead_tuple_bytes": t.dead,
                "free_bytes": t.free,
                "bloat_ratio": t.ratio(),
                "indexes": indexes,
            }));
        }
        families.extend([dead, free, ratio, density]);
        families.push(
            Family::of(&catalogue::DBAGENT_PGSTATTUPLE_SKIPPED_RELATIONS)
                .with(&[], skipped.len() as f64),
        );
        Output {
            families,
            status: Some(json!({
                "available": true,
                "unavailable_in": unavailable,
                "measured_at": jiff::Timestamp::now(),
                "tables": tables,
                "skipped": skipped,
            })),
        }
    }
}
