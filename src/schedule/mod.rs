//! The jobs `dbagent run` starts by itself: backup (full), backup_incremental, verify, expire,
//! drill and wal_verify on cron schedules (`schedule:` in dbagent.yml), run by the leader only (see `crate::leader`).
//!
//! - Each job has its own loop, so a job never overlaps itself: scheduled times that pass
//!   while the previous run still goes on are recorded as skipped, not queued.
//! - A job is the dbagent command a person would type (`dbagent backup --json`, ...), run as a
//!   child process with the agent's configuration file: the same code path, the same locks
//!   (backup and expire take the repository lock), and a crash in a job cannot take the agent
//!   down. The child gets SIGTERM if the agent dies.
//! - History: every run is a row of state.db's `jobs` table (`dbagent jobs list`), written
//!   `running` before the job starts. A row still `running` when the agent starts again was
//!   interrupted by the agent's death and is marked failed; the next run of a backup cleans up
//!   the interrupted one's partial directory itself.
//! - Full and incremental backups have schedules of their own (a weekly full, daily
//!   incrementals); when both fire at the same time only the full runs, and the incremental is
//!   recorded as skipped. A scheduled incremental that cannot be taken takes a full backup
//!   (`--or-full`), and its history row says why.
//! - Runs missed while the agent was down are counted from the last scheduled time the agent
//!   considered (table `schedule_marks`): `schedule.on_missed: run_once` runs the job once at
//!   start-up, `skip` records them as skipped and waits for the next time.
//!
//! Layer: service. Uses: config, cron, leader, metrics, state, units. Used by: agent.

pub mod history;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::config::schedule::OnMissed;
use crate::cron::Cron;
use crate::leader::Leadership;
use crate::metrics::Family;
use crate::metrics::catalogue;
use crate::state::StateDb;
use history::JobKind;

/// How long a job may take to end after SIGTERM (timeout, shutdown) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The most output of a job kept in its history row.
const OUTPUT_LIMIT: usize = 16 * 1024;

/// How long a job loop sleeps at most before looking at the clock again (a wall-clock change
/// or a suspended machine cannot make it miss a time by more than this).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// What the scheduler publishes: its metric families and, for /api/v1/status, its state.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSnapshot {
    pub families: Vec<Family>,
    pub status: serde_json::Value,
}

/// The scheduler: one loop per job kind, plus the publisher of its metrics.
pub struct Scheduler {
    pub config_rx: watch::Receiver<Arc<Config>>,
    pub leader_rx: watch::Receiver<Leadership>,
    /// The configuration file, absolute (jobs run `dbagent --config FILE ...`).
    pub config_path: PathBuf,
    /// This dbagent binary.
    pub exe: PathBuf,
    pub snapshot_tx: watch::Sender<Arc<ScheduleSnapshot>>,
}

