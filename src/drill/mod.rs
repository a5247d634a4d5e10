//! `dbagent drill`: proves, with a measured RTO, that the newest backup really restores. It
//! restores the newest complete backup into a scratch directory through the same plan and
//! execute steps as `dbagent restore` (target latest, promote, no archiving from the copy),
//! verifies the extracted files against PostgreSQL's own `backup_manifest` with
//! `pg_verifybackup` (PostgreSQL 13 and later), starts the copy on a free loopback port,
//! follows recovery to the newest archived WAL, checks that the server answers queries, that
//! its system identifier is the repository's, that it does not archive, and that the timeline
//! history it replayed is the primary's (safety invariant 9: a drill that replayed another
//! branch, such as a copy restored elsewhere that archived into this repository, fails naming
//! it), then stops it and removes the scratch copy. While it uses the backup and the archive
//! it holds them in use ([`Repo::lock_in_use`]), so `backups expire` waits for it or fails
//! naming it. Every run, passed or failed, is recorded in the state database ([`record`]);
//! `dbagent check` reports the last one ([`last`]).
//!
//! Layer: operation. Uses: backup, config, pg, repo, restore, rpo, state, units, wal. Used by: check,
//! collect.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::backup::manifest;
use crate::config::Config;
use crate::pg::programs;
use crate::repo::Repo;
use crate::restore::plan::{self, Action, Owner, RestorePlan, Setting, Target, TimelineChoice};
use crate::restore::{self, PlanError, Request, RestoreError};
use crate::state::{StateDb, StateError};
use crate::wal::timeline::Timelines;

/// The scratch directory under `state_dir` when `--scratch` is not given.
pub const DEFAULT_SCRATCH: &str = "drill";

/// Why a drill failed. The message is the one line `dbagent drill` prints and records.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Restore(#[from] RestoreError),
    #[error("{0}")]
    Failed(String),
}

/// How to run one drill.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory the scratch copy is made in (default `state_dir/drill`).
    pub scratch: Option<PathBuf>,
    /// Keep the scratch copy (stopped) instead of removing it.
    pub keep: bool,
    /// The restore_command the copy uses (`dbagent --config ABS wal-get %f %p`).
    pub restore_command: String,
}

/// The result of one drill; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub backup_id: Option<String>,
    /// Why the drill failed (one line), absent on success.
    pub reason: Option<String>,
    /// Seconds from the start of the restore to the restored server answering queries.
    pub rto_seconds: Option<f64>,
    /// Where recovery ended.
    pub replayed_to_lsn: Option<String>,
    /// The timeline the restored copy took when it was promoted (its own, new one).
    pub timeline: Option<u32>,
    /// The timeline whose WAL recovery replayed last (the one it branched from).
    pub replayed_timeline: Option<u32>,
    /// The primary's timeline, against whose history the replay is checked.
    pub primary_timeline: Option<u32>,
    /// The primary's timeline history (`1→2`) and where its timeline was learned.
    pub primary_history: Option<String>,
    pub segments_replayed: Option<u64>,
    /// `pg_verifybackup passed`, or why it was skipped.
    pub verify: Option<String>,
    pub system_identifier: Option<String>,
    /// `SELECT count(*) FROM pg_class` on the restored server.
    pub relations: Option<i64>,
    /// `SELECT count(*) FROM pg_database` on the restored server.
    pub databases: Option<i64>,
    /// The scratch copy (removed unless kept).
    pub scratch: Option<PathBuf>,
    pub kept: bool,
    pub port: Option<u16>,
}

/// The last drill recorded in the state database.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub finished_at: jiff::Timestamp,
    pub ok: bool,
    pub backup_id: Option<String>,
    pub reason: Option<String>,
    pub rto_seconds: Option<f64>,
    pub replayed_to_lsn: Option<String>,
}

