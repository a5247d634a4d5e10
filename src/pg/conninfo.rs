//! The PostgreSQL connection string, as every PostgreSQL tool takes it: a libpq keyword/value
//! conninfo (`host=... port=... user=...`) or a URL (`postgresql://user@host:5432/db?sslmode=...`),
//! completed the way libpq does it from the `PG*` environment variables, `~/.pgpass` and the
//! built-in defaults.
//!
//! A [`ConnInfo`] never shows its password: `Display`, `Debug` and `Serialize` print
//! `password=********`, so it can go into logs, errors and `--json` output as it is.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::percent_decode_str;

/// Connection keywords dbagent understands (a subset of libpq's that covers TCP, sockets and
/// TLS). Anything else is rejected rather than silently ignored.
pub const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
    "passfile",
];

/// The environment variables libpq reads, and the keyword each one fills when the conninfo
/// itself does not set it.
const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGAPPNAME", "application_name"),
    ("PGOPTIONS", "options"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGPASSFILE", "passfile"),
];

/// Why a connection string is not usable. Messages never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("unknown connection parameter `{key}`{hint}; valid parameters: {valid}", valid = KEYWORDS.join(", "))]
    UnknownKey { key: String, hint: String },
    #[error("connection string: {0}")]
    Syntax(String),
    #[error("connection parameter {key}: invalid value `{value}` ({expected})")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, ConnInfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnInfoError::BadValue {
                    key: "sslmode",
                    value: other.to_string(),
                    expected: "disable, allow, prefer, require, verify-ca or verify-full",
                });
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A parsed connection string: the keywords as written, in keyword order. Completing it from
/// the environment happens in [`ConnInfo::resolve`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    params: BTreeMap<String, String>,
}

