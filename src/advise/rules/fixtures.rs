//! Hand-made samples for the rules' unit tests (the integration tests in tests/it/advise.rs
//! drive the same logic through real servers). Each test runs every rule through
//! [`findings`], as the advisor does.

use std::time::Duration;

use super::findings;
use crate::advise::model::{Finding, Inputs, Options, PlanHint};
use crate::advise::sample::{IndexDef, IndexStat, Sample, TableStat};

pub(super) fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

pub(super) fn opts() -> Options {
    Options {
        window: Duration::from_secs(7 * 86400),
        min_observed: Duration::from_secs(60),
        retention: Duration::from_secs(35 * 86400),
        min_table_size: 1 << 20,
        hotspot_min_scans: 10.0,
        explain_top: 10,
    }
}

pub(super) fn table(relid: i64, name: &str) -> TableStat {
    TableStat {
        relid,
        schema: "public".into(),
        name: name.into(),
        seq_scan: 0.0,
        seq_tup_read: 0.0,
        idx_scan: 0.0,
        idx_tup_fetch: 0.0,
        n_live_tup: 100_000.0,
        n_dead_tup: 0.0,
        autovacuum_count: 0.0,
        size_bytes: 100e6,
        reltuples: 100_000.0,
        last_seq_scan: None,
    }
}

pub(super) fn index(id: i64, relid: i64, name: &str, enforces: Option<&str>) -> IndexStat {
    IndexStat {
        indexrelid: id,
        relid,
        schema: "public".into(),
        table: "t".into(),
        name: name.into(),
        idx_scan: 0.0,
        size_bytes: 1e6 * id as f64,
        enforces: enforces.map(str::to_string),
        last_idx_scan: None,
    }
}

pub(super) fn def(id: i64, relid: i64, keys: &[&str]) -> IndexDef {
    IndexDef {
        indexrelid: id,
        relid,
        method: "btree".into(),
        keys: keys.iter().map(|k| Some(k.to_string())).collect(),
        include: Vec::new(),
        opclasses: vec![1978; keys.len()],
        collations: vec![0; keys.len()],
        exprs: None,
        predicate: None,
        valid: true,
        definition: format!("CREATE INDEX ... ({})", keys.join(", ")),
    }
}

pub(super) fn sample(secs: i64, tables: Vec<TableStat>, indexes: Vec<IndexStat>) -> Sample {
    Sample {
        taken: at(secs),
        dbname: "app".into(),
        stats_reset: None,
        postmaster_start: 1.0,
        in_recovery: false,
        tables,
        indexes,
    }
}

pub(super) fn run(samples: &[Sample], defs: &[IndexDef], hints: &[PlanHint]) -> Vec<Finding> {
    findings(
        &Inputs {
            window: &crate::advise::window::Window::of(samples),
            defs,
            statements: &[],
            hints,
            plans: &[],
            since: at(-7 * 86400),
        },
        &opts(),
    )
}

pub(super) fn scanned(mut t: TableStat, seq_scans: f64, idx_scans: f64) -> TableStat {
    t.seq_scan = seq_scans;
    t.seq_tup_read = seq_scans * t.reltuples;
    t.idx_scan = idx_scans;
    t.idx_tup_fetch = idx_scans * 10.0;
    t
}
