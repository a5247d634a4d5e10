//! A closed stdout ends a command quietly with status 0: `dbagent backups list | head -1` on
//! a long listing, and any command whose reader is already gone. Rust ignores SIGPIPE, so a
//! `println!` there panics (status 101); the commands write through `cli::output` instead.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use dbagent::backup::manifest::{BackupFile, BackupManifest, MANIFEST_FILE, MANIFEST_FORMAT};
use dbagent::repo::Compression;
use dbagent::wal::Lsn;
use dbagent::wal::name::segment_name;
use jiff::{SignedDuration, Timestamp};

use crate::support::dbagent::{Agent, bind_repo};

const SEG: u64 = 16 << 20;
const SYSID: &str = "7000000000000000001";

/// A repository holding `n` complete backups (manifests only: `backups list` reads nothing
/// else), one an hour.
fn agent_with_backups(n: u64) -> Agent {
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: \"host=127.0.0.1 user=unused\"\nrepository:\n  path: REPO\n",
    );
    let repo = agent.repo();
    bind_repo(&repo, SYSID, SEG);
    let first: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    for i in 0..n {
        let start = first + SignedDuration::from_hours(i as i64);
        let id = start.strftime("%Y%m%dT%H%M%SZ").to_string();
        let dir = repo.join("backups").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let m = BackupManifest {
            format: MANIFEST_FORMAT,
            id,
            label: Some("nightly".into()),
            system_identifier: SYSID.into(),
            pg_version: "15.8".into(),
            pg_major: 15,
            timeline: 1,
            start_lsn: Lsn((i + 1) * SEG + 0x28),
            stop_lsn: Lsn((i + 1) * SEG + 0x138),
            wal_start: segment_name(1, i + 1, SEG),
            wal_stop: segment_name(1, i + 1, SEG),
            wal_segment_size: SEG,
            start_time: start,
            stop_time: start + SignedDuration::from_secs(95),
            compression: Compression::Zstd,
            compressed_by: "dbagent".into(),
            files: vec![BackupFile {
                name: "base.tar.zst".into(),
                size: 4 << 20,
                stored_size: 1 << 20,
                sha256: "0".repeat(64),
                tablespace: None,
                index: None,
            }],
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
    }
    agent
}

#[test]
fn backups_list_piped_into_head_ends_quietly_with_status_0() {
    // 1,000 lines of about 110 bytes: more than a pipe holds, so the listing is still being
    // written when the reader goes away.
    let agent = agent_with_backups(1000);
    let mut child = agent
        .command(&["backups", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("ID "), "{first}");
    drop(stdout); // `head -1` exits
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "a closed pipe is not an error");

    // The same through a shell pipeline, as an operator types it.
    let line = format!(
        "{} --config {} backups list | head -1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_dbagent"),
        agent.config_path().display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &line])
        .env_remove("DBAGENT_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn commands_writing_into_a_closed_stdout_end_quietly_with_status_0() {
    let agent = agent_with_backups(3);
    for args in [
        &["backups", "list"][..],
        &["backups", "list", "--json"],
        &["backups", "show", "20260101T000000Z"],
        &["config", "example"],
        &["config", "example", "--alerts"],
        &["config", "validate"],
        &["generate", "man"],
        &["generate", "bash"],
        &["jobs", "list"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader is gone before the first write
        let out = agent
            .command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
