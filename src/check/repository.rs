//! The repository checks: the configured path exists and is writable (or, before the first
//! backup or wal-push, can be created) and belongs to this cluster; the newest backup is
//! recent enough; and the WAL archive has no gap from the oldest backup to the newest segment
//! along the server's own timeline history (segments of another branch, such as a copy
//! restored elsewhere that archived into this repository, fill no gap).

use std::time::Duration;

use super::{CheckResult, Status};
use crate::backup::manifest::{self, BackupManifest};
use crate::config::Config;
use crate::repo::Repo;
use crate::repo::storage::Access;
use crate::wal::timeline::Timelines;
use crate::wal::{self, WalName};

/// Every repository check, in order.
/// `timeline` is the server's (when it could be asked); `connected` says whether the server
/// could be reached at all (when not, the comparison with it is skipped, not blamed on a grant).
pub fn checks(
    config: &Config,
    connected: bool,
    server_sysid: Option<&str>,
    timeline: Option<u32>,
) -> Vec<CheckResult> {
    let repo = match config.repo() {
        Ok(r) => r,
        Err(e) => {
            return vec![CheckResult::problem(
                "repository",
                Status::Critical,
                e.to_string(),
                "fix the repository: settings",
            )];
        }
    };
    let mut out = vec![check_access(&repo)];
    let info = match repo.info() {
        Ok(Some(info)) => info,
        Ok(None) => return out,
        Err(e) => {
            out.push(CheckResult::problem(
                "repository_binding",
                Status::Critical,
                e.to_string(),
                "fix the repository's permissions or storage; wal-get cannot serve recovery from it",
            ));
            return out;
        }
    };
    out.push(match server_sysid {
        Some(sysid) if sysid != info.system_identifier => CheckResult::problem(
            "repository_binding",
            Status::Critical,
            format!(
                "repository {} belongs to cluster {}, this server is {sysid}",
                repo.location().display(),
                info.system_identifier
            ),
            "point repository.path at this cluster's own repository",
        ),
        Some(_) => CheckResult::ok(
            "repository_binding",
            format!(
                "repository belongs to this cluster ({})",
                info.system_identifier
            ),
        ),
        None if !connected => CheckResult {
            name: "repository_binding",
            status: Status::Unknown,
            message: "skipped: no connection to the server (see the connection check)".into(),
            action: None,
        },
        None => CheckResult::problem(
            "repository_binding",
            Status::Unknown,
            "cannot read the server's system identifier to compare with the repository",
            "GRANT pg_monitor (pg_control_system) to the dbagent role",
        ),
    });
    let backups = match manifest::list(&repo) {
        Ok(b) => b,
        Err(e) => {
            out.push(CheckResult::problem(
                "last_backup",
                Status::Critical,
                e.to_string(),
                "inspect the named file; `dbagent backups verify --all` checks every backup",
            ));
            return out;
        }
    };
    out.push(check_backup_age(
        &backups,
        &config.check.backup_age_warning,
        &config.check.backup_age_critical,
    ));
    out.push(check_continuity(&repo, &backups, timeline));
    out
}

fn check_backup_age(backups: &[BackupManifest], warn: &Duration, crit: &Duration) -> CheckResult {
    let Some(newest) = backups.last() else {
        return CheckResult::problem(
            "last_backup",
            Status::Warning,
            "no backup in the repository yet",
            "take one: dbagent backup",
        );
    };
    let age = jiff::Timestamp::now()
        .duration_since(newest.stop_time)
        .as_secs()
        .max(0)
        .unsigned_abs();
    let msg = format!(
        "newest backup {} finished {} ago ({} backups)",
        newest.id,
        crate::units::human_duration(age as f64),
        backups.len()
    );
    if age >= crit.as_secs() {
        CheckResult::problem(
            "last_backup",
            Status::Critical,
            msg,
            "run dbagent backup and check why scheduled backups stopped",
        )
    } else if age >= warn.as_secs() {
        CheckResult::problem("last_backup", Status::Warning, msg, "run dbagent backup")
    } else {
        CheckResult::ok("last_backup", msg)
    }
}

