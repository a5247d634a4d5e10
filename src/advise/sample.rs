//! What the advisor reads from the connected database in one go: the cumulative counters of
//! every user table (`pg_stat_user_tables`) and index (`pg_stat_user_indexes`), the index
//! definitions (`pg_index`, `pg_am`, `pg_constraint`) and the markers that say whether those
//! counters can be compared with an earlier reading (`pg_stat_database.stats_reset`,
//! `pg_postmaster_start_time()`).
//!
//! Statistics views and the catalog only: nothing reads table data. Sizes come from
//! `pg_relation_size`, except for relations locked AccessExclusive right now (a rewrite in
//! progress), whose size is taken from `pg_class.relpages` so that the sample never waits for
//! the lock.

use serde::{Deserialize, Serialize};

use crate::pg::ServerVersion;

/// The counters of one table at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStat {
    pub relid: i64,
    pub schema: String,
    pub name: String,
    pub seq_scan: f64,
    pub seq_tup_read: f64,
    pub idx_scan: f64,
    pub idx_tup_fetch: f64,
    pub n_live_tup: f64,
    pub n_dead_tup: f64,
    pub autovacuum_count: f64,
    pub size_bytes: f64,
    /// `pg_class.reltuples` (-1 when never analyzed, 16+; 0 before).
    pub reltuples: f64,
    /// `last_seq_scan` (16+) as Unix seconds.
    pub last_seq_scan: Option<f64>,
}

/// One index at one moment: its counters and what it enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStat {
    pub indexrelid: i64,
    pub relid: i64,
    pub schema: String,
    pub table: String,
    pub name: String,
    pub idx_scan: f64,
    pub size_bytes: f64,
    /// What the index enforces, if anything: `primary key`, `unique constraint`, `exclusion
    /// constraint`, or `unique index` (CREATE UNIQUE INDEX without a constraint still refuses
    /// duplicates, so dropping it changes what the database accepts).
    pub enforces: Option<String>,
    /// `last_idx_scan` (16+) as Unix seconds.
    pub last_idx_scan: Option<f64>,
}

/// An index's definition, for duplicate detection and missing-index hints (current catalog
/// only; not stored).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDef {
    pub indexrelid: i64,
    pub relid: i64,
    pub method: String,
    /// Key columns in order; an expression column is `None`.
    pub keys: Vec<Option<String>>,
    /// INCLUDE columns.
    pub include: Vec<String>,
    /// Operator classes and collations of the key columns.
    pub opclasses: Vec<u32>,
    pub collations: Vec<u32>,
    /// `pg_get_expr` of the expressions and of the predicate.
    pub exprs: Option<String>,
    pub predicate: Option<String>,
    pub valid: bool,
    /// `pg_get_indexdef`.
    pub definition: String,
}

/// One reading of the connected database.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub taken: jiff::Timestamp,
    pub dbname: String,
    /// `pg_stat_database.stats_reset` of this database (Unix seconds), if ever reset.
    pub stats_reset: Option<f64>,
    /// `pg_postmaster_start_time()` (Unix seconds): a change means another server process
    /// (restart, failover), whose counters cannot be compared with the previous ones.
    pub postmaster_start: f64,
    pub in_recovery: bool,
    pub tables: Vec<TableStat>,
    pub indexes: Vec<IndexStat>,
}

/// A sample plus the index definitions of the moment.
#[derive(Debug, Clone)]
pub struct Reading {
    pub sample: Sample,
    pub defs: Vec<IndexDef>,
}

/// Relations of this database locked AccessExclusive right now: their size is read from the
/// catalog rather than waiting for the lock.
const LOCKED_CTE: &str = "WITH locked AS ( \
    SELECT l.relation FROM pg_catalog.pg_locks l \
    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.relation IS NOT NULL \
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))";

fn size_expr(oid: &str, relpages: &str) -> String {
    format!(
        "(CASE WHEN {oid} IN (SELECT relation FROM locked) \
          THEN {relpages}::int8 * current_setting('block_size')::int8 \
          ELSE pg_catalog.pg_relation_size({oid}) END)::float8"
    )
}

fn tables_sql(v: &ServerVersion) -> String {
    let last = if v.major() >= 16 {
        "extract(epoch FROM s.last_seq_scan)::float8"
    } else {
        "NULL::float8"
    };
    format!(
        "{LOCKED_CTE} \
         SELECT s.relid::int8, s.schemaname::text, s.relname::text, \
           coalesce(s.seq_scan, 0)::float8, coalesce(s.seq_tup_read, 0)::float8, \
           coalesce(s.idx_scan, 0)::float8, coalesce(s.idx_tup_fetch, 0)::float8, \
           coalesce(s.n_live_tup, 0)::float8, coalesce(s.n_dead_tup, 0)::float8, \
           coalesce(s.autovacuum_count, 0)::float8, {size}, c.reltuples::float8, {last} \
         FROM pg_catalog.pg_stat_user_tables s JOIN pg_catalog.pg_class c ON c.oid = s.relid \
         WHERE c.relkind IN ('r', 'm')",
        size = size_expr("s.relid", "c.relpages"),
    )
}

