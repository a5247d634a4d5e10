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

/// A multi-threaded runtime for the HTTP recorder, kept alive for the test.
fn recorder_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until the recorder accepted `n` requests; returns them.
fn wait_accepted(
    rec: &crate::support::recorder::Recorder,
    n: usize,
    timeout: Duration,
    log: &dyn Fn() -> String,
) -> Vec<crate::support::recorder::Recorded> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got = rec.accepted();
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited for {n} notifications, got {}: {:#?}\nlog:\n{}",
            got.len(),
            got.iter().map(|r| &r.body).collect::<Vec<_>>(),
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

crate::pg_test!(
    a_slow_query_fires_the_alert_to_the_webhook_and_resolves,
    |v| {
        let rt = recorder_runtime();
        let rec = rt.block_on(crate::support::recorder::Recorder::start(200, "ok"));
        let pg = Cluster::start(
            v,
            ClusterOptions {
                pg_stat_statements: true,
                ..ClusterOptions::default()
            },
        );
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        let alerts = format!(
            "rules:\n  - name: SlowQuery\n    expr: dbagent_statement_mean_seconds{{queryid!=\"(other)\"}} > 0.3\n    labels: {{ severity: warning }}\n    annotations: {{ summary: \"query {{{{ $labels.queryid }}}} took {{{{ $value }}}}s\" }}\nroute:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n",
            rec.url("/hook")
        );
        let agent = agent_with_alerts(&pg, &alerts);
        let sidecar = Sidecar::start(&agent);
        sidecar.wait_metrics("two polls", Duration::from_secs(30), |m| {
            sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 2.0
        });
        // The slow query keeps running (in every poll interval) until the alert has fired.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let log = || sidecar.log();
        let got = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = pg.try_psql("SELECT pg_sleep(0.5) AS slow_on_purpose");
                }
            });
            let got = wait_accepted(&rec, 1, Duration::from_secs(30), &log);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            got
        });
        let firing = &got[0].body;
        assert_eq!(firing["version"], "4", "{firing}");
        assert_eq!(firing["status"], "firing", "{firing}");
        assert_eq!(firing["receiver"], "hook");
        assert_eq!(firing["groupLabels"]["alertname"], "SlowQuery");
        let alert = &firing["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "SlowQuery");
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("query "),
            "{alert}"
        );
        let fingerprint = alert["fingerprint"].as_str().unwrap().to_string();
        // The query is not repeated: the next interval has no sample for it, the alert resolves.
        let got = wait_accepted(&rec, 2, Duration::from_secs(30), &log);
        let resolved = &got[1].body;
        assert_eq!(resolved["status"], "resolved", "{resolved}");
        assert_eq!(resolved["alerts"][0]["fingerprint"], fingerprint.as_str());
        assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            rec.accepted().len(),
            2,
            "one firing and one resolved notification"
        );
        let m = sidecar.metrics();
        assert_eq!(
            sample(
                &m,
                "dbagent_notifications_sent_total{receiver=\"hook\",integration=\"webhook\"}"
            ),
            Some(2.0),
            "{m}"
        );
    }
);

#[test]
fn sigkill_while_firing_neither_repages_nor_forgets_to_resolve() {
    let rt = recorder_runtime();
    let rec = rt.block_on(crate::support::recorder::Recorder::start(200, "ok"));
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    pg.psql("CREATE TABLE flag (id int); ANALYZE flag");
    let alerts = format!(
        "rules:\n  - name: FlagRaised\n    expr: pg_stat_user_tables_n_live_tup{{relname=\"flag\"}} > 0\nroute:\n  receiver: hook\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n",
        rec.url("/hook")
    );
    let agent = agent_with_alerts(&pg, &alerts);
    let mut sidecar = Sidecar::start(&agent);
    pg.psql("INSERT INTO flag VALUES (1)");
    let log = || String::new();
    let got = wait_accepted(&rec, 1, Duration::from_secs(30), &log);
    assert_eq!(got[0].body["status"], "firing");

    sidecar.signal(nix::sys::signal::Signal::SIGKILL);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sidecar.alive() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let sidecar = Sidecar::start(&agent);
    sidecar.wait_metrics(
        "three polls after the restart",
        Duration::from_secs(30),
        |m| sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 3.0,
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rec.accepted().len(),
        1,
        "paged again after the restart: {:#?}\n{}",
        rec.accepted().iter().map(|r| &r.body).collect::<Vec<_>>(),
        sidecar.log()
    );
    let list = agent.run(&["alerts", "list", "--json"]).json();
    assert_eq!(list[0]["state"], "firing", "{list}");

    pg.psql("DELETE FROM flag");
    let log = || sidecar.log();
    let got = wait_accepted(&rec, 2, Duration::from_secs(60), &log);
    assert_eq!(got[1].body["status"], "resolved", "{:#?}", got[1].body);
    assert_eq!(
        got[1].body["alerts"][0]["fingerprint"],
        got[0].body["alerts"][0]["fingerprint"]
    );
}

#[test]
fn alerts_test_sends_through_a_receiver_and_reports_its_answer() {
    let rt = recorder_runtime();
    let rec = rt.block_on(crate::support::recorder::Recorder::start(200, "ok"));
    let agent = Agent::new("host=127.0.0.1 port=1");
    std::fs::write(
        agent.dir().join("alerts.yml"),
        format!(
            "route:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n  - name: down\n    webhook: {{ url: \"http://127.0.0.1:9/none\" }}\n",
            rec.url("/hook")
        ),
    )
    .unwrap();
    let run = agent.run(&["alerts", "test", "--receiver", "hook"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("hook/webhook: delivered"),
        "{}",
        run.stdout
    );
    assert_eq!(rec.accepted().len(), 1);
    assert_eq!(rec.accepted()[0].body["receiver"], "hook");

    let run = agent.run(&["alerts", "test", "--receiver", "down", "--json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(run.json()["ok"], false);
    let run = agent.run(&["alerts", "test", "--receiver", "nobody"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no receiver `nobody`") && run.stderr.contains("hook, down"),
        "{}",
        run.stderr
    );
}

/// The shipped alerts.yml (which has a disabled rule and cluster-wide ones): the rule count
/// `config validate` prints is the one `dbagent_alert_rules` reports, and validate says which
/// rules do not fire here and why.
#[test]
fn shipped_rules_are_counted_alike_by_validate_and_the_metric() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    let shipped = dbagent::alert::rules::EXAMPLE;
    let agent = agent_with_alerts(&pg, shipped);
    let rules = shipped.split("\nroute:").next().unwrap_or_default();
    let total = rules.matches("\n  - name: ").count();
    let disabled = rules.matches("\n    enabled: false").count();
    assert!(
        total > 20 && disabled > 0,
        "{total} rules, {disabled} disabled"
    );

    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("({total} rules, 2 receivers): valid")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "rules: all {total} counted by dbagent_alert_rules; {} enabled ({disabled} disabled: ",
            total - disabled
        )) && run.stdout.contains("evaluated by the leader only"),
        "{}",
        run.stdout
    );

    let sidecar = Sidecar::start(&agent);
    let m = sidecar.wait_metrics("the rule count", Duration::from_secs(30), |m| {
        sample(m, "dbagent_alert_rules").is_some()
    });
    assert_eq!(sample(&m, "dbagent_alert_rules"), Some(total as f64), "{m}");
}
