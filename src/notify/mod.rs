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
//!
//! Each integration implements [`Channel`] in its own file: its pacing (Slack's and
//! PagerDuty's rate limits), its endpoint and how it sends.
//!
//! Layer: observation. Uses: config, io_error, metrics, state, units. Used by: agent, alert.

mod channel;
pub mod config;
mod deliver;
pub mod email;
pub mod http;
mod message;
pub mod outbox;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;

pub use channel::Channel;
pub use config::Receiver;
pub use deliver::deliver;
pub use message::{AlertInfo, Delivery, Integration, Notification, Status};
pub use outbox::{Outbox, OutboxConfig, OutboxError, OutboxMetrics};

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
