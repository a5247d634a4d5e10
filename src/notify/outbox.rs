//! The durable outbox between the alert engine and the receivers (safety invariant 7).
//!
//! [`Outbox::enqueue`] stores a notification in state.db before anything is sent. The
//! delivery worker ([`run`]) splits it into one delivery per integration of its receiver (for
//! PagerDuty one per alert, so a resolve matches its trigger by dedup_key), sends what is due,
//! and records the outcome: delivered rows are marked done at once and never sent again;
//! retries are rescheduled with exponential backoff and jitter (or the receiver's Retry-After
//! when longer); a permanent refusal, or a delivery still failing after `outbox.max_age`, is
//! given up with an error log line naming receiver and group and
//! `dbagent_notifications_failed_total`. Rows still pending when the process died are sent by
//! the next worker (at least once across a crash; exactly once otherwise).
//!
//! Order: a delivery waits while an older one for the same receiver, group and integration
//! (and PagerDuty dedup_key) is pending, so a resolve never overtakes its trigger. Pacing: one
//! Slack message a second per webhook, two PagerDuty events a second per routing key.
//! Different endpoints are served concurrently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::params;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Integration, Notification, Receiver};
use crate::metrics::Family;
use crate::state::{StateDb, StateError};

pub use super::config::OutboxConfig;

/// How often the worker looks for work when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// How many due deliveries one round picks up.
const BATCH: usize = 500;

/// How long a paced endpoint may keep one round busy.
const ROUND_BUDGET: Duration = Duration::from_secs(5);

/// How often finished rows beyond `outbox.history` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Wakes the worker of this process when a notification is enqueued.
static WAKE: Notify = Notify::const_new();

/// What can go wrong in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot store the notification for receiver {receiver}, group {group}: {source}")]
    Encode {
        receiver: String,
        group: String,
        source: serde_json::Error,
    },
    #[error("the outbox database task failed: {0}")]
    Task(String),
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The enqueue side of the outbox (used by the alert engine). SQLite is blocking: call it
/// from a blocking context (the engine's thread or `spawn_blocking`); an insert takes
/// milliseconds.
#[derive(Debug)]
pub struct Outbox {
    db: StateDb,
}

/// One delivery as `dbagent alerts` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub receiver: String,
    pub group_key: String,
    pub integration: String,
    /// PagerDuty: the alert fingerprint.
    pub dedup_key: Option<String>,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: u32,
    pub created: jiff::Timestamp,
    pub due: jiff::Timestamp,
    pub done: Option<jiff::Timestamp>,
    pub last_error: Option<String>,
    /// The receiver's answer when delivered.
    pub answer: Option<String>,
}

impl Outbox {
    /// Opens (creating and migrating when needed) the outbox in `state_dir`'s state.db.
    pub fn open(state_dir: &Path) -> Result<Outbox, OutboxError> {
        Ok(Outbox {
            db: StateDb::open(state_dir)?,
        })
    }

    /// Stores `n` durably (committed when this returns) and wakes the delivery worker.
    /// Returns the notification's id in the outbox.
    pub fn enqueue(&self, n: &Notification) -> Result<i64, OutboxError> {
        let json = serde_json::to_string(n).map_err(|source| OutboxError::Encode {
            receiver: n.receiver.clone(),
            group: n.group_key.clone(),
            source,
        })?;
        self.db
            .conn()
            .execute(
                "INSERT INTO notify_outbox (receiver, group_key, status, notification, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![n.receiver, n.group_key, n.status.as_str(), json, now_ms()],
            )
            .map_err(|e| self.db.err(e))?;
        let id = self.db.conn().last_insert_rowid();
        WAKE.notify_one();
        Ok(id)
    }

    /// The newest `limit` deliveries, newest first (pending ones included).
    pub fn recent(&self, limit: usize) -> Result<Vec<DeliveryRecord>, OutboxError> {
        recent(&self.db, limit)
    }
}

