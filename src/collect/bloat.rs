//! Table and btree index bloat ESTIMATES for every watched database (`monitor.databases`; top
//! `monitor.top_tables` across the cluster plus `(other)`), from planner statistics
//! only (pg_class reltuples/relpages, pg_stats avg_width/null_frac): the expected size of the
//! live rows at the relation's fillfactor is compared with its size on disk. Nothing reads
//! table data or opens a relation, so a poll costs catalog reads whatever the tables' size.
//!
//! The estimate follows the well-known approach of ioguix/pgsql-bloat-estimation: a heap tuple
//! is a 23-byte header (plus a null bitmap when a column has nulls) and the mean width of its
//! non-null values, each part padded to MAXALIGN, plus a 4-byte line pointer; a page holds
//! `(block_size - 24) * fillfactor / 100` bytes of them (at most MaxHeapTuplesPerPage). A btree
//! tuple is an 8-byte header (plus a 4-byte null bitmap) and its key widths, in pages of
//! `block_size - 24 - 16`, at fillfactor 90 by default, plus the metapage. TOAST is left out:
//! pg_stats widths are those of the values as stored in the heap (toast pointers included).
//! Btree deduplication makes real indexes smaller than estimated, so such an index shows
//! less bloat than it has, never more.
//!
//! Skipped: relations smaller than `monitor.bloat_min_size`; relations without statistics
//! (never analyzed, or a column without a pg_stats row, which is also what a role that may not
//! SELECT a table sees: the `stats_visibility` check warns about that); relations locked
//! AccessExclusive right now (pg_locks is read first; their catalog figures are in flux during
//! a rewrite); system catalogs and TOAST tables. Runs every `monitor.slow_interval`.
//!
//! Exact figures, read from the pages themselves, come from the `pgstattuple` collector on its
//! own slow schedule (`monitor.pgstattuple_interval`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, FoldFuture, Output, PerDatabase};
use crate::config::MonitorConfig;
use crate::metrics::catalogue::{self, Desc};
use crate::metrics::{OTHER, TopFold};

/// Relations locked AccessExclusive (granted or awaited) in this database.
const LOCKED_CTE: &str = "locked AS ( \
    SELECT l.relation FROM pg_catalog.pg_locks l \
    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())), \
  consts AS ( \
    SELECT current_setting('block_size')::float8 AS bs, \
      CASE WHEN version() ~ '64-bit|x86_64|ppc64|ia64|amd64|aarch64|arm64|s390x' THEN 8 ELSE 4 END AS ma)";

/// Per table: schema, name, size in bytes, estimated bloat in bytes, whether statistics cover
/// every column. `$1` is the minimum size in bytes.
fn tables_sql() -> String {
    format!(
        "WITH {LOCKED_CTE}, \
        tbl AS ( \
          SELECT c.oid, n.nspname, c.relname, c.reltuples::float8 AS reltuples, \
            c.relpages::float8 AS relpages, \
            coalesce((SELECT substring(o FROM '^fillfactor=([0-9]+)$')::float8 \
                      FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%' LIMIT 1), 100) AS ff \
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind IN ('r', 'm') \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
            AND c.relpages::int8 * current_setting('block_size')::int8 >= $1 \
            AND c.oid NOT IN (SELECT relation FROM locked WHERE relation IS NOT NULL)), \
        widths AS ( \
          SELECT t.oid, count(*) AS natts, count(s.attname) AS nstats, \
            max(coalesce(s.null_frac, 0)) AS max_null, \
            sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0))::float8 AS data_width \
          FROM tbl t \
          JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped \
          LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = t.nspname AND s.tablename = t.relname \
            AND s.attname = a.attname AND NOT s.inherited \
          GROUP BY t.oid), \
        est AS ( \
          SELECT t.nspname, t.relname, t.relpages, t.reltuples, consts.bs, \
            t.reltuples >= 0 AND w.nstats = w.natts AS complete, \
            ceil((23 + CASE WHEN w.max_null > 0 THEN ceil(w.natts / 8.0) ELSE 0 END) / consts.ma) * consts.ma \
              + ceil(w.data_width / consts.ma) * consts.ma + 4 AS tuple_bytes, \
            (consts.bs - 24) * t.ff / 100 AS page_bytes, \
            floor((consts.bs - 24) / 28) AS max_per_page \
          FROM tbl t JOIN widths w ON w.oid = t.oid CROSS JOIN consts) \
        SELECT nspname::text, relname::text, relpages * bs, \
          greatest(relpages - ceil(greatest(reltuples, 0) / \
            least(max_per_page, greatest(1, floor(page_bytes / tuple_bytes)))), 0) * bs, \
          complete \
        FROM est"
    )
}

