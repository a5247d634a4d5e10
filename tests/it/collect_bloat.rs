//! The bloat collector against real clusters: estimates that rise when most rows of a table
//! die and fall after VACUUM FULL, and a poll that skips a relation locked AccessExclusive by
//! another session instead of waiting for it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbagent::collect::Output;
use dbagent::collect::bloat::Bloat;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, value};

/// A table of 100 000 rows (~14 MB, its primary key ~2 MB), autovacuum off, analyzed.
fn create_table(pg: &Cluster, name: &str) {
    pg.psql(&format!(
        "CREATE TABLE {name} (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = off);\n\
         INSERT INTO {name} SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g;\n\
         ANALYZE {name};"
    ));
}

fn table(out: &Output, name: &str, rel: &str) -> f64 {
    value(out, name, &[("datname", "postgres"), ("relname", rel)])
        .unwrap_or_else(|| panic!("no {name} for {rel}: {:#?}", out.status))
}

fn index(out: &Output, name: &str, idx: &str) -> f64 {
    value(out, name, &[("datname", "postgres"), ("indexrelname", idx)])
        .unwrap_or_else(|| panic!("no {name} for {idx}: {:#?}", out.status))
}

pg_test!(
    bloat_estimate_rises_with_dead_rows_and_falls_after_vacuum_full,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        create_table(&pg, "bloated");
        pg.psql("CREATE TABLE small (id int); INSERT INTO small VALUES (1); ANALYZE small;");
        // Vacuumed (so pg_class knows its size) but never analyzed: no pg_stats rows.
        pg.psql("CREATE TABLE never_analyzed WITH (autovacuum_enabled = off) AS SELECT g AS id FROM generate_series(1, 100000) g;\n\
         VACUUM never_analyzed;");
        let mut poller = Poller::new(&pg);
        poller.config.bloat_min_size = 1 << 20;
        let mut c = Bloat::default();

        let fresh = poller.run(&mut c).expect("collect");
        let fresh_ratio = table(&fresh, "dbagent_table_bloat_ratio", "bloated");
        assert!(fresh_ratio < 0.15, "fresh table: {fresh_ratio}");
        let idx_fresh = index(&fresh, "dbagent_index_bloat_ratio", "bloated_pkey");
        assert!(idx_fresh < 0.15, "fresh index: {idx_fresh}");
        assert_eq!(
            value(
                &fresh,
                "dbagent_table_bloat_ratio",
                &[("relname", "bloated"), ("indexrelname", "bloated_pkey")]
            ),
            None,
            "table series carry no index label"
        );
        // Under the size threshold, and without statistics: left out.
        assert_eq!(
            value(&fresh, "dbagent_table_bloat_bytes", &[("relname", "small")]),
            None
        );
        assert_eq!(
            value(
                &fresh,
                "dbagent_table_bloat_bytes",
                &[("relname", "never_analyzed")]
            ),
            None
        );
        assert!(
            value(
                &fresh,
                "dbagent_bloat_skipped_relations",
                &[("reason", "no_statistics")]
            )
            .unwrap()
                >= 1.0
        );
        // The (other) series is always there.
        assert!(
            value(
                &fresh,
                "dbagent_table_bloat_bytes",
                &[("relname", "(other)")]
            )
            .is_some()
        );

        pg.psql(
            "UPDATE bloated SET payload = repeat('y', 100) WHERE id % 10 = 0;\n\
         DELETE FROM bloated WHERE id % 10 <> 0;\n\
         ANALYZE bloated;",
        );
        let bloated = poller.run(&mut c).expect("collect");
        let ratio = table(&bloated, "dbagent_table_bloat_ratio", "bloated");
        let bytes = table(&bloated, "dbagent_table_bloat_bytes", "bloated");
        assert!(ratio > 0.8 && ratio <= 1.0, "after deleting 90%: {ratio}");
        assert!(
            bytes > 10.0 * 1024.0 * 1024.0,
            "after deleting 90%: {bytes}"
        );
        let idx_ratio = index(&bloated, "dbagent_index_bloat_ratio", "bloated_pkey");
        assert!(idx_ratio > 0.7, "index after deleting 90%: {idx_ratio}");
        let status = bloated.status.as_ref().unwrap();
        assert_eq!(status["tables"][0]["relname"], "bloated", "{status}");

        pg.psql("VACUUM FULL bloated;\nANALYZE bloated;");
        let after = poller.run(&mut c).expect("collect");
        // 10 000 rows are under 1 MB now: either gone from the estimates or estimated lean.
        for (name, labels) in [
            ("dbagent_table_bloat_ratio", ("relname", "bloated")),
            (
                "dbagent_index_bloat_ratio",
                ("indexrelname", "bloated_pkey"),
            ),
        ] {
            if let Some(r) = value(&after, name, &[labels]) {
                assert!(r < 0.15, "{name} after VACUUM FULL: {r}");
            }
        }
        // With every size let in, the compacted table is estimated, and lean.
        poller.config.bloat_min_size = 0;
        let all = poller.run(&mut c).expect("collect");
        let r = table(&all, "dbagent_table_bloat_ratio", "bloated");
        assert!(r < 0.15, "after VACUUM FULL: {r}");
        let r = index(&all, "dbagent_index_bloat_ratio", "bloated_pkey");
        assert!(r < 0.15, "index after VACUUM FULL: {r}");
    }
);

