//! The repository check: the configured repository path exists and is writable, or, before the
//! first backup or wal-push, can be created.

use std::path::Path;

use super::{CheckResult, Status};

pub fn check(path: &Path) -> CheckResult {
    let name = "repository";
    let user = current_user();
    if path.exists() {
        if !path.is_dir() {
            return CheckResult::problem(
                name,
                Status::Critical,
                format!(
                    "repository path {} exists but is not a directory",
                    path.display()
                ),
                "point repository.path at a directory",
            );
        }
        return match probe_write(path) {
            Ok(()) => CheckResult::ok(
                name,
                format!("repository {} exists and is writable", path.display()),
            ),
            Err(e) => CheckResult::problem(
                name,
                Status::Critical,
                format!(
                    "repository {} is not writable by {user}: {e}",
                    path.display()
                ),
                format!("chown/chmod it so {user} and the PostgreSQL OS user can write to it"),
            ),
        };
    }
    let Some(ancestor) = path.ancestors().skip(1).find(|p| p.exists()) else {
        return CheckResult::problem(
            name,
            Status::Critical,
            format!(
                "repository path {} has no existing parent directory",
                path.display()
            ),
            "use an absolute repository.path",
        );
    };
    match probe_write(ancestor) {
        Ok(()) => CheckResult::ok(
            name,
            format!(
                "repository {} does not exist yet; it will be created by the first backup or wal-push",
                path.display()
            ),
        ),
        Err(e) => CheckResult::problem(
            name,
            Status::Critical,
            format!(
                "repository {} does not exist and cannot be created: {} is not writable by {user} ({e})",
                path.display(),
                ancestor.display()
            ),
            format!(
                "mkdir -p {} and chown it to the user dbagent and PostgreSQL run as",
                path.display()
            ),
        ),
    }
}

/// Creates and removes a probe file: the only reliable test of writability (ACLs, read-only
/// mounts, full disks).
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".dbagent-check-{}", std::process::id()));
    let result = std::fs::write(&probe, b"probe");
    let _ = std::fs::remove_file(&probe);
    result
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {}", nix::unistd::geteuid()))
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
