//! dbagent: one binary that keeps a PostgreSQL cluster recoverable and watched.
//!
//! The library holds the logic (configuration, PostgreSQL access, checks, ...); the binary
//! (`src/main.rs` and its `cli` module) is the thin command-line layer over it, and nothing
//! here reaches it. See README.md and docs/ for the user's manual.
//!
//! The modules are layered, lowest first; each uses its own layer or lower ones, and no file
//! is in an import cycle (`tests/it/layers.rs`, which holds the table, checks both):
//! foundation (units, cron, metrics, snapshot) < access (pg, repo, state) < configuration
//! (config) < operation (wal, backup, restore, rpo, drill, advise, baseline, leader) <
//! observation (collect, check, info, notify) < alerting (alert) < service (http, schedule) < agent.

pub mod advise;
pub mod agent;
pub mod alert;
pub mod backup;
pub mod baseline;
pub mod check;
pub mod collect;
pub mod config;
pub mod cron;
pub mod drill;
pub mod http;
pub mod info;
pub mod io_error;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod pg;
pub mod repo;
pub mod restore;
pub mod rpo;
pub mod schedule;
pub mod snapshot;
pub mod state;
pub mod units;
pub mod wal;