/// The newest `limit` deliveries of the state database, newest first.
pub fn recent(db: &StateDb, limit: usize) -> Result<Vec<DeliveryRecord>, OutboxError> {
    let ts = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap_or_default();
    let run = || -> rusqlite::Result<Vec<DeliveryRecord>> {
        let mut st = db.conn().prepare(
            "SELECT id, receiver, group_key, integration, dedup_key, state, attempts, created_ms,
                    due_ms, done_ms, last_error, answer
             FROM notify_delivery ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(DeliveryRecord {
                id: r.get(0)?,
                receiver: r.get(1)?,
                group_key: r.get(2)?,
                integration: r.get(3)?,
                dedup_key: r.get(4)?,
                state: r.get(5)?,
                attempts: r.get(6)?,
                created: ts(r.get(7)?),
                due: ts(r.get(8)?),
                done: r.get::<_, Option<i64>>(9)?.map(ts),
                last_error: r.get(10)?,
                answer: r.get(11)?,
            })
        })?;
        rows.collect()
    };
    run().map_err(|e| OutboxError::State(db.err(e)))
}

/// The retry delay after `attempt` failed attempts (1-based): `initial · 2^(attempt-1)`
/// capped at `max`, then "equal jitter": a random point in the upper half, so the result lies
/// in `[d/2, d]`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    let d = initial.saturating_mul(exp).min(max);
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

/// When to try again after `attempts` failed attempts: the backoff, or the receiver's
/// Retry-After when that is longer (capped at [`super::http::MAX_RETRY_AFTER`]).
pub fn retry_delay(
    attempts: u32,
    retry_after: Option<Duration>,
    config: &OutboxConfig,
) -> Duration {
    let delay = backoff(attempts, config.initial_backoff, config.max_backoff);
    match retry_after {
        Some(after) => delay.max(after.min(super::http::MAX_RETRY_AFTER)),
        None => delay,
    }
}

/// The minimum spacing between two messages to the same endpoint.
fn pacing(integration: Integration) -> Duration {
    match integration {
        // Slack: about one message per second per incoming webhook.
        Integration::Slack => Duration::from_secs(1),
        // PagerDuty: about 120 events per minute per routing key.
        Integration::PagerDuty => Duration::from_millis(500),
        Integration::Email | Integration::Webhook => Duration::ZERO,
    }
}

/// The endpoint a delivery goes to, as a hash (it may be a secret): deliveries to one
/// endpoint go one after another (and are paced), different endpoints concurrently.
fn endpoint(receiver: &Receiver, integration: Integration) -> String {
    let raw = match integration {
        Integration::Email => receiver.email.as_ref().map(|c| c.smarthost.clone()),
        Integration::Slack => receiver.slack.as_ref().map(|c| c.webhook_url.clone()),
        Integration::PagerDuty => receiver.pagerduty.as_ref().map(|c| {
            format!(
                "{}\0{}",
                c.url.as_deref().unwrap_or(super::pagerduty::DEFAULT_URL),
                c.routing_key
            )
        }),
        Integration::Webhook => receiver.webhook.as_ref().map(|c| c.url.clone()),
    }
    .unwrap_or_default();
    let h = Sha256::digest(format!("{integration}\0{raw}").as_bytes());
    hex::encode(&h[..12])
}

/// Delivery counters and the outbox gauges, shared between the worker and `/metrics`.
/// Cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub struct OutboxMetrics(Arc<Mutex<MetricsInner>>);

#[derive(Debug, Default)]
struct MetricsInner {
    counters: BTreeMap<(String, String), Counters>,
    depth: u64,
    oldest_created_ms: Option<i64>,
}

/// Counters of one (receiver, integration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub failed: u64,
    pub retries: u64,
}

impl OutboxMetrics {
    pub fn new() -> OutboxMetrics {
        OutboxMetrics::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut MetricsInner) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn bump(&self, receiver: &str, integration: &str, f: impl FnOnce(&mut Counters)) {
        self.with(|m| {
            f(m.counters
                .entry((receiver.to_string(), integration.to_string()))
                .or_default())
        });
    }

