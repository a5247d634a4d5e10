//! The S3 repository (issue 15) against a real S3-compatible server, moto, started by the kit
//! on 127.0.0.1 (support/s3.rs), with a fault-injecting proxy in front where a test needs
//! faults (support/s3proxy.rs), on PostgreSQL 15 and 18: the whole backup / wal-push /
//! wal-get / restore / drill / verify / expire cycle, point-in-time restore by every target
//! kind, outages during a backup and during wal-push, injected 500/503 and slow responses,
//! wrong credentials, a missing bucket, damaged objects, and two agents sharing one bucket.
//!
//! The `kit` tests check the server and the proxy themselves, without dbagent.

mod kit {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use crate::support::s3::{S3Server, auth_headers, object_path, request};
    use crate::support::s3proxy::{Match, behind_proxy};

    #[test]
    fn moto_stores_lists_overwrites_and_deletes_objects() {
        let mut s3 = S3Server::start();
        s3.create_bucket("kit-bucket");
        s3.put("kit-bucket", "p/a/one", b"first");
        s3.put("kit-bucket", "p/b/two", b"second");
        s3.put("kit-bucket", "q/three", b"third");
        assert_eq!(s3.keys("kit-bucket", "p/"), vec!["p/a/one", "p/b/two"]);
        assert_eq!(
            s3.get("kit-bucket", "p/a/one").as_deref(),
            Some(&b"first"[..])
        );
        s3.put("kit-bucket", "p/a/one", b"damaged");
        assert_eq!(
            s3.get("kit-bucket", "p/a/one").as_deref(),
            Some(&b"damaged"[..])
        );
        s3.delete("kit-bucket", "p/a/one");
        assert_eq!(s3.get("kit-bucket", "p/a/one"), None);
        assert_eq!(s3.keys("kit-bucket", ""), vec!["p/b/two", "q/three"]);

        // A restarted moto is empty, on the same port.
        let port = s3.port();
        s3.stop();
        assert!(TcpStream::connect(s3.addr()).is_err());
        s3.start_again();
        assert_eq!(s3.port(), port);
        let r = s3.request("GET", "/kit-bucket?list-type=2", b"");
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.text().contains("NoSuchBucket"), "{}", r.text());
    }

    #[test]
    fn moto_lists_multipart_uploads_in_progress() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-multi");
        assert_eq!(s3.multipart_uploads("kit-multi"), Vec::<String>::new());
        let r = s3.request("POST", "/kit-multi/backups/x/base.tar.zst?uploads", b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            s3.multipart_uploads("kit-multi"),
            vec!["backups/x/base.tar.zst"]
        );
    }

    #[test]
    fn moto_conditional_put_refuses_to_overwrite() {
        let s3 = S3Server::start();
        s3.create_bucket("kit-cond");
        let mut h = auth_headers();
        h.push(("If-None-Match".into(), "*".into()));
        let path = object_path("kit-cond", "k");
        let first = request(s3.addr(), "PUT", &path, &h, b"one").unwrap();
        assert_eq!(first.status, 200, "{}", first.text());
        let second = request(s3.addr(), "PUT", &path, &h, b"two").unwrap();
        assert_eq!(second.status, 412, "{}", second.text());
        assert_eq!(s3.get("kit-cond", "k").as_deref(), Some(&b"one"[..]));
    }

    #[test]
    fn moto_with_auth_refuses_unknown_keys() {
        let (s3, creds) = S3Server::start_with_auth(&["kit-auth"]);
        assert!(creds.access_key_id.starts_with("AKIA"), "{creds:?}");
        // The kit's unsigned helpers use a key moto does not know.
        let r = request(
            s3.addr(),
            "GET",
            "/kit-auth?list-type=2",
            &auth_headers(),
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("InvalidAccessKeyId"), "{}", r.text());
    }

    #[test]
    fn proxy_passes_through_and_counts_by_method() {
        let (_s3, proxy) = behind_proxy("kit-proxy");
        let h = auth_headers();
        let put = request(proxy.addr(), "PUT", "/kit-proxy/x", &h, b"hello").unwrap();
        assert_eq!(put.status, 200, "{}", put.text());
        let get = request(proxy.addr(), "GET", "/kit-proxy/x", &h, b"").unwrap();
        assert_eq!(get.status, 200);
        assert_eq!(get.body, b"hello");
        assert_eq!(get.header("Connection"), Some("close"));
        let head = request(proxy.addr(), "HEAD", "/kit-proxy/x", &h, b"").unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(proxy.count("PUT"), 1);
        assert_eq!(proxy.count("GET"), 1);
        assert_eq!(proxy.count("HEAD"), 1);
        assert_eq!(proxy.injected(), 0);
        let seen = proxy.seen();
        assert_eq!(seen[1].target, "/kit-proxy/x");
        assert_eq!(seen[1].status, 200);
    }

    #[test]
    fn proxy_forwards_chunked_bodies_and_answers_expect_continue() {
        let (s3, proxy) = behind_proxy("kit-chunked");
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = String::from("PUT /kit-chunked/c HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in auth_headers() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        );
        c.write_all(head.as_bytes()).unwrap();
        let mut interim = [0u8; 25];
        c.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert_eq!(
            s3.get("kit-chunked", "c").as_deref(),
            Some(&b"hello world"[..])
        );
    }

    #[test]
    fn proxy_injects_errors_on_matching_requests_then_passes_through() {
        let (s3, proxy) = behind_proxy("kit-faults");
        let h = auth_headers();
        proxy.fail_next_matching(2, 503, Match::method_path("PUT", "/wal/"));
        proxy.fail_next(1, 500);
        // The first request (a GET) takes the any-request rule.
        let get = request(proxy.addr(), "GET", "/kit-faults?list-type=2", &h, b"").unwrap();
        assert_eq!(get.status, 500);
        assert!(
            get.text().contains("<Code>InternalError</Code>"),
            "{}",
            get.text()
        );
        let other = request(proxy.addr(), "PUT", "/kit-faults/base/x", &h, b"1").unwrap();
        assert_eq!(other.status, 200, "not matching: passed through");
        for _ in 0..2 {
            let r = request(
                proxy.addr(),
                "PUT",
                "/kit-faults/wal/s",
                &h,
                &[7u8; 100_000],
            )
            .unwrap();
            assert_eq!(r.status, 503);
            assert!(r.text().contains("<Code>SlowDown</Code>"), "{}", r.text());
        }
        assert_eq!(
            s3.get("kit-faults", "wal/s"),
            None,
            "an injected error stores nothing"
        );
        let r = request(proxy.addr(), "PUT", "/kit-faults/wal/s", &h, b"ok").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(proxy.injected(), 3);
        assert_eq!(proxy.pending_failures(), 0);
        assert_eq!(proxy.count("PUT"), 4);
        // A HEAD error has no body but a proper head.
        proxy.fail_next(1, 503);
        let head = request(proxy.addr(), "HEAD", "/kit-faults/wal/s", &h, b"").unwrap();
        assert_eq!(head.status, 503);
    }

    #[test]
    fn proxy_delays_responses_and_hangs() {
        let (_s3, proxy) = behind_proxy("kit-slow");
        let h = auth_headers();
        proxy.delay_next(1, Duration::from_millis(800), Match::method("GET"));
        let t = Instant::now();
        let r = request(proxy.addr(), "GET", "/kit-slow?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "{:?}",
            t.elapsed()
        );
        let t = Instant::now();
        request(proxy.addr(), "GET", "/kit-slow?list-type=2", &h, b"").unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "only the next one"
        );

        proxy.hang(true);
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c.write_all(b"GET /kit-slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 16];
        let err = c.read(&mut buf).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        proxy.hang(false);
        let r = request(proxy.addr(), "GET", "/kit-slow?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 200);
    }

    #[test]
    fn proxy_outage_refuses_connections_cuts_those_in_flight_then_recovers() {
        let (s3, proxy) = behind_proxy("kit-outage");
        let h = auth_headers();
        // A request in flight (its answer delayed) is cut by the outage.
        proxy.delay(Duration::from_secs(10), Match::any());
        let addr = proxy.addr();
        let hh = h.clone();
        let in_flight =
            std::thread::spawn(move || request(addr, "GET", "/kit-outage?list-type=2", &hh, b""));
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        proxy.outage(true);
        let cut = in_flight.join().unwrap();
        assert!(cut.is_err(), "{cut:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let refused = TcpStream::connect(proxy.addr()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        proxy.clear();
        proxy.outage(false);
        let r = request(proxy.addr(), "GET", "/kit-outage?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 200);

        // The server behind stopped: the proxy says 502.
        drop(s3);
        let r = request(proxy.addr(), "GET", "/kit-outage?list-type=2", &h, b"").unwrap();
        assert_eq!(r.status, 502);
    }
}

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backup::take_backup;
use crate::pg_test;
use crate::restore_cmd::{Scratch, restore_started, switch_and_wait};
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::dbagent::{Agent, Run};
use crate::support::moments::{CHECKSUM, capture, load, pgbench_init};
use crate::support::s3::{Credentials, S3Server, free_port, repository_yaml};
use crate::support::s3proxy::{Match, behind_proxy};

/// The key prefix every test's repository uses inside its bucket.
const PREFIX: &str = "clusters/main";

/// A whole dbagent config for `pg` with this `repository:` block (and `more` after it).
fn config(pg: &Cluster, repository: &str, more: &str) -> String {
    format!(
        "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\n{repository}state_dir: STATE\nbackup:\n  wal_timeout: 60s\n{more}",
        pg.conninfo(),
        pg.version().bin_dir().display()
    )
}

/// A cluster whose archive_command is the agent's wal-push into the S3 repository described
/// by `repository`, and the agent.
fn s3_cluster(v: PgVersion, repository: &str, more: &str) -> (Agent, Cluster) {
    s3_cluster_archiving(v, repository, more, None)
}

/// As [`s3_cluster`], with another archive_command first (e.g. `/bin/false`, so that a backup
/// waits for its WAL).
fn s3_cluster_archiving(
    v: PgVersion,
    repository: &str,
    more: &str,
    archive_command: Option<&str>,
) -> (Agent, Cluster) {
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"host=127.0.0.1\"\n{repository}state_dir: STATE\n"
    ));
    agent.share_with_postgres();
    let pg = Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(
                archive_command.map_or_else(|| agent.archive_command(), str::to_string),
            ),
            ..ClusterOptions::default()
        },
    );
    agent.set_yaml(&config(&pg, repository, more));
    agent.share_with_postgres();
    (agent, pg)
}

