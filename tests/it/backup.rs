//! `dbagent backup` against real clusters on PostgreSQL 15 and 18: backups with tablespaces
//! that restore to the same rows, interrupted backups that leave nothing behind, the
//! repository lock, and refusals (safety invariants 3 and 6).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use dbagent::backup::manifest;
use dbagent::repo::Repo;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::Agent;
use crate::support::restore::extract_for_recovery;

/// An agent whose repository the cluster's archive_command feeds, and the cluster.
pub fn archived_cluster(v: PgVersion) -> (Agent, Cluster) {
    let agent = Agent::new("host=127.0.0.1");
    agent.share_with_postgres();
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(agent.archive_command()),
            ..ClusterOptions::default()
        },
    );
    configure(&agent, &pg, "60s");
    (agent, pg)
}

pub fn configure(agent: &Agent, pg: &Cluster, wal_timeout: &str) {
    agent.set_yaml(&format!(
        "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\nrepository:\n  path: REPO\nstate_dir: STATE\nbackup:\n  wal_timeout: {wal_timeout}\n",
        pg.conninfo(),
        pg.version().bin_dir().display()
    ));
    agent.share_with_postgres();
}

pub fn take_backup(agent: &Agent) -> serde_json::Value {
    let run = agent.run(&["backup", "--json"]);
    assert_eq!(run.code, 0, "backup failed: {}", run.all());
    run.json()
}

pub fn wait_until_promoted(pg: &Cluster) {
    for _ in 0..300 {
        if pg.try_psql("SELECT pg_is_in_recovery()").as_deref() == Ok("f") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the restored cluster did not finish recovery; log: {}",
        pg.log_path().display()
    );
}

/// A cluster whose archive_command fails, so a backup waits for its WAL with every file
/// written: the moment an interruption is most dangerous.
pub fn stalled_archiving_cluster(v: PgVersion, wal_timeout: &str) -> (Agent, Cluster) {
    let agent = Agent::new("host=127.0.0.1");
    agent.share_with_postgres();
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("/bin/false".into()),
            ..ClusterOptions::default()
        },
    );
    configure(&agent, &pg, wal_timeout);
    (agent, pg)
}

/// Starts `dbagent backup` and returns once it reports that it is waiting for WAL.
fn backup_waiting_for_wal(agent: &Agent) -> std::process::Child {
    let mut child = agent
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dbagent backup");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut waiting = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.contains("waiting for WAL") {
            waiting = true;
            break;
        }
    }
    assert!(waiting, "the backup never reached the WAL wait");
    child
}

pg_test!(backup_with_a_tablespace_restores_the_same_rows, |v| {
    let (agent, pg) = archived_cluster(v);
    let ts_dir = pg.root_dir().join("ts1");
    std::fs::create_dir(&ts_dir).unwrap();
    crate::support::dbagent::chown_to_postgres(&ts_dir);
    pg.psql(&format!(
        "CREATE TABLESPACE ts1 LOCATION '{}'",
        ts_dir.display()
    ));
    pg.psql("CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g AS i, md5(g::text) AS t FROM generate_series(1, 20000) g");
    pg.psql("CREATE TABLE in_base AS SELECT g AS i FROM generate_series(1, 5000) g");
    let expected = pg.psql("SELECT (SELECT count(*) || ':' || sum(i) || ':' || md5(string_agg(t, '' ORDER BY i)) FROM in_ts) || '/' || (SELECT sum(i) FROM in_base)");

    let summary = take_backup(&agent);
    let id = summary["id"].as_str().unwrap().to_string();
    assert_eq!(summary["compression"], "zstd");
    // compress_on: auto lets the server compress when its build has zstd.
    let expected_by = if server_has(&pg, "zstd") {
        "server"
    } else {
        "dbagent"
    };
    assert_eq!(summary["compressed_by"], expected_by, "{summary}");
    assert!(summary["size_bytes"].as_u64().unwrap() > summary["stored_bytes"].as_u64().unwrap());
    let m = manifest::read_manifest(&Repo::at(agent.repo()), &id)
        .unwrap()
        .expect("manifest.json");
    let ts_oid = pg.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");
    assert!(
        m.files
            .iter()
            .any(|f| f.name == format!("{ts_oid}.tar.zst")),
        "{:?}",
        m.files
    );
    assert!(m.files.iter().any(|f| f.name == "backup_manifest"));
    assert_eq!(m.pg_major, v.major());
    // Rows written after the backup must not appear when restoring to its end.
    pg.psql("INSERT INTO in_base VALUES (-1)");

    let restore_command = agent.restore_command();
    let repo = agent.repo();
    let restored = Cluster::start_prepared(
        v,
        ClusterOptions {
            pg_stat_statements: false,
            ..ClusterOptions::default()
        },
        |root| extract_for_recovery(&repo, &id, root, &restore_command),
    );
    wait_until_promoted(&restored);
    assert_eq!(restored.psql("SELECT (SELECT count(*) || ':' || sum(i) || ':' || md5(string_agg(t, '' ORDER BY i)) FROM in_ts) || '/' || (SELECT sum(i) FROM in_base)"), expected);
    let location = restored
        .psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'");
    assert!(
        location.starts_with(&restored.root_dir().display().to_string()),
        "{location}"
    );
});

