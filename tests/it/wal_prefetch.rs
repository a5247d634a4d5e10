//! wal-get prefetch against real WAL segments from PostgreSQL 15 and 18: the next segments are
//! spooled in the background, a spooled segment is handed out byte for byte, and never when
//! the archive no longer holds the same stored file (safety invariant 2 holds with prefetch:
//! exit 1 only when the segment is truly absent, > 125 when the archive cannot be read).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::dbagent::{Agent, chown_to_postgres};
use crate::wal::{complete_segment, set_mode, stored_files};

const DEPTH: usize = 4;

/// The spool entries (file names) holding segment `name`.
fn spooled(spool: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(spool)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|f| f.starts_with(&format!("{name}.")))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every one of `names` is in the spool.
fn wait_spooled(spool: &Path, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names.iter().all(|n| !spooled(spool, n).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "not prefetched within 30 s: {:?}; spool holds {:?}",
            names,
            std::fs::read_dir(spool)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stored_copy(repo: &Path, name: &str) -> PathBuf {
    stored_files(repo)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("{name} is not in the archive"))
}

/// `n` completed segments with consecutive numbers (a switch sometimes skips one).
fn consecutive_segments(pg: &Cluster, dir: &Path, n: usize) -> Vec<PathBuf> {
    let segno = |p: &PathBuf| {
        u64::from_str_radix(&p.file_name().unwrap().to_str().unwrap()[16..], 16).unwrap()
    };
    let mut run: Vec<PathBuf> = Vec::new();
    for _ in 0..40 {
        let seg = complete_segment(pg, dir);
        if run
            .last()
            .is_some_and(|last| segno(last) + 1 != segno(&seg))
        {
            run.clear();
        }
        run.push(seg);
        if run.len() == n {
            return run;
        }
    }
    panic!("no {n} consecutive segments in 40 switches");
}

pg_test!(
    wal_get_prefetches_ahead_and_serves_a_spooled_segment_only_while_the_archive_agrees,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let agent = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: host=x\nrepository:\n  path: REPO\n  prefetch: {DEPTH}\nstate_dir: STATE\n"
        ));
        let segs = consecutive_segments(&pg, agent.dir(), 6);
        let names: Vec<String> = segs
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        for s in &segs {
            let run = agent.run(&["wal-push", s.to_str().unwrap()]);
            assert_eq!(run.code, 0, "{}", run.all());
        }
        let pg_wal = agent.dir().join("data").join("pg_wal");
        std::fs::create_dir_all(&pg_wal).unwrap();
        agent.share_with_postgres();
        let spool = pg_wal.join("dbagent-prefetch");
        let dest = pg_wal.join("RECOVERYXLOG");
        let get =
            |name: &str| agent.run_as_postgres(&["-v", "wal-get", name, dest.to_str().unwrap()]);

        // N restored from the archive; N+1..N+K appear in the spool shortly after.
        let run = get(&names[0]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(
            run.stderr.contains("Restored from the archive"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&segs[0]).unwrap()
        );
        wait_spooled(&spool, &names[1..=DEPTH]);

        // N+1 comes from the spool, byte for byte the archived segment, and leaves it; the
        // spool keeps nothing at or before the segment just asked for.
        let run = get(&names[1]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(
            run.stderr.contains("Restored from the prefetch spool"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&segs[1]).unwrap()
        );
        for n in &names[..=1] {
            assert!(spooled(&spool, n).is_empty(), "{n} still spooled");
        }
        wait_spooled(&spool, &names[2..=5]);

        // The archived copy of N+2 replaced (other content, same name): the spooled copy of
        // the old file is not served; what the archive holds now is.
        let repo = agent.repo();
        let stored = stored_copy(&repo, &names[2]);
        let mut changed = std::fs::read(&segs[2]).unwrap();
        let mid = changed.len() / 2;
        changed[mid] ^= 0xFF;
        let tmp = stored.with_extension("replace");
        std::fs::write(&tmp, zstd::encode_all(&changed[..], 1).unwrap()).unwrap();
        chown_to_postgres(&tmp);
        std::fs::rename(&tmp, &stored).unwrap();
        let run = get(&names[2]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(
            run.stderr.contains("Restored from the archive"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            changed,
            "a stale spooled copy was served"
        );
        assert!(spooled(&spool, &names[2]).is_empty());

        // N+3 removed from the archive: absent (exit 1), although a copy is spooled.
        assert!(!spooled(&spool, &names[3]).is_empty());
        std::fs::remove_file(stored_copy(&repo, &names[3])).unwrap();
        std::fs::remove_file(&dest).unwrap();
        let run = get(&names[3]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            !dest.exists(),
            "nothing may be written for an absent segment"
        );

        // The repository unreadable: recovery must abort (> 125), spooled copy or not.
        assert!(!spooled(&spool, &names[4]).is_empty());
        set_mode(&repo, 0o000);
        let run = get(&names[4]);
        set_mode(&repo, 0o755);
        assert!(run.code > 125, "{}", run.all());
        assert!(!dest.exists());
        let run = get(&names[4]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&segs[4]).unwrap()
        );

        // A damaged spooled copy (truncated) is discarded and the segment fetched again.
        wait_spooled(&spool, &names[5..=5]);
        let entry = spool.join(&spooled(&spool, &names[5])[0]);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&entry)
            .unwrap();
        f.set_len(8192).unwrap();
        drop(f);
        let run = get(&names[5]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(
            run.stderr.contains("Restored from the archive"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&segs[5]).unwrap()
        );
    }
);

pg_test!(wal_get_with_prefetch_off_leaves_no_spool, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: host=x\nrepository:\n  path: REPO\n  prefetch: 0\nstate_dir: STATE\n",
    );
    let seg = complete_segment(&pg, agent.dir());
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(agent.run(&["wal-push", seg.to_str().unwrap()]).code, 0);
    let pg_wal = agent.dir().join("data").join("pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    agent.share_with_postgres();
    let dest = pg_wal.join("RECOVERYXLOG");
    let run = agent.run_as_postgres(&["wal-get", &name, dest.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&seg).unwrap());
    assert!(!pg_wal.join("dbagent-prefetch").exists());
});
