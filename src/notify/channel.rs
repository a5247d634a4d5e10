//! What each integration (email, Slack, PagerDuty, webhook) provides to the outbox: its
//! pacing (the service's rate limit), its endpoint and how it sends. Each integration's file
//! implements [`Channel`] next to its message format, so a service's rules live in one place.

use std::time::Duration;

use super::config;
use super::message::{Delivery, Integration, Notification};

impl Integration {
    /// The minimum spacing between two messages to one endpoint of this integration.
    pub fn pacing(self) -> Duration {
        match self {
            Integration::Email => <config::Email as Channel>::PACING,
            Integration::Slack => <config::Slack as Channel>::PACING,
            Integration::PagerDuty => <config::PagerDuty as Channel>::PACING,
            Integration::Webhook => <config::Webhook as Channel>::PACING,
        }
    }
}

/// One integration of a receiver (its settings in alerts.yml) as the outbox uses it: how fast
/// its service takes messages, which endpoint a message goes to, and how one is sent. Each
/// integration's file implements it next to its message format, so a service's rules live in
/// one place.
pub trait Channel {
    /// The minimum spacing between two messages to one endpoint (the service's rate limit).
    const PACING: Duration;

    /// What identifies the endpoint: deliveries to one endpoint go one after another (and are
    /// paced), different endpoints concurrently. May be a secret (a Slack webhook URL): the
    /// outbox keeps only a hash of it.
    fn endpoint(&self) -> String;

    /// Sends `n` once (no retry); the outcome tells the outbox what to do next.
    fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> impl Future<Output = Delivery> + Send;
}
