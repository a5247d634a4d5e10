//! `dbagent restore --to DIR --target ...`: point-in-time restore. The arguments become a
//! [`Request`]; the library proves a plan (printed as is by `--dry-run`), executes it, and with
//! `--start` starts the server and follows recovery to its end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use serde_json::json;

use super::{Cli, CmdResult, human_bytes, human_duration, runtime};
use dbagent::config::Config;
use dbagent::pg::PgTarget;
use dbagent::repo::Repo;
use dbagent::restore::plan::{self, Action, RestorePlan, Target, TimelineChoice};
use dbagent::restore::{self, Request, guided, recovery};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Targets: latest (replay all archived WAL), immediate (stop when the backup is consistent),
time:TS (`time:2026-11-21 10:15:00+01`, RFC 3339, or `...[Europe/Paris]`; a time without an
offset is read in --timezone or the server's TimeZone, never guessed), lsn:LSN, xid:XID,
name:NAME (a restore point; `dbagent restore-point --list`).

Before anything is written the plan is proven: the chosen backup can reach the target, every
WAL segment (and timeline history file) from the backup's start to the target is archived,
and DIR is not a running server's directory and is empty (unless --force); a time target
also needs a transaction committed after it in that WAL (`dbagent info` shows the window of
times a restore reaches). Then the backup is
extracted (checksums verified, tablespaces to their original locations or --tablespace-map),
and recovery.signal plus the recovery settings (restore_command = dbagent wal-get) are
written. A copy (DIR is not postgres.pgdata) gets a unix socket directory of its own next to
it, DIR.socket. With --start the server is started as the data directory's owner and followed
until recovery ends, and the last line is the psql command that connects to it; otherwise the
pg_ctl command to start it is printed.

--delta restores into DIR as it is, an existing stopped data directory of the same cluster
(system identifier and major version checked): the plan compares DIR's files with the backup's
backup_manifest (size, then CRC32C) and says how many files and bytes it rewrites, removes and
keeps; only the files that differ are written (their differing 8 KiB blocks when DIR has the
file) and files the backup does not have are removed. Refused with --force, for an empty
directory, an incremental backup or a backup with tablespaces.

--guided asks for each choice on a terminal (backups and recorded restore points are listed
with their times; a bad value is asked again), shows the proven plan, asks to confirm, then
runs the same code path as the flags. Without a terminal it refuses and prints the equivalent
command line.

Exit codes: 0 success (with --start: the server reached the requested target); 1 failure
(one line on stderr: what failed and what to do; a refused plan writes nothing; --guided
without a terminal or cancelled); 2 bad usage.")]
pub struct RestoreArgs {
    /// The data directory to restore into (created if missing)
    #[arg(long, value_name = "DIR", required_unless_present = "guided")]
    pub to: Option<PathBuf>,
    /// Where recovery stops: latest | immediate | time:TS | lsn:LSN | xid:XID | name:NAME
    /// [default: latest]
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Restore this backup instead of the newest one that can reach the target
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// What the server does at the target (recovery_target_action) [default: promote]
    #[arg(long, value_enum)]
    pub action: Option<Action>,
    /// Stop just before the target instead of just after it (time, lsn and xid targets)
    #[arg(long)]
    pub exclusive: bool,
    /// Which timeline to follow: auto (the history that held the target, decided from the
    /// archive's timeline histories; test copies are never followed), current (the backup's) or
    /// a number. `latest` is read as auto
    #[arg(long, default_value = "auto", value_name = "TLI")]
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
    /// Where an incremental backup's incrementals are extracted before they are applied to
    /// DIR (must be empty or absent; removed afterwards) [default: DIR.staging]
    #[arg(long, value_name = "STAGING_DIR")]
    pub staging: Option<PathBuf>,
    /// The restored server archives into the source repository. The default for a restore
    /// into the cluster's own postgres.pgdata (the new primary must archive); any other
    /// directory is a copy and does not archive unless asked (its timeline is then recorded as
    /// a copy, which later restores of the cluster never follow)
    #[arg(long, conflicts_with = "no_archive")]
    pub archive: bool,
    /// The restored server does not archive (archive_mode = off), even in place
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
    /// DIR is an existing, stopped data directory of the same cluster: rewrite only the files
    /// whose size or checksum differs from the backup and remove those the backup does not
    /// have (refused for another cluster's directory, with --force, and for an empty one)
    #[arg(long, conflicts_with = "guided")]
    pub delta: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Ask for each choice on the terminal (backup, target, destination, action, start), show
    /// the plan and confirm; flags given are not asked. Needs a terminal
    #[arg(long)]
    pub guided: bool,
}

impl RestoreArgs {
    fn target(&self) -> &str {
        self.target.as_deref().unwrap_or("latest")
    }
}

pub fn run(cli: &Cli, args: &RestoreArgs) -> CmdResult {
    if args.guided {
        guided_cmd(cli, args)
    } else {
        restore_cmd(cli, args)
    }
    .context("restore")?;
    Ok(ExitCode::SUCCESS)
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
    if !plan::time_needs_zone(args.target()) {
        return Ok(None);
    }
    let value = args.target().trim_start_matches("time:").to_string();
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
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut req = request_from(
        args,
        zone.as_ref(),
        notes,
        &cwd,
        config.postgres.pgdata.as_deref(),
        recovery::restore_command(&exe, &config_path),
    )?;
    req.bin_dir = config.postgres.bin_dir.clone();
    Ok(req)
}

/// Whether two paths name the same directory (resolved when they exist).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

/// The [`Request`] of these flags, with the I/O already done (time zone, paths).
fn request_from(
    args: &RestoreArgs,
    zone: Option<&jiff::tz::TimeZone>,
    notes: Vec<String>,
    cwd: &std::path::Path,
    pgdata: Option<&std::path::Path>,
    restore_command: String,
) -> anyhow::Result<Request> {
    let target = Target::parse(args.target(), zone)?;
    let timeline = TimelineChoice::parse(&args.timeline).map_err(|e| anyhow!("--timeline {e}"))?;
    let to = args
        .to
        .as_ref()
        .ok_or_else(|| anyhow!("--to DIR is required"))?;
    let to = cwd.join(to);
    let in_place = pgdata.is_some_and(|d| same_dir(d, &to));
    let no_archive = args.no_archive || (!in_place && !args.archive);
    let mut tablespace_map = Vec::new();
    for m in &args.tablespace_map {
        let (k, v) = m
            .split_once('=')
            .ok_or_else(|| anyhow!("--tablespace-map {m}: expected OID=DIR or NAME=DIR"))?;
        tablespace_map.push((k.to_string(), PathBuf::from(v)));
    }
    // A copy gets a socket directory of its own, next to it (not the source's).
    let extra_settings = (!in_place)
        .then(|| restore::socket_dir(&to))
        .flatten()
        .map(|dir| plan::Setting {
            name: "unix_socket_directories".into(),
            value: dir.display().to_string(),
        })
        .into_iter()
        .collect();
    Ok(Request {
        to,
        target,
        backup: args.backup.clone(),
        action: args.action.unwrap_or_default(),
        exclusive: args.exclusive,
        timeline,
        force: args.force,
        tablespace_map,
        restore_command,
        port: args.port,
        no_archive,
        in_place,
        notes,
        extra_settings,
        staging: args.staging.as_ref().map(|s| cwd.join(s)),
        bin_dir: None,
    })
}

fn restore_cmd(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    let repo = config.repo()?;
    let req = request(cli, &config, args)?;
    // Holds the backups and WAL in use from the plan to the end of replay, so that a
    // concurrent `backups expire` waits (or fails) instead of deleting what is restored.
    let _in_use = if args.dry_run {
        None
    } else {
        Some(repo.lock_in_use("restore", config.repository.lock_wait)?)
    };
    let plan = if args.delta {
        restore::delta::make(&repo, &req)?
    } else {
        plan::make(&repo, &req)?
    };
    carry_out(&config, &repo, args, &plan)
}

/// Prints (`--dry-run`) or executes a proven plan: the one code path of the flags and of
/// `--guided`.
fn carry_out(
    config: &Config,
    repo: &Repo,
    args: &RestoreArgs,
    plan: &RestorePlan,
) -> anyhow::Result<()> {
    let pg_ctl = dbagent::pg::programs::find(
        config.postgres.bin_dir.as_deref(),
        plan.backup.pg_major,
        "pg_ctl",
    );
    let start_command = restore::start_command(
        plan,
        pg_ctl.as_deref().unwrap_or(std::path::Path::new("pg_ctl")),
    );
    if args.dry_run {
        if args.json {
            let out = json!({"dry_run": true, "plan": plan, "start_command": start_command});
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        } else {
            out!("{}", render(plan))?;
            outln!(
                "dry run: nothing was written; to start it after a real restore: {start_command}"
            )?;
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
        eprint!("{}", render(plan));
    }
    let mut progress = |line: &str| {
        if terminal || !args.json {
            eprintln!("restore: {line}");
        } else {
            tracing::info!("{line}");
        }
    };
    // Before anything of the backup is written: a copy's own socket directory.
    restore::prepare_socket_dir(plan)?;
    let executed = if plan.delta.is_some() {
        restore::delta::execute(repo, plan, &mut progress)?
    } else {
        restore::execute(repo, plan, &mut progress)?
    };
    progress(&format!(
        "backup {} {} {} in {}; recovery settings and recovery.signal written",
        plan.backup.id,
        if plan.delta.is_some() {
            "delta-restored into"
        } else {
            "extracted into"
        },
        plan.to.display(),
        human_duration(executed.seconds)
    ));
    let moved = match &pg_ctl {
        Some(_) => restore::move_off_busy_port(plan)?,
        None => None,
    };
    if let Some((busy, chosen)) = moved {
        // Said even with --json: whoever connects next needs the port.
        eprintln!(
            "restore: port {busy} is in use by another server: the restored server listens on port {chosen} instead (--port to choose one)"
        );
    }
    let outcome = match &pg_ctl {
        Some(pg_ctl) => {
            let mut o = restore::start_and_follow(plan, pg_ctl, &mut progress)?;
            if let Some((_, chosen)) = moved {
                o.port = Some(chosen);
            }
            Some(o)
        }
        None => None,
    };
    // How to connect, when the server runs (promoted or paused at the target).
    let psql_command = outcome
        .as_ref()
        .filter(|o| o.state == "promoted" || o.state == "paused")
        .map(|o| {
            let port = o.port.unwrap_or_else(|| restore::configured_port(&plan.to));
            let user = config
                .postgres
                .conninfo
                .get("user")
                .map(str::to_string)
                .or_else(|| std::env::var("PGUSER").ok());
            restore::psql_command(plan, port, user.as_deref())
        });
    if args.json {
        let out = json!({
            "dry_run": false,
            "plan": plan,
            "executed": executed,
            "start_command": start_command,
            "outcome": outcome,
            "psql_command": psql_command,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(());
    }
    match outcome {
        Some(o) => outln!(
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
        None => outln!(
            "restored {} to {}; start it with: {start_command}",
            plan.backup.id,
            plan.to.display()
        ),
    }?;
    if let Some(psql) = psql_command {
        outln!("connect with: {psql}")?;
    }
    Ok(())
}

/// The prompts of `--guided` on the terminal (dialoguer, on stderr so that stdout stays
/// for `--json`).
struct TerminalPrompter {
    term: dialoguer::console::Term,
}

fn prompt_err(e: dialoguer::Error) -> std::io::Error {
    match e {
        dialoguer::Error::IO(e) => e,
    }
}

impl guided::Prompter for TerminalPrompter {
    fn select(&mut self, prompt: &str, items: &[String], default: usize) -> std::io::Result<usize> {
        dialoguer::Select::new()
            .with_prompt(prompt)
            .items(items)
            .default(default)
            .interact_on(&self.term)
            .map_err(prompt_err)
    }

    fn input(&mut self, prompt: &str, default: Option<&str>) -> std::io::Result<String> {
        let mut input = dialoguer::Input::<String>::new()
            .with_prompt(prompt)
            .allow_empty(true);
        if let Some(d) = default {
            input = input.default(d.to_string());
        }
        input.interact_text_on(&self.term).map_err(prompt_err)
    }

    fn confirm(&mut self, prompt: &str, default: bool) -> std::io::Result<bool> {
        dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(default)
            .interact_on(&self.term)
            .map_err(prompt_err)
    }

    fn say(&mut self, text: &str) {
        let _ = self.term.write_line(text);
    }
}

/// The non-interactive command equivalent to `args` (as given or as answered).
fn command_line(config: Option<&std::path::Path>, args: &RestoreArgs) -> String {
    let q = |s: &str| recovery::shell_quote(s);
    let mut out = vec!["dbagent".to_string()];
    if let Some(c) = config {
        out.push(format!("--config {}", q(&c.display().to_string())));
    }
    out.push("restore".into());
    out.push(format!(
        "--to {}",
        args.to
            .as_ref()
            .map_or_else(|| "DIR".to_string(), |t| q(&t.display().to_string()))
    ));
    if let Some(t) = &args.target {
        out.push(format!("--target {}", q(t)));
    }
    if let Some(b) = &args.backup {
        out.push(format!("--backup {}", q(b)));
    }
    if let Some(a) = args.action {
        out.push(format!("--action {}", a.as_str()));
    }
    if args.exclusive {
        out.push("--exclusive".into());
    }
    if args.timeline != "auto" && args.timeline != "latest" {
        out.push(format!("--timeline {}", q(&args.timeline)));
    }
    if let Some(z) = &args.timezone {
        out.push(format!("--timezone {}", q(z)));
    }
    for m in &args.tablespace_map {
        out.push(format!("--tablespace-map {}", q(m)));
    }
    if let Some(p) = args.port {
        out.push(format!("--port {p}"));
    }
    if let Some(s) = &args.staging {
        out.push(format!("--staging {}", q(&s.display().to_string())));
    }
    for (on, flag) in [
        (args.archive, "--archive"),
        (args.no_archive, "--no-archive"),
        (args.start, "--start"),
        (args.dry_run, "--dry-run"),
        (args.force, "--force"),
        (args.delta, "--delta"),
        (args.json, "--json"),
    ] {
        if on {
            out.push(flag.into());
        }
    }
    out.join(" ")
}

/// `--guided` answers applied to the flags.
fn with_answers(args: &RestoreArgs, a: &guided::Answers) -> RestoreArgs {
    let mut out = args.clone();
    out.guided = false;
    out.to = Some(a.to.clone());
    out.target = Some(a.target.clone());
    out.backup = a.backup.clone();
    out.action = a.action;
    out.exclusive = a.exclusive;
    out.start = a.start;
    out
}

fn guided_cmd(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<()> {
    let config_path = cli.config.as_deref();
    let missing = if !std::io::stdin().is_terminal() {
        Some("stdin")
    } else if !std::io::stderr().is_terminal() {
        Some("stderr")
    } else {
        None
    };
    if let Some(which) = missing {
        let mut plain = args.clone();
        plain.guided = false;
        return Err(anyhow!(
            "--guided needs a terminal ({which} is not a TTY); the same restore without questions: {}",
            command_line(config_path, &plain)
        ));
    }
    let config = cli.load_config()?;
    let repo = config.repo()?;
    let zone = match &args.timezone {
        Some(name) => Some(
            jiff::tz::TimeZone::get(name)
                .with_context(|| format!("--timezone {name} is not a known time zone"))?,
        ),
        None => None,
    };
    let given = guided::Given {
        to: args.to.clone(),
        target: args.target.clone(),
        backup: args.backup.clone(),
        action: args.action,
        exclusive: args.exclusive,
        start: args.start,
        force: args.force,
    };
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut p = TerminalPrompter {
        term: dialoguer::console::Term::stderr(),
    };
    let answers = guided::ask(&mut p, &repo, &given, zone.as_ref(), &cwd)?;
    let flags = with_answers(args, &answers);
    let req = request(cli, &config, &flags)?;
    let _in_use = if flags.dry_run {
        None
    } else {
        Some(repo.lock_in_use("restore", config.repository.lock_wait)?)
    };
    let plan = plan::make(&repo, &req)?;
    use guided::Prompter;
    p.say("");
    p.say(render(&plan).trim_end());
    let same = command_line(config_path, &flags);
    p.say(&format!("the same restore without questions: {same}"));
    let go = if flags.dry_run {
        true
    } else {
        p.confirm(
            &format!(
                "Restore backup {} into {}{}?",
                plan.backup.id,
                plan.to.display(),
                if flags.start { " and start it" } else { "" }
            ),
            false,
        )?
    };
    if !go {
        return Err(anyhow!(
            "cancelled; nothing was written (the same restore without questions: {same})"
        ));
    }
    carry_out(&config, &repo, &flags, &plan)
}

/// The chain lines of a plan that restores an incremental backup.
fn render_chain(c: &restore::chain::ChainPlan) -> String {
    let free = |f: Option<u64>| {
        f.map_or_else(
            || "free space unknown".to_string(),
            |f| format!("{} free", human_bytes(f)),
        )
    };
    let mut out = format!(
        "  chain:       {} ({} backups: the full streamed into the target, the incrementals applied in place{})\n",
        restore::chain::describe(c),
        c.members.len(),
        if c.link {
            ", whole files moved from staging"
        } else {
            ""
        }
    );
    out.push_str(&format!(
        "  staging:     {}: needs {} ({}), removed afterwards; --staging DIR to change\n",
        c.staging.display(),
        human_bytes(c.staging_bytes),
        free(c.staging_free_bytes)
    ));
    out.push_str(&format!(
        "  combined:    up to {} in the target ({}{})\n",
        human_bytes(c.output_bytes),
        free(c.target_free_bytes),
        if c.same_filesystem {
            ", the same filesystem as staging: both are counted against it"
        } else {
            ""
        }
    ));
    out
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
    if let Some(c) = &p.chain {
        out.push_str(&render_chain(c));
    }
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
        p.timeline.target_timeline
    ));
    out.push_str(&format!("  because:     {}\n", p.timeline.why));
    for l in &p.timeline.left_out {
        out.push_str(&format!("  left out:    {l}\n"));
    }
    out.push_str(&format!(
        "  archiving:   {}\n",
        if p.archive {
            "on: the restored server archives its new timeline into the source repository"
        } else {
            "off (archive_mode = off): the restored copy never writes into the source repository; --archive to change"
        }
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
    if let Some(d) = &p.delta {
        out.push_str(&format!(
            "  --delta:     rewrite {} files ({}), remove {} files ({}), keep {} unchanged files ({}); compared by size and {} checksum in {}\n",
            d.files_rewritten,
            human_bytes(d.bytes_rewritten),
            d.files_removed,
            human_bytes(d.bytes_removed),
            d.files_unchanged,
            human_bytes(d.bytes_unchanged),
            d.checksum_algorithm,
            human_duration(d.compare_seconds),
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
        "  estimate:    about {} (rough: extraction ~200 MiB/s, replay ~100 MiB/s)\n",
        human_duration(p.estimated_seconds as f64)
    ));
    for n in &p.notes {
        out.push_str(&format!("  note:        {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use clap::Parser;
    use dbagent::restore::guided::{Given, Scripted::*, ScriptedPrompter};
    use std::path::Path;

    fn parse(line: &str) -> RestoreArgs {
        match Cli::try_parse_from(line.split_whitespace())
            .unwrap()
            .command
        {
            Command::Restore(a) => a,
            other => panic!("not restore: {other:?}"),
        }
    }

    fn given(args: &RestoreArgs) -> Given {
        Given {
            to: args.to.clone(),
            target: args.target.clone(),
            backup: args.backup.clone(),
            action: args.action,
            exclusive: args.exclusive,
            start: args.start,
            force: args.force,
        }
    }

    #[test]
    fn guided_answers_make_the_same_request_as_the_flags() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(repo_dir.path());
        let args = parse("dbagent restore --guided --port 5499 --no-archive");
        let mut p = ScriptedPrompter::new([
            Select(0),                 // the newest backup that reaches the target
            Select(3),                 // lsn
            Input("0/XYZ".into()),     // refused, asked again
            Input("0/3000028".into()), // accepted
            Confirm(false),            // inclusive
            Input("restored".into()),  // relative destination
            Select(1),                 // pause
            Confirm(true),             // start
        ]);
        let cwd = Path::new("/srv");
        let answers = guided::ask(&mut p, &repo, &given(&args), None, cwd).unwrap();
        let flags = with_answers(&args, &answers);
        let line = command_line(Some(Path::new("/etc/dbagent/dbagent.yml")), &flags);
        assert_eq!(
            line,
            "dbagent --config /etc/dbagent/dbagent.yml restore --to /srv/restored --target lsn:0/3000028 --action pause --port 5499 --no-archive --start"
        );
        let typed = parse(&line);
        let from_guided = request_from(&flags, None, Vec::new(), cwd, None, "rc".into()).unwrap();
        let from_flags = request_from(&typed, None, Vec::new(), cwd, None, "rc".into()).unwrap();
        assert_eq!(from_guided, from_flags);
        assert_eq!(from_flags.target, Target::Lsn(dbagent::wal::Lsn(0x3000028)));
        assert_eq!(from_flags.action, Action::Pause);
        assert_eq!(from_flags.to, PathBuf::from("/srv/restored"));
        assert!(from_flags.no_archive && from_flags.port == Some(5499));
        assert_eq!(typed.start, flags.start);
    }

    #[test]
    fn guided_refusal_command_keeps_the_flags_given() {
        let args = parse("dbagent restore --guided --target name:before-upgrade --backup B1");
        let mut plain = args.clone();
        plain.guided = false;
        assert_eq!(
            command_line(Some(Path::new("/etc/d.yml")), &plain),
            "dbagent --config /etc/d.yml restore --to DIR --target name:before-upgrade --backup B1"
        );
    }
}