fn indexes_sql(v: &ServerVersion) -> String {
    let last = if v.major() >= 16 {
        "extract(epoch FROM s.last_idx_scan)::float8"
    } else {
        "NULL::float8"
    };
    format!(
        "{LOCKED_CTE} \
         SELECT i.indexrelid::int8, i.indrelid::int8, n.nspname::text, ct.relname::text, ci.relname::text, \
           coalesce(s.idx_scan, 0)::float8, {size}, \
           CASE (SELECT co.contype FROM pg_catalog.pg_constraint co \
                 WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid \
                   AND co.contype IN ('p', 'u', 'x') LIMIT 1) \
             WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique constraint' \
             WHEN 'x' THEN 'exclusion constraint' \
             ELSE CASE WHEN i.indisprimary THEN 'primary key' \
                       WHEN i.indisexclusion THEN 'exclusion constraint' \
                       WHEN i.indisunique THEN 'unique index' END END, \
           {last}, am.amname::text, \
           ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                 LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE k.ord <= i.indnkeyatts ORDER BY k.ord), \
           ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE k.ord > i.indnkeyatts ORDER BY k.ord), \
           i.indclass::oid[], i.indcollation::oid[], \
           pg_catalog.pg_get_expr(i.indexprs, i.indrelid), pg_catalog.pg_get_expr(i.indpred, i.indrelid), \
           i.indisvalid AND i.indisready, pg_catalog.pg_get_indexdef(i.indexrelid) \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid \
         JOIN pg_catalog.pg_class ct ON ct.oid = i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = ct.relnamespace \
         JOIN pg_catalog.pg_am am ON am.oid = ci.relam \
         LEFT JOIN pg_catalog.pg_stat_user_indexes s ON s.indexrelid = i.indexrelid \
         WHERE ct.relkind IN ('r', 'm') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'",
        size = size_expr("i.indexrelid", "ci.relpages"),
    )
}

const MARKERS_SQL: &str = "SELECT extract(epoch FROM d.stats_reset)::float8, \
    extract(epoch FROM pg_catalog.pg_postmaster_start_time())::float8, pg_catalog.pg_is_in_recovery(), \
    current_database()::text \
    FROM pg_catalog.pg_stat_database d WHERE d.datname = current_database()";

/// Reads one sample of the connected database.
pub async fn read(
    client: &tokio_postgres::Client,
    version: &ServerVersion,
) -> Result<Reading, (&'static str, tokio_postgres::Error)> {
    let taken = jiff::Timestamp::now();
    let markers = client
        .query_one(MARKERS_SQL, &[])
        .await
        .map_err(|e| ("pg_stat_database", e))?;
    let mut tables = Vec::new();
    crate::pg::for_each_row(client, &tables_sql(version), |r| {
        tables.push(TableStat {
            relid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            seq_scan: r.get(3),
            seq_tup_read: r.get(4),
            idx_scan: r.get(5),
            idx_tup_fetch: r.get(6),
            n_live_tup: r.get(7),
            n_dead_tup: r.get(8),
            autovacuum_count: r.get(9),
            size_bytes: r.get(10),
            reltuples: r.get(11),
            last_seq_scan: r.get(12),
        })
    })
    .await
    .map_err(|e| ("pg_stat_user_tables", e))?;
    let mut stats = Vec::new();
    let mut defs = Vec::new();
    crate::pg::for_each_row(client, &indexes_sql(version), |r| {
        stats.push(IndexStat {
            indexrelid: r.get(0),
            relid: r.get(1),
            schema: r.get(2),
            table: r.get(3),
            name: r.get(4),
            idx_scan: r.get(5),
            size_bytes: r.get(6),
            enforces: r.get(7),
            last_idx_scan: r.get(8),
        });
        defs.push(IndexDef {
            indexrelid: r.get(0),
            relid: r.get(1),
            method: r.get(9),
            keys: r.get(10),
            include: r.get(11),
            opclasses: r.get(12),
            collations: r.get(13),
            exprs: r.get(14),
            predicate: r.get(15),
            valid: r.get(16),
            definition: r.get(17),
        });
    })
    .await
    .map_err(|e| ("pg_stat_user_indexes", e))?;
    tables.shrink_to_fit();
    stats.shrink_to_fit();
    defs.shrink_to_fit();
    Ok(Reading {
        sample: Sample {
            taken,
            dbname: markers.get(3),
            stats_reset: markers.get(0),
            postmaster_start: markers.get(1),
            in_recovery: markers.get(2),
            tables,
            indexes: stats,
        },
        defs,
    })
}
