//! The locks collector (and the connections collector's lock waiters) against real clusters:
//! a session blocked by another's lock shows as blocked, with its blocker and a growing wait.

use std::time::{Duration, Instant};

use dbagent::collect::connections::Connections;
use dbagent::collect::locks::Locks;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, value};
use crate::support::sessions::Sessions;

pg_test!(locks_blocked_session_shows_with_its_wait, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    pg.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let poller = Poller::new(&pg);
    let out = poller.run(&mut Locks).expect("collect");
    assert_eq!(
        value(&out, "dbagent_locks_blocked_sessions", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&out, "dbagent_locks_longest_wait_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &out,
            "dbagent_locks_awaited",
            &[("mode", "AccessShareLock")]
        ),
        Some(0.0)
    );

    let mut sessions = Sessions::new(&pg);
    let holder = sessions.open();
    let waiter = sessions.open();
    sessions.execute(holder, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
    let blocked = sessions.spawn(waiter, "SELECT count(*) FROM t");
    let deadline = Instant::now() + Duration::from_secs(20);
    while value(
        &poller.run(&mut Locks).expect("collect"),
        "dbagent_locks_blocked_sessions",
        &[],
    ) != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the waiter never showed as blocked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let out = poller.run(&mut Locks).expect("collect");
    assert_eq!(
        value(&out, "dbagent_locks_blocked_sessions", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&out, "dbagent_locks_blocking_sessions", &[]),
        Some(1.0)
    );
    let wait = value(&out, "dbagent_locks_longest_wait_seconds", &[]).unwrap();
    assert!((1.0..60.0).contains(&wait), "{wait}");
    assert!(
        value(
            &out,
            "dbagent_locks_held",
            &[("mode", "AccessExclusiveLock")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(
            &out,
            "dbagent_locks_awaited",
            &[("mode", "AccessShareLock")]
        ),
        Some(1.0)
    );
    let out = poller.run(&mut Connections).expect("collect");
    assert_eq!(
        value(&out, "dbagent_connections_lock_waiting_sessions", &[]),
        Some(1.0)
    );

    sessions.execute(holder, "ROLLBACK");
    assert!(sessions.finished(blocked, Duration::from_secs(20)));
    let out = poller.run(&mut Locks).expect("collect");
    assert_eq!(
        value(&out, "dbagent_locks_blocked_sessions", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&out, "dbagent_locks_longest_wait_seconds", &[]),
        Some(0.0)
    );
});
