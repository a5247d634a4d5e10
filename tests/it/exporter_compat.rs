//! postgres_exporter compatibility (`monitor.metric_names: postgres_exporter`, the default):
//! the exporter's own mixin alert rules, loaded into a real Prometheus that scrapes dbagent on
//! a primary and its standby, find every metric they read, and each rule's condition returns
//! series. The rules are read from `../shared/clients/postgres_mixin-alerts.yaml` next to the
//! repository (or `/work/shared/clients/`), never copied into it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, family, value};
use crate::support::dbagent::Agent;
use crate::support::sessions::Sessions;
use crate::support::sidecar::{Prometheus, Sidecar, promtool_check, sample};

/// The rendered mixin alert rules.
fn mixin_rules() -> PathBuf {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/clients/postgres_mixin-alerts.yaml"),
        PathBuf::from("/work/shared/clients/postgres_mixin-alerts.yaml"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the postgres_exporter mixin's rendered alert rules are missing; looked at {candidates:?}"
            )
        })
}

/// (alert name, expr) of every rule of the file.
fn rules(path: &std::path::Path) -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).expect("read the mixin rules"))
            .expect("the mixin rules are YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            if let (Some(name), Some(expr)) = (rule["alert"].as_str(), rule["expr"].as_str()) {
                out.push((name.to_string(), expr.to_string()));
            }
        }
    }
    out
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    // The aggregations, which may have `by (...)` between their name and their `(`.
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The metric names a PromQL expression reads: identifiers outside label matchers, grouping
/// clauses and strings that are neither functions, aggregations nor keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop strings, label matchers and range selectors.
    let mut plain = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{') => depth_brace += 1,
            (None, '}') => depth_brace -= 1,
            (None, '[') => depth_bracket += 1,
            (None, ']') => depth_bracket -= 1,
            (None, c) if depth_brace == 0 && depth_bracket == 0 => plain.push(c),
            _ => {}
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
                && next == Some(&'(')
            {
                skip_group = true;
                continue;
            }
            if next == Some(&'(') || KEYWORDS.contains(&word.as_str()) {
                continue;
            }
            names.insert(word);
        } else if c == '(' && skip_group {
            // Skip the label list of a grouping clause.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
            i += 1;
        } else {
            if !c.is_whitespace() {
                skip_group = false;
            }
            i += 1;
        }
    }
    names
}

/// The rule's condition with every comparison made a `bool` one: it returns the series of
/// the comparison's left-hand side (0 or 1) instead of filtering them, so that it has series
/// whenever the signals are there, whether or not the alert would fire.
fn as_bool(expr: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut brace = 0;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{') => brace += 1,
            (None, '}') => brace -= 1,
            (None, '>' | '<' | '=' | '!') if brace == 0 => {
                let two = chars.get(i + 1) == Some(&'=');
                out.push(c);
                if two {
                    out.push('=');
                    i += 1;
                }
                out.push_str(" bool ");
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

#[test]
fn the_rule_parsing_finds_metric_names_and_makes_comparisons_bool() {
    let names = metric_names(
        "max by(datname, job) ((pg_locks_count{datname!~\"template.*\"}) / on(job,instance) group_left(server) (pg_settings_max_locks_per_transaction{} * pg_settings_max_connections{})) > 0.20",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "pg_locks_count",
            "pg_settings_max_connections",
            "pg_settings_max_locks_per_transaction"
        ]
    );
    let names = metric_names("rate(x_total{}[5m]) * on(a) group_left y + irate(z[1m])");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["x_total", "y", "z"]);
    assert_eq!(
        as_bool("(a{b!=\"c\"} > 3600) and on (j) (c == 1)"),
        "(a{b!=\"c\"} > bool  3600) and on (j) (c == bool  1)"
    );
}

/// The metric names of the community dashboard for postgres_exporter (its panels' queries).
const COMMUNITY_DASHBOARD: &[&str] = &[
    "pg_locks_count",
    "pg_postmaster_start_time_seconds",
    "pg_settings_effective_cache_size_bytes",
    "pg_settings_maintenance_work_mem_bytes",
    "pg_settings_max_connections",
    "pg_settings_max_parallel_workers",
    "pg_settings_max_wal_size_bytes",
    "pg_settings_max_worker_processes",
    "pg_settings_random_page_cost",
    "pg_settings_seq_page_cost",
    "pg_settings_shared_buffers_bytes",
    "pg_settings_work_mem_bytes",
    "pg_stat_activity_count",
    "pg_stat_bgwriter_buffers_alloc",
    "pg_stat_bgwriter_buffers_backend",
    "pg_stat_bgwriter_buffers_backend_fsync",
    "pg_stat_bgwriter_buffers_checkpoint",
    "pg_stat_bgwriter_buffers_clean",
    "pg_stat_bgwriter_checkpoint_sync_time",
    "pg_stat_bgwriter_checkpoint_write_time",
    "pg_stat_database_blks_hit",
    "pg_stat_database_blks_read",
    "pg_stat_database_conflicts",
    "pg_stat_database_deadlocks",
    "pg_stat_database_temp_bytes",
    "pg_stat_database_tup_deleted",
    "pg_stat_database_tup_fetched",
    "pg_stat_database_tup_inserted",
    "pg_stat_database_tup_returned",
    "pg_stat_database_tup_updated",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_static",
    "pg_up",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
];

/// An agent polling `pg` every second with the default metric names.
fn agent_for(pg: &Cluster) -> Agent {
    Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nmonitor:\n  interval: 1s\n",
        pg.conninfo()
    ))
}

