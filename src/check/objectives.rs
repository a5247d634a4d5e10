//! The recovery-objective checks: `rpo` (the data at risk now, against `objectives.rpo`: the
//! same answer as `dbagent_rpo_seconds`, see [`crate::rpo`], computed once without the
//! sidecar's poll history) and `rto` (the recovery time measured by the last successful
//! restore drill, against `objectives.rto`). Whether the settings can meet the RPO target at
//! all is the server check `archive_timeout`.

use tokio_postgres::Client;

use super::{CheckResult, Status};
use crate::config::Config;
use crate::repo::Repo;
use crate::rpo::{self, Basis, Rpo, ServerWal};
use crate::units::human_duration;

/// `rpo` (with the server's WAL facts when it is reachable, from the archive alone when not),
/// `rto` once a successful drill measured one. Before the repository exists `rpo` is reported
/// only once nothing archived for longer than the target (the `repository` check covers a
/// fresh cluster); against a repository of another cluster it cannot be judged.
pub async fn checks(
    config: &Config,
    client: Option<&Client>,
    server: Option<&Result<ServerWal, String>>,
    server_sysid: Option<&str>,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let target = config.objectives.rpo.as_secs_f64();
    let repo_path = config.repository.location();
    let Ok(opened) = config.repo() else {
        // The repository check reports why it cannot be opened.
        return out;
    };
    let archive_error = |e: ArchiveError| {
        CheckResult::problem(
            "rpo",
            Status::Unknown,
            format!("cannot read the WAL archive in {repo_path}: {e}"),
            "fix the repository's permissions or storage",
        )
    };
    match (client, server) {
        (Some(client), Some(Ok(server))) => {
            let repo = opened;
            let info = repo.info().ok().flatten();
            if let (Some(info), Some(sysid)) = (&info, server_sysid)
                && info.system_identifier != sysid
            {
                out.push(CheckResult::problem(
                    "rpo",
                    Status::Unknown,
                    format!(
                        "the repository belongs to cluster {}, this server is {sysid}: its archive says nothing about this server's data",
                        info.system_identifier
                    ),
                    "point repository.path at this cluster's own repository (see repository_binding)",
                ));
                return out;
            }
            let (seg, tli) = (server.seg_size, server.timeline);
            let archive = tokio::task::spawn_blocking(move || {
                rpo::read_archive(&repo, seg, tli, &mut None).map_err(ArchiveError::Read)
            })
            .await
            .map_err(ArchiveError::Task)
            .and_then(|r| r);
            match archive {
                Ok(archive) => {
                    let now = jiff::Timestamp::now();
                    let rpo = rpo::assess(client, server, &archive, None, now).await;
                    if info.is_some() || rpo.seconds > target {
                        out.push(grade_rpo(&rpo, target));
                    }
                }
                Err(e) => out.push(archive_error(e)),
            }
        }
        (Some(_), Some(Err(e))) => out.push(CheckResult::problem(
            "rpo",
            Status::Unknown,
            format!("cannot read the server's WAL position and transaction counter: {e}"),
            "see the role_* checks above (pg_monitor is needed)",
        )),
        _ => {
            let repo = opened;
            match offline(&repo) {
                Ok(Some(r)) => out.push(r(target)),
                Ok(None) => {}
                Err(e) => out.push(archive_error(e)),
            }
        }
    }
    if let Ok(Some(d)) = crate::drill::last(&config.state_dir)
        && d.ok
        && let Some(rto) = d.rto_seconds
    {
        out.push(grade_rto(rto, config.objectives.rto.as_secs_f64()));
    }
    out
}

type Grader = Box<dyn FnOnce(f64) -> CheckResult>;

