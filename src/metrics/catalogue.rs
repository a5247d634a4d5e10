//! The catalogue: every metric family dbagent emits, defined once (name, type, HELP text,
//! label names). Collectors, the poller, the alert evaluation, the outbox, the scheduler and
//! the HTTP endpoint build their families from these entries ([`Family::of`]), never from a
//! literal name. The metrics reference in docs/metrics.md is this table (a test compares them row by row),
//! and the shipped alerts.yml names only metrics listed here (a test in `alert::rules`).
//!
//! Two name sets, chosen by `monitor.metric_names` ([`super::NameSet`]):
//! - postgres_exporter's: its exact names, labels, label values and units, so that its mixin,
//!   its dashboards and alert rules written for it work unchanged. Some of them fail
//!   `promtool check metrics` (counters without `_total`, milliseconds): accepted, they are
//!   the names people's dashboards read.
//! - dbagent's: lint-clean (counters end in `_total`, times in seconds).
//!
//! Most families are in both ([`Set::Both`]): every `dbagent_*` family, and every `pg_*` one
//! whose name the exporter uses too. The two tables below say which are not:
//! - [`EXPORTER_NAMES`]: a signal both have under different names or units. The collector
//!   emits dbagent's family once; the renderer also (or only) writes it under the exporter's
//!   name, type and scale (e.g. seconds -> milliseconds, x1000), and alert rules may name
//!   either.
//! - [`EXPORTER_ONLY`]: exporter families with labels of their own (`pg_stat_activity_count`,
//!   `pg_locks_count`, `pg_settings_*`, ...), emitted by their collectors as they are.

use super::{Family, Kind};

/// One metric family as the catalogue defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label names, as the metrics reference (docs/metrics.md) lists them.
    pub labels: &'static [&'static str],
}

impl Desc {
    /// The `# HELP` and `# TYPE` lines of the family, as [`super::render`] writes them (for
    /// the few samples written by hand, with a precision of their own).
    pub fn header(&self) -> String {
        let kind = match self.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n",
            name = self.name,
            help = super::escape_help(self.help)
        )
    }
}

impl Family {
    /// An empty family of the catalogue entry `desc`.
    pub fn of(desc: &Desc) -> Family {
        Family {
            name: desc.name,
            help: desc.help,
            kind: desc.kind,
            baseline: false,
            samples: Vec::new(),
        }
    }
}

/// Which name set(s) a family belongs to (`monitor.metric_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Served whatever the mode.
    Both,
    /// dbagent's lint-clean name of a signal the exporter names differently.
    Dbagent,
    /// postgres_exporter's name.
    Exporter,
}

/// postgres_exporter's name for a signal dbagent emits under its own lint-clean name: the
/// renderer writes the samples of `from` under `to` (its name, type and HELP), each value
/// multiplied by `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExporterName {
    pub from: &'static Desc,
    pub to: &'static Desc,
    pub scale: f64,
    /// Whether `from` is dbagent's name only (the exporter's set has `to` instead); false
    /// when the exporter uses `from` as well (`to` is then an older name some dashboards read).
    pub replaces: bool,
}

const fn renamed(from: &'static Desc, to: &'static Desc, scale: f64) -> ExporterName {
    ExporterName {
        from,
        to,
        scale,
        replaces: true,
    }
}

const fn also(from: &'static Desc, to: &'static Desc) -> ExporterName {
    ExporterName {
        from,
        to,
        scale: 1.0,
        replaces: false,
    }
}

/// Which set the family named `name` belongs to.
pub fn set_of(name: &str) -> Set {
    if EXPORTER_ONLY.iter().any(|d| d.name == name)
        || is_exporter_setting(name)
        || EXPORTER_NAMES.iter().any(|r| r.to.name == name)
    {
        Set::Exporter
    } else if EXPORTER_NAMES
        .iter()
        .any(|r| r.replaces && r.from.name == name)
    {
        Set::Dbagent
    } else {
        Set::Both
    }
}

/// Whether `name` is one of the `pg_settings_*` families (named after each server setting;
/// [`PG_SETTINGS_`] stands for them all), not a family of its own in the catalogue.
pub fn is_exporter_setting(name: &str) -> bool {
    name.starts_with("pg_settings_") && ALL.binary_search_by(|d| d.name.cmp(name)).is_err()
}

/// The exporter's names for dbagent's family `name` (none when the name is the same).
pub fn exporter_names_of(name: &str) -> impl Iterator<Item = &'static ExporterName> {
    EXPORTER_NAMES.iter().filter(move |r| r.from.name == name)
}

/// The family a rule's metric `name` is read from, and the factor its values get: an
/// exporter name of [`EXPORTER_NAMES`] reads dbagent's family, scaled; any other name reads
/// itself. Rules may name either set whatever `monitor.metric_names` serves.
pub fn source_of(name: &str) -> (&str, f64) {
    match EXPORTER_NAMES.iter().find(|r| r.to.name == name) {
        Some(r) => (r.from.name, r.scale),
        None => (name, 1.0),
    }
}

/// Signals both sets have under different names or units: dbagent's family, the exporter's.
pub const EXPORTER_NAMES: &[ExporterName] = &[
    renamed(
        &PG_STAT_DATABASE_XACT_COMMIT_TOTAL,
        &PG_STAT_DATABASE_XACT_COMMIT,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_XACT_ROLLBACK_TOTAL,
        &PG_STAT_DATABASE_XACT_ROLLBACK,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_BLKS_READ_TOTAL,
        &PG_STAT_DATABASE_BLKS_READ,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_BLKS_HIT_TOTAL,
        &PG_STAT_DATABASE_BLKS_HIT,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TUP_RETURNED_TOTAL,
        &PG_STAT_DATABASE_TUP_RETURNED,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TUP_FETCHED_TOTAL,
        &PG_STAT_DATABASE_TUP_FETCHED,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TUP_INSERTED_TOTAL,
        &PG_STAT_DATABASE_TUP_INSERTED,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TUP_UPDATED_TOTAL,
        &PG_STAT_DATABASE_TUP_UPDATED,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TUP_DELETED_TOTAL,
        &PG_STAT_DATABASE_TUP_DELETED,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_CONFLICTS_TOTAL,
        &PG_STAT_DATABASE_CONFLICTS,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TEMP_FILES_TOTAL,
        &PG_STAT_DATABASE_TEMP_FILES,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_TEMP_BYTES_TOTAL,
        &PG_STAT_DATABASE_TEMP_BYTES,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_DEADLOCKS_TOTAL,
        &PG_STAT_DATABASE_DEADLOCKS,
        1.0,
    ),
    renamed(
        &PG_STAT_DATABASE_BLK_READ_TIME_SECONDS_TOTAL,
        &PG_STAT_DATABASE_BLK_READ_TIME,
        1000.0,
    ),
    renamed(
        &PG_STAT_DATABASE_BLK_WRITE_TIME_SECONDS_TOTAL,
        &PG_STAT_DATABASE_BLK_WRITE_TIME,
        1000.0,
    ),
    renamed(
        &PG_STAT_ARCHIVER_ARCHIVED_TOTAL,
        &PG_STAT_ARCHIVER_ARCHIVED_COUNT,
        1.0,
    ),
    renamed(
        &PG_STAT_ARCHIVER_FAILED_TOTAL,
        &PG_STAT_ARCHIVER_FAILED_COUNT,
        1.0,
    ),
    renamed(
        &PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE_SECONDS,
        &PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE,
        1.0,
    ),
    renamed(
        &PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_SECONDS_TOTAL,
        &PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_TOTAL,
        1000.0,
    ),
    renamed(
        &PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_SECONDS_TOTAL,
        &PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_TOTAL,
        1000.0,
    ),
    also(
        &DBAGENT_POLL_DURATION_SECONDS,
        &PG_EXPORTER_LAST_SCRAPE_DURATION_SECONDS,
    ),
    also(&DBAGENT_POLLS_TOTAL, &PG_EXPORTER_SCRAPES_TOTAL),
    also(&PG_REPLICATION_LAG_SECONDS, &PG_REPLICATION_LAG),
    // Older postgres_exporter releases' names, still read by widely used dashboards.
    also(
        &PG_STAT_BGWRITER_BUFFERS_ALLOC_TOTAL,
        &PG_STAT_BGWRITER_BUFFERS_ALLOC,
    ),
    also(
        &PG_STAT_BGWRITER_BUFFERS_BACKEND_TOTAL,
        &PG_STAT_BGWRITER_BUFFERS_BACKEND,
    ),
    also(
        &PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC_TOTAL,
        &PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC,
    ),
    also(
        &PG_STAT_BGWRITER_BUFFERS_CHECKPOINT_TOTAL,
        &PG_STAT_BGWRITER_BUFFERS_CHECKPOINT,
    ),
    also(
        &PG_STAT_BGWRITER_BUFFERS_CLEAN_TOTAL,
        &PG_STAT_BGWRITER_BUFFERS_CLEAN,
    ),
    also(
        &PG_STAT_BGWRITER_CHECKPOINTS_REQ_TOTAL,
        &PG_STAT_BGWRITER_CHECKPOINTS_REQ,
    ),
    also(
        &PG_STAT_BGWRITER_CHECKPOINTS_TIMED_TOTAL,
        &PG_STAT_BGWRITER_CHECKPOINTS_TIMED,
    ),
    ExporterName {
        from: &PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_SECONDS_TOTAL,
        to: &PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME,
        scale: 1000.0,
        replaces: true,
    },
    ExporterName {
        from: &PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_SECONDS_TOTAL,
        to: &PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME,
        scale: 1000.0,
        replaces: true,
    },
];

/// Exporter families with labels of their own, emitted by their collectors as they are.
pub const EXPORTER_ONLY: &[&Desc] = &[
    &PG_DATABASE_CONNECTION_LIMIT,
    &PG_EXPORTER_LAST_SCRAPE_ERROR,
    &PG_LOCKS_COUNT,
    &PG_REPLICATION_LAST_REPLAY_SECONDS,
    &PG_ROLES_CONNECTION_LIMIT,
    &PG_SETTINGS_,
    &PG_STAT_ACTIVITY_COUNT,
    &PG_STAT_ACTIVITY_MAX_TX_DURATION,
    &PG_STAT_DATABASE_CONFLICTS_CONFL_TABLESPACE,
    &PG_STAT_DATABASE_CONFLICTS_CONFL_LOCK,
    &PG_STAT_DATABASE_CONFLICTS_CONFL_SNAPSHOT,
    &PG_STAT_DATABASE_CONFLICTS_CONFL_BUFFERPIN,
    &PG_STAT_DATABASE_CONFLICTS_CONFL_DEADLOCK,
    &PG_STAT_PROGRESS_VACUUM_PHASE,
    &PG_STAT_PROGRESS_VACUUM_HEAP_BLKS,
    &PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_SCANNED,
    &PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_VACUUMED,
    &PG_STAT_PROGRESS_VACUUM_INDEX_VACUUMS,
    &PG_STAT_PROGRESS_VACUUM_MAX_DEAD_TUPLES,
    &PG_STAT_PROGRESS_VACUUM_NUM_DEAD_TUPLES,
    &PG_STAT_REPLICATION_PG_CURRENT_WAL_LSN_BYTES,
    &PG_STAT_REPLICATION_PG_WAL_LSN_DIFF,
    &PG_STATIC,
    &PG_WAL_SEGMENTS,
    &PG_WAL_SIZE_BYTES,
    &PG_STAT_USER_TABLES_SEQ_SCAN,
    &PG_STAT_USER_TABLES_SEQ_TUP_READ,
    &PG_STAT_USER_TABLES_IDX_SCAN,
    &PG_STAT_USER_TABLES_IDX_TUP_FETCH,
    &PG_STAT_USER_TABLES_N_TUP_INS,
    &PG_STAT_USER_TABLES_N_TUP_UPD,
    &PG_STAT_USER_TABLES_N_TUP_DEL,
    &PG_STAT_USER_TABLES_N_TUP_HOT_UPD,
    &PG_STAT_USER_TABLES_VACUUM_COUNT,
    &PG_STAT_USER_TABLES_AUTOVACUUM_COUNT,
    &PG_STAT_USER_TABLES_ANALYZE_COUNT,
    &PG_STAT_USER_TABLES_AUTOANALYZE_COUNT,
    &PG_STAT_USER_TABLES_N_MOD_SINCE_ANALYZE,
    &PG_STAT_USER_TABLES_LAST_VACUUM,
    &PG_STAT_USER_TABLES_LAST_AUTOVACUUM,
    &PG_STAT_USER_TABLES_LAST_ANALYZE,
    &PG_STAT_USER_TABLES_LAST_AUTOANALYZE,
    &PG_STAT_USER_TABLES_INDEX_SIZE_BYTES,
    &PG_STAT_USER_TABLES_TABLE_SIZE_BYTES,
    &PG_STATIO_USER_TABLES_HEAP_BLOCKS_READ,
    &PG_STATIO_USER_TABLES_HEAP_BLOCKS_HIT,
    &PG_STATIO_USER_TABLES_IDX_BLOCKS_READ,
    &PG_STATIO_USER_TABLES_IDX_BLOCKS_HIT,
    &PG_STATIO_USER_TABLES_TOAST_BLOCKS_READ,
    &PG_STATIO_USER_TABLES_TOAST_BLOCKS_HIT,
    &PG_STATIO_USER_TABLES_TIDX_BLOCKS_READ,
    &PG_STATIO_USER_TABLES_TIDX_BLOCKS_HIT,
];

pub const DBAGENT_ADVISOR_FINDINGS: Desc = Desc {
    name: "dbagent_advisor_findings",
    kind: Kind::Gauge,
    help: "Findings of the query and index advisor in its window, by kind (see `dbagent advise`).",
    labels: &["kind"],
};

pub const DBAGENT_ADVISOR_HOTSPOT_LARGEST_TABLE_BYTES: Desc = Desc {
    name: "dbagent_advisor_hotspot_largest_table_bytes",
    kind: Kind::Gauge,
    help: "Size of the largest table that is a sequential-scan hot spot in the advisor's window (0 when none).",
    labels: &[],
};

