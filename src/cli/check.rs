//! `dbagent check [--json]`.

use std::process::ExitCode;

use super::{Cli, CmdResult, ExitWith, output, runtime};
use dbagent::check::{self, Status};

#[derive(Debug, clap::Args)]
#[command(after_help = after_help())]
pub struct CheckArgs {
    /// Print the report as JSON (shape documented in docs/commands.md)
    #[arg(long)]
    pub json: bool,
}

/// The list of checks (from the list `check` runs) and the exit codes.
fn after_help() -> String {
    format!(
        "{}
Exit codes (Nagios plugin convention): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
The first output line is the summary; then one line per check with what to do when not OK.",
        check::checks_help()
    )
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
