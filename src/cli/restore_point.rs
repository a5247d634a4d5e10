//! `dbagent restore-point NAME [--json]` and `dbagent restore-point --list [--json]`: creates a
//! named restore point on the server (`pg_create_restore_point`), switches WAL so that it is
//! archived soon, and records it in the repository for `dbagent restore --target name:NAME`.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use serde_json::json;

use super::{Cli, CmdResult, runtime};
use dbagent::pg::PgTarget;
use dbagent::restore::points::{self, RestorePoint};
use dbagent::wal::Lsn;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Creates the restore point on the server (the role needs EXECUTE on
pg_create_restore_point(text); pg_switch_wal() is called when allowed, so the WAL holding
the point is archived at once) and records name, LSN, time and timeline in the repository
(restore-points/NAME.json). A name already recorded is refused. Restore to it with
`dbagent restore --to DIR --target name:NAME`.
Exit codes: 0 created (or listed), 1 failed (stderr says why and what to do).")]
pub struct RestorePointArgs {
    /// The restore point's name (letters, digits, `-`, `_`, `.`; at most 63)
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    pub name: Option<String>,
    /// List the recorded restore points, oldest first
    #[arg(long)]
    pub list: bool,
    /// Print JSON: the created point, or an array of them for --list
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &RestorePointArgs) -> CmdResult {
    match &args.name {
        Some(name) if !args.list => create(cli, name, args.json).context("restore-point"),
        _ => list(cli, args.json).context("restore-point --list"),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn list(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    let repo = config.repo()?;
    let all = points::list(&repo)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    if all.is_empty() {
        outln!(
            "no restore points recorded in {}",
            repo.location().display()
        )?;
        return Ok(());
    }
    outln!("{:<32} {:<28} {:<14} TIMELINE", "NAME", "TIME", "LSN")?;
    for p in all {
        outln!(
            "{:<32} {:<28} {:<14} {}",
            p.name,
            p.time.to_string(),
            p.lsn.to_string(),
            p.timeline
        )?;
    }
    Ok(())
}

fn create(cli: &Cli, name: &str, json: bool) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    let repo = config.repo()?;
    points::check_new(&repo, name)?;
    let target = PgTarget::new(&config.postgres.conninfo, config.session_options())?;
    let (point, switched) = runtime()?.block_on(async {
        let client = target.connect().await?;
        let row = client
            .query_one(
                "SELECT p::text, pg_walfile_name(p), clock_timestamp()::text, pg_is_in_recovery() \
                 FROM pg_create_restore_point($1) AS p",
                &[&name],
            )
            .await
            .map_err(|e| {
                let mut err = anyhow!(target.query_error("pg_create_restore_point", &e));
                if e.as_db_error().is_some_and(|d| d.code().code() == "42501") {
                    err = err.context(
                        "the role may not run pg_create_restore_point: GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO <role>",
                    );
                }
                err
            })?;
        let lsn_text: String = row.get(0);
        let walfile: String = row.get(1);
        let time_text: String = row.get(2);
        let lsn = Lsn::parse(&lsn_text)
            .ok_or_else(|| anyhow!("the server returned an unreadable LSN `{lsn_text}`"))?;
        let timeline = u32::from_str_radix(walfile.get(0..8).unwrap_or("1"), 16).unwrap_or(1);
        let time = parse_pg_timestamp(&time_text)
            .ok_or_else(|| anyhow!("the server returned an unreadable time `{time_text}`"))?;
        // Make the WAL holding the restore point archivable now rather than when the segment
        // fills; a role without the privilege only delays that.
        let switched = match client.query_one("SELECT pg_switch_wal()::text", &[]).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %dbagent::pg::error_detail(&e), "Cannot switch WAL; the restore point is archived when its segment fills");
                false
            }
        };
        let point = RestorePoint {
            name: name.to_string(),
            lsn,
            time,
            timeline,
            server: target.info().endpoint(),
        };
        anyhow::Ok((point, switched))
    })?;
    points::record(&repo, &point).with_context(|| {
        format!(
            "restore point {name} was created on the server at {} but could not be recorded",
            point.lsn
        )
    })?;
    if json {
        let mut v = serde_json::to_value(&point)?;
        v["wal_switched"] = json!(switched);
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        outln!(
            "restore point {} created at {} ({}, timeline {}){}; restore to it with: dbagent restore --to DIR --target name:{}",
            point.name,
            point.lsn,
            point.time,
            point.timeline,
            if switched { ", WAL switched" } else { "" },
            point.name
        )?;
    }
    Ok(())
}

/// `2026-11-21 10:15:00.123456+01` (PostgreSQL's timestamptz text) as a timestamp.
fn parse_pg_timestamp(s: &str) -> Option<jiff::Timestamp> {
    dbagent::restore::plan::parse_time(s, None).ok()
}
