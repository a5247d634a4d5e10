//! Leader election between the agents of one cluster (a primary and its streaming replicas).
//!
//! The leader is the agent that holds a session-level advisory lock
//! (`pg_try_advisory_lock(ha.lock_key)`) on the primary, on a connection of its own kept open
//! for as long as it leads. PostgreSQL does the arbitration: the lock is held by one session at
//! a time, and it is released the moment that session ends (the agent exits or dies, the
//! server stops, the network drops the connection and the server notices). No protocol of our
//! own decides anything.
//!
//! Each agent tries at every poll interval:
//! - connected and leading: the lock connection must still answer and the server must still
//!   be a primary, otherwise leadership is dropped at once;
//! - not leading: connect to `ha.leader_conninfo` (default `postgres.conninfo`); a standby
//!   never grants leadership (the default conninfo makes the agent of the primary the leader
//!   and the agent of a standby a follower); then try the lock.
//!
//! After a failover the old primary's connection is gone, so the lock is too; the agent whose
//! node was promoted finds its server is now a primary and takes the lock at its next try,
//! which is within one poll interval.
//!
//! Layer: operation. Uses: config, pg, units. Used by: agent, schedule.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pg::{PgTarget, SessionOptions};

/// What the agent knows about its leadership; published for the scheduler, the evaluator,
/// /metrics and /api/v1/status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Leadership {
    pub leader: bool,
    /// Since when the agent leads (or follows).
    pub since: Option<jiff::Timestamp>,
    /// Why it leads or does not: "holds the advisory lock on ...", "the server is a standby",
    /// "another agent holds the lock (...)", "cannot reach ...".
    pub reason: String,
}

/// Why this agent does not lead (or stopped leading): the reason it publishes.
#[derive(Debug, thiserror::Error)]
pub enum NotLeading {
    #[error(transparent)]
    Target(crate::pg::PgError),
    #[error("cannot reach the primary for the leader lock: {0}")]
    Unreachable(crate::pg::PgError),
    #[error("{server}: {}", crate::pg::error_detail(source))]
    Query {
        server: String,
        source: tokio_postgres::Error,
    },
    #[error("the connection to {0} closed")]
    Closed(String),
    #[error("{server} did not answer within {}", crate::units::human_duration_of(*timeout))]
    Timeout { server: String, timeout: Duration },
    #[error("{0} is now a standby")]
    NowStandby(String),
    #[error(
        "{0} is a standby; the agent of the primary leads (set ha.leader_conninfo to reach the primary from here)"
    )]
    Standby(String),
    #[error("another agent holds the leader lock on {server}{holder}")]
    HeldByOther { server: String, holder: String },
}

struct Held {
    client: tokio_postgres::Client,
    server: String,
}

/// Runs the election until `cancel` fires.
pub async fn run(
    mut config_rx: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Leadership>,
    cancel: CancellationToken,
) {
    let mut held: Option<Held> = None;
    let mut config = config_rx.borrow_and_update().clone();
    loop {
        let (leader, reason) = match held.take() {
            Some(h) => match still_leading(&h, config.postgres.connect_timeout).await {
                Ok(()) => {
                    let reason = format!("holds the advisory lock on {}", h.server);
                    held = Some(h);
                    (true, reason)
                }
                Err(why) => {
                    tracing::warn!(server = %h.server, "Leadership lost: {why}");
                    // Ends the session, which releases the lock if the server still has it.
                    drop(h);
                    (false, why.to_string())
                }
            },
            None => match try_lead(&config).await {
                Ok(h) => {
                    let reason = format!("holds the advisory lock on {}", h.server);
                    held = Some(h);
                    (true, reason)
                }
                Err(why) => (false, why.to_string()),
            },
        };
        tx.send_if_modified(|l| {
            let changed = l.leader != leader || l.since.is_none();
            if changed {
                if leader {
                    tracing::info!("This agent is the leader: it runs the scheduled jobs and sends cluster-wide alerts ({reason})");
                } else {
                    tracing::info!("This agent follows: {reason}");
                }
                l.leader = leader;
                l.since = Some(jiff::Timestamp::now());
            }
            let reason_changed = l.reason != reason;
            l.reason = reason.clone();
            changed || reason_changed
        });
        let interval = config.monitor.interval.max(Duration::from_millis(200));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
            Ok(()) = config_rx.changed() => {
                let new = config_rx.borrow_and_update().clone();
                let target_changed = new.ha.leader_conninfo != config.ha.leader_conninfo
                    || new.ha.lock_key != config.ha.lock_key
                    || (new.ha.leader_conninfo.is_none()
                        && new.postgres.conninfo != config.postgres.conninfo);
                if target_changed && held.is_some() {
                    tracing::info!("The leader connection settings changed; giving up leadership to elect again");
                    held = None;
                }
                config = new;
            }
        }
    }
    if held.is_some() {
        tracing::info!("Giving up leadership (shutting down)");
    }
}

async fn still_leading(h: &Held, timeout: Duration) -> Result<(), NotLeading> {
    if h.client.is_closed() {
        return Err(NotLeading::Closed(h.server.clone()));
    }
    let q = h.client.query_one("SELECT pg_is_in_recovery()", &[]);
    match tokio::time::timeout(timeout, q).await {
        Err(_) => Err(NotLeading::Timeout {
            server: h.server.clone(),
            timeout,
        }),
        Ok(Err(source)) => Err(NotLeading::Query {
            server: h.server.clone(),
            source,
        }),
        Ok(Ok(row)) if row.get::<_, bool>(0) => Err(NotLeading::NowStandby(h.server.clone())),
        Ok(Ok(_)) => Ok(()),
    }
}

async fn try_lead(config: &Config) -> Result<Held, NotLeading> {
    let conninfo = config
        .ha
        .leader_conninfo
        .clone()
        .unwrap_or_else(|| config.postgres.conninfo.clone());
    let mut conninfo = conninfo;
    if conninfo.get("application_name").is_none() {
        conninfo.set("application_name", "dbagent leader");
    }
    let target = PgTarget::new(
        &conninfo,
        SessionOptions {
            connect_timeout: config.postgres.connect_timeout,
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(1),
        },
    )
    .map_err(NotLeading::Target)?;
    let server = target.info().endpoint();
    let client = target.connect().await.map_err(NotLeading::Unreachable)?;
    let query = |source| NotLeading::Query {
        server: server.clone(),
        source,
    };
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(query)?;
    if row.get::<_, bool>(0) {
        return Err(NotLeading::Standby(server));
    }
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&config.ha.lock_key])
        .await
        .map_err(query)?
        .get(0);
    if got {
        return Ok(Held { client, server });
    }
    // Who holds it, for the status line (visible with pg_monitor; best effort).
    let key = config.ha.lock_key;
    let holder = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket')
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::bigint = ($1 >> 32) AND l.objid::bigint = ($1 & 4294967295)",
            &[&key],
        )
        .await
        .ok()
        .flatten()
        .map(|r| {
            format!(
                " (server pid {}, {}, from {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .unwrap_or_default();
    Err(NotLeading::HeldByOther { server, holder })
}
