//! The checks that ask the server: connection, version, the role's privileges, WAL and
//! archiving settings, the archiver's health, pg_stat_statements, checksums and checkpoints.

use tokio_postgres::Client;

use super::{CheckResult, ServerInfo, Status};
use crate::config::Config;
use crate::pg::{self, PgTarget, ServerVersion, sql};
use crate::units::human_duration;

/// Settings and role facts read in one round trip; readable by any role.
struct Facts {
    role: String,
    role_ident: String,
    superuser: bool,
    replication: bool,
    pg_monitor: bool,
    in_recovery: bool,
    wal_level: String,
    archive_mode: String,
    /// None when the role may not read it (superuser-only settings need pg_read_all_settings).
    archive_command: Option<String>,
    archive_library: Option<String>,
    preload: Option<String>,
    data_checksums: String,
    database: String,
    pgss_created: bool,
    max_wal_size: String,
    /// archive_timeout in seconds (0 = off).
    archive_timeout: i64,
}

/// Settings are read through pg_settings, which hides superuser-only settings from a role
/// without pg_read_all_settings instead of failing the whole query.
const FACTS_SQL: &str = "SELECT current_user::text, quote_ident(current_user), r.rolsuper, r.rolreplication, \
    pg_has_role(current_user, 'pg_monitor', 'USAGE'), pg_is_in_recovery(), \
    current_setting('wal_level'), current_setting('archive_mode'), \
    (SELECT setting FROM pg_settings WHERE name = 'archive_command'), \
    (SELECT setting FROM pg_settings WHERE name = 'archive_library'), \
    (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), \
    current_setting('data_checksums'), current_database()::text, \
    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'), \
    current_setting('max_wal_size'), \
    (SELECT setting::bigint FROM pg_settings WHERE name = 'archive_timeout') \
    FROM pg_roles r WHERE r.rolname = current_user";

/// Runs the server checks; returns them, what was learned about the server and the connection
/// (if reachable) for the checks that ask it more.
pub async fn run(config: &Config) -> (Vec<CheckResult>, Option<ServerInfo>, Option<Client>) {
    let target = match PgTarget::new(&config.postgres.conninfo, config.session_options()) {
        Ok(t) => t,
        Err(e) => {
            return (
                vec![CheckResult::problem(
                    "connection",
                    Status::Critical,
                    e.to_string(),
                    "fix postgres.conninfo or the PG* environment variables",
                )],
                None,
                None,
            );
        }
    };
    let started = std::time::Instant::now();
    let client = match target.connect().await {
        Ok(c) => c,
        Err(e) => {
            return (
                vec![CheckResult {
                    name: "connection",
                    status: Status::Critical,
                    message: e.to_string(),
                    action: None,
                }],
                None,
                None,
            );
        }
    };
    let mut checks = vec![CheckResult::ok(
        "connection",
        format!(
            "connected to {} in {} ms",
            target.describe(),
            started.elapsed().as_millis()
        ),
    )];
    let version = match ServerVersion::detect(&client).await {
        Ok(v) => v,
        Err(e) => {
            checks.push(unknown("server_version", &target, &e));
            return (checks, None, None);
        }
    };
    let facts = match read_facts(&client).await {
        Ok(f) => f,
        Err(e) => {
            checks.push(unknown("settings", &target, &e));
            return (checks, None, None);
        }
    };
    let info = ServerInfo {
        endpoint: target.info().endpoint(),
        user: facts.role.clone(),
        database: facts.database.clone(),
        version: version.text.clone(),
        version_num: version.num,
        in_recovery: facts.in_recovery,
        system_identifier: client
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get(0)),
    };
    checks.push(check_version(&version, &facts));
    checks.extend(check_privileges(&client, &version, &facts).await);
    checks.push(check_stats_visibility(&client, &target, &version, &facts).await);
    checks.push(check_wal_level(&facts));
    checks.push(check_archive_mode(&facts));
    checks.push(check_archive_command(config, &facts));
    checks.push(check_archiver(&client, &target, &facts).await);
    checks.push(check_archive_lag(&client, &target, config, &facts).await);
    checks.push(check_archive_timeout(config, &facts));
    if facts.in_recovery {
        checks.push(super::standby::check(&client, &target, config).await);
    }
    checks.push(check_pg_stat_statements(&client, &facts).await);
    checks.push(check_data_checksums(&facts));
    checks.push(check_checkpoints(&client, &target, &version, &facts).await);
    (checks, Some(info), Some(client))
}

