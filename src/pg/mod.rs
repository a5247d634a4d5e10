//! Connections to PostgreSQL: the connection string ([`conninfo`]), TLS ([`tls`]), the server
//! version ([`version`]), SQL that differs between versions ([`sql`]) and the PostgreSQL
//! programs of the server's version ([`programs`]).
//!
//! Every connection dbagent opens sets `application_name=dbagent` (unless the conninfo names
//! another), a statement and lock timeout, and fails within the connect timeout with an error
//! that says which server, which user and what to do. A superuser's connection also turns
//! pg_stat_statements off for itself (see [`UNTRACK_OWN_STATEMENTS`]): dbagent's own
//! statements never reach the slow-query lists.
//!
//! Layer: access. Uses: units. Used by: advise, agent, backup, check, collect,
//! config, drill, leader, rpo.

pub mod conninfo;
pub mod programs;
pub mod sql;
pub mod tls;
pub mod version;

use std::error::Error as _;
use std::time::Duration;

use tokio_postgres::config::{SslMode as PgSslMode, TargetSessionAttrs};

pub use conninfo::{ConnInfo, PasswordSource, ResolvedConnInfo, SslMode};
pub use version::ServerVersion;

/// Run on every new connection: a superuser's session stops pg_stat_statements from recording
/// its statements (`pg_stat_statements.track = none` for the session only; the parameter is
/// superuser-only). Bound parameters, no literal: this statement itself leaves no entry
/// (pg_stat_statements records it at executor end, when tracking is already off). Another
/// role's session is still recorded, and the statements collector leaves that role's entries
/// out instead; setting it per role (`ALTER ROLE dbagent SET pg_stat_statements.track =
/// none`) has the same effect as this.
pub const UNTRACK_OWN_STATEMENTS: &str = "SELECT pg_catalog.set_config($1, $2, false) \
     FROM pg_catalog.pg_roles r WHERE r.rolname = current_user AND r.rolsuper";

/// Why dbagent could not talk to the server. Never contains a password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    ConnInfo(#[from] conninfo::ConnInfoError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot connect to PostgreSQL at {endpoint} as {user}: {detail}; {advice}")]
    Connect {
        endpoint: String,
        user: String,
        kind: ConnectFailure,
        detail: String,
        advice: String,
    },
    #[error("query failed on {endpoint} ({what}): {detail}")]
    Query {
        endpoint: String,
        what: String,
        detail: String,
    },
}

/// What kind of connection failure this was, for exit codes and `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFailure {
    /// The server rejected the password (or the role).
    Authentication,
    /// The server asks for a password and none was supplied (client side).
    MissingPassword,
    /// pg_hba.conf has no line allowing this host, role and database (or rejects it).
    NotAllowed,
    Refused,
    Timeout,
    UnknownHost,
    UnknownDatabase,
    Tls,
    Other,
}

/// Options for the session dbagent opens.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Used unless the conninfo sets connect_timeout.
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// A server to connect to: a resolved conninfo plus session options.
#[derive(Debug, Clone)]
pub struct PgTarget {
    info: ResolvedConnInfo,
    session: SessionOptions,
}

impl PgTarget {
    /// Resolves `conninfo` against the process environment and `~/.pgpass`.
    pub fn new(conninfo: &ConnInfo, session: SessionOptions) -> Result<PgTarget, PgError> {
        let info = conninfo.resolve(&|name| std::env::var(name).ok())?;
        Ok(PgTarget { info, session })
    }

    pub fn info(&self) -> &ResolvedConnInfo {
        &self.info
    }

    /// The effective connect timeout (conninfo's connect_timeout, else the configured one).
    pub fn connect_timeout(&self) -> Duration {
        self.info
            .connect_timeout
            .unwrap_or(self.session.connect_timeout)
    }

    /// `127.0.0.1:5432 as dbagent`: for messages.
    pub fn describe(&self) -> String {
        format!("{} as {}", self.info.endpoint(), self.info.user)
    }

