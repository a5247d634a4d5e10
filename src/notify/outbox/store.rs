//! The durable outbox in state.db: `notify_outbox` (one row per enqueued notification) and
//! `notify_delivery` (one row per integration, and per alert for PagerDuty). Every SQL
//! statement of the outbox is here; the worker calls these on a blocking thread.

use std::path::Path;

use rusqlite::params;
use tokio::sync::Notify;

use super::error::OutboxError;

/// Wakes the worker of this process when a notification is enqueued.
pub(super) static WAKE: Notify = Notify::const_new();

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
use crate::notify::{Integration, Notification, Receiver};
use crate::state::StateDb;

/// How many due deliveries one round picks up.
const BATCH: usize = 500;

/// The enqueue side of the outbox (used by the alert engine). SQLite is blocking: call it
/// from a blocking context (the engine's thread or `spawn_blocking`); an insert takes
/// milliseconds.
#[derive(Debug)]
pub struct Outbox {
    db: StateDb,
}

/// One delivery as `dbagent alerts` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub receiver: String,
    pub group_key: String,
    pub integration: String,
    /// PagerDuty: the alert fingerprint.
    pub dedup_key: Option<String>,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: u32,
    pub created: jiff::Timestamp,
    pub due: jiff::Timestamp,
    pub done: Option<jiff::Timestamp>,
    pub last_error: Option<String>,
    /// The receiver's answer when delivered.
    pub answer: Option<String>,
}

impl Outbox {
    /// Opens (creating and migrating when needed) the outbox in `state_dir`'s state.db.
    pub fn open(state_dir: &Path) -> Result<Outbox, OutboxError> {
        Ok(Outbox {
            db: StateDb::open(state_dir)?,
        })
    }

    /// Stores `n` durably (committed when this returns) and wakes the delivery worker.
    /// Returns the notification's id in the outbox.
    pub fn enqueue(&self, n: &Notification) -> Result<i64, OutboxError> {
        let json = serde_json::to_string(n).map_err(|source| OutboxError::Encode {
            receiver: n.receiver.clone(),
            group: n.group_key.clone(),
            source,
        })?;
        self.db
            .conn()
            .execute(
                "INSERT INTO notify_outbox (receiver, group_key, status, notification, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![n.receiver, n.group_key, n.status.as_str(), json, now_ms()],
            )
            .map_err(|e| self.db.err(e))?;
        let id = self.db.conn().last_insert_rowid();
        WAKE.notify_one();
        Ok(id)
    }

    /// The newest `limit` deliveries, newest first (pending ones included).
    pub fn recent(&self, limit: usize) -> Result<Vec<DeliveryRecord>, OutboxError> {
        recent(&self.db, limit)
    }
}

/// The newest `limit` deliveries of the state database, newest first.
pub fn recent(db: &StateDb, limit: usize) -> Result<Vec<DeliveryRecord>, OutboxError> {
    let ts = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap_or_default();
    let run = || -> rusqlite::Result<Vec<DeliveryRecord>> {
        let mut st = db.conn().prepare(
            "SELECT id, receiver, group_key, integration, dedup_key, state, attempts, created_ms,
                    due_ms, done_ms, last_error, answer
             FROM notify_delivery ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(DeliveryRecord {
                id: r.get(0)?,
                receiver: r.get(1)?,
                group_key: r.get(2)?,
                integration: r.get(3)?,
                dedup_key: r.get(4)?,
                state: r.get(5)?,
                attempts: r.get(6)?,
                created: ts(r.get(7)?),
                due: ts(r.get(8)?),
                done: r.get::<_, Option<i64>>(9)?.map(ts),
                last_error: r.get(10)?,
                answer: r.get(11)?,
            })
        })?;
        rows.collect()
    };
    run().map_err(|e| OutboxError::State(db.err(e)))
}

/// A delivery picked up for sending.
#[derive(Debug, Clone)]
pub(super) struct Due {
    pub(super) id: i64,
    pub(super) receiver: String,
    pub(super) group_key: String,
    pub(super) integration: Integration,
    pub(super) dedup_key: Option<String>,
    pub(super) attempts: u32,
    pub(super) created_ms: i64,
    pub(super) notification: String,
    pub(super) last_error: Option<String>,
}

