//! `alerts.yml`: rules, the route tree, inhibition rules and receivers, parsed with the same
//! located errors as `dbagent.yml` (file:line:column, valid keys, "did you mean").
//!
//! A rule's `expr` is deliberately small, so that it can be validated at load time and read by
//! anyone on call:
//!
//! ```text
//! METRIC{label="value", other!="x", re=~"a.*"} OP THRESHOLD
//! OP: >  >=  <  <=  ==  !=
//! THRESHOLD: a number                 e.g. dbagent_connections_exhaustion_ratio > 0.9
//!          | N x baseline             value above N times the learned mean
//!          | N sigma baseline         value more than N standard deviations from the mean
//!          | [N x] METRIC{matchers}   another metric of the same poll, e.g.
//!                                     dbagent_rpo_seconds > dbagent_rpo_target_seconds
//! ```
//!
//! Baseline thresholds only apply once the series' baseline is ready (enough samples); until
//! then the rule does not fire for that series, and `dbagent alerts list` says it is learning.
//!
//! A metric on the right is matched like a PromQL comparison of two vectors: each series on
//! the left is compared with the series on the right that has exactly the same labels; when
//! the right side is a single series without labels (a configured target such as
//! `dbagent_rpo_target_seconds`), every series on the left is compared with it. A series with
//! no partner on the right does not fire.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error as _};

use crate::config::{ConfigError, de};
use crate::notify::Receiver;

/// The whole alerts.yml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    #[serde(default)]
    pub rules: Vec<Rule>,
    pub route: Route,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// How the durable outbox retries and when it gives up.
    #[serde(default)]
    pub outbox: crate::notify::OutboxConfig,
    /// The file this was loaded from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// One alert rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The `alertname` label.
    pub name: String,
    #[serde(deserialize_with = "expr")]
    pub expr: Expr,
    /// How long the condition must hold before the alert fires (pending until then).
    #[serde(default, rename = "for", deserialize_with = "de::duration")]
    pub for_: Duration,
    /// How long an alert keeps firing after its condition cleared (against flapping).
    #[serde(default, deserialize_with = "de::duration")]
    pub keep_firing_for: Duration,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// summary, description, runbook_url, ...: `{{ $labels.NAME }}`, `{{ $value }}` and
    /// `{{ $baseline }}` are replaced.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// false turns the rule off without deleting it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `node` (default): every agent evaluates it about its own server. `cluster`: a signal
    /// that is the same seen from every node (the repository, backups, drills, database
    /// sizes); only the leader evaluates it, so it is sent once for the cluster.
    #[serde(default)]
    pub scope: Scope,
}

/// Which agents evaluate a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Node,
    Cluster,
}

impl AlertsFile {
    /// The file as a follower evaluates it: without the cluster-scoped rules.
    pub fn node_rules_only(&self) -> AlertsFile {
        let mut f = self.clone();
        f.rules.retain(|r| r.scope == Scope::Node);
        f
    }

    /// Whether `rule` is evaluated by the leader only.
    pub fn is_cluster_rule(&self, rule: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.name == rule && r.scope == Scope::Cluster)
    }
}

fn yes() -> bool {
    true
}

/// A node of the route tree (Alertmanager's meaning).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Inherited from the parent when unset.
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default, deserialize_with = "matchers")]
    pub matchers: Vec<Matcher>,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub group_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub repeat_interval: Option<Duration>,
    /// Go on matching the following siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// Mutes target alerts while a matching source alert fires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    #[serde(deserialize_with = "matchers")]
    pub source_matchers: Vec<Matcher>,
    #[serde(deserialize_with = "matchers")]
    pub target_matchers: Vec<Matcher>,
    /// Labels that must have the same value on source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex_lite::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// Two matchers are equal when they read the same (the regex follows from the value).
impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex_lite::Regex::new(&format!("^(?:{value})$")).map_err(|source| {
                    MatcherError::Regex {
                        value: value.to_string(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses `name="value"` (also `name=value`, and the other operators).
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let s = s.trim();
        let bad = || MatcherError::Syntax(s.to_string());
        let pos = s.find(['=', '!']).ok_or_else(bad)?;
        let name = s[..pos].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let rest = &s[pos..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            return Err(bad());
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Matcher::new(name, op, value)
    }

    /// Whether `labels` satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        };
        write!(f, "{}{op}\"{}\"", self.name, self.value)
    }
}

/// Whether all matchers match.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
}

/// What a sample is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    Value(f64),
    /// value OP N x the baseline mean.
    BaselineRatio(f64),
    /// (value - mean) / stddev OP N.
    BaselineSigma(f64),
    /// value OP factor x the matching sample of another metric.
    Metric {
        factor: f64,
        selector: Selector,
    },
}

/// `METRIC{matchers}`: the series of one metric that satisfy the matchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.metric)?;
        if !self.matchers.is_empty() {
            let m: Vec<String> = self.matchers.iter().map(Matcher::to_string).collect();
            write!(f, "{{{}}}", m.join(", "))?;
        }
        Ok(())
    }
}

/// A matcher that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error(
        "invalid matcher `{0}`: write it like severity=\"critical\", name!=\"x\" or name=~\"re.*\""
    )]
    Syntax(String),
    #[error("invalid regex `{value}`: {source}")]
    Regex {
        value: String,
        source: regex_lite::Error,
    },
}

/// An `expr` that does not parse: the expression, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    #[error("expr `{text}` does not start with a metric name; {EXPR_HELP}")]
    NoMetric { text: String },
    #[error("expr `{text}`: {source}")]
    Matcher { text: String, source: MatcherError },
    #[error("expr `{text}`: {problem}")]
    Invalid { text: String, problem: String },
}

impl ExprError {
    fn invalid(text: &str, problem: String) -> ExprError {
        ExprError::Invalid {
            text: text.to_string(),
            problem,
        }
    }
}

const EXPR_HELP: &str = "write it like `metric_name{label=\"value\"} > 0.9`, `metric > 3x baseline`, `metric > 4 sigma baseline` or `metric > other_metric`";

/// Reads `METRIC{matchers}` at the start of `s`; returns it and what follows.
fn parse_selector<'s>(s: &'s str, text: &str) -> Result<(Selector, &'s str), ExprError> {
    let s = s.trim_start();
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let metric = s[..name_end].to_string();
    if metric.is_empty() || metric.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(ExprError::invalid(
            text,
            format!("expected a metric name at `{s}`; {EXPR_HELP}"),
        ));
    }
    let mut rest = s[name_end..].trim_start();
    let mut matchers = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let close = r
            .find('}')
            .ok_or_else(|| ExprError::invalid(text, format!("missing `}}`; {EXPR_HELP}")))?;
        for part in split_matchers(&r[..close]) {
            if !part.trim().is_empty() {
                matchers.push(Matcher::parse(&part).map_err(|source| ExprError::Matcher {
                    text: text.to_string(),
                    source,
                })?);
            }
        }
        rest = r[close + 1..].trim_start();
    }
    Ok((Selector { metric, matchers }, rest))
}

