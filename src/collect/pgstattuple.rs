//! Exact bloat figures through the pgstattuple extension, on a slow schedule
//! (`monitor.pgstattuple_interval`, e.g. 7d; 0s = off, the default). Unlike the `bloat`
//! estimates, pgstattuple READS every page of the relations it measures, so it runs rarely and
//! only on the largest tables of the connected database (the top `monitor.top_tables` by pages,
//! at least `monitor.bloat_min_size`) and their btree indexes, one statement each, each bounded
//! by the poll connection's statement_timeout: a relation that takes longer is skipped and
//! counted, never retried in a loop. Relations locked AccessExclusive are skipped.
//!
//! Needs `CREATE EXTENSION pgstattuple` in the connected database and a role allowed to run it
//! (superuser, or pg_stat_scan_tables, which pg_monitor includes). Without the extension the
//! collector reports `dbagent_pgstattuple_available 0` and nothing else.

use std::time::Duration;

use serde_json::json;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::config::MonitorConfig;
use crate::metrics::catalogue;

/// The largest tables of the connected database, not locked AccessExclusive right now.
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

/// The `pgstattuple` collector.
#[derive(Default)]
pub struct PgStatTuple;

impl Collector for PgStatTuple {
    fn name(&self) -> &'static str {
        "pgstattuple"
    }

    fn interval(&self, config: &MonitorConfig) -> Option<Duration> {
        // Off: run every poll but do nothing (no query at all).
        (!config.pgstattuple_interval.is_zero()).then_some(config.pgstattuple_interval)
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            if ctx.config.pgstattuple_interval.is_zero() {
                return Ok(Output::default());
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
            let mut families = vec![
                Family::of(&catalogue::DBAGENT_PGSTATTUPLE_AVAILABLE)
                    .with(&[], if available { 1.0 } else { 0.0 }),
            ];
            if !available {
                return Ok(Output {
                    families,
                    status: Some(json!({
                        "available": false,
                        "reason": "CREATE EXTENSION pgstattuple in the connected database to get exact figures",
                    })),
                });
            }
            let min_size = i64::try_from(ctx.config.bloat_min_size).unwrap_or(i64::MAX);
            let limit = i64::try_from(ctx.config.top_tables).unwrap_or(i64::MAX);
            let candidates = ctx
                .client
                .query(CANDIDATES_SQL, &[&min_size, &limit])
                .await
                .map_err(|e| CollectError::query("pgstattuple candidates", &e))?;
            let datname = ctx.dbname;
            let mut dead = Family::of(&catalogue::DBAGENT_TABLE_EXACT_DEAD_TUPLE_BYTES);
            let mut free = Family::of(&catalogue::DBAGENT_TABLE_EXACT_FREE_BYTES);
            let mut ratio = Family::of(&catalogue::DBAGENT_TABLE_EXACT_BLOAT_RATIO);
            let mut density = Family::of(&catalogue::DBAGENT_INDEX_EXACT_LEAF_DENSITY_RATIO);
            let mut skipped = Vec::new();
            let mut tables = Vec::new();
            for row in &candidates {
                let oid: i64 = row.get(0);
                let schema: String = row.get(1);
                let rel: String = row.get(2);
                let labels = [
                    ("datname", datname),
                    ("schemaname", schema.as_str()),
                    ("relname", rel.as_str()),
                ];
                let measured = ctx
                    .client
                    .query_one(
                        "SELECT table_len::float8, dead_tuple_len::float8, free_space::float8 \
                         FROM pgstattuple($1::bigint::oid::regclass)",
                        &[&oid],
                    )
                    .await;
                let m = match measured {
                    Ok(m) => m,
                    Err(e) if e.is_closed() => return Err(CollectError::query("pgstattuple", &e)),
                    Err(e) => {
                        skipped.push(json!({
                            "relation": format!("{schema}.{rel}"),
                            "error": crate::pg::error_detail(&e),
                        }));
                        continue;
                    }
                };
                let (len, dead_len, free_len): (f64, f64, f64) = (m.get(0), m.get(1), m.get(2));
                dead.push(&labels, dead_len);
                free.push(&labels, free_len);
                let r = if len > 0.0 {
                    (dead_len + free_len) / len
                } else {
                    0.0
                };
                ratio.push(&labels, r);
                let mut indexes = Vec::new();
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
                                density.push(
                                    &[
                                        ("datname", datname),
                                        ("schemaname", schema.as_str()),
                                        ("relname", rel.as_str()),
                                        ("indexrelname", iname.as_str()),
                                    ],
                                    d / 100.0,
                                );
                                indexes.push(
                                    json!({"indexrelname": iname, "leaf_density": d / 100.0}),
                                );
                            }
                        }
                        Err(e) if e.is_closed() => {
                            return Err(CollectError::query("pgstatindex", &e));
                        }
                        Err(e) => skipped.push(json!({
                            "relation": format!("{schema}.{iname}"),
                            "error": crate::pg::error_detail(&e),
                        })),
                    }
                }
                tables.push(json!({
                    "schemaname": schema,
                    "relname": rel,
                    "size_bytes": len,
                    "dead_tuple_bytes": dead_len,
                    "free_bytes": free_len,
                    "bloat_ratio": r,
                    "indexes": indexes,
                }));
            }
            families.extend([dead, free, ratio, density]);
            families.push(
                Family::of(&catalogue::DBAGENT_PGSTATTUPLE_SKIPPED_RELATIONS)
                    .with(&[], skipped.len() as f64),
            );
            Ok(Output {
                families,
                status: Some(json!({
                    "available": true,
                    "measured_at": ctx.now,
                    "tables": tables,
                    "skipped": skipped,
                })),
            })
        })
    }
}