/// A psql session that holds `LOCK TABLE rel IN ACCESS EXCLUSIVE MODE` until dropped.
struct LockHolder(Child);

impl LockHolder {
    fn take(pg: &Cluster, rel: &str) -> LockHolder {
        let mut child = Command::new(pg.version().bin("psql"))
            .args(["-X", "-q", "-d", &pg.conninfo()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql");
        let stdin = child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "BEGIN; LOCK TABLE {rel} IN ACCESS EXCLUSIVE MODE;").expect("write");
        stdin.flush().expect("flush");
        let holder = LockHolder(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while pg.psql(&format!(
            "SELECT count(*) FROM pg_locks WHERE relation = '{rel}'::regclass \
             AND mode = 'AccessExclusiveLock' AND granted"
        )) != "1"
        {
            assert!(Instant::now() < deadline, "the lock was never granted");
            std::thread::sleep(Duration::from_millis(50));
        }
        holder
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pg_test!(
    relation_locked_access_exclusive_is_skipped_without_waiting,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        create_table(&pg, "busy");
        create_table(&pg, "idle");
        let conninfo = format!(
            "{} options='-c statement_timeout=3000 -c lock_timeout=1000'",
            pg.conninfo()
        );
        let mut poller = Poller::with_conninfo(&conninfo);
        poller.config.bloat_min_size = 1 << 20;
        let mut c = Bloat::default();

        let before = poller.run(&mut c).expect("collect");
        table(&before, "dbagent_table_bloat_ratio", "busy");

        let lock = LockHolder::take(&pg, "busy");
        let started = Instant::now();
        let out = poller
            .run(&mut c)
            .expect("the poll neither waits for the lock nor times out");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            value(&out, "dbagent_table_bloat_ratio", &[("relname", "busy")]),
            None
        );
        assert_eq!(
            value(&out, "dbagent_index_bloat_ratio", &[("relname", "busy")]),
            None,
            "the locked table's indexes are skipped too"
        );
        table(&out, "dbagent_table_bloat_ratio", "idle");
        index(&out, "dbagent_index_bloat_ratio", "idle_pkey");
        assert!(
            value(
                &out,
                "dbagent_bloat_skipped_relations",
                &[("reason", "locked")]
            )
            .unwrap()
                >= 1.0
        );
        let status = out.status.as_ref().unwrap();
        assert!(
            status["skipped_locked"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["relation"] == "public.busy" && n["datname"] == "postgres"),
            "{status}"
        );

        drop(lock);
        let out = poller.run(&mut c).expect("collect");
        table(&out, "dbagent_table_bloat_ratio", "busy");
    }
);
