//! The two name sets `/metrics` can serve (`monitor.metric_names`): which families each
//! serves comes from the catalogue's tables ([`catalogue::EXPORTER_NAMES`],
//! [`catalogue::EXPORTER_ONLY`]); [`render_names`] writes a poll's families under the names of
//! one set, converting units as it writes (nothing is copied).

use super::{Family, catalogue, render_with};

/// Which metric names `dbagent run` serves (`monitor.metric_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSet {
    /// postgres_exporter's names, labels and units, plus dbagent's own `dbagent_*` families.
    #[default]
    PostgresExporter,
    /// dbagent's lint-clean names only (`promtool check metrics` passes).
    Dbagent,
    /// Both sets at once (for a migration from one to the other).
    Both,
}

impl NameSet {
    /// Whether a family of the catalogue's set `set` is served in this mode.
    pub fn serves(self, set: catalogue::Set) -> bool {
        matches!(
            (self, set),
            (_, catalogue::Set::Both)
                | (NameSet::Both, _)
                | (NameSet::PostgresExporter, catalogue::Set::Exporter)
                | (NameSet::Dbagent, catalogue::Set::Dbagent)
        )
    }

    /// The value as written in dbagent.yml.
    pub fn as_str(self) -> &'static str {
        match self {
            NameSet::PostgresExporter => "postgres_exporter",
            NameSet::Dbagent => "dbagent",
            NameSet::Both => "both",
        }
    }
}

/// Like [`render`], but under the names of the set `names`: a family the set does not serve is
/// left out, and a family postgres_exporter names differently is also (or only) written under
/// the exporter's name, type and unit ([`catalogue::EXPORTER_NAMES`]). Nothing is copied: the
/// samples are converted as they are written.
pub fn render_names(families: &[Family], names: NameSet) -> String {
    render_with(families, |f, add| {
        if names.serves(catalogue::set_of(f.name)) {
            add(f.name, f.help, f.kind, 1.0);
        }
        if names.serves(catalogue::Set::Exporter) {
            for r in catalogue::exporter_names_of(f.name) {
                add(r.to.name, r.to.help, r.to.kind, r.scale);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One collector family, written under the names of each mode: dbagent's lint-clean name,
    /// the exporter's (with its unit), or both; exporter-only families only where served.
    #[test]
    fn each_mode_writes_its_names_with_their_units() {
        use crate::metrics::catalogue::*;
        let families = [
            Family::of(&PG_STAT_DATABASE_BLK_READ_TIME_SECONDS_TOTAL)
                .with(&[("datname", "app")], 1.5),
            Family::of(&PG_STAT_DATABASE_XACT_COMMIT_TOTAL).with(&[("datname", "app")], 7.0),
            Family::of(&PG_UP).with(&[], 1.0),
            Family::of(&PG_REPLICATION_LAG_SECONDS).with(&[], 2.0),
        ];
        let names = |mode| -> Vec<String> {
            render_names(&families, mode)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            names(NameSet::PostgresExporter),
            [
                "pg_stat_database_blk_read_time{datname=\"app\"} 1500",
                "pg_stat_database_xact_commit{datname=\"app\"} 7",
                "pg_up 1",
                "pg_replication_lag_seconds 2",
                "pg_replication_lag 2",
            ]
        );
        assert_eq!(
            names(NameSet::Dbagent),
            [
                "pg_stat_database_blk_read_time_seconds_total{datname=\"app\"} 1.5",
                "pg_stat_database_xact_commit_total{datname=\"app\"} 7",
                "pg_up 1",
                "pg_replication_lag_seconds 2",
            ]
        );
        assert_eq!(names(NameSet::Both).len(), 7);

        let text = render_names(&families, NameSet::PostgresExporter);
        assert!(
            text.contains("# TYPE pg_stat_database_xact_commit counter\n"),
            "{text}"
        );
        assert!(!text.contains("_total"), "{text}");

        // Exporter-only families (their own labels; run-time pg_settings_* names) are left
        // out of dbagent's set.
        let mut setting = Family::of(&PG_SETTINGS_);
        setting.name = crate::metrics::intern("pg_settings_shared_buffers_bytes");
        let exporter_only = [
            Family::of(&PG_LOCKS_COUNT).with(&[("datname", "app"), ("mode", "sharelock")], 0.0),
            setting.with(&[], 8192.0),
        ];
        assert_eq!(render_names(&exporter_only, NameSet::Dbagent), "");
        let text = render_names(&exporter_only, NameSet::PostgresExporter);
        assert!(
            text.contains("\npg_locks_count{datname=\"app\",mode=\"sharelock\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\npg_settings_shared_buffers_bytes 8192\n"),
            "{text}"
        );
    }
}
