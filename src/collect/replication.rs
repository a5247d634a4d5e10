//! Streaming replication lag. On a primary, per standby from `pg_stat_replication`: how many
//! bytes of WAL it has not replayed yet and the write/flush/replay lag times the server
//! measures. On a standby: how long ago the last replayed transaction committed on the
//! primary (0 when everything received is replayed, so an idle primary does not look like a
//! lagging standby) and how many received bytes wait to be replayed. Both report whether the
//! server is a standby.
//!
//! Standbys are labelled by `application_name` (the standby's `cluster_name` or its
//! `primary_conninfo` application_name) and `client_addr`: a handful of series per primary.
//! A role without pg_read_all_stats sees NULL positions: those samples are left out.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;

const PRIMARY_SQL: &str = "\
SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local'), \
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, \
       extract(epoch FROM write_lag)::float8, \
       extract(epoch FROM flush_lag)::float8, \
       extract(epoch FROM replay_lag)::float8, \
       coalesce(client_addr::text, ''), coalesce(state, ''), coalesce(s.slot_name::text, ''), \
       r.pid::text, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 \
FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid \
ORDER BY 1, 2";

const STANDBY_SQL: &str = "\
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
            ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp())) \
       END::float8, \
       greatest(0, pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()))::float8, \
       greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8";

pub struct Replication;

impl Collector for Replication {
    fn name(&self) -> &'static str {
        "replication"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let is_replica = Family::of(&catalogue::PG_REPLICATION_IS_REPLICA)
                .with(&[], if ctx.in_recovery { 1.0 } else { 0.0 });
            if ctx.in_recovery {
                let row = ctx
                    .client
                    .query_one(STANDBY_SQL, &[])
                    .await
                    .map_err(|e| CollectError::query("standby replay position", &e))?;
                let mut lag = Family::of(&catalogue::PG_REPLICATION_LAG_SECONDS).with_baseline();
                if let Some(v) = row.get::<_, Option<f64>>(0) {
                    lag.push(&[], v);
                }
                let mut bytes =
                    Family::of(&catalogue::DBAGENT_REPLICATION_REPLAY_LAG_BYTES).with_baseline();
                if let Some(v) = row.get::<_, Option<f64>>(1) {
                    bytes.push(&[], v);
                }
                let mut last_replay = Family::of(&catalogue::PG_REPLICATION_LAST_REPLAY_SECONDS);
                if let Some(v) = row.get::<_, Option<f64>>(2) {
                    last_replay.push(&[], v);
                }
                return Ok(Output::families(vec![is_replica, lag, bytes, last_replay]));
            }

            let rows = ctx
                .client
                .query(PRIMARY_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_replication", &e))?;
            let mut bytes =
                Family::of(&catalogue::PG_STAT_REPLICATION_REPLAY_LAG_BYTES).with_baseline();
            let mut write = Family::of(&catalogue::PG_STAT_REPLICATION_WRITE_LAG_SECONDS);
            let mut flush = Family::of(&catalogue::PG_STAT_REPLICATION_FLUSH_LAG_SECONDS);
            let mut replay =
                Family::of(&catalogue::PG_STAT_REPLICATION_REPLAY_LAG_SECONDS).with_baseline();
            // postgres_exporter's families, with its labels (client_addr as inet text, with
            // its mask; empty over a Unix socket).
            let mut current = Family::of(&catalogue::PG_STAT_REPLICATION_PG_CURRENT_WAL_LSN_BYTES);
            let mut diff = Family::of(&catalogue::PG_STAT_REPLICATION_PG_WAL_LSN_DIFF);
            for r in &rows {
                let exporter_labels: [String; 5] = [
                    r.get(0),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get::<_, Option<String>>(9).unwrap_or_default(),
                ];
                let pairs: Vec<(&'static str, &str)> =
                    catalogue::PG_STAT_REPLICATION_PG_WAL_LSN_DIFF
                        .labels
                        .iter()
                        .zip(&exporter_labels)
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect();
                if let Some(v) = r.get::<_, Option<f64>>(10) {
                    current.push(&pairs, v);
                }
                if let Some(v) = r.get::<_, Option<f64>>(2) {
                    diff.push(&pairs, v);
                }
            }
            for r in &rows {
                let app: String = r.get(0);
                let addr: String = r.get(1);
                let labels = [
                    ("application_name", app.as_str()),
                    ("client_addr", addr.as_str()),
                ];
                if let Some(v) = r.get::<_, Option<f64>>(2) {
                    bytes.push(&labels, v.max(0.0));
                }
                // NULL lag times mean the standby caught up and the primary is idle: 0.
                if r.get::<_, Option<f64>>(2).is_some() {
                    write.push(&labels, r.get::<_, Option<f64>>(3).unwrap_or(0.0));
                    flush.push(&labels, r.get::<_, Option<f64>>(4).unwrap_or(0.0));
                    replay.push(&labels, r.get::<_, Option<f64>>(5).unwrap_or(0.0));
                }
            }
            let standbys =
                Family::of(&catalogue::DBAGENT_REPLICATION_STANDBYS).with(&[], rows.len() as f64);
            Ok(Output::families(vec![
                is_replica, standbys, bytes, write, flush, replay, current, diff,
            ]))
        })
    }
}