/// Runs one drill and returns its report (never an error: a failure is a report with
/// `ok: false` and the reason). The server is stopped and the scratch copy removed (unless
/// `keep`) whatever happened.
pub fn run(config: &Config, opts: &Options, progress: &mut dyn FnMut(&str)) -> Report {
    let started_at = jiff::Timestamp::now();
    let mut report = Report {
        ok: false,
        started_at,
        finished_at: started_at,
        backup_id: None,
        reason: None,
        rto_seconds: None,
        replayed_to_lsn: None,
        timeline: None,
        replayed_timeline: None,
        primary_timeline: None,
        primary_history: None,
        segments_replayed: None,
        verify: None,
        system_identifier: None,
        relations: None,
        databases: None,
        scratch: None,
        kept: opts.keep,
        port: None,
    };
    let mut stage = Stage::default();
    let result = drive(config, opts, &mut report, &mut stage, progress);
    let mut problems = Vec::new();
    if let Err(e) = result {
        problems.push(e.to_string());
    }
    if let Some(s) = &stage.started
        && plan::running_postmaster(&s.data).is_some()
    {
        progress("stopping the restored server");
        if let Err(e) = stop_server(s) {
            problems.push(e);
        }
    }
    if let Some(dir) = &stage.run_dir {
        if opts.keep {
            progress(&format!(
                "kept the scratch copy in {} (--keep); remove it when done",
                dir.display()
            ));
        } else {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => progress(&format!("removed the scratch copy {}", dir.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!(
                    "could not remove the scratch copy {}: {e}; remove it by hand",
                    dir.display()
                )),
            }
        }
    }
    report.ok = problems.is_empty();
    report.reason = (!problems.is_empty()).then(|| problems.join("; "));
    report.finished_at = jiff::Timestamp::now();
    report
}

/// What the drill has set up, for the clean-up.
#[derive(Default)]
struct Stage {
    run_dir: Option<PathBuf>,
    started: Option<Started>,
}

struct Started {
    data: PathBuf,
    pg_ctl: PathBuf,
    owner: Option<Owner>,
}

fn failed(msg: impl Into<String>) -> DrillError {
    DrillError::Failed(msg.into())
}

