//! `dbagent info` against real clusters on PostgreSQL 15 and 18: its recoverable window is
//! what a restore reaches (a restore to the earliest and to the latest point succeeds with
//! the rows committed by then; one second outside either is refused), a segment deleted from
//! the middle of the archive is named as a gap and shrinks the window, and bad input (an
//! empty or unreadable repository, a malformed configuration) gives one line and its exit
//! code.

use serde_json::Value;

use crate::backup::{archived_cluster, take_backup};
use crate::pg_test;
use crate::restore_cmd::{Scratch, restore_started, switch_and_wait};
use crate::support::dbagent::Agent;

fn info(agent: &Agent) -> Value {
    let run = agent.run(&["info", "--json"]);
    assert_eq!(run.code, 0, "info failed: {}", run.all());
    run.json()
}

fn time(v: &Value) -> jiff::Timestamp {
    v["time"]
        .as_str()
        .unwrap_or_else(|| panic!("no time in {v}"))
        .parse()
        .unwrap()
}

/// `time:...` one second away from `t` (`secs` may be negative).
fn target(t: jiff::Timestamp, secs: i64) -> String {
    format!("time:{}", t + jiff::SignedDuration::from_secs(secs))
}

/// Every key of `info --json` is in docs/info.md's documented shape.
fn documented(v: &Value) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/info.md"))
        .expect("read docs/info.md");
    fn walk(v: &Value, doc: &str, at: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    assert!(
                        doc.contains(&format!("\"{k}\":")),
                        "`{at}.{k}` of info --json is not in docs/info.md"
                    );
                    walk(x, doc, &format!("{at}.{k}"));
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, doc, at)),
            _ => {}
        }
    }
    walk(v, &doc, "");
}

/// A real (not dry-run) restore that must be refused before anything is written.
fn refused(agent: &Agent, scratch: &Scratch, name: &str, target: &str, says: &str) {
    let dir = scratch.path(name);
    let run = agent.run_copy(&[
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--target",
        target,
        "--no-archive",
    ]);
    assert_eq!(
        run.code,
        1,
        "restore to {target} was not refused: {}",
        run.all()
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {}", run.stderr);
    assert!(lines[0].contains(says), "{}", run.stderr);
    assert!(!dir.exists(), "{} was written", dir.display());
}

pg_test!(info_window_is_exactly_what_restore_reaches, |v| {
    let (agent, pg) = archived_cluster(v);
    pg.psql("CREATE TABLE t (i int)");
    take_backup(&agent);
    pg.psql("INSERT INTO t VALUES (1)");
    pg.psql("INSERT INTO t VALUES (2)");
    // The last commit: a time target stops just before it.
    pg.psql("INSERT INTO t VALUES (3)");
    switch_and_wait(|s| pg.psql(s));

    let i = info(&agent);
    assert_eq!(i["backups"]["count"], 1, "{i}");
    let w = &i["window"][0];
    assert_eq!(w["timeline"], 1, "{i}");
    assert_eq!(w["intervals"].as_array().unwrap().len(), 1, "{i}");
    assert!(w["ends_at_gap"].is_null(), "{i}");
    let earliest = time(&w["earliest"]);
    let latest = time(&w["latest"]);
    assert_eq!(
        w["earliest"]["time"], i["backups"]["oldest"]["stop_time"],
        "the earliest point is the backup's end: {i}"
    );
    assert_eq!(
        latest + jiff::SignedDuration::from_micros(1),
        time(&w["last_commit"]),
        "{i}"
    );
    assert!(earliest < latest, "{i}");
    assert!(i["wal"][0]["gaps"].as_array().unwrap().is_empty(), "{i}");
    assert!(i["repository"]["size_bytes"].as_u64().unwrap() > 0, "{i}");

    documented(&i);

    let scratch = Scratch::new();
    // The earliest point: the backup's end, before any row.
    let (first, json) = restore_started(
        &agent,
        v,
        &scratch.path("earliest"),
        &format!("time:{earliest}"),
        &["--no-archive"],
    );
    assert_eq!(first.query("SELECT count(*) FROM t"), "0", "{json}");
    drop(first);
    // The latest point: every row committed before the last commit.
    let (last, json) = restore_started(
        &agent,
        v,
        &scratch.path("latest"),
        &format!("time:{latest}"),
        &["--no-archive"],
    );
    assert_eq!(
        last.query("SELECT string_agg(i::text, ',' ORDER BY i) FROM t WHERE i <= 2"),
        "1,2",
        "{json}"
    );
    drop(last);

    // One second outside either end is refused, nothing written.
    refused(
        &agent,
        &scratch,
        "before",
        &target(earliest, -1),
        "no backup can reach",
    );
    refused(
        &agent,
        &scratch,
        "after",
        &target(latest, 1),
        "cannot restore to time",
    );

    // After a drill, info shows it with its RTO; the server answers, so the RPO is known.
    let drill = agent.run_copy(&["drill"]);
    assert_eq!(drill.code, 0, "{}", drill.all());
    let i = info(&agent);
    documented(&i);
    assert_eq!(i["last_drill"]["ok"], true, "{i}");
    assert!(
        i["last_drill"]["rto_seconds"].as_f64().unwrap() > 0.0,
        "{i}"
    );
    assert!(i["rpo"]["seconds"].as_f64().is_some(), "{i}");

    // The human summary fits 80 columns and names the window and the drill.
    let text = agent.run(&["info"]);
    assert!(text.stdout.contains(", passed, RTO "), "{}", text.stdout);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.contains("Recoverable window"),
        "{}",
        text.stdout
    );
    for line in text.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
});

