//! `dbagent advise` against real clusters: a sequential-scan hot spot with its statement and a
//! missing-index hint naming the filtered column, both gone once the index exists; unused and
//! duplicate indexes over an observed window (primary keys never reported); a statistics reset
//! inside the window that does not make every index look unused.

use std::thread::sleep;
use std::time::Duration;

use serde_json::Value;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::dbagent::Agent;
use crate::support::sidecar::{Sidecar, promtool_check, sample};

/// An agent whose advisor calls an index unused after 1 s of observation, and looks at tables
/// from 1 MB.
fn agent(pg: &Cluster) -> Agent {
    Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 3s\nrepository:\n  path: REPO\n\
         state_dir: STATE\nmonitor:\n  advisor_min_observed: 1s\n  advisor_min_table_size: 1MB\n  \
         advisor_hotspot_min_scans: 5\n",
        pg.conninfo()
    ))
}

fn advise(agent: &Agent) -> Value {
    let run = agent.run(&["advise", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // No negative zero (a float sum of no finding) anywhere, e.g. unused_index_bytes.
    assert!(
        !run.stdout.contains(": -0.0,") && !run.stdout.contains(": -0.0\n"),
        "{}",
        run.stdout
    );
    run.json()
}

fn findings<'a>(advice: &'a Value, kind: &str) -> Vec<&'a Value> {
    advice["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array: {advice:#}"))
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn find<'a>(advice: &'a Value, kind: &str, object: &str) -> Option<&'a Value> {
    findings(advice, kind)
        .into_iter()
        .find(|f| f["object"] == object)
}

/// `n` runs of the claims query with different constants (one pg_stat_statements entry).
fn query_claims(pg: &Cluster, n: usize) {
    let sql: String = (0..n)
        .map(|i| {
            format!(
                "SELECT count(*), sum(amount) FROM claims WHERE county = {};\n",
                i * 7
            )
        })
        .collect();
    pg.psql(&sql);
}