fn drive(
    config: &Config,
    opts: &Options,
    report: &mut Report,
    stage: &mut Stage,
    progress: &mut dyn FnMut(&str),
) -> Result<(), DrillError> {
    let t0 = Instant::now();
    let repo = config.repo().map_err(|e| failed(e.to_string()))?;
    let info = repo
        .info()
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| {
            failed(format!(
                "the repository {} has no repo.json (nothing archived or backed up yet): set archive_command and take a backup first",
                repo.location().display()
            ))
        })?;
    // Expire must not delete the backup and WAL this drill restores: hold them in use.
    let _in_use = repo
        .lock_in_use("drill", config.repository.lock_wait)
        .map_err(|e| failed(e.to_string()))?;
    let primary = primary_timeline(config, &repo, info.wal_segment_size, progress)?;
    report.primary_timeline = Some(primary.timeline);
    report.primary_history = Some(format!("{} ({})", primary.history, primary.source));
    let backups = manifest::list(&repo).map_err(|e| failed(e.to_string()))?;
    let newest = backups
        .last()
        .ok_or_else(|| PlanError::NoBackups(repo.location().to_path_buf()))?;
    report.backup_id = Some(newest.id.clone());
    progress(&format!(
        "drilling backup {} (finished {}, PostgreSQL {})",
        newest.id, newest.stop_time, newest.pg_major
    ));

    // The scratch copy: <scratch>/<time>-<pid>/{data,tablespaces/<oid>}.
    let default_parent = opts.scratch.is_none();
    let parent = opts
        .scratch
        .clone()
        .unwrap_or_else(|| config.state_dir.join(DEFAULT_SCRATCH));
    let parent = if parent.is_absolute() {
        parent
    } else {
        std::env::current_dir()
            .map_err(|e| failed(format!("cannot read the current directory: {e}")))?
            .join(parent)
    };
    create_dir(&parent, 0o700)?;
    let run_dir = parent.join(format!(
        "{}-{}",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
        std::process::id()
    ));
    create_dir(&run_dir, 0o700)?;
    stage.run_dir = Some(run_dir.clone());
    report.scratch = Some(run_dir.clone());
    let data = run_dir.join("data");
    let tablespace_map = newest
        .files
        .iter()
        .filter_map(|f| f.tablespace.as_ref())
        .map(|t| {
            (
                t.oid.to_string(),
                run_dir.join("tablespaces").join(t.oid.to_string()),
            )
        })
        .collect();
    let port = free_port()?;
    report.port = Some(port);
    let socket = run_dir.join(format!(".s.PGSQL.{port}"));
    if socket.as_os_str().len() > 100 {
        return Err(failed(format!(
            "the scratch directory {} is too deep for a PostgreSQL socket path: pass --scratch with a shorter path",
            run_dir.display()
        )));
    }
    let setting = |name: &str, value: &str| Setting {
        name: name.into(),
        value: value.into(),
    };
    let req = Request {
        to: data.clone(),
        target: Target::Latest,
        backup: Some(newest.id.clone()),
        action: Action::Promote,
        exclusive: false,
        timeline: TimelineChoice::Latest,
        force: false,
        tablespace_map,
        restore_command: opts.restore_command.clone(),
        port: Some(port),
        no_archive: true,
        in_place: false,
        notes: Vec::new(),
        extra_settings: vec![
            // Reachable on loopback and through a socket only the server's OS user can open.
            setting("listen_addresses", "127.0.0.1"),
            setting("unix_socket_directories", &run_dir.display().to_string()),
            setting("unix_socket_permissions", "0700"),
            // The log goes to the file dbagent follows; the copy waits for no standby.
            setting("logging_collector", "off"),
            setting("synchronous_standby_names", ""),
        ],
        staging: None,
        bin_dir: config.postgres.bin_dir.clone(),
    };
    let mut plan = plan::make(&repo, &req)?;
    // pg_verifybackup checks every file of a combined chain against its manifest: have the
    // files rebuilt from incrementals read back for their checksums too.
    if let Some(c) = plan.chain.as_mut() {
        c.checksum_rebuilt = true;
    }
    if !plan
        .settings
        .iter()
        .any(|s| s.name == "archive_mode" && s.value == "off")
    {
        return Err(failed(
            "the drill's restore plan does not set archive_mode = off: the copy could archive into the source repository, so it is not started",
        ));
    }
    progress(&format!(
        "plan proven: WAL {} .. {} ({} segments) all archived",
        plan.wal.first, plan.wal.last, plan.wal.segments
    ));
    if let Some(o) = &plan.owner {
        let own = |dir: &Path| {
            std::os::unix::fs::lchown(dir, Some(o.uid), Some(o.gid))
                .map_err(|e| failed(format!("cannot chown {} to {}: {e}", dir.display(), o.user)))
        };
        if default_parent {
            own(&parent)?;
            allow_search(&config.state_dir, o, progress)?;
        }
        own(&run_dir)?;
        reachable(&run_dir, o)?;
    }
    let bin_dir = config.postgres.bin_dir.as_deref();
    let major = plan.backup.pg_major;
    let pg_ctl = programs::find(bin_dir, major, "pg_ctl").map_err(|e| failed(e.to_string()))?;
    let verifier = if major >= 13 {
        Some(programs::find(bin_dir, major, "pg_verifybackup").map_err(|e| failed(e.to_string()))?)
    } else {
        None
    };

    restore::execute(&repo, &plan, progress)?;
    match &verifier {
        Some(v) => {
            verify_backup(&repo, &plan, v)?;
            report.verify = Some("pg_verifybackup passed".into());
            progress(&format!(
                "pg_verifybackup: every file of backup {} matches PostgreSQL's backup_manifest",
                plan.backup.id
            ));
        }
        None => {
            report.verify = Some(format!(
                "skipped: PostgreSQL {major} has no pg_verifybackup"
            ));
        }
    }
    allow_local_trust(&data)?;

    stage.started = Some(Started {
        data: data.clone(),
        pg_ctl: pg_ctl.clone(),
        owner: plan.owner.clone(),
    });
    let outcome = restore::start_and_follow(&plan, &pg_ctl, progress)?;
    report.replayed_to_lsn = outcome.lsn.map(|l| l.to_string());
    report.timeline = Some(outcome.timeline);
    report.segments_replayed = Some(outcome.segments_restored);
    let replayed = replayed_history(&plan, &outcome);
    report.replayed_timeline = Some(replayed.timeline);

    let user = crate::pg::PgTarget::new(&config.postgres.conninfo, config.session_options())
        .map(|t| t.info().user.clone())
        .unwrap_or_else(|_| "postgres".into());
    let answers = query_restored(&run_dir, port, &user)?;
    let rto = t0.elapsed().as_secs_f64();
    report.rto_seconds = Some(rto);
    report.relations = Some(answers.relations);
    report.databases = Some(answers.databases);
    report.system_identifier = Some(answers.system_identifier.clone());
    if answers.in_recovery {
        return Err(failed(
            "the restored server is still in recovery after recovery ended: it did not promote",
        ));
    }
    if answers.system_identifier != info.system_identifier {
        return Err(failed(format!(
            "the restored server's system identifier is {}, the repository's is {}: the backup is not of this cluster",
            answers.system_identifier, info.system_identifier
        )));
    }
    if answers.archive_mode != "off" {
        return Err(failed(format!(
            "the restored copy runs with archive_mode = {}: a drill must never archive into the source repository",
            answers.archive_mode
        )));
    }
    let timelines = Timelines::read(&repo, info.wal_segment_size).map_err(|e| {
        failed(format!(
            "cannot read the archive's timelines in {}: {e}",
            repo.location().display()
        ))
    })?;
    check_replayed_history(&timelines, &primary, &replayed)?;
    progress(&format!(
        "replayed timeline {} up to {}, on the primary's timeline history {} ({})",
        replayed.timeline,
        replayed
            .end
            .map_or_else(|| "its end".to_string(), |l| l.to_string()),
        primary.history,
        primary.source
    ));
    progress(&format!(
        "the restored server answers queries ({} relations, {} databases, system identifier {} matches the repository); RTO {}, replayed to {}",
        answers.relations,
        answers.databases,
        answers.system_identifier,
        crate::units::human_duration(rto),
        report.replayed_to_lsn.as_deref().unwrap_or("?")
    ));
    Ok(())
}

