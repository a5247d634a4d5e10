//! wal-push and wal-get against real WAL segments from PostgreSQL 15 and 18: the safety
//! invariants 1 (durable, never overwritten, this cluster only) and 2 (exit 1 only when
//! truly absent, > 125 when the archive cannot be read).

use std::path::{Path, PathBuf};
use std::process::Command;

use dbagent::wal::name::segment_name;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, SUPERUSER, SUPERUSER_PASSWORD};
use crate::support::dbagent::{Agent, chown_to_postgres};

/// Writes some WAL, switches to a new segment and copies the completed one into `dir`.
pub(crate) fn complete_segment(pg: &Cluster, dir: &Path) -> PathBuf {
    pg.psql("CREATE TABLE IF NOT EXISTS filler (i int, t text)");
    // The insert position: with synchronous_commit off (the kit's setting) the write position
    // can still be at the start of the segment, which names the previous one.
    let name = pg.psql(
        "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 5000) g; \
         SELECT pg_walfile_name(pg_current_wal_insert_lsn())",
    );
    let name = name
        .lines()
        .last()
        .expect("a WAL file name")
        .trim()
        .to_string();
    pg.psql("SELECT pg_switch_wal()");
    let dest = dir.join(&name);
    std::fs::copy(pg.data_dir().join("pg_wal").join(&name), &dest)
        .expect("copy the completed segment");
    dest
}

pub(crate) fn stored_files(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(repo.join("wal")) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                out.push(f.path());
            }
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

