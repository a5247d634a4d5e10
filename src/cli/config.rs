//! `dbagent config validate|example`.

use std::process::ExitCode;

use serde_json::json;

use super::{Cli, print_error};
use crate::config::EXAMPLE;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file: syntax, keys, values, ${VAR} references (exit 0 valid, 1 not)
    Validate {
        /// Print the result (and the effective configuration, secrets masked) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print an annotated example configuration with every key and its default
    Example,
}

pub fn run(cli: &Cli, cmd: &ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Example => {
            print!("{EXAMPLE}");
            ExitCode::SUCCESS
        }
        ConfigCommand::Validate { json } => validate(cli, *json),
    }
}

fn validate(cli: &Cli, json: bool) -> ExitCode {
    let path = cli.config_path();
    match cli.load_config() {
        Ok(config) => {
            if json {
                let out = json!({ "valid": true, "path": path, "config": config });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                println!("{}: valid", path.display());
                println!("  postgres.conninfo: {}", config.postgres.conninfo);
                println!("  repository.path:   {}", config.repository.path.display());
                println!("  state_dir:         {}", config.state_dir.display());
                println!("  http.listen:       {}", config.http.listen);
                println!("  alerts_file:       {}", config.alerts_file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                let out = json!({ "valid": false, "path": path, "error": e.to_string() });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            }
            print_error(&e.into());
            ExitCode::FAILURE
        }
    }
}
