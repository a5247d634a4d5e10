//! The agent's local store: one SQLite database, `state.db` in `state_dir`, holding what the
//! agent learns and must remember across restarts (baselines, alert state, silences,
//! restore drill results; the notification outbox and job history later).
//!
//! One place for the schema: [`MIGRATIONS`], applied forward-only and recorded in
//! `PRAGMA user_version` (the number of migrations applied). Adding a table is appending one
//! entry. The database runs in WAL mode, so inspection commands (opened with
//! [`StateDb::open_read_only`]) read while `dbagent run` writes, and it stays inspectable with
//! `sqlite3 state.db`. Every error names the file and says what to do.
//!
//! Layer: access. Uses: units. Used by: advise, agent, alert, baseline, collect, drill,
//! notify, schedule, wal.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

/// The database file inside `state_dir`.
pub const STATE_FILE: &str = "state.db";

/// How long a statement waits for a lock held by another connection before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one forward-only migration per entry (name, SQL). Never edit or reorder an
/// entry that has shipped; append a new one. `PRAGMA user_version` = entries applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    // 1: baselines (src/baseline). One row per series; one row per learned bucket of a series:
    // season 'overall' (slot 0), 'hour_of_day' (slot 0..23 UTC), 'hour_of_week' (slot 0..167,
    // 0 = Monday 00:00 UTC). Times are Unix milliseconds.
    (
        "baselines",
        "CREATE TABLE baseline_series (
            id          INTEGER PRIMARY KEY,
            series      TEXT    NOT NULL UNIQUE,
            last_value  REAL    NOT NULL,
            updated_ms  INTEGER NOT NULL
        );
        CREATE INDEX baseline_series_updated ON baseline_series (updated_ms);
        CREATE TABLE baseline_bucket (
            series_id   INTEGER NOT NULL REFERENCES baseline_series (id) ON DELETE CASCADE,
            season      TEXT    NOT NULL CHECK (season IN ('overall', 'hour_of_day', 'hour_of_week')),
            slot        INTEGER NOT NULL,
            samples     INTEGER NOT NULL,
            occasions   INTEGER NOT NULL,
            weight      REAL    NOT NULL,
            mean        REAL    NOT NULL,
            variance    REAL    NOT NULL,
            updated_ms  INTEGER NOT NULL,
            PRIMARY KEY (series_id, season, slot)
        ) WITHOUT ROWID;",
    ),
    // 2: alert state (src/alert): instances and groups as JSON rows, rewritten after each
    // evaluation; silences (times in Unix milliseconds).
    (
        "alerts",
        "CREATE TABLE alert_instances (
            fingerprint TEXT PRIMARY KEY,
            rule        TEXT NOT NULL,
            state       TEXT NOT NULL,
            data        TEXT NOT NULL
        );
        CREATE TABLE alert_groups (
            key   TEXT PRIMARY KEY,
            data  TEXT NOT NULL
        );
        CREATE TABLE silences (
            id          TEXT PRIMARY KEY,
            matchers    TEXT    NOT NULL,
            starts_ms   INTEGER NOT NULL,
            ends_ms     INTEGER NOT NULL,
            created_by  TEXT    NOT NULL,
            comment     TEXT    NOT NULL,
            expired     INTEGER NOT NULL DEFAULT 0
        );",
    ),
    // 3: the notification outbox (src/notify/outbox.rs). `notify_outbox`: one row per enqueued
    // notification, stored before anything is sent (`expanded`: 0 not yet split into
    // deliveries, 1 split, 2 given up before it could be split). `notify_delivery`: one row per
    // (notification, integration), and for PagerDuty per alert (`dedup_key` = fingerprint);
    // `state` pending → delivered | failed. Finished rows are kept as a bounded history. Times
    // are Unix milliseconds.
    (
        "notify_outbox",
        "CREATE TABLE notify_outbox (
            id            INTEGER PRIMARY KEY,
            receiver      TEXT    NOT NULL,
            group_key     TEXT    NOT NULL,
            status        TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
            notification  TEXT    NOT NULL,
            created_ms    INTEGER NOT NULL,
            expanded      INTEGER NOT NULL DEFAULT 0 CHECK (expanded IN (0, 1, 2))
        );
        CREATE INDEX notify_outbox_expanded ON notify_outbox (expanded, id);
        CREATE TABLE notify_delivery (
            id            INTEGER PRIMARY KEY,
            outbox_id     INTEGER NOT NULL REFERENCES notify_outbox (id) ON DELETE CASCADE,
            receiver      TEXT    NOT NULL,
            group_key     TEXT    NOT NULL,
            integration   TEXT    NOT NULL CHECK (integration IN ('email', 'slack', 'pagerduty', 'webhook')),
            dedup_key     TEXT,
            state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts      INTEGER NOT NULL DEFAULT 0,
            created_ms    INTEGER NOT NULL,
            due_ms        INTEGER NOT NULL,
            done_ms       INTEGER,
            last_error    TEXT,
            answer        TEXT
        );
        CREATE INDEX notify_delivery_due ON notify_delivery (state, due_ms);
        CREATE INDEX notify_delivery_order ON notify_delivery (receiver, group_key, integration, state);
        CREATE INDEX notify_delivery_outbox ON notify_delivery (outbox_id);",
    ),
    // 4: restore drills (src/drill): one row per `dbagent drill` run. Times are Unix
    // milliseconds; result 'ok' or 'failed' (with the reason); rto_seconds from the start of
    // the restore to the restored server answering queries; replayed_to_lsn where recovery
    // ended.
    (
        "drills",
        "CREATE TABLE drills (
            id               INTEGER PRIMARY KEY,
            started_ms       INTEGER NOT NULL,
            finished_ms      INTEGER NOT NULL,
            backup_id        TEXT,
            result           TEXT    NOT NULL CHECK (result IN ('ok', 'failed')),
            reason           TEXT,
            rto_seconds      REAL,
            replayed_to_lsn  TEXT,
            verify           TEXT
        );
        CREATE INDEX drills_finished ON drills (finished_ms);",
    ),
    // 5: scheduled jobs (src/schedule): one row per run started by `dbagent run` (status
    // 'running' until it ends; rows left 'running' by an agent that died are marked 'failed'
    // at the next start), and per job the last scheduled time considered (what "missed while
    // the agent was down" is measured from). Times are Unix milliseconds.
    (
        "jobs",
        "CREATE TABLE jobs (
            id            INTEGER PRIMARY KEY,
            kind          TEXT    NOT NULL,
            trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'missed')),
            scheduled_ms  INTEGER,
            started_ms    INTEGER NOT NULL,
            finished_ms   INTEGER,
            status        TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
            pid           INTEGER,
            detail        TEXT,
            output        TEXT
        );
        CREATE INDEX jobs_started ON jobs (started_ms);
        CREATE INDEX jobs_kind ON jobs (kind, started_ms);
        CREATE TABLE schedule_marks (
            kind          TEXT PRIMARY KEY,
            last_fire_ms  INTEGER NOT NULL
        );",
    ),
    // 6: the advisor's samples (src/advise/store.rs): cumulative table and index counters per
    // sample, with the stats-reset and postmaster-start markers that split them into segments.
    ("advisor", ADVISOR),
    // 7: `dbagent wal verify` (src/wal/verify.rs): the last result per stored WAL segment and
    // the identity of the stored file it was computed from, and one row per run.
    ("wal_verify", WAL_VERIFY),
    // 8: the statement history (src/collect/statement_history.rs): per poll, the per-interval
    // deltas of the top statements of pg_stat_statements; each statement's text once.
    ("statement_history", STATEMENT_HISTORY),
];

