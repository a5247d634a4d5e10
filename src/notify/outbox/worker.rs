//! The delivery worker: each round splits new notifications into deliveries, sends what is
//! due (one endpoint's deliveries in order and paced, different endpoints concurrently),
//! records each outcome (delivered, retry with backoff, given up) and refreshes the gauges.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::OutboxError;
use super::metrics::OutboxMetrics;
use super::retry::retry_delay;
use super::store::{self, Due, WAKE, due, expand, gauges, now_ms, prune};
use crate::notify::config::OutboxConfig;
use crate::notify::{Channel, Delivery, Integration, Notification, Receiver};
use crate::state::StateDb;

/// How often the worker looks for work when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// How long a paced endpoint may keep one round busy.
const ROUND_BUDGET: Duration = Duration::from_secs(5);

/// How often finished rows beyond `outbox.history` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The endpoint a delivery goes to, as a hash (it may be a secret): deliveries to one
/// endpoint go one after another (and are paced), different endpoints concurrently.
fn endpoint(receiver: &Receiver, integration: Integration) -> String {
    let raw = match integration {
        Integration::Email => receiver.email.as_ref().map(Channel::endpoint),
        Integration::Slack => receiver.slack.as_ref().map(Channel::endpoint),
        Integration::PagerDuty => receiver.pagerduty.as_ref().map(Channel::endpoint),
        Integration::Webhook => receiver.webhook.as_ref().map(Channel::endpoint),
    }
    .unwrap_or_default();
    let h = Sha256::digest(format!("{integration}\0{raw}").as_bytes());
    hex::encode(&h[..12])
}

/// Runs the delivery worker until `cancel`: sends what is due from the outbox in `state_dir`
/// through the receivers of `receivers` (the current alerts.yml; a reload takes effect at the
/// next round). A send in progress when `cancel` fires is finished and recorded. Fails only
/// when the state database cannot be opened; later database errors are logged and retried.
pub async fn run(
    state_dir: PathBuf,
    receivers: watch::Receiver<Arc<Vec<Receiver>>>,
    config: OutboxConfig,
    cancel: CancellationToken,
    metrics: OutboxMetrics,
) -> Result<(), OutboxError> {
    let db = tokio::task::spawn_blocking(move || StateDb::open(&state_dir))
        .await
        .map_err(|e| OutboxError::Task(e.to_string()))??;
    let worker = Worker {
        db: Arc::new(Mutex::new(db)),
        receivers,
        config,
        cancel,
        metrics,
        next_send: Mutex::new(HashMap::new()),
        warned_unknown: Mutex::new(HashSet::new()),
    };
    worker.run().await;
    Ok(())
}

