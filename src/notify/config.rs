//! The `receivers:` section of alerts.yml: where notifications go. Secrets (SMTP password,
//! Slack webhook URL, PagerDuty routing key, webhook bearer token) come from `${ENV}` and are
//! never serialized, logged or printed.

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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    #[serde(deserialize_with = "de::string", skip_serializing)]
    pub webhook_url: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub channel: Option<String>,
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    #[serde(deserialize_with = "de::string", skip_serializing)]
    pub routing_key: String,
    /// Events API endpoint; default https://events.pagerduty.com/v2/enqueue.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub url: Option<String>,
}

/// A generic webhook receiving Alertmanager's webhook JSON (version 4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    #[serde(deserialize_with = "de::string")]
    pub url: String,
    #[serde(default, deserialize_with = "de::opt_string", skip_serializing)]
    pub bearer_token: Option<String>,
}
