//! The outbox's metrics: delivery counters per receiver and integration, and the depth and
//! age of the queue, kept by the worker and read by `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::store::now_ms;
use crate::metrics::{Family, catalogue};
use crate::notify::Receiver;

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

    pub(super) fn bump(&self, receiver: &str, integration: &str, f: impl FnOnce(&mut Counters)) {
        self.with(|m| {
            f(m.counters
                .entry((receiver.to_string(), integration.to_string()))
                .or_default())
        });
    }

    /// Makes every configured (receiver, integration) appear with 0.
    pub(super) fn seed(&self, receivers: &[Receiver]) {
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

    pub(super) fn set_depth(&self, depth: u64, oldest_created_ms: Option<i64>) {
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
            let mut sent = Family::of(&catalogue::DBAGENT_NOTIFICATIONS_SENT_TOTAL);
            let mut failed = Family::of(&catalogue::DBAGENT_NOTIFICATIONS_FAILED_TOTAL);
            let mut retries = Family::of(&catalogue::DBAGENT_NOTIFICATION_RETRIES_TOTAL);
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
                Family::of(&catalogue::DBAGENT_OUTBOX_DEPTH).with(&[], m.depth as f64),
                Family::of(&catalogue::DBAGENT_OUTBOX_OLDEST_AGE_SECONDS).with(&[], age),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::webhook_receiver;

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
