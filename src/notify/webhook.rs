//! The generic webhook receiver: POSTs Alertmanager's webhook JSON (version 4), so anything
//! that takes Alertmanager webhooks (chat bridges, ticketing, custom automation) takes ours.
//! An optional bearer token is sent as `Authorization: Bearer ...`.

use std::time::Duration;

use serde_json::{Value, json};

use super::config::Webhook;
use super::{AlertInfo, Channel, Delivery, Notification};

/// What Alertmanager writes for an alert that has not ended.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The Alertmanager webhook payload (version 4) for `n`.
pub fn payload(n: &Notification) -> Value {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status.as_str(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": n.external_url,
        "alerts": n.alerts.iter().map(alert).collect::<Vec<_>>(),
    })
}

fn alert(a: &AlertInfo) -> Value {
    json!({
        "status": a.status.as_str(),
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": a.starts_at.to_string(),
        "endsAt": a.ends_at.map(|t| t.to_string()).unwrap_or_else(|| ZERO_TIME.to_string()),
        "generatorURL": a.generator_url,
        "fingerprint": a.fingerprint,
    })
}

impl Channel for Webhook {
    /// No pacing: a webhook receiver takes what comes.
    const PACING: Duration = Duration::ZERO;

    fn endpoint(&self) -> String {
        self.url.clone()
    }

    fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> impl Future<Output = Delivery> + Send {
        send(client, self, n)
    }
}

/// POSTs the payload to the webhook.
pub async fn send(client: &reqwest::Client, cfg: &Webhook, n: &Notification) -> Delivery {
    super::http::post_json(client, &cfg.url, &payload(n), cfg.bearer_token.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::sample;

    #[test]
    fn notify_webhook_payload_is_alertmanager_v4() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&payload(&sample())).unwrap());
    }
}