/// Per btree index: schema, table, index, size in bytes, estimated bloat in bytes, whether
/// statistics cover every indexed column (or expression). `$1` is the minimum size in bytes.
fn indexes_sql() -> String {
    format!(
        "WITH {LOCKED_CTE}, \
        idx AS ( \
          SELECT ci.oid, n.nspname, ct.relname AS tblname, ci.relname AS idxname, ct.oid AS tbloid, \
            i.indkey, ci.reltuples::float8 AS reltuples, ci.relpages::float8 AS relpages, \
            coalesce((SELECT substring(o FROM '^fillfactor=([0-9]+)$')::float8 \
                      FROM unnest(ci.reloptions) o WHERE o LIKE 'fillfactor=%' LIMIT 1), 90) AS ff \
          FROM pg_catalog.pg_index i \
          JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid \
          JOIN pg_catalog.pg_class ct ON ct.oid = i.indrelid \
          JOIN pg_catalog.pg_namespace n ON n.oid = ci.relnamespace \
          JOIN pg_catalog.pg_am am ON am.oid = ci.relam AND am.amname = 'btree' \
          WHERE ci.relkind = 'i' \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
            AND ci.relpages::int8 * current_setting('block_size')::int8 >= $1 \
            AND ci.oid NOT IN (SELECT relation FROM locked WHERE relation IS NOT NULL) \
            AND ct.oid NOT IN (SELECT relation FROM locked WHERE relation IS NOT NULL)), \
        widths AS ( \
          SELECT x.oid, count(*) AS natts, count(s.attname) AS nstats, \
            max(coalesce(s.null_frac, 0)) AS max_null, \
            sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0))::float8 AS data_width \
          FROM idx x \
          JOIN pg_catalog.pg_attribute ia ON ia.attrelid = x.oid AND ia.attnum > 0 \
          LEFT JOIN pg_catalog.pg_attribute ta ON x.indkey[ia.attnum - 1] <> 0 \
            AND ta.attrelid = x.tbloid AND ta.attnum = x.indkey[ia.attnum - 1] \
          LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = x.nspname AND NOT s.inherited \
            AND s.tablename = CASE WHEN ta.attnum IS NULL THEN x.idxname ELSE x.tblname END \
            AND s.attname = coalesce(ta.attname, ia.attname) \
          GROUP BY x.oid), \
        est AS ( \
          SELECT x.nspname, x.tblname, x.idxname, x.relpages, x.reltuples, consts.bs, \
            x.reltuples >= 0 AND w.nstats = w.natts AS complete, \
            ceil((8 + CASE WHEN w.max_null > 0 THEN 4 ELSE 0 END)::float8 / consts.ma) * consts.ma \
              + ceil(w.data_width / consts.ma) * consts.ma + 4 AS tuple_bytes, \
            (consts.bs - 24 - 16) * x.ff / 100 AS page_bytes \
          FROM idx x JOIN widths w ON w.oid = x.oid CROSS JOIN consts) \
        SELECT nspname::text, tblname::text, idxname::text, relpages * bs, \
          greatest(relpages - 1 - ceil(greatest(reltuples, 0) / \
            greatest(1, floor(page_bytes / tuple_bytes))), 0) * bs, \
          complete \
        FROM est"
    )
}

