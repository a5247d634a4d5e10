//! Tests of the baseline learner: an in-memory model of one series (the same `Moments` and
//! bucket choice the store uses) for long simulations, and the SQLite store for persistence,
//! readiness, NaN handling and pruning.

use super::*;
use proptest::prelude::*;

const T0: &str = "2026-03-02T00:00:00Z"; // a Monday

fn t0() -> Timestamp {
    T0.parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + jiff::SignedDuration::from_secs(secs)
}

/// One series learned in memory, exactly as the store learns it.
struct Model {
    min_samples: u64,
    overall: Moments,
    hod: [Moments; 24],
    how: [Moments; 168],
    last_value: f64,
    updated_ms: i64,
}

impl Model {
    fn new(min_samples: u64) -> Model {
        Model {
            min_samples,
            overall: Moments::default(),
            hod: [Moments::default(); 24],
            how: [Moments::default(); 168],
            last_value: 0.0,
            updated_ms: 0,
        }
    }

    fn observe(&mut self, t: Timestamp, x: f64) {
        if !x.is_finite() {
            return;
        }
        let ms = t.as_millisecond();
        let (Season::HourOfDay(d), Season::HourOfWeek(w)) = seasons_at(t) else {
            unreachable!()
        };
        self.overall.update(ms, x, OVERALL_HALF_LIFE);
        self.hod[d as usize].update(ms, x, HOUR_OF_DAY_HALF_LIFE);
        self.how[w as usize].update(ms, x, HOUR_OF_WEEK_HALF_LIFE);
        self.last_value = x;
        self.updated_ms = ms;
    }

    fn get(&self, t: Timestamp) -> Option<Baseline> {
        if self.overall.samples == 0 {
            return None;
        }
        let (hod, how) = seasons_at(t);
        let (Season::HourOfDay(d), Season::HourOfWeek(w)) = (hod, how) else {
            unreachable!()
        };
        let some = |m: Moments| (m.samples > 0).then_some(m);
        Some(Baseline::choose(
            self.min_samples,
            self.overall,
            (hod, some(self.hod[d as usize])),
            (how, some(self.how[w as usize])),
            self.last_value,
            self.updated_ms,
        ))
    }
}

/// Deterministic standard-normal noise (xorshift64* + Box-Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

#[test]
fn baseline_converges_to_mean_and_stddev_of_a_stationary_series() {
    let mut m = Model::new(40);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    // Five days every 15 s.
    let n = 5 * 24 * 240;
    for i in 0..n {
        m.observe(at(i * 15), 100.0 + 10.0 * noise.normal());
    }
    let now = at(n * 15);
    let b = m.get(now).unwrap();
    assert!(b.ready);
    // Five days: the hour-of-day bucket has seen its hour on 5 days and is used.
    assert_eq!(b.season, Season::HourOfDay(0));
    assert!((b.mean - 100.0).abs() < 1.5, "{b:?}");
    assert!((b.stddev - 10.0).abs() < 1.0, "{b:?}");
    // The overall bucket, with ~29,000 effective samples, is much closer.
    assert!((m.overall.mean - 100.0).abs() < 0.3, "{:?}", m.overall);
    assert!(
        (m.overall.variance.sqrt() - 10.0).abs() < 0.3,
        "{:?}",
        m.overall
    );
    let z = b.z_score(130.0).unwrap();
    assert!((z - 3.0).abs() < 0.4, "{z}");
}

#[test]
fn baseline_hour_of_day_separates_a_series_high_at_three_utc() {
    let mut m = Model::new(40);
    let mut noise = Noise(7);
    // Ten days every 5 minutes: 1000 during 03:00-03:59 UTC, 10 otherwise.
    let steps = 10 * 288;
    for i in 0..steps {
        let t = at(i * 300);
        let level = if seasons_at(t).0 == Season::HourOfDay(3) {
            1000.0
        } else {
            10.0
        };
        m.observe(t, level + noise.normal());
    }
    let day10 = 10 * 86_400;
    let high = m.get(at(day10 + 3 * 3600 + 1800)).unwrap();
    assert_eq!(high.season, Season::HourOfDay(3));
    assert!((high.mean - 1000.0).abs() < 1.0, "{high:?}");
    assert!(high.stddev < 2.0, "{high:?}");
    let low = m.get(at(day10 + 12 * 3600)).unwrap();
    assert_eq!(low.season, Season::HourOfDay(12));
    assert!((low.mean - 10.0).abs() < 1.0, "{low:?}");
    // 1000 at 03:00 is usual; at noon it is far out.
    assert!(high.z_score(1000.0).unwrap().abs() < 3.0);
    assert!(low.z_score(1000.0).unwrap() > 100.0);
    // The overall level mixes both, which is why seasons exist.
    assert!(
        m.overall.mean > 40.0 && m.overall.mean < 70.0,
        "{:?}",
        m.overall
    );
}

