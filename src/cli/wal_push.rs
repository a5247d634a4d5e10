//! `dbagent wal-push PATH`: archive_command = 'dbagent --config FILE wal-push %p'.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Cli, CmdResult};
use dbagent::config::Config;
use dbagent::wal::datadir::{DataDir, Mode};
use dbagent::wal::prefetch;
use dbagent::wal::push::{PushOptions, push};

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
left are removed; wal-get's prefetch spool is removed once the server is out of recovery.")]
pub struct WalPushArgs {
    /// The WAL file to archive (PostgreSQL's %p)
    pub path: PathBuf,
}

pub fn run(cli: &Cli, args: &WalPushArgs) -> CmdResult {
    let config = cli.load_config()?;
    let repo = config.repo()?;
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
    let outcome = push(&repo, &args.path, &opts).context("wal-push")?;
    remove_prefetch_spool(&config);
    if outcome.already_archived {
        tracing::info!(file = %outcome.name, "Already archived with identical content");
    } else {
        tracing::info!(file = %outcome.name, stored = %outcome.stored.display(), "Archived");
    }
    Ok(ExitCode::SUCCESS)
}

/// A server that archives and is not in recovery no longer needs wal-get's prefetch spool
/// (a promoted standby, a finished restore); the prefetch worker removes it when it sees the
/// promotion, this catches what it missed. One stat when there is nothing to remove.
fn remove_prefetch_spool(config: &Config) {
    let Some(datadir) = DataDir::locate(config.postgres.pgdata.as_deref()) else {
        return;
    };
    if datadir.mode() != Mode::NotInRecovery {
        return;
    }
    // Where wal-get puts it: beside %p (pg_wal/RECOVERYXLOG) unless configured.
    let spool = prefetch::spool_dir(
        &datadir.path().join("pg_wal").join("RECOVERYXLOG"),
        config.repository.prefetch_dir.as_deref(),
    );
    if spool.exists() && prefetch::remove_spool(&spool) {
        tracing::info!(spool = %spool.display(), "Removed the WAL prefetch spool: recovery is over");
    }
}
