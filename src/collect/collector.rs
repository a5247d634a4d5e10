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
    /// The database `client` is connected to (per-database collectors read this one).
    pub dbname: &'a str,
    /// Whether cluster-wide views are read in this run: true for the agent's own connection,
    /// false for the other databases a [`PerDatabase`] collector visits in the same poll (so
    /// that a cluster-wide signal is read once, not once per database).
    pub cluster_wide: bool,
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

    /// Runs one collection. For a [`PerDatabase`] collector: the database of `ctx` alone.
    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a>;

    /// Collectors that read per-database catalogs and views return themselves: the poller then
    /// runs them in every database `monitor.databases` selects instead of calling `collect`.
    fn per_database(&mut self) -> Option<&mut dyn PerDatabase> {
        None
    }
}

pub type FoldFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CollectError>> + Send + 'a>>;

/// A collector whose signal lives in each database (tables, indexes, the advisor's samples).
/// In one poll the poller calls [`PerDatabase::collect_database`] once per selected database,
/// one database at a time, then [`PerDatabase::finish`] once. The collector folds each
/// database into a bounded result as it goes (top N per signal across the cluster plus an
/// `(other)` total), so it never holds every database's rows at once.
pub trait PerDatabase: Send {
    /// Reads the database of `ctx` and folds it into this poll's result. On error nothing of
    /// that database is kept.
    fn collect_database<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> FoldFuture<'a>;

    /// This poll's output across the databases folded since the last `finish`; starts the
    /// next fold empty.
    fn finish(&mut self, config: &MonitorConfig) -> Output;
}

/// `Collector::collect` of a [`PerDatabase`] collector: the one database of `ctx`.
pub async fn collect_one(c: &mut dyn PerDatabase, ctx: &Ctx<'_>) -> Result<Output, CollectError> {
    let folded = c.collect_database(ctx).await;
    let out = c.finish(ctx.config);
    folded.map(|()| out)
}