pg_test!(
    killed_backup_leaves_no_backup_and_the_lock_stops_a_second_one,
    |v| {
        let (agent, mut pg) = stalled_archiving_cluster(v, "120s");
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i");

        let mut first = backup_waiting_for_wal(&agent);

        // While the server waits for WAL archiving, dbagent may wake the backup's walsender with
        // SIGHUP: that process, and no other server process, is recognised as one.
        let walsender: i32 = pg
            .psql("SELECT pid FROM pg_stat_progress_basebackup")
            .parse()
            .expect("the backup's walsender pid");
        assert!(dbagent::backup::take::is_walsender(walsender));
        let checkpointer: i32 = pg
            .psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
            .parse()
            .expect("the checkpointer's pid");
        assert!(!dbagent::backup::take::is_walsender(checkpointer));
        let postmaster = pg.postmaster_pid().expect("postmaster pid") as i32;
        assert!(!dbagent::backup::take::is_walsender(postmaster));

        // Safety invariant 6: a colliding backup fails at once and names the holder.
        let second = agent.run(&["backup"]);
        assert_eq!(second.code, 1, "{}", second.all());
        assert!(
            second.stderr.contains("locked by backup (pid"),
            "{}",
            second.stderr
        );

        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();
        let repo = Repo::at(agent.repo());
        assert!(
            manifest::list(&repo).unwrap().is_empty(),
            "a killed backup must not exist"
        );
        let list = agent.run(&["backups", "list", "--json"]);
        assert_eq!(list.code, 0, "{}", list.all());
        assert_eq!(list.json(), serde_json::json!([]));

        // Archiving fixed: the next backup succeeds and the interrupted one's work is gone.
        pg.set_conf("archive_command", &agent.archive_command());
        pg.reload();
        let summary = take_backup(&agent);
        let backups = manifest::list(&repo).unwrap();
        assert_eq!(backups.len(), 1);
        assert_eq!(backups[0].id, summary["id"].as_str().unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(agent.repo().join("backups"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_str().unwrap().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = &mut pg;
    }
);

pg_test!(backup_is_refused_without_archiving, |v| {
    let agent = Agent::new("host=127.0.0.1");
    let pg = Cluster::start(v, ClusterOptions::default());
    configure(&agent, &pg, "10s");
    let run = agent.run(&["backup"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("archive_mode is off"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(manifest::list(&Repo::at(agent.repo())).unwrap().is_empty());
});

/// Whether the server's build can compress with `algo` (what `backup.compress_on: auto` uses).
fn server_has(pg: &Cluster, algo: &str) -> bool {
    pg.psql("SELECT enumvals::text FROM pg_settings WHERE name = 'wal_compression'")
        .contains(algo)
}

#[test]
fn every_compression_produces_a_readable_tar() {
    let (agent, pg) = archived_cluster(PgVersion::V15);
    let yaml = std::fs::read_to_string(agent.config_path()).unwrap();
    // Each algorithm as the server compresses it (auto: zstd and lz4 on Debian's build) and as
    // dbagent does.
    for (c, compress_on) in [
        ("lz4", "auto"),
        ("gzip", "auto"),
        ("none", "auto"),
        ("zstd", "auto"),
        ("zstd", "dbagent"),
        ("lz4", "dbagent"),
    ] {
        agent.set_yaml(&format!("{yaml}  compress_on: {compress_on}\n"));
        let run = agent.run(&[
            "backup",
            "--compress",
            c,
            "--json",
            "--label",
            &format!("with {c}"),
        ]);
        assert_eq!(run.code, 0, "{c}: {}", run.all());
        let id = run.json()["id"].as_str().unwrap().to_string();
        let m = manifest::read_manifest(&Repo::at(agent.repo()), &id)
            .unwrap()
            .unwrap();
        assert_eq!(m.label.as_deref(), Some(format!("with {c}").as_str()));
        let by = if compress_on == "auto" && ["zstd", "lz4"].contains(&c) && server_has(&pg, c) {
            "server"
        } else {
            "dbagent"
        };
        assert_eq!(m.compressed_by, by, "{c} with compress_on {compress_on}");
        let base = m
            .files
            .iter()
            .find(|f| f.name.starts_with("base.tar"))
            .unwrap();
        assert_eq!(base.name, format!("base.tar{}", m.compression.suffix()));
        let input =
            std::fs::File::open(agent.repo().join("backups").join(&id).join(&base.name)).unwrap();
        let mut archive =
            tar::Archive::new(dbagent::repo::compress::decoder(m.compression, input).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "PG_VERSION"), "{c}: {names:?}");
        assert!(names.iter().any(|n| n == "backup_label"), "{c}: {names:?}");
    }
}

pg_test!(
    backup_whose_wal_never_reaches_the_archive_times_out_and_leaves_nothing,
    |v| {
        let (agent, _pg) = stalled_archiving_cluster(v, "3s");
        let run = agent.run(&["backup", "--no-progress"]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("did not reach the archive within 3s"),
            "{}",
            run.stderr
        );
        assert!(manifest::list(&Repo::at(agent.repo())).unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(agent.repo().join("backups"))
            .unwrap()
            .flatten()
            .collect();
        assert!(
            left.is_empty(),
            "the work directory must be removed: {left:?}"
        );
    }
);

pg_test!(backups_verify_passes_then_names_a_flipped_byte, |v| {
    let (agent, pg) = archived_cluster(v);
    let ts_dir = pg.root_dir().join("ts_verify");
    std::fs::create_dir(&ts_dir).unwrap();
    crate::support::dbagent::chown_to_postgres(&ts_dir);
    pg.psql(&format!(
        "CREATE TABLESPACE tsv LOCATION '{}'",
        ts_dir.display()
    ));
    pg.psql("CREATE TABLE v TABLESPACE tsv AS SELECT g FROM generate_series(1, 10000) g");
    let id = take_backup(&agent)["id"].as_str().unwrap().to_string();

    let run = agent.run(&["backups", "verify", &id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json()["ok"], true);

    let ts_oid = pg.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'tsv'");
    let damaged = agent
        .repo()
        .join("backups")
        .join(&id)
        .join(format!("{ts_oid}.tar.zst"));
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let run = agent.run(&["backups", "verify", &id]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("{ts_oid}.tar.zst")),
        "the damaged file must be named: {}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("base.tar.zst:"),
        "only the damaged file is reported: {}",
        run.stdout
    );
});

pg_test!(
    expire_keeps_two_newest_and_exactly_their_wal_and_the_oldest_kept_restores,
    |v| {
        let (agent, pg) = archived_cluster(v);
        pg.psql("CREATE TABLE grows (batch int, i int)");
        let mut ids = Vec::new();
        let mut rows_at = Vec::new();
        for batch in 1..=4 {
            pg.psql(&format!("INSERT INTO grows SELECT {batch}, g FROM generate_series(1, 1000) g; SELECT pg_switch_wal()"));
            rows_at.push(pg.psql("SELECT count(*) FROM grows"));
            ids.push(take_backup(&agent)["id"].as_str().unwrap().to_string());
        }
        let repo = Repo::at(agent.repo());
        let before: Vec<String> = dbagent::wal::list_segments(&repo)
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();

        let dry = agent.run(&["backups", "expire", "--dry-run", "--json"]);
        assert_eq!(dry.code, 0, "{}", dry.all());
        assert_eq!(
            manifest::list(&repo).unwrap().len(),
            4,
            "--dry-run removes nothing"
        );

        let run = agent.run(&["backups", "expire", "--json"]);
        assert_eq!(run.code, 0, "{}", run.all());
        let j = run.json();
        assert_eq!(j["removed"], serde_json::json!([ids[0], ids[1]]), "{j}");
        assert_eq!(
            j,
            dry.json()
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("dry_run".into(), serde_json::json!(false));
                    serde_json::Value::Object(o)
                })
                .unwrap(),
            "expire does what --dry-run said"
        );
        let kept: Vec<String> = manifest::list(&repo)
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(kept, vec![ids[2].clone(), ids[3].clone()]);

        // Exactly the WAL the kept backups need: everything from the oldest kept start on.
        let oldest_kept = manifest::list(&repo).unwrap().remove(0);
        let after: Vec<String> = dbagent::wal::list_segments(&repo)
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        let expected: Vec<String> = before
            .iter()
            .filter(|n| n[..24] >= oldest_kept.wal_start[..])
            .cloned()
            .collect();
        assert_eq!(after, expected);
        assert!(before.len() > after.len(), "older WAL must go");

        // The oldest kept backup still restores to a consistent cluster with its rows.
        let restore_command = agent.restore_command();
        let repo_path = agent.repo();
        let id = ids[2].clone();
        let restored = Cluster::start_prepared(
            v,
            ClusterOptions {
                pg_stat_statements: false,
                ..ClusterOptions::default()
            },
            |root| extract_for_recovery(&repo_path, &id, root, &restore_command),
        );
        wait_until_promoted(&restored);
        assert_eq!(restored.psql("SELECT count(*) FROM grows"), rows_at[2]);
    }
);

fn check_status(agent: &Agent, name: &str) -> (String, String) {
    let run = agent.run(&["check", "--json"]);
    let j = run.json();
    let c = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {j}"))
        .clone();
    (
        c["status"].as_str().unwrap().to_string(),
        c["message"].as_str().unwrap().to_string(),
    )
}

pg_test!(check_reports_binding_backup_age_and_archive_gaps, |v| {
    let (agent, pg) = archived_cluster(v);
    pg.psql("CREATE TABLE t AS SELECT 1 AS i; SELECT pg_switch_wal()");
    // Archived WAL but no backup yet: a warning that says what to do.
    for _ in 0..100 {
        if agent.repo().join("repo.json").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, msg) = check_status(&agent, "last_backup");
    assert_eq!(status, "warning", "{msg}");
    take_backup(&agent);
    for _ in 0..3 {
        pg.psql("INSERT INTO t SELECT 1; SELECT pg_switch_wal()");
    }
    std::thread::sleep(Duration::from_secs(2));
    let run = agent.run(&["check"]);
    for name in ["repository_binding", "last_backup", "archive_continuity"] {
        assert!(run.check_line(name).starts_with("OK"), "{}", run.stdout);
    }

    // A segment lost from the middle of the archive: named, CRITICAL.
    let repo = Repo::at(agent.repo());
    let m = manifest::list(&repo).unwrap().remove(0);
    let segments = dbagent::wal::list_segments(&repo).unwrap();
    let after: Vec<_> = segments
        .iter()
        .filter(|w| w.kind == dbagent::wal::WalFileKind::Segment && w.name[..] > m.wal_stop[..])
        .collect();
    assert!(after.len() >= 2, "{segments:?}");
    let victim = &after[0].name;
    let path = repo.locate(&dbagent::wal::find(&repo, after[0]).unwrap().unwrap().0.key);
    std::fs::remove_file(&path).unwrap();
    let (status, msg) = check_status(&agent, "archive_continuity");
    let listing: Vec<String> = dbagent::wal::list_segments(&repo)
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(
        status,
        "critical",
        "{msg}; removed {}; archive now {listing:?}",
        path.display()
    );
    assert!(msg.contains(victim.as_str()), "{msg}");

    // Another cluster's repository: CRITICAL.
    let other = Cluster::start(v, ClusterOptions::default());
    let mut text = std::fs::read_to_string(agent.config_path()).unwrap();
    text = text.replace(&pg.conninfo(), &other.conninfo());
    std::fs::write(agent.config_path(), text).unwrap();
    let (status, msg) = check_status(&agent, "repository_binding");
    assert_eq!(status, "critical", "{msg}");
    assert!(msg.contains("belongs to cluster"), "{msg}");
});

pg_test!(
    ctrl_c_during_a_backup_leaves_no_backup_and_stops_pg_basebackup,
    |v| {
        let (agent, mut pg) = stalled_archiving_cluster(v, "120s");
        let mut child = backup_waiting_for_wal(&agent);
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        // pg_basebackup died with dbagent (parent-death signal). The server's walsender only
        // notices once it stops waiting for WAL archiving, so look for the process itself.
        let repo_path = agent.repo().display().to_string();
        let pg_basebackup_alive = || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c).replace('\0', " ");
                        c.contains("pg_basebackup") && c.contains(&repo_path)
                    })
                    .unwrap_or(false)
            })
        };
        let mut gone = false;
        for _ in 0..100 {
            if !pg_basebackup_alive() {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(gone, "pg_basebackup outlived dbagent");
        assert!(manifest::list(&Repo::at(agent.repo())).unwrap().is_empty());
        pg.set_conf("archive_command", &agent.archive_command());
        pg.reload();
        take_backup(&agent);
        assert_eq!(manifest::list(&Repo::at(agent.repo())).unwrap().len(), 1);
    }
);

