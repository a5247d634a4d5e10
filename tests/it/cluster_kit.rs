//! Tests of the throwaway-cluster kit itself (`support/cluster.rs`).
//!
//! Every other PostgreSQL test builds on the kit, so it gets its own checks: clusters of both
//! versions start with the settings asked for, replicas stream, restarts work, and a panicking
//! test leaves no server or directory behind.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::support::cluster::*;

/// Polls `check` every 100 ms for up to `timeout`; true as soon as it returns true.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
}

/// Whether process `pid` is gone: `kill(pid, 0)` fails with ESRCH, or it is a zombie waiting to
/// be reaped (an orphaned postmaster is reparented to PID 1, which in some containers reaps
/// only every second or two).
fn process_gone(pid: u32) -> bool {
    let raw = i32::try_from(pid).expect("a PID fits in i32");
    match kill(Pid::from_raw(raw), None) {
        Err(Errno::ESRCH) => true,
        _ => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.trim_start().chars().next()
            })
            .is_some_and(|state| state == 'Z'),
    }
}

crate::pg_test!(starts_with_default_options, |v| {
    let cluster = Cluster::start(v, ClusterOptions::default());
    assert_eq!(cluster.version(), v);
    assert_eq!(cluster.host(), "127.0.0.1");

    let version_num: u32 = cluster
        .psql("SHOW server_version_num")
        .parse()
        .expect("server_version_num is a number");
    assert_eq!(version_num / 10000, v.major());

    assert_eq!(cluster.psql("SHOW data_checksums"), "on");
    assert_eq!(cluster.psql("SHOW archive_mode"), "off");
    assert_eq!(cluster.psql("SHOW wal_level"), "replica");
    assert_eq!(cluster.psql("SHOW port"), cluster.port().to_string());
    assert_eq!(
        cluster.psql("SHOW shared_preload_libraries"),
        "pg_stat_statements"
    );
    assert_eq!(
        cluster.psql("SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'"),
        "pg_stat_statements"
    );
    // The extension is usable, not just created.
    cluster.psql("SELECT count(*) FROM pg_stat_statements");

    // Several statements in one call, command tags suppressed, rows one per line.
    assert_eq!(
        cluster.psql("CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'x'), (2, 'y'); SELECT * FROM t ORDER BY a"),
        "1|x\n2|y"
    );
    let err = cluster
        .try_psql("SELECT * FROM no_such_table")
        .expect_err("querying a missing table fails");
    assert!(err.contains("no_such_table"), "unexpected error: {err}");

    // TCP with passwords: the superuser's works, a new role's works, a wrong one does not.
    assert_eq!(
        cluster
            .try_psql_conninfo(&cluster.conninfo(), "SELECT current_user")
            .expect("superuser login over TCP"),
        SUPERUSER
    );
    cluster.psql("CREATE ROLE agent LOGIN PASSWORD 'agent pw''s'");
    assert_eq!(
        cluster
            .try_psql_conninfo(
                &cluster.conninfo_as("agent", "agent pw's"),
                "SELECT current_user"
            )
            .expect("new role's login over TCP"),
        "agent"
    );
    assert!(
        cluster
            .try_psql_conninfo(&cluster.conninfo_as("agent", "wrong"), "SELECT 1")
            .is_err()
    );

    // Layout: everything under one /tmp directory, short socket path, private data directory.
    assert!(cluster.root_dir().starts_with("/tmp"));
    assert!(cluster.data_dir().starts_with(cluster.root_dir()));
    assert!(cluster.socket_dir().starts_with(cluster.root_dir()));
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    assert!(socket.exists(), "no socket at {}", socket.display());
    assert!(socket.as_os_str().len() < 100);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cluster.data_dir())
            .expect("data directory metadata")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    let log = std::fs::read_to_string(cluster.log_path()).expect("server log is readable");
    assert!(
        log.contains("database system is ready to accept connections"),
        "{log}"
    );
    assert!(cluster.is_running());
    assert!(cluster.postmaster_pid().is_some());
});

