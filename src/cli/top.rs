//! `dbagent top [--since 1h] [--by total|mean|calls] [--limit N] [--json]`: the statements
//! that took the most time, from the statement history `dbagent run` keeps in state.db
//! (`collect::statement_history`). Reads state.db only (no server needed, works while `run`
//! writes); sums each statement's per-interval rows over the window and prints a table that
//! fits 80 columns, or JSON.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::{Cli, CmdResult};
use dbagent::collect::statement_history::{self, By, Extent, Top};
use dbagent::state::StateDb;

/// The width the table fits in.
const WIDTH: usize = 80;
/// The query column never gets narrower than this, even when the other columns are wide.
const MIN_QUERY: usize = 24;
/// The longest database name shown in full in the table.
const MAX_DATNAME: usize = 16;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
`dbagent run` reads pg_stat_statements every poll (monitor.interval) and keeps, for the top
monitor.top_queries statements by total and by mean time of each interval, what they did in
that interval (calls, execution time, rows) and their text, in STATE_DIR/state.db for
monitor.statement_history_retention (7d). `top` sums those rows per statement over the
window and ranks them: a statement that ran slowly once between two polls is listed for as
long as the window covers that poll. dbagent's own statements are never recorded. Times are
execution times (planning not included); MEAN is TOTAL / CALLS over the window.

The table shows rank, calls, total and mean time, rows, database and the statement's text
(as pg_stat_statements shows it: constants replaced by $1, $2, ...), cut to fit 80 columns;
--json prints every field and the full text (shape in docs/commands.md).

Exit codes: 0 success, also when nothing has been recorded yet (the output says what to do);
1 the state database cannot be read; 2 bad usage.")]
pub struct TopArgs {
    /// The window: statements recorded in the last DURATION (e.g. 15m, 1h, 2d)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_since)]
    pub since: Duration,
    /// Rank by total execution time, mean time per call, or number of calls
    #[arg(long, value_enum, default_value = "total", value_name = "WHAT")]
    pub by: ByArg,
    /// Show at most N statements
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Print JSON (shape documented in docs/commands.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ByArg {
    Total,
    Mean,
    Calls,
}

impl From<ByArg> for By {
    fn from(b: ByArg) -> By {
        match b {
            ByArg::Total => By::Total,
            ByArg::Mean => By::Mean,
            ByArg::Calls => By::Calls,
        }
    }
}

fn parse_since(s: &str) -> Result<Duration, String> {
    let d = dbagent::config::de::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the window must be longer than 0s".into());
    }
    Ok(d)
}

/// `top --json`.
#[derive(Serialize)]
struct Report<'a> {
    /// The start of the window (RFC 3339, UTC) and its length.
    since: String,
    window_seconds: u64,
    by: By,
    /// What the whole history holds (not only the window).
    history: HistoryExtent,
    statements: Vec<Ranked<'a>>,
}

#[derive(Serialize)]
struct HistoryExtent {
    rows: u64,
    oldest: Option<String>,
    newest: Option<String>,
}

#[derive(Serialize)]
struct Ranked<'a> {
    rank: usize,
    #[serde(flatten)]
    top: &'a Top,
}

pub fn run(cli: &Cli, args: &TopArgs) -> CmdResult {
    Ok(top(cli, args).context("top")?)
}