/// The primary's timeline and its history in the archive.
struct Primary {
    timeline: u32,
    /// `1→2`
    history: String,
    /// Where the timeline was learned.
    source: String,
}

/// Asks the configured server for its timeline; when it cannot be asked, takes the archive's
/// newest timeline that is not a recorded copy. Fails when that timeline's history is not in
/// the archive (the replay could not be checked against it).
fn primary_timeline(
    config: &Config,
    repo: &Repo,
    seg_size: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<Primary, DrillError> {
    let asked = ask_server_timeline(config);
    let timelines = Timelines::read(repo, seg_size).map_err(|e| {
        failed(format!(
            "cannot read the archive's timelines in {}: {e}",
            repo.location().display()
        ))
    })?;
    let (timeline, source) = match asked {
        Ok(t) => (t, "from the server".to_string()),
        Err(e) => {
            let t = timelines.newest_not_copy().unwrap_or(1);
            progress(&format!(
                "cannot ask the server for its timeline ({e}); checking the replay against timeline {t}, the archive's newest that is not a copy"
            ));
            (
                t,
                format!(
                    "the archive's newest timeline that is not a copy; the server could not be asked: {e}"
                ),
            )
        }
    };
    if timelines.path(timeline).is_none() {
        return Err(failed(format!(
            "the primary is on timeline {timeline} but {timeline:08X}.history is not in the archive ({}), so the drill cannot check that it replays the primary's history: check that archive_command archives .history files, then run the drill again",
            repo.locate_kind(crate::repo::Kind::Wal).display()
        )));
    }
    Ok(Primary {
        timeline,
        history: timelines.path_text(timeline),
        source,
    })
}

fn ask_server_timeline(config: &Config) -> Result<u32, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async {
        let target = crate::pg::PgTarget::new(&config.postgres.conninfo, config.session_options())
            .map_err(|e| e.to_string())?;
        let client = target.connect().await.map_err(|e| e.to_string())?;
        crate::rpo::ServerWal::read(&client)
            .await
            .map(|w| w.timeline)
    })
}

/// The timeline the restored copy replayed last and where it stopped replaying it.
struct Replayed {
    timeline: u32,
    end: Option<crate::wal::Lsn>,
}

/// Read from the copy's own history file (written when it was promoted: its last line is the
/// timeline it replayed and where it left it); the plan's target timeline when there is none.
fn replayed_history(plan: &RestorePlan, outcome: &restore::Outcome) -> Replayed {
    let file = plan
        .to
        .join("pg_wal")
        .join(format!("{:08X}.history", outcome.timeline));
    if let Ok(text) = std::fs::read_to_string(&file)
        && let Ok(lines) = crate::wal::timeline::parse_history(&text)
        && let Some(&(tli, end)) = lines.last()
    {
        return Replayed {
            timeline: tli,
            end: Some(end),
        };
    }
    Replayed {
        timeline: plan.timeline.target_timeline,
        end: outcome.lsn,
    }
}