crate::pg_test!(honours_options, |v| {
    let opts = ClusterOptions {
        archive_mode: true,
        archive_command: Some("/bin/true %p".to_owned()),
        wal_level: "logical".to_owned(),
        pg_stat_statements: false,
        data_checksums: false,
        extra_conf: vec![
            ("work_mem".to_owned(), "'12MB'".to_owned()),
            ("log_line_prefix".to_owned(), "[%p] it's %m".to_owned()),
        ],
    };
    let cluster = Cluster::start(v, opts);
    assert_eq!(cluster.psql("SHOW archive_mode"), "on");
    assert_eq!(cluster.psql("SHOW archive_command"), "/bin/true %p");
    assert_eq!(cluster.psql("SHOW wal_level"), "logical");
    assert_eq!(cluster.psql("SHOW data_checksums"), "off");
    assert_eq!(cluster.psql("SHOW shared_preload_libraries"), "");
    assert_eq!(
        cluster.psql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"),
        "0"
    );
    assert_eq!(cluster.psql("SHOW work_mem"), "12MB");
    assert_eq!(cluster.psql("SHOW log_line_prefix"), "[%p] it's %m");
});

crate::pg_test!(replica_streams_from_primary, |v| {
    let primary = Cluster::start(v, ClusterOptions::default());
    primary.psql("CREATE TABLE replicated (id int PRIMARY KEY, note text)");
    let replica = primary.start_replica();

    assert_ne!(replica.port(), primary.port());
    assert_ne!(replica.root_dir(), primary.root_dir());
    assert_eq!(replica.version(), v);
    assert_eq!(replica.psql("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(primary.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(replica.psql("SHOW port"), replica.port().to_string());
    // The replica is reachable over TCP with the superuser's password like any cluster.
    assert_eq!(
        replica
            .try_psql_conninfo(&replica.conninfo(), "SELECT 1")
            .expect("replica login over TCP"),
        "1"
    );

    primary.psql("INSERT INTO replicated VALUES (42, 'hello replica')");
    let seen = eventually(Duration::from_secs(30), || {
        replica
            .try_psql("SELECT note FROM replicated WHERE id = 42")
            .is_ok_and(|note| note == "hello replica")
    });
    assert!(seen, "the row did not reach the replica within 30 s");
    assert!(
        replica
            .try_psql("INSERT INTO replicated VALUES (1, 'no')")
            .is_err()
    );
});

crate::pg_test!(drop_cleans_up_after_panic, |v| {
    let mut seen: Option<(PathBuf, u32)> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let cluster = Cluster::start(v, ClusterOptions::default());
        let pid = cluster
            .postmaster_pid()
            .expect("a running cluster has a postmaster PID");
        seen = Some((cluster.root_dir().to_owned(), pid));
        panic!("deliberate panic to test the kit's cleanup");
    }));
    assert!(result.is_err(), "the closure should have panicked");
    let (root, pid) = seen.expect("the cluster started before the panic");

    assert!(!root.exists(), "{} was not removed", root.display());
    assert!(
        eventually(Duration::from_secs(10), || process_gone(pid)),
        "postmaster {pid} is still running"
    );
});

crate::pg_test!(stop_start_again_restart, |v| {
    let mut cluster = Cluster::start(v, ClusterOptions::default());
    let port = cluster.port();
    cluster.psql("CREATE TABLE kept (a int); INSERT INTO kept VALUES (7)");
    let first_pid = cluster
        .postmaster_pid()
        .expect("a running cluster has a postmaster PID");

    cluster.stop();
    assert!(!cluster.is_running());
    assert_eq!(cluster.postmaster_pid(), None);
    assert!(cluster.try_psql("SELECT 1").is_err());

    cluster.start_again();
    assert!(cluster.is_running());
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql("SELECT a FROM kept"), "7");
    let second_pid = cluster
        .postmaster_pid()
        .expect("a restarted cluster has a postmaster PID");
    assert_ne!(second_pid, first_pid);

    // A restart-only parameter takes effect after restart().
    cluster.set_conf("max_connections", "35");
    assert_eq!(cluster.psql("SHOW max_connections"), "40");
    cluster.restart();
    assert_eq!(cluster.psql("SHOW max_connections"), "35");
    assert_eq!(cluster.port(), port);
    assert_ne!(cluster.postmaster_pid(), Some(second_pid));

    // A reloadable parameter takes effect after reload().
    cluster.set_conf("log_min_duration_statement", "1234");
    cluster.reload();
    assert!(
        eventually(Duration::from_secs(10), || {
            cluster.psql("SHOW log_min_duration_statement") == "1234ms"
        }),
        "log_min_duration_statement was not reloaded"
    );

    // Dropping a stopped cluster is fine too.
    cluster.stop();
    let root = cluster.root_dir().to_owned();
    drop(cluster);
    assert!(!root.exists());
});