pg_test!(
    advise_seq_scan_hotspot_with_its_statement_and_hint_goes_away_after_create_index,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
            "CREATE TABLE claims (id bigint PRIMARY KEY, county int NOT NULL, year int NOT NULL, \
               amount numeric NOT NULL, note text NOT NULL);\n\
             INSERT INTO claims SELECT i, i % 1000, 2000 + i % 25, i % 977, md5(i::text) \
               FROM generate_series(1, 200000) i;\n\
             ANALYZE claims;\n\
             SELECT pg_stat_statements_reset();",
        );
        let agent = agent(&pg);
        let first = advise(&agent);
        assert_eq!(first["window"]["samples"], 1, "{first:#}");
        assert!(find(&first, "seq_scan_hotspot", "public.claims").is_none());

        query_claims(&pg, 20);
        let advice = advise(&agent);
        let hot = find(&advice, "seq_scan_hotspot", "public.claims")
            .unwrap_or_else(|| panic!("no hot spot on claims: {advice:#}"));
        let ev = &hot["evidence"];
        assert!(
            ev["seq_tuples_read"].as_f64().unwrap() >= 20.0 * 200_000.0,
            "{hot:#}"
        );
        assert!(ev["size_bytes"].as_f64().unwrap() > 1e6, "{hot:#}");
        let statements = ev["statements"].as_array().unwrap();
        assert!(
            statements.iter().any(|s| s["query"]
                .as_str()
                .is_some_and(|q| q.contains("FROM claims WHERE county = $1"))),
            "{hot:#}"
        );
        // The missing-index hint names the filtered column, and says it is a hint.
        let hint = find(&advice, "missing_index", "public.claims")
            .unwrap_or_else(|| panic!("no missing-index hint: {advice:#}"));
        assert_eq!(
            hint["evidence"]["columns"],
            serde_json::json!(["county"]),
            "{hint:#}"
        );
        assert_eq!(
            hint["action"],
            "CREATE INDEX CONCURRENTLY ON public.claims (county);"
        );
        assert!(
            hint["note"].as_str().unwrap().contains("A hint"),
            "{hint:#}"
        );
        assert_eq!(advice["counts"]["seq_scan_hotspot"], 1, "{advice:#}");
        // The hot spot's action is the hint's SQL.
        assert_eq!(hot["action"], hint["action"]);

        // The text report says the same, ordered, with the window it observed.
        let run = agent.run(&["advise"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(
            run.stdout.contains("SEQ SCAN HOT SPOT: public.claims"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("MISSING INDEX (hint)"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("dbagent never runs it"),
            "{}",
            run.stdout
        );

        pg.psql("CREATE INDEX claims_county ON claims (county);");
        query_claims(&pg, 20);
        advise(&agent);
        query_claims(&pg, 20);
        let after = advise(&agent);
        assert!(
            find(&after, "seq_scan_hotspot", "public.claims").is_none(),
            "{after:#}"
        );
        assert!(
            find(&after, "missing_index", "public.claims").is_none(),
            "{after:#}"
        );
        // The new index is used: it is not reported unused.
        assert!(
            find(&after, "unused_index", "public.claims_county").is_none(),
            "{after:#}"
        );
    }
);

pg_test!(
    advise_unused_and_duplicate_indexes_survive_a_stats_reset_without_false_unused,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
            "CREATE TABLE orders (id int PRIMARY KEY, customer int, status int, note text);\n\
             INSERT INTO orders SELECT i, i % 500, i % 7, repeat('x', 50) FROM generate_series(1, 20000) i;\n\
             CREATE INDEX orders_customer ON orders (customer);\n\
             CREATE INDEX orders_status ON orders (status);\n\
             CREATE INDEX orders_status_again ON orders (status);\n\
             CREATE INDEX orders_customer_status ON orders (customer, status);\n\
             ANALYZE orders;",
        );
        let use_customer = "SET enable_seqscan = off; SET enable_bitmapscan = off;\n\
             SELECT count(*) FROM orders WHERE customer = 3 AND note = 'x';\n\
             SELECT count(*) FROM orders WHERE customer = 4 AND note = 'x';";
        let agent = agent(&pg);
        let first = advise(&agent);
        // One sample observes nothing: no index is called unused yet.
        assert!(findings(&first, "unused_index").is_empty(), "{first:#}");
        assert_eq!(first["window"]["unused_reportable"], false, "{first:#}");
        // Duplicates need no history.
        let dup = find(&first, "duplicate_index", "public.orders_status_again")
            .unwrap_or_else(|| panic!("no duplicate: {first:#}"));
        assert_eq!(
            dup["evidence"]["duplicate_of"], "public.orders_status",
            "{dup:#}"
        );
        assert_eq!(dup["evidence"]["relation"], "duplicate");
        let prefix = find(&first, "duplicate_index", "public.orders_customer")
            .unwrap_or_else(|| panic!("no prefix duplicate: {first:#}"));
        assert_eq!(
            prefix["evidence"]["duplicate_of"], "public.orders_customer_status",
            "{prefix:#}"
        );
        assert_eq!(prefix["evidence"]["relation"], "prefix");

        pg.psql(use_customer);
        sleep(Duration::from_millis(1200));
        let before_reset = advise(&agent);
        let unused: Vec<&str> = findings(&before_reset, "unused_index")
            .iter()
            .map(|f| f["object"].as_str().unwrap())
            .collect();
        assert!(unused.contains(&"public.orders_status"), "{before_reset:#}");
        assert!(
            unused.contains(&"public.orders_status_again"),
            "{before_reset:#}"
        );
        assert!(
            !unused.contains(&"public.orders_customer"),
            "{before_reset:#}"
        );
        assert!(
            !unused.contains(&"public.orders_pkey"),
            "never-used primary key: {before_reset:#}"
        );
        let status = find(&before_reset, "unused_index", "public.orders_status").unwrap();
        assert!(
            status["evidence"]["size_bytes"].as_f64().unwrap() > 0.0,
            "{status:#}"
        );
        assert_eq!(
            status["action"],
            "DROP INDEX CONCURRENTLY public.orders_status;"
        );
        assert!(before_reset["unused_index_bytes"].as_f64().unwrap() > 0.0);

        // A statistics reset inside the window: every counter is zero now...
        pg.psql("SELECT pg_stat_reset();");
        assert_eq!(
            pg.psql(
                "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'orders_customer'"
            ),
            "0"
        );
        sleep(Duration::from_millis(1200));
        let after_reset = advise(&agent);
        assert_eq!(after_reset["window"]["stats_resets"], 1, "{after_reset:#}");
        let unused: Vec<&str> = findings(&after_reset, "unused_index")
            .iter()
            .map(|f| f["object"].as_str().unwrap())
            .collect();
        // ...but the index used before the reset was used in the window.
        assert!(
            !unused.contains(&"public.orders_customer"),
            "{after_reset:#}"
        );
        assert!(!unused.contains(&"public.orders_pkey"), "{after_reset:#}");
        assert!(unused.contains(&"public.orders_status"), "{after_reset:#}");

        // The text report names the unused index with its size.
        let run = agent.run(&["advise", "--since", "1h"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(
            run.stdout
                .contains("UNUSED INDEX: index public.orders_status on public.orders"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("statistics reset"), "{}", run.stdout);
    }
);

pg_test!(
    advise_runs_as_the_least_privilege_role_and_names_the_grant_hints_need,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
            "CREATE ROLE dbagent_adv LOGIN PASSWORD 'adv-pass-1';\n\
             GRANT pg_monitor TO dbagent_adv;\n\
             CREATE TABLE claims (id bigint PRIMARY KEY, county int NOT NULL, year int NOT NULL, \
               amount numeric NOT NULL, note text NOT NULL);\n\
             INSERT INTO claims SELECT i, i % 1000, 2000 + i % 25, i % 977, md5(i::text) \
               FROM generate_series(1, 200000) i;\n\
             ANALYZE claims;",
        );
        let agent = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\nrepository:\n  path: REPO\nstate_dir: STATE\n\
             monitor:\n  advisor_min_table_size: 1MB\n  advisor_hotspot_min_scans: 5\n",
            pg.conninfo_as("dbagent_adv", "adv-pass-1")
        ));
        advise(&agent);
        query_claims(&pg, 20);
        let advice = advise(&agent);
        // Counters need no more than pg_monitor: the hot spot and its statement are there.
        let hot = find(&advice, "seq_scan_hotspot", "public.claims")
            .unwrap_or_else(|| panic!("no hot spot: {advice:#}"));
        assert!(
            !hot["evidence"]["statements"].as_array().unwrap().is_empty(),
            "{hot:#}"
        );
        // EXPLAIN needs SELECT on the table: no hint, and the report says which grant.
        assert!(
            find(&advice, "missing_index", "public.claims").is_none(),
            "{advice:#}"
        );
        assert!(
            advice["explain_skipped"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["reason"].as_str().unwrap().contains("permission denied")),
            "{advice:#}"
        );
        assert!(
            advice["notes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_str().unwrap().contains("GRANT pg_read_all_data")),
            "{advice:#}"
        );

        pg.psql("GRANT pg_read_all_data TO dbagent_adv");
        let advice = advise(&agent);
        let hint = find(&advice, "missing_index", "public.claims")
            .unwrap_or_else(|| panic!("no hint with pg_read_all_data: {advice:#}"));
        assert_eq!(hint["evidence"]["columns"], serde_json::json!(["county"]));
    }
);

