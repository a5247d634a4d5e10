//! The S3 storage against a real S3-compatible server (moto, which `scripts/test.sh`
//! installs): the storage contract, multipart backups, leftovers and the listing index.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;
use crate::repo::storage::contract;

/// A moto server on a free port, stopped on drop.
pub(crate) struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Where scripts/lib/deps.sh puts it when none is on PATH.
        let program = std::env::var_os("DBAGENT_MOTO_SERVER")
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let venv = std::path::Path::new("/opt/dbagent/moto-5.2.6/bin/moto_server");
                venv.exists().then(|| venv.to_path_buf())
            })
            .unwrap_or_else(|| "moto_server".into());
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server not found: scripts/test.sh installs it (pip install 'moto[server]')",
            );
        let moto = Moto { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not start on port {port}");
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto accepts an unsigned CreateBucket).
    pub(crate) fn bucket(&self, bucket: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }

    pub(crate) fn options(&self, bucket: &str, prefix: &str) -> S3Options {
        S3Options {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
            force_path_style: true,
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            part_size: MIN_PART_SIZE,
            request_timeout: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }
}

#[test]
fn s3_storage_keeps_the_storage_contract() {
    let moto = Moto::start();
    moto.bucket("contract");
    let n = std::sync::atomic::AtomicU32::new(0);
    contract::all(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::new(S3Storage::new(moto.options("contract", &format!("c{i}/repo"))).unwrap())
    });
    // And at a bucket's root.
    contract::all(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bucket = format!("root-{i}");
        moto.bucket(&bucket);
        Box::new(S3Storage::new(moto.options(&bucket, "")).unwrap())
    });
}

#[test]
fn backups_stream_in_parts_and_exist_only_once_published() {
    let moto = Moto::start();
    moto.bucket("backup-test");
    let s = S3Storage::new(moto.options("backup-test", "p")).unwrap();
    // 12 MiB in 5 MiB parts: a multipart upload of three parts.
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let w = s.backup_writer("20261206T000000Z").unwrap();
    let mut f = w.file("base.tar.zst").unwrap();
    for chunk in big.chunks(100_000) {
        f.write_all(chunk).unwrap();
    }
    // In progress: an upload marker, no backup.
    assert_eq!(s.leftovers().unwrap().len(), 1);
    assert_eq!(f.commit().unwrap(), Created::Created);
    assert!(s.leftovers().unwrap().iter().all(|l| l.written.is_none()));
    assert!(
        crate::repo::Repo::with_storage(Arc::new(s.clone()))
            .storage()
            .list(Kind::Backup, "")
            .unwrap()
            .iter()
            .all(|m| m.key.name != "20261206T000000Z/manifest.json")
    );
    w.publish(b"{}").unwrap();
    drop(w);
    let key = Key::backup("20261206T000000Z", "base.tar.zst");
    let mut back = Vec::new();
    s.get(&key)
        .unwrap()
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == big, "the object read back differs");
    assert!(s.leftovers().unwrap().is_empty());

    // An interrupted backup (writer dropped mid-file) leaves nothing listed as a backup, and
    // a killed one (marker and files left) is cleaned by remove_interrupted_backups.
    let w = s.backup_writer("20261206T010000Z").unwrap();
    let mut f = w.file("base.tar.zst").unwrap();
    f.write_all(&big).unwrap();
    drop(f);
    let mut g = w.file("backup_manifest").unwrap();
    g.write_all(b"m").unwrap();
    g.commit().unwrap();
    let scratch = w.scratch().to_path_buf();
    std::mem::forget(w);
    std::fs::remove_dir_all(scratch).unwrap();
    let left = s.leftovers().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .location
            .to_string_lossy()
            .ends_with("backups/20261206T010000Z/")
    );
    assert_eq!(s.remove_interrupted_backups().len(), 1);
    assert!(
        s.list(Kind::Backup, "20261206T010000Z/")
            .unwrap()
            .is_empty()
    );

    s.delete_backup("20261206T000000Z").unwrap();
    assert!(s.list(Kind::Backup, "").unwrap().is_empty());
}

