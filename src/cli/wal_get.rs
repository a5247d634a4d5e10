//! `dbagent wal-get NAME DEST`: restore_command = 'dbagent --config FILE wal-get %f %p'.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Cli, print_error};
use crate::repo::Repo;
use crate::wal::get::{EXIT_UNAVAILABLE, Prefetch, get_with};
use crate::wal::prefetch;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Use as restore_command = 'dbagent --config /etc/dbagent/dbagent.yml wal-get %f %p'.
Exit codes: 0 restored (DEST written atomically); 1 the file is not in the archive (and
the archive was readable): recovery ends there; 126 the repository or the configuration
cannot be read, or DEST cannot be written: PostgreSQL aborts recovery instead of ending it
short of its target.
With repository.prefetch > 0 (default 8) a segment request also starts a background process
that fetches the next segments into repository.prefetch_dir (default pg_wal/dbagent-prefetch);
a prefetched copy is handed out only while the archive still holds the same stored file.")]
pub struct WalGetArgs {
    /// The WAL file name PostgreSQL asks for (%f)
    pub name: String,
    /// Where to write it (%p)
    pub dest: PathBuf,
}

pub fn run(cli: &Cli, args: &WalGetArgs) -> ExitCode {
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            print_error(&anyhow::Error::new(e).context("wal-get cannot read its configuration"));
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let repo = Repo::at(&config.repository.path);
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            // Not-found is a normal answer during recovery (PostgreSQL probes for files that
            // do not exist yet); say it at info level, errors always.
            if code == 1 {
                tracing::info!("{e}");
                if !tracing::enabled!(tracing::Level::INFO) {
                    eprintln!("dbagent: {e}");
                }
            } else {
                print_error(&anyhow::Error::new(e).context("wal-get"));
            }
            ExitCode::from(code)
        }
    }
}

/// `dbagent wal-prefetch-worker SPOOL`: started (detached) by wal-get; not for people.
#[derive(Debug, clap::Args)]
pub struct PrefetchWorkerArgs {
    /// The spool directory
    pub spool: PathBuf,
}

pub fn run_worker(cli: &Cli, args: &PrefetchWorkerArgs) -> ExitCode {
    let Ok(config) = cli.load_config() else {
        return ExitCode::FAILURE;
    };
    let repo = Repo::at(&config.repository.path);
    match prefetch::run_worker(&repo, &args.spool, config.repository.prefetch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!(spool = %args.spool.display(), "Prefetch worker: {e}");
            ExitCode::FAILURE
        }
    }
}
