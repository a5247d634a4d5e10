//! `dbagent backups list|show|verify|expire`: the catalog of complete backups in the
//! repository, proving they are restorable, and applying retention. The work is done by
//! `backup::manifest`, `backup::verify` and `backup::expire`; this file parses the arguments
//! and prints text or JSON.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use serde::Serialize;

use super::{Cli, CmdResult, human_bytes, human_duration};
use dbagent::backup::chain;
use dbagent::backup::expire::{self, ExpireReport};
use dbagent::backup::manifest::{self, BackupManifest};
use dbagent::backup::verify::{self, VerifyReport};
use dbagent::config::Config;
use dbagent::repo::Repo;

#[derive(Debug, clap::Subcommand)]
pub enum BackupsCommand {
    /// List the complete backups, oldest first
    List {
        /// Print a JSON array (one object per backup)
        #[arg(long)]
        json: bool,
    },
    /// Show one backup in full: every manifest field and every file with its size and SHA-256
    Show {
        /// Backup ID, as `backups list` shows it (e.g. 20261121T061500Z)
        id: String,
        /// Print the manifest as JSON
        #[arg(long)]
        json: bool,
    },
    /// Recompute the checksums of stored backup files and check that their WAL is archived
    #[command(after_help = "\
Without ID or --all the newest backup is verified. Every stored file is read back and its
size and SHA-256 compared with the manifest; every WAL segment from the backup's wal_start
to its wal_stop must be in the archive (looked up, not read: `dbagent wal verify` reads and
checks the segments, and the WAL after the backup). Exit 0 when everything checked is intact, 1 when
anything is missing or damaged (each problem is printed by file or WAL segment name) or
the backup does not exist.

An incremental backup is verified with its whole chain (each member, root first): the
members' files and WAL as above, and each link: the parent is present, of the same cluster
and major version, and started before the backup built on it. A member that fails is named,
and every backup built on it fails too (`chain: ... depends on backup ID, which failed
verification`).")]
    Verify {
        /// The backup to verify [default: the newest]
        #[arg(conflicts_with = "all")]
        id: Option<String>,
        /// Verify every backup
        #[arg(long)]
        all: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove the backups and WAL that retention (retention.full, retention.window) no longer keeps
    #[command(after_help = "\
A backup is kept when it is one of the newest retention.full full backups or an incremental
backup built on one, when it stopped within retention.window, or when it is the newest backup
that stopped before the window starts (replaying WAL from it reaches the window's start); a
backup that a kept incremental depends on is always kept (a chain goes whole). WAL older than the oldest kept backup's
start is removed; timeline history files never are, and with no backups nothing is. Also
removes leftovers of interrupted backups and WAL temp files older than an hour. Holds the
repository lock and waits for running drills (each up to repository.lock_wait), so it never
deletes a backup a drill is restoring.")]
    Expire {
        /// Print what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &BackupsCommand) -> CmdResult {
    let code = match cmd {
        BackupsCommand::List { json } => list(cli, *json).context("backups list"),
        BackupsCommand::Show { id, json } => show(cli, id, *json).context("backups show"),
        BackupsCommand::Verify { id, all, json } => {
            verify(cli, id.as_deref(), *all, *json).context("backups verify")
        }
        BackupsCommand::Expire { dry_run, json } => {
            expire(cli, *dry_run, *json).context("backups expire")
        }
    }?;
    Ok(code)
}

/// The configuration and its repository, whose repo.json (when present) must be readable and
/// of this build's format.
fn open(cli: &Cli) -> anyhow::Result<(Config, Repo)> {
    let config = cli.load_config()?;
    let repo = config.repo()?;
    repo.info()?;
    Ok((config, repo))
}

fn complete_backups(repo: &Repo) -> anyhow::Result<Vec<BackupManifest>> {
    Ok(manifest::list(repo)?)
}

fn find_backup(
    repo: &Repo,
    backups: Vec<BackupManifest>,
    id: &str,
) -> anyhow::Result<BackupManifest> {
    backups.into_iter().find(|m| m.id == id).ok_or_else(|| {
        anyhow!(
            "no complete backup {id} in {}; `dbagent backups list` shows the backups",
            repo.location().display()
        )
    })
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).context("cannot serialise the output as JSON")?
    )?;
    Ok(())
}

/// One element of `backups list --json`.
#[derive(Serialize)]
struct ListEntry<'a> {
    id: &'a str,
    label: Option<&'a str>,
    start_time: jiff::Timestamp,
    stop_time: jiff::Timestamp,
    duration_seconds: f64,
    size_bytes: u64,
    stored_bytes: u64,
    start_lsn: String,
    stop_lsn: String,
    timeline: u32,
    wal_start: &'a str,
    wal_stop: &'a str,
    pg_version: &'a str,
    compression: &'static str,
    compressed_by: &'a str,
    /// `full` or `incremental`.
    #[serde(rename = "type")]
    backup_type: &'static str,
    /// The backup an incremental was taken against; null for a full backup.
    parent: Option<&'a str>,
    #[serde(flatten)]
    chain: ChainInfo,
}

