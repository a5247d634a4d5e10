//! Vacuum health: dead and live tuples and the time since the last vacuum and analyze of the
//! tables of every watched database (`pg_stat_user_tables`, see `monitor.databases`), and how far every database is
//! from transaction ID and multixact ID wraparound (`age(datfrozenxid)`,
//! `mxid_age(datminmxid)`). Dead tuples piling up mean autovacuum is not keeping up (or is
//! blocked); a wraparound age approaching 2^31 ends with the server refusing writes.
//!
//! Per-table series are bounded across the cluster: the `monitor.top_tables` tables with the
//! most dead tuples, whatever their database, keep their own series; the rest are summed into
//! one series whose `datname`, `schemaname` and `relname` are `(other)`.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, FoldFuture, Output, PerDatabase};
use crate::config::MonitorConfig;
use crate::metrics::catalogue;
use crate::metrics::{OTHER, TopFold};

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
    datname: std::sync::Arc<str>,
    schema: String,
    name: String,
    dead: f64,
    live: f64,
    vacuum_age: Option<f64>,
    analyze_age: Option<f64>,
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
            let rows = ctx
                .client
                .query(TABLES_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_user_tables", &e))?;
            let wraparound = if ctx.cluster_wide {
                Some(wraparound(ctx).await?)
            } else {
                None
            };
            let datname: std::sync::Arc<str> = ctx.dbname.into();
            self.tables.set_n(ctx.config.top_tables);
            for r in &rows {
                self.tables.push(Table {
                    datname: datname.clone(),
                    schema: r.get(0),
                    name: r.get(1),
                    dead: r.get::<_, Option<f64>>(2).unwrap_or(0.0),
                    live: r.get::<_, Option<f64>>(3).unwrap_or(0.0),
                    vacuum_age: r.get(4),
                    analyze_age: r.get(5),
                });
            }
            if let Some(w) = wraparound {
                self.wraparound = w;
            }
            Ok(())
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
        let mut families = vec![dead, live, vacuum_age, analyze_age];
        families.append(&mut self.wraparound);
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
