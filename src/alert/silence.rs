//! Silences: label matchers with a time window; a matching alert instance is left out of
//! notifications while the silence is active. Stored in state.db by `dbagent alerts silence`,
//! read by `dbagent run` at every evaluation, so the CLI and the running agent agree without
//! talking to each other.

use jiff::Timestamp;
use rusqlite::params;
use serde::Serialize;

use super::rules::Matcher;
use crate::state::{StateDb, StateError};

/// One silence.
#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub id: String,
    #[serde(serialize_with = "matchers_as_text")]
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
    /// Expired by hand before its end.
    pub expired: bool,
}

fn matchers_as_text<S: serde::Serializer>(m: &[Matcher], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(|m| m.to_string()))
}

impl Silence {
    pub fn active(&self, now: Timestamp) -> bool {
        !self.expired && self.starts_at <= now && now < self.ends_at
    }
}

/// Creates a silence; returns its id.
pub fn create(
    db: &StateDb,
    matchers: &[Matcher],
    starts_at: Timestamp,
    ends_at: Timestamp,
    created_by: &str,
    comment: &str,
) -> Result<String, StateError> {
    let mut h = sha2::Sha256::new();
    use sha2::Digest;
    h.update(format!("{starts_at}{ends_at}{comment}{created_by}").as_bytes());
    for m in matchers {
        h.update(m.to_string().as_bytes());
    }
    h.update(std::process::id().to_le_bytes());
    h.update(Timestamp::now().as_nanosecond().to_le_bytes());
    let id = hex::encode(&h.finalize()[..6]);
    let text: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
    let json = serde_json::to_string(&text).unwrap_or_else(|_| "[]".into());
    db.conn()
        .execute(
            "INSERT INTO silences (id, matchers, starts_ms, ends_ms, created_by, comment, expired) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
            params![
                id,
                json,
                starts_at.as_millisecond(),
                ends_at.as_millisecond(),
                created_by,
                comment
            ],
        )
        .map_err(|e| db.err(e))?;
    Ok(id)
}

/// Every silence not ended before `since` (all with `None`), newest first.
pub fn list(db: &StateDb, since: Option<Timestamp>) -> Result<Vec<Silence>, StateError> {
    let since_ms = since.map_or(i64::MIN, |t| t.as_millisecond());
    let mut stmt = db
        .conn()
        .prepare_cached(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment, expired FROM silences \
             WHERE ends_ms >= ?1 ORDER BY starts_ms DESC",
        )
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map(params![since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })
        .map_err(|e| db.err(e))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, matchers, starts, ends, created_by, comment, expired) =
            row.map_err(|e| db.err(e))?;
        let texts: Vec<String> = serde_json::from_str(&matchers).unwrap_or_default();
        let matchers = texts
            .iter()
            .filter_map(|t| Matcher::parse(t).ok())
            .collect();
        out.push(Silence {
            id,
            matchers,
            starts_at: Timestamp::from_millisecond(starts).unwrap_or(Timestamp::UNIX_EPOCH),
            ends_at: Timestamp::from_millisecond(ends).unwrap_or(Timestamp::UNIX_EPOCH),
            created_by,
            comment,
            expired,
        });
    }
    Ok(out)
}

/// Expires a silence now; false when there is no silence with that id.
pub fn expire(db: &StateDb, id: &str) -> Result<bool, StateError> {
    let n = db
        .conn()
        .execute("UPDATE silences SET expired = 1 WHERE id = ?1", params![id])
        .map_err(|e| db.err(e))?;
    Ok(n > 0)
}
