//! The PostgreSQL 16-18 statistics against real clusters (15 and 18): pg_stat_io (16+),
//! pg_stat_wal, replication slots under postgres_exporter's names, the shipped rules that read
//! checkpoint and I/O series evaluated against a real poll, and a rule that reads a family the
//! server's version lacks rejected once `dbagent run` knows the version.

use std::path::Path;
use std::time::{Duration, Instant};

use dbagent::alert::engine::{Engine, EngineState};
use dbagent::alert::rules::{AlertsFile, EXAMPLE};
use dbagent::collect::checkpoints::Checkpoints;
use dbagent::collect::replication_slots::ReplicationSlots;
use dbagent::collect::stat_io::StatIo;
use dbagent::collect::stat_wal::StatWal;
use dbagent::collect::{Family, Output};

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::collect::{Poller, family, value};
use crate::support::dbagent::Agent;
use crate::support::sidecar::Sidecar;

fn major(v: PgVersion) -> u32 {
    match v {
        PgVersion::V15 => 15,
        PgVersion::V17 => 17,
        PgVersion::V18 => 18,
    }
}

/// The client backends' relation I/O in the normal context (what a query does).
const CLIENT: [(&str, &str); 3] = [
    ("backend_type", "client backend"),
    ("object", "relation"),
    ("context", "normal"),
];

