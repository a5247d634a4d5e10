//! The alert engine: evaluates the rules against one poll's samples, moves each instance
//! through inactive → pending → firing → resolved, routes firing and resolved instances into
//! groups, and decides when a group is notified (Alertmanager's group_wait, group_interval,
//! repeat_interval), leaving out silenced and inhibited instances.
//!
//! The engine is pure state plus a clock passed in: the agent persists [`EngineState`] in
//! state.db after every evaluation (so a restart neither re-pages nor forgets to resolve) and
//! hands the notifications to the outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rules::{
    AlertsFile, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, Route,
    Threshold, all_match,
};
use super::silence::Silence;
use crate::baseline::Baseline;
use crate::metrics::Family;
use crate::notify::{AlertInfo, Notification, Status};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

/// One alert instance: a rule and one set of labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub fingerprint: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    /// When the condition started to hold (this time).
    pub active_since: Timestamp,
    pub fired_at: Option<Timestamp>,
    /// The last evaluation at which the condition held.
    pub last_active: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub value: f64,
}

/// One alert group of one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub created: Timestamp,
    pub last_notified: Option<Timestamp>,
    /// Fingerprints that were firing in the last notification of this group.
    pub notified_firing: BTreeSet<String>,
}

/// Everything the engine remembers; persisted as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub instances: BTreeMap<String, Instance>,
    pub groups: BTreeMap<String, Group>,
}

/// Looks up the baseline of a series key at a time.
pub type BaselineLookup<'a> = &'a dyn Fn(&str, Timestamp) -> Option<Baseline>;

