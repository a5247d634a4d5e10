//! `missing_index`: a slow statement whose generic plan scans a large table sequentially with
//! a selective filter, and no index leads with the filtered column: the columns to index (a
//! hint, not a proof).

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::naming::{bytes, hours, qualified, quote_ident, row_estimate};
use crate::advise::model::{Finding, Impact, Inputs, Kind, Options, PlanHint};
use crate::advise::sample::TableStat;
use crate::advise::window::Coverage;

/// A missing-index hint needs a filter the planner expects to keep at most this share of rows.
const HINT_MAX_SELECTIVITY: f64 = 0.1;

pub(super) fn missing_indexes(
    inputs: &Inputs,
    opts: &Options,
    tables: &HashMap<i64, &TableStat>,
    coverage: &Coverage,
) -> Vec<Finding> {
    // One finding per (table, columns), with every statement that led to it.
    let mut grouped: BTreeMap<(i64, Vec<String>), Vec<&PlanHint>> = BTreeMap::new();
    for h in inputs.hints {
        grouped
            .entry((h.relid, h.columns.clone()))
            .or_default()
            .push(h);
    }
    let mut out = Vec::new();
    for ((relid, columns), hints) in grouped {
        let Some(t) = tables.get(&relid) else {
            continue;
        };
        if t.size_bytes < opts.min_table_size as f64 {
            continue;
        }
        let rows = row_estimate(t);
        let selective: Vec<&&PlanHint> = hints
            .iter()
            .filter(|h| h.plan_rows / rows <= HINT_MAX_SELECTIVITY)
            .collect();
        if selective.is_empty() {
            continue;
        }
        // An index leading with the first column exists: not missing (the planner chose).
        let covered = inputs.defs.iter().any(|d| {
            d.relid == relid
                && d.valid
                && d.keys.first().and_then(|k| k.as_deref()) == Some(columns[0].as_str())
        });
        if covered {
            continue;
        }
        let calls: f64 = selective.iter().map(|h| h.statement.calls).sum();
        let per_hour = t.size_bytes * calls / hours(coverage.observed_seconds.max(3600.0));
        let object = qualified(&t.schema, &t.name);
        let cols = columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Finding {
            kind: Kind::MissingIndex,
            summary: format!(
                "{} on {object} ({}) with a sequential scan and a selective filter on ({cols}); an index on ({cols}) may serve {}",
                if selective.len() == 1 {
                    "a top statement filters".to_string()
                } else {
                    format!("{} top statements filter", selective.len())
                },
                bytes(t.size_bytes),
                if selective.len() == 1 { "it" } else { "them" },
            ),
            object: object.clone(),
            impact: Impact {
                bytes: per_hour,
                text: format!("about {}/h read sequentially by these statements", bytes(per_hour)),
            },
            evidence: json!({
                "columns": columns,
                "size_bytes": t.size_bytes,
                "live_rows": t.n_live_tup,
                "statements": selective.iter().map(|h| json!({
                    "queryid": h.statement.queryid,
                    "query": h.statement.query,
                    "calls": h.statement.calls,
                    "mean_seconds": h.statement.mean_seconds,
                    "total_seconds": h.statement.total_seconds,
                    "filter": h.filter,
                    "estimated_rows": h.plan_rows,
                })).collect::<Vec<_>>(),
            }),
            action: format!("CREATE INDEX CONCURRENTLY ON {object} ({cols});"),
            note: Some(
                "A hint, not a proof: it comes from the generic plan of the normalized statement. Check the plan with real values (EXPLAIN on a replica or off-peak) and weigh the index's write cost before creating it."
                    .into(),
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::advise::explain;
    use crate::advise::model::{Kind, PlanHint};

    #[test]
    fn advise_missing_index_hint_needs_a_selective_filter_and_no_leading_index() {
        let t = table(1, "claims");
        let s = vec![sample(0, vec![t], vec![])];
        let statement = explain::Statement {
            queryid: "42".into(),
            query: "SELECT * FROM claims WHERE county = $1".into(),
            calls: 100.0,
            total_seconds: 300.0,
            mean_seconds: 3.0,
            rows: 100.0,
        };
        let hint = |rows: f64| PlanHint {
            statement: statement.clone(),
            relid: 1,
            columns: vec!["county".into()],
            filter: "(county = $1)".into(),
            plan_rows: rows,
        };
        let f = run(&s, &[], &[hint(100.0)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::MissingIndex);
        assert_eq!(
            f[0].action,
            "CREATE INDEX CONCURRENTLY ON public.claims (county);"
        );
        // Half the table: an index would not help.
        assert!(run(&s, &[], &[hint(50_000.0)]).is_empty());
        // An index already leads with the column: the planner chose not to use it.
        assert!(run(&s, &[def(9, 1, &["county", "year"])], &[hint(100.0)]).is_empty());
    }
}
