//! Heavyweight lock contention: how many sessions wait for a lock, how many distinct sessions
//! block them, how long the longest current wait has lasted, and the locks held and awaited by
//! mode (`pg_locks`). A blocked session queue behind one long transaction or an
//! `ALTER TABLE` is a classic way for an application to stall while the server looks idle.
//!
//! `pg_blocking_pids()` is only called for sessions already waiting on a lock: it takes the
//! lock manager's partition locks, which is not free on a busy server. The wait start
//! (`pg_locks.waitstart`) exists from 14; before that the waiting statement's start stands in.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;
use crate::pg::ServerVersion;

/// The table-level lock modes, weakest first, plus predicate locks: a fixed, bounded set.
pub const MODES: &[&str] = &[
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
    "SIReadLock",
];

/// One row: waiting sessions, distinct blocking sessions, longest wait in seconds (0 if none).
fn waits_sql(v: &ServerVersion) -> &'static str {
    if v.major() >= 14 {
        "SELECT \
           (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock')::float8, \
           (SELECT count(DISTINCT b) FROM pg_stat_activity a, \
                   unnest(pg_blocking_pids(a.pid)) AS b \
             WHERE a.wait_event_type = 'Lock')::float8, \
           coalesce((SELECT greatest(0, extract(epoch FROM clock_timestamp() - min(waitstart))) \
                     FROM pg_locks WHERE NOT granted), 0)::float8"
    } else {
        "SELECT \
           (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock')::float8, \
           (SELECT count(DISTINCT b) FROM pg_stat_activity a, \
                   unnest(pg_blocking_pids(a.pid)) AS b \
             WHERE a.wait_event_type = 'Lock')::float8, \
           coalesce((SELECT greatest(0, extract(epoch FROM clock_timestamp() - min(query_start))) \
                     FROM pg_stat_activity WHERE wait_event_type = 'Lock'), 0)::float8"
    }
}

/// Locks by mode and whether granted.
const MODES_SQL: &str = "SELECT mode, granted, count(*)::float8 FROM pg_locks GROUP BY 1, 2";

/// Locks by database and lower-case mode, every (database, mode) pair present (0 when none):
/// postgres_exporter's `pg_locks_count`.
fn exporter_sql() -> String {
    let modes: Vec<String> = MODES
        .iter()
        .map(|m| format!("'{}'", m.to_lowercase()))
        .collect();
    format!(
        "SELECT d.datname::text, m.mode, coalesce(l.n, 0)::float8 \
         FROM pg_database d CROSS JOIN unnest(ARRAY[{}]) AS m(mode) \
         LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS n FROM pg_locks \
                    WHERE database IS NOT NULL GROUP BY 1, 2) l \
                ON l.database = d.oid AND l.mode = m.mode \
         ORDER BY 1, 2",
        modes.join(", ")
    )
}

pub struct Locks;

impl Collector for Locks {
    fn name(&self) -> &'static str {
        "locks"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let row = ctx
                .client
                .query_one(waits_sql(ctx.version), &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_activity (lock waits)", &e))?;
            let waiting: f64 = row.get(0);
            let blocking: f64 = row.get(1);
            let longest: f64 = row.get(2);
            let rows = ctx
                .client
                .query(MODES_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_locks", &e))?;
            let mut held = vec![0.0; MODES.len()];
            let mut awaited = vec![0.0; MODES.len()];
            for r in &rows {
                let mode: Option<String> = r.get(0);
                let granted: Option<bool> = r.get(1);
                let count: f64 = r.get(2);
                let Some(i) = mode.and_then(|m| MODES.iter().position(|x| *x == m)) else {
                    continue;
                };
                if granted.unwrap_or(false) {
                    held[i] += count;
                } else {
                    awaited[i] += count;
                }
            }
            let mut held_family = Family::of(&catalogue::DBAGENT_LOCKS_HELD);
            let mut awaited_family = Family::of(&catalogue::DBAGENT_LOCKS_AWAITED);
            for (i, mode) in MODES.iter().enumerate() {
                held_family.push(&[("mode", mode)], held[i]);
                awaited_family.push(&[("mode", mode)], awaited[i]);
            }
            let by_database = ctx
                .client
                .query(&exporter_sql(), &[])
                .await
                .map_err(|e| CollectError::query("pg_locks (by database)", &e))?;
            let mut count = Family::of(&catalogue::PG_LOCKS_COUNT);
            for r in &by_database {
                let datname: String = r.get(0);
                let mode: String = r.get(1);
                count.push(&[("datname", &datname), ("mode", &mode)], r.get(2));
            }
            Ok(Output::families(vec![
                count,
                Family::of(&catalogue::DBAGENT_LOCKS_BLOCKED_SESSIONS)
                    .with_baseline()
                    .with(&[], waiting),
                Family::of(&catalogue::DBAGENT_LOCKS_BLOCKING_SESSIONS).with(&[], blocking),
                Family::of(&catalogue::DBAGENT_LOCKS_LONGEST_WAIT_SECONDS)
                    .with_baseline()
                    .with(&[], longest),
                held_family,
                awaited_family,
            ]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_wait_start_comes_from_pg_locks_from_14() {
        assert!(waits_sql(&ServerVersion::from_num(130000, "13.0")).contains("min(query_start)"));
        assert!(waits_sql(&ServerVersion::from_num(140000, "14.0")).contains("min(waitstart)"));
    }
}
