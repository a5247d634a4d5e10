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
//! [`sample`] (the SQL), [`store`] (history), [`window`] (usage across resets), [`explain`]
//! (generic plans), [`report`] (the text report). `dbagent advise` and the `advisor` collector
//! of `dbagent run` both call [`advise`].

pub mod explain;
pub mod report;
pub mod sample;
pub mod store;
pub mod window;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::config::MonitorConfig;
use crate::pg::ServerVersion;
use sample::{IndexDef, IndexStat, Sample, TableStat};
use window::Coverage;

/// A hot spot needs at least this share of the table's rows read by sequential scans.
const HOTSPOT_SEQ_SHARE: f64 = 0.5;
/// A missing-index hint needs a filter the planner expects to keep at most this share of rows.
const HINT_MAX_SELECTIVITY: f64 = 0.1;
/// Autovacuum findings: dead tuples at least this share of the rows, and this many, in every
/// sample of the window.
const DEAD_RATIO: f64 = 0.2;
const DEAD_MIN_TUPLES: f64 = 10_000.0;
/// Time all EXPLAINs of one run may take together.
const EXPLAIN_BUDGET: Duration = Duration::from_secs(5);
/// Statements listed with a hot spot.
const HOTSPOT_STATEMENTS: usize = 5;

/// The kinds of finding, in the order of `counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SeqScanHotspot,
    MissingIndex,
    UnusedIndex,
    DuplicateIndex,
    Autovacuum,
    PlanChange,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::SeqScanHotspot,
        Kind::MissingIndex,
        Kind::UnusedIndex,
        Kind::DuplicateIndex,
        Kind::Autovacuum,
        Kind::PlanChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SeqScanHotspot => "seq_scan_hotspot",
            Kind::MissingIndex => "missing_index",
            Kind::UnusedIndex => "unused_index",
            Kind::DuplicateIndex => "duplicate_index",
            Kind::Autovacuum => "autovacuum",
            Kind::PlanChange => "plan_change",
        }
    }
}

/// How much a finding weighs, in bytes: for hot spots and missing indexes, the bytes read by
/// sequential scans per hour (reading is work repeated every hour); for unused and duplicate
/// indexes, their size on disk (space, plus the writes that maintain them); for autovacuum,
/// the estimated bytes of dead tuples; plan changes have no byte estimate (0) and come last.
/// Findings are sorted by `bytes`, largest first.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    pub bytes: f64,
    pub text: String,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// `schema.table` or `schema.index`.
    pub object: String,
    pub summary: String,
    pub impact: Impact,
    /// Kind-specific figures (documented in the README).
    pub evidence: serde_json::Value,
    /// SQL to review; dbagent never runs it.
    pub action: String,
    pub note: Option<String>,
}

/// What a run of the advisor produced: `dbagent advise --json`, and `sections.advisor` of
/// `/api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub generated_at: jiff::Timestamp,
    pub dbname: String,
    pub server_role: &'static str,
    pub window: WindowInfo,
    pub counts: BTreeMap<&'static str, usize>,
    pub unused_index_bytes: f64,
    pub findings: Vec<Finding>,
    /// Statements whose plan could not be obtained, and why.
    pub explain_skipped: Vec<serde_json::Value>,
    /// What limited this run (no pg_stat_statements, no history yet, ...).
    pub notes: Vec<String>,
}

