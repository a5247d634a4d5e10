//! The advisor inside `dbagent run`: every `monitor.advisor_interval` it samples table and
//! index usage into state.db and computes the findings of `dbagent advise` (see
//! [`crate::advise`]), published as `sections.advisor` of `/api/v1/status` and as a few
//! bounded metrics: findings by kind, bytes in unused indexes, the largest unused index and
//! the largest table that is a sequential-scan hot spot, and the mean-time ratio of statements
//! whose plan changed (top statements only). No per-index or per-table series.

use std::time::Duration;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::advise::{self, AdviseError, Kind, Options};
use crate::config::MonitorConfig;
use crate::metrics::catalogue;

/// The `advisor` collector.
pub struct Advisor;

/// The metric families of one advice (also used by tests).
pub fn families(a: &advise::Advice) -> Vec<Family> {
    let mut findings = Family::of(&catalogue::DBAGENT_ADVISOR_FINDINGS);
    for k in Kind::ALL {
        let n = a.counts.get(k.as_str()).copied().unwrap_or(0);
        findings.push(&[("kind", k.as_str())], n as f64);
    }
    let largest = |kind: Kind, key: &str| {
        a.findings
            .iter()
            .filter(|f| f.kind == kind)
            .filter_map(|f| f.evidence.get(key).and_then(|v| v.as_f64()))
            .fold(0.0, f64::max)
    };
    vec![
        findings,
        Family::of(&catalogue::DBAGENT_ADVISOR_UNUSED_INDEX_BYTES).with(&[], a.unused_index_bytes),
        Family::of(&catalogue::DBAGENT_ADVISOR_LARGEST_UNUSED_INDEX_BYTES)
            .with(&[], largest(Kind::UnusedIndex, "size_bytes")),
        Family::of(&catalogue::DBAGENT_ADVISOR_HOTSPOT_LARGEST_TABLE_BYTES)
            .with(&[], largest(Kind::SeqScanHotspot, "size_bytes")),
        plan_ratio(a),
        Family::of(&catalogue::DBAGENT_ADVISOR_OBSERVED_SECONDS)
            .with(&[], a.window.coverage.observed_seconds),
    ]
}

/// Mean time after / before the newest plan change of each statement whose generic plan changed
/// in the window (bounded by `monitor.advisor_explain_top`: only explained statements).
fn plan_ratio(a: &advise::Advice) -> Family {
    let mut f = Family::of(&catalogue::DBAGENT_ADVISOR_PLAN_CHANGE_MEAN_RATIO);
    for finding in a.findings.iter().filter(|f| f.kind == Kind::PlanChange) {
        let (Some(queryid), Some(ratio)) = (
            finding.evidence["queryid"].as_str(),
            finding.evidence["mean_ratio"].as_f64(),
        ) else {
            continue;
        };
        f.push(
            &[("queryid", queryid), ("datname", a.dbname.as_str())],
            ratio,
        );
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
        Box::pin(async move {
            if ctx.config.advisor_interval.is_zero() {
                return Ok(Output::default());
            }
            let opts = Options::from_config(ctx.config);
            let advice = advise::advise(ctx.client, ctx.version, ctx.state_dir, &opts)
                .await
                .map_err(|e| match e {
                    AdviseError::Connection(d) => CollectError::Connection(d),
                    other => CollectError::Other(other.to_string()),
                })?;
            let status = serde_json::to_value(&advice)
                .map_err(|e| CollectError::Other(format!("advisor status: {e}")))?;
            Ok(Output {
                families: families(&advice),
                status: Some(status),
            })
        })
    }
}
