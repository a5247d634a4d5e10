//! Persistence of the alert engine's state in state.db: every instance and group as one JSON
//! row, rewritten in one transaction after each evaluation. A restart loads it back, so a
//! firing alert is neither paged again before its repeat interval nor forgotten when it
//! resolves.

use rusqlite::params;

use super::engine::{EngineState, Group, Instance};
use crate::state::{StateDb, StateError};

/// Loads the saved state (empty when none).
pub fn load(db: &StateDb) -> Result<EngineState, StateError> {
    let mut state = EngineState::default();
    let mut stmt = db
        .conn()
        .prepare("SELECT data FROM alert_instances")
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| db.err(e))?;
    for row in rows {
        let text = row.map_err(|e| db.err(e))?;
        if let Ok(i) = serde_json::from_str::<Instance>(&text) {
            state.instances.insert(i.fingerprint.clone(), i);
        }
    }
    let mut stmt = db
        .conn()
        .prepare("SELECT data FROM alert_groups")
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| db.err(e))?;
    for row in rows {
        let text = row.map_err(|e| db.err(e))?;
        if let Ok(g) = serde_json::from_str::<Group>(&text) {
            state.groups.insert(g.key.clone(), g);
        }
    }
    Ok(state)
}

/// Replaces the saved state with `state`, atomically.
pub fn save(db: &mut StateDb, state: &EngineState) -> Result<(), StateError> {
    let encode = |v: &dyn erased::Encode| v.json();
    let tx = db
        .conn_mut()
        .transaction()
        .map_err(|e| StateError::from_sqlite(std::path::Path::new("state.db"), e))?;
    let result = (|| -> rusqlite::Result<()> {
        tx.execute("DELETE FROM alert_instances", [])?;
        tx.execute("DELETE FROM alert_groups", [])?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO alert_instances (fingerprint, rule, state, data) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for i in state.instances.values() {
                let st = serde_json::to_value(i.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                ins.execute(params![i.fingerprint, i.rule, st, encode(i)])?;
            }
            let mut grp =
                tx.prepare_cached("INSERT INTO alert_groups (key, data) VALUES (?1, ?2)")?;
            for g in state.groups.values() {
                grp.execute(params![g.key, encode(g)])?;
            }
        }
        tx.commit()
    })();
    result.map_err(|e| db.err(e))
}

mod erased {
    pub trait Encode {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Encode for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".into())
        }
    }
}
