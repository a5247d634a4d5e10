//! The contract of a collector (see the module doc of `collect`): what it sees during a poll
//! ([`Ctx`]), what it returns ([`Output`]) and how it fails ([`CollectError`]). Below every
//! collector and the list of them in `mod.rs`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::MonitorConfig;
use crate::metrics::Family;
use crate::pg::ServerVersion;

/// What a collector sees during one poll.
pub struct Ctx<'a> {
    pub client: &'a tokio_postgres::Client,
    pub version: &'a ServerVersion,
    /// The server is a standby.
    pub in_recovery: bool,
    /// The database the agent is connected to (per-table signals cover this one).
    pub dbname: &'a str,
    pub config: &'a MonitorConfig,
    /// When the poll started.
    pub now: jiff::Timestamp,
    /// The repository and the agent's state directory (for the recovery signals), if known.
    pub repository: Option<&'a crate::repo::Repo>,
    pub state_dir: Option<&'a std::path::Path>,
}

/// What a collector produced in one poll.
#[derive(Debug, Default, Clone)]
pub struct Output {
    pub families: Vec<Family>,
    /// A section for `/api/v1/status` (e.g. the slow queries with their text), if any.
    pub status: Option<serde_json::Value>,
}

impl Output {
    pub fn families(families: Vec<Family>) -> Output {
        Output {
            families,
            status: None,
        }
    }
}

/// Why a collector failed this poll.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{what}: {detail}")]
    Query { what: &'static str, detail: String },
    /// The connection is gone: the poller reconnects.
    #[error("connection lost: {0}")]
    Connection(String),
    #[error("{0}")]
    Other(String),
}

impl CollectError {
    /// Wraps a query error, telling a lost connection apart.
    pub fn query(what: &'static str, e: &tokio_postgres::Error) -> CollectError {
        if e.is_closed() {
            CollectError::Connection(crate::pg::error_detail(e))
        } else {
            CollectError::Query {
                what,
                detail: crate::pg::error_detail(e),
            }
        }
    }
}

pub type CollectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Output, CollectError>> + Send + 'a>>;

/// One signal's collector.
pub trait Collector: Send + Sync {
    /// Stable name: the `collector` label of `dbagent_collector_errors_total`, and the key of
    /// its section in `/api/v1/status`.
    fn name(&self) -> &'static str;

    /// How often it runs: `None` = every poll; `Some(d)` = at most every `d` (its last output
    /// is served in between), for collectors that cost the server more (bloat).
    fn interval(&self, _config: &MonitorConfig) -> Option<Duration> {
        None
    }

    /// Runs one collection.
    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a>;
}