struct Worker {
    db: Arc<Mutex<StateDb>>,
    receivers: watch::Receiver<Arc<Vec<Receiver>>>,
    config: OutboxConfig,
    cancel: CancellationToken,
    metrics: OutboxMetrics,
    /// Per endpoint: not before this instant (pacing).
    next_send: Mutex<HashMap<String, Instant>>,
    /// Notifications already warned about for naming an unknown receiver.
    warned_unknown: Mutex<HashSet<i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Runs `f` on the database on a blocking thread.
    async fn db<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, OutboxError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut g = lock(&db);
            let r = f(g.conn_mut());
            r.map_err(|e| OutboxError::State(g.err(e)))
        })
        .await
        .map_err(|e| OutboxError::Task(e.to_string()))?
    }

    async fn run(&self) {
        let mut failing = false;
        let mut last_prune: Option<Instant> = None;
        tracing::debug!("Notification outbox worker started");
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            let receivers = self.receivers.borrow().clone();
            self.metrics.seed(&receivers);
            let next = match self.round(&receivers).await {
                Ok(next) => {
                    if failing {
                        tracing::info!("The notification outbox works again");
                    }
                    failing = false;
                    next
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "Cannot work the notification outbox; retrying");
                    }
                    failing = true;
                    None
                }
            };
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                let keep = self.config.history;
                if let Err(e) = self.db(move |c| prune(c, keep)).await {
                    tracing::warn!(error = %e, "Cannot prune the notification history");
                }
            }
            let sleep = next.unwrap_or(POLL).min(POLL);
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = WAKE.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        tracing::debug!("Notification outbox worker stopped");
    }

    /// One round: split new notifications, send what is due, refresh the gauges. Returns how
    /// long until the next delivery is due.
    async fn round(&self, receivers: &Arc<Vec<Receiver>>) -> Result<Option<Duration>, OutboxError> {
        let max_age_ms = self.config.max_age.as_millis() as i64;
        let rs = Arc::clone(receivers);
        let (unknown, gave_up) = self
            .db(move |c| expand(c, &rs, now_ms(), max_age_ms))
            .await?;
        for (id, receiver, group) in unknown {
            if lock(&self.warned_unknown).insert(id) {
                tracing::warn!(
                    receiver,
                    group,
                    "A notification names a receiver that alerts.yml does not have; it waits for a configuration that has it, up to outbox.max_age"
                );
            }
        }
        for (receiver, group) in gave_up {
            tracing::error!(
                receiver,
                group,
                max_age = %humantime::format_duration(self.config.max_age),
                "Gave up a notification: its receiver is not in alerts.yml"
            );
            self.metrics.bump(&receiver, "unknown", |c| c.failed += 1);
        }

        let due = self.db(|c| due(c, now_ms())).await?;
        // Group by endpoint: one endpoint's deliveries go in order, endpoints concurrently.
        let mut by_endpoint: BTreeMap<String, Vec<Due>> = BTreeMap::new();
        for d in due {
            let key = receivers
                .iter()
                .find(|r| r.name == d.receiver)
                .map(|r| endpoint(r, d.integration))
                .unwrap_or_else(|| format!("unknown\0{}", d.receiver));
            let rows = by_endpoint.entry(key).or_default();
            // A paced endpoint with a backlog must not hold up the others' next round: take
            // what fits in ROUND_BUDGET; the rest stays due for the next round, in order.
            let fits = match d.integration.pacing().as_millis() {
                0 => usize::MAX,
                ms => ((ROUND_BUDGET.as_millis() / ms) as usize).max(1),
            };
            if rows.len() < fits {
                rows.push(d);
            }
        }
        let work = by_endpoint
            .into_iter()
            .map(|(key, rows)| self.serve_endpoint(key, rows, receivers));
        futures_util::future::join_all(work).await;

        let (depth, oldest, next_due) = self.db(gauges).await?;
        self.metrics.set_depth(depth, oldest);
        Ok(next_due.map(|ms| Duration::from_millis((ms - now_ms()).max(0) as u64)))
    }

    async fn serve_endpoint(&self, key: String, rows: Vec<Due>, receivers: &[Receiver]) {
        for row in rows {
            if self.cancel.is_cancelled() {
                return;
            }
            if let Err(e) = self.deliver(&key, row, receivers).await {
                tracing::error!(error = %e, "Cannot record a notification delivery");
                return;
            }
        }
    }

    async fn deliver(
        &self,
        key: &str,
        row: Due,
        receivers: &[Receiver],
    ) -> Result<(), OutboxError> {
        let age_ms = now_ms() - row.created_ms;
        if age_ms > self.config.max_age.as_millis() as i64 {
            let reason = row
                .last_error
                .clone()
                .unwrap_or_else(|| "never attempted".to_string());
            return self.give_up(&row, &reason, true).await;
        }
        let mut n: Notification = match serde_json::from_str(&row.notification) {
            Ok(n) => n,
            Err(e) => {
                return self
                    .give_up(
                        &row,
                        &format!("unreadable notification in the outbox: {e}"),
                        false,
                    )
                    .await;
            }
        };
        let Some(receiver) = receivers.iter().find(|r| r.name == row.receiver) else {
            let reason = format!("receiver {} is not in alerts.yml", row.receiver);
            return self
                .record(
                    &row,
                    Delivery::Retry {
                        after: None,
                        reason,
                    },
                )
                .await;
        };
        if let Some(fp) = &row.dedup_key {
            n.alerts.retain(|a| &a.fingerprint == fp);
            match n.alerts.first() {
                Some(a) => n.status = a.status,
                None => {
                    return self
                        .give_up(&row, "the alert is missing from its notification", false)
                        .await;
                }
            }
        }
        // Pacing.
        let not_before = lock(&self.next_send).get(key).copied();
        if let Some(t) = not_before {
            let now = Instant::now();
            if t > now {
                tokio::select! {
                    _ = self.cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(t - now) => {}
                }
            }
        }
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        let outcome = crate::notify::deliver(receiver, row.integration, &n).await;
        lock(&self.next_send).insert(key.to_string(), Instant::now() + row.integration.pacing());
        self.record(&row, outcome).await
    }

    async fn record(&self, row: &Due, outcome: Delivery) -> Result<(), OutboxError> {
        let id = row.id;
        let integration = row.integration.as_str();
        let attempts = row.attempts + 1;
        match outcome {
            Delivery::Delivered { answer } => {
                let a = answer.clone();
                self.db(move |c| store::delivered(c, id, attempts, &a))
                    .await?;
                self.metrics
                    .bump(&row.receiver, integration, |c| c.sent += 1);
                tracing::info!(
                    receiver = row.receiver,
                    integration,
                    group = row.group_key,
                    attempts,
                    answer,
                    "Notification delivered"
                );
                Ok(())
            }
            Delivery::Retry { after, reason } => {
                let delay = retry_delay(attempts, after, &self.config);
                let due = now_ms() + delay.as_millis() as i64;
                let r = reason.clone();
                self.db(move |c| store::retry_at(c, id, attempts, due, &r))
                    .await?;
                self.metrics
                    .bump(&row.receiver, integration, |c| c.retries += 1);
                if attempts == 1 || attempts.is_multiple_of(10) {
                    tracing::warn!(
                        receiver = row.receiver,
                        integration,
                        group = row.group_key,
                        attempts,
                        retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)),
                        error = reason,
                        "Notification not delivered yet; will retry"
                    );
                }
                Ok(())
            }
            Delivery::Failed(reason) => self.give_up(row, &reason, false).await,
        }
    }

    async fn give_up(&self, row: &Due, reason: &str, too_old: bool) -> Result<(), OutboxError> {
        let id = row.id;
        let text = if too_old {
            format!(
                "gave up after outbox.max_age ({}): {reason}",
                humantime::format_duration(self.config.max_age)
            )
        } else {
            reason.to_string()
        };
        let t = text.clone();
        self.db(move |c| store::failed(c, id, &t)).await?;
        let integration = row.integration.as_str();
        self.metrics
            .bump(&row.receiver, integration, |c| c.failed += 1);
        let age = humantime::format_duration(Duration::from_secs(
            ((now_ms() - row.created_ms).max(0) / 1000) as u64,
        ));
        tracing::error!(
            receiver = row.receiver,
            integration,
            group = row.group_key,
            attempts = row.attempts,
            age = %age,
            error = text,
            "Gave up delivering a notification"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::Slack;
    use crate::notify::outbox::tests::webhook_receiver;

    #[test]
    fn notify_endpoints_are_hashed_per_integration_and_destination() {
        let a = webhook_receiver("a");
        let b = webhook_receiver("b");
        let hook = endpoint(&a, Integration::Webhook);
        // Two receivers posting to one URL share an endpoint (and its order and pacing).
        assert_eq!(hook, endpoint(&b, Integration::Webhook));
        assert_ne!(hook, endpoint(&a, Integration::PagerDuty));
        assert_eq!(hook.len(), 24);
        assert!(!hook.contains("127.0.0.1"));
        let mut other = webhook_receiver("a");
        if let Some(w) = other.webhook.as_mut() {
            w.url = "http://127.0.0.1:9/other".into();
        }
        assert_ne!(hook, endpoint(&other, Integration::Webhook));
        let mut slack = webhook_receiver("s");
        slack.slack = Some(Slack {
            webhook_url: "https://hooks.slack.com/services/T/B/secret".into(),
            channel: None,
        });
        assert!(!endpoint(&slack, Integration::Slack).contains("secret"));
    }

    #[test]
    fn notify_pacing_follows_each_service_rate_limit() {
        assert_eq!(Integration::Slack.pacing(), Duration::from_secs(1));
        assert_eq!(Integration::PagerDuty.pacing(), Duration::from_millis(500));
        assert_eq!(Integration::Email.pacing(), Duration::ZERO);
        assert_eq!(Integration::Webhook.pacing(), Duration::ZERO);
    }
}
