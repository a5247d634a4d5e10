//! `unused_index`: an index with no scan in a window observed long enough; indexes that
//! enforce a constraint, and invalid ones, are never reported.

use std::collections::HashMap;

use serde_json::json;

use super::naming::{bytes, human_seconds, qualified};
use crate::advise::model::{Finding, Impact, Inputs, Kind, Options};
use crate::advise::sample::{IndexStat, Sample};
use crate::advise::window::{self, Coverage};

pub(super) fn unused(inputs: &Inputs, opts: &Options, coverage: &Coverage) -> Vec<Finding> {
    let Some(current) = inputs.window.last() else {
        return Vec::new();
    };
    let min_observed = opts.min_observed.min(opts.window).as_secs_f64();
    if coverage.samples < 2 || coverage.observed_seconds < min_observed {
        return Vec::new();
    }
    let usage = &inputs.window.indexes;
    let valid: HashMap<i64, bool> = inputs
        .defs
        .iter()
        .map(|d| (d.indexrelid, d.valid))
        .collect();
    let since = inputs.since.as_millisecond() as f64 / 1000.0;
    let scope = if current.in_recovery {
        "Counted on this standby only: the primary's (and other replicas') scans are not visible from here. Run `dbagent advise` against the primary too; drop an index (on the primary) only when no server uses it."
    } else {
        "Counted on this primary only: if read replicas serve queries, check `dbagent advise` on each of them before dropping. Rare jobs (month-end reports) may use it outside the window."
    };
    let mut out = Vec::new();
    for i in &current.indexes {
        if i.enforces.is_some() || !valid.get(&i.indexrelid).copied().unwrap_or(true) {
            continue;
        }
        let Some(u) = usage.get(&i.indexrelid) else {
            continue;
        };
        let recently = i.last_idx_scan.is_some_and(|t| t >= since);
        if u.scans > 0.0 || recently || u.observed_seconds < min_observed {
            continue;
        }
        out.push(unused_finding(i, u, current, scope));
    }
    out
}

fn unused_finding(i: &IndexStat, u: &window::IndexUsage, current: &Sample, scope: &str) -> Finding {
    let object = qualified(&i.schema, &i.name);
    Finding {
        kind: Kind::UnusedIndex,
        summary: format!(
            "index {object} on {} ({}) was not used in {} observed",
            qualified(&i.schema, &i.table),
            bytes(i.size_bytes),
            human_seconds(u.observed_seconds)
        ),
        object: object.clone(),
        impact: Impact {
            bytes: i.size_bytes,
            text: format!("{} on disk, maintained on every write", bytes(i.size_bytes)),
        },
        evidence: json!({
            "table": qualified(&i.schema, &i.table),
            "size_bytes": i.size_bytes,
            "scans_in_window": u.scans,
            "observed_seconds": u.observed_seconds,
            "idx_scan_total": i.idx_scan,
            "stats_reset": current.stats_reset,
            "last_idx_scan": i.last_idx_scan,
        }),
        action: format!("DROP INDEX CONCURRENTLY {object};"),
        note: Some(scope.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::advise::model::Kind;
    use crate::advise::sample::{IndexDef, IndexStat};

    #[test]
    fn advise_unused_excludes_constraints_and_short_observation_and_orders_by_size() {
        let t = table(1, "t");
        let mut used = index(2, 1, "t_used", None);
        let idle_small = index(3, 1, "t_idle_small", None);
        let idle_big = index(4, 1, "t_idle_big", None);
        let pk = index(5, 1, "t_pkey", Some("primary key"));
        let uniq = index(6, 1, "t_code_key", Some("unique index"));
        let all = |used: &IndexStat| {
            vec![
                used.clone(),
                idle_small.clone(),
                idle_big.clone(),
                pk.clone(),
                uniq.clone(),
            ]
        };
        let first = sample(0, vec![t.clone()], all(&used));
        used.idx_scan = 3.0;
        let defs: Vec<IndexDef> = (2..=6).map(|i| def(i, 1, &[&format!("c{i}")])).collect();
        // Observed 30 s, less than min_observed (60 s): nothing is called unused.
        let short = vec![first.clone(), sample(30, vec![t.clone()], all(&used))];
        assert!(run(&short, &defs, &[]).is_empty());
        let long = vec![first, sample(600, vec![t], all(&used))];
        let f = run(&long, &defs, &[]);
        let objects: Vec<&str> = f.iter().map(|f| f.object.as_str()).collect();
        assert_eq!(objects, vec!["public.t_idle_big", "public.t_idle_small"]);
        assert!(f.iter().all(|f| f.kind == Kind::UnusedIndex));
        assert_eq!(f[0].action, "DROP INDEX CONCURRENTLY public.t_idle_big;");
    }
}
