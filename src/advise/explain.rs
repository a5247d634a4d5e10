//! Plans of the slowest statements, for missing-index hints: pg_stat_statements gives the
//! normalized text (`WHERE county = $1`), PostgreSQL plans it as a generic plan (one that holds
//! for any parameter value), and the plan's sequential scans with a filter name the columns an
//! index could serve.
//!
//! How the generic plan is obtained, without ever executing the statement:
//! - PostgreSQL 16+: `EXPLAIN (FORMAT JSON, GENERIC_PLAN) <text>`, made for exactly this.
//! - PostgreSQL 13-15: `PREPARE` the text (parameter types are inferred from their context, as
//!   for any prepared statement), then `EXPLAIN (FORMAT JSON) EXECUTE name(NULL, ...)` with
//!   `plan_cache_mode = force_generic_plan`, so the NULLs never reach the planner (a custom plan
//!   would fold `col = NULL` into "no rows"), then `DEALLOCATE`.
//!
//! Both are sent as ONE simple-protocol message: `$1` stays a placeholder in the text (the
//! extended protocol would take it as a parameter of the EXPLAIN itself), and the message runs
//! as one implicit transaction, so the session settings it changes (`statement_timeout`,
//! `plan_cache_mode`) are reset at its end, or rolled back when it fails, before any other
//! query on the shared connection runs. Only statements that are plain SELECTs (or WITH
//! queries without INSERT/UPDATE/DELETE/MERGE) are explained: EXPLAIN without ANALYZE of DML
//! executes nothing either, but dbagent stays away from it on principle. `EXPLAIN ANALYZE` is
//! never used.

use std::collections::BTreeSet;

use serde::Serialize;
use tokio_postgres::SimpleQueryMessage;

use crate::pg::ServerVersion;

/// How long one EXPLAIN may take.
const EXPLAIN_TIMEOUT_MS: u64 = 2000;

/// A statement from pg_stat_statements.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub queryid: String,
    pub query: String,
    pub calls: f64,
    pub total_seconds: f64,
    pub mean_seconds: f64,
    pub rows: f64,
}

/// Statements worth advising on: queries and DML (after leading comments), not utility
/// commands such as dbagent's own EXPLAIN.
const STATEMENT_KINDS: &str = r"^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*\(*\s*(select|with|table|values|insert|update|delete|merge)\M";
/// Monitoring queries on the catalog and statistics views (dbagent's own among them).
const CATALOG_QUERIES: &str = r"pg_catalog\.|\mpg_stat_";

/// Why statements or a plan could not be read (a note in the report, never a failure of it).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{}", crate::pg::error_detail(.0))]
    Query(tokio_postgres::Error),
    #[error("the pg_stat_statements extension is not created in this database")]
    NoExtension,
    #[error("EXPLAIN returned no plan")]
    NoPlan,
}

