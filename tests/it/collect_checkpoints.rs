//! The checkpoints collector against real clusters: the counters from pg_stat_bgwriter (15)
//! or pg_stat_checkpointer (18) under the same names, increasing after a CHECKPOINT; on 18
//! also postgres_exporter's pg_stat_checkpointer names (milliseconds), and on both the
//! requested share of the checkpoints seen since the first poll.

use std::time::{Duration, Instant};

use dbagent::collect::checkpoints::Checkpoints;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::collect::{Poller, family, value};

const REQUESTED: &str = "pg_stat_bgwriter_checkpoints_req_total";

pg_test!(checkpoints_counters_increase_after_checkpoint, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    let poller = Poller::new(&pg);
    let mut checkpoints = Checkpoints::default();
    let out = poller.run(&mut checkpoints).expect("collect");
    let before = value(&out, REQUESTED, &[]).unwrap();
    let written_before = value(&out, "pg_stat_bgwriter_buffers_checkpoint_total", &[]).unwrap();
    // The names postgres_exporter's mixin reads exist on every version.
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
    // Nothing to compare with yet: no ratio at the first poll.
    assert!(family(&out, "dbagent_checkpoints_requested_ratio").is_none());
    // Version-specific columns appear only where the server has them.
    let v18 = v == PgVersion::V18;
    for name in [
        "pg_stat_checkpointer_num_done_total",
        "pg_stat_checkpointer_restartpoints_done_total",
        "pg_stat_checkpointer_num_timed_total",
        "pg_stat_checkpointer_num_requested_total",
        "pg_stat_checkpointer_restartpoints_timed_total",
        "pg_stat_checkpointer_restartpoints_req_total",
        "pg_stat_checkpointer_write_time_total",
        "pg_stat_checkpointer_sync_time_total",
        "pg_stat_checkpointer_buffers_written_total",
        "pg_stat_checkpointer_stats_reset_total",
        "pg_stat_checkpointer_slru_written_total",
    ] {
        assert_eq!(family(&out, name).is_some(), v18, "{name}");
    }
    assert_eq!(
        family(&out, "pg_stat_bgwriter_buffers_backend_total").is_some(),
        !v18
    );

    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS id; CHECKPOINT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = poller.run(&mut checkpoints).expect("collect");
        if value(&out, REQUESTED, &[]).unwrap() > before || Instant::now() >= deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let requested = value(&out, REQUESTED, &[]).unwrap();
    assert!(requested > before);
    assert!(
        value(&out, "pg_stat_bgwriter_buffers_checkpoint_total", &[]).unwrap() > written_before
    );
    // The CHECKPOINT is the only checkpoint since the first poll: all of them were requested.
    assert_eq!(
        value(&out, "dbagent_checkpoints_requested_ratio", &[]),
        Some(1.0)
    );
    if v18 {
        // The exporter's names carry the same counters as the bgwriter names, times in ms.
        assert_eq!(
            value(&out, "pg_stat_checkpointer_num_requested_total", &[]),
            Some(requested)
        );
        assert_eq!(
            value(&out, "pg_stat_checkpointer_num_timed_total", &[]),
            value(&out, "pg_stat_bgwriter_checkpoints_timed_total", &[])
        );
        assert_eq!(
            value(&out, "pg_stat_checkpointer_buffers_written_total", &[]),
            value(&out, "pg_stat_bgwriter_buffers_checkpoint_total", &[])
        );
        let ms = value(&out, "pg_stat_checkpointer_write_time_total", &[]).unwrap();
        let s = value(
            &out,
            "pg_stat_bgwriter_checkpoint_write_time_seconds_total",
            &[],
        )
        .unwrap();
        assert!((ms / 1000.0 - s).abs() < 1e-6, "{ms} ms vs {s} s");
        assert!(value(&out, "pg_stat_checkpointer_stats_reset_total", &[]).unwrap() > 1.6e9);
    }
});