/// An agent with its own scratch directory and this `repository:` block, for commands that
/// need no cluster (wal-get, backups list).
fn agent_without_cluster(repository: &str) -> Agent {
    Agent::with_yaml(&format!(
        "postgres:\n  conninfo: \"host=127.0.0.1 port=1 user=unused\"\n  connect_timeout: 1s\n{repository}state_dir: STATE\n"
    ))
}

fn key(rel: &str) -> String {
    format!("{PREFIX}/{rel}")
}

/// The stored key of WAL segment `segment` (whatever its compression suffix).
fn wal_key(s3: &S3Server, bucket: &str, segment: &str) -> Option<String> {
    s3.keys(bucket, &key(&format!("wal/{}/", &segment[..16])))
        .into_iter()
        .find(|k| {
            // The segment itself, not a backup history file (`SEGMENT.OFFSET.backup`).
            k.rsplit('/').next().is_some_and(|f| {
                f == segment
                    || (f.starts_with(&format!("{segment}."))
                        && !f.contains(".backup")
                        && !f.contains(".partial"))
            })
        })
}

/// The backup's manifest as stored in the bucket.
fn manifest(s3: &S3Server, bucket: &str, id: &str) -> Value {
    let bytes = s3
        .get(bucket, &key(&format!("backups/{id}/manifest.json")))
        .unwrap_or_else(|| panic!("no manifest.json for {id} in the bucket"));
    serde_json::from_slice(&bytes).expect("manifest.json is JSON")
}

