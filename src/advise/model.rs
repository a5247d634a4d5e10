//! The advisor's model: the kinds of finding, a finding with its impact and evidence, what a
//! run produced ([`Advice`]), its settings ([`Options`]), its errors, and the pure inputs the
//! rules work on ([`Inputs`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::window::Coverage;
use super::{explain, sample::IndexDef, store};
use crate::config::MonitorConfig;

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
    /// Kind-specific figures (documented in docs/advisor.md).
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
    pub(super) fn query(what: &'static str, e: &tokio_postgres::Error) -> AdviseError {
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
    /// This run's sample (None: nothing to judge).
    pub current: Option<&'a super::sample::Sample>,
    /// The window folded from the stored samples and this run's (pushed last).
    pub window: &'a super::window::Window,
    pub defs: &'a [IndexDef],
    pub statements: &'a [explain::Statement],
    pub hints: &'a [PlanHint],
    /// Plans captured in the window (stored ones and this run's), oldest first.
    pub plans: &'a [store::PlanCapture],
    pub since: jiff::Timestamp,
}
