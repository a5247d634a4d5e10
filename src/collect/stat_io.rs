//! I/O by backend type, object and context from `pg_stat_io` (PostgreSQL 16 and later): reads,
//! writes, extends, buffer hits and evictions, fsyncs, in operations, bytes and seconds. It
//! tells who does the I/O (client backends writing their own dirty buffers, autovacuum, the
//! checkpointer) where pg_stat_bgwriter only had totals. postgres_exporter has no collector
//! for this view, so the names are dbagent's, in base units (bytes, seconds).
//!
//! Series stay bounded: the view has a fixed set of (backend_type, object, context) rows, and
//! rows that never did any I/O are left out (most of them). 16 and 17 count operations of
//! `op_bytes` each; 18 reports bytes itself.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue::{self, Desc};
use crate::pg::ServerVersion;

/// The value columns of [`sql`], in order after the three labels, and their families.
const FAMILIES: &[&Desc] = &[
    &catalogue::PG_STAT_IO_READS_TOTAL,
    &catalogue::PG_STAT_IO_READ_BYTES_TOTAL,
    &catalogue::PG_STAT_IO_READ_TIME_SECONDS_TOTAL,
    &catalogue::PG_STAT_IO_WRITES_TOTAL,
    &catalogue::PG_STAT_IO_WRITE_BYTES_TOTAL,
    &catalogue::PG_STAT_IO_WRITE_TIME_SECONDS_TOTAL,
    &catalogue::PG_STAT_IO_EXTENDS_TOTAL,
    &catalogue::PG_STAT_IO_EXTEND_BYTES_TOTAL,
    &catalogue::PG_STAT_IO_HITS_TOTAL,
    &catalogue::PG_STAT_IO_EVICTIONS_TOTAL,
    &catalogue::PG_STAT_IO_FSYNCS_TOTAL,
    &catalogue::PG_STAT_IO_FSYNC_TIME_SECONDS_TOTAL,
];

/// One query: backend_type, object, context, then one float8 per [`FAMILIES`] entry (NULL
/// where the combination cannot do that operation). None before 16.
fn sql(v: &ServerVersion) -> Option<&'static str> {
    match v.major() {
        18.. => Some(
            "SELECT backend_type, object, context, \
             reads::float8, read_bytes::float8, (read_time / 1000)::float8, \
             writes::float8, write_bytes::float8, (write_time / 1000)::float8, \
             extends::float8, extend_bytes::float8, \
             hits::float8, evictions::float8, fsyncs::float8, (fsync_time / 1000)::float8 \
             FROM pg_stat_io \
             WHERE coalesce(reads, 0) + coalesce(writes, 0) + coalesce(extends, 0) \
                 + coalesce(hits, 0) + coalesce(evictions, 0) + coalesce(fsyncs, 0) > 0 \
             ORDER BY 1, 2, 3",
        ),
        16 | 17 => Some(
            "SELECT backend_type, object, context, \
             reads::float8, reads::float8 * op_bytes, (read_time / 1000)::float8, \
             writes::float8, writes::float8 * op_bytes, (write_time / 1000)::float8, \
             extends::float8, extends::float8 * op_bytes, \
             hits::float8, evictions::float8, fsyncs::float8, (fsync_time / 1000)::float8 \
             FROM pg_stat_io \
             WHERE coalesce(reads, 0) + coalesce(writes, 0) + coalesce(extends, 0) \
                 + coalesce(hits, 0) + coalesce(evictions, 0) + coalesce(fsyncs, 0) > 0 \
             ORDER BY 1, 2, 3",
        ),
        _ => None,
    }
}

pub struct StatIo;

impl Collector for StatIo {
    fn name(&self) -> &'static str {
        "stat_io"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let Some(sql) = sql(ctx.version) else {
                return Ok(Output::default());
            };
            let rows = ctx
                .client
                .query(sql, &[])
                .await
                .map_err(|e| CollectError::query("pg_stat_io", &e))?;
            let mut families: Vec<Family> = FAMILIES.iter().map(|d| Family::of(d)).collect();
            for r in &rows {
                let backend_type: String = r.get(0);
                let object: String = r.get(1);
                let context: String = r.get(2);
                let labels = [
                    ("backend_type", backend_type.as_str()),
                    ("object", object.as_str()),
                    ("context", context.as_str()),
                ];
                for (i, family) in families.iter_mut().enumerate() {
                    if let Some(v) = r.get::<_, Option<f64>>(3 + i) {
                        family.push(&labels, v);
                    }
                }
            }
            families.retain(|f| !f.samples.is_empty());
            Ok(Output::families(families))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_stat_io_is_read_from_16_on_with_bytes_per_version() {
        let at = |num: u32| sql(&ServerVersion::from_num(num, "x"));
        assert!(at(150000).is_none());
        assert!(at(160000).unwrap().contains("op_bytes"));
        assert!(at(170000).unwrap().contains("op_bytes"));
        assert!(!at(180000).unwrap().contains("op_bytes"));
        assert!(at(180000).unwrap().contains("read_bytes::float8"));
        for num in [160000, 180000] {
            // One value column per family, after the three labels.
            let select = at(num).unwrap().split(" FROM ").next().unwrap().to_string();
            assert_eq!(select.matches(',').count(), 2 + FAMILIES.len(), "{num}");
        }
    }
}
