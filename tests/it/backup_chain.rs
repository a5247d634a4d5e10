//! Incremental chains on PostgreSQL 18 (its `pg_combinebackup`): a full backup and three
//! incrementals with pgbench writing between them; a point-in-time restore to a restore point
//! after each backup combines that backup's chain in a staging area and matches the source's
//! rows exactly; a damaged incremental is named by `backups verify` and refused by restore
//! with nothing left behind; expire with `retention.full: 1` after a second full removes the
//! old chain whole.

use std::path::Path;

use serde_json::Value;

use crate::backup::configure;
use crate::restore_cmd::{Scratch, restore_started, switch_and_wait};
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::moments::{pgbench, pgbench_init};

/// Every row of pgbench's tables, hashed in a stable order.
const ROWS_MD5: &str = "SELECT (SELECT md5(string_agg(a::text, ',' ORDER BY aid)) FROM pgbench_accounts a) \
    || '/' || (SELECT md5(string_agg(t::text, ',' ORDER BY tid)) FROM pgbench_tellers t) \
    || '/' || (SELECT md5(string_agg(b::text, ',' ORDER BY bid)) FROM pgbench_branches b) \
    || '/' || (SELECT md5(coalesce(string_agg(h::text, ',' ORDER BY h::text), '')) FROM pgbench_history h)";

fn backup(agent: &Agent, kind: &str) -> Value {
    let run = agent.run(&["backup", "--type", kind, "--json", "--no-progress"]);
    assert_eq!(run.code, 0, "backup --type {kind} failed: {}", run.all());
    run.json()
}

fn load(pg: &Cluster) {
    let out = pgbench(pg, &["-n", "-c", "2", "-t", "150"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn incremental_chain_restores_verifies_and_expires_as_a_whole() {
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
    pgbench_init(&pg);

    // full, then three incrementals; after each backup more load and a restore point whose
    // rows are recorded.
    let mut ids = Vec::new();
    let mut moments = Vec::new();
    for i in 0..4 {
        let b = backup(&agent, if i == 0 { "full" } else { "incremental" });
        if i > 0 {
            assert_eq!(b["parent"], ids[i - 1], "{b}");
        }
        ids.push(b["id"].as_str().unwrap().to_string());
        load(&pg);
        let rows = pg.psql(ROWS_MD5);
        let name = format!("after-{i}");
        let run = agent.run(&["restore-point", &name]);
        assert_eq!(run.code, 0, "{}", run.all());
        moments.push((name, rows));
    }
    switch_and_wait(|s| pg.psql(s));

    // The catalogue shows the chain.
    let list = agent.run(&["backups", "list", "--json"]).json();
    assert_eq!(list[3]["chain"], serde_json::json!(ids), "{list}");

    let scratch = Scratch::new();
    // The dry run states the chain and its staging area, and proves WAL from the chain's last
    // backup on.
    let dir = scratch.path("dry");
    let run = agent.run_copy(&[
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--target",
        "name:after-3",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let plan = &run.json()["plan"];
    let chain: Vec<&str> = plan["chain"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ids, "{plan}");
    assert_eq!(
        plan["chain"]["staging"],
        scratch.path("dry.staging").display().to_string()
    );
    assert!(plan["chain"]["staging_bytes"].as_u64().unwrap() > 0);
    assert_eq!(plan["chain"]["link"], true, "{plan}");
    assert_eq!(plan["backup"]["id"], ids[3]);
    assert_eq!(plan["wal"]["first"], list[3]["wal_start"], "{plan}");
    let text = agent.run_copy(&[
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--target",
        "name:after-3",
        "--dry-run",
    ]);
    assert!(text.stdout.contains("chain:"), "{}", text.stdout);
    assert!(text.stdout.contains("staging:"), "{}", text.stdout);
    assert!(!dir.exists() && !scratch.path("dry.staging").exists());

    // A point-in-time restore after each backup: that backup's chain, every row as it was.
    // One of them stages where --staging says.
    let custom = scratch.path("custom-staging");
    for (i, (name, rows)) in moments.iter().enumerate() {
        let dir = scratch.path(&format!("r{i}"));
        let mut extra = vec!["--no-archive"];
        if i == 2 {
            extra.extend(["--staging", custom.to_str().unwrap()]);
        }
        let (restored, json) = restore_started(
            &agent,
            PgVersion::V18,
            &dir,
            &format!("name:{name}"),
            &extra,
        );
        if i == 2 {
            assert_eq!(
                json["plan"]["chain"]["staging"],
                custom.display().to_string()
            );
            assert!(!custom.exists(), "--staging left behind");
        }
        assert_eq!(json["plan"]["backup"]["id"], ids[i], "{}", json["plan"]);
        assert_eq!(
            json["plan"]["chain"]["members"]
                .as_array()
                .map_or(1, |m| m.len()),
            i + 1,
            "{}",
            json["plan"]
        );
        assert_eq!(&restored.query(ROWS_MD5), rows, "restore to {name}");
        assert!(
            !scratch.path(&format!("r{i}.staging")).exists(),
            "staging left behind"
        );
        drop(restored);
    }

    // drill restores the newest backup, an incremental, through its chain.
    let run = agent.run_copy(&["drill", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let json = run.json();
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["backup_id"], ids[3].as_str());
    assert_eq!(json["verify"], "pg_verifybackup passed", "{json}");

    // A damaged incremental: verify names it, restore refuses and leaves nothing.
    let damaged = &ids[2];
    let bdir = agent.repo().join("backups").join(damaged);
    let base = entries(&bdir)
        .into_iter()
        .find(|n| n.starts_with("base.tar") && !n.ends_with(".idx"))
        .unwrap();
    let base = bdir.join(base);
    let original = std::fs::read(&base).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    bytes[at + 1] ^= 0xff;
    std::fs::write(&base, &bytes).unwrap();
    let run = agent.run(&["backups", "verify", &ids[3]]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("FAILED {damaged}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("OK {}", ids[1])),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains(damaged), "{}", run.stderr);
    let dir = scratch.path("damaged");
    let run = agent.run_copy(&[
        "restore",
        "--to",
        dir.to_str().unwrap(),
        "--target",
        "name:after-3",
        "--no-archive",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("of backup {damaged} is damaged")),
        "{}",
        run.stderr
    );
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    assert!(!scratch.path("damaged.staging").exists());
    std::fs::write(&base, &original).unwrap();

    // A second full, then retention.full 1: the old chain goes whole.
    let second = backup(&agent, "full");
    agent.set_yaml(&format!("{}retention:\n  full: 1\n", agent.yaml()));
    let run = agent.run(&["backups", "expire", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let r = run.json();
    assert_eq!(r["removed"], serde_json::json!(ids), "{r}");
    let kept: Vec<&str> = r["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [second["id"].as_str().unwrap()]);
}