/// The backup ids `backups list --json` shows.
fn listed(agent: &Agent) -> Vec<String> {
    let run = agent.run(&["backups", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    run.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|b| b["id"].as_str().expect("id").to_string())
        .collect()
}

/// `wal-get SEGMENT <scratch file>`.
fn wal_get(agent: &Agent, segment: &str) -> Run {
    let dest = agent.dir().join(format!("got-{segment}"));
    let run = agent.run(&["wal-get", segment, dest.to_str().expect("utf-8 path")]);
    if run.code == 0 {
        let len = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 16 * 1024 * 1024, "wal-get wrote a whole segment");
        let _ = std::fs::remove_file(&dest);
    }
    run
}

/// The checks of `check --json` whose name starts with `repo` (the repository's own lines).
fn repository_checks(agent: &Agent) -> Vec<Value> {
    let run = agent.run(&["check", "--json"]);
    let report = run.json();
    let checks: Vec<Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("repo")))
        .cloned()
        .collect();
    assert!(!checks.is_empty(), "no repository check in {report}");
    checks
}

/// A segment name far beyond anything archived: certainly absent.
const ABSENT: &str = "00000001000000AA00000001";

/// Starts `cmd` with stderr piped and returns once a stderr line contains `needle`.
fn spawn_until(mut cmd: std::process::Command, needle: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dbagent");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let found = line.contains(needle);
        lines.push(line);
        if found {
            return (child, rx);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("never saw `{needle}` on stderr:\n{}", lines.join("\n"));
}

/// Waits for `child`, collecting the rest of its stderr from `rx`.
fn finish(mut child: Child, rx: mpsc::Receiver<String>) -> (i32, String) {
    let status = child.wait().expect("wait for dbagent");
    let mut text = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        text.push(line);
    }
    (status.code().unwrap_or(-1), text.join("\n"))
}

