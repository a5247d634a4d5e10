//! The connections collector against real clusters: the share of usable connection slots in
//! use, idle-in-transaction sessions and their age, sessions waiting on a lock.

use std::time::Duration;

use dbagent::collect::connections::Connections;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, value};
use crate::support::sessions::Sessions;

pg_test!(
    connections_exhaustion_ratio_rises_near_max_connections,
    |v| {
        let pg = Cluster::start(
            v,
            ClusterOptions {
                extra_conf: vec![("max_connections".into(), "20".into())],
                ..ClusterOptions::default()
            },
        );
        let poller = Poller::new(&pg);
        let out = poller.run(&mut Connections).expect("collect");
        assert_eq!(value(&out, "pg_settings_max_connections", &[]), Some(20.0));
        // superuser_reserved_connections = 3, reserved_connections = 0 (16+) by default.
        assert_eq!(
            value(&out, "dbagent_connections_usable_limit", &[]),
            Some(17.0)
        );
        let idle_ratio = value(&out, "dbagent_connections_exhaustion_ratio", &[]).unwrap();
        assert!(idle_ratio < 0.5, "{idle_ratio}");

        // The poller's session plus 17 more: max_connections - 2 client sessions.
        let mut sessions = Sessions::new(&pg);
        for _ in 0..17 {
            sessions.open();
        }
        let out = poller.run(&mut Connections).expect("collect");
        assert_eq!(value(&out, "dbagent_connections_sessions", &[]), Some(18.0));
        let ratio = value(&out, "dbagent_connections_exhaustion_ratio", &[]).unwrap();
        assert!(ratio > 0.9, "{ratio}");
        assert!(
            value(
                &out,
                "pg_stat_activity_sessions",
                &[("datname", "postgres"), ("state", "idle")]
            )
            .unwrap()
                >= 17.0
        );
    }
);

pg_test!(connections_idle_in_transaction_session_shows_its_age, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    let poller = Poller::new(&pg);
    let out = poller.run(&mut Connections).expect("collect");
    assert_eq!(
        value(
            &out,
            "dbagent_connections_idle_in_transaction_sessions",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &out,
            "dbagent_connections_idle_in_transaction_max_age_seconds",
            &[]
        ),
        Some(0.0)
    );

    let mut sessions = Sessions::new(&pg);
    let s = sessions.open();
    sessions.execute(s, "BEGIN; SELECT 1");
    std::thread::sleep(Duration::from_millis(1500));
    let out = poller.run(&mut Connections).expect("collect");
    assert_eq!(
        value(
            &out,
            "dbagent_connections_idle_in_transaction_sessions",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &out,
            "pg_stat_activity_sessions",
            &[("datname", "postgres"), ("state", "idle in transaction")]
        ),
        Some(1.0)
    );
    let age = value(
        &out,
        "dbagent_connections_idle_in_transaction_max_age_seconds",
        &[],
    )
    .unwrap();
    assert!((1.0..60.0).contains(&age), "{age}");
    let oldest = value(
        &out,
        "dbagent_connections_oldest_transaction_age_seconds",
        &[],
    )
    .unwrap();
    assert!(oldest >= age, "{oldest} < {age}");

    sessions.execute(s, "COMMIT");
    let out = poller.run(&mut Connections).expect("collect");
    assert_eq!(
        value(
            &out,
            "dbagent_connections_idle_in_transaction_sessions",
            &[]
        ),
        Some(0.0)
    );
});