    /// Makes every configured (receiver, integration) appear with 0.
    fn seed(&self, receivers: &[Receiver]) {
        self.with(|m| {
            for r in receivers {
                for i in r.integrations() {
                    m.counters
                        .entry((r.name.clone(), i.as_str().to_string()))
                        .or_default();
                }
            }
        });
    }

    fn set_depth(&self, depth: u64, oldest_created_ms: Option<i64>) {
        self.with(|m| {
            m.depth = depth;
            m.oldest_created_ms = oldest_created_ms;
        });
    }

    /// The counters of one receiver integration.
    pub fn counters(&self, receiver: &str, integration: &str) -> Counters {
        self.with(|m| {
            m.counters
                .get(&(receiver.to_string(), integration.to_string()))
                .copied()
                .unwrap_or_default()
        })
    }

    /// Deliveries not yet done (as of the worker's last round).
    pub fn depth(&self) -> u64 {
        self.with(|m| m.depth)
    }

    /// The families for `/metrics`.
    pub fn families(&self) -> Vec<Family> {
        self.with(|m| {
            let mut sent = Family::counter(
                "dbagent_notifications_sent_total",
                "Notifications a receiver accepted, by receiver and integration.",
            );
            let mut failed = Family::counter(
                "dbagent_notifications_failed_total",
                "Notifications given up (refused for good, or still failing after outbox.max_age), by receiver and integration.",
            );
            let mut retries = Family::counter(
                "dbagent_notification_retries_total",
                "Delivery attempts that will be retried (connection errors, timeouts, 5xx, 429), by receiver and integration.",
            );
            for ((r, i), c) in &m.counters {
                let labels = [("receiver", r.as_str()), ("integration", i.as_str())];
                sent.push(&labels, c.sent as f64);
                failed.push(&labels, c.failed as f64);
                retries.push(&labels, c.retries as f64);
            }
            let age = m
                .oldest_created_ms
                .map(|ms| ((now_ms() - ms).max(0) as f64) / 1000.0)
                .unwrap_or(0.0);
            vec![
                sent,
                failed,
                retries,
                Family::gauge(
                    "dbagent_outbox_depth",
                    "Notification deliveries waiting in the outbox.",
                )
                .with(&[], m.depth as f64),
                Family::gauge(
                    "dbagent_outbox_oldest_age_seconds",
                    "Age of the oldest notification waiting in the outbox (0 when empty).",
                )
                .with(&[], age),
            ]
        })
    }
}

/// A delivery picked up for sending.
#[derive(Debug, Clone)]
struct Due {
    id: i64,
    receiver: String,
    group_key: String,
    integration: Integration,
    dedup_key: Option<String>,
    attempts: u32,
    created_ms: i64,
    notification: String,
    last_error: Option<String>,
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
            let fits = match pacing(d.integration).as_millis() {
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
        let outcome = super::deliver(receiver, row.integration, &n).await;
        lock(&self.next_send).insert(key.to_string(), Instant::now() + pacing(row.integration));
        self.record(&row, outcome).await
    }

