//! `dbagent run` against real clusters: a real Prometheus scrapes it and promtool accepts its
//! output; the server going away and coming back; a failing collector that does not take the
//! others down; SIGHUP reload (a bad file is rejected); SIGTERM; auth and TLS on the endpoint;
//! and a poll over 10,000 tables that fits in its interval.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::sidecar::{Prometheus, Sidecar, get, promtool_check, sample};

/// An agent polling `pg` every second, with `extra` YAML appended.
fn agent_for(pg: &Cluster, extra: &str) -> Agent {
    Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 2s\nrepository:\n  path: REPO\nstate_dir: STATE\nmonitor:\n  interval: 1s\n{extra}",
        pg.conninfo()
    ))
}

fn up(metrics: &str) -> bool {
    sample(metrics, "pg_up") == Some(1.0)
}

pg_test!(
    prometheus_scrapes_run_and_promtool_accepts_the_metrics,
    |v| {
        let pg = Cluster::start(
            v,
            ClusterOptions {
                archive_mode: true,
                archive_command: Some("/bin/true".into()),
                ..ClusterOptions::default()
            },
        );
        pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
        // dbagent's own name set is the lint-clean one (postgres_exporter's: exporter_compat).
        let agent = agent_for(&pg, "  metric_names: dbagent\n");
        let sidecar = Sidecar::start(&agent);
        // Two polls, so that interval-based signals (deltas) are present too.
        let metrics = sidecar.wait_metrics("two successful polls", Duration::from_secs(30), |m| {
            up(m) && sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 2.0
        });
        let (ok, out) = promtool_check(&metrics);
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics:\n{out}\n---\n{metrics}"
        );
        assert!(metrics.contains("# HELP pg_up "), "{metrics}");

        let addr = sidecar.base.trim_start_matches("http://").to_string();
        let prom = Prometheus::scrape(&addr);
        prom.wait_for("up{job=\"dbagent\"}", Duration::from_secs(60), |v| v == 1.0);
        prom.wait_for("pg_up{job=\"dbagent\"}", Duration::from_secs(30), |v| {
            v == 1.0
        });
        prom.wait_for(
            "pg_stat_archiver_failed_total{job=\"dbagent\"}",
            Duration::from_secs(30),
            |v| v == 0.0,
        );

        // /healthz, /readyz and the status JSON.
        assert_eq!(sidecar.get("/healthz").0, 200);
        assert_eq!(
            sidecar.get("/readyz").0,
            200,
            "{}",
            sidecar.get("/readyz").1
        );
        let (status, body) = sidecar.get("/api/v1/status");
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["pg_up"], true, "{json}");
        assert_eq!(json["ready"], true, "{json}");
        assert_eq!(json["collectors"]["archiver"]["ok"], true, "{json}");
        assert!(
            json["server_version"]
                .as_str()
                .unwrap()
                .starts_with(&v.major().to_string())
        );
    }
);

pg_test!(
    killing_the_server_fails_readyz_and_the_agent_recovers,
    |v| {
        let mut pg = Cluster::start(v, ClusterOptions::default());
        let agent = agent_for(&pg, "");
        let mut sidecar = Sidecar::start(&agent);
        sidecar.wait_metrics("pg_up 1", Duration::from_secs(30), up);
        assert_eq!(sidecar.get("/readyz").0, 200);

        pg.stop();
        sidecar.wait_metrics("pg_up 0", Duration::from_secs(30), |m| {
            sample(m, "pg_up") == Some(0.0)
        });
        let (status, body) = sidecar.get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("not ready: "), "{body}");
        assert_eq!(sidecar.get("/healthz").0, 200);
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            sidecar.alive(),
            "dbagent run exited; log:\n{}",
            sidecar.log()
        );
        let m = sidecar.metrics();
        assert!(
            sample(&m, "dbagent_connect_errors_total").unwrap() >= 1.0,
            "{m}"
        );

        pg.start_again();
        sidecar.wait_metrics("pg_up 1 again", Duration::from_secs(60), up);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sidecar.get("/readyz").0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "readyz never recovered"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // One line when the server went away, one when it came back; not one per poll.
        let log = sidecar.log();
        assert_eq!(
            log.matches("Lost the PostgreSQL server").count(),
            1,
            "{log}"
        );
        assert_eq!(
            log.matches("Connected to PostgreSQL again").count(),
            1,
            "{log}"
        );
    }
);

