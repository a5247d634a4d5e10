//! The replication collector against a real primary and standby: the primary lists its
//! standby with a lag in bytes, the standby reports itself as a replica with its replay lag.

use std::time::{Duration, Instant};

use dbagent::collect::replication::Replication;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, family, value};

pg_test!(
    replication_primary_lists_standby_and_standby_reports_replica,
    |v| {
        let primary = Cluster::start(v, ClusterOptions::default());
        let replica = primary.start_replica();
        primary.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id");

        let on_primary = Poller::new(&primary);
        let deadline = Instant::now() + Duration::from_secs(20);
        let out = loop {
            let out = on_primary.run(&mut Replication).expect("collect");
            if value(&out, "dbagent_replication_standbys", &[]) == Some(1.0)
                || Instant::now() >= deadline
            {
                break out;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(value(&out, "pg_replication_is_replica", &[]), Some(0.0));
        assert_eq!(value(&out, "dbagent_replication_standbys", &[]), Some(1.0));
        let bytes = family(&out, "pg_stat_replication_replay_lag_bytes").unwrap();
        assert_eq!(bytes.samples.len(), 1, "{bytes:?}");
        let standby = &bytes.samples[0];
        assert!(standby.value >= 0.0, "{standby:?}");
        let app = format!("dbagent-it-{}", replica.port());
        assert!(
            standby.labels.contains(&("application_name", app.clone())),
            "{standby:?}"
        );
        assert!(
            standby
                .labels
                .contains(&("client_addr", "127.0.0.1".to_owned())),
            "{standby:?}"
        );
        let replay = value(
            &out,
            "pg_stat_replication_replay_lag_seconds",
            &[("application_name", &app)],
        );
        assert!(replay.is_some_and(|s| s >= 0.0), "{replay:?}");
        assert!(family(&out, "pg_replication_lag_seconds").is_none());
        // postgres_exporter's families, with its labels and label values.
        let diff = family(&out, "pg_stat_replication_pg_wal_lsn_diff").unwrap();
        let keys: Vec<&str> = diff.samples[0].labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "application_name",
                "client_addr",
                "state",
                "slot_name",
                "pid"
            ]
        );
        assert!(
            diff.samples[0]
                .labels
                .contains(&("client_addr", "127.0.0.1/32".to_owned())),
            "{diff:?}"
        );
        assert!(
            diff.samples[0]
                .labels
                .contains(&("state", "streaming".to_owned())),
            "{diff:?}"
        );
        assert!(value(&out, "pg_stat_replication_pg_current_wal_lsn_bytes", &[]).unwrap() > 0.0);

        let on_standby = Poller::new(&replica);
        let out = on_standby.run(&mut Replication).expect("collect");
        assert_eq!(value(&out, "pg_replication_is_replica", &[]), Some(1.0));
        let lag = value(&out, "pg_replication_lag_seconds", &[]).unwrap();
        assert!((0.0..60.0).contains(&lag), "{lag}");
        let bytes = value(&out, "dbagent_replication_replay_lag_bytes", &[]).unwrap();
        assert!(bytes >= 0.0, "{bytes}");
        assert!(family(&out, "pg_stat_replication_replay_lag_bytes").is_none());
        assert!(value(&out, "pg_replication_last_replay_seconds", &[]).unwrap() >= 0.0);
    }
);
