//! `schedule:` (the jobs `dbagent run` starts by itself) and `ha:` (leader election between the
//! agents of a primary and its replicas).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use super::{de, ser};
use crate::cron::{Cron, parse_time_zone};
use crate::pg::ConnInfo;

/// `schedule:`: cron expressions for the jobs the leader runs. An unset job is not scheduled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The time zone of the cron expressions: an IANA name, `UTC`, or `local`.
    #[serde(default = "utc", deserialize_with = "time_zone")]
    pub timezone: String,
    /// What to do at start-up about runs missed while the agent was down.
    #[serde(default)]
    pub on_missed: OnMissed,
    /// A job still running after this long is stopped and recorded as failed.
    #[serde(
        default = "job_timeout",
        deserialize_with = "de::duration",
        serialize_with = "ser::duration"
    )]
    pub timeout: Duration,
    /// `dbagent backup`: a full backup.
    #[serde(default, deserialize_with = "opt_cron")]
    pub backup: Option<Cron>,
    /// `dbagent backup --type incremental --or-full` (PostgreSQL 17+; a full backup when an
    /// incremental cannot be taken). When `backup` fires at the same time, only the full runs.
    #[serde(default, deserialize_with = "opt_cron")]
    pub backup_incremental: Option<Cron>,
    /// `dbagent backups verify` (the newest backup).
    #[serde(default, deserialize_with = "opt_cron")]
    pub verify: Option<Cron>,
    /// `dbagent backups expire` (the retention: rules).
    #[serde(default, deserialize_with = "opt_cron")]
    pub expire: Option<Cron>,
    /// `dbagent drill`.
    #[serde(default, deserialize_with = "opt_cron")]
    pub drill: Option<Cron>,
    /// `dbagent wal verify` (the WAL archive; results remembered, so frequent runs are cheap).
    #[serde(default, deserialize_with = "opt_cron")]
    pub wal_verify: Option<Cron>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            timezone: utc(),
            on_missed: OnMissed::default(),
            timeout: job_timeout(),
            backup: None,
            backup_incremental: None,
            verify: None,
            expire: None,
            drill: None,
            wal_verify: None,
        }
    }
}

impl ScheduleConfig {
    /// The time zone (validated when the file was loaded).
    pub fn tz(&self) -> jiff::tz::TimeZone {
        parse_time_zone(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// Runs missed while the agent was down: run each missed job once at start-up, or skip to the
/// next scheduled time (either way the history records what happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissed {
    #[default]
    RunOnce,
    Skip,
}

/// `ha:`: which agent leads. The leader holds a session-level advisory lock on the primary;
/// only the leader runs scheduled jobs and sends cluster-wide alerts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// Where to take the lock. Unset: `postgres.conninfo`, so the agent of the primary leads
    /// and the agent of a standby never does. A multi-host conninfo with
    /// `target_session_attrs=read-write` lets any agent lead from wherever the primary is.
    #[serde(default, deserialize_with = "opt_conninfo")]
    pub leader_conninfo: Option<ConnInfo>,
    /// The advisory lock key (`pg_try_advisory_lock(key)`); agents of one cluster share it.
    #[serde(default = "lock_key")]
    pub lock_key: i64,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            leader_conninfo: None,
            lock_key: lock_key(),
        }
    }
}

fn utc() -> String {
    "UTC".into()
}

fn job_timeout() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// "dbagentL" read as a big-endian integer: unlikely to collide with an application's keys.
fn lock_key() -> i64 {
    0x6462_6167_656e_744c
}

fn time_zone<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = de::string(d)?;
    parse_time_zone(&s).map_err(D::Error::custom)?;
    Ok(s)
}

fn opt_cron<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cron>, D::Error> {
    match de::opt_string(d)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(D::Error::custom),
    }
}

fn opt_conninfo<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConnInfo>, D::Error> {
    match de::opt_string(d)? {
        None => Ok(None),
        Some(s) => ConnInfo::parse(&s).map(Some).map_err(D::Error::custom),
    }
}

impl Serialize for Cron {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