/// Migration 6, the advisor's samples (read and written by `advise::store`).
const ADVISOR: &str = "CREATE TABLE advisor_samples (
        id                INTEGER PRIMARY KEY,
        dbname            TEXT    NOT NULL,
        taken_ms          INTEGER NOT NULL,
        stats_reset       REAL,
        postmaster_start  REAL    NOT NULL,
        in_recovery       INTEGER NOT NULL
    );
    CREATE INDEX advisor_samples_taken ON advisor_samples (dbname, taken_ms);
    CREATE TABLE advisor_tables (
        sample_id         INTEGER NOT NULL REFERENCES advisor_samples (id) ON DELETE CASCADE,
        relid             INTEGER NOT NULL,
        schemaname        TEXT    NOT NULL,
        relname           TEXT    NOT NULL,
        seq_scan          REAL    NOT NULL,
        seq_tup_read      REAL    NOT NULL,
        idx_scan          REAL    NOT NULL,
        idx_tup_fetch     REAL    NOT NULL,
        n_live_tup        REAL    NOT NULL,
        n_dead_tup        REAL    NOT NULL,
        autovacuum_count  REAL    NOT NULL,
        size_bytes        REAL    NOT NULL,
        reltuples         REAL    NOT NULL,
        last_seq_scan     REAL,
        PRIMARY KEY (sample_id, relid)
    ) WITHOUT ROWID;
    CREATE TABLE advisor_indexes (
        sample_id         INTEGER NOT NULL REFERENCES advisor_samples (id) ON DELETE CASCADE,
        indexrelid        INTEGER NOT NULL,
        relid             INTEGER NOT NULL,
        schemaname        TEXT    NOT NULL,
        relname           TEXT    NOT NULL,
        indexrelname      TEXT    NOT NULL,
        idx_scan          REAL    NOT NULL,
        size_bytes        REAL    NOT NULL,
        enforces          TEXT,
        last_idx_scan     REAL,
        PRIMARY KEY (sample_id, indexrelid)
    ) WITHOUT ROWID;
    CREATE TABLE advisor_plans (
        sample_id         INTEGER NOT NULL REFERENCES advisor_samples (id) ON DELETE CASCADE,
        queryid           TEXT    NOT NULL,
        plan_hash         TEXT    NOT NULL,
        plan_shape        TEXT    NOT NULL,
        calls             REAL    NOT NULL,
        total_seconds     REAL    NOT NULL,
        PRIMARY KEY (sample_id, queryid)
    ) WITHOUT ROWID;";