/// A backup's chain in JSON: `chain` (IDs, root first, this backup last) and
/// `chain_complete` (false when a parent is missing: `chain` then starts at the oldest
/// backup still present).
#[derive(Serialize)]
struct ChainInfo {
    chain: Vec<String>,
    chain_complete: bool,
}

impl ChainInfo {
    fn of(backups: &[BackupManifest], id: &str) -> (ChainInfo, Option<chain::ChainError>) {
        let (ids, err) = chain::chain_ids(backups, id);
        (
            ChainInfo {
                chain: ids,
                chain_complete: err.is_none(),
            },
            err,
        )
    }
}

impl<'a> ListEntry<'a> {
    fn new(m: &'a BackupManifest, backups: &[BackupManifest]) -> Self {
        ListEntry {
            id: &m.id,
            label: m.label.as_deref(),
            start_time: m.start_time,
            stop_time: m.stop_time,
            duration_seconds: m.duration_seconds(),
            size_bytes: m.size(),
            stored_bytes: m.stored_size(),
            start_lsn: m.start_lsn.to_string(),
            stop_lsn: m.stop_lsn.to_string(),
            timeline: m.timeline,
            wal_start: &m.wal_start,
            wal_stop: &m.wal_stop,
            pg_version: &m.pg_version,
            compression: m.compression.as_str(),
            compressed_by: &m.compressed_by,
            backup_type: m.backup_type.as_str(),
            parent: chain::parent_of(m),
            chain: ChainInfo::of(backups, &m.id).0,
        }
    }
}

/// `backups show --json`: the manifest, plus its chain.
#[derive(Serialize)]
struct ShowOutput<'a> {
    #[serde(flatten)]
    manifest: &'a BackupManifest,
    #[serde(flatten)]
    chain: ChainInfo,
}

