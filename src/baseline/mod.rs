//! Baselines: the usual level and spread of each monitored series, learned online from every
//! poll and kept in the state store (`baseline_series` and `baseline_bucket` in `state.db`),
//! so alert rules can ask "how unusual is this value?" and the answer survives restarts.
//!
//! # Method
//! Per series, three buckets are updated by every sample: the overall level, the sample's
//! hour of day (24 buckets, UTC) and its hour of week (168 buckets, 0 = Monday 00:00 UTC).
//! Each bucket keeps an exponentially decayed weighted mean and variance (West's incremental
//! algorithm, 1979): a sample has weight 1 and the weight of everything before it halves
//! every half-life of wall time ([`OVERALL_HALF_LIFE`], [`HOUR_OF_DAY_HALF_LIFE`],
//! [`HOUR_OF_WEEK_HALF_LIFE`]). Memory is constant per bucket (six numbers); while the
//! decayed weight is small the update is exactly Welford's running mean and population
//! variance, so a young series is not dominated by its latest sample; irregular polls and
//! restarts are handled by decaying by the real time elapsed. NaN and infinite values are
//! ignored.
//!
//! # Lookup
//! A lookup for time T uses the most specific bucket for T that is *usable* (at least
//! `min_samples` samples, seen on at least [`MIN_OCCASIONS`] separate days or weeks): the
//! hour of week, else the hour of day, else the overall bucket, and reports which one in
//! [`Baseline::season`]. Until the series has `min_samples` samples in all the baseline is
//! learning: [`Baseline::ready`] is false and [`Baseline::z_score`] / [`Baseline::ratio`] give
//! `None`, so rules cannot alert on it.
//!
//! Layer: operation. Uses: state. Used by: agent, alert.

use std::collections::HashMap;
use std::f64::consts::LN_2;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::state::{StateDb, StateError};

/// Half-life of the overall level: a level shift is half learned after this long.
pub const OVERALL_HALF_LIFE: Duration = Duration::from_secs(3 * 24 * 3600);
/// Half-life of an hour-of-day bucket (it is updated for one hour a day).
pub const HOUR_OF_DAY_HALF_LIFE: Duration = Duration::from_secs(14 * 24 * 3600);
/// Half-life of an hour-of-week bucket (it is updated for one hour a week).
pub const HOUR_OF_WEEK_HALF_LIFE: Duration = Duration::from_secs(8 * 7 * 24 * 3600);
/// A seasonal bucket is used only after it has seen its hour on this many separate days
/// (hour of day) or weeks (hour of week): one busy afternoon is not a season.
pub const MIN_OCCASIONS: u64 = 3;
/// Samples of a bucket at least this far apart belong to separate occasions.
const OCCASION_GAP_MS: i64 = 3_600_000;

/// Which bucket a [`Baseline`] comes from. Hours are UTC; hour of week 0 is Monday 00:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "hour", rename_all = "snake_case")]
pub enum Season {
    Overall,
    HourOfDay(u8),
    HourOfWeek(u8),
}

impl Season {
    fn column(self) -> (&'static str, u8) {
        match self {
            Season::Overall => ("overall", 0),
            Season::HourOfDay(h) => ("hour_of_day", h),
            Season::HourOfWeek(h) => ("hour_of_week", h),
        }
    }

    fn half_life(self) -> Duration {
        match self {
            Season::Overall => OVERALL_HALF_LIFE,
            Season::HourOfDay(_) => HOUR_OF_DAY_HALF_LIFE,
            Season::HourOfWeek(_) => HOUR_OF_WEEK_HALF_LIFE,
        }
    }
}

impl fmt::Display for Season {
    /// `overall`, `hour-of-day 03`, `hour-of-week Mon 03` (UTC).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        match *self {
            Season::Overall => write!(f, "overall"),
            Season::HourOfDay(h) => write!(f, "hour-of-day {h:02}"),
            Season::HourOfWeek(h) => write!(
                f,
                "hour-of-week {} {:02}",
                DAYS[usize::from(h / 24) % 7],
                h % 24
            ),
        }
    }
}

