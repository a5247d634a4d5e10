//! The one integration-test binary of dbagent: every test that runs the binary or talks to a
//! real PostgreSQL server lives in a module here and shares the helpers in `support/`.

mod support;

mod backup;
mod backups_cmd;
mod check;
mod cluster_kit;
mod collect_archiver;
mod collect_bloat;
mod collect_statements;
mod config_cmd;
mod connection;
mod wal;
