//! The `receivers:` section of alerts.yml: where notifications go. Secrets (SMTP password,
//! Slack webhook URL, PagerDuty routing key, webhook bearer token) come from `${ENV}` and are
//! never serialized, logged or printed: their `Debug` shows `<redacted>`. Also the `outbox:`
//! settings of delivery (retry backoff, give-up age, history kept).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::de;

/// One named receiver with one or more integrations.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default)]
    pub slack: Option<Slack>,
    #[serde(default)]
    pub pagerduty: Option<PagerDuty>,
    #[serde(default)]
    pub webhook: Option<Webhook>,
}

/// Email over SMTP.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// `host:port` of the SMTP server.
    #[serde(deserialize_with = "de::string")]
    pub smarthost: String,
    #[serde(deserialize_with = "de::string")]
    pub from: String,
    pub to: Vec<String>,
    /// starttls (default; required), tls (implicit TLS, port 465), or none (plain; loopback
    /// test servers only).
    #[serde(default)]
    pub tls: EmailTls,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string", skip_serializing)]
    pub password: Option<String>,
    /// A PEM file of extra CA certificates to trust for the SMTP server (a relay with a
    /// private CA); the public web roots are trusted either way.
    #[serde(default, deserialize_with = "de::opt_path")]
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// Slack incoming webhook.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    #[serde(deserialize_with = "de::string", skip_serializing)]
    pub webhook_url: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub channel: Option<String>,
}

/// PagerDuty Events API v2.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    #[serde(deserialize_with = "de::string", skip_serializing)]
    pub routing_key: String,
    /// Events API endpoint; default https://events.pagerduty.com/v2/enqueue.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub url: Option<String>,
}

/// A generic webhook receiving Alertmanager's webhook JSON (version 4).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    #[serde(deserialize_with = "de::string")]
    pub url: String,
    #[serde(default, deserialize_with = "de::opt_string", skip_serializing)]
    pub bearer_token: Option<String>,
}

const REDACTED: &str = "<redacted>";

fn redacted<T>(v: &Option<T>) -> Option<&'static str> {
    v.as_ref().map(|_| REDACTED)
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("smarthost", &self.smarthost)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("webhook_url", &REDACTED)
            .field("channel", &self.channel)
            .finish()
    }
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty")
            .field("routing_key", &REDACTED)
            .field("url", &self.url)
            .finish()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("bearer_token", &redacted(&self.bearer_token))
            .finish()
    }
}

/// The `outbox:` section of alerts.yml: how delivery retries. Every key has a default.
///
/// ```yaml
/// outbox:
///   max_age: 24h          # give up (error log line, dbagent_notifications_failed_total) after this
///   initial_backoff: 1s   # first retry delay; doubles per attempt, with jitter
///   max_backoff: 5m       # longest retry delay (a longer Retry-After is honoured, up to 1h)
///   history: 1000         # delivered or given-up notifications kept in state.db
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    #[serde(deserialize_with = "de::duration", serialize_with = "ser_duration")]
    pub max_age: Duration,
    #[serde(deserialize_with = "de::duration", serialize_with = "ser_duration")]
    pub initial_backoff: Duration,
    #[serde(deserialize_with = "de::duration", serialize_with = "ser_duration")]
    pub max_backoff: Duration,
    pub history: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_age: Duration::from_secs(24 * 3600),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            history: 1000,
        }
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_secrets_never_in_debug_or_serialized_output() {
        let r = Receiver {
            name: "all".into(),
            email: Some(Email {
                smarthost: "smtp.example.com:587".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                tls: EmailTls::Starttls,
                username: Some("user".into()),
                password: Some("PASSWORD-SECRET".into()),
                ca_file: None,
            }),
            slack: Some(Slack {
                webhook_url: "https://hooks.slack.com/services/SLACK-SECRET".into(),
                channel: None,
            }),
            pagerduty: Some(PagerDuty {
                routing_key: "ROUTING-SECRET".into(),
                url: None,
            }),
            webhook: Some(Webhook {
                url: "http://127.0.0.1:9099/hook".into(),
                bearer_token: Some("TOKEN-SECRET".into()),
            }),
        };
        let debug = format!("{r:?} {r:#?}");
        let json = serde_json::to_string(&r).unwrap();
        for out in [&debug, &json] {
            assert!(!out.contains("SECRET"), "{out}");
        }
        assert!(debug.contains("<redacted>"));
        assert!(json.contains("smtp.example.com"));
    }

    #[test]
    fn notify_outbox_config_defaults_and_durations() {
        let c: OutboxConfig = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(c, OutboxConfig::default());
        assert_eq!(c.max_age, Duration::from_secs(86400));
        let c: OutboxConfig =
            serde_saphyr::from_str("max_age: 2h\ninitial_backoff: 500ms\n").unwrap();
        assert_eq!(c.max_age, Duration::from_secs(7200));
        assert_eq!(c.initial_backoff, Duration::from_millis(500));
        assert_eq!(c.max_backoff, Duration::from_secs(300));
        assert!(serde_saphyr::from_str::<OutboxConfig>("max_agee: 2h").is_err());
    }
}
