//! `dbagent drill [--json] [--keep] [--scratch DIR]`: restore the newest backup into a scratch
//! directory, replay the archive, verify and time it (see [`dbagent::drill`]); the result is
//! recorded in the state database for `dbagent check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Cli, CmdResult, human_duration};
use dbagent::drill;
use dbagent::restore::recovery;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Restores the newest complete backup into a scratch directory (under state_dir/drill, or
--scratch), owned by the PostgreSQL OS user when dbagent runs as root; verifies the extracted
files with pg_verifybackup against PostgreSQL's backup_manifest (PostgreSQL 13+); starts the
copy on a free loopback port (archive_mode off, its own private socket), replays to the newest
archived WAL and promotes; checks that it answers queries, that its system identifier is the
repository's, that it does not archive, and that the timeline it replayed is on the primary's
timeline history (asked of the server, else the archive's newest timeline that is not a copy):
a drill that replayed another branch fails naming it; records the result, backup, RTO (start
of the restore to the first answered query) and replayed-to LSN in state.db; stops the copy
and removes it (unless --keep). While it runs it holds the backups in use (REPO/lock.use):
`dbagent backups expire` waits for it (repository.lock_wait) or fails naming it.
`dbagent check` reports the last drill as `last_drill`.

Exit codes: 0 the drill passed; 1 it failed (one line on stderr names the problem; the
failure is recorded, so `check` reports last_drill CRITICAL); 2 bad usage.")]
pub struct DrillArgs {
    /// Make the scratch copy in DIR instead of state_dir/drill
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Keep the scratch copy (the server is stopped) for inspection
    #[arg(long)]
    pub keep: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &DrillArgs) -> CmdResult {
    let report = drill_cmd(cli, args).context("drill")?;
    if !report.ok {
        return Err(anyhow::anyhow!(
            "drill failed{}: {}",
            report
                .backup_id
                .as_deref()
                .map_or(String::new(), |id| format!(" for backup {id}")),
            report.reason.as_deref().unwrap_or("unknown reason")
        )
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the drill, records and prints its result; a drill that failed is a report, not an
/// error (it is recorded and printed with `--json`).
fn drill_cmd(cli: &Cli, args: &DrillArgs) -> anyhow::Result<drill::Report> {
    let config = cli.load_config()?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the path of this dbagent binary for restore_command")?;
    let config_path = cli.config_path();
    let config_path = config_path.canonicalize().with_context(|| {
        format!(
            "cannot resolve the configuration path {}",
            config_path.display()
        )
    })?;
    let opts = drill::Options {
        scratch: args.scratch.clone(),
        keep: args.keep,
        restore_command: recovery::restore_command(&exe, &config_path),
    };
    let mut progress = |line: &str| eprintln!("drill: {line}");
    let report = drill::run(&config, &opts, &mut progress);
    drill::record(&config.state_dir, &report)
        .context("the drill ran but its result could not be recorded")?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else if report.ok {
        outln!(
            "drill passed: backup {} restored and replayed to {} in an RTO of {} ({}); recorded in {}",
            report.backup_id.as_deref().unwrap_or("?"),
            report.replayed_to_lsn.as_deref().unwrap_or("?"),
            human_duration(report.rto_seconds.unwrap_or_default()),
            report.verify.as_deref().unwrap_or("not verified"),
            config.state_dir.join(dbagent::state::STATE_FILE).display()
        )?;
    }
    Ok(report)
}
