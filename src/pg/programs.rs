//! Finding a PostgreSQL program (pg_basebackup, pg_verifybackup, pg_ctl, ...) of the server's
//! major version: the one place that knows where they live and how their version is checked.
//!
//! Search order: `postgres.bin_dir` when set, then Debian's `/usr/lib/postgresql/<major>/bin`,
//! then every directory of PATH. A candidate is taken only if its `--version` reports the
//! wanted major version, so a PATH holding another version's tools is never used by mistake.
//!
//! Uses only the standard library; callers (backup, restore, drill) turn [`NotFound`] into
//! their own errors.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// No candidate of the wanted major version: what was looked for and what was found instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub program: String,
    pub major: u32,
    /// Candidates that exist but are another version: `path (its --version output)`.
    pub seen: Vec<String>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NotFound {
            program,
            major,
            seen,
        } = self;
        let seen = if seen.is_empty() {
            String::new()
        } else {
            format!(" (found {})", seen.join(", "))
        };
        // pg_basebackup ships with the client tools; what restores and drills run with the
        // server package.
        if program == "pg_basebackup" {
            write!(
                f,
                "no {program} for PostgreSQL {major} found{seen}; install the PostgreSQL {major} client tools or set postgres.bin_dir"
            )
        } else {
            write!(
                f,
                "no {program} of PostgreSQL {major} found{seen}; install the PostgreSQL {major} server package or set postgres.bin_dir"
            )
        }
    }
}

impl std::error::Error for NotFound {}

/// The `program` of PostgreSQL `major`, searched in `bin_dir`, then
/// /usr/lib/postgresql/<major>/bin, then PATH; its `--version` must match.
pub fn find(bin_dir: Option<&Path>, major: u32, program: &str) -> Result<PathBuf, NotFound> {
    let mut seen = Vec::new();
    for c in candidates(bin_dir, major, program, std::env::var_os("PATH")) {
        if !c.is_file() {
            continue;
        }
        let version = Command::new(&c)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if major_of(&version) == Some(major) {
            return Ok(c);
        }
        seen.push(format!("{} ({version})", c.display()));
    }
    Err(NotFound {
        program: program.to_string(),
        major,
        seen,
    })
}

/// Where to look, in order.
fn candidates(
    bin_dir: Option<&Path>,
    major: u32,
    program: &str,
    path: Option<OsString>,
) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = bin_dir {
        candidates.push(dir.join(program));
    }
    candidates.push(PathBuf::from(format!(
        "/usr/lib/postgresql/{major}/bin/{program}"
    )));
    if let Some(path) = path {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(program)));
    }
    candidates
}

/// The major version in a program's `--version` output, from its last word as PostgreSQL
/// prints it: 15 in `pg_ctl (PostgreSQL) 15.10`.
fn major_of(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .last()
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse::<u32>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn candidates_are_bin_dir_then_debian_then_path() {
        let path = std::env::join_paths(["/opt/pg/bin", "/usr/bin"]).expect("PATH");
        assert_eq!(
            candidates(
                Some(Path::new("/srv/pg15")),
                15,
                "pg_ctl",
                Some(path.clone())
            ),
            vec![
                PathBuf::from("/srv/pg15/pg_ctl"),
                PathBuf::from("/usr/lib/postgresql/15/bin/pg_ctl"),
                PathBuf::from("/opt/pg/bin/pg_ctl"),
                PathBuf::from("/usr/bin/pg_ctl"),
            ]
        );
        assert_eq!(
            candidates(None, 18, "pg_basebackup", None),
            vec![PathBuf::from("/usr/lib/postgresql/18/bin/pg_basebackup")]
        );
    }

    #[test]
    fn the_major_version_is_read_from_the_last_word() {
        assert_eq!(major_of("pg_ctl (PostgreSQL) 15.10"), Some(15));
        assert_eq!(major_of("pg_basebackup (PostgreSQL) 18.1"), Some(18));
        assert_eq!(major_of("pg_ctl (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(major_of("pg_ctl (PostgreSQL) 17devel"), None);
        assert_eq!(major_of(""), None);
    }

    fn fake(dir: &Path, program: &str, version: &str) -> PathBuf {
        let path = dir.join(program);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '{program} (PostgreSQL) {version}'\n"),
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn a_program_of_the_wanted_version_in_bin_dir_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fake(dir.path(), "pg_dbagent_test_tool", "97.2");
        assert_eq!(find(Some(dir.path()), 97, "pg_dbagent_test_tool"), Ok(path));
    }

    #[test]
    fn another_version_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fake(dir.path(), "pg_dbagent_test_tool", "96.1");
        let err = find(Some(dir.path()), 97, "pg_dbagent_test_tool").expect_err("no 97");
        assert_eq!(
            err.seen,
            vec![format!(
                "{} (pg_dbagent_test_tool (PostgreSQL) 96.1)",
                path.display()
            )]
        );
        assert_eq!(
            err.to_string(),
            format!(
                "no pg_dbagent_test_tool of PostgreSQL 97 found (found {} (pg_dbagent_test_tool (PostgreSQL) 96.1)); install the PostgreSQL 97 server package or set postgres.bin_dir",
                path.display()
            )
        );
    }

    #[test]
    fn not_found_messages_name_the_package_to_install() {
        let nf = |program: &str| NotFound {
            program: program.into(),
            major: 16,
            seen: Vec::new(),
        };
        assert_eq!(
            nf("pg_basebackup").to_string(),
            "no pg_basebackup for PostgreSQL 16 found; install the PostgreSQL 16 client tools or set postgres.bin_dir"
        );
        assert_eq!(
            nf("pg_ctl").to_string(),
            "no pg_ctl of PostgreSQL 16 found; install the PostgreSQL 16 server package or set postgres.bin_dir"
        );
    }
}
