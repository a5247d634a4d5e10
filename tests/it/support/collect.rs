//! Running one collector against a real cluster, straight through the library: a connection
//! like the agent's, the context of a poll, and lookups into what the collector returned.

use dbagent::collect::{CollectError, Collector, Ctx, Family, Output};
use dbagent::config::MonitorConfig;
use dbagent::pg::{ConnInfo, PgTarget, ServerVersion, SessionOptions};

use super::cluster::Cluster;

/// A polling connection to a cluster, on its own runtime.
pub struct Poller {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    version: ServerVersion,
    in_recovery: bool,
    dbname: String,
    pub config: MonitorConfig,
    /// The repository the collectors that read it see (none by default).
    pub repository: Option<dbagent::repo::Repo>,
    /// The agent's state directory the collectors see (none by default).
    pub state_dir: Option<std::path::PathBuf>,
}

impl Poller {
    /// Connects as the cluster's superuser to database `postgres`.
    pub fn new(pg: &Cluster) -> Poller {
        Poller::with_conninfo(&pg.conninfo())
    }

    /// Connects with `conninfo` (e.g. as a least-privilege role).
    pub fn with_conninfo(conninfo: &str) -> Poller {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let info = ConnInfo::parse(conninfo).expect("conninfo");
        let target = PgTarget::new(&info, SessionOptions::default()).expect("target");
        let dbname = target.info().dbname.clone();
        let (client, version, in_recovery) = rt.block_on(async {
            let client = target.connect().await.expect("connect");
            let version = ServerVersion::detect(&client).await.expect("version");
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .expect("pg_is_in_recovery");
            (client, version, row.get(0))
        });
        Poller {
            rt,
            client,
            version,
            in_recovery,
            dbname,
            config: MonitorConfig::default(),
            repository: None,
            state_dir: None,
        }
    }

    /// One poll of `collector`.
    pub fn run(&self, collector: &mut dyn Collector) -> Result<Output, CollectError> {
        let ctx = Ctx {
            client: &self.client,
            version: &self.version,
            in_recovery: self.in_recovery,
            dbname: &self.dbname,
            cluster_wide: true,
            config: &self.config,
            now: jiff::Timestamp::now(),
            repository: self.repository.as_ref(),
            state_dir: self.state_dir.as_deref(),
        };
        self.rt.block_on(collector.collect(&ctx))
    }
}

/// The family called `name`, if the output has one.
pub fn family<'a>(out: &'a Output, name: &str) -> Option<&'a Family> {
    out.families.iter().find(|f| f.name == name)
}

/// The value of the sample of `name` whose labels include every pair in `labels`.
pub fn value(out: &Output, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    out.families
        .iter()
        .filter(|f| f.name == name)
        .flat_map(|f| f.samples.iter())
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}
