//! `dbagent check` against real clusters on PostgreSQL 15 and 18: what it reports, the fix it
//! names, and its Nagios exit codes.

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;

/// A cluster set up the way dbagent wants it: archiving through dbagent wal-push,
/// pg_stat_statements, checksums, and an archive_timeout within the default RPO target (5m).
fn configured(v: PgVersion) -> Cluster {
    Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("/usr/local/bin/dbagent wal-push %p".into()),
            extra_conf: vec![("archive_timeout".into(), "60s".into())],
            ..ClusterOptions::default()
        },
    )
}

pg_test!(
    fresh_cluster_with_archive_mode_off_is_critical_until_configured,
    |v| {
        let mut pg = Cluster::start(v, ClusterOptions::default());
        let agent = Agent::new(&pg.conninfo());

        let run = agent.run(&["check"]);
        assert_eq!(run.code, 2, "{}", run.all());
        assert!(run.stdout.starts_with("DBAGENT CRITICAL"), "{}", run.stdout);
        let line = run.check_line("archive_mode");
        assert!(line.starts_with("CRITICAL"), "{line}");
        assert!(
            line.contains("ALTER SYSTEM SET archive_mode = 'on'"),
            "{line}"
        );
        let line = run.check_line("archive_command");
        assert!(
            line.starts_with("CRITICAL") && line.contains("wal-push %p"),
            "{line}"
        );

        pg.set_conf("archive_mode", "on");
        pg.set_conf("archive_command", "/usr/local/bin/dbagent wal-push %p");
        pg.restart();
        // Archiving works, but without archive_timeout the RPO target (5m) cannot be met.
        let run = agent.run(&["check"]);
        assert_eq!(run.code, 1, "{}", run.all());
        let line = run.check_line("archive_timeout");
        assert!(
            line.starts_with("WARNING")
                && line.contains("RPO target 5m cannot be met: archive_timeout is 0 (off)")
                && line.contains("ALTER SYSTEM SET archive_timeout = '60s'"),
            "{line}"
        );
        pg.set_conf("archive_timeout", "60s");
        pg.reload();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pg.psql("SHOW archive_timeout") != "1min" {
            assert!(std::time::Instant::now() < deadline, "reload never applied");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let run = agent.run(&["check"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(run.stdout.starts_with("DBAGENT OK"), "{}", run.stdout);
        // Every check ran and the version-specific ones (checkpoints, functions) worked.
        for name in [
            "server_version",
            "role_functions",
            "archiving",
            "archive_lag",
            "checkpoints",
            "archive_timeout",
            "repository",
        ] {
            assert!(
                run.check_line(name).starts_with("OK"),
                "{name}: {}",
                run.stdout
            );
        }
    }
);

pg_test!(json_report_has_the_documented_shape, |v| {
    let pg = configured(v);
    let run = Agent::new(&pg.conninfo()).run(&["check", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let j = run.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["exit_code"], 0);
    assert!(j["summary"].as_str().unwrap().starts_with("DBAGENT OK"));
    assert_eq!(
        j["server"]["version_num"].as_u64().unwrap() / 10_000,
        u64::from(v.major())
    );
    assert_eq!(j["server"]["in_recovery"], false);
    let checks = j["checks"].as_array().unwrap();
    assert!(checks.len() >= 14, "{j}");
    for c in checks {
        assert!(c["name"].is_string() && c["message"].is_string(), "{c}");
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["action"].is_null(), "{c}");
    }
    assert_eq!(j["counts"]["ok"].as_u64().unwrap() as usize, checks.len());
});

pg_test!(role_without_pg_monitor_is_told_which_grant_to_run, |v| {
    let pg = configured(v);
    pg.psql("CREATE ROLE dbagent_lp LOGIN PASSWORD 'lp-pass-1'");
    let agent = Agent::new(&pg.conninfo_as("dbagent_lp", "lp-pass-1"));

    let run = agent.run(&["check"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.check_line("role_pg_monitor")
            .contains("GRANT pg_monitor TO dbagent_lp;"),
        "{}",
        run.stdout
    );
    assert!(
        run.check_line("role_replication")
            .contains("ALTER ROLE dbagent_lp REPLICATION;"),
        "{}",
        run.stdout
    );
    let backup_start = if v.major() >= 15 {
        "pg_backup_start(text, boolean)"
    } else {
        "pg_start_backup(text, boolean, boolean)"
    };
    let functions = run.check_line("role_functions");
    assert!(
        functions.contains(&format!(
            "GRANT EXECUTE ON FUNCTION {backup_start} TO dbagent_lp;"
        )),
        "{functions}"
    );
    assert!(
        functions
            .contains("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO dbagent_lp;"),
        "{functions}"
    );
    // Without pg_monitor the archive status directory is hidden: UNKNOWN with the same GRANT.
    assert!(
        run.check_line("archive_lag").contains("GRANT pg_monitor"),
        "{}",
        run.stdout
    );

    // Running exactly the GRANTs the check printed makes it pass.
    let grants: Vec<String> = [
        "role_pg_monitor",
        "role_replication",
        "role_functions",
        "stats_visibility",
    ]
    .iter()
    .map(|name| {
        run.check_line(name)
            .split("; fix: ")
            .nth(1)
            .unwrap()
            .to_string()
    })
    .collect();
    pg.psql(&grants.join("\n"));
    let run = agent.run(&["check"]);
    assert_eq!(run.code, 0, "{}", run.all());
});

pg_test!(
    stats_visibility_warns_until_pg_read_all_data_is_granted,
    |v| {
        let pg = configured(v);
        pg.psql(
            "CREATE ROLE dbagent_sv LOGIN PASSWORD 'sv-pass-1';\n\
         GRANT pg_monitor TO dbagent_sv;\n\
         CREATE TABLE hidden_stats (id int);\n\
         INSERT INTO hidden_stats SELECT generate_series(1, 100);\n\
         ANALYZE hidden_stats;",
        );
        let agent = Agent::new(&pg.conninfo_as("dbagent_sv", "sv-pass-1"));
        let hidden_rows = || {
            pg.try_psql_conninfo(
                &pg.conninfo_as("dbagent_sv", "sv-pass-1"),
                "SELECT count(*) FROM pg_stats WHERE tablename = 'hidden_stats'",
            )
            .expect("psql as dbagent_sv")
        };
        // What the check is about: the role sees no statistics of a table it may not read.
        assert_eq!(hidden_rows(), "0");

        let run = agent.run(&["check"]);
        let line = run.check_line("stats_visibility");
        assert!(line.starts_with("WARNING"), "{line}");
        assert!(line.contains("1 of 1 tables"), "{line}");
        assert!(
            line.ends_with("; fix: GRANT pg_read_all_data TO dbagent_sv;"),
            "{line}"
        );

        pg.psql("GRANT pg_read_all_data TO dbagent_sv");
        let run = agent.run(&["check"]);
        let line = run.check_line("stats_visibility");
        assert!(
            line.starts_with("OK") && line.contains("member of pg_read_all_data"),
            "{line}"
        );
        assert_eq!(hidden_rows(), "1");

        // A superuser sees everything.
        let run = Agent::new(&pg.conninfo()).run(&["check"]);
        assert!(
            run.check_line("stats_visibility").starts_with("OK"),
            "{}",
            run.stdout
        );
    }
);

pg_test!(failing_archive_command_is_critical, |v| {
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("/bin/false dbagent wal-push %p".into()),
            ..ClusterOptions::default()
        },
    );
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i; SELECT pg_switch_wal();");
    let mut failed = false;
    for _ in 0..100 {
        if pg.psql("SELECT failed_count > 0 FROM pg_stat_archiver") == "t" {
            failed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(failed, "the archiver never reported a failure");
    let run = Agent::new(&pg.conninfo()).run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = run.check_line("archiving");
    assert!(
        line.starts_with("CRITICAL") && line.contains("WAL archiving is failing"),
        "{line}"
    );
    assert!(line.contains("server log"), "{line}");
});

pg_test!(missing_pg_stat_statements_and_checksums_are_warnings, |v| {
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("/usr/local/bin/dbagent wal-push %p".into()),
            pg_stat_statements: false,
            data_checksums: false,
            ..ClusterOptions::default()
        },
    );
    let run = Agent::new(&pg.conninfo()).run(&["check"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run.check_line("pg_stat_statements");
    assert!(
        line.starts_with("WARNING") && line.contains("shared_preload_libraries"),
        "{line}"
    );
    let line = run.check_line("data_checksums");
    assert!(
        line.starts_with("WARNING") && line.contains("pg_checksums --enable"),
        "{line}"
    );
});

pg_test!(archive_command_that_bypasses_dbagent_is_a_warning, |v| {
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("cp %p /nonexistent/%f".into()),
            ..ClusterOptions::default()
        },
    );
    let run = Agent::new(&pg.conninfo()).run(&["check"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run.check_line("archive_command");
    assert!(
        line.starts_with("WARNING") && line.contains("does not call dbagent wal-push"),
        "{line}"
    );
});

pg_test!(standby_leaves_archiving_to_the_primary, |v| {
    let primary = configured(v);
    let standby = primary.start_replica();
    let run = Agent::new(&standby.conninfo()).run(&["check", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let j = run.json();
    assert_eq!(j["server"]["in_recovery"], true);
    let archive_mode = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "archive_mode")
        .unwrap();
    assert!(
        archive_mode["message"]
            .as_str()
            .unwrap()
            .contains("standby"),
        "{archive_mode}"
    );
});

#[test]
fn unreadable_config_makes_check_unknown() {
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: host=/tmp\n  conninf: x\nrepository:\n  path: REPO\n",
    );
    let run = agent.run(&["check"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr.contains("unknown key `conninf`"),
        "{}",
        run.stderr
    );
}

#[test]
fn repository_that_cannot_be_a_directory_is_critical() {
    let agent = Agent::new("host=127.0.0.1 port=1 user=x");
    let file = agent.dir().join("repo");
    std::fs::write(&file, b"not a dir").unwrap();
    let run = agent.run(&["check", "--json"]);
    let j = run.json();
    let repo = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "repository")
        .unwrap();
    assert_eq!(repo["status"], "critical", "{repo}");
    assert!(
        repo["message"]
            .as_str()
            .unwrap()
            .contains("not a directory")
    );
}