#[test]
fn a_missing_bucket_is_not_an_absent_object() {
    let moto = Moto::start();
    let s = S3Storage::new(moto.options("no-such-bucket", "")).unwrap();
    let err = s.check_present().unwrap_err();
    assert!(
        err.contains("bucket no-such-bucket does not exist"),
        "{err}"
    );
    match s.check_access() {
        Access::Problem { detail, .. } => assert!(detail.contains("no-such-bucket"), "{detail}"),
        Access::Ok(m) => panic!("{m}"),
    }
    moto.bucket("yes-bucket");
    let s = S3Storage::new(moto.options("yes-bucket", "x")).unwrap();
    s.check_present().unwrap();
    match s.check_access() {
        Access::Ok(m) => assert!(m.contains("conditional put"), "{m}"),
        Access::Problem { detail, .. } => panic!("{detail}"),
    }
}

#[test]
fn the_listing_index_sees_new_segments_and_forgets_removed_directories() {
    let moto = Moto::start();
    moto.bucket("index-test");
    let dir = tempfile::tempdir().unwrap();
    let mut opts = moto.options("index-test", "r");
    opts.cache_dir = Some(dir.path().to_path_buf());
    let s = S3Storage::new(opts.clone()).unwrap();
    let put = |name: &str| {
        s.create_new(&Key::wal(name), &mut |w| w.write_all(b"x"))
            .unwrap()
    };
    put("000000010000000000000001.zst");
    put("000000010000000100000000.zst");
    put("00000002.history.zst");
    let names = |s: &S3Storage| -> Vec<String> {
        s.list_recent(Kind::Wal)
            .unwrap()
            .into_iter()
            .map(|m| m.key.name)
            .collect()
    };
    assert_eq!(
        names(&s),
        s.list(Kind::Wal, "")
            .unwrap()
            .into_iter()
            .map(|m| m.key.name)
            .collect::<Vec<_>>()
    );
    put("000000010000000100000001.zst");
    put("000000020000000100000002.zst");
    // A fresh storage (a one-shot command) starts from the index file.
    let fresh = S3Storage::new(opts).unwrap();
    let seen = names(&fresh);
    assert!(
        seen.contains(&"000000010000000100000001.zst".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"000000020000000100000002.zst".to_string()),
        "{seen:?}"
    );
    // A deletion by this storage is seen by its next listing (the directory is gone).
    s.delete(&[Key::wal("000000010000000000000001.zst")])
        .unwrap();
    let seen = names(&s);
    assert!(
        !seen.contains(&"000000010000000000000001.zst".to_string()),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[test]
fn a_lock_taken_on_one_host_excludes_another() {
    let moto = Moto::start();
    moto.bucket("lock-test");
    // Two storages (two agents) on one bucket and prefix.
    let a = S3Storage::new(moto.options("lock-test", "shared")).unwrap();
    let b = S3Storage::new(moto.options("lock-test", "shared")).unwrap();
    let held = a.lock(LockKind::Run, "backup", Duration::ZERO).unwrap();
    let err = b
        .lock(LockKind::Run, "expire", Duration::from_millis(500))
        .unwrap_err();
    assert!(err.to_string().contains("locked by backup (pid"), "{err}");
    drop(held);
    drop(b.lock(LockKind::Run, "expire", Duration::ZERO).unwrap());
}

#[test]
fn a_lease_left_by_a_dead_run_on_this_host_is_taken_over_at_once() {
    let moto = Moto::start();
    moto.bucket("dead-holder");
    let s = S3Storage::new(moto.options("dead-holder", "r")).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let record = serde_json::json!({
        "holder": format!("backup (pid {dead} on {host})"),
        "host": host,
        "pid": dead,
        "token": "0",
    });
    s.inner
        .put_rel("locks/run.json", record.to_string().into_bytes(), true)
        .unwrap();
    drop(s.lock(LockKind::Run, "backup", Duration::ZERO).unwrap());
    // One of another host is waited out (its lease is fresh).
    let record = serde_json::json!({
        "holder": "backup (pid 1 on elsewhere)", "host": "elsewhere", "pid": 1, "token": "1",
    });
    s.inner
        .put_rel("locks/run.json", record.to_string().into_bytes(), true)
        .unwrap();
    let err = s.lock(LockKind::Run, "expire", Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("on elsewhere"), "{err}");
}
