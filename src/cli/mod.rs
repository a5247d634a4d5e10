//! The command line: the clap definition of every command (also the source of `--help`, and
//! later of the man page and shell completions), and the dispatch to one file per command.
//!
//! Exit codes (documented in `--help` and docs/commands.md):
//! - 0 success; 1 the command failed (one line on stderr says what and what to do);
//!   2 bad usage (unknown flag or command).
//! - `check` uses the Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also
//!   for an unreadable configuration).
//!
//! Every command returns a [`CmdResult`]: its exit code, or a [`CliError`] that [`main`]
//! prints once (`dbagent: error: ` and the cause chain) and turns into the exit code it
//! carries. A closed stdout ends a command quietly with status 0 (see [`output`]).
//!
//! Layer: the top (binary). Uses the library; nothing uses it.

#[macro_use]
mod output;

mod advise;
mod alerts;
mod backup;
mod backups;
mod baselines;
mod check;
mod config;
mod drill;
mod generate;
mod info;
mod jobs;
mod progress;
mod restore;
mod restore_point;
mod run;
mod top;
mod wal;
mod wal_get;
mod wal_push;

pub(crate) mod logging;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dbagent::config::{Config, DEFAULT_CONFIG_PATH};
use logging::LogFormat;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the command failed (stderr says what failed and what to do)
  2  bad usage
  check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin convention)
  wal-get: 0 restored, 1 not in the archive; archive, configuration or DEST unusable or a
           stored copy damaged: 75 in standby mode (PostgreSQL retries), 126 during a
           restore (recovery aborts)
  restore: 0 restored (with --start: the requested target was reached), 1 refused or failed
           (--guided without a terminal: 1, and the equivalent command line is printed)
  info: 0 shown, 1 the repository holds nothing yet, 3 configuration unreadable,
        4 repository unreadable
  drill: 0 the restore drill passed, 1 it failed (recorded; check reports last_drill CRITICAL)
  wal verify: 0 the WAL recovery needs is present and intact, 1 a segment is missing, damaged
           or unreadable or histories disagree (each named), 2 the archive could not be verified";

/// Keeps a PostgreSQL cluster recoverable and watched: backups, WAL archive, point-in-time
/// restore, monitoring and alerting in one sidecar.
#[derive(Debug, Parser)]
#[command(name = "dbagent", version, after_help = EXIT_CODES_HELP, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: /etc/dbagent/dbagent.yml]
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "DBAGENT_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Log line format on stderr
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug, -vvv trace)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The sidecar: poll, baselines, alerts, scheduled jobs (when leader), /metrics and /api/v1/status
    Run(run::RunArgs),
    /// Health of the cluster, WAL archiving and the repository, one line per check (Nagios exit codes)
    Check(check::CheckArgs),
    /// Query and index advice: sequential-scan hot spots, unused, duplicate and missing indexes
    Advise(advise::AdviseArgs),
    /// The statements that took the most time over a window, from the history `run` keeps in state.db
    Top(top::TopArgs),
    /// Validate the configuration or print an annotated example
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Take a backup: pg_basebackup streamed through compression and SHA-256 into the repository
    Backup(backup::BackupArgs),
    /// List, show, verify and expire the backups in the repository
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Show the baselines learned for each monitored series (usual level and spread)
    #[command(subcommand)]
    Baselines(baselines::BaselinesCommand),
    /// Firing and pending alerts, silences
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// History of the jobs `dbagent run` ran on its schedule (backup, backup_incremental, verify, expire, drill, wal_verify)
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Print the man page or shell completions (man, bash, zsh, fish), generated from this CLI
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
    /// Point-in-time restore into a directory: plan proven first, then extract, configure, start
    Restore(restore::RestoreArgs),
    /// The repository at a glance: backups, WAL and its gaps, the recoverable window, drill, RPO
    Info(info::InfoArgs),
    /// Prove the newest backup restores: restore to scratch, replay, verify, time it (RTO), record
    Drill(drill::DrillArgs),
    /// Create a named restore point on the server and record it for `restore --target name:NAME`
    RestorePoint(restore_point::RestorePointArgs),
    /// Verify the WAL archive: needed segments present and intact, timeline histories in agreement
    #[command(subcommand)]
    Wal(wal::WalCommand),
    /// Archive one WAL file durably (archive_command = 'dbagent --config FILE wal-push %p')
    WalPush(wal_push::WalPushArgs),
    /// Restore one WAL file from the archive (restore_command = 'dbagent --config FILE wal-get %f %p')
    WalGet(wal_get::WalGetArgs),
    /// Fetch WAL segments ahead into wal-get's spool (started by wal-get itself)
    #[command(hide = true)]
    WalPrefetchWorker(wal_get::PrefetchWorkerArgs),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A daemon says what it does: `run` logs at info level by default.
    let verbosity = match cli.command {
        Command::Run(_) => cli.verbose.max(1),
        _ => cli.verbose,
    };
    logging::init(cli.log_format, verbosity);
    // What is still buffered goes out now, so that a failure to write it is seen; a reader
    // gone by then does not change the code the command ended with.
    let result = dispatch(&cli).and_then(|code| match output::flush() {
        Err(e) if !e.is_closed() => Err(e.into()),
        _ => Ok(code),
    });
    match result {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}

