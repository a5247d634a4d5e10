//! The evaluation thread of `dbagent run`: after every poll it records the baseline samples,
//! evaluates the alert rules against the poll's families (baseline rules read the store it
//! just updated), persists the alert state, and hands due notifications to the outbox. All of
//! it is blocking SQLite work, so it runs on a thread of its own, fed one poll at a time; a
//! slow disk delays alerts, never polls or scrapes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::alert::engine::{Engine, EngineState, State};
use crate::alert::rules::{AlertsFile, load_alerts};
use crate::baseline::BaselineStore;
use crate::config::Config;
use crate::metrics::Family;
use crate::metrics::catalogue;
use crate::notify::Notification;
use crate::snapshot::AlertSnapshot;
use crate::state::StateDb;

/// One poll's input.
pub struct PollResult {
    pub at: jiff::Timestamp,
    /// Whether this agent led at the time of the poll: rules with `scope: cluster` are
    /// evaluated by the leader only.
    pub leader: bool,
    /// Baseline-flagged series: (series key, value).
    pub baseline: Vec<(String, f64)>,
    /// Every family of the poll (what rules read). Empty when the server was unreachable,
    /// except `pg_up`.
    pub families: Vec<Family>,
    /// The connected server's PostgreSQL major version, if connected.
    pub server_major: Option<u32>,
}

/// Where notifications go (the durable outbox).
pub trait Sink: Send {
    fn enqueue(&mut self, n: &Notification) -> Result<(), crate::notify::OutboxError>;
}

/// Why one evaluation did not complete (it is retried at the next poll).
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Outbox(#[from] crate::notify::OutboxError),
}

/// The thread's state.
pub struct Evaluator {
    pub store: BaselineStore,
    pub db: StateDb,
    pub alerts: Option<AlertsFile>,
    pub alerts_path: PathBuf,
    pub engine_state: EngineState,
    pub sink: Box<dyn Sink>,
    pub external_url: String,
    pub config_rx: watch::Receiver<Arc<Config>>,
    pub snapshot_tx: watch::Sender<Arc<AlertSnapshot>>,
    /// The receivers the delivery worker uses (updated on reload).
    pub receivers_tx: watch::Sender<Arc<Vec<crate::notify::Receiver>>>,
    /// Delivery counters, published with the alert metrics.
    pub outbox_metrics: crate::notify::OutboxMetrics,
    /// The server version the rules were last checked against, and why they do not fit it
    /// (then no rule is evaluated: alerting is off until alerts.yml is fixed).
    pub checked_major: Option<u32>,
    pub version_error: Option<String>,
}

impl Sink for crate::notify::Outbox {
    fn enqueue(&mut self, n: &Notification) -> Result<(), crate::notify::OutboxError> {
        crate::notify::Outbox::enqueue(self, n).map(|_| ())
    }
}

/// How long a series that is no longer observed keeps its baseline.
const BASELINE_RETENTION: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