/// The statements of the connected database, by the top `n` mean and top `n` total time, or
/// why pg_stat_statements cannot be read. dbagent's own are left out as in the statements
/// collector: its role's entries when its session is still tracked.
pub async fn top_statements(
    client: &tokio_postgres::Client,
    n: usize,
) -> Result<Vec<Statement>, ExplainError> {
    let ext = client
        .query_opt(crate::pg::sql::PG_STAT_STATEMENTS_EXTENSION, &[])
        .await
        .map_err(ExplainError::Query)?;
    let Some(ext) = ext else {
        return Err(ExplainError::NoExtension);
    };
    let schema: String = ext.get(0);
    let version: String = ext.get(1);
    let new_columns = version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        >= vec![1, 8];
    let (total, mean) = if new_columns {
        ("total_exec_time", "mean_exec_time")
    } else {
        ("total_time", "mean_time")
    };
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let sql = format!(
        "WITH s AS ( \
           SELECT queryid, query, calls, {total} AS total_ms, {mean} AS mean_ms, rows \
           FROM {schema}.pg_stat_statements(true) \
           WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
             AND queryid IS NOT NULL AND query IS NOT NULL AND calls > 0 \
             AND (coalesce(current_setting('pg_stat_statements.track', true), '') = 'none' \
               OR userid <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)) \
             AND query ~* $2 AND query !~ $3) \
         SELECT queryid::text, query, calls::float8, (total_ms / 1000)::float8, \
           (mean_ms / 1000)::float8, rows::float8 FROM ( \
           (SELECT * FROM s ORDER BY mean_ms DESC LIMIT $1) UNION \
           (SELECT * FROM s ORDER BY total_ms DESC LIMIT $1)) t \
         ORDER BY 4 DESC"
    );
    let rows = client
        .query(&sql, &[&limit, &STATEMENT_KINDS, &CATALOG_QUERIES])
        .await
        .map_err(ExplainError::Query)?;
    // The same queryid may appear per user/toplevel: keep the costliest text once.
    let mut seen = BTreeSet::new();
    Ok(rows
        .iter()
        .map(|r| Statement {
            queryid: r.get(0),
            query: r.get(1),
            calls: r.get(2),
            total_seconds: r.get(3),
            mean_seconds: r.get(4),
            rows: r.get(5),
        })
        .filter(|s| seen.insert(s.queryid.clone()))
        .collect())
}

/// Whether `text` is a read-only SELECT dbagent may EXPLAIN: starts with SELECT (or a WITH that
/// names no data-modifying command), and is one statement.
pub fn explainable(text: &str) -> bool {
    let t = strip_leading_comments(text);
    let lower = t.to_ascii_lowercase();
    let body = lower.trim_end().trim_end_matches(';');
    if body.contains(';') {
        return false;
    }
    let first = body.split_whitespace().next().unwrap_or("");
    let words: Vec<&str> = body
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .collect();
    match first.trim_start_matches('(') {
        "select" | "table" | "values" => !words.contains(&"into"),
        "with" => !words
            .iter()
            .any(|w| matches!(*w, "insert" | "update" | "delete" | "merge" | "into")),
        _ => false,
    }
}

fn strip_leading_comments(mut t: &str) -> &str {
    loop {
        t = t.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            t = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(rest) = t.strip_prefix("/*") {
            t = rest.split_once("*/").map(|(_, r)| r).unwrap_or("");
        } else {
            return t;
        }
    }
}

/// The highest `$N` placeholder in `text` (the parameter count of a normalized statement).
fn parameter_count(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j > start
                && let Ok(n) = text[start..j].parse::<usize>()
            {
                max = max.max(n);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    max
}

/// The EXPLAIN script for `text`: one simple-protocol message (see the module docs).
pub fn script(v: &ServerVersion, text: &str, name: &str) -> String {
    let text = text.trim().trim_end_matches(';');
    if v.major() >= 16 {
        format!(
            "SET statement_timeout = {EXPLAIN_TIMEOUT_MS}; \
             EXPLAIN (FORMAT JSON, VERBOSE, GENERIC_PLAN) {text}; \
             RESET statement_timeout"
        )
    } else {
        let n = parameter_count(text);
        let args = if n == 0 {
            String::new()
        } else {
            format!("({})", vec!["NULL"; n].join(", "))
        };
        format!(
            "SET statement_timeout = {EXPLAIN_TIMEOUT_MS}; SET plan_cache_mode = force_generic_plan; \
             PREPARE {name} AS {text}; \
             EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE {name}{args}; \
             DEALLOCATE {name}; RESET plan_cache_mode; RESET statement_timeout"
        )
    }
}

/// The generic plan of `text` as JSON, or why there is none.
pub async fn explain(
    client: &tokio_postgres::Client,
    v: &ServerVersion,
    text: &str,
    name: &str,
) -> Result<serde_json::Value, ExplainError> {
    let result = client.simple_query(&script(v, text, name)).await;
    let messages = match result {
        Ok(m) => m,
        Err(e) => {
            if v.major() < 16 {
                // PREPARE is not transactional: a failure after it leaves the statement.
                let _ = client.simple_query(&format!("DEALLOCATE {name}")).await;
            }
            return Err(ExplainError::Query(e));
        }
    };
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m
            && let Some(text) = row.get(0)
            && let Ok(plan) = serde_json::from_str::<serde_json::Value>(text)
        {
            return Ok(plan);
        }
    }
    Err(ExplainError::NoPlan)
}

