//! `dbagent run`: the long-running sidecar. It wires the parts together: the configuration
//! (reloaded on SIGHUP; a bad file is rejected and the old one kept), the poll loop
//! ([`poll`]), the snapshot every HTTP request reads ([`snapshot`]), the HTTP endpoint, and a
//! clean shutdown on SIGTERM or Ctrl-C.
//!
//! Layer: agent. Uses: alert, baseline, collect, config, http, leader, metrics, notify, pg, repo, schedule, snapshot, state, units. Used by: the binary.

pub mod evaluate;
pub mod memory;
pub mod poll;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::snapshot::Snapshot;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("cannot find the path of this dbagent binary (scheduled jobs run it): {0}")]
    Exe(std::io::Error),
    #[error("the HTTP endpoint stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Outbox(#[from] crate::notify::OutboxError),
}

/// Runs the agent until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), AgentError> {
    let config = Arc::new(config);
    let (config_tx, config_rx) = watch::channel(Arc::clone(&config));
    let (snapshot_tx, snapshot_rx) =
        watch::channel(Arc::new(Snapshot::starting(config.monitor.interval)));
    let cancel = CancellationToken::new();

    // What can be checked without side effects comes first (alerts.yml, the listen address),
    // then the state (baselines, alert state, silences): a bad file, a busy port or an
    // unusable state_dir stops the agent at start with one line.
    let alerts = crate::alert::rules::load_alerts(&config.alerts_file)?;
    let (alert_tx, alert_rx) = watch::channel(Arc::new(crate::snapshot::AlertSnapshot::default()));
    let (eval_tx, eval_rx) = tokio::sync::mpsc::channel(4);
    let server = crate::http::Server::bind(
        &config.http,
        snapshot_rx.clone(),
        config_rx.clone(),
        alert_rx,
    )
    .await?;
    let store = crate::baseline::BaselineStore::open(
        &config.state_dir,
        config.monitor.baseline_min_samples,
    )?;
    let db = crate::state::StateDb::open(&config.state_dir)?;
    match &alerts {
        Some(f) => {
            tracing::info!(alerts = %config.alerts_file.display(), rules = f.rules.len(), "Alert rules loaded")
        }
        None => {
            tracing::warn!(alerts = %config.alerts_file.display(), "No alerts file: alerting is off")
        }
    }
    let engine_state = crate::alert::store::load(&db)?;
    let outbox = crate::notify::Outbox::open(&config.state_dir)?;
    let outbox_metrics = crate::notify::OutboxMetrics::new();
    let (receivers_tx, receivers_rx) = watch::channel(Arc::new(
        alerts
            .as_ref()
            .map(|f| f.receivers.clone())
            .unwrap_or_default(),
    ));
    let outbox_config = alerts
        .as_ref()
        .map(|f| f.outbox.clone())
        .unwrap_or_default();
    let addr = server.local_addr().map_err(AgentError::Serve)?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    let evaluator = evaluate::Evaluator {
        store,
        db,
        alerts,
        alerts_path: config.alerts_file.clone(),
        engine_state,
        sink: Box::new(outbox),
        receivers_tx,
        outbox_metrics: outbox_metrics.clone(),
        external_url: format!("{scheme}://{addr}"),
        config_rx: config_rx.clone(),
        snapshot_tx: alert_tx,
        checked_major: None,
        version_error: None,
    };
    let evaluation = std::thread::Builder::new()
        .name("dbagent-evaluate".into())
        .spawn(move || evaluator.run(eval_rx))
        .map_err(|source| AgentError::Thread {
            name: "alert evaluation",
            source,
        })?;
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

    // Leadership (an advisory lock on the primary) and the scheduled jobs the leader runs.
    let (leader_tx, leader_rx) = watch::channel(crate::leader::Leadership::default());
    let leader_task = tokio::spawn(crate::leader::run(
        config_rx.clone(),
        leader_tx,
        cancel.clone(),
    ));
    let (schedule_tx, schedule_rx) =
        watch::channel(Arc::new(crate::schedule::ScheduleSnapshot::default()));
    let scheduler = crate::schedule::Scheduler {
        config_rx: config_rx.clone(),
        leader_rx: leader_rx.clone(),
        config_path: std::path::absolute(&config_path).unwrap_or_else(|_| config_path.clone()),
        exe: std::env::current_exe().map_err(AgentError::Exe)?,
        snapshot_tx: schedule_tx,
    };
    let schedule_task = tokio::spawn(scheduler.run(cancel.clone()));

    let poller = poll::PollLoop::new(
        config_rx.clone(),
        snapshot_tx,
        Some(eval_tx),
        Some(schedule_rx),
        Some(leader_rx),
    );
    let poll_task = tokio::spawn(poller.run(cancel.clone()));
    // Delivery: the outbox worker sends what the evaluator stored, with retries.
    let delivery_task = tokio::spawn(crate::notify::outbox::run(
        config.state_dir.clone(),
        receivers_rx,
        outbox_config,
        cancel.clone(),
        outbox_metrics,
    ));
    let http_task = tokio::spawn(server.serve(cancel.clone()));

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => reload(&config_path, &config_tx),
        }
    }
    cancel.cancel();
    // A running job is stopped and recorded as failed before the agent exits.
    let _ = schedule_task.await;
    let _ = leader_task.await;
    // The poll loop owns the baseline sender: once it has stopped, the learner drains what is
    // queued, commits and ends.
    let _ = poll_task.await;
    let _ = tokio::task::spawn_blocking(move || evaluation.join()).await;
    if let Ok(Err(e)) = delivery_task.await {
        tracing::error!(error = %e, "The delivery worker stopped with an error");
    }
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
