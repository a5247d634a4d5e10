//! The restore plan: everything `dbagent restore` will do, computed and proven before anything
//! is written. It parses the target, chooses the backup (and says why in one line), follows
//! the timeline history from the backup's timeline to the target timeline, and proves that
//! every WAL segment from the backup's start to the target is in the archive, naming the
//! first one that is not. It also checks that the destination is not used by a running server
//! and is empty (unless `--force`). The plan only reads; [`super::execute`] acts on it, so
//! `--dry-run`, `drill` and the guided restore share this one code path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use super::target::{Target, TimelineChoice};

use super::points;
use crate::backup::manifest::{self, BackupManifest};
use crate::backup::verify::WalRange;
use crate::repo::{Compression, Kind, Repo, RepoError};
use crate::wal::timeline::{Timelines, timeline_of};
use crate::wal::{Lsn, name::segment_name};

/// Why a restore cannot be planned. Every message names the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid --target `{given}`: {why}")]
    BadTarget { given: String, why: String },
    #[error(
        "the time `{0}` has no UTC offset or zone and the server's time zone is unknown: add an offset (e.g. `+01:00` or `Z`) or a zone (`[Europe/Paris]`), or pass --timezone"
    )]
    TimeWithoutZone(String),
    #[error("{0}")]
    Usage(String),
    #[error("the repository {0} has no complete backup: take one with `dbagent backup`")]
    NoBackups(PathBuf),
    #[error(
        "backup {id} is not in the repository (or incomplete); `dbagent backups list` shows the complete ones"
    )]
    UnknownBackup { id: String },
    #[error(
        "no backup can reach {target}: the oldest backup ({id}) ended at {ended}, after it; {latest}"
    )]
    NoBackupBefore {
        target: String,
        id: String,
        ended: String,
        latest: String,
    },
    #[error(
        "restore point `{name}` is not recorded in the repository ({known}); {hint}`dbagent restore-point --list` shows them. A restore point created with pg_create_restore_point outside dbagent cannot be placed on a timeline: target its LSN with --target lsn:LSN"
    )]
    UnknownPoint {
        name: String,
        known: String,
        hint: String,
    },
    #[error("cannot restore to {what}: {why}; {latest}. Nothing was written")]
    Unreachable {
        what: String,
        why: String,
        latest: String,
    },
    #[error(
        "the archive alone cannot tell which history holds {what}: candidates are {candidates}. Nothing was written; choose one with {options}"
    )]
    AmbiguousTimeline {
        what: String,
        candidates: String,
        options: String,
    },
    #[error(
        "backup {id} ended at {ended}, after the target {target}: choose an older backup (`dbagent backups list`) or a later target"
    )]
    BackupAfterTarget {
        id: String,
        ended: String,
        target: String,
    },
    #[error(
        "WAL segment {segment} is missing from the archive {archive}: the restore needs every segment from {first} to {last} ({missing} of {count} missing). Nothing was written. Find the segment (another repository, the server's pg_wal) and `dbagent wal-push` it, or choose a target before it"
    )]
    MissingWal {
        segment: String,
        archive: PathBuf,
        first: String,
        last: String,
        missing: u64,
        count: u64,
    },
    #[error(
        "timeline history file {file} is missing from the archive {archive}: recovery to timeline {tli} needs it; push it with `dbagent wal-push` from the server's pg_wal, or pass --timeline current"
    )]
    MissingHistory {
        file: String,
        archive: PathBuf,
        tli: u32,
    },
    #[error("{file} in the archive is damaged: {detail}")]
    BadHistory { file: String, detail: String },
    #[error(
        "backup {id} is on timeline {backup_tli}, which is not an ancestor of timeline {target_tli} at the backup's position: {why}; pass --timeline {backup_tli} (or current) or choose another backup"
    )]
    NotAnAncestor {
        id: String,
        backup_tli: u32,
        target_tli: u32,
        why: String,
    },
    #[error(
        "{dir} is the data directory of a running PostgreSQL server (postmaster.pid names live process {pid}); dbagent never restores into a running server's directory: stop that server or choose another --to"
    )]
    InUse { dir: PathBuf, pid: i32 },
    #[error(
        "{dir} is not empty ({entries} entries); restore into an empty or new directory, or pass --force to replace its contents"
    )]
    NotEmpty { dir: PathBuf, entries: usize },
    #[error(
        "tablespace {name} (OID {oid}) would be restored to {dir}, which is not empty: map it elsewhere with --tablespace-map {oid}=DIR (or {name}=DIR), or empty it (--force does not apply to tablespaces)"
    )]
    TablespaceNotEmpty {
        oid: u32,
        name: String,
        dir: PathBuf,
    },
    #[error(
        "--tablespace-map {key}=...: backup {id} has no tablespace with that OID or name (it has: {have})"
    )]
    UnknownTablespace {
        key: String,
        id: String,
        have: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Repo(#[from] RepoError),
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> PlanError + 'a {
    move |source| PlanError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

impl Target {
    /// Parses `latest`, `immediate`, `time:TS`, `lsn:LSN`, `xid:XID` or `name:NAME`. A time
    /// without an offset or zone is read in `zone` when given, else refused (never guessed).
    pub fn parse(s: &str, zone: Option<&jiff::tz::TimeZone>) -> Result<Target, PlanError> {
        let bad = |why: &str| PlanError::BadTarget {
            given: s.to_string(),
            why: why.to_string(),
        };
        match s {
            "latest" => return Ok(Target::Latest),
            "immediate" => return Ok(Target::Immediate),
            _ => {}
        }
        let Some((kind, value)) = s.split_once(':') else {
            return Err(bad(
                "expected latest, immediate, time:TS, lsn:LSN, xid:XID or name:NAME",
            ));
        };
        let value = value.trim();
        match kind {
            "time" => parse_time(value, zone).map(Target::Time),
            "lsn" => Lsn::parse(value)
                .map(Target::Lsn)
                .ok_or_else(|| bad("an LSN looks like 0/3000028")),
            "xid" => value
                .parse::<u64>()
                .ok()
                .filter(|x| *x >= 3)
                .map(Target::Xid)
                .ok_or_else(|| bad("a transaction ID is a number (txid_current()), at least 3")),
            "name" => {
                if points::valid_name(value) {
                    Ok(Target::Name(value.to_string()))
                } else {
                    Err(bad(
                        "a restore point name is 1 to 63 letters, digits, `-`, `_` or `.`",
                    ))
                }
            }
            _ => Err(bad(
                "expected latest, immediate, time:TS, lsn:LSN, xid:XID or name:NAME",
            )),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Target::Latest => "latest",
            Target::Immediate => "immediate",
            Target::Time(_) => "time",
            Target::Lsn(_) => "lsn",
            Target::Xid(_) => "xid",
            Target::Name(_) => "name",
        }
    }

    /// The value as written in the recovery settings (time in UTC).
    pub fn value(&self) -> Option<String> {
        match self {
            Target::Latest | Target::Immediate => None,
            Target::Time(t) => Some(pg_time(*t)),
            Target::Lsn(l) => Some(l.to_string()),
            Target::Xid(x) => Some(x.to_string()),
            Target::Name(n) => Some(n.clone()),
        }
    }

    /// `time 2026-11-21 09:15:00+00`, `the newest archived WAL`, ...
    pub fn describe(&self) -> String {
        match self {
            Target::Latest => "the newest archived WAL".into(),
            Target::Immediate => "the end of the backup (consistency)".into(),
            other => format!("{} {}", other.kind(), other.value().unwrap_or_default()),
        }
    }
}

/// A timestamp as PostgreSQL reads it for recovery_target_time, in UTC with microseconds.
pub fn pg_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// `2026-11-21 10:15:00+01`, RFC 3339 (`2026-11-21T10:15:00Z`), or with a zone
/// (`2026-11-21T10:15:00[Europe/Paris]`); a bare civil time only with `zone`.
pub fn parse_time(
    value: &str,
    zone: Option<&jiff::tz::TimeZone>,
) -> Result<jiff::Timestamp, PlanError> {
    let value = value.trim();
    if value.contains('[')
        && let Ok(z) = value.parse::<jiff::Zoned>()
    {
        return Ok(z.timestamp());
    }
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    // PostgreSQL's own output has a two-digit offset (`+01`), which jiff also reads; try the
    // common `UTC` suffix too.
    if let Some(rest) = value
        .strip_suffix(" UTC")
        .or_else(|| value.strip_suffix(" GMT"))
        && let Ok(dt) = rest.parse::<jiff::civil::DateTime>()
        && let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(z.timestamp());
    }
    match value.parse::<jiff::civil::DateTime>() {
        Ok(dt) => {
            match zone {
                Some(tz) => dt.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| {
                    PlanError::BadTarget {
                        given: format!("time:{value}"),
                        why: e.to_string(),
                    }
                }),
                None => Err(PlanError::TimeWithoutZone(value.to_string())),
            }
        }
        Err(e) => Err(PlanError::BadTarget {
            given: format!("time:{value}"),
            why: format!(
                "not a time ({e}); write e.g. `2026-11-21 10:15:00+01` or `2026-11-21T09:15:00Z`"
            ),
        }),
    }
}

