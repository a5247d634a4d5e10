//! The `last_drill` check: a backup is only as good as its last proven restore. Reads the
//! last `dbagent drill` result from the state database (read-only) and grades its outcome and
//! age against `check.drill_age_warning` / `check.drill_age_critical`.

use std::time::Duration;

use super::{CheckResult, Status};
use crate::backup::manifest;
use crate::config::Config;
use crate::drill::{self, LastDrill};
use crate::units::human_duration;

const NAME: &str = "last_drill";

/// The `last_drill` check for the configured state_dir. Before the repository holds a
/// backup there is nothing to drill (and `last_backup` already warns): no line then, unless a
/// drill was recorded.
pub fn check(config: &Config) -> Option<CheckResult> {
    let last = match drill::last(&config.state_dir) {
        Ok(last) => last,
        Err(e) => {
            return Some(CheckResult::problem(
                NAME,
                Status::Unknown,
                format!("cannot read the last drill: {e}"),
                "fix the state database named above, then run dbagent drill",
            ));
        }
    };
    if last.is_none() {
        let repo = config.repo().ok()?;
        let has_backup = manifest::list(&repo).is_ok_and(|b| !b.is_empty());
        if !has_backup {
            return None;
        }
    }
    Some(grade(
        last.as_ref(),
        jiff::Timestamp::now(),
        config.check.drill_age_warning,
        config.check.drill_age_critical,
    ))
}

/// OK when the last drill passed recently; WARNING when there is none or it is older than
/// `warn`; CRITICAL when it failed or is older than `crit`.
pub fn grade(
    last: Option<&LastDrill>,
    now: jiff::Timestamp,
    warn: Duration,
    crit: Duration,
) -> CheckResult {
    let Some(d) = last else {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            "no restore drill has run yet: nothing proves the backups restore",
            "run dbagent drill (and schedule it, e.g. weekly)",
        );
    };
    let age = now
        .duration_since(d.finished_at)
        .as_secs()
        .max(0)
        .unsigned_abs();
    let ago = human_duration(age as f64);
    let backup = d.backup_id.as_deref().unwrap_or("?");
    if !d.ok {
        return CheckResult::problem(
            NAME,
            Status::Critical,
            format!(
                "the last drill ({ago} ago, backup {backup}) failed: {}",
                d.reason.as_deref().unwrap_or("no reason recorded")
            ),
            "fix what the drill named (a damaged backup: take a new one and verify the repository), then run dbagent drill",
        );
    }
    let msg = format!(
        "last drill {ago} ago restored backup {backup} to {} with an RTO of {}",
        d.replayed_to_lsn.as_deref().unwrap_or("?"),
        d.rto_seconds
            .map_or_else(|| "?".to_string(), human_duration)
    );
    if age >= crit.as_secs() {
        CheckResult::problem(
            NAME,
            Status::Critical,
            msg,
            "run dbagent drill and check why scheduled drills stopped",
        )
    } else if age >= warn.as_secs() {
        CheckResult::problem(NAME, Status::Warning, msg, "run dbagent drill")
    } else {
        CheckResult::ok(NAME, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(ok: bool, hours_ago: i64, now: jiff::Timestamp) -> LastDrill {
        LastDrill {
            finished_at: now - jiff::SignedDuration::from_hours(hours_ago),
            ok,
            backup_id: Some("B1".into()),
            reason: (!ok).then(|| "checksum mismatch in base.tar.zst".into()),
            rto_seconds: Some(42.0),
            replayed_to_lsn: Some("0/5000060".into()),
        }
    }

    #[test]
    fn last_drill_grades_outcome_and_age() {
        let now = jiff::Timestamp::now();
        let (w, c) = (
            Duration::from_secs(8 * 86400),
            Duration::from_secs(15 * 86400),
        );
        assert_eq!(grade(None, now, w, c).status, Status::Warning);
        let ok = grade(Some(&drill(true, 1, now)), now, w, c);
        assert_eq!(ok.status, Status::Ok);
        assert!(
            ok.message.contains("RTO of 42s") && ok.message.contains("1h"),
            "{}",
            ok.message
        );
        assert_eq!(
            grade(Some(&drill(true, 9 * 24, now)), now, w, c).status,
            Status::Warning
        );
        assert_eq!(
            grade(Some(&drill(true, 16 * 24, now)), now, w, c).status,
            Status::Critical
        );
        let bad = grade(Some(&drill(false, 1, now)), now, w, c);
        assert_eq!(bad.status, Status::Critical);
        assert!(bad.message.contains("checksum mismatch"), "{}", bad.message);
    }
}
