//! The recovery-objective checks: `rpo` (the data at risk now, from the WAL archive and the
//! server's write position, against `objectives.rpo`) and `rto` (the recovery time measured by
//! the last successful restore drill, against `objectives.rto`). Whether the settings can meet
//! the RPO target at all is the server check `archive_timeout`.

use super::server::human_seconds;
use super::{CheckResult, Status};
use crate::collect::recovery::{fully_archived, newest_archived};
use crate::config::Config;
use crate::repo::Repo;

/// `rpo` once the repository exists, `rto` once a successful drill measured one.
/// `current_wal_file` is the WAL file holding the server's write position (a reachable
/// primary).
pub fn checks(config: &Config, current_wal_file: Option<&str>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let repo = Repo::at(&config.repository.path);
    if matches!(repo.info(), Ok(Some(_))) {
        let newest = newest_archived(&repo).map_err(|e| {
            format!(
                "cannot list the WAL archive in {}: {e}",
                config.repository.path.display()
            )
        });
        out.push(grade_rpo(
            newest,
            current_wal_file,
            jiff::Timestamp::now(),
            config.objectives.rpo.as_secs_f64(),
        ));
    }
    if let Ok(Some(d)) = crate::drill::last(&config.state_dir)
        && d.ok
        && let Some(rto) = d.rto_seconds
    {
        out.push(grade_rto(rto, config.objectives.rto.as_secs_f64()));
    }
    out
}

/// OK when everything the server wrote is archived or the newest archived WAL is younger
/// than the target; CRITICAL past the target; WARNING when nothing is archived yet.
pub fn grade_rpo(
    newest: Result<Option<(String, jiff::Timestamp)>, String>,
    current_wal_file: Option<&str>,
    now: jiff::Timestamp,
    target: f64,
) -> CheckResult {
    const NAME: &str = "rpo";
    let goal = human_seconds(target);
    let (name, archived_at) = match newest {
        Err(e) => {
            return CheckResult::problem(
                NAME,
                Status::Unknown,
                e,
                "fix the repository's permissions or storage",
            );
        }
        Ok(None) => {
            return CheckResult::problem(
                NAME,
                Status::Warning,
                format!(
                    "no WAL is archived yet, so nothing bounds the data at risk (target {goal})"
                ),
                "make archive_command call dbagent wal-push (see archive_command and archiving)",
            );
        }
        Ok(Some(n)) => n,
    };
    let age = (now - archived_at)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0);
    let ago = human_seconds(age);
    if let Some(current) = current_wal_file
        && fully_archived(current, &name)
    {
        return CheckResult::ok(
            NAME,
            format!(
                "RPO 0s: everything the server wrote is archived (newest {name}, {ago} ago); target {goal}"
            ),
        );
    }
    if age > target {
        CheckResult::problem(
            NAME,
            Status::Critical,
            format!(
                "RPO {ago} is above the target {goal}: the newest archived WAL ({name}) is {ago} old and the server has written WAL since"
            ),
            "see the archiving, archive_lag and archive_timeout checks (the server log has archive_command's errors); dbagent_rpo_seconds shows when it recovers",
        )
    } else {
        CheckResult::ok(
            NAME,
            format!("RPO {ago} (newest archived WAL {name}), within the target {goal}"),
        )
    }
}

/// OK when the last successful drill restored within the target, WARNING above it: a real
/// restore would take longer than promised, which wants planning rather than a 3 a.m. page.
pub fn grade_rto(rto: f64, target: f64) -> CheckResult {
    const NAME: &str = "rto";
    let (measured, goal) = (human_seconds(rto), human_seconds(target));
    if rto > target {
        CheckResult::problem(
            NAME,
            Status::Warning,
            format!("the last restore drill took {measured}, above the RTO target {goal}"),
            "make restores faster (repository on faster storage, more frequent backups so less WAL is replayed, repository.prefetch), or agree on a realistic objectives.rto; then run dbagent drill",
        )
    } else {
        CheckResult::ok(
            NAME,
            format!("the last restore drill took {measured}, within the RTO target {goal}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: &str = "000000010000000000000005";

    #[test]
    fn rpo_is_graded_against_the_target_and_zero_when_all_is_archived() {
        let now = jiff::Timestamp::now();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        let newest = |s| Ok(Some((SEG.to_string(), ago(s))));
        let next = "000000010000000000000006";

        let r = grade_rpo(newest(600), Some(next), now, 300.0);
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert!(
            r.message.contains("RPO 10m is above the target 5m") && r.message.contains(SEG),
            "{}",
            r.message
        );
        let r = grade_rpo(newest(60), Some(next), now, 300.0);
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        // An idle primary whose last segment is archived risks nothing, however old it is.
        let r = grade_rpo(newest(86_400), Some(SEG), now, 300.0);
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        assert!(r.message.starts_with("RPO 0s"), "{}", r.message);
        // Unknown position (standby, server down): the archive's age decides.
        assert_eq!(
            grade_rpo(newest(600), None, now, 300.0).status,
            Status::Critical
        );
        assert_eq!(
            grade_rpo(Ok(None), None, now, 300.0).status,
            Status::Warning
        );
        assert_eq!(
            grade_rpo(Err("boom".into()), None, now, 300.0).status,
            Status::Unknown
        );
    }

    #[test]
    fn rto_above_the_target_warns() {
        assert_eq!(grade_rto(120.0, 1800.0).status, Status::Ok);
        let r = grade_rto(2700.0, 1800.0);
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.message.contains("45m") && r.message.contains("30m"),
            "{}",
            r.message
        );
    }
}