/// A parsed `expr`.
#[derive(Debug, Clone)]
pub struct Expr {
    pub metric: String,
    pub matchers: Vec<Matcher>,
    pub cmp: Cmp,
    pub threshold: Threshold,
    /// `... and > 0.1`: a second, absolute condition the same sample must meet too (an
    /// absolute floor under a deviation from the baseline).
    pub and: Option<(Cmp, f64)>,
    pub text: String,
}

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, ExprError> {
        let text = s.trim().to_string();
        let help = EXPR_HELP;
        if text.is_empty() || text.starts_with(|c: char| !(c.is_ascii_alphabetic() || c == '_')) {
            return Err(ExprError::NoMetric { text });
        }
        let (left, rest) = parse_selector(&text, &text)?;
        let (cmp, after) = comparison(rest).ok_or_else(|| {
            ExprError::invalid(
                &text,
                format!("expected a comparison (> >= < <= == !=) after the metric; {help}"),
            )
        })?;
        // `... and OP NUMBER`: the last ` and ` outside quotes starts the second condition.
        let (after, and) = match split_and(after) {
            None => (after, None),
            Some((first, second)) => {
                let parsed = comparison(second).and_then(|(c, n)| {
                    let n = n.trim();
                    n.parse::<f64>()
                        .ok()
                        .filter(|_| !n.is_empty())
                        .map(|n| (c, n))
                });
                match parsed {
                    Some(and) => (first.trim(), Some(and)),
                    None => {
                        return Err(ExprError::invalid(
                            &text,
                            format!(
                                "cannot read `and {second}`: after `and` write a comparison with a number, like `and > 0.1`"
                            ),
                        ));
                    }
                }
            }
        };
        let words: Vec<&str> = after.split_whitespace().collect();
        let number = |w: &str| -> Result<f64, ExprError> {
            w.parse::<f64>()
                .map_err(|_| ExprError::invalid(&text, format!("`{w}` is not a number; {help}")))
        };
        let is_name = |w: &str| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        let threshold = match words.as_slice() {
            [] => {
                return Err(ExprError::invalid(
                    &text,
                    format!("nothing to compare with after `{}`; {help}", cmp.as_str()),
                ));
            }
            ["baseline", ..] => {
                return Err(ExprError::invalid(
                    &text,
                    "`baseline` needs a factor before it (e.g. `3x baseline` or `4 sigma baseline`)".to_string(),
                ));
            }
            [n] if n.ends_with('x') && n.len() > 1 && !is_name(n) => {
                return Err(ExprError::invalid(
                    &text,
                    format!("`{n}` needs `baseline` or a metric after it (e.g. `3x baseline`)"),
                ));
            }
            // Every metric dbagent exports has a prefix (`pg_`, `dbagent_`): a bare word
            // without `_` is a mistyped number (`lots`), not a metric that never exists.
            [n] if !is_name(n) || n.parse::<f64>().is_ok() || !n.contains(['_', ':', '{']) => {
                Threshold::Value(number(n)?)
            }
            [n, "baseline"] if n.ends_with('x') && !is_name(n) => {
                Threshold::BaselineRatio(number(n.trim_end_matches('x'))?)
            }
            [n, "x", "baseline"] => Threshold::BaselineRatio(number(n)?),
            [n, "sigma", "baseline"] => Threshold::BaselineSigma(number(n)?),
            [first, ..] if is_name(first) => Threshold::Metric {
                factor: 1.0,
                selector: right_selector(after, &text)?,
            },
            [n, "x", ..] => Threshold::Metric {
                factor: number(n)?,
                // `after` starts with `n`, then blanks, then `x`.
                selector: right_selector(after[n.len()..].trim_start()[1..].trim(), &text)?,
            },
            [n, ..] if n.ends_with('x') && n.len() > 1 => Threshold::Metric {
                factor: number(n.trim_end_matches('x'))?,
                selector: right_selector(after[n.len()..].trim(), &text)?,
            },
            _ => {
                return Err(ExprError::invalid(
                    &text,
                    format!("cannot read the threshold `{after}`; {help}"),
                ));
            }
        };
        Ok(Expr {
            metric: left.metric,
            matchers: left.matchers,
            cmp,
            threshold,
            and,
            text,
        })
    }

    pub fn uses_baseline(&self) -> bool {
        matches!(
            self.threshold,
            Threshold::BaselineRatio(_) | Threshold::BaselineSigma(_)
        )
    }

    /// Whether `value` meets the `and` condition (true when there is none).
    pub fn and_holds(&self, value: f64) -> bool {
        self.and.is_none_or(|(cmp, n)| cmp.holds(value, n))
    }

    /// `> 0.9`, `> 3x baseline`, `> dbagent_rpo_target_seconds`, `> 3x baseline and > 0.1`:
    /// for messages.
    pub fn condition(&self) -> String {
        let first = self.first_condition();
        match self.and {
            Some((cmp, n)) => format!("{first} and {} {n}", cmp.as_str()),
            None => first,
        }
    }

    fn first_condition(&self) -> String {
        match &self.threshold {
            Threshold::Value(v) => format!("{} {v}", self.cmp.as_str()),
            Threshold::BaselineRatio(v) => format!("{} {v}x baseline", self.cmp.as_str()),
            Threshold::BaselineSigma(v) => format!("{} {v} sigma baseline", self.cmp.as_str()),
            Threshold::Metric { factor, selector } if *factor == 1.0 => {
                format!("{} {selector}", self.cmp.as_str())
            }
            Threshold::Metric { factor, selector } => {
                format!("{} {factor}x {selector}", self.cmp.as_str())
            }
        }
    }
}