pub const DBAGENT_ADVISOR_LARGEST_UNUSED_INDEX_BYTES: Desc = Desc {
    name: "dbagent_advisor_largest_unused_index_bytes",
    kind: Kind::Gauge,
    help: "Size of the largest index not used in the advisor's window (0 when none).",
    labels: &[],
};

pub const DBAGENT_ADVISOR_OBSERVED_SECONDS: Desc = Desc {
    name: "dbagent_advisor_observed_seconds",
    kind: Kind::Gauge,
    help: "How much of the advisor's window its samples cover (statistics resets and server changes excluded).",
    labels: &[],
};

pub const DBAGENT_ADVISOR_PLAN_CHANGE_MEAN_RATIO: Desc = Desc {
    name: "dbagent_advisor_plan_change_mean_ratio",
    kind: Kind::Gauge,
    help: "For statements whose captured (generic) plan changed in the advisor's window: mean time per call under the new plan divided by the mean under the previous one.",
    labels: &["datname", "queryid"],
};

pub const DBAGENT_ADVISOR_UNUSED_INDEX_BYTES: Desc = Desc {
    name: "dbagent_advisor_unused_index_bytes",
    kind: Kind::Gauge,
    help: "Total size of the indexes not used in the advisor's window (constraint-enforcing indexes excluded).",
    labels: &[],
};

pub const DBAGENT_ALERT_RULES: Desc = Desc {
    name: "dbagent_alert_rules",
    kind: Kind::Gauge,
    help: "Alert rules loaded from alerts.yml (0 when there is none: alerting is off).",
    labels: &[],
};

pub const DBAGENT_ALERTS: Desc = Desc {
    name: "dbagent_alerts",
    kind: Kind::Gauge,
    help: "Alert instances by rule, severity and state (firing or pending).",
    labels: &["alertname", "severity", "state"],
};

pub const DBAGENT_ARCHIVER_FAILING: Desc = Desc {
    name: "dbagent_archiver_failing",
    kind: Kind::Gauge,
    help: "1 when the last archive attempt failed (last_failed_time after last_archived_time), labelled wal with the file that failed.",
    labels: &["wal"],
};

pub const DBAGENT_ARCHIVER_LAST_FAILURE_AGE_SECONDS: Desc = Desc {
    name: "dbagent_archiver_last_failure_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the last failed archive attempt.",
    labels: &[],
};

pub const DBAGENT_BACKUP_AGE_SECONDS: Desc = Desc {
    name: "dbagent_backup_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the newest complete backup finished.",
    labels: &[],
};

pub const DBAGENT_BACKUP_DURATION_SECONDS: Desc = Desc {
    name: "dbagent_backup_duration_seconds",
    kind: Kind::Gauge,
    help: "How long the newest complete backup took.",
    labels: &[],
};

pub const DBAGENT_BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS: Desc = Desc {
    name: "dbagent_backup_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "When the newest complete backup finished, as a Unix timestamp.",
    labels: &[],
};

pub const DBAGENT_BACKUPS: Desc = Desc {
    name: "dbagent_backups",
    kind: Kind::Gauge,
    help: "Complete backups in the repository.",
    labels: &[],
};

pub const DBAGENT_BLOAT_SKIPPED_RELATIONS: Desc = Desc {
    name: "dbagent_bloat_skipped_relations",
    kind: Kind::Gauge,
    help: "Relations left out of the bloat estimate: locked AccessExclusive right now (any size), or above the size threshold without statistics.",
    labels: &["reason"],
};

pub const DBAGENT_BUILD_INFO: Desc = Desc {
    name: "dbagent_build_info",
    kind: Kind::Gauge,
    help: "Always 1; the version label is the dbagent version.",
    labels: &["version"],
};

pub const DBAGENT_CHECKPOINTS_REQUESTED_RATIO: Desc = Desc {
    name: "dbagent_checkpoints_requested_ratio",
    kind: Kind::Gauge,
    help: "Share of the checkpoints of the last hour that were requested rather than timed (from pg_stat_bgwriter before PostgreSQL 17, pg_stat_checkpointer from 17); above 0.5, max_wal_size is probably too small. Absent until a checkpoint is counted in the window.",
    labels: &[],
};

pub const DBAGENT_COLLECTOR_DURATION_SECONDS: Desc = Desc {
    name: "dbagent_collector_duration_seconds",
    kind: Kind::Gauge,
    help: "How long the collector's last run took, including waiting for the poll connection it shares with the other collectors (they run concurrently on one connection).",
    labels: &["collector"],
};

pub const DBAGENT_COLLECTOR_ERRORS_TOTAL: Desc = Desc {
    name: "dbagent_collector_errors_total",
    kind: Kind::Counter,
    help: "Collections that failed, by collector (each failure is logged once per state change).",
    labels: &["collector"],
};

pub const DBAGENT_COLLECTOR_UP: Desc = Desc {
    name: "dbagent_collector_up",
    kind: Kind::Gauge,
    help: "Whether the collector's last run succeeded (1) or failed (0).",
    labels: &["collector"],
};