fn unknown(name: &'static str, target: &PgTarget, e: &tokio_postgres::Error) -> CheckResult {
    CheckResult::problem(
        name,
        Status::Unknown,
        target.query_error(name, e).to_string(),
        "check the server log; rerun with -v for details",
    )
}

async fn read_facts(client: &Client) -> Result<Facts, tokio_postgres::Error> {
    let r = client.query_one(FACTS_SQL, &[]).await?;
    Ok(Facts {
        role: r.get(0),
        role_ident: r.get(1),
        superuser: r.get(2),
        replication: r.get(3),
        pg_monitor: r.get(4),
        in_recovery: r.get(5),
        wal_level: r.get(6),
        archive_mode: r.get(7),
        archive_command: r.get(8),
        archive_library: r.get::<_, Option<String>>(9).filter(|s| !s.is_empty()),
        preload: r.get(10),
        data_checksums: r.get(11),
        database: r.get(12),
        pgss_created: r.get(13),
        max_wal_size: r.get(14),
        archive_timeout: r.get::<_, Option<i64>>(15).unwrap_or(0),
    })
}

fn check_version(v: &ServerVersion, f: &Facts) -> CheckResult {
    let role = if f.in_recovery { "standby" } else { "primary" };
    if v.is_supported() {
        CheckResult::ok("server_version", format!("PostgreSQL {v} ({role})"))
    } else if v.major() > crate::pg::version::MAX_SUPPORTED_MAJOR {
        CheckResult::problem(
            "server_version",
            Status::Warning,
            format!("PostgreSQL {v} is newer than dbagent is tested with (13 to 18)"),
            "upgrade dbagent to a release that supports this version",
        )
    } else {
        CheckResult::problem(
            "server_version",
            Status::Critical,
            format!("PostgreSQL {v} is not supported (13 to 18 are)"),
            "upgrade PostgreSQL to 13 or newer",
        )
    }
}

async fn check_privileges(client: &Client, v: &ServerVersion, f: &Facts) -> Vec<CheckResult> {
    let role = &f.role_ident;
    if f.superuser {
        let msg = format!(
            "role {} is a superuser (works; a dedicated role with pg_monitor and REPLICATION is safer)",
            f.role
        );
        return vec![
            CheckResult::ok("role_pg_monitor", msg.clone()),
            CheckResult::ok("role_replication", msg.clone()),
            CheckResult::ok("role_functions", msg),
        ];
    }
    let mut out = Vec::new();
    out.push(if f.pg_monitor {
        CheckResult::ok("role_pg_monitor", format!("role {} has pg_monitor", f.role))
    } else {
        CheckResult::problem(
            "role_pg_monitor",
            Status::Warning,
            format!("role {} is not a member of pg_monitor: statistics of other sessions, archive status and replication are hidden from it", f.role),
            format!("GRANT pg_monitor TO {role};"),
        )
    });
    out.push(if f.replication {
        CheckResult::ok(
            "role_replication",
            format!("role {} has REPLICATION", f.role),
        )
    } else {
        CheckResult::problem(
            "role_replication",
            Status::Warning,
            format!(
                "role {} lacks the REPLICATION attribute that pg_basebackup needs for backups",
                f.role
            ),
            format!("ALTER ROLE {role} REPLICATION;"),
        )
    });
    let functions = sql::required_functions(v);
    let signatures: Vec<&str> = functions.iter().map(|f| f.signature).collect();
    let rows = client
        .query(
            "SELECT f, CASE WHEN to_regprocedure(f) IS NULL THEN NULL \
             ELSE has_function_privilege(current_user, to_regprocedure(f), 'EXECUTE') END \
             FROM unnest($1::text[]) AS f",
            &[&signatures],
        )
        .await;
    out.push(match rows {
        Err(e) => CheckResult::problem(
            "role_functions",
            Status::Unknown,
            format!("cannot read function privileges: {}", pg::error_detail(&e)),
            "rerun as a role that can query has_function_privilege",
        ),
        Ok(rows) => {
            let missing: Vec<String> = rows
                .iter()
                .filter(|r| r.get::<_, Option<bool>>(1) != Some(true))
                .map(|r| r.get::<_, String>(0))
                .collect();
            if missing.is_empty() {
                CheckResult::ok(
                    "role_functions",
                    format!("role {} may execute {}", f.role, signatures.join(", ")),
                )
            } else {
                let grants: Vec<String> = missing
                    .iter()
                    .map(|sig| format!("GRANT EXECUTE ON FUNCTION {sig} TO {role};"))
                    .collect();
                CheckResult::problem(
                    "role_functions",
                    Status::Warning,
                    format!("role {} may not execute {}", f.role, missing.join(", ")),
                    grants.join(" "),
                )
            }
        }
    });
    out
}