pg_test!(info_names_a_gap_and_the_window_ends_before_it, |v| {
    let (agent, pg) = archived_cluster(v);
    pg.psql("CREATE TABLE t (i int)");
    take_backup(&agent);
    pg.psql("INSERT INTO t VALUES (1)");
    pg.psql("INSERT INTO t VALUES (2)");
    switch_and_wait(|s| pg.psql(s));
    pg.psql("INSERT INTO t VALUES (3)");
    let lost = pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    switch_and_wait(|s| pg.psql(s));
    pg.psql("INSERT INTO t VALUES (4)");
    switch_and_wait(|s| pg.psql(s));
    let before = info(&agent);
    let latest_before = time(&before["window"][0]["latest"]);

    // The segment holding row 3 goes missing from the middle of the archive.
    let wal = agent.repo().join("wal");
    let mut removed = 0;
    let mut dirs = vec![wal.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(&lost) {
                std::fs::remove_file(e.path()).unwrap();
                removed += 1;
            }
        }
    }
    assert_eq!(removed, 1, "{lost} not found in {}", wal.display());

    let i = info(&agent);
    let gaps = &i["wal"][0]["gaps"];
    assert_eq!(gaps.as_array().unwrap().len(), 1, "{i}");
    assert_eq!(gaps[0]["first"], lost.as_str(), "{i}");
    assert_eq!(gaps[0]["segments"], 1, "{i}");
    let w = &i["window"][0];
    assert_eq!(w["ends_at_gap"]["first"], lost.as_str(), "{i}");
    let latest = time(&w["latest"]);
    assert!(latest < latest_before, "the window did not shrink: {i}");
    let text = agent.run(&["info"]);
    assert!(
        text.stdout.contains(&format!("gap {lost}")),
        "{}",
        text.stdout
    );

    // Its new latest point restores (row 1 there, row 3 not); a second later is refused.
    let scratch = Scratch::new();
    let (r, json) = restore_started(
        &agent,
        v,
        &scratch.path("latest"),
        &format!("time:{latest}"),
        &["--no-archive"],
    );
    assert_eq!(
        r.query("SELECT string_agg(i::text, ',' ORDER BY i) FROM t"),
        "1",
        "{json}"
    );
    drop(r);
    refused(
        &agent,
        &scratch,
        "after",
        &target(latest, 1),
        "cannot restore to time",
    );
});

#[test]
fn info_on_bad_input_says_one_line_and_its_exit_code() {
    // An empty repository: nothing to show yet.
    let agent = Agent::new("host=127.0.0.1 port=1");
    std::fs::create_dir_all(agent.repo()).unwrap();
    let run = agent.run(&["info"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("holds nothing yet"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // An unreadable repository: its path is a file.
    std::fs::remove_dir_all(agent.repo()).unwrap();
    std::fs::write(agent.repo(), "not a repository").unwrap();
    let run = agent.run(&["info", "--json"]);
    assert_eq!(run.code, 4, "{}", run.all());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&agent.repo().display().to_string()),
        "{}",
        run.stderr
    );

    // A malformed configuration.
    agent.set_yaml("postgres: [\n");
    let run = agent.run(&["info"]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("dbagent.yml") || run.stderr.contains("config"),
        "{}",
        run.stderr
    );
}
