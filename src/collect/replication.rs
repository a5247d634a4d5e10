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
                return Ok(Output::families(vec![is_replica, lag, bytes]));
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
                is_replica, standbys, bytes, write, flush, replay,
            ]))
        })
    }
}