/// Bloat estimates need pg_stats for every table, and pg_stats hides the rows of tables the
/// role may not SELECT; the advisor's EXPLAIN of the slowest statements (missing-index hints)
/// needs SELECT on their tables too. OK for a superuser or a member of pg_read_all_data (14+).
async fn check_stats_visibility(
    client: &Client,
    target: &PgTarget,
    v: &ServerVersion,
    f: &Facts,
) -> CheckResult {
    let name = "stats_visibility";
    if f.superuser {
        return CheckResult::ok(
            name,
            format!(
                "role {} is a superuser: pg_stats shows every table's statistics and the advisor may EXPLAIN every statement",
                f.role
            ),
        );
    }
    let read_all = sql::read_all_stats_role(v);
    if let Some(group) = read_all {
        match client
            .query_one(
                "SELECT pg_has_role(current_user, $1::text::name, 'USAGE')",
                &[&group],
            )
            .await
        {
            Ok(r) if r.get::<_, bool>(0) => {
                return CheckResult::ok(
                    name,
                    format!(
                        "role {} is a member of {group}: pg_stats shows every table's statistics and the advisor may EXPLAIN every statement",
                        f.role
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => return unknown(name, target, &e),
        }
    }
    let counts = client
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT has_table_privilege(c.oid, 'SELECT')), count(*) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await;
    let (hidden, total): (i64, i64) = match counts {
        Ok(r) => (r.get(0), r.get(1)),
        Err(e) => return unknown(name, target, &e),
    };
    let role = &f.role_ident;
    let message = format!(
        "role {} is neither a superuser nor a member of pg_read_all_data: pg_stats hides the \
         statistics of tables it may not SELECT ({hidden} of {total} tables in database {}), \
         so their bloat is not estimated, and the advisor cannot EXPLAIN the statements that \
         read them (no missing-index hints for those)",
        f.role, f.database
    );
    match read_all {
        Some(group) => CheckResult::problem(
            name,
            Status::Warning,
            message,
            format!("GRANT {group} TO {role};"),
        ),
        None => CheckResult::problem(
            name,
            Status::Warning,
            message,
            format!(
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; (per schema; pg_read_all_data exists from PostgreSQL 14)"
            ),
        ),
    }
}

fn check_wal_level(f: &Facts) -> CheckResult {
    if f.wal_level == "minimal" {
        CheckResult::problem(
            "wal_level",
            Status::Critical,
            "wal_level is minimal: WAL cannot be archived or used for point-in-time recovery",
            "ALTER SYSTEM SET wal_level = 'replica'; then restart PostgreSQL",
        )
    } else {
        CheckResult::ok("wal_level", format!("wal_level is {}", f.wal_level))
    }
}

fn check_archive_mode(f: &Facts) -> CheckResult {
    match (f.archive_mode.as_str(), f.in_recovery) {
        ("off", _) => CheckResult::problem(
            "archive_mode",
            Status::Critical,
            "archive_mode is off: no WAL is archived, so point-in-time recovery is impossible",
            "ALTER SYSTEM SET archive_mode = 'on'; then restart PostgreSQL",
        ),
        ("on", true) => CheckResult::ok(
            "archive_mode",
            "archive_mode is on (this standby leaves archiving to the primary)",
        ),
        (mode, _) => CheckResult::ok("archive_mode", format!("archive_mode is {mode}")),
    }
}

/// The archive_command to suggest: this binary and this configuration file.
fn suggested_archive_command(config: &Config) -> String {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "dbagent".into());
    match &config.source {
        Some(path) => format!("{exe} --config {} wal-push %p", path.display()),
        None => format!("{exe} wal-push %p"),
    }
}

fn check_archive_command(config: &Config, f: &Facts) -> CheckResult {
    let suggestion = suggested_archive_command(config);
    let set_it = format!(
        "ALTER SYSTEM SET archive_command = '{}'; then SELECT pg_reload_conf();",
        suggestion.replace('\'', "''")
    );
    if let Some(lib) = &f.archive_library {
        return CheckResult::problem(
            "archive_command",
            Status::Critical,
            format!("archive_library is set to {lib}, so archive_command is not used"),
            format!("ALTER SYSTEM RESET archive_library; {set_it}"),
        );
    }
    let Some(cmd) = f.archive_command.as_deref().map(str::trim) else {
        return CheckResult::problem(
            "archive_command",
            Status::Unknown,
            format!("role {} may not read archive_command", f.role),
            format!("GRANT pg_monitor TO {};", f.role_ident),
        );
    };
    if cmd.is_empty() || cmd == "(disabled)" {
        return CheckResult::problem(
            "archive_command",
            Status::Critical,
            "archive_command is empty: no WAL reaches the repository",
            set_it,
        );
    }
    if !(cmd.contains("dbagent") && cmd.contains("wal-push")) {
        return CheckResult::problem(
            "archive_command",
            Status::Warning,
            format!(
                "archive_command does not call dbagent wal-push (it is `{cmd}`), so WAL does not reach the dbagent repository"
            ),
            set_it,
        );
    }
    if !cmd.contains("%p") {
        return CheckResult::problem(
            "archive_command",
            Status::Critical,
            format!("archive_command `{cmd}` does not pass the segment path %p to wal-push"),
            set_it,
        );
    }
    CheckResult::ok(
        "archive_command",
        format!("archive_command calls dbagent wal-push: `{cmd}`"),
    )
}

async fn check_archiver(client: &Client, target: &PgTarget, f: &Facts) -> CheckResult {
    if f.in_recovery && f.archive_mode != "always" {
        return CheckResult::ok(
            "archiving",
            "not applicable on a standby (the primary archives)",
        );
    }
    let row = client
        .query_one(
            "SELECT archived_count, last_archived_wal, \
             EXTRACT(EPOCH FROM now() - last_archived_time)::float8, \
             failed_count, last_failed_wal, last_failed_time::text, \
             coalesce(last_failed_time > last_archived_time, last_failed_time IS NOT NULL) \
             FROM pg_stat_archiver",
            &[],
        )
        .await;
    let r = match row {
        Ok(r) => r,
        Err(e) => return unknown("archiving", target, &e),
    };
    let archived: i64 = r.get(0);
    let last_wal: Option<String> = r.get(1);
    let age: Option<f64> = r.get(2);
    let failed: i64 = r.get(3);
    let last_failed_wal: Option<String> = r.get(4);
    let last_failed_time: Option<String> = r.get(5);
    let failing: bool = r.get(6);
    if failing {
        return CheckResult::problem(
            "archiving",
            Status::Critical,
            format!(
                "WAL archiving is failing: {} failed at {} ({} failures so far); WAL accumulates in pg_wal until it succeeds",
                last_failed_wal.as_deref().unwrap_or("?"),
                last_failed_time.as_deref().unwrap_or("?"),
                failed
            ),
            format!(
                "PostgreSQL retries this file and archives nothing after it until it succeeds; see why in the server log (wal-push's `dbagent: error:` line) or by running the archive_command by hand as the postgres user in the data directory ({}), then fix what it names",
                last_failed_wal
                    .as_deref()
                    .map(|w| format!("`dbagent --config FILE wal-push pg_wal/{w}`"))
                    .unwrap_or_else(|| "`dbagent --config FILE wal-push pg_wal/FILE`".into())
            ),
        );
    }
    match (last_wal, age) {
        (Some(wal), Some(age)) => CheckResult::ok(
            "archiving",
            format!(
                "{archived} segments archived, last {wal} {} ago, {failed} failures",
                human_duration(age)
            ),
        ),
        _ => CheckResult::ok("archiving", "no segment archived yet, no failures"),
    }
}

async fn check_archive_lag(
    client: &Client,
    target: &PgTarget,
    config: &Config,
    f: &Facts,
) -> CheckResult {
    if f.archive_mode == "off" || (f.in_recovery && f.archive_mode != "always") {
        return CheckResult::ok(
            "archive_lag",
            "not applicable (nothing is being archived here)",
        );
    }
    let row = client
        .query_one(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(modification))::float8 \
             FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
            &[],
        )
        .await;
    let r = match row {
        Ok(r) => r,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            return CheckResult::problem(
                "archive_lag",
                Status::Unknown,
                format!("role {} may not read the archive status directory", f.role),
                format!("GRANT pg_monitor TO {};", f.role_ident),
            );
        }
        Err(e) => return unknown("archive_lag", target, &e),
    };
    let waiting: i64 = r.get(0);
    let oldest: Option<f64> = r.get(1);
    let Some(oldest) = oldest else {
        return CheckResult::ok("archive_lag", "no WAL segment is waiting to be archived");
    };
    let msg = format!(
        "{waiting} WAL segments waiting to be archived, the oldest for {}",
        human_duration(oldest)
    );
    let warn = config.check.archive_lag_warning.as_secs_f64();
    let crit = config.check.archive_lag_critical.as_secs_f64();
    if oldest >= crit {
        CheckResult::problem(
            "archive_lag",
            Status::Critical,
            format!("{msg} (critical at {})", human_duration(crit)),
            "check the archiving check and the server log; the recovery point objective is at risk",
        )
    } else if oldest >= warn {
        CheckResult::problem(
            "archive_lag",
            Status::Warning,
            format!("{msg} (warning at {})", human_duration(warn)),
            "check that archive_command keeps up (dbagent wal-push duration, repository disk)",
        )
    } else {
        CheckResult::ok("archive_lag", msg)
    }
}

