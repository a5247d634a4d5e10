//! `dbagent wal-get NAME DEST`: restore_command = 'dbagent --config FILE wal-get %f %p'.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Cli, print_error};
use crate::repo::Repo;
use crate::wal::get::{EXIT_UNAVAILABLE, get};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Use as restore_command = 'dbagent --config /etc/dbagent/dbagent.yml wal-get %f %p'.
Exit codes: 0 restored (DEST written atomically); 1 the file is not in the archive (and
the archive was readable): recovery ends there; 126 the repository or the configuration
cannot be read, or DEST cannot be written: PostgreSQL aborts recovery instead of ending it
short of its target.")]
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
    match get(&repo, &args.name, &args.dest) {
        Ok(bytes) => {
            tracing::info!(file = %args.name, bytes, "Restored from the archive");
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
