//! wal-get prefetch (see below).

/// The spool directory, inside the directory of wal-get's DEST (the data directory's pg_wal).
pub const SPOOL_DIR: &str = "dbagent-prefetch";
