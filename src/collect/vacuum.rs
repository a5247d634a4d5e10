//! Vacuum health: dead and live tuples and the time since the last vacuum and analyze of the
//! tables of every watched database (`pg_stat_user_tables`, see `monitor.databases`), and how far every database is
//! from transaction ID and multixact ID wraparound (`age(datfrozenxid)`,
//! `mxid_age(datminmxid)`). Dead tuples piling up mean autovacuum is not keeping up (or is
//! blocked); a wraparound age approaching 2^31 ends with the server refusing writes.
//!
//! Per-table series are bounded across the cluster: the `monitor.top_tables` tables with the
//! most dead tuples, whatever their database, keep their own series; the rest are summed into
//! one series whose `datname`, `schemaname` and `relname` are `(other)`. The same tables get
//! postgres_exporter's `pg_stat_user_tables_*` and `pg_statio_user_tables_*` families
//! ([`EXPORTER_COLUMNS`]), read in each database for its tables still in the running top N
//! (no `(other)` row: the exporter has none, and summing every table costs more than the rest
//! of a poll), so their cost does not grow with the number of tables.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, FoldFuture, Output, PerDatabase};
use crate::config::MonitorConfig;
use crate::metrics::catalogue;
use crate::metrics::{OTHER, TopFold};

/// Transaction and multixact IDs wrap around at 2^31 (half the 32-bit space).
const WRAPAROUND_LIMIT: f64 = 2_147_483_648.0;

/// Every user table's tuple counts and the seconds since its last vacuum and analyze, manual
/// or automatic, whichever is later (`greatest` ignores NULLs; NULL when never done). The
/// tables of `pg_stat_user_tables`, read from `pg_class` and the statistics functions
/// directly: the view also sums every table's index scans (a join with `pg_index` and a
/// grouping over every table), which made it 3-4 times costlier at 10,000 tables.
const TABLES_SQL: &str = "\
SELECT n.nspname::text, c.relname::text, pg_stat_get_dead_tuples(c.oid)::float8, \
       pg_stat_get_live_tuples(c.oid)::float8, \
       extract(epoch FROM now() - greatest(pg_stat_get_last_vacuum_time(c.oid), \
                                           pg_stat_get_last_autovacuum_time(c.oid)))::float8, \
       extract(epoch FROM now() - greatest(pg_stat_get_last_analyze_time(c.oid), \
                                           pg_stat_get_last_autoanalyze_time(c.oid)))::float8, \
       c.oid \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 't', 'm', 'p') \
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'";

/// One postgres_exporter column: its SQL over `s` (pg_stat_user_tables) and `io`
/// (pg_statio_user_tables) and its family. Served for the top tables only: an `(other)` sum
/// would read every table's statistics through both views each poll (more than 200 ms of
/// database time at 10,000 tables), and postgres_exporter has no such row either.
struct Column {
    expr: &'static str,
    desc: &'static catalogue::Desc,
}

const fn col(expr: &'static str, desc: &'static catalogue::Desc) -> Column {
    Column { expr, desc }
}