/// Whether `time` (a target) needs a zone to be read: no offset, no zone.
pub fn time_needs_zone(target: &str) -> bool {
    matches!(
        target.strip_prefix("time:").map(|v| parse_time(v, None)),
        Some(Err(PlanError::TimeWithoutZone(_)))
    )
}

/// recovery_target_action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Promote,
    Pause,
    Shutdown,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Pause => "pause",
            Action::Shutdown => "shutdown",
        }
    }
}

/// What the caller asks for: the validated options of `dbagent restore` (or of a drill).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The data directory to restore into (absolute).
    pub to: PathBuf,
    pub target: Target,
    pub backup: Option<String>,
    pub action: Action,
    pub exclusive: bool,
    pub timeline: TimelineChoice,
    pub force: bool,
    /// `OID or NAME` → directory.
    pub tablespace_map: Vec<(String, PathBuf)>,
    /// The restore_command to write (calls `dbagent --config ABS wal-get %f %p`).
    pub restore_command: String,
    /// `port = N` in postgresql.auto.conf.
    pub port: Option<u16>,
    /// `archive_mode = off` in postgresql.auto.conf.
    pub no_archive: bool,
    /// The destination is the cluster's own data directory (`postgres.pgdata`): the restored
    /// server is the cluster's new primary, not a copy.
    pub in_place: bool,
    /// Notes from the caller to show with the plan (e.g. where a time zone came from).
    pub notes: Vec<String>,
    /// Further settings for postgresql.auto.conf, written after the recovery settings (a
    /// drill's loopback-only listener, for example).
    pub extra_settings: Vec<Setting>,
    /// Where an incremental backup's chain is extracted (`--staging`; default `<to>.staging`).
    pub staging: Option<PathBuf>,
    /// postgres.bin_dir. Planning needs no PostgreSQL program (a chain is combined by dbagent
    /// itself); kept for callers that start the restored server.
    pub bin_dir: Option<PathBuf>,
}

/// The backup the plan restores.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub id: String,
    pub label: Option<String>,
    pub start_time: jiff::Timestamp,
    pub stop_time: jiff::Timestamp,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub timeline: u32,
    pub pg_major: u32,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub compression: Compression,
}

/// One timeline on the way from the backup to the target: WAL in `[begin, end)` is read from
/// this timeline (`end` none for the target timeline).
pub use crate::wal::timeline::Step as TimelineStep;

