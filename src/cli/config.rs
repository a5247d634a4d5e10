//! `dbagent config validate|example`.

use std::process::ExitCode;

use serde_json::json;

use super::{Cli, CmdResult};
use dbagent::config::EXAMPLE;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file: syntax, keys, values, ${VAR} references (exit 0 valid, 1 not)
    Validate {
        /// Print the result (and the effective configuration, secrets masked, durations in
        /// seconds) as JSON
        #[arg(long)]
        json: bool,
        /// Also check that every alert rule reads metrics this PostgreSQL major version has
        /// (e.g. 15), as `dbagent run` does once connected
        #[arg(long, value_name = "MAJOR", value_parser = clap::value_parser!(u32).range(13..=18))]
        server_version: Option<u32>,
    },
    /// Print an annotated example configuration with every key and its default
    Example {
        /// Print the example alerts.yml (rules, routes, receivers) instead
        #[arg(long)]
        alerts: bool,
    },
}

pub fn run(cli: &Cli, cmd: &ConfigCommand) -> CmdResult {
    match cmd {
        ConfigCommand::Example { alerts } => {
            if *alerts {
                out!("{}", dbagent::alert::rules::EXAMPLE)?;
            } else {
                out!("{EXAMPLE}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Validate {
            json,
            server_version,
        } => validate(cli, *json, *server_version),
    }
}

/// `all 30 counted by dbagent_alert_rules; 29 enabled (disabled: QueryRegressedAfterPlanChange);
/// 9 cluster-wide, evaluated by the leader only`: that the metric counts every rule of the
/// file, and why fewer may fire here.
fn rules_summary(f: &dbagent::alert::rules::AlertsFile) -> String {
    let disabled: Vec<&str> = f
        .rules
        .iter()
        .filter(|r| !r.enabled)
        .map(|r| r.name.as_str())
        .collect();
    let cluster = f
        .rules
        .iter()
        .filter(|r| r.enabled && f.is_cluster_rule(&r.name))
        .count();
    let mut parts = vec![format!(
        "all {} counted by dbagent_alert_rules",
        f.rules.len()
    )];
    parts.push(match disabled.len() {
        0 => "all enabled".to_string(),
        n => format!(
            "{} enabled ({n} disabled: {})",
            f.rules.len() - n,
            disabled.join(", ")
        ),
    });
    if cluster > 0 {
        parts.push(format!(
            "{cluster} cluster-wide, evaluated by the leader only"
        ));
    }
    parts.join("; ")
}

fn validate(cli: &Cli, json: bool, server_version: Option<u32>) -> CmdResult {
    let path = cli.config_path();
    // dbagent.yml first, then the alerts file it names (when it exists: without one, alerting
    // is off, which is valid).
    let loaded = cli.load_config().and_then(|config| {
        let alerts = dbagent::alert::rules::load_alerts(&config.alerts_file)?;
        if let (Some(f), Some(major)) = (&alerts, server_version) {
            f.check_server_version(major)?;
        }
        Ok((config, alerts))
    });
    match loaded {
        Ok((config, alerts)) => {
            let alerts_summary = match &alerts {
                Some(f) => format!(
                    "{} ({} rules, {} receivers): valid{}\n                     rules: {}",
                    config.alerts_file.display(),
                    f.rules.len(),
                    f.receivers.len(),
                    server_version
                        .map(|m| format!(" for PostgreSQL {m}"))
                        .unwrap_or_default(),
                    rules_summary(f),
                ),
                None => format!(
                    "{} (not found: alerting is off)",
                    config.alerts_file.display()
                ),
            };
            if json {
                let out = json!({
                    "valid": true,
                    "path": path,
                    // The unit of every duration in `config` (written as `5m`, printed as 300).
                    "durations": "seconds",
                    "config": config,
                    "alerts": alerts.as_ref().map(|f| json!({
                        "path": config.alerts_file,
                        "server_version": server_version,
                        "rules": f.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
                        "receivers": f.receivers.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    })),
                });
                outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())?;
            } else {
                outln!("{}: valid", path.display())?;
                outln!("  postgres.conninfo: {}", config.postgres.conninfo)?;
                match config.repository.kind {
                    dbagent::config::RepositoryType::Posix => {
                        outln!("  repository.path:   {}", config.repository.path.display())?
                    }
                    dbagent::config::RepositoryType::S3 => {
                        outln!("  repository:        {}", config.repository.location())?
                    }
                }
                outln!("  state_dir:         {}", config.state_dir.display())?;
                outln!("  http.listen:       {}", config.http.listen)?;
                outln!(
                    "  metric names:      {} (monitor.metric_names)",
                    config.monitor.metric_names.as_str()
                )?;
                outln!("  alerts_file:       {alerts_summary}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                let out = json!({ "valid": false, "path": path, "error": e.to_string() });
                outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())?;
            }
            Err(e.into())
        }
    }
}