/// postgres_exporter's per-table families (n_dead_tup and n_live_tup are above, in both sets).
const EXPORTER_COLUMNS: &[Column] = &[
    col("s.seq_scan", &catalogue::PG_STAT_USER_TABLES_SEQ_SCAN),
    col(
        "s.seq_tup_read",
        &catalogue::PG_STAT_USER_TABLES_SEQ_TUP_READ,
    ),
    col("s.idx_scan", &catalogue::PG_STAT_USER_TABLES_IDX_SCAN),
    col(
        "s.idx_tup_fetch",
        &catalogue::PG_STAT_USER_TABLES_IDX_TUP_FETCH,
    ),
    col("s.n_tup_ins", &catalogue::PG_STAT_USER_TABLES_N_TUP_INS),
    col("s.n_tup_upd", &catalogue::PG_STAT_USER_TABLES_N_TUP_UPD),
    col("s.n_tup_del", &catalogue::PG_STAT_USER_TABLES_N_TUP_DEL),
    col(
        "s.n_tup_hot_upd",
        &catalogue::PG_STAT_USER_TABLES_N_TUP_HOT_UPD,
    ),
    col(
        "s.vacuum_count",
        &catalogue::PG_STAT_USER_TABLES_VACUUM_COUNT,
    ),
    col(
        "s.autovacuum_count",
        &catalogue::PG_STAT_USER_TABLES_AUTOVACUUM_COUNT,
    ),
    col(
        "s.analyze_count",
        &catalogue::PG_STAT_USER_TABLES_ANALYZE_COUNT,
    ),
    col(
        "s.autoanalyze_count",
        &catalogue::PG_STAT_USER_TABLES_AUTOANALYZE_COUNT,
    ),
    col(
        "s.n_mod_since_analyze",
        &catalogue::PG_STAT_USER_TABLES_N_MOD_SINCE_ANALYZE,
    ),
    col(
        "coalesce(extract(epoch FROM s.last_vacuum), 0)",
        &catalogue::PG_STAT_USER_TABLES_LAST_VACUUM,
    ),
    col(
        "coalesce(extract(epoch FROM s.last_autovacuum), 0)",
        &catalogue::PG_STAT_USER_TABLES_LAST_AUTOVACUUM,
    ),
    col(
        "coalesce(extract(epoch FROM s.last_analyze), 0)",
        &catalogue::PG_STAT_USER_TABLES_LAST_ANALYZE,
    ),
    col(
        "coalesce(extract(epoch FROM s.last_autoanalyze), 0)",
        &catalogue::PG_STAT_USER_TABLES_LAST_AUTOANALYZE,
    ),
    col(
        "pg_indexes_size(s.relid)",
        &catalogue::PG_STAT_USER_TABLES_INDEX_SIZE_BYTES,
    ),
    col(
        "pg_table_size(s.relid)",
        &catalogue::PG_STAT_USER_TABLES_TABLE_SIZE_BYTES,
    ),
    col(
        "io.heap_blks_read",
        &catalogue::PG_STATIO_USER_TABLES_HEAP_BLOCKS_READ,
    ),
    col(
        "io.heap_blks_hit",
        &catalogue::PG_STATIO_USER_TABLES_HEAP_BLOCKS_HIT,
    ),
    col(
        "io.idx_blks_read",
        &catalogue::PG_STATIO_USER_TABLES_IDX_BLOCKS_READ,
    ),
    col(
        "io.idx_blks_hit",
        &catalogue::PG_STATIO_USER_TABLES_IDX_BLOCKS_HIT,
    ),
    col(
        "io.toast_blks_read",
        &catalogue::PG_STATIO_USER_TABLES_TOAST_BLOCKS_READ,
    ),
    col(
        "io.toast_blks_hit",
        &catalogue::PG_STATIO_USER_TABLES_TOAST_BLOCKS_HIT,
    ),
    col(
        "io.tidx_blks_read",
        &catalogue::PG_STATIO_USER_TABLES_TIDX_BLOCKS_READ,
    ),
    col(
        "io.tidx_blks_hit",
        &catalogue::PG_STATIO_USER_TABLES_TIDX_BLOCKS_HIT,
    ),
];

/// The exporter columns of the tables `$1` (relids), one row each: relid, then one value per
/// [`EXPORTER_COLUMNS`].
fn exporter_top_sql() -> String {
    let cols: Vec<String> = EXPORTER_COLUMNS
        .iter()
        .map(|c| format!("({})::float8", c.expr))
        .collect();
    format!(
        "SELECT s.relid, {} \
         FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid) \
         WHERE s.relid = ANY($1)",
        cols.join(", ")
    )
}

/// Wraparound ages of every database (template0 too: it counts towards the limit).
const WRAPAROUND_SQL: &str = "\
SELECT datname::text, age(datfrozenxid)::float8, mxid_age(datminmxid)::float8 \
FROM pg_database ORDER BY datname";

struct Table {
    datname: std::sync::Arc<str>,
    schema: String,
    name: String,
    dead: f64,
    live: f64,
    vacuum_age: Option<f64>,
    analyze_age: Option<f64>,
    relid: u32,
    /// Its [`EXPORTER_COLUMNS`] values, read while it was in its database's top N.
    exporter: Option<Box<[Option<f64>]>>,
}

/// The `(other)` totals: tables outside the top N, across databases.
#[derive(Default)]
struct Rest {
    dead: f64,
    live: f64,
}

/// The `vacuum` collector: per-table series across every watched database (top
/// `monitor.top_tables` by dead tuples), wraparound ages read once per poll.
pub struct Vacuum {
    tables: TopFold<Table, Rest>,
    wraparound: Vec<Family>,
}

impl Default for Vacuum {
    fn default() -> Self {
        Vacuum {
            tables: TopFold::new(
                0,
                |t| t.dead,
                |o, t| {
                    o.dead += t.dead;
                    o.live += t.live;
                },
            ),
            wraparound: Vec::new(),
        }
    }
}

impl Vacuum {
    /// postgres_exporter's per-table columns for the tables of this database still in the
    /// running top N.
    async fn exporter_columns(
        &mut self,
        ctx: &Ctx<'_>,
        datname: &std::sync::Arc<str>,
    ) -> Result<(), CollectError> {
        let here: Vec<u32> = self
            .tables
            .compacted()
            .iter()
            .filter(|t| std::sync::Arc::ptr_eq(&t.datname, datname))
            .map(|t| t.relid)
            .collect();
        if !here.is_empty() {
            let rows = ctx
                .client
                .query(&exporter_top_sql(), &[&here])
                .await
                .map_err(|e| CollectError::query("pg_stat_user_tables (top tables)", &e))?;
            let items = self.tables.compacted();
            for r in &rows {
                let relid: u32 = r.get(0);
                let values: Box<[Option<f64>]> = (0..EXPORTER_COLUMNS.len())
                    .map(|i| r.get::<_, Option<f64>>(i + 1))
                    .collect();
                if let Some(t) = items
                    .iter_mut()
                    .find(|t| t.relid == relid && std::sync::Arc::ptr_eq(&t.datname, datname))
                {
                    t.exporter = Some(values);
                }
            }
        }
        Ok(())
    }
}