/// Safety invariant 9: the replayed timeline must be on the primary's history, and replayed
/// no further than the primary's history followed it.
fn check_replayed_history(
    timelines: &Timelines,
    primary: &Primary,
    replayed: &Replayed,
) -> Result<(), DrillError> {
    let path = timelines.path(primary.timeline).unwrap_or_default();
    let foreign = |why: String| {
        failed(format!(
            "the drill replayed timeline {}, {}, {why} {} ({}): a restore to `latest` would bring back that branch's data instead of the primary's; `dbagent restore --timeline {}` restores the primary's history",
            replayed.timeline,
            timelines.describe(replayed.timeline),
            primary.history,
            primary.source,
            primary.timeline
        ))
    };
    let Some(step) = path.iter().find(|s| s.timeline == replayed.timeline) else {
        return Err(foreign(
            "which is not on the primary's timeline history".into(),
        ));
    };
    if let (Some(left), Some(end)) = (step.end, replayed.end)
        && end > left
    {
        return Err(foreign(format!(
            "up to {end}, past {left} where the primary's history leaves it; the primary's timeline history is"
        )));
    }
    Ok(())
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), DrillError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| {
            failed(format!(
                "cannot create the scratch directory {}: {e}",
                dir.display()
            ))
        })
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, DrillError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed(format!("cannot find a free loopback port: {e}")))
}

/// Whether the server's OS user can search `dir` (no supplementary groups: the server is
/// started without them).
fn searchable(meta: &std::fs::Metadata, o: &Owner) -> bool {
    let mode = meta.permissions().mode();
    if o.uid == 0 {
        true
    } else if meta.uid() == o.uid {
        mode & 0o100 != 0
    } else if meta.gid() == o.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// The default scratch lives under state_dir, which dbagent creates private (0700): let the
/// server's OS user pass through it (search only, not list), and say so.
fn allow_search(
    state_dir: &Path,
    o: &Owner,
    progress: &mut dyn FnMut(&str),
) -> Result<(), DrillError> {
    let meta = std::fs::metadata(state_dir)
        .map_err(|e| failed(format!("cannot inspect {}: {e}", state_dir.display())))?;
    if searchable(&meta, o) {
        return Ok(());
    }
    let mode = meta.permissions().mode() | 0o001;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| failed(format!("cannot chmod o+x {}: {e}", state_dir.display())))?;
    progress(&format!(
        "allowed {} to pass through {} (chmod o+x, no listing) to reach the scratch copy",
        o.user,
        state_dir.display()
    ));
    Ok(())
}

/// Every ancestor of `dir` must be searchable by the server's OS user.
fn reachable(dir: &Path, o: &Owner) -> Result<(), DrillError> {
    for a in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(a) else {
            continue;
        };
        if !searchable(&meta, o) {
            return Err(failed(format!(
                "the PostgreSQL OS user {} cannot enter {} (mode {:o}, owner uid {}), so the restored server could not reach its data directory {}: pass --scratch DIR on a path it can reach, or chmod o+x {}",
                o.user,
                a.display(),
                meta.permissions().mode() & 0o7777,
                meta.uid(),
                dir.display(),
                a.display()
            )));
        }
    }
    Ok(())
}

