//! `dbagent check [--json]`.

use std::process::ExitCode;

use super::{Cli, CmdResult, ExitWith, output, runtime};
use dbagent::check::{self, Status};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks: connection, server_version, role_pg_monitor, role_replication, role_functions,
stats_visibility, wal_level, archive_mode, archive_command, archiving, archive_lag,
pg_stat_statements, data_checksums, checkpoints, databases (every database
monitor.databases selects can be read), standby_replay (standbys only: replay
keeping up with the archive), repository, repository_binding, last_backup,
archive_continuity, last_drill (age and outcome of the last `dbagent drill`), wal_verify
(what the last `dbagent wal verify` found, and its age).

Exit codes (Nagios plugin convention): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
The first output line is the summary; then one line per check with what to do when not OK.")]
pub struct CheckArgs {
    /// Print the report as JSON (shape documented in docs/commands.md)
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &CheckArgs) -> CmdResult {
    let unknown = Status::Unknown.exit_code();
    let config = cli.load_config().exit_code(unknown)?;
    let report = runtime().exit_code(unknown)?.block_on(check::run(&config));
    let text = if args.json {
        serde_json::to_string_pretty(&report).exit_code(unknown)? + "\n"
    } else {
        report.render_text()
    };
    // The exit code is the verdict: a reader that stopped reading does not change it.
    output::unless_closed(out!("{text}")).exit_code(unknown)?;
    Ok(ExitCode::from(report.exit_code))
}
