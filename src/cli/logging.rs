//! Logging: `tracing` to stderr, readable text on a terminal or one JSON object per line with
//! `--log-format json`. `-v` raises the level; `DBAGENT_LOG` (an env-filter directive) overrides.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `verbosity` is the number of `-v` flags.
pub fn init(format: LogFormat, verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("DBAGENT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},tokio_postgres=warn,rustls=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests) keeps the first subscriber; nothing to report.
    let _ = result;
}
