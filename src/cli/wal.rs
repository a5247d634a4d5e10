//! `dbagent wal verify [--json] [--full] [--no-progress]`: the WAL archive checked from the
//! oldest kept backup to the newest archived segment, per timeline (see
//! [`dbagent::wal::verify`]); the result is recorded in state.db for `check` and `/metrics`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Cli, CmdResult, ExitWith, output};
use dbagent::state::StateDb;
use dbagent::wal::verify::{self, Coverage, Options, Report};

/// Exit status when the archive has a problem.
const EXIT_PROBLEMS: u8 = 1;
/// Exit status when the archive could not be verified at all.
const EXIT_CANNOT_VERIFY: u8 = 2;

#[derive(Debug, clap::Subcommand)]
pub enum WalCommand {
    /// Verify the WAL archive: every segment recovery from the kept backups needs is present and
    /// intact, and the timeline histories agree
    #[command(after_help = "\
From the oldest kept backup's first segment to the newest archived segment, along the path
of every timeline a kept backup can reach (a segment is read from the timeline its history
says), each needed segment must be in the archive, decompress completely (zstd/lz4 content
checksum, gzip CRC) and be one whole segment of this cluster whose page header has the
address its name says. History files must descend from one another and agree with the
timeline records wal-push wrote; a history file nobody archived through dbagent, of a
timeline without any segment, is reported as foreign.

Results are remembered in state.db: the next run re-reads only segments whose stored file
changed (name, size or modification time); --full re-reads everything. `dbagent check`
(wal_verify) and /metrics (dbagent_wal_verify_*) report the last run without reading the
archive.

Output: one line per timeline, one line per problem (MISSING, DAMAGED, UNREADABLE, CONFLICT),
then a summary line. --json prints one object (shape in docs/commands.md).

Exit codes: 0 everything needed is present and intact and the histories agree; 1 a segment
is missing, damaged or unreadable, or histories disagree (each named); 2 the archive could
not be verified (no repository, unreadable repository or state.db, bad usage).")]
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Re-read every needed segment, ignoring the results remembered in state.db
    #[arg(long)]
    pub full: bool,
    /// No progress bar or progress lines on stderr
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(cli: &Cli, cmd: &WalCommand) -> CmdResult {
    match cmd {
        WalCommand::Verify(args) => verify(cli, args),
    }
}

fn verify(cli: &Cli, args: &VerifyArgs) -> CmdResult {
    let report = verify_cmd(cli, args)
        .context("wal verify")
        .exit_code(EXIT_CANNOT_VERIFY)?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)
            .context("cannot serialise the result as JSON")
            .context("wal verify")
            .exit_code(EXIT_CANNOT_VERIFY)?
            + "\n"
    } else {
        render(&report)
    };
    // The exit code is the verdict: a reader that stopped reading does not change it.
    output::unless_closed(out!("{text}").and_then(|()| output::flush()))
        .context("wal verify")
        .exit_code(EXIT_CANNOT_VERIFY)?;
    if report.ok {
        return Ok(ExitCode::SUCCESS);
    }
    // One line on stderr too: what a scheduled run records as its failure.
    match report.problems.first() {
        Some(first) => Err(anyhow::anyhow!(
            "{}; the first: {} {}",
            summary_counts(&report),
            first.name,
            first.problem
        )
        .context("wal verify")
        .into()),
        None => Ok(ExitCode::from(EXIT_PROBLEMS)),
    }
}

fn verify_cmd(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<Report> {
    let config = cli.load_config()?;
    let repo = config.repo()?;
    let mut db = StateDb::open(&config.state_dir)?;
    let opts = Options { full: args.full };
    let mut progress = Progress::new(!args.no_progress);
    let report = verify::run(&repo, &mut db, &opts, &mut |done, total| {
        progress.update(done, total)
    });
    drop(progress);
    Ok(report?)
}

/// A bar on a terminal, a line every 10 s otherwise, nothing with --no-progress.
enum Progress {
    Off,
    Bar(indicatif::ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    fn new(on: bool) -> Progress {
        if !on {
            return Progress::Off;
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(super::progress::style(super::progress::WAL_VERIFY));
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                last: Instant::now(),
            }
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        match self {
            Progress::Off => {}
            Progress::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            Progress::Lines { last } => {
                if last.elapsed() >= Duration::from_secs(10) {
                    *last = Instant::now();
                    eprintln!("wal verify: {done} of {total} segments read");
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The text output: one line per timeline, one per problem, a summary.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for t in &r.timelines {
        let mut line = format!("timeline {}", t.timeline);
        if let (Some(p), Some(at)) = (t.parent, t.switch_lsn) {
            line.push_str(&format!(" (from {p} at {at}"));
            if let Some(o) = t.origin {
                line.push_str(&format!(", {o}"));
            }
            line.push(')');
        }
        line.push_str(": ");
        match t.coverage {
            Coverage::NotReachable => line.push_str(&format!(
                "not needed: recovery from the kept backups never reads it (their history left it before they started; {} segments archived)",
                t.segments_archived
            )),
            Coverage::NoHistory if t.segments_needed == 0 => line.push_str(&format!(
                "not followed: its history file is missing or damaged ({} segments archived)",
                t.segments_archived
            )),
            _ if t.segments_needed == 0 => line.push_str("no segment of it needed"),
            _ => {
                line.push_str(&format!(
                    "{}..{}, {} needed: {} ok",
                    t.first.as_deref().unwrap_or("?"),
                    t.last.as_deref().unwrap_or("?"),
                    t.segments_needed,
                    t.segments_ok
                ));
                for (n, what) in [
                    (t.segments_missing, "missing"),
                    (t.segments_damaged, "damaged"),
                    (t.segments_unreadable, "unreadable"),
                ] {
                    if n > 0 {
                        line.push_str(&format!(", {n} {what}"));
                    }
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    for p in &r.problems {
        let label = if p.kind.is_segment() {
            p.kind.as_str().to_uppercase()
        } else {
            "CONFLICT".to_string()
        };
        out.push_str(&format!("{label:<10} {} {}\n", p.name, p.problem));
    }
    let cache = format!(
        "{} read, {} from the results remembered in state.db",
        r.segments_read, r.segments_cached
    );
    let range = match &r.range {
        Some(g) => format!(
            "{} segments needed from {} to {} ({} to {}){}",
            r.segments_needed,
            g.first,
            g.last,
            g.start_lsn,
            g.end_lsn,
            r.oldest_backup.as_deref().map_or_else(
                || ", no backup yet".to_string(),
                |b| format!(", from backup {b}")
            )
        ),
        None => "no WAL needed yet".to_string(),
    };
    if r.ok && r.range.is_none() {
        out.push_str("wal verify: OK: nothing to verify yet (no backup, and no WAL archived)\n");
    } else if r.ok {
        out.push_str(&format!(
            "wal verify: OK: {range}, all present and intact; {cache}\n"
        ));
    } else {
        out.push_str(&format!(
            "wal verify: PROBLEMS: {}; {range}; {cache}\n",
            summary_counts(r)
        ));
    }
    out
}

/// `1 missing, 2 damaged, 1 history conflict(s)`.
fn summary_counts(r: &Report) -> String {
    let mut counts = Vec::new();
    for (n, what) in [
        (r.segments_missing, "missing"),
        (r.segments_damaged, "damaged"),
        (r.segments_unreadable, "unreadable"),
        (r.history_conflicts, "history conflict(s)"),
    ] {
        if n > 0 {
            counts.push(format!("{n} {what}"));
        }
    }
    counts.join(", ")
}
