//! WAL generation from `pg_stat_wal` (PostgreSQL 14 and later): records, full page images and
//! bytes written to WAL, and how often the WAL buffers were full. Before 18 the view also
//! counts WAL writes and syncs and their times; 18 moved those to `pg_stat_io` (object
//! `wal`), so on 18 they come from the `stat_io` collector instead. postgres_exporter has no
//! collector for this view, so the names are dbagent's, in base units.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue::{self, Desc};
use crate::pg::ServerVersion;

/// The columns of [`sql`], in order, and their families.
const FAMILIES: &[&Desc] = &[
    &catalogue::PG_STAT_WAL_RECORDS_TOTAL,
    &catalogue::PG_STAT_WAL_FPI_TOTAL,
    &catalogue::PG_STAT_WAL_BYTES_TOTAL,
    &catalogue::PG_STAT_WAL_BUFFERS_FULL_TOTAL,
    &catalogue::PG_STAT_WAL_WRITES_TOTAL,
    &catalogue::PG_STAT_WAL_SYNCS_TOTAL,
    &catalogue::PG_STAT_WAL_WRITE_TIME_SECONDS_TOTAL,
    &catalogue::PG_STAT_WAL_SYNC_TIME_SECONDS_TOTAL,
];

/// One row, one float8 per [`FAMILIES`] entry, NULL where this version does not have it.
/// None before 14.
fn sql(v: &ServerVersion) -> Option<&'static str> {
    match v.major() {
        18.. => Some(
            "SELECT wal_records::float8, wal_fpi::float8, wal_bytes::float8, \
             wal_buffers_full::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8 \
             FROM pg_stat_wal",
        ),
        14..=17 => Some(
            "SELECT wal_records::float8, wal_fpi::float8, wal_bytes::float8, \
             wal_buffers_full::float8, wal_write::float8, wal_sync::float8, \
             (wal_write_time / 1000)::float8, (wal_sync_time / 1000)::float8 \
             FROM pg_stat_wal",
        ),
        _ => None,
    }
}

pub struct StatWal;

impl Collector for StatWal {
    fn name(&self) -> &'static str {
        "stat_wal"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let Some(sql) = sql(ctx.version) else {
                return Ok(Output::default());
            };
            let row = ctx
                .client
                .query_one(sql, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_wal", &e))?;
            let mut families = Vec::with_capacity(FAMILIES.len());
            for (i, desc) in FAMILIES.iter().enumerate() {
                if let Some(v) = row.get::<_, Option<f64>>(i) {
                    families.push(Family::of(desc).with(&[], v));
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
    fn pg_stat_wal_is_read_from_14_on_and_its_io_columns_until_17() {
        let at = |num: u32| sql(&ServerVersion::from_num(num, "x"));
        assert!(at(130000).is_none());
        assert!(at(140000).unwrap().contains("wal_sync_time"));
        assert!(
            at(170000).unwrap().contains("wal_write,")
                || at(170000).unwrap().contains("wal_write::")
        );
        assert!(!at(180000).unwrap().contains("wal_write"));
        for num in [140000, 180000] {
            let select = at(num).unwrap().split(" FROM ").next().unwrap().to_string();
            assert_eq!(select.matches(',').count() + 1, FAMILIES.len(), "{num}");
        }
    }
}