impl ConnInfo {
    /// Parses a keyword/value conninfo or a `postgres://` / `postgresql://` URL.
    pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
        let trimmed = s.trim();
        let params = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_url(trimmed)?
        } else {
            parse_keyword_value(trimmed)?
        };
        let info = ConnInfo { params };
        info.validate()?;
        Ok(info)
    }

    /// The value of a keyword as written (before environment and defaults).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Sets a keyword (used by callers that derive connections, e.g. to another database).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.params.insert(key.to_string(), value.into());
    }

    fn validate(&self) -> Result<(), ConnInfoError> {
        for key in self.params.keys() {
            if !KEYWORDS.contains(&key.as_str()) {
                let hint = KEYWORDS
                    .iter()
                    .map(|k| (strsim::levenshtein(k, key), *k))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return Err(ConnInfoError::UnknownKey {
                    key: key.clone(),
                    hint,
                });
            }
        }
        if let Some(mode) = self.get("sslmode") {
            SslMode::parse(mode)?;
        }
        if let Some(port) = self.get("port") {
            for p in port.split(',') {
                p.parse::<u16>().map_err(|_| ConnInfoError::BadValue {
                    key: "port",
                    value: port.to_string(),
                    expected: "a port number such as 5432",
                })?;
            }
        }
        if let Some(t) = self.get("connect_timeout") {
            t.parse::<u64>().map_err(|_| ConnInfoError::BadValue {
                key: "connect_timeout",
                value: t.to_string(),
                expected: "whole seconds",
            })?;
        }
        Ok(())
    }

    /// Completes this conninfo the way libpq does: keywords not written take the `PG*`
    /// environment variable, then libpq's defaults; a missing password is looked up in the
    /// password file (`passfile`, `PGPASSFILE` or `~/.pgpass`).
    pub fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedConnInfo, ConnInfoError> {
        let mut p = self.params.clone();
        let password_written = p.contains_key("password");
        for (var, key) in ENV_VARS {
            if !p.contains_key(*key)
                && let Some(v) = env(var).filter(|v| !v.is_empty())
            {
                p.insert((*key).to_string(), v);
            }
        }
        // Values from the environment are checked like values written in the conninfo.
        ConnInfo { params: p.clone() }.validate()?;

        let hosts: Vec<String> = match p.get("host").or(p.get("hostaddr")) {
            Some(h) => h.split(',').map(|s| s.trim().to_string()).collect(),
            None => vec![default_socket_dir()],
        };
        let ports: Vec<u16> = match p.get("port") {
            Some(ports) => ports
                .split(',')
                .map(|s| s.trim().parse().unwrap_or(5432))
                .collect(),
            None => vec![5432],
        };
        let user = match p.get("user") {
            Some(u) => u.clone(),
            None => env("USER")
                .or_else(current_os_user)
                .unwrap_or_else(|| "postgres".into()),
        };
        let dbname = p.get("dbname").cloned().unwrap_or_else(|| user.clone());
        let sslmode = match p.get("sslmode") {
            Some(m) => SslMode::parse(m)?,
            None => SslMode::default(),
        };
        let connect_timeout = p
            .get("connect_timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t.max(2)));
        let mut password = p.get("password").cloned();
        let mut password_source = match password {
            Some(_) if password_written => PasswordSource::Conninfo,
            Some(_) => PasswordSource::Environment,
            None => PasswordSource::Missing { passfile: None },
        };
        if password.is_none() {
            let passfile = p
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")));
            if let Some(file) = passfile {
                let host = hosts.first().map(String::as_str).unwrap_or("localhost");
                let port = ports.first().copied().unwrap_or(5432);
                password = pgpass_lookup(&file, host, port, &dbname, &user);
                password_source = match password {
                    Some(_) => PasswordSource::File(file),
                    None => PasswordSource::Missing {
                        passfile: Some(file),
                    },
                };
            }
        }
        Ok(ResolvedConnInfo {
            hosts,
            ports,
            user,
            password,
            password_source,
            dbname,
            sslmode,
            sslrootcert: p.get("sslrootcert").cloned(),
            sslcert: p.get("sslcert").cloned(),
            sslkey: p.get("sslkey").cloned(),
            connect_timeout,
            application_name: p.get("application_name").cloned(),
            options: p.get("options").cloned(),
            target_session_attrs: p.get("target_session_attrs").cloned(),
        })
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.params {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            if k == "password" {
                write!(f, "password=********")?;
            } else {
                write!(f, "{k}={}", quote(v))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({self})")
    }
}

impl serde::Serialize for ConnInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A connection string completed from the environment: what dbagent actually connects with.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedConnInfo {
    pub hosts: Vec<String>,
    pub ports: Vec<u16>,
    pub user: String,
    pub password: Option<String>,
    /// Where [`Self::password`] came from, for a message that names the place to fix.
    pub password_source: PasswordSource,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub application_name: Option<String>,
    pub options: Option<String>,
    pub target_session_attrs: Option<String>,
}

/// Where the password of a resolved conninfo came from (libpq's order: the conninfo, then
/// `PGPASSWORD`, then the password file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Written in the connection string (`password=` or the URL).
    Conninfo,
    /// The `PGPASSWORD` environment variable.
    Environment,
    /// A matching line of this password file.
    File(PathBuf),
    /// None was supplied; `passfile` is the password file consulted, if any.
    Missing { passfile: Option<PathBuf> },
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::Conninfo => f.write_str("postgres.conninfo"),
            PasswordSource::Environment => f.write_str("PGPASSWORD"),
            PasswordSource::File(p) => write!(f, "the password file {}", p.display()),
            PasswordSource::Missing { .. } => f.write_str("nowhere"),
        }
    }
}

impl ResolvedConnInfo {
    /// Where this connects, for messages: `127.0.0.1:5432` or `/var/run/postgresql:5432`.
    pub fn endpoint(&self) -> String {
        let port = self.ports.first().copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let p = self.ports.get(i).copied().unwrap_or(port);
                if h.contains(':') && !h.starts_with('/') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect();
        hosts.join(",")
    }
}

impl fmt::Debug for ResolvedConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedConnInfo")
            .field("endpoint", &self.endpoint())
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

/// libpq's compiled-in socket directory differs by distribution: Debian uses
/// /var/run/postgresql, upstream /tmp.
fn default_socket_dir() -> String {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "/tmp".into()
    }
}

