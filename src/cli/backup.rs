//! `dbagent backup [--type full|incremental [--or-full]] [--label TEXT] [--compress zstd|lz4|gzip|none] [--json]
//! [--no-progress]`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Cli, CmdResult, human_bytes, human_duration, runtime};
use dbagent::backup::manifest::{BackupManifest, BackupType};
use dbagent::backup::take::{
    BackupError, BackupOptions, Progress, Source, SourceRequest, server_facts, standby_conninfo,
    take_from,
};
use dbagent::pg::PgTarget;
use dbagent::repo::Compression;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs pg_basebackup of the server's major version (tar format) and streams its output
through compression and SHA-256 into the repository; no uncompressed copy touches the disk.
The backup exists (for list, restore, expire) only once its WAL from start to stop LSN is
archived and manifest.json is written. Interrupted backups leave nothing that counts.
--type incremental (PostgreSQL 17+) sends only the blocks changed since the newest backup
in the repository (its parent), found in the server's WAL summaries: summarize_wal must be
on. It is restored together with its chain (parent, ..., full).
Exit 0 when the backup is complete, 1 otherwise (also when an incremental is refused).")]
pub struct BackupArgs {
    /// full, or incremental against the newest backup (PostgreSQL 17+, summarize_wal = on)
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Full)]
    pub backup_type: TypeArg,
    /// With --type incremental: when an incremental cannot be taken (server before 17, no backup to be incremental against, summarize_wal off or lagging, summaries not reaching back), take a full backup and say why (the schedule's incrementals do this)
    #[arg(long)]
    pub or_full: bool,
    /// A label stored with the backup (and in PostgreSQL's backup_label)
    #[arg(long)]
    pub label: Option<String>,
    /// Compression [default: repository.compression]
    #[arg(long, value_enum)]
    pub compress: Option<Compression>,
    /// Print a JSON summary on stdout (id, sizes in bytes, duration in seconds, mb_per_second in 10^6 bytes/s, LSNs)
    #[arg(long)]
    pub json: bool,
    /// No progress bar or progress lines
    #[arg(long)]
    pub no_progress: bool,
}

/// `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TypeArg {
    Full,
    Incremental,
}

impl From<TypeArg> for BackupType {
    fn from(t: TypeArg) -> BackupType {
        match t {
            TypeArg::Full => BackupType::Full,
            TypeArg::Incremental => BackupType::Incremental,
        }
    }
}

pub fn run(cli: &Cli, args: &BackupArgs) -> CmdResult {
    let (m, fallback) = backup(cli, args)?;
    let secs = m.duration_seconds().max(0.001);
    let mbps = m.size() as f64 / 1e6 / secs;
    if args.json {
        let out = json!({
            "id": m.id,
            "type": m.backup_type.as_str(),
            "parent": m.parent,
            "label": m.label,
            "size_bytes": m.size(),
            "stored_bytes": m.stored_size(),
            "duration_seconds": m.duration_seconds(),
            "mb_per_second": (mbps * 10.0).round() / 10.0,
            "compression": m.compression,
            "compressed_by": m.compressed_by,
            "timeline": m.timeline,
            "start_lsn": m.start_lsn,
            "stop_lsn": m.stop_lsn,
            "wal_start": m.wal_start,
            "wal_stop": m.wal_stop,
            "files": m.files.len(),
            "taken_from": m.taken_from,
        });
        let mut out = out;
        if let Some(why) = &fallback {
            out["fallback"] = json!(format!("full instead of incremental: {why}"));
        }
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())?;
    } else {
        let what = match &m.parent {
            Some(parent) => format!("{} (incremental against {parent})", m.id),
            None => m.id.clone(),
        };
        outln!(
            "Backup {} complete: {} -> {} ({}, compressed by {}) in {}, {}/s; LSN {} to {}, WAL {} to {}",
            what,
            human_bytes(m.size()),
            human_bytes(m.stored_size()),
            m.compression.as_str(),
            m.compressed_by,
            human_duration(secs),
            human_bytes((m.size() as f64 / secs) as u64),
            m.start_lsn,
            m.stop_lsn,
            m.wal_start,
            m.wal_stop
        )?;
        if let Some(t) = m.taken_from.as_ref().filter(|t| t.role == "standby") {
            outln!("Read from the standby {}", t.server)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The backup taken and, when an incremental was asked with --or-full but a full was taken,
/// why.
fn backup(cli: &Cli, args: &BackupArgs) -> anyhow::Result<(BackupManifest, Option<String>)> {
    let config = cli.load_config()?;
    let target = PgTarget::new(&config.postgres.conninfo, config.session_options())?;
    let facts = runtime()?.block_on(server_facts(&target))?;
    let source = choose_source(&config, &target, &facts)?;
    let opts = BackupOptions {
        label: args.label.clone(),
        compression: args.compress.unwrap_or(config.repository.compression),
        level: config.repository.compression_level,
        threads: config.backup.threads,
        compress_on: config.backup.compress_on,
        checkpoint: config.backup.checkpoint,
        wal_timeout: config.backup.wal_timeout,
        lock_wait: config.repository.lock_wait,
        bin_dir: config.postgres.bin_dir.clone(),
        backup_type: args.backup_type.into(),
    };
    let repo = config.repo()?;
    let progress: Box<dyn Progress> = if args.no_progress {
        Box::new(dbagent::backup::take::NoProgress)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Lines::new())
    };
    let result = match take_from(&repo, &source, &opts, progress.as_ref()) {
        Err(BackupError::NoIncremental(why)) if args.or_full => {
            tracing::warn!(
                "An incremental backup cannot be taken: {why}. Taking a full backup instead"
            );
            let full = BackupOptions {
                backup_type: BackupType::Full,
                ..opts
            };
            take_from(&repo, &source, &full, progress.as_ref()).map(|m| (m, Some(why)))
        }
        other => other.map(|m| (m, None)),
    };
    drop(progress);
    Ok(result?)
}

/// The server to read (`backup.from`).
fn choose_source(
    config: &dbagent::config::Config,
    target: &PgTarget,
    facts: &dbagent::backup::take::ServerFacts,
) -> anyhow::Result<Source> {
    let b = &config.backup;
    let standby = b
        .standby_conninfo
        .as_ref()
        .map(|s| {
            PgTarget::new(
                &standby_conninfo(&config.postgres.conninfo, s),
                config.session_options(),
            )
        })
        .transpose()?;
    let request = SourceRequest {
        from: b.from,
        standby,
        max_lag: b.standby_max_lag,
        checkpoint: b.checkpoint,
    };
    // A fallback to the primary is logged (a warning) by `choose`.
    Ok(runtime()?.block_on(Source::choose(target, facts.clone(), &request))?)
}

/// Progress bar on a terminal: bytes, rate, ETA.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Bar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(super::progress::style(super::progress::BACKUP));
        Bar(bar)
    }
}

impl Progress for Bar {
    fn phase(&self, phase: &str) {
        self.0.set_message(phase.to_string());
    }
    fn bytes(&self, done: u64, total: u64) {
        self.0.set_length(total.max(done));
        self.0.set_position(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Plain progress lines (no terminal): one per phase and every 10 s while streaming.
struct Lines {
    started: Instant,
    last: Mutex<Instant>,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            started: Instant::now(),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Progress for Lines {
    fn phase(&self, phase: &str) {
        eprintln!("backup: {phase}");
    }
    fn bytes(&self, done: u64, total: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_secs(10) {
            return;
        }
        *last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "backup: {} of about {} streamed, {}/s",
            human_bytes(done),
            human_bytes(total),
            human_bytes((done as f64 / secs) as u64)
        );
    }
}