/// Migration 7, `dbagent wal verify` (read and written by `wal::verify`).
///
/// `wal_verified`: the last result per stored segment (`result` ok or damaged) and the identity
/// of the stored file it was computed from (`stored` path relative to the repository, `size`,
/// `mtime_ns`). `wal_verify_runs`: one row per `dbagent wal verify`, with its counts, the range
/// it verified and its first problems (JSON). Times are Unix milliseconds.
const WAL_VERIFY: &str = "CREATE TABLE wal_verified (
            repository   TEXT    NOT NULL,
            name         TEXT    NOT NULL,
            stored       TEXT    NOT NULL,
            size         INTEGER NOT NULL,
            mtime_ns     INTEGER NOT NULL,
            result       TEXT    NOT NULL CHECK (result IN ('ok', 'damaged')),
            detail       TEXT,
            verified_ms  INTEGER NOT NULL,
            PRIMARY KEY (repository, name)
        ) WITHOUT ROWID;
        CREATE TABLE wal_verify_runs (
            id                   INTEGER PRIMARY KEY,
            repository           TEXT    NOT NULL,
            started_ms           INTEGER NOT NULL,
            finished_ms          INTEGER NOT NULL,
            full                 INTEGER NOT NULL,
            ok                   INTEGER NOT NULL,
            segments_needed      INTEGER NOT NULL,
            segments_ok          INTEGER NOT NULL,
            segments_missing     INTEGER NOT NULL,
            segments_damaged     INTEGER NOT NULL,
            segments_unreadable  INTEGER NOT NULL,
            history_conflicts    INTEGER NOT NULL,
            segments_read        INTEGER NOT NULL,
            segments_cached      INTEGER NOT NULL,
            first_segment        TEXT,
            last_segment         TEXT,
            start_lsn            TEXT,
            end_lsn              TEXT,
            problems             TEXT    NOT NULL
        );
        CREATE INDEX wal_verify_runs_finished ON wal_verify_runs (repository, finished_ms);";

/// Migration 8, the statement history (read and written by `collect::statement_history`).
///
/// `statement_texts`: one row per pg_stat_statements entry (queryid, dbid, userid, toplevel)
/// with its database and role names and its text (NULL until read), `last_seen_ms` the newest
/// history row that uses it. `statement_history`: one row per statement per poll that counted
/// it: what it did in the interval ending at `taken_ms` (`interval_ms` long). Times are Unix
/// milliseconds; rows older than `monitor.statement_history_retention` are deleted on write.
const STATEMENT_HISTORY: &str = "CREATE TABLE statement_texts (
            id            INTEGER PRIMARY KEY,
            queryid       INTEGER NOT NULL,
            dbid          INTEGER NOT NULL,
            userid        INTEGER NOT NULL,
            toplevel      INTEGER NOT NULL,
            datname       TEXT    NOT NULL,
            rolname       TEXT    NOT NULL,
            query         TEXT,
            last_seen_ms  INTEGER NOT NULL,
            UNIQUE (queryid, dbid, userid, toplevel)
        );
        CREATE TABLE statement_history (
            statement_id   INTEGER NOT NULL REFERENCES statement_texts (id) ON DELETE CASCADE,
            taken_ms       INTEGER NOT NULL,
            interval_ms    INTEGER,
            calls          REAL    NOT NULL,
            total_seconds  REAL    NOT NULL,
            rows           REAL    NOT NULL,
            PRIMARY KEY (taken_ms, statement_id)
        ) WITHOUT ROWID;
        CREATE INDEX statement_history_statement ON statement_history (statement_id);";

