//! `dbagent.yml`: the typed configuration of the agent, its defaults, and loading with errors
//! that name the file, the line and the valid keys.
//!
//! Every struct denies unknown keys. Values may reference environment variables
//! (`${PGPASSWORD}`, `${SLACK_WEBHOOK_URL:-}`); see [`expand`]. Relative paths are relative to
//! the directory of the configuration file. The annotated example with every default is
//! `config/dbagent.yml`, printed by `dbagent config example`.
//!
//! Layer: configuration. Uses: cron, metrics, pg, repo. Used by: advise, agent, alert, backup, check,
//! collect, drill, http, leader, notify, schedule.

pub mod databases;
pub mod de;
pub mod expand;
pub mod schedule;
mod ser;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pg::{ConnInfo, SessionOptions};
use crate::repo::{Compression, Repo, S3Options, S3Storage};

pub use de::parse_duration;

/// Where the configuration is read from when neither `--config` nor `DBAGENT_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dbagent/dbagent.yml";

/// The annotated example configuration, with every default.
pub const EXAMPLE: &str = include_str!("../../config/dbagent.yml");

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub postgres: PostgresConfig,
    pub repository: RepositoryConfig,
    #[serde(default = "defaults::state_dir", deserialize_with = "de::path")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default = "defaults::alerts_file", deserialize_with = "de::path")]
    pub alerts_file: PathBuf,
    #[serde(default)]
    pub check: CheckConfig,
    #[serde(default, deserialize_with = "backup_config")]
    pub backup: BackupConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub monitor: MonitorConfig,
    #[serde(default)]
    pub schedule: schedule::ScheduleConfig,
    #[serde(default)]
    pub ha: schedule::HaConfig,
    #[serde(default)]
    pub objectives: ObjectivesConfig,
    /// The file this was loaded from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `postgres:`: how to reach the cluster.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq conninfo or URL; PG* variables and ~/.pgpass fill what it leaves out.
    #[serde(deserialize_with = "de::conninfo")]
    pub conninfo: ConnInfo,
    /// The data directory, when dbagent runs on the database host.
    #[serde(default, deserialize_with = "de::opt_path")]
    pub pgdata: Option<PathBuf>,
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub connect_timeout: Duration,
    #[serde(
        default = "defaults::statement_timeout",
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub statement_timeout: Duration,
    /// Where pg_basebackup of the server's major version is; default
    /// /usr/lib/postgresql/<major>/bin, then PATH.
    #[serde(default, deserialize_with = "de::opt_path")]
    pub bin_dir: Option<PathBuf>,
}

/// `repository:`: where backups and archived WAL live: a local directory (`path:`, the
/// default type) or an S3 bucket (`type: s3`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// posix (a directory, the default) or s3 (a bucket of AWS S3 or an S3-compatible store).
    #[serde(rename = "type", default)]
    pub kind: RepositoryType,
    /// The repository's directory (type posix).
    #[serde(default, deserialize_with = "de::path")]
    pub path: PathBuf,
    /// zstd (default), lz4, gzip or none: for backups and WAL.
    #[serde(default)]
    pub compression: Compression,
    /// 0 = the algorithm's default (zstd 3, gzip 6).
    #[serde(default)]
    pub compression_level: i32,
    /// How long a backup or expire waits for another one holding the repository lock (and
    /// expire for running drills, a drill for a running expire).
    #[serde(
        default = "defaults::lock_wait",
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub lock_wait: Duration,
    /// How many WAL segments `wal-get` fetches ahead of the one PostgreSQL asks for, in a
    /// detached background process, so that replay rather than retrieval is the limit. 0 = off.
    #[serde(default = "defaults::prefetch")]
    pub prefetch: u32,
    /// Where prefetched segments wait; default `<directory of %p>/dbagent-prefetch`, i.e.
    /// inside pg_wal (same filesystem as the destination, left out of base backups).
    #[serde(default, deserialize_with = "de::opt_path")]
    pub prefetch_dir: Option<PathBuf>,
    /// type s3: the bucket.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub bucket: Option<String>,
    /// type s3: the key prefix inside the bucket (e.g. `prod/main`).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub prefix: Option<String>,
    /// type s3: the region; default AWS_REGION, the profile's region, else us-east-1.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub region: Option<String>,
    /// type s3: an S3-compatible server's URL (https://host:port).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub endpoint: Option<String>,
    /// type s3: path-style requests (`https://host/bucket/key`), which most S3-compatible
    /// stores need; default virtual-hosted style.
    #[serde(default)]
    pub force_path_style: bool,
    /// type s3: the profile of the shared credentials and config files (else AWS_PROFILE).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub profile: Option<String>,
    /// type s3: static credentials (use `${VAR}`); default: the environment, the shared
    /// credentials file, web identity, container or instance metadata.
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        serialize_with = "ser::secret"
    )]
    pub access_key_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        serialize_with = "ser::secret"
    )]
    pub secret_access_key: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        serialize_with = "ser::secret"
    )]
    pub session_token: Option<String>,
    /// type s3: an extra trusted CA bundle (PEM) for a private endpoint. TLS is always verified.
    #[serde(default, deserialize_with = "de::opt_path")]
    pub ca_file: Option<PathBuf>,
    /// type s3: the multipart part size (5MiB..5GiB); a backup holds about two per file in
    /// memory.
    #[serde(default = "defaults::part_size", deserialize_with = "de::size")]
    pub part_size: u64,
    /// type s3: the timeout of one request.
    #[serde(
        default = "defaults::request_timeout",
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub request_timeout: Duration,
    /// type s3: the total time one operation spends retrying (connection errors, timeouts,
    /// 408, 429, 5xx), with exponential backoff and jitter.
    #[serde(
        default = "defaults::retry_timeout",
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub retry_timeout: Duration,
}