#[test]
fn a_failing_collector_is_counted_and_logged_once_and_the_others_go_on() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    pg.psql("CREATE ROLE watcher LOGIN PASSWORD 'pw'");
    pg.psql("REVOKE SELECT ON pg_stat_archiver FROM PUBLIC");
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\nrepository:\n  path: REPO\nstate_dir: STATE\nmonitor:\n  interval: 1s\n",
        pg.conninfo_as("watcher", "pw")
    ));
    let sidecar = Sidecar::start(&agent);
    let m = sidecar.wait_metrics("three archiver failures", Duration::from_secs(30), |m| {
        sample(m, "dbagent_collector_errors_total{collector=\"archiver\"}").unwrap_or(0.0) >= 3.0
    });
    assert!(up(&m), "{m}");
    assert_eq!(
        sample(&m, "dbagent_collector_up{collector=\"archiver\"}"),
        Some(0.0)
    );
    let log = sidecar.log();
    // Logged once per failing collector, not once per poll (recovery reads pg_stat_archiver
    // for the RPO too, so it fails with it).
    assert_eq!(
        log.matches("Collector failed; the others go on collector=\"archiver\"")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("pg_stat_archiver"), "{log}");
    let (_, body) = sidecar.get("/api/v1/status");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["collectors"]["archiver"]["ok"], false, "{json}");

    pg.psql("GRANT SELECT ON pg_stat_archiver TO PUBLIC");
    sidecar.wait_metrics("archiver recovered", Duration::from_secs(30), |m| {
        sample(m, "dbagent_collector_up{collector=\"archiver\"}") == Some(1.0)
    });
    assert_eq!(
        sidecar
            .log()
            .matches("Collector recovered collector=\"archiver\"")
            .count(),
        1
    );
}

