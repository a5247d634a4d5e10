//! Usage over a window from consecutive samples of cumulative counters, honest about resets.
//!
//! Each pair of consecutive samples is a *step*:
//! - same server process (postmaster start time) and same `stats_reset`: the step's activity
//!   is `now - before` per counter; a counter that went backwards (a single-table reset) counts
//!   `now`, its activity since that reset;
//! - `stats_reset` moved (someone ran `pg_stat_reset()`): every counter restarted at zero
//!   inside the step, so the step's activity is `now`, and the step covers only the time from
//!   the reset to its end;
//! - another server process (restart, crash, failover to another server): the counters may
//!   belong to another history altogether, so the step counts neither activity nor coverage.
//!   The next step starts a new segment.
//!
//! An object's *observed* time is the coverage of the steps in which it exists at both ends;
//! one that appears in a step (created meanwhile) has all its counts in that step, but no
//! observed time until the next. "Unused over the window" therefore means: observed long
//! enough, and zero scans in every segment.

use std::collections::HashMap;

use super::sample::Sample;

/// How two consecutive samples relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Normal,
    Reset,
    ServerChange,
}

/// Postmaster start times closer than this are the same server process (float rounding).
const SAME_START_SECS: f64 = 0.5;

/// Classifies the step from `a` to `b` and returns its covered seconds.
pub fn step(a: &Sample, b: &Sample) -> (StepKind, f64) {
    let span = (b.taken - a.taken)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0);
    if (a.postmaster_start - b.postmaster_start).abs() > SAME_START_SECS {
        return (StepKind::ServerChange, 0.0);
    }
    if a.stats_reset != b.stats_reset {
        let end = b.taken.as_millisecond() as f64 / 1000.0;
        let covered = match b.stats_reset {
            Some(reset) => (end - reset).clamp(0.0, span),
            None => 0.0,
        };
        return (StepKind::Reset, covered);
    }
    (StepKind::Normal, span)
}

/// The activity of one counter in a step.
pub fn delta(kind: StepKind, before: f64, now: f64) -> f64 {
    match kind {
        StepKind::ServerChange => 0.0,
        StepKind::Reset => now.max(0.0),
        StepKind::Normal if now >= before => now - before,
        StepKind::Normal => now.max(0.0),
    }
}

/// What the samples of a window cover, for the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Coverage {
    pub samples: usize,
    pub first_sample: Option<jiff::Timestamp>,
    pub last_sample: Option<jiff::Timestamp>,
    /// Seconds of the window during which counters could be compared.
    pub observed_seconds: f64,
    pub stats_resets: usize,
    pub server_changes: usize,
}

/// The window's coverage (see [`Window`]).
pub fn coverage(samples: &[Sample]) -> Coverage {
    Window::of(samples).coverage
}

/// One index's usage over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexUsage {
    pub scans: f64,
    pub observed_seconds: f64,
}

/// Per index, its scans over the window (see [`Window`]).
pub fn index_usage(samples: &[Sample]) -> HashMap<i64, IndexUsage> {
    Window::of(samples).indexes
}

/// One table's reads over a run of steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableUsage {
    pub seq_scan: f64,
    pub seq_tup_read: f64,
    pub idx_scan: f64,
    pub idx_tup_fetch: f64,
    pub autovacuum: f64,
    pub observed_seconds: f64,
    /// Steps counted (after the newest change of the table's index set).
    pub steps: usize,
}

/// Per table, the reads since the newest change of its set of indexes (see [`Window`]).
pub fn table_usage(samples: &[Sample]) -> HashMap<i64, TableUsage> {
    Window::of(samples).tables
}

/// One table's dead tuples over the window: the smallest count and share of dead rows in any
/// sample that has the table, and autovacuum's runs between consecutive samples that both have
/// it (the autovacuum rule asks whether dead rows stayed high in every sample).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadTuples {
    /// Samples that have the table.
    pub samples: usize,
    pub min_dead: f64,
    /// Smallest `n_dead_tup / (n_live_tup + n_dead_tup)` (0 for a sample with no rows).
    pub min_dead_ratio: f64,
    pub autovacuum_runs: f64,
}