fn current_os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\']) {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn parse_keyword_value(s: &str) -> Result<BTreeMap<String, String>, ConnInfoError> {
    let mut params = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(format!(
                "missing \"=\" after `{key}`; write keyword=value pairs such as host=db1 port=5432, or a postgresql:// URL"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(ConnInfoError::Syntax(format!(
                    "unterminated quoted value of `{key}`"
                )));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        params.insert(key, value);
    }
    Ok(params)
}

fn decode(s: &str, what: &str) -> Result<String, ConnInfoError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ConnInfoError::Syntax(format!("invalid percent-encoding in the URL's {what}")))
}

fn parse_url(s: &str) -> Result<BTreeMap<String, String>, ConnInfoError> {
    let mut params = BTreeMap::new();
    let rest = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
        .unwrap_or(s);
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let hostlist = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                params.insert("user".into(), decode(user, "user")?);
            }
            if let Some(p) = password {
                params.insert("password".into(), decode(p, "password")?);
            }
            hosts
        }
        None => authority,
    };
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in hostlist.split(',') {
            let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
                let (h, after) = v6.split_once(']').ok_or_else(|| {
                    ConnInfoError::Syntax("unterminated [ in the URL's IPv6 host".into())
                })?;
                (h.to_string(), after.strip_prefix(':').map(str::to_string))
            } else {
                match spec.rsplit_once(':') {
                    Some((h, p)) => (decode(h, "host")?, Some(p.to_string())),
                    None => (decode(spec, "host")?, None),
                }
            };
            hosts.push(host);
            ports.push(port.unwrap_or_default());
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            params.insert("host".into(), hosts.join(","));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            let ports: Vec<String> = ports
                .into_iter()
                .map(|p| if p.is_empty() { "5432".into() } else { p })
                .collect();
            params.insert("port".into(), ports.join(","));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        params.insert("dbname".into(), decode(db, "database name")?);
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                ConnInfoError::Syntax(format!("URL parameter `{pair}` has no \"=\""))
            })?;
            let k = decode(k, "parameters")?;
            let v = decode(v, "parameters")?;
            // libpq accepts `ssl=true` as an alias of sslmode=require in URLs.
            if k == "ssl" && v == "true" {
                params.insert("sslmode".into(), "require".into());
            } else {
                params.insert(k, v);
            }
        }
    }
    Ok(params)
}

