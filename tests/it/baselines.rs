//! `dbagent baselines show` and the baseline store across restarts: baselines recorded through
//! the library are there after reopening, the command prints them (also while a writer holds
//! the database), says so when nothing is recorded, and fails in one line on a corrupt file.

use std::path::Path;

use dbagent::baseline::BaselineStore;

use crate::support::dbagent::Agent;

/// A config whose state_dir is `<scratch>/state`; show must not connect, so the server is a
/// dummy.
fn agent(min_samples: u64) -> Agent {
    let agent = Agent::with_yaml("");
    let state = agent.dir().join("state");
    agent.set_yaml(&format!(
        "postgres:\n  conninfo: \"host=127.0.0.1 port=1\"\nrepository:\n  path: REPO\n\
         state_dir: {}\nmonitor:\n  baseline_min_samples: {min_samples}\n",
        state.display()
    ));
    agent
}

fn state_dir(agent: &Agent) -> std::path::PathBuf {
    agent.dir().join("state")
}

/// Three polls of `a` (ready at 3 samples), one of `b` (learning), all in the last minutes.
fn record(dir: &Path) {
    let mut store = BaselineStore::open(dir, 3).unwrap();
    let now = jiff::Timestamp::now();
    for (i, v) in [10.0, 20.0, 30.0].into_iter().enumerate() {
        let at = now - jiff::SignedDuration::from_secs(60 * (3 - i as i64));
        let mut poll = vec![("pg_up{cluster=\"a\"}".to_string(), v)];
        if i == 2 {
            poll.push(("pg_stat_activity_count{state=\"b\"}".to_string(), 7.0));
        }
        store.observe(at, &poll).unwrap();
    }
}

#[test]
fn baselines_survive_a_restart_and_show_prints_them() {
    let agent = agent(3);
    let dir = state_dir(&agent);
    record(&dir);
    let now = jiff::Timestamp::now();
    let before = BaselineStore::open(&dir, 3).unwrap().list(now).unwrap();
    assert_eq!(before.len(), 2);
    // Reopened (as after a restart of the agent): the same baselines.
    let after = BaselineStore::open(&dir, 3).unwrap().list(now).unwrap();
    assert_eq!(before, after);

    let run = agent.run(&["baselines", "show", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let json = run.json();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json:#}");
    let a = &rows[1];
    assert_eq!(a["series"], "pg_up{cluster=\"a\"}");
    assert_eq!(a["ready"], true);
    assert_eq!(a["samples"], 3);
    assert_eq!(a["needed"], 3);
    assert_eq!(a["last_value"], 30.0);
    assert_eq!(a["season"]["kind"], "overall");
    let mean = a["mean"].as_f64().unwrap();
    assert!((mean - 20.0).abs() < 0.01, "{mean}");
    let stddev = a["stddev"].as_f64().unwrap();
    assert!((stddev - (200.0f64 / 3.0).sqrt()).abs() < 0.01, "{stddev}");
    let b = &rows[0];
    assert_eq!(b["series"], "pg_stat_activity_count{state=\"b\"}");
    assert_eq!(b["ready"], false);
    assert_eq!(b["samples"], 1);
    assert!(b["updated"].as_str().unwrap().ends_with('Z'), "{b}");

    let run = agent.run(&["baselines", "show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("SERIES") && lines[0].contains("STATE"));
    assert!(lines[1].contains("learning (1/3)"), "{}", run.stdout);
    assert!(
        lines[2].contains("ready") && lines[2].contains("3/3"),
        "{}",
        run.stdout
    );

    let run = agent.run(&["baselines", "show", "--json", "cluster=\"a\""]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json().as_array().unwrap().len(), 1);
    let run = agent.run(&["baselines", "show", "nope"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("no series matches"), "{}", run.stdout);
}

#[test]
fn baselines_show_reads_while_the_agent_holds_a_write_transaction() {
    let agent = agent(3);
    let dir = state_dir(&agent);
    record(&dir);
    let _writer = BaselineStore::open(&dir, 3).unwrap();
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM baseline_bucket;")
        .unwrap();
    let run = agent.run(&["baselines", "show", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json().as_array().unwrap().len(), 2);
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn baselines_show_without_state_says_none_recorded_yet() {
    let agent = agent(40);
    let run = agent.run(&["baselines", "show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("no baselines have been recorded yet")
            && run.stdout.contains("dbagent run"),
        "{}",
        run.stdout
    );
    let run = agent.run(&["baselines", "show", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json(), serde_json::json!([]));
    // Reading created nothing.
    assert!(!state_dir(&agent).exists());

    // A database without any series yet (the agent started, nothing polled).
    drop(BaselineStore::open(&state_dir(&agent), 40).unwrap());
    let run = agent.run(&["baselines", "show"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("no baselines have been recorded yet"),
        "{}",
        run.stdout
    );
}

#[test]
fn baselines_show_on_corrupt_state_fails_in_one_line_naming_the_file() {
    let agent = agent(40);
    let dir = state_dir(&agent);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.db");
    std::fs::write(
        &file,
        b"this is not a database, just garbage bytes\n".repeat(200),
    )
    .unwrap();
    let run = agent.run(&["baselines", "show"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains(&file.display().to_string())
            && lines[0].contains("corrupt")
            && lines[0].contains("move it aside"),
        "{}",
        lines[0]
    );
}
