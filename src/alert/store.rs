//! Persistence of the alert engine's state in state.db: every instance and group as one JSON
//! row, rewritten in one transaction after each evaluation. A restart loads it back, so a
//! firing alert is neither paged again before its repeat interval nor forgotten when it
//! resolves.

use rusqlite::params;

use super::engine::{EngineState, Group, Instance};
use crate::state::{StateDb, StateError};

/// The `data` column of every row of `table`.
fn rows(db: &StateDb, table: &str) -> Result<Vec<String>, StateError> {
    let mut stmt = db
        .conn()
        .prepare(&format!("SELECT data FROM {table}"))
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| db.err(e))?;
    rows.map(|r| r.map_err(|e| db.err(e))).collect()
}

/// Loads the saved state (empty when none). A row that no longer parses is dropped.
pub fn load(db: &StateDb) -> Result<EngineState, StateError> {
    let mut state = EngineState::default();
    for text in rows(db, "alert_instances")? {
        if let Ok(i) = serde_json::from_str::<Instance>(&text) {
            state.instances.insert(i.fingerprint.clone(), i);
        }
    }
    for text in rows(db, "alert_groups")? {
        if let Ok(g) = serde_json::from_str::<Group>(&text) {
            state.groups.insert(g.key.clone(), g);
        }
    }
    Ok(state)
}

/// Replaces the saved state with `state`, atomically.
pub fn save(db: &mut StateDb, state: &EngineState) -> Result<(), StateError> {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_else(|_| "null".into())
    }
    let result = (|| -> rusqlite::Result<()> {
        let tx = db.conn_mut().transaction()?;
        tx.execute("DELETE FROM alert_instances", [])?;
        tx.execute("DELETE FROM alert_groups", [])?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO alert_instances (fingerprint, rule, state, data) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for i in state.instances.values() {
                let st = json(&i.state);
                ins.execute(params![
                    i.fingerprint,
                    i.rule,
                    st.trim_matches('"'),
                    json(i)
                ])?;
            }
            let mut grp =
                tx.prepare_cached("INSERT INTO alert_groups (key, data) VALUES (?1, ?2)")?;
            for g in state.groups.values() {
                grp.execute(params![g.key, json(g)])?;
            }
        }
        tx.commit()
    })();
    result.map_err(|e| db.err(e))
}