/// The hour-of-day and hour-of-week buckets (UTC) of a time.
pub fn seasons_at(at: Timestamp) -> (Season, Season) {
    let secs = at.as_second();
    let hour = secs.rem_euclid(86_400) / 3600;
    // 1970-01-01 was a Thursday (3 days after a Monday).
    let weekday = (secs.div_euclid(86_400) + 3).rem_euclid(7);
    (
        Season::HourOfDay(hour as u8),
        Season::HourOfWeek((weekday * 24 + hour) as u8),
    )
}

/// The learned state of one bucket: decayed weighted mean and variance.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    /// Samples ever folded in (not decayed).
    pub samples: u64,
    /// Separate occasions (runs of samples at least an hour apart) the bucket was updated on.
    pub occasions: u64,
    /// Sum of the decayed weights of the samples so far.
    pub weight: f64,
    pub mean: f64,
    pub variance: f64,
    /// Time of the last sample, Unix milliseconds.
    pub updated_ms: i64,
}

impl Moments {
    /// Folds in one finite sample taken at `at_ms`; the weight of the past halves every
    /// `half_life`. A sample whose update would overflow is ignored. Returns whether the
    /// sample was folded in.
    pub fn update(&mut self, at_ms: i64, x: f64, half_life: Duration) -> bool {
        if !x.is_finite() {
            return false;
        }
        let gap = at_ms.saturating_sub(self.updated_ms).max(0);
        let decay = if self.samples == 0 {
            0.0
        } else {
            (-(gap as f64) / (half_life.as_millis() as f64).max(1.0) * LN_2).exp()
        };
        let weight = self.weight * decay + 1.0;
        let alpha = 1.0 / weight;
        let delta = x - self.mean;
        let mean = self.mean + alpha * delta;
        let variance = (1.0 - alpha) * (self.variance + alpha * delta * delta);
        if !(mean.is_finite() && variance.is_finite()) {
            return false;
        }
        if self.samples == 0 || gap >= OCCASION_GAP_MS {
            self.occasions += 1;
        }
        self.samples += 1;
        self.weight = weight;
        self.mean = mean;
        self.variance = variance.max(0.0);
        self.updated_ms = at_ms;
        true
    }

    fn usable(&self, min_samples: u64) -> bool {
        self.samples >= min_samples.max(1) && self.occasions >= MIN_OCCASIONS
    }
}

/// The usual level of a series at some time, as [`BaselineStore::get`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    pub mean: f64,
    pub stddev: f64,
    /// Samples of the series so far (all buckets).
    pub samples: u64,
    /// Samples needed before the baseline is used (`monitor.baseline_min_samples`).
    pub needed: u64,
    /// `samples >= needed`: only then may rules use it.
    pub ready: bool,
    /// The bucket the mean and stddev come from.
    pub season: Season,
    /// The latest value observed.
    pub last_value: f64,
    /// When the series was last observed.
    pub updated: Timestamp,
}

impl Baseline {
    /// How many standard deviations `value` is from the mean (None while learning or when
    /// stddev is ~0).
    pub fn z_score(&self, value: f64) -> Option<f64> {
        if !self.ready || !value.is_finite() || self.stddev <= 1e-12 * self.mean.abs().max(1.0) {
            return None;
        }
        Some((value - self.mean) / self.stddev)
    }

    /// value / mean (None while learning or mean ~0).
    pub fn ratio(&self, value: f64) -> Option<f64> {
        if !self.ready || !value.is_finite() || self.mean.abs() <= 1e-12 {
            return None;
        }
        Some(value / self.mean)
    }