    /// The tokio-postgres configuration for this target.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let i = &self.info;
        let mut c = tokio_postgres::Config::new();
        for host in &i.hosts {
            if host.starts_with('/') {
                c.host_path(host);
            } else {
                c.host(host);
            }
        }
        for port in &i.ports {
            c.port(*port);
        }
        c.user(&i.user);
        c.dbname(&i.dbname);
        if let Some(p) = &i.password {
            c.password(p);
        }
        c.application_name(i.application_name.as_deref().unwrap_or("dbagent"));
        let mut options = format!(
            "-c statement_timeout={} -c lock_timeout={}",
            self.session.statement_timeout.as_millis(),
            self.session.lock_timeout.as_millis()
        );
        if let Some(o) = &i.options {
            options.push(' ');
            options.push_str(o);
        }
        c.options(&options);
        c.connect_timeout(self.connect_timeout());
        c.ssl_mode(match i.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        match i.target_session_attrs.as_deref() {
            Some("read-write") => {
                c.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            Some("read-only") => {
                c.target_session_attrs(TargetSessionAttrs::ReadOnly);
            }
            _ => {}
        }
        c
    }

    /// Opens one connection; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let tls = tls::connector(&self.info)?;
        let config = self.pg_config();
        let limit = self.connect_timeout();
        let attempt = tokio::time::timeout(limit, config.connect(tls)).await;
        let (client, connection) = match attempt {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.connect_error(&e)),
            Err(_) => {
                return Err(self.failure(
                    ConnectFailure::Timeout,
                    format!(
                        "no answer within {}",
                        crate::units::human_duration_of(limit)
                    ),
                ));
            }
        };
        let endpoint = self.info.endpoint();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(server = %endpoint, error = %e, "Connection closed with an error");
            }
        });
        // Best effort: a role that may not do it is told apart by the statements collector.
        if let Err(e) = client
            .execute(
                UNTRACK_OWN_STATEMENTS,
                &[&"pg_stat_statements.track", &"none"],
            )
            .await
        {
            tracing::debug!(server = %self.info.endpoint(), error = %error_detail(&e), "Could not turn pg_stat_statements off for dbagent's session");
        }
        Ok(client)
    }

    /// Wraps a query error with the server it came from.
    pub fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> PgError {
        PgError::Query {
            endpoint: self.info.endpoint(),
            what: what.to_string(),
            detail: error_detail(e),
        }
    }

    fn failure(&self, kind: ConnectFailure, detail: String) -> PgError {
        let i = &self.info;
        let advice = match kind {
            ConnectFailure::Authentication => format!(
                "the server rejected the password of role {} (taken from {}): correct it there, \
                 or the role's password on the server (ALTER ROLE ... PASSWORD)",
                i.user, i.password_source
            ),
            ConnectFailure::MissingPassword => {
                let passfile = match &i.password_source {
                    PasswordSource::Missing {
                        passfile: Some(file),
                    } => file.display().to_string(),
                    _ => "~/.pgpass".to_string(),
                };
                let host = i.hosts.first().map(String::as_str).unwrap_or("localhost");
                let host = if host.starts_with('/') {
                    "localhost"
                } else {
                    host
                };
                format!(
                    "supply one: set password= in postgres.conninfo, PGPASSWORD, or \
                     add the line {host}:{}:{}:{}:PASSWORD to {passfile} (mode 0600, owned by \
                     the user dbagent runs as)",
                    i.ports.first().copied().unwrap_or(5432),
                    i.dbname,
                    i.user
                )
            }
            ConnectFailure::NotAllowed => format!(
                "the server's pg_hba.conf does not let role {} connect to database {} from this \
                 host: add a line for it there (e.g. host {} {} ADDRESS/32 scram-sha-256), then \
                 SELECT pg_reload_conf()",
                i.user, i.dbname, i.dbname, i.user
            ),
            ConnectFailure::Refused => {
                "is PostgreSQL running and listening there? Check host and port in postgres.conninfo"
                    .to_string()
            }
            ConnectFailure::Timeout => {
                "check that the host is reachable (network, firewall) or raise postgres.connect_timeout"
                    .to_string()
            }
            ConnectFailure::UnknownHost => {
                "check the host name in postgres.conninfo (or PGHOST)".to_string()
            }
            ConnectFailure::UnknownDatabase => {
                "check dbname in postgres.conninfo (or PGDATABASE)".to_string()
            }
            ConnectFailure::Tls => {
                "check sslmode/sslrootcert in postgres.conninfo and the server's ssl settings"
                    .to_string()
            }
            ConnectFailure::Other => "check postgres.conninfo and the server log".to_string(),
        };
        PgError::Connect {
            endpoint: self.info.endpoint(),
            user: self.info.user.clone(),
            kind,
            detail,
            advice,
        }
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> PgError {
        let mut detail = error_detail(e);
        let kind = if let Some(db) = e.as_db_error() {
            match db.code().code() {
                "28000" if db.message().contains("pg_hba.conf") => ConnectFailure::NotAllowed,
                "28P01" | "28000" => ConnectFailure::Authentication,
                "3D000" => ConnectFailure::UnknownDatabase,
                _ => ConnectFailure::Other,
            }
        } else if let Some(io) = find_io_error(e) {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                    ConnectFailure::Refused
                }
                std::io::ErrorKind::TimedOut => ConnectFailure::Timeout,
                _ if looks_like_dns(&detail) => ConnectFailure::UnknownHost,
                _ => ConnectFailure::Other,
            }
        } else if detail.contains("password missing") {
            // tokio-postgres' words for "the server asked for a password and we have none".
            detail = "the server asks for a password and none was supplied".into();
            ConnectFailure::MissingPassword
        } else if looks_like_dns(&detail) {
            ConnectFailure::UnknownHost
        } else if detail.contains("timeout") || detail.contains("timed out") {
            ConnectFailure::Timeout
        } else if detail.contains("TLS")
            || detail.contains("tls")
            || detail.contains("SSL")
            || detail.contains("certificate")
        {
            ConnectFailure::Tls
        } else {
            ConnectFailure::Other
        };
        self.failure(kind, detail)
    }
}

fn looks_like_dns(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("lookup address")
        || d.contains("name or service not known")
        || d.contains("name resolution")
}

fn find_io_error(e: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
}

/// The most useful text of a tokio-postgres error: the server's message for database errors,
/// the whole source chain otherwise.
pub fn error_detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Runs `sql` (no parameters) and hands each row to `each` as it arrives, instead of collecting
/// every row first (`Client::query`): a per-table read of 10,000 tables then holds one row at
/// a time, not 10,000 rows with their column offsets.
pub async fn for_each_row(
    client: &tokio_postgres::Client,
    sql: &str,
    mut each: impl FnMut(&tokio_postgres::Row),
) -> Result<(), tokio_postgres::Error> {
    use futures_util::StreamExt as _;
    let rows = client
        .query_raw(
            sql,
            std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        each(&row?);
    }
    Ok(())
}