pg_test!(s3_cycle_backup_wal_restore_drill_verify_expire, |v| {
    let bucket = "dbagent-cycle";
    let s3 = S3Server::start();
    s3.create_bucket(bucket);
    let (agent, pg) = s3_cluster(
        v,
        &s3.repository_yaml(bucket, PREFIX),
        "retention:\n  full: 1\n",
    );
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
    let first = take_backup(&agent)["id"].as_str().unwrap().to_string();
    pg.psql("INSERT INTO t SELECT generate_series(1001, 6000)");
    switch_and_wait(|s| pg.psql(s));

    // The layout inside s3://bucket/prefix/ is the posix layout's relative paths.
    let keys = s3.keys(bucket, "");
    assert!(
        keys.iter().all(|k| k.starts_with(&format!("{PREFIX}/"))),
        "{keys:#?}"
    );
    assert!(keys.contains(&key("repo.json")), "{keys:#?}");
    assert!(
        keys.contains(&key(&format!("backups/{first}/manifest.json"))),
        "{keys:#?}"
    );
    let m = manifest(&s3, bucket, &first);
    for f in m["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        if name == "backup_manifest" {
            continue;
        }
        assert!(
            keys.contains(&key(&format!("backups/{first}/{name}"))),
            "{name} not in {keys:#?}"
        );
    }
    let stop = m["wal_stop"].as_str().unwrap().to_string();
    assert!(
        wal_key(&s3, bucket, &stop).is_some(),
        "{stop} not in {keys:#?}"
    );
    assert_eq!(listed(&agent), vec![first.clone()]);

    // wal-get: an archived segment arrives whole; an absent one exits 1.
    let got = wal_get(&agent, &stop);
    assert_eq!(got.code, 0, "{}", got.all());
    let absent = wal_get(&agent, ABSENT);
    assert_eq!(absent.code, 1, "{}", absent.all());

    // A restore point is an object.
    let rp = agent.run(&["restore-point", "cycle-point"]);
    assert_eq!(rp.code, 0, "{}", rp.all());
    assert!(
        s3.get(bucket, &key("restore-points/cycle-point.json"))
            .is_some(),
        "{:#?}",
        s3.keys(bucket, "")
    );

    // Restore with replay through wal-get from the bucket: the rows are back.
    let scratch = Scratch::new();
    let (restored, json) = restore_started(
        &agent,
        v,
        &scratch.path("latest"),
        "latest",
        &["--no-archive"],
    );
    assert_eq!(
        restored.query("SELECT count(*) || '/' || sum(i) FROM t"),
        "6000/18003000",
        "{json}"
    );
    drop(restored);

    // Verify and drill read the backup from the bucket.
    let verify = agent.run(&["backups", "verify", &first, "--json"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    assert_eq!(verify.json()["ok"], true, "{}", verify.stdout);
    let drill = agent.run_copy(&["drill", "--json"]);
    assert_eq!(drill.code, 0, "{}", drill.all());
    let dj = drill.json();
    assert_eq!(dj["ok"], true, "{dj}");
    assert_eq!(dj["backup_id"], first.as_str(), "{dj}");

    // check: the bucket is reachable, the credentials valid, list/get/put/delete allowed
    // (its probe object is gone again), the repository bound to this cluster.
    let before = s3.keys(bucket, "");
    for c in repository_checks(&agent) {
        assert_eq!(c["status"], "ok", "{c}");
    }
    let text = agent.run(&["check"]);
    let line = text.check_line("repository");
    assert!(line.starts_with("OK"), "{}", text.stdout);
    assert!(
        line.contains(bucket) && line.contains("reachable"),
        "the bucket is named and reachable: {line}"
    );
    for allowed in ["list", "get", "put", "delete"] {
        assert!(
            line.contains(allowed),
            "{allowed} permission probed: {line}"
        );
    }
    let binding = text.check_line("repository_binding");
    assert!(
        binding.starts_with("OK") && binding.contains("belongs to this cluster"),
        "{}",
        text.stdout
    );
    assert_eq!(
        s3.keys(bucket, ""),
        before,
        "check leaves no probe object behind"
    );

    // A second backup, then expire with retention.full = 1: the first and its files go.
    std::thread::sleep(Duration::from_millis(1100));
    let second = take_backup(&agent)["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let dry = agent.run(&["backups", "expire", "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    assert_eq!(
        dry.json()["removed"],
        serde_json::json!([first]),
        "{}",
        dry.stdout
    );
    assert_eq!(listed(&agent).len(), 2, "--dry-run removes nothing");
    let run = agent.run(&["backups", "expire", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.json()["removed"],
        serde_json::json!([first]),
        "{}",
        run.stdout
    );
    assert_eq!(listed(&agent), vec![second.clone()]);
    assert_eq!(
        s3.keys(bucket, &key(&format!("backups/{first}/"))),
        Vec::<String>::new(),
        "the expired backup's objects are deleted"
    );
    // WAL older than the kept backup is gone; the kept backup's WAL is there.
    let kept = manifest(&s3, bucket, &second);
    let kept_start = kept["wal_start"].as_str().unwrap();
    assert!(wal_key(&s3, bucket, kept_start).is_some());
    let first_start = m["wal_start"].as_str().unwrap();
    if first_start < kept_start {
        assert!(
            wal_key(&s3, bucket, first_start).is_none(),
            "{first_start} kept"
        );
    }
    // The kept backup restores.
    let (restored, json) = restore_started(
        &agent,
        v,
        &scratch.path("kept"),
        "latest",
        &["--no-archive"],
    );
    assert_eq!(restored.query("SELECT count(*) FROM t"), "6000", "{json}");
});

pg_test!(s3_point_in_time_restore_by_every_target_kind, |v| {
    let bucket = "dbagent-pitr";
    let s3 = S3Server::start();
    s3.create_bucket(bucket);
    let (agent, pg) = s3_cluster(v, &s3.repository_yaml(bucket, PREFIX), "");
    pgbench_init(&pg);
    let at_backup = pg.psql(CHECKSUM);
    take_backup(&agent);
    load(&pg, 2);
    let m = capture(&agent, &pg, "s3-moment");
    load(&pg, 2);
    let latest = pg.psql(CHECKSUM);
    assert_ne!(m.checksum, latest, "pgbench wrote nothing after the moment");
    assert_ne!(
        m.checksum, at_backup,
        "pgbench wrote nothing before the moment"
    );
    switch_and_wait(|s| pg.psql(s));
    assert!(
        s3.get(bucket, &key("restore-points/s3-moment.json"))
            .is_some(),
        "the restore point is stored in the bucket"
    );

    let scratch = Scratch::new();
    for (n, (target, expected)) in [
        (format!("time:{}", m.time), &m.checksum),
        (format!("lsn:{}", m.lsn), &m.checksum),
        (format!("xid:{}", m.xid), &m.checksum),
        (format!("name:{}", m.name), &m.checksum),
        ("immediate".to_string(), &at_backup),
        ("latest".to_string(), &latest),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = scratch.path(&format!("r{n}"));
        let (restored, json) = restore_started(&agent, v, &dir, &target, &["--no-archive"]);
        assert_eq!(
            &restored.query(CHECKSUM),
            expected,
            "restore to {target}; outcome {}",
            json["outcome"]
        );
    }
});

/// The lines a failed command printed, for assertions that it named the problem.
fn said(run: &Run) -> String {
    run.all().to_lowercase()
}

pg_test!(
    s3_outage_during_backup_leaves_no_backup_and_wal_push_catches_up,
    |v| {
        let bucket = "dbagent-outage";
        let (s3, proxy) = behind_proxy(bucket);
        // A backup that fails during the outage cannot delete its lock lease; the next run
        // on this host takes it over at once because its holder's process is gone (well
        // within lock_wait, far short of the 60s lease).
        let repository = format!(
            "{}  part_size: 5MiB\n  request_timeout: 5s\n  retry_timeout: 5s\n  lock_wait: 10s\n",
            proxy.repository_yaml(bucket, PREFIX)
        );
        let (agent, pg) = s3_cluster(v, &repository, "");
        // Enough data for several multipart parts, slowed down so the outage lands mid-upload.
        pg.psql("CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t FROM generate_series(1, 300000) g");
        switch_and_wait(|s| pg.psql(s));
        proxy.delay(Duration::from_millis(300), Match::path("/backups/"));
        let mut child = agent
            .command(&["backup"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !proxy.seen().iter().any(|s| s.target.contains("/backups/")) {
            assert!(
                Instant::now() < deadline,
                "the backup never uploaded anything"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
        proxy.outage(true);
        let stderr_pipe = child.stderr.take().unwrap();
        let started = Instant::now();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut stderr).unwrap();
        assert!(
            !status.success(),
            "the backup succeeded during an outage: {stderr}"
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backup gave up only after {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains(bucket)
                || stderr.contains(&proxy.endpoint())
                || stderr.contains("127.0.0.1"),
            "the error names the bucket or the endpoint: {stderr}"
        );
        assert!(stderr.contains("error"), "{stderr}");

        // Back up: nothing counts as a backup; the next backup works.
        proxy.outage(false);
        proxy.clear();
        assert_eq!(listed(&agent), Vec::<String>::new());
        assert!(
            !s3.keys(bucket, &key("backups/"))
                .iter()
                .any(|k| k.ends_with("manifest.json")),
            "{:#?}",
            s3.keys(bucket, &key("backups/"))
        );
        let expire = agent.run(&["backups", "expire", "--dry-run", "--json"]);
        assert_eq!(expire.code, 0, "{}", expire.all());
        assert_eq!(
            expire.json()["removed"],
            serde_json::json!([]),
            "{}",
            expire.stdout
        );
        let scratch = Scratch::new();
        let restore = agent.run_copy(&[
            "restore",
            "--to",
            scratch.path("none").to_str().unwrap(),
            "--dry-run",
        ]);
        assert_eq!(restore.code, 1, "restore found a backup: {}", restore.all());
        // The interrupted backup's multipart uploads could not be aborted during the outage:
        // they and their markers are what it left.
        let left = s3.multipart_uploads(bucket);
        assert!(
            !left.is_empty(),
            "an upload in progress when the outage began: {:#?}",
            s3.keys(bucket, "")
        );
        let id = take_backup(&agent)["id"].as_str().unwrap().to_string();
        assert_eq!(listed(&agent), vec![id.clone()]);
        // The next backup cleaned up after it: no upload in progress, no marker, no file of
        // another backup.
        assert_eq!(s3.multipart_uploads(bucket), Vec::<String>::new());
        assert_eq!(s3.keys(bucket, &key("uploads/")), Vec::<String>::new());
        let others: Vec<String> = s3
            .keys(bucket, &key("backups/"))
            .into_iter()
            .filter(|k| !k.starts_with(&key(&format!("backups/{id}/"))))
            .collect();
        assert_eq!(others, Vec::<String>::new());

        // An outage during archiving: wal-push fails (PostgreSQL counts a failure and keeps the
        // segment), and the segment arrives once the store is back.
        let failed = |pg: &Cluster| -> u64 {
            pg.psql("SELECT failed_count FROM pg_stat_archiver")
                .parse()
                .unwrap()
        };
        let failed_before = failed(&pg);
        proxy.outage(true);
        pg.psql("INSERT INTO big SELECT g, 'during the outage' FROM generate_series(1, 1000) g");
        let segment = pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        while failed(&pg) == failed_before {
            assert!(
                Instant::now() < deadline,
                "archiving never failed during the outage"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let direct = agent.run(&[
            "wal-push",
            pg.data_dir()
                .join("pg_wal")
                .join(&segment)
                .to_str()
                .unwrap(),
        ]);
        assert!(
            direct.code != 0,
            "wal-push succeeded during an outage: {}",
            direct.all()
        );
        assert!(
            direct.stderr.contains(&format!("s3://{bucket}/")),
            "the object that failed is named: {}",
            direct.stderr
        );
        assert!(wal_key(&s3, bucket, &segment).is_none());
        // Nothing answers: wal-get cannot know the segment is absent, so it is not exit 1.
        let unreachable = wal_get(&agent, ABSENT);
        assert!(
            unreachable.code > 125,
            "exit {}: {}",
            unreachable.code,
            unreachable.all()
        );
        let status = pg.psql(&format!(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = '{segment}.ready'"
        ));
        assert_eq!(status, "1", "PostgreSQL keeps {segment} to archive later");
        proxy.outage(false);
        switch_and_wait(|s| pg.psql(s));
        assert!(
            wal_key(&s3, bucket, &segment).is_some(),
            "{segment} arrived after the outage"
        );
    }
);

pg_test!(s3_injected_errors_and_slow_responses_are_retried, |v| {
    let bucket = "dbagent-flaky";
    let (s3, proxy) = behind_proxy(bucket);
    let repository = format!(
        "{}  request_timeout: 3s\n  retry_timeout: 60s\n",
        proxy.repository_yaml(bucket, PREFIX)
    );
    let (agent, pg) = s3_cluster(v, &repository, "");
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i");
    switch_and_wait(|s| pg.psql(s));

    // A backup through 500s and 503s on writes and on any request.
    proxy.fail_next(2, 500);
    proxy.fail_next(2, 503);
    proxy.fail_next_matching(2, 503, Match::method_path("PUT", "/backups/"));
    let id = take_backup(&agent)["id"].as_str().unwrap().to_string();
    assert_eq!(proxy.pending_failures(), 0, "every injected error was met");
    assert_eq!(proxy.injected(), 6);
    let verify = agent.run(&["backups", "verify", &id, "--json"]);
    assert_eq!(verify.code, 0, "{}", verify.all());

    // wal-push through 503s (PostgreSQL sees no failure: dbagent retried).
    let failed_before = pg.psql("SELECT failed_count FROM pg_stat_archiver");
    proxy.reset_seen();
    proxy.fail_next_matching(2, 503, Match::path("/wal/"));
    pg.psql("INSERT INTO t SELECT generate_series(1, 1000)");
    switch_and_wait(|s| pg.psql(s));
    assert_eq!(proxy.pending_failures(), 0);
    assert_eq!(
        pg.psql("SELECT failed_count FROM pg_stat_archiver"),
        failed_before,
        "the retries happened inside wal-push"
    );

    // wal-get through a 500 and a 503 on its read.
    let m = manifest(&s3, bucket, &id);
    let stop = m["wal_stop"].as_str().unwrap().to_string();
    proxy.reset_seen();
    proxy.fail_next_matching(2, 500, Match::method_path("GET", &stop));
    let got = wal_get(&agent, &stop);
    assert_eq!(got.code, 0, "{}", got.all());
    assert_eq!(proxy.pending_failures(), 0);
    assert!(
        proxy
            .seen()
            .iter()
            .filter(|s| s.method == "GET" && s.target.contains(&stop))
            .count()
            >= 3,
        "{:#?}",
        proxy.seen()
    );

    // Slow responses: every one 400 ms late, still fine.
    proxy.delay(Duration::from_millis(400), Match::any());
    let t = Instant::now();
    let got = wal_get(&agent, &stop);
    assert_eq!(got.code, 0, "{}", got.all());
    assert!(t.elapsed() >= Duration::from_millis(400));
    let absent = wal_get(&agent, ABSENT);
    assert_eq!(absent.code, 1, "{}", absent.all());
    proxy.clear();
    // A response slower than request_timeout (3s): that request is abandoned and retried.
    proxy.reset_seen();
    proxy.delay_next(1, Duration::from_secs(8), Match::method_path("GET", &stop));
    let t = Instant::now();
    let got = wal_get(&agent, &stop);
    assert_eq!(got.code, 0, "{}", got.all());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "request_timeout was not applied"
    );
    assert!(
        proxy
            .seen()
            .iter()
            .filter(|s| s.method == "GET" && s.target.contains(&stop))
            .count()
            >= 2,
        "{:#?}",
        proxy.seen()
    );

    // Throttled for longer than retry_timeout: wal-get gives up with >125 (never 1: the
    // segment may exist), saying why.
    let impatient = agent_without_cluster(&format!(
        "{}  request_timeout: 3s\n  retry_timeout: 3s\n",
        proxy.repository_yaml(bucket, PREFIX)
    ));
    proxy.fail_next(10_000, 503);
    let throttled = wal_get(&impatient, &stop);
    proxy.clear();
    assert!(
        throttled.code > 125,
        "exit {}: {}",
        throttled.code,
        throttled.all()
    );
    assert!(
        said(&throttled).contains("slowdown") || said(&throttled).contains("503"),
        "{}",
        throttled.all()
    );
    // Hanging: no answer at all, also >125 within the time limits.
    proxy.hang(true);
    let t = Instant::now();
    let hung = wal_get(&impatient, &stop);
    proxy.hang(false);
    assert!(hung.code > 125, "exit {}: {}", hung.code, hung.all());
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
});

pg_test!(
    s3_wrong_credentials_and_a_missing_bucket_are_clear_errors,
    |v| {
        let bucket = "dbagent-auth";
        let (s3, creds) = S3Server::start_with_auth(&[bucket]);
        let (good, pg) = s3_cluster(
            v,
            &format!(
                "{}  retry_timeout: 5s\n",
                repository_yaml(&s3.endpoint(), bucket, PREFIX, &creds)
            ),
            "",
        );
        let with = |bucket: &str, creds: &Credentials| {
            let agent = Agent::with_yaml(&config(
                &pg,
                &format!(
                    "{}  retry_timeout: 5s\n",
                    repository_yaml(&s3.endpoint(), bucket, PREFIX, creds)
                ),
                "",
            ));
            agent.share_with_postgres();
            agent
        };

        // The right key works: an absent segment is a definite "no" (exit 1).
        let absent = wal_get(&good, ABSENT);
        assert_eq!(absent.code, 1, "{}", absent.all());
        assert_eq!(listed(&good), Vec::<String>::new());
        let backup = good.run(&["backup", "--json"]);
        assert_eq!(
            backup.code,
            0,
            "a backup with the right key: {}",
            backup.all()
        );
        for c in repository_checks(&good) {
            assert_eq!(c["status"], "ok", "{c}");
        }
        // Another cluster pointed at the same bucket and prefix: check says the repository is
        // bound to the first one, and wal-push refuses to mix the clusters' WAL.
        let other = Cluster::start(v, ClusterOptions::default());
        let stranger = Agent::with_yaml(&config(
            &other,
            &repository_yaml(&s3.endpoint(), bucket, PREFIX, &creds),
            "",
        ));
        let text = stranger.run(&["check"]);
        let binding = text.check_line("repository_binding");
        assert!(
            binding.starts_with("CRITICAL") && binding.contains("belongs to cluster"),
            "{}",
            text.stdout
        );
        other.psql("CREATE TABLE x AS SELECT 1 AS i");
        let first = other.psql("SELECT pg_walfile_name(pg_switch_wal())");
        let push = stranger.run(&[
            "wal-push",
            other
                .data_dir()
                .join("pg_wal")
                .join(&first)
                .to_str()
                .unwrap(),
        ]);
        assert!(push.code != 0, "{}", push.all());
        assert!(
            push.stderr.contains("system identifier") || push.stderr.contains("belongs to"),
            "{}",
            push.stderr
        );
        drop(other);

        for (what, bad, expect) in [
            (
                "a wrong secret",
                Credentials {
                    access_key_id: creds.access_key_id.clone(),
                    secret_access_key: "not-the-secret".into(),
                },
                "signaturedoesnotmatch",
            ),
            (
                "an unknown key",
                Credentials {
                    access_key_id: "AKIAUNKNOWNUNKNOWN00".into(),
                    secret_access_key: "whatever-secret-9Zq".into(),
                },
                "invalidaccesskeyid",
            ),
        ] {
            let agent = with(bucket, &bad);
            let got = wal_get(&agent, ABSENT);
            assert!(
                got.code > 125,
                "{what}: wal-get must not say absent: {}",
                got.all()
            );
            assert!(said(&got).contains(expect), "{what}: {}", got.all());
            let list = agent.run(&["backups", "list"]);
            assert_eq!(list.code, 1, "{what}: {}", list.all());
            assert!(said(&list).contains(expect), "{what}: {}", list.all());
            let backup = agent.run(&["backup"]);
            assert_eq!(backup.code, 1, "{what}: {}", backup.all());
            let checks = repository_checks(&agent);
            assert!(
                checks.iter().any(|c| c["status"] == "critical"),
                "{what}: {checks:#?}"
            );
            assert!(
                !agent.run(&["check"]).all().contains(&bad.secret_access_key),
                "the secret is never printed"
            );
        }

        // A bucket that does not exist: named, and never "segment absent".
        let missing = "dbagent-no-such-bucket";
        let agent = with(missing, &creds);
        let got = wal_get(&agent, ABSENT);
        assert!(got.code > 125, "exit {}: {}", got.code, got.all());
        assert!(got.all().contains(missing), "{}", got.all());
        let list = agent.run(&["backups", "list"]);
        assert_eq!(list.code, 1, "{}", list.all());
        assert!(list.all().contains(missing), "{}", list.all());
        let backup = agent.run(&["backup"]);
        assert_eq!(backup.code, 1, "{}", backup.all());
        assert!(backup.all().contains(missing), "{}", backup.all());
        let checks = repository_checks(&agent);
        assert!(
            checks.iter().any(|c| c["status"] == "critical"
                && c["message"].as_str().unwrap_or("").contains(missing)),
            "{checks:#?}"
        );
    }
);

pg_test!(s3_damaged_objects_are_named_and_refused, |v| {
    let bucket = "dbagent-damage";
    let s3 = S3Server::start();
    s3.create_bucket(bucket);
    let (agent, pg) = s3_cluster(
        v,
        &format!(
            "{}  retry_timeout: 5s\n",
            s3.repository_yaml(bucket, PREFIX)
        ),
        "",
    );
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 5000) AS i");
    let id = take_backup(&agent)["id"].as_str().unwrap().to_string();
    pg.psql("INSERT INTO t SELECT generate_series(1, 5000)");
    switch_and_wait(|s| pg.psql(s));
    let scratch = Scratch::new();

    // A backup file with one byte changed: verify names it, drill and restore refuse.
    let m = manifest(&s3, bucket, &id);
    let base = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .find(|n| n.starts_with("base.tar"))
        .expect("base.tar.* in the manifest");
    let base_key = key(&format!("backups/{id}/{base}"));
    let original = s3.get(bucket, &base_key).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    s3.put(bucket, &base_key, &bytes);
    let verify = agent.run(&["backups", "verify", &id]);
    assert_eq!(verify.code, 1, "{}", verify.all());
    assert!(verify.all().contains(&base), "{}", verify.all());
    let drill = agent.run_copy(&["drill"]);
    assert_eq!(drill.code, 1, "{}", drill.all());
    assert!(drill.all().contains(&base), "{}", drill.all());
    let dest = scratch.path("damaged-backup");
    let restore = agent.run_copy(&["restore", "--to", dest.to_str().unwrap()]);
    assert_eq!(restore.code, 1, "{}", restore.all());
    assert!(restore.all().contains(&base), "{}", restore.all());
    s3.put(bucket, &base_key, &original);
    let verify = agent.run(&["backups", "verify", &id]);
    assert_eq!(verify.code, 0, "{}", verify.all());

    // A WAL segment the backup needs, overwritten with other bytes: wal-get exits >125 naming
    // it, and the restore does not come up on it.
    let stop = m["wal_stop"].as_str().unwrap().to_string();
    let wal = wal_key(&s3, bucket, &stop).expect("the backup's last segment");
    s3.put(
        bucket,
        &wal,
        b"these bytes are not a compressed WAL segment",
    );
    let got = wal_get(&agent, &stop);
    assert!(got.code > 125, "exit {}: {}", got.code, got.all());
    assert!(got.stderr.contains(&stop), "{}", got.stderr);
    let port = free_port().to_string();
    let dest = scratch.path("damaged-wal");
    let restore = agent.run_copy(&[
        "restore",
        "--to",
        dest.to_str().unwrap(),
        "--start",
        "--port",
        &port,
        "--no-archive",
    ]);
    assert_eq!(restore.code, 1, "{}", restore.all());
    let log = std::fs::read_to_string(dest.join("restore.log")).unwrap_or_default();
    assert!(
        restore.all().contains(&stop) || log.contains(&stop),
        "{}\n{log}",
        restore.all()
    );
    assert!(
        !log.contains("database system is ready to accept connections"),
        "{log}"
    );
    // A segment that is gone is "absent": exit 1.
    s3.delete(bucket, &wal);
    let gone = wal_get(&agent, &stop);
    assert_eq!(gone.code, 1, "{}", gone.all());
});

pg_test!(
    s3_two_agents_on_one_bucket_never_both_back_up_or_expire,
    |v| {
        let bucket = "dbagent-shared";
        let s3 = S3Server::start();
        s3.create_bucket(bucket);
        let repository = s3.repository_yaml(bucket, PREFIX);
        // Archiving fails at first, so the first backup holds the lock while it waits for WAL.
        let (a, pg) = s3_cluster_archiving(
            v,
            &repository,
            "retention:\n  full: 1\n",
            Some("/bin/false"),
        );
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i");
        // The second agent: another host's dbagent (its own directory, config and state).
        let b = Agent::with_yaml(&config(&pg, &repository, "retention:\n  full: 1\n"));
        b.share_with_postgres();

        let (first, rx) = spawn_until(a.command(&["backup"]), "waiting for WAL");
        assert!(
            !s3.keys(bucket, &key("locks/")).is_empty(),
            "the lock is an object in the bucket: {:#?}",
            s3.keys(bucket, "")
        );
        let second = b.run(&["backup"]);
        assert_eq!(second.code, 1, "two backups at once: {}", second.all());
        assert!(said(&second).contains("lock"), "{}", second.all());
        let expire = b.run(&["backups", "expire"]);
        assert_eq!(expire.code, 1, "expire during a backup: {}", expire.all());
        assert!(said(&expire).contains("lock"), "{}", expire.all());

        // Archiving fixed: the first backup finishes, then the other agent may back up.
        let mut pg = pg;
        pg.set_conf("archive_command", &a.archive_command());
        pg.reload();
        let (code, stderr) = finish(first, rx);
        assert_eq!(code, 0, "{stderr}");
        let run = b.run(&["backup", "--json"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(listed(&a).len(), 2);
        assert_eq!(listed(&b).len(), 2);
        let expire = b.run(&["backups", "expire", "--json"]);
        assert_eq!(expire.code, 0, "{}", expire.all());
        assert_eq!(listed(&a).len(), 1);
    }
);

pg_test!(s3_info_window_is_what_restore_reaches, |v| {
    let bucket = "dbagent-info";
    let s3 = S3Server::start();
    s3.create_bucket(bucket);
    let (agent, pg) = s3_cluster(v, &s3.repository_yaml(bucket, PREFIX), "");
    pg.psql("CREATE TABLE t (i int)");
    take_backup(&agent);
    pg.psql("INSERT INTO t VALUES (1)");
    pg.psql("INSERT INTO t VALUES (2)");
    switch_and_wait(|s| pg.psql(s));

    let run = agent.run(&["info", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let i = run.json();
    assert_eq!(i["backups"]["count"], 1, "{i}");
    assert!(i["repository"]["size_bytes"].as_u64().unwrap() > 0, "{i}");
    assert!(i["wal"][0]["segments"].as_u64().unwrap() > 0, "{i}");
    let w = &i["window"][0];
    assert_eq!(
        w["earliest"]["time"], i["backups"]["oldest"]["stop_time"],
        "{i}"
    );
    let latest: jiff::Timestamp = w["latest"]["time"].as_str().unwrap().parse().unwrap();

    let scratch = Scratch::new();
    let (restored, json) = restore_started(
        &agent,
        v,
        &scratch.path("latest"),
        &format!("time:{latest}"),
        &["--no-archive"],
    );
    assert_eq!(
        restored.query("SELECT string_agg(i::text, ',') FROM t"),
        "1",
        "{json}"
    );
    drop(restored);
    let after = agent.run_copy(&[
        "restore",
        "--to",
        scratch.path("after").to_str().unwrap(),
        "--target",
        &format!("time:{}", latest + jiff::SignedDuration::from_secs(1)),
        "--no-archive",
    ]);
    assert_eq!(after.code, 1, "{}", after.all());
    assert!(
        after.stderr.contains("cannot restore to time"),
        "{}",
        after.stderr
    );
});