/// `repository.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryType {
    #[default]
    Posix,
    S3,
}

impl RepositoryConfig {
    /// The S3 settings (type s3).
    pub fn s3_options(&self, state_dir: Option<&Path>) -> S3Options {
        S3Options {
            bucket: self.bucket.clone().unwrap_or_default(),
            prefix: self
                .prefix
                .as_deref()
                .unwrap_or("")
                .trim_matches('/')
                .to_string(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            force_path_style: self.force_path_style,
            profile: self.profile.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            ca_file: self.ca_file.clone(),
            part_size: self.part_size,
            request_timeout: self.request_timeout,
            retry_timeout: self.retry_timeout,
            cache_dir: state_dir.map(Path::to_path_buf),
        }
    }

    /// Opens the repository (no request is made): a directory, or a bucket whose listing
    /// index for monitoring lives in `state_dir`.
    pub fn open_with(&self, state_dir: Option<&Path>) -> Result<Repo, ConfigError> {
        match self.kind {
            RepositoryType::Posix => Ok(Repo::at(&self.path)),
            RepositoryType::S3 => {
                let storage = S3Storage::new(self.s3_options(state_dir)).map_err(|message| {
                    ConfigError::Invalid {
                        path: PathBuf::from("repository"),
                        message,
                    }
                })?;
                Ok(Repo::with_storage(std::sync::Arc::new(storage)))
            }
        }
    }

    /// Where the repository is, for messages: its directory or `s3://BUCKET/PREFIX`.
    pub fn location(&self) -> String {
        match self.kind {
            RepositoryType::Posix => self.path.display().to_string(),
            RepositoryType::S3 => self.s3_options(None).url(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self.kind {
            RepositoryType::Posix => {
                if self.path.as_os_str().is_empty() {
                    return Err("repository.path is required (the repository's directory), or set repository.type: s3 with repository.bucket".into());
                }
                let s3_only = [
                    ("bucket", self.bucket.is_some()),
                    ("prefix", self.prefix.is_some()),
                    ("region", self.region.is_some()),
                    ("endpoint", self.endpoint.is_some()),
                    ("profile", self.profile.is_some()),
                    ("access_key_id", self.access_key_id.is_some()),
                    ("secret_access_key", self.secret_access_key.is_some()),
                    ("session_token", self.session_token.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                    ("force_path_style", self.force_path_style),
                ];
                if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "repository.{key} is a setting of an S3 repository; add `type: s3` (or remove it)"
                    ));
                }
                Ok(())
            }
            RepositoryType::S3 => {
                if !self.path.as_os_str().is_empty() {
                    return Err("repository.path is the directory of a posix repository; an S3 repository is named by repository.bucket and repository.prefix".into());
                }
                self.s3_options(None).validate()
            }
        }
    }
}

/// `backup:`: how `dbagent backup` takes a backup.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// fast: checkpoint at once; spread: follow checkpoint_completion_target (gentler on I/O).
    #[serde(default)]
    pub checkpoint: Checkpoint,
    /// How long to wait for the backup's WAL to reach the archive before giving up.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub wal_timeout: Duration,
    /// Compression threads; 0 = one per core.
    #[serde(default)]
    pub threads: u32,
    /// Where the backup is compressed: auto (on the server when its build supports the
    /// algorithm, else in dbagent), server, or dbagent.
    #[serde(default)]
    pub compress_on: CompressOn,
    /// Which server pg_basebackup reads: primary, standby (refuse when the standby cannot
    /// serve), or prefer-standby (fall back to the primary, saying why).
    #[serde(default)]
    pub from: BackupFrom,
    /// The standby to read from (`host=... port=...`); keywords it leaves out (user, dbname,
    /// sslmode, password...) are taken from postgres.conninfo. Required unless from: primary.
    #[serde(default, deserialize_with = "de::opt_conninfo")]
    pub standby_conninfo: Option<ConnInfo>,
    /// The most WAL (bytes) the standby's replay may be behind the primary's current WAL
    /// position when a standby backup starts.
    #[serde(default = "defaults::standby_max_lag", deserialize_with = "de::size")]
    pub standby_max_lag: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            checkpoint: Checkpoint::default(),
            wal_timeout: Duration::from_secs(5 * 60),
            threads: 0,
            compress_on: CompressOn::default(),
            from: BackupFrom::default(),
            standby_conninfo: None,
            standby_max_lag: defaults::standby_max_lag(),
        }
    }
}