/// Every segment from the oldest backup's first WAL segment to the newest archived one must
/// be in the archive, along the server's timeline history (`timeline`; when the server could
/// not be asked, the archive's newest timeline that is not a copy), or point-in-time recovery
/// stops at the gap.
fn check_continuity(repo: &Repo, backups: &[BackupManifest], timeline: Option<u32>) -> CheckResult {
    let name = "archive_continuity";
    let Some(oldest) = backups.first() else {
        return CheckResult::ok(name, "no backup yet, nothing to replay");
    };
    let seg = oldest.wal_segment_size;
    let Some(start) = WalName::parse(&oldest.wal_start) else {
        return CheckResult::problem(
            name,
            Status::Unknown,
            format!("backup {} has an invalid wal_start", oldest.id),
            "dbagent backups verify",
        );
    };
    let timelines = match Timelines::read_recent(repo, seg) {
        Ok(t) => t,
        Err(e) => {
            return CheckResult::problem(
                name,
                Status::Critical,
                format!("cannot list the WAL archive: {e}"),
                "fix the repository's permissions or storage",
            );
        }
    };
    let tli = timeline
        .or_else(|| timelines.newest_not_copy())
        .unwrap_or(oldest.timeline);
    let history = timelines.path_text(tli);
    if timelines.path(tli).is_none() {
        return CheckResult::problem(
            name,
            Status::Critical,
            format!(
                "the history file of timeline {tli} ({:08X}.history) is not in the archive: recovery cannot follow the server's history",
                tli
            ),
            "check that archive_command archives .history files (the server log says why it failed)",
        );
    }
    let first = start.segno(seg);
    let Some((_, last, _)) = timelines.newest_on_path(tli, first) else {
        return CheckResult::problem(
            name,
            Status::Critical,
            format!(
                "no WAL archived on the server's timeline history {history} since backup {} started ({})",
                oldest.id, oldest.wal_start
            ),
            "check WAL archiving (the archiving check above)",
        );
    };
    let missing = timelines.missing_on_path(tli, first, last);
    if let Some(m) = missing.first() {
        return CheckResult::problem(
            name,
            Status::Critical,
            format!(
                "WAL segment {m} is missing from the archive ({} missing on the timeline history {history}): recovery from backup {} cannot go past it",
                missing.len(),
                oldest.id
            ),
            "take a new backup now (dbagent backup); then find why the segment was lost",
        );
    }
    let path = timelines.path(tli).unwrap_or_default();
    CheckResult::ok(
        name,
        format!(
            "WAL continuous from {} (backup {}) to {} along the timeline history {history} ({} segments)",
            oldest.wal_start,
            oldest.id,
            wal::name::segment_name(wal::timeline::timeline_of(&path, last, seg), last, seg),
            last - first + 1
        ),
    )
}

/// Whether the repository in `path` can be written (or created), as the storage judges it.
#[cfg(test)]
fn check(path: &std::path::Path) -> CheckResult {
    check_access(&Repo::at(path))
}

/// Whether the repository can be written (or created), as its storage judges it.
pub fn check_access(repo: &Repo) -> CheckResult {
    let name = "repository";
    match repo.storage().check_access() {
        Access::Ok(msg) => CheckResult::ok(name, msg),
        Access::Problem { detail, fix } => {
            CheckResult::problem(name, Status::Critical, detail, fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_repository_under_writable_parent_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let r = check(&dir.path().join("repo/sub"));
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        assert!(r.message.contains("does not exist yet"));
        assert_eq!(check(dir.path()).status, Status::Ok);
    }

    #[test]
    fn a_file_is_not_a_repository() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(check(&file).status, Status::Critical);
    }
}
