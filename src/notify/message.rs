//! What is delivered: a [`Notification`] (one alert group for one receiver) with its alerts
//! ([`AlertInfo`]), the integrations a receiver has ([`Integration`]) and the outcome of one
//! attempt ([`Delivery`]). Below the receivers, the dispatch and the outbox, which all use it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::Receiver;

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
    pub(super) fn retry(reason: impl Into<String>) -> Delivery {
        Delivery::Retry {
            after: None,
            reason: reason.into(),
        }
    }
}