/// Whether the settings can meet the RPO target: PostgreSQL archives a segment when it is
/// full (16 MiB by default) or when archive_timeout forces a switch, so without
/// archive_timeout (or with one above the target) a quiet hour leaves committed work in pg_wal
/// only, for longer than the target.
fn check_archive_timeout(config: &Config, f: &Facts) -> CheckResult {
    let name = "archive_timeout";
    if f.archive_mode == "off" || f.in_recovery {
        return CheckResult::ok(name, "not applicable (nothing is being archived here)");
    }
    let target = config.objectives.rpo.as_secs();
    let timeout = u64::try_from(f.archive_timeout).unwrap_or(0);
    let rpo = human_duration(target as f64);
    let advice = suggested_archive_timeout(target);
    let fix = format!(
        "ALTER SYSTEM SET archive_timeout = '{advice}s'; SELECT pg_reload_conf(); (or raise objectives.rpo if the target is wrong)"
    );
    if timeout == 0 {
        CheckResult::problem(
            name,
            Status::Warning,
            format!(
                "RPO target {rpo} cannot be met: archive_timeout is 0 (off), so a WAL segment is archived only once {} of WAL fill it, which a quiet database may take hours to write; set archive_timeout = '{advice}s' or anything less than the target",
                segment_size_hint()
            ),
            fix,
        )
    } else if timeout >= target {
        CheckResult::problem(
            name,
            Status::Warning,
            format!(
                "RPO target {rpo} cannot be met: archive_timeout is {}, not less than the target (archiving the segment takes time too); set archive_timeout = '{advice}s' or anything less than the target",
                human_duration(timeout as f64)
            ),
            fix,
        )
    } else {
        CheckResult::ok(
            name,
            format!(
                "archive_timeout is {}, within the RPO target {rpo}",
                human_duration(timeout as f64)
            ),
        )
    }
}

