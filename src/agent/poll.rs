//! The poll loop of `dbagent run`: one connection of its own (application_name=dbagent,
//! statement_timeout and lock_timeout from `monitor:`), every collector once per interval,
//! concurrently on that connection, and one [`Snapshot`] published per poll.
//!
//! Per-database collectors ([`collect::PerDatabase`]: tables, vacuum, bloat, pgstattuple, the
//! advisor) also run in every other database `monitor.databases` selects, one database at a
//! time, each on a connection opened for it and closed right after (same conninfo with
//! `dbname` replaced, same session settings). A database that cannot be read is reported
//! (`databases` of `/api/v1/status`, `dbagent_database_watch_up`, one log line per change)
//! and the others go on.
//!
//! - A poll never stacks on the next: the loop waits for a poll to end before it schedules the
//!   next one; a poll that overruns its interval is counted and the next starts right after.
//! - Each collector fails on its own: its error is counted (`dbagent_collector_errors_total`)
//!   and logged once when it starts failing and once when it recovers, never per poll.
//! - When the server goes away the loop publishes `pg_up 0` and reconnects with exponential
//!   backoff (1 s doubling up to the poll interval).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::collect::{self, Collector, Ctx, Family, Output};
use crate::config::Config;
use crate::metrics::catalogue;
use crate::pg::{PgTarget, ServerVersion, SessionOptions};
use crate::snapshot::{CollectorStatus, DatabaseStatus, Snapshot};

use super::evaluate::PollResult;

/// Why a poll has no connection to use: what `pg_up` 0, `/readyz` and the log say.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("not connected")]
    NotConnected,
    #[error("{}", crate::pg::error_detail(.0))]
    Query(tokio_postgres::Error),
    #[error(transparent)]
    Collector(collect::CollectError),
    #[error("connection closed")]
    Closed,
    #[error("the poll did not finish within {}", crate::units::human_duration_of(*.0))]
    Timeout(Duration),
}

/// What a poll leaves for the other watched databases after the agent's own connection.
struct Round {
    /// The watched databases other than the agent's own.
    others: Vec<String>,
    /// Whether the agent's own database is watched (its per-database collectors ran on the
    /// agent's connection).
    main_watched: bool,
    /// The per-database collectors that failed there.
    main_failures: Vec<String>,
}

/// What the loop remembers about one watched database.
struct WatchedDb {
    /// Why its last read failed (with the fix when known), while it does.
    error: Option<String>,
    last_read: Option<jiff::Timestamp>,
}

/// One collector and what the loop remembers about it.
struct Slot {
    collector: Box<dyn Collector>,
    last_run: Option<Instant>,
    last_output: Option<Output>,
    /// The error of the last run, if it failed.
    failing: Option<String>,
    errors_total: u64,
    duration: Duration,
    /// It runs in every watched database ([`collect::PerDatabase`]).
    per_database: bool,
    /// This poll's failures in each database, for a per-database collector.
    db_failures: Vec<String>,
}

/// The connection and what was learned when it was opened.
struct Connection {
    client: tokio_postgres::Client,
    version: ServerVersion,
    dbname: String,
}

/// The repository of `config`, or None (logged) when its settings are refused.
fn open_repo(config: &Config) -> Option<crate::repo::Repo> {
    match config.repo() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("The repository cannot be used: {e}");
            None
        }
    }
}

/// The poll loop's state.
pub struct PollLoop {
    config: Arc<Config>,
    config_rx: watch::Receiver<Arc<Config>>,
    /// The repository, opened once per configuration (an S3 repository keeps its listing
    /// index between polls).
    repo: Option<crate::repo::Repo>,
    slots: Vec<Slot>,
    conn: Option<Connection>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    eval_tx: Option<tokio::sync::mpsc::Sender<PollResult>>,
    /// The scheduler's families (dbagent_leader, dbagent_job_*) and status, merged into every
    /// poll so that rules can read them too.
    schedule_rx: Option<watch::Receiver<Arc<crate::schedule::ScheduleSnapshot>>>,
    /// Whether this agent leads (cluster-wide rules are evaluated by the leader only).
    leader_rx: Option<watch::Receiver<crate::leader::Leadership>>,
    polls_total: u64,
    overruns_total: u64,
    connect_errors_total: u64,
    last_success: Option<jiff::Timestamp>,
    /// The reason the server is unreachable, while it is (logged once per change).
    down: Option<String>,
    /// The watched databases (`monitor.databases`) as the last poll found them.
    databases: BTreeMap<String, WatchedDb>,
    started: jiff::Timestamp,
}

