//! The one integration-test binary of dbagent: every test that runs the binary or talks to a
//! real PostgreSQL server lives in a module here and shares the helpers in `support/`.

mod support;

mod backup;
mod backups_cmd;
mod baselines;
mod check;
mod cluster_kit;
mod collect_archiver;
mod config_cmd;
mod connection;
mod wal;