impl BackupConfig {
    fn validate(&self) -> Result<(), String> {
        if self.from != BackupFrom::Primary && self.standby_conninfo.is_none() {
            return Err(format!(
                "backup.from is {} but backup.standby_conninfo is not set; set it to the standby's \"host=... port=...\" (or backup.from: primary)",
                self.from.as_str()
            ));
        }
        Ok(())
    }
}

/// `backup:` read and checked where it is written, so that an inconsistent section is reported
/// at its line.
fn backup_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BackupConfig, D::Error> {
    let b = BackupConfig::deserialize(d)?;
    b.validate().map_err(serde::de::Error::custom)?;
    Ok(b)
}

/// `backup.from`: which server a backup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupFrom {
    /// The server of postgres.conninfo.
    #[default]
    Primary,
    /// backup.standby_conninfo; the backup fails when it cannot be used.
    Standby,
    /// backup.standby_conninfo when it can be used, else the primary (saying why).
    PreferStandby,
}

impl BackupFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupFrom::Primary => "primary",
            BackupFrom::Standby => "standby",
            BackupFrom::PreferStandby => "prefer-standby",
        }
    }
}

/// `backup.compress_on`: who compresses the backup stream. The stored files are read the same
/// way either way (`base.tar.zst` is a zstd stream, `.lz4` an LZ4 frame stream); with zstd,
/// dbagent cuts it into independent frames and stores their index beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressOn {
    /// The server when its build has the algorithm (zstd, lz4; PostgreSQL 15+), else dbagent.
    #[default]
    Auto,
    /// Always the server; a backup fails when the server cannot.
    Server,
    /// Always dbagent (pg_basebackup sends uncompressed tar).
    Dbagent,
}

/// pg_basebackup's --checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checkpoint {
    #[default]
    Fast,
    Spread,
}

/// `retention:`: what `dbagent backups expire` keeps. A backup is kept if either rule keeps it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep this many newest full backups (at least 1).
    pub full: u32,
    /// Also keep every backup needed to restore to any point within this window (e.g. 7d).
    #[serde(
        default,
        deserialize_with = "de::opt_duration",
        serialize_with = "ser::opt_duration"
    )]
    pub window: Option<Duration>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            full: 2,
            window: None,
        }
    }
}

/// `http:`: the sidecar's endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Require `Authorization: Bearer <token>` (use `${ENV}`; never logged).
    #[serde(default, deserialize_with = "de::opt_string", skip_serializing)]
    pub bearer_token: Option<String>,
    /// Require HTTP basic auth.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Serve HTTPS with this certificate and key (PEM files).
    #[serde(default)]
    pub tls: Option<HttpTls>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9188)),
            bearer_token: None,
            basic_auth: None,
            tls: None,
        }
    }
}

/// `http.basic_auth:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(deserialize_with = "de::string")]
    pub username: String,
    #[serde(deserialize_with = "de::string", skip_serializing)]
    pub password: String,
}

/// `http.tls:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    #[serde(deserialize_with = "de::path")]
    pub cert: PathBuf,
    #[serde(deserialize_with = "de::path")]
    pub key: PathBuf,
}

/// `monitor:`: the poll loop of `dbagent run` and its collectors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// How often the collectors poll the server.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub interval: Duration,
    /// statement_timeout of the agent's polling connection (a slow query never stacks polls).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub statement_timeout: Duration,
    /// lock_timeout of the polling connection.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub lock_timeout: Duration,
    /// How often the costlier collectors (bloat estimates) run.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub slow_interval: Duration,
    /// Per-query series: the top N statements by total and by mean time in the interval.
    pub top_queries: usize,
    /// How long the statement history (`dbagent top`) is kept in state.db.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub statement_history_retention: Duration,
    /// Per-table series: the top N tables by each signal, plus an `(other)` total.
    pub top_tables: usize,
    /// Bloat estimates skip relations smaller than this.
    #[serde(deserialize_with = "de::size")]
    pub bloat_min_size: u64,
    /// Exact bloat figures through pgstattuple this often (0s = off; it reads whole tables).
    #[serde(
        default,
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub pgstattuple_interval: Duration,
    /// A baseline is used for alerting only once it has this many samples.
    pub baseline_min_samples: u64,
    /// How often `dbagent run` samples table and index usage for the advisor (0s = off).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub advisor_interval: Duration,
    /// The advisor's window: usage is judged over this much history (`advise --since`).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub advisor_window: Duration,
    /// An index is called unused only after the window has been observed this long.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub advisor_min_observed: Duration,
    /// How long advisor samples are kept in state.db (at least the window).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub advisor_retention: Duration,
    /// Hot spots and missing-index hints skip smaller tables.
    #[serde(deserialize_with = "de::size")]
    pub advisor_min_table_size: u64,
    /// A hot spot reads the table in full at least this many times in the window.
    pub advisor_hotspot_min_scans: f64,
    /// Statements explained for missing-index hints: top N by mean and by total time.
    pub advisor_explain_top: usize,
    /// Which databases the per-database collectors (tables, vacuum, bloat, pgstattuple, the
    /// advisor) read: include/exclude shell patterns, or a plain list of include patterns.
    pub databases: databases::DatabasesConfig,
    /// Which metric names /metrics serves: postgres_exporter's, dbagent's lint-clean ones, or
    /// both (see `metrics::catalogue`).
    pub metric_names: crate::metrics::names::NameSet,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(15),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(1),
            slow_interval: Duration::from_secs(300),
            top_queries: 20,
            statement_history_retention: Duration::from_secs(7 * 86400),
            top_tables: 50,
            bloat_min_size: 10 << 20,
            pgstattuple_interval: Duration::ZERO,
            baseline_min_samples: 40,
            advisor_interval: Duration::from_secs(300),
            advisor_window: Duration::from_secs(7 * 86400),
            advisor_min_observed: Duration::from_secs(86400),
            advisor_retention: Duration::from_secs(35 * 86400),
            advisor_min_table_size: 10 << 20,
            advisor_hotspot_min_scans: 10.0,
            advisor_explain_top: 10,
            databases: databases::DatabasesConfig::default(),
            metric_names: crate::metrics::names::NameSet::PostgresExporter,
        }
    }
}

