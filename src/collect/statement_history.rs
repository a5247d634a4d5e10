//! The statement history in `state.db` (migration 8): what the top statements of
//! pg_stat_statements did in each poll interval, so that a slow statement stays visible after
//! the interval it ran in (`dbagent top`, `sections.statements.history` of `/api/v1/status`).
//!
//! `dbagent run` writes one row per top statement per poll (the per-interval deltas the
//! `statements` collector computed: calls, execution time, rows), and each statement's text
//! once, in `statement_texts`, keyed like pg_stat_statements (queryid, dbid, userid,
//! toplevel). Rows older than `monitor.statement_history_retention` are deleted when a poll
//! writes. Readers aggregate the rows of a window per statement; a statement outside an
//! interval's top was not recorded for that interval, so sums are lower bounds for statements
//! that are only sometimes in the top.

use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::state::{StateDb, StateError};

/// One statement's activity in one interval, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub queryid: i64,
    pub dbid: u32,
    pub userid: u32,
    pub toplevel: bool,
    pub datname: &'a str,
    pub rolname: &'a str,
    /// The statement's text, when known (kept once; a later text does not replace it).
    pub query: Option<&'a str>,
    pub calls: f64,
    pub total_seconds: f64,
    pub rows: f64,
}

/// Writes the records of the interval that ended at `taken` (`interval_ms` long, when
/// known), and deletes what is older than `keep_since`.
pub fn record(
    db: &mut StateDb,
    taken: jiff::Timestamp,
    interval_ms: Option<i64>,
    records: &[Record<'_>],
    keep_since: jiff::Timestamp,
) -> Result<(), StateError> {
    let path = db.path().to_path_buf();
    let err = |e| StateError::from_sqlite(&path, e);
    let taken_ms = taken.as_millisecond();
    let tx = db.conn_mut().transaction().map_err(err)?;
    {
        let mut text = tx
            .prepare_cached(
                "INSERT INTO statement_texts \
                 (queryid, dbid, userid, toplevel, datname, rolname, query, last_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (queryid, dbid, userid, toplevel) DO UPDATE SET \
                 datname = excluded.datname, rolname = excluded.rolname, \
                 query = coalesce(statement_texts.query, excluded.query), \
                 last_seen_ms = excluded.last_seen_ms \
                 RETURNING id",
            )
            .map_err(err)?;
        let mut row = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO statement_history \
                 (statement_id, taken_ms, interval_ms, calls, total_seconds, rows) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(err)?;
        for r in records {
            let id: i64 = text
                .query_row(
                    params![
                        r.queryid, r.dbid, r.userid, r.toplevel, r.datname, r.rolname, r.query,
                        taken_ms
                    ],
                    |row| row.get(0),
                )
                .map_err(err)?;
            row.execute(params![
                id,
                taken_ms,
                interval_ms,
                r.calls,
                r.total_seconds,
                r.rows
            ])
            .map_err(err)?;
        }
    }
    prune(&tx, keep_since).map_err(err)?;
    tx.commit().map_err(err)
}

/// Deletes history rows older than `keep_since` and the texts no row uses any more.
fn prune(conn: &rusqlite::Connection, keep_since: jiff::Timestamp) -> rusqlite::Result<()> {
    let keep = keep_since.as_millisecond();
    conn.execute(
        "DELETE FROM statement_history WHERE taken_ms < ?1",
        params![keep],
    )?;
    conn.execute(
        "DELETE FROM statement_texts WHERE last_seen_ms < ?1 AND NOT EXISTS \
         (SELECT 1 FROM statement_history h WHERE h.statement_id = statement_texts.id)",
        params![keep],
    )?;
    Ok(())
}

/// What a window's statements are ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Total execution time.
    Total,
    /// Mean execution time per call.
    Mean,
    /// Number of calls.
    Calls,
}

impl By {
    fn order(self) -> &'static str {
        match self {
            By::Total => "sum(h.total_seconds) DESC",
            By::Mean => "sum(h.total_seconds) / sum(h.calls) DESC",
            By::Calls => "sum(h.calls) DESC",
        }
    }
}

/// One statement's activity summed over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Top {
    /// pg_stat_statements' queryid, as a decimal string (it is a 64-bit integer).
    pub queryid: String,
    pub datname: String,
    pub user: String,
    pub toplevel: bool,
    pub calls: f64,
    pub total_seconds: f64,
    pub mean_seconds: f64,
    pub rows: f64,
    /// Poll intervals the statement was recorded in.
    pub intervals: u64,
    /// The first and last poll that recorded it (RFC 3339, UTC).
    pub first_seen: String,
    pub last_seen: String,
    /// The text as pg_stat_statements shows it (constants replaced by $n), if it was read.
    pub query: Option<String>,
}

fn ts(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The `limit` statements with the most `by` in the rows taken at or after `since`.
pub fn top(
    db: &StateDb,
    since: jiff::Timestamp,
    by: By,
    limit: usize,
) -> Result<Vec<Top>, StateError> {
    if !db.has_table("statement_history")? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT t.queryid, t.datname, t.rolname, t.toplevel, t.query, sum(h.calls), \
         sum(h.total_seconds), sum(h.rows), count(*), min(h.taken_ms), max(h.taken_ms) \
         FROM statement_history h JOIN statement_texts t ON t.id = h.statement_id \
         WHERE h.taken_ms >= ?1 GROUP BY t.id HAVING sum(h.calls) > 0 \
         ORDER BY {}, sum(h.total_seconds) DESC, t.queryid LIMIT ?2",
        by.order()
    );
    let mut stmt = db.conn().prepare(&sql).map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map(
            params![since.as_millisecond(), limit.min(i64::MAX as usize) as i64],
            |r| {
                let calls: f64 = r.get(5)?;
                let total: f64 = r.get(6)?;
                Ok(Top {
                    queryid: r.get::<_, i64>(0)?.to_string(),
                    datname: r.get(1)?,
                    user: r.get(2)?,
                    toplevel: r.get(3)?,
                    query: r.get(4)?,
                    calls,
                    total_seconds: total,
                    mean_seconds: if calls > 0.0 { total / calls } else { 0.0 },
                    rows: r.get(7)?,
                    intervals: r.get::<_, i64>(8)?.max(0) as u64,
                    first_seen: ts(r.get(9)?),
                    last_seen: ts(r.get(10)?),
                })
            },
        )
        .map_err(|e| db.err(e))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| db.err(e))
}

