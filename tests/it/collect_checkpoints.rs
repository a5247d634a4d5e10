//! The checkpoints collector against real clusters: the counters from pg_stat_bgwriter (15)
//! or pg_stat_checkpointer (18) under the same names, increasing after a CHECKPOINT.

use std::time::{Duration, Instant};

use dbagent::collect::checkpoints::Checkpoints;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::collect::{Poller, family, value};

const REQUESTED: &str = "pg_stat_bgwriter_checkpoints_req_total";

pg_test!(checkpoints_counters_increase_after_checkpoint, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    let poller = Poller::new(&pg);
    let out = poller.run(&mut Checkpoints).expect("collect");
    let before = value(&out, REQUESTED, &[]).unwrap();
    let written_before = value(&out, "pg_stat_bgwriter_buffers_checkpoint_total", &[]).unwrap();
    assert!(value(&out, "pg_stat_bgwriter_checkpoints_timed_total", &[]).is_some());
    assert!(
        value(
            &out,
            "pg_stat_bgwriter_checkpoint_write_time_seconds_total",
            &[]
        )
        .unwrap()
            >= 0.0
    );
    assert!(value(&out, "pg_stat_bgwriter_buffers_alloc_total", &[]).is_some());
    // Version-specific columns appear only where the server has them.
    let v18 = v == PgVersion::V18;
    assert_eq!(
        family(&out, "pg_stat_checkpointer_num_done_total").is_some(),
        v18
    );
    assert_eq!(
        family(&out, "pg_stat_checkpointer_restartpoints_done_total").is_some(),
        v18
    );
    assert_eq!(
        family(&out, "pg_stat_bgwriter_buffers_backend_total").is_some(),
        !v18
    );

    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS id; CHECKPOINT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = poller.run(&mut Checkpoints).expect("collect");
        if value(&out, REQUESTED, &[]).unwrap() > before || Instant::now() >= deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(value(&out, REQUESTED, &[]).unwrap() > before);
    assert!(
        value(&out, "pg_stat_bgwriter_buffers_checkpoint_total", &[]).unwrap() > written_before
    );
});
