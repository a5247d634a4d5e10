//! The `wal_summaries` check: can the next incremental backup be taken? On PostgreSQL 17+ an
//! incremental backup (`dbagent backup --type incremental`, `schedule.backup_incremental`)
//! needs the server's WAL summaries: `summarize_wal` on, the summarizer running and caught up,
//! and its summaries reaching back to the newest backup (the parent of the next incremental).
//!
//! Severity: WARNING only when something stands in the way of incrementals the configuration
//! schedules (`schedule.backup_incremental`), or of an incremental at all once summarize_wal is
//! on (summarizer stopped or far behind, summaries not reaching back to the newest backup).
//! `summarize_wal = off` without scheduled incrementals is OK and says so, naming the setting.
//! Before 17 the check is OK and says that incremental backups need 17+ (every backup is full).

use tokio_postgres::Client;

use super::{CheckResult, Status};
use crate::backup::manifest;
use crate::backup::take::incremental::{self, Summary};
use crate::config::Config;
use crate::units::human_bytes;
use crate::wal::Lsn;

const NAME: &str = "wal_summaries";

/// The summarizer is "behind" when it has yet to read more WAL than this many segments (a busy
/// server keeps it a little behind; it sleeps up to a minute when there is nothing to read).
const LAG_SEGMENTS: u64 = 16;

/// What the server says about its WAL summarization.
#[derive(Debug, Clone, PartialEq)]
struct State {
    summarize_wal: bool,
    /// The summarizer's process, when it runs.
    pid: Option<i32>,
    /// WAL written but not yet read by the summarizer, in bytes.
    lag: u64,
    segment_size: u64,
    /// The newest backup of this cluster and whether the summaries reach back to its start.
    newest_backup: Option<(String, bool)>,
}

pub async fn check(
    config: &Config,
    client: &Client,
    version_num: u32,
    version: &str,
    sysid: Option<&str>,
) -> CheckResult {
    let scheduled = config.schedule.backup_incremental.is_some();
    if version_num / 10_000 < incremental::MIN_MAJOR {
        let also = if scheduled {
            "; every scheduled incremental (schedule.backup_incremental) takes a full backup"
        } else {
            ""
        };
        return CheckResult::ok(
            NAME,
            format!(
                "incremental backups need PostgreSQL {}+ and this server runs {version}: backups are full{also}",
                incremental::MIN_MAJOR
            ),
        );
    }
    match read_state(config, client, sysid).await {
        Ok(state) => judge(&state, scheduled),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            CheckResult::problem(
                NAME,
                Status::Unknown,
                format!(
                    "the role may not read the WAL summarizer's state: {}",
                    crate::pg::error_detail(&e)
                ),
                "GRANT EXECUTE ON FUNCTION pg_get_wal_summarizer_state(), pg_available_wal_summaries() TO the role dbagent connects as",
            )
        }
        Err(e) => CheckResult::problem(
            NAME,
            Status::Unknown,
            format!(
                "cannot read the WAL summarization state: {}",
                crate::pg::error_detail(&e)
            ),
            "check the server log; rerun with -v for details",
        ),
    }
}

async fn read_state(
    config: &Config,
    client: &Client,
    sysid: Option<&str>,
) -> Result<State, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('summarize_wal'), \
             (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await?;
    let summarize_wal = row.get::<_, String>(0) == "on";
    let segment_size = u64::try_from(row.get::<_, i64>(1)).unwrap_or(16 << 20);
    if !summarize_wal {
        return Ok(State {
            summarize_wal,
            pid: None,
            lag: 0,
            segment_size,
            newest_backup: None,
        });
    }
    let row = client
        .query_one(
            "SELECT pending_lsn::text, summarizer_pid, \
             (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_insert_lsn() END)::text \
             FROM pg_get_wal_summarizer_state()",
            &[],
        )
        .await?;
    let lsn = |i: usize| {
        row.get::<_, Option<String>>(i)
            .as_deref()
            .and_then(Lsn::parse)
    };
    let lag = match (lsn(0), lsn(2)) {
        (Some(read), Some(now)) => now.0.saturating_sub(read.0),
        _ => 0,
    };
    let pid: Option<i32> = row.get(1);
    // The newest backup of this cluster: the parent of the next incremental.
    let newest = sysid.and_then(|sysid| {
        let repo = config.repo().ok()?;
        manifest::list(&repo)
            .ok()?
            .into_iter()
            .rev()
            .find(|m| m.system_identifier == sysid)
    });
    let newest_backup = match newest {
        Some(m) => {
            let summaries: Vec<Summary> = client
                .query(
                    "SELECT tli::bigint, start_lsn::text, end_lsn::text FROM pg_available_wal_summaries()",
                    &[],
                )
                .await?
                .iter()
                .filter_map(|r| {
                    Some(Summary {
                        tli: u32::try_from(r.get::<_, i64>(0)).ok()?,
                        start: Lsn::parse(r.get(1))?,
                        end: Lsn::parse(r.get(2))?,
                    })
                })
                .collect();
            let reaches = incremental::reaches_back(&summaries, m.timeline, m.start_lsn);
            Some((m.id, reaches))
        }
        None => None,
    };
    Ok(State {
        summarize_wal,
        pid,
        lag,
        segment_size,
        newest_backup,
    })
}

