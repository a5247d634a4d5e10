//! Notifications: what the alert engine hands over for delivery (one [`Notification`] per
//! alert group and receiver), the receivers that deliver them (email, Slack, PagerDuty, a
//! generic webhook speaking Alertmanager's webhook JSON), and the durable outbox between the
//! two (stored before it is sent; retried with backoff; survives restarts).
//!
//! The alert engine (`crate::alert`) decides *what* to send and *when* (grouping, repeat,
//! silences, inhibition); this module only delivers, exactly once per enqueued notification.
//!
//! Wiring (for `dbagent run`):
//! ```text
//! let metrics = notify::OutboxMetrics::new();                  // families() for /metrics
//! let worker = tokio::spawn(notify::outbox::run(
//!     state_dir, receivers_rx /* watch<Arc<Vec<Receiver>>> */, outbox_config, cancel, metrics.clone()));
//! let outbox = notify::Outbox::open(&state_dir)?;              // the engine's side
//! outbox.enqueue(&notification)?;                              // blocking: SQLite insert
//! // shutdown: cancel, then await the worker (it finishes at most one send per endpoint)
//! ```
//! `send_test` serves `dbagent alerts test --receiver R`; `outbox::recent` lists deliveries.

pub mod config;
pub mod email;
pub mod http;
pub mod outbox;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use config::Receiver;
pub use outbox::{Outbox, OutboxConfig, OutboxError, OutboxMetrics};

/// Firing or resolved, as Alertmanager writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// One alert instance inside a notification (Alertmanager's webhook `alerts[]` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    pub status: Status,
    /// Includes `alertname` and the rule's labels (severity, ...).
    pub labels: BTreeMap<String, String>,
    /// summary, description, runbook_url, ... (templates already expanded).
    pub annotations: BTreeMap<String, String>,
    pub starts_at: jiff::Timestamp,
    /// Set when resolved.
    pub ends_at: Option<jiff::Timestamp>,
    /// Stable hash of the rule name and sorted labels; PagerDuty's dedup_key.
    pub fingerprint: String,
    /// Where to look (the agent's /api/v1/status), may be empty.
    pub generator_url: String,
}

/// One message to one receiver about one alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The receiver's name in alerts.yml.
    pub receiver: String,
    /// Identifies the group (route + group_by label values); stable across restarts.
    pub group_key: String,
    /// Firing when any alert of the group fires, else resolved.
    pub status: Status,
    pub alerts: Vec<AlertInfo>,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    /// The agent's base URL (e.g. http://127.0.0.1:9188), may be empty.
    pub external_url: String,
}

impl Status {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "firing" => Some(Status::Firing),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }
}

impl Notification {
    /// How many of the alerts fire.
    pub fn firing_count(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .count()
    }

    /// How many of the alerts are resolved.
    pub fn resolved_count(&self) -> usize {
        self.alerts.len() - self.firing_count()
    }

    /// What the group is about, as Alertmanager's default templates say it: the group label
    /// values, then the other common labels in parentheses, e.g.
    /// `HighCacheMiss (severity=warning)`.
    pub fn title(&self) -> String {
        let mut out = self
            .group_labels
            .values()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        if out.is_empty() {
            out = self
                .common_labels
                .get("alertname")
                .or_else(|| self.alerts.first().and_then(|a| a.labels.get("alertname")))
                .cloned()
                .unwrap_or_else(|| "alerts".to_string());
        }
        let rest: Vec<String> = self
            .common_labels
            .iter()
            .filter(|(k, _)| !self.group_labels.contains_key(*k) && k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !rest.is_empty() {
            out.push_str(&format!(" ({})", rest.join(" ")));
        }
        out
    }

    /// `[FIRING:2] HighCacheMiss (severity=warning)` or `[RESOLVED] HighCacheMiss (...)`: the
    /// email subject and the Slack fallback text.
    pub fn subject(&self) -> String {
        match self.status {
            Status::Firing => format!("[FIRING:{}] {}", self.firing_count(), self.title()),
            Status::Resolved => format!("[RESOLVED] {}", self.title()),
        }
    }
}

impl AlertInfo {
    /// The rule's name (`alertname` label).
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert")
    }

    /// The `summary` annotation, or the alert name and its labels.
    pub fn summary(&self) -> String {
        match self.annotations.get("summary") {
            Some(s) if !s.is_empty() => s.clone(),
            _ => {
                let labels: Vec<String> = self
                    .labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alertname")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if labels.is_empty() {
                    self.name().to_string()
                } else {
                    format!("{} ({})", self.name(), labels.join(", "))
                }
            }
        }
    }

    /// The `runbook_url` annotation, when set.
    pub fn runbook_url(&self) -> Option<&str> {
        self.annotations
            .get("runbook_url")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// One way a receiver delivers: a receiver has one or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Integration {
    Email,
    Slack,
    PagerDuty,
    Webhook,
}

impl Integration {
    pub const ALL: [Integration; 4] = [
        Integration::Email,
        Integration::Slack,
        Integration::PagerDuty,
        Integration::Webhook,
    ];

