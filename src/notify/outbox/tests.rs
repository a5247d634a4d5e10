//! Fixtures shared by the notify tests: a sample notification and a receiver.

use crate::notify::config::{PagerDuty, Webhook};
use crate::notify::{AlertInfo, Notification, Receiver, Status};

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

/// A receiver with a PagerDuty and a webhook integration.
pub(crate) fn webhook_receiver(name: &str) -> Receiver {
    Receiver {
        name: name.into(),
        email: None,
        slack: None,
        pagerduty: Some(PagerDuty {
            routing_key: "k".into(),
            url: None,
        }),
        webhook: Some(Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            bearer_token: None,
        }),
    }
}
