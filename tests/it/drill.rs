//! `dbagent drill` against real clusters on PostgreSQL 15 and 18: a healthy repository drills
//! clean (RTO recorded, `check` reports last_drill OK, no scratch copy left behind); a
//! corrupted newest backup fails the drill with one line naming the problem and turns
//! `check` CRITICAL. Also `restore --guided` without a terminal.

use std::path::Path;

use crate::backup::{archived_cluster, take_backup};
use crate::pg_test;
use crate::restore_cmd::switch_and_wait;
use crate::support::cluster::{Cluster, PgVersion};
use crate::support::dbagent::Agent;

/// An archived cluster with one backup and archived writes after it; the agent's config has
/// a scratch state_dir.
fn drilled_cluster(v: PgVersion) -> (Agent, Cluster, String) {
    let (agent, pg) = archived_cluster(v);
    agent.set_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\nrepository:\n  path: REPO\nstate_dir: STATE\nbackup:\n  wal_timeout: 60s\n",
        pg.conninfo(),
        pg.version().bin_dir().display()
    ));
    agent.share_with_postgres();
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
    let backup = take_backup(&agent);
    pg.psql("INSERT INTO t SELECT generate_series(1, 5000)");
    switch_and_wait(|s| pg.psql(s));
    let id = backup["id"].as_str().unwrap().to_string();
    (agent, pg, id)
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

pg_test!(
    drill_on_a_healthy_repository_passes_and_records_its_rto,
    |v| {
        let (agent, _pg, id) = drilled_cluster(v);
        let before = agent.run(&["check"]);
        assert!(
            before.check_line("last_drill").starts_with("WARNING"),
            "{}",
            before.stdout
        );

        let run = agent.run_copy(&["drill", "--json"]);
        assert_eq!(run.code, 0, "{}", run.all());
        let json = run.json();
        assert_eq!(json["ok"], true, "{json}");
        assert_eq!(json["backup_id"], id.as_str());
        assert!(json["rto_seconds"].as_f64().unwrap() > 0.0, "{json}");
        assert!(json["replayed_to_lsn"].as_str().is_some(), "{json}");
        assert_eq!(json["verify"], "pg_verifybackup passed", "{json}");
        // It replayed the primary's own history (timeline 1, asked of the server).
        assert_eq!(json["primary_timeline"], 1, "{json}");
        assert_eq!(json["replayed_timeline"], 1, "{json}");
        assert!(
            json["primary_history"]
                .as_str()
                .unwrap()
                .contains("from the server"),
            "{json}"
        );
        assert!(
            run.stderr
                .contains("on the primary's timeline history 1 (from the server)"),
            "{}",
            run.stderr
        );
        assert!(json["relations"].as_i64().unwrap() > 100, "{json}");
        assert!(
            run.stderr.contains("drill: "),
            "progress on stderr: {}",
            run.stderr
        );
        let scratch = Path::new(json["scratch"].as_str().unwrap());
        assert!(
            !scratch.exists(),
            "scratch copy left behind: {}",
            scratch.display()
        );
        assert_eq!(entries(&agent.dir().join("state").join("drill")), 0);

        let check = agent.run(&["check", "--json"]);
        let report = check.json();
        let last = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "last_drill")
            .unwrap_or_else(|| panic!("no last_drill in {report}"))
            .clone();
        assert_eq!(last["status"], "ok", "{last}");
        assert!(last["message"].as_str().unwrap().contains("RTO"), "{last}");
    }
);

pg_test!(
    drill_of_a_corrupted_backup_fails_and_check_goes_critical,
    |v| {
        let (agent, _pg, id) = drilled_cluster(v);
        let dir = agent.repo().join("backups").join(&id);
        let base = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                // The archive, not its frame index.
                name.starts_with("base.tar") && !name.ends_with(".idx")
            })
            .expect("base.tar.* in the backup");
        let mut bytes = std::fs::read(&base).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(&base, &bytes).unwrap();

        let run = agent.run_copy(&["drill"]);
        assert_eq!(run.code, 1, "{}", run.all());
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("dbagent: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        let name = base.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            errors[0].contains("drill failed") && errors[0].contains(&name),
            "{}",
            run.stderr
        );
        assert_eq!(entries(&agent.dir().join("state").join("drill")), 0);

        let check = agent.run(&["check"]);
        assert_eq!(check.code, 2, "{}", check.all());
        let line = check.check_line("last_drill");
        assert!(
            line.starts_with("CRITICAL") && line.contains("failed"),
            "{line}"
        );
    }
);

pg_test!(
    expire_fails_naming_a_running_drill_and_the_drill_passes,
    |v| {
        use std::io::{BufRead, BufReader};
        let (agent, _pg, id) = drilled_cluster(v);
        let mut drill = agent
            .command_copy(&["drill", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start dbagent drill");
        let stderr = drill.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all.join("\n")
        });
        // Once the plan is proven the drill holds the backup in use.
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(120)) {
            let proven = line.contains("plan proven");
            seen.push(line);
            if proven {
                break;
            }
        }
        assert!(
            seen.iter().any(|l| l.contains("plan proven")),
            "the drill never proved its plan: {seen:#?}"
        );
        let expire = agent.run(&["backups", "expire"]);
        assert_ne!(expire.code, 0, "{}", expire.all());
        assert!(
            expire.stderr.contains("locked by drill (pid"),
            "{}",
            expire.stderr
        );
        let out = drill.wait_with_output().expect("wait for the drill");
        let log = reader.join().expect("stderr reader");
        assert!(out.status.success(), "{log}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("drill JSON");
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["backup_id"], id.as_str());
        // With the drill done, expire runs.
        let expire = agent.run(&["backups", "expire"]);
        assert_eq!(expire.code, 0, "{}", expire.all());
    }
);

#[test]
fn restore_guided_without_a_terminal_refuses_and_prints_the_command() {
    let agent = Agent::new("host=127.0.0.1");
    let run = agent.run(&[
        "restore",
        "--guided",
        "--target",
        "lsn:0/3000028",
        "--backup",
        "20261121T100000Z",
        "--start",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    let expected = format!(
        "dbagent --config {} restore --to DIR --target lsn:0/3000028 --backup 20261121T100000Z --start",
        agent.config_path().display()
    );
    assert!(
        run.stderr.contains(&expected),
        "{}\nexpected: {expected}",
        run.stderr
    );
}