/// Runs `pg_verifybackup` on the extracted data directory against the backup's
/// `backup_manifest` in the repository (copied beside the scratch data directory, as the
/// repository need not be a local directory). WAL is not parsed here: replay checks it.
fn verify_backup(repo: &Repo, plan: &RestorePlan, verifier: &Path) -> Result<(), DrillError> {
    let key = manifest::backup_key(&plan.backup.id, "backup_manifest");
    let bytes = if plan.chain.is_some() {
        // A combined chain is checked against the manifest written with it (restore::chain).
        let combined = plan.to.join("backup_manifest");
        std::fs::read(&combined)
            .map_err(|e| failed(format!("cannot read {}: {e}", combined.display())))?
    } else {
        repo.storage()
            .read(&key)
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| {
                failed(format!(
                    "backup {} has no backup_manifest ({} does not exist)",
                    plan.backup.id,
                    repo.locate(&key).display()
                ))
            })?
    };
    let manifest_path = plan.to.parent().unwrap_or(&plan.to).join("backup_manifest");
    std::fs::write(&manifest_path, bytes)
        .map_err(|e| failed(format!("cannot write {}: {e}", manifest_path.display())))?;
    // Tar-format backups carry tablespaces as tablespace_map (rewritten to the scratch
    // locations, so ignored) and get their pg_tblspc links at start-up; make the links now so
    // the tablespaces' files are verified too (the server replaces them when it starts).
    for t in &plan.tablespaces {
        let link = plan.to.join("pg_tblspc").join(t.oid.to_string());
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(&t.location, &link)
                .map_err(|e| failed(format!("cannot link {}: {e}", link.display())))?;
            if let Some(o) = &plan.owner {
                let _ = std::os::unix::fs::lchown(&link, Some(o.uid), Some(o.gid));
            }
        }
    }
    let mut cmd = Command::new(verifier);
    cmd.arg("--no-parse-wal")
        .arg("--manifest-path")
        .arg(&manifest_path);
    if !plan.tablespaces.is_empty() {
        cmd.arg("--ignore").arg("tablespace_map");
    }
    // The marker `dbagent restore` leaves is not part of the backup.
    cmd.arg("--ignore")
        .arg(crate::wal::timeline::RESTORE_MARKER);
    cmd.arg(&plan.to)
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", verifier.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = lines
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(" | ");
    Err(failed(format!(
        "pg_verifybackup found backup {} damaged ({} problem line(s)): {shown}",
        plan.backup.id,
        lines.len()
    )))
}

/// Lets the drill connect through the copy's private socket without a password: a line in
/// front of the copy's pg_hba.conf (the socket directory is the server user's, mode 0700).
fn allow_local_trust(data: &Path) -> Result<(), DrillError> {
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap_or_default();
    std::fs::write(
        &hba,
        format!("# added by dbagent drill: the scratch copy's private socket\nlocal all all trust\n{text}"),
    )
    .map_err(|e| failed(format!("cannot write {}: {e}", hba.display())))
}

struct Answers {
    relations: i64,
    databases: i64,
    system_identifier: String,
    in_recovery: bool,
    archive_mode: String,
}

/// Connects to the restored server through its socket and asks what the drill verifies.
fn query_restored(socket_dir: &Path, port: u16, user: &str) -> Result<Answers, DrillError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(socket_dir)
            .port(port)
            .user(user)
            .dbname("postgres")
            .application_name("dbagent drill")
            .connect_timeout(Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    break client;
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(failed(format!(
                        "the restored server does not accept connections on port {port}: {}",
                        crate::pg::error_detail(&e)
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let q = |e: tokio_postgres::Error| {
            failed(format!(
                "the restored server does not answer queries: {}",
                crate::pg::error_detail(&e)
            ))
        };
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_database), \
                 (SELECT system_identifier::text FROM pg_control_system()), pg_is_in_recovery(), \
                 current_setting('archive_mode')",
                &[],
            )
            .await
            .map_err(q)?;
        Ok(Answers {
            relations: row.get(0),
            databases: row.get(1),
            system_identifier: row.get(2),
            in_recovery: row.get(3),
            archive_mode: row.get(4),
        })
    })
}

fn stop_server(s: &Started) -> Result<(), String> {
    let mut cmd = Command::new(&s.pg_ctl);
    cmd.arg("-D")
        .arg(&s.data)
        .args(["-m", "fast", "-w", "-t", "60", "stop"])
        .current_dir(&s.data)
        .stdin(Stdio::null());
    if let Some(o) = &s.owner {
        use std::os::unix::process::CommandExt;
        cmd.uid(o.uid).gid(o.gid);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "could not stop the restored server in {}: {}",
            s.data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", s.pg_ctl.display())),
    }
}