pg_test!(
    the_postgres_exporter_mixin_rules_find_their_metrics_and_evaluate,
    |v| {
        let rules_path = mixin_rules();
        let (ok, out) = {
            let o = std::process::Command::new("promtool")
                .args(["check", "rules"])
                .arg(&rules_path)
                .output()
                .expect("promtool (Debian package prometheus)");
            (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        };
        assert!(ok, "promtool check rules {}:\n{out}", rules_path.display());
        let rules = rules(&rules_path);
        assert!(rules.len() >= 10, "{rules:?}");

        let primary = Cluster::start(v, ClusterOptions::default());
        primary.psql(
            "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g; DELETE FROM t WHERE g < 100; \
             ANALYZE t; SELECT pg_create_physical_replication_slot('mixin_slot')",
        );
        let replica = primary.start_replica();
        let (pa, ra) = (agent_for(&primary), agent_for(&replica));
        let (ps, rs) = (Sidecar::start(&pa), Sidecar::start(&ra));
        let polled = |s: &Sidecar| {
            s.wait_metrics("two polls", Duration::from_secs(30), |m| {
                sample(m, "pg_up") == Some(1.0)
                    && sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 2.0
            })
        };
        let exported: String = polled(&ps) + &polled(&rs);
        let (_, complaints) = promtool_check(&polled(&ps));
        eprintln!("promtool check metrics (postgres_exporter names):\n{complaints}");

        // (a) Every metric name each rule reads is served.
        let mut missing = Vec::new();
        for (name, expr) in &rules {
            for metric in metric_names(expr) {
                if !exported.contains(&format!("\n# TYPE {metric} ")) {
                    missing.push(format!("{name}: {metric}"));
                }
            }
        }

        // The names the widely used community Grafana dashboard for postgres_exporter reads
        // (Grafana.com dashboard "PostgreSQL Database"), served as well.
        for metric in COMMUNITY_DASHBOARD {
            // PostgreSQL 17 dropped the backend write columns: nobody serves them there.
            let gone = metric.starts_with("pg_stat_bgwriter_buffers_backend") && v.major() >= 17;
            let served = exported.contains(&format!("\n# TYPE {metric} "));
            if !gone && !served {
                missing.push(format!("community dashboard: {metric}"));
            }
        }

        // (b) Each rule's condition, comparisons made bool, returns series in Prometheus.
        let targets = [
            ps.base.trim_start_matches("http://"),
            rs.base.trim_start_matches("http://"),
        ];
        let prom = Prometheus::scrape_with_rules(&targets, Some(&rules_path));
        prom.wait_for(
            "count(up{job=\"dbagent\"} == 1)",
            Duration::from_secs(60),
            |v| v == 2.0,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let empty = loop {
            let empty: Vec<String> = rules
                .iter()
                .filter_map(|(name, expr)| match prom.series(&as_bool(expr)) {
                    Ok(n) if n > 0 => None,
                    Ok(_) => Some(format!("{name}: no series for {}", as_bool(expr))),
                    Err(e) => Some(format!("{name}: {e}")),
                })
                .collect();
            if empty.is_empty() || Instant::now() > deadline {
                break empty;
            }
            std::thread::sleep(Duration::from_secs(2));
        };
        assert!(
            missing.is_empty() && empty.is_empty(),
            "metric names the mixin reads that dbagent does not serve:\n{}\n\nrules whose condition returns no series:\n{}",
            missing.join("\n"),
            empty.join("\n")
        );
    }
);

// The exporter's families of locks, activity and settings, with its labels, label values
// and units: lower-case lock modes with a 0 for each mode a database has none of, activity
// grouped by database and state with zeros, settings converted to bytes and seconds.
pg_test!(
    locks_activity_and_settings_come_with_the_exporters_labels_and_units,
    |v| {
        use dbagent::collect::{connections::Connections, locks::Locks, settings::Settings};
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql("CREATE TABLE t (id int)");
        let mut sessions = Sessions::new(&pg);
        let s = sessions.open();
        sessions.execute(s, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
        let poller = Poller::new(&pg);

        let out = poller.run(&mut Locks).expect("locks");
        let locks = family(&out, "pg_locks_count").expect("pg_locks_count");
        let modes: BTreeSet<&str> = locks
            .samples
            .iter()
            .filter(|s| s.labels.contains(&("datname", "postgres".to_string())))
            .map(|s| s.labels[1].1.as_str())
            .collect();
        assert_eq!(modes.len(), 9, "{modes:?}");
        assert!(modes.iter().all(|m| *m == m.to_lowercase()), "{modes:?}");
        assert!(
            value(
                &out,
                "pg_locks_count",
                &[("datname", "postgres"), ("mode", "accessexclusivelock")]
            )
            .unwrap()
                >= 1.0
        );
        assert_eq!(
            value(
                &out,
                "pg_locks_count",
                &[("datname", "template1"), ("mode", "sireadlock")]
            ),
            Some(0.0)
        );

        let out = poller.run(&mut Connections).expect("connections");
        let count = family(&out, "pg_stat_activity_count").expect("pg_stat_activity_count");
        let keys: Vec<&str> = count.samples[0].labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "datname",
                "state",
                "usename",
                "application_name",
                "backend_type",
                "wait_event_type",
                "wait_event"
            ]
        );
        assert!(
            value(
                &out,
                "pg_stat_activity_count",
                &[("datname", "postgres"), ("state", "idle in transaction")]
            )
            .unwrap()
                >= 1.0
        );
        assert_eq!(
            value(
                &out,
                "pg_stat_activity_count",
                &[("datname", "template1"), ("state", "disabled")]
            ),
            Some(0.0)
        );
        assert!(
            value(
                &out,
                "pg_stat_activity_max_tx_duration",
                &[("datname", "postgres"), ("state", "idle in transaction")]
            )
            .unwrap()
                >= 0.0
        );

        let out = poller.run(&mut Settings).expect("settings");
        let bytes: f64 = pg
            .psql("SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'")
            .trim()
            .parse()
            .expect("shared_buffers");
        assert_eq!(
            value(&out, "pg_settings_shared_buffers_bytes", &[]),
            Some(bytes)
        );
        let timeout: f64 = pg
            .psql("SELECT setting::float8 FROM pg_settings WHERE name = 'checkpoint_timeout'")
            .trim()
            .parse()
            .expect("checkpoint_timeout");
        assert_eq!(
            value(&out, "pg_settings_checkpoint_timeout_seconds", &[]),
            Some(timeout)
        );
        let fsync = pg.psql("SELECT setting FROM pg_settings WHERE name = 'fsync'");
        let fsync = if fsync.trim() == "on" { 1.0 } else { 0.0 };
        assert_eq!(value(&out, "pg_settings_fsync", &[]), Some(fsync));
        assert!(
            family(&out, "pg_settings_max_connections").is_none(),
            "left to connections"
        );
        let major = v.major().to_string();
        let stat = family(&out, "pg_static").expect("pg_static");
        let short = &stat.samples[0].labels[0].1;
        assert!(
            short.starts_with(&format!("{major}.")) && short.ends_with(".0"),
            "{short}"
        );
        assert!(stat.samples[0].labels[1].1.starts_with("PostgreSQL "));
        assert!(value(&out, "pg_wal_segments", &[]).unwrap() >= 1.0);
        assert!(value(&out, "pg_wal_size_bytes", &[]).unwrap() >= 16.0 * 1024.0 * 1024.0);
        assert_eq!(
            value(
                &out,
                "pg_database_connection_limit",
                &[("datname", "postgres")]
            ),
            Some(-1.0)
        );

        let out = poller
            .run(&mut dbagent::collect::databases::Databases::default())
            .expect("databases");
        let confl = family(&out, "pg_stat_database_conflicts_confl_lock").expect("conflicts");
        let s = confl
            .samples
            .iter()
            .find(|s| s.labels[1].1 == "postgres")
            .expect("postgres");
        assert_eq!(s.labels[0].0, "datid");
        assert!(s.labels[0].1.parse::<u32>().is_ok(), "{s:?}");
        assert_eq!(s.value, 0.0);
    }
);

// A vacuum that waits for a page a cursor keeps pinned shows in pg_stat_progress_vacuum_*:
// one series per phase, 1 for the one it is in, with the exporter's labels.
pg_test!(
    a_running_vacuum_shows_in_the_exporters_progress_families,
    |v| {
        use dbagent::collect::progress::VacuumProgress;
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
        let poller = Poller::new(&pg);
        let out = poller.run(&mut VacuumProgress).expect("progress");
        let running = |out: &dbagent::collect::Output| {
            family(out, "pg_stat_progress_vacuum_phase").is_some_and(|f| !f.samples.is_empty())
        };
        assert!(!running(&out));

        let mut sessions = Sessions::new(&pg);
        let (pin, vac) = (sessions.open(), sessions.open());
        sessions.execute(
            pin,
            "BEGIN; DECLARE c CURSOR FOR SELECT * FROM t; FETCH 1 FROM c",
        );
        // FREEZE makes the vacuum aggressive: it must wait for the cleanup lock on the pinned page.
        let vacuum = sessions.spawn(vac, "VACUUM (FREEZE) t");
        let deadline = Instant::now() + Duration::from_secs(30);
        let out = loop {
            let out = poller.run(&mut VacuumProgress).expect("progress");
            if running(&out) || Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let phases = family(&out, "pg_stat_progress_vacuum_phase").expect("a running vacuum");
        assert_eq!(phases.samples.len(), 7, "{phases:?}");
        let labels = [
            ("datname", "postgres"),
            ("relname", "t"),
            ("phase", "scanning heap"),
        ];
        assert_eq!(
            value(&out, "pg_stat_progress_vacuum_phase", &labels),
            Some(1.0)
        );
        assert_eq!(
            value(
                &out,
                "pg_stat_progress_vacuum_phase",
                &[("relname", "t"), ("phase", "initializing")]
            ),
            Some(0.0)
        );
        assert!(
            value(
                &out,
                "pg_stat_progress_vacuum_heap_blks",
                &[("relname", "t")]
            )
            .unwrap()
                >= 1.0
        );
        sessions.execute(pin, "COMMIT");
        assert!(sessions.finished(vacuum, Duration::from_secs(30)));
    }
);