/// Names of the relations of this database locked AccessExclusive right now.
const LOCKED_NAMES_SQL: &str = "SELECT DISTINCT n.nspname::text || '.' || c.relname::text \
    FROM pg_catalog.pg_locks l \
    JOIN pg_catalog.pg_class c ON c.oid = l.relation \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
    ORDER BY 1";

/// One relation's estimate.
#[derive(Debug, Clone)]
struct Estimate {
    datname: Arc<str>,
    schemaname: String,
    relname: String,
    /// The index name, for indexes.
    indexrelname: Option<String>,
    size: f64,
    bloat: f64,
}

impl Estimate {
    fn ratio(&self) -> f64 {
        if self.size > 0.0 {
            self.bloat / self.size
        } else {
            0.0
        }
    }
}

/// The `(other)` totals of the relations outside the top N.
#[derive(Default)]
struct Rest {
    size: f64,
    bloat: f64,
}

fn fold(n: usize) -> TopFold<Estimate, Rest> {
    TopFold::new(
        n,
        |e| e.bloat,
        |o, e| {
            o.size += e.size;
            o.bloat += e.bloat;
        },
    )
}

/// The `bloat` collector: estimates in every watched database, top `monitor.top_tables`
/// tables and indexes by bloat bytes across the cluster.
pub struct Bloat {
    tables: TopFold<Estimate, Rest>,
    indexes: TopFold<Estimate, Rest>,
    databases: Vec<String>,
    estimated_tables: usize,
    estimated_indexes: usize,
    locked: Vec<serde_json::Value>,
    no_stats: Vec<serde_json::Value>,
    no_stats_count: usize,
}

impl Default for Bloat {
    fn default() -> Self {
        Bloat {
            tables: fold(0),
            indexes: fold(0),
            databases: Vec::new(),
            estimated_tables: 0,
            estimated_indexes: 0,
            locked: Vec::new(),
            no_stats: Vec::new(),
            no_stats_count: 0,
        }
    }
}

/// The top estimates as `bytes` and `ratio` families, plus an `(other)` series (bloat summed,
/// ratio of the sums, present even when empty); and the top ones for the status section.
fn families(
    (top, rest): (Vec<Estimate>, Rest),
    (bytes, ratio): (&Desc, &Desc),
) -> (Vec<Family>, Vec<serde_json::Value>) {
    let mut bytes = Family::of(bytes);
    let mut ratio = Family::of(ratio);
    let mut status = Vec::new();
    for e in &top {
        let mut labels = vec![
            ("datname", &*e.datname),
            ("schemaname", e.schemaname.as_str()),
            ("relname", e.relname.as_str()),
        ];
        if let Some(i) = &e.indexrelname {
            labels.push(("indexrelname", i.as_str()));
        }
        bytes.push(&labels, e.bloat);
        ratio.push(&labels, e.ratio());
        status.push(json!({
            "datname": &*e.datname,
            "schemaname": e.schemaname,
            "relname": e.relname,
            "indexrelname": e.indexrelname,
            "size_bytes": e.size,
            "bloat_bytes": e.bloat,
            "bloat_ratio": e.ratio(),
        }));
    }
    let mut labels = vec![
        ("datname", OTHER),
        ("schemaname", OTHER),
        ("relname", OTHER),
    ];
    if bytes.name.starts_with("dbagent_index") {
        labels.push(("indexrelname", OTHER));
    }
    bytes.push(&labels, rest.bloat);
    ratio.push(
        &labels,
        if rest.size > 0.0 {
            rest.bloat / rest.size
        } else {
            0.0
        },
    );
    (vec![bytes, ratio], status)
}

impl Collector for Bloat {
    fn name(&self) -> &'static str {
        "bloat"
    }

    fn interval(&self, config: &MonitorConfig) -> Option<Duration> {
        Some(config.slow_interval)
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move { super::collect_one(self, ctx).await })
    }

    fn per_database(&mut self) -> Option<&mut dyn PerDatabase> {
        Some(self)
    }
}

