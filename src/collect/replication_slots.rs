//! Replication slots from `pg_replication_slots`, under postgres_exporter's names and labels:
//! whether each slot is in use, how much WAL it retains (from its restart_lsn to the current
//! position; on a standby, to the last received position), how much WAL may still be written
//! before it is lost (`safe_wal_size`, with max_slot_wal_keep_size) and its `wal_status`. An
//! inactive slot that retains WAL fills the disk; a `lost` one breaks its consumer.
//!
//! One series set per slot: the server bounds them (max_replication_slots).

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;

/// slot_name, database ('' for physical slots), slot_type, active, retained WAL bytes,
/// current WAL position, confirmed flush position (0 when none), safe_wal_size, wal_status.
/// `{pos}` is the server's WAL position: current on a primary, last received on a standby.
fn sql(in_recovery: bool) -> String {
    let pos = if in_recovery {
        "pg_last_wal_receive_lsn()"
    } else {
        "pg_current_wal_lsn()"
    };
    format!(
        "SELECT slot_name::text, coalesce(database::text, ''), slot_type::text, active, \
         pg_wal_lsn_diff({pos}, restart_lsn)::float8, \
         pg_wal_lsn_diff({pos}, '0/0')::float8, \
         pg_wal_lsn_diff(coalesce(confirmed_flush_lsn, '0/0'), '0/0')::float8, \
         safe_wal_size::float8, wal_status::text \
         FROM pg_replication_slots ORDER BY slot_name"
    )
}

pub struct ReplicationSlots;

impl Collector for ReplicationSlots {
    fn name(&self) -> &'static str {
        "replication_slots"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let rows = ctx
                .client
                .query(&sql(ctx.in_recovery), &[])
                .await
                .map_err(|e| CollectError::query("pg_replication_slots", &e))?;
            let mut active = Family::of(&catalogue::PG_REPLICATION_SLOTS_ACTIVE);
            let mut retained = Family::of(&catalogue::PG_REPLICATION_SLOTS_PG_WAL_LSN_DIFF);
            let mut current = Family::of(&catalogue::PG_REPLICATION_SLOTS_SLOT_CURRENT_WAL_LSN);
            let mut flushed = Family::of(&catalogue::PG_REPLICATION_SLOTS_SLOT_CONFIRMED_FLUSH_LSN);
            let mut is_active = Family::of(&catalogue::PG_REPLICATION_SLOTS_SLOT_IS_ACTIVE);
            let mut safe = Family::of(&catalogue::PG_REPLICATION_SLOTS_SAFE_WAL_SIZE_BYTES);
            let mut status = Family::of(&catalogue::PG_REPLICATION_SLOTS_WAL_STATUS);
            for r in &rows {
                let name: String = r.get(0);
                let database: String = r.get(1);
                let slot_type: String = r.get(2);
                let in_use: bool = r.get(3);
                let by_database = [
                    ("slot_name", name.as_str()),
                    ("database", database.as_str()),
                ];
                let by_type = [
                    ("slot_name", name.as_str()),
                    ("slot_type", slot_type.as_str()),
                ];
                let flag = if in_use { 1.0 } else { 0.0 };
                active.push(&by_database, flag);
                is_active.push(&by_type, flag);
                if let Some(v) = r.get::<_, Option<f64>>(4) {
                    retained.push(&by_database, v);
                }
                if let Some(v) = r.get::<_, Option<f64>>(5) {
                    current.push(&by_type, v);
                }
                if in_use && let Some(v) = r.get::<_, Option<f64>>(6) {
                    flushed.push(&by_type, v);
                }
                if let Some(v) = r.get::<_, Option<f64>>(7) {
                    safe.push(&by_type, v);
                }
                if let Some(s) = r.get::<_, Option<String>>(8) {
                    status.push(
                        &[
                            ("slot_name", name.as_str()),
                            ("slot_type", slot_type.as_str()),
                            ("wal_status", s.as_str()),
                        ],
                        1.0,
                    );
                }
            }
            Ok(Output::families(vec![
                active, retained, current, flushed, is_active, safe, status,
            ]))
        })
    }
}