/// `objectives:`: the recovery objectives the cluster is run to. `dbagent check` and the
/// shipped alert rules compare the measured RPO (`dbagent_rpo_seconds`) and the RTO of the last
/// restore drill (`dbagent_drill_rto_seconds`) with them; `dbagent run` exports them as
/// `dbagent_rpo_target_seconds` and `dbagent_rto_target_seconds`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectivesConfig {
    /// Recovery point objective: how much committed work may be lost when the server is lost.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub rpo: Duration,
    /// Recovery time objective: how long a restore may take until the database answers again.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub rto: Duration,
}

impl Default for ObjectivesConfig {
    fn default() -> Self {
        ObjectivesConfig {
            rpo: Duration::from_secs(5 * 60),
            rto: Duration::from_secs(30 * 60),
        }
    }
}

/// `check:`: thresholds of `dbagent check`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// WARNING when the oldest WAL segment waiting to be archived is older than this.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub archive_lag_warning: Duration,
    /// CRITICAL past this.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub archive_lag_critical: Duration,
    /// WARNING when the newest complete backup is older than this.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub backup_age_warning: Duration,
    /// CRITICAL past this.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub backup_age_critical: Duration,
    /// WARNING when the last successful restore drill is older than this (or none has run).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub drill_age_warning: Duration,
    /// CRITICAL past this (and whenever the last drill failed).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub drill_age_critical: Duration,
    /// `wal_verify`: WARNING when the last `dbagent wal verify` is older than this (or none
    /// has run once the repository holds a backup).
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub wal_verify_age_warning: Duration,
    /// On a standby: WARNING when the archive has held WAL the standby has not replayed for
    /// longer than this (beyond recovery_min_apply_delay): its restore_command keeps failing.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub replay_stall_warning: Duration,
    /// CRITICAL past this.
    #[serde(deserialize_with = "de::duration", serialize_with = "ser::duration")]
    pub replay_stall_critical: Duration,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            archive_lag_warning: Duration::from_secs(5 * 60),
            archive_lag_critical: Duration::from_secs(30 * 60),
            backup_age_warning: Duration::from_secs(26 * 3600),
            backup_age_critical: Duration::from_secs(50 * 3600),
            drill_age_warning: Duration::from_secs(8 * 86400),
            drill_age_critical: Duration::from_secs(15 * 86400),
            wal_verify_age_warning: Duration::from_secs(8 * 86400),
            replay_stall_warning: Duration::from_secs(5 * 60),
            replay_stall_critical: Duration::from_secs(30 * 60),
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    use std::time::Duration;

    pub fn standby_max_lag() -> u64 {
        64 << 20
    }

    pub fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/dbagent/state")
    }
    pub fn alerts_file() -> PathBuf {
        PathBuf::from("alerts.yml")
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn statement_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn prefetch() -> u32 {
        8
    }

    pub fn lock_wait() -> Duration {
        Duration::ZERO
    }

    pub fn part_size() -> u64 {
        crate::repo::s3::DEFAULT_PART_SIZE
    }

    pub fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }

    pub fn retry_timeout() -> Duration {
        Duration::from_secs(120)
    }
}

