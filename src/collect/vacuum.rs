//! Vacuum health: dead and live tuples and the time since the last vacuum and analyze of the
//! tables of the connected database (`pg_stat_user_tables`), and how far every database is
//! from transaction ID and multixact ID wraparound (`age(datfrozenxid)`,
//! `mxid_age(datminmxid)`). Dead tuples piling up mean autovacuum is not keeping up (or is
//! blocked); a wraparound age approaching 2^31 ends with the server refusing writes.
//!
//! Per-table series are bounded: the `monitor.top_tables` tables with the most dead tuples
//! keep their own series, the rest are summed into one `relname="(other)"` series.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;
use crate::metrics::{OTHER, top_n};

/// Transaction and multixact IDs wrap around at 2^31 (half the 32-bit space).
const WRAPAROUND_LIMIT: f64 = 2_147_483_648.0;

/// Every user table's tuple counts and the seconds since its last vacuum and analyze, manual
/// or automatic, whichever is later (`greatest` ignores NULLs; NULL when never done).
const TABLES_SQL: &str = "\
SELECT schemaname::text, relname::text, n_dead_tup::float8, n_live_tup::float8, \
       extract(epoch FROM now() - greatest(last_vacuum, last_autovacuum))::float8, \
       extract(epoch FROM now() - greatest(last_analyze, last_autoanalyze))::float8 \
FROM pg_stat_user_tables";

/// Wraparound ages of every database (template0 too: it counts towards the limit).
const WRAPAROUND_SQL: &str = "\
SELECT datname::text, age(datfrozenxid)::float8, mxid_age(datminmxid)::float8 \
FROM pg_database ORDER BY datname";

struct Table {
    schema: String,
    name: String,
    dead: f64,
    live: f64,
    vacuum_age: Option<f64>,
    analyze_age: Option<f64>,
}

pub struct Vacuum;

impl Collector for Vacuum {
    fn name(&self) -> &'static str {
        "vacuum"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let rows = ctx
                .client
                .query(TABLES_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_user_tables", &e))?;
            let tables: Vec<Table> = rows
                .iter()
                .map(|r| Table {
                    schema: r.get(0),
                    name: r.get(1),
                    dead: r.get::<_, Option<f64>>(2).unwrap_or(0.0),
                    live: r.get::<_, Option<f64>>(3).unwrap_or(0.0),
                    vacuum_age: r.get(4),
                    analyze_age: r.get(5),
                })
                .collect();
            let (top, rest) = top_n(tables, ctx.config.top_tables, |t| t.dead);

            let mut dead = Family::of(&catalogue::PG_STAT_USER_TABLES_N_DEAD_TUP);
            let mut live = Family::of(&catalogue::PG_STAT_USER_TABLES_N_LIVE_TUP);
            let mut vacuum_age = Family::of(&catalogue::DBAGENT_TABLE_LAST_VACUUM_AGE_SECONDS);
            let mut analyze_age = Family::of(&catalogue::DBAGENT_TABLE_LAST_ANALYZE_AGE_SECONDS);
            for t in &top {
                let labels = [
                    ("datname", ctx.dbname),
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
            if !rest.is_empty() {
                let labels = [
                    ("datname", ctx.dbname),
                    ("schemaname", OTHER),
                    ("relname", OTHER),
                ];
                dead.push(&labels, rest.iter().map(|t| t.dead).sum());
                live.push(&labels, rest.iter().map(|t| t.live).sum());
            }

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
            Ok(Output::families(vec![
                dead,
                live,
                vacuum_age,
                analyze_age,
                xid_age,
                xid_ratio,
                mxid_age,
                mxid_ratio,
            ]))
        })
    }
}
