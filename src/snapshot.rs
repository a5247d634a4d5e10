//! What the last poll saw, published once per poll and read by every HTTP request: the
//! rendered /metrics text, readiness and the JSON of /api/v1/status. Requests never touch the
//! database; they read the newest snapshot.
//!
//! Layer: foundation. Uses: metrics, units. Used by: agent, http.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Family;

/// The state of one collector after the last poll.
#[derive(Debug, Clone, Serialize)]
pub struct CollectorStatus {
    pub ok: bool,
    pub error: Option<String>,
    pub errors_total: u64,
    pub duration_seconds: f64,
}

/// Whether one watched database (`monitor.databases`) could be read by the per-database
/// collectors: `/api/v1/status` lists one per database, `dbagent_database_watch_up` mirrors it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    pub name: String,
    /// `ok` or `error`.
    pub state: &'static str,
    /// Why it cannot be read, with the fix when known.
    pub error: Option<String>,
    /// When its per-database collectors last read it completely.
    pub last_read: Option<jiff::Timestamp>,
}

/// One poll's result.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Prometheus text exposition of every family of the poll.
    pub metrics: String,
    pub pg_up: bool,
    /// Why the server is unreachable, while it is.
    pub down_reason: Option<String>,
    pub in_recovery: Option<bool>,
    pub server_version: Option<String>,
    pub last_poll: Option<jiff::Timestamp>,
    pub last_success: Option<jiff::Timestamp>,
    pub interval: Duration,
    pub collectors: BTreeMap<&'static str, CollectorStatus>,
    /// Sections collectors add to /api/v1/status (e.g. `statements`: the top queries with text).
    pub sections: BTreeMap<&'static str, serde_json::Value>,
    /// The watched databases, by name.
    pub databases: Vec<DatabaseStatus>,
    pub started: jiff::Timestamp,
}

impl Snapshot {
    /// Before the first poll.
    pub fn starting(interval: Duration) -> Snapshot {
        Snapshot {
            metrics: String::new(),
            pg_up: false,
            down_reason: Some("the first poll has not finished yet".into()),
            in_recovery: None,
            server_version: None,
            last_poll: None,
            last_success: None,
            interval,
            collectors: BTreeMap::new(),
            sections: BTreeMap::new(),
            databases: Vec::new(),
            started: jiff::Timestamp::now(),
        }
    }

    /// Ready: the last poll reached the server, and it is recent (within three intervals).
    pub fn ready(&self, now: jiff::Timestamp) -> Result<(), NotReady> {
        if !self.pg_up {
            return Err(NotReady::Down(
                self.down_reason
                    .clone()
                    .unwrap_or_else(|| "PostgreSQL is not reachable".into()),
            ));
        }
        let Some(last) = self.last_success else {
            return Err(NotReady::NoPollYet);
        };
        let age = (now - last).total(jiff::Unit::Second).unwrap_or(0.0);
        let limit = (self.interval.as_secs_f64() * 3.0).max(30.0);
        if age > limit {
            return Err(NotReady::Stale { age, limit });
        }
        Ok(())
    }
}

/// Why the agent is not ready (`/readyz` answers 503 with this).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotReady {
    /// The last poll did not reach the server: why.
    #[error("{0}")]
    Down(String),
    #[error("no successful poll yet")]
    NoPollYet,
    /// The last successful poll is older than `limit` seconds.
    #[error(
        "the last successful poll was {} ago (more than {})",
        crate::units::human_duration(*age),
        crate::units::human_duration(*limit)
    )]
    Stale { age: f64, limit: f64 },
}

/// What the evaluation thread publishes for /metrics and /api/v1/status.
#[derive(Debug, Clone, Default)]
pub struct AlertSnapshot {
    pub families: Vec<Family>,
    /// Firing and pending instances, for the status API.
    pub active: Vec<serde_json::Value>,
    /// Why alerting is off, if it is.
    pub disabled: Option<String>,
}
