//! `dbagent wal verify` against real archives on PostgreSQL 15 and 18: a deleted segment, a
//! flipped byte and a foreign history file are named; a second run over an unchanged archive
//! reads no segment again (results remembered in state.db) and `--full` reads everything; a
//! promoted standby's timeline is followed along its history and a record that disagrees with
//! it is a conflict; the result is in `check` (wal_verify), in /metrics (dbagent_wal_verify_*,
//! promtool-clean) and fires the shipped WalArchiveDamaged rule; exit codes 0, 1 and 2.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbagent::backup::manifest;
use dbagent::repo::Repo;
use dbagent::wal::{self, WalFileKind, WalName};
use serde_json::Value;

use crate::backup::{archived_cluster, take_backup};
use crate::pg_test;
use crate::support::alerting::{alerts_with, recorder_runtime, wait_notification};
use crate::support::cluster::Cluster;
use crate::support::dbagent::{Agent, Run};
use crate::support::recorder::Recorder;
use crate::support::sidecar::{Sidecar, promtool_check, sample};

/// `dbagent wal verify --json ARGS`, checked to have exited with `code`.
fn verify(agent: &Agent, args: &[&str], code: i32) -> Value {
    let mut full = vec!["wal", "verify", "--json", "--no-progress"];
    full.extend_from_slice(args);
    let run = agent.run(&full);
    assert_eq!(run.code, code, "wal verify {args:?}: {}", run.all());
    run.json()
}

