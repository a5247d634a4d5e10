//! `dbagent restore` and `dbagent restore-point` against real clusters on PostgreSQL 15 and
//! 18 (safety invariants 2 and 4): randomized point-in-time restores by every target kind
//! while pgbench writes, timelines, refusals before anything is written, a crafted archive
//! with a `../` member, and a repository that becomes unreadable during replay.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backup::{archived_cluster, take_backup};
use crate::pg_test;
use crate::support::cluster::{PgVersion, SUPERUSER, SUPERUSER_PASSWORD};
use crate::support::dbagent::Agent;
use crate::support::moments::{CHECKSUM, capture, pgbench, pgbench_init};

/// A scratch parent directory the postgres OS user can enter, removed at the end; restored
/// data directories go inside it.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("dbagent-restore-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A server started by `dbagent restore --start`; stopped (immediately) when dropped.
pub(crate) struct Restored {
    pub(crate) v: PgVersion,
    pub(crate) data: PathBuf,
    pub(crate) port: u16,
}

impl Restored {
    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(self.v.bin("pg_ctl"));
        cmd.arg("-D").arg(&self.data).args(args);
        as_postgres(&mut cmd);
        cmd.output().unwrap()
    }

    pub(crate) fn query(&self, sql: &str) -> String {
        let mut cmd = Command::new(self.v.bin("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .args(["-d", "postgres", "-c", sql])
            .env("PGPASSWORD", SUPERUSER_PASSWORD);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "psql on restored server {}: {}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
        }
    }
}