/// Why the archive could not be read for the RPO (the check is UNKNOWN).
#[derive(Debug, thiserror::Error)]
enum ArchiveError {
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error("{0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Task(tokio::task::JoinError),
}

/// The server cannot be asked: the age of the newest archived WAL on the history of the
/// archive's newest timeline that is not a copy, which is the most the archive can say.
fn offline(repo: &Repo) -> Result<Option<Grader>, ArchiveError> {
    let Some(info) = repo.info()? else {
        return Ok(None);
    };
    let timelines = crate::wal::timeline::Timelines::read_recent(repo, info.wal_segment_size)
        .map_err(ArchiveError::Read)?;
    let Some(tli) = timelines.newest_not_copy() else {
        return Ok(None);
    };
    let Some((t, segno, at)) = timelines.newest_on_path(tli, 0) else {
        return Ok(None);
    };
    let name = crate::wal::name::segment_name(t, segno, info.wal_segment_size);
    let age = (jiff::Timestamp::now() - at)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0);
    Ok(Some(Box::new(move |target| {
        let ago = human_duration(age);
        let goal = human_duration(target);
        let msg = format!(
            "the server cannot be asked, so only the archive speaks: its newest WAL on timeline {tli}'s history is {name}, archived {ago} ago (RPO at most that if the server wrote since); target {goal}"
        );
        if age > target {
            CheckResult::problem(
                "rpo",
                Status::Critical,
                msg,
                "restore the connection to the server (see connection) so check can tell what is unarchived; if the server is lost, this is the data at risk",
            )
        } else {
            CheckResult::ok("rpo", msg)
        }
    })))
}

/// OK within the target; CRITICAL above it. Nothing archived yet on the server's history is a
/// WARNING while still within the target (archiving may simply not have had its first
/// segment), CRITICAL once past it.
pub fn grade_rpo(rpo: &Rpo, target: f64) -> CheckResult {
    const NAME: &str = "rpo";
    let goal = human_duration(target);
    let value = human_duration(rpo.seconds);
    let msg = format!("RPO {value}: {}; target {goal}", rpo.detail);
    let fix = "see the archiving, archive_lag and archive_timeout checks (the server log has archive_command's errors); dbagent_rpo_seconds shows when it recovers";
    if rpo.seconds > target {
        CheckResult::problem(
            NAME,
            Status::Critical,
            format!("RPO {value} is above the target {goal}: {}", rpo.detail),
            fix,
        )
    } else if rpo.basis == Basis::NothingArchived {
        CheckResult::problem(
            NAME,
            Status::Warning,
            msg,
            "make archive_command call dbagent wal-push (see archive_command and archiving)",
        )
    } else {
        CheckResult::ok(NAME, msg)
    }
}

/// OK when the last successful drill restored within the target, WARNING above it: a real
/// restore would take longer than promised, which wants planning rather than a 3 a.m. page.
pub fn grade_rto(rto: f64, target: f64) -> CheckResult {
    const NAME: &str = "rto";
    let (measured, goal) = (human_duration(rto), human_duration(target));
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

    fn rpo(seconds: f64, basis: Basis) -> Rpo {
        Rpo {
            seconds,
            at_risk_since: None,
            basis,
            detail: "details".into(),
            server_timeline: 1,
            server_position: crate::wal::Lsn(0x3000000),
            newest_archived: None,
            oldest_unarchived_xid: None,
            other_timelines: Vec::new(),
        }
    }

    #[test]
    fn rpo_is_graded_against_the_target() {
        let r = grade_rpo(&rpo(600.0, Basis::ArchiveAge), 300.0);
        assert_eq!(r.status, Status::Critical, "{}", r.message);
        assert!(
            r.message.contains("RPO 10m is above the target 5m"),
            "{}",
            r.message
        );
        let r = grade_rpo(&rpo(0.0, Basis::NoUnarchivedCommit), 300.0);
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        assert!(r.message.starts_with("RPO 0s"), "{}", r.message);
        assert_eq!(
            grade_rpo(&rpo(60.0, Basis::NothingArchived), 300.0).status,
            Status::Warning
        );
        assert_eq!(
            grade_rpo(&rpo(600.0, Basis::NothingArchived), 300.0).status,
            Status::Critical
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
