//! Incremental chains on PostgreSQL 18: a full backup and three incrementals with pgbench
//! writing between them; a point-in-time restore to a restore point after each backup
//! combines that backup's chain (the full streamed into the target, the incrementals applied
//! in place) and matches the source's rows exactly; a damaged incremental is named by
//! `backups verify` and refused by restore with nothing left behind; expire with
//! `retention.full: 1` after a second full removes the old chain whole. And the combined
//! directory is, file for file, what PostgreSQL's own `pg_combinebackup` makes of the same
//! members, through tables that shrink, grow, are emptied and dropped between backups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::restore_cmd::{Scratch, restore_started, switch_and_wait};
use crate::support::cluster::{Cluster, PgVersion};
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
    let (agent, pg) = crate::backup_incremental::summarizing_cluster();
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

/// Extracts backup `id` of the repository at `repo` into `dir` as pg_basebackup would have left
/// it in plain format (its tar archives unpacked, its backup_manifest beside them).
fn extract_plain(repo: &Path, id: &str, dir: &Path) {
    use dbagent::repo::{Compression, compress};
    let bdir = repo.join("backups").join(id);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bdir.join("manifest.json")).unwrap()).unwrap();
    let compression: Compression = serde_json::from_value(manifest["compression"].clone()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        if name == "backup_manifest" {
            std::fs::copy(bdir.join(name), dir.join(name)).unwrap();
            continue;
        }
        let input = std::io::BufReader::new(std::fs::File::open(bdir.join(name)).unwrap());
        let mut archive = tar::Archive::new(compress::decoder(compression, input).unwrap());
        archive.set_preserve_permissions(true);
        archive.unpack(dir).unwrap();
    }
}

/// Every regular file and directory under `dir`, relative (directories end with `/`).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                out.push(format!("{}/", r.display()));
                walk(root, &r, out);
            } else {
                out.push(r.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out);
    out.sort();
    out
}

/// A backup_manifest's files (path → size, algorithm, checksum), system identifier and WAL
/// ranges: everything but the modification times and the order.
fn manifest_facts(path: &Path) -> (BTreeMap<String, (u64, Value, Value)>, Value, Value) {
    let m: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let files = m["Files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["Path"].as_str().unwrap().to_string(),
                (
                    f["Size"].as_u64().unwrap(),
                    f["Checksum-Algorithm"].clone(),
                    f["Checksum"].clone(),
                ),
            )
        })
        .collect();
    (
        files,
        m["System-Identifier"].clone(),
        m["WAL-Ranges"].clone(),
    )
}

/// The combined `ours` (a `dbagent restore` target) holds exactly what pg_combinebackup wrote
/// into `theirs`: the same files and directories, each file the same bytes, the same manifest
/// entries; besides, only what restore adds (recovery settings appended to
/// postgresql.auto.conf, recovery.signal, the restore marker).
fn assert_same_combination(ours: &Path, theirs: &Path) {
    let added = ["recovery.signal", "dbagent_restore.json"];
    let our_tree: Vec<String> = tree(ours)
        .into_iter()
        .filter(|p| !added.contains(&p.as_str()))
        .collect();
    assert_eq!(
        our_tree,
        tree(theirs),
        "the combined directories differ in what they hold"
    );
    let mut compared = 0;
    for rel in &our_tree {
        if rel.ends_with('/') || rel == "backup_manifest" {
            continue;
        }
        let a = std::fs::read(ours.join(rel)).unwrap();
        let b = std::fs::read(theirs.join(rel)).unwrap();
        if rel == "postgresql.auto.conf" {
            assert!(
                a.starts_with(&b),
                "{rel}: restore's settings are not appended to the combined file"
            );
            continue;
        }
        assert!(
            a == b,
            "{rel} differs from pg_combinebackup's ({} vs {} bytes)",
            a.len(),
            b.len()
        );
        compared += 1;
    }
    assert!(compared > 100, "only {compared} files compared");
    // A plain restore lists the files it rebuilt by size only (no read-back for a checksum;
    // `drill` asks for them); every checksum it does write is pg_combinebackup's.
    let (our_files, our_sysid, our_wal) = manifest_facts(&ours.join("backup_manifest"));
    let (their_files, their_sysid, their_wal) = manifest_facts(&theirs.join("backup_manifest"));
    assert_eq!((our_sysid, our_wal), (their_sysid, their_wal));
    assert_eq!(
        our_files.keys().collect::<Vec<_>>(),
        their_files.keys().collect::<Vec<_>>(),
        "the backup_manifests list different files"
    );
    let mut by_size_only = 0;
    for (path, (size, algorithm, checksum)) in &our_files {
        let (their_size, their_algorithm, their_checksum) = &their_files[path];
        assert_eq!(size, their_size, "{path}: sizes differ in the manifests");
        if checksum.is_null() {
            by_size_only += 1;
            continue;
        }
        assert_eq!(
            (algorithm, checksum),
            (their_algorithm, their_checksum),
            "{path}: checksums differ in the manifests"
        );
    }
    assert!(
        by_size_only < our_files.len() / 2,
        "{by_size_only} of {} files without a checksum",
        our_files.len()
    );
}

/// Blocks of a relation file.
fn blocks(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len() / 8192
}