#[derive(Debug, Clone, Serialize)]
pub struct TimelinePlan {
    /// recovery_target_timeline as written: latest, current or a number.
    pub requested: String,
    pub target_timeline: u32,
    pub path: Vec<TimelineStep>,
    /// The history files recovery reads (`00000002.history`), all present in the archive.
    pub history_files: Vec<String>,
    /// Why this timeline: the history that held the target.
    pub why: String,
    /// Timelines of the archive that were left out and why (test copies, other branches).
    pub left_out: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalPlan {
    pub first: String,
    pub last: String,
    pub segments: u64,
    /// Uncompressed bytes to replay (segments × segment size).
    pub bytes: u64,
    pub stored_bytes: u64,
    /// Why the range ends where it does.
    pub end: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablespacePlan {
    pub oid: u32,
    pub name: String,
    pub original_location: String,
    pub location: PathBuf,
    pub file: String,
}

/// One recovery setting written to postgresql.auto.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
}

/// The OS account that owns the restored files (when dbagent runs as root).
#[derive(Debug, Clone, Serialize)]
pub struct Owner {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Everything a restore will do. `--dry-run --json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub to: PathBuf,
    pub target: PlanTarget,
    pub backup: BackupSummary,
    /// One line: why this backup.
    pub backup_choice: String,
    /// For an incremental backup: its chain (the full streamed into the target, the incrementals applied in place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<super::chain::ChainPlan>,
    pub action: Option<Action>,
    pub inclusive: bool,
    pub timeline: TimelinePlan,
    pub wal: WalPlan,
    pub tablespaces: Vec<TablespacePlan>,
    /// `--force` on a non-empty directory: its current contents are removed first.
    pub replaces_existing: bool,
    /// Whether the restored server archives into the source repository (`archive_mode` is
    /// left as the backup had it); otherwise `archive_mode = off` is written.
    pub archive: bool,
    /// Restored into the cluster's own data directory (its timelines are the cluster's).
    pub in_place: bool,
    pub settings: Vec<Setting>,
    pub owner: Option<Owner>,
    /// A rough estimate: extraction at ~200 MiB/s plus replay at ~100 MiB/s plus start-up.
    pub estimated_seconds: u64,
    pub notes: Vec<String>,
    /// `--delta`: what the restore rewrites, removes and keeps of the existing directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<super::delta::compare::DeltaPlan>,
    /// The manifest of the chosen backup (for execute; not printed).
    #[serde(skip)]
    pub manifest: BackupManifest,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanTarget {
    pub kind: &'static str,
    pub value: Option<String>,
    pub description: String,
    /// For `name:` targets: the recorded restore point, when dbagent created it.
    pub restore_point: Option<points::RestorePoint>,
}

pub fn inspect_dir(dir: &Path) -> Result<DirFacts, PlanError> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let entries = std::fs::read_dir(dir).map_err(io_err(dir, "list"))?.count();
            Ok(DirFacts {
                entries,
                uid: Some(m.uid()),
                gid: Some(m.gid()),
            })
        }
        Ok(_) => Err(PlanError::Io {
            path: dir.to_path_buf(),
            action: "restore into",
            source: std::io::Error::other("it exists and is not a directory"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DirFacts {
            entries: 0,
            uid: None,
            gid: None,
        }),
        Err(e) => Err(io_err(dir, "inspect")(e)),
    }
}

/// Whether `dir` may be restored into: not a running server's directory, and empty (or
/// missing) unless `force`. The same test [`make`] applies first; the guided restore uses it
/// to re-ask for a destination.
pub fn check_destination(dir: &Path, force: bool) -> Result<(), PlanError> {
    if let Some(pid) = running_postmaster(dir) {
        return Err(PlanError::InUse {
            dir: dir.to_path_buf(),
            pid,
        });
    }
    let state = inspect_dir(dir)?;
    if state.entries > 0 && !force {
        return Err(PlanError::NotEmpty {
            dir: dir.to_path_buf(),
            entries: state.entries,
        });
    }
    Ok(())
}

/// The PID in `dir/postmaster.pid` when it names a live PostgreSQL process.
pub fn running_postmaster(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return None,
    }
    // A stale file whose PID now belongs to another program is not a running server; when
    // /proc cannot tell, assume it is one (refusing is the safe side).
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => {
            let comm = comm.trim();
            (comm == "postgres" || comm == "postmaster").then_some(pid)
        }
        Err(_) => Some(pid),
    }
}

pub use crate::wal::timeline::parse_history;

/// Whether a backup ends early enough for the target.
type BackupFilter = Box<dyn Fn(&BackupManifest) -> bool>;

/// Chooses the backup for `target`, with the one-line reason. Backups on a test copy's
/// timeline (or any timeline that `eligible` rejects) are never chosen without `--backup`.
fn choose_backup(
    facts: &Facts,
    req: &Request,
    eligible: &dyn Fn(&BackupManifest) -> bool,
) -> Result<(BackupManifest, String), PlanError> {
    let backups = &facts.backups;
    let point = facts.point.as_ref();
    let newest_ok = backups
        .iter()
        .rev()
        .find(|m| eligible(m))
        .or(backups.last())
        .ok_or_else(|| PlanError::NoBackups(facts.repo_root.clone()))?;
    // The position the backup must end before, when it is known in advance.
    let limit: Option<(String, BackupFilter)> = match &req.target {
        Target::Time(t) => {
            let t = *t;
            Some((
                format!("target time {}", pg_time(t)),
                Box::new(move |m: &BackupManifest| m.stop_time <= t),
            ))
        }
        Target::Lsn(l) => {
            let l = *l;
            Some((
                format!("target LSN {l}"),
                Box::new(move |m: &BackupManifest| m.stop_lsn <= l),
            ))
        }
        Target::Name(n) => point.map(|p| {
            let l = p.lsn;
            (
                format!("restore point {n} (LSN {l}, {})", p.time),
                Box::new(move |m: &BackupManifest| m.stop_lsn <= l) as BackupFilter,
            )
        }),
        _ => None,
    };
    if let Some(id) = &req.backup {
        let m = backups
            .iter()
            .find(|m| &m.id == id)
            .cloned()
            .ok_or_else(|| PlanError::UnknownBackup { id: id.clone() })?;
        if let Some((what, ok)) = &limit
            && !ok(&m)
        {
            return Err(PlanError::BackupAfterTarget {
                id: m.id.clone(),
                ended: format!("{} (LSN {})", m.stop_time, m.stop_lsn),
                target: what.clone(),
            });
        }
        return Ok((m, format!("backup {id} was chosen with --backup")));
    }
    match (&req.target, limit) {
        (_, Some((what, ok))) => {
            let m = backups
                .iter()
                .rev()
                .find(|m| ok(m) && eligible(m))
                .cloned()
                .ok_or_else(|| PlanError::NoBackupBefore {
                    target: what.clone(),
                    id: backups[0].id.clone(),
                    ended: format!("{} (LSN {})", backups[0].stop_time, backups[0].stop_lsn),
                    latest: facts.latest_restorable(),
                })?;
            let why = format!(
                "the newest complete backup that ended before the {what}: it ended at {} (LSN {})",
                m.stop_time, m.stop_lsn
            );
            Ok((m, why))
        }
        (Target::Xid(_), None) => Ok((
            newest_ok.clone(),
            "the newest complete backup: where transaction IDs fall cannot be known in advance; if the transaction committed before this backup ended, pass an older --backup".into(),
        )),
        _ => Ok((newest_ok.clone(), "the newest complete backup".into())),
    }
}

/// Everything the plan depends on, read from the repository and the destination in one step
/// ([`gather`]); [`decide`] computes the plan from it alone.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: jiff::Timestamp,
    /// Where the repository, its WAL archive and each backup's manifest are, for messages.
    pub repo_root: PathBuf,
    pub wal_dir: PathBuf,
    pub manifest_paths: BTreeMap<String, PathBuf>,
    /// The live PostgreSQL process using the destination, if any.
    pub running_pid: Option<i32>,
    pub dir: DirFacts,
    /// Complete backups, oldest first.
    pub backups: Vec<BackupManifest>,
    /// For `name:` targets: the recorded restore point of that name.
    pub point: Option<points::RestorePoint>,
    /// Every recorded restore point name (for "did you mean").
    pub point_names: Vec<String>,
    pub timelines: Timelines,
    /// State of every tablespace location the plan may restore to.
    pub tablespace_dirs: Vec<(PathBuf, DirFacts)>,
    /// When running as root: the owner of the destination (name) and the `postgres` user.
    pub root: bool,
    pub dir_owner_name: Option<String>,
    pub postgres_user: Option<Owner>,
    /// The staging area an incremental backup's restore would use.
    pub staging: super::chain::StagingFacts,
}

/// The state of a directory the restore would write to.
#[derive(Debug, Clone, Default)]
pub struct DirFacts {
    pub entries: usize,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Facts {
    /// "the earliest point is the end of backup X (time); the latest is ..." for refusals.
    fn latest_restorable(&self) -> String {
        let earliest = self.backups.first().map_or_else(
            || "no backup".to_string(),
            |m| format!("{} (end of backup {})", m.stop_time, m.id),
        );
        let latest = self
            .timelines
            .timelines
            .values()
            .filter_map(|t| t.last_archived())
            .max()
            .map_or_else(
                || "the end of the newest backup".to_string(),
                |t| format!("about {t} (the newest archived WAL)"),
            );
        format!(
            "the earliest point that can be restored to now is {earliest}, the latest {latest} (`dbagent info` shows the exact window)"
        )
    }
}

/// Reads the repository and the destination into [`Facts`]. Writes nothing.
pub fn gather(repo: &Repo, req: &Request) -> Result<Facts, PlanError> {
    let backups = manifest::list(repo)?;
    let all_points = points::list(repo)?;
    let point = match &req.target {
        Target::Name(n) => all_points.iter().find(|p| &p.name == n).cloned(),
        _ => None,
    };
    let seg_size = match repo.info()? {
        Some(info) => info.wal_segment_size,
        None => 16 << 20,
    };
    let wal_dir = repo.locate_kind(Kind::Wal);
    let timelines = Timelines::read(repo, seg_size)
        .map_err(io_err(&wal_dir, "read the timelines of the WAL archive"))?;
    let manifest_paths = backups
        .iter()
        .map(|m| {
            let key = manifest::backup_key(&m.id, manifest::MANIFEST_FILE);
            (m.id.clone(), repo.locate(&key))
        })
        .collect();
    let dir = inspect_dir(&req.to)?;
    let mut locations: Vec<PathBuf> = req.tablespace_map.iter().map(|(_, d)| d.clone()).collect();
    for m in &backups {
        for f in &m.files {
            if let Some(t) = &f.tablespace {
                locations.push(PathBuf::from(&t.location));
            }
        }
    }
    locations.sort();
    locations.dedup();
    let mut tablespace_dirs = Vec::new();
    for l in locations {
        if l.is_absolute() {
            let state = inspect_dir(&l)?;
            tablespace_dirs.push((l, state));
        }
    }
    let root = nix::unistd::geteuid().is_root();
    let dir_owner_name = dir.uid.filter(|_| root).and_then(|uid| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    });
    let postgres_user = if root {
        nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .map(|pg| Owner {
                user: pg.name,
                uid: pg.uid.as_raw(),
                gid: pg.gid.as_raw(),
            })
    } else {
        None
    };
    Ok(Facts {
        now: jiff::Timestamp::now(),
        repo_root: repo.location().to_path_buf(),
        wal_dir,
        manifest_paths,
        running_pid: running_postmaster(&req.to),
        dir,
        backups,
        point,
        point_names: all_points.into_iter().map(|p| p.name).collect(),
        timelines,
        tablespace_dirs,
        root,
        dir_owner_name,
        postgres_user,
        staging: super::chain::gather(&req.to, req.staging.as_deref()).map_err(PlanError::Usage)?,
    })
}

/// Checks the combination of options, before anything is read.
fn check_usage(req: &Request) -> Result<(), PlanError> {
    let has_target = !matches!(req.target, Target::Latest);
    if !has_target && req.action != Action::Promote {
        return Err(PlanError::Usage(
            "--action applies only with a recovery target: recovery to `latest` always ends by promoting when the archive ends".into(),
        ));
    }
    if req.exclusive
        && !matches!(
            req.target,
            Target::Time(_) | Target::Lsn(_) | Target::Xid(_)
        )
    {
        return Err(PlanError::Usage(
            "--exclusive applies to time:, lsn: and xid: targets only".into(),
        ));
    }
    if !req.to.is_absolute() {
        return Err(PlanError::Usage(format!(
            "--to {} must be an absolute path",
            req.to.display()
        )));
    }
    Ok(())
}

/// Computes and proves the plan. Reads the repository and the destination; writes nothing.
pub fn make(repo: &Repo, req: &Request) -> Result<RestorePlan, PlanError> {
    check_usage(req)?;
    let facts = gather(repo, req)?;
    let plan = decide(req, &facts)?;
    if let Target::Time(t) = req.target {
        prove_time(repo, &facts, &plan, t)?;
    }
    Ok(plan)
}

/// A time target is reached only if the WAL the plan replays holds a transaction committed
/// after it (PostgreSQL stops there; without one, recovery ends before the target and the
/// server refuses to start): refused otherwise, saying the latest time that is reached. Reads
/// the newest archived segments of the plan's range (see [`super::window`]).
pub fn prove_time(
    repo: &Repo,
    facts: &Facts,
    plan: &RestorePlan,
    t: jiff::Timestamp,
) -> Result<(), PlanError> {
    let tl = &facts.timelines;
    let seg = tl.seg_size;
    let segno = |name: &str| crate::wal::name::WalName::parse(name).map(|w| w.segno(seg));
    let (Some(first), Some(last)) = (segno(&plan.wal.first), segno(&plan.wal.last)) else {
        return Ok(());
    };
    let commit = super::window::last_commit(repo, tl, &plan.timeline.path, first, last)
        .map_err(io_err(&facts.wal_dir, "read the archived WAL in"))?;
    if commit.is_some_and(|c| c.stops(t, plan.inclusive)) {
        return Ok(());
    }
    let why = match commit {
        Some(c) => format!(
            "the newest transaction in the WAL it would replay (backup {} to segment {}; {}) committed at {}, and recovery to a time stops only at a transaction committed after the target: PostgreSQL would end recovery before it and refuse to start",
            plan.backup.id,
            plan.wal.last,
            plan.wal.end,
            pg_time(c.time)
        ),
        None => format!(
            "the WAL it would replay (backup {} to segment {}; {}) holds no committed transaction, and recovery to a time stops only at a transaction committed after the target",
            plan.backup.id, plan.wal.last, plan.wal.end
        ),
    };
    let latest = match commit {
        Some(c) if c.latest_target() >= plan.backup.stop_time => format!(
            "the latest time backup {} reaches is {} (`dbagent info` shows the recoverable window)",
            plan.backup.id,
            pg_time(c.latest_target())
        ),
        _ => format!(
            "backup {} reaches no time; `--target immediate` (its end) or `latest` still work (`dbagent info` shows the recoverable window)",
            plan.backup.id
        ),
    };
    Err(PlanError::Unreachable {
        what: format!("time {}", pg_time(t)),
        why,
        latest,
    })
}

/// The closest recorded name to `name` (edit distance at most a third of its length).
fn did_you_mean<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != *cb);
                cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    names
        .iter()
        .map(|n| (distance(name, n), n))
        .filter(|(d, _)| *d <= name.len().max(3) / 3 + 1)
        .min()
        .map(|(_, n)| n.as_str())
}

/// Decides and proves the plan from [`Facts`] alone: the pure part of restore planning.
pub fn decide(req: &Request, facts: &Facts) -> Result<RestorePlan, PlanError> {
    check_usage(req)?;
    let mut notes = req.notes.clone();
    let has_target = !matches!(req.target, Target::Latest);

    // Safety invariant 4, first half: never a running server's directory, never a non-empty
    // one without --force.
    if let Some(pid) = facts.running_pid {
        return Err(PlanError::InUse {
            dir: req.to.clone(),
            pid,
        });
    }
    let dir = &facts.dir;
    if dir.entries > 0 && !req.force {
        return Err(PlanError::NotEmpty {
            dir: req.to.clone(),
            entries: dir.entries,
        });
    }
    if facts.backups.is_empty() {
        return Err(PlanError::NoBackups(facts.repo_root.clone()));
    }

    // Targets that cannot be reached are refused before anything else.
    if let Target::Name(n) = &req.target
        && facts.point.is_none()
    {
        return Err(PlanError::UnknownPoint {
            name: n.clone(),
            known: if facts.point_names.is_empty() {
                "none is recorded".into()
            } else {
                format!("recorded: {}", facts.point_names.join(", "))
            },
            hint: did_you_mean(n, &facts.point_names)
                .map(|m| format!("did you mean `{m}`? "))
                .unwrap_or_default(),
        });
    }
    if let Target::Time(t) = &req.target
        && *t > facts.now
    {
        return Err(PlanError::Unreachable {
            what: format!("time {}", pg_time(*t)),
            why: format!(
                "it is in the future (now is {})",
                facts.now.strftime("%Y-%m-%d %H:%M:%S UTC")
            ),
            latest: facts.latest_restorable(),
        });
    }

    let tl = &facts.timelines;
    let seg_hint = tl.seg_size;
    // A backup taken on a test copy's timeline is not part of the cluster's history.
    let copy_tli = |tli: u32| {
        tl.path(tli).is_some_and(|p| {
            p.iter().any(|s| {
                tl.get(s.timeline).and_then(|t| t.origin())
                    == Some(crate::wal::timeline::Origin::Copy)
            })
        })
    };
    let point_tli = facts.point.as_ref().map(|p| (p.timeline, p.lsn));
    let eligible = |m: &BackupManifest| {
        // An incremental whose chain is broken restores nothing (named if chosen by --backup).
        if crate::backup::chain::chain(&facts.backups, &m.id).is_err() {
            return false;
        }
        if matches!(req.timeline, TimelineChoice::Id(_)) {
            return true;
        }
        if copy_tli(m.timeline) {
            return false;
        }
        match point_tli {
            Some((ptli, _)) => tl.descends_at(m.timeline, ptli, m.stop_lsn) || ptli == m.timeline,
            None => true,
        }
    };
    let (m, backup_choice) = choose_backup(facts, req, &eligible)?;
    let chain = super::chain::plan(&req.to, &facts.backups, &facts.staging, &m)
        .map_err(PlanError::Usage)?;
    if let Target::Lsn(l) = &req.target
        && *l < m.stop_lsn
    {
        return Err(PlanError::BackupAfterTarget {
            id: m.id.clone(),
            ended: format!("LSN {}", m.stop_lsn),
            target: format!("target LSN {l}"),
        });
    }
    let range = WalRange::of(&m).map_err(|detail| RepoError::Corrupt {
        path: facts
            .manifest_paths
            .get(&m.id)
            .cloned()
            .unwrap_or_else(|| facts.repo_root.clone()),
        detail,
    })?;
    let seg = range.seg_size;
    if seg != seg_hint && !tl.timelines.is_empty() {
        return Err(PlanError::Usage(format!(
            "backup {} says the WAL segment size is {seg}, the repository says {seg_hint}",
            m.id
        )));
    }

    // Timelines: decided from the target and the archive's histories.
    let decision = super::timeline::decide(
        tl,
        super::timeline::BackupPos {
            timeline: m.timeline,
            stop_lsn: m.stop_lsn,
            stop_time: m.stop_time,
        },
        &req.target,
        point_tli,
        req.timeline,
    )
    .map_err(|r| refusal(r, &m, facts))?;
    let target_tli = decision.timeline;
    let path = decision.path.clone();
    let history_files: Vec<String> = path
        .iter()
        .skip(1)
        .map(|s| format!("{:08X}.history", s.timeline))
        .collect();
    for (file, step) in history_files.iter().zip(path.iter().skip(1)) {
        if tl
            .get(step.timeline)
            .and_then(|t| t.history.as_ref())
            .is_none()
        {
            return Err(PlanError::MissingHistory {
                file: file.clone(),
                archive: facts.wal_dir.clone(),
                tli: step.timeline,
            });
        }
    }
    if target_tli != m.timeline {
        notes.push(format!(
            "recovery follows the timeline history {} from timeline {} to {target_tli}",
            history_files.join(", "),
            m.timeline
        ));
    }

    // Which segments the restore needs, all along the chosen path.
    let first = range.first;
    let newest_on_path = tl.newest_on_path(target_tli, first).map(|(_, s, _)| s);
    let (last, end) = match (&req.target, &facts.point) {
        (Target::Immediate, _) => (range.last, "the backup's end (consistency)".to_string()),
        (Target::Lsn(l), _) => (
            l.segno(seg).max(range.last),
            format!("the segment holding target LSN {l}"),
        ),
        (Target::Name(n), Some(p)) => (
            p.lsn.segno(seg).max(range.last),
            format!("the segment holding restore point {n} (LSN {})", p.lsn),
        ),
        (Target::Time(_), _) => {
            // Replay reads the archive until the target or the first missing segment: the
            // unbroken run from the backup is what a time target can reach (proven against
            // its newest commit in `make`).
            let newest = newest_on_path.unwrap_or(range.last).max(range.last);
            let run = super::window::contiguous_end(tl, &path, first, newest)
                .unwrap_or(range.last)
                .max(range.last);
            let why = match super::window::gap_after(tl, &path, run, newest) {
                Some((from, to)) => format!(
                    "the newest segment archived before the gap {from}..{to} on timeline {target_tli}'s history: where {} falls in the WAL is only known during replay",
                    req.target.describe()
                ),
                None => format!(
                    "the newest archived segment on timeline {target_tli}'s history: where {} falls in the WAL is only known during replay",
                    req.target.describe()
                ),
            };
            (run, why)
        }
        _ => {
            let newest = newest_on_path.unwrap_or(range.last).max(range.last);
            let why = match req.target {
                Target::Latest => {
                    format!("the newest archived segment on timeline {target_tli}'s history")
                }
                _ => format!(
                    "the newest archived segment on timeline {target_tli}'s history: where {} falls in the WAL is only known during replay",
                    req.target.describe()
                ),
            };
            (newest, why)
        }
    };
    let count = last - first + 1;
    let mut missing = Vec::new();
    let mut stored_bytes = 0u64;
    for segno in first..=last {
        let on = timeline_of(&path, segno, seg);
        match tl.get(on).and_then(|t| t.segments.get(&segno).map(|_| t)) {
            Some(t) => stored_bytes += t.stored_bytes.get(&segno).copied().unwrap_or(0),
            None => missing.push(segment_name(on, segno, seg)),
        }
    }
    let first_name = segment_name(timeline_of(&path, first, seg), first, seg);
    let last_name = segment_name(timeline_of(&path, last, seg), last, seg);
    if let Some(segment) = missing.first() {
        return Err(PlanError::MissingWal {
            segment: segment.clone(),
            archive: facts.wal_dir.clone(),
            first: first_name,
            last: last_name,
            missing: missing.len() as u64,
            count,
        });
    }
    // A time target must lie within what is archived on the chosen history.
    if let Target::Time(t) = &req.target
        && *t < m.stop_time
    {
        return Err(PlanError::BackupAfterTarget {
            id: m.id.clone(),
            ended: m.stop_time.to_string(),
            target: format!("target time {}", pg_time(*t)),
        });
    }

    // Tablespaces: original locations unless mapped; always empty.
    let mut tablespaces = Vec::new();
    let all_ts: Vec<_> = m
        .files
        .iter()
        .filter_map(|f| f.tablespace.as_ref().map(|t| (f, t)))
        .collect();
    for (key, _) in &req.tablespace_map {
        if !all_ts
            .iter()
            .any(|(_, t)| t.oid.to_string() == *key || t.name == *key)
        {
            return Err(PlanError::UnknownTablespace {
                key: key.clone(),
                id: m.id.clone(),
                have: if all_ts.is_empty() {
                    "none".into()
                } else {
                    all_ts
                        .iter()
                        .map(|(_, t)| format!("{} = {}", t.oid, t.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
    }
    for (f, t) in all_ts {
        let location = req
            .tablespace_map
            .iter()
            .find(|(k, _)| *k == t.oid.to_string() || *k == t.name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| PathBuf::from(&t.location));
        if !location.is_absolute() {
            return Err(PlanError::Usage(format!(
                "tablespace {} would go to {}, which is not an absolute path",
                t.name,
                location.display()
            )));
        }
        if location.starts_with(&req.to) {
            notes.push(format!(
                "tablespace {} is restored inside the data directory ({})",
                t.name,
                location.display()
            ));
        }
        let entries = facts
            .tablespace_dirs
            .iter()
            .find(|(l, _)| *l == location)
            .map_or(0, |(_, s)| s.entries);
        if entries > 0 {
            return Err(PlanError::TablespaceNotEmpty {
                oid: t.oid,
                name: t.name.clone(),
                dir: location,
            });
        }
        tablespaces.push(TablespacePlan {
            oid: t.oid,
            name: t.name.clone(),
            original_location: t.location.clone(),
            location,
            file: f.name.clone(),
        });
    }

    // Who will own the files: the server must run as the owner of its data directory.
    let owner = if facts.root {
        match (dir.uid, dir.gid) {
            (Some(uid), Some(gid)) if uid != 0 => Some(Owner {
                user: facts
                    .dir_owner_name
                    .clone()
                    .unwrap_or_else(|| uid.to_string()),
                uid,
                gid,
            }),
            _ => Some(facts.postgres_user.clone().ok_or_else(|| {
                PlanError::Usage(format!(
                    "dbagent runs as root and PostgreSQL refuses to: create {} owned by the PostgreSQL OS user first (there is no `postgres` user to default to)",
                    req.to.display()
                ))
            })?),
        }
    } else {
        None
    };

    let inclusive = !req.exclusive;
    let settings = settings(req, has_target, target_tli);
    let wal_bytes = count * seg;
    let estimated_seconds = 5 + m.size() / (200 << 20) + wal_bytes / (100 << 20);
    let value = req.target.value();
    Ok(RestorePlan {
        to: req.to.clone(),
        target: PlanTarget {
            kind: req.target.kind(),
            value,
            description: req.target.describe(),
            restore_point: facts.point.clone(),
        },
        backup: BackupSummary {
            id: m.id.clone(),
            label: m.label.clone(),
            start_time: m.start_time,
            stop_time: m.stop_time,
            start_lsn: m.start_lsn,
            stop_lsn: m.stop_lsn,
            timeline: m.timeline,
            pg_major: m.pg_major,
            size_bytes: m.size(),
            stored_bytes: m.stored_size(),
            compression: m.compression,
        },
        backup_choice,
        chain,
        action: has_target.then_some(req.action),
        inclusive,
        timeline: TimelinePlan {
            requested: req.timeline.setting(),
            target_timeline: target_tli,
            path,
            history_files,
            why: decision.why,
            left_out: decision.left_out,
        },
        wal: WalPlan {
            first: first_name,
            last: last_name,
            segments: count,
            bytes: wal_bytes,
            stored_bytes,
            end,
        },
        tablespaces,
        replaces_existing: dir.entries > 0,
        archive: !req.no_archive,
        in_place: req.in_place,
        settings,
        owner,
        estimated_seconds,
        notes,
        delta: None,
        manifest: m,
    })
}

/// The plan error for a timeline refusal.
fn refusal(r: super::timeline::Refusal, m: &BackupManifest, facts: &Facts) -> PlanError {
    use super::timeline::Refusal;
    match r {
        Refusal::Ambiguous { what, candidates } => PlanError::AmbiguousTimeline {
            what,
            candidates: candidates
                .iter()
                .map(|c| c.describe())
                .collect::<Vec<_>>()
                .join("; "),
            options: candidates
                .iter()
                .map(|c| format!("--timeline {}", c.timeline))
                .collect::<Vec<_>>()
                .join(" or "),
        },
        Refusal::NotADescendant { tli, why } => PlanError::NotAnAncestor {
            id: m.id.clone(),
            backup_tli: m.timeline,
            target_tli: tli,
            why,
        },
        Refusal::NoHistory { tli } => PlanError::MissingHistory {
            file: format!("{tli:08X}.history"),
            archive: facts.wal_dir.clone(),
            tli,
        },
        Refusal::Unreachable { what, latest } => PlanError::Unreachable {
            what,
            why: "no history of the archive reaches it after the backup".into(),
            latest: format!(
                "{}; where each history ends: {latest}",
                facts.latest_restorable()
            ),
        },
    }
}

/// The recovery settings for `req`.
fn settings(req: &Request, has_target: bool, timeline: u32) -> Vec<Setting> {
    let mut out = vec![Setting {
        name: "restore_command".into(),
        value: req.restore_command.clone(),
    }];
    let mut push = |name: &str, value: String| {
        out.push(Setting {
            name: name.into(),
            value,
        })
    };
    match &req.target {
        Target::Latest => {}
        Target::Immediate => push("recovery_target", "immediate".into()),
        Target::Time(t) => push("recovery_target_time", pg_time(*t)),
        Target::Lsn(l) => push("recovery_target_lsn", l.to_string()),
        Target::Xid(x) => push("recovery_target_xid", x.to_string()),
        Target::Name(n) => push("recovery_target_name", n.clone()),
    }
    if has_target {
        if matches!(
            req.target,
            Target::Time(_) | Target::Lsn(_) | Target::Xid(_)
        ) {
            push(
                "recovery_target_inclusive",
                if req.exclusive { "off" } else { "on" }.into(),
            );
        }
        push("recovery_target_action", req.action.as_str().into());
    }
    push("recovery_target_timeline", timeline.to_string());
    if let Some(port) = req.port {
        push("port", port.to_string());
    }
    if req.no_archive {
        push("archive_mode", "off".into());
    }
    out.extend(req.extra_settings.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_target_kind() {
        assert_eq!(Target::parse("latest", None).unwrap(), Target::Latest);
        assert_eq!(Target::parse("immediate", None).unwrap(), Target::Immediate);
        assert_eq!(
            Target::parse("lsn:0/3000028", None).unwrap(),
            Target::Lsn(Lsn(0x3000028))
        );
        assert_eq!(Target::parse("xid:1234", None).unwrap(), Target::Xid(1234));
        assert_eq!(
            Target::parse("name:before-x", None).unwrap(),
            Target::Name("before-x".into())
        );
        for bad in [
            "",
            "lsn:zz",
            "xid:-1",
            "name:a b",
            "when:now",
            "time:yesterday",
        ] {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_need_an_offset_or_a_zone() {
        let want: jiff::Timestamp = "2026-11-21T09:15:00Z".parse().unwrap();
        for ok in [
            "time:2026-11-21 10:15:00+01",
            "time:2026-11-21T10:15:00+01:00",
            "time:2026-11-21T09:15:00Z",
            "time:2026-11-21T10:15:00[Europe/Paris]",
            "time:2026-11-21 09:15:00 UTC",
        ] {
            assert_eq!(Target::parse(ok, None).unwrap(), Target::Time(want), "{ok}");
        }
        let err = Target::parse("time:2026-11-21 10:15:00", None).unwrap_err();
        assert!(matches!(err, PlanError::TimeWithoutZone(_)), "{err}");
        assert!(time_needs_zone("time:2026-11-21 10:15:00"));
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(
            Target::parse("time:2026-11-21 10:15:00", Some(&paris)).unwrap(),
            Target::Time(want)
        );
        assert_eq!(pg_time(want), "2026-11-21 09:15:00.000000+00");
    }

    /// The planner's gather step on a repository in memory: what it reads (backups, restore
    /// points, timelines, WAL) decides the plan or the refusal.
    #[test]
    fn gather_reads_backups_points_and_wal_from_the_storage() {
        use crate::repo::Key;
        use crate::restore::timeline::tests::request;
        const SEG: u64 = 16 << 20;
        let (repo, _) = Repo::in_memory();
        repo.bind(1, Some(15), SEG).unwrap();
        let m = crate::backup::verify::tests::manifest("B", 1, 1, 1, "2026-11-21T06:16:00Z");
        let json = serde_json::to_vec(&m).unwrap();
        repo.storage()
            .put(&Key::backup("B", manifest::MANIFEST_FILE), &json)
            .unwrap();
        let seg_key = |n| Key::wal(format!("{}.zst", segment_name(1, n, SEG)));
        for n in 1..=5 {
            repo.storage().put(&seg_key(n), b"wal").unwrap();
        }
        let point = points::RestorePoint {
            name: "before".into(),
            lsn: Lsn(4 * SEG + 0x100),
            time: "2026-11-21T07:00:00Z".parse().unwrap(),
            timeline: 1,
            server: "h:5432".into(),
        };
        points::record(&repo, &point).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(Target::Name("before".into()), TimelineChoice::Latest);
        req.to = dir.path().join("data");

        let facts = gather(&repo, &req).unwrap();
        assert_eq!(facts.backups.len(), 1);
        assert_eq!(facts.point.as_ref(), Some(&point));
        assert_eq!(facts.point_names, ["before"]);
        assert_eq!(
            facts.timelines.get(1).map(|t| t.segments.len()),
            Some(5),
            "{:?}",
            facts.timelines
        );
        let plan = decide(&req, &facts).unwrap();
        assert_eq!(plan.backup.id, "B");

        // A segment between the backup and the target is lost: the plan names it.
        repo.storage().delete(&[seg_key(3)]).unwrap();
        let facts = gather(&repo, &req).unwrap();
        let err = decide(&req, &facts).unwrap_err();
        assert!(matches!(err, PlanError::MissingWal { .. }), "{err}");
        assert!(err.to_string().contains(&segment_name(1, 3, SEG)), "{err}");

        // No backup at all: refused, naming the repository.
        repo.storage().delete_backup("B").unwrap();
        let facts = gather(&repo, &req).unwrap();
        let err = decide(&req, &facts).unwrap_err();
        assert!(matches!(err, PlanError::NoBackups(_)), "{err}");
    }

    /// The planner on a repository in memory with F ← I1 and an orphan X (parent gone):
    /// latest restores I1 through its chain with WAL proven from I1's start; X is never chosen
    /// by itself and refused by name with --backup.
    #[test]
    fn the_planner_restores_the_newest_complete_chain_with_wal_from_its_last_backup() {
        use crate::backup::chain::tests::incremental;
        use crate::backup::verify::tests::manifest;
        use crate::repo::Key;
        use crate::restore::chain::describe;
        use crate::restore::timeline::tests::request;
        use crate::wal::name::segment_name;
        const SEG: u64 = 16 << 20;
        let (repo, _) = Repo::in_memory();
        repo.bind(1, Some(18), SEG).unwrap();
        let mut f = manifest("F", 1, 1, 1, "2026-11-21T06:00:00Z");
        let mut i1 = incremental("I1", "F", 3, "2026-11-21T07:00:00Z");
        let mut x = incremental("X", "gone", 5, "2026-11-21T08:00:00Z");
        for m in [&mut f, &mut i1, &mut x] {
            m.pg_major = 18;
            let json = serde_json::to_vec(&*m).unwrap();
            repo.storage()
                .put(&Key::backup(&m.id, manifest::MANIFEST_FILE), &json)
                .unwrap();
        }
        for n in 1..=6 {
            let key = Key::wal(format!("{}.zst", segment_name(1, n, SEG)));
            repo.storage().put(&key, b"wal").unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(Target::Latest, TimelineChoice::Latest);
        req.to = dir.path().join("data");
        let facts = gather(&repo, &req).unwrap();
        assert_eq!(facts.staging.path, dir.path().join("data.staging"));
        let p = decide(&req, &facts).unwrap();
        assert_eq!(p.backup.id, "I1");
        let c = p.chain.as_ref().unwrap();
        assert_eq!(describe(c), "F → I1");
        assert_eq!(p.wal.first, segment_name(1, 3, SEG));

        req.backup = Some("X".into());
        let e = decide(&req, &facts).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
        req.backup = Some("F".into());
        let p = decide(&req, &facts).unwrap();
        assert!(p.chain.is_none());
        assert_eq!(p.wal.first, segment_name(1, 1, SEG));
    }
}