fn dispatch(cli: &Cli) -> CmdResult {
    match cli.command {
        Command::Run(ref args) => run::run(cli, args),
        Command::Check(ref args) => check::run(cli, args),
        Command::Advise(ref args) => advise::run(cli, args),
        Command::Top(ref args) => top::run(cli, args),
        Command::Config(ref cmd) => config::run(cli, cmd),
        Command::Backup(ref args) => backup::run(cli, args),
        Command::Backups(ref cmd) => backups::run(cli, cmd),
        Command::Baselines(ref cmd) => baselines::run(cli, cmd),
        Command::Alerts(ref cmd) => alerts::run(cli, cmd),
        Command::Generate(ref cmd) => generate::run(cmd),
        Command::Jobs(ref cmd) => jobs::run(cli, cmd),
        Command::Restore(ref args) => restore::run(cli, args),
        Command::RestorePoint(ref args) => restore_point::run(cli, args),
        Command::Drill(ref args) => drill::run(cli, args),
        Command::Info(ref args) => info::run(cli, args),
        Command::Wal(ref cmd) => wal::run(cli, cmd),
        Command::WalPush(ref args) => wal_push::run(cli, args),
        Command::WalGet(ref args) => wal_get::run(cli, args),
        Command::WalPrefetchWorker(ref args) => wal_get::run_worker(cli, args),
    }
}

impl Cli {
    /// The configuration file to use: --config, DBAGENT_CONFIG, or the default path.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    pub fn load_config(&self) -> Result<Config, dbagent::config::ConfigError> {
        Config::load(&self.config_path())
    }
}

/// What a command ends with: its exit code (which may carry a verdict: `check`, `wal verify`,
/// `drill`), or an error for [`main`] to print.
pub(crate) type CmdResult = Result<ExitCode, CliError>;

/// A command's failure: the error with its cause chain, printed once by [`main`], and the exit
/// code it maps to (1 unless the command documents another: `check` 3, `wal verify` 2,
/// `wal-get` 75 or 126).
#[derive(Debug)]
pub(crate) struct CliError {
    error: anyhow::Error,
    code: u8,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError {
            error: e.into(),
            code: 1,
        }
    }
}

impl CliError {
    /// An error that exits with `code`.
    pub(crate) fn new(error: impl Into<anyhow::Error>, code: u8) -> CliError {
        CliError {
            error: error.into(),
            code,
        }
    }

    /// Prints the error (unless stdout was closed: then the command ends quietly with 0) and
    /// returns its exit code.
    fn report(self) -> ExitCode {
        if self
            .error
            .downcast_ref::<output::StdoutError>()
            .is_some_and(output::StdoutError::is_closed)
        {
            return ExitCode::SUCCESS;
        }
        // Not eprintln!: a closed stderr must not turn a failure into a panic.
        let _ = writeln!(std::io::stderr(), "dbagent: error: {}", chain(&self.error));
        ExitCode::from(self.code)
    }
}

/// `Result::exit_code(n)`: this error exits with `n` instead of 1.
pub(crate) trait ExitWith<T> {
    fn exit_code(self, code: u8) -> Result<T, CliError>;
}

impl<T, E: Into<anyhow::Error>> ExitWith<T> for Result<T, E> {
    fn exit_code(self, code: u8) -> Result<T, CliError> {
        self.map_err(|e| CliError::new(e, code))
    }
}

/// The error and its causes joined by ": " (anyhow's `{:#}`), leaving out a cause whose text
/// the message before it already ends with: an error that prints its source (`cannot read
/// FILE: {source}`, `#[error("{0}")]` over a `#[from]`) would otherwise say it twice.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.is_empty() {
            if out.ends_with(&text) {
                continue;
            }
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A runtime for commands that do short async work (one connection, a few queries).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

pub(crate) use dbagent::units::{human_bytes, human_duration};

#[cfg(test)]
mod tests {
    use super::chain;

    /// Every argument of every command (hidden ones aside) says what it is for in `--help` and
    /// the man pages: walks the whole clap tree.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.is_hide_set() || arg.get_help().is_some() || arg.get_long_help().is_some() {
                    continue;
                }
                missing.push(format!("{path} {}", arg.get_id()));
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() {
                    continue;
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = <super::Cli as clap::CommandFactory>::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "dbagent", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    /// `[env: DBAGENT_CONFIG]`, not `[env: DBAGENT_CONFIG=]` (nor the variable's value).
    #[test]
    fn help_names_the_config_variable_without_a_value() {
        let mut cmd = <super::Cli as clap::CommandFactory>::command();
        let help = cmd.render_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains("[env: DBAGENT_CONFIG]"), "{help}");
        assert!(!help.contains("DBAGENT_CONFIG="), "{help}");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x: {source}")]
    struct SaysItsSource {
        source: std::io::Error,
    }

    #[test]
    fn the_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(SaysItsSource { source: io }).context("wal-push");
        assert_eq!(chain(&e), "wal-push: cannot read /x: gone");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain(&e), "outer: inner");
    }
}
