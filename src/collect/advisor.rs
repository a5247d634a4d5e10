//! The advisor inside `dbagent run`: every `monitor.advisor_interval` it samples table and
//! index usage of every watched database (`monitor.databases`) into state.db and computes the findings of `dbagent advise` (see
//! [`crate::advise`]), published as `sections.advisor` of `/api/v1/status` and as a few
//! bounded metrics: findings by kind, bytes in unused indexes, the largest unused index and
//! the largest table that is a sequential-scan hot spot, and the mean-time ratio of statements
//! whose plan changed (top statements only). No per-index or per-table series.

use std::time::Duration;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, FoldFuture, Output, PerDatabase};
use crate::advise::{self, AdviseError, Kind, Options};
use crate::config::MonitorConfig;
use crate::metrics::catalogue;

/// The `advisor` collector: one advice per watched database (each database's samples are kept
/// in state.db under its name), combined into one set of metrics.
#[derive(Default)]
pub struct Advisor {
    advice: Vec<advise::Advice>,
}

/// The metric families of the advice of every watched database: findings summed by kind,
/// unused-index bytes summed, the largest objects across databases, the plan-change ratios of
/// the `2 * explain_top` statements with the largest change, and the shortest observed window.
pub fn families(all: &[advise::Advice], explain_top: usize) -> Vec<Family> {
    let mut findings = Family::of(&catalogue::DBAGENT_ADVISOR_FINDINGS);
    for k in Kind::ALL {
        let n: usize = all
            .iter()
            .map(|a| a.counts.get(k.as_str()).copied().unwrap_or(0))
            .sum();
        findings.push(&[("kind", k.as_str())], n as f64);
    }
    let largest = |kind: Kind, key: &str| {
        all.iter()
            .flat_map(|a| a.findings.iter())
            .filter(|f| f.kind == kind)
            .filter_map(|f| f.evidence.get(key).and_then(|v| v.as_f64()))
            .fold(0.0, f64::max)
    };
    let observed = all
        .iter()
        .map(|a| a.window.coverage.observed_seconds)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
        .unwrap_or(0.0);
    vec![
        findings,
        Family::of(&catalogue::DBAGENT_ADVISOR_UNUSED_INDEX_BYTES).with(
            &[],
            all.iter()
                .map(|a| a.unused_index_bytes)
                .fold(0.0, |a, b| a + b),
        ),
        Family::of(&catalogue::DBAGENT_ADVISOR_LARGEST_UNUSED_INDEX_BYTES)
            .with(&[], largest(Kind::UnusedIndex, "size_bytes")),
        Family::of(&catalogue::DBAGENT_ADVISOR_HOTSPOT_LARGEST_TABLE_BYTES)
            .with(&[], largest(Kind::SeqScanHotspot, "size_bytes")),
        plan_ratio(all, explain_top),
        Family::of(&catalogue::DBAGENT_ADVISOR_OBSERVED_SECONDS).with(&[], observed),
    ]
}

/// Mean time after / before the newest plan change of each statement whose generic plan changed
/// in the window (explained statements only), the `2 * explain_top` largest across databases.
fn plan_ratio(all: &[advise::Advice], explain_top: usize) -> Family {
    let mut ratios: Vec<(&str, &str, f64)> = Vec::new();
    for a in all {
        for finding in a.findings.iter().filter(|f| f.kind == Kind::PlanChange) {
            if let (Some(queryid), Some(ratio)) = (
                finding.evidence["queryid"].as_str(),
                finding.evidence["mean_ratio"].as_f64(),
            ) {
                ratios.push((queryid, a.dbname.as_str(), ratio));
            }
        }
    }
    ratios.sort_by(|a, b| b.2.total_cmp(&a.2));
    ratios.truncate(explain_top.saturating_mul(2));
    let mut f = Family::of(&catalogue::DBAGENT_ADVISOR_PLAN_CHANGE_MEAN_RATIO);
    for (queryid, datname, ratio) in ratios {
        f.push(&[("queryid", queryid), ("datname", datname)], ratio);
    }
    f
}

impl Collector for Advisor {
    fn name(&self) -> &'static str {
        "advisor"
    }

    fn interval(&self, config: &MonitorConfig) -> Option<Duration> {
        Some(config.advisor_interval)
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move { super::collect_one(self, ctx).await })
    }

    fn per_database(&mut self) -> Option<&mut dyn PerDatabase> {
        Some(self)
    }
}

impl PerDatabase for Advisor {
    fn collect_database<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> FoldFuture<'a> {
        Box::pin(async move {
            if ctx.config.advisor_interval.is_zero() {
                return Ok(());
            }
            let opts = Options::from_config(ctx.config);
            let advice = advise::advise(ctx.client, ctx.version, ctx.state_dir, &opts)
                .await
                .map_err(|e| match e {
                    AdviseError::Connection(d) => CollectError::Connection(d),
                    other => CollectError::Other(other.to_string()),
                })?;
            self.advice.push(advice);
            Ok(())
        })
    }

    /// The status section is the advice of the first database read (the agent's own when it
    /// is watched) as `dbagent advise --json` prints it, with the others under
    /// `other_databases`.
    fn finish(&mut self, config: &MonitorConfig) -> Output {
        let all = std::mem::take(&mut self.advice);
        if all.is_empty() {
            return Output::default();
        }
        let families = families(&all, config.advisor_explain_top);
        let mut all = all.into_iter();
        let status = all.next().and_then(|first| {
            let mut v = serde_json::to_value(&first).ok()?;
            let others: Vec<serde_json::Value> =
                all.filter_map(|a| serde_json::to_value(&a).ok()).collect();
            v["other_databases"] = serde_json::Value::Array(others);
            Some(v)
        });
        Output { families, status }
    }
}