/// The names of the problems of one kind in a `--json` result.
fn named(j: &Value, kind: &str) -> Vec<String> {
    j["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter(|p| p["kind"] == kind)
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn n(j: &Value, key: &str) -> u64 {
    j[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {j}"))
}

/// Complete segments archived after the oldest backup's last segment, oldest first.
fn segments_after_backup(agent: &Agent) -> Vec<WalName> {
    let repo = Repo::at(agent.repo());
    let backup = manifest::list(&repo).expect("backups").remove(0);
    wal::list_segments(&repo)
        .expect("list the archive")
        .into_iter()
        .filter(|w| w.kind == WalFileKind::Segment && w.name[..] > backup.wal_stop[..])
        .collect()
}

/// The stored file of an archived segment.
fn stored(agent: &Agent, w: &WalName) -> PathBuf {
    let repo = Repo::at(agent.repo());
    let found = wal::find(&repo, w)
        .expect("look up in the archive")
        .expect("archived");
    repo.locate(&found.0.key)
}

/// Flips one bit in the middle of a stored file (inside the compressed frame, which its
/// content checksum covers).
fn flip_middle_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).expect("read the stored segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path, &bytes).expect("write the stored segment");
}

/// Switches WAL `times` times, waiting each time until the switched-out segment is archived,
/// so that nothing more is archived afterwards. (The segment is named from what
/// pg_switch_wal() returns: with synchronous_commit = off, as the test clusters run, the write
/// position that `restore_cmd::switch_and_wait` reads can still be in the previous segment.)
fn switches(pg: &Cluster, times: usize) {
    for i in 0..times {
        pg.psql(&format!("INSERT INTO t SELECT {i}"));
        let name = pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let archived = pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if archived.get(..24).is_some_and(|a| a >= name.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not archived (last {archived})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The status and message of the wal_verify line of `check --json`, and the exit code.
fn check_wal_verify(agent: &Agent) -> (String, String, i32) {
    let run = agent.run(&["check", "--json"]);
    let j = run.json();
    let c = j["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "wal_verify")
        .unwrap_or_else(|| panic!("no wal_verify check in {j}"))
        .clone();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
        run.code,
    )
}

pg_test!(
    wal_verify_names_a_deleted_segment_a_flipped_byte_and_a_foreign_history_and_rereads_only_what_changed,
    |v| {
        let (agent, pg) = archived_cluster(v);
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        take_backup(&agent);
        switches(&pg, 5);

        let first = verify(&agent, &[], 0);
        assert_eq!(first["ok"], true, "{first}");
        let needed = n(&first, "segments_needed");
        assert!(needed >= 4, "{first}");
        assert_eq!(n(&first, "segments_read"), needed, "{first}");
        assert_eq!(n(&first, "segments_cached"), 0, "{first}");
        assert_eq!(first["timelines"][0]["coverage"], "followed", "{first}");

        // A second run over the unchanged archive reads no segment again.
        let second = verify(&agent, &[], 0);
        assert_eq!(n(&second, "segments_read"), 0, "{second}");
        assert_eq!(n(&second, "segments_cached"), needed, "{second}");

        // A segment deleted, a byte flipped in another, a history file from elsewhere.
        let after = segments_after_backup(&agent);
        assert!(after.len() >= 3, "{after:?}");
        let (deleted, flipped, rotted) = (&after[0], &after[1], &after[2]);
        std::fs::remove_file(stored(&agent, deleted)).expect("delete a segment");
        flip_middle_byte(&stored(&agent, flipped));
        let foreign = agent.repo().join("wal").join("00000003.history");
        std::fs::write(
            &foreign,
            "1\t0/1000000\tno recovery target specified\n\n2\t0/1800000\tno recovery target specified\n",
        )
        .expect("write a foreign history file");

        let third = verify(&agent, &[], 1);
        assert_eq!(third["ok"], false);
        assert_eq!(named(&third, "missing"), vec![deleted.name.clone()], "{third}");
        assert_eq!(named(&third, "damaged"), vec![flipped.name.clone()], "{third}");
        assert!(
            named(&third, "unknown_parent").contains(&"00000003.history".to_string()),
            "{third}"
        );
        assert!(
            named(&third, "foreign_history").contains(&"00000003.history".to_string()),
            "{third}"
        );
        // Only the changed file was read again.
        assert_eq!(n(&third, "segments_read"), 1, "{third}");
        assert_eq!(n(&third, "segments_cached"), needed - 2, "{third}");
        assert_eq!(n(&third, "segments_missing"), 1);
        assert_eq!(n(&third, "segments_damaged"), 1);

        // The text output: one line per problem, naming it; one error line on stderr.
        let text = agent.run(&["wal", "verify"]);
        assert_eq!(text.code, 1, "{}", text.all());
        for (label, name) in [
            ("MISSING", deleted.name.as_str()),
            ("DAMAGED", flipped.name.as_str()),
            ("CONFLICT", "00000003.history"),
        ] {
            assert!(
                text.stdout
                    .lines()
                    .any(|l| l.starts_with(label) && l.contains(name)),
                "no {label} line for {name}:\n{}",
                text.stdout
            );
        }
        assert!(
            text.stdout.lines().any(|l| l.starts_with("timeline 1: ")),
            "{}",
            text.stdout
        );
        assert!(
            text.stderr.contains("dbagent: error: wal verify: 1 missing, 1 damaged"),
            "{}",
            text.stderr
        );

        // The same result in check, which reads state.db only.
        let (status, msg, code) = check_wal_verify(&agent);
        assert_eq!(status, "critical", "{msg}");
        assert_eq!(code, 2);
        assert!(msg.contains(&deleted.name) && msg.contains(&flipped.name), "{msg}");

        // Damage that keeps the file's size and modification time (bit rot): the remembered
        // result is trusted until --full reads everything again.
        let path = stored(&agent, rotted);
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        flip_middle_byte(&path);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_times(std::fs::FileTimes::new().set_modified(mtime)))
            .expect("restore the mtime");
        let cached = verify(&agent, &[], 1);
        assert_eq!(n(&cached, "segments_read"), 0, "{cached}");
        assert_eq!(named(&cached, "damaged"), vec![flipped.name.clone()], "{cached}");
        let full = verify(&agent, &["--full"], 1);
        assert_eq!(full["full"], true);
        assert_eq!(n(&full, "segments_read"), needed - 1, "{full}");
        let mut damaged = named(&full, "damaged");
        damaged.sort();
        assert_eq!(damaged, vec![flipped.name.clone(), rotted.name.clone()], "{full}");
    }
);

/// Waits until the standby has replayed everything the primary wrote so far.
fn wait_replayed(primary: &Cluster, standby: &Cluster) {
    let lsn = primary.psql("SELECT pg_current_wal_lsn()");
    let deadline = Instant::now() + Duration::from_secs(60);
    while standby.psql(&format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'")) != "t" {
        assert!(
            Instant::now() < deadline,
            "the standby did not replay {lsn}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pg_test!(
    wal_verify_follows_a_promoted_standby_along_its_history_and_names_what_breaks_it,
    |v| {
        let (agent, pg) = archived_cluster(v);
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        take_backup(&agent);
        // The standby inherits archive_command: once promoted it archives timeline 2 into the
        // same repository, while the old primary goes on archiving timeline 1.
        let standby = pg.start_replica();
        switches(&pg, 2);
        wait_replayed(&pg, &standby);
        standby.psql("SELECT pg_promote(true, 60)");
        switches(&standby, 2);
        switches(&pg, 1);

        let j = verify(&agent, &[], 0);
        let timelines = j["timelines"].as_array().expect("timelines");
        assert_eq!(timelines.len(), 2, "{j}");
        let two = &timelines[1];
        assert_eq!(two["timeline"], 2, "{j}");
        assert_eq!(two["parent"], 1, "{j}");
        assert_eq!(two["history_file"], "00000002.history", "{j}");
        assert_eq!(two["origin"], "promotion", "{j}");
        assert_eq!(two["coverage"], "followed", "{j}");
        assert!(n(two, "segments_ok") >= 2, "{j}");
        assert!(
            j["range"]["last"]
                .as_str()
                .unwrap_or_default()
                .starts_with("0000000"),
            "{j}"
        );

        // A timeline-1 segment from before the switch point: both timelines need it.
        let switch = dbagent::wal::Lsn::parse(two["switch_lsn"].as_str().expect("switch_lsn"))
            .expect("an LSN");
        let seg = 16 << 20;
        let before_switch: Vec<WalName> = segments_after_backup(&agent)
            .into_iter()
            .filter(|w| w.tli == 1 && w.segno(seg) < switch.segno(seg))
            .collect();
        let victim = before_switch
            .first()
            .expect("a timeline-1 segment before the switch");
        std::fs::remove_file(stored(&agent, victim)).expect("delete a segment");
        // The record wal-push wrote for timeline 2 now disagrees with its history file, as if
        // another server had created a timeline 2.
        let record = agent.repo().join("timelines").join("00000002.json");
        let mut r: Value =
            serde_json::from_str(&std::fs::read_to_string(&record).expect("read the record"))
                .expect("the record is JSON");
        r["switch_lsn"] = Value::from("0/1000000");
        std::fs::write(&record, r.to_string()).expect("rewrite the record");

        let j = verify(&agent, &[], 1);
        assert_eq!(named(&j, "missing"), vec![victim.name.clone()], "{j}");
        assert_eq!(
            named(&j, "record_mismatch"),
            vec!["timelines/00000002.json".to_string()],
            "{j}"
        );
        assert_eq!(n(&j, "history_conflicts"), 1, "{j}");
    }
);

pg_test!(
    wal_verify_result_is_in_check_and_metrics_and_fires_the_shipped_alert,
    |v| {
        let rt = recorder_runtime();
        let rec = rt.block_on(Recorder::start(200, "ok"));
        let (agent, pg) = archived_cluster(v);
        agent.set_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nbackup:\n  wal_timeout: 60s\nmonitor:\n  interval: 1s\n",
            pg.conninfo(),
            pg.version().bin_dir().display()
        ));
        agent.share_with_postgres();
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
        take_backup(&agent);
        switches(&pg, 2);

        let (status, msg, _) = check_wal_verify(&agent);
        assert_eq!(status, "warning", "{msg}");
        assert!(msg.contains("never been verified"), "{msg}");
        let j = verify(&agent, &[], 0);
        let (status, msg, _) = check_wal_verify(&agent);
        assert_eq!(status, "ok", "{msg}");
        assert!(
            msg.contains(j["range"]["first"].as_str().unwrap_or("?"))
                && msg.contains("present and intact"),
            "{msg}"
        );

        let victim = segments_after_backup(&agent).remove(0);
        std::fs::remove_file(stored(&agent, &victim)).expect("delete a segment");
        let j = verify(&agent, &[], 1);
        let (status, msg, code) = check_wal_verify(&agent);
        assert_eq!((status.as_str(), code), ("critical", 2), "{msg}");
        assert!(msg.contains(&victim.name), "{msg}");

        std::fs::write(
            agent.dir().join("alerts.yml"),
            alerts_with("WalArchiveDamaged", &rec.url("/hook")),
        )
        .expect("write alerts.yml");
        let sidecar = Sidecar::start(&agent);
        let m = sidecar.wait_metrics("the WAL verification", Duration::from_secs(30), |m| {
            sample(m, "dbagent_wal_verify_segments{result=\"missing\"}").is_some()
        });
        assert_eq!(
            sample(&m, "dbagent_wal_verify_segments{result=\"missing\"}"),
            Some(1.0),
            "{m}"
        );
        assert_eq!(
            sample(&m, "dbagent_wal_verify_segments{result=\"ok\"}"),
            Some(n(&j, "segments_ok") as f64),
            "{m}"
        );
        assert_eq!(
            sample(&m, "dbagent_wal_verify_history_conflicts"),
            Some(0.0)
        );
        let start = dbagent::wal::Lsn::parse(j["range"]["start_lsn"].as_str().unwrap_or("?"))
            .expect("start_lsn");
        assert_eq!(
            sample(&m, "dbagent_wal_verify_range_start_lsn_bytes"),
            Some(start.0 as f64),
            "{m}"
        );
        for name in [
            "dbagent_wal_verify_range_end_lsn_bytes",
            "dbagent_wal_verify_age_seconds",
            "dbagent_wal_verify_last_run_timestamp_seconds",
        ] {
            assert!(sample(&m, name).is_some(), "{name} missing:\n{m}");
        }
        let ours: String = m
            .lines()
            .filter(|l| l.contains("dbagent_wal_verify_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let (ok, complaints) = promtool_check(&ours);
        assert!(ok && complaints.is_empty(), "{complaints}\n{ours}");

        let firing = wait_notification(&rec, "firing", &sidecar);
        let alert = &firing.body["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "WalArchiveDamaged", "{alert}");
        assert_eq!(alert["labels"]["result"], "missing", "{alert}");
    }
);

#[test]
fn wal_verify_exits_2_when_the_archive_cannot_be_verified() {
    // No repository yet.
    let agent = Agent::new("host=127.0.0.1");
    let run: Run = agent.run(&["wal", "verify"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = run.stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("dbagent: error: wal verify: ")
            && line.contains(&agent.repo().display().to_string())
            && line.contains("repository.path"),
        "{}",
        run.stderr
    );
    // A state database that is not one.
    std::fs::create_dir_all(agent.dir().join("state")).expect("state dir");
    std::fs::write(agent.dir().join("state/state.db"), vec![0x5a; 8192]).expect("garbage");
    let run = agent.run(&["wal", "verify", "--json"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("state.db") && run.stdout.is_empty(),
        "{}",
        run.all()
    );
    // Bad usage.
    assert_eq!(agent.run(&["wal", "verify", "--nope"]).code, 2);
}