/// The window asked for and what the samples actually cover.
#[derive(Debug, Clone, Serialize)]
pub struct WindowInfo {
    pub requested_seconds: f64,
    pub since: jiff::Timestamp,
    pub min_observed_seconds: f64,
    /// Whether the window is observed long enough to call an index unused.
    pub unused_reportable: bool,
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// The advisor's settings (from `monitor.advisor_*`, `--since` overriding the window).
#[derive(Debug, Clone)]
pub struct Options {
    pub window: Duration,
    pub min_observed: Duration,
    pub retention: Duration,
    pub min_table_size: u64,
    pub hotspot_min_scans: f64,
    pub explain_top: usize,
}

impl Options {
    pub fn from_config(m: &MonitorConfig) -> Options {
        Options {
            window: m.advisor_window,
            min_observed: m.advisor_min_observed,
            retention: m.advisor_retention.max(m.advisor_window),
            min_table_size: m.advisor_min_table_size,
            hotspot_min_scans: m.advisor_hotspot_min_scans,
            explain_top: m.advisor_explain_top,
        }
    }
}

/// Why the advisor could not run.
#[derive(Debug, thiserror::Error)]
pub enum AdviseError {
    #[error("{what}: {detail}")]
    Query { what: &'static str, detail: String },
    #[error("connection lost: {0}")]
    Connection(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Other(String),
}

impl AdviseError {
    fn query(what: &'static str, e: &tokio_postgres::Error) -> AdviseError {
        if e.is_closed() {
            AdviseError::Connection(crate::pg::error_detail(e))
        } else {
            AdviseError::Query {
                what,
                detail: crate::pg::error_detail(e),
            }
        }
    }
}

/// A missing-index candidate from one statement's plan.
#[derive(Debug, Clone)]
pub struct PlanHint {
    pub statement: explain::Statement,
    pub relid: i64,
    pub columns: Vec<String>,
    pub filter: String,
    pub plan_rows: f64,
}

/// Everything the findings are computed from (pure data, for tests).
pub struct Inputs<'a> {
    pub samples: &'a [Sample],
    pub defs: &'a [IndexDef],
    pub statements: &'a [explain::Statement],
    pub hints: &'a [PlanHint],
    /// Plans captured in the window (stored ones and this run's), oldest first.
    pub plans: &'a [store::PlanCapture],
    pub since: jiff::Timestamp,
}

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
    let (mut samples, history_plans) = match state_dir {
        Some(dir) => {
            let dir: PathBuf = dir.to_path_buf();
            let current = reading.sample.clone();
            let keep_since = now - signed(opts.retention);
            let dbname = current.dbname.clone();
            let fresh = plans.clone();
            tokio::task::spawn_blocking(move || {
                let history = store::load(&dir, &dbname, since)?;
                let history_plans = store::load_plans(&dir, &dbname, since)?;
                store::save(&dir, &current, &fresh, keep_since)?;
                Ok::<_, crate::state::StateError>((history, history_plans))
            })
            .await
            .map_err(|e| AdviseError::Other(format!("the state task failed: {e}")))??
        }
        None => {
            notes.push("no state directory: only this sample is used".into());
            (Vec::new(), Vec::new())
        }
    };
    samples.push(reading.sample.clone());
    captures.extend(history_plans);
    captures.extend(plans);