impl Evaluator {
    /// Runs until the poll loop drops its sender.
    pub fn run(mut self, mut rx: mpsc::Receiver<PollResult>) {
        let mut baseline_failing = false;
        let mut alert_failing = false;
        let mut last_prune: Option<std::time::Instant> = None;
        self.publish();
        while let Some(poll) = rx.blocking_recv() {
            if self.config_rx.has_changed().unwrap_or(false) {
                let config = self.config_rx.borrow_and_update().clone();
                self.reload_alerts(&config.alerts_file);
            }
            if poll.server_major.is_some() && poll.server_major != self.checked_major {
                self.checked_major = poll.server_major;
                self.check_version();
            }
            if !poll.baseline.is_empty() {
                match self.store.observe(poll.at, &poll.baseline) {
                    Ok(()) => {
                        if baseline_failing {
                            tracing::info!("Baselines are being recorded again");
                        }
                        baseline_failing = false;
                    }
                    Err(e) => {
                        if !baseline_failing {
                            tracing::error!(error = %e, "Cannot record baselines; metrics are still served");
                        }
                        baseline_failing = true;
                    }
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3600)) {
                last_prune = Some(std::time::Instant::now());
                match self.store.prune(poll.at, BASELINE_RETENTION) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        series = n,
                        "Dropped baselines of series not seen for 14 days"
                    ),
                    Err(e) => tracing::warn!(error = %e, "Cannot prune old baselines"),
                }
            }
            match self.evaluate(&poll) {
                Ok(()) => {
                    if alert_failing {
                        tracing::info!("Alert evaluation works again");
                    }
                    alert_failing = false;
                }
                Err(e) => {
                    if !alert_failing {
                        tracing::error!(error = %e, "Alert evaluation failed; it is retried at the next poll");
                    }
                    alert_failing = true;
                }
            }
            self.publish();
        }
    }

    fn reload_alerts(&mut self, path: &Path) {
        match load_alerts(path) {
            Ok(file) => {
                if file.is_none() && self.alerts.is_some() {
                    tracing::warn!(alerts = %path.display(), "The alerts file is gone; alerting is off");
                }
                self.receivers_tx.send_replace(Arc::new(
                    file.as_ref()
                        .map(|f| f.receivers.clone())
                        .unwrap_or_default(),
                ));
                self.alerts = file;
                self.alerts_path = path.to_path_buf();
                self.check_version();
            }
            Err(e) => {
                tracing::error!(error = %e, "The alerts file was rejected; keeping the previous rules")
            }
        }
    }

    /// Checks the rules against the server's version (once it is known, again when the file
    /// is reloaded or the server's major version changes); logs a change of the verdict.
    fn check_version(&mut self) {
        let error = match (&self.alerts, self.checked_major) {
            (Some(file), Some(major)) => file
                .check_server_version(major)
                .err()
                .map(|e| e.to_string()),
            // No rules, or no version known yet: nothing to refuse.
            _ => None,
        };
        if error != self.version_error {
            match &error {
                Some(e) => tracing::error!(
                    error = %e,
                    "Alert rules read metrics this PostgreSQL version does not have; alerting is off until alerts.yml is fixed (reloaded on SIGHUP)"
                ),
                None if self.alerts.is_some() => {
                    tracing::info!("Alert rules fit the server's version now; alerting is on")
                }
                None => {}
            }
        }
        self.version_error = error;
    }

    fn evaluate(&mut self, poll: &PollResult) -> Result<(), EvaluateError> {
        let Some(all) = &self.alerts else {
            return Ok(());
        };
        if self.version_error.is_some() {
            return Ok(());
        }
        // A follower evaluates node rules only. Instances of cluster rules it had while it led
        // are dropped without a notification: the new leader owns them now (it fires them
        // again if their condition holds, and resolves them when it clears).
        let follower_file;
        let file = if poll.leader {
            all
        } else {
            let before = self.engine_state.instances.len();
            self.engine_state
                .instances
                .retain(|_, inst| !all.is_cluster_rule(&inst.rule));
            if self.engine_state.instances.len() != before {
                tracing::info!(
                    dropped = before - self.engine_state.instances.len(),
                    "Not the leader: cluster-wide alerts are left to the leader"
                );
            }
            follower_file = all.node_rules_only();
            &follower_file
        };
        let engine = Engine {
            file,
            external_url: &self.external_url,
        };
        let store = &self.store;
        let lookup = |series: &str, at: jiff::Timestamp| store.get(series, at).ok().flatten();
        engine.evaluate(&mut self.engine_state, poll.at, &poll.families, &lookup);
        let silences = crate::alert::silence::list(&self.db, Some(poll.at))?;
        let notifications = engine.flush(&mut self.engine_state, poll.at, &silences);
        // Stored in the outbox before the state that says they were sent: a crash in between
        // sends one twice rather than never.
        for n in &notifications {
            tracing::info!(
                receiver = %n.receiver,
                group = %n.group_key,
                status = ?n.status,
                alerts = n.alerts.len(),
                "Notification queued"
            );
            self.sink.enqueue(n)?;
        }
        crate::alert::store::save(&mut self.db, &self.engine_state)?;
        Ok(())
    }

    fn publish(&self) {
        let mut snap = AlertSnapshot {
            families: self.outbox_metrics.families(),
            ..AlertSnapshot::default()
        };
        let Some(file) = &self.alerts else {
            snap.disabled = Some(format!(
                "no alerts file at {}; alerting is off",
                self.alerts_path.display()
            ));
            snap.families
                .push(Family::of(&catalogue::DBAGENT_ALERT_RULES).with(&[], 0.0));
            self.snapshot_tx.send_replace(Arc::new(snap));
            return;
        };
        if let Some(e) = &self.version_error {
            snap.disabled = Some(e.clone());
            snap.families
                .push(Family::of(&catalogue::DBAGENT_ALERT_RULES).with(&[], 0.0));
            self.snapshot_tx.send_replace(Arc::new(snap));
            return;
        }
        let mut counts: std::collections::BTreeMap<(String, String, &'static str), f64> =
            std::collections::BTreeMap::new();
        for rule in file.rules.iter().filter(|r| r.enabled) {
            let severity = rule.labels.get("severity").cloned().unwrap_or_default();
            counts.insert((rule.name.clone(), severity.clone(), "firing"), 0.0);
            counts.insert((rule.name.clone(), severity, "pending"), 0.0);
        }
        for inst in self.engine_state.instances.values() {
            let st = match inst.state {
                State::Firing => "firing",
                State::Pending => "pending",
                State::Resolved => continue,
            };
            let severity = inst.labels.get("severity").cloned().unwrap_or_default();
            *counts.entry((inst.rule.clone(), severity, st)).or_default() += 1.0;
            snap.active.push(serde_json::json!({
                "alertname": inst.rule,
                "state": st,
                "labels": inst.labels,
                "annotations": inst.annotations,
                "active_since": inst.active_since,
                "fired_at": inst.fired_at,
                "value": inst.value,
                "fingerprint": inst.fingerprint,
            }));
        }
        let mut alerts = Family::of(&catalogue::DBAGENT_ALERTS);
        for ((rule, severity, st), n) in &counts {
            alerts.push(
                &[("alertname", rule), ("severity", severity), ("state", st)],
                *n,
            );
        }
        snap.families.push(alerts);
        snap.families
            .push(Family::of(&catalogue::DBAGENT_ALERT_RULES).with(&[], file.rules.len() as f64));
        self.snapshot_tx.send_replace(Arc::new(snap));
    }
}
