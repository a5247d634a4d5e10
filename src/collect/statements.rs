//! Slow queries from pg_stat_statements: per statement, what happened between two polls (calls,
//! execution time, rows), bounded to the top N by total and by mean time plus one `(other)`
//! series, with the query text only in `/api/v1/status` (never in a label).
//!
//! Every poll reads `pg_stat_statements(false)`, which skips the query-text file; the text is
//! read (`pg_stat_statements(true)` for the few queryids needed) only for top statements whose
//! text is not cached yet, and the cache forgets statements that left the view. The columns are
//! picked by the installed extension's version (an upgraded server may still run an older
//! extension): `total_exec_time` from 1.8 (PostgreSQL 13), `toplevel` and
//! `pg_stat_statements_info` from 1.9 (14; `toplevel` is taken as true before), `stats_since`
//! from 1.11 (17).
//!
//! Deltas are honest or absent: the first poll only records counters; a changed
//! `pg_stat_statements_info.stats_reset` discards the whole interval; a statement whose counters
//! went backwards or whose `stats_since` changed (evicted and created again) gives no sample
//! that poll. A statement that appears after the first poll was created since the previous one,
//! so all its counts belong to the interval. After a restart of the agent the first poll
//! again only records counters (what ran while the agent was down is not attributed).
//!
//! dbagent's own statements are never counted: a superuser's session turns pg_stat_statements
//! off for itself when it connects (`pg::UNTRACK_OWN_STATEMENTS`); when the session is still
//! tracked (another role, not allowed to), the entries of the agent's role are left out of
//! the top lists, `(other)`, the history and so the baselines and rules.
//!
//! With a state directory (`dbagent run`), each poll's top statements are appended to the
//! statement history in state.db ([`super::statement_history`]) and the status section gains
//! `history`: the top statements of the last hour, from that history.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;
use tokio_postgres::error::SqlState;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output, statement_history};
use crate::metrics::OTHER;
use crate::metrics::catalogue;

/// Longest query text kept for the status section, in characters.
const MAX_TEXT_CHARS: usize = 4096;

/// The window of `history` in the status section.
pub const STATUS_HISTORY_WINDOW: Duration = Duration::from_secs(3600);

/// How the agent's session stands with pg_stat_statements, and the role its entries have.
const OWN_SQL: &str = "SELECT coalesce(current_setting('pg_stat_statements.track', true), ''), \
     r.oid, r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

/// How dbagent's own statements are kept out of the lists.
#[derive(Debug, Clone, PartialEq)]
enum Own {
    /// The session is not tracked (pg_stat_statements.track = none for it).
    Untracked,
    /// The session is tracked: the entries of this role (oid, name) are left out.
    Role(u32, String),
}

impl Own {
    fn excludes(&self, key: &Key) -> bool {
        matches!(self, Own::Role(oid, _) if *oid == key.userid)
    }

    fn describe(&self) -> String {
        match self {
            Own::Untracked => {
                "untracked (pg_stat_statements.track = none in dbagent's sessions)".into()
            }
            Own::Role(_, name) => format!("excluded: every statement of role {name} is left out"),
        }
    }
}

/// One pg_stat_statements entry: the view's own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    userid: u32,
    dbid: u32,
    queryid: i64,
    toplevel: bool,
}

/// An entry's cumulative counters as last read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    calls: f64,
    exec_ms: f64,
    rows: f64,
    /// `stats_since` (17+) as epoch seconds, to tell a re-created entry apart.
    since: Option<f64>,
}

/// One entry's activity in the interval.
#[derive(Debug, Clone)]
struct Delta {
    key: Key,
    datname: String,
    user: String,
    calls: f64,
    seconds: f64,
    rows: f64,
}

impl Delta {
    fn mean(&self) -> f64 {
        if self.calls > 0.0 {
            self.seconds / self.calls
        } else {
            0.0
        }
    }
}

/// What the installed extension offers.
#[derive(Debug, Clone, PartialEq)]
struct Extension {
    /// Schema, quoted for SQL.
    schema: String,
    version: (u32, u32),
}

