//! Vacuums running right now, as postgres_exporter exports them (`pg_stat_progress_vacuum_*`):
//! the phase each is in (one series per phase, 1 for the current one), the heap blocks it has
//! to go through, has scanned and vacuumed, its index cycles and dead tuples. Read from the
//! progress counters behind `pg_stat_progress_vacuum` (raw, so that the same columns mean the
//! same thing on every version the exporter supports). Nothing while no vacuum runs.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue::{self, Desc};

/// The phases in the order of the counter's values (PostgreSQL's vacuum progress phases).
const PHASES: &[&str] = &[
    "initializing",
    "scanning heap",
    "vacuuming indexes",
    "vacuuming heap",
    "cleaning up indexes",
    "truncating heap",
    "performing final cleanup",
];

/// datname, relname, phase, then the six counters of [`COUNTERS`].
const SQL: &str = "\
SELECT coalesce(d.datname::text, ''), \
       coalesce(CASE WHEN d.datname = current_database() THEN p.relid::regclass::text END, \
                p.relid::text), \
       p.param1::float8, p.param2::float8, p.param3::float8, p.param4::float8, \
       p.param5::float8, p.param6::float8, p.param7::float8 \
FROM pg_stat_get_progress_info('VACUUM') p LEFT JOIN pg_database d ON d.oid = p.datid \
ORDER BY 1, 2";

const COUNTERS: &[&Desc] = &[
    &catalogue::PG_STAT_PROGRESS_VACUUM_HEAP_BLKS,
    &catalogue::PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_SCANNED,
    &catalogue::PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_VACUUMED,
    &catalogue::PG_STAT_PROGRESS_VACUUM_INDEX_VACUUMS,
    &catalogue::PG_STAT_PROGRESS_VACUUM_MAX_DEAD_TUPLES,
    &catalogue::PG_STAT_PROGRESS_VACUUM_NUM_DEAD_TUPLES,
];

pub struct VacuumProgress;

impl Collector for VacuumProgress {
    fn name(&self) -> &'static str {
        "vacuum_progress"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let rows = ctx
                .client
                .query(SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_progress_vacuum", &e))?;
            let mut phase = Family::of(&catalogue::PG_STAT_PROGRESS_VACUUM_PHASE);
            let mut counters: Vec<Family> = COUNTERS.iter().map(|d| Family::of(d)).collect();
            for r in &rows {
                let (datname, relname): (String, String) = (r.get(0), r.get(1));
                let current: Option<f64> = r.get(2);
                for (i, name) in PHASES.iter().enumerate() {
                    let on = current == Some(i as f64);
                    phase.push(
                        &[
                            ("datname", &datname),
                            ("relname", &relname),
                            ("phase", name),
                        ],
                        if on { 1.0 } else { 0.0 },
                    );
                }
                for (i, f) in counters.iter_mut().enumerate() {
                    if let Some(v) = r.get::<_, Option<f64>>(3 + i) {
                        f.push(&[("datname", &datname), ("relname", &relname)], v);
                    }
                }
            }
            let mut families = vec![phase];
            families.extend(counters);
            Ok(Output::families(families))
        })
    }
}