pg_test!(
    advise_findings_are_served_by_the_agent_and_shared_with_the_command,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
            "CREATE TABLE items (id int PRIMARY KEY, sku int, shelf int);\n\
             INSERT INTO items SELECT i, i, i % 40 FROM generate_series(1, 5000) i;\n\
             CREATE INDEX items_shelf ON items (shelf);\n\
             CREATE INDEX items_shelf_copy ON items (shelf);\n\
             ANALYZE items;",
        );
        let agent = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\nrepository:\n  path: REPO\nstate_dir: STATE\n\
             monitor:\n  interval: 1s\n  advisor_interval: 1s\n  advisor_min_observed: 2s\n  \
             metric_names: dbagent\n",
            pg.conninfo()
        ));
        let sidecar = Sidecar::start(&agent);
        let unused = "dbagent_advisor_findings{kind=\"unused_index\"}";
        let metrics = sidecar.wait_metrics("two unused indexes", Duration::from_secs(60), |m| {
            sample(m, unused) == Some(2.0)
        });
        assert_eq!(
            sample(
                &metrics,
                "dbagent_advisor_findings{kind=\"duplicate_index\"}"
            ),
            Some(1.0),
            "{metrics}"
        );
        assert!(
            sample(&metrics, "dbagent_advisor_unused_index_bytes").unwrap() > 0.0,
            "{metrics}"
        );
        assert!(sample(&metrics, "dbagent_advisor_largest_unused_index_bytes").unwrap() > 0.0);
        let (ok, out) = promtool_check(&metrics);
        assert!(ok && out.trim().is_empty(), "promtool:\n{out}");

        let (status, body) = sidecar.get("/api/v1/status");
        assert_eq!(status, 200);
        let json: Value = serde_json::from_str(&body).unwrap();
        let advice = &json["sections"]["advisor"];
        let objects: Vec<&str> = findings(advice, "unused_index")
            .iter()
            .map(|f| f["object"].as_str().unwrap())
            .collect();
        assert!(objects.contains(&"public.items_shelf"), "{advice:#}");
        assert!(!objects.contains(&"public.items_pkey"), "{advice:#}");

        // The command reads the agent's samples: its window holds more than its own.
        let advice = advise(&agent);
        assert!(
            advice["window"]["samples"].as_u64().unwrap() >= 3,
            "{advice:#}"
        );
        assert!(
            find(&advice, "unused_index", "public.items_shelf").is_some(),
            "{advice:#}"
        );
    }
);

