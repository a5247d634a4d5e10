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

const PRIMARY_SQL: &str = "\
SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local'), \
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, \
       extract(epoch FROM write_lag)::float8, \
       extract(epoch FROM flush_lag)::float8, \
       extract(epoch FROM replay_lag)::float8 \
FROM pg_stat_replication ORDER BY 1, 2";

const STANDBY_SQL: &str = "\
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
            ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp())) \
       END::float8, \
       greatest(0, pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()))::float8";

pub struct Replication;

impl Collector for Replication {
    fn name(&self) -> &'static str {
        "replication"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let is_replica = Family::gauge(
                "pg_replication_is_replica",
                "1 when the server is a standby (in recovery), 0 on a primary.",
            )
            .with(&[], if ctx.in_recovery { 1.0 } else { 0.0 });
            if ctx.in_recovery {
                let row = ctx
                    .client
                    .query_one(STANDBY_SQL, &[])
                    .await
                    .map_err(|e| CollectError::query("standby replay position", &e))?;
                let mut lag = Family::gauge(
                    "pg_replication_lag_seconds",
                    "Seconds since the last transaction replayed on this standby committed on the primary, 0 when all received WAL is replayed.",
                )
                .with_baseline();
                if let Some(v) = row.get::<_, Option<f64>>(0) {
                    lag.push(&[], v);
                }
                let mut bytes = Family::gauge(
                    "dbagent_replication_replay_lag_bytes",
                    "Bytes of WAL this standby received but has not replayed yet.",
                )
                .with_baseline();
                if let Some(v) = row.get::<_, Option<f64>>(1) {
                    bytes.push(&[], v);
                }
                return Ok(Output::families(vec![is_replica, lag, bytes]));
            }

            let rows = ctx
                .client
                .query(PRIMARY_SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_replication", &e))?;
            let mut bytes = Family::gauge(
                "pg_stat_replication_replay_lag_bytes",
                "Bytes of WAL between the primary's current position and what the standby has replayed.",
            )
            .with_baseline();
            let mut write = Family::gauge(
                "pg_stat_replication_write_lag_seconds",
                "Seconds between flushing WAL locally and the standby reporting it written (pg_stat_replication.write_lag).",
            );
            let mut flush = Family::gauge(
                "pg_stat_replication_flush_lag_seconds",
                "Seconds between flushing WAL locally and the standby reporting it flushed (pg_stat_replication.flush_lag).",
            );
            let mut replay = Family::gauge(
                "pg_stat_replication_replay_lag_seconds",
                "Seconds between flushing WAL locally and the standby reporting it replayed (pg_stat_replication.replay_lag).",
            )
            .with_baseline();
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
            let standbys = Family::gauge(
                "dbagent_replication_standbys",
                "Standbys (WAL senders) connected to this primary.",
            )
            .with(&[], rows.len() as f64);
            Ok(Output::families(vec![
                is_replica, standbys, bytes, write, flush, replay,
            ]))
        })
    }
}