impl Extension {
    fn exec_time_column(&self) -> &'static str {
        if self.version >= (1, 8) {
            "total_exec_time"
        } else {
            "total_time"
        }
    }

    fn has_toplevel(&self) -> bool {
        self.version >= (1, 9)
    }

    fn has_info(&self) -> bool {
        self.version >= (1, 9)
    }

    fn has_stats_since(&self) -> bool {
        self.version >= (1, 11)
    }

    fn toplevel_expr(&self) -> &'static str {
        if self.has_toplevel() {
            "s.toplevel"
        } else {
            "true"
        }
    }

    fn counters_sql(&self) -> String {
        format!(
            "SELECT s.userid, s.dbid, s.queryid, {toplevel}, s.calls::float8, \
             s.{time}::float8, s.rows::float8, {since}, \
             coalesce(d.datname::text, s.dbid::text), coalesce(r.rolname::text, s.userid::text) \
             FROM {schema}.pg_stat_statements(false) s \
             LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid \
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid \
             WHERE s.queryid IS NOT NULL",
            toplevel = self.toplevel_expr(),
            time = self.exec_time_column(),
            since = if self.has_stats_since() {
                "extract(epoch FROM s.stats_since)::float8"
            } else {
                "NULL::float8"
            },
            schema = self.schema,
        )
    }

    fn texts_sql(&self) -> String {
        format!(
            "SELECT s.userid, s.dbid, s.queryid, {toplevel}, s.query \
             FROM {schema}.pg_stat_statements(true) s WHERE s.queryid = ANY($1)",
            toplevel = self.toplevel_expr(),
            schema = self.schema,
        )
    }

    fn info_sql(&self) -> String {
        format!(
            "SELECT dealloc::float8, stats_reset::text FROM {}.pg_stat_statements_info",
            self.schema
        )
    }
}

/// `pg_stat_statements_info` as last read.
#[derive(Debug, Clone, PartialEq)]
struct Info {
    dealloc: f64,
    stats_reset: Option<String>,
}

/// The `statements` collector; keeps the previous counters and the cached query texts.
#[derive(Default)]
pub struct Statements {
    prev: HashMap<Key, Counters>,
    /// Whether `prev` holds a complete reading to take deltas against.
    baselined: bool,
    prev_info: Option<Info>,
    prev_poll: Option<jiff::Timestamp>,
    texts: HashMap<Key, String>,
    /// Last availability, to log its changes only.
    available: Option<bool>,
    /// The last error writing the history, to log its changes only.
    history_failing: Option<String>,
}

impl Statements {
    pub fn new() -> Statements {
        Statements::default()
    }

    /// Forgets every reading (the extension went away, or the interval is unusable).
    fn forget(&mut self) {
        self.prev.clear();
        self.baselined = false;
        self.prev_info = None;
        self.prev_poll = None;
        self.texts.clear();
    }

    fn set_available(&mut self, available: bool, why: &str) {
        if self.available != Some(available) {
            if available {
                tracing::info!("pg_stat_statements is available: slow-query monitoring is on");
            } else {
                tracing::warn!(reason = why, "Slow-query monitoring is off");
            }
            self.available = Some(available);
        }
    }

    fn unavailable(&mut self, why: String) -> Output {
        self.set_available(false, &why);
        self.forget();
        Output {
            families: vec![available_family(false)],
            status: Some(json!({ "available": false, "reason": why, "queries": [] })),
        }
    }
}

impl Statements {
    /// Appends this poll's top statements to the history in state.db (when the agent has a
    /// state directory) and reads the top statements of the last hour back for the status
    /// section. A failure is logged once and shown in the section; the metrics go on.
    async fn history(
        &mut self,
        ctx: &Ctx<'_>,
        top: &[Delta],
        interval: Option<f64>,
    ) -> serde_json::Value {
        let Some(state_dir) = ctx.state_dir else {
            return serde_json::Value::Null;
        };
        let state_dir = state_dir.to_path_buf();
        let owned: Vec<(Delta, Option<String>)> = top
            .iter()
            .map(|d| (d.clone(), self.texts.get(&d.key).cloned()))
            .collect();
        let now = ctx.now;
        let keep_since = now
            .checked_sub(ctx.config.statement_history_retention)
            .unwrap_or(jiff::Timestamp::MIN);
        let window_since = now
            .checked_sub(STATUS_HISTORY_WINDOW)
            .unwrap_or(jiff::Timestamp::MIN);
        let limit = ctx.config.top_queries;
        let interval_ms = interval.map(|s| (s * 1000.0).round() as i64);
        let result = tokio::task::spawn_blocking(move || {
            let records: Vec<statement_history::Record<'_>> = owned
                .iter()
                .map(|(d, text)| statement_history::Record {
                    queryid: d.key.queryid,
                    dbid: d.key.dbid,
                    userid: d.key.userid,
                    toplevel: d.key.toplevel,
                    datname: &d.datname,
                    rolname: &d.user,
                    query: text.as_deref(),
                    calls: d.calls,
                    total_seconds: d.seconds,
                    rows: d.rows,
                })
                .collect();
            statement_history::record_and_read(
                &state_dir,
                now,
                interval_ms,
                &records,
                keep_since,
                window_since,
                limit,
            )
        })
        .await;
        let result = match result {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the history writer stopped: {e}")),
        };
        match result {
            Ok(top) => {
                if self.history_failing.take().is_some() {
                    tracing::info!("The statement history is written again");
                }
                json!({
                    "window_seconds": STATUS_HISTORY_WINDOW.as_secs(),
                    "by": "total",
                    "queries": top,
                })
            }
            Err(e) => {
                if self.history_failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "Cannot write the statement history; slow-query metrics go on");
                }
                self.history_failing = Some(e.clone());
                json!({ "error": e })
            }
        }
    }
}