/// The shape of a plan: its nodes (depth first) with the relations and indexes they use, without costs or
/// row estimates (which move with statistics), and a short hash of it to tell plans apart.
pub fn plan_shape(plan: &serde_json::Value) -> (String, String) {
    use sha2::{Digest, Sha256};
    let root = match plan {
        serde_json::Value::Array(a) => a.first().and_then(|p| p.get("Plan")),
        other => other.get("Plan"),
    };
    let mut parts = Vec::new();
    if let Some(root) = root {
        shape(root, &mut parts);
    }
    let text = parts.join(" > ");
    let hash = Sha256::digest(text.as_bytes());
    (hex::encode(&hash[..8]), text)
}

fn shape(node: &serde_json::Value, out: &mut Vec<String>) {
    let get = |k: &str| node.get(k).and_then(|v| v.as_str());
    let mut part = get("Node Type").unwrap_or("?").to_string();
    if let Some(s) = get("Strategy") {
        part = format!("{s} {part}");
    }
    if let Some(j) = get("Join Type").filter(|j| *j != "Inner") {
        part.push_str(&format!(" ({j})"));
    }
    if let Some(i) = get("Index Name") {
        part.push_str(&format!(" using {i}"));
    }
    if let Some(r) = get("Relation Name") {
        part.push_str(&format!(" on {r}"));
    }
    out.push(part);
    if let Some(children) = node.get("Plans").and_then(|v| v.as_array()) {
        for c in children {
            shape(c, out);
        }
    }
}

/// A sequential scan with a filter, found in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeqScanFilter {
    pub schema: Option<String>,
    pub relation: String,
    pub filter: String,
    /// Rows the planner expects the filter to keep.
    pub plan_rows: f64,
}

/// Every Seq Scan (parallel or not) with a Filter in the plan.
pub fn seq_scans(plan: &serde_json::Value) -> Vec<SeqScanFilter> {
    let mut out = Vec::new();
    let root = match plan {
        serde_json::Value::Array(a) => a.first().and_then(|p| p.get("Plan")),
        other => other.get("Plan"),
    };
    if let Some(root) = root {
        walk(root, &mut out);
    }
    out
}

fn walk(node: &serde_json::Value, out: &mut Vec<SeqScanFilter>) {
    let kind = node.get("Node Type").and_then(|v| v.as_str()).unwrap_or("");
    if kind == "Seq Scan"
        && let (Some(rel), Some(filter)) = (
            node.get("Relation Name").and_then(|v| v.as_str()),
            node.get("Filter").and_then(|v| v.as_str()),
        )
    {
        let workers = node
            .get("Parallel Aware")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let rows = node
            .get("Plan Rows")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        out.push(SeqScanFilter {
            schema: node
                .get("Schema")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            relation: rel.to_string(),
            filter: filter.to_string(),
            // A parallel scan's rows are per process; the leader and workers share the table.
            plan_rows: if workers { rows * 3.0 } else { rows },
        });
    }
    if let Some(children) = node.get("Plans").and_then(|v| v.as_array()) {
        for c in children {
            walk(c, out);
        }
    }
}