impl Collector for Vacuum {
    fn name(&self) -> &'static str {
        "vacuum"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move { super::collect_one(self, ctx).await })
    }

    fn per_database(&mut self) -> Option<&mut dyn PerDatabase> {
        Some(self)
    }
}

impl PerDatabase for Vacuum {
    fn collect_database<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> FoldFuture<'a> {
        Box::pin(async move {
            let wraparound = if ctx.cluster_wide {
                Some(wraparound(ctx).await?)
            } else {
                None
            };
            let datname: std::sync::Arc<str> = ctx.dbname.into();
            self.tables.set_n(ctx.config.top_tables);
            let tables = &mut self.tables;
            crate::pg::for_each_row(ctx.client, TABLES_SQL, |r| {
                tables.push(Table {
                    datname: datname.clone(),
                    schema: r.get(0),
                    name: r.get(1),
                    dead: r.get::<_, Option<f64>>(2).unwrap_or(0.0),
                    live: r.get::<_, Option<f64>>(3).unwrap_or(0.0),
                    vacuum_age: r.get(4),
                    analyze_age: r.get(5),
                    relid: r.get(6),
                    exporter: None,
                })
            })
            .await
            .map_err(|e| CollectError::query("pg_stat_user_tables", &e))?;
            if let Some(w) = wraparound {
                self.wraparound = w;
            }
            self.exporter_columns(ctx, &datname).await
        })
    }

    fn finish(&mut self, _config: &MonitorConfig) -> Output {
        let (top, rest, spilled) = self.tables.finish();
        let mut dead = Family::of(&catalogue::PG_STAT_USER_TABLES_N_DEAD_TUP);
        let mut live = Family::of(&catalogue::PG_STAT_USER_TABLES_N_LIVE_TUP);
        let mut vacuum_age = Family::of(&catalogue::DBAGENT_TABLE_LAST_VACUUM_AGE_SECONDS);
        let mut analyze_age = Family::of(&catalogue::DBAGENT_TABLE_LAST_ANALYZE_AGE_SECONDS);
        for t in &top {
            let labels = [
                ("datname", &*t.datname),
                ("schemaname", t.schema.as_str()),
                ("relname", t.name.as_str()),
            ];
            dead.push(&labels, t.dead);
            live.push(&labels, t.live);
            if let Some(age) = t.vacuum_age {
                vacuum_age.push(&labels, age.max(0.0));
            }
            if let Some(age) = t.analyze_age {
                analyze_age.push(&labels, age.max(0.0));
            }
        }
        if spilled > 0 {
            let labels = [
                ("datname", OTHER),
                ("schemaname", OTHER),
                ("relname", OTHER),
            ];
            dead.push(&labels, rest.dead);
            live.push(&labels, rest.live);
        }
        let mut exporter: Vec<Family> = EXPORTER_COLUMNS
            .iter()
            .map(|c| Family::of(c.desc))
            .collect();
        for t in &top {
            let Some(values) = &t.exporter else {
                continue;
            };
            let labels = [
                ("datname", &*t.datname),
                ("schemaname", t.schema.as_str()),
                ("relname", t.name.as_str()),
            ];
            for (i, f) in exporter.iter_mut().enumerate() {
                if let Some(v) = values.get(i).copied().flatten() {
                    f.push(&labels, v);
                }
            }
        }
        let mut families = vec![dead, live, vacuum_age, analyze_age];
        families.append(&mut self.wraparound);
        families.extend(exporter);
        Output::families(families)
    }
}

/// Wraparound ages of every database (cluster-wide: read on the agent's own connection).
async fn wraparound(ctx: &Ctx<'_>) -> Result<Vec<Family>, CollectError> {
    let rows = ctx
        .client
        .query(WRAPAROUND_SQL, &[])
        .await
        .map_err(|e| CollectError::query("pg_database (wraparound ages)", &e))?;
    let mut xid_age = Family::of(&catalogue::DBAGENT_DATABASE_XID_AGE).with_baseline();
    let mut xid_ratio = Family::of(&catalogue::DBAGENT_DATABASE_XID_WRAPAROUND_RATIO);
    let mut mxid_age = Family::of(&catalogue::DBAGENT_DATABASE_MXID_AGE).with_baseline();
    let mut mxid_ratio = Family::of(&catalogue::DBAGENT_DATABASE_MXID_WRAPAROUND_RATIO);
    for r in &rows {
        let datname: String = r.get(0);
        let labels = [("datname", datname.as_str())];
        if let Some(age) = r.get::<_, Option<f64>>(1) {
            xid_age.push(&labels, age);
            xid_ratio.push(&labels, age / WRAPAROUND_LIMIT);
        }
        if let Some(age) = r.get::<_, Option<f64>>(2) {
            mxid_age.push(&labels, age);
            mxid_ratio.push(&labels, age / WRAPAROUND_LIMIT);
        }
    }
    Ok(vec![xid_age, xid_ratio, mxid_age, mxid_ratio])
}
