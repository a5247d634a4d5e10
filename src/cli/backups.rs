//! `dbagent backups list|show|verify|expire` (being written).

use std::process::ExitCode;

use super::Cli;

#[derive(Debug, clap::Subcommand)]
pub enum BackupsCommand {}

pub fn run(_cli: &Cli, cmd: &BackupsCommand) -> ExitCode {
    match *cmd {}
}