/// The comparison operator at the start of `s` and what follows it.
fn comparison(s: &str) -> Option<(Cmp, &str)> {
    let s = s.trim_start();
    [
        (">=", Cmp::Ge),
        ("<=", Cmp::Le),
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
    ]
    .iter()
    .find_map(|(tok, c)| s.strip_prefix(tok).map(|a| (*c, a.trim())))
}

/// `A and B` → (`A`, `B`), splitting at the last ` and ` outside quotes.
fn split_and(s: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut at = None;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && s[i..].starts_with(" and ") {
            at = Some(i);
        }
    }
    at.map(|i| (&s[..i], &s[i + " and ".len()..]))
}

/// The metric on the right of the comparison: a selector and nothing after it.
fn right_selector(s: &str, text: &str) -> Result<Selector, ExprError> {
    let (sel, rest) = parse_selector(s, text)?;
    if sel.metric == "baseline" {
        return Err(ExprError::invalid(
            text,
            "`baseline` needs a factor before it (e.g. `3x baseline`)".to_string(),
        ));
    }
    if !rest.trim().is_empty() {
        return Err(ExprError::invalid(
            text,
            format!("unexpected `{}` after `{sel}`; {EXPR_HELP}", rest.trim()),
        ));
    }
    Ok(sel)
}

/// Splits `a="x,y", b="z"` on commas outside quotes.
fn split_matchers(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn expr<'de, D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
    let s = String::deserialize(d)?;
    Expr::parse(&s).map_err(D::Error::custom)
}

fn matchers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Matcher>, D::Error> {
    let raw: Vec<String> = Vec::deserialize(d)?;
    raw.iter()
        .map(|m| Matcher::parse(m).map_err(D::Error::custom))
        .collect()
}

/// The shipped alerts.yml, printed by `dbagent config example --alerts`.
pub const EXAMPLE: &str = include_str!("../../alerts.yml");

/// Defaults of the route tree's root (Alertmanager's).
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A cross-check of alerts.yml that failed: `message` says which name and what to do.
fn invalid(path: &Path, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message,
    }
}

impl AlertsFile {
    /// Reads and validates alerts.yml.
    pub fn load(path: &Path) -> Result<AlertsFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Invalid {
                    path: path.into(),
                    message: "alerts file not found; set alerts_file in dbagent.yml, or copy alerts.yml from the dbagent repository (`dbagent config example --alerts`)".into(),
                }
            } else {
                ConfigError::Read {
                    path: path.into(),
                    source,
                }
            }
        })?;
        AlertsFile::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AlertsFile, ConfigError> {
        let mut file: AlertsFile =
            serde_saphyr::from_str(text).map_err(|e| crate::config::parse_error(path, &e))?;
        file.source = Some(path.into());
        file.validate(path)?;
        Ok(file)
    }

    /// Cross-checks that serde cannot: unique names, receivers that exist, a root receiver.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.rules {
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid(
                    path,
                    format!(
                        "rule name `{}` must be letters, digits and underscores",
                        r.name
                    ),
                ));
            }
            if !seen.insert(&r.name) {
                return Err(invalid(path, format!("rule `{}` is defined twice", r.name)));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.receivers {
            if !names.insert(r.name.as_str()) {
                return Err(invalid(
                    path,
                    format!("receiver `{}` is defined twice", r.name),
                ));
            }
            if r.email.is_none()
                && r.slack.is_none()
                && r.pagerduty.is_none()
                && r.webhook.is_none()
            {
                return Err(invalid(
                    path,
                    format!(
                        "receiver `{}` has no integration: give it email, slack, pagerduty or webhook",
                        r.name
                    ),
                ));
            }
        }
        if self.route.receiver.is_none() {
            return Err(invalid(
                path,
                "route.receiver is required (the default receiver)".to_string(),
            ));
        }
        fn walk(
            route: &Route,
            names: &std::collections::BTreeSet<&str>,
            at: &str,
            path: &Path,
        ) -> Result<(), ConfigError> {
            if let Some(r) = &route.receiver
                && !names.contains(r.as_str())
            {
                let known: Vec<&str> = names.iter().copied().collect();
                return Err(invalid(
                    path,
                    format!(
                        "{at}: receiver `{r}` is not defined under receivers (defined: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            for (i, child) in route.routes.iter().enumerate() {
                walk(child, names, &format!("{at}.routes[{i}]"), path)?;
            }
            Ok(())
        }
        walk(&self.route, &names, "route", path)
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

/// A rule that reads a metric family the server's PostgreSQL version does not have: it would
/// never see a series and so never fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMismatch {
    pub rule: String,
    pub metric: String,
    /// "PostgreSQL 17 and later".
    pub exists_on: String,
    pub instead: &'static str,
}

impl std::fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule `{}` reads {}, which exists on {} only; use {} instead",
            self.rule, self.metric, self.exists_on, self.instead
        )
    }
}

