//! Client sessions a test holds open against a cluster: to fill connection slots, leave a
//! transaction idle, hold a lock, or wait on one while a collector looks at the server.
//!
//! The sessions live on their own runtime with one worker thread, so their connections keep
//! being served while the test thread sleeps or polls; they close when [`Sessions`] is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::cluster::Cluster;

/// Sessions to one cluster, addressed by the index [`Sessions::open`] returned.
pub struct Sessions {
    rt: tokio::runtime::Runtime,
    conninfo: String,
    clients: Vec<Arc<tokio_postgres::Client>>,
}

impl Sessions {
    pub fn new(pg: &Cluster) -> Sessions {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("sessions runtime");
        Sessions {
            rt,
            conninfo: pg.conninfo(),
            clients: Vec::new(),
        }
    }

    /// Opens one more session as the superuser; returns its index.
    pub fn open(&mut self) -> usize {
        let conninfo = self.conninfo.clone();
        let client = self.rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .expect("opening a test session");
            tokio::spawn(connection);
            client
        });
        self.clients.push(Arc::new(client));
        self.clients.len() - 1
    }

    /// Runs `sql` (one or more statements) in session `i` and waits for it.
    pub fn execute(&self, i: usize, sql: &str) {
        let client = Arc::clone(&self.clients[i]);
        self.rt
            .block_on(async move { client.batch_execute(sql).await })
            .unwrap_or_else(|e| panic!("session {i} running {sql}: {e}"));
    }

    /// Starts `sql` in session `i` without waiting (e.g. a statement that will block).
    pub fn spawn(&self, i: usize, sql: &str) -> JoinHandle<Result<(), tokio_postgres::Error>> {
        let client = Arc::clone(&self.clients[i]);
        let sql = sql.to_owned();
        self.rt
            .spawn(async move { client.batch_execute(&sql).await })
    }

    /// Waits up to `timeout` for a spawned statement to finish; whether it did.
    pub fn finished(
        &self,
        handle: JoinHandle<Result<(), tokio_postgres::Error>>,
        timeout: Duration,
    ) -> bool {
        self.rt
            .block_on(async { tokio::time::timeout(timeout, handle).await })
            .is_ok_and(|joined| joined.is_ok_and(|r| r.is_ok()))
    }
}
