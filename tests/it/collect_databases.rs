//! The databases collector against real clusters: counters and sizes from pg_stat_database,
//! and the cache hit ratio of the interval between two polls (none on the first poll, none
//! across a statistics reset, never outside [0, 1]).

use std::time::{Duration, Instant};

use dbagent::collect::Output;
use dbagent::collect::databases::Databases;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, family, value};

const RATIO: &str = "dbagent_database_cache_hit_ratio";

fn ratio(out: &Output) -> Option<f64> {
    value(out, RATIO, &[("datname", "postgres")])
}

pg_test!(databases_cache_hit_ratio_comes_from_interval_deltas, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    pg.psql("CREATE TABLE t AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g");
    let poller = Poller::new(&pg);
    let mut collector = Databases::default();
    let out = poller.run(&mut collector).expect("collect");
    assert_eq!(family(&out, RATIO).map(|f| f.samples.len()), Some(0));
    assert!(value(&out, "pg_database_size_bytes", &[("datname", "postgres")]).unwrap() > 1e6);
    assert!(
        value(
            &out,
            "pg_stat_database_xact_commit_total",
            &[("datname", "postgres")]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        value(
            &out,
            "pg_stat_database_numbackends",
            &[("datname", "postgres")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &out,
            "pg_stat_database_blks_hit_total",
            &[("datname", "postgres")]
        )
        .is_some()
    );
    assert!(
        value(
            &out,
            "pg_stat_database_blks_hit_total",
            &[("datname", "template1")]
        )
        .is_none()
    );
    assert!(value(&out, "pg_database_size_bytes", &[("datname", "template0")]).is_none());

    // Reads between two polls give a ratio in [0, 1] (statistics reach the view within
    // about a second of the reading session's transaction end).
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        pg.psql("SELECT count(*) FROM t");
        std::thread::sleep(Duration::from_millis(300));
        let out = poller.run(&mut collector).expect("collect");
        if let Some(r) = ratio(&out) {
            break r;
        }
        assert!(Instant::now() < deadline, "no cache hit ratio after reads");
    };
    assert!((0.0..=1.0).contains(&r), "{r}");

    // A statistics reset between two polls: that interval has no ratio, and no poll ever
    // gives one outside [0, 1].
    for _ in 0..3 {
        pg.psql("SELECT count(*) FROM t");
        pg.psql("SELECT pg_stat_reset()");
        let out = poller.run(&mut collector).expect("collect");
        assert_eq!(ratio(&out), None, "ratio across a reset");
        pg.psql("SELECT count(*) FROM t");
        std::thread::sleep(Duration::from_millis(1100));
        let out = poller.run(&mut collector).expect("collect");
        for s in &family(&out, RATIO).unwrap().samples {
            assert!((0.0..=1.0).contains(&s.value), "{s:?}");
        }
    }
});
