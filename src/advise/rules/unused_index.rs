//! `unused_index`: an index with no scan in a window observed long enough; indexes that
//! enforce a constraint, and invalid ones, are never reported.

use std::collections::HashMap;

use serde_json::json;

use super::{bytes, human_seconds, qualified};
use crate::advise::model::{Finding, Impact, Inputs, Kind, Options};
use crate::advise::sample::{IndexStat, Sample};
use crate::advise::window::{self, Coverage};

pub(super) fn unused(inputs: &Inputs, opts: &Options, coverage: &Coverage) -> Vec<Finding> {
    let Some(current) = inputs.samples.last() else {
        return Vec::new();
    };
    let min_observed = opts.min_observed.min(opts.window).as_secs_f64();
    if coverage.samples < 2 || coverage.observed_seconds < min_observed {
        return Vec::new();
    }
    let usage = window::index_usage(inputs.samples);
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
