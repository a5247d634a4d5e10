//! `dbagent backup --type incremental` against real clusters: on PostgreSQL 18 an incremental
//! is taken against the newest backup (full, then incremental), records its type and parent,
//! and stores only a fraction of the full; the refusals name what to do: no backup yet,
//! `summarize_wal` off, and PostgreSQL 15 (before 17). `--or-full` and the scheduled
//! incrementals (`schedule.backup_incremental`) take a full instead and say why.

use dbagent::backup::manifest::{self, BackupType};
use dbagent::repo::Repo;

use crate::backup::configure;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::sidecar::Sidecar;

/// An archived PostgreSQL 18 cluster with WAL summarization on, and its agent.
pub fn summarizing_cluster() -> (Agent, Cluster) {
    let agent = Agent::new("host=127.0.0.1");
    agent.share_with_postgres();
    let pg = Cluster::start(
        PgVersion::V18,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(agent.archive_command()),
            extra_conf: vec![("summarize_wal".into(), "on".into())],
            ..ClusterOptions::default()
        },
    );
    configure(&agent, &pg, "60s");
    (agent, pg)
}

fn backup(agent: &Agent, kind: &str) -> serde_json::Value {
    let run = agent.run(&["backup", "--type", kind, "--json", "--no-progress"]);
    assert_eq!(run.code, 0, "backup --type {kind} failed: {}", run.all());
    run.json()
}