pg_test!(io_and_wal_statistics_follow_the_server_version, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    pg.psql("CREATE TABLE t AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g; SELECT count(*) FROM t; CHECKPOINT");
    let poller = Poller::new(&pg);

    let wal = poller.run(&mut StatWal).expect("collect pg_stat_wal");
    assert!(value(&wal, "pg_stat_wal_records_total", &[]).unwrap() > 0.0);
    assert!(value(&wal, "pg_stat_wal_bytes_total", &[]).unwrap() > 0.0);
    assert!(value(&wal, "pg_stat_wal_fpi_total", &[]).is_some());
    assert!(value(&wal, "pg_stat_wal_buffers_full_total", &[]).is_some());
    // 18 moved WAL writes and syncs to pg_stat_io.
    for name in [
        "pg_stat_wal_writes_total",
        "pg_stat_wal_syncs_total",
        "pg_stat_wal_write_time_seconds_total",
        "pg_stat_wal_sync_time_seconds_total",
    ] {
        assert_eq!(family(&wal, name).is_some(), v == PgVersion::V15, "{name}");
    }

    // The session that wrote the table has ended, so its I/O statistics are flushed; the
    // checkpointer flushes its own at the end of the checkpoint.
    let deadline = Instant::now() + Duration::from_secs(30);
    let io = loop {
        let io = poller.run(&mut StatIo).expect("collect pg_stat_io");
        let written = family(&io, "pg_stat_io_writes_total")
            .is_some_and(|f| f.samples.iter().any(|s| s.value > 0.0));
        if v == PgVersion::V15 || written || Instant::now() > deadline {
            break io;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if v == PgVersion::V15 {
        assert!(io.families.is_empty(), "{:?}", io.families);
        return;
    }
    let extends = value(&io, "pg_stat_io_extends_total", &CLIENT).expect("client extends");
    assert!(extends > 0.0);
    assert_eq!(
        value(&io, "pg_stat_io_extend_bytes_total", &CLIENT),
        Some(extends * 8192.0)
    );
    assert!(value(&io, "pg_stat_io_hits_total", &CLIENT).unwrap() > 0.0);
    assert!(value(&io, "pg_stat_io_read_time_seconds_total", &CLIENT).is_some());
    assert!(
        family(&io, "pg_stat_io_writes_total")
            .unwrap()
            .samples
            .iter()
            .any(|s| s.value > 0.0),
        "{:?}",
        family(&io, "pg_stat_io_writes_total")
    );
    // Rows that never did any I/O are left out: far fewer series than the view has rows.
    let rows: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_io")
        .trim()
        .parse()
        .unwrap();
    let reads = family(&io, "pg_stat_io_hits_total").unwrap().samples.len();
    assert!((reads as i64) < rows, "{reads} of {rows}");
});

pg_test!(
    a_replication_slot_is_served_under_the_exporter_names_on_primary_and_standby,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        pg.psql("SELECT pg_create_physical_replication_slot('standby_a', true)");
        let poller = Poller::new(&pg);
        let out = poller.run(&mut ReplicationSlots).expect("collect");
        let slot = [("slot_name", "standby_a"), ("database", "")];
        let typed = [("slot_name", "standby_a"), ("slot_type", "physical")];
        assert_eq!(value(&out, "pg_replication_slots_active", &slot), Some(0.0));
        assert_eq!(
            value(&out, "pg_replication_slots_slot_is_active", &typed),
            Some(0.0)
        );
        let retained = value(&out, "pg_replication_slots_pg_wal_lsn_diff", &slot).unwrap();
        assert!(retained >= 0.0);
        assert!(value(&out, "pg_replication_slots_slot_current_wal_lsn", &typed).unwrap() > 0.0);
        assert_eq!(
            value(
                &out,
                "pg_replication_slots_wal_status",
                &[("slot_name", "standby_a"), ("wal_status", "reserved")]
            ),
            Some(1.0)
        );
        // Unlimited max_slot_wal_keep_size: no safe size; not active: no confirmed position.
        assert!(
            family(&out, "pg_replication_slots_safe_wal_size_bytes")
                .unwrap()
                .samples
                .is_empty()
        );
        assert!(
            family(&out, "pg_replication_slots_slot_confirmed_flush_lsn")
                .unwrap()
                .samples
                .is_empty()
        );

        // Nobody consumes the slot: the WAL written since is retained.
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS id");
        pg.psql("ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'; SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(20);
        let out = loop {
            let out = poller.run(&mut ReplicationSlots).expect("collect");
            if value(&out, "pg_replication_slots_safe_wal_size_bytes", &typed).is_some()
                || Instant::now() > deadline
            {
                break out;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(value(&out, "pg_replication_slots_pg_wal_lsn_diff", &slot).unwrap() > retained);
        let safe = value(&out, "pg_replication_slots_safe_wal_size_bytes", &typed).unwrap();
        // About max_slot_wal_keep_size (PostgreSQL counts from segment boundaries).
        assert!(
            safe > 0.0 && safe < 2.0 * 1024.0 * 1024.0 * 1024.0,
            "{safe}"
        );

        // A slot on a standby (for a cascading standby): positions against the received WAL.
        let standby = pg.start_replica();
        standby.psql("SELECT pg_create_physical_replication_slot('cascade', true)");
        let out = Poller::new(&standby)
            .run(&mut ReplicationSlots)
            .expect("collect on the standby");
        let cascade = [("slot_name", "cascade"), ("slot_type", "physical")];
        assert_eq!(
            value(&out, "pg_replication_slots_slot_is_active", &cascade),
            Some(0.0)
        );
        assert!(value(&out, "pg_replication_slots_slot_current_wal_lsn", &cascade).unwrap() > 0.0);
        assert!(
            value(
                &out,
                "pg_replication_slots_pg_wal_lsn_diff",
                &[("slot_name", "cascade")]
            )
            .is_some()
        );
    }
);

/// One poll of the collectors the version-dependent rules read, with a CHECKPOINT between a
/// first and a second poll of the checkpoints collector (so that its ratio exists).
fn poll(pg: &Cluster) -> Vec<Family> {
    let poller = Poller::new(pg);
    let mut checkpoints = Checkpoints::default();
    poller.run(&mut checkpoints).expect("checkpoints");
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS id; CHECKPOINT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = poller.run(&mut checkpoints).expect("checkpoints");
        if family(&out, "dbagent_checkpoints_requested_ratio").is_some()
            || Instant::now() > deadline
        {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut families = out.families;
    for out in [
        poller.run(&mut StatIo).expect("stat_io"),
        poller.run(&mut StatWal).expect("stat_wal"),
        poller
            .run(&mut ReplicationSlots)
            .expect("replication_slots"),
    ] {
        let Output { families: f, .. } = out;
        families.extend(f);
    }
    families
}

const IO_RULE: &str = "\
rules:
  - name: ClientBackendsRead
    expr: pg_stat_io_hits_total{backend_type=\"client backend\"} > 0
route:
  receiver: hook
receivers:
  - name: hook
    webhook: { url: \"http://127.0.0.1:9/hook\" }
";

pg_test!(
    the_shipped_checkpoint_rule_evaluates_against_a_real_poll,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let shipped = AlertsFile::parse(EXAMPLE, Path::new("alerts.yml")).expect("shipped rules");
        shipped
            .check_server_version(major(v))
            .expect("the shipped rules fit the server");
        let families = poll(&pg);
        let now = jiff::Timestamp::now();
        let mut state = EngineState::default();
        let engine = Engine {
            file: &shipped,
            external_url: "http://127.0.0.1:9100",
        };
        engine.evaluate(&mut state, now, &families, &|_, _| None);
        // The only checkpoint since the first poll was requested: pending (for: 30m).
        let inst = state
            .instances
            .values()
            .find(|i| i.rule == "CheckpointsRequestedTooOften")
            .unwrap_or_else(|| panic!("not evaluated: {:?}", state.instances.keys()));
        assert_eq!(inst.value, 1.0);

        // A rule on pg_stat_io evaluates on 18 and is refused on 15.
        let io = AlertsFile::parse(IO_RULE, Path::new("io.yml")).unwrap();
        match v {
            PgVersion::V17 | PgVersion::V18 => {
                io.check_server_version(18)
                    .expect("pg_stat_io exists on 18");
                let mut state = EngineState::default();
                Engine {
                    file: &io,
                    external_url: "http://127.0.0.1:9100",
                }
                .evaluate(&mut state, now, &families, &|_, _| None);
                assert!(
                    state
                        .instances
                        .values()
                        .any(|i| i.rule == "ClientBackendsRead"),
                    "{:?}",
                    families.iter().map(|f| f.name).collect::<Vec<_>>()
                );
            }
            PgVersion::V15 => {
                let e = io.check_server_version(15).unwrap_err().to_string();
                assert!(
                e.contains("rule `ClientBackendsRead` reads pg_stat_io_hits_total, which exists on PostgreSQL 16 and later only"),
                "{e}"
            );
            }
        }
    }
);

const CHECKPOINTER_RULE: &str = "\
rules:
  - name: CheckpointsRequested
    expr: pg_stat_checkpointer_num_requested_total > 1000
route:
  receiver: hook
receivers:
  - name: hook
    webhook: { url: \"http://127.0.0.1:9/hook\" }
";

/// Against PostgreSQL 15 a rule on a 17+ family is an error once the agent is connected
/// (status and log say which rule, which metric, where it exists, what to use), and
/// `config validate --server-version` says the same without a server; fixed and reloaded
/// (SIGHUP), the rules are evaluated again.
#[test]
fn a_rule_reading_a_17_family_is_refused_by_run_against_postgresql_15() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nmonitor:\n  interval: 1s\n",
        pg.conninfo()
    ));
    std::fs::write(agent.dir().join("alerts.yml"), CHECKPOINTER_RULE).unwrap();
    let wanted = "rule `CheckpointsRequested` reads pg_stat_checkpointer_num_requested_total, which exists on PostgreSQL 17 and later only; use pg_stat_bgwriter_checkpoints_req_total";

    let validate = agent.run(&["config", "validate", "--server-version", "15"]);
    assert_eq!(validate.code, 1, "{}", validate.all());
    assert!(validate.stderr.contains(wanted), "{}", validate.all());
    let validate = agent.run(&["config", "validate", "--server-version", "18"]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    assert!(
        validate.stdout.contains("valid for PostgreSQL 18"),
        "{}",
        validate.all()
    );

    let sidecar = Sidecar::start(&agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (code, body) = sidecar.get("/api/v1/status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        if status["alerts"]["disabled"].is_string() || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let disabled = status["alerts"]["disabled"].as_str().unwrap_or_default();
    assert!(disabled.contains("PostgreSQL 15 does not have"), "{status}");
    assert!(disabled.contains(wanted), "{status}");
    let metrics = sidecar.wait_metrics("dbagent_alert_rules 0", Duration::from_secs(10), |m| {
        crate::support::sidecar::sample(m, "dbagent_alert_rules") == Some(0.0)
    });
    assert!(metrics.contains("pg_up 1"), "{metrics}");
    assert!(sidecar.log().contains(wanted), "{}", sidecar.log());

    // Fixed as the message says and reloaded: the rules are evaluated again.
    std::fs::write(
        agent.dir().join("alerts.yml"),
        CHECKPOINTER_RULE.replace(
            "pg_stat_checkpointer_num_requested_total",
            "pg_stat_bgwriter_checkpoints_req_total",
        ),
    )
    .unwrap();
    sidecar.signal(nix::sys::signal::Signal::SIGHUP);
    sidecar.wait_metrics("dbagent_alert_rules 1", Duration::from_secs(30), |m| {
        crate::support::sidecar::sample(m, "dbagent_alert_rules") == Some(1.0)
    });
    let (_, body) = sidecar.get("/api/v1/status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert!(status["alerts"]["disabled"].is_null(), "{status}");
}
