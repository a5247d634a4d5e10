//! The advisor's history in `state.db` (migration 6): one row per sample (when, which
//! database, the stats-reset and postmaster-start markers), and one row per table and per
//! index of that sample with its cumulative counters. Usage over a window is computed from
//! consecutive samples (see [`super::window`]); storing cumulative counters rather than deltas
//! keeps every sample self-contained, so a missed or failed sample costs one interval of
//! coverage and never corrupts the rest.

use std::path::Path;

use rusqlite::params;

use super::sample::{IndexStat, Sample, TableStat};
use crate::state::{StateDb, StateError};

/// The generic plan of a statement captured with a sample, and its cumulative counters from
/// pg_stat_statements at that moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanCapture {
    pub taken: jiff::Timestamp,
    pub queryid: String,
    pub plan_hash: String,
    pub plan_shape: String,
    pub calls: f64,
    pub total_seconds: f64,
}

/// Stores `sample` with the plans captured with it, and drops the samples of its database older than `keep_since`.
pub fn save(
    state_dir: &Path,
    sample: &Sample,
    plans: &[PlanCapture],
    keep_since: jiff::Timestamp,
) -> Result<(), StateError> {
    let mut db = StateDb::open(state_dir)?;
    let path = db.path().to_path_buf();
    let err = |e| StateError::from_sqlite(&path, e);
    let tx = db.conn_mut().transaction().map_err(err)?;
    tx.execute(
        "INSERT INTO advisor_samples (dbname, taken_ms, stats_reset, postmaster_start, in_recovery) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            sample.dbname,
            sample.taken.as_millisecond(),
            sample.stats_reset,
            sample.postmaster_start,
            sample.in_recovery
        ],
    )
    .map_err(err)?;
    let id = tx.last_insert_rowid();
    {
        let mut t = tx
            .prepare(
                "INSERT INTO advisor_tables (sample_id, relid, schemaname, relname, seq_scan, \
                 seq_tup_read, idx_scan, idx_tup_fetch, n_live_tup, n_dead_tup, autovacuum_count, \
                 size_bytes, reltuples, last_seq_scan) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(err)?;
        for s in &sample.tables {
            t.execute(params![
                id,
                s.relid,
                s.schema,
                s.name,
                s.seq_scan,
                s.seq_tup_read,
                s.idx_scan,
                s.idx_tup_fetch,
                s.n_live_tup,
                s.n_dead_tup,
                s.autovacuum_count,
                s.size_bytes,
                s.reltuples,
                s.last_seq_scan
            ])
            .map_err(err)?;
        }
        let mut i = tx
            .prepare(
                "INSERT INTO advisor_indexes (sample_id, indexrelid, relid, schemaname, relname, \
                 indexrelname, idx_scan, size_bytes, enforces, last_idx_scan) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(err)?;
        for s in &sample.indexes {
            i.execute(params![
                id,
                s.indexrelid,
                s.relid,
                s.schema,
                s.table,
                s.name,
                s.idx_scan,
                s.size_bytes,
                s.enforces,
                s.last_idx_scan
            ])
            .map_err(err)?;
        }
        let mut p = tx
            .prepare(
                "INSERT OR REPLACE INTO advisor_plans (sample_id, queryid, plan_hash, plan_shape, \
                 calls, total_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(err)?;
        for c in plans {
            p.execute(params![
                id,
                c.queryid,
                c.plan_hash,
                c.plan_shape,
                c.calls,
                c.total_seconds
            ])
            .map_err(err)?;
        }
    }
    tx.execute(
        "DELETE FROM advisor_samples WHERE dbname = ?1 AND taken_ms < ?2",
        params![sample.dbname, keep_since.as_millisecond()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// At most this many samples (plus those around resets) are loaded for one window.
const MAX_SAMPLES: usize = 300;

type Head = (i64, i64, Option<f64>, f64, bool);

/// Keeps at most about `max` samples: the first, the last, an even stride between, and both
/// samples around every stats reset or server change. The counters are cumulative, so the
/// change over skipped samples is the sum of their steps; only resets need their neighbours.
fn thin(heads: Vec<Head>, max: usize) -> Vec<Head> {
    if heads.len() <= max {
        return heads;
    }
    let stride = heads.len().div_ceil(max.max(2) - 1);
    let last = heads.len() - 1;
    heads
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            let marker_change = |a: &Head, b: &Head| a.2 != b.2 || (a.3 - b.3).abs() > 0.5;
            *i == 0
                || *i == last
                || i % stride == 0
                || (*i > 0 && marker_change(&heads[i - 1], h))
                || (*i < last && marker_change(h, &heads[i + 1]))
        })
        .map(|(_, h)| *h)
        .collect()
}

/// The stored samples of `dbname` taken at or after `since`, oldest first (thinned to about
/// `MAX_SAMPLES`, see [`thin`]). No database yet
/// (or one an older dbagent wrote, without the advisor's tables) is no history.
pub fn load(
    state_dir: &Path,
    dbname: &str,
    since: jiff::Timestamp,
) -> Result<Vec<Sample>, StateError> {
    let mut samples = Vec::new();
    load_each(state_dir, dbname, since, |s| samples.push(s))?;
    Ok(samples)
}

/// Like [`load`], but hands each sample to `each` as soon as it is read, oldest first, so that
/// a caller folding them ([`super::window::Window`]) holds one sample at a time, not the window.
pub fn load_each(
    state_dir: &Path,
    dbname: &str,
    since: jiff::Timestamp,
    mut each: impl FnMut(Sample),
) -> Result<(), StateError> {
    let Some(db) = StateDb::open_existing(state_dir)? else {
        return Ok(());
    };
    if !db.has_table("advisor_samples")? {
        return Ok(());
    }
    let err = |e| db.err(e);
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT id, taken_ms, stats_reset, postmaster_start, in_recovery FROM advisor_samples \
             WHERE dbname = ?1 AND taken_ms >= ?2 ORDER BY taken_ms, id",
        )
        .map_err(err)?;
    let heads: Vec<Head> = stmt
        .query_map(params![dbname, since.as_millisecond()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut tstmt = db
        .conn()
        .prepare(
            "SELECT relid, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, \
             n_live_tup, n_dead_tup, autovacuum_count, size_bytes, reltuples, last_seq_scan \
             FROM advisor_tables WHERE sample_id = ?1",
        )
        .map_err(err)?;
    let mut istmt = db
        .conn()
        .prepare(
            "SELECT indexrelid, relid, schemaname, relname, indexrelname, idx_scan, size_bytes, \
             enforces, last_idx_scan FROM advisor_indexes WHERE sample_id = ?1",
        )
        .map_err(err)?;
    let heads = thin(heads, MAX_SAMPLES);
    for (id, taken_ms, stats_reset, postmaster_start, in_recovery) in heads {
        let tables = tstmt
            .query_map([id], |r| {
                Ok(TableStat {
                    relid: r.get(0)?,
                    schema: r.get(1)?,
                    name: r.get(2)?,
                    seq_scan: r.get(3)?,
                    seq_tup_read: r.get(4)?,
                    idx_scan: r.get(5)?,
                    idx_tup_fetch: r.get(6)?,
                    n_live_tup: r.get(7)?,
                    n_dead_tup: r.get(8)?,
                    autovacuum_count: r.get(9)?,
                    size_bytes: r.get(10)?,
                    reltuples: r.get(11)?,
                    last_seq_scan: r.get(12)?,
                })
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let indexes = istmt
            .query_map([id], |r| {
                Ok(IndexStat {
                    indexrelid: r.get(0)?,
                    relid: r.get(1)?,
                    schema: r.get(2)?,
                    table: r.get(3)?,
                    name: r.get(4)?,
                    idx_scan: r.get(5)?,
                    size_bytes: r.get(6)?,
                    enforces: r.get(7)?,
                    last_idx_scan: r.get(8)?,
                })
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let taken =
            jiff::Timestamp::from_millisecond(taken_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        each(Sample {
            taken,
            dbname: dbname.to_string(),
            stats_reset,
            postmaster_start,
            in_recovery,
            tables,
            indexes,
        });
    }
    Ok(())
}

/// The plans captured for `dbagent`'s samples of `dbname` since `since`, oldest first.
pub fn load_plans(
    state_dir: &Path,
    dbname: &str,
    since: jiff::Timestamp,
) -> Result<Vec<PlanCapture>, StateError> {
    let Some(db) = StateDb::open_existing(state_dir)? else {
        return Ok(Vec::new());
    };
    if !db.has_table("advisor_plans")? {
        return Ok(Vec::new());
    }
    let err = |e| db.err(e);
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT s.taken_ms, p.queryid, p.plan_hash, p.plan_shape, p.calls, p.total_seconds \
             FROM advisor_plans p JOIN advisor_samples s ON s.id = p.sample_id \
             WHERE s.dbname = ?1 AND s.taken_ms >= ?2 ORDER BY s.taken_ms, s.id",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![dbname, since.as_millisecond()], |r| {
            Ok(PlanCapture {
                taken: jiff::Timestamp::from_millisecond(r.get(0)?)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                queryid: r.get(1)?,
                plan_hash: r.get(2)?,
                plan_shape: r.get(3)?,
                calls: r.get(4)?,
                total_seconds: r.get(5)?,
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advise_thinning_keeps_ends_stride_and_reset_neighbours() {
        let heads: Vec<Head> = (0..1000)
            .map(|i| (i, i * 1000, (i >= 501).then_some(5.0), 1.0, false))
            .collect();
        let kept = thin(heads.clone(), 100);
        assert!(kept.len() <= 104, "{}", kept.len());
        assert_eq!(kept.first().unwrap().0, 0);
        assert_eq!(kept.last().unwrap().0, 999);
        let ids: Vec<i64> = kept.iter().map(|h| h.0).collect();
        assert!(ids.contains(&500) && ids.contains(&501), "{ids:?}");
        assert_eq!(thin(heads[..50].to_vec(), 100).len(), 50);
    }

    #[test]
    fn advise_store_round_trips_and_prunes() {
        let tmp = tempfile::tempdir().unwrap();
        let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let mk = |at: jiff::Timestamp, scans: f64| Sample {
            taken: at,
            dbname: "app".into(),
            stats_reset: Some(1.5),
            postmaster_start: 100.0,
            in_recovery: false,
            tables: vec![TableStat {
                relid: 1,
                schema: "public".into(),
                name: "t".into(),
                seq_scan: scans,
                seq_tup_read: 10.0,
                idx_scan: 0.0,
                idx_tup_fetch: 0.0,
                n_live_tup: 5.0,
                n_dead_tup: 0.0,
                autovacuum_count: 0.0,
                size_bytes: 8192.0,
                reltuples: 5.0,
                last_seq_scan: None,
            }],
            indexes: vec![IndexStat {
                indexrelid: 2,
                relid: 1,
                schema: "public".into(),
                table: "t".into(),
                name: "t_pkey".into(),
                idx_scan: scans,
                size_bytes: 16384.0,
                enforces: Some("primary key".into()),
                last_idx_scan: Some(3.0),
            }],
        };
        let a = mk(t0, 1.0);
        let b = mk(t0 + jiff::SignedDuration::from_secs(60), 2.0);
        save(tmp.path(), &a, &[], t0).unwrap();
        let plan = PlanCapture {
            taken: b.taken,
            queryid: "42".into(),
            plan_hash: "ab".into(),
            plan_shape: "Seq Scan on t".into(),
            calls: 3.0,
            total_seconds: 1.5,
        };
        save(tmp.path(), &b, std::slice::from_ref(&plan), t0).unwrap();
        assert_eq!(load_plans(tmp.path(), "app", t0).unwrap(), vec![plan]);
        assert_eq!(
            load(tmp.path(), "app", t0).unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert!(load(tmp.path(), "other", t0).unwrap().is_empty());
        // A later save prunes what is older than keep_since.
        let c = mk(t0 + jiff::SignedDuration::from_secs(120), 3.0);
        save(
            tmp.path(),
            &c,
            &[],
            t0 + jiff::SignedDuration::from_secs(30),
        )
        .unwrap();
        assert_eq!(load(tmp.path(), "app", t0).unwrap(), vec![b, c]);
        let empty = tempfile::tempdir().unwrap();
        assert!(load(empty.path(), "app", t0).unwrap().is_empty());
    }
}
