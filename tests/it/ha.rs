//! Two agents, one per node of a primary + streaming replica pair (the topology of
//! docker-compose.replica.yml, with local clusters): leader election with an advisory lock on
//! the primary, exactly one scheduled backup per tick, cluster-wide alerts from the leader
//! only, and a failover after which the agent of the promoted node leads, archives the new
//! timeline, backs up, and a PITR to a point after the failover matches.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::pg_test;
use crate::restore_cmd::{Scratch, restore_started};
use crate::schedule::jobs;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::recorder::Recorder;
use crate::support::sidecar::{Sidecar, sample};

/// The agent of one node: its own state, the shared repository of `repo_owner`.
fn node_agent(pg: &Cluster, repo: &Path, schedule: &str) -> Agent {
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\n  connect_timeout: 2s\nrepository:\n  path: {}\nstate_dir: STATE\nmonitor:\n  interval: 1s\nbackup:\n  wal_timeout: 60s\nschedule:\n{schedule}",
        pg.conninfo(),
        pg.version().bin_dir().display(),
        repo.display(),
    ));
    agent.share_with_postgres();
    agent
}

/// A primary archiving into `owner`'s repository with `owner`'s wal-push, and its replica
/// (which inherits archive_command, so it archives into the same repository once promoted).
fn primary_and_replica(v: PgVersion, owner: &Agent) -> (Cluster, Cluster) {
    let primary = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(owner.archive_command()),
            ..ClusterOptions::default()
        },
    );
    let replica = primary.start_replica();
    (primary, replica)
}

fn leader_of(s: &Sidecar) -> Option<f64> {
    sample(&s.metrics(), "dbagent_leader")
}

fn wait_leader(s: &Sidecar, want: f64, what: &str) {
    s.wait_metrics(what, Duration::from_secs(60), |m| {
        sample(m, "dbagent_leader") == Some(want)
    });
}