impl PerDatabase for Bloat {
    fn collect_database<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> FoldFuture<'a> {
        Box::pin(async move {
            let min_size = i64::try_from(ctx.config.bloat_min_size).unwrap_or(i64::MAX);
            let locked: Vec<String> = ctx
                .client
                .query(LOCKED_NAMES_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_locks", &e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let tables = ctx
                .client
                .query(&tables_sql(), &[&min_size])
                .await
                .map_err(|e| CollectError::query("table bloat estimate", &e))?;
            let indexes = ctx
                .client
                .query(&indexes_sql(), &[&min_size])
                .await
                .map_err(|e| CollectError::query("index bloat estimate", &e))?;

            let n = ctx.config.top_tables;
            self.tables.set_n(n);
            self.indexes.set_n(n);
            let datname: Arc<str> = ctx.dbname.into();
            let mut no_stats = |relation: String| {
                self.no_stats_count += 1;
                if self.no_stats.len() < n {
                    self.no_stats
                        .push(json!({ "datname": &*datname, "relation": relation }));
                }
            };
            let mut estimated = (0, 0);
            let mut table_est = Vec::new();
            for r in &tables {
                let e = Estimate {
                    datname: datname.clone(),
                    schemaname: r.get(0),
                    relname: r.get(1),
                    indexrelname: None,
                    size: r.get(2),
                    bloat: r.get(3),
                };
                if r.get::<_, bool>(4) {
                    estimated.0 += 1;
                    table_est.push(e);
                } else {
                    no_stats(format!("{}.{}", e.schemaname, e.relname));
                }
            }
            let mut index_est = Vec::new();
            for r in &indexes {
                let e = Estimate {
                    datname: datname.clone(),
                    schemaname: r.get(0),
                    relname: r.get(1),
                    indexrelname: Some(r.get(2)),
                    size: r.get(3),
                    bloat: r.get(4),
                };
                if r.get::<_, bool>(5) {
                    estimated.1 += 1;
                    index_est.push(e);
                } else {
                    no_stats(format!(
                        "{}.{}",
                        e.schemaname,
                        e.indexrelname.as_deref().unwrap_or("")
                    ));
                }
            }
            for e in table_est {
                self.tables.push(e);
            }
            for e in index_est {
                self.indexes.push(e);
            }
            self.estimated_tables += estimated.0;
            self.estimated_indexes += estimated.1;
            self.locked.extend(
                locked
                    .into_iter()
                    .map(|relation| json!({ "datname": &*datname, "relation": relation })),
            );
            self.databases.push(ctx.dbname.to_string());
            Ok(())
        })
    }

    fn finish(&mut self, config: &MonitorConfig) -> Output {
        let tables = self.tables.finish();
        let indexes = self.indexes.finish();
        let (mut fams, top_tables) = families(
            (tables.0, tables.1),
            (
                &catalogue::DBAGENT_TABLE_BLOAT_BYTES,
                &catalogue::DBAGENT_TABLE_BLOAT_RATIO,
            ),
        );
        let (index_fams, top_indexes) = families(
            (indexes.0, indexes.1),
            (
                &catalogue::DBAGENT_INDEX_BLOAT_BYTES,
                &catalogue::DBAGENT_INDEX_BLOAT_RATIO,
            ),
        );
        fams.extend(index_fams);
        let locked = std::mem::take(&mut self.locked);
        let no_stats_count = std::mem::take(&mut self.no_stats_count);
        fams.push(
            Family::of(&catalogue::DBAGENT_BLOAT_SKIPPED_RELATIONS)
                .with(&[("reason", "locked")], locked.len() as f64)
                .with(&[("reason", "no_statistics")], no_stats_count as f64),
        );
        let status = json!({
            "databases": std::mem::take(&mut self.databases),
            "min_size_bytes": config.bloat_min_size,
            "estimated_tables": std::mem::take(&mut self.estimated_tables),
            "estimated_indexes": std::mem::take(&mut self.estimated_indexes),
            "skipped_locked": locked,
            "skipped_no_statistics": no_stats_count,
            "skipped_no_statistics_names": std::mem::take(&mut self.no_stats),
            "tables": top_tables,
            "indexes": top_indexes,
        });
        Output {
            families: fams,
            status: Some(status),
        }
    }
}
