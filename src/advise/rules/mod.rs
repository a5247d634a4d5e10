//! The advisor's rules, one file per kind of finding, and [`findings`], which runs them all on
//! one window (pure: data in, findings out) and orders them by impact. Also the helpers the
//! rules share to name objects and figures.

mod autovacuum;
mod duplicate_index;
#[cfg(test)]
mod fixtures;
mod missing_index;
mod naming;
mod plan_change;
mod seq_scan_hotspot;
mod unused_index;

use std::collections::HashMap;

use super::model::{Finding, Inputs, Options};
use super::sample::TableStat;

pub use naming::{human_seconds, quote_ident};

/// The findings of a window (pure).
pub fn findings(inputs: &Inputs, opts: &Options) -> Vec<Finding> {
    let Some(current) = inputs.window.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let coverage = inputs.window.coverage.clone();
    let tables: HashMap<i64, &TableStat> = current.tables.iter().map(|t| (t.relid, t)).collect();
    let hint_findings = missing_index::missing_indexes(inputs, opts, &tables, &coverage);
    out.extend(seq_scan_hotspot::hotspots(inputs, opts, &hint_findings));
    out.extend(hint_findings);
    out.extend(unused_index::unused(inputs, opts, &coverage));
    out.extend(duplicate_index::duplicates(inputs));
    out.extend(autovacuum::autovacuum(inputs));
    out.extend(plan_change::plan_changes(inputs));
    out.sort_by(|a, b| {
        b.impact
            .bytes
            .total_cmp(&a.impact.bytes)
            .then(a.kind.cmp(&b.kind))
            .then(a.object.cmp(&b.object))
    });
    out
}
