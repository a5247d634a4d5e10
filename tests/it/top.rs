//! `dbagent top` and the statement history behind it, against real clusters: a statement that
//! ran 5 times at 300 ms between two polls is listed with its text after the next poll and
//! still an hour later (rows aged in state.db), one slow run between polls is listed too,
//! dbagent's own statements are never there (a busy poll: every collector), a stats reset
//! gives no negative or doubled rows, the JSON shape, the empty-history message, and a
//! least-privilege agent whose statements are left out by role.

use std::path::{Path, PathBuf};

use serde_json::Value;

use dbagent::collect::{self, Collector, Output, statements::Statements};

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::Poller;
use crate::support::dbagent::Agent;

/// A poller like `dbagent run`'s, writing the history into the agent's state directory.
fn poller(conninfo: &str, agent: &Agent) -> Poller {
    let mut p = Poller::with_conninfo(conninfo);
    p.state_dir = Some(state_dir(agent));
    p
}

fn state_dir(agent: &Agent) -> PathBuf {
    agent.dir().join("state")
}

/// One busy poll: every other collector of `dbagent run` first (their statements are the
/// agent's own), then the statements collector; its output.
fn busy_poll(p: &Poller, others: &mut [Box<dyn Collector>], statements: &mut Statements) -> Output {
    for c in others.iter_mut() {
        // Some need a repository or a standby; their errors do not matter here.
        let _ = p.run(c.as_mut());
    }
    p.run(statements).expect("statements poll")
}

fn others() -> Vec<Box<dyn Collector>> {
    collect::all()
        .into_iter()
        .filter(|c| c.name() != "statements")
        .collect()
}

fn top_json(agent: &Agent, args: &[&str]) -> Value {
    let mut all = vec!["top", "--json", "--limit", "100"];
    all.extend_from_slice(args);
    let run = agent.run(&all);
    assert_eq!(run.code, 0, "{run:?}");
    run.json()
}

/// The listed statements whose text contains `needle`.
fn with_text<'a>(report: &'a Value, needle: &str) -> Vec<&'a Value> {
    report["statements"]
        .as_array()
        .unwrap_or_else(|| panic!("{report:#}"))
        .iter()
        .filter(|s| s["query"].as_str().is_some_and(|q| q.contains(needle)))
        .collect()
}

/// Moves every history row `secs` seconds into the past.
fn age_history(state: &Path, secs: i64) {
    let db = rusqlite::Connection::open(state.join("state.db")).expect("open state.db");
    db.execute(
        "UPDATE statement_history SET taken_ms = taken_ms - ?1",
        [secs * 1000],
    )
    .expect("age the history");
}

pg_test!(
    top_shows_slow_statements_with_their_text_after_the_next_poll_and_an_hour_later_never_dbagents_own,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let agent = Agent::new(&pg.conninfo());

        // Nothing recorded yet: say so and what to do, exit 0; JSON has an empty list.
        let run = agent.run(&["top"]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("no statement history yet"), "{run:?}");
        assert!(run.stdout.contains("dbagent run"), "{run:?}");
        let empty = top_json(&agent, &[]);
        assert_eq!(empty["statements"], serde_json::json!([]), "{empty:#}");
        assert_eq!(empty["history"]["rows"], 0, "{empty:#}");

        let p = poller(&pg.conninfo(), &agent);
        let mut others = others();
        let mut statements = Statements::new();
        busy_poll(&p, &mut others, &mut statements);

        pg.psql(&"SELECT pg_sleep(0.3) AS top_five_times;\n".repeat(5));
        let out = busy_poll(&p, &mut others, &mut statements);
        let status = out.status.expect("status section");
        assert!(
            status["own_statements"].as_str().unwrap().starts_with("untracked"),
            "{status:#}"
        );
        // The status section has the last hour from the history.
        let recent = status["history"]["queries"].as_array().unwrap_or_else(|| panic!("{status:#}"));
        assert!(
            recent.iter().any(|q| q["query"].as_str().is_some_and(|t| t.contains("top_five_times"))),
            "{status:#}"
        );

        // After the next poll: listed with its text, 5 calls of at least 300 ms; and nothing
        // else ran between the polls but dbagent itself, which is not listed.
        let report = top_json(&agent, &[]);
        let five = with_text(&report, "top_five_times");
        assert_eq!(five.len(), 1, "{report:#}");
        let s = five[0];
        assert_eq!(s["calls"], 5.0, "{s:#}");
        assert!(s["mean_seconds"].as_f64().unwrap() >= 0.3, "{s:#}");
        assert!(s["total_seconds"].as_f64().unwrap() >= 1.5, "{s:#}");
        assert_eq!(s["datname"], "postgres", "{s:#}");
        assert_eq!(s["rank"], 1, "{s:#}");
        let listed = report["statements"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "only the workload is listed: {report:#}");
        // The JSON shape.
        for key in ["since", "window_seconds", "by", "history", "statements"] {
            assert!(report.get(key).is_some(), "{key}: {report:#}");
        }
        assert_eq!(report["by"], "total");
        assert_eq!(report["window_seconds"], 3600);
        for key in ["rows", "oldest", "newest"] {
            assert!(report["history"].get(key).is_some(), "{key}: {report:#}");
        }
        for key in [
            "rank", "queryid", "datname", "user", "toplevel", "calls", "total_seconds",
            "mean_seconds", "rows", "intervals", "first_seen", "last_seen", "query",
        ] {
            assert!(s.get(key).is_some(), "{key}: {s:#}");
        }
        assert!(s["queryid"].as_str().unwrap().parse::<i64>().is_ok(), "{s:#}");

        // The table: the text is visible, within 80 columns.
        let run = agent.run(&["top"]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("pg_sleep"), "{}", run.stdout);
        for line in run.stdout.lines().skip(1) {
            assert!(line.chars().count() <= 80, "{line}");
        }

        // One slow run between two polls is listed too, first by mean.
        pg.psql("SELECT pg_sleep(0.5)::text AS top_just_once;");
        busy_poll(&p, &mut others, &mut statements);
        let report = top_json(&agent, &["--by", "mean"]);
        let once = with_text(&report, "top_just_once");
        assert_eq!(once.len(), 1, "{report:#}");
        assert_eq!(once[0]["calls"], 1.0);
        assert_eq!(once[0]["rank"], 1, "{report:#}");
        // Still nothing of dbagent's own, after three busy polls.
        for s in report["statements"].as_array().unwrap() {
            let q = s["query"].as_str().unwrap_or_default();
            assert!(q.contains("top_just_once") || q.contains("top_five_times"), "{report:#}");
        }

        // An hour later: out of the default window, still there with --since 2h.
        age_history(&state_dir(&agent), 3600 + 60);
        let run = agent.run(&["top"]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("no statement was recorded in the last 1h"), "{run:?}");
        let report = top_json(&agent, &["--since", "2h"]);
        let five = with_text(&report, "top_five_times");
        assert_eq!(five.len(), 1, "{report:#}");
        assert_eq!(five[0]["calls"], 5.0);
        let run = agent.run(&["top", "--since", "2h"]);
        assert!(run.stdout.contains("pg_sleep"), "{}", run.stdout);
    }
);

