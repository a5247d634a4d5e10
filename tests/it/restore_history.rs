//! Point-in-time restore on an archive that holds several histories (safety invariants 9 and
//! 10): test copies promoted with archiving into the same repository, a real failover to a
//! replica and drills add timelines, and every target must restore to exactly the data its
//! history held at that moment, or be refused before anything is written.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backup::{archived_cluster, configure, take_backup, wait_until_promoted};
use crate::pg_test;
use crate::restore_cmd::{Restored, Scratch, restore_started, switch_and_wait};
use crate::support::cluster::PgVersion;
use crate::support::dbagent::Agent;
use crate::support::moments::{CHECKSUM, Moment, capture, load, pgbench_init};

/// Whether the archive holds the history file of timeline `tli`.
fn history_archived(repo: &Path, tli: u32) -> bool {
    let wal = repo.join("wal");
    ["", ".zst", ".lz4", ".gz"]
        .iter()
        .any(|ext| wal.join(format!("{tli:08X}.history{ext}")).exists())
}

/// The timeline record dbagent wrote for `tli`.
fn timeline_record(repo: &Path, tli: u32) -> Value {
    let path = repo.join("timelines").join(format!("{tli:08X}.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test copy: restored elsewhere with --archive, promoted, written to and switched, so that
/// its new timeline (history and segments) is in the repository. Returns it and its timeline.
fn archived_copy(agent: &Agent, v: PgVersion, dir: &Path, target: &str) -> (Restored, u32) {
    let (copy, json) = restore_started(agent, v, dir, target, &["--archive"]);
    let tli = json["outcome"]["timeline"].as_u64().unwrap() as u32;
    copy.query("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, 7, now() FROM generate_series(1, 500) g");
    copy.query("UPDATE pgbench_accounts SET abalance = abalance + 11 WHERE aid < 100");
    switch_and_wait(|s| copy.query(s));
    assert!(history_archived(&agent.repo(), tli), "copy timeline {tli}");
    let record = timeline_record(&agent.repo(), tli);
    assert_eq!(record["origin"], "copy", "{record}");
    (copy, tli)
}

/// Restores `target` and checks the data is `want`; or, when the plan refuses because the
/// archive cannot tell the history, checks nothing was written. Returns whether it restored.
fn restore_matches(
    agent: &Agent,
    v: PgVersion,
    scratch: &Scratch,
    n: &mut u32,
    target: &str,
    want: &str,
) -> bool {
    *n += 1;
    let dir = scratch.path(&format!("r{n}"));
    let dry = agent.run_copy(&[
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--target",
        target,
        "--dry-run",
        "--json",
    ]);
    if dry.code != 0 {
        assert!(
            dry.stderr.contains("cannot tell which history"),
            "restore to {target} refused for another reason: {}",
            dry.all()
        );
        assert!(!dir.exists(), "a refused plan wrote {}", dir.display());
        return false;
    }
    let (restored, json) = restore_started(agent, v, &dir, target, &[]);
    assert_eq!(
        restored.query(CHECKSUM),
        want,
        "restore to {target} returned other data; plan timeline {}; outcome {}\n{}",
        json["plan"]["timeline"],
        json["outcome"],
        std::fs::read_to_string(dir.join("restore.log")).unwrap_or_default()
    );
    true
}

/// Listing of the repository's WAL archive and timeline records.
fn archive_listing(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["wal", "timelines"] {
        let mut stack = vec![repo.join(sub)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().display().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

pg_test!(
    restore_after_a_test_copy_archived_its_timeline_lands_on_the_primarys_history,
    |v| {
        // The scenario of the issue: backup, load, restore point, a test copy restored to it
        // that archives its timeline 2 into the same repository, more load on the source, an
        // LSN and a time noted on timeline 1, the source stopped.
        let (agent, mut pg) = archived_cluster(v);
        pgbench_init(&pg);
        take_backup(&agent);
        load(&pg, 2);
        let rp = capture(&agent, &pg, "rp");
        switch_and_wait(|s| pg.psql(s));
        let scratch = Scratch::new();
        let (copy, copy_tli) = archived_copy(&agent, v, &scratch.path("a"), "name:rp");
        assert_eq!(copy.query(CHECKSUM).split('/').count(), 3);
        load(&pg, 2);
        let moment = capture(&agent, &pg, "later");
        load(&pg, 1);
        let latest = pg.psql(CHECKSUM);
        switch_and_wait(|s| pg.psql(s));
        // check judges the archive along the primary's history, not the copy's.
        let check = agent.run(&["check"]);
        let line = check.check_line("archive_continuity");
        assert!(
            line.starts_with("OK") && line.contains("timeline history 1 ("),
            "{line}"
        );
        pg.stop();
        assert_ne!(moment.checksum, rp.checksum);

        // The plan says which timeline and why, and leaves the copy out.
        let dry = agent.run_copy(&[
            "restore",
            "--to",
            scratch.path("b").to_str().unwrap(),
            "--target",
            &format!("lsn:{}", moment.lsn),
            "--dry-run",
            "--json",
        ]);
        assert_eq!(dry.code, 0, "{}", dry.all());
        let plan = &dry.json()["plan"];
        assert_eq!(plan["timeline"]["target_timeline"], 1, "{plan}");
        let left_out = plan["timeline"]["left_out"].to_string();
        assert!(
            left_out.contains(&format!("timeline {copy_tli}")) && left_out.contains("copy"),
            "{plan}"
        );
        let text = agent.run_copy(&[
            "restore",
            "--to",
            scratch.path("b").to_str().unwrap(),
            "--target",
            &format!("lsn:{}", moment.lsn),
            "--dry-run",
        ]);
        assert!(
            text.stdout.contains("because:") && text.stdout.contains("left out:"),
            "{}",
            text.stdout
        );

        let mut n = 0;
        for target in [
            format!("lsn:{}", moment.lsn),
            format!("time:{}", moment.time),
        ] {
            assert!(
                restore_matches(&agent, v, &scratch, &mut n, &target, &moment.checksum),
                "{target} was refused"
            );
        }
        assert!(restore_matches(
            &agent, v, &scratch, &mut n, "latest", &latest
        ));
        // The copy's own branch is reachable when asked for by number.
        let (on_copy, json) = restore_started(
            &agent,
            v,
            &scratch.path("copy-again"),
            "latest",
            &["--timeline", &copy_tli.to_string()],
        );
        assert_eq!(json["plan"]["timeline"]["target_timeline"], copy_tli);
        assert_eq!(on_copy.query(CHECKSUM), copy.query(CHECKSUM));
    }
);

pg_test!(
    randomized_multi_timeline_trials_restore_exactly_or_refuse,
    |v| {
        let (agent, pg) = archived_cluster(v);
        pgbench_init(&pg);
        take_backup(&agent);
        let at_backup = pg.psql(CHECKSUM);
        // A replica that archives once promoted, and asks the archive for history files, so
        // that its promotion takes a timeline number no copy took.
        let mut replica = pg.start_replica();
        replica.set_conf("restore_command", &agent.restore_command());
        replica.reload();

        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        let mut coin = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33).is_multiple_of(2)
        };
        let scratch = Scratch::new();
        let mut moments: Vec<Moment> = Vec::new();
        let mut copies = Vec::new();

        // Timeline 1: a moment, a test copy (of that moment or of the backup's end) and a drill
        // in a random order, then one more moment.
        let copy_first = coin();
        let copy_of_moment = coin();
        load(&pg, 1);
        if copy_first {
            let (c, _) = archived_copy(&agent, v, &scratch.path("c1"), "immediate");
            copies.push(c);
            load(&pg, 1);
        }
        moments.push(capture(&agent, &pg, "m1"));
        load(&pg, 1);
        switch_and_wait(|s| pg.psql(s));
        if !copy_first {
            let target = if copy_of_moment {
                "name:m1"
            } else {
                "immediate"
            };
            let (c, _) = archived_copy(&agent, v, &scratch.path("c1"), target);
            copies.push(c);
            load(&pg, 1);
        }
        let drill = agent.run_copy(&["drill", "--json"]);
        assert_eq!(drill.code, 0, "drill: {}", drill.all());
        moments.push(capture(&agent, &pg, "m2"));
        load(&pg, 1);
        switch_and_wait(|s| pg.psql(s));

        // A real failover: the replica catches up, the primary stops, the replica promotes.
        let target_lsn = pg.psql("SELECT pg_current_wal_lsn()::text");
        let deadline = Instant::now() + Duration::from_secs(60);
        while replica.psql(&format!(
            "SELECT pg_last_wal_replay_lsn() >= '{target_lsn}'::pg_lsn"
        )) != "t"
        {
            assert!(Instant::now() < deadline, "the replica did not catch up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut pg = pg;
        pg.stop();
        replica.psql("SELECT pg_promote(true, 60)");
        wait_until_promoted(&replica);
        configure(&agent, &replica, "60s");
        let new_tli = u32::from_str_radix(
            &replica.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
            16,
        )
        .unwrap();
        assert!(new_tli > 1);
        load(&replica, 1);
        switch_and_wait(|s| replica.psql(s));
        assert!(history_archived(&agent.repo(), new_tli));
        assert_eq!(
            timeline_record(&agent.repo(), new_tli)["origin"],
            "promotion"
        );

        // The promoted timeline: a moment, a copy of it, another moment.
        moments.push(capture(&agent, &replica, "m3"));
        load(&replica, 1);
        switch_and_wait(|s| replica.psql(s));
        let (c, _) = archived_copy(&agent, v, &scratch.path("c2"), "name:m3");
        copies.push(c);
        load(&replica, 1);
        moments.push(capture(&agent, &replica, "m4"));
        load(&replica, 1);
        let latest = replica.psql(CHECKSUM);
        switch_and_wait(|s| replica.psql(s));
        drop(copies);

        let mut n = 0;
        let mut restored = 0;
        for m in &moments {
            for target in [
                format!("name:{}", m.name),
                format!("lsn:{}", m.lsn),
                format!("time:{}", m.time),
                format!("xid:{}", m.xid),
            ] {
                if restore_matches(&agent, v, &scratch, &mut n, &target, &m.checksum) {
                    restored += 1;
                } else {
                    // Restore points and LSNs name their history exactly: never ambiguous
                    // here, where every other branch is a recorded copy.
                    assert!(
                        !target.starts_with("name:") && !target.starts_with("lsn:"),
                        "{target} was refused"
                    );
                }
            }
        }
        assert!(restore_matches(
            &agent, v, &scratch, &mut n, "latest", &latest
        ));
        assert!(restore_matches(
            &agent,
            v,
            &scratch,
            &mut n,
            "immediate",
            &at_backup
        ));
        assert!(restored >= 12, "only {restored} of 16 targets restored");
        // A drill after all of it still replays the primary's own history.
        let drill = agent.run_copy(&["drill", "--json"]);
        assert_eq!(drill.code, 0, "drill: {}", drill.all());
    }
);

pg_test!(
    a_copy_restored_without_archive_leaves_the_archive_unchanged,
    |v| {
        let (agent, pg) = archived_cluster(v);
        pgbench_init(&pg);
        take_backup(&agent);
        load(&pg, 1);
        switch_and_wait(|s| pg.psql(s));
        let before = archive_listing(&agent.repo());
        let scratch = Scratch::new();
        // No --port: the backup's port is the running source's, so another one is chosen.
        let dir = scratch.path("copy");
        let run = agent.run_copy(&[
            "restore",
            "--to",
            dir.to_str().unwrap(),
            "--target",
            "latest",
            "--start",
            "--json",
        ]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(run.stderr.contains("is in use"), "{}", run.stderr);
        let json = run.json();
        let port = json["outcome"]["port"].as_u64().unwrap() as u16;
        assert_ne!(port, pg.port());
        assert_eq!(json["plan"]["archive"], false, "{json}");
        let copy = Restored {
            v,
            data: dir.clone(),
            port,
        };
        copy.query("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, 7, now() FROM generate_series(1, 500) g");
        copy.query("SELECT pg_switch_wal()");
        copy.query("CHECKPOINT");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            archive_listing(&agent.repo()),
            before,
            "a copy restored without --archive wrote into the repository"
        );
        assert_eq!(copy.query("SHOW archive_mode"), "off");
    }
);

pg_test!(unreachable_targets_are_refused_at_plan_time, |v| {
    let (agent, pg) = archived_cluster(v);
    pgbench_init(&pg);
    let before_backup = pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1100));
    take_backup(&agent);
    capture(&agent, &pg, "before-upgrade");
    switch_and_wait(|s| pg.psql(s));
    let scratch = Scratch::new();
    let dir = scratch.path("r");
    let dir_s = dir.to_str().unwrap();
    let refuse = |target: &str, want: &[&str]| {
        let run = agent.run_copy(&["restore", "--to", dir_s, "--target", target, "--dry-run"]);
        assert_eq!(run.code, 1, "{target}: {}", run.all());
        for w in want {
            assert!(
                run.stderr.contains(w),
                "{target}: want `{w}` in {}",
                run.stderr
            );
        }
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
        assert!(!dir.exists());
    };
    refuse(
        "name:before-upgrde",
        &["not recorded", "did you mean `before-upgrade`"],
    );
    refuse(
        &format!("time:{before_backup}"),
        &["no backup can reach", "earliest point"],
    );
    refuse(
        "time:2999-01-01T00:00:00Z",
        &["in the future", "earliest point", "latest"],
    );
    refuse("lsn:FF/0", &["cannot restore to LSN FF/0"]);
    // After the newest archived WAL (but not in the future): nothing archived reaches it.
    std::thread::sleep(Duration::from_millis(1500));
    let after_archive = pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    refuse(
        &format!("time:{after_archive}"),
        &["cannot restore to time", "newest archived WAL"],
    );
});

pg_test!(
    a_restore_in_place_keeps_archiving_and_a_copy_does_not,
    |v| {
        let (agent, mut pg) = archived_cluster(v);
        pgbench_init(&pg);
        take_backup(&agent);
        switch_and_wait(|s| pg.psql(s));
        let pgdata = pg.data_dir().to_path_buf();
        agent.set_yaml(&agent.yaml().replace(
            "  bin_dir:",
            &format!("  pgdata: {}\n  bin_dir:", pgdata.display()),
        ));
        pg.stop();
        let plan_of = |to: &Path, extra: &[&str]| -> Value {
            let mut args = vec![
                "restore",
                "--to",
                to.to_str().unwrap(),
                "--dry-run",
                "--json",
            ];
            args.extend_from_slice(extra);
            let run = agent.run_copy(&args);
            assert_eq!(run.code, 0, "{}", run.all());
            run.json()["plan"].clone()
        };
        let in_place = plan_of(&pgdata, &["--force"]);
        assert_eq!(in_place["in_place"], true, "{in_place}");
        assert_eq!(in_place["archive"], true, "{in_place}");
        assert!(
            !in_place["settings"].to_string().contains("archive_mode"),
            "{in_place}"
        );
        let in_place_off = plan_of(&pgdata, &["--force", "--no-archive"]);
        assert_eq!(in_place_off["archive"], false);
        let scratch = Scratch::new();
        let copy = plan_of(&scratch.path("copy"), &[]);
        assert_eq!(copy["in_place"], false);
        assert_eq!(copy["archive"], false);
        assert!(
            copy["settings"].to_string().contains("archive_mode"),
            "{copy}"
        );
        let asked = plan_of(&scratch.path("copy"), &["--archive"]);
        assert_eq!(asked["archive"], true);
        pg.start_again();
    }
);
