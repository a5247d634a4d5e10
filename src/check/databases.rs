//! The `databases` check: can `dbagent run` read every database `monitor.databases` selects?
//! Each selected database other than the one of `postgres.conninfo` is connected to, one at a
//! time, exactly as the poll loop does; one that refuses (no CONNECT privilege, connection
//! limit, pg_hba.conf, authentication) is named with the server's reason and the fix. A
//! database that cannot be read is a WARNING: the agent goes on with the others.

use tokio_postgres::Client;

use super::{CheckResult, Status};
use crate::collect::watched;
use crate::config::Config;
use crate::pg::SessionOptions;

const NAME: &str = "databases";

/// At most this many databases are named in the message (the count says the rest).
const NAMED: usize = 5;

pub async fn check(config: &Config, client: &Client, own: &str) -> CheckResult {
    let selected = match watched::selected(client, &config.monitor.databases).await {
        Ok(s) => s,
        Err(e) => {
            return CheckResult::problem(
                NAME,
                Status::Unknown,
                format!("cannot list the databases: {}", crate::pg::error_detail(&e)),
                "check that the role may read pg_database",
            );
        }
    };
    if selected.is_empty() {
        return CheckResult::problem(
            NAME,
            Status::Warning,
            "monitor.databases selects no database: no per-table signal is collected",
            "widen monitor.databases.include (default \"*\") or narrow exclude",
        );
    }
    let session = SessionOptions {
        connect_timeout: config.postgres.connect_timeout,
        statement_timeout: config.monitor.statement_timeout,
        lock_timeout: config.monitor.lock_timeout,
    };
    let mut refused: Vec<(String, String, Option<String>)> = Vec::new();
    for dbname in selected.iter().filter(|d| *d != own) {
        let attempt = match watched::target(&config.postgres.conninfo, session.clone(), dbname) {
            Ok(t) => t.connect().await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = attempt {
            let fix = watched::diagnose(client, dbname).await;
            refused.push((dbname.clone(), watched::connect_error(&e), fix));
        }
    }
    if refused.is_empty() {
        return CheckResult::ok(
            NAME,
            format!("{} watched: {}", selected.len(), names(&selected)),
        );
    }
    let message = format!(
        "cannot watch {} of {} selected databases: {}",
        refused.len(),
        selected.len(),
        refused
            .iter()
            .take(NAMED)
            .map(|(d, e, _)| format!("{d} ({e})"))
            .collect::<Vec<_>>()
            .join(", ")
            + if refused.len() > NAMED { ", ..." } else { "" }
    );
    let mut fixes: Vec<String> = refused.iter().filter_map(|(_, _, f)| f.clone()).collect();
    fixes.dedup();
    let action = if fixes.is_empty() {
        "allow the role to connect to them (pg_hba.conf, password in ~/.pgpass), or exclude them with monitor.databases.exclude".to_string()
    } else {
        fixes.join("; ")
    };
    CheckResult::problem(NAME, Status::Warning, message, action)
}

fn names(list: &[String]) -> String {
    let mut s = list
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > NAMED {
        s.push_str(&format!(", and {} more", list.len() - NAMED));
    }
    s
}