/// The window, folded one sample at a time, oldest first. Only the newest sample is kept, so
/// memory follows the size of one sample (the number of tables and indexes), not the number of
/// samples in the window.
///
/// - Index usage: per index, its scans in every step, and the observed time of the steps in
///   which it exists at both ends.
/// - Table usage: per table, the reads since the newest change of its set of indexes: scans
///   made before an index was added or dropped describe a schema that no longer exists, and the
///   step in which the index set changed holds the index build's own scan. Tables whose index
///   set never changed in the window count every step.
#[derive(Debug, Default)]
pub struct Window {
    pub coverage: Coverage,
    pub indexes: HashMap<i64, IndexUsage>,
    pub tables: HashMap<i64, TableUsage>,
    pub dead: HashMap<i64, DeadTuples>,
    last: Option<Sample>,
    /// The index set of each table in `last`.
    last_sets: HashMap<i64, Vec<i64>>,
}

impl Window {
    /// The window of `samples` (oldest first), cloning each one.
    pub fn of(samples: &[Sample]) -> Window {
        let mut w = Window::default();
        for s in samples {
            w.push(s.clone());
        }
        w
    }

    /// The newest sample pushed (the current one, once the run's reading is pushed last).
    pub fn last(&self) -> Option<&Sample> {
        self.last.as_ref()
    }

    /// Adds the next sample (newer than every one before it).
    pub fn push(&mut self, s: Sample) {
        let sets = index_sets(&s);
        self.coverage.samples += 1;
        self.coverage.first_sample.get_or_insert(s.taken);
        self.coverage.last_sample = Some(s.taken);
        for t in &s.tables {
            let total = t.n_live_tup + t.n_dead_tup;
            let ratio = if total > 0.0 {
                t.n_dead_tup / total
            } else {
                0.0
            };
            let d = self.dead.entry(t.relid).or_insert(DeadTuples {
                samples: 0,
                min_dead: f64::INFINITY,
                min_dead_ratio: f64::INFINITY,
                autovacuum_runs: 0.0,
            });
            d.samples += 1;
            d.min_dead = d.min_dead.min(t.n_dead_tup);
            d.min_dead_ratio = d.min_dead_ratio.min(ratio);
        }
        if let Some(prev) = self.last.take() {
            self.step(&prev, &s, &sets);
        }
        self.last = Some(s);
        self.last_sets = sets;
    }

    fn step(&mut self, prev: &Sample, s: &Sample, sets: &HashMap<i64, Vec<i64>>) {
        let (kind, covered) = step(prev, s);
        self.coverage.observed_seconds += covered;
        match kind {
            StepKind::Reset => self.coverage.stats_resets += 1,
            StepKind::ServerChange => self.coverage.server_changes += 1,
            StepKind::Normal => {}
        }
        let before: HashMap<i64, f64> = prev
            .indexes
            .iter()
            .map(|i| (i.indexrelid, i.idx_scan))
            .collect();
        for i in &s.indexes {
            let u = self.indexes.entry(i.indexrelid).or_default();
            match before.get(&i.indexrelid) {
                Some(b) => {
                    u.scans += delta(kind, *b, i.idx_scan);
                    u.observed_seconds += covered;
                }
                // Created during the step: all its scans happened in it.
                None if kind != StepKind::ServerChange => u.scans += i.idx_scan.max(0.0),
                None => {}
            }
        }
        drop(before);
        let before: HashMap<i64, &super::sample::TableStat> =
            prev.tables.iter().map(|t| (t.relid, t)).collect();
        for t in &s.tables {
            let b = before.get(&t.relid);
            if let (Some(b), Some(d)) = (b, self.dead.get_mut(&t.relid)) {
                d.autovacuum_runs += delta(kind, b.autovacuum_count, t.autovacuum_count);
            }
            let u = self.tables.entry(t.relid).or_default();
            if self.last_sets.get(&t.relid) != sets.get(&t.relid) {
                // Start over after the change (this step holds the build).
                *u = TableUsage::default();
                continue;
            }
            let Some(b) = b else {
                continue;
            };
            u.seq_scan += delta(kind, b.seq_scan, t.seq_scan);
            u.seq_tup_read += delta(kind, b.seq_tup_read, t.seq_tup_read);
            u.idx_scan += delta(kind, b.idx_scan, t.idx_scan);
            u.idx_tup_fetch += delta(kind, b.idx_tup_fetch, t.idx_tup_fetch);
            u.autovacuum += delta(kind, b.autovacuum_count, t.autovacuum_count);
            u.observed_seconds += covered;
            if kind != StepKind::ServerChange {
                u.steps += 1;
            }
        }
    }
}

