//! The pgstattuple collector against real clusters: off by default; without the extension it
//! says so; with it, exact dead-tuple and free-space figures that rise when most rows die and
//! fall after VACUUM FULL, and the leaf density of the table's btree index.

use std::time::Duration;

use dbagent::collect::pgstattuple::PgStatTuple;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, value};

pg_test!(
    pgstattuple_measures_dead_tuples_and_free_space_exactly,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql(
        "CREATE TABLE churn (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = off);\n\
         INSERT INTO churn SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g;\n\
         ANALYZE churn;",
    );
        let mut poller = Poller::new(&pg);
        // Off by default: no query, no series.
        let out = poller.run(&mut PgStatTuple::default()).expect("collect");
        assert!(out.families.is_empty(), "{:?}", out.families);

        poller.config.pgstattuple_interval = Duration::from_secs(7 * 24 * 3600);
        poller.config.bloat_min_size = 1 << 20;
        let out = poller.run(&mut PgStatTuple::default()).expect("collect");
        assert_eq!(value(&out, "dbagent_pgstattuple_available", &[]), Some(0.0));

        pg.psql("CREATE EXTENSION pgstattuple");
        let labels = [("datname", "postgres"), ("relname", "churn")];
        let out = poller.run(&mut PgStatTuple::default()).expect("collect");
        assert_eq!(value(&out, "dbagent_pgstattuple_available", &[]), Some(1.0));
        let fresh =
            value(&out, "dbagent_table_exact_bloat_ratio", &labels).expect("churn measured");
        assert!(fresh < 0.2, "fresh table ratio {fresh}");
        assert_eq!(
            value(&out, "dbagent_table_exact_dead_tuple_bytes", &labels),
            Some(0.0)
        );
        let density = value(
            &out,
            "dbagent_index_exact_leaf_density_ratio",
            &[("indexrelname", "churn_pkey")],
        )
        .expect("index measured");
        assert!(density > 0.7 && density <= 1.0, "{density}");

        pg.psql("DELETE FROM churn WHERE id % 10 <> 0");
        let out = poller.run(&mut PgStatTuple::default()).expect("collect");
        let dead = value(&out, "dbagent_table_exact_dead_tuple_bytes", &labels).unwrap();
        let ratio = value(&out, "dbagent_table_exact_bloat_ratio", &labels).unwrap();
        assert!(dead > 4_000_000.0, "dead tuple bytes {dead}");
        assert!(ratio > 0.8, "ratio after deleting 90% {ratio}");
        let status = out.status.expect("status");
        assert_eq!(status["tables"][0]["relname"], "churn", "{status}");

        pg.psql("VACUUM FULL churn; ANALYZE churn");
        let out = poller.run(&mut PgStatTuple::default()).expect("collect");
        // VACUUM FULL left the table under the size floor or with ~no bloat.
        if let Some(r) = value(&out, "dbagent_table_exact_bloat_ratio", &labels) {
            assert!(r < 0.2, "ratio after VACUUM FULL {r}");
        }
        assert_eq!(
            value(&out, "dbagent_pgstattuple_skipped_relations", &[]),
            Some(0.0)
        );
    }
);