/// A stable fingerprint: a hash of the rule name and the sorted labels.
pub fn fingerprint(rule: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    for (k, v) in labels {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Formats a value for annotations: integers as they are, others with 4 significant digits.
fn human(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Replaces `{{ $labels.NAME }}`, `{{ $value }}`, `{{ $baseline }}` and `{{ $threshold }}`
/// (what the value was compared with: the number, or the other metric's value times its
/// factor; empty for baseline thresholds). A number may go through one of Prometheus'
/// formatting functions, in dbagent's units: `{{ $value | humanizeDuration }}` (seconds:
/// `19m 46s`), `{{ $value | humanize1024 }}` (bytes: `1.5 GiB`), `{{ $value |
/// humanizePercentage }}` (a ratio: `71.3%`).
pub fn expand(
    template: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    baseline: Option<f64>,
    threshold: Option<f64>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + end].trim();
        let (inner, format): (&str, fn(f64) -> String) = match inner.split_once('|') {
            Some((v, f)) => match f.trim() {
                "humanizeDuration" => (v.trim(), crate::units::human_duration),
                "humanize1024" => (v.trim(), |b| crate::units::human_bytes(b.max(0.0) as u64)),
                "humanizePercentage" => (v.trim(), |r| {
                    let s = format!("{:.1}", r * 100.0);
                    format!("{}%", s.trim_end_matches(".0"))
                }),
                _ => (inner, human),
            },
            None => (inner, human),
        };
        let replaced = if inner == "$value" {
            format(value)
        } else if inner == "$baseline" {
            baseline.map_or_else(|| "(learning)".to_string(), format)
        } else if inner == "$threshold" {
            threshold.map_or_else(String::new, format)
        } else if let Some(name) = inner.strip_prefix("$labels.") {
            labels.get(name.trim()).cloned().unwrap_or_default()
        } else {
            rest[start..start + end + 2].to_string()
        };
        out.push_str(&replaced);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The samples of the metric on the right of a comparison, ready to be matched with the
/// samples on the left: PromQL's one-to-one matching on identical label sets, or one series
/// without labels that every series on the left is compared with.
enum RightSide {
    Scalar(f64),
    ByLabels(BTreeMap<BTreeMap<String, String>, f64>),
}

impl RightSide {
    fn of(selector: &super::rules::Selector, families: &[Family]) -> RightSide {
        let mut by_labels = BTreeMap::new();
        for (family, scale) in named(families, &selector.metric) {
            for sample in &family.samples {
                let labels: BTreeMap<String, String> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                if all_match(&selector.matchers, &labels) {
                    by_labels.insert(labels, sample.value * scale);
                }
            }
        }
        match by_labels.iter().next() {
            Some((labels, v)) if by_labels.len() == 1 && labels.is_empty() => RightSide::Scalar(*v),
            _ => RightSide::ByLabels(by_labels),
        }
    }

    fn partner(&self, labels: &BTreeMap<String, String>) -> Option<f64> {
        match self {
            RightSide::Scalar(v) => Some(*v),
            RightSide::ByLabels(m) => m.get(labels).copied(),
        }
    }
}

/// The families a rule's metric `name` reads, with the factor for their values: either name
/// set works whatever `monitor.metric_names` serves (an exporter name of a signal dbagent
/// emits under its own name reads dbagent's family, in the exporter's unit).
fn named<'f>(families: &'f [Family], name: &str) -> impl Iterator<Item = (&'f Family, f64)> {
    let (source, scale) = crate::metrics::catalogue::source_of(name);
    let source = source.to_string();
    families
        .iter()
        .filter(move |f| f.name == source)
        .map(move |f| (f, scale))
}

/// The engine over one alerts file.
pub struct Engine<'a> {
    pub file: &'a AlertsFile,
    pub external_url: &'a str,
}

impl Engine<'_> {
    /// Evaluates every rule against the poll's families and advances the instances.
    pub fn evaluate(
        &self,
        state: &mut EngineState,
        now: Timestamp,
        families: &[Family],
        baseline: BaselineLookup<'_>,
    ) {
        let mut seen = BTreeSet::new();
        for rule in self.file.rules.iter().filter(|r| r.enabled) {
            let right = match &rule.expr.threshold {
                Threshold::Metric { selector, .. } => Some(RightSide::of(selector, families)),
                _ => None,
            };
            for (family, scale) in named(families, &rule.expr.metric) {
                for sample in &family.samples {
                    let mut labels: BTreeMap<String, String> = sample
                        .labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect();
                    if !all_match(&rule.expr.matchers, &labels) {
                        continue;
                    }
                    // What this sample is compared with, when it is another metric's sample.
                    let partner = match (&rule.expr.threshold, &right) {
                        (Threshold::Metric { factor, .. }, Some(right)) => {
                            match right.partner(&labels) {
                                Some(v) => Some(factor * v),
                                None => continue,
                            }
                        }
                        _ => None,
                    };
                    let series = family.series_key(sample);
                    for (k, v) in &rule.labels {
                        labels.insert(k.clone(), v.clone());
                    }
                    labels.insert("alertname".into(), rule.name.clone());
                    let value = sample.value * scale;
                    let base = if rule.expr.uses_baseline() {
                        baseline(&series, now)
                    } else {
                        None
                    };
                    let threshold = match rule.expr.threshold {
                        Threshold::Value(t) => Some(t),
                        _ => partner,
                    };
                    let active = value.is_finite()
                        && match rule.expr.threshold {
                            Threshold::Value(t) => rule.expr.cmp.holds(value, t),
                            Threshold::BaselineRatio(n) => base
                                .as_ref()
                                .and_then(|b| b.ratio(sample.value))
                                .is_some_and(|r| rule.expr.cmp.holds(r, n)),
                            Threshold::BaselineSigma(n) => base
                                .as_ref()
                                .and_then(|b| b.z_score(sample.value))
                                .is_some_and(|z| rule.expr.cmp.holds(z, n)),
                            Threshold::Metric { .. } => partner
                                .is_some_and(|t| t.is_finite() && rule.expr.cmp.holds(value, t)),
                        }
                        && rule.expr.and_holds(value);
                    if !active {
                        continue;
                    }
                    let fp = fingerprint(&rule.name, &labels);
                    seen.insert(fp.clone());
                    let annotations = rule
                        .annotations
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                expand(
                                    v,
                                    &labels,
                                    value,
                                    base.as_ref().map(|b| b.mean * scale),
                                    threshold,
                                ),
                            )
                        })
                        .collect();
                    let inst = state
                        .instances
                        .entry(fp.clone())
                        .or_insert_with(|| Instance {
                            fingerprint: fp.clone(),
                            rule: rule.name.clone(),
                            labels: labels.clone(),
                            annotations: BTreeMap::new(),
                            state: State::Pending,
                            active_since: now,
                            fired_at: None,
                            last_active: now,
                            resolved_at: None,
                            value,
                        });
                    if inst.state == State::Resolved {
                        // Active again after it was resolved: a new episode.
                        inst.state = State::Pending;
                        inst.active_since = now;
                        inst.fired_at = None;
                        inst.resolved_at = None;
                    }
                    inst.annotations = annotations;
                    inst.value = value;
                    inst.last_active = now;
                    if inst.state == State::Pending && elapsed(inst.active_since, now) >= rule.for_
                    {
                        inst.state = State::Firing;
                        inst.fired_at = Some(now);
                    }
                }
            }
        }
        // Instances whose condition no longer holds (or whose series is gone).
        let keep_for: BTreeMap<&str, Duration> = self
            .file
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.keep_firing_for))
            .collect();
        state.instances.retain(|fp, inst| {
            if seen.contains(fp) {
                return true;
            }
            match inst.state {
                State::Pending => false,
                State::Firing => {
                    let keep = keep_for
                        .get(inst.rule.as_str())
                        .copied()
                        .unwrap_or_default();
                    if elapsed(inst.last_active, now) >= keep {
                        inst.state = State::Resolved;
                        inst.resolved_at = Some(now);
                    }
                    true
                }
                State::Resolved => true,
            }
        });
        // A rule removed from the file: its firing instances resolve.
        let names: BTreeSet<&str> = self
            .file
            .rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.name.as_str())
            .collect();
        for inst in state.instances.values_mut() {
            if !names.contains(inst.rule.as_str()) && inst.state != State::Resolved {
                inst.state = State::Resolved;
                inst.resolved_at = Some(now);
            }
        }
    }

    /// Groups firing and resolved instances and returns the notifications due now.
    pub fn flush(
        &self,
        state: &mut EngineState,
        now: Timestamp,
        silences: &[Silence],
    ) -> Vec<Notification> {
        let muted = self.muted(state, now, silences);
        // Which groups each notifiable instance belongs to.
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for inst in state.instances.values() {
            if inst.state == State::Pending {
                continue;
            }
            for target in self.routes_for(&inst.labels) {
                let group = state
                    .groups
                    .entry(target.key.clone())
                    .or_insert_with(|| Group {
                        key: target.key.clone(),
                        receiver: target.receiver.clone(),
                        group_labels: target.group_labels.clone(),
                        group_wait: target.group_wait,
                        group_interval: target.group_interval,
                        repeat_interval: target.repeat_interval,
                        created: now,
                        last_notified: None,
                        notified_firing: BTreeSet::new(),
                    });
                // Timing follows the current file.
                group.group_wait = target.group_wait;
                group.group_interval = target.group_interval;
                group.repeat_interval = target.repeat_interval;
                members
                    .entry(target.key)
                    .or_default()
                    .push(inst.fingerprint.clone());
            }
        }
        let mut out = Vec::new();
        for group in state.groups.values_mut() {
            let fps = members.get(&group.key).cloned().unwrap_or_default();
            let firing: BTreeSet<String> = fps
                .iter()
                .filter(|fp| {
                    state
                        .instances
                        .get(*fp)
                        .is_some_and(|i| i.state == State::Firing)
                        && !muted.contains(*fp)
                })
                .cloned()
                .collect();
            // Resolved since the last notification of this group. An instance that still fires
            // but is now silenced or inhibited is left out quietly, not announced as resolved.
            let resolved: BTreeSet<String> = group
                .notified_firing
                .iter()
                .filter(|fp| {
                    !firing.contains(*fp)
                        && state
                            .instances
                            .get(*fp)
                            .is_some_and(|i| i.state == State::Resolved)
                })
                .cloned()
                .collect();
            let due = match group.last_notified {
                None => !firing.is_empty() && elapsed(group.created, now) >= group.group_wait,
                Some(last) => {
                    let changed = firing != group.notified_firing;
                    (changed && elapsed(last, now) >= group.group_interval)
                        || (!firing.is_empty() && elapsed(last, now) >= group.repeat_interval)
                }
            };
            if !due {
                continue;
            }
            let mut alerts = Vec::new();
            for fp in &firing {
                if let Some(i) = state.instances.get(fp) {
                    alerts.push(info(i, Status::Firing, self.external_url));
                }
            }
            for fp in &resolved {
                match state.instances.get(fp) {
                    Some(i) => alerts.push(info(i, Status::Resolved, self.external_url)),
                    None => continue,
                }
            }
            if alerts.is_empty() {
                group.notified_firing = firing;
                continue;
            }
            out.push(notification(group, alerts, self.external_url));
            group.last_notified = Some(now);
            group.notified_firing = firing;
        }
        // Forget what nobody waits for: groups with nothing firing and nothing to resolve, and
        // resolved instances no group still has to announce.
        let still_announced: BTreeSet<String> = state
            .groups
            .values()
            .flat_map(|g| g.notified_firing.iter().cloned())
            .collect();
        state
            .instances
            .retain(|fp, i| i.state != State::Resolved || still_announced.contains(fp));
        state.groups.retain(|key, g| {
            !g.notified_firing.is_empty()
                || members.get(key).is_some_and(|m| {
                    m.iter().any(|fp| {
                        state
                            .instances
                            .get(fp)
                            .is_some_and(|i| i.state == State::Firing)
                    })
                })
        });
        out
    }

    /// Fingerprints silenced or inhibited now.
    pub fn muted(
        &self,
        state: &EngineState,
        now: Timestamp,
        silences: &[Silence],
    ) -> BTreeSet<String> {
        let mut muted = BTreeSet::new();
        for inst in state.instances.values() {
            if silences
                .iter()
                .any(|s| s.active(now) && all_match(&s.matchers, &inst.labels))
            {
                muted.insert(inst.fingerprint.clone());
                continue;
            }
            let inhibited = self.file.inhibit_rules.iter().any(|rule| {
                all_match(&rule.target_matchers, &inst.labels)
                    && state.instances.values().any(|src| {
                        src.fingerprint != inst.fingerprint
                            && src.state == State::Firing
                            && all_match(&rule.source_matchers, &src.labels)
                            && rule
                                .equal
                                .iter()
                                .all(|l| src.labels.get(l) == inst.labels.get(l))
                    })
            });
            if inhibited {
                muted.insert(inst.fingerprint.clone());
            }
        }
        muted
    }

    /// The groups (route + group_by values) an instance with `labels` goes to.
    fn routes_for(&self, labels: &BTreeMap<String, String>) -> Vec<Target> {
        let root = &self.file.route;
        let defaults = Inherited {
            receiver: root.receiver.clone().unwrap_or_default(),
            group_by: root
                .group_by
                .clone()
                .unwrap_or_else(|| vec!["alertname".into()]),
            group_wait: root.group_wait.unwrap_or(DEFAULT_GROUP_WAIT),
            group_interval: root.group_interval.unwrap_or(DEFAULT_GROUP_INTERVAL),
            repeat_interval: root.repeat_interval.unwrap_or(DEFAULT_REPEAT_INTERVAL),
        };
        let mut out = Vec::new();
        walk(root, "route", &defaults, labels, &mut out);
        out
    }
}