    /// The key in alerts.yml and the `integration` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Integration::Email => "email",
            Integration::Slack => "slack",
            Integration::PagerDuty => "pagerduty",
            Integration::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Integration> {
        Integration::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

impl fmt::Display for Integration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Receiver {
    /// The integrations this receiver has, in a fixed order.
    pub fn integrations(&self) -> Vec<Integration> {
        let mut out = Vec::new();
        if self.email.is_some() {
            out.push(Integration::Email);
        }
        if self.slack.is_some() {
            out.push(Integration::Slack);
        }
        if self.pagerduty.is_some() {
            out.push(Integration::PagerDuty);
        }
        if self.webhook.is_some() {
            out.push(Integration::Webhook);
        }
        out
    }
}

/// The outcome of one delivery attempt. Reasons never contain a secret (webhook URLs, routing
/// keys, passwords, tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver accepted it; `answer` is its status and the start of its body.
    Delivered { answer: String },
    /// Try again later (connection refused, timeout, 5xx, 429), not before `after` when the
    /// receiver said so (Retry-After).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The receiver refused it for good (4xx other than 408/429, a bad address, a
    /// configuration error): retrying would not help.
    Failed(String),
}

impl Delivery {
    fn retry(reason: impl Into<String>) -> Delivery {
        Delivery::Retry {
            after: None,
            reason: reason.into(),
        }
    }
}

/// Delivers `n` through one integration of `receiver` (no outbox, no retry). For PagerDuty
/// this sends one event per alert of `n`.
pub async fn deliver(receiver: &Receiver, integration: Integration, n: &Notification) -> Delivery {
    let client = match http::client() {
        Ok(c) => c,
        Err(e) => return Delivery::retry(e.to_string()),
    };
    match integration {
        Integration::Email => match &receiver.email {
            Some(cfg) => email::send(cfg, n).await,
            None => missing(receiver, integration),
        },
        Integration::Slack => match &receiver.slack {
            Some(cfg) => slack::send(&client, cfg, n).await,
            None => missing(receiver, integration),
        },
        Integration::PagerDuty => match &receiver.pagerduty {
            Some(cfg) => pagerduty::send(&client, cfg, n).await,
            None => missing(receiver, integration),
        },
        Integration::Webhook => match &receiver.webhook {
            Some(cfg) => webhook::send(&client, cfg, n).await,
            None => missing(receiver, integration),
        },
    }
}

fn missing(receiver: &Receiver, integration: Integration) -> Delivery {
    Delivery::Failed(format!(
        "receiver {} has no {integration} integration any more (alerts.yml changed)",
        receiver.name
    ))
}

/// The test notification `dbagent alerts test` sends.
pub fn test_notification(receiver: &str) -> Notification {
    let now = jiff::Timestamp::now();
    let labels: BTreeMap<String, String> = [
        ("alertname".to_string(), "DbagentTest".to_string()),
        ("severity".to_string(), "info".to_string()),
    ]
    .into();
    let annotations: BTreeMap<String, String> = [
        (
            "summary".to_string(),
            "Test notification from dbagent".to_string(),
        ),
        (
            "description".to_string(),
            format!("Sent by `dbagent alerts test --receiver {receiver}`; nothing is wrong."),
        ),
    ]
    .into();
    Notification {
        receiver: receiver.to_string(),
        group_key: format!("dbagent-test/{receiver}"),
        status: Status::Firing,
        alerts: vec![AlertInfo {
            status: Status::Firing,
            labels: labels.clone(),
            annotations: annotations.clone(),
            starts_at: now,
            ends_at: None,
            fingerprint: format!("dbagent-test-{}", now.as_millisecond()),
            generator_url: String::new(),
        }],
        group_labels: [("alertname".to_string(), "DbagentTest".to_string())].into(),
        common_labels: labels,
        common_annotations: annotations,
        external_url: String::new(),
    }
}

/// Why a test notification was not delivered: the receiver's reason, and whether a later try
/// could succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestFailure {
    #[error("temporary failure: {0}")]
    Temporary(String),
    #[error("{0}")]
    Refused(String),
}

/// `dbagent alerts test --receiver R`: sends a test notification through every integration of
/// `receiver` right away (not through the outbox) and returns, per integration, the receiver's
/// answer (status and the start of its body) or why it failed. A PagerDuty test triggers an
/// event and resolves it at once.
pub async fn send_test(receiver: &Receiver) -> Vec<(Integration, Result<String, TestFailure>)> {
    let n = test_notification(&receiver.name);
    let mut out = Vec::new();
    for integration in receiver.integrations() {
        let result = match deliver(receiver, integration, &n).await {
            Delivery::Delivered { answer } => {
                if integration == Integration::PagerDuty {
                    let mut resolved = n.clone();
                    resolved.status = Status::Resolved;
                    for a in &mut resolved.alerts {
                        a.status = Status::Resolved;
                        a.ends_at = Some(jiff::Timestamp::now());
                    }
                    let _ = deliver(receiver, integration, &resolved).await;
                }
                Ok(answer)
            }
            Delivery::Retry { reason, .. } => Err(TestFailure::Temporary(reason)),
            Delivery::Failed(reason) => Err(TestFailure::Refused(reason)),
        };
        out.push((integration, result));
    }
    out
}