pg_test!(
    advise_plan_change_is_captured_when_an_index_goes_away,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
            "CREATE TABLE claims (id bigint PRIMARY KEY, county int NOT NULL, year int NOT NULL, \
           amount numeric NOT NULL, note text NOT NULL);\n\
         INSERT INTO claims SELECT i, i % 1000, 2000 + i % 25, i % 977, md5(i::text) \
           FROM generate_series(1, 200000) i;\n\
         CREATE INDEX claims_county ON claims (county);\n\
         ANALYZE claims;",
        );
        let agent = agent(&pg);
        query_claims(&pg, 10);
        advise(&agent);
        query_claims(&pg, 10);
        let before = advise(&agent);
        assert!(findings(&before, "plan_change").is_empty(), "{before:#}");

        pg.psql("DROP INDEX claims_county;");
        advise(&agent);
        query_claims(&pg, 10);
        let after = advise(&agent);
        let changes = findings(&after, "plan_change");
        assert_eq!(changes.len(), 1, "{after:#}");
        let ev = &changes[0]["evidence"];
        assert!(
            ev["plan_before"]
                .as_str()
                .unwrap()
                .contains("using claims_county"),
            "{ev:#}"
        );
        assert!(
            ev["plan_after"]
                .as_str()
                .unwrap()
                .contains("Seq Scan on claims"),
            "{ev:#}"
        );
        assert_eq!(ev["calls_after"], 10.0, "{ev:#}");
        assert!(
            ev["query"].as_str().unwrap().contains("WHERE county = $1"),
            "{ev:#}"
        );
        assert!(ev["mean_ratio"].as_f64().unwrap() > 0.0, "{ev:#}");
    }
);