/// Why a configuration file cannot be used. Messages never contain expanded values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {path} not found; pass --config FILE or set DBAGENT_CONFIG (`dbagent config example > dbagent.yml` writes a starting point)"
    )]
    NotFound { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound { path: path.into() }
            } else {
                ConfigError::Read {
                    path: path.into(),
                    source,
                }
            }
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.trim().is_empty()
            || text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message:
                    "the file is empty; it needs at least `postgres.conninfo` and `repository.path`"
                        .into(),
            });
        }
        let mut config: Config = serde_saphyr::from_str(text).map_err(|e| parse_error(path, &e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if !config.repository.path.as_os_str().is_empty() {
            config.repository.path = resolve(base, &config.repository.path);
        }
        config.repository.ca_file = config.repository.ca_file.map(|p| resolve(base, &p));
        if let Some(dir) = &config.repository.prefetch_dir {
            config.repository.prefetch_dir = Some(resolve(base, dir));
        }
        config.state_dir = resolve(base, &config.state_dir);
        config.alerts_file = resolve(base, &config.alerts_file);
        config.postgres.pgdata = config.postgres.pgdata.map(|p| resolve(base, &p));
        config.postgres.bin_dir = config.postgres.bin_dir.map(|p| resolve(base, &p));
        config.source = Some(path.into());
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.into(),
            message,
        };
        if self.check.archive_lag_warning > self.check.archive_lag_critical {
            return Err(invalid(
                "check.archive_lag_warning must not be longer than check.archive_lag_critical"
                    .into(),
            ));
        }
        if self.check.replay_stall_warning > self.check.replay_stall_critical {
            return Err(invalid(
                "check.replay_stall_warning must not be longer than check.replay_stall_critical"
                    .into(),
            ));
        }
        if self.check.drill_age_warning > self.check.drill_age_critical {
            return Err(invalid(
                "check.drill_age_warning must not be longer than check.drill_age_critical".into(),
            ));
        }
        if self.objectives.rpo.is_zero() || self.objectives.rto.is_zero() {
            return Err(invalid(
                "objectives.rpo and objectives.rto must be more than 0s".into(),
            ));
        }
        self.repository.validate().map_err(invalid)?;
        if self.retention.full == 0 {
            return Err(invalid("retention.full must be at least 1".into()));
        }
        if self.postgres.connect_timeout.is_zero() {
            return Err(invalid(
                "postgres.connect_timeout must be more than 0s".into(),
            ));
        }
        Ok(())
    }

    /// The repository (no request is made): a directory, or a bucket whose listing index for
    /// monitoring lives in the state directory. Fails only on S3 settings the client refuses
    /// (an unreadable CA file, a malformed endpoint).
    pub fn repo(&self) -> Result<Repo, ConfigError> {
        self.repository
            .open_with(Some(&self.state_dir))
            .map_err(|e| match e {
                ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                    path: self
                        .source
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("repository")),
                    message,
                },
                e => e,
            })
    }

    /// Session options for connections made with this configuration.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            connect_timeout: self.postgres.connect_timeout,
            statement_timeout: self.postgres.statement_timeout,
            ..SessionOptions::default()
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Turns a serde-saphyr error into `file:line:column: message`, with "did you mean" for
/// misspelled keys.
pub(crate) fn parse_error(path: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    let raw = e.without_snippet().to_string();
    let message = strip_location_prefix(&raw);
    ConfigError::Parse {
        path: path.into(),
        line,
        column,
        message: explain_unknown_field(&message),
    }
}

fn strip_location_prefix(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw);
    let s = first.strip_prefix("error: ").unwrap_or(first);
    if s.starts_with("line ")
        && let Some(idx) = s.find(": ")
    {
        return s[idx + 2..].to_string();
    }
    // "unexpected end of input at line 1, column 1"
    match s.find(" at line ") {
        Some(idx) => s[..idx].to_string(),
        None => s.to_string(),
    }
}