/// The verdict from what the server said.
fn judge(s: &State, scheduled: bool) -> CheckResult {
    let enable = incremental::ENABLE_SUMMARIZE_WAL;
    if !s.summarize_wal {
        if scheduled {
            return CheckResult::problem(
                NAME,
                Status::Warning,
                "summarize_wal is off: every scheduled incremental (schedule.backup_incremental) takes a full backup",
                format!("turn it on with `{enable}` (no restart needed)"),
            );
        }
        return CheckResult::ok(
            NAME,
            format!(
                "summarize_wal is off (only incremental backups need it: `{enable}`; no incrementals are scheduled)"
            ),
        );
    }
    if s.pid.is_none() {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            "summarize_wal is on but the WAL summarizer process is not running: incremental backups are refused",
            "look for walsummarizer errors in the server log",
        );
    }
    if s.lag > LAG_SEGMENTS * s.segment_size {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            format!(
                "the WAL summarizer is {} behind the server's WAL: an incremental backup waits for it or is refused",
                human_bytes(s.lag)
            ),
            "look for walsummarizer errors in the server log; it catches up by itself unless stuck",
        );
    }
    match &s.newest_backup {
        Some((id, false)) => CheckResult::problem(
            NAME,
            Status::Warning,
            format!(
                "the WAL summaries no longer reach back to backup {id}, the newest: the next incremental cannot be taken against it{}",
                if scheduled {
                    " (the scheduled one takes a full backup)"
                } else {
                    ""
                }
            ),
            "take a full backup (`dbagent backup --type full`); raise wal_summary_keep_time if backups are further apart than it",
        ),
        Some((id, true)) => CheckResult::ok(
            NAME,
            format!(
                "summarize_wal is on, the summarizer caught up ({} to read), and its summaries reach back to backup {id}: incremental backups can be taken",
                human_bytes(s.lag)
            ),
        ),
        None => CheckResult::ok(
            NAME,
            format!(
                "summarize_wal is on and the summarizer caught up ({} to read): incremental backups can be taken once a full backup exists",
                human_bytes(s.lag)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            summarize_wal: true,
            pid: Some(4242),
            lag: 0,
            segment_size: 16 << 20,
            newest_backup: Some(("20261206T010000Z".into(), true)),
        }
    }

    #[test]
    fn off_warns_only_when_incrementals_are_scheduled_and_names_the_setting() {
        let off = State {
            summarize_wal: false,
            newest_backup: None,
            ..state()
        };
        let r = judge(&off, true);
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message.starts_with("summarize_wal is off"),
            "{}",
            r.message
        );
        assert!(
            r.action
                .as_deref()
                .is_some_and(|a| a.contains("ALTER SYSTEM SET summarize_wal = on")),
            "{r:?}"
        );
        let r = judge(&off, false);
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.message.contains("ALTER SYSTEM SET summarize_wal = on"),
            "{}",
            r.message
        );
    }

    #[test]
    fn on_is_ok_when_running_caught_up_and_reaching_back() {
        let r = judge(&state(), true);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.message.contains("reach back to backup 20261206T010000Z"));
        let none = State {
            newest_backup: None,
            ..state()
        };
        assert_eq!(judge(&none, false).status, Status::Ok);
    }

    #[test]
    fn a_stopped_lagging_or_short_summarizer_warns() {
        let stopped = State {
            pid: None,
            ..state()
        };
        assert_eq!(judge(&stopped, false).status, Status::Warning);
        let behind = State {
            lag: 17 * (16 << 20),
            ..state()
        };
        let r = judge(&behind, false);
        assert_eq!(r.status, Status::Warning);
        assert!(r.message.contains("behind"), "{}", r.message);
        let short = State {
            newest_backup: Some(("20261206T010000Z".into(), false)),
            ..state()
        };
        let r = judge(&short, true);
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message
                .starts_with("the WAL summaries no longer reach back to backup 20261206T010000Z"),
            "{}",
            r.message
        );
    }
}
