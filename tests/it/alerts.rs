//! Alerting end to end with `dbagent run` against real clusters: rules fire from real samples,
//! `alerts list` shows them, silences are created, listed and expired from the CLI, and
//! `config validate` checks alerts.yml with located errors.

use std::time::Duration;

use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::sidecar::{Sidecar, sample};

/// An agent polling `pg` every second, with `alerts` as its alerts.yml.
fn agent_with_alerts(pg: &Cluster, alerts: &str) -> Agent {
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nmonitor:\n  interval: 1s\n",
        pg.conninfo()
    ));
    std::fs::write(agent.dir().join("alerts.yml"), alerts).unwrap();
    agent
}

const SESSIONS_RULE: &str = "\
rules:
  - name: AnySession
    expr: dbagent_connections_sessions > 0
    labels: { severity: warning }
    annotations: { summary: \"{{ $value }} sessions\" }
route:
  receiver: hook
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook: { url: \"http://127.0.0.1:9/hook\" }
";

#[test]
fn run_fires_a_rule_and_alerts_list_shows_it() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    let agent = agent_with_alerts(&pg, SESSIONS_RULE);
    let sidecar = Sidecar::start(&agent);
    let m = sidecar.wait_metrics("the alert firing", Duration::from_secs(30), |m| {
        sample(
            m,
            "dbagent_alerts{alertname=\"AnySession\",severity=\"warning\",state=\"firing\"}",
        ) == Some(1.0)
    });
    assert_eq!(sample(&m, "dbagent_alert_rules"), Some(1.0), "{m}");
    let run = agent.run(&["alerts", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let list = run.json();
    assert_eq!(list[0]["alertname"], "AnySession", "{list}");
    assert_eq!(list[0]["state"], "firing");
    assert!(
        list[0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .ends_with(" sessions")
    );
    let text = agent.run(&["alerts", "list"]);
    assert!(text.stdout.starts_with("STATE"), "{}", text.stdout);
    assert!(text.stdout.contains("firing") && text.stdout.contains("AnySession"));
    let (_, body) = sidecar.get("/api/v1/status");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["alerts"]["active"][0]["alertname"], "AnySession",
        "{json}"
    );
}

#[test]
fn silences_are_created_listed_and_expired_from_the_cli() {
    let agent = Agent::new("host=127.0.0.1 port=1");
    let run = agent.run(&["alerts", "silences"]);
    assert_eq!(
        (run.code, run.stdout.trim()),
        (0, "no silences"),
        "{}",
        run.all()
    );

    let run = agent.run(&[
        "alerts",
        "silence",
        "--match",
        "alertname=TableBloatHigh",
        "--match",
        "relname=~\"ev.*\"",
        "--for",
        "2h",
        "--comment",
        "repacking tonight",
        "--author",
        "alice",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let id = run.json()["id"].as_str().unwrap().to_string();
    let list = agent.run(&["alerts", "silences", "--json"]).json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["created_by"], "alice");
    assert_eq!(list[0]["matchers"][1], "relname=~\"ev.*\"");

    let run = agent.run(&["alerts", "expire", &id]);
    assert_eq!(run.code, 0, "{}", run.all());
    let list = agent.run(&["alerts", "silences", "--json"]).json();
    assert_eq!(list[0]["active"], false);
    let text = agent.run(&["alerts", "silences"]).stdout;
    assert!(text.contains("expired"), "{text}");

    let run = agent.run(&["alerts", "expire", "nope"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no silence with id nope"),
        "{}",
        run.stderr
    );
    let run = agent.run(&[
        "alerts",
        "silence",
        "--match",
        "bad matcher",
        "--for",
        "1h",
        "--comment",
        "x",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid matcher"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn config_validate_checks_alerts_yml_with_located_errors() {
    let agent = Agent::new("host=127.0.0.1 port=1");
    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("not found: alerting is off"),
        "{}",
        run.stdout
    );

    let example = agent.run(&["config", "example", "--alerts"]).stdout;
    std::fs::write(agent.dir().join("alerts.yml"), &example).unwrap();
    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("rules") && run.stdout.contains(": valid"),
        "{}",
        run.stdout
    );

    std::fs::write(
        agent.dir().join("alerts.yml"),
        "rules:\n  - name: X\n    expr: pg_up == 0\n    fore: 5m\nroute:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook: { url: \"http://127.0.0.1:9/\" }\n",
    )
    .unwrap();
    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run.stderr.trim();
    assert!(
        line.contains("alerts.yml:4:") && line.contains("for"),
        "{line}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    std::fs::write(
        agent.dir().join("alerts.yml"),
        "rules:\n  - name: X\n    expr: pg_up > lots\nroute:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook: { url: \"http://127.0.0.1:9/\" }\n",
    )
    .unwrap();
    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("alerts.yml:3:") && run.stderr.contains("`lots` is not a number"),
        "{}",
        run.stderr
    );

    // dbagent run refuses to start with an invalid alerts.yml (one line, exit 1).
    let run = agent.run(&["run", "--listen", "127.0.0.1:0"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.lines().last().unwrap().contains("alerts.yml:3:"),
        "{}",
        run.stderr
    );
}