struct Inherited {
    receiver: String,
    group_by: Vec<String>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

struct Target {
    key: String,
    receiver: String,
    group_labels: BTreeMap<String, String>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

/// Alertmanager's matching: the deepest matching routes win; siblings after a match are only
/// tried when it has `continue: true`; a node none of whose children match takes the alert.
fn walk(
    route: &Route,
    path: &str,
    parent: &Inherited,
    labels: &BTreeMap<String, String>,
    out: &mut Vec<Target>,
) -> bool {
    if !all_match(&route.matchers, labels) {
        return false;
    }
    let here = Inherited {
        receiver: route
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_by: route
            .group_by
            .clone()
            .unwrap_or_else(|| parent.group_by.clone()),
        group_wait: route.group_wait.unwrap_or(parent.group_wait),
        group_interval: route.group_interval.unwrap_or(parent.group_interval),
        repeat_interval: route.repeat_interval.unwrap_or(parent.repeat_interval),
    };
    let mut matched_child = false;
    for (i, child) in route.routes.iter().enumerate() {
        if walk(child, &format!("{path}.{i}"), &here, labels, out) {
            matched_child = true;
            if !child.continue_ {
                break;
            }
        }
    }
    if !matched_child {
        let group_labels: BTreeMap<String, String> = if here.group_by.iter().any(|g| g == "...") {
            labels.clone()
        } else {
            here.group_by
                .iter()
                .map(|g| (g.clone(), labels.get(g).cloned().unwrap_or_default()))
                .collect()
        };
        let key = format!(
            "{path}:{}",
            group_labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        out.push(Target {
            key,
            receiver: here.receiver,
            group_labels,
            group_wait: here.group_wait,
            group_interval: here.group_interval,
            repeat_interval: here.repeat_interval,
        });
    }
    true
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    (now - since)
        .total(jiff::Unit::Millisecond)
        .ok()
        .filter(|ms| *ms > 0.0)
        .map_or(Duration::ZERO, |ms| Duration::from_millis(ms as u64))
}

fn info(i: &Instance, status: Status, external_url: &str) -> AlertInfo {
    AlertInfo {
        status,
        labels: i.labels.clone(),
        annotations: i.annotations.clone(),
        starts_at: i.fired_at.unwrap_or(i.active_since),
        ends_at: if status == Status::Resolved {
            i.resolved_at.or(Some(i.last_active))
        } else {
            None
        },
        fingerprint: i.fingerprint.clone(),
        generator_url: if external_url.is_empty() {
            String::new()
        } else {
            format!("{external_url}/api/v1/status")
        },
    }
}

fn notification(group: &Group, alerts: Vec<AlertInfo>, external_url: &str) -> Notification {
    let status = if alerts.iter().any(|a| a.status == Status::Firing) {
        Status::Firing
    } else {
        Status::Resolved
    };
    let common =
        |get: &dyn Fn(&AlertInfo) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
            let mut it = alerts.iter();
            let Some(first) = it.next() else {
                return BTreeMap::new();
            };
            let mut common = get(first).clone();
            for a in it {
                common.retain(|k, v| get(a).get(k) == Some(v));
            }
            common
        };
    Notification {
        receiver: group.receiver.clone(),
        group_key: group.key.clone(),
        status,
        common_labels: common(&|a| &a.labels),
        common_annotations: common(&|a| &a.annotations),
        group_labels: group.group_labels.clone(),
        alerts,
        external_url: external_url.to_string(),
    }
}
