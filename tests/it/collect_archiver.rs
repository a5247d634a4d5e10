//! The archiver collector against real clusters: counts and the age of the last archived
//! segment from pg_stat_archiver.

use dbagent::collect::archiver::Archiver;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, value};

pg_test!(archiver_counts_archived_segments_and_their_age, |v| {
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("/bin/true".into()),
            ..ClusterOptions::default()
        },
    );
    pg.psql("SELECT pg_switch_wal()");
    pg.psql("CREATE TABLE t AS SELECT 1");
    pg.psql("SELECT pg_switch_wal()");
    let poller = Poller::new(&pg);
    let mut out = poller.run(&mut Archiver).expect("collect");
    for _ in 0..50 {
        if value(&out, "pg_stat_archiver_archived_total", &[]).unwrap_or(0.0) >= 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = poller.run(&mut Archiver).expect("collect");
    }
    assert!(value(&out, "pg_stat_archiver_archived_total", &[]).unwrap() >= 1.0);
    assert_eq!(value(&out, "pg_stat_archiver_failed_total", &[]), Some(0.0));
    assert_eq!(value(&out, "dbagent_archiver_failing", &[]), Some(0.0));
    let age = value(&out, "pg_stat_archiver_last_archive_age_seconds", &[]).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
});
