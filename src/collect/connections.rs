//! Client sessions from `pg_stat_activity`: how many there are by state and database, how
//! close they are to the connection limit, and the sessions that hold transactions open (idle
//! in transaction, long transactions) or wait on locks. Running out of connections and
//! forgotten transactions are among the most common causes of an outage; these gauges show both
//! coming.
//!
//! The limit a normal role can use is `max_connections` minus the slots reserved for
//! superusers (`superuser_reserved_connections`) and, from 16, for roles with
//! `pg_use_reserved_connections` (`reserved_connections`). Settings are read from
//! `pg_settings`, which every role may read (unlike some `SHOW`s).

use std::collections::BTreeMap;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;
use crate::pg::ServerVersion;

pub struct Connections;

/// The connection settings, one row: max_connections, the reserved slots.
fn settings_sql(v: &ServerVersion) -> &'static str {
    if v.major() >= 16 {
        "SELECT \
         (SELECT setting::float8 FROM pg_settings WHERE name = 'max_connections'), \
         (SELECT setting::float8 FROM pg_settings WHERE name = 'superuser_reserved_connections'), \
         (SELECT setting::float8 FROM pg_settings WHERE name = 'reserved_connections')"
    } else {
        "SELECT \
         (SELECT setting::float8 FROM pg_settings WHERE name = 'max_connections'), \
         (SELECT setting::float8 FROM pg_settings WHERE name = 'superuser_reserved_connections'), \
         0::float8"
    }
}

/// Client backends grouped by database and state, with the lock waiters, the oldest
/// idle-in-transaction session and the oldest transaction of each group. Sessions of other
/// roles show a NULL state to a role without pg_read_all_stats: counted as `unknown`.
const ACTIVITY_SQL: &str = "\
SELECT coalesce(datname, ''), coalesce(state, 'unknown'), count(*)::float8, \
       (count(*) FILTER (WHERE wait_event_type = 'Lock'))::float8, \
       (count(*) FILTER (WHERE state IN ('idle in transaction', \
                                         'idle in transaction (aborted)')))::float8, \
       greatest(0, max(extract(epoch FROM clock_timestamp() - state_change)) \
           FILTER (WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')))::float8, \
       greatest(0, max(extract(epoch FROM clock_timestamp() - xact_start)))::float8 \
FROM pg_stat_activity \
WHERE backend_type = 'client backend' \
GROUP BY 1, 2 \
ORDER BY 1, 2";

/// postgres_exporter's grouping of pg_stat_activity: every backend but our own, by database,
/// state, role, application, backend type and wait event, with each (database, state) pair
/// present (0) even without a backend; the oldest transaction of each group.
const EXPORTER_ACTIVITY_SQL: &str = "\
SELECT d.datname::text, s.state, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), \
       coalesce(a.backend_type, ''), coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''), \
       coalesce(a.n, 0)::float8, coalesce(a.max_tx, 0)::float8 \
FROM pg_database d \
CROSS JOIN unnest(ARRAY['active', 'idle', 'idle in transaction', \
                        'idle in transaction (aborted)', 'fastpath function call', \
                        'disabled']) AS s(state) \
LEFT JOIN (SELECT datname, state, usename, application_name, backend_type, wait_event_type, \
                  wait_event, count(*) AS n, \
                  max(extract(epoch FROM now() - xact_start))::float8 AS max_tx \
           FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
           GROUP BY 1, 2, 3, 4, 5, 6, 7) a ON a.datname = d.datname AND a.state = s.state \
ORDER BY 1, 2, 3, 4, 5, 6, 7";

