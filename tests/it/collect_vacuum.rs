//! The vacuum collector against real clusters: dead tuples of a table autovacuum leaves
//! alone, the top-N bound with its `(other)` series, and wraparound ages.

use std::time::{Duration, Instant};

use dbagent::collect::vacuum::Vacuum;
use dbagent::metrics::OTHER;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, family, value};

const DEAD: &str = "pg_stat_user_tables_n_dead_tup";

/// Polls until the dead tuples of `relname` reach `at_least`; returns the last value.
fn wait_dead(poller: &Poller, relname: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = poller.run(&mut Vacuum::default()).expect("collect");
        let dead = value(&out, DEAD, &[("relname", relname)]).unwrap_or(0.0);
        if dead >= at_least || Instant::now() >= deadline {
            return dead;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pg_test!(vacuum_dead_tuples_rise_after_updates, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    pg.psql(
        "CREATE TABLE churn (id int, n int) WITH (autovacuum_enabled = off); \
         INSERT INTO churn SELECT g, 0 FROM generate_series(1, 1000) g",
    );
    let poller = Poller::new(&pg);
    let out = poller.run(&mut Vacuum::default()).expect("collect");
    let before = value(
        &out,
        DEAD,
        &[("relname", "churn"), ("schemaname", "public")],
    )
    .unwrap();
    assert_eq!(before, 0.0);
    assert!(
        value(
            &out,
            "dbagent_table_last_vacuum_age_seconds",
            &[("relname", "churn")]
        )
        .is_none()
    );

    pg.psql("UPDATE churn SET n = n + 1");
    let dead = wait_dead(&poller, "churn", 1000.0);
    assert!(dead >= 1000.0, "{dead}");
    let out = poller.run(&mut Vacuum::default()).expect("collect");
    let live = value(
        &out,
        "pg_stat_user_tables_n_live_tup",
        &[("relname", "churn")],
    )
    .unwrap();
    assert_eq!(live, 1000.0);

    pg.psql("VACUUM ANALYZE churn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = poller.run(&mut Vacuum::default()).expect("collect");
        if value(
            &out,
            "dbagent_table_last_vacuum_age_seconds",
            &[("relname", "churn")],
        )
        .is_some()
            || Instant::now() >= deadline
        {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value(&out, DEAD, &[("relname", "churn")]), Some(0.0));
    let age = value(
        &out,
        "dbagent_table_last_vacuum_age_seconds",
        &[("relname", "churn")],
    )
    .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(
        value(
            &out,
            "dbagent_table_last_analyze_age_seconds",
            &[("relname", "churn")]
        )
        .is_some()
    );

    // Wraparound ages: every database, template0 included, far from the limit.
    for db in ["postgres", "template0", "template1"] {
        let age = value(&out, "dbagent_database_xid_age", &[("datname", db)]).unwrap();
        assert!(age > 0.0, "{db}: {age}");
        let ratio = value(
            &out,
            "dbagent_database_xid_wraparound_ratio",
            &[("datname", db)],
        )
        .unwrap();
        assert!(ratio > 0.0 && ratio < 0.01, "{db}: {ratio}");
        let mxid = value(
            &out,
            "dbagent_database_mxid_wraparound_ratio",
            &[("datname", db)],
        )
        .unwrap();
        assert!((0.0..0.01).contains(&mxid), "{db}: {mxid}");
    }
});

pg_test!(vacuum_per_table_series_are_bounded_by_top_tables, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    pg.psql(
        "CREATE TABLE big (id int) WITH (autovacuum_enabled = off); \
         CREATE TABLE small (id int) WITH (autovacuum_enabled = off); \
         INSERT INTO big SELECT generate_series(1, 500); \
         INSERT INTO small SELECT generate_series(1, 100); \
         DELETE FROM big; DELETE FROM small",
    );
    let mut poller = Poller::new(&pg);
    poller.config.top_tables = 1;
    assert!(wait_dead(&poller, "big", 500.0) >= 500.0);
    let out = poller.run(&mut Vacuum::default()).expect("collect");
    let dead = family(&out, DEAD).unwrap();
    let names: Vec<&str> = dead
        .samples
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| *k == "relname")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    assert_eq!(names, vec!["big", OTHER]);
    assert_eq!(value(&out, DEAD, &[("relname", "big")]), Some(500.0));
    assert_eq!(value(&out, DEAD, &[("relname", OTHER)]), Some(100.0));
    assert_eq!(
        value(&out, DEAD, &[("relname", OTHER), ("schemaname", OTHER)]),
        Some(100.0)
    );
    assert_eq!(
        family(&out, "pg_stat_user_tables_n_live_tup")
            .unwrap()
            .samples
            .len(),
        2
    );
});

// postgres_exporter's per-table families: the same top tables (by dead rows) with the
// exporter's labels, and no `(other)` row (the exporter has none; summing every table's
// statistics would cost more than the rest of a poll).
pg_test!(
    vacuum_serves_the_exporters_per_table_families_bounded_the_same_way,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
            "CREATE TABLE big (id int) WITH (autovacuum_enabled = off); \
         CREATE TABLE small (id int) WITH (autovacuum_enabled = off); \
         INSERT INTO big SELECT generate_series(1, 500); \
         INSERT INTO small SELECT generate_series(1, 100); \
         DELETE FROM big; DELETE FROM small; VACUUM small; SELECT count(*) FROM big",
        );
        let mut poller = Poller::new(&pg);
        poller.config.top_tables = 1;
        assert!(wait_dead(&poller, "big", 500.0) >= 500.0);
        let out = poller.run(&mut Vacuum::default()).expect("collect");
        let ins = "pg_stat_user_tables_n_tup_ins";
        assert_eq!(
            value(&out, ins, &[("relname", "big"), ("schemaname", "public")]),
            Some(500.0)
        );
        assert_eq!(value(&out, ins, &[("relname", OTHER)]), None);
        assert_eq!(family(&out, ins).unwrap().samples.len(), 1);
        assert!(value(&out, "pg_stat_user_tables_seq_scan", &[("relname", "big")]).unwrap() >= 1.0);
        assert_eq!(
            value(
                &out,
                "pg_stat_user_tables_last_vacuum",
                &[("relname", "big")]
            ),
            Some(0.0)
        );
        assert_eq!(
            family(&out, "pg_stat_user_tables_last_vacuum")
                .unwrap()
                .samples
                .len(),
            1
        );
        assert!(
            value(
                &out,
                "pg_stat_user_tables_table_size_bytes",
                &[("relname", "big")]
            )
            .unwrap()
                > 0.0
        );
        assert_eq!(
            value(
                &out,
                "pg_stat_user_tables_vacuum_count",
                &[("relname", OTHER)]
            ),
            None
        );
        for f in [ins, "pg_statio_user_tables_heap_blocks_hit"] {
            let fam = family(&out, f).unwrap();
            for s in &fam.samples {
                let keys: Vec<&str> = s.labels.iter().map(|(k, _)| *k).collect();
                assert_eq!(keys, ["datname", "schemaname", "relname"], "{f}");
            }
        }
    }
);