fn as_postgres(cmd: &mut Command) {
    if nix::unistd::geteuid().is_root() {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        cmd.uid(pg.uid.as_raw()).gid(pg.gid.as_raw());
    }
    cmd.current_dir("/tmp");
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Switches WAL and waits until the segment is archived.
pub fn switch_and_wait(pg_query: impl Fn(&str) -> String) {
    pg_query("SELECT pg_logical_emit_message(false, 'dbagent-test', 'switch')");
    // The segment the switch closed (pg_current_wal_lsn() can still lag behind the message
    // with synchronous_commit off, naming the previous segment).
    let name = pg_query("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The segment's `.done` status says it is archived; last_archived_wal names the file
        // archived last, which after a promotion can be an older timeline's segment.
        let done = pg_query(&format!(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = '{name}.done'"
        ));
        let archived = pg_query("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        if done == "1" || archived.as_str() >= name.as_str() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not archived (last {archived})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `dbagent restore --start --json` into `dir`; returns the server and the JSON output.
pub(crate) fn restore_started(
    agent: &Agent,
    v: PgVersion,
    dir: &Path,
    target: &str,
    extra: &[&str],
) -> (Restored, Value) {
    let port = free_port();
    let port_s = port.to_string();
    let mut args = vec![
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--target",
        target,
        "--start",
        "--port",
        &port_s,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = agent.run_copy(&args);
    let restored = Restored {
        v,
        data: dir.to_path_buf(),
        port,
    };
    assert_eq!(
        run.code,
        0,
        "restore to {target} failed: {}\nlog:\n{}",
        run.all(),
        std::fs::read_to_string(dir.join("restore.log")).unwrap_or_default()
    );
    let json = run.json();
    assert_eq!(json["outcome"]["reached_target"], true, "{json}");
    (restored, json)
}

pg_test!(randomized_pitr_restores_every_target_kind_exactly, |v| {
    let (agent, pg) = archived_cluster(v);
    pgbench_init(&pg);
    take_backup(&agent);
    let mut bench = pgbench(&pg, &["-n", "-c", "2", "-T", "8"]).spawn().unwrap();

    // A seed from the clock: moments at different offsets on every run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % 1500
    };
    let mut moments = Vec::new();
    for i in 0..2 {
        std::thread::sleep(Duration::from_millis(1000 + next()));
        moments.push(capture(&agent, &pg, &format!("moment-{i}")));
    }
    let out = bench.wait().unwrap();
    assert!(out.success());
    let latest = pg.psql(CHECKSUM);
    assert_ne!(
        moments[0].checksum, latest,
        "pgbench wrote nothing after the moments"
    );
    switch_and_wait(|s| pg.psql(s));

    // Duplicate restore point names are refused; the list has both.
    let dup = agent.run(&["restore-point", "moment-0"]);
    assert_eq!(dup.code, 1, "{}", dup.all());
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let list = agent.run(&["restore-point", "--list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    let scratch = Scratch::new();
    let mut n = 0;
    for m in &moments {
        for target in [
            format!("time:{}", m.time),
            format!("lsn:{}", m.lsn),
            format!("xid:{}", m.xid),
            format!("name:{}", m.name),
        ] {
            n += 1;
            let dir = scratch.path(&format!("r{n}"));
            let (restored, json) = restore_started(&agent, v, &dir, &target, &["--no-archive"]);
            assert_eq!(
                restored.query(CHECKSUM),
                m.checksum,
                "restore to {target} does not match; outcome {}",
                json["outcome"]
            );
            assert_eq!(json["outcome"]["state"], "promoted");
        }
    }
    let dir = scratch.path("latest");
    let (restored, json) = restore_started(&agent, v, &dir, "latest", &["--no-archive"]);
    assert_eq!(restored.query(CHECKSUM), latest, "{}", json["outcome"]);
});

pg_test!(
    restore_follows_a_new_timeline_through_its_history_file,
    |v| {
        let (agent, pg) = archived_cluster(v);
        pg.psql("CREATE TABLE t (i int, tl text)");
        pg.psql("INSERT INTO t SELECT g, 'one' FROM generate_series(1, 100) g");
        take_backup(&agent);
        pg.psql("INSERT INTO t SELECT g, 'one' FROM generate_series(101, 200) g");
        switch_and_wait(|s| pg.psql(s));

        // Restore and promote; with --archive this copy archives into the same repository
        // (its timeline recorded as a copy).
        let scratch = Scratch::new();
        let (first, json) =
            restore_started(&agent, v, &scratch.path("a"), "latest", &["--archive"]);
        assert_eq!(json["outcome"]["timeline"], 2, "{json}");
        assert_eq!(first.query("SELECT count(*) FROM t"), "200");
        first.query("INSERT INTO t SELECT g, 'two' FROM generate_series(201, 250) g");
        let lsn = first.query("SELECT pg_current_wal_insert_lsn()::text");
        let expected = first.query("SELECT count(*) || '/' || sum(i) FROM t");
        first.query("INSERT INTO t SELECT g, 'later' FROM generate_series(251, 300) g");
        switch_and_wait(|s| first.query(s));
        assert!(
            agent
                .repo()
                .join("wal")
                .join("00000002.history.zst")
                .exists()
                || agent.repo().join("wal").join("00000002.history").exists()
        );

        // A point on the copy's timeline 2 is not followed by default (a copy is not the
        // cluster's history) ...
        let refused = agent.run_copy(&[
            "restore",
            "--to",
            scratch.path("b").to_str().unwrap(),
            "--target",
            &format!("lsn:{lsn}"),
            "--dry-run",
        ]);
        assert_eq!(refused.code, 1, "{}", refused.all());
        assert!(
            refused.stderr.contains("cannot restore to LSN"),
            "{}",
            refused.stderr
        );
        // ... but with --timeline 2 the plan follows 00000002.history from timeline 1.
        let dry = agent.run_copy(&[
            "restore",
            "--to",
            scratch.path("b").to_str().unwrap(),
            "--target",
            &format!("lsn:{lsn}"),
            "--timeline",
            "2",
            "--dry-run",
            "--json",
        ]);
        assert_eq!(dry.code, 0, "{}", dry.all());
        let plan = &dry.json()["plan"];
        assert_eq!(plan["timeline"]["target_timeline"], 2, "{plan}");
        assert_eq!(plan["timeline"]["history_files"][0], "00000002.history");
        assert_eq!(plan["timeline"]["path"][0]["timeline"], 1);
        assert_eq!(plan["timeline"]["path"][1]["timeline"], 2);
        assert!(
            plan["wal"]["last"]
                .as_str()
                .unwrap()
                .starts_with("00000002"),
            "{plan}"
        );
        let (second, json) = restore_started(
            &agent,
            v,
            &scratch.path("b"),
            &format!("lsn:{lsn}"),
            &["--timeline", "2"],
        );
        assert_eq!(
            second.query("SELECT count(*) || '/' || sum(i) FROM t"),
            expected,
            "{json}\n{}",
            std::fs::read_to_string(scratch.path("b").join("restore.log")).unwrap_or_default()
        );
        assert_eq!(
            second.query("SELECT count(*) FROM t WHERE tl = 'later'"),
            "0",
            "{json}"
        );
    }
);

/// Every entry under `dir`, for "nothing changed" assertions.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match std::fs::read_dir(dir) {
        Ok(e) => e
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

pg_test!(preflight_refuses_before_writing_anything, |v| {
    let (agent, pg) = archived_cluster(v);
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
    let backup = take_backup(&agent);
    let id = backup["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let bare_time = pg.psql("SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS')");
    for _ in 0..3 {
        pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
        switch_and_wait(|s| pg.psql(s));
    }
    let scratch = Scratch::new();
    let dest = scratch.path("data");
    let dest_s = dest.to_str().unwrap().to_string();

    // --dry-run: the plan, and nothing written.
    let dry = agent.run_copy(&["restore", "--to", &dest_s, "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    let json = dry.json();
    let plan = &json["plan"];
    assert_eq!(json["dry_run"], true);
    assert_eq!(plan["backup"]["id"], id.as_str());
    assert_eq!(plan["target"]["kind"], "latest");
    assert!(plan["wal"]["segments"].as_u64().unwrap() >= 4, "{plan}");
    assert!(plan["estimated_seconds"].as_u64().is_some());
    assert!(plan["backup_choice"].as_str().unwrap().contains("newest"));
    assert!(json["start_command"].as_str().unwrap().contains("pg_ctl"));
    let text = agent.run_copy(&["restore", "--to", &dest_s, "--dry-run"]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.contains(&id) && text.stdout.contains("WAL:"),
        "{}",
        text.stdout
    );
    assert!(!dest.exists(), "a dry run wrote {}", dest.display());

    // A time without an offset, no --timezone: the server's zone is used and said.
    let bare = agent.run_copy(&[
        "restore",
        "--to",
        &dest_s,
        "--target",
        &format!("time:{}", bare_time.trim()),
        "--dry-run",
    ]);
    assert_eq!(bare.code, 0, "{}", bare.all());
    // A time in the future is refused at plan time, naming what can be restored to.
    let future = agent.run_copy(&[
        "restore",
        "--to",
        &dest_s,
        "--target",
        "time:2999-01-01 00:00:00+00",
        "--dry-run",
    ]);
    assert_eq!(future.code, 1, "{}", future.all());
    assert!(
        future.stderr.contains("in the future") && future.stderr.contains("earliest point"),
        "{}",
        future.stderr
    );
    assert!(
        bare.stdout.contains("server's time zone"),
        "{}",
        bare.stdout
    );

    // A non-empty directory without --force: refused, untouched.
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), "mine").unwrap();
    let run = agent.run_copy(&["restore", "--to", &dest_s]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("not empty") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(listing(&dest), vec!["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );

    // A running cluster's data directory: refused even with --force, nothing changed.
    let before = listing(pg.data_dir());
    let run = agent.run_copy(&[
        "restore",
        "--to",
        pg.data_dir().to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("running PostgreSQL server"),
        "{}",
        run.stderr
    );
    assert_eq!(listing(pg.data_dir()), before);
    assert_eq!(pg.psql("SELECT count(*) FROM t"), "4000");

    // A segment missing inside the needed range: refused, named, nothing written.
    let m: Value = serde_json::from_slice(
        &std::fs::read(agent.repo().join("backups").join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let stop = m["wal_stop"].as_str().unwrap();
    let segno = u64::from_str_radix(&stop[16..24], 16).unwrap() + 1;
    let missing = format!("{}{:08X}", &stop[..16], segno);
    let stored = agent
        .repo()
        .join("wal")
        .join(&stop[..16])
        .join(format!("{missing}.zst"));
    std::fs::remove_file(&stored).unwrap_or_else(|e| panic!("remove {}: {e}", stored.display()));
    let empty = scratch.path("empty");
    let run = agent.run_copy(&["restore", "--to", empty.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&missing) && run.stderr.contains("missing"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(!empty.exists());
    // A target before the gap is still restorable (proven, not refused).
    let before_gap = agent.run_copy(&[
        "restore",
        "--to",
        empty.to_str().unwrap(),
        "--target",
        "immediate",
        "--dry-run",
    ]);
    assert_eq!(before_gap.code, 0, "{}", before_gap.all());
});

pg_test!(a_backup_with_a_dotdot_member_is_refused, |v| {
    let (agent, pg) = archived_cluster(v);
    let backup = take_backup(&agent);
    switch_and_wait(|s| pg.psql(s));
    let id = backup["id"].as_str().unwrap();
    let dir = agent.repo().join("backups").join(id);

    // A hand-made base.tar.zst: a harmless file, then one that climbs out of the target.
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("PG_VERSION").unwrap();
        h.set_cksum();
        b.append(&h, &b"15\n"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../escaped.txt";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"owned"[..]).unwrap();
        b.finish().unwrap();
    }
    let compressed = zstd::encode_all(&tar_bytes[..], 3).unwrap();
    std::fs::write(dir.join("base.tar.zst"), &compressed).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&compressed))
    };
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["name"] == "base.tar.zst" {
            f["sha256"] = sha.clone().into();
            f["stored_size"] = (compressed.len() as u64).into();
        }
    }
    std::fs::File::create(&path)
        .unwrap()
        .write_all(serde_json::to_string(&m).unwrap().as_bytes())
        .unwrap();

    let scratch = Scratch::new();
    let dest = scratch.path("data");
    let run = agent.run_copy(&["restore", "--to", dest.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("../escaped.txt") && run.stderr.contains("outside"),
        "{}",
        run.stderr
    );
    assert!(
        !scratch.path("escaped.txt").exists(),
        "a member escaped the target"
    );
    assert_eq!(
        listing(&dest),
        Vec::<String>::new(),
        "the partial restore was not removed"
    );
});

pg_test!(unreadable_repository_during_replay_aborts_recovery, |v| {
    let (agent, pg) = archived_cluster(v);
    take_backup(&agent);
    // Enough WAL after the backup that replay is still running when the repository goes.
    pg.psql("CREATE TABLE big (i int, t text)");
    pg.psql("INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 1200000) g");
    switch_and_wait(|s| pg.psql(s));

    let scratch = Scratch::new();
    let dest = scratch.path("data");
    let port = free_port().to_string();
    let child = agent
        .command_copy(&[
            "restore",
            "--to",
            dest.to_str().unwrap(),
            "--start",
            "--port",
            &port,
            "--no-archive",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wal = agent.repo().join("wal");
    let log = dest.join("restore.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("consistent recovery state reached") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovery never became consistent:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = child.wait_with_output();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{text}");
    assert!(stderr.contains("recovery aborted"), "{stderr}");
    // The cause is in the server log: wal-get's one line, in restore mode.
    assert!(
        text.lines().any(|l| l.contains("dbagent: error: wal-get")
            && l.contains("Permission denied")
            && l.contains("restore, exit 126")),
        "{text}"
    );
    assert!(!text.contains("archive recovery complete"), "{text}");
    assert!(!text.contains("selected new timeline"), "{text}");
    let restored = Restored {
        v,
        data: dest.clone(),
        port: 0,
    };
    let status = restored.pg_ctl(&["status"]);
    assert!(!status.status.success(), "the server is still running");
    let mut cd = Command::new(v.bin("pg_controldata"));
    cd.arg(&dest);
    as_postgres(&mut cd);
    let control = String::from_utf8_lossy(&cd.output().unwrap().stdout).into_owned();
    assert!(control.contains("in archive recovery"), "{control}");
});

pg_test!(restore_with_prefetch_on_reaches_the_same_data, |v| {
    let (mut agent, pg) = archived_cluster(v);
    // wal-get says when it requests prefetch (debug), into the restore log.
    agent.env("DBAGENT_LOG", "warn,dbagent::wal::get=debug");
    agent.set_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\nrepository:\n  path: REPO\n  prefetch: 3\nbackup:\n  wal_timeout: 60s\n",
        pg.conninfo(),
        pg.version().bin_dir().display()
    ));
    agent.share_with_postgres();
    let init = pgbench(&pg, &["-i", "-s", "1", "-q"]).output().unwrap();
    assert!(init.status.success());
    take_backup(&agent);
    // Several segments to replay, so that prefetched ones are used.
    for _ in 0..5 {
        let run = pgbench(&pg, &["-n", "-t", "300"]).output().unwrap();
        assert!(run.status.success());
        switch_and_wait(|s| pg.psql(s));
    }
    let expected = pg.psql(CHECKSUM);
    let scratch = Scratch::new();
    let dir = scratch.path("prefetched");
    let (restored, json) = restore_started(&agent, v, &dir, "latest", &["--no-archive"]);
    assert_eq!(restored.query(CHECKSUM), expected, "{}", json["outcome"]);
    let log = std::fs::read_to_string(dir.join("restore.log")).unwrap_or_default();
    // Whether a spooled copy is used depends on how fast replay goes; the request does not.
    assert!(
        log.contains("Prefetch requested"),
        "wal-get did not prefetch during replay:\n{log}"
    );
    // Probing for the next timeline's history file at promotion is not a problem.
    assert!(!log.contains(".history is not in"), "{log}");
    assert!(!log.contains("dbagent: error"), "{log}");
    // Recovery is over: the prefetch worker removes the spool (archive_mode is off here, so
    // no wal-push could).
    let spool = dir.join("pg_wal/dbagent-prefetch");
    let deadline = Instant::now() + Duration::from_secs(60);
    while spool.exists() {
        assert!(
            Instant::now() < deadline,
            "the prefetch spool outlived recovery: {:?}",
            std::fs::read_dir(&spool)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
});

pg_test!(restore_start_prints_a_psql_command_that_connects, |v| {
    let (agent, pg) = archived_cluster(v);
    take_backup(&agent);
    pg.psql("CREATE TABLE marker (i int)");
    pg.psql("INSERT INTO marker VALUES (42)");
    switch_and_wait(|s| pg.psql(s));

    let scratch = Scratch::new();
    let dir = scratch.path("copy");
    let port = free_port();
    let run = agent.run_copy(&[
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--start",
        "--port",
        &port.to_string(),
        "--no-archive",
    ]);
    let _restored = Restored {
        v,
        data: dir.clone(),
        port,
    };
    assert_eq!(run.code, 0, "{}", run.all());
    let last = run.stdout.lines().last().unwrap_or_default();
    // `connect with: psql 'host=<copy>.socket port=N dbname=postgres user=U'`
    let conninfo = last
        .strip_prefix("connect with: psql '")
        .and_then(|r| r.split_once('\''))
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| panic!("the last line is not a psql command: {last:?}"));
    let socket_dir = format!("{}.socket", dir.display());
    assert!(
        conninfo.contains(&format!("host={socket_dir} port={port} ")),
        "{conninfo}"
    );
    assert!(
        std::path::Path::new(&socket_dir)
            .join(format!(".s.PGSQL.{port}"))
            .exists(),
        "the copy does not listen in its own socket directory {socket_dir}"
    );
    // As printed, never prompting, with no password from the environment.
    let out = Command::new(v.bin("psql"))
        .args(["-X", "-w", "-A", "-t", "-c", "SELECT i FROM marker"])
        .arg(&conninfo)
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("HOME", scratch.path(""))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{last}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
});