/// pg_stat_activity_count and pg_stat_activity_max_tx_duration (postgres_exporter's families).
async fn exporter_activity(ctx: &Ctx<'_>) -> Result<[Family; 2], CollectError> {
    let rows = ctx
        .client
        .query(EXPORTER_ACTIVITY_SQL, &[])
        .await
        .map_err(|e| CollectError::query("pg_stat_activity (by database and state)", &e))?;
    let mut count = Family::of(&catalogue::PG_STAT_ACTIVITY_COUNT);
    let mut max_tx = Family::of(&catalogue::PG_STAT_ACTIVITY_MAX_TX_DURATION);
    for r in &rows {
        let labels: [String; 7] = std::array::from_fn(|i| r.get(i));
        let pairs: Vec<(&'static str, &str)> = catalogue::PG_STAT_ACTIVITY_COUNT
            .labels
            .iter()
            .zip(&labels)
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        count.push(&pairs, r.get(7));
        max_tx.push(&pairs, r.get(8));
    }
    Ok([count, max_tx])
}

impl Collector for Connections {
    fn name(&self) -> &'static str {
        "connections"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let settings = ctx
                .client
                .query_one(settings_sql(ctx.version), &[])
                .await
                .map_err(|e| CollectError::query("pg_settings (connection limits)", &e))?;
            let max_connections: Option<f64> = settings.get(0);
            let su_reserved: Option<f64> = settings.get(1);
            let reserved: Option<f64> = settings.get(2);
            let rows = ctx
                .client
                .query(ACTIVITY_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_activity", &e))?;

            let mut by_state = Family::of(&catalogue::PG_STAT_ACTIVITY_SESSIONS);
            let mut total = 0.0;
            let mut lock_waiting = 0.0;
            let mut idle_in_xact = 0.0;
            let mut idle_in_xact_age: f64 = 0.0;
            let mut oldest_xact_age: f64 = 0.0;
            // Sorted by the query; BTreeMap keeps the label order stable anyway.
            let mut groups: BTreeMap<(String, String), f64> = BTreeMap::new();
            for row in &rows {
                let datname: String = row.get(0);
                let state: String = row.get(1);
                let count: f64 = row.get(2);
                total += count;
                lock_waiting += row.get::<_, f64>(3);
                idle_in_xact += row.get::<_, f64>(4);
                if let Some(age) = row.get::<_, Option<f64>>(5) {
                    idle_in_xact_age = idle_in_xact_age.max(age);
                }
                if let Some(age) = row.get::<_, Option<f64>>(6) {
                    oldest_xact_age = oldest_xact_age.max(age);
                }
                *groups.entry((datname, state)).or_default() += count;
            }
            for ((datname, state), count) in &groups {
                by_state.push(&[("datname", datname), ("state", state)], *count);
            }

            let mut families = vec![
                by_state,
                Family::of(&catalogue::DBAGENT_CONNECTIONS_SESSIONS)
                    .with_baseline()
                    .with(&[], total),
                Family::of(&catalogue::DBAGENT_CONNECTIONS_LOCK_WAITING_SESSIONS)
                    .with(&[], lock_waiting),
                Family::of(&catalogue::DBAGENT_CONNECTIONS_IDLE_IN_TRANSACTION_SESSIONS)
                    .with(&[], idle_in_xact),
                Family::of(&catalogue::DBAGENT_CONNECTIONS_IDLE_IN_TRANSACTION_MAX_AGE_SECONDS)
                    .with_baseline()
                    .with(&[], idle_in_xact_age),
                Family::of(&catalogue::DBAGENT_CONNECTIONS_OLDEST_TRANSACTION_AGE_SECONDS)
                    .with_baseline()
                    .with(&[], oldest_xact_age),
            ];
            families.extend(exporter_activity(ctx).await?);
            if let Some(max) = max_connections {
                families.push(Family::of(&catalogue::PG_SETTINGS_MAX_CONNECTIONS).with(&[], max));
                let usable = max - su_reserved.unwrap_or(0.0) - reserved.unwrap_or(0.0);
                families.push(
                    Family::of(&catalogue::DBAGENT_CONNECTIONS_USABLE_LIMIT).with(&[], usable),
                );
                if usable > 0.0 {
                    families.push(
                        Family::of(&catalogue::DBAGENT_CONNECTIONS_EXHAUSTION_RATIO)
                            .with_baseline()
                            .with(&[], total / usable),
                    );
                }
            }
            Ok(Output::families(families))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_connections_only_from_16() {
        assert!(
            !settings_sql(&ServerVersion::from_num(150000, "15.0"))
                .contains("'reserved_connections'")
        );
        assert!(
            settings_sql(&ServerVersion::from_num(160000, "16.0"))
                .contains("'reserved_connections'")
        );
    }
}