#[test]
fn baseline_hour_of_week_separates_monday_morning_from_other_mornings() {
    let mut m = Model::new(40);
    // Four weeks every 5 minutes: 500 on Mondays 09:00-09:59 UTC, 50 otherwise.
    for i in 0..4 * 7 * 288 {
        let t = at(i * 300);
        let v = if seasons_at(t).1 == Season::HourOfWeek(9) {
            500.0
        } else {
            50.0
        };
        m.observe(t, v);
    }
    let week4 = 4 * 7 * 86_400;
    let monday = m.get(at(week4 + 9 * 3600 + 60)).unwrap();
    assert_eq!(monday.season, Season::HourOfWeek(9));
    assert_eq!(monday.season.to_string(), "hour-of-week Mon 09");
    assert!((monday.mean - 500.0).abs() < 1e-6, "{monday:?}");
    let tuesday = m.get(at(week4 + 86_400 + 9 * 3600 + 60)).unwrap();
    assert_eq!(tuesday.season, Season::HourOfWeek(24 + 9));
    assert!((tuesday.mean - 50.0).abs() < 1e-6, "{tuesday:?}");
}

#[test]
fn baseline_seasonal_bucket_needs_three_occasions() {
    let mut m = Model::new(5);
    // Two days every minute: the hour-of-day buckets have 2 occasions only.
    for i in 0..2 * 1440 {
        m.observe(at(i * 60), 1.0);
    }
    assert_eq!(m.get(at(2 * 86_400)).unwrap().season, Season::Overall);
    for i in 0..60 {
        m.observe(at(2 * 86_400 + i * 60), 1.0);
    }
    assert_eq!(
        m.get(at(2 * 86_400 + 3600)).unwrap().season,
        Season::Overall,
        "hour 01 has 2 occasions"
    );
    assert_eq!(
        m.get(at(3 * 86_400 + 60)).unwrap().season,
        Season::HourOfDay(0)
    );
}

#[test]
fn baseline_seasons_at_is_utc_with_monday_zero() {
    let t: Timestamp = "2026-03-08T23:30:00Z".parse().unwrap(); // a Sunday
    assert_eq!(
        seasons_at(t),
        (Season::HourOfDay(23), Season::HourOfWeek(167))
    );
    assert_eq!(
        seasons_at(t0()),
        (Season::HourOfDay(0), Season::HourOfWeek(0))
    );
    let before_epoch: Timestamp = "1969-12-31T23:00:00Z".parse().unwrap(); // a Wednesday
    assert_eq!(
        seasons_at(before_epoch),
        (Season::HourOfDay(23), Season::HourOfWeek(2 * 24 + 23))
    );
    assert_eq!(Season::HourOfWeek(167).to_string(), "hour-of-week Sun 23");
    assert_eq!(Season::HourOfDay(3).to_string(), "hour-of-day 03");
}

#[test]
fn baseline_ready_flips_exactly_at_min_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = BaselineStore::open(tmp.path(), 5).unwrap();
    let key = "pg_up".to_string();
    for i in 0..4 {
        store
            .observe(at(i * 15), &[(key.clone(), 10.0 + i as f64)])
            .unwrap();
        let b = store.get(&key, at(i * 15)).unwrap().unwrap();
        assert!(!b.ready, "{b:?}");
        assert_eq!((b.samples, b.needed), (i as u64 + 1, 5));
        assert_eq!(b.z_score(100.0), None);
        assert_eq!(b.ratio(100.0), None);
    }
    store.observe(at(60), &[(key.clone(), 14.0)]).unwrap();
    let b = store.get(&key, at(60)).unwrap().unwrap();
    assert!(b.ready, "{b:?}");
    assert_eq!((b.samples, b.needed), (5, 5));
    assert_eq!(b.season, Season::Overall);
    assert_eq!(b.last_value, 14.0);
    assert_eq!(b.updated, at(60));
    // 10..=14: mean 12, population stddev sqrt(2) (up to a minute of decay).
    assert!((b.mean - 12.0).abs() < 1e-3, "{b:?}");
    assert!((b.stddev - 2f64.sqrt()).abs() < 1e-3, "{b:?}");
    let z = b.z_score(b.mean + 2.0 * b.stddev).unwrap();
    assert!((z - 2.0).abs() < 1e-9, "{z}");
    assert!((b.ratio(2.0 * b.mean).unwrap() - 2.0).abs() < 1e-12);
}

#[test]
fn baseline_z_score_and_ratio_none_on_flat_or_zero_series() {
    let b = Baseline {
        mean: 0.0,
        stddev: 0.0,
        samples: 50,
        needed: 40,
        ready: true,
        season: Season::Overall,
        last_value: 0.0,
        updated: t0(),
    };
    assert_eq!(b.z_score(1.0), None);
    assert_eq!(b.ratio(1.0), None);
    let b = Baseline { mean: 5.0, ..b };
    assert_eq!(b.z_score(5.0), None);
    assert_eq!(b.ratio(10.0), Some(2.0));
    assert_eq!(b.ratio(f64::NAN), None);
}

