//! SQL that differs between PostgreSQL major versions, in one place. Every function takes the
//! server's [`ServerVersion`] and returns the statement (or object name) for that version, so
//! callers never compare version numbers themselves.

use super::version::ServerVersion;

/// A function the agent's role must be allowed to EXECUTE, with the exact signature to grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredFunction {
    /// Signature as `has_function_privilege` and `GRANT EXECUTE ON FUNCTION` take it.
    pub signature: &'static str,
    /// What dbagent uses it for, for messages.
    pub used_for: &'static str,
}

/// The functions dbagent calls: starting/stopping a backup (renamed in 15), switching WAL and
/// creating named restore points.
pub fn required_functions(v: &ServerVersion) -> Vec<RequiredFunction> {
    let mut functions = if v.major() >= 15 {
        vec![
            RequiredFunction {
                signature: "pg_backup_start(text, boolean)",
                used_for: "backups",
            },
            RequiredFunction {
                signature: "pg_backup_stop(boolean)",
                used_for: "backups",
            },
        ]
    } else {
        vec![
            RequiredFunction {
                signature: "pg_start_backup(text, boolean, boolean)",
                used_for: "backups",
            },
            RequiredFunction {
                signature: "pg_stop_backup(boolean, boolean)",
                used_for: "backups",
            },
        ]
    };
    functions.push(RequiredFunction {
        signature: "pg_switch_wal()",
        used_for: "closing the last WAL segment of a backup",
    });
    functions.push(RequiredFunction {
        signature: "pg_create_restore_point(text)",
        used_for: "restore points",
    });
    functions
}

/// Checkpoint counters: `(timed, requested, write_time_ms, sync_time_ms, buffers_written)`.
/// PostgreSQL 17 moved them from pg_stat_bgwriter to pg_stat_checkpointer.
pub fn checkpoint_stats(v: &ServerVersion) -> &'static str {
    if v.major() >= 17 {
        "SELECT num_timed::float8, num_requested::float8, write_time::float8, sync_time::float8, \
         buffers_written::float8 FROM pg_stat_checkpointer"
    } else {
        "SELECT checkpoints_timed::float8, checkpoints_req::float8, checkpoint_write_time::float8, \
         checkpoint_sync_time::float8, buffers_checkpoint::float8 FROM pg_stat_bgwriter"
    }
}

/// Checkpointer and background writer counters, one row, every column float8 and named, NULL
/// where this version does not have it: `timed`, `requested`, `done` (18+), `restartpoints_timed`,
/// `restartpoints_requested`, `restartpoints_done` (17+), `write_time_ms`, `sync_time_ms`,
/// `buffers_checkpoint`, `buffers_clean`, `maxwritten_clean`, `buffers_backend`,
/// `buffers_backend_fsync` (before 17), `buffers_alloc`, `checkpointer_stats_reset` (17 and
/// later, epoch seconds), `slru_written` (18 and later). PostgreSQL 17 moved the checkpoint
/// counters to pg_stat_checkpointer and dropped the backend ones (now in pg_stat_io).
pub fn checkpointer_counters(v: &ServerVersion) -> &'static str {
    match v.major() {
        18.. => {
            "SELECT c.num_timed::float8 AS timed, c.num_requested::float8 AS requested, \
             c.num_done::float8 AS done, c.restartpoints_timed::float8 AS restartpoints_timed, \
             c.restartpoints_req::float8 AS restartpoints_requested, \
             c.restartpoints_done::float8 AS restartpoints_done, \
             c.write_time::float8 AS write_time_ms, c.sync_time::float8 AS sync_time_ms, \
             c.buffers_written::float8 AS buffers_checkpoint, \
             b.buffers_clean::float8 AS buffers_clean, b.maxwritten_clean::float8 AS maxwritten_clean, \
             NULL::float8 AS buffers_backend, NULL::float8 AS buffers_backend_fsync, \
             b.buffers_alloc::float8 AS buffers_alloc, \
             extract(epoch FROM c.stats_reset)::float8 AS checkpointer_stats_reset, \
             c.slru_written::float8 AS slru_written \
             FROM pg_stat_checkpointer c, pg_stat_bgwriter b"
        }
        17 => {
            "SELECT c.num_timed::float8 AS timed, c.num_requested::float8 AS requested, \
             NULL::float8 AS done, c.restartpoints_timed::float8 AS restartpoints_timed, \
             c.restartpoints_req::float8 AS restartpoints_requested, \
             c.restartpoints_done::float8 AS restartpoints_done, \
             c.write_time::float8 AS write_time_ms, c.sync_time::float8 AS sync_time_ms, \
             c.buffers_written::float8 AS buffers_checkpoint, \
             b.buffers_clean::float8 AS buffers_clean, b.maxwritten_clean::float8 AS maxwritten_clean, \
             NULL::float8 AS buffers_backend, NULL::float8 AS buffers_backend_fsync, \
             b.buffers_alloc::float8 AS buffers_alloc, \
             extract(epoch FROM c.stats_reset)::float8 AS checkpointer_stats_reset, \
             NULL::float8 AS slru_written \
             FROM pg_stat_checkpointer c, pg_stat_bgwriter b"
        }
        _ => {
            "SELECT checkpoints_timed::float8 AS timed, checkpoints_req::float8 AS requested, \
             NULL::float8 AS done, NULL::float8 AS restartpoints_timed, \
             NULL::float8 AS restartpoints_requested, NULL::float8 AS restartpoints_done, \
             checkpoint_write_time::float8 AS write_time_ms, \
             checkpoint_sync_time::float8 AS sync_time_ms, \
             buffers_checkpoint::float8 AS buffers_checkpoint, buffers_clean::float8 AS buffers_clean, \
             maxwritten_clean::float8 AS maxwritten_clean, buffers_backend::float8 AS buffers_backend, \
             buffers_backend_fsync::float8 AS buffers_backend_fsync, \
             buffers_alloc::float8 AS buffers_alloc, \
             NULL::float8 AS checkpointer_stats_reset, NULL::float8 AS slru_written \
             FROM pg_stat_bgwriter"
        }
    }
}

