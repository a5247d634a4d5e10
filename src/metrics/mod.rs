//! The metric model the collectors fill, the Prometheus text exposition it renders to, and
//! the catalogue of every family dbagent emits ([`catalogue`]: name, type, HELP, labels).
//!
//! A collector returns [`Family`]s (one metric name, its HELP, its type, its samples). The
//! poller renders every family of a poll into one text once per poll; scrapes are answered
//! from that text, never computed per request.
//!
//! Two name sets (`monitor.metric_names`, [`names::NameSet`]): postgres_exporter's names,
//! labels and units (the default: its dashboards and alert rules work unchanged), and
//! dbagent's own lint-clean names (counters end in `_total`, times in seconds). Collectors emit
//! each signal once, under the name the catalogue gives it; [`names::render_names`] writes it
//! under the name(s) of the chosen set, converting units on the way (the tables are in
//! [`catalogue`]).
//!
//! Layer: foundation. Uses: nothing of the crate. Used by: agent, alert, collect, http, notify,
//! schedule, snapshot.

pub mod catalogue;
pub mod names;

use std::fmt::Write as _;

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

/// Top N across batches that arrive one after the other (one batch per database): items are
/// pushed as they are read, and whenever more than about 2N are held the smallest are spilled
/// into `other` (the caller's `(other)` total). Memory stays at O(N) whatever the number of
/// tables and databases; the result is the same as [`top_n`] over every item at once.
pub struct TopFold<T, O> {
    n: usize,
    items: Vec<T>,
    other: O,
    spilled: usize,
    key: fn(&T) -> f64,
    spill: fn(&mut O, T),
}

impl<T, O: Default> TopFold<T, O> {
    /// Keeps the `n` items with the largest `key`; `spill` adds an item to the `(other)` total.
    pub fn new(n: usize, key: fn(&T) -> f64, spill: fn(&mut O, T)) -> TopFold<T, O> {
        TopFold {
            n,
            items: Vec::new(),
            other: O::default(),
            spilled: 0,
            key,
            spill,
        }
    }

    /// Changes N (the configuration may change between polls); takes effect at the next
    /// compaction.
    pub fn set_n(&mut self, n: usize) {
        self.n = n;
    }

    pub fn push(&mut self, item: T) {
        self.items.push(item);
        if self.items.len() >= self.n.saturating_mul(2).max(64) {
            self.compact();
        }
    }

    /// Compacts now (at most N items held) and gives them, e.g. to add details to the items
    /// of one database while they are still candidates.
    pub fn compacted(&mut self) -> &mut [T] {
        self.compact();
        &mut self.items
    }

    fn compact(&mut self) {
        let key = self.key;
        self.items.sort_by(|a, b| key(b).total_cmp(&key(a)));
        if self.items.len() > self.n {
            for item in self.items.drain(self.n..) {
                (self.spill)(&mut self.other, item);
                self.spilled += 1;
            }
        }
    }

    /// The top items, largest first, the `(other)` total and how many items it holds; the
    /// fold starts empty again.
    pub fn finish(&mut self) -> (Vec<T>, O, usize) {
        self.compact();
        let spilled = std::mem::take(&mut self.spilled);
        (
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.other),
            spilled,
        )
    }
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
    render_with(families, |f, add| add(f.name, f.help, f.kind, 1.0))
}

/// One output family: its name, HELP, type, and the families (with a scale) written under it.
struct Group<'a> {
    help: &'static str,
    kind: Kind,
    parts: Vec<(&'a Family, f64)>,
}

/// Renders `families`, each written under the name(s) `each` gives it: `each` calls its
/// second argument once per name (name, HELP, type, scale of the values), or not at all to
/// leave the family out. Families written under one name are merged (first HELP wins).
pub(crate) fn render_with(
    families: &[Family],
    each: impl Fn(&Family, &mut dyn FnMut(&'static str, &'static str, Kind, f64)),
) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let mut order: Vec<&'static str> = Vec::new();
    let mut by_name: std::collections::HashMap<&'static str, Group<'_>> =
        std::collections::HashMap::new();
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        each(f, &mut |name, help, kind, scale| {
            let entry = by_name.entry(name).or_insert_with(|| {
                order.push(name);
                Group {
                    help,
                    kind,
                    parts: Vec::new(),
                }
            });
            entry.parts.push((f, scale));
        });
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
                write_value(&mut out, s.value * scale);
                out.push('\n');
            }
        }
    }
    out
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

    #[test]
    fn top_n_keeps_the_largest() {
        let (top, rest) = top_n(vec![1.0, 5.0, 3.0, 4.0], 2, |v| *v);
        assert_eq!(top, vec![5.0, 4.0]);
        assert_eq!(rest, vec![3.0, 1.0]);
    }

    #[test]
    fn top_fold_across_batches_equals_top_n_over_all() {
        // Three "databases" of different sizes, pushed one after the other.
        let batches: Vec<Vec<f64>> = vec![
            (0..150).map(|i| f64::from(i % 37)).collect(),
            vec![100.0, 0.5],
            (0..90).map(|i| f64::from(i) * 1.5).collect(),
        ];
        for n in [0, 1, 3, 50, 1000] {
            let mut fold: TopFold<f64, (f64, usize)> = TopFold::new(
                n,
                |v| *v,
                |o, v| {
                    o.0 += v;
                    o.1 += 1
                },
            );
            for b in &batches {
                for v in b {
                    fold.push(*v);
                }
            }
            let (top, other, spilled) = fold.finish();
            let all: Vec<f64> = batches.concat();
            let (want_top, want_rest) = top_n(all, n, |v| *v);
            assert_eq!(top, want_top, "n={n}");
            assert_eq!(spilled, want_rest.len(), "n={n}");
            assert_eq!(other.1, want_rest.len(), "n={n}");
            assert_eq!(other.0, want_rest.iter().sum::<f64>(), "n={n}");
            // The fold starts over.
            assert_eq!(fold.finish().0, Vec::<f64>::new());
        }
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
