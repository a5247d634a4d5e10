//! Job history in state.db: one row per scheduled run (table `jobs`), and the last scheduled
//! time considered per job (table `schedule_marks`), from which runs missed while the agent
//! was down are counted.

use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::state::{StateDb, StateError};

/// The jobs `dbagent run` can schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    /// `dbagent backup --type incremental --or-full`.
    #[serde(rename = "backup_incremental")]
    BackupIncremental,
    Verify,
    Expire,
    Drill,
    /// `dbagent wal verify`.
    WalVerify,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Backup,
        JobKind::BackupIncremental,
        JobKind::Verify,
        JobKind::Expire,
        JobKind::Drill,
        JobKind::WalVerify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::BackupIncremental => "backup_incremental",
            JobKind::Verify => "verify",
            JobKind::Expire => "expire",
            JobKind::Drill => "drill",
            JobKind::WalVerify => "wal_verify",
        }
    }

    /// The dbagent command line (after `--config FILE`) that does this job.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            JobKind::Backup => &["backup", "--json", "--no-progress", "--label", "scheduled"],
            JobKind::BackupIncremental => &[
                "backup",
                "--type",
                "incremental",
                "--or-full",
                "--json",
                "--no-progress",
                "--label",
                "scheduled",
            ],
            JobKind::Verify => &["backups", "verify", "--json"],
            JobKind::Expire => &["backups", "expire", "--json"],
            JobKind::Drill => &["drill", "--json"],
            JobKind::WalVerify => &["wal", "verify", "--json", "--no-progress"],
        }
    }
}

impl std::str::FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown job {s:?}; the jobs are backup, backup_incremental, verify, expire, drill, wal_verify")
            })
    }
}

/// One row of the history, as `dbagent jobs list --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub job: String,
    /// `schedule` (a scheduled time came) or `missed` (run at start-up for a time missed while
    /// the agent was down).
    pub trigger: String,
    pub scheduled_for: Option<jiff::Timestamp>,
    pub started_at: jiff::Timestamp,
    pub finished_at: Option<jiff::Timestamp>,
    pub duration_seconds: Option<f64>,
    /// `running`, `succeeded`, `failed` or `skipped`.
    pub status: String,
    pub pid: Option<i64>,
    /// The backup ID for a backup, the error line of a failure, why a run was skipped.
    pub detail: Option<String>,
}

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Records a run that starts now; returns its row id.
pub fn start(
    db: &StateDb,
    kind: JobKind,
    trigger: &str,
    scheduled: jiff::Timestamp,
    started: jiff::Timestamp,
) -> Result<i64, StateError> {
    db.conn()
        .execute(
            "INSERT INTO jobs (kind, trigger, scheduled_ms, started_ms, status)
             VALUES (?1, ?2, ?3, ?4, 'running')",
            params![
                kind.as_str(),
                trigger,
                scheduled.as_millisecond(),
                started.as_millisecond()
            ],
        )
        .map_err(|e| db.err(e))?;
    Ok(db.conn().last_insert_rowid())
}