    let inputs = Inputs {
        samples: &samples,
        plans: &captures,
        defs: &reading.defs,
        statements: &statements,
        hints: &hints,
        since,
    };
    let coverage = window::coverage(&samples);
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
        .sum();
    Ok(Advice {
        generated_at: now,
        dbname: current.dbname.clone(),
        server_role: if current.in_recovery {
            "standby"
        } else {
            "primary"
        },
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

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quotes an identifier for SQL when it needs it (as `quote_ident` does).
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// `1.5 GiB`-style bytes for summaries.
fn bytes(n: f64) -> String {
    crate::units::human_bytes(n.max(0.0) as u64)
}

fn hours(seconds: f64) -> f64 {
    (seconds / 3600.0).max(1.0)
}

/// Whether `text` names the table `name` (optionally `schema.name`), as a whole word.
fn mentions(text: &str, name: &str) -> bool {
    let text = text.to_lowercase();
    let name = name.to_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut start = 0;
    while let Some(pos) = text[start..].find(&name) {
        let at = start + pos;
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return true;
        }
        start = at + name.len().max(1);
    }
    false
}

/// The findings of a window (pure).
pub fn findings(inputs: &Inputs, opts: &Options) -> Vec<Finding> {
    let Some(current) = inputs.samples.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let coverage = window::coverage(inputs.samples);
    let tables: HashMap<i64, &TableStat> = current.tables.iter().map(|t| (t.relid, t)).collect();
    let hint_findings = missing_indexes(inputs, opts, &tables, &coverage);
    out.extend(hotspots(inputs, opts, &hint_findings));
    out.extend(hint_findings);
    out.extend(unused(inputs, opts, &coverage));
    out.extend(duplicates(inputs));
    out.extend(autovacuum(inputs));
    out.extend(plan_changes(inputs));
    out.sort_by(|a, b| {
        b.impact
            .bytes
            .total_cmp(&a.impact.bytes)
            .then(a.kind.cmp(&b.kind))
            .then(a.object.cmp(&b.object))
    });
    out
}

/// The table's rows: the planner's count from the last ANALYZE or VACUUM when there is one
/// (n_live_tup can double-count when ANALYZE runs before the inserting session has flushed its
/// statistics), else the statistics' live count.
fn row_estimate(t: &TableStat) -> f64 {
    if t.reltuples > 0.0 {
        t.reltuples
    } else {
        t.n_live_tup.max(1.0)
    }
}

fn hotspots(inputs: &Inputs, opts: &Options, hints: &[Finding]) -> Vec<Finding> {
    let Some(current) = inputs.samples.last() else {
        return Vec::new();
    };
    let usage = window::table_usage(inputs.samples);
    let mut out = Vec::new();
    for t in &current.tables {
        let Some(u) = usage.get(&t.relid) else {
            continue;
        };
        if t.size_bytes < opts.min_table_size as f64 || u.steps == 0 {
            continue;
        }
        let rows = row_estimate(t);
        let full_scans = u.seq_tup_read / rows;
        let read = u.seq_tup_read + u.idx_tup_fetch;
        let share = if read > 0.0 {
            u.seq_tup_read / read
        } else {
            0.0
        };
        if full_scans < opts.hotspot_min_scans || share < HOTSPOT_SEQ_SHARE {
            continue;
        }
        let bytes_per_row = t.size_bytes / rows;
        let per_hour = u.seq_tup_read * bytes_per_row / hours(u.observed_seconds);
        let statements: Vec<&explain::Statement> = inputs
            .statements
            .iter()
            .filter(|s| mentions(&s.query, &t.name))
            .take(HOTSPOT_STATEMENTS)
            .collect();
        let object = qualified(&t.schema, &t.name);
        let hint = hints.iter().find(|h| h.object == object);
        let action = match (hint, statements.first()) {
            (Some(h), _) => h.action.clone(),
            (None, Some(s)) => format!(
                "-- review the plan of the costliest statement on {object}:\nEXPLAIN {}",
                s.query.trim()
            ),
            (None, None) => format!(
                "-- find the statements reading {object} (pg_stat_statements), then EXPLAIN them:\n\
                 SELECT queryid, calls, mean_exec_time, query FROM pg_stat_statements WHERE query ~* '\\m{}\\M' ORDER BY total_exec_time DESC LIMIT 10;",
                t.name.replace('\'', "''")
            ),
        };
        out.push(Finding {
            kind: Kind::SeqScanHotspot,
            summary: format!(
                "{object} ({}, {:.0} rows) was read {:.0} times in full by {:.0} sequential scans ({:.0}% of the rows read from it)",
                bytes(t.size_bytes),
                rows,
                full_scans,
                u.seq_scan,
                share * 100.0
            ),
            object,
            impact: Impact {
                bytes: per_hour,
                text: format!("{}/h read sequentially", bytes(per_hour)),
            },
            evidence: json!({
                "size_bytes": t.size_bytes,
                "live_rows": t.n_live_tup,
                "seq_scans": u.seq_scan,
                "seq_tuples_read": u.seq_tup_read,
                "idx_scans": u.idx_scan,
                "idx_tuples_fetched": u.idx_tup_fetch,
                "full_table_reads": full_scans,
                "seq_share": share,
                "observed_seconds": u.observed_seconds,
                "statements": statements,
            }),
            action,
            note: None,
        });
    }
    out
}

fn missing_indexes(
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

fn unused(inputs: &Inputs, opts: &Options, coverage: &Coverage) -> Vec<Finding> {
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

/// A duration in the report's text: [`crate::units::human_duration`].
pub fn human_seconds(s: f64) -> String {
    crate::units::human_duration(s)
}

fn duplicates(inputs: &Inputs) -> Vec<Finding> {
    let Some(current) = inputs.samples.last() else {
        return Vec::new();
    };
    let stats: HashMap<i64, &IndexStat> =
        current.indexes.iter().map(|i| (i.indexrelid, i)).collect();
    let mut defs: Vec<&IndexDef> = inputs.defs.iter().filter(|d| d.valid).collect();
    defs.sort_by_key(|d| d.indexrelid);
    let mut reported: HashSet<i64> = HashSet::new();
    let mut out = Vec::new();
    for (n, a) in defs.iter().enumerate() {
        for b in &defs[n + 1..] {
            if a.relid != b.relid || a.method != b.method {
                continue;
            }
            let (Some(sa), Some(sb)) = (stats.get(&a.indexrelid), stats.get(&b.indexrelid)) else {
                continue;
            };
            let same = a.keys == b.keys
                && a.opclasses == b.opclasses
                && a.collations == b.collations
                && a.exprs == b.exprs
                && a.predicate == b.predicate
                && {
                    let mut x = a.include.clone();
                    let mut y = b.include.clone();
                    x.sort();
                    y.sort();
                    x == y
                };
            // (redundant, kept)
            // (redundant, kept): defs are sorted by oid, so `b` is the newer one.
            let pair = if same {
                match (sa.enforces.is_some(), sb.enforces.is_some()) {
                    (true, true) => None,
                    (false, true) => Some((*sa, *sb)),
                    (true, false) | (false, false) => Some((*sb, *sa)),
                }
            } else {
                prefix_pair(a, b, sa, sb)
            };
            let Some((redundant, kept)) = pair else {
                continue;
            };
            if !reported.insert(redundant.indexrelid) {
                continue;
            }
            let object = qualified(&redundant.schema, &redundant.name);
            let kept_name = qualified(&kept.schema, &kept.name);
            let kept_def = defs
                .iter()
                .find(|d| d.indexrelid == kept.indexrelid)
                .map(|d| d.definition.clone())
                .unwrap_or_default();
            let red_def = defs
                .iter()
                .find(|d| d.indexrelid == redundant.indexrelid)
                .map(|d| d.definition.clone())
                .unwrap_or_default();
            let how = if same { "duplicates" } else { "is a prefix of" };
            out.push(Finding {
                kind: Kind::DuplicateIndex,
                summary: format!(
                    "index {object} ({}) {how} {kept_name}: {kept_name} serves the same lookups",
                    bytes(redundant.size_bytes)
                ),
                object,
                impact: Impact {
                    bytes: redundant.size_bytes,
                    text: format!("{} on disk, maintained on every write", bytes(redundant.size_bytes)),
                },
                evidence: json!({
                    "relation": if same { "duplicate" } else { "prefix" },
                    "duplicate_of": kept_name,
                    "definition": red_def,
                    "duplicate_of_definition": kept_def,
                    "size_bytes": redundant.size_bytes,
                    "idx_scan_total": redundant.idx_scan,
                }),
                action: format!(
                    "DROP INDEX CONCURRENTLY {};",
                    qualified(&redundant.schema, &redundant.name)
                ),
                note: (!same).then(|| {
                    "The longer index serves lookups on the shorter one's columns, a little more slowly; keep the shorter one if those lookups are critical and the longer one is rarely used."
                        .to_string()
                }),
            });
        }
    }
    out
}

/// `(shorter, longer)` when one btree index's plain key columns are a strict prefix of the
/// other's, with the same operator classes and collations, no predicate, no INCLUDE on the
/// shorter one, and the shorter one enforcing nothing.
fn prefix_pair<'s>(
    a: &IndexDef,
    b: &IndexDef,
    sa: &'s IndexStat,
    sb: &'s IndexStat,
) -> Option<(&'s IndexStat, &'s IndexStat)> {
    if a.method != "btree" || a.exprs.is_some() || b.exprs.is_some() {
        return None;
    }
    if a.predicate.is_some() || b.predicate.is_some() {
        return None;
    }
    let is_prefix = |s: &IndexDef, l: &IndexDef| {
        s.keys.len() < l.keys.len()
            && s.include.is_empty()
            && s.keys.iter().all(Option::is_some)
            && l.keys[..s.keys.len()] == s.keys[..]
            && l.opclasses.get(..s.keys.len()) == s.opclasses.get(..s.keys.len())
            && l.collations.get(..s.keys.len()) == s.collations.get(..s.keys.len())
    };
    if is_prefix(a, b) && sa.enforces.is_none() {
        Some((sa, sb))
    } else if is_prefix(b, a) && sb.enforces.is_none() {
        Some((sb, sa))
    } else {
        None
    }
}

fn autovacuum(inputs: &Inputs) -> Vec<Finding> {
    let Some(current) = inputs.samples.last() else {
        return Vec::new();
    };
    if inputs.samples.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in &current.tables {
        let history: Vec<&TableStat> = inputs
            .samples
            .iter()
            .filter_map(|s| s.tables.iter().find(|x| x.relid == t.relid))
            .collect();
        if history.len() < 2 {
            continue;
        }
        let high = history.iter().all(|x| {
            let total = x.n_live_tup + x.n_dead_tup;
            x.n_dead_tup >= DEAD_MIN_TUPLES && total > 0.0 && x.n_dead_tup / total >= DEAD_RATIO
        });
        if !high {
            continue;
        }
        let runs: f64 = inputs
            .samples
            .windows(2)
            .filter_map(|p| {
                let (kind, _) = window::step(&p[0], &p[1]);
                let a = p[0].tables.iter().find(|x| x.relid == t.relid)?;
                let b = p[1].tables.iter().find(|x| x.relid == t.relid)?;
                Some(window::delta(kind, a.autovacuum_count, b.autovacuum_count))
            })
            .sum();
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
                "samples": history.len(),
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

/// Mean seconds per call between two captures, when calls happened and nothing was reset.
fn mean_between(a: &store::PlanCapture, b: &store::PlanCapture) -> Option<f64> {
    let calls = b.calls - a.calls;
    let seconds = b.total_seconds - a.total_seconds;
    (calls > 0.0 && seconds >= 0.0).then(|| seconds / calls)
}

/// Statements whose captured plan changed in the window, with their mean time under the
/// previous plan (between its captures, else its cumulative mean at the last of them) and under
/// the new one (between the first capture of the new plan and the newest capture). Only the
/// newest change of each statement, and only once calls under the new plan were measured.
fn plan_changes(inputs: &Inputs) -> Vec<Finding> {
    let mut by_query: BTreeMap<&str, Vec<&store::PlanCapture>> = BTreeMap::new();
    for c in inputs.plans {
        by_query.entry(c.queryid.as_str()).or_default().push(c);
    }
    let mut out = Vec::new();
    for (queryid, caps) in by_query {
        let Some(k) = (1..caps.len())
            .rev()
            .find(|&i| caps[i].plan_hash != caps[i - 1].plan_hash)
        else {
            continue;
        };
        let old = caps[k - 1];
        let old_first = caps[..k]
            .iter()
            .rev()
            .take_while(|c| c.plan_hash == old.plan_hash)
            .last()
            .copied()
            .unwrap_or(old);
        let newest = caps[caps.len() - 1];
        let Some(after) = mean_between(caps[k], newest) else {
            continue;
        };
        let before = mean_between(old_first, old)
            .or_else(|| (old.calls > 0.0).then(|| old.total_seconds / old.calls));
        let Some(before) = before else {
            continue;
        };
        let ratio = if before > 0.0 { after / before } else { 0.0 };
        let query = inputs
            .statements
            .iter()
            .find(|s| s.queryid == queryid)
            .map(|s| s.query.clone());
        out.push(Finding {
            kind: Kind::PlanChange,
            object: format!("queryid {queryid}"),
            summary: format!(
                "the plan of statement {queryid} changed around {}: mean {:.4}s before, {:.4}s after ({ratio:.1}x)",
                caps[k].taken.strftime("%Y-%m-%d %H:%M:%S UTC"),
                before,
                after
            ),
            impact: Impact {
                bytes: 0.0,
                text: format!("mean {before:.4}s -> {after:.4}s ({ratio:.1}x)"),
            },
            evidence: json!({
                "queryid": queryid,
                "query": query,
                "changed_at": caps[k].taken,
                "plan_before": old.plan_shape,
                "plan_after": newest.plan_shape,
                "mean_seconds_before": before,
                "mean_seconds_after": after,
                "mean_ratio": ratio,
                "calls_after": newest.calls - caps[k].calls,
            }),
            action: format!(
                "-- compare the plan with real values, and the statistics of its tables:\nEXPLAIN (ANALYZE, BUFFERS) {};  -- on a replica or off-peak: ANALYZE executes it",
                query.as_deref().map(str::trim).unwrap_or("<the statement>")
            ),
            note: Some(
                "The captured plan is the generic plan dbagent asks for, a proxy for what the application's sessions run. A plan change often follows an index change, new statistics (ANALYZE) or data growth."
                    .into(),
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests;
