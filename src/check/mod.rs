//! `dbagent check`: is this cluster recoverable and watchable? One line per check, with what to
//! do when it is not OK, and exit codes of the Nagios plugin convention so any monitoring
//! system can run it.
//!
//! Overall status: CRITICAL if any check is critical, else WARNING if any warns, else UNKNOWN if
//! any could not be evaluated, else OK.
//!
//! Layer: observation. Uses: backup, collect, config, drill, pg, repo, rpo, units, wal. Used by: the binary.

mod databases;
mod drill;
mod objectives;
pub mod registry;
mod repository;
mod result;
mod server;
pub mod standby;
mod wal_summaries;
mod wal_verify;

use std::time::{Duration, Instant};

use serde::Serialize;

pub use result::{CheckResult, ServerInfo, Status};

use crate::config::Config;

/// `check --help`'s list of checks: one line each, every check of [`registry::CHECKS`] in report
/// order, with what it looks at.
pub fn checks_help() -> String {
    let width = registry::names().map(str::len).max().unwrap_or(0);
    let mut out = format!("Checks ({}):\n", registry::CHECKS.len());
    for (name, what) in registry::CHECKS {
        out.push_str(&format!("  {name:<width$}  {what}\n"));
    }
    out
}

/// Counts of checks per status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warning: usize,
    pub critical: usize,
    pub unknown: usize,
}

/// The whole result of `dbagent check` (`--json` prints exactly this).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub exit_code: u8,
    pub summary: String,
    pub duration_ms: u64,
    pub server: Option<ServerInfo>,
    pub counts: Counts,
    pub checks: Vec<CheckResult>,
}

impl Report {
    fn new(checks: Vec<CheckResult>, server: Option<ServerInfo>, took: Duration) -> Report {
        let mut counts = Counts::default();
        for c in &checks {
            debug_assert!(
                registry::is_check(c.name),
                "check `{}` is not in check::registry::CHECKS",
                c.name
            );
            match c.status {
                Status::Ok => counts.ok += 1,
                Status::Warning => counts.warning += 1,
                Status::Critical => counts.critical += 1,
                Status::Unknown => counts.unknown += 1,
            }
        }
        let worst = checks
            .iter()
            .max_by_key(|c| c.status.rank())
            .map_or(Status::Unknown, |c| c.status);
        let first_problem = checks
            .iter()
            .find(|c| c.status == worst && worst != Status::Ok)
            .map(|c| format!("{}: {} ", c.name, c.message))
            .unwrap_or_default();
        let summary = if worst == Status::Ok {
            format!("DBAGENT OK: all {} checks passed", counts.ok)
        } else {
            format!(
                "DBAGENT {}: {}({} critical, {} warning, {} unknown, {} ok)",
                worst.label(),
                first_problem,
                counts.critical,
                counts.warning,
                counts.unknown,
                counts.ok
            )
        };
        Report {
            status: worst,
            exit_code: worst.exit_code(),
            summary,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            server,
            counts,
            checks,
        }
    }

    /// The text output: the Nagios summary line first, then one line per check.
    pub fn render_text(&self) -> String {
        let mut out = format!("{}\n", self.summary);
        for c in &self.checks {
            out.push_str(&format!(
                "{:<8} {:<18} {}",
                c.status.label(),
                c.name,
                c.message
            ));
            if let Some(action) = &c.action {
                out.push_str("; fix: ");
                out.push_str(action);
            }
            out.push('\n');
        }
        out
    }
}

/// Runs every check against the configured cluster and repository.
pub async fn run(config: &Config) -> Report {
    let started = Instant::now();
    let (mut checks, server, client) = server::run(config).await;
    if let (Some(c), Some(s)) = (&client, &server) {
        checks.push(databases::check(config, c, &s.database).await);
        checks.push(
            wal_summaries::check(
                config,
                c,
                s.version_num,
                &s.version,
                s.system_identifier.as_deref(),
            )
            .await,
        );
    }
    let wal = match &client {
        Some(c) => Some(crate::rpo::ServerWal::read(c).await),
        None => None,
    };
    let sysid = server.as_ref().and_then(|s| s.system_identifier.as_deref());
    let timeline = wal
        .as_ref()
        .and_then(|w| w.as_ref().ok())
        .map(|w| w.timeline);
    let connected = checks
        .iter()
        .any(|c| c.name == "connection" && c.status == Status::Ok);
    checks.extend(repository::checks(config, connected, sysid, timeline));
    checks.extend(drill::check(config));
    checks.extend(wal_verify::check(config));
    checks.extend(objectives::checks(config, client.as_ref(), wal.as_ref(), sysid).await);
    Report::new(checks, server, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the check sources report (string literals given to `CheckResult::ok`,
    /// `CheckResult::problem`, `unknown`, or bound to `name`/`NAME`/`name:`) are exactly the
    /// registry's, and each has a description: a new check cannot be left out of the registry
    /// or `check --help`, nor a removed one stay.
    #[test]
    fn checks_list_matches_the_names_the_sources_report() {
        let sources = [
            include_str!("server.rs"),
            include_str!("standby.rs"),
            include_str!("databases.rs"),
            include_str!("repository.rs"),
            include_str!("drill.rs"),
            include_str!("wal_verify.rs"),
            include_str!("wal_summaries.rs"),
            include_str!("objectives.rs"),
        ];
        let pattern = regex_lite::Regex::new(
            r#"(?:CheckResult::(?:ok|problem)\(\s*|unknown\(|\bname(?::| =) |NAME: &str = )"([a-z_]+)""#,
        )
        .unwrap();
        let mut found: Vec<&str> = sources
            .iter()
            .flat_map(|src| pattern.captures_iter(src))
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        found.sort_unstable();
        found.dedup();
        let mut listed: Vec<&str> = registry::names().collect();
        listed.sort_unstable();
        assert_eq!(found, listed);
        let help = checks_help();
        for name in registry::names() {
            assert!(help.contains(&format!("  {name} ")), "{help}");
        }
    }

    #[test]
    fn overall_status_is_the_worst_with_unknown_below_warning() {
        let r = Report::new(
            vec![
                CheckResult::ok("connection", "fine"),
                CheckResult::problem("settings", Status::Unknown, "?", "x"),
                CheckResult::problem("wal_level", Status::Warning, "meh", "y"),
            ],
            None,
            Duration::ZERO,
        );
        assert_eq!(r.status, Status::Warning);
        assert_eq!(r.exit_code, 1);
        assert!(
            r.summary.starts_with("DBAGENT WARNING: wal_level: meh"),
            "{}",
            r.summary
        );
        let text = r.render_text();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("; fix: y"));
    }
}