#[test]
fn baseline_survives_reopen_and_prune_drops_stale_series() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = BaselineStore::open(tmp.path(), 2).unwrap();
    store
        .observe(at(0), &[("a".into(), 1.0), ("b".into(), 2.0)])
        .unwrap();
    store.observe(at(3600), &[("a".into(), 3.0)]).unwrap();
    let before = store.list(at(3600)).unwrap();
    drop(store);
    let mut store = BaselineStore::open(tmp.path(), 2).unwrap();
    assert_eq!(store.list(at(3600)).unwrap(), before);
    let ro = BaselineStore::open_read_only(tmp.path(), 2).unwrap();
    assert_eq!(ro.list(at(3600)).unwrap(), before);
    assert!(ro.observe_is_refused());
    drop(ro);
    // b was last seen an hour ago.
    assert_eq!(store.prune(at(3600), Duration::from_secs(1800)).unwrap(), 1);
    let names: Vec<String> = store
        .list(at(3600))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a"]);
    assert_eq!(store.get("b", at(3600)).unwrap(), None);
    let buckets: i64 = store
        .db
        .conn()
        .query_row("SELECT count(*) FROM baseline_bucket", [], |r| r.get(0))
        .unwrap();
    assert_eq!(buckets, 5, "a: overall + 2 hours of day + 2 hours of week");
}

#[test]
fn baseline_only_nan_and_inf_records_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = BaselineStore::open(tmp.path(), 1).unwrap();
    store
        .observe(
            at(0),
            &[
                ("x".into(), f64::NAN),
                ("x".into(), f64::INFINITY),
                ("y".into(), f64::NEG_INFINITY),
            ],
        )
        .unwrap();
    assert_eq!(store.list(at(0)).unwrap(), []);
    // A finite value whose square overflows leaves the buckets untouched.
    store.observe(at(0), &[("z".into(), 1.0)]).unwrap();
    store.observe(at(15), &[("z".into(), 1e300)]).unwrap();
    let b = store.get("z", at(15)).unwrap().unwrap();
    assert_eq!((b.samples, b.mean, b.stddev), (1, 1.0, 0.0));
}

impl BaselineStore {
    fn observe_is_refused(&self) -> bool {
        // A read-only store cannot write; `observe` needs &mut, so try through the connection.
        self.db
            .conn()
            .execute("DELETE FROM baseline_series", [])
            .is_err()
    }
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -1e6f64..1e6,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The store learns exactly what the in-memory model learns, and non-finite values leave
    /// no trace: the same polls without them give the same baselines.
    #[test]
    fn baseline_store_matches_model_and_ignores_non_finite(
        polls in prop::collection::vec(
            (1i64..20_000, prop::collection::vec((0usize..3, value()), 0..6)),
            1..12,
        ),
        min_samples in 0u64..6,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut all = BaselineStore::open(&tmp.path().join("all"), min_samples).unwrap();
        let mut finite = BaselineStore::open(&tmp.path().join("finite"), min_samples).unwrap();
        let mut models: Vec<Model> = (0..3).map(|_| Model::new(min_samples)).collect();
        let mut t = 0;
        for (dt, samples) in &polls {
            t += dt;
            let batch: Vec<(String, f64)> =
                samples.iter().map(|(s, v)| (format!("s{s}"), *v)).collect();
            all.observe(at(t), &batch).unwrap();
            let kept: Vec<(String, f64)> =
                batch.iter().filter(|(_, v)| v.is_finite()).cloned().collect();
            finite.observe(at(t), &kept).unwrap();
            for (s, v) in samples {
                models[*s].observe(at(t), *v);
            }
        }
        let now = at(t + 60);
        let listed = all.list(now).unwrap();
        prop_assert_eq!(&listed, &finite.list(now).unwrap());
        let expected: Vec<(String, Baseline)> = models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.get(now).map(|b| (format!("s{i}"), b)))
            .collect();
        prop_assert_eq!(&listed, &expected);
        for (_, b) in &listed {
            prop_assert!(b.mean.is_finite() && b.stddev.is_finite() && b.stddev >= 0.0);
            prop_assert_eq!(b.ready, b.samples >= min_samples);
        }
    }

    /// A constant series has that constant as mean and no spread, however it is polled.
    #[test]
    fn baseline_constant_series_has_zero_spread(
        c in -1e9f64..1e9,
        gaps in prop::collection::vec(0i64..100_000, 1..200),
    ) {
        let mut m = Model::new(1);
        let mut t = 0;
        for g in gaps {
            t += g;
            m.observe(at(t), c);
        }
        let b = m.get(at(t)).unwrap();
        prop_assert!((b.mean - c).abs() <= 1e-9 * c.abs().max(1.0));
        prop_assert!(b.stddev <= 1e-6 * c.abs().max(1.0));
        prop_assert_eq!(b.z_score(c + 1.0), None);
    }
}
