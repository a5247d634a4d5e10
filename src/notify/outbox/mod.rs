//! The durable outbox between the alert engine and the receivers (safety invariant 7).
//!
//! [`Outbox::enqueue`] stores a notification in state.db before anything is sent. The
//! delivery worker ([`run`]) splits it into one delivery per integration of its receiver (for
//! PagerDuty one per alert, so a resolve matches its trigger by dedup_key), sends what is due,
//! and records the outcome: delivered rows are marked done at once and never sent again;
//! retries are rescheduled with exponential backoff and jitter (or the receiver's Retry-After
//! when longer); a permanent refusal, or a delivery still failing after `outbox.max_age`, is
//! given up with an error log line naming receiver and group and
//! `dbagent_notifications_failed_total`. Rows still pending when the process died are sent by
//! the next worker (at least once across a crash; exactly once otherwise).
//!
//! Order: a delivery waits while an older one for the same receiver, group and integration
//! (and PagerDuty dedup_key) is pending, so a resolve never overtakes its trigger. Pacing: one
//! Slack message a second per webhook, two PagerDuty events a second per routing key.
//! Different endpoints are served concurrently.
//!
//! Files: `store.rs` the durable tables (the enqueue side, splitting into deliveries, what is
//! due, recording outcomes, pruning), `worker.rs` the delivery loop (endpoints, pacing,
//! outcomes), `retry.rs` the retry policy, `metrics.rs` the counters and gauges. Each
//! integration's pacing and endpoint are its own ([`super::Channel`], in `slack.rs`,
//! `pagerduty.rs`, `email.rs`, `webhook.rs`).

mod error;
mod metrics;
mod retry;
mod store;
#[cfg(test)]
pub(crate) mod tests;
mod worker;

pub use super::config::OutboxConfig;
pub use error::OutboxError;
pub use metrics::{Counters, OutboxMetrics};
pub use retry::{backoff, retry_delay};
pub use store::{DeliveryRecord, Outbox, recent};
pub use worker::run;
