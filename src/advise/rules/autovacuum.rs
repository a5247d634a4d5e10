//! `autovacuum`: dead tuples that stay high in every sample of the window, told apart by
//! whether autovacuum ran (then something holds back the xmin horizon) or not (then its
//! thresholds are too high for the table).

use serde_json::json;

use super::naming::{bytes, qualified};
use crate::advise::model::{Finding, Impact, Inputs, Kind};

/// Autovacuum findings: dead tuples at least this share of the rows, and this many, in every
/// sample of the window.
const DEAD_RATIO: f64 = 0.2;
const DEAD_MIN_TUPLES: f64 = 10_000.0;

pub(super) fn autovacuum(inputs: &Inputs) -> Vec<Finding> {
    let Some(current) = inputs.window.last() else {
        return Vec::new();
    };
    if inputs.window.coverage.samples < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in &current.tables {
        let Some(history) = inputs.window.dead.get(&t.relid) else {
            continue;
        };
        if history.samples < 2 {
            continue;
        }
        // Dead rows high in every sample that has the table.
        if history.min_dead < DEAD_MIN_TUPLES || history.min_dead_ratio < DEAD_RATIO {
            continue;
        }
        let runs = history.autovacuum_runs;
        let total = t.n_live_tup + t.n_dead_tup;
        let ratio = t.n_dead_tup / total;
        let dead_bytes = t.size_bytes * ratio;
        let object = qualified(&t.schema, &t.name);
        let (summary, note) = if runs > 0.0 {
            (
                format!(
                    "{object} keeps {:.0}% dead rows ({:.0}) although autovacuum ran {runs:.0} times in the window",
                    ratio * 100.0,
                    t.n_dead_tup
                ),
                "Vacuum ran but could not remove them: look for what holds back the xmin horizon (long transactions, idle-in-transaction sessions, replication slots, prepared transactions) before tuning.",
            )
        } else {
            (
                format!(
                    "{object} keeps {:.0}% dead rows ({:.0}) and autovacuum did not run in the window",
                    ratio * 100.0,
                    t.n_dead_tup
                ),
                "Autovacuum's thresholds are too high for this table (or its workers are busy elsewhere): lower its scale factor.",
            )
        };
        out.push(Finding {
            kind: Kind::Autovacuum,
            summary,
            object: object.clone(),
            impact: Impact {
                bytes: dead_bytes,
                text: format!("about {} of dead rows", bytes(dead_bytes)),
            },
            evidence: json!({
                "size_bytes": t.size_bytes,
                "live_rows": t.n_live_tup,
                "dead_rows": t.n_dead_tup,
                "dead_ratio": ratio,
                "autovacuum_runs_in_window": runs,
                "samples": history.samples,
            }),
            action: format!(
                "SELECT pid, state, xact_start, backend_xmin FROM pg_stat_activity WHERE backend_xmin IS NOT NULL ORDER BY age(backend_xmin) DESC LIMIT 5;\n\
                 SELECT slot_name, xmin, catalog_xmin FROM pg_replication_slots;\n\
                 ALTER TABLE {object} SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);"
            ),
            note: Some(note.to_string()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::advise::model::Kind;

    #[test]
    fn advise_autovacuum_finding_when_dead_rows_stay_high() {
        let mut t = table(1, "events");
        t.n_dead_tup = 60_000.0;
        let mut later = t.clone();
        later.autovacuum_count = 3.0;
        let s = vec![
            sample(0, vec![t.clone()], vec![]),
            sample(3600, vec![later], vec![]),
        ];
        let f = run(&s, &[], &[]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].kind, Kind::Autovacuum);
        assert!(
            f[0].summary.contains("although autovacuum ran 3 times"),
            "{}",
            f[0].summary
        );
        // Vacuum caught up in the last sample: no finding.
        let mut clean = t.clone();
        clean.n_dead_tup = 100.0;
        let s = vec![
            sample(0, vec![t], vec![]),
            sample(3600, vec![clean], vec![]),
        ];
        assert!(run(&s, &[], &[]).is_empty());
    }
}
