//! `dbagent restore --delta` on PostgreSQL 15 and 18: a stopped cluster whose rows changed
//! after a backup (and whose files appeared and disappeared: a table created, one dropped) is
//! restored in place to a point after the backup by rewriting only the files that differ, and
//! reaches exactly that point's rows; another cluster's directory, a running server's, an
//! empty one and `--force` with `--delta` are refused without changing anything.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::backup::{archived_cluster, take_backup};
use crate::pg_test;
use crate::restore_cmd::{Scratch, restore_started, switch_and_wait};
use crate::support::cluster::{Cluster, ClusterOptions};

/// Every file and directory under `dir` with its size and modification time, for "nothing
/// changed" assertions.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, i64, i64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64, i64, i64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            out.push((
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
            ));
            if m.is_dir() {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const CONTENT: &str = "SELECT count(*) || '/' || md5(coalesce(string_agg(i::text || ':' || v, ',' ORDER BY i), '')) FROM t";

pg_test!(
    delta_restore_rewrites_only_what_changed_and_reaches_the_target,
    |v| {
        let (agent, mut pg) = archived_cluster(v);
        // dbagent compresses (PostgreSQL 15's server could): its archives are seekable.
        agent.set_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\nrepository:\n  path: REPO\nstate_dir: STATE\nbackup:\n  wal_timeout: 60s\n  compress_on: dbagent\n",
            pg.conninfo(),
            pg.version().bin_dir().display()
        ));
        agent.share_with_postgres();
        pg.psql("CREATE TABLE t (i int PRIMARY KEY, v text)");
        pg.psql("INSERT INTO t SELECT g, 'before' FROM generate_series(1, 20000) g");
        pg.psql("CREATE TABLE dropped_later (i int)");
        pg.psql("INSERT INTO dropped_later SELECT generate_series(1, 1000)");
        take_backup(&agent);

        // The target: some rows changed after the backup.
        pg.psql("UPDATE t SET v = 'at target' WHERE i % 100 = 0");
        pg.psql("INSERT INTO t SELECT g, 'added' FROM generate_series(20001, 20500) g");
        let expected = pg.psql(CONTENT);
        let lsn = pg.psql("SELECT pg_current_wal_insert_lsn()::text");
        // After the target: more changes, a table dropped and one created (files disappear and
        // appear), none of which the restore may keep.
        pg.psql("UPDATE t SET v = 'too late' WHERE i % 7 = 0");
        pg.psql("DROP TABLE dropped_later");
        pg.psql("CREATE TABLE created_later AS SELECT generate_series(1, 5000) AS i");
        switch_and_wait(|s| pg.psql(s));
        let data = pg.data_dir().to_path_buf();
        let to = data.to_str().unwrap().to_string();
        let target = format!("lsn:{lsn}");

        // A running server's directory is refused.
        let running = agent.run_copy(&[
            "restore",
            "--delta",
            "--to",
            &to,
            "--target",
            &target,
            "--dry-run",
        ]);
        assert_eq!(running.code, 1, "{}", running.all());
        assert!(
            running.stderr.contains("running PostgreSQL server"),
            "{}",
            running.stderr
        );
        pg.stop();

        // --delta with --force, and --delta into an empty directory, are refused.
        let both = agent.run_copy(&["restore", "--delta", "--force", "--to", &to, "--dry-run"]);
        assert_eq!(both.code, 1, "{}", both.all());
        assert!(
            both.stderr.contains("--delta and --force"),
            "{}",
            both.stderr
        );
        let scratch = Scratch::new();
        let empty = scratch.path("empty");
        let none = agent.run_copy(&[
            "restore",
            "--delta",
            "--to",
            empty.to_str().unwrap(),
            "--dry-run",
        ]);
        assert_eq!(none.code, 1, "{}", none.all());
        assert!(
            none.stderr.contains("restore without --delta"),
            "{}",
            none.stderr
        );
        assert!(!empty.exists());

        // Another cluster's data directory is refused, naming both system identifiers, and
        // nothing in it changes.
        let mut other = Cluster::start(v, ClusterOptions::default());
        other.stop();
        let before = tree(other.data_dir());
        let foreign = agent.run_copy(&[
            "restore",
            "--delta",
            "--to",
            other.data_dir().to_str().unwrap(),
            "--target",
            &target,
        ]);
        assert_eq!(foreign.code, 1, "{}", foreign.all());
        let theirs = {
            let b = std::fs::read(other.data_dir().join("global/pg_control")).unwrap();
            u64::from_ne_bytes(b[..8].try_into().unwrap())
        };
        let ours = pg_control_sysid(&data);
        assert!(
            foreign.stderr.contains("belongs to another cluster")
                && foreign.stderr.contains(&theirs.to_string())
                && foreign.stderr.contains(&ours.to_string()),
            "{}",
            foreign.stderr
        );
        assert_eq!(before, tree(other.data_dir()), "the refusal changed files");

        // The plan: what it will rewrite, remove and keep; a dry run writes nothing.
        let before = tree(&data);
        let dry = agent.run_copy(&[
            "restore",
            "--delta",
            "--to",
            &to,
            "--target",
            &target,
            "--dry-run",
            "--json",
        ]);
        assert_eq!(dry.code, 0, "{}", dry.all());
        let delta = dry.json()["plan"]["delta"].clone();
        let rewritten = delta["files_rewritten"].as_u64().unwrap();
        let unchanged = delta["files_unchanged"].as_u64().unwrap();
        let removed = delta["files_removed"].as_u64().unwrap();
        assert!(rewritten > 0 && removed > 0, "{delta}");
        assert!(
            rewritten * 4 < rewritten + unchanged,
            "a delta restore should rewrite far fewer than all files: {delta}"
        );
        assert!(
            delta["bytes_rewritten"].as_u64().unwrap() < delta["bytes_unchanged"].as_u64().unwrap(),
            "{delta}"
        );
        assert_eq!(delta["checksum_algorithm"], "CRC32C", "{delta}");
        // The archive is seekable: most of its chunk frames hold data the directory has (files
        // that did not change, and unchanged chunks of those that did) and are not
        // decompressed. (Files smaller than a chunk, most of this small cluster, always are.)
        let chunks = delta["chunk_frames"].as_u64().unwrap();
        let skipped = delta["chunk_frames_skipped"].as_u64().unwrap();
        let total =
            delta["bytes_rewritten"].as_u64().unwrap() + delta["bytes_unchanged"].as_u64().unwrap();
        let decompress = delta["bytes_to_decompress"].as_u64().unwrap();
        assert!(chunks > 0 && skipped * 2 > chunks, "{delta}");
        assert!(decompress < total, "{delta}");
        let text = agent.run_copy(&[
            "restore",
            "--delta",
            "--to",
            &to,
            "--target",
            &target,
            "--dry-run",
        ]);
        assert_eq!(text.code, 0, "{}", text.all());
        assert!(
            text.stdout
                .contains(&format!("--delta:     rewrite {rewritten} files")),
            "{}",
            text.stdout
        );
        assert_eq!(before, tree(&data), "a dry run changed files");

        let id = dry.json()["plan"]["backup"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let backup_dir = agent.repo().join("backups").join(&id);
        let manifest_path = backup_dir.join("manifest.json");
        let good = std::fs::read(&manifest_path).unwrap();

        // The stored archive is still one zstd stream for other readers.
        let archive = backup_dir.join("base.tar.zst");
        if let Ok(out) = std::process::Command::new("zstd")
            .arg("-dc")
            .arg(&archive)
            .output()
        {
            assert!(out.status.success(), "zstd -d {}", archive.display());
            let m: serde_json::Value = serde_json::from_slice(&good).unwrap();
            let base = m["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "base.tar.zst")
                .unwrap();
            assert_eq!(out.stdout.len() as u64, base["size"].as_u64().unwrap());
            assert_eq!(base["index"]["name"], "base.tar.zst.idx", "{base}");
        }

        // A damaged frame index is named, and the restore falls back to decompressing the
        // archive whole.
        let idx = backup_dir.join("base.tar.zst.idx");
        let idx_good = std::fs::read(&idx).unwrap();
        let mut bad = idx_good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&idx, &bad).unwrap();
        let fallback = agent.run_copy(&[
            "restore",
            "--delta",
            "--to",
            &to,
            "--target",
            &target,
            "--dry-run",
            "--json",
        ]);
        assert_eq!(fallback.code, 0, "{}", fallback.all());
        let plan = &fallback.json()["plan"];
        assert!(
            plan["notes"]
                .to_string()
                .contains("frame index base.tar.zst.idx")
                && plan["notes"].to_string().contains("damaged"),
            "{plan}"
        );
        assert_eq!(plan["delta"]["chunk_frames"], 0, "{plan}");
        let verify = agent.run_copy(&["backups", "verify", &id]);
        assert_ne!(verify.code, 0, "{}", verify.all());
        assert!(
            verify.all().contains("base.tar.zst.idx"),
            "{}",
            verify.all()
        );
        std::fs::write(&idx, &idx_good).unwrap();

        // A stored archive that fails its checksum stops the restore, which says the directory is
        // partly rewritten; without pg_control it cannot be started by mistake.
        let mut m: serde_json::Value = serde_json::from_slice(&good).unwrap();
        for f in m["files"].as_array_mut().unwrap() {
            if f["name"].as_str().unwrap().starts_with("base.tar") {
                f["sha256"] = "0".repeat(64).into();
            }
        }
        std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
        let damaged = agent.run_copy(&["restore", "--delta", "--to", &to, "--target", &target]);
        assert_eq!(damaged.code, 1, "{}", damaged.all());
        assert!(
            damaged.stderr.contains("damaged") && damaged.stderr.contains("partly rewritten"),
            "{}",
            damaged.stderr
        );
        assert!(!data.join("global/pg_control").exists());
        std::fs::write(&manifest_path, &good).unwrap();

        // Again from the good backup: it finishes what the failed run left, started and followed
        // to the target.
        let (restored, json) = restore_started(&agent, v, &data, &target, &["--delta"]);
        let again = &json["plan"]["delta"];
        assert!(
            again["files_rewritten"].as_u64().unwrap() <= rewritten,
            "the files the failed run wrote are kept: {again}"
        );
        assert_eq!(restored.query(CONTENT), expected, "{json}");
        assert_eq!(
            restored.query("SELECT count(*) FROM pg_class WHERE relname = 'dropped_later'"),
            "1"
        );
        assert_eq!(restored.query("SELECT count(*) FROM dropped_later"), "1000");
        assert_eq!(
            restored.query("SELECT count(*) FROM pg_class WHERE relname = 'created_later'"),
            "0"
        );
        assert!(
            restored
                .query("SELECT count(*) FROM t WHERE v = 'too late'")
                .eq("0")
        );
        drop(restored);

        // A backup in the format before frame indexes (no index in manifest.json, none stored)
        // still delta-restores, decompressing its archives whole.
        let mut m: serde_json::Value = serde_json::from_slice(&good).unwrap();
        for f in m["files"].as_array_mut().unwrap() {
            if let Some(name) = f.as_object_mut().unwrap().remove("index") {
                std::fs::remove_file(backup_dir.join(name["name"].as_str().unwrap())).unwrap();
            }
        }
        std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
        let (restored, json) = restore_started(&agent, v, &data, &target, &["--delta"]);
        let old = &json["plan"]["delta"];
        assert_eq!(old["chunk_frames"], 0, "{old}");
        assert_eq!(
            old["bytes_to_decompress"].as_u64().unwrap(),
            m["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["name"] != "backup_manifest")
                .map(|f| f["size"].as_u64().unwrap())
                .sum::<u64>(),
            "{old}"
        );
        assert_eq!(restored.query(CONTENT), expected, "{json}");
        drop(restored);
        drop(other);
    }
);

fn pg_control_sysid(data: &Path) -> u64 {
    let b = std::fs::read(data.join("global/pg_control")).unwrap();
    u64::from_ne_bytes(b[..8].try_into().unwrap())
}
