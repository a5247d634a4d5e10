//! The query and index advisor: from counters sampled over time (kept in `state.db`) and the
//! plans of the slowest statements, findings that each carry their evidence and a concrete
//! action to review (SQL that dbagent never runs itself):
//!
//! - `seq_scan_hotspot`: a table read mostly by sequential scans, many times its size, with
//!   the top statements that name it;
//! - `unused_index`: no scan in the window (constraint-enforcing indexes excluded), observed
//!   for long enough;
//! - `duplicate_index`: same definition as another index, or a prefix of another btree index;
//! - `missing_index`: a slow statement whose generic plan scans a large table sequentially
//!   with a selective filter: the filtered columns (a hint, not a proof);
//! - `autovacuum`: dead tuples that stay high through the window (autovacuum settings to
//!   review);
//! - `plan_change`: the generic plan of a top statement changed in the window, with its mean
//!   time before and after (the captured plan is the generic one, a proxy for what runs).
//!
//! Findings are ordered by an estimated impact in bytes (see [`Impact`]). The pieces:
//! [`model`] (findings, options, inputs), [`rules`] (one file per kind of finding, and
//! [`findings`] combining them), [`sample`] (the SQL), [`store`] (history), [`window`] (usage
//! across resets), [`explain`] (generic plans), [`report`] (the text report). This file runs
//! them in order; `dbagent advise` and the `advisor` collector of `dbagent run` both call
//! [`advise`].
//!
//! Layer: operation. Uses: config, pg, state, units. Used by: collect.

pub mod explain;
pub mod model;
pub mod report;
pub mod rules;
pub mod sample;
pub mod store;
pub mod window;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::pg::ServerVersion;
use sample::TableStat;

pub use model::{
    Advice, AdviseError, Finding, Impact, Inputs, Kind, Options, PlanHint, WindowInfo,
};
pub use rules::{findings, human_seconds, quote_ident};

/// Time all EXPLAINs of one run may take together.
const EXPLAIN_BUDGET: Duration = Duration::from_secs(5);