/// The schema (quoted) and version of pg_stat_statements in the connected database; no row
/// when the extension is not created there.
pub const PG_STAT_STATEMENTS_EXTENSION: &str = "SELECT quote_ident(n.nspname), e.extversion FROM pg_catalog.pg_extension e \
     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
     WHERE e.extname = 'pg_stat_statements'";

/// The role that lets a least-privilege role read every table's statistics (pg_stats) for
/// bloat estimates: pg_read_all_data exists from 14; before that only a superuser can.
pub fn read_all_stats_role(v: &ServerVersion) -> Option<&'static str> {
    (v.major() >= 14).then_some("pg_read_all_data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_functions_follow_the_rename_in_15() {
        let v14 = ServerVersion::from_num(140010, "14.10");
        let v15 = ServerVersion::from_num(150018, "15.18");
        assert!(
            required_functions(&v14)[0]
                .signature
                .starts_with("pg_start_backup")
        );
        assert!(
            required_functions(&v15)[0]
                .signature
                .starts_with("pg_backup_start")
        );
    }

    #[test]
    fn checkpoint_stats_move_to_pg_stat_checkpointer_in_17() {
        assert!(
            checkpoint_stats(&ServerVersion::from_num(160000, "16.0")).contains("pg_stat_bgwriter")
        );
        assert!(
            checkpoint_stats(&ServerVersion::from_num(170000, "17.0"))
                .contains("pg_stat_checkpointer")
        );
    }

    #[test]
    fn checkpointer_counters_follow_the_views_of_each_version() {
        let at = |num: u32| checkpointer_counters(&ServerVersion::from_num(num, "x"));
        for num in [130000, 160000] {
            assert!(at(num).contains("FROM pg_stat_bgwriter"));
            assert!(!at(num).contains("pg_stat_checkpointer"));
        }
        assert!(at(170000).contains("pg_stat_checkpointer") && !at(170000).contains("num_done"));
        assert!(at(180000).contains("c.num_done"));
        // Every version names the same columns, so the collector reads them by name.
        for num in [130000, 170000, 180000] {
            for column in [
                "AS timed,",
                "AS requested,",
                "AS done,",
                "AS restartpoints_done,",
                "AS write_time_ms,",
                "AS buffers_backend,",
                "AS buffers_alloc,",
                "AS checkpointer_stats_reset,",
                "AS slru_written ",
            ] {
                assert!(at(num).contains(column), "{num}: {column}");
            }
        }
    }
}
