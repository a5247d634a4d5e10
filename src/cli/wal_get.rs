//! `dbagent wal-get NAME DEST`: restore_command = 'dbagent --config FILE wal-get %f %p'.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Cli, CliError, CmdResult};
use dbagent::wal::datadir::{DataDir, Mode};
use dbagent::wal::get::{GetError, Prefetch, failure_exit_code, get_with};
use dbagent::wal::name::{WalFileKind, WalName};
use dbagent::wal::prefetch;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Use as restore_command = 'dbagent --config /etc/dbagent/dbagent.yml wal-get %f %p'.
Exit codes:
  0    restored (DEST written atomically, after checking it)
  1    the file is not in the archive, and the archive was readable
  75   standby mode (standby.signal in the data directory): the repository or the
       configuration cannot be read, a stored copy is damaged, or DEST cannot be written.
       PostgreSQL retries (it retries any status from 1 to 125), so the standby stays up
       and replays on once the cause is fixed; one line on stderr (the server log) says why
  126  the same failures during a restore (recovery.signal alone), or when the mode cannot
       be told: PostgreSQL aborts recovery instead of ending it short of its target
The mode is read from the working directory, which is the data directory when PostgreSQL
runs the command (else postgres.pgdata). A damaged stored copy is never written to DEST.
With repository.prefetch > 0 (default 8) a segment request also starts a background process
that fetches the next segments into repository.prefetch_dir (default pg_wal/dbagent-prefetch);
a prefetched copy is handed out only while the archive still holds the same stored file.
The spool is removed once the server leaves recovery.")]
pub struct WalGetArgs {
    /// The WAL file name PostgreSQL asks for (%f)
    pub name: String,
    /// Where to write it (%p)
    pub dest: PathBuf,
}

pub fn run(cli: &Cli, args: &WalGetArgs) -> CmdResult {
    // The mode decides what a failure exits with, so it is read before anything can fail:
    // PostgreSQL runs restore_command in the data directory.
    let here = DataDir::locate(None);
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            let mode = here.as_ref().map(DataDir::mode);
            let cause = format!(
                "cannot read the configuration {}: {e}",
                cli.config_path().display()
            );
            return Err(fail(mode, &args.name, None, cause));
        }
    };
    let mode = here
        .or_else(|| config.postgres.pgdata.as_deref().and_then(DataDir::at))
        .map(|d| d.mode());
    let repo = match config.repo() {
        Ok(r) => r,
        Err(e) => return Err(fail(mode, &args.name, None, e.to_string())),
    };
    let prefetch = Prefetch {
        depth: config.repository.prefetch,
        spool: prefetch::spool_dir(&args.dest, config.repository.prefetch_dir.as_deref()),
        config: cli.config_path(),
    };
    match get_with(&repo, &args.name, &args.dest, Some(&prefetch)) {
        Ok(got) => {
            let bytes = got.bytes;
            if got.from_spool {
                tracing::info!(file = %args.name, bytes, "Restored from the prefetch spool");
            } else {
                tracing::info!(file = %args.name, bytes, "Restored from the archive");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ GetError::NotFound { .. }) => {
            not_found(mode, &args.name, &e);
            Ok(ExitCode::from(e.exit_code(mode)))
        }
        Err(e) => Err(fail(mode, &args.name, Some(repo.location()), e)),
    }
}

/// "Not in the archive" is a normal answer: PostgreSQL probes for the history file of the next
/// timeline at every promotion and timeline check, and a standby asks for the next segment
/// until it is archived. Said at info level (`-v`); on stderr (the server log) only where it
/// tells something: the segment at which a restore ends.
fn not_found(mode: Option<Mode>, name: &str, e: &GetError) {
    let probe = WalName::parse(name).is_none_or(|w| w.kind != WalFileKind::Segment);
    if probe || mode == Some(Mode::Standby) {
        tracing::debug!("{e}");
        return;
    }
    tracing::info!("{e}");
    if !tracing::enabled!(tracing::Level::INFO) {
        eprintln!("dbagent: {e}");
    }
}

/// A failure other than "not in the archive": one line for stderr (PostgreSQL puts it in the
/// server log), naming the file, the repository, the cause and what the exit code makes
/// PostgreSQL do, with that exit code.
fn fail(mode: Option<Mode>, name: &str, repo: Option<&Path>, cause: impl Display) -> CliError {
    let code = failure_exit_code(mode);
    let what = match repo {
        Some(repo) => format!("wal-get {name} from repository {}", repo.display()),
        None => format!("wal-get {name}"),
    };
    let consequence = match mode {
        Some(Mode::Standby) => format!(
            "standby mode, exit {code}: PostgreSQL retries, and the standby replays on once this is fixed"
        ),
        Some(Mode::Restore) => format!(
            "restore, exit {code}: PostgreSQL aborts recovery rather than end it short of its target; fix this and start the server again"
        ),
        Some(Mode::NotInRecovery) | None => format!("exit {code}"),
    };
    let line = format!("{what}: {cause}; {consequence}");
    // One line, whatever the cause's text holds, so that the server log keeps it whole.
    let line = line.replace('\n', " ");
    CliError::new(anyhow::Error::msg(line), code)
}

/// `dbagent wal-prefetch-worker SPOOL`: started (detached) by wal-get; not for people.
#[derive(Debug, clap::Args)]
pub struct PrefetchWorkerArgs {
    /// The spool directory
    pub spool: PathBuf,
}

/// Silent: nobody reads its stderr; a failure only stops the prefetching.
pub fn run_worker(cli: &Cli, args: &PrefetchWorkerArgs) -> CmdResult {
    let Ok(config) = cli.load_config() else {
        return Ok(ExitCode::FAILURE);
    };
    let Ok(repo) = config.repo() else {
        return Ok(ExitCode::FAILURE);
    };
    // Started by wal-get, so in the data directory PostgreSQL runs restore_command in.
    let datadir = DataDir::locate(config.postgres.pgdata.as_deref());
    match prefetch::run_worker(
        &repo,
        &args.spool,
        config.repository.prefetch,
        datadir.as_ref(),
    ) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            tracing::debug!(spool = %args.spool.display(), "Prefetch worker: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
