//! Dispatch: one delivery attempt through one integration of a receiver, handed to the
//! receiver's module (email, Slack, PagerDuty, webhook). Used by the outbox worker and by
//! `send_test`; below both.

use super::channel::Channel;
use super::config::Receiver;
use super::http;
use super::message::{Delivery, Integration, Notification};

/// Delivers `n` through one integration of `receiver` (no outbox, no retry). For PagerDuty
/// this sends one event per alert of `n`.
pub async fn deliver(receiver: &Receiver, integration: Integration, n: &Notification) -> Delivery {
    let client = match http::client() {
        Ok(c) => c,
        Err(e) => return Delivery::retry(e.to_string()),
    };
    match integration {
        Integration::Email => match &receiver.email {
            Some(cfg) => cfg.send(&client, n).await,
            None => missing(receiver, integration),
        },
        Integration::Slack => match &receiver.slack {
            Some(cfg) => cfg.send(&client, n).await,
            None => missing(receiver, integration),
        },
        Integration::PagerDuty => match &receiver.pagerduty {
            Some(cfg) => cfg.send(&client, n).await,
            None => missing(receiver, integration),
        },
        Integration::Webhook => match &receiver.webhook {
            Some(cfg) => cfg.send(&client, n).await,
            None => missing(receiver, integration),
        },
    }
}

fn missing(receiver: &Receiver, integration: Integration) -> Delivery {
    Delivery::Failed(format!(
        "receiver {} has no {integration} integration any more (alerts.yml changed)",
        receiver.name
    ))
}
