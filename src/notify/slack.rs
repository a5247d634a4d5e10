//! The Slack receiver: an incoming webhook and a Block Kit message. A header says the status
//! (🔥 FIRING / ✅ RESOLVED) and the group, a context line the common labels, then one section
//! per alert (summary, description, labels, start/end, runbook link) up to [`MAX_ALERTS`].
//! Incoming webhooks cannot edit a message, so a resolve is a new `RESOLVED` message. Slack
//! answers 429 with Retry-After when a webhook posts faster than about one message a second.

use std::time::Duration;

use serde_json::{Value, json};

use super::config::Slack;
use super::{AlertInfo, Channel, Delivery, Notification, Status};

/// Alerts shown one by one; the rest are counted in a last line.
pub const MAX_ALERTS: usize = 10;

/// Slack's limits: header text 150 characters, section text 3000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Escapes the three characters Slack's mrkdwn reserves.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit message for `n`.
pub fn message(cfg: &Slack, n: &Notification) -> Value {
    let header = match n.status {
        Status::Firing => format!("🔥 FIRING:{} {}", n.firing_count(), n.title()),
        Status::Resolved => format!("✅ RESOLVED {}", n.title()),
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": truncate(&header, HEADER_MAX), "emoji": true },
    })];
    let mut context = vec![format!("receiver *{}*", escape(&n.receiver))];
    if n.status == Status::Firing && n.resolved_count() > 0 {
        context.push(format!("{} resolved", n.resolved_count()));
    }
    if !n.external_url.is_empty() {
        context.push(format!("<{}|dbagent>", n.external_url));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": context.join(" · ") }],
    }));
    for a in n.alerts.iter().take(MAX_ALERTS) {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate(&section(a), SECTION_MAX) },
        }));
    }
    if n.alerts.len() > MAX_ALERTS {
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": format!("and {} more alerts", n.alerts.len() - MAX_ALERTS),
            }],
        }));
    }
    let mut msg = json!({ "text": n.subject(), "blocks": blocks });
    if let Some(channel) = &cfg.channel {
        msg["channel"] = json!(channel);
    }
    msg
}

fn section(a: &AlertInfo) -> String {
    let icon = match a.status {
        Status::Firing => "🔴",
        Status::Resolved => "🟢",
    };
    let mut out = format!("{icon} *{}*", escape(&a.summary()));
    if let Some(d) = a.annotations.get("description").filter(|d| !d.is_empty()) {
        out.push('\n');
        out.push_str(&escape(d));
    }
    let labels: Vec<String> = a
        .labels
        .iter()
        .map(|(k, v)| format!("`{}={}`", escape(k), escape(v)))
        .collect();
    out.push('\n');
    out.push_str(&labels.join(" "));
    out.push_str(&format!("\nStarted {}", a.starts_at));
    if let Some(end) = a.ends_at {
        out.push_str(&format!(", ended {end}"));
    }
    if let Some(url) = a.runbook_url() {
        out.push_str(&format!("\n<{url}|Runbook>"));
    }
    out
}

impl Channel for Slack {
    /// About one message per second per incoming webhook (Slack answers 429 beyond).
    const PACING: Duration = Duration::from_secs(1);

    /// The incoming webhook (a secret).
    fn endpoint(&self) -> String {
        self.webhook_url.clone()
    }

    fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> impl Future<Output = Delivery> + Send {
        send(client, self, n)
    }
}

/// Posts the message to the incoming webhook.
pub async fn send(client: &reqwest::Client, cfg: &Slack, n: &Notification) -> Delivery {
    super::http::post_json(client, &cfg.webhook_url, &message(cfg, n), None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::{resolved, sample};

    fn cfg() -> Slack {
        Slack {
            webhook_url: "https://hooks.slack.invalid/services/T0/B0/SECRET".into(),
            channel: Some("#dba".into()),
        }
    }

    #[test]
    fn notify_slack_firing_blocks() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&message(&cfg(), &sample())).unwrap());
    }

    #[test]
    fn notify_slack_resolved_blocks() {
        insta::assert_snapshot!(
            serde_json::to_string_pretty(&message(&cfg(), &resolved(&sample()))).unwrap()
        );
    }

    #[test]
    fn notify_slack_caps_the_alerts_shown() {
        let mut n = sample();
        let a = n.alerts[0].clone();
        n.alerts = (0..25).map(|_| a.clone()).collect();
        let m = message(&cfg(), &n);
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2 + MAX_ALERTS + 1);
        assert_eq!(
            blocks.last().unwrap()["elements"][0]["text"],
            "and 15 more alerts"
        );
        assert!(!m.to_string().contains("SECRET"));
    }
}
