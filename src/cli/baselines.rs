//! `dbagent baselines show`: what the agent has learned as the usual level of each series,
//! read from the state store without writing (works while `dbagent run` records). The
//! learning is done by `baseline`; this file prints text or JSON.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::backups::{table, utc};
use super::{Cli, CmdResult};
use dbagent::baseline::{Baseline, BaselineStore};
use dbagent::state::StateError;

#[derive(Debug, clap::Subcommand)]
pub enum BaselinesCommand {
    /// Show each series' learned baseline for the current hour: mean, stddev, samples, state
    #[command(after_help = "\
Baselines are learned by `dbagent run` from every poll and kept in STATE_DIR/state.db. For
each series the mean and stddev shown come from the most specific bucket for the current
time (UTC) that has enough data: hour-of-week, else hour-of-day, else overall (SEASON).
A series is `learning (n/needed)` until it has monitor.baseline_min_samples samples; rules
do not use it until then. Exit 0 also when nothing has been recorded yet; 1 when the state
database cannot be read.")]
    Show {
        /// Only series whose key contains this text (e.g. `pg_database_size` or `db="app"`)
        series: Option<String>,
        /// Print a JSON array (one object per series)
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &BaselinesCommand) -> CmdResult {
    let code = match cmd {
        BaselinesCommand::Show { series, json } => {
            show(cli, series.as_deref(), *json).context("baselines show")
        }
    }?;
    Ok(code)
}

/// One element of `baselines show --json`.
#[derive(Serialize)]
struct Entry<'a> {
    series: &'a str,
    #[serde(flatten)]
    baseline: &'a Baseline,
}

fn show(cli: &Cli, filter: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let min_samples = config.monitor.baseline_min_samples;
    let store = match BaselineStore::open_read_only(&config.state_dir, min_samples) {
        Ok(store) => store,
        Err(StateError::Missing { path }) => {
            if json {
                outln!("[]")?;
            } else {
                outln!(
                    "no baselines have been recorded yet ({} does not exist; `dbagent run` records them)",
                    path.display()
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let now = jiff::Timestamp::now();
    let all = store.list(now)?;
    let total = all.len();
    let shown: Vec<(String, Baseline)> = all
        .into_iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f)))
        .collect();
    if json {
        let entries: Vec<Entry> = shown
            .iter()
            .map(|(series, baseline)| Entry { series, baseline })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&entries)
                .context("cannot serialise the output as JSON")?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if total == 0 {
        outln!(
            "no baselines have been recorded yet in {} (`dbagent run` records them)",
            store.path().display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        outln!(
            "no series matches {:?} ({total} series have baselines)",
            filter.unwrap_or_default()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", render(&shown))?;
    Ok(ExitCode::SUCCESS)
}

fn render(rows: &[(String, Baseline)]) -> String {
    let mut out = vec![
        [
            "SERIES",
            "MEAN",
            "STDDEV",
            "SAMPLES",
            "SEASON (UTC)",
            "STATE",
            "UPDATED (UTC)",
        ]
        .map(String::from),
    ];
    for (name, b) in rows {
        out.push([
            name.clone(),
            num(b.mean),
            num(b.stddev),
            format!("{}/{}", b.samples, b.needed),
            b.season.to_string(),
            if b.ready {
                "ready".to_string()
            } else {
                format!("learning ({}/{})", b.samples, b.needed)
            },
            utc(b.updated),
        ]);
    }
    table(&out)
}

/// A compact number: `0`, `12.5`, `0.125`, `1.235e9`.
fn num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbagent::baseline::Season;

    #[test]
    fn baselines_numbers_are_compact() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(40.0), "40");
        assert_eq!(num(0.125), "0.125");
        assert_eq!(num(1_234_567_890.0), "1.235e9");
        assert_eq!(num(-0.00001), "-1.000e-5");
    }

    #[test]
    fn baselines_table_shape() {
        let b = Baseline {
            mean: 1024.0,
            stddev: 12.25,
            samples: 12,
            needed: 40,
            ready: false,
            season: Season::Overall,
            last_value: 1030.0,
            updated: "2026-03-02T10:15:00Z".parse().unwrap(),
        };
        let ready = Baseline {
            samples: 900,
            ready: true,
            season: Season::HourOfWeek(10),
            ..b.clone()
        };
        insta::assert_snapshot!(render(&[
            ("pg_database_size_bytes{datname=\"app\"}".into(), b),
            ("pg_stat_database_xact_commit_rate".into(), ready),
        ]));
    }
}