/// Notes the process that does run `id`.
pub fn set_pid(db: &StateDb, id: i64, pid: u32) -> Result<(), StateError> {
    db.conn()
        .execute("UPDATE jobs SET pid = ?2 WHERE id = ?1", params![id, pid])
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// Records how run `id` ended.
pub fn finish(
    db: &StateDb,
    id: i64,
    finished: jiff::Timestamp,
    succeeded: bool,
    detail: Option<&str>,
    output: Option<&str>,
) -> Result<(), StateError> {
    db.conn()
        .execute(
            "UPDATE jobs SET finished_ms = ?2, status = ?3, detail = ?4, output = ?5 WHERE id = ?1",
            params![
                id,
                finished.as_millisecond(),
                if succeeded { "succeeded" } else { "failed" },
                detail,
                output
            ],
        )
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// Records scheduled times that were not run, and why.
pub fn skipped(
    db: &StateDb,
    kind: JobKind,
    trigger: &str,
    scheduled: jiff::Timestamp,
    now: jiff::Timestamp,
    why: &str,
) -> Result<(), StateError> {
    db.conn()
        .execute(
            "INSERT INTO jobs (kind, trigger, scheduled_ms, started_ms, finished_ms, status, detail)
             VALUES (?1, ?2, ?3, ?4, ?4, 'skipped', ?5)",
            params![
                kind.as_str(),
                trigger,
                scheduled.as_millisecond(),
                now.as_millisecond(),
                why
            ],
        )
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// Marks runs left `running` by an agent that is gone as failed. Returns how many.
pub fn fail_interrupted(db: &StateDb, now: jiff::Timestamp) -> Result<usize, StateError> {
    db.conn()
        .execute(
            "UPDATE jobs SET status = 'failed', finished_ms = ?1,
                 detail = 'interrupted: the agent stopped while the job ran' ||
                          CASE WHEN pid IS NULL THEN '' ELSE ' (job pid ' || pid || ')' END
             WHERE status = 'running'",
            params![now.as_millisecond()],
        )
        .map_err(|e| db.err(e))
}

/// The last scheduled time considered for `kind`.
pub fn mark(db: &StateDb, kind: JobKind) -> Result<Option<jiff::Timestamp>, StateError> {
    db.conn()
        .query_row(
            "SELECT last_fire_ms FROM schedule_marks WHERE kind = ?1",
            params![kind.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|o| o.map(ts))
        .map_err(|e| db.err(e))
}

pub fn set_mark(db: &StateDb, kind: JobKind, at: jiff::Timestamp) -> Result<(), StateError> {
    db.conn()
        .execute(
            "INSERT INTO schedule_marks (kind, last_fire_ms) VALUES (?1, ?2)
             ON CONFLICT (kind) DO UPDATE SET last_fire_ms = excluded.last_fire_ms",
            params![kind.as_str(), at.as_millisecond()],
        )
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// The newest runs first, optionally of one job only.
pub fn list(
    db: &StateDb,
    kind: Option<JobKind>,
    limit: usize,
) -> Result<Vec<JobRecord>, StateError> {
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT id, kind, trigger, scheduled_ms, started_ms, finished_ms, status, pid, detail
             FROM jobs WHERE (?1 IS NULL OR kind = ?1)
             ORDER BY started_ms DESC, id DESC LIMIT ?2",
        )
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map(
            params![
                kind.map(JobKind::as_str),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                let started: i64 = r.get(4)?;
                let finished: Option<i64> = r.get(5)?;
                Ok(JobRecord {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    trigger: r.get(2)?,
                    scheduled_for: r.get::<_, Option<i64>>(3)?.map(ts),
                    started_at: ts(started),
                    finished_at: finished.map(ts),
                    duration_seconds: finished.map(|f| (f - started) as f64 / 1000.0),
                    status: r.get(6)?,
                    pid: r.get(7)?,
                    detail: r.get(8)?,
                })
            },
        )
        .map_err(|e| db.err(e))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| db.err(e))
}

/// Per job: the last run that ended, and the last success (for metrics and `check`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSummary {
    pub last_status: Option<String>,
    pub last_finished: Option<jiff::Timestamp>,
    pub last_success: Option<jiff::Timestamp>,
    pub last_duration_seconds: Option<f64>,
    pub running: bool,
    pub failures: u64,
    pub successes: u64,
}

pub fn summary(db: &StateDb, kind: JobKind) -> Result<JobSummary, StateError> {
    let conn = db.conn();
    let last = conn
        .query_row(
            "SELECT status, started_ms, finished_ms FROM jobs
             WHERE kind = ?1 AND status IN ('succeeded', 'failed')
             ORDER BY finished_ms DESC, id DESC LIMIT 1",
            params![kind.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()
        .map_err(|e| db.err(e))?;
    let last_success = conn
        .query_row(
            "SELECT max(finished_ms) FROM jobs WHERE kind = ?1 AND status = 'succeeded'",
            params![kind.as_str()],
            |r| r.get::<_, Option<i64>>(0),
        )
        .map_err(|e| db.err(e))?;
    let (running, failures, successes) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 'running'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'succeeded')
             FROM jobs WHERE kind = ?1",
            params![kind.as_str()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .map_err(|e| db.err(e))?;
    Ok(JobSummary {
        last_status: last.as_ref().map(|l| l.0.clone()),
        last_finished: last.as_ref().map(|l| ts(l.2)),
        last_success: last_success.map(ts),
        last_duration_seconds: last.map(|l| (l.2 - l.1) as f64 / 1000.0),
        running: running > 0,
        failures: u64::try_from(failures).unwrap_or(0),
        successes: u64::try_from(successes).unwrap_or(0),
    })
}

/// The history for `dbagent jobs list`: `None` when the agent has never run here.
pub fn read(
    state_dir: &Path,
    kind: Option<JobKind>,
    limit: usize,
) -> Result<Option<Vec<JobRecord>>, StateError> {
    let Some(db) = StateDb::open_existing(state_dir)? else {
        return Ok(None);
    };
    if !db.has_table("jobs")? {
        return Ok(Some(Vec::new()));
    }
    list(&db, kind, limit).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trip_and_interrupted_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let a = start(&db, JobKind::Backup, "schedule", t0, t0).unwrap();
        finish(&db, a, t1, true, Some("20260101T000000Z"), None).unwrap();
        let b = start(&db, JobKind::Backup, "schedule", t1, t1).unwrap();
        set_pid(&db, b, 4242).unwrap();
        skipped(&db, JobKind::Expire, "missed", t0, t1, "missed").unwrap();
        assert_eq!(fail_interrupted(&db, t1).unwrap(), 1);
        let rows = list(&db, Some(JobKind::Backup), 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].status, "failed");
        assert!(rows[0].detail.as_deref().unwrap().contains("4242"));
        assert_eq!(rows[1].status, "succeeded");
        assert_eq!(rows[1].duration_seconds, Some(10.0));
        let s = summary(&db, JobKind::Backup).unwrap();
        assert_eq!(s.last_status.as_deref(), Some("failed"));
        assert_eq!(s.last_success, Some(t1));
        assert_eq!((s.failures, s.successes, s.running), (1, 1, false));
        assert_eq!(list(&db, None, 10).unwrap().len(), 3);
        assert_eq!(mark(&db, JobKind::Drill).unwrap(), None);
        set_mark(&db, JobKind::Drill, t0).unwrap();
        set_mark(&db, JobKind::Drill, t1).unwrap();
        assert_eq!(mark(&db, JobKind::Drill).unwrap(), Some(t1));
    }
}
