//! `plan_change`: the generic plan of a top statement changed in the window, with its mean
//! time under the previous plan and under the new one.

use std::collections::BTreeMap;

use serde_json::json;

use crate::advise::model::{Finding, Impact, Inputs, Kind};
use crate::advise::store;

/// Mean seconds per call between two captures, when calls happened and nothing was reset.
fn mean_between(a: &store::PlanCapture, b: &store::PlanCapture) -> Option<f64> {
    let calls = b.calls - a.calls;
    let seconds = b.total_seconds - a.total_seconds;
    (calls > 0.0 && seconds >= 0.0).then(|| seconds / calls)
}

/// Statements whose captured plan changed in the window, with their mean time under the
/// previous plan (between its captures, else its cumulative mean at the last of them) and under
/// the new one (between the first capture of the new plan and the newest capture). Only the
/// newest change of each statement, and only once calls under the new plan were measured.
pub(super) fn plan_changes(inputs: &Inputs) -> Vec<Finding> {
    let mut by_query: BTreeMap<&str, Vec<&store::PlanCapture>> = BTreeMap::new();
    for c in inputs.plans {
        by_query.entry(c.queryid.as_str()).or_default().push(c);
    }
    let mut out = Vec::new();
    for (queryid, caps) in by_query {
        let Some(k) = (1..caps.len())
            .rev()
            .find(|&i| caps[i].plan_hash != caps[i - 1].plan_hash)
        else {
            continue;
        };
        let old = caps[k - 1];
        let old_first = caps[..k]
            .iter()
            .rev()
            .take_while(|c| c.plan_hash == old.plan_hash)
            .last()
            .copied()
            .unwrap_or(old);
        let newest = caps[caps.len() - 1];
        let Some(after) = mean_between(caps[k], newest) else {
            continue;
        };
        let before = mean_between(old_first, old)
            .or_else(|| (old.calls > 0.0).then(|| old.total_seconds / old.calls));
        let Some(before) = before else {
            continue;
        };
        let ratio = if before > 0.0 { after / before } else { 0.0 };
        let query = inputs
            .statements
            .iter()
            .find(|s| s.queryid == queryid)
            .map(|s| s.query.clone());
        out.push(Finding {
            kind: Kind::PlanChange,
            object: format!("queryid {queryid}"),
            summary: format!(
                "the plan of statement {queryid} changed around {}: mean {} before, {} after ({ratio:.1}x)",
                caps[k].taken.strftime("%Y-%m-%d %H:%M:%S UTC"),
                crate::units::human_latency(before),
                crate::units::human_latency(after)
            ),
            impact: Impact {
                bytes: 0.0,
                text: format!(
                    "mean {} -> {} ({ratio:.1}x)",
                    crate::units::human_latency(before),
                    crate::units::human_latency(after)
                ),
            },
            evidence: json!({
                "queryid": queryid,
                "query": query,
                "changed_at": caps[k].taken,
                "plan_before": old.plan_shape,
                "plan_after": newest.plan_shape,
                "mean_seconds_before": before,
                "mean_seconds_after": after,
                "mean_ratio": ratio,
                "calls_after": newest.calls - caps[k].calls,
            }),
            action: format!(
                "-- compare the plan with real values, and the statistics of its tables:\nEXPLAIN (ANALYZE, BUFFERS) {};  -- on a replica or off-peak: ANALYZE executes it",
                query.as_deref().map(str::trim).unwrap_or("<the statement>")
            ),
            note: Some(
                "The captured plan is the generic plan dbagent asks for, a proxy for what the application's sessions run. A plan change often follows an index change, new statistics (ANALYZE) or data growth."
                    .into(),
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::advise::model::{Inputs, Kind};
    use crate::advise::{findings, store};

    #[test]
    fn advise_plan_change_compares_the_mean_under_each_plan() {
        let cap = |secs: i64, hash: &str, calls: f64, total: f64| store::PlanCapture {
            taken: at(secs),
            queryid: "7".into(),
            plan_hash: hash.into(),
            plan_shape: format!("plan {hash}"),
            calls,
            total_seconds: total,
        };
        let s = vec![sample(0, vec![], vec![])];
        let plans = vec![
            cap(0, "a", 100.0, 1.0),
            cap(60, "a", 200.0, 2.0),
            cap(120, "b", 210.0, 3.0),
            cap(180, "b", 310.0, 53.0),
        ];
        let f = findings(
            &Inputs {
                current: s.last(),
                window: &crate::advise::window::Window::of(&s),
                defs: &[],
                statements: &[],
                hints: &[],
                plans: &plans,
                since: at(-7 * 86400),
            },
            &opts(),
        );
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].kind, Kind::PlanChange);
        assert_eq!(f[0].evidence["mean_seconds_before"], 0.01);
        assert_eq!(f[0].evidence["mean_seconds_after"], 0.5);
        assert_eq!(f[0].evidence["mean_ratio"], 50.0);
        assert_eq!(f[0].evidence["plan_before"], "plan a");
        assert_eq!(f[0].evidence["plan_after"], "plan b");
        // No call under the new plan yet: nothing to compare.
        let f = findings(
            &Inputs {
                current: s.last(),
                window: &crate::advise::window::Window::of(&s),
                defs: &[],
                statements: &[],
                hints: &[],
                plans: &plans[..3],
                since: at(-7 * 86400),
            },
            &opts(),
        );
        assert!(f.is_empty(), "{f:#?}");
    }
}