fn backups(agent: &Agent) -> Vec<serde_json::Value> {
    let run = agent.run(&["backups", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    run.json().as_array().cloned().unwrap_or_default()
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

const ALERTS: &str = "\
rules:
  - name: RepositoryHasBackups
    expr: dbagent_backups > 0
    scope: cluster
    labels: { severity: warning }
  - name: NodeUp
    expr: pg_up == 1
    labels: { severity: info }
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook: { url: \"HOOK\" }
";

pg_test!(
    ha_two_agents_one_leader_one_backup_per_tick_cluster_alerts_once,
    |v| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hook = rt.block_on(Recorder::start(200, ""));
        let schedule = "  backup: \"*/5 * * * * *\"\n";
        // The repository lives in the first agent's scratch dir; every agent uses it.
        let owner = Agent::new("host=127.0.0.1");
        owner.share_with_postgres();
        let (primary, replica) = primary_and_replica(v, &owner);
        let repo = owner.repo();
        let a = node_agent(&primary, &repo, schedule);
        let b = node_agent(&replica, &repo, schedule);
        // A second agent on the primary (a duplicated sidecar): the advisory lock must still
        // leave exactly one leader.
        let c = node_agent(&primary, &repo, schedule);
        for agent in [&a, &b, &c] {
            std::fs::write(
                agent.dir().join("alerts.yml"),
                ALERTS.replace("HOOK", &hook.url("/hook")),
            )
            .unwrap();
        }
        let sa = Sidecar::start(&a);
        let sb = Sidecar::start(&b);
        let sc = Sidecar::start(&c);

        // One of the two agents of the primary leads; the replica's agent follows.
        wait_until(
            "one leader among the primary's agents",
            Duration::from_secs(60),
            || leader_of(&sa) == Some(1.0) || leader_of(&sc) == Some(1.0),
            || format!("a:\n{}\nc:\n{}", sa.log(), sc.log()),
        );
        let a_leads = leader_of(&sa) == Some(1.0);
        let leader = if a_leads { &a } else { &c };
        wait_leader(
            if a_leads { &sc } else { &sa },
            0.0,
            "the other agent of the primary to follow",
        );
        wait_leader(&sb, 0.0, "the replica's agent to follow");
        assert_eq!(
            leader_of(if a_leads { &sa } else { &sc }),
            Some(1.0),
            "two leaders"
        );
        let (status, body) = sb.get("/api/v1/status");
        assert_eq!(status, 200);
        let st: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(st["sections"]["schedule"]["leader"], false, "{st}");
        assert!(
            st["sections"]["schedule"]["leader_reason"]
                .as_str()
                .unwrap()
                .contains("standby"),
            "{st}"
        );

        // Several ticks: backups appear, one per tick.
        wait_until(
            "three scheduled backups",
            Duration::from_secs(120),
            || backups(&a).len() >= 3,
            || format!("a:\n{}\nc:\n{}", sa.log(), sc.log()),
        );
        // Stop the agents before counting, so no run is in flight.
        drop(sa);
        drop(sb);
        drop(sc);
        let list = backups(&a);
        let ran: Vec<serde_json::Value> = jobs(leader)
            .into_iter()
            .filter(|j| j["job"] == "backup" && j["status"] == "succeeded")
            .collect();
        assert_eq!(
            ran.len(),
            list.len(),
            "every backup comes from one scheduled run of the leader: {ran:?}\n{list:?}"
        );
        let mut ticks: Vec<&str> = ran
            .iter()
            .map(|j| j["scheduled_for"].as_str().unwrap())
            .collect();
        ticks.sort();
        ticks.dedup();
        assert_eq!(ticks.len(), ran.len(), "one backup per tick: {ran:?}");
        for other in [&a, &b, &c] {
            if std::ptr::eq(other, leader) {
                continue;
            }
            let runs = jobs(other);
            assert!(runs.is_empty(), "a follower ran jobs: {runs:?}");
        }

        // The cluster-wide alert came from the leader only; the node alert from every agent.
        let got = hook.accepted();
        let from = |name: &str| -> std::collections::BTreeSet<String> {
            got.iter()
                .filter(|r| r.body["groupLabels"]["alertname"] == name)
                .map(|r| r.body["externalURL"].as_str().unwrap_or("").to_string())
                .collect()
        };
        let cluster = from("RepositoryHasBackups");
        assert_eq!(cluster.len(), 1, "cluster-wide alert senders: {cluster:?}");
        assert_eq!(from("NodeUp").len(), 3, "node alert senders: {got:?}");
        drop(replica);
        drop(primary);
    }
);

pg_test!(
    ha_failover_promoted_agent_leads_archives_backs_up_and_pitr_matches,
    |v| {
        let schedule = "  backup: \"*/4 * * * * *\"\n";
        let owner = Agent::new("host=127.0.0.1");
        owner.share_with_postgres();
        let (mut primary, replica) = primary_and_replica(v, &owner);
        let repo = owner.repo();
        // No schedule until the failover: the first backup is taken by hand.
        let a = node_agent(&primary, &repo, "  backup: null\n");
        let b = node_agent(&replica, &repo, schedule);
        let run = a.run(&["backup", "--json"]);
        assert_eq!(run.code, 0, "{}", run.all());
        let sa = Sidecar::start(&a);
        let sb = Sidecar::start(&b);
        wait_leader(&sa, 1.0, "the primary's agent to lead");
        wait_leader(&sb, 0.0, "the replica's agent to follow");
        primary.psql("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g");
        // Let the replica catch up, then fail over: stop the primary, promote the replica.
        wait_until(
            "the replica to replay the table",
            Duration::from_secs(30),
            || replica.try_psql("SELECT count(*) FROM t").as_deref() == Ok("100"),
            String::new,
        );
        primary.stop();
        replica.psql("SELECT pg_promote(true, 60)");
        assert_eq!(replica.psql("SELECT pg_is_in_recovery()"), "f");

        // The promoted node's agent takes over; the old primary's agent no longer leads.
        wait_leader(&sb, 1.0, "the promoted node's agent to lead");
        wait_leader(&sa, 0.0, "the old primary's agent to give up leadership");

        // Writes on the new timeline, archived into the same repository.
        replica.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(101, 150) g");
        let r = b.run_copy(&["restore-point", "after-failover"]);
        assert_eq!(r.code, 0, "{}", r.all());
        crate::restore_cmd::switch_and_wait(|sql| replica.psql(sql));
        let tl2 = repo.join("wal").join("0000000200000000");
        assert!(
            std::fs::read_dir(&tl2).map(|d| d.count()).unwrap_or(0) > 0,
            "no WAL of timeline 2 in {}",
            tl2.display()
        );

        // A scheduled backup on the new primary succeeds, on timeline 2.
        wait_until(
            "a scheduled backup on the new timeline",
            Duration::from_secs(120),
            || backups(&b).iter().any(|m| m["timeline"] == 2),
            || sb.log(),
        );
        let runs = jobs(&b);
        assert!(
            runs.iter()
                .any(|j| j["job"] == "backup" && j["status"] == "succeeded"),
            "{runs:?}"
        );
        drop(sa);
        drop(sb);

        // PITR to the restore point made after the failover, from the backup taken before it:
        // replays across the timeline switch and finds every row.
        let before = backups(&b)
            .into_iter()
            .find(|m| m["timeline"] == 1)
            .expect("the pre-failover backup");
        let scratch = Scratch::new();
        let dir = scratch.path("pitr");
        let (restored, _) = restore_started(
            &b,
            v,
            &dir,
            "name:after-failover",
            &["--backup", before["id"].as_str().unwrap()],
        );
        assert_eq!(
            restored
                .query("SELECT count(*) || '/' || count(*) FILTER (WHERE note = 'after') FROM t"),
            "150/50"
        );
        drop(restored);
        drop(replica);
    }
);