fn available_family(available: bool) -> Family {
    Family::of(&catalogue::DBAGENT_STATEMENTS_AVAILABLE)
        .with(&[], if available { 1.0 } else { 0.0 })
}

/// `"1.10"` → `(1, 10)`.
fn parse_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.trim().parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Cuts `text` to at most `MAX_TEXT_CHARS` characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Whether the error means "the library is not loaded" (created but not preloaded).
fn not_loaded(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
}

/// The deltas of `current` against `prev`: entries with calls in the interval, skipping
/// entries that went backwards or were re-created.
fn deltas(
    prev: &HashMap<Key, Counters>,
    current: &[(Key, Counters, String, String)],
) -> Vec<Delta> {
    let mut out = Vec::new();
    for (key, now, datname, user) in current {
        let (calls, exec_ms, rows) = match prev.get(key) {
            None => (now.calls, now.exec_ms, now.rows),
            Some(before) => {
                let recreated = match (before.since, now.since) {
                    (Some(a), Some(b)) => a != b,
                    _ => false,
                };
                let d = (
                    now.calls - before.calls,
                    now.exec_ms - before.exec_ms,
                    now.rows - before.rows,
                );
                if recreated || d.0 < 0.0 || d.1 < 0.0 || d.2 < 0.0 {
                    continue;
                }
                d
            }
        };
        if calls > 0.0 {
            out.push(Delta {
                key: *key,
                datname: datname.clone(),
                user: user.clone(),
                calls,
                seconds: exec_ms / 1000.0,
                rows,
            });
        }
    }
    out
}

/// Splits deltas into the top `n` by total time ∪ top `n` by mean time, and the rest. The top
/// ones come back ordered by total time.
fn split_top(mut all: Vec<Delta>, n: usize) -> (Vec<Delta>, Vec<Delta>) {
    let mut chosen: HashSet<Key> = HashSet::new();
    all.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    chosen.extend(all.iter().take(n).map(|d| d.key));
    let mut by_mean: Vec<&Delta> = all.iter().collect();
    by_mean.sort_by(|a, b| b.mean().total_cmp(&a.mean()));
    chosen.extend(by_mean.iter().take(n).map(|d| d.key));
    all.into_iter().partition(|d| chosen.contains(&d.key))
}

impl Collector for Statements {
    fn name(&self) -> &'static str {
        "statements"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let ext = ctx
                .client
                .query_opt(crate::pg::sql::PG_STAT_STATEMENTS_EXTENSION, &[])
                .await
                .map_err(|e| CollectError::query("pg_extension", &e))?;
            let Some(ext) = ext else {
                return Ok(self.unavailable(format!(
                    "the pg_stat_statements extension is not created in database {}",
                    ctx.dbname
                )));
            };
            let ext = Extension {
                schema: ext.get(0),
                version: parse_version(&ext.get::<_, String>(1)),
            };
            let rows = match ctx.client.query(&ext.counters_sql(), &[]).await {
                Ok(rows) => rows,
                Err(e) if not_loaded(&e) => {
                    return Ok(self.unavailable(
                        "pg_stat_statements is not in shared_preload_libraries".into(),
                    ));
                }
                Err(e) => return Err(CollectError::query("pg_stat_statements", &e)),
            };
            let info = if ext.has_info() {
                let r = ctx
                    .client
                    .query_one(&ext.info_sql(), &[])
                    .await
                    .map_err(|e| CollectError::query("pg_stat_statements_info", &e))?;
                Some(Info {
                    dealloc: r.get(0),
                    stats_reset: r.get(1),
                })
            } else {
                None
            };
            self.set_available(true, "");
            let own = ctx
                .client
                .query_opt(OWN_SQL, &[])
                .await
                .map_err(|e| CollectError::query("dbagent's own role", &e))?;
            let own = match own {
                Some(r) if r.get::<_, String>(0) == "none" => Own::Untracked,
                Some(r) => Own::Role(r.get(1), r.get(2)),
                None => Own::Untracked,
            };