/// Splits new notifications into deliveries. Returns the notifications whose receiver is
/// unknown (id, receiver, group), and those given up for it after `max_age_ms` (receiver,
/// group).
#[allow(clippy::type_complexity)]
pub(super) fn expand(
    c: &mut rusqlite::Connection,
    receivers: &[Receiver],
    now: i64,
    max_age_ms: i64,
) -> rusqlite::Result<(Vec<(i64, String, String)>, Vec<(String, String)>)> {
    // Most rounds have nothing new: check without taking the write lock.
    let any: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM notify_outbox WHERE expanded = 0)",
        [],
        |r| r.get(0),
    )?;
    if !any {
        return Ok((Vec::new(), Vec::new()));
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<(i64, String, String, String, i64)> = {
        let mut st = tx.prepare(
            "SELECT id, receiver, group_key, notification, created_ms FROM notify_outbox
             WHERE expanded = 0 ORDER BY id",
        )?;
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut unknown = Vec::new();
    let mut gave_up = Vec::new();
    for (id, receiver, group, json, created_ms) in rows {
        let Some(r) = receivers.iter().find(|r| r.name == receiver) else {
            if now - created_ms > max_age_ms {
                tx.execute("UPDATE notify_outbox SET expanded = 2 WHERE id = ?1", [id])?;
                gave_up.push((receiver, group));
            } else {
                unknown.push((id, receiver, group));
            }
            continue;
        };
        let fingerprints: Vec<String> = serde_json::from_str::<Notification>(&json)
            .map(|n| n.alerts.into_iter().map(|a| a.fingerprint).collect())
            .unwrap_or_default();
        for integration in r.integrations() {
            let keys: Vec<Option<&str>> = if integration == Integration::PagerDuty {
                fingerprints.iter().map(|f| Some(f.as_str())).collect()
            } else {
                vec![None]
            };
            for key in keys {
                tx.execute(
                    "INSERT INTO notify_delivery
                        (outbox_id, receiver, group_key, integration, dedup_key, created_ms, due_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![id, receiver, group, integration.as_str(), key, created_ms],
                )?;
            }
        }
        tx.execute("UPDATE notify_outbox SET expanded = 1 WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok((unknown, gave_up))
}

/// The deliveries due now whose predecessors (same receiver, group, integration, dedup_key)
/// are done.
pub(super) fn due(c: &mut rusqlite::Connection, now: i64) -> rusqlite::Result<Vec<Due>> {
    let mut st = c.prepare_cached(
        "SELECT d.id, d.receiver, d.group_key, d.integration, d.dedup_key, d.attempts,
                d.created_ms, o.notification, d.last_error
         FROM notify_delivery d JOIN notify_outbox o ON o.id = d.outbox_id
         WHERE d.state = 'pending' AND d.due_ms <= ?1
           AND NOT EXISTS (
             SELECT 1 FROM notify_delivery p
             WHERE p.receiver = d.receiver AND p.group_key = d.group_key
               AND p.integration = d.integration AND p.state = 'pending'
               AND p.dedup_key IS d.dedup_key AND p.id < d.id)
         ORDER BY d.id LIMIT ?2",
    )?;
    let rows = st.query_map(params![now, BATCH as i64], |r| {
        let integration: String = r.get(3)?;
        Ok(Due {
            id: r.get(0)?,
            receiver: r.get(1)?,
            group_key: r.get(2)?,
            integration: Integration::parse(&integration).unwrap_or(Integration::Webhook),
            dedup_key: r.get(4)?,
            attempts: r.get(5)?,
            created_ms: r.get(6)?,
            notification: r.get(7)?,
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Depth, oldest creation time, and the next due time of the outbox.
pub(super) fn gauges(
    c: &mut rusqlite::Connection,
) -> rusqlite::Result<(u64, Option<i64>, Option<i64>)> {
    let (pending, oldest, next): (i64, Option<i64>, Option<i64>) = c.query_row(
        "SELECT count(*), min(created_ms), min(due_ms) FROM notify_delivery WHERE state = 'pending'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (new, new_oldest): (i64, Option<i64>) = c.query_row(
        "SELECT count(*), min(created_ms) FROM notify_outbox WHERE expanded = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let oldest = match (oldest, new_oldest) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(((pending + new) as u64, oldest, next))
}

/// Deletes finished notifications (every delivery done) beyond the newest `keep`.
pub(super) fn prune(c: &mut rusqlite::Connection, keep: u32) -> rusqlite::Result<usize> {
    c.execute(
        "DELETE FROM notify_outbox WHERE id IN (
           SELECT o.id FROM notify_outbox o
           WHERE o.expanded != 0
             AND NOT EXISTS (SELECT 1 FROM notify_delivery d
                             WHERE d.outbox_id = o.id AND d.state = 'pending')
           ORDER BY o.id DESC LIMIT -1 OFFSET ?1)",
        [keep],
    )
}

/// Records a delivery the receiver accepted: done, never sent again.
pub(super) fn delivered(
    c: &mut rusqlite::Connection,
    id: i64,
    attempts: u32,
    answer: &str,
) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE notify_delivery SET state = 'delivered', attempts = ?2, done_ms = ?3,
                last_error = NULL, answer = ?4 WHERE id = ?1",
        params![id, attempts, now_ms(), answer],
    )
}

/// Records a failed attempt to be retried at `due_ms`.
pub(super) fn retry_at(
    c: &mut rusqlite::Connection,
    id: i64,
    attempts: u32,
    due_ms: i64,
    reason: &str,
) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE notify_delivery SET attempts = ?2, due_ms = ?3, last_error = ?4
         WHERE id = ?1",
        params![id, attempts, due_ms, reason],
    )
}

/// Records a delivery given up for good.
pub(super) fn failed(
    c: &mut rusqlite::Connection,
    id: i64,
    reason: &str,
) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE notify_delivery SET state = 'failed', done_ms = ?2, last_error = ?3
         WHERE id = ?1",
        params![id, now_ms(), reason],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::{resolved, sample, webhook_receiver};

    #[test]
    fn notify_outbox_enqueue_expands_per_integration_and_pagerduty_per_alert() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        outbox.enqueue(&sample()).unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        let (unknown, gave_up) = expand(
            db.conn_mut(),
            &[webhook_receiver("oncall")],
            now_ms(),
            1_000_000,
        )
        .unwrap();
        assert!(unknown.is_empty() && gave_up.is_empty());
        let recs = outbox.recent(10).unwrap();
        let mut kinds: Vec<(String, Option<String>)> = recs
            .iter()
            .map(|r| (r.integration.clone(), r.dedup_key.clone()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                (
                    "pagerduty".to_string(),
                    Some("0f1e2d3c4b5a6978".to_string())
                ),
                (
                    "pagerduty".to_string(),
                    Some("a1b2c3d4e5f60718".to_string())
                ),
                ("webhook".to_string(), None),
            ]
        );
        // The second notification of the same group waits for the first.
        outbox.enqueue(&resolved(&sample())).unwrap();
        expand(
            db.conn_mut(),
            &[webhook_receiver("oncall")],
            now_ms(),
            1_000_000,
        )
        .unwrap();
        let due_now = due(db.conn_mut(), now_ms()).unwrap();
        assert_eq!(due_now.len(), 3);
        assert!(due_now.iter().all(|d| d.id <= 3));
        let (depth, oldest, _) = gauges(db.conn_mut()).unwrap();
        assert_eq!(depth, 6);
        assert!(oldest.is_some());
    }

    #[test]
    fn notify_outbox_unknown_receiver_waits_then_gives_up() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        outbox.enqueue(&sample()).unwrap();
        let mut db = StateDb::open(tmp.path()).unwrap();
        let (unknown, gave_up) = expand(
            db.conn_mut(),
            &[webhook_receiver("other")],
            now_ms(),
            60_000,
        )
        .unwrap();
        assert_eq!(unknown.len(), 1);
        assert!(gave_up.is_empty());
        let (unknown, gave_up) = expand(
            db.conn_mut(),
            &[webhook_receiver("other")],
            now_ms() + 120_000,
            60_000,
        )
        .unwrap();
        assert!(unknown.is_empty());
        assert_eq!(gave_up, [("oncall".to_string(), sample().group_key)]);
        assert_eq!(gauges(db.conn_mut()).unwrap().0, 0);
    }

    #[test]
    fn notify_outbox_prune_keeps_history_and_pending() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(tmp.path()).unwrap();
        for _ in 0..5 {
            outbox.enqueue(&sample()).unwrap();
        }
        let mut db = StateDb::open(tmp.path()).unwrap();
        let mut r = webhook_receiver("oncall");
        r.pagerduty = None;
        expand(db.conn_mut(), &[r], now_ms(), 1_000_000).unwrap();
        db.conn()
            .execute(
                "UPDATE notify_delivery SET state = 'delivered' WHERE id <= 4",
                [],
            )
            .unwrap();
        assert_eq!(prune(db.conn_mut(), 2).unwrap(), 2);
        let ids: Vec<i64> = outbox.recent(10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [5, 4, 3]);
    }
}
