//! The metric model the collectors fill, the Prometheus text exposition it renders to, and
//! the catalogue of every family dbagent emits ([`catalogue`]: name, type, HELP, labels).
//!
//! A collector returns [`Family`]s (one metric name, its HELP, its type, its samples). The
//! poller renders every family of a poll into one text once per poll; scrapes are answered
//! from that text, never computed per request.
//!
//! Two name sets (`monitor.metric_names`, [`NameSet`]): postgres_exporter's names, labels and
//! units (the default: its dashboards and alert rules work unchanged), and dbagent's own
//! lint-clean names (counters end in `_total`, times in seconds). Collectors emit each signal
//! once, under the name the catalogue gives it; [`render_names`] writes it under the name(s)
//! of the chosen set, converting units on the way (the tables are in [`catalogue`]).
//!
//! Layer: foundation. Uses: nothing of the crate. Used by: agent, alert, collect, http, notify,
//! schedule, snapshot.

pub mod catalogue;

use std::fmt::Write as _;

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

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One sample: label pairs and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// One metric name with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Whether the baseline store learns this family's series (cluster- and database-level
    /// signals and top-N query times; never per-table series, which would be unbounded).
    pub baseline: bool,
    pub samples: Vec<Sample>,
}

impl Family {
    /// A gauge by name; emitters use [`Family::of`] with a catalogue entry instead.
    #[cfg(test)]
    pub(crate) fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: Kind::Gauge,
            baseline: false,
            samples: Vec::new(),
        }
    }

    /// A counter by name; emitters use [`Family::of`] with a catalogue entry instead.
    #[cfg(test)]
    pub(crate) fn counter(name: &'static str, help: &'static str) -> Family {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        Family {
            name,
            help,
            kind: Kind::Counter,
            baseline: false,
            samples: Vec::new(),
        }
    }

    /// Marks the family as learned by the baseline store.
    pub fn with_baseline(mut self) -> Family {
        self.baseline = true;
        self
    }

    /// Adds a sample (builder style).
    pub fn with(mut self, labels: &[(&'static str, &str)], value: f64) -> Family {
        self.push(labels, value);
        self
    }

    /// Adds a sample.
    pub fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
            value,
        });
    }

    /// A series key for the baseline store: `name{a="x",b="y"}` with labels sorted.
    pub fn series_key(&self, sample: &Sample) -> String {
        let mut labels = sample.labels.clone();
        labels.sort();
        let mut out = String::from(self.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
        out
    }
}

/// Keeps the `n` samples with the largest `key`, and folds the rest into one sample whose
/// `label` is `(other)` and whose value is the sum (for totals) of the rest. Returns the kept
/// samples' indices order-preserving by rank. Used to bound per-table and per-query series.
pub fn top_n<T>(mut items: Vec<T>, n: usize, key: impl Fn(&T) -> f64) -> (Vec<T>, Vec<T>) {
    items.sort_by(|a, b| key(b).total_cmp(&key(a)));
    let rest = if items.len() > n {
        items.split_off(n)
    } else {
        Vec::new()
    };
    (items, rest)
}

/// A metric name made at run time (`pg_settings_<setting>`) as the `&'static str` a
/// [`Family`] holds: each distinct name is allocated once for the life of the process, so the
/// memory is bounded by the number of distinct names (the server's settings).
pub fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The label value standing for "everything outside the top N".
pub const OTHER: &str = "(other)";

/// Renders families in the Prometheus text exposition format (version 0.0.4), each under its
/// own name. Families with the same name are merged (first HELP wins); families without
/// samples are left out.
pub fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    render_into(&mut out, families, None);
    out
}

/// Like [`render`], but under the names of the set `names`: a family the set does not serve is
/// left out, and a family postgres_exporter names differently is also (or only) written under
/// the exporter's name, type and unit ([`catalogue::EXPORTER_NAMES`]). Nothing is copied: the
/// samples are converted as they are written.
pub fn render_names(families: &[Family], names: NameSet) -> String {
    let mut out = String::with_capacity(64 * 1024);
    render_into(&mut out, families, Some(names));
    out
}