            let current: Vec<(Key, Counters, String, String)> = rows
                .iter()
                .map(|r| {
                    (
                        Key {
                            userid: r.get(0),
                            dbid: r.get(1),
                            queryid: r.get(2),
                            toplevel: r.get(3),
                        },
                        Counters {
                            calls: r.get(4),
                            exec_ms: r.get(5),
                            rows: r.get(6),
                            since: r.get(7),
                        },
                        r.get(8),
                        r.get(9),
                    )
                })
                .collect();

            let reset = match (&self.prev_info, &info) {
                (Some(a), Some(b)) => a.stats_reset != b.stats_reset,
                _ => false,
            };
            let dealloc_in_interval = match (&self.prev_info, &info) {
                (Some(a), Some(b)) if !reset => (b.dealloc - a.dealloc).max(0.0),
                _ => 0.0,
            };
            let discarded = if !self.baselined {
                Some("first reading: counters recorded, deltas from the next poll")
            } else if reset {
                Some("pg_stat_statements was reset: interval discarded")
            } else {
                None
            };
            let interval = self
                .prev_poll
                .map(|p| ctx.now.duration_since(p).as_secs_f64());
            let found = if discarded.is_none() {
                let mut found = deltas(&self.prev, &current);
                found.retain(|d| !own.excludes(&d.key));
                found
            } else {
                Vec::new()
            };

            // Remember this reading; forget the texts of entries gone from the view.
            self.prev = current.iter().map(|(k, c, _, _)| (*k, *c)).collect();
            let prev = &self.prev;
            self.texts.retain(|k, _| prev.contains_key(k));
            self.baselined = true;
            self.prev_info = info.clone();
            self.prev_poll = Some(ctx.now);

            let mut families = vec![
                available_family(true),
                Family::of(&catalogue::DBAGENT_STATEMENTS_TRACKED).with(&[], current.len() as f64),
            ];
            if let Some(info) = &info {
                families.push(
                    Family::of(&catalogue::DBAGENT_STATEMENTS_DEALLOC_TOTAL)
                        .with(&[], info.dealloc),
                );
            }

            let mut warning = None;
            if dealloc_in_interval > 0.0 {
                warning = Some(format!(
                    "pg_stat_statements evicted entries {dealloc_in_interval} times since the last poll: \
                     statistics of evicted statements are lost; raise pg_stat_statements.max"
                ));
            }
            let mut queries = Vec::new();
            let mut records = Vec::new();
            if discarded.is_none() {
                let (top, rest) = split_top(found, ctx.config.top_queries);
                let missing: Vec<i64> = top
                    .iter()
                    .filter(|d| !self.texts.contains_key(&d.key))
                    .map(|d| d.key.queryid)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                if !missing.is_empty() {
                    let rows = ctx
                        .client
                        .query(&ext.texts_sql(), &[&missing])
                        .await
                        .map_err(|e| CollectError::query("pg_stat_statements query texts", &e))?;
                    for r in rows {
                        let key = Key {
                            userid: r.get(0),
                            dbid: r.get(1),
                            queryid: r.get(2),
                            toplevel: r.get(3),
                        };
                        if self.prev.contains_key(&key) {
                            let text: Option<String> = r.get(4);
                            self.texts.insert(key, clip(text.as_deref().unwrap_or("")));
                        }
                    }
                }

                let mut calls = Family::of(&catalogue::DBAGENT_STATEMENT_CALLS);
                let mut seconds = Family::of(&catalogue::DBAGENT_STATEMENT_SECONDS);
                let mut mean =
                    Family::of(&catalogue::DBAGENT_STATEMENT_MEAN_SECONDS).with_baseline();
                let mut rows_f = Family::of(&catalogue::DBAGENT_STATEMENT_ROWS);
                for d in &top {
                    let queryid = d.key.queryid.to_string();
                    let toplevel = d.key.toplevel.to_string();
                    let labels = [
                        ("queryid", queryid.as_str()),
                        ("datname", d.datname.as_str()),
                        ("user", d.user.as_str()),
                        ("toplevel", toplevel.as_str()),
                    ];
                    calls.push(&labels, d.calls);
                    seconds.push(&labels, d.seconds);
                    mean.push(&labels, d.mean());
                    rows_f.push(&labels, d.rows);
                    records.push(d.clone());
                    queries.push(json!({
                        "queryid": queryid,
                        "datname": d.datname,
                        "user": d.user,
                        "toplevel": d.key.toplevel,
                        "calls": d.calls,
                        "total_seconds": d.seconds,
                        "mean_seconds": d.mean(),
                        "rows": d.rows,
                        "query": self.texts.get(&d.key),
                    }));
                }
                let other = rest.iter().fold((0.0, 0.0, 0.0), |acc, d| {
                    (acc.0 + d.calls, acc.1 + d.seconds, acc.2 + d.rows)
                });
                let labels = [
                    ("queryid", OTHER),
                    ("datname", OTHER),
                    ("user", OTHER),
                    ("toplevel", OTHER),
                ];
                calls.push(&labels, other.0);
                seconds.push(&labels, other.1);
                mean.push(
                    &labels,
                    if other.0 > 0.0 {
                        other.1 / other.0
                    } else {
                        0.0
                    },
                );
                rows_f.push(&labels, other.2);
                families.extend([calls, seconds, mean, rows_f]);
            }