pub const DBAGENT_CONNECT_ERRORS_TOTAL: Desc = Desc {
    name: "dbagent_connect_errors_total",
    kind: Kind::Counter,
    help: "Failed attempts to connect to the PostgreSQL server.",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_EXHAUSTION_RATIO: Desc = Desc {
    name: "dbagent_connections_exhaustion_ratio",
    kind: Kind::Gauge,
    help: "Client sessions divided by the usable connection limit; above 1 means reserved slots are in use.",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_IDLE_IN_TRANSACTION_MAX_AGE_SECONDS: Desc = Desc {
    name: "dbagent_connections_idle_in_transaction_max_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds the longest idle-in-transaction session has been idle, 0 when there is none.",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_IDLE_IN_TRANSACTION_SESSIONS: Desc = Desc {
    name: "dbagent_connections_idle_in_transaction_sessions",
    kind: Kind::Gauge,
    help: "Client sessions idle inside an open transaction (including aborted ones).",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_LOCK_WAITING_SESSIONS: Desc = Desc {
    name: "dbagent_connections_lock_waiting_sessions",
    kind: Kind::Gauge,
    help: "Client sessions waiting to acquire a heavyweight lock (wait_event_type Lock).",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_OLDEST_TRANSACTION_AGE_SECONDS: Desc = Desc {
    name: "dbagent_connections_oldest_transaction_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the oldest open transaction of a client session started, 0 when there is none.",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_SESSIONS: Desc = Desc {
    name: "dbagent_connections_sessions",
    kind: Kind::Gauge,
    help: "Client sessions connected to the server, in every state.",
    labels: &[],
};

pub const DBAGENT_CONNECTIONS_USABLE_LIMIT: Desc = Desc {
    name: "dbagent_connections_usable_limit",
    kind: Kind::Gauge,
    help: "Connections a role without reserved-slot privileges can open: max_connections minus superuser_reserved_connections and reserved_connections.",
    labels: &[],
};

pub const DBAGENT_DATABASE_CACHE_HIT_RATIO: Desc = Desc {
    name: "dbagent_database_cache_hit_ratio",
    kind: Kind::Gauge,
    help: "Share of block requests served from the buffer cache since the previous poll (blks_hit / (blks_hit + blks_read)).",
    labels: &["datname"],
};

pub const DBAGENT_DATABASE_MXID_AGE: Desc = Desc {
    name: "dbagent_database_mxid_age",
    kind: Kind::Gauge,
    help: "Multixact IDs since the database's oldest unfrozen multixact ID (mxid_age(datminmxid)).",
    labels: &["datname"],
};

pub const DBAGENT_DATABASE_MXID_WRAPAROUND_RATIO: Desc = Desc {
    name: "dbagent_database_mxid_wraparound_ratio",
    kind: Kind::Gauge,
    help: "mxid_age(datminmxid) as a fraction of the 2^31 multixact ID wraparound limit.",
    labels: &["datname"],
};

pub const DBAGENT_DATABASE_WATCH_UP: Desc = Desc {
    name: "dbagent_database_watch_up",
    kind: Kind::Gauge,
    help: "Whether the per-database collectors could read the watched database in their last run (1) or not (0: no CONNECT privilege, connection limit, query error).",
    labels: &["datname"],
};

pub const DBAGENT_DATABASE_XID_AGE: Desc = Desc {
    name: "dbagent_database_xid_age",
    kind: Kind::Gauge,
    help: "Transactions since the database's oldest unfrozen transaction ID (age(datfrozenxid)).",
    labels: &["datname"],
};

pub const DBAGENT_DATABASE_XID_WRAPAROUND_RATIO: Desc = Desc {
    name: "dbagent_database_xid_wraparound_ratio",
    kind: Kind::Gauge,
    help: "age(datfrozenxid) as a fraction of the 2^31 transaction ID wraparound limit.",
    labels: &["datname"],
};

pub const DBAGENT_DRILL_AGE_SECONDS: Desc = Desc {
    name: "dbagent_drill_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the last restore drill finished (whatever its result).",
    labels: &[],
};

pub const DBAGENT_DRILL_LAST_RESULT: Desc = Desc {
    name: "dbagent_drill_last_result",
    kind: Kind::Gauge,
    help: "1 when the last restore drill succeeded, 0 when it failed.",
    labels: &[],
};

pub const DBAGENT_DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS: Desc = Desc {
    name: "dbagent_drill_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "When the last restore drill finished, if it succeeded, as a Unix timestamp.",
    labels: &[],
};

pub const DBAGENT_DRILL_RTO_SECONDS: Desc = Desc {
    name: "dbagent_drill_rto_seconds",
    kind: Kind::Gauge,
    help: "Measured recovery time of the last successful drill: from the start of the restore to the restored server answering queries.",
    labels: &[],
};

pub const DBAGENT_INDEX_BLOAT_BYTES: Desc = Desc {
    name: "dbagent_index_bloat_bytes",
    kind: Kind::Gauge,
    help: "Estimated bloat of the btree index in bytes (planner statistics, no scan).",
    labels: &["datname", "indexrelname", "relname", "schemaname"],
};

pub const DBAGENT_INDEX_BLOAT_RATIO: Desc = Desc {
    name: "dbagent_index_bloat_ratio",
    kind: Kind::Gauge,
    help: "Estimated bloat of the btree index as a fraction of its size on disk (0 to 1).",
    labels: &["datname", "indexrelname", "relname", "schemaname"],
};

pub const DBAGENT_INDEX_EXACT_LEAF_DENSITY_RATIO: Desc = Desc {
    name: "dbagent_index_exact_leaf_density_ratio",
    kind: Kind::Gauge,
    help: "Average fill of the btree index's leaf pages (0 to 1), measured by pgstatindex; low means bloated.",
    labels: &["datname", "schemaname", "relname", "indexrelname"],
};

pub const DBAGENT_JOB_LAST_DURATION_SECONDS: Desc = Desc {
    name: "dbagent_job_last_duration_seconds",
    kind: Kind::Gauge,
    help: "How long the last finished run of the job took, by job.",
    labels: &["job"],
};

pub const DBAGENT_JOB_LAST_RESULT: Desc = Desc {
    name: "dbagent_job_last_result",
    kind: Kind::Gauge,
    help: "Result of the last finished run of the job: 1 succeeded, 0 failed, by job.",
    labels: &["job"],
};

pub const DBAGENT_JOB_LAST_SUCCESS_TIMESTAMP_SECONDS: Desc = Desc {
    name: "dbagent_job_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "When the last successful run of the job ended (Unix time), by job.",
    labels: &["job"],
};

pub const DBAGENT_JOB_NEXT_RUN_TIMESTAMP_SECONDS: Desc = Desc {
    name: "dbagent_job_next_run_timestamp_seconds",
    kind: Kind::Gauge,
    help: "When each scheduled job runs next (Unix time), by job.",
    labels: &["job"],
};

pub const DBAGENT_JOB_RUNNING: Desc = Desc {
    name: "dbagent_job_running",
    kind: Kind::Gauge,
    help: "Whether a run of the job is in progress (1) or not (0), by job.",
    labels: &["job"],
};

pub const DBAGENT_JOB_RUNS_TOTAL: Desc = Desc {
    name: "dbagent_job_runs_total",
    kind: Kind::Counter,
    help: "Finished runs of scheduled jobs recorded in this agent's history, by job and result.",
    labels: &["job", "result"],
};

pub const DBAGENT_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS: Desc = Desc {
    name: "dbagent_last_poll_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "When the last successful poll ended, as a Unix timestamp.",
    labels: &[],
};

pub const DBAGENT_LAST_SCRAPE_DURATION_SECONDS: Desc = Desc {
    name: "dbagent_last_scrape_duration_seconds",
    kind: Kind::Gauge,
    help: "How long the previous /metrics answer took to build.",
    labels: &[],
};

pub const DBAGENT_LEADER: Desc = Desc {
    name: "dbagent_leader",
    kind: Kind::Gauge,
    help: "1 on the agent that holds leadership (the advisory lock on the primary): it runs scheduled jobs and sends cluster-wide alerts; 0 on the others.",
    labels: &[],
};

pub const DBAGENT_LOCKS_AWAITED: Desc = Desc {
    name: "dbagent_locks_awaited",
    kind: Kind::Gauge,
    help: "Heavyweight lock requests currently waiting, by lock mode (pg_locks).",
    labels: &["mode"],
};

pub const DBAGENT_LOCKS_BLOCKED_SESSIONS: Desc = Desc {
    name: "dbagent_locks_blocked_sessions",
    kind: Kind::Gauge,
    help: "Sessions waiting to acquire a heavyweight lock held or awaited by another session.",
    labels: &[],
};

pub const DBAGENT_LOCKS_BLOCKING_SESSIONS: Desc = Desc {
    name: "dbagent_locks_blocking_sessions",
    kind: Kind::Gauge,
    help: "Distinct sessions that hold up at least one lock-waiting session (pg_blocking_pids).",
    labels: &[],
};

pub const DBAGENT_LOCKS_HELD: Desc = Desc {
    name: "dbagent_locks_held",
    kind: Kind::Gauge,
    help: "Heavyweight locks currently granted, by lock mode (pg_locks).",
    labels: &["mode"],
};

pub const DBAGENT_LOCKS_LONGEST_WAIT_SECONDS: Desc = Desc {
    name: "dbagent_locks_longest_wait_seconds",
    kind: Kind::Gauge,
    help: "Seconds the longest current lock wait has lasted, 0 when no session waits.",
    labels: &[],
};

pub const DBAGENT_METRICS_AGE_SECONDS: Desc = Desc {
    name: "dbagent_metrics_age_seconds",
    kind: Kind::Gauge,
    help: "Age of the poll these metrics come from (-1 before the first poll).",
    labels: &[],
};

pub const DBAGENT_NOTIFICATION_RETRIES_TOTAL: Desc = Desc {
    name: "dbagent_notification_retries_total",
    kind: Kind::Counter,
    help: "Delivery attempts that will be retried (connection errors, timeouts, 5xx, 429), by receiver and integration.",
    labels: &["integration", "receiver"],
};

pub const DBAGENT_NOTIFICATIONS_FAILED_TOTAL: Desc = Desc {
    name: "dbagent_notifications_failed_total",
    kind: Kind::Counter,
    help: "Notifications given up (refused for good, or still failing after outbox.max_age), by receiver and integration.",
    labels: &["integration", "receiver"],
};

pub const DBAGENT_NOTIFICATIONS_SENT_TOTAL: Desc = Desc {
    name: "dbagent_notifications_sent_total",
    kind: Kind::Counter,
    help: "Notifications a receiver accepted, by receiver and integration.",
    labels: &["integration", "receiver"],
};

pub const DBAGENT_OUTBOX_DEPTH: Desc = Desc {
    name: "dbagent_outbox_depth",
    kind: Kind::Gauge,
    help: "Notification deliveries waiting in the outbox.",
    labels: &[],
};

pub const DBAGENT_OUTBOX_OLDEST_AGE_SECONDS: Desc = Desc {
    name: "dbagent_outbox_oldest_age_seconds",
    kind: Kind::Gauge,
    help: "Age of the oldest notification waiting in the outbox (0 when empty).",
    labels: &[],
};

pub const DBAGENT_PGSTATTUPLE_AVAILABLE: Desc = Desc {
    name: "dbagent_pgstattuple_available",
    kind: Kind::Gauge,
    help: "1 when the pgstattuple extension is installed in at least one watched database (exact bloat figures), else 0.",
    labels: &[],
};

pub const DBAGENT_PGSTATTUPLE_SKIPPED_RELATIONS: Desc = Desc {
    name: "dbagent_pgstattuple_skipped_relations",
    kind: Kind::Gauge,
    help: "Relations pgstattuple could not measure in its last run (timeout or permission; see /api/v1/status).",
    labels: &[],
};

pub const DBAGENT_POLL_DURATION_SECONDS: Desc = Desc {
    name: "dbagent_poll_duration_seconds",
    kind: Kind::Gauge,
    help: "How long the last poll took (all collectors, concurrently).",
    labels: &[],
};

pub const DBAGENT_POLL_INTERVAL_SECONDS: Desc = Desc {
    name: "dbagent_poll_interval_seconds",
    kind: Kind::Gauge,
    help: "The configured poll interval (monitor.interval).",
    labels: &[],
};

pub const DBAGENT_POLL_OVERRUNS_TOTAL: Desc = Desc {
    name: "dbagent_poll_overruns_total",
    kind: Kind::Counter,
    help: "Polls that took longer than the poll interval.",
    labels: &[],
};

pub const DBAGENT_POLLS_TOTAL: Desc = Desc {
    name: "dbagent_polls_total",
    kind: Kind::Counter,
    help: "Polls run since the agent started.",
    labels: &[],
};

pub const DBAGENT_REPLICATION_REPLAY_LAG_BYTES: Desc = Desc {
    name: "dbagent_replication_replay_lag_bytes",
    kind: Kind::Gauge,
    help: "Bytes of WAL this standby received but has not replayed yet.",
    labels: &[],
};

pub const DBAGENT_REPLICATION_STANDBYS: Desc = Desc {
    name: "dbagent_replication_standbys",
    kind: Kind::Gauge,
    help: "Standbys (WAL senders) connected to this primary.",
    labels: &[],
};

pub const DBAGENT_RPO_SECONDS: Desc = Desc {
    name: "dbagent_rpo_seconds",
    kind: Kind::Gauge,
    help: "How long committed work has been waiting for the WAL archive: the data at risk if the server were lost now (recovery point), judged along the server's own timeline history. 0 when every committed transaction is archived; counts from the oldest WAL the archive lacks when nothing is archived yet.",
    labels: &[],
};

pub const DBAGENT_RPO_TARGET_SECONDS: Desc = Desc {
    name: "dbagent_rpo_target_seconds",
    kind: Kind::Gauge,
    help: "The recovery point objective (objectives.rpo) that dbagent_rpo_seconds is held to.",
    labels: &[],
};

pub const DBAGENT_RTO_TARGET_SECONDS: Desc = Desc {
    name: "dbagent_rto_target_seconds",
    kind: Kind::Gauge,
    help: "The recovery time objective (objectives.rto) that dbagent_drill_rto_seconds is held to.",
    labels: &[],
};

pub const DBAGENT_SCRAPES_TOTAL: Desc = Desc {
    name: "dbagent_scrapes_total",
    kind: Kind::Counter,
    help: "Requests to /metrics served (from the last poll, never computed per request).",
    labels: &[],
};

pub const DBAGENT_STANDBY_UNREPLAYED_ARCHIVE_AGE_SECONDS: Desc = Desc {
    name: "dbagent_standby_unreplayed_archive_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds the archive has held WAL this standby has not replayed (beyond recovery_min_apply_delay), 0 when it has replayed everything archived; grows while its restore_command keeps failing.",
    labels: &[],
};

pub const DBAGENT_START_TIME_SECONDS: Desc = Desc {
    name: "dbagent_start_time_seconds",
    kind: Kind::Gauge,
    help: "When the agent started, as a Unix timestamp.",
    labels: &[],
};

pub const DBAGENT_STATEMENT_CALLS: Desc = Desc {
    name: "dbagent_statement_calls",
    kind: Kind::Gauge,
    help: "Calls of the statement since the previous poll (top statements by total and by mean time, plus queryid=\"(other)\").",
    labels: &["datname", "queryid", "toplevel", "user"],
};

pub const DBAGENT_STATEMENT_MEAN_SECONDS: Desc = Desc {
    name: "dbagent_statement_mean_seconds",
    kind: Kind::Gauge,
    help: "Mean execution time per call of the statement since the previous poll, in seconds.",
    labels: &["datname", "queryid", "toplevel", "user"],
};

pub const DBAGENT_STATEMENT_ROWS: Desc = Desc {
    name: "dbagent_statement_rows",
    kind: Kind::Gauge,
    help: "Rows returned or affected by the statement since the previous poll.",
    labels: &["datname", "queryid", "toplevel", "user"],
};

pub const DBAGENT_STATEMENT_SECONDS: Desc = Desc {
    name: "dbagent_statement_seconds",
    kind: Kind::Gauge,
    help: "Execution time of the statement since the previous poll, in seconds.",
    labels: &["datname", "queryid", "toplevel", "user"],
};

pub const DBAGENT_STATEMENTS_AVAILABLE: Desc = Desc {
    name: "dbagent_statements_available",
    kind: Kind::Gauge,
    help: "1 when pg_stat_statements can be read in the connected database, 0 when it is missing.",
    labels: &[],
};

pub const DBAGENT_STATEMENTS_DEALLOC_TOTAL: Desc = Desc {
    name: "dbagent_statements_dealloc_total",
    kind: Kind::Counter,
    help: "Times pg_stat_statements evicted its least-used entries because it was full (pg_stat_statements_info.dealloc).",
    labels: &[],
};

pub const DBAGENT_STATEMENTS_TRACKED: Desc = Desc {
    name: "dbagent_statements_tracked",
    kind: Kind::Gauge,
    help: "Entries in pg_stat_statements (compare with pg_stat_statements.max).",
    labels: &[],
};

pub const DBAGENT_TABLE_BLOAT_BYTES: Desc = Desc {
    name: "dbagent_table_bloat_bytes",
    kind: Kind::Gauge,
    help: "Estimated bloat of the table in bytes: size on disk minus the expected size of its live rows at its fillfactor (planner statistics, no scan).",
    labels: &["datname", "relname", "schemaname"],
};

pub const DBAGENT_TABLE_BLOAT_RATIO: Desc = Desc {
    name: "dbagent_table_bloat_ratio",
    kind: Kind::Gauge,
    help: "Estimated bloat of the table as a fraction of its size on disk (0 to 1).",
    labels: &["datname", "relname", "schemaname"],
};

pub const DBAGENT_TABLE_EXACT_BLOAT_RATIO: Desc = Desc {
    name: "dbagent_table_exact_bloat_ratio",
    kind: Kind::Gauge,
    help: "Dead tuples plus free space as a fraction of the table's size, measured by pgstattuple.",
    labels: &["datname", "schemaname", "relname"],
};

pub const DBAGENT_TABLE_EXACT_DEAD_TUPLE_BYTES: Desc = Desc {
    name: "dbagent_table_exact_dead_tuple_bytes",
    kind: Kind::Gauge,
    help: "Bytes of dead tuples in the table, measured by pgstattuple (reads the table; every monitor.pgstattuple_interval).",
    labels: &["datname", "schemaname", "relname"],
};

pub const DBAGENT_TABLE_EXACT_FREE_BYTES: Desc = Desc {
    name: "dbagent_table_exact_free_bytes",
    kind: Kind::Gauge,
    help: "Free space in the table's pages, measured by pgstattuple.",
    labels: &["datname", "schemaname", "relname"],
};

pub const DBAGENT_TABLE_LAST_ANALYZE_AGE_SECONDS: Desc = Desc {
    name: "dbagent_table_last_analyze_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the table was last analyzed, manually or by autovacuum (absent if never).",
    labels: &["datname", "relname", "schemaname"],
};

pub const DBAGENT_TABLE_LAST_VACUUM_AGE_SECONDS: Desc = Desc {
    name: "dbagent_table_last_vacuum_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the table was last vacuumed, manually or by autovacuum (absent if never).",
    labels: &["datname", "relname", "schemaname"],
};

pub const DBAGENT_WAL_VERIFY_AGE_SECONDS: Desc = Desc {
    name: "dbagent_wal_verify_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the last `dbagent wal verify` of the repository finished.",
    labels: &[],
};

pub const DBAGENT_WAL_VERIFY_HISTORY_CONFLICTS: Desc = Desc {
    name: "dbagent_wal_verify_history_conflicts",
    kind: Kind::Gauge,
    help: "Timeline history conflicts the last `dbagent wal verify` found (foreign, damaged or disagreeing history files and timeline records).",
    labels: &[],
};

pub const DBAGENT_WAL_VERIFY_LAST_RUN_TIMESTAMP_SECONDS: Desc = Desc {
    name: "dbagent_wal_verify_last_run_timestamp_seconds",
    kind: Kind::Gauge,
    help: "When the last `dbagent wal verify` of the repository finished, as a Unix timestamp.",
    labels: &[],
};

pub const DBAGENT_WAL_VERIFY_RANGE_END_LSN_BYTES: Desc = Desc {
    name: "dbagent_wal_verify_range_end_lsn_bytes",
    kind: Kind::Gauge,
    help: "WAL position where the last verified range ends (the end of the newest needed segment), in bytes from 0/0.",
    labels: &[],
};

pub const DBAGENT_WAL_VERIFY_RANGE_START_LSN_BYTES: Desc = Desc {
    name: "dbagent_wal_verify_range_start_lsn_bytes",
    kind: Kind::Gauge,
    help: "WAL position where the last verified range starts (the oldest kept backup's first segment), in bytes from 0/0.",
    labels: &[],
};

pub const DBAGENT_WAL_VERIFY_SEGMENTS: Desc = Desc {
    name: "dbagent_wal_verify_segments",
    kind: Kind::Gauge,
    help: "Needed WAL segments by what the last `dbagent wal verify` found: ok, missing, damaged or unreadable.",
    labels: &["result"],
};

pub const PG_DATABASE_CONNECTION_LIMIT: Desc = Desc {
    name: "pg_database_connection_limit",
    kind: Kind::Gauge,
    help: "Connection limit of the database (-1: none), by database (postgres_exporter's family).",
    labels: &["datname"],
};

pub const PG_DATABASE_SIZE_BYTES: Desc = Desc {
    name: "pg_database_size_bytes",
    kind: Kind::Gauge,
    help: "Disk space used by the database (read every monitor.slow_interval).",
    labels: &["datname"],
};

pub const PG_EXPORTER_LAST_SCRAPE_DURATION_SECONDS: Desc = Desc {
    name: "pg_exporter_last_scrape_duration_seconds",
    kind: Kind::Gauge,
    help: "How long the last poll took, in seconds (postgres_exporter's family).",
    labels: &[],
};

pub const PG_EXPORTER_LAST_SCRAPE_ERROR: Desc = Desc {
    name: "pg_exporter_last_scrape_error",
    kind: Kind::Gauge,
    help: "1 when the last poll failed or any collector failed in it, else 0 (postgres_exporter's family).",
    labels: &[],
};

pub const PG_EXPORTER_SCRAPES_TOTAL: Desc = Desc {
    name: "pg_exporter_scrapes_total",
    kind: Kind::Counter,
    help: "Polls run since the agent started (postgres_exporter's family).",
    labels: &[],
};

pub const PG_LOCKS_COUNT: Desc = Desc {
    name: "pg_locks_count",
    kind: Kind::Gauge,
    help: "Heavyweight locks by database and lower-case lock mode, 0 for each mode a database has none of (postgres_exporter's family).",
    labels: &["datname", "mode"],
};

pub const PG_POSTMASTER_START_TIME_SECONDS: Desc = Desc {
    name: "pg_postmaster_start_time_seconds",
    kind: Kind::Gauge,
    help: "When the PostgreSQL server started, as a Unix timestamp.",
    labels: &[],
};

pub const PG_REPLICATION_IS_REPLICA: Desc = Desc {
    name: "pg_replication_is_replica",
    kind: Kind::Gauge,
    help: "1 when the server is a standby (in recovery), 0 on a primary.",
    labels: &[],
};

pub const PG_REPLICATION_LAG: Desc = Desc {
    name: "pg_replication_lag",
    kind: Kind::Gauge,
    help: "pg_replication_lag_seconds under the name older postgres_exporter releases and the postgres_exporter mixin use.",
    labels: &[],
};

pub const PG_REPLICATION_LAG_SECONDS: Desc = Desc {
    name: "pg_replication_lag_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the last transaction replayed on this standby committed on the primary, 0 when all received WAL is replayed.",
    labels: &[],
};

pub const PG_REPLICATION_SLOTS_ACTIVE: Desc = Desc {
    name: "pg_replication_slots_active",
    kind: Kind::Gauge,
    help: "Whether the replication slot is in use by a connection (1) or not (0).",
    labels: &["slot_name", "database"],
};

pub const PG_REPLICATION_SLOTS_PG_WAL_LSN_DIFF: Desc = Desc {
    name: "pg_replication_slots_pg_wal_lsn_diff",
    kind: Kind::Gauge,
    help: "WAL bytes the slot retains: from its restart_lsn to the current WAL position (the last received position on a standby).",
    labels: &["slot_name", "database"],
};

pub const PG_REPLICATION_SLOTS_SAFE_WAL_SIZE_BYTES: Desc = Desc {
    name: "pg_replication_slots_safe_wal_size_bytes",
    kind: Kind::Gauge,
    help: "Bytes of WAL that can still be written before the slot is in danger of being lost (max_slot_wal_keep_size); absent when unlimited.",
    labels: &["slot_name", "slot_type"],
};

pub const PG_REPLICATION_SLOTS_SLOT_CONFIRMED_FLUSH_LSN: Desc = Desc {
    name: "pg_replication_slots_slot_confirmed_flush_lsn",
    kind: Kind::Gauge,
    help: "Position up to which the consumer of an active logical slot confirmed receiving data, as a byte offset.",
    labels: &["slot_name", "slot_type"],
};

pub const PG_REPLICATION_SLOTS_SLOT_CURRENT_WAL_LSN: Desc = Desc {
    name: "pg_replication_slots_slot_current_wal_lsn",
    kind: Kind::Gauge,
    help: "Current WAL position of the server (the last received position on a standby), as a byte offset.",
    labels: &["slot_name", "slot_type"],
};

pub const PG_REPLICATION_SLOTS_SLOT_IS_ACTIVE: Desc = Desc {
    name: "pg_replication_slots_slot_is_active",
    kind: Kind::Gauge,
    help: "Whether the replication slot is in use by a connection (1) or not (0), by slot type.",
    labels: &["slot_name", "slot_type"],
};

pub const PG_REPLICATION_SLOTS_WAL_STATUS: Desc = Desc {
    name: "pg_replication_slots_wal_status",
    kind: Kind::Gauge,
    help: "Always 1; wal_status is the availability of the WAL the slot needs (reserved, extended, unreserved, lost).",
    labels: &["slot_name", "slot_type", "wal_status"],
};

pub const PG_REPLICATION_LAST_REPLAY_SECONDS: Desc = Desc {
    name: "pg_replication_last_replay_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the last transaction replayed on this standby committed on the primary, even when nothing waits to be replayed (postgres_exporter's family; standbys only).",
    labels: &[],
};

pub const PG_ROLES_CONNECTION_LIMIT: Desc = Desc {
    name: "pg_roles_connection_limit",
    kind: Kind::Gauge,
    help: "Connection limit of the role (-1: none), by role (postgres_exporter's family).",
    labels: &["rolname"],
};

pub const PG_SETTINGS_: Desc = Desc {
    name: "pg_settings_*",
    kind: Kind::Gauge,
    help: "One gauge per numeric or boolean server setting of pg_settings, named pg_settings_<name> (dots and dashes as underscores) with _seconds or _bytes when it has a unit, converted to it (-1 kept); booleans 1 for on (postgres_exporter's families; max_connections is pg_settings_max_connections, in both sets).",
    labels: &[],
};

pub const PG_SETTINGS_MAX_CONNECTIONS: Desc = Desc {
    name: "pg_settings_max_connections",
    kind: Kind::Gauge,
    help: "The max_connections setting: the most concurrent connections the server accepts.",
    labels: &[],
};

pub const PG_STAT_ACTIVITY_COUNT: Desc = Desc {
    name: "pg_stat_activity_count",
    kind: Kind::Gauge,
    help: "Backends (every type but this agent's own) by database, state, role, application, backend type and wait event; 0 for each database and state with none (postgres_exporter's family).",
    labels: &[
        "datname",
        "state",
        "usename",
        "application_name",
        "backend_type",
        "wait_event_type",
        "wait_event",
    ],
};

pub const PG_STAT_ACTIVITY_MAX_TX_DURATION: Desc = Desc {
    name: "pg_stat_activity_max_tx_duration",
    kind: Kind::Gauge,
    help: "Seconds the oldest open transaction of the group has been running (0 when none), grouped like pg_stat_activity_count (postgres_exporter's family).",
    labels: &[
        "datname",
        "state",
        "usename",
        "application_name",
        "backend_type",
        "wait_event_type",
        "wait_event",
    ],
};

pub const PG_STAT_ACTIVITY_SESSIONS: Desc = Desc {
    name: "pg_stat_activity_sessions",
    kind: Kind::Gauge,
    help: "Client sessions by database and state (pg_stat_activity, client backends only).",
    labels: &["datname", "state"],
};

pub const PG_STAT_ARCHIVER_ARCHIVED_COUNT: Desc = Desc {
    name: "pg_stat_archiver_archived_count",
    kind: Kind::Counter,
    help: "WAL files archived successfully (postgres_exporter's name).",
    labels: &[],
};

pub const PG_STAT_ARCHIVER_ARCHIVED_TOTAL: Desc = Desc {
    name: "pg_stat_archiver_archived_total",
    kind: Kind::Counter,
    help: "WAL files archived successfully (pg_stat_archiver.archived_count).",
    labels: &[],
};

pub const PG_STAT_ARCHIVER_FAILED_COUNT: Desc = Desc {
    name: "pg_stat_archiver_failed_count",
    kind: Kind::Counter,
    help: "Failed attempts to archive a WAL file (postgres_exporter's name).",
    labels: &[],
};

pub const PG_STAT_ARCHIVER_FAILED_TOTAL: Desc = Desc {
    name: "pg_stat_archiver_failed_total",
    kind: Kind::Counter,
    help: "Failed attempts to archive a WAL file (pg_stat_archiver.failed_count).",
    labels: &[],
};

pub const PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE: Desc = Desc {
    name: "pg_stat_archiver_last_archive_age",
    kind: Kind::Gauge,
    help: "Seconds since the last WAL file was archived (postgres_exporter's name).",
    labels: &[],
};

pub const PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE_SECONDS: Desc = Desc {
    name: "pg_stat_archiver_last_archive_age_seconds",
    kind: Kind::Gauge,
    help: "Seconds since the last WAL file was archived.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_ALLOC: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_alloc",
    kind: Kind::Counter,
    help: "Buffers allocated, under the name older postgres_exporter releases use (community dashboards read it).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_ALLOC_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_alloc_total",
    kind: Kind::Counter,
    help: "Buffers allocated.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_BACKEND: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_backend",
    kind: Kind::Counter,
    help: "Buffers written directly by backends (before PostgreSQL 17), under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_backend_fsync",
    kind: Kind::Counter,
    help: "Times a backend had to fsync a file itself (before PostgreSQL 17), under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_backend_fsync_total",
    kind: Kind::Counter,
    help: "Times a backend had to fsync a file itself (before PostgreSQL 17).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_BACKEND_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_backend_total",
    kind: Kind::Counter,
    help: "Buffers written directly by backends (before PostgreSQL 17).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_CHECKPOINT: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_checkpoint",
    kind: Kind::Counter,
    help: "Buffers written by checkpoints, under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_CHECKPOINT_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_checkpoint_total",
    kind: Kind::Counter,
    help: "Buffers written by checkpoints.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_CLEAN: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_clean",
    kind: Kind::Counter,
    help: "Buffers written by the background writer, under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_BUFFERS_CLEAN_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_buffers_clean_total",
    kind: Kind::Counter,
    help: "Buffers written by the background writer.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoint_sync_time",
    kind: Kind::Counter,
    help: "Milliseconds checkpoints spent syncing files to disk, under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoint_sync_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds checkpoints spent syncing files to disk.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoint_sync_time_total",
    kind: Kind::Counter,
    help: "Milliseconds checkpoints spent syncing files to disk (postgres_exporter's name and unit).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoint_write_time",
    kind: Kind::Counter,
    help: "Milliseconds checkpoints spent writing buffers to files, under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoint_write_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds checkpoints spent writing buffers to files.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoint_write_time_total",
    kind: Kind::Counter,
    help: "Milliseconds checkpoints spent writing buffers to files (postgres_exporter's name and unit).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINTS_REQ: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoints_req",
    kind: Kind::Counter,
    help: "Checkpoints requested, under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINTS_REQ_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoints_req_total",
    kind: Kind::Counter,
    help: "Checkpoints requested (CHECKPOINT, max_wal_size reached, backups, shutdown).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINTS_TIMED: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoints_timed",
    kind: Kind::Counter,
    help: "Checkpoints started because checkpoint_timeout elapsed, under the name older postgres_exporter releases use.",
    labels: &[],
};

pub const PG_STAT_BGWRITER_CHECKPOINTS_TIMED_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_checkpoints_timed_total",
    kind: Kind::Counter,
    help: "Checkpoints started because checkpoint_timeout elapsed (scheduled).",
    labels: &[],
};

pub const PG_STAT_BGWRITER_MAXWRITTEN_CLEAN_TOTAL: Desc = Desc {
    name: "pg_stat_bgwriter_maxwritten_clean_total",
    kind: Kind::Counter,
    help: "Times the background writer stopped a round because it had written bgwriter_lru_maxpages buffers.",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_BUFFERS_WRITTEN_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_buffers_written_total",
    kind: Kind::Counter,
    help: "Buffers written by checkpoints and restartpoints (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_NUM_DONE_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_num_done_total",
    kind: Kind::Counter,
    help: "Checkpoints completed (PostgreSQL 18 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_NUM_REQUESTED_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_num_requested_total",
    kind: Kind::Counter,
    help: "Requested checkpoints (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_NUM_TIMED_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_num_timed_total",
    kind: Kind::Counter,
    help: "Checkpoints scheduled because checkpoint_timeout elapsed (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_RESTARTPOINTS_DONE_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_restartpoints_done_total",
    kind: Kind::Counter,
    help: "Restartpoints completed (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_RESTARTPOINTS_REQ_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_restartpoints_req_total",
    kind: Kind::Counter,
    help: "Restartpoints requested (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_RESTARTPOINTS_TIMED_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_restartpoints_timed_total",
    kind: Kind::Counter,
    help: "Restartpoints (checkpoints on a standby) started because checkpoint_timeout elapsed (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_SLRU_WRITTEN_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_slru_written_total",
    kind: Kind::Counter,
    help: "SLRU buffers (commit log, subtransactions, ...) written by checkpoints and restartpoints (PostgreSQL 18 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_STATS_RESET_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_stats_reset_total",
    kind: Kind::Counter,
    help: "When these statistics were last reset, as a Unix timestamp (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_SYNC_TIME_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_sync_time_total",
    kind: Kind::Counter,
    help: "Milliseconds checkpoints and restartpoints spent syncing files to disk (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_CHECKPOINTER_WRITE_TIME_TOTAL: Desc = Desc {
    name: "pg_stat_checkpointer_write_time_total",
    kind: Kind::Counter,
    help: "Milliseconds checkpoints and restartpoints spent writing files to disk (PostgreSQL 17 and later).",
    labels: &[],
};

pub const PG_STAT_DATABASE_ACTIVE_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_database_active_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds sessions spent executing statements in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLK_READ_TIME: Desc = Desc {
    name: "pg_stat_database_blk_read_time",
    kind: Kind::Counter,
    help: "Milliseconds spent reading data file blocks in the database, with track_io_timing on (postgres_exporter's name and unit).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLK_READ_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_database_blk_read_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent reading data file blocks in the database (only with track_io_timing on).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLK_WRITE_TIME: Desc = Desc {
    name: "pg_stat_database_blk_write_time",
    kind: Kind::Counter,
    help: "Milliseconds spent writing data file blocks in the database, with track_io_timing on (postgres_exporter's name and unit).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLK_WRITE_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_database_blk_write_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent writing data file blocks in the database (only with track_io_timing on).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLKS_HIT: Desc = Desc {
    name: "pg_stat_database_blks_hit",
    kind: Kind::Counter,
    help: "Disk blocks found already in the buffer cache in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLKS_HIT_TOTAL: Desc = Desc {
    name: "pg_stat_database_blks_hit_total",
    kind: Kind::Counter,
    help: "Disk blocks found already in the buffer cache in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLKS_READ: Desc = Desc {
    name: "pg_stat_database_blks_read",
    kind: Kind::Counter,
    help: "Disk blocks read into shared buffers in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_BLKS_READ_TOTAL: Desc = Desc {
    name: "pg_stat_database_blks_read_total",
    kind: Kind::Counter,
    help: "Disk blocks read into shared buffers (not found in the buffer cache) in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_CHECKSUM_FAILURES_TOTAL: Desc = Desc {
    name: "pg_stat_database_checksum_failures_total",
    kind: Kind::Counter,
    help: "Data page checksum failures detected in the database (only with data checksums on).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS: Desc = Desc {
    name: "pg_stat_database_conflicts",
    kind: Kind::Counter,
    help: "Queries cancelled by recovery conflicts in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS_CONFL_BUFFERPIN: Desc = Desc {
    name: "pg_stat_database_conflicts_confl_bufferpin",
    kind: Kind::Counter,
    help: "Queries cancelled in the database because of pinned buffers on this standby (pg_stat_database_conflicts; postgres_exporter's family).",
    labels: &["datid", "datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS_CONFL_DEADLOCK: Desc = Desc {
    name: "pg_stat_database_conflicts_confl_deadlock",
    kind: Kind::Counter,
    help: "Queries cancelled in the database because of deadlocks on this standby (pg_stat_database_conflicts; postgres_exporter's family).",
    labels: &["datid", "datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS_CONFL_LOCK: Desc = Desc {
    name: "pg_stat_database_conflicts_confl_lock",
    kind: Kind::Counter,
    help: "Queries cancelled in the database because of lock timeouts on this standby (pg_stat_database_conflicts; postgres_exporter's family).",
    labels: &["datid", "datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS_CONFL_SNAPSHOT: Desc = Desc {
    name: "pg_stat_database_conflicts_confl_snapshot",
    kind: Kind::Counter,
    help: "Queries cancelled in the database because of old snapshots on this standby (pg_stat_database_conflicts; postgres_exporter's family).",
    labels: &["datid", "datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS_CONFL_TABLESPACE: Desc = Desc {
    name: "pg_stat_database_conflicts_confl_tablespace",
    kind: Kind::Counter,
    help: "Queries cancelled in the database because of dropped tablespaces on this standby (pg_stat_database_conflicts; postgres_exporter's family).",
    labels: &["datid", "datname"],
};

pub const PG_STAT_DATABASE_CONFLICTS_TOTAL: Desc = Desc {
    name: "pg_stat_database_conflicts_total",
    kind: Kind::Counter,
    help: "Queries cancelled by recovery conflicts in the database (standbys only).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_DEADLOCKS: Desc = Desc {
    name: "pg_stat_database_deadlocks",
    kind: Kind::Counter,
    help: "Deadlocks detected in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_DEADLOCKS_TOTAL: Desc = Desc {
    name: "pg_stat_database_deadlocks_total",
    kind: Kind::Counter,
    help: "Deadlocks detected in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_IDLE_IN_TRANSACTION_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_database_idle_in_transaction_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds sessions spent idle inside a transaction in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_NUMBACKENDS: Desc = Desc {
    name: "pg_stat_database_numbackends",
    kind: Kind::Gauge,
    help: "Backends currently connected to the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_SESSION_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_database_session_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds sessions spent connected to the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_SESSIONS_ABANDONED_TOTAL: Desc = Desc {
    name: "pg_stat_database_sessions_abandoned_total",
    kind: Kind::Counter,
    help: "Sessions to the database ended because the client went away.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_SESSIONS_FATAL_TOTAL: Desc = Desc {
    name: "pg_stat_database_sessions_fatal_total",
    kind: Kind::Counter,
    help: "Sessions to the database ended by a fatal error.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_SESSIONS_KILLED_TOTAL: Desc = Desc {
    name: "pg_stat_database_sessions_killed_total",
    kind: Kind::Counter,
    help: "Sessions to the database ended by operator intervention.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_SESSIONS_TOTAL: Desc = Desc {
    name: "pg_stat_database_sessions_total",
    kind: Kind::Counter,
    help: "Sessions established to the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TEMP_BYTES: Desc = Desc {
    name: "pg_stat_database_temp_bytes",
    kind: Kind::Counter,
    help: "Bytes written to temporary files by queries in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TEMP_BYTES_TOTAL: Desc = Desc {
    name: "pg_stat_database_temp_bytes_total",
    kind: Kind::Counter,
    help: "Bytes written to temporary files by queries in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TEMP_FILES: Desc = Desc {
    name: "pg_stat_database_temp_files",
    kind: Kind::Counter,
    help: "Temporary files created by queries in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TEMP_FILES_TOTAL: Desc = Desc {
    name: "pg_stat_database_temp_files_total",
    kind: Kind::Counter,
    help: "Temporary files created by queries in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_DELETED: Desc = Desc {
    name: "pg_stat_database_tup_deleted",
    kind: Kind::Counter,
    help: "Rows deleted in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_DELETED_TOTAL: Desc = Desc {
    name: "pg_stat_database_tup_deleted_total",
    kind: Kind::Counter,
    help: "Rows deleted in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_FETCHED: Desc = Desc {
    name: "pg_stat_database_tup_fetched",
    kind: Kind::Counter,
    help: "Live rows fetched by index scans in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_FETCHED_TOTAL: Desc = Desc {
    name: "pg_stat_database_tup_fetched_total",
    kind: Kind::Counter,
    help: "Live rows fetched by index scans in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_INSERTED: Desc = Desc {
    name: "pg_stat_database_tup_inserted",
    kind: Kind::Counter,
    help: "Rows inserted in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_INSERTED_TOTAL: Desc = Desc {
    name: "pg_stat_database_tup_inserted_total",
    kind: Kind::Counter,
    help: "Rows inserted in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_RETURNED: Desc = Desc {
    name: "pg_stat_database_tup_returned",
    kind: Kind::Counter,
    help: "Rows returned by sequential scans and index entries returned by index scans in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_RETURNED_TOTAL: Desc = Desc {
    name: "pg_stat_database_tup_returned_total",
    kind: Kind::Counter,
    help: "Rows returned by sequential scans and index entries returned by index scans in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_UPDATED: Desc = Desc {
    name: "pg_stat_database_tup_updated",
    kind: Kind::Counter,
    help: "Rows updated in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_TUP_UPDATED_TOTAL: Desc = Desc {
    name: "pg_stat_database_tup_updated_total",
    kind: Kind::Counter,
    help: "Rows updated in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_XACT_COMMIT: Desc = Desc {
    name: "pg_stat_database_xact_commit",
    kind: Kind::Counter,
    help: "Transactions committed in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_XACT_COMMIT_TOTAL: Desc = Desc {
    name: "pg_stat_database_xact_commit_total",
    kind: Kind::Counter,
    help: "Transactions committed in the database.",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_XACT_ROLLBACK: Desc = Desc {
    name: "pg_stat_database_xact_rollback",
    kind: Kind::Counter,
    help: "Transactions rolled back in the database (postgres_exporter's name).",
    labels: &["datname"],
};

pub const PG_STAT_DATABASE_XACT_ROLLBACK_TOTAL: Desc = Desc {
    name: "pg_stat_database_xact_rollback_total",
    kind: Kind::Counter,
    help: "Transactions rolled back in the database.",
    labels: &["datname"],
};

pub const PG_STAT_IO_EVICTIONS_TOTAL: Desc = Desc {
    name: "pg_stat_io_evictions_total",
    kind: Kind::Counter,
    help: "Times a block was evicted from a buffer to make room for another (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_EXTEND_BYTES_TOTAL: Desc = Desc {
    name: "pg_stat_io_extend_bytes_total",
    kind: Kind::Counter,
    help: "Bytes by which relations were extended (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_EXTENDS_TOTAL: Desc = Desc {
    name: "pg_stat_io_extends_total",
    kind: Kind::Counter,
    help: "Relation extend operations (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_FSYNC_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_io_fsync_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent in fsync calls (needs track_io_timing; PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_FSYNCS_TOTAL: Desc = Desc {
    name: "pg_stat_io_fsyncs_total",
    kind: Kind::Counter,
    help: "fsync calls (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_HITS_TOTAL: Desc = Desc {
    name: "pg_stat_io_hits_total",
    kind: Kind::Counter,
    help: "Times a wanted block was found in a buffer (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_READ_BYTES_TOTAL: Desc = Desc {
    name: "pg_stat_io_read_bytes_total",
    kind: Kind::Counter,
    help: "Bytes read (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_READ_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_io_read_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent in read operations (needs track_io_timing; PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_READS_TOTAL: Desc = Desc {
    name: "pg_stat_io_reads_total",
    kind: Kind::Counter,
    help: "Read operations (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_WRITE_BYTES_TOTAL: Desc = Desc {
    name: "pg_stat_io_write_bytes_total",
    kind: Kind::Counter,
    help: "Bytes written (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_WRITE_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_io_write_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent in write operations (needs track_io_timing; PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_IO_WRITES_TOTAL: Desc = Desc {
    name: "pg_stat_io_writes_total",
    kind: Kind::Counter,
    help: "Write operations (PostgreSQL 16 and later).",
    labels: &["backend_type", "object", "context"],
};

pub const PG_STAT_PROGRESS_VACUUM_HEAP_BLKS: Desc = Desc {
    name: "pg_stat_progress_vacuum_heap_blks",
    kind: Kind::Gauge,
    help: "Heap blocks of the table a running vacuum works on (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname"],
};

pub const PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_SCANNED: Desc = Desc {
    name: "pg_stat_progress_vacuum_heap_blks_scanned",
    kind: Kind::Gauge,
    help: "Heap blocks a running vacuum has scanned so far (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname"],
};

pub const PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_VACUUMED: Desc = Desc {
    name: "pg_stat_progress_vacuum_heap_blks_vacuumed",
    kind: Kind::Gauge,
    help: "Heap blocks a running vacuum has vacuumed so far (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname"],
};

pub const PG_STAT_PROGRESS_VACUUM_INDEX_VACUUMS: Desc = Desc {
    name: "pg_stat_progress_vacuum_index_vacuums",
    kind: Kind::Gauge,
    help: "Index vacuum cycles a running vacuum has completed (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname"],
};

pub const PG_STAT_PROGRESS_VACUUM_MAX_DEAD_TUPLES: Desc = Desc {
    name: "pg_stat_progress_vacuum_max_dead_tuples",
    kind: Kind::Gauge,
    help: "Dead tuples (bytes from PostgreSQL 17) a running vacuum can hold before it cleans indexes (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname"],
};

pub const PG_STAT_PROGRESS_VACUUM_NUM_DEAD_TUPLES: Desc = Desc {
    name: "pg_stat_progress_vacuum_num_dead_tuples",
    kind: Kind::Gauge,
    help: "Dead tuples (item identifiers from PostgreSQL 17) a running vacuum has collected (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname"],
};

pub const PG_STAT_PROGRESS_VACUUM_PHASE: Desc = Desc {
    name: "pg_stat_progress_vacuum_phase",
    kind: Kind::Gauge,
    help: "1 for the phase a running vacuum is in, 0 for the others, one series per phase (postgres_exporter's family; relname schema-qualified in the connected database, the table's OID elsewhere).",
    labels: &["datname", "relname", "phase"],
};

pub const PG_STAT_REPLICATION_FLUSH_LAG_SECONDS: Desc = Desc {
    name: "pg_stat_replication_flush_lag_seconds",
    kind: Kind::Gauge,
    help: "Seconds between flushing WAL locally and the standby reporting it flushed (pg_stat_replication.flush_lag).",
    labels: &["application_name", "client_addr"],
};

pub const PG_STAT_REPLICATION_PG_CURRENT_WAL_LSN_BYTES: Desc = Desc {
    name: "pg_stat_replication_pg_current_wal_lsn_bytes",
    kind: Kind::Gauge,
    help: "The primary's current WAL position in bytes, one series per standby (postgres_exporter's family).",
    labels: &[
        "application_name",
        "client_addr",
        "state",
        "slot_name",
        "pid",
    ],
};

pub const PG_STAT_REPLICATION_PG_WAL_LSN_DIFF: Desc = Desc {
    name: "pg_stat_replication_pg_wal_lsn_diff",
    kind: Kind::Gauge,
    help: "Bytes of WAL between the primary's current position and what the standby has replayed (postgres_exporter's family).",
    labels: &[
        "application_name",
        "client_addr",
        "state",
        "slot_name",
        "pid",
    ],
};

pub const PG_STAT_REPLICATION_REPLAY_LAG_BYTES: Desc = Desc {
    name: "pg_stat_replication_replay_lag_bytes",
    kind: Kind::Gauge,
    help: "Bytes of WAL between the primary's current position and what the standby has replayed.",
    labels: &["application_name", "client_addr"],
};

pub const PG_STAT_REPLICATION_REPLAY_LAG_SECONDS: Desc = Desc {
    name: "pg_stat_replication_replay_lag_seconds",
    kind: Kind::Gauge,
    help: "Seconds between flushing WAL locally and the standby reporting it replayed (pg_stat_replication.replay_lag).",
    labels: &["application_name", "client_addr"],
};

pub const PG_STAT_REPLICATION_WRITE_LAG_SECONDS: Desc = Desc {
    name: "pg_stat_replication_write_lag_seconds",
    kind: Kind::Gauge,
    help: "Seconds between flushing WAL locally and the standby reporting it written (pg_stat_replication.write_lag).",
    labels: &["application_name", "client_addr"],
};

pub const PG_STAT_USER_TABLES_ANALYZE_COUNT: Desc = Desc {
    name: "pg_stat_user_tables_analyze_count",
    kind: Kind::Counter,
    help: "Manual analyzes of the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_AUTOANALYZE_COUNT: Desc = Desc {
    name: "pg_stat_user_tables_autoanalyze_count",
    kind: Kind::Counter,
    help: "Autovacuum analyzes of the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_AUTOVACUUM_COUNT: Desc = Desc {
    name: "pg_stat_user_tables_autovacuum_count",
    kind: Kind::Counter,
    help: "Autovacuum runs on the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_IDX_SCAN: Desc = Desc {
    name: "pg_stat_user_tables_idx_scan",
    kind: Kind::Counter,
    help: "Index scans started on the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_IDX_TUP_FETCH: Desc = Desc {
    name: "pg_stat_user_tables_idx_tup_fetch",
    kind: Kind::Counter,
    help: "Live rows fetched by index scans of the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_INDEX_SIZE_BYTES: Desc = Desc {
    name: "pg_stat_user_tables_index_size_bytes",
    kind: Kind::Gauge,
    help: "Disk space used by the indexes of the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_LAST_ANALYZE: Desc = Desc {
    name: "pg_stat_user_tables_last_analyze",
    kind: Kind::Gauge,
    help: "When the table was last analyzed manually, as a Unix timestamp, 0 if never (postgres_exporter's family; the monitor.top_tables tables with the most dead rows).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_LAST_AUTOANALYZE: Desc = Desc {
    name: "pg_stat_user_tables_last_autoanalyze",
    kind: Kind::Gauge,
    help: "When autovacuum last analyzed the table, as a Unix timestamp, 0 if never (postgres_exporter's family; the monitor.top_tables tables with the most dead rows).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_LAST_AUTOVACUUM: Desc = Desc {
    name: "pg_stat_user_tables_last_autovacuum",
    kind: Kind::Gauge,
    help: "When autovacuum last vacuumed the table, as a Unix timestamp, 0 if never (postgres_exporter's family; the monitor.top_tables tables with the most dead rows).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_LAST_VACUUM: Desc = Desc {
    name: "pg_stat_user_tables_last_vacuum",
    kind: Kind::Gauge,
    help: "When the table was last vacuumed manually, as a Unix timestamp, 0 if never (postgres_exporter's family; the monitor.top_tables tables with the most dead rows).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_N_DEAD_TUP: Desc = Desc {
    name: "pg_stat_user_tables_n_dead_tup",
    kind: Kind::Gauge,
    help: "Estimated dead rows of the table (the top tables by dead rows, the rest summed as (other)).",
    labels: &["datname", "relname", "schemaname"],
};

pub const PG_STAT_USER_TABLES_N_LIVE_TUP: Desc = Desc {
    name: "pg_stat_user_tables_n_live_tup",
    kind: Kind::Gauge,
    help: "Estimated live rows of the table (the top tables by dead rows, the rest summed as (other)).",
    labels: &["datname", "relname", "schemaname"],
};

pub const PG_STAT_WAL_BUFFERS_FULL_TOTAL: Desc = Desc {
    name: "pg_stat_wal_buffers_full_total",
    kind: Kind::Counter,
    help: "Times WAL was written to disk because the WAL buffers were full (PostgreSQL 14 and later).",
    labels: &[],
};

pub const PG_STAT_WAL_BYTES_TOTAL: Desc = Desc {
    name: "pg_stat_wal_bytes_total",
    kind: Kind::Counter,
    help: "Bytes of WAL generated (PostgreSQL 14 and later).",
    labels: &[],
};

pub const PG_STAT_WAL_FPI_TOTAL: Desc = Desc {
    name: "pg_stat_wal_fpi_total",
    kind: Kind::Counter,
    help: "Full page images written to WAL (PostgreSQL 14 and later).",
    labels: &[],
};

pub const PG_STAT_WAL_RECORDS_TOTAL: Desc = Desc {
    name: "pg_stat_wal_records_total",
    kind: Kind::Counter,
    help: "WAL records generated (PostgreSQL 14 and later).",
    labels: &[],
};

pub const PG_STAT_WAL_SYNC_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_wal_sync_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent syncing WAL to disk (needs track_wal_io_timing; PostgreSQL 14 to 17, then pg_stat_io with object wal).",
    labels: &[],
};

pub const PG_STAT_WAL_SYNCS_TOTAL: Desc = Desc {
    name: "pg_stat_wal_syncs_total",
    kind: Kind::Counter,
    help: "Times WAL was synced to disk (PostgreSQL 14 to 17, then pg_stat_io with object wal).",
    labels: &[],
};

pub const PG_STAT_WAL_WRITE_TIME_SECONDS_TOTAL: Desc = Desc {
    name: "pg_stat_wal_write_time_seconds_total",
    kind: Kind::Counter,
    help: "Seconds spent writing WAL to disk (needs track_wal_io_timing; PostgreSQL 14 to 17, then pg_stat_io with object wal).",
    labels: &[],
};

pub const PG_STAT_WAL_WRITES_TOTAL: Desc = Desc {
    name: "pg_stat_wal_writes_total",
    kind: Kind::Counter,
    help: "Times WAL buffers were written out to disk (PostgreSQL 14 to 17, then pg_stat_io with object wal).",
    labels: &[],
};

pub const PG_STAT_USER_TABLES_N_MOD_SINCE_ANALYZE: Desc = Desc {
    name: "pg_stat_user_tables_n_mod_since_analyze",
    kind: Kind::Gauge,
    help: "Estimated rows of the table changed since it was last analyzed (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_N_TUP_DEL: Desc = Desc {
    name: "pg_stat_user_tables_n_tup_del",
    kind: Kind::Counter,
    help: "Rows deleted from the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_N_TUP_HOT_UPD: Desc = Desc {
    name: "pg_stat_user_tables_n_tup_hot_upd",
    kind: Kind::Counter,
    help: "Rows of the table updated without touching its indexes (HOT) (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_N_TUP_INS: Desc = Desc {
    name: "pg_stat_user_tables_n_tup_ins",
    kind: Kind::Counter,
    help: "Rows inserted into the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_N_TUP_UPD: Desc = Desc {
    name: "pg_stat_user_tables_n_tup_upd",
    kind: Kind::Counter,
    help: "Rows updated in the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_SEQ_SCAN: Desc = Desc {
    name: "pg_stat_user_tables_seq_scan",
    kind: Kind::Counter,
    help: "Sequential scans started on the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_SEQ_TUP_READ: Desc = Desc {
    name: "pg_stat_user_tables_seq_tup_read",
    kind: Kind::Counter,
    help: "Live rows read by sequential scans of the table (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_TABLE_SIZE_BYTES: Desc = Desc {
    name: "pg_stat_user_tables_table_size_bytes",
    kind: Kind::Gauge,
    help: "Disk space used by the table, TOAST included, indexes excluded (postgres_exporter's family; the monitor.top_tables tables with the most dead rows).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STAT_USER_TABLES_VACUUM_COUNT: Desc = Desc {
    name: "pg_stat_user_tables_vacuum_count",
    kind: Kind::Counter,
    help: "Manual vacuums of the table (VACUUM FULL not counted) (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIC: Desc = Desc {
    name: "pg_static",
    kind: Kind::Gauge,
    help: "Always 1; the version label is the server's version() string, short_version its version as major.minor.0 (postgres_exporter's family).",
    labels: &["short_version", "version"],
};

pub const PG_STATIO_USER_TABLES_HEAP_BLOCKS_HIT: Desc = Desc {
    name: "pg_statio_user_tables_heap_blocks_hit",
    kind: Kind::Counter,
    help: "Blocks of the table found in shared buffers (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_HEAP_BLOCKS_READ: Desc = Desc {
    name: "pg_statio_user_tables_heap_blocks_read",
    kind: Kind::Counter,
    help: "Blocks of the table read from disk (not found in shared buffers) (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_IDX_BLOCKS_HIT: Desc = Desc {
    name: "pg_statio_user_tables_idx_blocks_hit",
    kind: Kind::Counter,
    help: "Blocks of the table's indexes found in shared buffers (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_IDX_BLOCKS_READ: Desc = Desc {
    name: "pg_statio_user_tables_idx_blocks_read",
    kind: Kind::Counter,
    help: "Blocks of the table's indexes read from disk (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_TIDX_BLOCKS_HIT: Desc = Desc {
    name: "pg_statio_user_tables_tidx_blocks_hit",
    kind: Kind::Counter,
    help: "Blocks of the table's TOAST indexes found in shared buffers (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_TIDX_BLOCKS_READ: Desc = Desc {
    name: "pg_statio_user_tables_tidx_blocks_read",
    kind: Kind::Counter,
    help: "Blocks of the table's TOAST indexes read from disk (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_TOAST_BLOCKS_HIT: Desc = Desc {
    name: "pg_statio_user_tables_toast_blocks_hit",
    kind: Kind::Counter,
    help: "Blocks of the table's TOAST table found in shared buffers (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_STATIO_USER_TABLES_TOAST_BLOCKS_READ: Desc = Desc {
    name: "pg_statio_user_tables_toast_blocks_read",
    kind: Kind::Counter,
    help: "Blocks of the table's TOAST table read from disk (postgres_exporter's family; the monitor.top_tables tables with the most dead rows, no (other) row).",
    labels: &["datname", "schemaname", "relname"],
};

pub const PG_UP: Desc = Desc {
    name: "pg_up",
    kind: Kind::Gauge,
    help: "Whether the last poll reached the PostgreSQL server (1) or not (0).",
    labels: &[],
};

pub const PG_WAL_SEGMENTS: Desc = Desc {
    name: "pg_wal_segments",
    kind: Kind::Gauge,
    help: "WAL segment files in pg_wal (postgres_exporter's family; needs pg_monitor or superuser, absent without).",
    labels: &[],
};

pub const PG_WAL_SIZE_BYTES: Desc = Desc {
    name: "pg_wal_size_bytes",
    kind: Kind::Gauge,
    help: "Total size of the WAL segment files in pg_wal (postgres_exporter's family; needs pg_monitor or superuser, absent without).",
    labels: &[],
};

pub const PROCESS_CPU_SECONDS_TOTAL: Desc = Desc {
    name: "process_cpu_seconds_total",
    kind: Kind::Counter,
    help: "CPU time the agent has used, user plus system, in seconds.",
    labels: &[],
};

pub const PROCESS_MAX_FDS: Desc = Desc {
    name: "process_max_fds",
    kind: Kind::Gauge,
    help: "The agent's limit on open file descriptors.",
    labels: &[],
};

pub const PROCESS_OPEN_FDS: Desc = Desc {
    name: "process_open_fds",
    kind: Kind::Gauge,
    help: "File descriptors the agent has open.",
    labels: &[],
};

pub const PROCESS_RESIDENT_MEMORY_BYTES: Desc = Desc {
    name: "process_resident_memory_bytes",
    kind: Kind::Gauge,
    help: "Resident memory of the agent in bytes.",
    labels: &[],
};

pub const PROCESS_START_TIME_SECONDS: Desc = Desc {
    name: "process_start_time_seconds",
    kind: Kind::Gauge,
    help: "When the agent process started, as a Unix timestamp.",
    labels: &[],
};

pub const PROCESS_VIRTUAL_MEMORY_BYTES: Desc = Desc {
    name: "process_virtual_memory_bytes",
    kind: Kind::Gauge,
    help: "Virtual memory of the agent in bytes.",
    labels: &[],
};

pub const PROCESS_VIRTUAL_MEMORY_MAX_BYTES: Desc = Desc {
    name: "process_virtual_memory_max_bytes",
    kind: Kind::Gauge,
    help: "The agent's limit on virtual memory in bytes (18446744073709551615 when unlimited, as client libraries report it).",
    labels: &[],
};

/// Every entry, sorted by name (the order of docs/metrics.md).
pub const ALL: &[Desc] = &[
    DBAGENT_ADVISOR_FINDINGS,
    DBAGENT_ADVISOR_HOTSPOT_LARGEST_TABLE_BYTES,
    DBAGENT_ADVISOR_LARGEST_UNUSED_INDEX_BYTES,
    DBAGENT_ADVISOR_OBSERVED_SECONDS,
    DBAGENT_ADVISOR_PLAN_CHANGE_MEAN_RATIO,
    DBAGENT_ADVISOR_UNUSED_INDEX_BYTES,
    DBAGENT_ALERT_RULES,
    DBAGENT_ALERTS,
    DBAGENT_ARCHIVER_FAILING,
    DBAGENT_ARCHIVER_LAST_FAILURE_AGE_SECONDS,
    DBAGENT_BACKUP_AGE_SECONDS,
    DBAGENT_BACKUP_DURATION_SECONDS,
    DBAGENT_BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS,
    DBAGENT_BACKUPS,
    DBAGENT_BLOAT_SKIPPED_RELATIONS,
    DBAGENT_BUILD_INFO,
    DBAGENT_CHECKPOINTS_REQUESTED_RATIO,
    DBAGENT_COLLECTOR_DURATION_SECONDS,
    DBAGENT_COLLECTOR_ERRORS_TOTAL,
    DBAGENT_COLLECTOR_UP,
    DBAGENT_CONNECT_ERRORS_TOTAL,
    DBAGENT_CONNECTIONS_EXHAUSTION_RATIO,
    DBAGENT_CONNECTIONS_IDLE_IN_TRANSACTION_MAX_AGE_SECONDS,
    DBAGENT_CONNECTIONS_IDLE_IN_TRANSACTION_SESSIONS,
    DBAGENT_CONNECTIONS_LOCK_WAITING_SESSIONS,
    DBAGENT_CONNECTIONS_OLDEST_TRANSACTION_AGE_SECONDS,
    DBAGENT_CONNECTIONS_SESSIONS,
    DBAGENT_CONNECTIONS_USABLE_LIMIT,
    DBAGENT_DATABASE_CACHE_HIT_RATIO,
    DBAGENT_DATABASE_MXID_AGE,
    DBAGENT_DATABASE_MXID_WRAPAROUND_RATIO,
    DBAGENT_DATABASE_WATCH_UP,
    DBAGENT_DATABASE_XID_AGE,
    DBAGENT_DATABASE_XID_WRAPAROUND_RATIO,
    DBAGENT_DRILL_AGE_SECONDS,
    DBAGENT_DRILL_LAST_RESULT,
    DBAGENT_DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS,
    DBAGENT_DRILL_RTO_SECONDS,
    DBAGENT_INDEX_BLOAT_BYTES,
    DBAGENT_INDEX_BLOAT_RATIO,
    DBAGENT_INDEX_EXACT_LEAF_DENSITY_RATIO,
    DBAGENT_JOB_LAST_DURATION_SECONDS,
    DBAGENT_JOB_LAST_RESULT,
    DBAGENT_JOB_LAST_SUCCESS_TIMESTAMP_SECONDS,
    DBAGENT_JOB_NEXT_RUN_TIMESTAMP_SECONDS,
    DBAGENT_JOB_RUNNING,
    DBAGENT_JOB_RUNS_TOTAL,
    DBAGENT_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS,
    DBAGENT_LAST_SCRAPE_DURATION_SECONDS,
    DBAGENT_LEADER,
    DBAGENT_LOCKS_AWAITED,
    DBAGENT_LOCKS_BLOCKED_SESSIONS,
    DBAGENT_LOCKS_BLOCKING_SESSIONS,
    DBAGENT_LOCKS_HELD,
    DBAGENT_LOCKS_LONGEST_WAIT_SECONDS,
    DBAGENT_METRICS_AGE_SECONDS,
    DBAGENT_NOTIFICATION_RETRIES_TOTAL,
    DBAGENT_NOTIFICATIONS_FAILED_TOTAL,
    DBAGENT_NOTIFICATIONS_SENT_TOTAL,
    DBAGENT_OUTBOX_DEPTH,
    DBAGENT_OUTBOX_OLDEST_AGE_SECONDS,
    DBAGENT_PGSTATTUPLE_AVAILABLE,
    DBAGENT_PGSTATTUPLE_SKIPPED_RELATIONS,
    DBAGENT_POLL_DURATION_SECONDS,
    DBAGENT_POLL_INTERVAL_SECONDS,
    DBAGENT_POLL_OVERRUNS_TOTAL,
    DBAGENT_POLLS_TOTAL,
    DBAGENT_REPLICATION_REPLAY_LAG_BYTES,
    DBAGENT_REPLICATION_STANDBYS,
    DBAGENT_RPO_SECONDS,
    DBAGENT_RPO_TARGET_SECONDS,
    DBAGENT_RTO_TARGET_SECONDS,
    DBAGENT_SCRAPES_TOTAL,
    DBAGENT_STANDBY_UNREPLAYED_ARCHIVE_AGE_SECONDS,
    DBAGENT_START_TIME_SECONDS,
    DBAGENT_STATEMENT_CALLS,
    DBAGENT_STATEMENT_MEAN_SECONDS,
    DBAGENT_STATEMENT_ROWS,
    DBAGENT_STATEMENT_SECONDS,
    DBAGENT_STATEMENTS_AVAILABLE,
    DBAGENT_STATEMENTS_DEALLOC_TOTAL,
    DBAGENT_STATEMENTS_TRACKED,
    DBAGENT_TABLE_BLOAT_BYTES,
    DBAGENT_TABLE_BLOAT_RATIO,
    DBAGENT_TABLE_EXACT_BLOAT_RATIO,
    DBAGENT_TABLE_EXACT_DEAD_TUPLE_BYTES,
    DBAGENT_TABLE_EXACT_FREE_BYTES,
    DBAGENT_TABLE_LAST_ANALYZE_AGE_SECONDS,
    DBAGENT_TABLE_LAST_VACUUM_AGE_SECONDS,
    DBAGENT_WAL_VERIFY_AGE_SECONDS,
    DBAGENT_WAL_VERIFY_HISTORY_CONFLICTS,
    DBAGENT_WAL_VERIFY_LAST_RUN_TIMESTAMP_SECONDS,
    DBAGENT_WAL_VERIFY_RANGE_END_LSN_BYTES,
    DBAGENT_WAL_VERIFY_RANGE_START_LSN_BYTES,
    DBAGENT_WAL_VERIFY_SEGMENTS,
    PG_DATABASE_CONNECTION_LIMIT,
    PG_DATABASE_SIZE_BYTES,
    PG_EXPORTER_LAST_SCRAPE_DURATION_SECONDS,
    PG_EXPORTER_LAST_SCRAPE_ERROR,
    PG_EXPORTER_SCRAPES_TOTAL,
    PG_LOCKS_COUNT,
    PG_POSTMASTER_START_TIME_SECONDS,
    PG_REPLICATION_IS_REPLICA,
    PG_REPLICATION_LAG,
    PG_REPLICATION_LAG_SECONDS,
    PG_REPLICATION_LAST_REPLAY_SECONDS,
    PG_REPLICATION_SLOTS_ACTIVE,
    PG_REPLICATION_SLOTS_PG_WAL_LSN_DIFF,
    PG_REPLICATION_SLOTS_SAFE_WAL_SIZE_BYTES,
    PG_REPLICATION_SLOTS_SLOT_CONFIRMED_FLUSH_LSN,
    PG_REPLICATION_SLOTS_SLOT_CURRENT_WAL_LSN,
    PG_REPLICATION_SLOTS_SLOT_IS_ACTIVE,
    PG_REPLICATION_SLOTS_WAL_STATUS,
    PG_ROLES_CONNECTION_LIMIT,
    PG_SETTINGS_,
    PG_SETTINGS_MAX_CONNECTIONS,
    PG_STAT_ACTIVITY_COUNT,
    PG_STAT_ACTIVITY_MAX_TX_DURATION,
    PG_STAT_ACTIVITY_SESSIONS,
    PG_STAT_ARCHIVER_ARCHIVED_COUNT,
    PG_STAT_ARCHIVER_ARCHIVED_TOTAL,
    PG_STAT_ARCHIVER_FAILED_COUNT,
    PG_STAT_ARCHIVER_FAILED_TOTAL,
    PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE,
    PG_STAT_ARCHIVER_LAST_ARCHIVE_AGE_SECONDS,
    PG_STAT_BGWRITER_BUFFERS_ALLOC,
    PG_STAT_BGWRITER_BUFFERS_ALLOC_TOTAL,
    PG_STAT_BGWRITER_BUFFERS_BACKEND,
    PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC,
    PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC_TOTAL,
    PG_STAT_BGWRITER_BUFFERS_BACKEND_TOTAL,
    PG_STAT_BGWRITER_BUFFERS_CHECKPOINT,
    PG_STAT_BGWRITER_BUFFERS_CHECKPOINT_TOTAL,
    PG_STAT_BGWRITER_BUFFERS_CLEAN,
    PG_STAT_BGWRITER_BUFFERS_CLEAN_TOTAL,
    PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME,
    PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_SECONDS_TOTAL,
    PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME_TOTAL,
    PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME,
    PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_SECONDS_TOTAL,
    PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME_TOTAL,
    PG_STAT_BGWRITER_CHECKPOINTS_REQ,
    PG_STAT_BGWRITER_CHECKPOINTS_REQ_TOTAL,
    PG_STAT_BGWRITER_CHECKPOINTS_TIMED,
    PG_STAT_BGWRITER_CHECKPOINTS_TIMED_TOTAL,
    PG_STAT_BGWRITER_MAXWRITTEN_CLEAN_TOTAL,
    PG_STAT_CHECKPOINTER_BUFFERS_WRITTEN_TOTAL,
    PG_STAT_CHECKPOINTER_NUM_DONE_TOTAL,
    PG_STAT_CHECKPOINTER_NUM_REQUESTED_TOTAL,
    PG_STAT_CHECKPOINTER_NUM_TIMED_TOTAL,
    PG_STAT_CHECKPOINTER_RESTARTPOINTS_DONE_TOTAL,
    PG_STAT_CHECKPOINTER_RESTARTPOINTS_REQ_TOTAL,
    PG_STAT_CHECKPOINTER_RESTARTPOINTS_TIMED_TOTAL,
    PG_STAT_CHECKPOINTER_SLRU_WRITTEN_TOTAL,
    PG_STAT_CHECKPOINTER_STATS_RESET_TOTAL,
    PG_STAT_CHECKPOINTER_SYNC_TIME_TOTAL,
    PG_STAT_CHECKPOINTER_WRITE_TIME_TOTAL,
    PG_STAT_DATABASE_ACTIVE_TIME_SECONDS_TOTAL,
    PG_STAT_DATABASE_BLK_READ_TIME,
    PG_STAT_DATABASE_BLK_READ_TIME_SECONDS_TOTAL,
    PG_STAT_DATABASE_BLK_WRITE_TIME,
    PG_STAT_DATABASE_BLK_WRITE_TIME_SECONDS_TOTAL,
    PG_STAT_DATABASE_BLKS_HIT,
    PG_STAT_DATABASE_BLKS_HIT_TOTAL,
    PG_STAT_DATABASE_BLKS_READ,
    PG_STAT_DATABASE_BLKS_READ_TOTAL,
    PG_STAT_DATABASE_CHECKSUM_FAILURES_TOTAL,
    PG_STAT_DATABASE_CONFLICTS,
    PG_STAT_DATABASE_CONFLICTS_CONFL_BUFFERPIN,
    PG_STAT_DATABASE_CONFLICTS_CONFL_DEADLOCK,
    PG_STAT_DATABASE_CONFLICTS_CONFL_LOCK,
    PG_STAT_DATABASE_CONFLICTS_CONFL_SNAPSHOT,
    PG_STAT_DATABASE_CONFLICTS_CONFL_TABLESPACE,
    PG_STAT_DATABASE_CONFLICTS_TOTAL,
    PG_STAT_DATABASE_DEADLOCKS,
    PG_STAT_DATABASE_DEADLOCKS_TOTAL,
    PG_STAT_DATABASE_IDLE_IN_TRANSACTION_TIME_SECONDS_TOTAL,
    PG_STAT_DATABASE_NUMBACKENDS,
    PG_STAT_DATABASE_SESSION_TIME_SECONDS_TOTAL,
    PG_STAT_DATABASE_SESSIONS_ABANDONED_TOTAL,
    PG_STAT_DATABASE_SESSIONS_FATAL_TOTAL,
    PG_STAT_DATABASE_SESSIONS_KILLED_TOTAL,
    PG_STAT_DATABASE_SESSIONS_TOTAL,
    PG_STAT_DATABASE_TEMP_BYTES,
    PG_STAT_DATABASE_TEMP_BYTES_TOTAL,
    PG_STAT_DATABASE_TEMP_FILES,
    PG_STAT_DATABASE_TEMP_FILES_TOTAL,
    PG_STAT_DATABASE_TUP_DELETED,
    PG_STAT_DATABASE_TUP_DELETED_TOTAL,
    PG_STAT_DATABASE_TUP_FETCHED,
    PG_STAT_DATABASE_TUP_FETCHED_TOTAL,
    PG_STAT_DATABASE_TUP_INSERTED,
    PG_STAT_DATABASE_TUP_INSERTED_TOTAL,
    PG_STAT_DATABASE_TUP_RETURNED,
    PG_STAT_DATABASE_TUP_RETURNED_TOTAL,
    PG_STAT_DATABASE_TUP_UPDATED,
    PG_STAT_DATABASE_TUP_UPDATED_TOTAL,
    PG_STAT_DATABASE_XACT_COMMIT,
    PG_STAT_DATABASE_XACT_COMMIT_TOTAL,
    PG_STAT_DATABASE_XACT_ROLLBACK,
    PG_STAT_DATABASE_XACT_ROLLBACK_TOTAL,
    PG_STAT_IO_EVICTIONS_TOTAL,
    PG_STAT_IO_EXTEND_BYTES_TOTAL,
    PG_STAT_IO_EXTENDS_TOTAL,
    PG_STAT_IO_FSYNC_TIME_SECONDS_TOTAL,
    PG_STAT_IO_FSYNCS_TOTAL,
    PG_STAT_IO_HITS_TOTAL,
    PG_STAT_IO_READ_BYTES_TOTAL,
    PG_STAT_IO_READ_TIME_SECONDS_TOTAL,
    PG_STAT_IO_READS_TOTAL,
    PG_STAT_IO_WRITE_BYTES_TOTAL,
    PG_STAT_IO_WRITE_TIME_SECONDS_TOTAL,
    PG_STAT_IO_WRITES_TOTAL,
    PG_STAT_PROGRESS_VACUUM_HEAP_BLKS,
    PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_SCANNED,
    PG_STAT_PROGRESS_VACUUM_HEAP_BLKS_VACUUMED,
    PG_STAT_PROGRESS_VACUUM_INDEX_VACUUMS,
    PG_STAT_PROGRESS_VACUUM_MAX_DEAD_TUPLES,
    PG_STAT_PROGRESS_VACUUM_NUM_DEAD_TUPLES,
    PG_STAT_PROGRESS_VACUUM_PHASE,
    PG_STAT_REPLICATION_FLUSH_LAG_SECONDS,
    PG_STAT_REPLICATION_PG_CURRENT_WAL_LSN_BYTES,
    PG_STAT_REPLICATION_PG_WAL_LSN_DIFF,
    PG_STAT_REPLICATION_REPLAY_LAG_BYTES,
    PG_STAT_REPLICATION_REPLAY_LAG_SECONDS,
    PG_STAT_REPLICATION_WRITE_LAG_SECONDS,
    PG_STAT_USER_TABLES_ANALYZE_COUNT,
    PG_STAT_USER_TABLES_AUTOANALYZE_COUNT,
    PG_STAT_USER_TABLES_AUTOVACUUM_COUNT,
    PG_STAT_USER_TABLES_IDX_SCAN,
    PG_STAT_USER_TABLES_IDX_TUP_FETCH,
    PG_STAT_USER_TABLES_INDEX_SIZE_BYTES,
    PG_STAT_USER_TABLES_LAST_ANALYZE,
    PG_STAT_USER_TABLES_LAST_AUTOANALYZE,
    PG_STAT_USER_TABLES_LAST_AUTOVACUUM,
    PG_STAT_USER_TABLES_LAST_VACUUM,
    PG_STAT_USER_TABLES_N_DEAD_TUP,
    PG_STAT_USER_TABLES_N_LIVE_TUP,
    PG_STAT_USER_TABLES_N_MOD_SINCE_ANALYZE,
    PG_STAT_USER_TABLES_N_TUP_DEL,
    PG_STAT_USER_TABLES_N_TUP_HOT_UPD,
    PG_STAT_USER_TABLES_N_TUP_INS,
    PG_STAT_USER_TABLES_N_TUP_UPD,
    PG_STAT_USER_TABLES_SEQ_SCAN,
    PG_STAT_USER_TABLES_SEQ_TUP_READ,
    PG_STAT_USER_TABLES_TABLE_SIZE_BYTES,
    PG_STAT_USER_TABLES_VACUUM_COUNT,
    PG_STAT_WAL_BUFFERS_FULL_TOTAL,
    PG_STAT_WAL_BYTES_TOTAL,
    PG_STAT_WAL_FPI_TOTAL,
    PG_STAT_WAL_RECORDS_TOTAL,
    PG_STAT_WAL_SYNC_TIME_SECONDS_TOTAL,
    PG_STAT_WAL_SYNCS_TOTAL,
    PG_STAT_WAL_WRITE_TIME_SECONDS_TOTAL,
    PG_STAT_WAL_WRITES_TOTAL,
    PG_STATIC,
    PG_STATIO_USER_TABLES_HEAP_BLOCKS_HIT,
    PG_STATIO_USER_TABLES_HEAP_BLOCKS_READ,
    PG_STATIO_USER_TABLES_IDX_BLOCKS_HIT,
    PG_STATIO_USER_TABLES_IDX_BLOCKS_READ,
    PG_STATIO_USER_TABLES_TIDX_BLOCKS_HIT,
    PG_STATIO_USER_TABLES_TIDX_BLOCKS_READ,
    PG_STATIO_USER_TABLES_TOAST_BLOCKS_HIT,
    PG_STATIO_USER_TABLES_TOAST_BLOCKS_READ,
    PG_UP,
    PG_WAL_SEGMENTS,
    PG_WAL_SIZE_BYTES,
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_MAX_FDS,
    PROCESS_OPEN_FDS,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_START_TIME_SECONDS,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_MAX_BYTES,
];

/// The PostgreSQL major versions a family exists on, for the families that depend on the
/// server version; every family not in [`VERSIONED`] exists on every supported version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// The first major version that has it (0: every version up to `until`).
    pub since: u32,
    /// The last major version that has it (None: every later version).
    pub until: Option<u32>,
    /// What to read instead where it is absent (for error messages).
    pub instead: &'static str,
}

impl Versions {
    pub fn contains(&self, major: u32) -> bool {
        major >= self.since && self.until.is_none_or(|u| major <= u)
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.since, self.until) {
            (0, Some(u)) => write!(f, "PostgreSQL {u} and earlier"),
            (s, Some(u)) => write!(f, "PostgreSQL {s} to {u}"),
            (s, None) => write!(f, "PostgreSQL {s} and later"),
        }
    }
}

const fn since(since: u32, instead: &'static str) -> Versions {
    Versions {
        since,
        until: None,
        instead,
    }
}

const fn between(since: u32, until: u32, instead: &'static str) -> Versions {
    Versions {
        since,
        until: Some(until),
        instead,
    }
}

const CHECKPOINTS_BEFORE_17: &str = "pg_stat_bgwriter_checkpoint* (every version: dbagent reads them from pg_stat_checkpointer on 17 and later)";
const IO_BEFORE_16: &str = "pg_stat_bgwriter_buffers_* and pg_stat_database_blks_* (before 16)";
const WAL_IO_ON_18: &str = "pg_stat_io_* with object=\"wal\" (16 and later)";

/// The version table: families that exist on some PostgreSQL versions only (docs/metrics.md's
/// "PostgreSQL versions" table). The alert rules are checked against it once the server's version is
/// known (`alert::rules::AlertsFile::check_server_version`).
pub const VERSIONED: &[(&Desc, Versions)] = &[
    (
        &PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC_TOTAL,
        between(
            0,
            16,
            "pg_stat_io_fsyncs_total{backend_type=\"client backend\"} (16 and later)",
        ),
    ),
    (
        &PG_STAT_BGWRITER_BUFFERS_BACKEND_TOTAL,
        between(
            0,
            16,
            "pg_stat_io_writes_total{backend_type=\"client backend\"} (16 and later)",
        ),
    ),
    (
        &PG_STAT_CHECKPOINTER_BUFFERS_WRITTEN_TOTAL,
        since(
            17,
            "pg_stat_bgwriter_buffers_checkpoint_total (every version)",
        ),
    ),
    (
        &PG_STAT_CHECKPOINTER_NUM_DONE_TOTAL,
        since(
            18,
            "pg_stat_bgwriter_checkpoints_timed_total + pg_stat_bgwriter_checkpoints_req_total (every version)",
        ),
    ),
    (
        &PG_STAT_CHECKPOINTER_NUM_REQUESTED_TOTAL,
        since(17, "pg_stat_bgwriter_checkpoints_req_total (every version)"),
    ),
    (
        &PG_STAT_CHECKPOINTER_NUM_TIMED_TOTAL,
        since(
            17,
            "pg_stat_bgwriter_checkpoints_timed_total (every version)",
        ),
    ),
    (
        &PG_STAT_CHECKPOINTER_RESTARTPOINTS_DONE_TOTAL,
        since(17, CHECKPOINTS_BEFORE_17),
    ),
    (
        &PG_STAT_CHECKPOINTER_RESTARTPOINTS_REQ_TOTAL,
        since(17, CHECKPOINTS_BEFORE_17),
    ),
    (
        &PG_STAT_CHECKPOINTER_RESTARTPOINTS_TIMED_TOTAL,
        since(17, CHECKPOINTS_BEFORE_17),
    ),
    (
        &PG_STAT_CHECKPOINTER_STATS_RESET_TOTAL,
        since(17, CHECKPOINTS_BEFORE_17),
    ),
    (
        &PG_STAT_CHECKPOINTER_SYNC_TIME_TOTAL,
        since(17, "pg_stat_bgwriter_checkpoint_sync_time* (every version)"),
    ),
    (
        &PG_STAT_CHECKPOINTER_WRITE_TIME_TOTAL,
        since(
            17,
            "pg_stat_bgwriter_checkpoint_write_time* (every version)",
        ),
    ),
    (
        &PG_STAT_DATABASE_ACTIVE_TIME_SECONDS_TOTAL,
        since(14, "pg_stat_activity (every version)"),
    ),
    (
        &PG_STAT_DATABASE_IDLE_IN_TRANSACTION_TIME_SECONDS_TOTAL,
        since(
            14,
            "dbagent_connections_idle_in_transaction_* (every version)",
        ),
    ),
    (
        &PG_STAT_DATABASE_SESSION_TIME_SECONDS_TOTAL,
        since(14, "pg_stat_activity (every version)"),
    ),
    (
        &PG_STAT_DATABASE_SESSIONS_ABANDONED_TOTAL,
        since(14, "pg_stat_activity (every version)"),
    ),
    (
        &PG_STAT_DATABASE_SESSIONS_FATAL_TOTAL,
        since(14, "pg_stat_activity (every version)"),
    ),
    (
        &PG_STAT_DATABASE_SESSIONS_KILLED_TOTAL,
        since(14, "pg_stat_activity (every version)"),
    ),
    (
        &PG_STAT_DATABASE_SESSIONS_TOTAL,
        since(14, "pg_stat_activity (every version)"),
    ),
    (&PG_STAT_IO_EVICTIONS_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_EXTEND_BYTES_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_EXTENDS_TOTAL, since(16, IO_BEFORE_16)),
    (
        &PG_STAT_IO_FSYNC_TIME_SECONDS_TOTAL,
        since(16, IO_BEFORE_16),
    ),
    (&PG_STAT_IO_FSYNCS_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_HITS_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_READ_BYTES_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_READ_TIME_SECONDS_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_READS_TOTAL, since(16, IO_BEFORE_16)),
    (&PG_STAT_IO_WRITE_BYTES_TOTAL, since(16, IO_BEFORE_16)),
    (
        &PG_STAT_IO_WRITE_TIME_SECONDS_TOTAL,
        since(16, IO_BEFORE_16),
    ),
    (&PG_STAT_IO_WRITES_TOTAL, since(16, IO_BEFORE_16)),
    (
        &PG_STAT_WAL_BUFFERS_FULL_TOTAL,
        since(14, "nothing before 14"),
    ),
    (&PG_STAT_WAL_BYTES_TOTAL, since(14, "nothing before 14")),
    (&PG_STAT_WAL_FPI_TOTAL, since(14, "nothing before 14")),
    (&PG_STAT_WAL_RECORDS_TOTAL, since(14, "nothing before 14")),
    (
        &PG_STAT_WAL_SYNC_TIME_SECONDS_TOTAL,
        between(14, 17, WAL_IO_ON_18),
    ),
    (&PG_STAT_WAL_SYNCS_TOTAL, between(14, 17, WAL_IO_ON_18)),
    (
        &PG_STAT_WAL_WRITE_TIME_SECONDS_TOTAL,
        between(14, 17, WAL_IO_ON_18),
    ),
    (&PG_STAT_WAL_WRITES_TOTAL, between(14, 17, WAL_IO_ON_18)),
];

/// The versions `name` exists on, when it does not exist on every supported version.
pub fn versions(name: &str) -> Option<&'static Versions> {
    VERSIONED
        .iter()
        .find(|(d, _)| d.name == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_sorted_and_follow_the_conventions() {
        for pair in ALL.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        for d in ALL {
            assert!(
                ["pg_", "dbagent_", "process_"]
                    .iter()
                    .any(|p| d.name.starts_with(p)),
                "{}",
                d.name
            );
            // The exporter's counters need not end in _total (accepted promtool complaints).
            if set_of(d.name) != Set::Exporter {
                assert_eq!(
                    d.kind == Kind::Counter,
                    d.name.ends_with("_total"),
                    "{}",
                    d.name
                );
            }
            assert!(d.help.ends_with('.'), "{}: {}", d.name, d.help);
        }
    }

    /// The name-set tables name catalogue entries only, each once, and a renamed family keeps
    /// its labels (the renderer writes the same samples under the other name).
    #[test]
    fn the_name_sets_are_consistent() {
        let listed = |d: &Desc| ALL.iter().any(|a| a == d);
        let mut seen = std::collections::BTreeSet::new();
        for r in EXPORTER_NAMES {
            assert!(
                listed(r.from) && listed(r.to),
                "{} -> {}",
                r.from.name,
                r.to.name
            );
            assert_eq!(
                r.from.labels, r.to.labels,
                "{} -> {}",
                r.from.name, r.to.name
            );
            assert!(seen.insert(r.to.name), "{} named twice", r.to.name);
            assert_ne!(set_of(r.from.name), Set::Exporter, "{}", r.from.name);
            assert!(r.scale > 0.0);
        }
        for d in EXPORTER_ONLY {
            assert!(listed(d), "{}", d.name);
            assert!(seen.insert(d.name), "{} listed twice", d.name);
            assert!(
                exporter_names_of(d.name).next().is_none(),
                "{} is the exporter's own name",
                d.name
            );
        }
        for d in ALL {
            if d.name.starts_with("dbagent_") {
                assert_eq!(
                    set_of(d.name),
                    Set::Both,
                    "{}: dbagent_* families are in both sets",
                    d.name
                );
            }
        }
    }

    #[test]
    fn rules_read_exporter_names_from_dbagent_families() {
        assert_eq!(
            source_of("pg_stat_database_blk_write_time"),
            ("pg_stat_database_blk_write_time_seconds_total", 1000.0)
        );
        assert_eq!(source_of("pg_up"), ("pg_up", 1.0));
        assert_eq!(set_of("pg_stat_database_xact_commit_total"), Set::Dbagent);
        assert_eq!(set_of("pg_stat_database_xact_commit"), Set::Exporter);
        assert_eq!(set_of("pg_replication_lag_seconds"), Set::Both);
    }

    /// The metrics reference of docs/metrics.md is this catalogue, row by row: name (with its
    /// name set when it is in one only), type, labels, HELP.
    #[test]
    fn the_docs_metrics_reference_is_the_catalogue() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
            .unwrap();
        let section = doc
            .split("\n## Metrics reference\n")
            .nth(1)
            .expect("docs/metrics.md has a `## Metrics reference` section");
        let rows: Vec<String> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(str::to_string)
            .collect();
        let expected: Vec<String> = ALL
            .iter()
            .map(|d| {
                let labels: Vec<String> = d.labels.iter().map(|l| format!("`{l}`")).collect();
                let kind = match d.kind {
                    Kind::Gauge => "gauge",
                    Kind::Counter => "counter",
                };
                let set = match set_of(d.name) {
                    Set::Both => "",
                    Set::Dbagent => " (dbagent)",
                    Set::Exporter => " (exporter)",
                };
                format!(
                    "| `{}`{set} | {kind} | {} | {} |",
                    d.name,
                    labels.join(", "),
                    d.help
                )
            })
            .collect();
        for (i, (r, e)) in rows.iter().zip(&expected).enumerate() {
            assert_eq!(r, e, "docs/metrics.md metrics reference, row {}", i + 1);
        }
        assert_eq!(
            rows.len(),
            expected.len(),
            "rows in docs/metrics.md vs entries in the catalogue"
        );
    }

    #[test]
    fn the_version_table_says_where_each_family_exists() {
        let at = |name: &str, major: u32| versions(name).is_none_or(|v| v.contains(major));
        // Everything not in the table exists everywhere.
        assert!(versions("pg_up").is_none() && at("pg_up", 13) && at("pg_up", 18));
        // The bgwriter checkpoint names are served on every version (from pg_stat_checkpointer
        // on 17 and later); the backend columns left pg_stat_bgwriter in 17.
        for major in 13..=18 {
            assert!(at("pg_stat_bgwriter_checkpoints_timed_total", major));
            assert!(at("pg_stat_bgwriter_checkpoints_req_total", major));
        }
        assert!(at("pg_stat_bgwriter_buffers_backend_total", 16));
        assert!(!at("pg_stat_bgwriter_buffers_backend_total", 17));
        assert!(!at("pg_stat_checkpointer_num_timed_total", 16));
        assert!(at("pg_stat_checkpointer_num_timed_total", 17));
        assert!(!at("pg_stat_checkpointer_num_done_total", 17));
        assert!(at("pg_stat_checkpointer_num_done_total", 18));
        assert!(!at("pg_stat_io_reads_total", 15) && at("pg_stat_io_reads_total", 16));
        assert!(!at("pg_stat_wal_bytes_total", 13) && at("pg_stat_wal_bytes_total", 18));
        assert!(at("pg_stat_wal_writes_total", 17) && !at("pg_stat_wal_writes_total", 18));
        assert_eq!(
            versions("pg_stat_checkpointer_num_timed_total")
                .unwrap()
                .to_string(),
            "PostgreSQL 17 and later"
        );
        assert_eq!(
            versions("pg_stat_wal_writes_total").unwrap().to_string(),
            "PostgreSQL 14 to 17"
        );
        assert_eq!(
            versions("pg_stat_bgwriter_buffers_backend_total")
                .unwrap()
                .to_string(),
            "PostgreSQL 16 and earlier"
        );
        // Each family once, each one in the catalogue.
        for (i, (d, _)) in VERSIONED.iter().enumerate() {
            assert!(ALL.contains(d), "{}", d.name);
            assert!(
                VERSIONED[..i].iter().all(|(o, _)| o.name != d.name),
                "{}",
                d.name
            );
        }
    }
}
