//! Server settings as postgres_exporter exports them: one gauge per numeric or boolean setting
//! of `pg_settings` (`pg_settings_<name>`, with `_seconds` or `_bytes` and the value converted
//! when the setting has a unit), `pg_static{version,short_version}`, the server's start time,
//! the connection limits of databases and roles, and the WAL files in pg_wal. Dashboards and
//! alert rules written for the exporter divide by these
//! (`pg_settings_max_locks_per_transaction`, `pg_settings_autovacuum_vacuum_threshold`, ...).
//!
//! `max_connections` is left to the connections collector, which exports it under the same
//! name in both name sets. A setting whose unit is not a time or a size is left out, as the
//! exporter leaves it out.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::{self, Kind, catalogue};

/// name, setting, unit, vartype of every numeric or boolean setting, then version().
const SQL: &str = "\
SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings \
WHERE vartype IN ('bool', 'integer', 'real') AND name <> 'max_connections' \
ORDER BY name";

/// The metric name suffix and the factor for a pg_settings unit; None for a unit the exporter
/// does not convert (the setting is then left out).
fn unit(u: &str) -> Option<(&'static str, f64)> {
    let kb = 1024.0;
    Some(match u {
        "" => ("", 1.0),
        "ms" => ("_seconds", 0.001),
        "s" => ("_seconds", 1.0),
        "min" => ("_seconds", 60.0),
        "h" => ("_seconds", 3600.0),
        "d" => ("_seconds", 86400.0),
        "B" => ("_bytes", 1.0),
        "kB" => ("_bytes", kb),
        "MB" => ("_bytes", kb * kb),
        "GB" => ("_bytes", kb * kb * kb),
        "TB" => ("_bytes", kb * kb * kb * kb),
        "1kB" | "2kB" | "4kB" | "8kB" | "16kB" | "32kB" | "64kB" => {
            let n: f64 = u.trim_end_matches("kB").parse().ok()?;
            ("_bytes", n * kb)
        }
        "16MB" | "32MB" | "64MB" => {
            let n: f64 = u.trim_end_matches("MB").parse().ok()?;
            ("_bytes", n * kb * kb)
        }
        _ => return None,
    })
}

/// The exporter's family name and value of one setting, if it exports it.
pub fn setting(name: &str, value: &str, unit_text: &str, vartype: &str) -> Option<(String, f64)> {
    let base = format!("pg_settings_{}", name.replace(['.', '-'], "_"));
    if vartype == "bool" {
        return Some((base, if value == "on" { 1.0 } else { 0.0 }));
    }
    let v: f64 = value.parse().ok()?;
    let (suffix, factor) = unit(unit_text)?;
    // -1 means "off" or "unlimited" for many settings: kept as it is.
    let v = if v == -1.0 { v } else { v * factor };
    Some((format!("{base}{suffix}"), v))
}

/// short_version: "major.minor.0" from server_version_num.
fn short_version(num: u32) -> String {
    format!("{}.{}.0", num / 10000, num % 10000)
}

pub struct Settings;

impl Collector for Settings {
    fn name(&self) -> &'static str {
        "settings"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let rows = ctx
                .client
                .query(SQL, &[])
                .await
                .map_err(|e| CollectError::query("pg_settings", &e))?;
            let mut families = Vec::with_capacity(rows.len() + 1);
            for r in &rows {
                let name: String = r.get(0);
                let value: Option<String> = r.get(1);
                let unit_text: String = r.get(2);
                let vartype: String = r.get(3);
                let Some((metric, v)) = value
                    .as_deref()
                    .and_then(|value| setting(&name, value, &unit_text, &vartype))
                else {
                    continue;
                };
                families.push(Family {
                    name: metrics::intern(&metric),
                    help: catalogue::PG_SETTINGS_.help,
                    kind: Kind::Gauge,
                    baseline: false,
                    samples: Vec::new(),
                });
                if let Some(f) = families.last_mut() {
                    f.push(&[], v);
                }
            }
            let row = ctx
                .client
                .query_one(
                    "SELECT version(), extract(epoch FROM pg_postmaster_start_time())::float8",
                    &[],
                )
                .await
                .map_err(|e| CollectError::query("version()", &e))?;
            let version: String = row.get(0);
            families.push(
                Family::of(&catalogue::PG_POSTMASTER_START_TIME_SECONDS).with(&[], row.get(1)),
            );
            for (sql, desc, label, what) in [
                (
                    "SELECT datname::text, datconnlimit::float8 FROM pg_database ORDER BY 1",
                    &catalogue::PG_DATABASE_CONNECTION_LIMIT,
                    "datname",
                    "pg_database (connection limits)",
                ),
                (
                    "SELECT rolname::text, rolconnlimit::float8 FROM pg_roles ORDER BY 1",
                    &catalogue::PG_ROLES_CONNECTION_LIMIT,
                    "rolname",
                    "pg_roles (connection limits)",
                ),
            ] {
                let rows = ctx
                    .client
                    .query(sql, &[])
                    .await
                    .map_err(|e| CollectError::query(what, &e))?;
                let mut f = Family::of(desc);
                for r in &rows {
                    let name: String = r.get(0);
                    f.push(&[(label, &name)], r.get(1));
                }
                families.push(f);
            }
            // pg_ls_waldir needs pg_monitor (or superuser): without it the two families are
            // left out (asked first, so that the server does not log an error every poll).
            let may_list: bool = ctx
                .client
                .query_one(
                    "SELECT has_function_privilege('pg_ls_waldir()', 'EXECUTE')",
                    &[],
                )
                .await
                .map_err(|e| CollectError::query("pg_ls_waldir privilege", &e))?
                .get(0);
            if may_list {
                let row = ctx
                    .client
                    .query_one(
                        "SELECT count(*)::float8, coalesce(sum(size), 0)::float8 \
                         FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'",
                        &[],
                    )
                    .await
                    .map_err(|e| CollectError::query("pg_ls_waldir()", &e))?;
                families.push(Family::of(&catalogue::PG_WAL_SEGMENTS).with(&[], row.get(0)));
                families.push(Family::of(&catalogue::PG_WAL_SIZE_BYTES).with(&[], row.get(1)));
            }
            families.push(Family::of(&catalogue::PG_STATIC).with(
                &[
                    ("short_version", &short_version(ctx.version.num)),
                    ("version", &version),
                ],
                1.0,
            ));
            Ok(Output::families(families))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_and_converted_like_the_exporter_does() {
        assert_eq!(
            setting("shared_buffers", "16384", "8kB", "integer"),
            Some(("pg_settings_shared_buffers_bytes".into(), 16384.0 * 8192.0))
        );
        assert_eq!(
            setting("statement_timeout", "1500", "ms", "integer"),
            Some(("pg_settings_statement_timeout_seconds".into(), 1.5))
        );
        assert_eq!(
            setting("autovacuum_vacuum_scale_factor", "0.2", "", "real"),
            Some(("pg_settings_autovacuum_vacuum_scale_factor".into(), 0.2))
        );
        assert_eq!(
            setting("pg_stat_statements.track_utility", "on", "", "bool"),
            Some(("pg_settings_pg_stat_statements_track_utility".into(), 1.0))
        );
        assert_eq!(
            setting("log_min_duration_statement", "-1", "ms", "integer"),
            Some((
                "pg_settings_log_min_duration_statement_seconds".into(),
                -1.0
            ))
        );
        assert_eq!(setting("odd", "1", "furlongs", "integer"), None);
        assert_eq!(short_version(180006), "18.6.0");
    }
}
