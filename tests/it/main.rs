//! The one integration-test binary of dbagent: every test that runs the binary or talks to a
//! real PostgreSQL server lives in a module here and shares the helpers in `support/`.

mod support;

mod advise;
mod alerts;
mod archive_modes;
mod backup;
mod backups_cmd;
mod baselines;
mod check;
mod cluster_kit;
mod collect_all;
mod collect_archiver;
mod collect_bloat;
mod collect_checkpoints;
mod collect_connections;
mod collect_databases;
mod collect_locks;
mod collect_pgstats;
mod collect_pgstattuple;
mod collect_replication;
mod collect_statements;
mod collect_vacuum;
mod compose;
mod config_cmd;
mod connection;
mod docs;
mod drill;
mod exporter_compat;
mod generate;
mod ha;
mod info;
mod layers;
mod notify;
mod objectives;
mod pipe;
mod restore_cmd;
mod restore_history;
mod run;
mod s3;
mod schedule;
mod top;
mod wal;
mod wal_prefetch;
mod wal_verify;
mod watched_databases;
