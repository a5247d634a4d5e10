//! `dbagent advise [--json] [--since 7d]`: samples table and index usage now, adds the sample
//! to the history in state.db (which `dbagent run` also feeds), and prints the findings of the
//! window, largest estimated impact first. The logic is in `advise`; this file connects,
//! prints text or JSON.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{Cli, CmdResult, runtime};
use dbagent::advise::{self, Options};
use dbagent::pg::{PgTarget, ServerVersion, SessionOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Findings: seq_scan_hotspot (a table read mostly by sequential scans, many times its size, with
the statements that name it), missing_index (a hint from the generic plan of a slow SELECT),
unused_index (no scan in the window; indexes enforcing a primary key, unique or exclusion
constraint are never reported), duplicate_index (same definition, or a btree prefix of another),
autovacuum (dead rows that stay high), plan_change (a top statement's generic plan changed; mean
time before and after). Each comes with its evidence and SQL to review; dbagent
never runs that SQL, and never runs EXPLAIN ANALYZE.

Every run stores its sample in STATE_DIR/state.db; usage is the change between samples, so the
first run can only report what needs no history (duplicates, hints). `dbagent run` samples every
monitor.advisor_interval. The report says which part of the window was really observed.
Exit 0 when the report was made (findings or not), 1 when it could not be.")]
pub struct AdviseArgs {
    /// Print the report as JSON (shape documented in docs/advisor.md)
    #[arg(long)]
    pub json: bool,
    /// The window to judge usage over [default: monitor.advisor_window, 7d]
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<Duration>,
}

fn parse_since(s: &str) -> Result<Duration, String> {
    let d = dbagent::config::de::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the window must be longer than 0s".into());
    }
    Ok(d)
}

pub fn run(cli: &Cli, args: &AdviseArgs) -> CmdResult {
    let config = cli.load_config()?;
    let mut opts = Options::from_config(&config.monitor);
    if let Some(since) = args.since {
        opts.window = since;
        opts.retention = opts.retention.max(since);
    }
    let rt = runtime()?;
    let advice = rt.block_on(async {
        let target = PgTarget::new(
            &config.postgres.conninfo,
            SessionOptions {
                connect_timeout: config.postgres.connect_timeout,
                statement_timeout: config.monitor.statement_timeout,
                lock_timeout: config.monitor.lock_timeout,
            },
        )?;
        let client = target.connect().await?;
        let version = ServerVersion::detect(&client)
            .await
            .map_err(|e| target.query_error("server version", &e))?;
        advise::advise(&client, &version, Some(&config.state_dir), &opts)
            .await
            .with_context(|| format!("advise on {}", target.describe()))
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&advice).context("cannot serialise the report")?
        )?;
    } else {
        out!("{}", advise::report::render(&advice))?;
    }
    Ok(ExitCode::SUCCESS)
}
