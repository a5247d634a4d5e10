//! `dbagent restore --to DIR --target ...`: point-in-time restore. The arguments become a
//! [`Request`]; the library proves a plan (printed as is by `--dry-run`), executes it, and with
//! `--start` starts the server and follows recovery to its end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use serde_json::json;

use super::{Cli, human_bytes, print_error, runtime};
use crate::config::Config;
use crate::pg::PgTarget;
use crate::repo::Repo;
use crate::restore::plan::{self, Action, RestorePlan, Target, TimelineChoice};
use crate::restore::{self, Request, recovery};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Targets: latest (replay all archived WAL), immediate (stop when the backup is consistent),
time:TS (`time:2026-11-21 10:15:00+01`, RFC 3339, or `...[Europe/Paris]`; a time without an
offset is read in --timezone or the server's TimeZone, never guessed), lsn:LSN, xid:XID,
name:NAME (a restore point; `dbagent restore-point --list`).

Before anything is written the plan is proven: the chosen backup can reach the target, every
WAL segment (and timeline history file) from the backup's start to the target is archived,
and DIR is not a running server's directory and is empty (unless --force). Then the backup is
extracted (checksums verified, tablespaces to their original locations or --tablespace-map),
and recovery.signal plus the recovery settings (restore_command = dbagent wal-get) are
written. With --start the server is started as the data directory's owner and followed until
recovery ends; otherwise the pg_ctl command to start it is printed.

Exit codes: 0 success (with --start: the server reached the requested target); 1 failure
(one line on stderr: what failed and what to do; a refused plan writes nothing); 2 bad usage.")]
pub struct RestoreArgs {
    /// The data directory to restore into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Where recovery stops: latest | immediate | time:TS | lsn:LSN | xid:XID | name:NAME
    #[arg(long, default_value = "latest", value_name = "TARGET")]
    pub target: String,
    /// Restore this backup instead of the newest one that can reach the target
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// What the server does at the target (recovery_target_action)
    #[arg(long, value_enum, default_value = "promote")]
    pub action: Action,
    /// Stop just before the target instead of just after it (time, lsn and xid targets)
    #[arg(long)]
    pub exclusive: bool,
    /// recovery_target_timeline: latest, current or a number
    #[arg(long, default_value = "latest", value_name = "TLI")]
    pub timeline: String,
    /// Time zone for a time target written without an offset (e.g. Europe/Paris)
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Restore a tablespace elsewhere: OID=DIR or NAME=DIR (repeatable)
    #[arg(long = "tablespace-map", value_name = "OID=DIR")]
    pub tablespace_map: Vec<String>,
    /// Port of the restored server (written to postgresql.auto.conf)
    #[arg(long)]
    pub port: Option<u16>,
    /// The restored server does not archive (archive_mode = off): for a copy whose new
    /// timeline must not enter the repository
    #[arg(long)]
    pub no_archive: bool,
    /// Start the server, follow recovery and report where it ended
    #[arg(long)]
    pub start: bool,
    /// Print the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Restore into a non-empty directory, removing its contents first (never a running server's)
    #[arg(long)]
    pub force: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, args: &RestoreArgs) -> ExitCode {
    match restore_cmd(cli, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e.context("restore"));
            ExitCode::from(1)
        }
    }
}

