//! `dbagent run`: the long-running sidecar. It wires the parts together: the configuration
//! (reloaded on SIGHUP; a bad file is rejected and the old one kept), the poll loop
//! ([`poll`]), the snapshot every HTTP request reads ([`snapshot`]), the HTTP endpoint, and a
//! clean shutdown on SIGTERM or Ctrl-C.

pub mod poll;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use snapshot::Snapshot;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the HTTP endpoint stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Runs the agent until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), AgentError> {
    let config = Arc::new(config);
    let (config_tx, config_rx) = watch::channel(Arc::clone(&config));
    let (snapshot_tx, snapshot_rx) =
        watch::channel(Arc::new(Snapshot::starting(config.monitor.interval)));
    let cancel = CancellationToken::new();

    // The baseline store is opened first: an unusable state_dir stops the agent at start.
    let store = crate::baseline::BaselineStore::open(
        &config.state_dir,
        config.monitor.baseline_min_samples,
    )?;
    let (baseline_tx, baseline_rx) = tokio::sync::mpsc::channel(4);
    let learner = std::thread::Builder::new()
        .name("dbagent-baselines".into())
        .spawn(move || learn(store, baseline_rx))
        .map_err(AgentError::Signals)?;

    let server =
        crate::http::Server::bind(&config.http, snapshot_rx.clone(), config_rx.clone()).await?;
    let addr = server.local_addr().map_err(AgentError::Serve)?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    tracing::info!(
        metrics = %format!("{scheme}://{addr}/metrics"),
        interval_s = config.monitor.interval.as_secs(),
        "dbagent run: serving metrics"
    );
    eprintln!(
        "dbagent run: serving {scheme}://{addr}/metrics (pid {})",
        std::process::id()
    );

    let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;

    let poller = poll::PollLoop::new(config_rx.clone(), snapshot_tx, Some(baseline_tx));
    let poll_task = tokio::spawn(poller.run(cancel.clone()));
    let http_task = tokio::spawn(server.serve(cancel.clone()));

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => reload(&config_path, &config_tx),
        }
    }
    cancel.cancel();
    // The poll loop owns the baseline sender: once it has stopped, the learner drains what is
    // queued, commits and ends.
    let _ = poll_task.await;
    let _ = tokio::task::spawn_blocking(move || learner.join()).await;
    match http_task.await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => return Err(AgentError::Serve(e)),
    }
    tracing::info!("Stopped");
    Ok(())
}

/// SIGHUP: a configuration that loads replaces the old one; one that does not is rejected
/// and the agent keeps running with the old one.
fn reload(path: &std::path::Path, tx: &watch::Sender<Arc<Config>>) {
    match Config::load(path) {
        Ok(new) => {
            let old = tx.borrow().clone();
            if new.http.listen != old.http.listen
                || new.http.tls.is_some() != old.http.tls.is_some()
            {
                tracing::warn!("http.listen and http.tls take effect at the next restart");
            }
            tx.send_replace(Arc::new(new));
            tracing::info!(config = %path.display(), "SIGHUP: configuration reloaded");
        }
        Err(e) => {
            tracing::error!(config = %path.display(), error = %e, "SIGHUP: the configuration was rejected; keeping the previous one");
        }
    }
}

/// How long a series that is no longer observed (a query that left the top N) keeps its
/// baseline.
const BASELINE_RETENTION: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

/// The baseline learner: a thread of its own (SQLite is blocking), fed one batch per poll.
/// A failed write is logged once per state change; the agent goes on serving metrics.
fn learn(
    mut store: crate::baseline::BaselineStore,
    mut rx: tokio::sync::mpsc::Receiver<(jiff::Timestamp, poll::BaselineSamples)>,
) {
    let mut failing = false;
    let mut last_prune: Option<std::time::Instant> = None;
    while let Some((at, samples)) = rx.blocking_recv() {
        match store.observe(at, &samples) {
            Ok(()) => {
                if failing {
                    tracing::info!(state = %store.path().display(), "Baselines are being recorded again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "Cannot record baselines; metrics are still served");
                }
                failing = true;
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3600)) {
            last_prune = Some(std::time::Instant::now());
            match store.prune(at, BASELINE_RETENTION) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    series = n,
                    "Dropped baselines of series not seen for 14 days"
                ),
                Err(e) => tracing::warn!(error = %e, "Cannot prune old baselines"),
            }
        }
    }
}