/// The columns of `columns` that `filter` names, in order of first mention. Identifiers are
/// matched whole (quoted or not, qualified or not); string literals are skipped.
pub fn filter_columns(filter: &str, columns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = filter.chars().collect();
    let mut i = 0;
    let push = |ident: String, out: &mut Vec<String>| {
        if columns.contains(&ident) && !out.contains(&ident) {
            out.push(ident);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Skip a string literal ('' escapes a quote).
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
        } else if c == '"' {
            let mut ident = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        ident.push('"');
                        i += 2;
                        continue;
                    }
                    break;
                }
                ident.push(chars[i]);
                i += 1;
            }
            i += 1;
            push(ident, &mut out);
        } else if c.is_alphabetic() || c == '_' {
            let mut ident = String::new();
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                ident.push(chars[i]);
                i += 1;
            }
            // A type cast (`::text`) or function name is not a column; a column can be.
            push(ident.to_lowercase(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advise_only_selects_are_explained() {
        assert!(explainable("SELECT * FROM claims WHERE county = $1"));
        assert!(explainable("  /* app */ select 1;"));
        assert!(explainable("-- hi\nWITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(!explainable(
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x"
        ));
        assert!(!explainable("UPDATE t SET a = $1"));
        assert!(!explainable("SELECT 1; DELETE FROM t"));
        assert!(!explainable("SELECT * INTO new_table FROM t"));
        assert!(!explainable("insert into t values ($1)"));
    }

    #[test]
    fn advise_script_per_version() {
        let v15 = ServerVersion::from_num(150018, "15.18");
        let v18 = ServerVersion::from_num(180001, "18.1");
        let q = "SELECT * FROM t WHERE a = $1 AND b = $2;";
        let s = script(&v18, q, "x");
        assert!(
            s.contains("GENERIC_PLAN) SELECT * FROM t WHERE a = $1 AND b = $2;"),
            "{s}"
        );
        let s = script(&v15, q, "dbagent_advise_1");
        assert!(s.contains("PREPARE dbagent_advise_1 AS SELECT"), "{s}");
        assert!(s.contains("EXECUTE dbagent_advise_1(NULL, NULL);"), "{s}");
        assert!(s.contains("force_generic_plan"), "{s}");
        assert!(script(&v15, "SELECT 1", "y").contains("EXECUTE y;"));
        assert_eq!(parameter_count("a = $12 and b = $3"), 12);
    }

    #[test]
    fn advise_plan_shape_ignores_costs_and_tells_plans_apart() {
        let a = serde_json::json!([{ "Plan": { "Node Type": "Aggregate", "Strategy": "Plain",
            "Total Cost": 10.0, "Plans": [{ "Node Type": "Index Scan",
            "Index Name": "claims_county", "Relation Name": "claims", "Plan Rows": 200.0 }] } }]);
        let mut b = a.clone();
        b[0]["Plan"]["Total Cost"] = serde_json::json!(99.0);
        assert_eq!(plan_shape(&a), plan_shape(&b));
        let (_, text) = plan_shape(&a);
        assert_eq!(
            text,
            "Plain Aggregate > Index Scan using claims_county on claims"
        );
        let seq = serde_json::json!([{ "Plan": { "Node Type": "Aggregate", "Strategy": "Plain",
            "Plans": [{ "Node Type": "Seq Scan", "Relation Name": "claims" }] } }]);
        assert_ne!(plan_shape(&a).0, plan_shape(&seq).0);
    }

    #[test]
    fn advise_plan_walk_finds_filtered_seq_scans_and_columns() {
        let plan = serde_json::json!([{ "Plan": {
            "Node Type": "Aggregate",
            "Plans": [{
                "Node Type": "Seq Scan", "Relation Name": "claims", "Schema": "public",
                "Parallel Aware": false, "Plan Rows": 200.0,
                "Filter": "((claims.county = $1) AND (\"Year\" = 2020) AND (claims.note <> 'county'::text))"
            }, {
                "Node Type": "Seq Scan", "Relation Name": "other", "Plan Rows": 5.0
            }]
        }}]);
        let scans = seq_scans(&plan);
        assert_eq!(scans.len(), 1);
        assert_eq!(scans[0].relation, "claims");
        assert_eq!(scans[0].schema.as_deref(), Some("public"));
        let cols: Vec<String> = ["id", "county", "Year", "note", "amount"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            filter_columns(&scans[0].filter, &cols),
            vec!["county", "Year", "note"]
        );
    }
}