/// Samples the database, stores the sample in `state_dir` (when given), and computes the
/// findings over the window ending now.
pub async fn advise(
    client: &tokio_postgres::Client,
    version: &ServerVersion,
    state_dir: Option<&Path>,
    opts: &Options,
) -> Result<Advice, AdviseError> {
    let reading = sample::read(client, version)
        .await
        .map_err(|(what, e)| AdviseError::query(what, &e))?;
    let now = reading.sample.taken;
    let since = now - signed(opts.window);
    let mut notes = Vec::new();
    let mut statements = Vec::new();
    match explain::top_statements(client, opts.explain_top).await {
        Ok(s) => statements = s,
        Err(reason) => notes.push(format!(
            "pg_stat_statements cannot be read ({reason}): no statements with hot spots and no missing-index hints"
        )),
    }
    let mut hints = Vec::new();
    let mut skipped = Vec::new();
    let mut plans: Vec<store::PlanCapture> = Vec::new();
    let current = &reading.sample;
    let by_name: HashMap<(&str, &str), &TableStat> = current
        .tables
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t))
        .collect();
    let mut scans_found: Vec<(explain::Statement, i64, explain::SeqScanFilter)> = Vec::new();
    // EXPLAINs share the agent's poll, which has a time limit of its own.
    let deadline = std::time::Instant::now() + EXPLAIN_BUDGET;
    for s in &statements {
        if !explain::explainable(&s.query) {
            continue;
        }
        if std::time::Instant::now() >= deadline {
            skipped.push(json!({ "queryid": s.queryid, "reason": "the advisor's EXPLAIN time budget for this run is spent" }));
            continue;
        }
        // One constant name: each statement is deallocated right after its EXPLAIN, and a
        // name that changed per run would add pg_stat_statements entries (PREPARE is keyed
        // by its text before PostgreSQL 16).
        let name = "dbagent_advise_plan";
        match explain::explain(client, version, &s.query, name).await {
            Ok(plan) => {
                let (plan_hash, plan_shape) = explain::plan_shape(&plan);
                plans.push(store::PlanCapture {
                    taken: now,
                    queryid: s.queryid.clone(),
                    plan_hash,
                    plan_shape,
                    calls: s.calls,
                    total_seconds: s.total_seconds,
                });
                for scan in explain::seq_scans(&plan) {
                    let schema = scan.schema.clone().unwrap_or_else(|| "public".into());
                    if let Some(t) = by_name.get(&(schema.as_str(), scan.relation.as_str())) {
                        scans_found.push((s.clone(), t.relid, scan));
                    }
                }
            }
            Err(reason) => {
                skipped.push(json!({ "queryid": s.queryid, "reason": reason.to_string() }))
            }
        }
    }
    if !scans_found.is_empty() {
        let relids: Vec<u32> = scans_found
            .iter()
            .filter_map(|(_, r, _)| u32::try_from(*r).ok())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let rows = client
            .query(
                "SELECT attrelid::int8, attname::text FROM pg_catalog.pg_attribute \
                 WHERE attrelid = ANY($1::oid[]) AND attnum > 0 AND NOT attisdropped",
                &[&relids],
            )
            .await
            .map_err(|e| AdviseError::query("pg_attribute", &e))?;
        let mut columns: HashMap<i64, Vec<String>> = HashMap::new();
        for r in &rows {
            columns.entry(r.get(0)).or_default().push(r.get(1));
        }
        for (statement, relid, scan) in scans_found {
            let cols = explain::filter_columns(
                &scan.filter,
                columns.get(&relid).map(Vec::as_slice).unwrap_or(&[]),
            );
            if !cols.is_empty() {
                hints.push(PlanHint {
                    statement,
                    relid,
                    columns: cols,
                    filter: scan.filter,
                    plan_rows: scan.plan_rows,
                });
            }
        }
    }

    if skipped.iter().any(|s| {
        s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("permission denied"))
    }) {
        notes.push(
            "some statements could not be explained because the role may not read their tables: GRANT pg_read_all_data TO the dbagent role for missing-index hints on every table (`dbagent check`, stats_visibility)"
                .into(),
        );
    }
    let mut captures = Vec::new();
    // The stored samples are folded into the window one at a time, then this run's sample is
    // pushed last (memory: one sample at a time plus per-object sums, whatever the window).
    let mut window = window::Window::default();
    let current = reading.sample;
    let (current, history_plans) = match state_dir {
        Some(dir) => {
            let dir: PathBuf = dir.to_path_buf();
            let keep_since = now - signed(opts.retention);
            let dbname = current.dbname.clone();
            let fresh = plans.clone();
            let (w, history_plans, current) = tokio::task::spawn_blocking(move || {
                let mut window = window::Window::default();
                store::load_each(&dir, &dbname, since, |s| window.push(s))?;
                let history_plans = store::load_plans(&dir, &dbname, since)?;
                store::save(&dir, &current, &fresh, keep_since)?;
                window.push(window::Counts::of(&current));
                Ok::<_, crate::state::StateError>((window, history_plans, current))
            })
            .await
            .map_err(|e| AdviseError::Other(format!("the state task failed: {e}")))??;
            window = w;
            (current, history_plans)
        }
        None => {
            notes.push("no state directory: only this sample is used".into());
            window.push(window::Counts::of(&current));
            (current, Vec::new())
        }
    };
    captures.extend(history_plans);
    captures.extend(plans);

    let inputs = Inputs {
        current: Some(&current),
        window: &window,
        plans: &captures,
        defs: &reading.defs,
        statements: &statements,
        hints: &hints,
        since,
    };
    let coverage = window.coverage.clone();
    let min_observed = opts.min_observed.min(opts.window).as_secs_f64();
    if coverage.samples < 2 {
        notes.push(
            "this is the first sample of this database: usage over time (hot spots, unused indexes) needs a second one; run `dbagent run` or `dbagent advise` again later"
                .into(),
        );
    } else if coverage.observed_seconds < min_observed {
        notes.push(format!(
            "the window is observed for {}, less than monitor.advisor_min_observed ({}): no index is called unused yet",
            human_seconds(coverage.observed_seconds),
            human_seconds(min_observed)
        ));
    }
    let findings = findings(&inputs, opts);
    let mut counts: BTreeMap<&'static str, usize> =
        Kind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    for f in &findings {
        *counts.entry(f.kind.as_str()).or_default() += 1;
    }
    let unused_index_bytes = findings
        .iter()
        .filter(|f| f.kind == Kind::UnusedIndex)
        .map(|f| f.impact.bytes)
        // Not `sum()`: a float sum of nothing is -0.0, printed as `-0.0` bytes.
        .fold(0.0, |a, b| a + b);
    let (dbname, in_recovery) = (current.dbname.clone(), current.in_recovery);
    Ok(Advice {
        generated_at: now,
        dbname,
        server_role: if in_recovery { "standby" } else { "primary" },
        window: WindowInfo {
            requested_seconds: opts.window.as_secs_f64(),
            since,
            min_observed_seconds: min_observed,
            unused_reportable: coverage.observed_seconds >= min_observed && coverage.samples >= 2,
            coverage,
        },
        counts,
        unused_index_bytes,
        findings,
        explain_skipped: skipped,
        notes,
    })
}

fn signed(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}
