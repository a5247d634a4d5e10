//! `dbagent backups list|show|verify|expire`: the catalog of complete backups in the
//! repository, proving they are restorable, and applying retention. The work is done by
//! `backup::manifest`, `backup::verify` and `backup::expire`; this file parses the arguments
//! and prints text or JSON.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use serde::Serialize;

use super::{Cli, CmdResult, human_bytes, human_duration};
use dbagent::backup::expire::{self, ExpireReport};
use dbagent::backup::manifest::{self, BackupManifest};
use dbagent::backup::verify::{self, Problem, VerifyReport};
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
the backup does not exist.")]
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
}

impl<'a> From<&'a BackupManifest> for ListEntry<'a> {
    fn from(m: &'a BackupManifest) -> Self {
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
        }
    }
}

fn list(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let (_, repo) = open(cli)?;
    let backups = complete_backups(&repo)?;
    if json {
        let entries: Vec<ListEntry> = backups.iter().map(ListEntry::from).collect();
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
            ]);
        }
        out!("{}", table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn show(cli: &Cli, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (_, repo) = open(cli)?;
    let m = find_backup(&repo, complete_backups(&repo)?, id)?;
    if json {
        print_json(&m)?;
        return Ok(ExitCode::SUCCESS);
    }
    let stored = repo.locate(&manifest::backup_key(&m.id, manifest::MANIFEST_FILE));
    let dir = stored.parent().unwrap_or(repo.location());
    outln!("backup {}", m.id)?;
    let field = |k: &str, v: String| outln!("  {k:<19}{v}");
    field("directory:", dir.display().to_string())?;
    field("label:", m.label.clone().unwrap_or_else(|| "-".into()))?;
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
    let mut reports = Vec::new();
    for m in &selected {
        tracing::info!(backup = %m.id, files = m.files.len(), "Verifying backup");
        let report = verify::verify(&repo, m).unwrap_or_else(|e| VerifyReport {
            id: m.id.clone(),
            ok: false,
            files_checked: 0,
            stored_bytes: m.stored_size(),
            wal_checked: 0,
            wal_start: m.wal_start.clone(),
            wal_stop: m.wal_stop.clone(),
            wal_check: verify::WAL_CHECK,
            problems: vec![Problem::File {
                file: manifest::MANIFEST_FILE.into(),
                kind: "manifest_invalid",
                problem: e.to_string(),
            }],
        });
        if !json {
            print_verify(&report)?;
        }
        reports.push(report);
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