fn top(cli: &Cli, args: &TopArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let now = jiff::Timestamp::now();
    let since = now
        .checked_sub(args.since)
        .with_context(|| format!("the window --since {:?} reaches too far back", args.since))?;
    let by = By::from(args.by);
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let db = StateDb::open_existing(&config.state_dir)?;
    let (extent, rows) = match &db {
        Some(db) => (
            statement_history::extent(db)?,
            statement_history::top(db, since, by, limit)?,
        ),
        None => (Extent::default(), Vec::new()),
    };
    if args.json {
        let t = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string());
        let report = Report {
            since: since.to_string(),
            window_seconds: args.since.as_secs(),
            by,
            history: HistoryExtent {
                rows: extent.rows,
                oldest: t(extent.oldest),
                newest: t(extent.newest),
            },
            statements: rows
                .iter()
                .enumerate()
                .map(|(i, top)| Ranked { rank: i + 1, top })
                .collect(),
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot serialise the output as JSON")?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let window = dbagent::units::human_duration_of(args.since);
    if extent.rows == 0 {
        let path = config.state_dir.join(dbagent::state::STATE_FILE);
        outln!(
            "no statement history yet in {}: `dbagent run` records the top statements of \
             pg_stat_statements at every poll once it has polled twice (pg_stat_statements must \
             be loaded and created: `dbagent check` says whether it is)",
            path.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        let newest = extent
            .newest
            .map(|t| super::backups::utc(t) + " UTC")
            .unwrap_or_default();
        outln!(
            "no statement was recorded in the last {window} (the newest record is from {newest}; \
             widen the window with --since)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "top {} statements of the last {window} by {} (execution time; history since {} UTC)",
        rows.len(),
        by_name(by),
        extent.oldest.map(super::backups::utc).unwrap_or_default()
    )?;
    out!("{}", render(&rows))?;
    Ok(ExitCode::SUCCESS)
}

fn by_name(by: By) -> &'static str {
    match by {
        By::Total => "total time",
        By::Mean => "mean time",
        By::Calls => "calls",
    }
}

/// A statement time: `0.42 ms`, `12.5 ms`, `300 ms`, then seconds and up as everywhere else.
fn time(secs: f64) -> String {
    dbagent::units::human_latency(secs)
}

/// A count: `812`, `12.3k`, `4.5M`.
fn count(n: f64) -> String {
    if n < 10_000.0 {
        format!("{n:.0}")
    } else if n < 10_000_000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{:.1}M", n / 1_000_000.0)
    }
}

/// `text` on one line (runs of blanks as one space), cut to `max` characters with `…`.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// The table: right-aligned numbers, then the database and the text, within [`WIDTH`].
fn render(rows: &[Top]) -> String {
    let head: [String; 6] = ["#", "CALLS", "TOTAL", "MEAN", "ROWS", "DATABASE"].map(String::from);
    let cells: Vec<[String; 6]> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| {
            [
                (i + 1).to_string(),
                count(t.calls),
                time(t.total_seconds),
                time(t.mean_seconds),
                count(t.rows),
                one_line(&t.datname, MAX_DATNAME),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&head).chain(&cells) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let used: usize = widths.iter().sum::<usize>() + 2 * widths.len();
    let query_width = WIDTH.saturating_sub(used).max(MIN_QUERY);
    let line = |row: &[String; 6], query: &str| {
        let mut s = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, the database left-aligned.
            if i == 5 {
                s.push_str(&format!("{c:<w$}  "));
            } else {
                s.push_str(&format!("{c:>w$}  "));
            }
        }
        s.push_str(query);
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&head, "QUERY");
    for (row, t) in cells.iter().zip(rows) {
        let text = match &t.query {
            Some(q) => one_line(q, query_width),
            None => one_line(
                &format!("(text not read; queryid {})", t.queryid),
                query_width,
            ),
        };
        out.push_str(&line(row, &text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(queryid: &str, calls: f64, total: f64, query: &str) -> Top {
        Top {
            queryid: queryid.into(),
            datname: "a_rather_long_database_name".into(),
            user: "app".into(),
            toplevel: true,
            calls,
            total_seconds: total,
            mean_seconds: total / calls,
            rows: calls,
            intervals: 1,
            first_seen: String::new(),
            last_seen: String::new(),
            query: Some(query.into()),
        }
    }

    #[test]
    fn the_table_fits_80_columns_and_keeps_the_start_of_the_text() {
        let long = format!("SELECT pg_sleep($1), 'x'\n   FROM {}", "t, ".repeat(100));
        let rows = [
            t("1", 5.0, 1.5, &long),
            t("2", 12_345_678.0, 98_765.4, "SELECT 1"),
        ];
        let out = render(&rows);
        for line in out.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("#  "), "{out}");
        assert!(lines[1].contains("SELECT pg_sleep($1), 'x' FR"), "{out}");
        assert!(lines[1].ends_with('…'), "{out}");
        assert!(lines[1].contains("300 ms"), "{out}");
        assert!(lines[1].contains("1.5s"), "{out}");
        assert!(lines[2].contains("12.3M"), "{out}");
    }

    #[test]
    fn times_read_in_ms_below_a_second() {
        assert_eq!(time(0.0005), "0.50 ms");
        assert_eq!(time(0.0123), "12.3 ms");
        assert_eq!(time(0.3), "300 ms");
        assert_eq!(time(1.5), "1.5s");
        assert_eq!(count(812.0), "812");
        assert_eq!(count(12_300.0), "12.3k");
    }
}
