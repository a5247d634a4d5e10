//! The sidecar's HTTP endpoint: `/metrics` (Prometheus text, served from the last poll),
//! `/healthz` (the process is alive), `/readyz` (the last poll reached PostgreSQL recently) and
//! `/api/v1/status` (JSON: server, collectors, last backup, newest archived WAL, the sections
//! collectors add such as the slow queries with their text).
//!
//! Loopback by default. Optional bearer token or basic auth (every path but /healthz, which
//! liveness probes call without credentials) and TLS from PEM files. Requests never query the
//! database: they read the newest [`Snapshot`].
//!
//! Layer: service. Uses: backup, config, metrics, repo, snapshot. Used by: agent.

mod process;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, HttpConfig};
use crate::metrics::catalogue;
use crate::snapshot::{AlertSnapshot, Snapshot};

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}; set http.listen to a free address")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(tls::TlsSetupError),
}

#[derive(Clone)]
struct AppState {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    alerts: watch::Receiver<Arc<AlertSnapshot>>,
    config: watch::Receiver<Arc<Config>>,
    scrapes: Arc<AtomicU64>,
    /// How long the previous /metrics answer took to build, in nanoseconds.
    last_scrape_ns: Arc<AtomicU64>,
}

/// A bound endpoint, ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
}

impl Server {
    /// Binds `http.listen` and prepares TLS (errors here stop `dbagent run` at start).
    pub async fn bind(
        http: &HttpConfig,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        config: watch::Receiver<Arc<Config>>,
        alerts: watch::Receiver<Arc<AlertSnapshot>>,
    ) -> Result<Server, HttpError> {
        let listener = tokio::net::TcpListener::bind(http.listen)
            .await
            .map_err(|source| HttpError::Bind {
                addr: http.listen,
                source,
            })?;
        let tls = match &http.tls {
            Some(t) => Some(tls::acceptor(&t.cert, &t.key).map_err(HttpError::Tls)?),
            None => None,
        };
        let state = AppState {
            snapshot,
            alerts,
            config,
            scrapes: Arc::new(AtomicU64::new(0)),
            last_scrape_ns: Arc::new(AtomicU64::new(0)),
        };
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/api/v1/status", get(status))
            .route("/", get(index))
            .layer(middleware::from_fn_with_state(state.clone(), auth))
            .with_state(state);
        Ok(Server {
            listener,
            tls,
            router,
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `cancel` fires, then finishes the requests in flight.
    pub async fn serve(self, cancel: CancellationToken) -> std::io::Result<()> {
        let shutdown = async move { cancel.cancelled().await };
        match self.tls {
            None => {
                axum::serve(self.listener, self.router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(acceptor) => {
                axum::serve(tls::TlsListener::new(self.listener, acceptor), self.router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    }
}

async fn index() -> &'static str {
    "dbagent: /metrics /healthz /readyz /api/v1/status\n"
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> Response {
    let snap = s.snapshot.borrow().clone();
    match snap.ready(jiff::Timestamp::now()) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let started = std::time::Instant::now();
    let snap = s.snapshot.borrow().clone();
    let scrapes = s.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
    let age = snap
        .last_poll
        .map(|t| {
            (jiff::Timestamp::now() - t)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
        })
        .unwrap_or(-1.0);
    let alerts = s.alerts.borrow().clone();
    let mut body = String::with_capacity(snap.metrics.len() + 4096);
    body.push_str(&snap.metrics);
    body.push_str(&crate::metrics::render(&alerts.families));
    body.push_str(&crate::metrics::render(&process::families()));
    let (served, age_d, took) = (
        &catalogue::DBAGENT_SCRAPES_TOTAL,
        &catalogue::DBAGENT_METRICS_AGE_SECONDS,
        &catalogue::DBAGENT_LAST_SCRAPE_DURATION_SECONDS,
    );
    body.push_str(&served.header());
    body.push_str(&format!("{} {scrapes}\n", served.name));
    body.push_str(&age_d.header());
    body.push_str(&format!("{} {age:.3}\n", age_d.name));
    let previous = s.last_scrape_ns.load(Ordering::Relaxed) as f64 / 1e9;
    body.push_str(&took.header());
    body.push_str(&format!("{} {previous:.6}\n", took.name));
    s.last_scrape_ns.store(
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    let snap = s.snapshot.borrow().clone();
    let alerts = s.alerts.borrow().clone();
    let config = s.config.borrow().clone();
    let recovery = snap.sections.get("recovery").cloned();
    let repository = match config.repo() {
        Ok(repo) => tokio::task::spawn_blocking(move || repository_status(&repo, recovery))
            .await
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    let now = jiff::Timestamp::now();
    let body = serde_json::json!({
        "dbagent_version": env!("CARGO_PKG_VERSION"),
        "started": snap.started,
        "pg_up": snap.pg_up,
        "ready": snap.ready(now).is_ok(),
        "down_reason": snap.down_reason,
        "server_version": snap.server_version,
        "in_recovery": snap.in_recovery,
        "last_poll": snap.last_poll,
        "last_success": snap.last_success,
        "poll_interval_seconds": snap.interval.as_secs_f64(),
        "collectors": snap.collectors,
        "databases": snap.databases,
        "repository": repository,
        "alerts": {
            "disabled": alerts.disabled,
            "active": alerts.active,
        },
        "sections": snap.sections,
    });
    axum::Json(body).into_response()
}

/// The newest backup of the repository, and the newest archived WAL segment on the server's
/// timeline history with the RPO, exactly as the last poll's `dbagent_rpo_seconds` has them
/// (the `recovery` section holds the details).
fn repository_status(
    repo: &crate::repo::Repo,
    recovery: Option<serde_json::Value>,
) -> serde_json::Value {
    let path = repo.location().display().to_string();
    let now = jiff::Timestamp::now();
    let age = |t: jiff::Timestamp| (now - t).total(jiff::Unit::Second).unwrap_or(0.0);
    let last_backup = match crate::backup::manifest::list(repo) {
        Ok(list) => list.last().map(|m| {
            serde_json::json!({
                "id": m.id,
                "stop_time": m.stop_time,
                "age_seconds": age(m.stop_time),
                "size_bytes": m.size(),
                "stored_bytes": m.stored_size(),
            })
        }),
        Err(e) => return serde_json::json!({ "path": path, "error": e.to_string() }),
    };
    let newest_wal = recovery.as_ref().map(|r| {
        let newest = &r["newest_archived"];
        serde_json::json!({
            "segment": newest["segment"],
            "timeline": newest["timeline"],
            "archived_at": newest["archived_at"],
            "rpo_seconds": r["seconds"],
        })
    });
    serde_json::json!({
        "path": path,
        "last_backup": last_backup,
        "newest_wal": newest_wal,
    })
}

/// Bearer token or basic auth on every path but /healthz, when configured.
async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let config = s.config.borrow().clone();
    let http = &config.http;
    if http.bearer_token.is_none() && http.basic_auth.is_none() {
        return next.run(req).await;
    }
    if authorized(req.headers(), http) {
        return next.run(req).await;
    }
    let challenge = if http.basic_auth.is_some() {
        "Basic realm=\"dbagent\""
    } else {
        "Bearer realm=\"dbagent\""
    };
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )],
        "unauthorized: send the configured bearer token or basic auth credentials\n",
    )
        .into_response()
}

fn authorized(headers: &HeaderMap, http: &HttpConfig) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = &http.bearer_token
        && let Some(given) = value.strip_prefix("Bearer ")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
    {
        return true;
    }
    if let Some(basic) = &http.basic_auth
        && let Some(given) = value.strip_prefix("Basic ")
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(given.trim())
    {
        let expected = format!("{}:{}", basic.username, basic.password);
        return constant_time_eq(&decoded, expected.as_bytes());
    }
    false
}

/// Compares secrets without returning early on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(token: Option<&str>, basic: Option<(&str, &str)>) -> HttpConfig {
        HttpConfig {
            bearer_token: token.map(String::from),
            basic_auth: basic.map(|(u, p)| crate::config::BasicAuth {
                username: u.into(),
                password: p.into(),
            }),
            ..HttpConfig::default()
        }
    }

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_auth_accept_only_the_configured_secret() {
        let cfg = http(Some("s3cret"), Some(("prom", "pw")));
        assert!(authorized(&with_auth("Bearer s3cret"), &cfg));
        assert!(!authorized(&with_auth("Bearer s3cre"), &cfg));
        assert!(!authorized(&HeaderMap::new(), &cfg));
        let good = base64::engine::general_purpose::STANDARD.encode("prom:pw");
        let bad = base64::engine::general_purpose::STANDARD.encode("prom:nope");
        assert!(authorized(&with_auth(&format!("Basic {good}")), &cfg));
        assert!(!authorized(&with_auth(&format!("Basic {bad}")), &cfg));
    }
}