/// The sorted index set of each table of `s`.
fn index_sets(s: &Sample) -> HashMap<i64, Vec<i64>> {
    let mut m: HashMap<i64, Vec<i64>> = HashMap::new();
    for i in &s.indexes {
        m.entry(i.relid).or_default().push(i.indexrelid);
    }
    for v in m.values_mut() {
        v.sort_unstable();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::sample::IndexStat;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn sample(secs: i64, reset: Option<f64>, start: f64, scans: &[(i64, f64)]) -> Sample {
        Sample {
            taken: at(secs),
            dbname: "db".into(),
            stats_reset: reset,
            postmaster_start: start,
            in_recovery: false,
            tables: Vec::new(),
            indexes: scans
                .iter()
                .map(|(id, n)| IndexStat {
                    indexrelid: *id,
                    relid: 1,
                    schema: "public".into(),
                    table: "t".into(),
                    name: format!("i{id}"),
                    idx_scan: *n,
                    size_bytes: 0.0,
                    enforces: None,
                    last_idx_scan: None,
                })
                .collect(),
        }
    }

    #[test]
    fn advise_reset_in_the_window_keeps_earlier_usage_and_counts_later_usage() {
        let reset_at = (1_800_000_000 + 150) as f64;
        let s = vec![
            sample(0, None, 1.0, &[(1, 5.0), (2, 0.0), (3, 7.0)]),
            sample(100, None, 1.0, &[(1, 9.0), (2, 0.0), (3, 7.0)]),
            // pg_stat_reset() at 150: everything back to zero, index 3 used twice since.
            sample(200, Some(reset_at), 1.0, &[(1, 0.0), (2, 0.0), (3, 2.0)]),
        ];
        let u = index_usage(&s);
        assert_eq!(u[&1].scans, 4.0, "used before the reset: still used");
        assert_eq!(u[&2].scans, 0.0);
        assert_eq!(u[&3].scans, 2.0, "used after the reset");
        assert_eq!(
            u[&2].observed_seconds, 150.0,
            "100 s, then 50 s since the reset"
        );
        let c = coverage(&s);
        assert_eq!(c.stats_resets, 1);
        assert_eq!(c.observed_seconds, 150.0);
    }

    #[test]
    fn advise_server_change_counts_nothing_and_backwards_counter_counts_since_reset() {
        let s = vec![
            sample(0, None, 1.0, &[(1, 50.0)]),
            // Another server: counters unrelated, step ignored.
            sample(60, None, 2.0, &[(1, 80.0)]),
            // Single-index reset: went backwards, 3 scans since.
            sample(120, None, 2.0, &[(1, 3.0), (4, 6.0)]),
        ];
        let u = index_usage(&s);
        assert_eq!(u[&1].scans, 3.0);
        assert_eq!(u[&1].observed_seconds, 60.0);
        // Created during the last step: its scans count, its observed time does not yet.
        assert_eq!(u[&4].scans, 6.0);
        assert_eq!(u[&4].observed_seconds, 0.0);
        assert_eq!(coverage(&s).server_changes, 1);
    }
}