/// The rules of an alerts file that do not fit the server's version, all of them at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", path.display(), self.message())]
pub struct VersionError {
    pub path: PathBuf,
    pub major: u32,
    pub problems: Vec<VersionMismatch>,
}

impl VersionError {
    /// What is wrong, without the file name.
    pub fn message(&self) -> String {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        format!(
            "{} alert rule(s) read metrics that PostgreSQL {} does not have:\n  - {}\nfix or disable these rules (enabled: false)",
            self.problems.len(),
            self.major,
            lines.join("\n  - ")
        )
    }
}

impl From<VersionError> for ConfigError {
    fn from(e: VersionError) -> ConfigError {
        ConfigError::Invalid {
            message: e.message(),
            path: e.path,
        }
    }
}

impl AlertsFile {
    /// Checks every enabled rule against the metric families PostgreSQL `major` has (the
    /// catalogue's version table): a rule that reads a family absent on that version is an
    /// error, not a rule that silently never fires. Metrics not in the catalogue are not
    /// checked (a rule may read anything).
    pub fn check_server_version(&self, major: u32) -> Result<(), VersionError> {
        let mut problems = Vec::new();
        for rule in self.rules.iter().filter(|r| r.enabled) {
            let mut names = vec![rule.expr.metric.as_str()];
            if let Threshold::Metric { selector, .. } = &rule.expr.threshold {
                names.push(&selector.metric);
            }
            for name in names {
                if let Some(v) = crate::metrics::catalogue::versions(name)
                    && !v.contains(major)
                {
                    problems.push(VersionMismatch {
                        rule: rule.name.clone(),
                        metric: name.to_string(),
                        exists_on: v.to_string(),
                        instead: v.instead,
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(VersionError {
                path: self
                    .source
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("alerts.yml")),
                major,
                problems,
            })
        }
    }
}

/// Loads alerts.yml if it exists. `Ok(None)`: no file, alerting is off.
pub fn load_alerts(path: &Path) -> Result<Option<AlertsFile>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    AlertsFile::load(path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_thresholds_and_baselines() {
        let e = Expr::parse("dbagent_connections_exhaustion_ratio > 0.9").unwrap();
        assert_eq!(e.metric, "dbagent_connections_exhaustion_ratio");
        assert_eq!(e.cmp, Cmp::Gt);
        assert_eq!(e.threshold, Threshold::Value(0.9));
        let e = Expr::parse("dbagent_statement_mean_seconds{datname!=\"template1\", user=~\"app.*\"} >= 3x baseline").unwrap();
        assert_eq!(e.matchers.len(), 2);
        assert_eq!(e.threshold, Threshold::BaselineRatio(3.0));
        let e = Expr::parse("pg_database_size_bytes > 4 sigma baseline").unwrap();
        assert_eq!(e.threshold, Threshold::BaselineSigma(4.0));
        let e = Expr::parse("pg_up == 0").unwrap();
        assert_eq!((e.cmp, e.threshold), (Cmp::Eq, Threshold::Value(0.0)));
        for bad in [
            "",
            "> 1",
            "pg_up",
            "pg_up > lots",
            "pg_up > 3x",
            "pg_up{a=\"b\" > 1",
            "pg_up{a~\"b\"} > 1",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_second_condition_adds_an_absolute_floor() {
        let e = Expr::parse(
            "dbagent_statement_mean_seconds{queryid!=\"a and b\"} > 3x baseline and > 0.1",
        )
        .unwrap();
        assert_eq!(e.threshold, Threshold::BaselineRatio(3.0));
        assert_eq!(e.and, Some((Cmp::Gt, 0.1)));
        assert_eq!(e.matchers.len(), 1);
        assert_eq!(e.condition(), "> 3x baseline and > 0.1");
        assert!(e.and_holds(0.2));
        assert!(!e.and_holds(0.1));
        let e = Expr::parse("m_a > 1 and <= 5").unwrap();
        assert_eq!(
            (e.threshold, e.and),
            (Threshold::Value(1.0), Some((Cmp::Le, 5.0)))
        );
        assert!(Expr::parse("m_a > 1").unwrap().and_holds(f64::NAN));
        for bad in ["m_a > 1 and 0.1", "m_a > 1 and > lots", "m_a > 1 and >"] {
            let e = Expr::parse(bad).unwrap_err().to_string();
            assert!(e.contains("after `and`"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_right_side_may_be_another_metric() {
        let e = Expr::parse("dbagent_rpo_seconds > dbagent_rpo_target_seconds").unwrap();
        assert_eq!(e.metric, "dbagent_rpo_seconds");
        let Threshold::Metric { factor, selector } = &e.threshold else {
            panic!("{:?}", e.threshold);
        };
        assert_eq!(*factor, 1.0);
        assert_eq!(selector.metric, "dbagent_rpo_target_seconds");
        assert!(selector.matchers.is_empty());
        assert!(!e.uses_baseline());
        assert_eq!(e.condition(), "> dbagent_rpo_target_seconds");

        let e = Expr::parse(
            "pg_stat_activity_sessions{state=\"active\"} >= 0.8 x pg_settings_max_connections",
        )
        .unwrap();
        assert_eq!(e.matchers.len(), 1);
        let Threshold::Metric { factor, selector } = &e.threshold else {
            panic!("{:?}", e.threshold);
        };
        assert_eq!(
            (*factor, selector.metric.as_str()),
            (0.8, "pg_settings_max_connections")
        );
        assert_eq!(e.condition(), ">= 0.8x pg_settings_max_connections");

        let e = Expr::parse("a_bytes < 2x b_bytes{datname=\"x, y\", k!~\"z.*\"}").unwrap();
        let Threshold::Metric { factor, selector } = &e.threshold else {
            panic!("{:?}", e.threshold);
        };
        assert_eq!(*factor, 2.0);
        assert_eq!(selector.matchers.len(), 2);
        assert_eq!(selector.matchers[0].value, "x, y");

        // Numbers stay numbers (also the ones Rust reads as names: inf, NaN).
        assert_eq!(
            Expr::parse("pg_up > inf").unwrap().threshold,
            Threshold::Value(f64::INFINITY)
        );
        for (bad, why) in [
            ("a > b c", "unexpected `c`"),
            ("a > b{x=\"1\"", "missing `}`"),
            ("a > baseline", "needs a factor"),
            ("a > 2x", "needs `baseline` or a metric"),
            ("a > two x b", "unexpected `x b`"),
            ("a > lots", "`lots` is not a number"),
            ("a > 2 x 3", "expected a metric name"),
            ("a >", "nothing to compare"),
        ] {
            let e = Expr::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_metric_comparison_is_a_located_error() {
        let text = "rules:\n  - name: X\n    expr: dbagent_rpo_seconds > dbagent_rpo_target_seconds extra\nroute:\n  receiver: hook\n";
        let e = AlertsFile::parse(text, Path::new("a.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.yml:3:") && e.contains("unexpected `extra`"),
            "{e}"
        );
    }

    #[test]
    fn matchers_follow_alertmanager() {
        let mut labels = BTreeMap::new();
        labels.insert("severity".to_string(), "critical".to_string());
        assert!(
            Matcher::parse("severity=\"critical\"")
                .unwrap()
                .matches(&labels)
        );
        assert!(
            Matcher::parse("severity=critical")
                .unwrap()
                .matches(&labels)
        );
        assert!(
            !Matcher::parse("severity!=\"critical\"")
                .unwrap()
                .matches(&labels)
        );
        assert!(
            Matcher::parse("severity=~\"crit.*\"")
                .unwrap()
                .matches(&labels)
        );
        assert!(
            !Matcher::parse("severity=~\"crit\"")
                .unwrap()
                .matches(&labels)
        );
        assert!(Matcher::parse("team!~\"db.*\"").unwrap().matches(&labels));
        assert!(Matcher::parse("team=\"\"").unwrap().matches(&labels));
        assert!(Matcher::parse("=x").is_err());
    }

    #[test]
    fn the_shipped_rules_name_only_metrics_of_the_catalogue() {
        let f = AlertsFile::parse(EXAMPLE, Path::new("alerts.yml")).unwrap();
        let known: Vec<&str> = crate::metrics::catalogue::ALL
            .iter()
            .map(|d| d.name)
            .collect();
        for rule in &f.rules {
            let mut names = vec![rule.expr.metric.as_str()];
            if let Threshold::Metric { selector, .. } = &rule.expr.threshold {
                names.push(&selector.metric);
            }
            for name in names {
                assert!(
                    known.contains(&name),
                    "rule {} names {name}, which dbagent does not emit (metrics::catalogue)",
                    rule.name
                );
            }
        }
    }

    /// Every shipped rule links its own section of docs/runbooks.md (the Debian package
    /// installs it as /usr/share/doc/dbagent/runbooks.md), and every section is a rule's.
    #[test]
    fn every_shipped_rule_has_its_runbook_section() {
        const RUNBOOKS: &str = include_str!("../../docs/runbooks.md");
        let f = AlertsFile::parse(EXAMPLE, Path::new("alerts.yml")).unwrap();
        let sections: Vec<&str> = RUNBOOKS
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .collect();
        for r in &f.rules {
            assert_eq!(
                r.annotations.get("runbook_url").map(String::as_str),
                Some(
                    format!(
                        "/usr/share/doc/dbagent/runbooks.md#{}",
                        r.name.to_lowercase()
                    )
                    .as_str()
                ),
                "{}",
                r.name
            );
            // The anchor of a `## Name` heading is the name in lower case.
            assert!(
                sections.contains(&r.name.as_str()),
                "no `## {}` in docs/runbooks.md",
                r.name
            );
        }
        let names: Vec<&str> = f.rules.iter().map(|r| r.name.as_str()).collect();
        for s in &sections {
            assert!(
                names.contains(s),
                "docs/runbooks.md section `{s}` is no shipped rule"
            );
        }
    }

    /// docs/alerting.md's "Shipped rules" names every rule of alerts.yml, and its table gives
    /// each listed rule's `for` and severity as the file has them.
    #[test]
    fn the_docs_shipped_rules_are_the_shipped_alerts_file() {
        let f = AlertsFile::parse(EXAMPLE, Path::new("alerts.yml")).unwrap();
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerting.md"))
            .unwrap();
        let section = doc
            .split("\n## Shipped rules\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/alerting.md has a `## Shipped rules` section");
        let mut rows = 0;
        for row in section
            .lines()
            .skip_while(|l| !l.starts_with("| Rule |"))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
        {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            let name = cells[0].trim_matches('`');
            let rule = f
                .rules
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("docs/alerting.md lists {name}, not in alerts.yml"));
            let (for_, severity) = (cells[cells.len() - 2], cells[cells.len() - 1]);
            assert_eq!(
                de::parse_duration(for_).ok(),
                Some(rule.for_),
                "docs/alerting.md: `for` of {name}"
            );
            assert_eq!(
                rule.labels.get("severity").map(String::as_str),
                Some(severity),
                "docs/alerting.md: severity of {name}"
            );
            rows += 1;
        }
        assert!(rows > 20, "{rows} rows");
        for rule in &f.rules {
            assert!(
                section.contains(&format!("`{}`", rule.name)),
                "docs/alerting.md, Shipped rules, does not name alerts.yml's {}",
                rule.name
            );
        }
    }

    #[test]
    fn the_shipped_alerts_file_parses() {
        let f = AlertsFile::parse(EXAMPLE, Path::new("alerts.yml")).unwrap();
        assert!(f.rules.len() >= 15, "{}", f.rules.len());
        // The recovery objectives are compared with the configured targets, not constants.
        for (rule, target) in [
            ("RpoAboveTarget", "dbagent_rpo_target_seconds"),
            ("RtoAboveTarget", "dbagent_rto_target_seconds"),
        ] {
            let r = f.rules.iter().find(|r| r.name == rule).expect(rule);
            assert!(
                matches!(&r.expr.threshold, Threshold::Metric { selector, .. } if selector.metric == target),
                "{rule}: {}",
                r.expr.text
            );
        }
    }

    #[test]
    fn unknown_receivers_and_keys_are_located_errors() {
        let text = "route:\n  receiver: nobody\nreceivers:\n  - name: hook\n    webhook: { url: \"http://127.0.0.1:1/\" }\n";
        let e = AlertsFile::parse(text, Path::new("a.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("receiver `nobody` is not defined") && e.contains("hook"),
            "{e}"
        );
        let text =
            "rules:\n  - name: X\n    expr: pg_up == 0\n    fro: 5m\nroute:\n  receiver: hook\n";
        let e = AlertsFile::parse(text, Path::new("a.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.yml:4:"), "{e}");
        assert!(e.contains("for"), "{e}");
        let text = "rules:\n  - name: X\n    expr: pg_up >> 0\nroute:\n  receiver: hook\n";
        let e = AlertsFile::parse(text, Path::new("a.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.yml:3:"), "{e}");
    }

    #[test]
    fn a_rule_reading_a_family_the_server_version_lacks_is_an_error() {
        let text = "rules:\n  - name: Checkpoints\n    expr: pg_stat_checkpointer_num_requested_total > 100\n  - name: Off\n    enabled: false\n    expr: pg_stat_io_reads_total > 1\n  - name: Wal\n    expr: pg_up > 2x pg_stat_wal_writes_total\n  - name: Fine\n    expr: pg_stat_bgwriter_checkpoints_req_total > 100\nroute:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook: { url: \"http://127.0.0.1:1/\" }\n";
        let f = AlertsFile::parse(text, Path::new("a.yml")).unwrap();
        assert_eq!(f.check_server_version(17), Ok(()));
        let e = f.check_server_version(15).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("a.yml: 1 alert rule(s) read metrics that PostgreSQL 15 does not have"),
            "{msg}"
        );
        assert!(msg.contains("rule `Checkpoints` reads pg_stat_checkpointer_num_requested_total, which exists on PostgreSQL 17 and later only; use pg_stat_bgwriter_checkpoints_req_total"), "{msg}");
        // The right side is checked too; a disabled rule is not.
        let e = f.check_server_version(18).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert_eq!(
            (e.problems[0].rule.as_str(), e.problems[0].metric.as_str()),
            ("Wal", "pg_stat_wal_writes_total")
        );
        assert!(e.problems[0].instead.contains("pg_stat_io"));
    }

    #[test]
    fn the_shipped_rules_fit_every_supported_version() {
        let f = AlertsFile::parse(EXAMPLE, Path::new("alerts.yml")).unwrap();
        for major in 13..=18 {
            assert_eq!(f.check_server_version(major), Ok(()), "PostgreSQL {major}");
        }
    }

    use super::EXAMPLE;
}
