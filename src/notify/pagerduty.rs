//! The PagerDuty receiver: Events API v2. One event per alert instance, with the alert's
//! fingerprint as `dedup_key`, so the resolve closes exactly the incident its trigger opened.
//! Severity comes from the `severity` label (critical, warning, info; anything else is
//! error); labels and annotations go into `custom_details`, the runbook into `links`.
//! PagerDuty answers 202 when it accepted an event, 429 when the routing key sends too fast
//! (about 120 events a minute), 400 for an invalid event.

use std::time::Duration;

use serde_json::{Value, json};

use super::config::PagerDuty;
use super::{AlertInfo, Channel, Delivery, Notification, Status};

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limit on `payload.summary`.
const SUMMARY_MAX: usize = 1024;

/// Maps the `severity` label to PagerDuty's severities.
pub fn severity(alert: &AlertInfo) -> &'static str {
    match alert.labels.get("severity").map(String::as_str) {
        Some("critical") => "critical",
        Some("warning") => "warning",
        Some("info") => "info",
        _ => "error",
    }
}

/// Where the event comes from: the alert's `instance` or `cluster` label, the agent's URL, or
/// `dbagent`.
fn source(n: &Notification, alert: &AlertInfo) -> String {
    ["instance", "cluster", "server"]
        .iter()
        .find_map(|k| alert.labels.get(*k).filter(|v| !v.is_empty()).cloned())
        .or_else(|| (!n.external_url.is_empty()).then(|| n.external_url.clone()))
        .unwrap_or_else(|| "dbagent".to_string())
}

/// The event for one alert of `n`: trigger while it fires, resolve once it is resolved.
pub fn event(cfg: &PagerDuty, n: &Notification, alert: &AlertInfo) -> Value {
    match alert.status {
        Status::Resolved => json!({
            "routing_key": cfg.routing_key,
            "event_action": "resolve",
            "dedup_key": alert.fingerprint,
        }),
        Status::Firing => {
            let summary: String = alert.summary().chars().take(SUMMARY_MAX).collect();
            let mut event = json!({
                "routing_key": cfg.routing_key,
                "event_action": "trigger",
                "dedup_key": alert.fingerprint,
                "payload": {
                    "summary": summary,
                    "source": source(n, alert),
                    "severity": severity(alert),
                    "timestamp": alert.starts_at.to_string(),
                    "class": alert.name(),
                    "group": n.group_key,
                    "custom_details": {
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                    },
                },
                "client": "dbagent",
            });
            if !n.external_url.is_empty() {
                event["client_url"] = json!(n.external_url);
            }
            let mut links = Vec::new();
            if let Some(url) = alert.runbook_url() {
                links.push(json!({ "href": url, "text": "Runbook" }));
            }
            if !alert.generator_url.is_empty() {
                links.push(json!({ "href": alert.generator_url, "text": "Source" }));
            }
            if !links.is_empty() {
                event["links"] = Value::Array(links);
            }
            event
        }
    }
}

impl Channel for PagerDuty {
    /// About 120 events per minute per routing key (PagerDuty answers 429 beyond).
    const PACING: Duration = Duration::from_millis(500);

    /// The Events API URL and the routing key (a secret).
    fn endpoint(&self) -> String {
        format!(
            "{}\0{}",
            self.url.as_deref().unwrap_or(DEFAULT_URL),
            self.routing_key
        )
    }

    fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> impl Future<Output = Delivery> + Send {
        send(client, self, n)
    }
}

/// Sends one event per alert of `n` (the outbox hands over one alert at a time); stops at the
/// first that is not delivered.
pub async fn send(client: &reqwest::Client, cfg: &PagerDuty, n: &Notification) -> Delivery {
    let url = cfg.url.as_deref().unwrap_or(DEFAULT_URL);
    let mut answers = Vec::new();
    for alert in &n.alerts {
        match super::http::post_json(client, url, &event(cfg, n, alert), None).await {
            Delivery::Delivered { answer } => answers.push(answer),
            other => return other,
        }
    }
    Delivery::Delivered {
        answer: answers.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::sample;

    fn cfg() -> PagerDuty {
        PagerDuty {
            routing_key: "R0UT1NGKEY".into(),
            url: None,
        }
    }

    #[test]
    fn notify_pagerduty_trigger_event() {
        let n = sample();
        insta::assert_snapshot!(
            serde_json::to_string_pretty(&event(&cfg(), &n, &n.alerts[0])).unwrap()
        );
    }

    #[test]
    fn notify_pagerduty_resolve_event_has_the_same_dedup_key() {
        let n = sample();
        let mut a = n.alerts[0].clone();
        let trigger = event(&cfg(), &n, &a);
        a.status = Status::Resolved;
        let resolve = event(&cfg(), &n, &a);
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        assert_eq!(resolve["routing_key"], "R0UT1NGKEY");
    }

    #[test]
    fn notify_pagerduty_severity_mapping() {
        let mut a = sample().alerts[0].clone();
        for (label, want) in [
            (Some("critical"), "critical"),
            (Some("warning"), "warning"),
            (Some("info"), "info"),
            (Some("page"), "error"),
            (Some("CRITICAL"), "error"),
            (None, "error"),
        ] {
            match label {
                Some(l) => a.labels.insert("severity".into(), l.into()),
                None => a.labels.remove("severity"),
            };
            assert_eq!(severity(&a), want, "{label:?}");
        }
    }
}