impl Scheduler {
    /// Marks runs interrupted by a previous agent's death, then runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let state_dir = self.config_rx.borrow().state_dir.clone();
        match StateDb::open(&state_dir)
            .and_then(|db| history::fail_interrupted(&db, jiff::Timestamp::now()))
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                jobs = n,
                "Jobs were running when the agent stopped; they are recorded as failed"
            ),
            Err(e) => tracing::error!(error = %e, "Cannot read the job history"),
        }
        let changed = Arc::new(Notify::new());
        let shared = Arc::new(self);
        let mut tasks = Vec::new();
        for kind in JobKind::ALL {
            let s = Arc::clone(&shared);
            let c = cancel.clone();
            let n = Arc::clone(&changed);
            tasks.push(tokio::spawn(async move { s.job_loop(kind, c, n).await }));
        }
        shared.publish_loop(cancel, changed).await;
        for t in tasks {
            let _ = t.await;
        }
    }

    fn cron_of(config: &Config, kind: JobKind) -> Option<Cron> {
        let s = &config.schedule;
        match kind {
            JobKind::Backup => s.backup.clone(),
            JobKind::BackupIncremental => s.backup_incremental.clone(),
            JobKind::Verify => s.verify.clone(),
            JobKind::Expire => s.expire.clone(),
            JobKind::Drill => s.drill.clone(),
            JobKind::WalVerify => s.wal_verify.clone(),
        }
    }

    async fn db(&self) -> Option<Mutex<StateDb>> {
        let dir = self.config_rx.borrow().state_dir.clone();
        match tokio::task::spawn_blocking(move || StateDb::open(&dir)).await {
            Ok(Ok(db)) => Some(Mutex::new(db)),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Cannot open the state database for the job history");
                None
            }
            Err(_) => None,
        }
    }

    async fn job_loop(&self, kind: JobKind, cancel: CancellationToken, changed: Arc<Notify>) {
        let mut config_rx = self.config_rx.clone();
        // Missed runs are only run by a leader: wait for the first election to decide.
        let mut leader_rx = self.leader_rx.clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = leader_rx.wait_for(|l| l.since.is_some()) => {}
        }
        let mut first = true;
        loop {
            let config = config_rx.borrow_and_update().clone();
            let Some(cron) = Self::cron_of(&config, kind) else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = config_rx.changed() => { if r.is_err() { return } continue }
                }
            };
            let Some(db) = self.db().await else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(MAX_SLEEP) => continue,
                }
            };
            let tz = config.schedule.tz();
            let now = jiff::Timestamp::now();
            let mark = history::mark(&lock(&db), kind).ok().flatten();
            if first {
                first = false;
                if let Some(mark) = mark {
                    let missed = cron.fires_between(mark, now, &tz, 10_000);
                    if let Some(&last) = missed.last() {
                        self.handle_missed(&db, &config, kind, &missed, last, &cancel)
                            .await;
                        changed.notify_one();
                        continue;
                    }
                }
            }
            // The next time strictly after both the last one considered and now.
            let from = mark.map_or(now, |m| m.max(now));
            let Some(next) = cron.next_after(from, &tz) else {
                tracing::warn!(job = kind.as_str(), cron = %cron, "This schedule never fires");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = config_rx.changed() => { if r.is_err() { return } continue }
                }
            };
            // Sleep until `next`, in slices (a wall-clock change is noticed within one), and
            // start over when the configuration changes.
            let mut reconfigured = false;
            loop {
                let wait = (next - jiff::Timestamp::now())
                    .total(jiff::Unit::Millisecond)
                    .unwrap_or(0.0);
                if wait <= 0.0 {
                    break;
                }
                let slice = Duration::from_millis(wait as u64 + 1).min(MAX_SLEEP);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(slice) => {}
                    r = config_rx.changed() => {
                        if r.is_err() { return }
                        reconfigured = true;
                        break;
                    }
                }
            }
            if reconfigured {
                continue;
            }
            // Mark it considered first: a crash during the run is not a "missed" run later.
            if let Err(e) = history::set_mark(&lock(&db), kind, next) {
                tracing::error!(job = kind.as_str(), error = %e, "Cannot record the schedule mark");
            }
            let leadership = self.leader_rx.borrow().clone();
            if !leadership.leader {
                tracing::debug!(job = kind.as_str(), scheduled = %next, "Not the leader; the leader runs this job ({})", leadership.reason);
                continue;
            }
            if let Some(why) = full_takes_its_place(&config, kind, next) {
                tracing::info!(job = kind.as_str(), scheduled = %next, "{why}");
                let _ = history::skipped(
                    &lock(&db),
                    kind,
                    "schedule",
                    next,
                    jiff::Timestamp::now(),
                    &why,
                );
                changed.notify_one();
                continue;
            }
            changed.notify_one();
            self.execute(&db, &config, kind, "schedule", next, &cancel)
                .await;
            changed.notify_one();
            // Times that passed while it ran: skipped, never queued (no overlap with itself).
            let after = jiff::Timestamp::now();
            let overrun = cron.fires_between(next, after, &tz, 10_000);
            if let Some(&last) = overrun.last() {
                let why = format!(
                    "{} scheduled run(s) up to {last} skipped: the previous run was still running",
                    overrun.len()
                );
                tracing::warn!(job = kind.as_str(), "{why}");
                let _ = history::skipped(&lock(&db), kind, "schedule", last, after, &why);
                let _ = history::set_mark(&lock(&db), kind, last);
            }
        }
    }

    async fn handle_missed(
        &self,
        db: &Mutex<StateDb>,
        config: &Config,
        kind: JobKind,
        missed: &[jiff::Timestamp],
        last: jiff::Timestamp,
        cancel: &CancellationToken,
    ) {
        let _ = history::set_mark(&lock(db), kind, last);
        let leadership = self.leader_rx.borrow().clone();
        let what = format!(
            "{} scheduled run(s) missed while the agent was down (from {} to {last})",
            missed.len(),
            missed[0]
        );
        if !leadership.leader {
            tracing::info!(
                job = kind.as_str(),
                "{what}; not the leader, so not run here"
            );
            return;
        }
        if let Some(why) = full_takes_its_place(config, kind, last) {
            tracing::info!(job = kind.as_str(), "{what}; {why}");
            let _ = history::skipped(
                &lock(db),
                kind,
                "missed",
                last,
                jiff::Timestamp::now(),
                &why,
            );
            return;
        }
        match config.schedule.on_missed {
            OnMissed::Skip => {
                let why = format!("{what}; schedule.on_missed is skip");
                tracing::warn!(job = kind.as_str(), "{why}");
                let _ = history::skipped(
                    &lock(db),
                    kind,
                    "missed",
                    last,
                    jiff::Timestamp::now(),
                    &why,
                );
            }
            OnMissed::RunOnce => {
                tracing::warn!(job = kind.as_str(), "{what}; running it once now");
                self.execute(db, config, kind, "missed", last, cancel).await;
            }
        }
    }

    /// Runs one job to its end (or the timeout, or shutdown) and records it.
    async fn execute(
        &self,
        db: &Mutex<StateDb>,
        config: &Config,
        kind: JobKind,
        trigger: &str,
        scheduled: jiff::Timestamp,
        cancel: &CancellationToken,
    ) {
        let started = jiff::Timestamp::now();
        let id = match history::start(&lock(db), kind, trigger, scheduled, started) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(job = kind.as_str(), error = %e, "Cannot record the job; not running it");
                return;
            }
        };
        tracing::info!(job = kind.as_str(), scheduled = %scheduled, "Job started");
        let (ok, detail, output) = self.run_child(db, id, config, kind, cancel).await;
        let finished = jiff::Timestamp::now();
        let secs = (finished - started)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0);
        if ok {
            tracing::info!(
                job = kind.as_str(),
                duration_s = format!("{secs:.1}"),
                detail = detail.as_deref().unwrap_or(""),
                "Job succeeded"
            );
        } else {
            tracing::error!(
                job = kind.as_str(),
                duration_s = format!("{secs:.1}"),
                error = detail.as_deref().unwrap_or(""),
                "Job failed"
            );
        }
        if let Err(e) = history::finish(
            &lock(db),
            id,
            finished,
            ok,
            detail.as_deref(),
            Some(output.as_str()),
        ) {
            tracing::error!(job = kind.as_str(), error = %e, "Cannot record the end of the job");
        }
    }

    /// (succeeded, detail, output) of one run of `dbagent ... <job>`.
    async fn run_child(
        &self,
        db: &Mutex<StateDb>,
        id: i64,
        config: &Config,
        kind: JobKind,
        cancel: &CancellationToken,
    ) -> (bool, Option<String>, String) {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("--log-format")
            .arg("json")
            .args(kind.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // If the agent dies (kill -9), the job must not go on unsupervised: the kernel sends
        // it SIGTERM, and the next run cleans up after it.
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it is the only thing done between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return (
                    false,
                    Some(format!("cannot run {}: {e}", self.exe.display())),
                    String::new(),
                );
            }
        };
        if let Some(pid) = child.id() {
            let _ = history::set_pid(&lock(db), id, pid);
        }
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let timeout = config.schedule.timeout;
        let pid = child.id();
        let waited = async {
            let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
            (out, err, status)
        };
        tokio::pin!(waited);
        // Stopping a job: SIGTERM, then what it reports within a grace period (a job that had
        // just finished is recorded as it ended, not as stopped).
        let stop = |why: String| {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            why
        };
        let (out, err, status) = tokio::select! {
            r = tokio::time::timeout(timeout, &mut waited) => match r {
                Ok(r) => r,
                Err(_) => {
                    let why = stop(format!("stopped after schedule.timeout ({})", crate::units::human_duration_of(timeout)));
                    let _ = tokio::time::timeout(STOP_GRACE, &mut waited).await;
                    return (false, Some(why), String::new());
                }
            },
            _ = cancel.cancelled() => {
                let why = stop("stopped: the agent was shutting down".into());
                match tokio::time::timeout(STOP_GRACE, &mut waited).await {
                    Ok((out, err, Ok(s))) if s.success() => (out, err, Ok(s)),
                    _ => return (false, Some(why), String::new()),
                }
            }
        };
        let out = String::from_utf8_lossy(&out).into_owned();
        let err = String::from_utf8_lossy(&err).into_owned();
        match status {
            Ok(s) if s.success() => {
                let detail = result_detail(kind, &out);
                (true, detail, truncate(out))
            }
            Ok(s) => {
                let line = err
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("dbagent: error: "))
                    .map(str::to_string)
                    .or_else(|| {
                        err.lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| format!("exited with {s}"));
                let mut output = out;
                if !err.is_empty() {
                    output.push_str("\n--- stderr ---\n");
                    output.push_str(&err);
                }
                (false, Some(line), truncate_tail(output))
            }
            Err(e) => (
                false,
                Some(format!("cannot wait for the job: {e}")),
                String::new(),
            ),
        }
    }

    /// Rebuilds the published metrics when a job starts or ends, leadership changes, or
    /// every 30 s (the next times move on).
    async fn publish_loop(&self, cancel: CancellationToken, changed: Arc<Notify>) {
        let mut leader_rx = self.leader_rx.clone();
        loop {
            self.publish().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = changed.notified() => {}
                _ = leader_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }

    async fn publish(&self) {
        let config = self.config_rx.borrow().clone();
        let leadership = self.leader_rx.borrow().clone();
        let dir = config.state_dir.clone();
        let summaries = tokio::task::spawn_blocking(move || {
            let db = StateDb::open(&dir)?;
            JobKind::ALL
                .into_iter()
                .map(|k| history::summary(&db, k).map(|s| (k, s)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let summaries = match summaries {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Cannot read the job history for metrics");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        self.snapshot_tx
            .send_replace(Arc::new(snapshot(&config, &leadership, &summaries)));
    }
}

/// The metric families and status of the scheduler.
fn snapshot(
    config: &Config,
    leadership: &Leadership,
    summaries: &[(JobKind, history::JobSummary)],
) -> ScheduleSnapshot {
    let tz = config.schedule.tz();
    let now = jiff::Timestamp::now();
    let mut families = vec![
        Family::of(&catalogue::DBAGENT_LEADER).with(&[], if leadership.leader { 1.0 } else { 0.0 }),
    ];
    let mut next = Family::of(&catalogue::DBAGENT_JOB_NEXT_RUN_TIMESTAMP_SECONDS);
    let mut running = Family::of(&catalogue::DBAGENT_JOB_RUNNING);
    let mut result = Family::of(&catalogue::DBAGENT_JOB_LAST_RESULT);
    let mut success = Family::of(&catalogue::DBAGENT_JOB_LAST_SUCCESS_TIMESTAMP_SECONDS);
    let mut duration = Family::of(&catalogue::DBAGENT_JOB_LAST_DURATION_SECONDS);
    let mut runs = Family::of(&catalogue::DBAGENT_JOB_RUNS_TOTAL);
    let mut jobs = serde_json::Map::new();
    for (kind, s) in summaries {
        let job = kind.as_str();
        let cron = Scheduler::cron_of(config, *kind);
        let next_at = cron.as_ref().and_then(|c| c.next_after(now, &tz));
        if cron.is_none() && s.last_status.is_none() && !s.running {
            continue;
        }
        if let Some(t) = next_at {
            next.push(&[("job", job)], t.as_millisecond() as f64 / 1000.0);
        }
        running.push(&[("job", job)], if s.running { 1.0 } else { 0.0 });
        if let Some(st) = &s.last_status {
            result.push(&[("job", job)], if st == "succeeded" { 1.0 } else { 0.0 });
        }
        if let Some(t) = s.last_success {
            success.push(&[("job", job)], t.as_millisecond() as f64 / 1000.0);
        }
        if let Some(d) = s.last_duration_seconds {
            duration.push(&[("job", job)], d);
        }
        runs.push(&[("job", job), ("result", "succeeded")], s.successes as f64);
        runs.push(&[("job", job), ("result", "failed")], s.failures as f64);
        jobs.insert(
            job.to_string(),
            serde_json::json!({
                "schedule": cron.map(|c| c.to_string()),
                "next_run": next_at,
                "running": s.running,
                "last_result": s.last_status,
                "last_finished": s.last_finished,
                "last_success": s.last_success,
                "last_duration_seconds": s.last_duration_seconds,
            }),
        );
    }
    families.extend([next, running, result, success, duration, runs]);
    ScheduleSnapshot {
        families,
        status: serde_json::json!({
            "leader": leadership.leader,
            "leader_since": leadership.since,
            "leader_reason": leadership.reason,
            "timezone": config.schedule.timezone,
            "jobs": jobs,
        }),
    }
}

/// The history connection of a job loop (never held across an await).
fn lock(db: &Mutex<StateDb>) -> MutexGuard<'_, StateDb> {
    db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a scheduled incremental backup at `at` does not run: the full backup's schedule fires
/// at the same time (the full wins).
fn full_takes_its_place(config: &Config, kind: JobKind, at: jiff::Timestamp) -> Option<String> {
    if kind != JobKind::BackupIncremental {
        return None;
    }
    let full = config.schedule.backup.as_ref()?;
    let before = at.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?;
    (full.next_after(before, &config.schedule.tz()) == Some(at)).then(|| {
        format!("skipped: the full backup (schedule.backup) is scheduled for the same time ({at})")
    })
}

/// The one-line summary of a successful run (the backup ID, ...).
fn result_detail(kind: JobKind, out: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(out).ok()?;
    match kind {
        JobKind::Backup => v["id"].as_str().map(|id| format!("backup {id}")),
        JobKind::BackupIncremental => {
            let id = v["id"].as_str()?;
            Some(match (v["parent"].as_str(), v["fallback"].as_str()) {
                (_, Some(why)) => format!("backup {id} ({why})"),
                (Some(parent), None) => format!("backup {id} (incremental against {parent})"),
                (None, None) => format!("backup {id}"),
            })
        }
        JobKind::Drill => v["rto_seconds"]
            .as_f64()
            .map(|r| format!("RTO {}", crate::units::human_duration(r)))
            .or_else(|| v["backup_id"].as_str().map(str::to_string)),
        JobKind::WalVerify => v["segments_needed"]
            .as_u64()
            .map(|n| format!("{n} WAL segments intact")),
        JobKind::Verify | JobKind::Expire => None,
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > OUTPUT_LIMIT {
        let mut cut = OUTPUT_LIMIT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[truncated]");
    }
    s
}

fn truncate_tail(s: String) -> String {
    if s.len() <= OUTPUT_LIMIT {
        return s;
    }
    let mut cut = s.len() - OUTPUT_LIMIT;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[truncated]\n{}", &s[cut..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: &str) -> Config {
        let text = format!(
            "postgres:\n  conninfo: \"host=127.0.0.1\"\nrepository:\n  path: /tmp/repo\nschedule:\n{schedule}"
        );
        Config::parse(&text, std::path::Path::new("dbagent.yml")).expect("config")
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn the_full_backup_takes_the_place_of_an_incremental_due_at_the_same_time() {
        let c = config("  backup: \"0 1 * * sun\"\n  backup_incremental: \"0 1 * * *\"\n");
        // 2026-12-06 is a Sunday.
        let sunday = at("2026-12-06T01:00:00Z");
        let why = full_takes_its_place(&c, JobKind::BackupIncremental, sunday)
            .expect("the full wins on Sunday");
        assert!(why.contains("schedule.backup"), "{why}");
        assert_eq!(
            full_takes_its_place(&c, JobKind::BackupIncremental, at("2026-12-07T01:00:00Z")),
            None
        );
        // Only incrementals give way, and only to a full backup that is scheduled.
        assert_eq!(full_takes_its_place(&c, JobKind::Backup, sunday), None);
        let only_incr = config("  backup_incremental: \"0 1 * * *\"\n");
        assert_eq!(
            full_takes_its_place(&only_incr, JobKind::BackupIncremental, sunday),
            None
        );
    }

    #[test]
    fn a_scheduled_incremental_says_what_it_was_against_or_why_it_is_a_full() {
        let kind = JobKind::BackupIncremental;
        assert_eq!(
            result_detail(
                kind,
                r#"{"id": "B2", "type": "incremental", "parent": "B1"}"#
            )
            .as_deref(),
            Some("backup B2 (incremental against B1)")
        );
        assert_eq!(
            result_detail(
                kind,
                r#"{"id": "B1", "type": "full", "parent": null, "fallback": "full instead of incremental: no backup"}"#
            )
            .as_deref(),
            Some("backup B1 (full instead of incremental: no backup)")
        );
    }
}
