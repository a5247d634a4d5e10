//! Every registered collector on a real primary and its standby: each succeeds, and what they
//! render together passes `promtool check metrics` (counters end in `_total`, units in names,
//! HELP and TYPE for every family, no duplicate names).

use dbagent::collect;
use dbagent::metrics::names::NameSet;
use dbagent::metrics::{self, Kind, catalogue};

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::Poller;

/// Runs every collector once and returns their families.
fn collect_all(poller: &Poller) -> Vec<metrics::Family> {
    let mut families = Vec::new();
    for mut c in collect::all() {
        let out = poller
            .run(c.as_mut())
            .unwrap_or_else(|e| panic!("collector {} failed: {e}", c.name()));
        for f in &out.families {
            // postgres_exporter's own families keep its names (see the accepted complaints).
            if !NameSet::Dbagent.serves(catalogue::set_of(f.name)) {
                continue;
            }
            match f.kind {
                Kind::Counter => assert!(f.name.ends_with("_total"), "{}", f.name),
                Kind::Gauge => assert!(
                    !["_total", "_count", "_sum", "_bucket"]
                        .iter()
                        .any(|s| f.name.ends_with(s)),
                    "{}",
                    f.name
                ),
            }
            assert!(f.help.ends_with('.'), "{}: {}", f.name, f.help);
        }
        families.extend(out.families);
    }
    families
}

/// promtool's complaints about postgres_exporter's names that dbagent accepts to match them.
const ACCEPTED: &[&str] = &[
    "counter metrics should have \"_total\" suffix",
    "non-histogram and non-summary metrics should not have \"_count\" suffix",
    // pg_settings_wal_summary_keep_time_seconds (a server setting's name).
    "metric name should not include type 'summary'",
];

/// `promtool check metrics` on `text`: its complaints, empty when there are none.
fn promtool(text: &str) -> String {
    let (ok, complaints) = crate::support::sidecar::promtool_check(text);
    if !ok && complaints.is_empty() {
        return "promtool failed without saying why".into();
    }
    complaints
}

pg_test!(
    collect_all_output_passes_promtool_on_primary_and_standby,
    |v| {
        let primary = Cluster::start(
            v,
            ClusterOptions {
                archive_mode: true,
                archive_command: Some("/bin/true".into()),
                ..ClusterOptions::default()
            },
        );
        primary.psql(
            "CREATE TABLE a AS SELECT generate_series(1, 1000) AS id; \
         CREATE TABLE b AS SELECT generate_series(1, 1000) AS id; \
         DELETE FROM a WHERE id < 100; CHECKPOINT; SELECT pg_switch_wal()",
        );
        let replica = primary.start_replica();
        for pg in [&primary, &replica] {
            let mut poller = Poller::new(pg);
            poller.config.top_tables = 1;
            let families = collect_all(&poller);
            // postgres_exporter's names: promtool's only complaints are the accepted ones
            // (docs/metrics.md, Metric names), about the exporter's own names.
            let exporter = metrics::names::render_names(&families, NameSet::PostgresExporter);
            for complaint in promtool(&exporter).lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    ACCEPTED.iter().any(|a| complaint.contains(a)),
                    "{complaint}"
                );
            }
            let text = metrics::names::render_names(&families, NameSet::Dbagent);
            for name in [
                "dbagent_connections_exhaustion_ratio",
                "pg_stat_database_blks_hit_total",
                "pg_stat_user_tables_n_dead_tup",
                "dbagent_locks_held",
                "pg_replication_is_replica",
                "pg_stat_bgwriter_checkpoints_req_total",
            ] {
                assert!(
                    text.contains(&format!("# TYPE {name} ")),
                    "{name} missing:\n{text}"
                );
            }
            let complaints = promtool(&text);
            assert!(complaints.is_empty(), "{complaints}\n{text}");
        }
    }
);
