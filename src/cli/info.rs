//! `dbagent info [--json]`: the repository at a glance (see [`dbagent::info`]): backups, the
//! WAL archive per timeline with its gaps, the recoverable window, sizes, the last drill and
//! the RPO now. The `--json` shape is documented in docs/info.md.

use std::process::ExitCode;

use super::{Cli, CmdResult, ExitWith, human_bytes, human_duration, runtime};
use dbagent::info::{self, Info, InfoError};
use dbagent::restore::plan::pg_time;

/// The configuration could not be read.
const EXIT_CONFIG: u8 = 3;
/// The repository (or its WAL archive) could not be read.
const EXIT_REPO: u8 = 4;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Shows the backups (count, oldest, newest, stored and original sizes), the WAL archive of
each timeline (first and last segment, missing segment ranges named), the recoverable window
(the earliest and the latest time and LSN a restore reaches now: `restore --target time:T`
succeeds for every T in it and is refused outside it), the repository's size, the last
drill and its RTO, and the RPO now (asked of the server; `unavailable` when it does not
answer, which does not fail the command). Reads the repository only; writes nothing.

The earliest point is the end of the oldest backup; the latest is one microsecond before the
newest transaction committed in the WAL archived without a gap after a backup (PostgreSQL
stops a recovery to a time at the first transaction committed after it, so a time target
never includes the very last one: `--target latest` does).

Exit codes: 0 shown; 1 the repository holds nothing yet (no backup, no WAL); 2 bad usage;
3 the configuration cannot be read; 4 the repository or its WAL archive cannot be read.")]
pub struct InfoArgs {
    /// Print the summary as JSON (shape documented in docs/info.md)
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &InfoArgs) -> CmdResult {
    let config = cli.load_config().exit_code(EXIT_CONFIG)?;
    let mut summary = match info::gather(&config) {
        Ok(s) => s,
        Err(e @ InfoError::Empty(_)) => return Err(e).exit_code(1),
        Err(e @ InfoError::Config(_)) => return Err(e).exit_code(EXIT_CONFIG),
        Err(e) => return Err(e).exit_code(EXIT_REPO),
    };
    summary.rpo = runtime()?.block_on(info::rpo_now(&config));
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        out!("{}", render(&summary))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ts(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The human summary; every line fits 80 columns.
pub fn render(i: &Info) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    let r = &i.repository;
    line(format!("Repository  {}", r.location));
    let mut about = Vec::new();
    if let Some(id) = &r.system_identifier {
        about.push(format!("cluster {id}"));
    }
    if let Some(v) = r.pg_major {
        about.push(format!("PostgreSQL {v}"));
    }
    if !about.is_empty() {
        line(format!("            {}", about.join(", ")));
    }
    line(format!(
        "            {} stored: backups {}, WAL {}",
        human_bytes(r.size_bytes),
        human_bytes(r.backups_bytes),
        human_bytes(r.wal_bytes)
    ));
    let b = &i.backups;
    if b.count == 0 {
        line("Backups     none: take one with `dbagent backup`".into());
    } else {
        line(format!(
            "Backups     {}, {} stored ({} original)",
            b.count,
            human_bytes(b.stored_bytes),
            human_bytes(b.original_bytes)
        ));
        let mut brief = |what: &str, x: &info::BackupBrief| {
            line(format!(
                "  {what}  {}  ended {} (timeline {})",
                x.id,
                ts(x.stop_time),
                x.timeline
            ));
        };
        if let Some(x) = &b.oldest {
            brief("oldest", x);
        }
        if let (Some(x), true) = (&b.newest, b.count > 1) {
            brief("newest", x);
        }
    }
    if i.wal.is_empty() {
        line("WAL         none archived: is archive_command `dbagent wal-push %p`?".into());
    } else {
        line("WAL archive".into());
    }
    for t in &i.wal {
        let parent = match (t.parent, t.branch_lsn) {
            (Some(p), Some(l)) => format!(", from {p} at {l}"),
            _ => String::new(),
        };
        let origin = t.origin.map_or(String::new(), |o| format!(", {o}"));
        line(format!(
            "  timeline {}: {} segments, {}{parent}{origin}",
            t.timeline,
            t.segments,
            human_bytes(t.stored_bytes)
        ));
        if let (Some(f), Some(l)) = (&t.first_segment, &t.last_segment) {
            line(format!("    {f} .. {l}"));
        }
        for g in &t.gaps {
            line(format!(
                "    gap {} .. {} ({} missing)",
                g.first, g.last, g.segments
            ));
        }
    }
    line("Recoverable window (restore --target time:...)".into());
    if i.window.is_empty() {
        line("  none: no backup whose WAL is complete".into());
    }
    for w in &i.window {
        let tl = format!("  timeline {}", w.timeline);
        match (&w.earliest, &w.latest) {
            (Some(e), Some(l)) => {
                line(format!(
                    "{tl}: earliest {} (LSN {})",
                    pg_time(e.time),
                    e.lsn
                ));
                line(format!(
                    "{:>width$}  latest   {} (LSN {})",
                    "",
                    pg_time(l.time),
                    l.lsn,
                    width = tl.len()
                ));
            }
            _ => line(format!(
                "{tl}: none (no transaction committed after a backup is archived)"
            )),
        }
        if w.intervals.len() > 1 {
            line("    unreachable between:".into());
            for pair in w.intervals.windows(2) {
                line(format!(
                    "      {} and {}",
                    pg_time(pair[0].latest.time),
                    pg_time(pair[1].earliest.time)
                ));
            }
        }
        if let Some(g) = &w.ends_at_gap {
            line(format!("    ends at the gap {} .. {}", g.first, g.last));
        }
    }
    match &i.last_drill {
        Some(d) => line(format!(
            "Last drill  {}, {}{}",
            ts(d.finished_at),
            if d.ok { "passed" } else { "FAILED" },
            d.rto_seconds
                .filter(|_| d.ok)
                .map_or(String::new(), |s| format!(", RTO {}", human_duration(s)))
        )),
        None => line("Last drill  none: run `dbagent drill`".into()),
    }
    match i.rpo.seconds {
        Some(s) => line(format!(
            "RPO now     {} ({})",
            human_duration(s),
            i.rpo.basis.replace('_', " ")
        )),
        None => line("RPO now     unknown: the server could not be asked".into()),
    }
    o
}