/// One output family: its name, HELP, type, and the families (with a scale) written under it.
struct Group<'a> {
    help: &'static str,
    kind: Kind,
    parts: Vec<(&'a Family, f64)>,
}

fn render_into(out: &mut String, families: &[Family], names: Option<NameSet>) {
    let mut order: Vec<&'static str> = Vec::new();
    let mut by_name: std::collections::HashMap<&'static str, Group<'_>> =
        std::collections::HashMap::new();
    let mut add = |name: &'static str, help: &'static str, kind: Kind, f, scale| {
        let entry = by_name.entry(name).or_insert_with(|| {
            order.push(name);
            Group {
                help,
                kind,
                parts: Vec::new(),
            }
        });
        entry.parts.push((f, scale));
    };
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        let Some(names) = names else {
            add(f.name, f.help, f.kind, f, 1.0);
            continue;
        };
        if names.serves(catalogue::set_of(f.name)) {
            add(f.name, f.help, f.kind, f, 1.0);
        }
        if names.serves(catalogue::Set::Exporter) {
            for r in catalogue::exporter_names_of(f.name) {
                add(r.to.name, r.to.help, r.to.kind, f, r.scale);
            }
        }
    }
    for name in order {
        let group = &by_name[name];
        let _ = writeln!(out, "# HELP {name} {}", escape_help(group.help));
        let _ = writeln!(
            out,
            "# TYPE {name} {}",
            match group.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            }
        );
        for (f, scale) in &group.parts {
            for s in &f.samples {
                out.push_str(name);
                if !s.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in s.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                out.push(' ');
                write_value(out, s.value * scale);
                out.push('\n');
            }
        }
    }
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let f = Family::gauge("pg_up", "Whether the last poll reached the server.").with(&[], 1.0);
        let g = Family::counter("dbagent_collector_errors_total", "Errors.")
            .with(&[("collector", "a\"b\\c\nd")], 3.0);
        let text = render(&[f, g, Family::gauge("empty", "none")]);
        insta::assert_snapshot!(text, @r###"
        # HELP pg_up Whether the last poll reached the server.
        # TYPE pg_up gauge
        pg_up 1
        # HELP dbagent_collector_errors_total Errors.
        # TYPE dbagent_collector_errors_total counter
        dbagent_collector_errors_total{collector="a\"b\\c\nd"} 3
        "###);
    }

    #[test]
    fn same_name_families_merge_and_values_format() {
        let a = Family::gauge("x_ratio", "r").with(&[("d", "a")], 0.5);
        let b = Family::gauge("x_ratio", "r").with(&[("d", "b")], f64::NAN);
        assert_eq!(
            render(&[a, b]),
            "# HELP x_ratio r\n# TYPE x_ratio gauge\nx_ratio{d=\"a\"} 0.5\nx_ratio{d=\"b\"} NaN\n"
        );
    }

    /// One collector family, written under the names of each mode: dbagent's lint-clean name,
    /// the exporter's (with its unit), or both; exporter-only families only where served.
    #[test]
    fn each_mode_writes_its_names_with_their_units() {
        use catalogue::*;
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
    }

    #[test]
    fn top_n_keeps_the_largest() {
        let (top, rest) = top_n(vec![1.0, 5.0, 3.0, 4.0], 2, |v| *v);
        assert_eq!(top, vec![5.0, 4.0]);
        assert_eq!(rest, vec![3.0, 1.0]);
    }

    #[test]
    fn series_key_sorts_labels() {
        let f = Family::gauge("m", "h");
        let s = Sample {
            labels: vec![("b", "2".into()), ("a", "1".into())],
            value: 0.0,
        };
        assert_eq!(f.series_key(&s), "m{a=\"1\",b=\"2\"}");
    }
}