/// 60 s, or half the target when that is shorter (at least 1 s): short enough to leave time
/// for archiving within the target, long enough not to switch segments needlessly (each
/// switch archives a whole segment, though a mostly empty one compresses to almost nothing).
fn suggested_archive_timeout(target_secs: u64) -> u64 {
    (target_secs / 2).clamp(1, 60)
}

fn segment_size_hint() -> &'static str {
    "16 MiB (the default segment size)"
}

async fn check_pg_stat_statements(client: &Client, f: &Facts) -> CheckResult {
    let name = "pg_stat_statements";
    let loaded = match &f.preload {
        Some(preload) => preload
            .split(',')
            .any(|lib| lib.trim().trim_matches('"') == "pg_stat_statements"),
        // The role may not read shared_preload_libraries: ask the extension itself, which
        // refuses to answer when the library is not loaded.
        None if f.pgss_created => client
            .query("SELECT 1 FROM pg_stat_statements LIMIT 1", &[])
            .await
            .is_ok(),
        None => true,
    };
    let preload_fix = || {
        let current = f.preload.as_deref().map(str::trim).unwrap_or("");
        let libs = if current.is_empty() {
            "pg_stat_statements".to_string()
        } else {
            format!("{current},pg_stat_statements")
        };
        format!(
            "ALTER SYSTEM SET shared_preload_libraries = '{libs}'; restart PostgreSQL; then CREATE EXTENSION pg_stat_statements; in database {}",
            f.database
        )
    };
    match (loaded, f.pgss_created) {
        (true, true) => CheckResult::ok(
            name,
            format!(
                "pg_stat_statements is loaded and created in database {}",
                f.database
            ),
        ),
        (false, _) => CheckResult::problem(
            name,
            Status::Warning,
            "pg_stat_statements is not in shared_preload_libraries: slow-query monitoring is off",
            preload_fix(),
        ),
        (true, false) => CheckResult::problem(
            name,
            Status::Warning,
            format!(
                "pg_stat_statements is not created in database {}: slow-query monitoring is off",
                f.database
            ),
            if f.preload.is_some() {
                format!(
                    "CREATE EXTENSION pg_stat_statements; in database {}",
                    f.database
                )
            } else {
                format!(
                    "CREATE EXTENSION pg_stat_statements; in database {} (it must also be in shared_preload_libraries)",
                    f.database
                )
            },
        ),
    }
}

