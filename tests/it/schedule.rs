//! Scheduled jobs inside `dbagent run`: cron ticks run jobs and record them (`dbagent jobs
//! list`, dbagent_job_* metrics), runs missed while the agent was down follow
//! `schedule.on_missed`, a job never overlaps itself, and an agent killed during a scheduled
//! backup leaves a failed run in the history and nothing else: the next tick cleans up and
//! succeeds.

use std::time::{Duration, Instant};

use crate::backup::{configure, stalled_archiving_cluster};
use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::sidecar::{Sidecar, promtool_check, sample};

pub(crate) fn jobs(agent: &Agent) -> Vec<serde_json::Value> {
    let run = agent.run(&["jobs", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    run.json().as_array().cloned().unwrap_or_default()
}

fn wait_jobs(
    agent: &Agent,
    what: &str,
    timeout: Duration,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let j = jobs(agent);
        if f(&j) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {j:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn with_schedule(agent: &Agent, pg: &Cluster, schedule: &str) {
    configure(agent, pg, "10m");
    let mut yaml = agent.yaml();
    yaml.push_str(&format!(
        "monitor:\n  interval: 1s\n  metric_names: dbagent\nschedule:\n{schedule}"
    ));
    std::fs::write(agent.config_path(), yaml).unwrap();
}

fn count(j: &[serde_json::Value], status: &str, trigger: &str) -> usize {
    j.iter()
        .filter(|r| r["status"] == status && r["trigger"] == trigger)
        .count()
}

#[test]
fn schedule_runs_jobs_records_them_and_handles_missed_runs_as_configured() {
    let agent = Agent::new("host=127.0.0.1");
    agent.share_with_postgres();
    let pg = Cluster::start(
        PgVersion::V15,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(agent.archive_command()),
            ..ClusterOptions::default()
        },
    );
    let expire_every_2s = "  on_missed: skip\n  expire: \"*/2 * * * * *\"\n";
    with_schedule(&agent, &pg, expire_every_2s);
    let empty = agent.run(&["jobs", "list"]);
    assert_eq!(empty.code, 0, "{}", empty.all());
    assert!(
        empty.stdout.contains("no job has run yet"),
        "{}",
        empty.stdout
    );

    let sidecar = Sidecar::start(&agent);
    wait_jobs(
        &agent,
        "two scheduled expire runs",
        Duration::from_secs(60),
        |j| count(j, "succeeded", "schedule") >= 2,
    );
    let m = sidecar.wait_metrics("job metrics", Duration::from_secs(30), |m| {
        sample(m, "dbagent_job_last_result{job=\"expire\"}") == Some(1.0)
            && sample(
                m,
                "dbagent_job_runs_total{job=\"expire\",result=\"succeeded\"}",
            )
            .is_some_and(|n| n >= 2.0)
    });
    assert!(
        sample(&m, "dbagent_job_next_run_timestamp_seconds{job=\"expire\"}").is_some(),
        "{m}"
    );
    assert_eq!(sample(&m, "dbagent_leader"), Some(1.0), "{m}");
    let (ok, complaints) = promtool_check(&m);
    assert!(ok, "promtool: {complaints}");
    let text = agent.run(&["jobs", "list", "--job", "expire"]);
    assert!(
        text.stdout.starts_with("ID") && text.stdout.contains("succeeded"),
        "{}",
        text.stdout
    );
    let bad = agent.run(&["jobs", "list", "--job", "vacuum"]);
    assert_eq!(bad.code, 2, "{}", bad.all());

    // Down for a few ticks with on_missed: skip: one skipped row says what was missed.
    drop(sidecar);
    std::thread::sleep(Duration::from_secs(5));
    let sidecar = Sidecar::start(&agent);
    let j = wait_jobs(
        &agent,
        "the missed runs recorded as skipped",
        Duration::from_secs(30),
        |j| count(j, "skipped", "missed") == 1,
    );
    let skipped = j.iter().find(|r| r["trigger"] == "missed").unwrap();
    assert!(
        skipped["detail"]
            .as_str()
            .unwrap()
            .contains("missed while the agent was down"),
        "{skipped}"
    );
    drop(sidecar);

    // Down again, now with on_missed: run_once: exactly one run at start-up for them.
    with_schedule(
        &agent,
        &pg,
        "  on_missed: run_once\n  expire: \"*/2 * * * * *\"\n",
    );
    std::thread::sleep(Duration::from_secs(5));
    let sidecar = Sidecar::start(&agent);
    wait_jobs(
        &agent,
        "one run for the missed times",
        Duration::from_secs(30),
        |j| count(j, "succeeded", "missed") == 1,
    );
    // And the schedule goes on after it.
    let before = count(&jobs(&agent), "succeeded", "schedule");
    wait_jobs(
        &agent,
        "the schedule to go on",
        Duration::from_secs(30),
        |j| count(j, "succeeded", "schedule") > before,
    );
    assert_eq!(count(&jobs(&agent), "succeeded", "missed"), 1);
    drop(sidecar);
}

pg_test!(
    schedule_agent_killed_during_backup_next_tick_cleans_up_and_succeeds,
    |v| {
        // archive_command fails, so the scheduled backup waits for its WAL with every file
        // written: the worst moment to die.
        let (agent, pg) = stalled_archiving_cluster(v, "10m");
        with_schedule(&agent, &pg, "  backup: \"*/2 * * * * *\"\n");
        let sidecar = Sidecar::start(&agent);
        sidecar.wait_metrics("a scheduled backup running", Duration::from_secs(60), |m| {
            sample(m, "dbagent_job_running{job=\"backup\"}") == Some(1.0)
        });
        // Ticks pass while it runs: still one run, never a second one beside it.
        std::thread::sleep(Duration::from_secs(5));
        let j = jobs(&agent);
        assert_eq!(count(&j, "running", "schedule"), 1, "{j:#?}");
        assert_eq!(j.len(), 1, "{j:#?}");
        let job_pid = j[0]["pid"].as_i64().expect("the job's pid") as i32;
        let partial = |agent: &Agent| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(agent.repo().join("backups"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default()
        };
        let interrupted = partial(&agent);
        assert_eq!(interrupted.len(), 1, "the running backup's work directory");

        // kill -9 the agent: the job gets SIGTERM from the kernel and ends too.
        sidecar.signal(nix::sys::signal::Signal::SIGKILL);
        drop(sidecar);
        let deadline = Instant::now() + Duration::from_secs(30);
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(job_pid), None).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the job {job_pid} outlived the agent"
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        // Archiving fixed; the agent comes back.
        pg.psql(&format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            agent.archive_command().replace('\'', "''")
        ));
        pg.reload();
        let sidecar = Sidecar::start(&agent);
        let j = wait_jobs(
            &agent,
            "a scheduled backup to succeed",
            Duration::from_secs(120),
            |j| {
                j.iter()
                    .any(|r| r["job"] == "backup" && r["status"] == "succeeded")
            },
        );
        let failed: Vec<_> = j.iter().filter(|r| r["status"] == "failed").collect();
        assert_eq!(failed.len(), 1, "{j:#?}");
        assert!(
            failed[0]["detail"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{j:#?}"
        );
        let m = sidecar.wait_metrics("the success in the metrics", Duration::from_secs(30), |m| {
            sample(m, "dbagent_job_last_result{job=\"backup\"}") == Some(1.0)
        });
        assert_eq!(
            sample(
                &m,
                "dbagent_job_runs_total{job=\"backup\",result=\"failed\"}"
            ),
            Some(1.0),
            "{m}"
        );
        // Later ticks go on backing up; only the interrupted run's directory is asserted.
        assert!(
            !interrupted[0].exists(),
            "the interrupted backup's leftovers were removed: {}",
            interrupted[0].display()
        );
        drop(sidecar);
        let list = agent.run(&["backups", "list", "--json"]);
        assert!(
            !list.json().as_array().unwrap().is_empty(),
            "{}",
            list.all()
        );
    }
);
