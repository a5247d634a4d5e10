//! `standby_replay`: on a standby, is replay keeping up with the archive? A standby fed from
//! the archive (restore_command = dbagent wal-get) whose repository or configuration cannot
//! be read stays up (wal-get asks PostgreSQL to retry), so nothing on the server looks wrong
//! while it silently falls behind. The archive tells: when it has held a segment after the
//! standby's replay position for longer than a threshold, the primary has moved on and the
//! standby has not followed.

use std::time::SystemTime;

use tokio_postgres::Client;

use super::{CheckResult, Status};
use crate::config::Config;
use crate::pg::PgTarget;
use crate::units::human_duration;
use crate::wal;
use crate::wal::replay::replay_state;

const NAME: &str = "standby_replay";

/// What the archive holds beyond the standby's replay position.
enum Seen {
    NoRepository,
    CaughtUp,
    /// Seconds stalled (beyond the apply delay) and what is waiting.
    Behind(f64, wal::Unreplayed),
}

/// The `standby_replay` check (call it on a standby only).
pub async fn check(client: &Client, target: &PgTarget, config: &Config) -> CheckResult {
    let state = match replay_state(client).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return CheckResult::ok(NAME, "replay has not started yet");
        }
        Err(e) => {
            return CheckResult::problem(
                NAME,
                Status::Unknown,
                target.query_error(NAME, &e).to_string(),
                "check the server log; rerun with -v for details",
            );
        }
    };
    if state.paused {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            format!("replay is paused at {}", state.replay),
            "SELECT pg_wal_replay_resume(); once whatever paused it is done",
        );
    }
    let repo = match config.repo() {
        Ok(r) => r,
        Err(e) => {
            return CheckResult::problem(
                NAME,
                Status::Unknown,
                e.to_string(),
                "fix the repository: settings",
            );
        }
    };
    let path = config.repository.location();
    let st = state.clone();
    let found = tokio::task::spawn_blocking(move || -> std::io::Result<Seen> {
        if repo.info().map_err(std::io::Error::other)?.is_none() {
            return Ok(Seen::NoRepository);
        }
        Ok(
            match wal::unreplayed(&repo, st.replay, st.timeline, st.seg_size)? {
                Some(u) => Seen::Behind(u.stalled_seconds(SystemTime::now(), st.apply_delay), u),
                None => Seen::CaughtUp,
            },
        )
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    let (age, u) = match found {
        Ok(Seen::Behind(age, u)) => (age, u),
        Ok(Seen::CaughtUp) => {
            return CheckResult::ok(
                NAME,
                format!(
                    "replay at {} has reached the end of the archive",
                    state.replay
                ),
            );
        }
        Ok(Seen::NoRepository) => {
            return CheckResult::ok(
                NAME,
                format!(
                    "replay at {}; the repository {} is not created yet, so there is no archive to compare with",
                    state.replay, path
                ),
            );
        }
        Err(e) => {
            return CheckResult::problem(
                NAME,
                Status::Unknown,
                format!("cannot compare replay with the archive {}: {e}", path),
                "make the repository readable by the user running dbagent",
            );
        }
    };
    let warn = config.check.replay_stall_warning.as_secs_f64();
    let crit = config.check.replay_stall_critical.as_secs_f64();
    let found = format!(
        "the archive has held {} ({} archived segments after replay) for {} but replay is still at {}",
        u.first,
        u.segments,
        human_duration(age),
        state.replay
    );
    let fix = format!(
        "this standby's restore_command keeps failing or replay is blocked: look for `dbagent: error: wal-get` lines in its server log, or run its restore_command by hand as the postgres user in the data directory (`dbagent --config FILE wal-get {} /tmp/probe`); once the repository and configuration are readable it catches up by itself",
        u.first
    );
    if age >= crit {
        CheckResult::problem(
            NAME,
            Status::Critical,
            format!("{found} (critical at {})", human_duration(crit)),
            fix,
        )
    } else if age >= warn {
        CheckResult::problem(
            NAME,
            Status::Warning,
            format!("{found} (warning at {})", human_duration(warn)),
            fix,
        )
    } else {
        CheckResult::ok(
            NAME,
            format!(
                "replay at {} is {} archived segments behind, the oldest archived {} ago",
                state.replay,
                u.segments,
                human_duration(age)
            ),
        )
    }
}