impl PollLoop {
    pub fn new(
        config_rx: watch::Receiver<Arc<Config>>,
        snapshot_tx: watch::Sender<Arc<Snapshot>>,
        eval_tx: Option<tokio::sync::mpsc::Sender<PollResult>>,
        schedule_rx: Option<watch::Receiver<Arc<crate::schedule::ScheduleSnapshot>>>,
        leader_rx: Option<watch::Receiver<crate::leader::Leadership>>,
    ) -> PollLoop {
        let config = config_rx.borrow().clone();
        PollLoop {
            repo: open_repo(&config),
            config,
            config_rx,
            slots: collect::all()
                .into_iter()
                .map(|mut collector| Slot {
                    per_database: collector.per_database().is_some(),
                    db_failures: Vec::new(),
                    collector,
                    last_run: None,
                    last_output: None,
                    failing: None,
                    errors_total: 0,
                    duration: Duration::ZERO,
                })
                .collect(),
            conn: None,
            snapshot_tx,
            eval_tx,
            schedule_rx,
            leader_rx,
            polls_total: 0,
            overruns_total: 0,
            connect_errors_total: 0,
            last_success: None,
            down: None,
            databases: BTreeMap::new(),
            started: jiff::Timestamp::now(),
        }
    }

    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.config_rx.has_changed().unwrap_or(false) {
                let new = self.config_rx.borrow_and_update().clone();
                if new.postgres.conninfo != self.config.postgres.conninfo {
                    tracing::info!("The connection settings changed; reconnecting");
                    self.conn = None;
                }
                if new.repository.location() != self.config.repository.location()
                    || new.repository.endpoint != self.config.repository.endpoint
                {
                    self.repo = open_repo(&new);
                }
                self.config = new;
            }
            let interval = self.config.monitor.interval;
            let started = Instant::now();
            if self.conn.is_none() {
                match tokio::select! {
                    r = self.connect() => r,
                    () = cancel.cancelled() => return,
                } {
                    Ok(conn) => {
                        backoff = Duration::from_secs(1);
                        self.conn = Some(conn);
                    }
                    Err(reason) => {
                        self.connect_errors_total += 1;
                        self.set_down(Some(reason.to_string()));
                        self.publish(false, None, started.elapsed());
                        let wait = backoff;
                        backoff = (backoff * 2).min(interval.max(Duration::from_secs(1)));
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = cancel.cancelled() => return,
                        }
                        continue;
                    }
                }
            }
            // The poll is bounded too (a server that stops answering mid-poll): past
            // statement_timeout plus the connect timeout the connection is dropped. Each other
            // watched database has a bound of its own.
            let limit =
                self.config.monitor.statement_timeout + self.config.postgres.connect_timeout;
            let polled = tokio::select! {
                r = self.poll_once(limit) => r,
                () = cancel.cancelled() => return,
            };
            let ok = match polled {
                Ok(in_recovery) => {
                    self.set_down(None);
                    Some(in_recovery)
                }
                Err(reason) => {
                    self.conn = None;
                    self.set_down(Some(reason.to_string()));
                    None
                }
            };
            let elapsed = started.elapsed();
            self.polls_total += 1;
            if elapsed > interval {
                self.overruns_total += 1;
                tracing::warn!(
                    took_ms = elapsed.as_millis() as u64,
                    interval_ms = interval.as_millis() as u64,
                    "A poll took longer than the poll interval; the next one starts now"
                );
            }
            if ok.is_some() {
                self.last_success = Some(jiff::Timestamp::now());
            }
            self.publish(ok.is_some(), ok, elapsed);
            super::memory::release_free();
            let wait = if ok.is_none() {
                // Lost the server during the poll: reconnect soon, not a whole interval later.
                Duration::from_secs(1)
            } else {
                interval.saturating_sub(elapsed)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    fn set_down(&mut self, reason: Option<String>) {
        match (&self.down, &reason) {
            (None, Some(r)) => {
                tracing::error!(error = %r, "Lost the PostgreSQL server; reconnecting with backoff")
            }
            (Some(_), None) => tracing::info!("Connected to PostgreSQL again"),
            _ => {}
        }
        self.down = reason;
    }

    async fn connect(&self) -> Result<Connection, crate::pg::PgError> {
        let c = &self.config;
        let target = PgTarget::new(
            &c.postgres.conninfo,
            SessionOptions {
                connect_timeout: c.postgres.connect_timeout,
                statement_timeout: c.monitor.statement_timeout,
                lock_timeout: c.monitor.lock_timeout,
            },
        )?;
        let client = target.connect().await?;
        let version = ServerVersion::detect(&client)
            .await
            .map_err(|e| target.query_error("server version", &e))?;
        if self.down.is_none() && self.polls_total == 0 {
            tracing::info!(server = %target.describe(), version = %version, "Connected");
        }
        Ok(Connection {
            client,
            version,
            dbname: target.info().dbname.clone(),
        })
    }

    /// One poll: every due collector, concurrently on the agent's connection, then the
    /// per-database collectors in each other watched database, one database at a time. `Err`
    /// when the agent's connection is gone or its part of the poll overran `limit`;
    /// `Ok(in_recovery)` otherwise (collectors and other databases may still have failed).
    async fn poll_once(&mut self, limit: Duration) -> Result<bool, Lost> {
        let now = Instant::now();
        let monitor = &self.config.monitor;
        let due: Vec<bool> = self
            .slots
            .iter()
            .map(|s| match (s.collector.interval(monitor), s.last_run) {
                (Some(every), Some(last)) => now.duration_since(last) >= every,
                _ => true,
            })
            .collect();
        for (slot, _) in self.slots.iter_mut().zip(&due).filter(|(_, d)| **d) {
            slot.db_failures.clear();
            slot.duration = Duration::ZERO;
            // A poll that ended early (connection lost, time limit) may have left a partial
            // fold behind: start this one empty.
            if let Some(p) = slot.collector.per_database() {
                drop(p.finish(monitor));
            }
        }
        let (in_recovery, round) =
            match tokio::time::timeout(limit, self.poll_main(&due, now)).await {
                Ok(r) => r?,
                Err(_) => return Err(Lost::Timeout(limit)),
            };
        if let Some(round) = round {
            self.poll_databases(&due, in_recovery, round, limit).await;
        }
        Ok(in_recovery)
    }

    /// The agent's own connection: every due collector (the per-database ones too when its
    /// database is watched). Returns what is left for the other watched databases, when a
    /// per-database collector is due.
    async fn poll_main(
        &mut self,
        due: &[bool],
        now: Instant,
    ) -> Result<(bool, Option<Round>), Lost> {
        let Some(conn) = &self.conn else {
            return Err(Lost::NotConnected);
        };
        let in_recovery: bool = conn
            .client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(Lost::Query)?
            .get(0);
        let monitor = &self.config.monitor;
        let per_db_due = self
            .slots
            .iter()
            .zip(due)
            .any(|(s, d)| *d && s.per_database);
        let mut round = None;
        let mut main_watched = false;
        if per_db_due {
            let mut selected = collect::watched::selected(&conn.client, &monitor.databases)
                .await
                .map_err(Lost::Query)?;
            main_watched = selected.contains(&conn.dbname);
            selected.retain(|d| *d != conn.dbname);
            round = Some(Round {
                others: selected,
                main_watched,
                main_failures: Vec::new(),
            });
        }
        let ctx = Ctx {
            client: &conn.client,
            version: &conn.version,
            in_recovery,
            dbname: &conn.dbname,
            cluster_wide: true,
            config: monitor,
            now: jiff::Timestamp::now(),
            repository: self.repo.as_ref(),
            state_dir: Some(&self.config.state_dir),
        };
        let runs = self
            .slots
            .iter_mut()
            .zip(due)
            .filter(|(s, due)| **due && (!s.per_database || main_watched))
            .map(|(slot, _)| {
                let ctx = &ctx;
                async move {
                    let t = Instant::now();
                    let result = match slot.collector.per_database() {
                        Some(p) => p.collect_database(ctx).await.map(|()| None),
                        None => slot.collector.collect(ctx).await.map(Some),
                    };
                    (slot, result, t.elapsed())
                }
            });
        let results = futures_util::future::join_all(runs).await;
        let mut lost = None;
        for (slot, result, took) in results {
            slot.duration += took;
            let name = slot.collector.name();
            if slot.per_database {
                if let Err(e) = result {
                    if matches!(e, collect::CollectError::Connection(_)) {
                        lost = Some(Lost::Collector(e));
                        continue;
                    }
                    let msg = format!("{name}: {e}");
                    slot.db_failures
                        .push(format!("database {}: {e}", conn.dbname));
                    if let Some(r) = round.as_mut() {
                        r.main_failures.push(msg);
                    }
                }
                continue;
            }
            slot.last_run = Some(now);
            match result {
                Ok(out) => {
                    if slot.failing.take().is_some() {
                        tracing::info!(collector = name, "Collector recovered");
                    }
                    slot.last_output = out;
                }
                Err(e) => {
                    slot.errors_total += 1;
                    slot.last_output = None;
                    let msg = e.to_string();
                    if matches!(e, collect::CollectError::Connection(_)) {
                        lost = Some(Lost::Collector(e));
                    }
                    if slot.failing.is_none() {
                        tracing::warn!(collector = name, error = %msg, "Collector failed; the others go on");
                    }
                    slot.failing = Some(msg);
                }
            }
        }
        if let Some(reason) = lost.or_else(|| conn.client.is_closed().then_some(Lost::Closed)) {
            return Err(reason);
        }
        Ok((in_recovery, round))
    }

    /// The per-database collectors in every other watched database, one database at a time on
    /// a connection of its own (opened, used, closed), each bounded by `limit`; then each
    /// per-database collector's output across the databases, and the state of each database.
    async fn poll_databases(
        &mut self,
        due: &[bool],
        in_recovery: bool,
        round: Round,
        limit: Duration,
    ) {
        let config = Arc::clone(&self.config);
        let monitor = &config.monitor;
        let mut states: Vec<(String, Option<String>)> = Vec::new();
        if let Some(conn) = self.conn.as_ref().filter(|_| round.main_watched) {
            let error = (!round.main_failures.is_empty()).then(|| round.main_failures.join("; "));
            states.push((conn.dbname.clone(), error));
        }
        let session = SessionOptions {
            connect_timeout: config.postgres.connect_timeout,
            statement_timeout: monitor.statement_timeout,
            lock_timeout: monitor.lock_timeout,
        };
        let mut cluster_wide = !round.main_watched;
        for dbname in &round.others {
            let read = tokio::time::timeout(
                limit,
                self.read_database(dbname, &session, due, in_recovery, cluster_wide),
            )
            .await;
            let error = match read {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!(
                    "reading it did not finish within {}",
                    crate::units::human_duration_of(limit)
                )),
            };
            if error.is_none() {
                cluster_wide = false;
            }
            states.push((dbname.clone(), error));
        }
        let now = Instant::now();
        for (slot, _) in self
            .slots
            .iter_mut()
            .zip(due)
            .filter(|(s, d)| **d && s.per_database)
        {
            let name = slot.collector.name();
            let Some(p) = slot.collector.per_database() else {
                continue;
            };
            slot.last_output = Some(p.finish(monitor));
            slot.last_run = Some(now);
            if slot.db_failures.is_empty() {
                if slot.failing.take().is_some() {
                    tracing::info!(collector = name, "Collector recovered");
                }
            } else {
                slot.errors_total += 1;
                let msg = slot.db_failures.join("; ");
                if slot.failing.is_none() {
                    tracing::warn!(collector = name, error = %msg, "Collector failed; the others go on");
                }
                slot.failing = Some(msg);
            }
        }
        let at = jiff::Timestamp::now();
        let mut next = BTreeMap::new();
        for (name, error) in states {
            let previous = self.databases.remove(&name);
            let was_failing = previous.as_ref().is_some_and(|p| p.error.is_some());
            match (&error, was_failing) {
                (Some(e), false) => {
                    tracing::warn!(datname = %name, error = %e, "A watched database cannot be read; the others go on")
                }
                (None, true) => {
                    tracing::info!(datname = %name, "A watched database can be read again")
                }
                _ => {}
            }
            let last_read = match &error {
                None => Some(at),
                Some(_) => previous.and_then(|p| p.last_read),
            };
            next.insert(name, WatchedDb { error, last_read });
        }
        self.databases = next;
    }

    /// One other database: connect, run the due per-database collectors concurrently on that
    /// connection, close. `Err` is the text for its status (with the fix when known).
    async fn read_database(
        &mut self,
        dbname: &str,
        session: &SessionOptions,
        due: &[bool],
        in_recovery: bool,
        cluster_wide: bool,
    ) -> Result<(), String> {
        let Some(conn) = &self.conn else {
            return Err("the agent's connection is gone".into());
        };
        let client =
            match collect::watched::target(&self.config.postgres.conninfo, session.clone(), dbname)
            {
                Ok(target) => target.connect().await,
                Err(e) => Err(e),
            };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let fix = collect::watched::diagnose(&conn.client, dbname).await;
                return Err(collect::watched::describe(
                    &collect::watched::connect_error(&e),
                    fix.as_deref(),
                ));
            }
        };
        let ctx = Ctx {
            client: &client,
            version: &conn.version,
            in_recovery,
            dbname,
            cluster_wide,
            config: &self.config.monitor,
            now: jiff::Timestamp::now(),
            repository: self.repo.as_ref(),
            state_dir: Some(&self.config.state_dir),
        };
        let runs = self
            .slots
            .iter_mut()
            .zip(due)
            .filter(|(s, due)| **due && s.per_database)
            .map(|(slot, _)| {
                let ctx = &ctx;
                async move {
                    let t = Instant::now();
                    let result = match slot.collector.per_database() {
                        Some(p) => p.collect_database(ctx).await,
                        None => Ok(()),
                    };
                    (slot, result, t.elapsed())
                }
            });
        let results = futures_util::future::join_all(runs).await;
        let mut failures = Vec::new();
        for (slot, result, took) in results {
            slot.duration += took;
            if let Err(e) = result {
                slot.db_failures.push(format!("database {dbname}: {e}"));
                failures.push(format!("{}: {e}", slot.collector.name()));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// Renders and publishes this poll's snapshot; hands baseline samples to the learner.
    fn publish(&mut self, up: bool, in_recovery: Option<bool>, took: Duration) {
        let now = jiff::Timestamp::now();
        let mut families: Vec<Family> = Vec::new();
        families.push(Family::of(&catalogue::PG_UP).with(&[], if up { 1.0 } else { 0.0 }));
        let mut baseline = Vec::new();
        let mut sections = BTreeMap::new();
        if up {
            for slot in &self.slots {
                if let Some(out) = &slot.last_output {
                    for f in &out.families {
                        if f.baseline {
                            for s in &f.samples {
                                if s.value.is_finite() {
                                    baseline.push((f.series_key(s), s.value));
                                }
                            }
                        }
                    }
                    families.extend(out.families.iter().cloned());
                    if let Some(status) = &out.status {
                        sections.insert(slot.collector.name(), status.clone());
                    }
                }
            }
        }
        families.extend(self.own_metrics(took));
        // postgres_exporter's scrape error: the poll failed, or a collector failed in it.
        let error = !up || self.slots.iter().any(|s| s.failing.is_some());
        families.push(
            Family::of(&catalogue::PG_EXPORTER_LAST_SCRAPE_ERROR)
                .with(&[], if error { 1.0 } else { 0.0 }),
        );
        if let Some(rx) = &self.schedule_rx {
            let schedule = rx.borrow().clone();
            families.extend(schedule.families.iter().cloned());
            sections.insert("schedule", schedule.status.clone());
        }
        let text = crate::metrics::names::render_names(&families, self.config.monitor.metric_names);
        let collectors = self
            .slots
            .iter()
            .map(|s| {
                (
                    s.collector.name(),
                    CollectorStatus {
                        ok: s.failing.is_none() && s.last_run.is_some(),
                        error: s.failing.clone(),
                        errors_total: s.errors_total,
                        duration_seconds: s.duration.as_secs_f64(),
                    },
                )
            })
            .collect();
        let version = self.conn.as_ref().map(|c| c.version.text.clone());
        let snapshot = Snapshot {
            metrics: text,
            pg_up: up,
            down_reason: self.down.clone(),
            in_recovery,
            server_version: version,
            last_poll: Some(now),
            last_success: self.last_success,
            interval: self.config.monitor.interval,
            collectors,
            sections,
            databases: self
                .databases
                .iter()
                .map(|(name, d)| DatabaseStatus {
                    name: name.clone(),
                    state: if d.error.is_none() { "ok" } else { "error" },
                    error: d.error.clone(),
                    last_read: d.last_read,
                })
                .collect(),
            started: self.started,
        };
        self.snapshot_tx.send_replace(Arc::new(snapshot));
        if let Some(tx) = &self.eval_tx {
            // An evaluator that falls behind skips a poll rather than slowing the loop down.
            let _ = tx.try_send(PollResult {
                leader: self.leader_rx.as_ref().is_none_or(|rx| rx.borrow().leader),
                at: now,
                baseline,
                families,
                server_major: self.conn.as_ref().map(|c| c.version.major()),
            });
        }
    }

    fn own_metrics(&self, took: Duration) -> Vec<Family> {
        let mut errors = Family::of(&catalogue::DBAGENT_COLLECTOR_ERRORS_TOTAL);
        let mut up = Family::of(&catalogue::DBAGENT_COLLECTOR_UP);
        let mut durations = Family::of(&catalogue::DBAGENT_COLLECTOR_DURATION_SECONDS);
        for s in &self.slots {
            let name = s.collector.name();
            errors.push(&[("collector", name)], s.errors_total as f64);
            if s.last_run.is_some() {
                up.push(
                    &[("collector", name)],
                    if s.failing.is_none() { 1.0 } else { 0.0 },
                );
                durations.push(&[("collector", name)], s.duration.as_secs_f64());
            }
        }
        let mut watch_up = Family::of(&catalogue::DBAGENT_DATABASE_WATCH_UP);
        for (name, d) in &self.databases {
            watch_up.push(
                &[("datname", name.as_str())],
                if d.error.is_none() { 1.0 } else { 0.0 },
            );
        }
        let mut out = vec![
            errors,
            up,
            durations,
            watch_up,
            Family::of(&catalogue::DBAGENT_POLL_DURATION_SECONDS).with(&[], took.as_secs_f64()),
            Family::of(&catalogue::DBAGENT_POLL_INTERVAL_SECONDS)
                .with(&[], self.config.monitor.interval.as_secs_f64()),
            Family::of(&catalogue::DBAGENT_POLLS_TOTAL).with(&[], self.polls_total as f64),
            Family::of(&catalogue::DBAGENT_POLL_OVERRUNS_TOTAL)
                .with(&[], self.overruns_total as f64),
            Family::of(&catalogue::DBAGENT_CONNECT_ERRORS_TOTAL)
                .with(&[], self.connect_errors_total as f64),
            Family::of(&catalogue::DBAGENT_START_TIME_SECONDS)
                .with(&[], self.started.as_second() as f64),
            Family::of(&catalogue::DBAGENT_RPO_TARGET_SECONDS)
                .with(&[], self.config.objectives.rpo.as_secs_f64()),
            Family::of(&catalogue::DBAGENT_RTO_TARGET_SECONDS)
                .with(&[], self.config.objectives.rto.as_secs_f64()),
            Family::of(&catalogue::DBAGENT_BUILD_INFO)
                .with(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
        ];
        if let Some(t) = self.last_success {
            out.push(
                Family::of(&catalogue::DBAGENT_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS)
                    .with(&[], t.as_millisecond() as f64 / 1000.0),
            );
        }
        out
    }
}
