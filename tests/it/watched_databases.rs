//! `monitor.databases` against real clusters through `dbagent run`: per-table signals of a
//! table in a second database appear with its `datname`; include/exclude patterns select the
//! databases; a database the role may not connect to is reported (status, metric, log,
//! `check`) while the others go on.

use std::time::Duration;

use serde_json::Value;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::dbagent::Agent;
use crate::support::sidecar::Sidecar;

const DEAD: &str = "pg_stat_user_tables_n_dead_tup";

/// The value of the first sample of `name` whose labels include every pair of `labels`.
fn find(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A table with `n` dead tuples that autovacuum leaves alone, analyzed, in database `db`.
fn churn(pg: &Cluster, db: &str, table: &str, n: u32) {
    pg.psql_in(
        db,
        &format!(
            "CREATE TABLE {table} (id int, pad text) WITH (autovacuum_enabled = off); \
             INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, {}) g; \
             ANALYZE {table}; DELETE FROM {table} WHERE id <= {n};",
            n * 2
        ),
    );
}

fn status(sidecar: &Sidecar) -> Value {
    let (code, body) = sidecar.get("/api/v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

pg_test!(
    watched_databases_are_selected_by_pattern_and_label_their_tables_with_datname,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql("CREATE DATABASE app2");
        pg.psql("CREATE DATABASE app_skip");
        pg.psql("CREATE DATABASE other");
        churn(&pg, "app2", "orders", 1000);
        churn(&pg, "app_skip", "hidden", 1000);
        churn(&pg, "other", "elsewhere", 1000);
        churn(&pg, "postgres", "mine", 10);
        let agent = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\nrepository:\n  path: REPO\nstate_dir: STATE\n\
             monitor:\n  interval: 1s\n  slow_interval: 1s\n  bloat_min_size: 0\n  \
             databases:\n    include: [\"app*\", postgres]\n    exclude: [app_skip]\n",
            pg.conninfo()
        ));
        let sidecar = Sidecar::start(&agent);
        let m = sidecar.wait_metrics(
            "dead tuples of app2.orders and bloat",
            Duration::from_secs(60),
            |m| {
                find(m, DEAD, &[("datname", "app2"), ("relname", "orders")]) == Some(1000.0)
                    && find(
                        m,
                        "dbagent_table_bloat_bytes",
                        &[("datname", "app2"), ("relname", "orders")],
                    )
                    .is_some()
            },
        );
        // The agent's own database is read on its own connection, labelled the same way.
        assert_eq!(
            find(&m, DEAD, &[("datname", "postgres"), ("relname", "mine")]),
            Some(10.0),
            "{m}"
        );
        assert!(
            find(
                &m,
                "dbagent_table_last_analyze_age_seconds",
                &[
                    ("datname", "app2"),
                    ("schemaname", "public"),
                    ("relname", "orders")
                ]
            )
            .is_some(),
            "{m}"
        );
        // Excluded and not included databases are not read at all.
        for db in ["app_skip", "other"] {
            assert!(
                !m.lines().any(|l| l.contains(&format!("datname=\"{db}\""))
                    && (l.starts_with("pg_stat_user_tables") || l.starts_with("dbagent_table"))),
                "{db}: {m}"
            );
        }
        assert_eq!(
            find(&m, "dbagent_database_watch_up", &[("datname", "app2")]),
            Some(1.0)
        );
        assert_eq!(
            find(&m, "dbagent_database_watch_up", &[("datname", "postgres")]),
            Some(1.0)
        );
        assert_eq!(
            find(&m, "dbagent_database_watch_up", &[("datname", "other")]),
            None
        );
        let s = status(&sidecar);
        let dbs = s["databases"].as_array().expect("databases");
        let names: Vec<&str> = dbs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["app2", "postgres"], "{s:#}");
        for d in dbs {
            assert_eq!(d["state"], "ok", "{d}");
            assert!(d["error"].is_null() && d["last_read"].is_string(), "{d}");
        }
        assert_eq!(s["collectors"]["vacuum"]["ok"], true, "{s:#}");
        assert_eq!(s["collectors"]["bloat"]["ok"], true, "{s:#}");
        let bloat = &s["sections"]["bloat"];
        assert!(
            bloat["tables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["datname"] == "app2" && t["relname"] == "orders"),
            "{bloat:#}"
        );
    }
);

pg_test!(
    a_database_the_role_may_not_connect_to_is_reported_and_the_others_go_on,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql("CREATE ROLE watcher LOGIN PASSWORD 'pw'");
        pg.psql("GRANT pg_monitor TO watcher");
        pg.psql("CREATE DATABASE app2");
        pg.psql("CREATE DATABASE locked");
        pg.psql("REVOKE CONNECT ON DATABASE locked FROM PUBLIC");
        churn(&pg, "app2", "orders", 500);
        let agent = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 3s\nrepository:\n  path: REPO\n\
             state_dir: STATE\nmonitor:\n  interval: 1s\n",
            pg.conninfo_as("watcher", "pw")
        ));
        let sidecar = Sidecar::start(&agent);
        let m = sidecar.wait_metrics(
            "locked reported, app2 read, three polls",
            Duration::from_secs(60),
            |m| {
                find(m, "dbagent_database_watch_up", &[("datname", "locked")]) == Some(0.0)
                    && find(m, DEAD, &[("datname", "app2"), ("relname", "orders")]) == Some(500.0)
                    && find(m, "dbagent_polls_total", &[]).unwrap_or(0.0) >= 3.0
            },
        );
        assert_eq!(find(&m, "pg_up", &[]), Some(1.0), "{m}");
        for db in ["app2", "postgres"] {
            assert_eq!(
                find(&m, "dbagent_database_watch_up", &[("datname", db)]),
                Some(1.0),
                "{db}: {m}"
            );
        }
        // Templates are never watched.
        for db in ["template0", "template1"] {
            assert_eq!(
                find(&m, "dbagent_database_watch_up", &[("datname", db)]),
                None,
                "{m}"
            );
        }
        assert_eq!(
            find(&m, "dbagent_collector_up", &[("collector", "vacuum")]),
            Some(1.0),
            "{m}"
        );
        let s = status(&sidecar);
        let locked = s["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "locked")
            .unwrap_or_else(|| panic!("{s:#}"))
            .clone();
        assert_eq!(locked["state"], "error", "{locked}");
        assert!(locked["last_read"].is_null(), "{locked}");
        let error = locked["error"].as_str().unwrap();
        assert!(
            error.contains("locked")
                && error.contains("GRANT CONNECT ON DATABASE locked TO watcher"),
            "{error}"
        );
        let log = sidecar.log();
        assert_eq!(
            log.matches("A watched database cannot be read").count(),
            1,
            "logged once, not once per poll:\n{log}"
        );

        // `check` names it, with the grant, as a WARNING.
        let run = agent.run(&["check"]);
        let line = run.check_line("databases");
        assert!(line.starts_with("WARNING"), "{}", run.stdout);
        assert!(
            line.contains("locked") && line.contains("GRANT CONNECT ON DATABASE locked TO watcher"),
            "{line}"
        );
        assert!(!line.contains("app2 ("), "{line}");

        pg.psql("GRANT CONNECT ON DATABASE locked TO watcher");
        sidecar.wait_metrics("locked readable", Duration::from_secs(30), |m| {
            find(m, "dbagent_database_watch_up", &[("datname", "locked")]) == Some(1.0)
        });
        assert_eq!(
            sidecar
                .log()
                .matches("A watched database can be read again")
                .count(),
            1
        );
        let run = agent.run(&["check"]);
        let line = run.check_line("databases");
        assert!(
            line.starts_with("OK") && line.contains("3 watched"),
            "{}",
            run.stdout
        );
    }
);
