//! `dbagent wal-push PATH`: archive_command = 'dbagent --config FILE wal-push %p'.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Cli, print_error};
use crate::repo::Repo;
use crate::wal::push::{PushOptions, push};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Use as archive_command = 'dbagent --config /etc/dbagent/dbagent.yml wal-push %p'.
Exit 0 only once the file is durable in the repository (written to a temp name, fsynced,
linked into place, directory fsynced). Pushing an identical file again exits 0. Exit 1 when
the file is not a complete WAL segment (or .partial/.history/.backup file) of this cluster,
when different content is already archived under its name (never overwritten), or when
it cannot be written (PostgreSQL then keeps the segment and retries).
The cluster is read from the control file of the data directory the command runs in (as
archive_command does; else postgres.pgdata): the first push into an empty repository binds
it to that cluster whatever the file is (a promoted standby offers its new timeline's
history file first), and a file of another cluster is refused. Temp files a killed push
left are removed.")]
pub struct WalPushArgs {
    /// The WAL file to archive (PostgreSQL's %p)
    pub path: PathBuf,
}

pub fn run(cli: &Cli, args: &WalPushArgs) -> ExitCode {
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            print_error(&e.into());
            return ExitCode::FAILURE;
        }
    };
    let repo = Repo::at(&config.repository.path);
    let opts = PushOptions {
        compression: config.repository.compression,
        level: match config.repository.compression_level {
            0 => config.repository.compression.default_wal_level(),
            level => level,
        },
        // Two zstd workers halve the time of a 16 MiB segment; more buy little at that size.
        threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(2) as u32),
        pgdata: config.postgres.pgdata.clone(),
    };
    match push(&repo, &args.path, &opts) {
        Ok(outcome) => {
            if outcome.already_archived {
                tracing::info!(file = %outcome.name, "Already archived with identical content");
            } else {
                tracing::info!(file = %outcome.name, stored = %outcome.stored.display(), "Archived");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&anyhow::Error::new(e).context("wal-push"));
            ExitCode::FAILURE
        }
    }
}
