//! Unit tests of the findings on hand-made samples (the integration tests in tests/it/advise.rs
//! drive the same logic through real servers).

use std::time::Duration;

use super::rules::mentions;
use super::sample::{IndexDef, IndexStat, Sample, TableStat};
use super::*;

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn opts() -> Options {
    Options {
        window: Duration::from_secs(7 * 86400),
        min_observed: Duration::from_secs(60),
        retention: Duration::from_secs(35 * 86400),
        min_table_size: 1 << 20,
        hotspot_min_scans: 10.0,
        explain_top: 10,
    }
}

fn table(relid: i64, name: &str) -> TableStat {
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

fn index(id: i64, relid: i64, name: &str, enforces: Option<&str>) -> IndexStat {
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

fn def(id: i64, relid: i64, keys: &[&str]) -> IndexDef {
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

fn sample(secs: i64, tables: Vec<TableStat>, indexes: Vec<IndexStat>) -> Sample {
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

fn run(samples: &[Sample], defs: &[IndexDef], hints: &[PlanHint]) -> Vec<Finding> {
    findings(
        &Inputs {
            samples,
            defs,
            statements: &[],
            hints,
            plans: &[],
            since: at(-7 * 86400),
        },
        &opts(),
    )
}

fn scanned(mut t: TableStat, seq_scans: f64, idx_scans: f64) -> TableStat {
    t.seq_scan = seq_scans;
    t.seq_tup_read = seq_scans * t.reltuples;
    t.idx_scan = idx_scans;
    t.idx_tup_fetch = idx_scans * 10.0;
    t
}

#[test]
fn advise_hotspot_needs_full_reads_and_a_seq_majority_and_ends_with_an_index_change() {
    let t = table(1, "claims");
    let pk = index(10, 1, "claims_pkey", Some("primary key"));
    let s = vec![
        sample(0, vec![scanned(t.clone(), 0.0, 0.0)], vec![pk.clone()]),
        sample(3600, vec![scanned(t.clone(), 40.0, 5.0)], vec![pk.clone()]),
    ];
    let f = run(&s, &[], &[]);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, Kind::SeqScanHotspot);
    assert_eq!(f[0].object, "public.claims");
    assert_eq!(f[0].evidence["full_table_reads"], 40.0);
    // 40 reads of 100 MB in one hour.
    assert!(
        (f[0].impact.bytes - 4e9).abs() < 1.0,
        "{}",
        f[0].impact.bytes
    );

    // Few full reads: not hot.
    let few = vec![
        s[0].clone(),
        sample(3600, vec![scanned(t.clone(), 5.0, 0.0)], vec![pk.clone()]),
    ];
    assert!(run(&few, &[], &[]).is_empty());

    // An index appears, then the table is read by it: the hot spot is gone, although the
    // window still holds the sequential scans made before the index existed.
    let mut idx = index(11, 1, "claims_county", None);
    idx.idx_scan = 500.0;
    let mut s2 = s.clone();
    s2.push(sample(
        7200,
        vec![scanned(t.clone(), 41.0, 200.0)],
        vec![pk.clone(), idx.clone()],
    ));
    s2.push(sample(10800, vec![scanned(t, 41.0, 700.0)], vec![pk, idx]));
    let f = run(&s2, &[], &[]);
    assert!(f.iter().all(|f| f.kind != Kind::SeqScanHotspot), "{f:#?}");
}

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

#[test]
fn advise_duplicates_keep_the_constraint_and_skip_unique_prefixes() {
    let t = table(1, "t");
    let stats = vec![
        index(2, 1, "t_code_key", Some("unique constraint")),
        index(3, 1, "t_code_idx", None),
        index(4, 1, "t_a_key", Some("unique index")),
        index(5, 1, "t_a_b", None),
        index(6, 1, "t_x", None),
        index(7, 1, "t_x_y", None),
    ];
    let defs = vec![
        def(2, 1, &["code"]),
        def(3, 1, &["code"]),
        def(4, 1, &["a"]),
        def(5, 1, &["a", "b"]),
        def(6, 1, &["x"]),
        def(7, 1, &["x", "y"]),
    ];
    let s = vec![sample(0, vec![t], stats)];
    let f = run(&s, &defs, &[]);
    let dup: Vec<(&str, &str)> = f
        .iter()
        .map(|f| {
            (
                f.object.as_str(),
                f.evidence["duplicate_of"].as_str().unwrap(),
            )
        })
        .collect();
    // The plain copy of the unique constraint goes; the unique t_a_key is no redundant prefix.
    assert_eq!(
        dup,
        vec![
            ("public.t_x", "public.t_x_y"),
            ("public.t_code_idx", "public.t_code_key"),
        ]
    );
}

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

#[test]
fn advise_quote_ident_and_mentions() {
    assert_eq!(quote_ident("claims"), "claims");
    assert_eq!(quote_ident("Claims"), "\"Claims\"");
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert!(mentions("SELECT * FROM public.Claims c", "claims"));
    assert!(!mentions("SELECT * FROM claims_archive", "claims"));
    assert!(mentions("select 1 from x join claims on true", "claims"));
}

#[test]
fn advise_plan_change_compares_the_mean_under_each_plan() {
    let cap = |secs: i64, hash: &str, calls: f64, total: f64| store::PlanCapture {
        taken: at(secs),
        queryid: "7".into(),
        plan_hash: hash.into(),
        plan_shape: format!("plan {hash}"),
        calls,
        total_seconds: total,
    };
    let s = vec![sample(0, vec![], vec![])];
    let plans = vec![
        cap(0, "a", 100.0, 1.0),
        cap(60, "a", 200.0, 2.0),
        cap(120, "b", 210.0, 3.0),
        cap(180, "b", 310.0, 53.0),
    ];
    let f = findings(
        &Inputs {
            samples: &s,
            defs: &[],
            statements: &[],
            hints: &[],
            plans: &plans,
            since: at(-7 * 86400),
        },
        &opts(),
    );
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, Kind::PlanChange);
    assert_eq!(f[0].evidence["mean_seconds_before"], 0.01);
    assert_eq!(f[0].evidence["mean_seconds_after"], 0.5);
    assert_eq!(f[0].evidence["mean_ratio"], 50.0);
    assert_eq!(f[0].evidence["plan_before"], "plan a");
    assert_eq!(f[0].evidence["plan_after"], "plan b");
    // No call under the new plan yet: nothing to compare.
    let f = findings(
        &Inputs {
            samples: &s,
            defs: &[],
            statements: &[],
            hints: &[],
            plans: &plans[..3],
            since: at(-7 * 86400),
        },
        &opts(),
    );
    assert!(f.is_empty(), "{f:#?}");
}