    async fn record(&self, row: &Due, outcome: Delivery) -> Result<(), OutboxError> {
        let id = row.id;
        let integration = row.integration.as_str();
        let attempts = row.attempts + 1;
        match outcome {
            Delivery::Delivered { answer } => {
                let a = answer.clone();
                self.db(move |c| {
                    c.execute(
                        "UPDATE notify_delivery SET state = 'delivered', attempts = ?2, done_ms = ?3,
                                last_error = NULL, answer = ?4 WHERE id = ?1",
                        params![id, attempts, now_ms(), a],
                    )
                })
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
                self.db(move |c| {
                    c.execute(
                        "UPDATE notify_delivery SET attempts = ?2, due_ms = ?3, last_error = ?4
                         WHERE id = ?1",
                        params![id, attempts, due, r],
                    )
                })
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
        self.db(move |c| {
            c.execute(
                "UPDATE notify_delivery SET state = 'failed', done_ms = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, now_ms(), t],
            )
        })
        .await?;
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

/// Splits new notifications into deliveries. Returns the notifications whose receiver is
/// unknown (id, receiver, group), and those given up for it after `max_age_ms` (receiver,
/// group).
#[allow(clippy::type_complexity)]
fn expand(
    c: &mut rusqlite::Connection,
    receivers: &[Receiver],
    now: i64,
    max_age_ms: i64,
) -> rusqlite::Result<(Vec<(i64, String, String)>, Vec<(String, String)>)> {
    // Most rounds have nothing new: check without taking the write lock.
    let any: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM notify_outbox WHERE expanded = 0)",
        [],
        |r| r.get(0),
    )?;
    if !any {
        return Ok((Vec::new(), Vec::new()));
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<(i64, String, String, String, i64)> = {
        let mut st = tx.prepare(
            "SELECT id, receiver, group_key, notification, created_ms FROM notify_outbox
             WHERE expanded = 0 ORDER BY id",
        )?;
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut unknown = Vec::new();
    let mut gave_up = Vec::new();
    for (id, receiver, group, json, created_ms) in rows {
        let Some(r) = receivers.iter().find(|r| r.name == receiver) else {
            if now - created_ms > max_age_ms {
                tx.execute("UPDATE notify_outbox SET expanded = 2 WHERE id = ?1", [id])?;
                gave_up.push((receiver, group));
            } else {
                unknown.push((id, receiver, group));
            }
            continue;
        };
        let fingerprints: Vec<String> = serde_json::from_str::<Notification>(&json)
            .map(|n| n.alerts.into_iter().map(|a| a.fingerprint).collect())
            .unwrap_or_default();
        for integration in r.integrations() {
            let keys: Vec<Option<&str>> = if integration == Integration::PagerDuty {
                fingerprints.iter().map(|f| Some(f.as_str())).collect()
            } else {
                vec![None]
            };
            for key in keys {
                tx.execute(
                    "INSERT INTO notify_delivery
                        (outbox_id, receiver, group_key, integration, dedup_key, created_ms, due_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![id, receiver, group, integration.as_str(), key, created_ms],
                )?;
            }
        }
        tx.execute("UPDATE notify_outbox SET expanded = 1 WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok((unknown, gave_up))
}

/// The deliveries due now whose predecessors (same receiver, group, integration, dedup_key)
/// are done.
fn due(c: &mut rusqlite::Connection, now: i64) -> rusqlite::Result<Vec<Due>> {
    let mut st = c.prepare_cached(
        "SELECT d.id, d.receiver, d.group_key, d.integration, d.dedup_key, d.attempts,
                d.created_ms, o.notification, d.last_error
         FROM notify_delivery d JOIN notify_outbox o ON o.id = d.outbox_id
         WHERE d.state = 'pending' AND d.due_ms <= ?1
           AND NOT EXISTS (
             SELECT 1 FROM notify_delivery p
             WHERE p.receiver = d.receiver AND p.group_key = d.group_key
               AND p.integration = d.integration AND p.state = 'pending'
               AND p.dedup_key IS d.dedup_key AND p.id < d.id)
         ORDER BY d.id LIMIT ?2",
    )?;
    let rows = st.query_map(params![now, BATCH as i64], |r| {
        let integration: String = r.get(3)?;
        Ok(Due {
            id: r.get(0)?,
            receiver: r.get(1)?,
            group_key: r.get(2)?,
            integration: Integration::parse(&integration).unwrap_or(Integration::Webhook),
            dedup_key: r.get(4)?,
            attempts: r.get(5)?,
            created_ms: r.get(6)?,
            notification: r.get(7)?,
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Depth, oldest creation time, and the next due time of the outbox.
fn gauges(c: &mut rusqlite::Connection) -> rusqlite::Result<(u64, Option<i64>, Option<i64>)> {
    let (pending, oldest, next): (i64, Option<i64>, Option<i64>) = c.query_row(
        "SELECT count(*), min(created_ms), min(due_ms) FROM notify_delivery WHERE state = 'pending'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (new, new_oldest): (i64, Option<i64>) = c.query_row(
        "SELECT count(*), min(created_ms) FROM notify_outbox WHERE expanded = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let oldest = match (oldest, new_oldest) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(((pending + new) as u64, oldest, next))
}

/// Deletes finished notifications (every delivery done) beyond the newest `keep`.
fn prune(c: &mut rusqlite::Connection, keep: u32) -> rusqlite::Result<usize> {
    c.execute(
        "DELETE FROM notify_outbox WHERE id IN (
           SELECT o.id FROM notify_outbox o
           WHERE o.expanded != 0
             AND NOT EXISTS (SELECT 1 FROM notify_delivery d
                             WHERE d.outbox_id = o.id AND d.state = 'pending')
           ORDER BY o.id DESC LIMIT -1 OFFSET ?1)",
        [keep],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::notify::{AlertInfo, Status};

    /// Two HighCacheMiss alerts firing, one group.
    pub(crate) fn sample() -> Notification {
        let alert = |db: &str, fp: &str| AlertInfo {
            status: Status::Firing,
            labels: [
                ("alertname", "HighCacheMiss"),
                ("datname", db),
                ("severity", "warning"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [
                ("summary", format!("Cache hit ratio low on {db}")),
                (
                    "description",
                    format!("Cache hit ratio of {db} is 0.71, below 0.90 for 10m."),
                ),
                (
                    "runbook_url",
                    "https://runbooks.example.com/cache".to_string(),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            starts_at: "2026-11-21T08:00:00Z".parse().unwrap(),
            ends_at: None,
            fingerprint: fp.to_string(),
            generator_url: "http://127.0.0.1:9188/api/v1/status".to_string(),
        };
        Notification {
            receiver: "oncall".into(),
            group_key: "{}:{alertname=\"HighCacheMiss\"}".into(),
            status: Status::Firing,
            alerts: vec![
                alert("app", "a1b2c3d4e5f60718"),
                alert("billing", "0f1e2d3c4b5a6978"),
            ],
            group_labels: [("alertname".to_string(), "HighCacheMiss".to_string())].into(),
            common_labels: [
                ("alertname".to_string(), "HighCacheMiss".to_string()),
                ("severity".to_string(), "warning".to_string()),
            ]
            .into(),
            common_annotations: [(
                "runbook_url".to_string(),
                "https://runbooks.example.com/cache".to_string(),
            )]
            .into(),
            external_url: "http://127.0.0.1:9188".into(),
        }
    }

    /// `n` with every alert resolved.
    pub(crate) fn resolved(n: &Notification) -> Notification {
        let mut n = n.clone();
        n.status = Status::Resolved;
        for a in &mut n.alerts {
            a.status = Status::Resolved;
            a.ends_at = Some("2026-11-21T08:30:00Z".parse().unwrap());
        }
        n
    }

    #[test]
    fn notify_backoff_doubles_within_jitter_bounds_and_caps() {
        let initial = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        for attempt in 1..=40u32 {
            let full = initial
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(max);
            for _ in 0..50 {
                let d = backoff(attempt, initial, max);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(1, initial, max) <= Duration::from_secs(1));
        assert!(backoff(100, initial, max) >= Duration::from_secs(150));
    }

    #[test]
    fn notify_retry_after_wins_when_longer_than_the_backoff() {
        let c = OutboxConfig::default();
        let d = retry_delay(1, Some(Duration::from_secs(30)), &c);
        assert_eq!(d, Duration::from_secs(30));
        // A short Retry-After does not shorten the backoff.
        let d = retry_delay(9, Some(Duration::from_secs(1)), &c);
        assert!(d >= Duration::from_secs(128), "{d:?}");
        // An absurd one is capped.
        let d = retry_delay(1, Some(Duration::from_secs(86400)), &c);
        assert_eq!(d, crate::notify::http::MAX_RETRY_AFTER);
    }

    fn webhook_receiver(name: &str) -> Receiver {
        Receiver {
            name: name.into(),
            email: None,
            slack: None,
            pagerduty: Some(super::super::config::PagerDuty {
                routing_key: "k".into(),
                url: None,
            }),
            webhook: Some(super::super::config::Webhook {
                url: "http://127.0.0.1:9/hook".into(),
                bearer_token: None,
            }),
        }
    }

    #[test]
    fn notify_outbox_enqueue_expands_per_integration_and_pagerduty_per_alert() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        outbox.enqueue(&sample()).unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        let (unknown, gave_up) = expand(
            db.conn_mut(),
            &[webhook_receiver("oncall")],
            now_ms(),
            1_000_000,
        )
        .unwrap();
        assert!(unknown.is_empty() && gave_up.is_empty());
        let recs = outbox.recent(10).unwrap();
        let mut kinds: Vec<(String, Option<String>)> = recs
            .iter()
            .map(|r| (r.integration.clone(), r.dedup_key.clone()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                (
                    "pagerduty".to_string(),
                    Some("0f1e2d3c4b5a6978".to_string())
                ),
                (
                    "pagerduty".to_string(),
                    Some("a1b2c3d4e5f60718".to_string())
                ),
                ("webhook".to_string(), None),
            ]
        );
        // The second notification of the same group waits for the first.
        outbox.enqueue(&resolved(&sample())).unwrap();
        expand(
            db.conn_mut(),
            &[webhook_receiver("oncall")],
            now_ms(),
            1_000_000,
        )
        .unwrap();
        let due_now = due(db.conn_mut(), now_ms()).unwrap();
        assert_eq!(due_now.len(), 3);
        assert!(due_now.iter().all(|d| d.id <= 3));
        let (depth, oldest, _) = gauges(db.conn_mut()).unwrap();
        assert_eq!(depth, 6);
        assert!(oldest.is_some());
    }

    #[test]
    fn notify_outbox_unknown_receiver_waits_then_gives_up() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        outbox.enqueue(&sample()).unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        let (unknown, gave_up) = expand(
            db.conn_mut(),
            &[webhook_receiver("other")],
            now_ms(),
            60_000,
        )
        .unwrap();
        assert_eq!(unknown.len(), 1);
        assert!(gave_up.is_empty());
        let (unknown, gave_up) = expand(
            db.conn_mut(),
            &[webhook_receiver("other")],
            now_ms() + 120_000,
            60_000,
        )
        .unwrap();
        assert!(unknown.is_empty());
        assert_eq!(gave_up, [("oncall".to_string(), sample().group_key)]);
        assert_eq!(gauges(db.conn_mut()).unwrap().0, 0);
    }

    #[test]
    fn notify_outbox_prune_keeps_history_and_pending() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        for _ in 0..5 {
            outbox.enqueue(&sample()).unwrap();
        }
        let mut db = StateDb::open(tmp.path()).unwrap();
        let mut r = webhook_receiver("oncall");
        r.pagerduty = None;
        expand(db.conn_mut(), &[r], now_ms(), 1_000_000).unwrap();
        db.conn()
            .execute(
                "UPDATE notify_delivery SET state = 'delivered' WHERE id <= 4",
                [],
            )
            .unwrap();
        assert_eq!(prune(db.conn_mut(), 2).unwrap(), 2);
        let ids: Vec<i64> = outbox.recent(10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [5, 4, 3]);
    }

    #[test]
    fn notify_metrics_families() {
        let m = OutboxMetrics::new();
        m.seed(&[webhook_receiver("oncall")]);
        m.bump("oncall", "webhook", |c| c.sent += 2);
        m.set_depth(3, Some(now_ms() - 5000));
        let text = crate::metrics::render(&m.families());
        assert!(
            text.contains(
                "dbagent_notifications_sent_total{receiver=\"oncall\",integration=\"webhook\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "dbagent_notifications_failed_total{receiver=\"oncall\",integration=\"pagerduty\"} 0"
        ));
        assert!(text.contains("dbagent_outbox_depth 3"));
        assert!(
            text.contains("dbagent_outbox_oldest_age_seconds 5"),
            "{text}"
        );
    }
}