/// What the history holds: rows, and the oldest and newest poll recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extent {
    pub rows: u64,
    pub oldest: Option<jiff::Timestamp>,
    pub newest: Option<jiff::Timestamp>,
}

/// The extent of the whole history (empty when the table does not exist yet).
pub fn extent(db: &StateDb) -> Result<Extent, StateError> {
    if !db.has_table("statement_history")? {
        return Ok(Extent::default());
    }
    let (rows, oldest, newest): (i64, Option<i64>, Option<i64>) = db
        .conn()
        .query_row(
            "SELECT count(*), min(taken_ms), max(taken_ms) FROM statement_history",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| db.err(e))?
        .unwrap_or((0, None, None));
    let t = |ms: Option<i64>| ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
    Ok(Extent {
        rows: rows.max(0) as u64,
        oldest: t(oldest),
        newest: t(newest),
    })
}

/// Writes records from a blocking context: opens the state database in `state_dir`, writes,
/// then reads the top `limit` by total time since `window_since` (for the status section).
pub fn record_and_read(
    state_dir: &Path,
    taken: jiff::Timestamp,
    interval_ms: Option<i64>,
    records: &[Record<'_>],
    keep_since: jiff::Timestamp,
    window_since: jiff::Timestamp,
    limit: usize,
) -> Result<Vec<Top>, StateError> {
    let mut db = StateDb::open(state_dir)?;
    record(&mut db, taken, interval_ms, records, keep_since)?;
    top(&db, window_since, By::Total, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(queryid: i64, calls: f64, total: f64) -> Record<'static> {
        Record {
            queryid,
            dbid: 5,
            userid: 10,
            toplevel: true,
            datname: "app",
            rolname: "alice",
            query: Some("SELECT $1"),
            calls,
            total_seconds: total,
            rows: calls,
        }
    }

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn history_sums_a_window_per_statement_and_ranks_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        record(
            &mut db,
            at(0),
            None,
            &[rec(1, 5.0, 1.5), rec(2, 1000.0, 2.0)],
            at(-100),
        )
        .unwrap();
        record(
            &mut db,
            at(15),
            Some(15_000),
            &[rec(1, 1.0, 0.3), rec(3, 1.0, 0.01)],
            at(-100),
        )
        .unwrap();
        let total = top(&db, at(0), By::Total, 10).unwrap();
        let ids: Vec<&str> = total.iter().map(|t| t.queryid.as_str()).collect();
        assert_eq!(ids, ["2", "1", "3"]);
        let one = &total[1];
        assert_eq!((one.calls, one.intervals), (6.0, 2));
        assert!((one.total_seconds - 1.8).abs() < 1e-9);
        assert!((one.mean_seconds - 0.3).abs() < 1e-9);
        assert_eq!(one.query.as_deref(), Some("SELECT $1"));
        let mean = top(&db, at(0), By::Mean, 1).unwrap();
        assert_eq!(mean[0].queryid, "1");
        let calls = top(&db, at(0), By::Calls, 10).unwrap();
        assert_eq!(calls[0].queryid, "2");
        // The window: only the second poll.
        let late = top(&db, at(10), By::Total, 10).unwrap();
        assert_eq!(late.len(), 2);
        // One text per statement, not per row.
        let texts: i64 = db
            .conn()
            .query_row("SELECT count(*) FROM statement_texts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(texts, 3);
    }

    #[test]
    fn history_retention_prunes_old_rows_and_unused_texts_on_write() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        record(&mut db, at(0), None, &[rec(1, 1.0, 1.0)], at(-10)).unwrap();
        record(&mut db, at(100), None, &[rec(2, 1.0, 1.0)], at(-10)).unwrap();
        assert_eq!(extent(&db).unwrap().rows, 2);
        // Keep from 50 s: the first poll's row and the text only it used are gone.
        record(&mut db, at(200), None, &[rec(2, 1.0, 1.0)], at(50)).unwrap();
        let e = extent(&db).unwrap();
        assert_eq!(e.rows, 2);
        assert_eq!(e.oldest, Some(at(100)));
        assert_eq!(e.newest, Some(at(200)));
        let ids: Vec<i64> = db
            .conn()
            .prepare("SELECT queryid FROM statement_texts")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, vec![2]);
    }

    #[test]
    fn history_keeps_the_first_text_it_learned() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        let mut unknown = rec(1, 1.0, 1.0);
        unknown.query = None;
        record(&mut db, at(0), None, &[unknown], at(-10)).unwrap();
        record(&mut db, at(15), None, &[rec(1, 1.0, 1.0)], at(-10)).unwrap();
        let mut other = rec(1, 1.0, 1.0);
        other.query = Some("SELECT 'changed'");
        record(&mut db, at(30), None, &[other], at(-10)).unwrap();
        let t = top(&db, at(-10), By::Total, 10).unwrap();
        assert_eq!(t[0].query.as_deref(), Some("SELECT $1"));
        assert_eq!(t[0].intervals, 3);
    }
}