#[test]
fn incremental_backups_on_18_are_taken_against_the_newest_backup_and_store_only_the_change() {
    let (agent, mut pg) = summarizing_cluster();

    // Nothing to be incremental against yet.
    let run = agent.run(&["backup", "--type", "incremental", "--no-progress"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(
            "no backup to be incremental against; take a full backup first (--type full)"
        ),
        "{}",
        run.all()
    );

    // Scheduled incrementals: the first finds no backup and takes a full, saying why; the
    // next is incremental against it.
    let yaml = agent.yaml();
    agent.set_yaml(&format!(
        "{yaml}schedule:\n  on_missed: skip\n  backup_incremental: \"*/2 * * * * *\"\n"
    ));
    let sidecar = Sidecar::start(&agent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let runs = loop {
        let run = agent.run(&["jobs", "list", "--json", "--job", "backup_incremental"]);
        assert_eq!(run.code, 0, "{}", run.all());
        let rows = run.json().as_array().cloned().unwrap_or_default();
        let ok: Vec<String> = rows
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .filter_map(|r| r["detail"].as_str().map(str::to_string))
            .collect();
        if ok.len() >= 2 {
            break ok;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for two scheduled incrementals: {rows:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    drop(sidecar);
    agent.set_yaml(&yaml);
    let repo = Repo::at(agent.repo());
    let taken = manifest::list(&repo).expect("list backups");
    let first = &taken[0];
    assert_eq!(first.backup_type, BackupType::Full);
    assert!(
        runs.contains(&format!(
            "backup {} (full instead of incremental: no backup to be incremental against; take a full backup first (--type full))",
            first.id
        )),
        "{runs:#?}"
    );
    let second = &taken[1];
    assert_eq!(second.backup_type, BackupType::Incremental);
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert!(
        runs.contains(&format!(
            "backup {} (incremental against {})",
            second.id, first.id
        )),
        "{runs:#?}"
    );

    // About 40 MB that does not compress away, so the full backup has weight.
    pg.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS pad \
         FROM generate_series(1, 300000) g",
    );
    // Set hint bits now: a first scan after the full backup would otherwise log every page.
    pg.psql("VACUUM (FREEZE) big");
    let full = backup(&agent, "full");
    assert_eq!(full["type"], "full");
    assert!(full["parent"].is_null(), "{full}");

    // A small change: a few hundred rows in a few pages, and a new small table.
    pg.psql("UPDATE big SET pad = 'changed' WHERE id <= 500");
    pg.psql("CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 1000) g");
    let incr = backup(&agent, "incremental");
    assert_eq!(incr["type"], "incremental");
    assert_eq!(incr["parent"], full["id"], "{incr}");
    let (full_stored, incr_stored) = (
        full["stored_bytes"].as_u64().expect("stored_bytes"),
        incr["stored_bytes"].as_u64().expect("stored_bytes"),
    );
    assert!(
        incr_stored * 5 < full_stored,
        "the incremental stores {incr_stored} bytes, the full {full_stored}"
    );

    // The catalogue: manifest.json says incremental and names the parent; PostgreSQL's own
    // manifest lists the INCREMENTAL.* files pg_basebackup --incremental sent.
    let id = incr["id"].as_str().expect("id");
    let m = manifest::read_manifest(&repo, id)
        .expect("read manifest")
        .expect("manifest.json");
    assert_eq!(m.backup_type, BackupType::Incremental);
    assert_eq!(m.parent.as_deref(), full["id"].as_str());
    let pg_manifest = std::fs::read_to_string(
        agent
            .repo()
            .join("backups")
            .join(id)
            .join("backup_manifest"),
    )
    .expect("stored backup_manifest");
    assert!(
        pg_manifest.contains("INCREMENTAL."),
        "no incremental files in the backup_manifest"
    );
    // Nothing but the backup's own files was published (the parent's manifest was scratch).
    let mut names: Vec<String> = std::fs::read_dir(agent.repo().join("backups").join(id))
        .expect("list backup")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = m
        .files
        .iter()
        .flat_map(|f| std::iter::once(f.name.clone()).chain(f.index.iter().map(|i| i.name.clone())))
        .collect();
    expected.push("manifest.json".into());
    expected.sort();
    assert_eq!(names, expected);

    // The next incremental is taken against the newest backup: the first incremental.
    pg.psql("UPDATE small SET id = id + 1 WHERE id <= 10");
    let second = backup(&agent, "incremental");
    assert_eq!(second["parent"], incr["id"], "{second}");

    // check: ready for the next incremental, against the newest backup.
    let line = agent.run(&["check"]).check_line("wal_summaries");
    assert!(
        line.starts_with("OK")
            && line.contains(&format!(
                "reach back to backup {}",
                second["id"].as_str().expect("id")
            )),
        "{line}"
    );

    // summarize_wal off: refused, naming the setting and how to turn it on.
    pg.set_conf("summarize_wal", "off");
    pg.reload();
    wait_for_setting(&pg, "summarize_wal", "off");
    let run = agent.run(&["backup", "--type", "incremental", "--no-progress"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("summarize_wal is off")
            && run
                .stderr
                .contains("ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf();"),
        "{}",
        run.all()
    );
    // check: OK naming the setting, WARNING once incrementals are scheduled.
    let line = agent.run(&["check"]).check_line("wal_summaries");
    assert!(
        line.starts_with("OK") && line.contains("summarize_wal is off"),
        "{line}"
    );
    let yaml = agent.yaml();
    agent.set_yaml(&format!(
        "{yaml}schedule:\n  backup_incremental: \"0 1 * * *\"\n"
    ));
    let line = agent.run(&["check"]).check_line("wal_summaries");
    assert!(
        line.starts_with("WARNING")
            && line.contains("schedule.backup_incremental")
            && line.contains("ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf();"),
        "{line}"
    );
    agent.set_yaml(&yaml);
    // A full backup still works.
    assert_eq!(backup(&agent, "full")["type"], "full");
}

fn wait_for_setting(pg: &Cluster, name: &str, value: &str) {
    for _ in 0..100 {
        if pg.psql(&format!("SHOW {name}")) == value {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{name} did not become {value}");
}

#[test]
fn an_incremental_backup_on_15_is_refused_saying_it_needs_17_and_or_full_takes_a_full() {
    let (agent, _pg) = crate::backup::archived_cluster(PgVersion::V15);
    let run = agent.run(&["backup", "--type", "incremental", "--no-progress"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("an incremental backup needs PostgreSQL 17+")
            && run.stderr.contains("this server runs PostgreSQL 15.")
            && run
                .stderr
                .contains("take a full backup instead (--type full)"),
        "{}",
        run.all()
    );
    // Nothing was started: no backup, no work directory.
    let backups = agent.repo().join("backups");
    let left = std::fs::read_dir(&backups).map_or(0, |d| d.count());
    assert_eq!(
        left,
        0,
        "the refused backup left something in {}",
        backups.display()
    );

    let line = agent.run(&["check"]).check_line("wal_summaries");
    assert!(
        line.starts_with("OK") && line.contains("incremental backups need PostgreSQL 17+"),
        "{line}"
    );

    // --or-full takes a full backup instead, and says why.
    let run = agent.run(&[
        "backup",
        "--type",
        "incremental",
        "--or-full",
        "--json",
        "--no-progress",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = run.json();
    assert_eq!(out["type"], "full");
    assert!(
        out["fallback"].as_str().is_some_and(|f| f.starts_with(
            "full instead of incremental: an incremental backup needs PostgreSQL 17+"
        )),
        "{out}"
    );
    assert!(
        run.stderr.contains("Taking a full backup instead"),
        "{}",
        run.all()
    );
}

#[test]
fn an_incremental_is_refused_when_the_summaries_do_not_reach_back_to_the_parent() {
    // The full backup is taken while summarize_wal is off: no summary covers its start, so
    // nothing can be incremental against it (the server would refuse too, after a checkpoint).
    let (agent, mut pg) = summarizing_cluster();
    pg.set_conf("summarize_wal", "off");
    pg.reload();
    wait_for_setting(&pg, "summarize_wal", "off");
    let full = backup(&agent, "full");
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    pg.psql("CHECKPOINT");
    pg.set_conf("summarize_wal", "on");
    pg.reload();
    wait_for_setting(&pg, "summarize_wal", "on");
    let run = agent.run(&["backup", "--type", "incremental", "--no-progress"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let id = full["id"].as_str().expect("id");
    assert!(
        run.stderr.contains(&format!(
            "the WAL summaries no longer reach back to backup {id}"
        )) && run.stderr.contains("wal_summary_keep_time")
            && run.stderr.contains("take a full backup (--type full)"),
        "{}",
        run.all()
    );
    let line = agent.run(&["check"]).check_line("wal_summaries");
    assert!(
        line.starts_with("WARNING")
            && line.contains(&format!("no longer reach back to backup {id}")),
        "{line}"
    );
    // The work directory of the refused backup is gone.
    let partial = std::fs::read_dir(agent.repo().join("backups"))
        .expect("list backups")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
        .count();
    assert_eq!(partial, 0);
}