/// Looks up a password in a libpq password file (`hostname:port:database:username:password`,
/// `*` matches anything, `\` escapes `:` and `\`). Like libpq, a file readable by group or
/// others is ignored (with a warning), and a socket directory matches `localhost`.
pub fn pgpass_lookup(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "Password file has group or world access; it is ignored. Fix it with: chmod 0600 {}",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass_line(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(&fields[0], host)
            && matches(&fields[1], &port)
            && matches(&fields[2], dbname)
            && matches(&fields[3], user)
        {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next()
                    && let Some(last) = fields.last_mut()
                {
                    last.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_keyword_value_with_quotes_and_escapes() {
        assert!(matches!(
            ConnInfo::parse("host=db1 password='open"),
            Err(ConnInfoError::Syntax(_))
        ));
        let c =
            ConnInfo::parse(r"host=db1 port = 5433 user=app password='it\'s a secret' dbname=prod")
                .unwrap();
        assert_eq!(c.get("host"), Some("db1"));
        assert_eq!(c.get("port"), Some("5433"));
        assert_eq!(c.get("password"), Some("it's a secret"));
        assert_eq!(c.get("dbname"), Some("prod"));
    }

    #[test]
    fn parses_urls_with_percent_encoding_and_params() {
        let c = ConnInfo::parse(
            "postgresql://app:p%40ss@db1.example:6432/claims?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(c.get("user"), Some("app"));
        assert_eq!(c.get("password"), Some("p@ss"));
        assert_eq!(c.get("host"), Some("db1.example"));
        assert_eq!(c.get("port"), Some("6432"));
        assert_eq!(c.get("dbname"), Some("claims"));
        assert_eq!(c.get("sslmode"), Some("verify-full"));
        let c = ConnInfo::parse("postgres://%2Fvar%2Frun%2Fpostgresql/postgres").unwrap();
        assert_eq!(c.get("host"), Some("/var/run/postgresql"));
        let c = ConnInfo::parse("postgresql://[::1]:5433,db2/x").unwrap();
        assert_eq!(c.get("host"), Some("::1,db2"));
        assert_eq!(c.get("port"), Some("5433,5432"));
    }

    #[test]
    fn unknown_keyword_is_rejected_with_a_hint() {
        let err = ConnInfo::parse("host=x sslmod=require").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`sslmod`") && msg.contains("did you mean `sslmode`"),
            "{msg}"
        );
        assert!(ConnInfo::parse("host=x sslmode=sometimes").is_err());
        assert!(ConnInfo::parse("host=x port=five").is_err());
    }

    #[test]
    fn display_debug_and_json_never_show_the_password() {
        let c = ConnInfo::parse("host=x user=u password=hunter2-secret").unwrap();
        for shown in [
            c.to_string(),
            format!("{c:?}"),
            serde_json::to_string(&c).unwrap(),
            format!("{:?}", c.resolve(&no_env).unwrap()),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn environment_fills_what_the_conninfo_leaves_out() {
        let env = |k: &str| match k {
            "PGHOST" => Some("envhost".to_string()),
            "PGPORT" => Some("6000".to_string()),
            "PGUSER" => Some("envuser".to_string()),
            "PGPASSWORD" => Some("envpw".to_string()),
            "PGSSLMODE" => Some("require".to_string()),
            _ => None,
        };
        let r = ConnInfo::parse("host=confhost")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(r.hosts, vec!["confhost"]);
        assert_eq!(r.ports, vec![6000]);
        assert_eq!(r.user, "envuser");
        assert_eq!(r.dbname, "envuser");
        assert_eq!(r.password.as_deref(), Some("envpw"));
        assert_eq!(r.sslmode, SslMode::Require);
        let bad = |k: &str| (k == "PGSSLMODE").then(|| "bogus".to_string());
        assert!(ConnInfo::parse("").unwrap().resolve(&bad).is_err());
    }

    #[test]
    fn pgpass_is_honoured_with_wildcards_escapes_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:nope\n127.0.0.1:5432:*:app:pa\\:ss:word\nlocalhost:*:*:*:sock\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            pgpass_lookup(&file, "127.0.0.1", 5432, "db", "app").as_deref(),
            Some("pa:ss:word")
        );
        assert_eq!(
            pgpass_lookup(&file, "/var/run/postgresql", 5432, "db", "x").as_deref(),
            Some("sock")
        );
        assert_eq!(pgpass_lookup(&file, "127.0.0.1", 5433, "db", "app"), None);
        let home = dir.path().to_path_buf();
        std::fs::rename(&file, home.join(".pgpass")).unwrap();
        let env = |k: &str| (k == "HOME").then(|| home.display().to_string());
        let r = ConnInfo::parse("host=127.0.0.1 user=app")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(r.password.as_deref(), Some("pa:ss:word"));
        std::fs::set_permissions(home.join(".pgpass"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let r = ConnInfo::parse("host=127.0.0.1 user=app")
            .unwrap()
            .resolve(&env)
            .unwrap();
        assert_eq!(
            r.password, None,
            "a world-readable pgpass is ignored, as libpq does"
        );
    }

    proptest! {
        #[test]
        fn keyword_values_round_trip_through_display(
            host in "[a-z][a-z0-9.-]{0,20}",
            app in "[ -~]{0,20}",
        ) {
            let mut c = ConnInfo::default();
            c.set("host", host.clone());
            c.set("application_name", app.clone());
            let back = ConnInfo::parse(&c.to_string()).unwrap();
            prop_assert_eq!(back.get("host"), Some(host.as_str()));
            prop_assert_eq!(back.get("application_name"), Some(app.as_str()));
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = ConnInfo::parse(&s);
        }
    }
}