pg_test!(
    a_stats_reset_between_polls_gives_no_negative_or_doubled_history,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let agent = Agent::new(&pg.conninfo());
        let p = poller(&pg.conninfo(), &agent);
        let mut statements = Statements::new();
        p.run(&mut statements).expect("first poll");
        pg.psql(&"SELECT pg_sleep(0.1) AS top_reset_marker;\n".repeat(3));
        p.run(&mut statements).expect("second poll");
        pg.psql("SELECT pg_stat_statements_reset();");
        pg.psql(&"SELECT pg_sleep(0.1) AS top_reset_marker;\n".repeat(2));
        // The reset is seen in pg_stat_statements_info: that interval is discarded.
        p.run(&mut statements).expect("poll after the reset");
        pg.psql("SELECT pg_sleep(0.1) AS top_reset_marker;");
        p.run(&mut statements).expect("poll after that");

        let db = rusqlite::Connection::open(state_dir(&agent).join("state.db")).unwrap();
        let (rows, calls, min_calls, min_seconds, min_rows): (i64, f64, f64, f64, f64) = db
            .query_row(
                "SELECT count(*), sum(h.calls), min(h.calls), min(h.total_seconds), min(h.rows) \
                 FROM statement_history h JOIN statement_texts t ON t.id = h.statement_id \
                 WHERE t.query LIKE '%top_reset_marker%'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (rows, calls),
            (2, 4.0),
            "3 before the reset, 1 after the discarded interval"
        );
        assert!(min_calls > 0.0 && min_seconds > 0.0 && min_rows >= 0.0);
        let negative: i64 = db
            .query_row(
                "SELECT count(*) FROM statement_history WHERE calls < 0 OR total_seconds < 0 OR rows < 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(negative, 0);
        let texts: i64 = db
            .query_row(
                "SELECT count(*) FROM statement_texts WHERE query LIKE '%top_reset_marker%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(texts, 1, "one text per statement");
    }
);

pg_test!(a_least_privilege_agent_leaves_its_own_role_out, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    // Not a superuser: it may not turn pg_stat_statements off for its session.
    pg.psql("CREATE ROLE top_agent LOGIN PASSWORD 'top-pass-1' IN ROLE pg_monitor");
    let conninfo = pg.conninfo_as("top_agent", "top-pass-1");
    let agent = Agent::new(&conninfo);
    let p = poller(&conninfo, &agent);
    let mut others = others();
    let mut statements = Statements::new();
    busy_poll(&p, &mut others, &mut statements);
    pg.psql(&"SELECT pg_sleep(0.2) AS top_app_statement;\n".repeat(2));
    let out = busy_poll(&p, &mut others, &mut statements);
    let status = out.status.expect("status");
    assert!(
        status["own_statements"]
            .as_str()
            .unwrap()
            .contains("role top_agent"),
        "{status:#}"
    );
    // The agent's statements are in pg_stat_statements, but not in the history.
    let tracked = pg.psql(
        "SELECT count(*) > 0 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
             WHERE r.rolname = 'top_agent'",
    );
    assert_eq!(tracked, "t");
    let report = top_json(&agent, &[]);
    let listed = report["statements"].as_array().unwrap();
    assert!(!listed.is_empty(), "{report:#}");
    assert!(
        listed.iter().all(|s| s["user"] != "top_agent"),
        "{report:#}"
    );
    assert_eq!(
        with_text(&report, "top_app_statement").len(),
        1,
        "{report:#}"
    );
});
