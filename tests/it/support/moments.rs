//! Recording moments of a pgbench workload for point-in-time restore tests: a checksum of the
//! data, a time, an LSN, a restore point and a transaction ID that all name one state.

use std::process::{Command, Stdio};

use crate::support::cluster::{Cluster, SUPERUSER, SUPERUSER_PASSWORD};
use crate::support::dbagent::Agent;

/// The state of pgbench's tables in one line.
pub const CHECKSUM: &str = "SELECT (SELECT coalesce(sum(abalance), 0)::text || '/' || count(*) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM pgbench_history)";

/// pgbench against `pg` as the kit's superuser (stdout discarded, stderr piped).
pub fn pgbench(pg: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(pg.version().bin("pgbench"));
    cmd.args([
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
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// A session that can hold a transaction open across statements (the moment's lock).
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Session {
    pub fn new(pg: &Cluster) -> Session {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&pg.conninfo(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        });
        Session { rt, client }
    }

    pub fn q(&self, sql: &str) -> String {
        self.rt.block_on(async {
            let rows = self.client.simple_query(sql).await.unwrap();
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .unwrap_or_default()
        })
    }
}

/// One recorded moment: every target kind pointing at the same state of the data.
#[derive(Debug, Clone)]
pub struct Moment {
    pub checksum: String,
    pub time: String,
    pub lsn: String,
    pub xid: String,
    pub name: String,
}

/// Records a moment while writers wait: the data's checksum, the time, the LSN, a restore point
/// and a transaction ID all name the same state.
pub fn capture(agent: &Agent, pg: &Cluster, name: &str) -> Moment {
    let s = Session::new(pg);
    s.q("BEGIN");
    s.q("LOCK TABLE pgbench_accounts, pgbench_history IN EXCLUSIVE MODE");
    let checksum = s.q(CHECKSUM);
    let time = s.q(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    let lsn = s.q("SELECT pg_current_wal_insert_lsn()::text");
    let rp = agent.run(&["restore-point", name, "--json"]);
    assert_eq!(rp.code, 0, "{}", rp.all());
    let xid = s.q("SELECT txid_current()::text");
    s.q("COMMIT");
    Moment {
        checksum,
        time,
        lsn,
        xid,
        name: name.to_string(),
    }
}

/// Runs pgbench against `pg` for `secs` seconds (two clients), waiting for it.
pub fn load(pg: &Cluster, secs: u32) {
    let out = pgbench(pg, &["-n", "-c", "2", "-T", &secs.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pgbench -i -s 1` on `pg`.
pub fn pgbench_init(pg: &Cluster) {
    let init = pgbench(pg, &["-i", "-s", "1", "-q"]).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}