            let history = self.history(ctx, &records, interval).await;
            let status = json!({
                "available": true,
                "own_statements": own.describe(),
                "history": history,
                "extension_version": format!("{}.{}", ext.version.0, ext.version.1),
                "tracked": current.len(),
                "interval_seconds": interval,
                "discarded": discarded,
                "dealloc": info.as_ref().map(|i| i.dealloc),
                "dealloc_in_interval": dealloc_in_interval,
                "warning": warning,
                "queries": queries,
            });
            Ok(Output {
                families,
                status: Some(status),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: i64) -> Key {
        Key {
            userid: 10,
            dbid: 5,
            queryid: q,
            toplevel: true,
        }
    }

    fn c(calls: f64, exec_ms: f64) -> Counters {
        Counters {
            calls,
            exec_ms,
            rows: calls,
            since: None,
        }
    }

    fn entry(q: i64, counters: Counters) -> (Key, Counters, String, String) {
        (key(q), counters, "db".into(), "u".into())
    }

    #[test]
    fn deltas_skip_entries_that_went_backwards_or_were_recreated() {
        let prev: HashMap<Key, Counters> = [
            (key(1), c(10.0, 100.0)),
            (key(2), c(10.0, 100.0)),
            (
                key(3),
                Counters {
                    since: Some(1.0),
                    ..c(1.0, 1.0)
                },
            ),
        ]
        .into();
        let d = deltas(
            &prev,
            &[
                entry(1, c(12.0, 700.0)),
                entry(2, c(3.0, 50.0)),
                entry(
                    3,
                    Counters {
                        since: Some(2.0),
                        ..c(5.0, 5.0)
                    },
                ),
                entry(4, c(2.0, 2000.0)),
            ],
        );
        let got: Vec<(i64, f64, f64)> = d
            .iter()
            .map(|d| (d.key.queryid, d.calls, d.seconds))
            .collect();
        assert_eq!(got, vec![(1, 2.0, 0.6), (4, 2.0, 2.0)]);
    }

    #[test]
    fn top_is_the_union_of_total_and_mean() {
        let mk = |q: i64, calls: f64, seconds: f64| Delta {
            key: key(q),
            datname: String::new(),
            user: String::new(),
            calls,
            seconds,
            rows: 0.0,
        };
        // 1 leads by total, 2 by mean, 3 by neither.
        let (top, rest) = split_top(
            vec![mk(1, 1000.0, 50.0), mk(2, 1.0, 5.0), mk(3, 100.0, 1.0)],
            1,
        );
        let ids: Vec<i64> = top.iter().map(|d| d.key.queryid).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].key.queryid, 3);
    }

    #[test]
    fn versions_and_texts() {
        assert_eq!(parse_version("1.10"), (1, 10));
        assert_eq!(parse_version("1.8"), (1, 8));
        assert!(parse_version("1.10") > (1, 9));
        let long = "é".repeat(MAX_TEXT_CHARS + 5);
        assert_eq!(clip(&long).chars().count(), MAX_TEXT_CHARS + 1);
        assert_eq!(clip("short"), "short");
    }
}
