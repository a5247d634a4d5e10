//! Collectors: one module per signal, each reading pg_stat views on the agent's own connection
//! and returning metric families (and, for some, a section of `/api/v1/status`). Those whose
//! signal lives in each database ([`PerDatabase`]: vacuum, bloat, pgstattuple, advisor) are
//! also run by the poller in every other database `monitor.databases` selects ([`watched`]).
//!
//! The contract every collector keeps:
//! - it reads `ctx.version` to pick its SQL (PostgreSQL 13 to 18); version-dependent SQL that
//!   other modules need too lives in `pg::sql`;
//! - it keeps whatever state it needs between polls (previous counters for deltas) in itself;
//! - it fails on its own: an error is returned, counted and logged by the poller once per state
//!   change, and the other collectors go on;
//! - it bounds its label cardinality (top N plus an `(other)` total), and never puts query
//!   text in a label;
//! - it never scans table data: statistics views and planner statistics only.
//!
//! Layer: observation. Uses: advise, backup, config, drill, metrics, pg, repo, rpo, state, wal.
//! Used by: agent.

pub mod advisor;
pub mod archiver;
pub mod bloat;
pub mod checkpoints;
mod collector;
pub mod connections;
pub mod databases;
pub mod locks;
pub mod pgstattuple;
pub mod progress;
pub mod recovery;
pub mod replication;
pub mod replication_slots;
pub mod settings;
pub mod standby;
pub mod stat_io;
pub mod stat_wal;
pub mod statement_history;
pub mod statements;
pub mod vacuum;
pub mod wal_verify;
pub mod watched;

pub use crate::metrics::{Family, Kind, Sample};
pub use collector::{
    CollectError, CollectFuture, Collector, Ctx, FoldFuture, Output, PerDatabase, collect_one,
};

/// Every collector, in the order their metrics appear on /metrics.
pub fn all() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(connections::Connections),
        Box::new(databases::Databases::default()),
        Box::new(locks::Locks),
        Box::new(vacuum::Vacuum::default()),
        Box::new(replication::Replication),
        Box::new(replication_slots::ReplicationSlots),
        Box::new(standby::Standby),
        Box::new(checkpoints::Checkpoints::default()),
        Box::new(stat_wal::StatWal),
        Box::new(stat_io::StatIo),
        Box::new(archiver::Archiver),
        Box::new(settings::Settings),
        Box::new(progress::VacuumProgress),
        Box::new(statements::Statements::new()),
        Box::new(bloat::Bloat::default()),
        Box::new(pgstattuple::PgStatTuple::default()),
        Box::new(recovery::Recovery::default()),
        Box::new(wal_verify::WalVerify),
        Box::new(advisor::Advisor::default()),
    ]
}
