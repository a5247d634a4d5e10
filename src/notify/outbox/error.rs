//! What can go wrong in the outbox.

use crate::state::StateError;

/// What can go wrong in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot store the notification for receiver {receiver}, group {group}: {source}")]
    Encode {
        receiver: String,
        group: String,
        source: serde_json::Error,
    },
    #[error("the outbox database task failed: {0}")]
    Task(String),
}