/// The schema version this build writes (the number of migrations).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What can go wrong with the state database. Every message names the file and the way out.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot create the state directory {path}: {source}; create it writable by the dbagent user or point state_dir elsewhere"
    )]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot create the state database {path}: {source}; check that state_dir is writable by the dbagent user"
    )]
    CreateFile { path: PathBuf, source: io::Error },
    #[error("state database {path} does not exist (`dbagent run` creates it)")]
    Missing { path: PathBuf },
    #[error(
        "state database {path} is locked by another process (waited {}); stop the other dbagent using this state_dir or retry",
        crate::units::human_duration_of(BUSY_TIMEOUT)
    )]
    Locked { path: PathBuf },
    #[error(
        "state database {path} is corrupt ({detail}): move it aside and restart; baselines relearn"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "state database {path} has schema version {found}, newer than this dbagent knows ({known}): upgrade dbagent, or move the file aside and restart (baselines relearn)"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "cannot open the state database {path}: {source}; check that it and its directory are readable (and writable for `dbagent run`) by the dbagent user"
    )]
    CannotOpen {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "state database {path} is read-only: {source}; check its permissions and free disk space"
    )]
    ReadOnly {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl StateError {
    /// Classifies a SQLite error on the database at `path`.
    pub fn from_sqlite(path: &Path, e: rusqlite::Error) -> StateError {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StateError::Locked { path }
            }
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StateError::Corrupt {
                path,
                detail: e.to_string(),
            },
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                StateError::CannotOpen { path, source: e }
            }
            Some(ErrorCode::ReadOnly | ErrorCode::DiskFull) => {
                StateError::ReadOnly { path, source: e }
            }
            _ => StateError::Sqlite { path, source: e },
        }
    }
}

/// An open state database.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    version: i64,
}

