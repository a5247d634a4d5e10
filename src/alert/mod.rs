//! Alerting: rules read the samples of every poll (threshold or deviation from the learned
//! baseline), instances move inactive → pending → firing → resolved with `for:` and
//! `keep_firing_for:`, the route tree groups them, silences and inhibition mute them, and the
//! notifications go to the durable outbox (`crate::notify`). Everything is persisted in
//! state.db, so a restart neither re-pages nor forgets to resolve.
//!
//! Layer: alerting. Uses: baseline, config, metrics, notify, state, units. Used by: agent.

pub mod engine;
pub mod rules;
pub mod silence;
pub mod store;

#[cfg(test)]
mod tests;