/// The time zone to read a bare time in: --timezone, else the server's TimeZone.
fn zone_for(
    config: &Config,
    args: &RestoreArgs,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<jiff::tz::TimeZone>> {
    if let Some(name) = &args.timezone {
        let tz = jiff::tz::TimeZone::get(name)
            .with_context(|| format!("--timezone {name} is not a known time zone"))?;
        return Ok(Some(tz));
    }
    if !plan::time_needs_zone(&args.target) {
        return Ok(None);
    }
    let value = args.target.trim_start_matches("time:").to_string();
    let target = PgTarget::new(&config.postgres.conninfo, config.session_options())?;
    let asked = runtime()?.block_on(async {
        let client = target.connect().await?;
        let row = client
            .query_one("SELECT current_setting('TimeZone')", &[])
            .await
            .map_err(|e| target.query_error("SHOW TimeZone", &e))?;
        anyhow::Ok(row.get::<_, String>(0))
    });
    match asked {
        Ok(name) => {
            let tz = jiff::tz::TimeZone::get(&name).with_context(|| {
                format!("the server's TimeZone `{name}` is unknown here; pass --timezone")
            })?;
            notes.push(format!(
                "the time {value} has no offset: read in the server's time zone {name} ({})",
                target.describe()
            ));
            Ok(Some(tz))
        }
        Err(e) => Err(anyhow!(plan::PlanError::TimeWithoutZone(value))
            .context(format!("could not ask the server for its time zone: {e:#}"))),
    }
}

fn request(cli: &Cli, config: &Config, args: &RestoreArgs) -> anyhow::Result<Request> {
    let mut notes = Vec::new();
    let zone = zone_for(config, args, &mut notes)?;
    let target = Target::parse(&args.target, zone.as_ref())?;
    let timeline = TimelineChoice::parse(&args.timeline).map_err(|e| anyhow!("--timeline {e}"))?;
    let to = if args.to.is_absolute() {
        args.to.clone()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(&args.to)
    };
    let mut tablespace_map = Vec::new();
    for m in &args.tablespace_map {
        let (k, v) = m
            .split_once('=')
            .ok_or_else(|| anyhow!("--tablespace-map {m}: expected OID=DIR or NAME=DIR"))?;
        tablespace_map.push((k.to_string(), PathBuf::from(v)));
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the path of this dbagent binary for restore_command")?;
    let config_path = cli.config_path();
    let config_path = config_path.canonicalize().with_context(|| {
        format!(
            "cannot resolve the configuration path {}",
            config_path.display()
        )
    })?;
    Ok(Request {
        to,
        target,
        backup: args.backup.clone(),
        action: args.action,
        exclusive: args.exclusive,
        timeline,
        force: args.force,
        tablespace_map,
        restore_command: recovery::restore_command(&exe, &config_path),
        port: args.port,
        no_archive: args.no_archive,
        notes,
        extra_settings: Vec::new(),
    })
}

fn restore_cmd(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    let repo = Repo::at(&config.repository.path);
    let req = request(cli, &config, args)?;
    let plan = plan::make(&repo, &req)?;
    let pg_ctl = restore::find_program(
        config.postgres.bin_dir.as_deref(),
        plan.backup.pg_major,
        "pg_ctl",
    );
    let start_command = restore::start_command(
        &plan,
        pg_ctl.as_deref().unwrap_or(std::path::Path::new("pg_ctl")),
    );
    if args.dry_run {
        if args.json {
            let out = json!({"dry_run": true, "plan": plan, "start_command": start_command});
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", render(&plan));
            println!(
                "dry run: nothing was written; to start it after a real restore: {start_command}"
            );
        }
        return Ok(());
    }
    let pg_ctl = if args.start {
        Some(
            pg_ctl
                .map_err(|e| anyhow!(e))
                .context("--start needs pg_ctl")?,
        )
    } else {
        None
    };
    let terminal = std::io::stderr().is_terminal();
    if !args.json {
        eprint!("{}", render(&plan));
    }
    let mut progress = |line: &str| {
        if terminal || !args.json {
            eprintln!("restore: {line}");
        } else {
            tracing::info!("{line}");
        }
    };
    let executed = restore::execute(&repo, &plan, &mut progress)?;
    progress(&format!(
        "backup {} extracted into {} in {:.1} s; recovery settings and recovery.signal written",
        plan.backup.id,
        plan.to.display(),
        executed.seconds
    ));
    let outcome = match &pg_ctl {
        Some(pg_ctl) => Some(restore::start_and_follow(&plan, pg_ctl, &mut progress)?),
        None => None,
    };
    if args.json {
        let out = json!({
            "dry_run": false,
            "plan": plan,
            "executed": executed,
            "start_command": start_command,
            "outcome": outcome,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match outcome {
        Some(o) => println!(
            "restored {} to {}: recovery ended at {} (timeline {}, last transaction {}), the requested target {} was reached; server {}{} (log {})",
            plan.backup.id,
            plan.to.display(),
            o.lsn.map_or("?".to_string(), |l| l.to_string()),
            o.timeline,
            o.last_transaction_time
                .as_deref()
                .unwrap_or("none replayed"),
            plan.target.description,
            match o.state.as_str() {
                "promoted" => "promoted and running",
                "paused" =>
                    "running, paused in recovery (SELECT pg_wal_replay_resume() to promote)",
                "shut_down" => "shut down at the target",
                other => other,
            },
            o.port.map_or(String::new(), |p| format!(" on port {p}")),
            o.log.display()
        ),
        None => println!(
            "restored {} to {}; start it with: {start_command}",
            plan.backup.id,
            plan.to.display()
        ),
    }
    Ok(())
}

fn human_duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{:.1} h", secs as f64 / 3600.0),
    }
}

/// The plan as `--dry-run` prints it.
pub fn render(p: &RestorePlan) -> String {
    let mut out = String::new();
    let b = &p.backup;
    out.push_str(&format!("restore plan for {}\n", p.to.display()));
    out.push_str(&format!("  target:      {}\n", p.target.description));
    out.push_str(&format!(
        "  backup:      {} ({} to {}, timeline {}, {} stored as {} {})\n",
        b.id,
        b.start_time,
        b.stop_time,
        b.timeline,
        human_bytes(b.size_bytes),
        human_bytes(b.stored_bytes),
        b.compression.as_str(),
    ));
    out.push_str(&format!("  why:         {}\n", p.backup_choice));
    let path: Vec<String> = p
        .timeline
        .path
        .iter()
        .filter(|s| s.end.is_none_or(|e| e > b.start_lsn))
        .map(|s| match s.end {
            Some(end) => format!("{} until {end}", s.timeline),
            None => s.timeline.to_string(),
        })
        .collect();
    out.push_str(&format!(
        "  timelines:   {} (recovery_target_timeline = {})\n",
        path.join(" -> "),
        p.timeline.requested
    ));
    out.push_str(&format!(
        "  WAL:         {} .. {}: {} segments, {} to replay ({} stored), all archived; ends at {}\n",
        p.wal.first,
        p.wal.last,
        p.wal.segments,
        human_bytes(p.wal.bytes),
        human_bytes(p.wal.stored_bytes),
        p.wal.end,
    ));
    for t in &p.tablespaces {
        out.push_str(&format!(
            "  tablespace:  {} (OID {}) -> {}\n",
            t.name,
            t.oid,
            t.location.display()
        ));
    }
    if p.replaces_existing {
        out.push_str(&format!(
            "  --force:     the current contents of {} are removed first\n",
            p.to.display()
        ));
    }
    if let Some(o) = &p.owner {
        out.push_str(&format!(
            "  owner:       {} ({}:{})\n",
            o.user, o.uid, o.gid
        ));
    }
    let s: Vec<String> = p
        .settings
        .iter()
        .map(|s| format!("{} = {}", s.name, recovery::quote(&s.value)))
        .collect();
    out.push_str(&format!(
        "  settings:    {}; recovery.signal\n",
        s.join(", ")
    ));
    out.push_str(&format!(
        "  estimate:    about {} (rough: extraction ~200 MB/s, replay ~100 MB/s)\n",
        human_duration(p.estimated_seconds)
    ));
    for n in &p.notes {
        out.push_str(&format!("  note:        {n}\n"));
    }
    out
}
