//! The `wal_verify` check: the last `dbagent wal verify` of the configured repository, read
//! from the state database (read-only; the archive itself is not read, so the check stays
//! cheap). Graded by what it found and by its age against `check.wal_verify_age_warning`.

use std::time::Duration;

use super::{CheckResult, Status};
use crate::backup::manifest;
use crate::config::Config;
use crate::units::human_duration;
use crate::wal::verify::{self, LastRun};

const NAME: &str = "wal_verify";

/// How many problems the message names.
const NAMED: usize = 3;

/// The `wal_verify` check. Before the repository holds a backup no WAL is needed yet: no line
/// then, unless a verification was recorded.
pub fn check(config: &Config) -> Option<CheckResult> {
    let repo = config.repo().ok()?;
    let last = match verify::last_run(&config.state_dir, &repo) {
        Ok(last) => last,
        Err(e) => {
            return Some(CheckResult::problem(
                NAME,
                Status::Unknown,
                format!("cannot read the last WAL verification: {e}"),
                "fix the state database named above, then run dbagent wal verify",
            ));
        }
    };
    if last.is_none() && !manifest::list(&repo).is_ok_and(|b| !b.is_empty()) {
        return None;
    }
    Some(grade(
        last.as_ref(),
        jiff::Timestamp::now(),
        config.check.wal_verify_age_warning,
    ))
}

/// CRITICAL when the last verification found a needed segment missing, damaged or
/// unreadable; WARNING when it found histories that disagree, when none has run, or when it is
/// older than `warn`; OK otherwise.
pub fn grade(last: Option<&LastRun>, now: jiff::Timestamp, warn: Duration) -> CheckResult {
    let Some(r) = last else {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            "the WAL archive has never been verified: nothing proves the WAL recovery needs is there and intact",
            "run dbagent wal verify (and schedule it: schedule.wal_verify)",
        );
    };
    let age = now
        .duration_since(r.finished_at)
        .as_secs()
        .max(0)
        .unsigned_abs();
    let ago = human_duration(age as f64);
    let named = |segment: bool| {
        let names: Vec<&str> = r
            .problems
            .iter()
            .filter(|p| p.kind.is_segment() == segment)
            .take(NAMED)
            .map(|p| p.name.as_str())
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(
                " ({}{})",
                names.join(", "),
                if names.len() == NAMED { ", ..." } else { "" }
            )
        }
    };
    let bad = r.segments_missing + r.segments_damaged + r.segments_unreadable;
    if bad > 0 {
        let mut what = Vec::new();
        for (n, kind) in [
            (r.segments_missing, "missing"),
            (r.segments_damaged, "damaged"),
            (r.segments_unreadable, "unreadable"),
        ] {
            if n > 0 {
                what.push(format!("{n} {kind}"));
            }
        }
        return CheckResult::problem(
            NAME,
            Status::Critical,
            format!(
                "the last WAL verification ({ago} ago) found needed segments {}{}: recovery from the oldest kept backup stops there",
                what.join(", "),
                named(true)
            ),
            "take a new backup now (dbagent backup), find out how the segments were lost or damaged (dbagent wal verify names each), then run dbagent wal verify again",
        );
    }
    if r.history_conflicts > 0 {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            format!(
                "the last WAL verification ({ago} ago) found {} timeline history conflict(s){}",
                r.history_conflicts,
                named(false)
            ),
            "run dbagent wal verify to see each conflict; remove a foreign history file only once no server uses that timeline",
        );
    }
    let range = match (&r.first_segment, &r.last_segment) {
        (Some(f), Some(l)) => format!(
            "{} needed segments from {f} to {l} present and intact",
            r.segments_needed
        ),
        _ => "no WAL needed yet".to_string(),
    };
    let msg = format!("last WAL verification {ago} ago: {range}");
    if age >= warn.as_secs() {
        CheckResult::problem(
            NAME,
            Status::Warning,
            msg,
            "run dbagent wal verify, and check why scheduled verifications stopped",
        )
    } else {
        CheckResult::ok(NAME, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::verify::{Problem, ProblemKind};

    fn run(hours_ago: i64, now: jiff::Timestamp) -> LastRun {
        LastRun {
            finished_at: now - jiff::SignedDuration::from_hours(hours_ago),
            ok: true,
            full: false,
            segments_needed: 8,
            segments_ok: 8,
            segments_missing: 0,
            segments_damaged: 0,
            segments_unreadable: 0,
            history_conflicts: 0,
            segments_read: 0,
            segments_cached: 8,
            first_segment: Some("000000010000000000000002".into()),
            last_segment: Some("000000010000000000000009".into()),
            start_lsn: None,
            end_lsn: None,
            problems: Vec::new(),
        }
    }

    fn problem(kind: ProblemKind, name: &str) -> Problem {
        Problem {
            kind,
            timeline: 1,
            name: name.into(),
            file: None,
            problem: "x".into(),
        }
    }

    #[test]
    fn wal_verify_grades_findings_and_age() {
        let now = jiff::Timestamp::now();
        let warn = Duration::from_secs(8 * 86400);
        assert_eq!(grade(None, now, warn).status, Status::Warning);
        let ok = grade(Some(&run(1, now)), now, warn);
        assert_eq!(ok.status, Status::Ok, "{}", ok.message);
        assert!(
            ok.message
                .contains("8 needed segments from 000000010000000000000002"),
            "{}",
            ok.message
        );
        assert_eq!(
            grade(Some(&run(9 * 24, now)), now, warn).status,
            Status::Warning
        );
        let mut bad = run(1, now);
        bad.ok = false;
        bad.segments_missing = 1;
        bad.history_conflicts = 1;
        bad.problems = vec![
            problem(ProblemKind::Missing, "000000010000000000000005"),
            problem(ProblemKind::UnknownParent, "00000003.history"),
        ];
        let c = grade(Some(&bad), now, warn);
        assert_eq!(c.status, Status::Critical);
        assert!(
            c.message.contains("1 missing (000000010000000000000005)"),
            "{}",
            c.message
        );
        bad.segments_missing = 0;
        let c = grade(Some(&bad), now, warn);
        assert_eq!(c.status, Status::Warning);
        assert!(c.message.contains("00000003.history"), "{}", c.message);
    }
}