    /// Picks the most specific usable bucket for a lookup.
    fn choose(
        min_samples: u64,
        overall: Moments,
        hour_of_day: (Season, Option<Moments>),
        hour_of_week: (Season, Option<Moments>),
        last_value: f64,
        updated_ms: i64,
    ) -> Baseline {
        let (season, m) = [hour_of_week, hour_of_day]
            .into_iter()
            .find_map(|(s, m)| m.filter(|m| m.usable(min_samples)).map(|m| (s, m)))
            .unwrap_or((Season::Overall, overall));
        Baseline {
            mean: m.mean,
            stddev: m.variance.sqrt(),
            samples: overall.samples,
            needed: min_samples,
            ready: overall.samples >= min_samples,
            season,
            last_value,
            updated: Timestamp::from_millisecond(updated_ms).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

/// The baselines of every series, in the state store.
#[derive(Debug)]
pub struct BaselineStore {
    db: StateDb,
    min_samples: u64,
}

const SELECT_BUCKET: &str = "SELECT samples, occasions, weight, mean, variance, updated_ms
    FROM baseline_bucket WHERE series_id = ?1 AND season = ?2 AND slot = ?3";

const UPSERT_BUCKET: &str = "INSERT INTO baseline_bucket
        (series_id, season, slot, samples, occasions, weight, mean, variance, updated_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (series_id, season, slot) DO UPDATE SET
        samples = excluded.samples, occasions = excluded.occasions, weight = excluded.weight,
        mean = excluded.mean, variance = excluded.variance, updated_ms = excluded.updated_ms";

const UPSERT_SERIES: &str = "INSERT INTO baseline_series (series, last_value, updated_ms)
    VALUES (?1, ?2, ?3)
    ON CONFLICT (series) DO UPDATE SET
        last_value = excluded.last_value, updated_ms = excluded.updated_ms
    RETURNING id";

/// The buckets a lookup at some time needs, for one series (`?1`) or all (`?1` NULL).
const SELECT_LOOKUP: &str = "SELECT s.series, s.last_value, s.updated_ms,
        b.season, b.slot, b.samples, b.occasions, b.weight, b.mean, b.variance, b.updated_ms
    FROM baseline_series s JOIN baseline_bucket b ON b.series_id = s.id
    WHERE (?1 IS NULL OR s.series = ?1)
      AND (b.season = 'overall'
           OR (b.season = 'hour_of_day' AND b.slot = ?2)
           OR (b.season = 'hour_of_week' AND b.slot = ?3))
    ORDER BY s.series";

/// A stored count (SQLite integers are signed).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn moments(row: &Row, first: usize) -> rusqlite::Result<Moments> {
    Ok(Moments {
        samples: count(row.get(first)?),
        occasions: count(row.get(first + 1)?),
        weight: row.get(first + 2)?,
        mean: row.get(first + 3)?,
        variance: row.get(first + 4)?,
        updated_ms: row.get(first + 5)?,
    })
}

impl BaselineStore {
    /// Opens (creating and migrating as needed) the state store in `state_dir` for learning.
    pub fn open(state_dir: &Path, min_samples: u64) -> Result<BaselineStore, StateError> {
        Ok(BaselineStore {
            db: StateDb::open(state_dir)?,
            min_samples,
        })
    }

    /// Opens the state store for inspection only; works while `dbagent run` writes.
    /// `StateError::Missing` when nothing has been recorded yet.
    pub fn open_read_only(state_dir: &Path, min_samples: u64) -> Result<BaselineStore, StateError> {
        Ok(BaselineStore {
            db: StateDb::open_read_only(state_dir)?,
            min_samples,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Whether the database has the baseline tables (a read-only open of a database an older
    /// or foreign writer created may not).
    fn has_tables(&self) -> bool {
        self.db.version() >= 1
    }

    /// One poll's samples of baseline-flagged series, in one transaction.
    pub fn observe(&mut self, at: Timestamp, samples: &[(String, f64)]) -> Result<(), StateError> {
        let at_ms = at.as_millisecond();
        let (hod, how) = seasons_at(at);
        let path = self.db.path().to_path_buf();
        let err = |e| StateError::from_sqlite(&path, e);
        let tx = self
            .db
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut upsert_series = tx.prepare_cached(UPSERT_SERIES).map_err(err)?;
            let mut select_bucket = tx.prepare_cached(SELECT_BUCKET).map_err(err)?;
            let mut upsert_bucket = tx.prepare_cached(UPSERT_BUCKET).map_err(err)?;
            for (series, value) in samples {
                if !value.is_finite() {
                    continue;
                }
                let id: i64 = upsert_series
                    .query_row(params![series, value, at_ms], |r| r.get(0))
                    .map_err(err)?;
                for season in [Season::Overall, hod, how] {
                    let (name, slot) = season.column();
                    let mut m = select_bucket
                        .query_row(params![id, name, slot], |r| moments(r, 0))
                        .optional()
                        .map_err(err)?
                        .unwrap_or_default();
                    if !m.update(at_ms, *value, season.half_life()) {
                        continue;
                    }
                    upsert_bucket
                        .execute(params![
                            id,
                            name,
                            slot,
                            to_sql_count(m.samples),
                            to_sql_count(m.occasions),
                            m.weight,
                            m.mean,
                            m.variance,
                            m.updated_ms
                        ])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// The baseline of one series for a lookup at `at`; None when the series was never seen.
    pub fn get(&self, series: &str, at: Timestamp) -> Result<Option<Baseline>, StateError> {
        Ok(self
            .lookup(Some(series), at)?
            .into_iter()
            .next()
            .map(|(_, b)| b))
    }

    /// Every series' baseline for a lookup at `at`, ordered by series key.
    pub fn list(&self, at: Timestamp) -> Result<Vec<(String, Baseline)>, StateError> {
        self.lookup(None, at)
    }

    fn lookup(
        &self,
        series: Option<&str>,
        at: Timestamp,
    ) -> Result<Vec<(String, Baseline)>, StateError> {
        if !self.has_tables() {
            return Ok(Vec::new());
        }
        let (hod, how) = seasons_at(at);
        let (_, hod_slot) = hod.column();
        let (_, how_slot) = how.column();
        let err = |e| self.db.err(e);
        let mut stmt = self.db.conn().prepare_cached(SELECT_LOOKUP).map_err(err)?;
        let mut rows = stmt
            .query(params![series, hod_slot, how_slot])
            .map_err(err)?;

        struct Partial {
            last_value: f64,
            updated_ms: i64,
            buckets: HashMap<&'static str, Moments>,
        }
        let mut out: Vec<(String, Partial)> = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let name: String = row.get(0).map_err(err)?;
            let season: String = row.get(3).map_err(err)?;
            let m = moments(row, 5).map_err(err)?;
            if out.last().is_none_or(|(n, _)| *n != name) {
                out.push((
                    name,
                    Partial {
                        last_value: row.get(1).map_err(err)?,
                        updated_ms: row.get(2).map_err(err)?,
                        buckets: HashMap::new(),
                    },
                ));
            }
            let key = match season.as_str() {
                "overall" => "overall",
                "hour_of_day" => "hour_of_day",
                _ => "hour_of_week",
            };
            if let Some((_, p)) = out.last_mut() {
                p.buckets.insert(key, m);
            }
        }
        Ok(out
            .into_iter()
            .map(|(name, p)| {
                let b = Baseline::choose(
                    self.min_samples,
                    p.buckets.get("overall").copied().unwrap_or_default(),
                    (hod, p.buckets.get("hour_of_day").copied()),
                    (how, p.buckets.get("hour_of_week").copied()),
                    p.last_value,
                    p.updated_ms,
                );
                (name, b)
            })
            .collect())
    }

    /// Drops series not observed for `older_than` (top-N query series come and go). Returns
    /// how many series were dropped.
    pub fn prune(&mut self, now: Timestamp, older_than: Duration) -> Result<usize, StateError> {
        let cutoff = now
            .as_millisecond()
            .saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let path = self.db.path().to_path_buf();
        let err = |e| StateError::from_sqlite(&path, e);
        let tx = self.db.conn_mut().transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM baseline_bucket WHERE series_id IN
                (SELECT id FROM baseline_series WHERE updated_ms < ?1)",
            [cutoff],
        )
        .map_err(err)?;
        let n = tx
            .execute(
                "DELETE FROM baseline_series WHERE updated_ms < ?1",
                [cutoff],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