impl StateDb {
    /// Opens (creating the directory, mode 0700, and the file, mode 0600, when missing) the
    /// state database in `state_dir` for writing, and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<StateDb, StateError> {
        if !state_dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|source| StateError::CreateDir {
                    path: state_dir.to_path_buf(),
                    source,
                })?;
        }
        let path = state_dir.join(STATE_FILE);
        // Create the file ourselves so it gets 0600 (SQLite would use 0644); SQLite gives its
        // -wal and -shm files the database file's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(StateError::CreateFile { path, source }),
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StateError::from_sqlite(&path, e))?;
        let mut db = StateDb {
            conn,
            path,
            version: 0,
        };
        db.configure(true)?;
        db.migrate()?;
        Ok(db)
    }

    /// Opens the state database in `state_dir` for reading only (inspection commands): never
    /// creates or migrates anything, and reads while `dbagent run` writes.
    /// [`StateError::Missing`] when there is no database yet.
    pub fn open_read_only(state_dir: &Path) -> Result<StateDb, StateError> {
        let path = state_dir.join(STATE_FILE);
        if !path.exists() {
            return Err(StateError::Missing { path });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StateError::from_sqlite(&path, e))?;
        let mut db = StateDb {
            conn,
            path,
            version: 0,
        };
        db.configure(false)?;
        db.version = db.user_version()?;
        if db.version > SCHEMA_VERSION {
            return Err(db.too_new());
        }
        Ok(db)
    }

    fn configure(&mut self, write: bool) -> Result<(), StateError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.err(e))?;
        // Reading the schema first makes a non-SQLite file fail here, clearly, not later.
        self.conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.err(e))?;
        if write {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %self.path.display(), mode, "State database is not in WAL mode");
            }
            self.conn
                .execute_batch("PRAGMA foreign_keys = ON;")
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn user_version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn too_new(&self) -> StateError {
        StateError::TooNew {
            path: self.path.clone(),
            found: self.version,
            known: SCHEMA_VERSION,
        }
    }

    /// Applies the migrations not yet applied, each in its own transaction with its
    /// `user_version` bump.
    fn migrate(&mut self) -> Result<(), StateError> {
        self.version = self.user_version()?;
        if self.version > SCHEMA_VERSION {
            return Err(self.too_new());
        }
        let path = self.path.clone();
        let err = |e| StateError::from_sqlite(&path, e);
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(self.version as usize) {
            let to = i as i64 + 1;
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            // Another process may have migrated meanwhile.
            let now: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(err)?;
            if now >= to {
                continue;
            }
            tx.execute_batch(sql).map_err(err)?;
            tx.execute_batch(&format!("PRAGMA user_version = {to}"))
                .map_err(err)?;
            tx.commit().map_err(err)?;
            tracing::info!(path = %path.display(), version = to, migration = name, "Migrated the state database");
        }
        self.version = self.user_version()?;
        Ok(())
    }

    /// The schema version of the database (for a read-only open it may be below
    /// [`SCHEMA_VERSION`] when an older dbagent wrote it).
    /// [`StateDb::open_read_only`] for readers to whom "no database yet" means "nothing
    /// recorded": `Ok(None)` then.
    pub fn open_existing(state_dir: &Path) -> Result<Option<StateDb>, StateError> {
        match StateDb::open_read_only(state_dir) {
            Ok(db) => Ok(Some(db)),
            Err(StateError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the table exists (a database an older dbagent wrote may lack newer tables).
    pub fn has_table(&self, name: &str) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Classifies a SQLite error on this database.
    pub fn err(&self, e: rusqlite::Error) -> StateError {
        StateError::from_sqlite(&self.path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// docs/repository.md's "State directory layout" names every table of the schema.
    #[test]
    fn the_docs_state_directory_layout_names_every_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/repository.md"))
                .expect("read docs/repository.md");
        let section = doc
            .split("\n## State directory layout\n")
            .nth(1)
            .expect("docs/repository.md has a `## State directory layout` section");
        let mut tables = 0;
        for (_, sql) in MIGRATIONS {
            for part in sql.split("CREATE TABLE ").skip(1) {
                let name = part
                    .split_whitespace()
                    .find(|w| !matches!(*w, "IF" | "NOT" | "EXISTS"))
                    .expect("a table name");
                tables += 1;
                assert!(
                    section.contains(name),
                    "docs/repository.md, State directory layout, does not name table {name}"
                );
            }
        }
        assert!(tables > 15, "{tables} tables");
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn state_open_creates_dir_and_file_private_in_wal_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/state");
        let db = StateDb::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
        assert_eq!(db.version(), SCHEMA_VERSION);
        let jm: String = db
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(jm, "wal");
        drop(db);
        // Reopening applies nothing new.
        assert_eq!(StateDb::open(&dir).unwrap().version(), SCHEMA_VERSION);
    }

    #[test]
    fn state_read_only_open_of_missing_database_says_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let e = StateDb::open_read_only(tmp.path()).unwrap_err();
        assert!(matches!(e, StateError::Missing { .. }), "{e}");
        assert!(!tmp.path().join(STATE_FILE).exists());
    }

    #[test]
    fn state_garbage_file_is_corrupt_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(STATE_FILE);
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        for e in [
            StateDb::open(tmp.path()).unwrap_err(),
            StateDb::open_read_only(tmp.path()).unwrap_err(),
        ] {
            assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("move it aside and restart"), "{msg}");
        }
    }

    #[test]
    fn state_newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(StateDb::open(tmp.path()).unwrap());
        let conn = Connection::open(tmp.path().join(STATE_FILE)).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        drop(conn);
        let e = StateDb::open(tmp.path()).unwrap_err();
        assert!(matches!(e, StateError::TooNew { .. }), "{e}");
        let e = StateDb::open_read_only(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("upgrade dbagent"), "{e}");
    }

    #[test]
    fn state_read_only_reads_while_a_writer_holds_a_write_transaction() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = StateDb::open(tmp.path()).unwrap();
        let tx = w.conn_mut().transaction().unwrap();
        tx.execute(
            "INSERT INTO baseline_series (series, last_value, updated_ms) VALUES ('x', 1, 0)",
            [],
        )
        .unwrap();
        let r = StateDb::open_read_only(tmp.path()).unwrap();
        let n: i64 = r
            .conn()
            .query_row("SELECT count(*) FROM baseline_series", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        tx.commit().unwrap();
    }

    #[test]
    fn state_read_only_open_after_writer_closed() {
        // The writer's -wal/-shm files are gone once it closes; a reader still opens.
        let tmp = tempfile::tempdir().unwrap();
        drop(StateDb::open(tmp.path()).unwrap());
        let r = StateDb::open_read_only(tmp.path()).unwrap();
        assert_eq!(r.version(), SCHEMA_VERSION);
    }
}