pg_test!(
    concurrent_pushes_of_one_segment_both_succeed_and_store_it_once,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let agent = push_agent();
        // Bind the repository first, then race two pushes of a new segment.
        let first = complete_segment(&pg, agent.dir());
        assert_eq!(agent.run(&["wal-push", first.to_str().unwrap()]).code, 0);
        let seg2 = complete_segment(&pg, agent.dir());
        let children: Vec<_> = (0..2)
            .map(|_| {
                agent
                    .command(&["wal-push", seg2.to_str().unwrap()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let name = seg2.file_name().unwrap().to_str().unwrap().to_string();
        let copies: Vec<_> = stored_files(&agent.repo())
            .into_iter()
            .filter(|p| p.to_str().unwrap().contains(&name))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
    }
);

fn push_agent() -> Agent {
    Agent::new("host=127.0.0.1 user=unused")
}

pg_test!(
    wal_push_same_segment_twice_succeeds_and_different_content_is_refused,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let agent = push_agent();
        let seg = complete_segment(&pg, agent.dir());
        let seg_arg = seg.to_str().unwrap();

        let run = agent.run(&["wal-push", seg_arg]);
        assert_eq!(run.code, 0, "{}", run.all());
        let stored = stored_files(&agent.dir().join("repo"));
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert!(stored[0].to_str().unwrap().ends_with(".zst"));
        let before = std::fs::read(&stored[0]).unwrap();

        let run = agent.run(&["wal-push", seg_arg]);
        assert_eq!(run.code, 0, "identical retry must succeed: {}", run.all());

        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[8192 * 10 + 100] ^= 0xFF;
        std::fs::write(&seg, &bytes).unwrap();
        let run = agent.run(&["wal-push", seg_arg]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("different content")
                && run.stderr.contains("refusing to overwrite"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(&stored[0]).unwrap(),
            before,
            "the archived copy must not change"
        );
        assert_eq!(stored_files(&agent.dir().join("repo")), stored);
    }
);

pg_test!(wal_push_refuses_segments_of_another_cluster, |v| {
    let a = Cluster::start(v, ClusterOptions::default());
    let b = Cluster::start(v, ClusterOptions::default());
    let agent = push_agent();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let seg_a = complete_segment(&a, dir_a.path());
    let seg_b = complete_segment(&b, dir_b.path());
    assert_eq!(agent.run(&["wal-push", seg_a.to_str().unwrap()]).code, 0);
    let run = agent.run(&["wal-push", seg_b.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("belongs to another cluster"),
        "{}",
        run.stderr
    );
    let repo_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.dir().join("repo/repo.json")).unwrap())
            .unwrap();
    assert_eq!(repo_json["pg_major"], v.major());
});

pg_test!(wal_push_refuses_truncated_and_foreign_files, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    let agent = push_agent();
    let seg = complete_segment(&pg, agent.dir());
    let bytes = std::fs::read(&seg).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();

    let short_dir = tempfile::tempdir().unwrap();
    let short = short_dir.path().join(&name);
    std::fs::write(&short, &bytes[..bytes.len() / 2]).unwrap();
    let run = agent.run(&["wal-push", short.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("incomplete segment"), "{}", run.stderr);

    let misnamed = short_dir.path().join(segment_name(1, 0x99, 16 << 20));
    std::fs::write(&misnamed, &bytes).unwrap();
    let run = agent.run(&["wal-push", misnamed.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("the name says"), "{}", run.stderr);

    let other = short_dir.path().join("postgresql.conf");
    std::fs::write(&other, b"x").unwrap();
    let run = agent.run(&["wal-push", other.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not a WAL segment"), "{}", run.stderr);
    assert!(stored_files(&agent.dir().join("repo")).is_empty());
});

/// A tmpfs mounted for the life of the guard.
pub struct Tmpfs(PathBuf);
impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} needs root",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

pg_test!(
    wal_push_on_a_full_filesystem_fails_and_leaves_no_partial_file,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let agent = Agent::with_yaml(
            "postgres:\n  conninfo: host=x\nrepository:\n  path: REPO\n  compression: none\n",
        );
        let seg = complete_segment(&pg, agent.dir());
        let repo = agent.dir().join("repo");
        let _mount = Tmpfs::mount(&repo, "1m");
        let run = agent.run(&["wal-push", seg.to_str().unwrap()]);
        assert_ne!(run.code, 0, "{}", run.all());
        assert!(
            run.stderr.contains("No space left on device"),
            "{}",
            run.stderr
        );
        let wal_dir = repo
            .join("wal")
            .join(&seg.file_name().unwrap().to_str().unwrap()[..16]);
        let left: Vec<_> = std::fs::read_dir(&wal_dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "nothing, not even a temp file, may remain: {left:?}"
        );
    }
);

pg_test!(
    archive_command_under_pgbench_load_archives_every_segment,
    |v| {
        let (agent, pg) = crate::backup::archived_cluster(v);
        let pgbench = |args: &[&str]| {
            let out = Command::new(v.bin("pgbench"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg.port().to_string(),
                    "-U",
                    SUPERUSER,
                ])
                .args(args)
                .arg("postgres")
                .env("PGPASSWORD", SUPERUSER_PASSWORD)
                .output()
                .expect("run pgbench");
            assert!(
                out.status.success(),
                "pgbench {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        pgbench(&["-i", "-q", "-s", "5"]);
        pgbench(&["-c", "2", "-T", "3"]);
        let last = pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
        pg.psql("SELECT pg_switch_wal()");
        let mut archived = false;
        for _ in 0..300 {
            let row = pg.psql(&format!(
            "SELECT coalesce(last_archived_wal, '') >= '{last}', failed_count FROM pg_stat_archiver"
        ));
            if row.starts_with('t') {
                archived = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            archived,
            "segment {last} was not archived in 30 s; server log: {}",
            pg.log_path().display()
        );
        assert_eq!(pg.psql("SELECT failed_count FROM pg_stat_archiver"), "0");
        let last_segno = u64::from_str_radix(&last[16..24], 16).unwrap();
        assert!(
            last_segno >= 3,
            "pgbench should have written several segments, last is {last}"
        );
        let stored: Vec<String> = stored_files(&agent.dir().join("repo"))
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        for segno in 1..=last_segno {
            let name = segment_name(1, segno, 16 << 20);
            assert!(
                stored.contains(&format!("{name}.zst")),
                "{name} missing from the archive: {stored:?}"
            );
        }
    }
);

pg_test!(wal_get_exit_codes_tell_absent_from_unreadable, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    let agent = push_agent();
    let seg = complete_segment(&pg, agent.dir());
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(agent.run(&["wal-push", seg.to_str().unwrap()]).code, 0);
    agent.share_with_postgres();
    let out = agent.dir().join("restored");

    // Present: restored byte for byte.
    let run = agent.run_as_postgres(&["wal-get", &name, out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&seg).unwrap());

    // Absent from a readable archive: 1, and nothing written.
    let missing = segment_name(1, 0x7777, 16 << 20);
    let dest = agent.dir().join("missing");
    let run = agent.run_as_postgres(&["wal-get", &missing, dest.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    let run = agent.run_as_postgres(&["wal-get", "00000009.history", dest.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!dest.exists());

    // The segment's directory unreadable: not "absent".
    let repo = agent.dir().join("repo");
    let seg_dir = repo.join("wal").join(&name[..16]);
    let missing_here = format!("{}000000F0", &name[..16]);
    set_mode(&seg_dir, 0o000);
    let run = agent.run_as_postgres(&["wal-get", &missing_here, dest.to_str().unwrap()]);
    assert!(
        run.code > 125,
        "unreadable segment dir must abort recovery: {}",
        run.all()
    );
    set_mode(&seg_dir, 0o755);

    // The whole repository unreadable.
    set_mode(&repo, 0o000);
    let run = agent.run_as_postgres(&["wal-get", &name, dest.to_str().unwrap()]);
    assert!(run.code > 125, "{}", run.all());
    set_mode(&repo, 0o755);

    // A damaged archived copy is an error, never a silently wrong segment.
    let stored = stored_files(&repo)
        .into_iter()
        .find(|p| p.to_str().unwrap().contains(&name))
        .unwrap();
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&stored, &bytes).unwrap();
    chown_to_postgres(&stored);
    let run = agent.run_as_postgres(&["wal-get", &name, dest.to_str().unwrap()]);
    assert!(run.code > 125, "{}", run.all());
    assert!(!dest.exists(), "no partial file at DEST");

    // The repository missing altogether (unmounted storage): abort, not "absent".
    std::fs::rename(&repo, agent.dir().join("repo-moved")).unwrap();
    let run = agent.run_as_postgres(&["wal-get", &missing, dest.to_str().unwrap()]);
    assert!(run.code > 125, "{}", run.all());
});

pub(crate) fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn wal_get_with_an_unreadable_config_aborts_recovery() {
    let agent = Agent::with_yaml("postgres: [\n");
    let run = agent.run(&["wal-get", "000000010000000000000001", "/tmp/x"]);
    assert_eq!(run.code, 126, "{}", run.all());
}