fn check_data_checksums(f: &Facts) -> CheckResult {
    if f.data_checksums == "on" {
        CheckResult::ok("data_checksums", "data checksums are on")
    } else {
        CheckResult::problem(
            "data_checksums",
            Status::Warning,
            "data checksums are off: silent corruption can reach backups undetected",
            "stop PostgreSQL and run pg_checksums --enable -D $PGDATA (takes time on large clusters)",
        )
    }
}

async fn check_checkpoints(
    client: &Client,
    target: &PgTarget,
    v: &ServerVersion,
    f: &Facts,
) -> CheckResult {
    let r = match client.query_one(sql::checkpoint_stats(v), &[]).await {
        Ok(r) => r,
        Err(e) => return unknown("checkpoints", target, &e),
    };
    let timed: f64 = r.get(0);
    let requested: f64 = r.get(1);
    let total = timed + requested;
    if total >= 10.0 && requested / total > 0.5 {
        CheckResult::problem(
            "checkpoints",
            Status::Warning,
            format!(
                "{:.0}% of {total:.0} checkpoints were forced by WAL volume rather than timed (max_wal_size is {})",
                100.0 * requested / total,
                f.max_wal_size
            ),
            "raise max_wal_size so checkpoints happen on checkpoint_timeout",
        )
    } else {
        CheckResult::ok(
            "checkpoints",
            format!("{timed:.0} timed and {requested:.0} requested checkpoints"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::suggested_archive_timeout;

    #[test]
    fn archive_timeout_advice_leaves_room_within_the_target() {
        assert_eq!(suggested_archive_timeout(300), 60);
        assert_eq!(suggested_archive_timeout(60), 30);
        assert_eq!(suggested_archive_timeout(5), 2);
        assert_eq!(suggested_archive_timeout(1), 1);
    }
}