/// `unknown field `conninf`, expected one of conninfo, pgdata` →
/// `unknown key `conninf`; did you mean `conninfo`? Valid keys here: conninfo, pgdata`.
fn explain_unknown_field(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.replace("missing field", "missing key");
    };
    let Some((key, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected = tail
        .trim_start_matches(',')
        .trim()
        .trim_start_matches("expected")
        .trim()
        .trim_start_matches("one of")
        .trim();
    let valid: Vec<String> = expected
        .split([','])
        .flat_map(|s| s.split(" or "))
        .map(|s| s.trim().trim_matches('`').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let suggestion = valid
        .iter()
        .map(|v| (strsim::levenshtein(v, key), v))
        .filter(|(d, v)| *d <= 3.max(v.len() / 3))
        .min()
        .map(|(_, v)| v.clone());
    let mut out = format!("unknown key `{key}`");
    match suggestion {
        Some(s) => out.push_str(&format!("; did you mean `{s}`?")),
        None => out.push(';'),
    }
    if !valid.is_empty() {
        out.push_str(&format!(" valid keys here: {}", valid.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/dbagent/dbagent.yml"))
    }

    #[test]
    fn the_shipped_example_parses_with_the_documented_defaults() {
        let c = parse(EXAMPLE).expect("config/dbagent.yml must parse");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9188");
        assert_eq!(c.postgres.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.check.archive_lag_warning, Duration::from_secs(300));
        assert_eq!(c.check.drill_age_warning, Duration::from_secs(8 * 86400));
        assert_eq!(c.check.drill_age_critical, Duration::from_secs(15 * 86400));
        assert_eq!(
            c.check.wal_verify_age_warning,
            Duration::from_secs(8 * 86400)
        );
        assert_eq!(c.alerts_file, PathBuf::from("/etc/dbagent/alerts.yml"));
        assert_eq!(c.objectives.rpo, Duration::from_secs(300));
        assert_eq!(c.objectives.rto, Duration::from_secs(1800));
        let d = schedule::ScheduleConfig::default();
        assert_eq!(c.schedule.timezone, d.timezone);
        assert_eq!(c.schedule.on_missed, d.on_missed);
        assert_eq!(c.schedule.timeout, d.timeout);
        assert!(c.schedule.backup.is_none());
        assert_eq!(c.ha.lock_key, schedule::HaConfig::default().lock_key);
    }

    #[test]
    fn backup_from_a_standby_needs_its_conninfo_and_is_reported_at_its_line() {
        let base = "postgres:\n  conninfo: host=/tmp user=dbagent\nrepository:\n  path: /r\n";
        let c = parse(base).expect("defaults");
        assert_eq!(c.backup.from, BackupFrom::Primary);
        assert_eq!(c.backup.standby_max_lag, 64 << 20);
        assert!(c.backup.standby_conninfo.is_none());
        let c = parse(&format!(
            "{base}backup:\n  from: prefer-standby\n  standby_conninfo: \"host=10.0.0.2 port=5433\"\n  standby_max_lag: 16MiB\n"
        ))
        .expect("standby settings");
        assert_eq!(c.backup.from, BackupFrom::PreferStandby);
        assert_eq!(c.backup.standby_max_lag, 16 << 20);
        assert_eq!(
            c.backup
                .standby_conninfo
                .as_ref()
                .and_then(|c| c.get("port")),
            Some("5433")
        );
        let err = parse(&format!(
            "{base}backup:\n  checkpoint: fast\n  from: standby\n"
        ))
        .expect_err("standby without its conninfo");
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/dbagent/dbagent.yml:6:"),
            "the error names the file and the line of backup: {msg}"
        );
        assert!(
            msg.contains("backup.from is standby but backup.standby_conninfo is not set"),
            "{msg}"
        );
        let err = parse(&format!("{base}backup:\n  from: replica\n")).expect_err("bad value");
        assert!(err.to_string().contains("prefer-standby"), "{err}");
        let err = parse(&format!(
            "{base}backup:\n  from: standby\n  standby_conninfo: \"hots=x\"\n"
        ))
        .expect_err("bad keyword");
        assert!(err.to_string().contains(":7:"), "{err}");
    }

    #[test]
    fn schedule_and_ha_keys_are_validated_at_their_line() {
        let base = "postgres:\n  conninfo: host=/tmp\nrepository:\n  path: /r\n";
        let c = parse(&format!(
            "{base}schedule:\n  timezone: Europe/Paris\n  on_missed: skip\n  backup: \"*/10 * * * * *\"\n  drill: \"@weekly\"\nha:\n  leader_conninfo: \"host=a,b target_session_attrs=read-write\"\n"
        ))
        .unwrap();
        assert_eq!(c.schedule.on_missed, schedule::OnMissed::Skip);
        assert!(c.schedule.backup.is_some() && c.schedule.drill.is_some());
        assert!(c.ha.leader_conninfo.is_some());
        let err = parse(&format!("{base}schedule:\n  backup: \"0 25 * * *\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:") && err.contains("hour field: 25 is outside 0-23"),
            "{err}"
        );
        let err = parse(&format!("{base}schedule:\n  timezone: Mars/Base\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown time zone"), "{err}");
        let err = parse(&format!("{base}schedule:\n  on_missed: later\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("on_missed") || err.contains("run_once"),
            "{err}"
        );
    }

    #[test]
    fn metric_names_default_to_the_exporters_and_take_three_values() {
        use crate::metrics::names::NameSet;
        let base = "postgres:\n  conninfo: host=/tmp\nrepository:\n  path: /r\n";
        assert_eq!(
            parse(base).unwrap().monitor.metric_names,
            NameSet::PostgresExporter
        );
        assert_eq!(
            parse(EXAMPLE).unwrap().monitor.metric_names,
            NameSet::PostgresExporter
        );
        for (text, want) in [
            ("postgres_exporter", NameSet::PostgresExporter),
            ("dbagent", NameSet::Dbagent),
            ("both", NameSet::Both),
        ] {
            let c = parse(&format!("{base}monitor:\n  metric_names: {text}\n")).unwrap();
            assert_eq!(c.monitor.metric_names, want);
            assert_eq!(want.as_str(), text);
        }
        let err = parse(&format!("{base}monitor:\n  metric_names: prometheus\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:") && err.contains("postgres_exporter"),
            "{err}"
        );
    }

    #[test]
    fn objectives_are_durations_and_unknown_keys_are_errors() {
        let base = "postgres:\n  conninfo: host=/tmp\nrepository:\n  path: /r\n";
        let c = parse(&format!("{base}objectives:\n  rpo: 1m\n  rto: 2h\n")).unwrap();
        assert_eq!(c.objectives.rpo, Duration::from_secs(60));
        assert_eq!(c.objectives.rto, Duration::from_secs(7200));
        let c = parse(base).unwrap();
        assert_eq!(c.objectives.rpo, Duration::from_secs(300));
        let err = parse(&format!("{base}objectives:\n  rpo_target: 1m\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:3: unknown key `rpo_target`")
                && err.contains("valid keys here: rpo, rto"),
            "{err}"
        );
        let err = parse(&format!("{base}objectives:\n  rto: 0s\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 0s"), "{err}");
    }

    #[test]
    fn an_s3_repository_is_named_by_bucket_and_its_secrets_never_written_back() {
        let c = parse(
            "postgres:\n  conninfo: host=/tmp\nrepository:\n  type: s3\n  bucket: backups\n  prefix: /prod/main/\n  endpoint: http://127.0.0.1:9000\n  force_path_style: true\n  access_key_id: AKIAEXAMPLE\n  secret_access_key: topsecret\n",
        )
        .unwrap();
        assert_eq!(c.repository.kind, RepositoryType::S3);
        assert_eq!(c.repository.location(), "s3://backups/prod/main");
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            !json.contains("topsecret") && !json.contains("AKIAEXAMPLE"),
            "{json}"
        );
        assert!(c.repo().is_ok());
        let err = parse(
            "postgres:\n  conninfo: host=/tmp\nrepository:\n  type: s3\n  path: /r\n  bucket: b\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("repository.path is the directory of a posix repository"),
            "{err}"
        );
        let err = parse("postgres:\n  conninfo: host=/tmp\nrepository:\n  path: /r\n  bucket: b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("add `type: s3`"), "{err}");
        let err = parse("postgres:\n  conninfo: host=/tmp\nrepository:\n  type: s3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("repository.bucket is required"), "{err}");
        let err = parse("postgres:\n  conninfo: host=/tmp\nrepository:\n  type: s3\n  bucket: b\n  part_size: 1MB\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("part_size"), "{err}");
    }

    #[test]
    fn minimal_config_needs_only_postgres_and_repository() {
        let c =
            parse("postgres:\n  conninfo: host=/tmp\nrepository:\n  path: /srv/repo\n").unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/dbagent/state"));
        assert_eq!(c.repository.path, PathBuf::from("/srv/repo"));
    }

    #[test]
    fn misspelled_key_names_key_line_and_valid_keys() {
        let err = parse(
            "postgres:\n  conninfo: host=/tmp\n  conect_timeout: 3s\nrepository:\n  path: /r\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/etc/dbagent/dbagent.yml:3:3: unknown key `conect_timeout`"),
            "{err}"
        );
        assert!(err.contains("did you mean `connect_timeout`?"), "{err}");
        assert!(err.contains("conninfo, pgdata, connect_timeout"), "{err}");
    }

    #[test]
    fn env_vars_expand_in_quoted_and_plain_values_and_unset_ones_are_errors() {
        // SAFETY (test-only): no other test in this binary reads these variables.
        unsafe { std::env::set_var("DBAGENT_TEST_REPO", "/data/repo") };
        let c = parse(
            "postgres:\n  conninfo: \"host=/tmp\"\nrepository:\n  path: \"${DBAGENT_TEST_REPO}\"\n",
        )
        .unwrap();
        assert_eq!(c.repository.path, PathBuf::from("/data/repo"));
        let err = parse("postgres:\n  conninfo: host=x password=${DBAGENT_TEST_UNSET_PW}\nrepository:\n  path: /r\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2:") && err.contains("DBAGENT_TEST_UNSET_PW is not set"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_reported_at_their_line_without_secrets() {
        let err = parse("postgres:\n  conninfo: host=x password=topsecret sslmod=require\nrepository:\n  path: /r\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:") && err.contains("`sslmod`"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
        let err = parse(
            "postgres:\n  conninfo: host=x\n  connect_timeout: soon\nrepository:\n  path: /r\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(":3:") && err.contains("invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn monitor_databases_take_patterns_or_a_plain_list_and_bad_patterns_name_their_line() {
        let base = "postgres:\n  conninfo: host=x\nrepository:\n  path: /r\n";
        let c = parse(base).unwrap();
        assert!(c.monitor.databases.selects("anything"));
        let c = parse(&format!(
            "{base}monitor:\n  databases:\n    include: [\"app_*\", billing]\n    exclude: [\"*_tmp\"]\n"
        ))
        .unwrap();
        let d = &c.monitor.databases;
        assert!(d.selects("app_eu") && d.selects("billing"));
        assert!(!d.selects("app_tmp") && !d.selects("postgres"));
        let c = parse(&format!("{base}monitor:\n  databases: [app, \"db?\"]\n")).unwrap();
        let d = &c.monitor.databases;
        assert!(d.selects("app") && d.selects("db1") && !d.selects("db10"));
        assert!(d.exclude.is_empty());
        let c = parse(&format!(
            "{base}monitor:\n  databases:\n    exclude: [scratch]\n"
        ))
        .unwrap();
        assert!(c.monitor.databases.selects("app") && !c.monitor.databases.selects("scratch"));

        let err = parse(&format!(
            "{base}monitor:\n  interval: 15s\n  databases:\n    include: [\"db[12]\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/etc/dbagent/dbagent.yml:")
                && err.contains("character classes")
                && err.contains("db[12]"),
            "{err}"
        );
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!((7..=8).contains(&line), "{err}");
        let err = parse(&format!("{base}monitor:\n  databases: [\"\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:") && err.contains("empty database pattern"),
            "{err}"
        );
        let err = parse(&format!("{base}monitor:\n  databases:\n    inclde: [a]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key `inclde`") && err.contains("include"),
            "{err}"
        );
    }

    #[test]
    fn missing_required_section_is_named() {
        let err = parse("postgres:\n  conninfo: host=x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing key `repository`"), "{err}");
        assert!(
            parse("# nothing\n")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    /// The keys valid at one place of dbagent.yml, as the "unknown key" error lists them;
    /// `None` when the place takes no mapping of keys (a scalar, a list).
    fn keys_at(path: &[&str]) -> Option<Vec<String>> {
        let mut yaml = String::new();
        for (depth, key) in path.iter().enumerate() {
            yaml.push_str(&format!("{}{key}:\n", "  ".repeat(depth)));
        }
        yaml.push_str(&format!("{}zz_not_a_key: 1\n", "  ".repeat(path.len())));
        let err = parse(&yaml)
            .expect_err("an unknown key is an error")
            .to_string();
        let (_, list) = err.split_once("valid keys here: ")?;
        Some(list.trim().split(", ").map(str::to_string).collect())
    }

    /// Every key of dbagent.yml, two levels deep (`postgres.conninfo`, `state_dir`), found
    /// from the configuration model itself.
    fn model_keys() -> std::collections::BTreeSet<String> {
        let mut keys = std::collections::BTreeSet::new();
        for section in keys_at(&[]).expect("the top level lists its keys") {
            match keys_at(&[&section]) {
                Some(children) => {
                    keys.extend(children.iter().map(|c| format!("{section}.{c}")));
                }
                None => {
                    keys.insert(section);
                }
            }
        }
        keys
    }

    /// The keys of the table in docs/configuration.md: each row's first cell, where
    /// "`repository.bucket`, `.prefix`" names `repository.bucket` and `repository.prefix`.
    /// Returns each key with the rest of its row.
    fn documented_keys() -> Vec<(String, String)> {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .expect("read docs/configuration.md");
        let table = doc
            .split("\n## Configuration reference\n")
            .nth(1)
            .expect("docs/configuration.md has a `## Configuration reference` section");
        let mut out = Vec::new();
        for row in table
            .lines()
            .skip_while(|l| !l.starts_with("| Key"))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
        {
            let (first, rest) = row
                .trim_start_matches('|')
                .split_once('|')
                .expect("a table row has cells");
            let mut parent = String::new();
            for name in first.split(',').map(|k| k.trim().trim_matches('`')) {
                let key = match name.strip_prefix('.') {
                    Some(tail) => format!("{parent}.{tail}"),
                    None => {
                        parent = name.rsplit_once('.').map_or("", |(p, _)| p).to_string();
                        name.to_string()
                    }
                };
                out.push((key, rest.to_string()));
            }
        }
        out
    }

    /// docs/configuration.md's reference names every key of the model, and only those; a key
    /// whose value is a mapping (`http.tls`) names its own keys in its row.
    #[test]
    fn the_docs_configuration_reference_lists_every_key() {
        let documented = documented_keys();
        let doc_set: std::collections::BTreeSet<String> =
            documented.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(doc_set.len(), documented.len(), "a key is listed twice");
        let model = model_keys();
        assert!(model.len() > 60, "{model:?}");
        // The probe reaches the keys of a mapping-valued key too.
        assert_eq!(
            keys_at(&["http", "tls"]),
            Some(vec!["cert".to_string(), "key".to_string()])
        );
        let missing: Vec<&String> = model.difference(&doc_set).collect();
        let unknown: Vec<&String> = doc_set.difference(&model).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "docs/configuration.md: keys missing from the reference: {missing:?}; \
             documented keys the configuration does not have: {unknown:?}"
        );
        for (key, row) in &documented {
            let path: Vec<&str> = key.split('.').collect();
            if path.len() < 2 {
                continue;
            }
            for sub in keys_at(&path).unwrap_or_default() {
                assert!(
                    row.contains(&sub),
                    "docs/configuration.md: the row of `{key}` does not name its key `{sub}`"
                );
            }
        }
    }
}