/// Records `report` in the state database of `state_dir`.
pub fn record(state_dir: &Path, report: &Report) -> Result<(), StateError> {
    let db = StateDb::open(state_dir)?;
    db.conn()
        .execute(
            "INSERT INTO drills (started_ms, finished_ms, backup_id, result, reason, rto_seconds, replayed_to_lsn, verify)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                report.started_at.as_millisecond(),
                report.finished_at.as_millisecond(),
                report.backup_id,
                if report.ok { "ok" } else { "failed" },
                report.reason,
                report.rto_seconds,
                report.replayed_to_lsn,
                report.verify,
            ],
        )
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// The last recorded drill; `None` when there is no state database or no drill yet.
pub fn last(state_dir: &Path) -> Result<Option<LastDrill>, StateError> {
    let Some(db) = StateDb::open_existing(state_dir)? else {
        return Ok(None);
    };
    if !db.has_table("drills")? {
        return Ok(None);
    }
    db.conn()
        .query_row(
            "SELECT finished_ms, result, backup_id, reason, rto_seconds, replayed_to_lsn
             FROM drills ORDER BY finished_ms DESC, id DESC LIMIT 1",
            [],
            |r| {
                let ms: i64 = r.get(0)?;
                let result: String = r.get(1)?;
                Ok(LastDrill {
                    finished_at: jiff::Timestamp::from_millisecond(ms)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    ok: result == "ok",
                    backup_id: r.get(2)?,
                    reason: r.get(3)?,
                    rto_seconds: r.get(4)?,
                    replayed_to_lsn: r.get(5)?,
                })
            },
        )
        .optional()
        .map_err(|e| db.err(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Lsn;
    use crate::wal::timeline::ArchivedTimeline;

    fn timelines() -> Timelines {
        let mut t = Timelines {
            seg_size: 16 << 20,
            ..Timelines::default()
        };
        let mut add = |tli: u32, history: Vec<(u32, Lsn)>| {
            t.timelines.insert(
                tli,
                ArchivedTimeline {
                    tli,
                    history: Some(history),
                    ..ArchivedTimeline::default()
                },
            );
        };
        // 1 → 2 at 0/5000000 (the primary's failover); 3 branched from 1 at 0/4000000 (a copy).
        add(1, vec![]);
        add(2, vec![(1, Lsn(0x5000000))]);
        add(3, vec![(1, Lsn(0x4000000))]);
        t
    }

    fn primary(tli: u32) -> Primary {
        Primary {
            timeline: tli,
            history: timelines().path_text(tli),
            source: "from the server".into(),
        }
    }

    #[test]
    fn a_replay_off_the_primarys_history_fails_naming_the_branch() {
        let t = timelines();
        let replayed = |timeline, end: u64| Replayed {
            timeline,
            end: Some(Lsn(end)),
        };
        // On the primary's history: timeline 2 to its end, timeline 1 up to the switch.
        assert!(check_replayed_history(&t, &primary(2), &replayed(2, 0x9000000)).is_ok());
        assert!(check_replayed_history(&t, &primary(2), &replayed(1, 0x4800000)).is_ok());
        // Timeline 1 past where the primary left it is the old primary's WAL after failover.
        let e = check_replayed_history(&t, &primary(2), &replayed(1, 0x6000000)).unwrap_err();
        assert!(
            e.to_string()
                .contains("past 0/5000000 where the primary's history leaves it"),
            "{e}"
        );
        // Another branch.
        let e = check_replayed_history(&t, &primary(2), &replayed(3, 0x7000000)).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("replayed timeline 3")
                && e.contains("not on the primary's timeline history 1→2 (from the server)")
                && e.contains("--timeline 2"),
            "{e}"
        );
    }

    fn report(ok: bool, finished: jiff::Timestamp) -> Report {
        Report {
            ok,
            started_at: finished,
            finished_at: finished,
            backup_id: Some("20261121T100000Z".into()),
            reason: (!ok).then(|| "checksum mismatch".into()),
            rto_seconds: ok.then_some(12.5),
            replayed_to_lsn: Some("0/5000060".into()),
            timeline: Some(2),
            replayed_timeline: Some(1),
            primary_timeline: Some(1),
            primary_history: Some("1 (from the server)".into()),
            segments_replayed: Some(3),
            verify: Some("pg_verifybackup passed".into()),
            system_identifier: None,
            relations: None,
            databases: None,
            scratch: None,
            kept: false,
            port: None,
        }
    }

    #[test]
    fn drill_results_are_recorded_and_the_last_one_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(last(&state).unwrap().is_none(), "no state: no drill");
        let t = jiff::Timestamp::now();
        record(
            &state,
            &report(true, t - jiff::SignedDuration::from_hours(1)),
        )
        .unwrap();
        let l = last(&state).unwrap().unwrap();
        assert!(l.ok);
        assert_eq!(l.rto_seconds, Some(12.5));
        record(&state, &report(false, t)).unwrap();
        let l = last(&state).unwrap().unwrap();
        assert!(!l.ok);
        assert_eq!(l.reason.as_deref(), Some("checksum mismatch"));
    }
}