#[test]
fn combined_chain_is_what_pg_combinebackup_makes_file_for_file() {
    use dbagent::restore::chain::incremental_file::IncrementalFile;
    let (agent, pg) = crate::backup_incremental::summarizing_cluster();
    // shrink: loses its tail to VACUUM's truncation; grows: gets longer; emptied: TRUNCATEd
    // (a new file); gone: dropped; steady: a few rows updated (an INCREMENTAL file with
    // scattered blocks).
    pg.psql(
        "CREATE TABLE shrink (id int, pad text) WITH (autovacuum_enabled = off); \
         INSERT INTO shrink SELECT i, repeat('s', 400) FROM generate_series(1, 30000) i; \
         CREATE TABLE grows (id int, pad text) WITH (autovacuum_enabled = off); \
         INSERT INTO grows SELECT i, repeat('g', 400) FROM generate_series(1, 20000) i; \
         CREATE TABLE emptied (id int, pad text); \
         INSERT INTO emptied SELECT i, repeat('e', 400) FROM generate_series(1, 5000) i; \
         CREATE TABLE gone (id int, pad text); \
         INSERT INTO gone SELECT i, repeat('x', 400) FROM generate_series(1, 5000) i; \
         CREATE TABLE steady (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = off); \
         INSERT INTO steady SELECT i, 0 FROM generate_series(1, 200000) i; \
         VACUUM; CHECKPOINT",
    );
    let path_of = |t: &str| pg.psql(&format!("SELECT pg_relation_filepath('{t}')"));
    let (shrink, grows, gone, emptied_before) = (
        path_of("shrink"),
        path_of("grows"),
        path_of("gone"),
        path_of("emptied"),
    );
    let full = backup(&agent, "full")["id"].as_str().unwrap().to_string();
    pg.psql(
        "UPDATE steady SET v = 1 WHERE id % 5000 = 0; \
         DELETE FROM shrink WHERE id > 24000; VACUUM shrink; \
         INSERT INTO grows SELECT i, repeat('h', 400) FROM generate_series(20001, 23000) i; \
         TRUNCATE emptied; INSERT INTO emptied VALUES (1, 'one'); \
         DROP TABLE gone; CHECKPOINT",
    );
    let i1 = backup(&agent, "incremental")["id"]
        .as_str()
        .unwrap()
        .to_string();
    pg.psql(
        "UPDATE steady SET v = 2 WHERE id % 7000 = 0; \
         DELETE FROM shrink WHERE id > 20000; VACUUM shrink; \
         INSERT INTO grows SELECT i, repeat('i', 400) FROM generate_series(23001, 25000) i; \
         CHECKPOINT",
    );
    let i2 = backup(&agent, "incremental")["id"]
        .as_str()
        .unwrap()
        .to_string();
    switch_and_wait(|s| pg.psql(s));

    let scratch = Scratch::new();
    let members: Vec<PathBuf> = [&full, &i1, &i2]
        .iter()
        .map(|id| {
            let d = scratch.path(&format!("plain-{id}"));
            extract_plain(&agent.repo(), id, &d);
            d
        })
        .collect();
    // The chain exercises what it should: shrink truncated (an INCREMENTAL file whose
    // truncation length is below the full's length), gone and emptied's old file absent.
    let inc = |m: &Path, rel: &str| {
        let (dir, name) = rel.rsplit_once('/').unwrap();
        IncrementalFile::open(&m.join(dir).join(format!("INCREMENTAL.{name}"))).unwrap()
    };
    let full_shrink = blocks(&members[0].join(&shrink));
    let t1 = inc(&members[1], &shrink).truncation_block_length;
    let t2 = inc(&members[2], &shrink).truncation_block_length;
    assert!(
        u64::from(t1) < full_shrink && t2 < t1,
        "shrink: {full_shrink} → {t1} → {t2}"
    );
    assert!(!members[2].join(&gone).exists());
    assert!(!members[2].join(&emptied_before).exists());

    // The plan's figures: staging holds the incrementals only, the target the full plus what
    // the incrementals can add.
    let run = agent.run_copy(&[
        "restore",
        "--to",
        scratch.path("dry").to_str().unwrap(),
        "--backup",
        &i2,
        "--target",
        "immediate",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let chain = &run.json()["plan"]["chain"];
    let size = |i: usize| chain["members"][i]["size_bytes"].as_u64().unwrap();
    assert_eq!(
        chain["staging_bytes"].as_u64(),
        Some(size(1) + size(2)),
        "{chain}"
    );
    assert_eq!(
        chain["output_bytes"].as_u64(),
        Some(size(0) + size(1) + size(2)),
        "{chain}"
    );
    assert!(size(1) + size(2) < size(0) / 2, "{chain}");

    for (n, id) in [(2usize, &i1), (3, &i2)] {
        let ours = scratch.path(&format!("ours-{n}"));
        let run = agent.run_copy(&[
            "restore",
            "--to",
            ours.to_str().unwrap(),
            "--backup",
            id,
            "--target",
            "immediate",
            "--no-archive",
        ]);
        assert_eq!(run.code, 0, "{}", run.all());
        let theirs = scratch.path(&format!("theirs-{n}"));
        let out = std::process::Command::new(PgVersion::V18.bin("pg_combinebackup"))
            .arg("--no-sync")
            .arg("-o")
            .arg(&theirs)
            .args(&members[..n])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_combinebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_combination(&ours, &theirs);
        assert!(!ours.join(&gone).exists());
        assert!(blocks(&ours.join(&grows)) > blocks(&members[0].join(&grows)));
    }
    let ours = scratch.path("ours-3");
    assert!(
        blocks(&ours.join(&shrink)) < full_shrink,
        "shrink was not truncated in the combined directory"
    );
}
