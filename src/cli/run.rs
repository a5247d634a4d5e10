//! `dbagent run`: the sidecar (poll, baselines, alerts, scheduled jobs, HTTP). Logic in
//! `dbagent::agent`; this file is the command's flags and its exit code.

use std::process::ExitCode;

use clap::Args;

use super::{Cli, CmdResult};

/// `dbagent run` flags.
#[derive(Debug, Args)]
#[command(after_help = "\
Runs until SIGTERM or Ctrl-C (exit 0). SIGHUP re-reads the configuration file; a file that
does not load is rejected with an error line and the running configuration is kept.
When it leads (it holds the advisory lock ha.lock_key on the primary; dbagent_leader 1) it also
runs the jobs of schedule: (backup, backup_incremental, verify, expire, drill, wal_verify)
and the alert rules of scope cluster; `dbagent jobs list` shows the runs. A running job is stopped at shutdown and recorded
as failed.
Exit 1 when it cannot start (bad configuration, the listen address in use, unreadable TLS files).")]
pub struct RunArgs {
    /// Listen on this address instead of http.listen (e.g. 127.0.0.1:0 for a free port)
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

pub fn run(cli: &Cli, args: &RunArgs) -> CmdResult {
    let mut config = cli.load_config()?;
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    dbagent::agent::memory::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("dbagent")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    rt.block_on(dbagent::agent::run(cli.config_path(), config))?;
    Ok(ExitCode::SUCCESS)
}
