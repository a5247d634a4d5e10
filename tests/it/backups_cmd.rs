//! `dbagent backups list|show|verify|expire` on synthetic repositories built on disk (no
//! PostgreSQL needed): the JSON shapes, verify's exit codes and its naming of damaged files
//! and missing WAL, and expire removing exactly what its plan (and `--dry-run`) says, never
//! the WAL a kept backup needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dbagent::backup::manifest::{BackupFile, BackupManifest, MANIFEST_FILE, MANIFEST_FORMAT};
use dbagent::repo::Compression;
use dbagent::wal::Lsn;
use dbagent::wal::name::segment_name;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::dbagent::{Agent, bind_repo};

const SEG: u64 = 16 << 20;
const SYSID: &str = "7000000000000000001";

/// An agent with a repository (repo.json written) and the given retention section.
fn agent_with(retention: &str) -> Agent {
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"host=127.0.0.1 user=unused\"\nrepository:\n  path: REPO\n{retention}"
    ));
    let repo = repo_path(&agent);
    bind_repo(&repo, SYSID, SEG);
    agent
}

fn repo_path(agent: &Agent) -> PathBuf {
    agent.dir().join("repo")
}

fn id_of(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Writes a complete backup that started at `start` and needs WAL segments `first..=last`
/// of timeline 1: two stored files, their checksums and manifest.json. Returns the manifest.
fn write_backup(agent: &Agent, start: Timestamp, first: u64, last: u64) -> BackupManifest {
    let id = id_of(start);
    let dir = repo_path(agent).join("backups").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let base: Vec<u8> = (0..(3 << 20) + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut files = Vec::new();
    for (name, bytes) in [
        ("base.tar.zst", base.as_slice()),
        (
            "backup_manifest",
            b"{\"PostgreSQL-Backup-Manifest-Version\": 1}".as_slice(),
        ),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
        files.push(BackupFile {
            name: name.into(),
            size: bytes.len() as u64 * 4,
            stored_size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            tablespace: None,
            index: None,
        });
    }
    let m = BackupManifest {
        format: MANIFEST_FORMAT,
        id,
        label: Some("nightly".into()),
        system_identifier: SYSID.into(),
        pg_version: "15.8".into(),
        pg_major: 15,
        timeline: 1,
        start_lsn: Lsn(first * SEG + 0x28),
        stop_lsn: Lsn(last * SEG + 0x138),
        wal_start: segment_name(1, first, SEG),
        wal_stop: segment_name(1, last, SEG),
        wal_segment_size: SEG,
        start_time: start,
        stop_time: start + SignedDuration::from_secs(95),
        compression: Compression::Zstd,
        compressed_by: "dbagent".into(),
        files,
        dbagent_version: "0.1.0".into(),
        backup_type: Default::default(),
        parent: None,
        taken_from: None,
    };
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    m
}

/// Where segment `segno` of timeline `tli` is archived.
fn wal_path(agent: &Agent, tli: u32, segno: u64) -> PathBuf {
    let name = segment_name(tli, segno, SEG);
    repo_path(agent)
        .join("wal")
        .join(&name[..16])
        .join(format!("{name}.zst"))
}

/// Archives segments `range` of timeline `tli` (content does not matter here) and
/// `0000000N.history` for every timeline after the first.
fn write_wal(agent: &Agent, tli: u32, range: std::ops::Range<u64>) {
    for segno in range {
        let path = wal_path(agent, tli, segno);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"wal").unwrap();
    }
    if tli > 1 {
        std::fs::write(
            repo_path(agent).join(format!("wal/{tli:08X}.history.zst")),
            b"history",
        )
        .unwrap();
    }
}

/// Every file and directory under `root`, relative, sorted (the lock file left out).
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out.remove("lock");
    out.remove("lock.use");
    out
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn days_ago(now: Timestamp, days: i64) -> Timestamp {
    (now - SignedDuration::from_hours(24 * days))
        .round(jiff::Unit::Second)
        .unwrap()
}

#[test]
fn backups_list_of_a_missing_or_empty_repository_is_empty() {
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: \"host=127.0.0.1 user=unused\"\nrepository:\n  path: REPO\n",
    );
    let run = agent.run(&["backups", "list"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("no backups in"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&repo_path(&agent).display().to_string())
    );
    let run = agent.run(&["backups", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json(), json!([]));
    assert!(
        !repo_path(&agent).exists(),
        "list must not create the repository"
    );

    let agent = agent_with("");
    std::fs::create_dir_all(repo_path(&agent).join("backups/.partial-20260101T000000Z")).unwrap();
    let run = agent.run(&["backups", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json(), json!([]));
}

#[test]
fn backups_list_and_show_json_shape() {
    let agent = agent_with("");
    let t1: Timestamp = "2026-11-21T06:15:00Z".parse().unwrap();
    let t2: Timestamp = "2026-11-22T06:15:00Z".parse().unwrap();
    // Written newest first: list still prints oldest first.
    let m2 = write_backup(&agent, t2, 20, 21);
    let m1 = write_backup(&agent, t1, 10, 12);
    // An interrupted backup (no manifest) is not listed.
    std::fs::create_dir_all(repo_path(&agent).join("backups/20261123T061500Z")).unwrap();

    let run = agent.run(&["backups", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let list = run.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let expected_keys: BTreeSet<&str> = [
        "id",
        "label",
        "start_time",
        "stop_time",
        "duration_seconds",
        "size_bytes",
        "stored_bytes",
        "start_lsn",
        "stop_lsn",
        "timeline",
        "wal_start",
        "wal_stop",
        "pg_version",
        "compression",
        "compressed_by",
        "type",
        "parent",
        "chain",
        "chain_complete",
    ]
    .into();
    assert_eq!(keys(&list[0]), expected_keys);
    assert_eq!(list[0]["id"], "20261121T061500Z");
    assert_eq!(list[1]["id"], "20261122T061500Z");
    let e = &list[0];
    assert_eq!(e["label"], "nightly");
    assert_eq!(e["start_time"], "2026-11-21T06:15:00Z");
    assert_eq!(e["stop_time"], "2026-11-21T06:16:35Z");
    assert_eq!(e["duration_seconds"].as_f64(), Some(95.0));
    assert_eq!(e["size_bytes"], m1.size());
    assert_eq!(e["stored_bytes"], m1.stored_size());
    assert_eq!(e["start_lsn"], "0/A000028");
    assert_eq!(e["stop_lsn"], "0/C000138");
    assert_eq!(e["timeline"], 1);
    assert_eq!(e["wal_start"], "00000001000000000000000A");
    assert_eq!(e["wal_stop"], "00000001000000000000000C");
    assert_eq!(e["pg_version"], "15.8");
    assert_eq!(e["compression"], "zstd");
    assert_eq!(e["type"], "full");
    assert_eq!(e["parent"], Value::Null);
    assert_eq!(e["chain"], json!(["20261121T061500Z"]));

    let run = agent.run(&["backups", "list"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("ID "), "{}", lines[0]);
    assert!(
        lines[1].starts_with("20261121T061500Z  nightly  2026-11-21 06:15:00  1m 35s"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("0/A000028"), "{}", lines[1]);
    assert!(lines[2].starts_with("20261122T061500Z"), "{}", lines[2]);

    let run = agent.run(&["backups", "show", &m2.id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let mut shown = run.json();
    assert_eq!(shown["chain"], json!([m2.id]));
    assert_eq!(shown["chain_complete"], true);
    let obj = shown.as_object_mut().unwrap();
    obj.remove("chain");
    obj.remove("chain_complete");
    let shown: BackupManifest = serde_json::from_value(shown).unwrap();
    assert_eq!(shown, m2);

    let run = agent.run(&["backups", "show", &m2.id]);
    assert_eq!(run.code, 0, "{}", run.all());
    for f in &m2.files {
        assert!(run.stdout.contains(&f.name), "{}", run.stdout);
        assert!(run.stdout.contains(&f.sha256), "{}", run.stdout);
        assert!(
            run.stdout
                .contains(&dbagent::units::human_bytes(f.stored_size)),
            "{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains(SYSID), "{}", run.stdout);

    let run = agent.run(&["backups", "show", "20990101T000000Z"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("no complete backup 20990101T000000Z in")
            && run
                .stderr
                .contains("`dbagent backups list` shows the backups"),
        "{}",
        run.stderr
    );
    // A directory without manifest.json is not a backup.
    let run = agent.run(&["backups", "show", "20261123T061500Z"]);
    assert_eq!(run.code, 1, "{}", run.all());
}

#[test]
fn backups_verify_exit_codes_and_damage_named() {
    let agent = agent_with("");
    let t1: Timestamp = "2026-11-21T06:15:00Z".parse().unwrap();
    let t2: Timestamp = "2026-11-22T06:15:00Z".parse().unwrap();
    let m1 = write_backup(&agent, t1, 10, 12);
    let m2 = write_backup(&agent, t2, 20, 21);
    write_wal(&agent, 1, 10..25);

    // No argument: the newest backup.
    let run = agent.run(&["backups", "verify"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // It says how far it checked the WAL: the backup's own segments, for presence.
    assert_eq!(
        run.stdout.lines().next().unwrap_or_default(),
        format!(
            "OK {} (2 files, 3.0 MiB; WAL {} to {} present, 2 segments, not read)",
            m2.id,
            segment_name(1, 20, SEG),
            segment_name(1, 21, SEG)
        )
    );
    assert!(
        run.stdout.lines().nth(1).unwrap_or_default().starts_with(
            "WAL: each backup's own segments (start to end of the backup) were looked up in the archive, not read; `dbagent wal verify` reads"
        ),
        "{}",
        run.stdout
    );

    let run = agent.run(&["backups", "verify", "--all", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let v = run.json();
    assert_eq!(v["ok"], true);
    let ids: Vec<&str> = v["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [m1.id.as_str(), m2.id.as_str()]);
    assert_eq!(v["backups"][0]["files_checked"], 2);
    assert_eq!(v["backups"][0]["wal_checked"], 3);
    assert_eq!(v["backups"][0]["wal_check"], "presence");
    assert_eq!(
        (&v["backups"][0]["wal_start"], &v["backups"][0]["wal_stop"]),
        (
            &json!(segment_name(1, 10, SEG)),
            &json!(segment_name(1, 12, SEG))
        )
    );
    assert_eq!(v["backups"][0]["problems"], json!([]));

    // Flip one byte deep in the oldest backup's archive and lose one of its WAL segments.
    let damaged = repo_path(&agent)
        .join("backups")
        .join(&m1.id)
        .join("base.tar.zst");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[(2 << 20) + 7] ^= 0x40;
    std::fs::write(&damaged, bytes).unwrap();
    std::fs::remove_file(wal_path(&agent, 1, 11)).unwrap();
    let missing_wal = segment_name(1, 11, SEG);

    let run = agent.run(&["backups", "verify", "--all"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("FAILED {}", m1.id), "{}", run.stdout);
    assert!(
        lines[1].starts_with("  base.tar.zst: checksum differs"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with(&format!("  WAL {missing_wal}: missing")),
        "{}",
        run.stdout
    );
    assert_eq!(
        lines[3],
        format!(
            "  WAL {} to {}: 3 segments looked up, 1 missing or unreadable",
            segment_name(1, 10, SEG),
            segment_name(1, 12, SEG)
        ),
        "{}",
        run.stdout
    );
    assert!(
        lines[4].starts_with(&format!("OK {}", m2.id)),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains(&format!("1 of 2 backups failed verification ({})", m1.id)),
        "{}",
        run.stderr
    );

    let run = agent.run(&["backups", "verify", &m1.id, "--json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let v = run.json();
    assert_eq!(v["ok"], false);
    let b = &v["backups"][0];
    assert_eq!((&b["id"], &b["ok"]), (&json!(m1.id), &json!(false)));
    let problems = b["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0]["file"], "base.tar.zst");
    assert!(
        problems[0]["problem"]
            .as_str()
            .unwrap()
            .contains("checksum differs")
    );
    assert!(problems[0].get("wal").is_none());
    assert_eq!(problems[1]["wal"], missing_wal.as_str());
    assert!(problems[1]["problem"].as_str().unwrap().contains("missing"));

    // The undamaged newest backup still verifies.
    let run = agent.run(&["backups", "verify", &m2.id]);
    assert_eq!(run.code, 0, "{}", run.all());

    // A truncated file and a missing file are named too.
    let dir = repo_path(&agent).join("backups").join(&m2.id);
    std::fs::write(dir.join("base.tar.zst"), b"short").unwrap();
    std::fs::remove_file(dir.join("backup_manifest")).unwrap();
    let run = agent.run(&["backups", "verify"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains("  base.tar.zst: size differs")
            && run.stdout.contains("  backup_manifest: missing"),
        "{}",
        run.stdout
    );

    let run = agent.run(&["backups", "verify", "20990101T000000Z"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("no complete backup 20990101T000000Z in"),
        "{}",
        run.stderr
    );
}

#[test]
fn backups_verify_without_backups_fails() {
    let agent = agent_with("");
    let run = agent.run(&["backups", "verify"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("no complete backup in"),
        "{}",
        run.stderr
    );
    let run = agent.run(&["backups", "verify", "x", "--all"]);
    assert_eq!(
        run.code,
        2,
        "ID and --all together are bad usage: {}",
        run.all()
    );
}

/// Four backups, 10, 5 and 2 days and 1 hour old, each needing 2 segments; WAL 0..60 on
/// timeline 1, a history file, leftovers of an interrupted backup.
fn aged_repository(retention: &str) -> (Agent, Vec<BackupManifest>) {
    let agent = agent_with(retention);
    let now = Timestamp::now();
    let backups = vec![
        write_backup(&agent, days_ago(now, 10), 10, 11),
        write_backup(&agent, days_ago(now, 5), 20, 21),
        write_backup(&agent, days_ago(now, 2), 30, 31),
        write_backup(
            &agent,
            (now - SignedDuration::from_hours(1))
                .round(jiff::Unit::Second)
                .unwrap(),
            40,
            41,
        ),
    ];
    write_wal(&agent, 1, 0..60);
    write_wal(&agent, 2, 45..50);
    let backups_dir = repo_path(&agent).join("backups");
    std::fs::create_dir_all(backups_dir.join(".partial-20990101T000000Z/pgbb")).unwrap();
    std::fs::create_dir_all(backups_dir.join("20980101T000000Z")).unwrap();
    (agent, backups)
}

#[test]
fn backups_expire_dry_run_removes_nothing() {
    let (agent, backups) = aged_repository("retention:\n  full: 1\n  window: 3d\n");
    let before = tree(&repo_path(&agent));
    let run = agent.run(&["backups", "expire", "--dry-run", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        tree(&repo_path(&agent)),
        before,
        "dry run changed the repository"
    );
    let v = run.json();
    assert_eq!(
        keys(&v),
        [
            "dry_run",
            "kept",
            "removed",
            "wal_removed",
            "wal_removed_first",
            "wal_removed_last",
            "wal_kept_from",
            "leftovers_removed",
            "notes",
        ]
        .into()
    );
    assert_eq!(v["dry_run"], true);
    // 3-day window: the 2-day and 1-hour-old backups stopped within it; the 5-day one is
    // the newest before it starts; the 10-day one goes.
    assert_eq!(
        v["kept"],
        json!([
            {"id": backups[1].id, "reason": "window_start"},
            {"id": backups[2].id, "reason": "window"},
            {"id": backups[3].id, "reason": "full+window"},
        ])
    );
    assert_eq!(v["removed"], json!([backups[0].id]));
    assert_eq!(v["wal_removed"], 20);
    assert_eq!(v["wal_removed_first"], segment_name(1, 0, SEG));
    assert_eq!(v["wal_removed_last"], segment_name(1, 19, SEG));
    assert_eq!(v["wal_kept_from"], segment_name(1, 20, SEG));
    assert_eq!(v["leftovers_removed"].as_array().unwrap().len(), 2);

    let run = agent.run(&["backups", "expire", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(tree(&repo_path(&agent)), before);
    assert!(
        run.stdout.starts_with("dry run: nothing is removed\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("would remove {}", backups[0].id)),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "WAL: would remove 20 files ({} .. {})",
            segment_name(1, 0, SEG),
            segment_name(1, 19, SEG)
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("within the 3d window (retention.window)"),
        "{}",
        run.stdout
    );
}

#[test]
fn backups_expire_removes_exactly_what_the_plan_says() {
    let (agent, backups) = aged_repository("retention:\n  full: 2\n");
    let repo = repo_path(&agent);
    let before = tree(&repo);
    let plan = agent
        .run(&["backups", "expire", "--dry-run", "--json"])
        .json();
    let run = agent.run(&["backups", "expire", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let done = run.json();
    assert_eq!(done["dry_run"], false);
    for key in [
        "kept",
        "removed",
        "wal_removed",
        "wal_removed_first",
        "wal_removed_last",
    ] {
        assert_eq!(done[key], plan[key], "{key} differs from the dry run");
    }
    assert_eq!(done["removed"], json!([backups[0].id, backups[1].id]));

    // Exactly these paths are gone: the two oldest backups, WAL 0..30 of timeline 1 (the
    // oldest kept backup starts at 30) and the leftovers.
    let mut expected = before.clone();
    expected.retain(|p| {
        !(p.starts_with(&format!("backups/{}", backups[0].id))
            || p.starts_with(&format!("backups/{}", backups[1].id))
            || p.starts_with("backups/.partial-")
            || p.starts_with("backups/20980101T000000Z"))
    });
    for segno in 0..30 {
        let path = wal_path(&agent, 1, segno);
        expected.remove(&path.strip_prefix(&repo).unwrap().display().to_string());
    }
    assert_eq!(tree(&repo), expected);
    // Kept: the history file, timeline 2, every segment from the oldest kept wal_start on.
    assert!(repo.join("wal/00000002.history.zst").exists());
    for segno in 30..60 {
        assert!(
            wal_path(&agent, 1, segno).exists(),
            "segment {segno} removed"
        );
    }

    let run = agent.run(&["backups", "list", "--json"]);
    let ids: Vec<Value> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(ids, [json!(backups[2].id), json!(backups[3].id)]);
    let run = agent.run(&["backups", "verify", "--all"]);
    assert_eq!(
        run.code,
        0,
        "kept backups must stay verifiable: {}",
        run.all()
    );

    // Nothing left to do the second time.
    let run = agent.run(&["backups", "expire"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("WAL: nothing to remove"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("removed "), "{}", run.stdout);
}

#[test]
fn backups_expire_with_no_backups_removes_no_wal() {
    let agent = agent_with("retention:\n  full: 1\n");
    write_wal(&agent, 1, 0..10);
    let before = tree(&repo_path(&agent));
    let run = agent.run(&["backups", "expire", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json()["wal_removed"], 0);
    assert_eq!(tree(&repo_path(&agent)), before);
    let run = agent.run(&["backups", "expire"]);
    assert!(run.stdout.contains("no backups in"), "{}", run.stdout);
}

#[test]
fn backups_expire_waits_for_the_lock_then_names_the_holder() {
    let (agent, _) = aged_repository("retention:\n  full: 1\n");
    let repo = dbagent::repo::Repo::at(repo_path(&agent));
    let _held = repo
        .lock("backup", std::time::Duration::ZERO)
        .expect("take the lock");
    let before = tree(&repo_path(&agent));
    let run = agent.run(&["backups", "expire"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("locked by backup"), "{}", run.stderr);
    assert_eq!(tree(&repo_path(&agent)), before);
}

/// Rewrites backup `m` as an incremental on `parent` (manifest.json only).
fn make_incremental(agent: &Agent, m: &mut BackupManifest, parent: &str) {
    m.backup_type = dbagent::backup::manifest::BackupType::Incremental;
    m.parent = Some(parent.to_string());
    std::fs::write(
        repo_path(agent)
            .join("backups")
            .join(&m.id)
            .join(MANIFEST_FILE),
        serde_json::to_vec_pretty(&*m).unwrap(),
    )
    .unwrap();
}

#[test]
fn backups_list_show_verify_and_expire_follow_chains() {
    let agent = agent_with("retention:\n  full: 1\n");
    let t = |h: i64| {
        "2026-11-21T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(h)
    };
    // F1 ← I1 ← I2, then F2 ← I3.
    let f1 = write_backup(&agent, t(0), 10, 10);
    let mut i1 = write_backup(&agent, t(1), 11, 11);
    make_incremental(&agent, &mut i1, &f1.id);
    let mut i2 = write_backup(&agent, t(2), 12, 12);
    make_incremental(&agent, &mut i2, &i1.id);
    let f2 = write_backup(&agent, t(3), 13, 13);
    let mut i3 = write_backup(&agent, t(4), 14, 14);
    make_incremental(&agent, &mut i3, &f2.id);
    write_wal(&agent, 1, 10..15);

    let list = agent.run(&["backups", "list", "--json"]).json();
    let list = list.as_array().unwrap();
    assert_eq!(list[2]["type"], "incremental");
    assert_eq!(list[2]["parent"], i1.id.as_str());
    assert_eq!(list[2]["chain"], json!([f1.id, i1.id, i2.id]));
    assert_eq!(list[2]["chain_complete"], true);
    assert_eq!(list[3]["type"], "full");
    let run = agent.run(&["backups", "list"]);
    assert!(run.stdout.lines().next().unwrap().contains("TYPE"));
    let line = run.stdout.lines().find(|l| l.starts_with(&i2.id)).unwrap();
    assert!(line.ends_with(&format!("incr ← {}", i1.id)), "{line}");

    let run = agent.run(&["backups", "show", &i2.id]);
    assert_eq!(run.code, 0, "{}", run.all());
    let chain = format!("{} → {} → {}", f1.id, i1.id, i2.id);
    assert!(run.stdout.contains(&chain), "{}", run.stdout);
    assert!(run.stdout.contains("incremental"), "{}", run.stdout);

    // Verify of I2 verifies its chain; a damaged I1 is named, and I2 fails with it.
    let run = agent.run(&["backups", "verify", &i2.id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let ids: Vec<String> = run.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [f1.id.clone(), i1.id.clone(), i2.id.clone()]);
    let base = repo_path(&agent)
        .join("backups")
        .join(&i1.id)
        .join("base.tar.zst");
    let mut bytes = std::fs::read(&base).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&base, &bytes).unwrap();
    let run = agent.run(&["backups", "verify", &i2.id]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("OK {}", f1.id)),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("FAILED {}", i1.id)),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "depends on backup {}, which failed verification",
            i1.id
        )),
        "{}",
        run.stdout
    );
    bytes[1000] ^= 0xff;
    std::fs::write(&base, &bytes).unwrap();

    // retention.full 1: the old chain goes whole, the new one stays whole.
    let run = agent.run(&["backups", "expire", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let r = run.json();
    assert_eq!(r["removed"], json!([f1.id, i1.id, i2.id]));
    let ids: Vec<String> = agent
        .run(&["backups", "list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [f2.id.clone(), i3.id.clone()]);

    // A missing parent: list says the chain is broken, verify names the missing backup.
    std::fs::remove_dir_all(repo_path(&agent).join("backups").join(&f2.id)).unwrap();
    let list = agent.run(&["backups", "list", "--json"]).json();
    assert_eq!(list[0]["chain_complete"], false);
    let run = agent.run(&["backups", "verify", &i3.id]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains(&format!(
            "parent backup {} of incremental backup {}",
            f2.id, i3.id
        )),
        "{}",
        run.stdout
    );
}
