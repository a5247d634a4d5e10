//! Notifications: what the alert engine hands over for delivery (one [`Notification`] per
//! alert group and receiver), the receivers that deliver them (email, Slack, PagerDuty, a
//! generic webhook speaking Alertmanager's webhook JSON), and the durable outbox between the
//! two (stored before it is sent; retried with backoff; survives restarts).
//!
//! The alert engine (`crate::alert`) decides *what* to send and *when* (grouping, repeat,
//! silences, inhibition); this module only delivers, exactly once per enqueued notification.

pub mod config;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use config::Receiver;

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
