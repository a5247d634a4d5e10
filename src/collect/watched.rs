//! The databases the per-database collectors read (`monitor.databases`): which ones are
//! selected, how a connection to one is opened, and why one cannot be read. Used by the poll
//! loop of `dbagent run` and by `dbagent check` (the `databases` check), so both agree on the
//! list and on the fix they suggest.
//!
//! A connection to another database is the agent's own connection string with `dbname`
//! replaced, resolved again (so `~/.pgpass` entries for that database apply), with the same
//! session settings (application_name, statement_timeout, lock_timeout) and TLS.

use crate::config::databases::DatabasesConfig;
use crate::pg::{ConnInfo, PgError, PgTarget, SessionOptions};

/// Databases that accept connections and are not templates, by name.
const CONNECTABLE_SQL: &str = "SELECT datname::text FROM pg_catalog.pg_database \
    WHERE datallowconn AND NOT datistemplate ORDER BY datname";

/// The databases `selection` picks among those that accept connections, by name.
pub async fn selected(
    client: &tokio_postgres::Client,
    selection: &DatabasesConfig,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client.query(CONNECTABLE_SQL, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| selection.selects(name))
        .collect())
}

/// The target for database `dbname`: `conninfo` with its dbname replaced.
pub fn target(
    conninfo: &ConnInfo,
    session: SessionOptions,
    dbname: &str,
) -> Result<PgTarget, PgError> {
    let mut info = conninfo.clone();
    info.set("dbname", dbname);
    PgTarget::new(&info, session)
}

/// Why `role` cannot read database `dbname`, asked on a connection that works (the agent's
/// own), as a fix line; None when nothing visible explains it (then the connection error
/// itself is the guide: pg_hba.conf, authentication).
pub async fn diagnose(client: &tokio_postgres::Client, dbname: &str) -> Option<String> {
    let row = client
        .query_opt(
            "SELECT has_database_privilege(d.oid, 'CONNECT'), d.datconnlimit, \
               (SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid)::int4, \
               current_user::text \
             FROM pg_catalog.pg_database d WHERE d.datname = $1",
            &[&dbname],
        )
        .await
        .ok()?;
    let ident = crate::advise::quote_ident(dbname);
    let Some(row) = row else {
        return Some(format!(
            "database {ident} no longer exists; it leaves the list at the next poll"
        ));
    };
    let (may_connect, limit, sessions, role): (bool, i32, i32, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let role = crate::advise::quote_ident(&role);
    if !may_connect {
        return Some(format!(
            "GRANT CONNECT ON DATABASE {ident} TO {role}, or exclude it with monitor.databases.exclude"
        ));
    }
    if limit >= 0 && sessions >= limit {
        return Some(format!(
            "database {ident} is at its connection limit ({limit}): ALTER DATABASE {ident} CONNECTION LIMIT {}",
            limit + 1
        ));
    }
    None
}

/// What the server said when a connection to a database failed (without the generic advice
/// about postgres.conninfo, which names the agent's own database).
pub fn connect_error(e: &PgError) -> String {
    match e {
        PgError::Connect { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// The text `/api/v1/status`, the log and `check` give for a database that cannot be read:
/// the error and, when known, the fix.
pub fn describe(error: &str, fix: Option<&str>) -> String {
    match fix {
        Some(fix) => format!("{error}; fix: {fix}"),
        None => error.to_string(),
    }
}