fn list(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let (_, repo) = open(cli)?;
    let backups = complete_backups(&repo)?;
    if json {
        let entries: Vec<ListEntry> = backups
            .iter()
            .map(|m| ListEntry::new(m, &backups))
            .collect();
        print_json(&entries)?;
    } else if backups.is_empty() {
        outln!("no backups in {}", repo.location().display())?;
    } else {
        let mut rows = vec![
            [
                "ID",
                "LABEL",
                "START (UTC)",
                "DURATION",
                "SIZE",
                "STORED",
                "START LSN",
                "STOP LSN",
                "TL",
                "TYPE",
            ]
            .map(String::from),
        ];
        for m in &backups {
            rows.push([
                m.id.clone(),
                m.label.clone().unwrap_or_else(|| "-".into()),
                utc(m.start_time),
                human_duration(m.duration_seconds()),
                human_bytes(m.size()),
                human_bytes(m.stored_size()),
                m.start_lsn.to_string(),
                m.stop_lsn.to_string(),
                m.timeline.to_string(),
                type_cell(m, &backups),
            ]);
        }
        out!("{}", table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `full`, or `incr ← PARENT` (with `(chain broken)` when an ancestor is missing).
fn type_cell(m: &BackupManifest, backups: &[BackupManifest]) -> String {
    match chain::parent_of(m) {
        None if m.backup_type == manifest::BackupType::Full => "full".into(),
        None => "incr (no parent: damaged)".into(),
        Some(p) => match chain::chain(backups, &m.id) {
            Ok(_) => format!("incr ← {p}"),
            Err(e) => format!("incr ← {p} (chain broken: {} missing)", e.missing()),
        },
    }
}

fn show(cli: &Cli, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (_, repo) = open(cli)?;
    let backups = complete_backups(&repo)?;
    let m = find_backup(&repo, backups.clone(), id)?;
    let (chain_info, chain_err) = ChainInfo::of(&backups, &m.id);
    if json {
        print_json(&ShowOutput {
            manifest: &m,
            chain: chain_info,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let stored = repo.locate(&manifest::backup_key(&m.id, manifest::MANIFEST_FILE));
    let dir = stored.parent().unwrap_or(repo.location());
    outln!("backup {}", m.id)?;
    let field = |k: &str, v: String| outln!("  {k:<19}{v}");
    field("directory:", dir.display().to_string())?;
    field("label:", m.label.clone().unwrap_or_else(|| "-".into()))?;
    field("type:", m.backup_type.as_str().to_string())?;
    if let Some(p) = &m.parent {
        field("parent:", p.clone())?;
    }
    if m.backup_type == manifest::BackupType::Incremental {
        let mut shown = chain_info.chain.join(" → ");
        if let Some(e) = &chain_err {
            shown = format!("BROKEN: {} missing ({shown})", e.missing());
        }
        field("chain:", format!("{shown} (root first; restored together)"))?;
    }
    field("format:", m.format.to_string())?;
    field("system identifier:", m.system_identifier.clone())?;
    field(
        "postgres:",
        format!("{} (major {})", m.pg_version, m.pg_major),
    )?;
    field("timeline:", m.timeline.to_string())?;
    field(
        "start:",
        format!("{} UTC, LSN {}", utc(m.start_time), m.start_lsn),
    )?;
    field(
        "stop:",
        format!("{} UTC, LSN {}", utc(m.stop_time), m.stop_lsn),
    )?;
    field("duration:", human_duration(m.duration_seconds()))?;
    field("WAL:", format!("{} .. {}", m.wal_start, m.wal_stop))?;
    field("WAL segment size:", human_bytes(m.wal_segment_size))?;
    field(
        "compression:",
        format!("{} (by {})", m.compression.as_str(), m.compressed_by),
    )?;
    field(
        "size:",
        format!(
            "{} ({} bytes), stored {} ({} bytes)",
            human_bytes(m.size()),
            m.size(),
            human_bytes(m.stored_size()),
            m.stored_size()
        ),
    )?;
    field(
        "taken from:",
        m.taken_from
            .as_ref()
            .map_or_else(|| "-".into(), |t| format!("{} {}", t.role, t.server)),
    )?;
    field("dbagent version:", m.dbagent_version.clone())?;
    outln!("  files:")?;
    let mut rows = vec![["NAME", "SIZE", "STORED", "SHA256", "TABLESPACE"].map(String::from)];
    for f in &m.files {
        rows.push([
            f.name.clone(),
            human_bytes(f.size),
            human_bytes(f.stored_size),
            f.sha256.clone(),
            f.tablespace
                .as_ref()
                .map(|t| format!("{} {} {}", t.oid, t.name, t.location))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    for line in table(&rows).lines() {
        outln!("    {line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct VerifyOutput<'a> {
    ok: bool,
    backups: &'a [VerifyReport],
}

fn verify(cli: &Cli, id: Option<&str>, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (_, repo) = open(cli)?;
    let backups = complete_backups(&repo)?;
    let all_backups = backups.clone();
    let selected = match id {
        Some(id) => vec![find_backup(&repo, backups, id)?],
        None if backups.is_empty() => {
            return Err(anyhow!(
                "no complete backup in {} to verify; take one with `dbagent backup`",
                repo.location().display()
            ));
        }
        None if all => backups,
        None => backups.into_iter().last().into_iter().collect(),
    };
    let ids: Vec<&str> = selected.iter().map(|m| m.id.as_str()).collect();
    let reports = verify::verify_chains(&repo, &all_backups, &ids);
    if !json {
        for r in &reports {
            print_verify(r)?;
        }
    }
    if !json && reports.iter().any(|r| r.wal_checked > 0) {
        outln!(
            "WAL: each backup's own segments (start to end of the backup) were looked up in the archive, not read; `dbagent wal verify` reads and checks them and the WAL after them"
        )?;
    }
    let ok = reports.iter().all(|r| r.ok);
    if json {
        print_json(&VerifyOutput {
            ok,
            backups: &reports,
        })?;
    }
    if ok {
        return Ok(ExitCode::SUCCESS);
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.id.as_str())
        .collect();
    Err(anyhow!(
        "{} of {} backups failed verification ({}): do not rely on them for a restore; take a new backup with `dbagent backup` and check the storage of {}",
        failed.len(),
        reports.len(),
        failed.join(", "),
        repo.location().display()
    ))
}

fn print_verify(r: &VerifyReport) -> Result<(), super::output::StdoutError> {
    if r.ok {
        outln!(
            "OK {} ({} files, {}; {})",
            r.id,
            r.files_checked,
            human_bytes(r.stored_bytes),
            r.wal_summary()
        )
    } else {
        outln!("FAILED {}", r.id)?;
        for p in &r.problems {
            outln!("  {}", p.render())?;
        }
        if r.wal_checked > 0 {
            outln!("  {}", r.wal_summary())?;
        }
        Ok(())
    }
}

fn expire(cli: &Cli, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (config, repo) = open(cli)?;
    let report = expire::expire(
        &repo,
        &config.retention,
        config.repository.lock_wait,
        jiff::Timestamp::now(),
        dry_run,
    )?;
    if json {
        print_json(&report)?;
    } else {
        out!("{}", render_expire(&report, &config, &repo))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render_expire(r: &ExpireReport, config: &Config, repo: &Repo) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    if r.dry_run {
        line("dry run: nothing is removed".into());
    }
    if r.kept.is_empty() && r.removed.is_empty() {
        line(format!(
            "no backups in {}; nothing to expire",
            repo.location().display()
        ));
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for k in &r.kept {
        line(format!(
            "kept         {}  {}",
            k.id,
            k.rules.describe(&config.retention)
        ));
    }
    for id in &r.removed {
        line(format!("{verb:<12} {id}"));
    }
    match (&r.wal_removed_first, &r.wal_removed_last) {
        (Some(first), Some(last)) => line(format!(
            "WAL: {verb} {} file{} ({first} .. {last}){}",
            r.wal_removed,
            if r.wal_removed == 1 { "" } else { "s" },
            r.wal_kept_from
                .as_ref()
                .map(|k| format!("; kept from {k} on"))
                .unwrap_or_default()
        )),
        _ if !r.kept.is_empty() => line(format!(
            "WAL: nothing to remove{}",
            r.wal_kept_from
                .as_ref()
                .map(|k| format!("; kept from {k} on"))
                .unwrap_or_default()
        )),
        _ => {}
    }
    for p in &r.leftovers_removed {
        line(format!("leftover {verb}: {p}"));
    }
    for n in &r.notes {
        line(format!("note: {n}"));
    }
    out
}

/// `2026-11-21 06:15:00`.
pub(super) fn utc(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(super) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            ["ID".to_string(), "X".to_string()],
            ["longer".to_string(), "y".to_string()],
        ];
        assert_eq!(table(&rows), "ID      X\nlonger  y\n");
    }
}