#[test]
fn sighup_reloads_the_config_and_rejects_a_bad_file() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    let agent = agent_for(&pg, "");
    let mut sidecar = Sidecar::start(&agent);
    sidecar.wait_metrics("pg_up", Duration::from_secs(30), up);
    let good = std::fs::read_to_string(agent.config_path()).unwrap();

    agent.set_yaml(&good.replace("interval: 1s", "interval: 2s"));
    sidecar.signal(Signal::SIGHUP);
    sidecar.wait_metrics("interval 2s", Duration::from_secs(30), |m| {
        sample(m, "dbagent_poll_interval_seconds") == Some(2.0)
    });

    std::fs::write(agent.config_path(), "postgres:\n  conninfo: [unclosed\n").unwrap();
    sidecar.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sidecar.log().contains("the configuration was rejected") {
        assert!(std::time::Instant::now() < deadline, "{}", sidecar.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(sidecar.alive());
    let m = sidecar.metrics();
    assert_eq!(sample(&m, "dbagent_poll_interval_seconds"), Some(2.0));
    assert!(up(&m), "{m}");

    let status = sidecar
        .terminate(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", sidecar.log());
}

#[test]
fn bearer_token_and_tls_protect_the_endpoint_but_not_healthz() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    let scratch = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::support::sidecar::test_certificates(scratch.path());
    let mut agent = agent_for(
        &pg,
        &format!(
            "http:\n  bearer_token: ${{TEST_DBAGENT_TOKEN}}\n  tls:\n    cert: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    agent.env("TEST_DBAGENT_TOKEN", "tok-123");
    let sidecar = Sidecar::start(&agent);
    assert!(sidecar.base.starts_with("https://"), "{}", sidecar.base);
    let client = https_client(&ca);
    let get = |path: &str, auth: Option<&str>| {
        let mut req = client.get(format!("{}{path}", sidecar.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().expect("https request");
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    };
    assert_eq!(get("/healthz", None).0, 200);
    assert_eq!(get("/metrics", None).0, 401);
    assert_eq!(get("/metrics", Some("Bearer wrong")).0, 401);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get("/metrics", Some("Bearer tok-123"));
        assert_eq!(status, 200, "{body}");
        if up(&body) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Plain HTTP on the TLS port does not get the metrics, and the token is never logged.
    let plain = get_plain(&sidecar.base.replace("https://", "http://"));
    assert_ne!(plain.0, 200);
    assert!(!sidecar.log().contains("tok-123"));
}

fn https_client(cert: &std::path::Path) -> reqwest::blocking::Client {
    crate::support::sidecar::install_crypto_provider();
    let pem = std::fs::read(cert).unwrap();
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn get_plain(base: &str) -> (u16, String) {
    get(&format!("{base}/metrics"), None)
}

#[test]
fn run_refuses_to_start_on_a_busy_port_with_one_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let agent = Agent::new("host=127.0.0.1 port=1");
    let run = agent.run(&["run", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(run.code, 1, "{}", run.all());
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dbagent: error: cannot listen on 127.0.0.1:")
            && last.contains("http.listen"),
        "{}",
        run.stderr
    );
}

pg_test!(a_poll_over_10000_tables_fits_in_its_interval, |v| {
    let pg = Cluster::start(
        v,
        ClusterOptions {
            pg_stat_statements: true,
            ..ClusterOptions::default()
        },
    );
    pg.psql(
        "DO $$ BEGIN FOR i IN 1..10000 LOOP \
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i); \
           IF i % 500 = 0 THEN COMMIT; END IF; \
         END LOOP; END $$",
    );
    pg.psql("ANALYZE");
    let agent = agent_for(&pg, "");
    agent.set_yaml(&agent.yaml().replace("interval: 1s", "interval: 15s"));
    let sidecar = Sidecar::start(&agent);
    let m = sidecar.wait_metrics("a successful poll", Duration::from_secs(60), |m| {
        up(m) && sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 1.0
    });
    let took = sample(&m, "dbagent_poll_duration_seconds").unwrap();
    assert!(took < 15.0, "a poll over 10,000 tables took {took}s");
    assert_eq!(sample(&m, "dbagent_poll_overruns_total"), Some(0.0));
    // Every collector ran and none failed.
    for line in m.lines().filter(|l| l.starts_with("dbagent_collector_up{")) {
        assert!(line.ends_with(" 1"), "{line}\n{}", sidecar.log());
    }
});

/// Samples of `series` recorded in the baseline store, read with `dbagent baselines show`.
fn baseline_samples(agent: &Agent, series: &str) -> u64 {
    let run = agent.run(&["baselines", "show", "--json", series]);
    assert_eq!(run.code, 0, "{}", run.all());
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["series"] == series)
        .map_or(0, |b| b["samples"].as_u64().unwrap())
}

#[test]
fn run_records_baselines_that_survive_a_restart() {
    let pg = Cluster::start(PgVersion::V15, ClusterOptions::default());
    let agent = agent_for(&pg, "  baseline_min_samples: 3\n");
    let series = "dbagent_connections_exhaustion_ratio";
    let mut sidecar = Sidecar::start(&agent);
    sidecar.wait_metrics("four polls", Duration::from_secs(30), |m| {
        sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 4.0
    });
    let status = sidecar
        .terminate(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{}", sidecar.log());
    let before = baseline_samples(&agent, series);
    assert!(before >= 3, "{before} samples after 4 polls");
    let run = agent.run(&["baselines", "show", "--json", series]);
    assert_eq!(run.json()[0]["ready"], true, "{}", run.stdout);

    let sidecar = Sidecar::start(&agent);
    sidecar.wait_metrics("two more polls", Duration::from_secs(30), |m| {
        sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 2.0
    });
    drop(sidecar);
    let after = baseline_samples(&agent, series);
    assert!(after > before, "before restart {before}, after {after}");
}

pg_test!(
    a_slow_query_shows_in_metrics_and_in_the_status_api_with_its_text,
    |v| {
        let pg = Cluster::start(
            v,
            ClusterOptions {
                pg_stat_statements: true,
                ..ClusterOptions::default()
            },
        );
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        let agent = agent_for(&pg, "");
        let sidecar = Sidecar::start(&agent);
        sidecar.wait_metrics("two polls", Duration::from_secs(30), |m| {
            sample(m, "dbagent_polls_total").unwrap_or(0.0) >= 2.0
        });
        pg.psql("SELECT pg_sleep(0.4) AS dbagent_slow_marker");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let entry = loop {
            let (_, body) = sidecar.get("/api/v1/status");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let found = json["sections"]["statements"]["queries"]
                .as_array()
                .and_then(|q| {
                    q.iter()
                        .find(|e| {
                            e["query"]
                                .as_str()
                                .unwrap_or("")
                                .contains("dbagent_slow_marker")
                        })
                        .cloned()
                });
            if let Some(e) = found {
                break e;
            }
            assert!(std::time::Instant::now() < deadline, "{json}");
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(entry["mean_seconds"].as_f64().unwrap() >= 0.4, "{entry}");
        let queryid = entry["queryid"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| entry["queryid"].to_string());
        let m = sidecar.metrics();
        let line = m
            .lines()
            .find(|l| {
                l.starts_with("dbagent_statement_mean_seconds{")
                    && l.contains(&format!("queryid=\"{queryid}\""))
            })
            .unwrap_or_else(|| panic!("no metric for queryid {queryid}:\n{m}"));
        let mean: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(mean >= 0.4, "{line}");
        assert!(
            !m.contains("dbagent_slow_marker") && !m.contains("pg_sleep"),
            "query text leaked into /metrics"
        );
        // The statement history the agent keeps: in the status section (the last hour) and in
        // `dbagent top`, after that poll.
        let (_, body) = sidecar.get("/api/v1/status");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let history = &json["sections"]["statements"]["history"];
        assert_eq!(history["window_seconds"], 3600, "{json}");
        assert!(
            history["queries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("dbagent_slow_marker"))),
            "{json}"
        );
        let top = agent.run(&["top", "--json"]);
        assert_eq!(top.code, 0, "{top:?}");
        let listed = top.json()["statements"].clone();
        assert!(
            listed.as_array().unwrap().iter().any(|e| e["query"]
                .as_str()
                .is_some_and(|q| q.contains("dbagent_slow_marker"))),
            "{listed}"
        );
    }
);

pg_test!(run_exports_backup_age_rpo_and_backup_duration, |v| {
    let (agent, pg) = crate::backup::archived_cluster(v);
    crate::backup::take_backup(&agent);
    pg.psql("CREATE TABLE t AS SELECT 1 AS x");
    pg.psql("SELECT pg_switch_wal()");
    let sidecar = Sidecar::start(&agent);
    let m = sidecar.wait_metrics("the recovery signals", Duration::from_secs(30), |m| {
        sample(m, "dbagent_backups") == Some(1.0) && sample(m, "dbagent_rpo_seconds").is_some()
    });
    let age = sample(&m, "dbagent_backup_age_seconds").unwrap();
    assert!((0.0..120.0).contains(&age), "{age}");
    assert!(sample(&m, "dbagent_backup_duration_seconds").unwrap() > 0.0);
    assert!(sample(&m, "dbagent_backup_last_success_timestamp_seconds").unwrap() > 1.7e9);
    let rpo = sample(&m, "dbagent_rpo_seconds").unwrap();
    assert!((0.0..120.0).contains(&rpo), "{rpo}");
    assert!(
        sample(&m, "dbagent_drill_age_seconds").is_none(),
        "no drill yet"
    );
});