pg_test!(backup_onto_a_full_disk_fails_and_leaves_nothing, |v| {
    let agent = Agent::new("host=127.0.0.1");
    let repo = agent.repo();
    let _mount = crate::wal::Tmpfs::mount(&repo, "2m");
    agent.share_with_postgres();
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(agent.archive_command()),
            ..ClusterOptions::default()
        },
    );
    configure(&agent, &pg, "30s");
    let run = agent.run(&["backup", "--compress", "none", "--no-progress"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("dbagent: error"))
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(manifest::list(&Repo::at(&repo)).unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(repo.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the work directory must be removed: {left:?}"
    );
});

pg_test!(compress_on_server_is_refused_when_the_server_cannot, |v| {
    let (agent, _pg) = archived_cluster(v);
    let yaml = std::fs::read_to_string(agent.config_path()).unwrap();
    agent.set_yaml(&format!("{yaml}  compress_on: server\n"));
    // dbagent lets the server compress with zstd or lz4 only; gzip is always refused.
    let run = agent.run(&["backup", "--compress", "gzip", "--no-progress"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("backup.compress_on is server") && run.stderr.contains("gzip"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(manifest::list(&Repo::at(agent.repo())).unwrap().is_empty());
});

/// A server that offers zstd but fails to use it as asked (a libzstd without worker threads
/// answers "could not set compression worker count"): under compress_on: auto the backup is
/// taken again, compressed by dbagent. The failure comes from a pg_basebackup wrapper.
#[test]
fn auto_falls_back_to_dbagent_compression_when_the_server_fails_to_compress() {
    let (agent, pg) = archived_cluster(PgVersion::V15);
    let wrapper_dir = agent.dir().join("bin");
    std::fs::create_dir_all(&wrapper_dir).unwrap();
    let real = pg.version().bin_dir().join("pg_basebackup");
    let wrapper = wrapper_dir.join("pg_basebackup");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --compress=server-*) echo 'pg_basebackup: error: could not initiate base backup: ERROR:  could not set compression worker count to 2: Unsupported parameter' >&2; exit 1;; esac; done\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let yaml = std::fs::read_to_string(agent.config_path())
        .unwrap()
        .replace(
            &format!("bin_dir: {}", pg.version().bin_dir().display()),
            &format!("bin_dir: {}", wrapper_dir.display()),
        );
    agent.set_yaml(&yaml);
    let run = agent.run(&["backup", "--json", "--no-progress"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.json()["compressed_by"], "dbagent", "{}", run.all());
    assert!(
        run.stderr.contains("compressing in dbagent instead"),
        "{}",
        run.stderr
    );
    let id = run.json()["id"].as_str().unwrap().to_string();
    let verify = agent.run(&["backups", "verify", &id]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}
