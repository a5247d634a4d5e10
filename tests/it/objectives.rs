//! Recovery objectives end to end, on real clusters: `dbagent_rpo_seconds` grows while
//! archiving is broken, the shipped RPO rule (compared with `objectives.rpo`) fires to a
//! webhook, `check` grades `rpo` and advises on `archive_timeout`; after the fix the RPO drops
//! back and the alert resolves. A restore drill slower than `objectives.rto` makes `check` warn
//! (`rto`) and the shipped RTO rule fire.

use std::time::{Duration, Instant};

use crate::backup::{archived_cluster, take_backup};
use crate::pg_test;
use crate::restore_cmd::switch_and_wait;
use crate::support::alerting::{alerts_with, recorder_runtime, wait_notification};
use crate::support::cluster::Cluster;
use crate::support::dbagent::{Run, run_in};
use crate::support::recorder::Recorder;
use crate::support::sidecar::{Sidecar, sample};

/// The status and message of one check of `check --json`.
fn check_item(run: &Run, name: &str) -> (String, String) {
    let j = run.json();
    let c = j["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {j}"))
        .clone();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        format!(
            "{}; fix: {}",
            c["message"].as_str().unwrap_or_default(),
            c["action"].as_str().unwrap_or_default()
        ),
    )
}

/// Sets a server parameter, reloads, and waits until new sessions see `shown`.
fn set_and_reload(pg: &mut Cluster, key: &str, value: &str, shown: &str) {
    pg.set_conf(key, value);
    pg.reload();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql(&format!("SHOW {key}")) != shown {
        assert!(Instant::now() < deadline, "{key} = {value} never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pg_test!(
    rpo_grows_while_archiving_is_broken_fires_the_rpo_alert_and_drops_back_after_the_fix,
    |v| {
        let rt = recorder_runtime();
        let rec = rt.block_on(Recorder::start(200, "ok"));
        let (agent, mut pg) = archived_cluster(v);
        // The sidecar runs with a 5s RPO target, so the alert fires within seconds of the
        // break. `check` reads a second config with a 1h target: its rpo verdict then depends
        // on archiving only, not on how many seconds passed since the last switch.
        let yaml = |rpo: &str| {
            format!(
                "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 2s\nrepository:\n  path: {}\nstate_dir: {}\nmonitor:\n  interval: 1s\nobjectives:\n  rpo: {rpo}\n  rto: 30m\n",
                pg.conninfo(),
                agent.repo().display(),
                agent.dir().join("state").display()
            )
        };
        agent.set_yaml(&yaml("5s"));
        let check_config = agent.dir().join("check.yml");
        std::fs::write(&check_config, yaml("1h")).expect("write check.yml");
        agent.share_with_postgres();
        let check = || {
            run_in(
                agent.dir(),
                &[
                    "--config",
                    check_config.to_str().expect("utf-8"),
                    "check",
                    "--json",
                ],
                &[],
            )
        };
        std::fs::write(
            agent.dir().join("alerts.yml"),
            alerts_with("RpoAboveTarget", &rec.url("/hook")),
        )
        .expect("write alerts.yml");

        // Archiving works.
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        switch_and_wait(|s| pg.psql(s));
        let run = check();
        let (status, msg) = check_item(&run, "rpo");
        assert_eq!(status, "ok", "{msg}");
        // archive_timeout is off: no RPO target can be promised, and check says what to set.
        let (status, msg) = check_item(&run, "archive_timeout");
        assert_eq!(status, "warning", "{msg}");
        assert!(
            msg.contains("RPO target 1h cannot be met: archive_timeout is 0 (off)")
                && msg.contains("ALTER SYSTEM SET archive_timeout = '60s'"),
            "{msg}"
        );
        let sidecar = Sidecar::start(&agent);
        let m = sidecar.wait_metrics("the RPO", Duration::from_secs(30), |m| {
            sample(m, "dbagent_rpo_seconds").is_some()
        });
        assert_eq!(sample(&m, "dbagent_rpo_target_seconds"), Some(5.0), "{m}");
        assert_eq!(
            sample(&m, "dbagent_rto_target_seconds"),
            Some(1800.0),
            "{m}"
        );

        // Break archiving, write and switch: the archive falls behind the server.
        set_and_reload(&mut pg, "archive_command", "false", "false");
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()");
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
        let first = sidecar.wait_metrics(
            "the RPO to pass the 5s target",
            Duration::from_secs(60),
            |m| sample(m, "dbagent_rpo_seconds").is_some_and(|r| r > 5.0),
        );
        let first = sample(&first, "dbagent_rpo_seconds").unwrap_or_default();
        sidecar.wait_metrics("the RPO to keep growing", Duration::from_secs(30), |m| {
            sample(m, "dbagent_rpo_seconds").is_some_and(|r| r > first + 1.0)
        });
        let firing = wait_notification(&rec, "firing", &sidecar);
        let alert = &firing.body["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "RpoAboveTarget", "{alert}");
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .unwrap_or_default()
                .ends_with(" over 5"),
            "{alert}"
        );
        // With the 5s target `check` is CRITICAL on rpo (archiving is broken: the age only grows).
        let run = agent.run(&["check", "--json"]);
        assert_eq!(run.code, 2, "{}", run.all());
        let (status, msg) = check_item(&run, "rpo");
        assert_eq!(status, "critical", "{msg}");
        assert!(msg.contains("above the target 5s"), "{msg}");

        // Fix it: the backlog is archived, the RPO drops back and the alert resolves.
        let command = agent.archive_command();
        set_and_reload(&mut pg, "archive_command", &command, &command);
        switch_and_wait(|s| pg.psql(s));
        sidecar.wait_metrics("the RPO to drop back", Duration::from_secs(60), |m| {
            sample(m, "dbagent_rpo_seconds").is_some_and(|r| r < 5.0)
        });
        let resolved = wait_notification(&rec, "resolved", &sidecar);
        assert_eq!(
            resolved.body["alerts"][0]["fingerprint"],
            firing.body["alerts"][0]["fingerprint"]
        );
        let (status, msg) = check_item(&check(), "rpo");
        assert_eq!(status, "ok", "{msg}");
    }
);

/// A config for `agent` against `pg` with this RPO target, a 1s poll and the server's binaries.
fn objectives_yaml(agent: &crate::support::dbagent::Agent, pg: &Cluster, rpo: &str) -> String {
    format!(
        "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\n  connect_timeout: 2s\nrepository:\n  path: {}\nstate_dir: {}\nbackup:\n  wal_timeout: 60s\nmonitor:\n  interval: 1s\nobjectives:\n  rpo: {rpo}\n  rto: 30m\n",
        pg.conninfo(),
        pg.version().bin_dir().display(),
        agent.repo().display(),
        agent.dir().join("state").display()
    )
}

/// Runs `check --json` until its `rpo` check has `status`, or panics with the last answer.
fn wait_rpo_check(agent: &crate::support::dbagent::Agent, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (got, msg) = check_item(&agent.run(&["check", "--json"]), "rpo");
        if got == status {
            return msg;
        }
        assert!(
            Instant::now() < deadline,
            "the rpo check stayed {got}, never {status}: {msg}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pg_test!(
    an_idle_primary_risks_nothing_but_an_unarchived_commit_counts,
    |v| {
        let (agent, pg) = archived_cluster(v);
        // A 1s target: anything but RPO 0 is above it.
        agent.set_yaml(&objectives_yaml(&agent, &pg, "1s"));
        agent.share_with_postgres();
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        take_backup(&agent);
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
        switch_and_wait(|s| pg.psql(s));
        // An idle server still writes: a checkpoint and its standby snapshot, which
        // archive_timeout does not switch for. None of it is a transaction.
        pg.psql("CHECKPOINT");
        let run = agent.run(&["check", "--json"]);
        let (status, msg) = check_item(&run, "rpo");
        assert_eq!(status, "ok", "{msg}");
        assert!(
            msg.starts_with("RPO 0s") && msg.contains("holds no commit"),
            "{msg}"
        );
        let sidecar = Sidecar::start(&agent);
        let m = sidecar.wait_metrics("the RPO", Duration::from_secs(30), |m| {
            sample(m, "dbagent_rpo_seconds").is_some()
        });
        assert_eq!(sample(&m, "dbagent_rpo_seconds"), Some(0.0), "{m}");
        let (code, body) = sidecar.get("/api/v1/status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        assert_eq!(
            status["repository"]["newest_wal"]["rpo_seconds"], 0.0,
            "{status}"
        );
        assert_eq!(
            status["sections"]["recovery"]["basis"], "no_unarchived_commit",
            "{status}"
        );

        // One committed row the archive lacks (archive_timeout is off, nothing switches).
        pg.psql("INSERT INTO t VALUES (-1)");
        sidecar.wait_metrics(
            "the RPO to count the unarchived commit",
            Duration::from_secs(30),
            |m| sample(m, "dbagent_rpo_seconds").is_some_and(|r| r > 0.0),
        );
        let msg = wait_rpo_check(&agent, "critical");
        assert!(
            msg.contains("committed transactions are not archived yet"),
            "{msg}"
        );
        // Archived: nothing is at risk again.
        switch_and_wait(|s| pg.psql(s));
        sidecar.wait_metrics("the RPO to drop to 0", Duration::from_secs(30), |m| {
            sample(m, "dbagent_rpo_seconds") == Some(0.0)
        });
        let msg = wait_rpo_check(&agent, "ok");
        assert!(msg.starts_with("RPO 0s"), "{msg}");
    }
);

pg_test!(
    rpo_counts_from_the_oldest_unarchived_wal_when_archiving_never_worked,
    |v| {
        let rt = recorder_runtime();
        let rec = rt.block_on(Recorder::start(200, "ok"));
        let (agent, pg) = crate::backup::stalled_archiving_cluster(v, "60s");
        agent.set_yaml(&objectives_yaml(&agent, &pg, "5s"));
        agent.share_with_postgres();
        std::fs::write(
            agent.dir().join("alerts.yml"),
            alerts_with("RpoAboveTarget", &rec.url("/hook")),
        )
        .expect("write alerts.yml");
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i; SELECT pg_switch_wal()");
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
        assert!(
            !agent.repo().join("repo.json").exists(),
            "nothing may have been archived"
        );
        let sidecar = Sidecar::start(&agent);
        sidecar.wait_metrics(
            "the RPO to pass the 5s target with nothing archived",
            Duration::from_secs(60),
            |m| sample(m, "dbagent_rpo_seconds").is_some_and(|r| r > 5.0),
        );
        let firing = wait_notification(&rec, "firing", &sidecar);
        assert_eq!(
            firing.body["alerts"][0]["labels"]["alertname"], "RpoAboveTarget",
            "{:#?}",
            firing.body
        );
        let (status, msg) = check_item(&agent.run(&["check", "--json"]), "rpo");
        assert_eq!(status, "critical", "{msg}");
        assert!(
            msg.contains("no WAL of the server's timeline history")
                && msg.contains("oldest WAL the archive lacks"),
            "{msg}"
        );
    }
);

pg_test!(
    rpo_check_and_drill_follow_the_primarys_history_after_a_copy_archived_a_newer_timeline,
    |v| {
        let (agent, mut pg) = archived_cluster(v);
        agent.set_yaml(&objectives_yaml(&agent, &pg, "5s"));
        agent.share_with_postgres();
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        let backup = take_backup(&agent);
        let id = backup["id"].as_str().expect("backup id").to_string();
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
        switch_and_wait(|s| pg.psql(s));

        // A copy restored from the backup elsewhere, promoted, archiving timeline 2 into the
        // same repository.
        let copy = crate::support::restore::promoted_copy_archiving(
            v,
            &agent.repo(),
            &id,
            &agent.restore_command(),
            &agent.archive_command(),
        );
        copy.psql("INSERT INTO t SELECT generate_series(1, 500)");
        switch_and_wait(|s| copy.psql(s));
        let history = agent.repo().join("wal");
        assert!(
            std::fs::read_dir(&history)
                .expect("wal dir")
                .filter_map(|e| e.ok())
                .any(|e| e
                    .file_name()
                    .to_string_lossy()
                    .starts_with("00000002.history")),
            "the copy archived timeline 2"
        );

        // The primary keeps writing on timeline 1 with archiving broken: its commits are at
        // risk whatever timeline 2's file names say.
        set_and_reload(&mut pg, "archive_command", "false", "false");
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()");
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
        let msg = wait_rpo_check(&agent, "critical");
        assert!(
            msg.contains("above the target 5s")
                && msg.contains("not counted: timeline 2")
                && msg.contains("00000001"),
            "{msg}"
        );
        let sidecar = Sidecar::start(&agent);
        sidecar.wait_metrics(
            "the RPO to pass the 5s target",
            Duration::from_secs(60),
            |m| sample(m, "dbagent_rpo_seconds").is_some_and(|r| r > 5.0),
        );
        let (_, body) = sidecar.get("/api/v1/status");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        assert_eq!(
            status["repository"]["newest_wal"]["timeline"], 1,
            "{status}"
        );
        drop(sidecar);

        // The drill restores along the newest timeline today: it must not pass on the copy's
        // branch, and it says which branch it replayed.
        let drill = agent.run_copy(&["drill", "--json"]);
        let json = drill.json();
        assert_eq!(json["primary_timeline"], 1, "{json}");
        if json["ok"] == true {
            assert_eq!(json["replayed_timeline"], 1, "{json}");
        } else {
            assert_eq!(drill.code, 1, "{}", drill.all());
            let reason = json["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("replayed timeline 2")
                    && reason.contains("not on the primary's timeline history 1 (from the server)")
                    && reason.contains("a promotion on host"),
                "{reason}"
            );
        }

        // Archiving fixed: the primary's backlog arrives and RPO is back within the target.
        let command = agent.archive_command();
        set_and_reload(&mut pg, "archive_command", &command, &command);
        switch_and_wait(|s| pg.psql(s));
        let msg = wait_rpo_check(&agent, "ok");
        assert!(msg.contains("not counted: timeline 2"), "{msg}");
    }
);

pg_test!(
    a_drill_slower_than_the_rto_target_warns_in_check_and_fires_the_rto_alert,
    |v| {
        let rt = recorder_runtime();
        let rec = rt.block_on(Recorder::start(200, "ok"));
        let (agent, pg) = archived_cluster(v);
        // A target no real restore meets, so the measured RTO is above it.
        let yaml = |rto: &str| {
            format!(
                "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nbackup:\n  wal_timeout: 60s\nmonitor:\n  interval: 1s\nobjectives:\n  rto: {rto}\n",
                pg.conninfo(),
                pg.version().bin_dir().display()
            )
        };
        agent.set_yaml(&yaml("30m"));
        agent.share_with_postgres();
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        take_backup(&agent);
        let drill = agent.run_copy(&["drill", "--json"]);
        assert_eq!(drill.code, 0, "{}", drill.all());
        let measured = drill.json()["rto_seconds"].as_f64().unwrap_or_default();
        assert!(measured > 0.0, "{}", drill.stdout);

        let run = agent.run(&["check", "--json"]);
        let (status, msg) = check_item(&run, "rto");
        assert_eq!(status, "ok", "{msg}");
        assert!(msg.contains("within the RTO target 30m"), "{msg}");

        agent.set_yaml(&yaml("1ms"));
        let run = agent.run(&["check", "--json"]);
        let (status, msg) = check_item(&run, "rto");
        assert_eq!(status, "warning", "{msg}");
        assert!(msg.contains("above the RTO target"), "{msg}");

        std::fs::write(
            agent.dir().join("alerts.yml"),
            alerts_with("RtoAboveTarget", &rec.url("/hook")),
        )
        .expect("write alerts.yml");
        let sidecar = Sidecar::start(&agent);
        let m = sidecar.wait_metrics("the drill's RTO", Duration::from_secs(30), |m| {
            sample(m, "dbagent_drill_rto_seconds").is_some()
        });
        assert_eq!(sample(&m, "dbagent_rto_target_seconds"), Some(0.001), "{m}");
        let firing = wait_notification(&rec, "firing", &sidecar);
        assert_eq!(
            firing.body["alerts"][0]["labels"]["alertname"], "RtoAboveTarget",
            "{:#?}",
            firing.body
        );
    }
);

/// The metric names of the sample lines of a `/metrics` text.
fn exported_names(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every metric name in a PromQL expression: all of ours start with `pg_` or `dbagent_`
/// (label names and functions never do).
fn names_in_expr(expr: &str) -> Vec<String> {
    let re = regex_lite::Regex::new(r"\b(?:pg|dbagent)_[a-z0-9_]+").expect("regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

/// Metrics that exist only in situations this test does not create, and why.
const SITUATIONAL: &[(&str, &str)] = &[
    (
        "pg_stat_progress_vacuum_phase",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "pg_stat_progress_vacuum_heap_blks",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "pg_stat_progress_vacuum_heap_blks_scanned",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "pg_stat_progress_vacuum_heap_blks_vacuumed",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "pg_stat_progress_vacuum_index_vacuums",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "pg_stat_progress_vacuum_max_dead_tuples",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "pg_stat_progress_vacuum_num_dead_tuples",
        "only while a vacuum runs (exporter_compat tests it with one held on a pinned page)",
    ),
    (
        "dbagent_advisor_plan_change_mean_ratio",
        "only for statements whose captured plan changed in the advisor's window",
    ),
    (
        "dbagent_archiver_last_failure_age_seconds",
        "only after archive_command failed once (pg_stat_archiver.last_failed_time is set)",
    ),
    (
        "dbagent_table_exact_dead_tuple_bytes",
        "only with monitor.pgstattuple_interval set and the pgstattuple extension created",
    ),
    ("dbagent_table_exact_free_bytes", "as above (pgstattuple)"),
    ("dbagent_table_exact_bloat_ratio", "as above (pgstattuple)"),
    (
        "dbagent_index_exact_leaf_density_ratio",
        "as above (pgstattuple)",
    ),
    (
        "dbagent_pgstattuple_skipped_relations",
        "as above (pgstattuple)",
    ),
    ("dbagent_pgstattuple_available", "as above (pgstattuple)"),
    (
        "dbagent_table_last_vacuum_age_seconds",
        "only for a table vacuumed at least once (absent if never)",
    ),
    (
        "pg_stat_checkpointer_num_done_total",
        "PostgreSQL 18+ only (this test runs PostgreSQL 15)",
    ),
    (
        "pg_stat_checkpointer_restartpoints_timed_total",
        "PostgreSQL 17+ only (this test runs PostgreSQL 15)",
    ),
    (
        "pg_stat_checkpointer_restartpoints_req_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_restartpoints_done_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_buffers_written_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_num_requested_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_num_timed_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_slru_written_total",
        "PostgreSQL 18+ only",
    ),
    (
        "pg_stat_checkpointer_stats_reset_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_sync_time_total",
        "PostgreSQL 17+ only",
    ),
    (
        "pg_stat_checkpointer_write_time_total",
        "PostgreSQL 17+ only",
    ),
    ("pg_stat_io_evictions_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_extend_bytes_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_extends_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_fsync_time_seconds_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_fsyncs_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_hits_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_read_bytes_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_read_time_seconds_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_reads_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_write_bytes_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_write_time_seconds_total", "PostgreSQL 16+ only"),
    ("pg_stat_io_writes_total", "PostgreSQL 16+ only"),
    (
        "dbagent_checkpoints_requested_ratio",
        "only once a checkpoint was counted in the last hour of polls",
    ),
    ("pg_replication_slots_active", "only with replication slots"),
    (
        "pg_replication_slots_pg_wal_lsn_diff",
        "only with replication slots",
    ),
    (
        "pg_replication_slots_slot_current_wal_lsn",
        "only with replication slots",
    ),
    (
        "pg_replication_slots_slot_is_active",
        "only with replication slots",
    ),
    (
        "pg_replication_slots_wal_status",
        "only with replication slots",
    ),
    (
        "pg_replication_slots_safe_wal_size_bytes",
        "only with replication slots and max_slot_wal_keep_size set",
    ),
    (
        "pg_replication_slots_slot_confirmed_flush_lsn",
        "only with an active logical replication slot",
    ),
];

/// The metric names of the catalogue (`dbagent::metrics::catalogue`), which docs/metrics.md's
/// metrics reference lists row by row (a unit test of the catalogue compares them).
fn catalogue_metric_names() -> std::collections::BTreeSet<String> {
    dbagent::metrics::catalogue::ALL
        .iter()
        .map(|d| d.name.to_string())
        .collect()
}

/// A primary with a streaming standby, a sidecar on each, a backup, a drill, a WAL
/// verification, alerts routed to
/// a recorder, a bloated table and queries in pg_stat_statements: the metric names exported
/// then are what the Grafana dashboard and docs/metrics.md may name.
#[test]
fn the_dashboard_and_the_readme_name_only_metrics_dbagent_exports() {
    use crate::support::cluster::PgVersion;

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/dbagent-dashboard.json"
        ))
        .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = std::collections::BTreeSet::new();
    let mut wanted = std::collections::BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{t}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(expr.contains("instance=~\"$instance\""), "{expr}");
            wanted.extend(names_in_expr(expr));
        }
    }
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["DS_PROMETHEUS", "instance"]);
    assert!(wanted.len() > 40, "{wanted:?}");
    // The dashboard reads the default name set (monitor.metric_names: postgres_exporter).
    let not_default: Vec<&String> = wanted
        .iter()
        .filter(|n| {
            !dbagent::metrics::names::NameSet::PostgresExporter
                .serves(dbagent::metrics::catalogue::set_of(n))
        })
        .collect();
    assert!(
        not_default.is_empty(),
        "the dashboard reads names the default set does not serve: {not_default:?}"
    );

    let rt = recorder_runtime();
    let rec = rt.block_on(Recorder::start(200, "ok"));
    let (agent, primary) = archived_cluster(PgVersion::V15);
    let yaml = |pg: &Cluster, alerts: &str| {
        format!(
            "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nbackup:\n  wal_timeout: 60s\nmonitor:\n  interval: 1s\n  slow_interval: 1s\n  bloat_min_size: 0\n  metric_names: both\nalerts_file: {alerts}\nschedule:\n  expire: \"*/2 * * * * *\"\n",
            pg.conninfo(),
            pg.version().bin_dir().display()
        )
    };
    agent.set_yaml(&yaml(&primary, "alerts.yml"));
    agent.share_with_postgres();
    std::fs::write(
        agent.dir().join("alerts.yml"),
        format!(
            "rules:\n  - name: Always\n    expr: pg_up == 1\nroute:\n  receiver: hook\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n",
            rec.url("/hook")
        ),
    )
    .expect("write alerts.yml");
    primary.psql(
        "CREATE TABLE t (id int PRIMARY KEY, pad text);\n\
         INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;\n\
         DELETE FROM t WHERE id % 2 = 0; ANALYZE t;",
    );
    take_backup(&agent);
    let drill = agent.run_copy(&["drill", "--json"]);
    assert_eq!(drill.code, 0, "{}", drill.all());
    let verified = agent.run(&["wal", "verify", "--json"]);
    assert_eq!(verified.code, 0, "{}", verified.all());
    let standby = primary.start_replica();
    let standby_agent = crate::support::dbagent::Agent::with_yaml(&yaml(&standby, "none.yml"));

    let sidecar = Sidecar::start(&agent);
    let standby_sidecar = Sidecar::start(&standby_agent);
    let known: std::collections::BTreeSet<&str> = SITUATIONAL.iter().map(|(n, _)| *n).collect();
    // Writes and queries keep replication lag and pg_stat_statements series coming.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let exported = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = primary.try_psql(
                    "UPDATE t SET pad = pad WHERE id < 50; SELECT count(*) FROM t WHERE pad <> ''",
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut exported = exported_names(&sidecar.metrics());
            exported.extend(exported_names(&standby_sidecar.metrics()));
            let missing: Vec<&String> = wanted.difference(&exported).collect();
            if missing.is_empty() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                break exported;
            }
            if Instant::now() > deadline {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!(
                    "the dashboard names metrics dbagent does not export: {missing:?}\nprimary /metrics:\n{}\nstandby /metrics:\n{}",
                    sidecar.metrics(),
                    standby_sidecar.metrics()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    if let Ok(path) = std::env::var("DBAGENT_DUMP_METRICS") {
        std::fs::write(
            path,
            format!("{}\n{}", sidecar.metrics(), standby_sidecar.metrics()),
        )
        .expect("dump /metrics");
    }

    // The catalogue (and so docs/metrics.md's metrics reference) lists exactly what is exported (plus
    // the situational ones).
    // Both name sets are served (metric_names: both); pg_settings_* stands for one family per
    // server setting.
    let documented: std::collections::BTreeSet<String> = catalogue_metric_names()
        .into_iter()
        .filter(|n| !n.ends_with('*'))
        .collect();
    let exported: std::collections::BTreeSet<String> = exported
        .into_iter()
        .filter(|n| !dbagent::metrics::catalogue::is_exporter_setting(n))
        .collect();
    let undocumented: Vec<&String> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported but missing from the metrics catalogue: {undocumented:?}"
    );
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|n| !exported.contains(*n) && !known.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the metrics catalogue names metrics that are not exported: {unknown:?}"
    );
}
