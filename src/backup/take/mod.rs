//! Taking a backup: run the server-version-matched `pg_basebackup` in tar format and stream
//! each tar archive through compression and SHA-256 straight into the repository, in one pass
//! and without an uncompressed copy on disk.
//!
//! How the streaming works: `pg_basebackup -D -` refuses clusters with tablespaces, so dbagent
//! points `-D` at an empty work directory and, as soon as pg_basebackup has checked that it is
//! empty (its verbose "initiating base backup" line, printed before it asks the server for
//! data), creates named pipes there under the names pg_basebackup will open: `base.tar` and
//! `<oid>.tar` per tablespace. One reader thread per pipe compresses and hashes what arrives.
//! Should pg_basebackup ever create one of those files first, `mkfifo` fails and the backup
//! is aborted: it can never silently write an uncompressed copy.
//!
//! Who compresses (`backup.compress_on`): by default the server, when its build has the
//! algorithm (zstd or lz4, PostgreSQL 15+, `--compress=server-zstd:level=N,workers=N`). Then
//! pg_basebackup receives and passes on about 1/15 of the bytes, the pipes are named
//! `base.tar.zst` etc., and dbagent stores the stream as it comes while decompressing a copy
//! in memory: that proves the stream decodes and gives the uncompressed size. Otherwise
//! pg_basebackup sends plain tar and dbagent compresses (the only way on builds without zstd,
//! such as the PostgreSQL 18 wheel). The stored files are the same format either way.
//!
//! A backup becomes visible only at the very end: its work directory is hidden
//! (`backups/.partial-<ID>`), renamed to `backups/<ID>` once every file is durable and the WAL
//! from its start to its stop LSN is in the archive, and `manifest.json` is written last.

mod basebackup;
mod error;
mod facts;
pub mod incremental;
mod options;
mod source;
mod stream;
mod watch;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::manifest::{BackupFile, BackupManifest, BackupType, MANIFEST_FORMAT};
use crate::config::CompressOn;
use crate::pg::{PgTarget, programs};
use crate::repo::storage::BackupWriter;
use crate::repo::{Compression, Repo, RepoError, local};
use crate::wal::{self, Lsn, WalName, name::segment_name};

use basebackup::PgBaseBackupRun;
pub use error::BackupError;
use error::io_err;
pub use facts::{ServerFacts, server_facts};
pub use options::{BackupOptions, NoProgress, Progress};
pub use source::{Source, SourceRequest, standby_conninfo};
pub use watch::is_walsender;

/// Takes a backup of the primary described by `target`/`facts` into `repo`.
pub fn take(
    repo: &Repo,
    target: &PgTarget,
    facts: &ServerFacts,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupManifest, BackupError> {
    take_from(repo, &Source::primary(target, facts), opts, progress)
}

/// Takes a backup from `source` (the primary, or a standby of it: `backup.from`) into `repo`.
pub fn take_from(
    repo: &Repo,
    source: &Source,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupManifest, BackupError> {
    // pg_basebackup reads `target`; the primary must be fit to be backed up either way.
    let (target, facts) = (&source.target, &source.facts);
    usable(&source.primary_facts)?;
    let on_server = compress_where(facts, opts)?;
    let incremental = opts.backup_type == BackupType::Incremental;
    if incremental {
        incremental::check_version(facts)?;
    }
    let major = facts.version.major();
    let pg_basebackup = programs::find(opts.bin_dir.as_deref(), major, "pg_basebackup")?;
    repo.bind(facts.system_identifier, Some(major), facts.wal_segment_size)?;
    let _lock = repo.lock("backup", opts.lock_wait)?;
    remove_stale_work_dirs(repo);
    let parent = incremental
        .then(|| incremental::prepare(repo, target, facts, opts.checkpoint))
        .transpose()?;

    let start_time = jiff::Timestamp::now();
    let id = new_id(repo, start_time)?;
    let backup: Arc<dyn BackupWriter> = Arc::from(repo.storage().backup_writer(&id)?);
    let work = backup.scratch().to_path_buf();
    let pgbb_dir = work.join("pg_basebackup");
    std::fs::create_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "create"))?;
    local::inherit_owner(&pgbb_dir, &work).map_err(io_err(&pgbb_dir, "chown"))?;
    let parent_manifest = parent
        .as_ref()
        .map(|p| incremental::write_parent_manifest(&work, p))
        .transpose()?;
    match &parent {
        Some(p) => {
            tracing::info!(backup = %id, parent = %p.manifest.id, "Starting incremental backup with {}", pg_basebackup.display())
        }
        None => tracing::info!(backup = %id, "Starting backup with {}", pg_basebackup.display()),
    }
    progress.phase("checkpoint");

    let label = opts
        .label
        .clone()
        .unwrap_or_else(|| format!("dbagent {id}"));
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
    } else {
        opts.threads
    };
    let mut run = PgBaseBackupRun {
        bin: &pg_basebackup,
        on_server,
        threads,
        target,
        facts,
        opts,
        work: &work,
        backup: &backup,
        pgbb_dir: &pgbb_dir,
        label: &label,
        id: &id,
        progress,
        incremental: parent_manifest.as_deref(),
    };
    let mut attempt = 1;
    let (mut files, waiting_since) = loop {
        match run.stream() {
            Err(BackupError::LostRace(what)) if attempt < 3 => {
                tracing::warn!(backup = %id, attempt, "{what}; retrying");
                let _ = std::fs::remove_dir_all(&pgbb_dir);
                std::fs::create_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "create"))?;
                local::inherit_owner(&pgbb_dir, &work).map_err(io_err(&pgbb_dir, "chown"))?;
                attempt += 1;
            }
            Err(BackupError::LostRace(what)) => {
                return Err(BackupError::BaseBackup(format!(
                    "{what} three times; nothing was kept. Run the backup again"
                )));
            }
            // The server said it has the algorithm but could not use it as asked (a libzstd
            // without worker threads, say): under `auto`, compress in dbagent instead.
            Err(BackupError::BaseBackup(msg))
                if run.on_server
                    && opts.compress_on == CompressOn::Auto
                    && msg.contains("compress") =>
            {
                tracing::warn!(backup = %id, "The server could not compress the backup ({msg}); compressing in dbagent instead");
                let _ = std::fs::remove_dir_all(&pgbb_dir);
                backup.discard_files()?;
                std::fs::create_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "create"))?;
                local::inherit_owner(&pgbb_dir, &work).map_err(io_err(&pgbb_dir, "chown"))?;
                run.on_server = false;
            }
            other => break other?,
        }
    };

    let compressed_by = if run.on_server { "server" } else { "dbagent" };
    // PostgreSQL's own manifest: kept as it is, and the source of the WAL range.
    let pg_manifest = std::fs::read(pgbb_dir.join("backup_manifest"))
        .map_err(io_err(&pgbb_dir.join("backup_manifest"), "read"))?;
    let (timeline, start_lsn, stop_lsn) = wal_range(&pg_manifest)?;
    let mut stored = backup.file("backup_manifest")?;
    stored
        .write_all(&pg_manifest)
        .map_err(io_err(&work.join("backup_manifest"), "write"))?;
    stored.commit()?;
    files.push(BackupFile {
        name: "backup_manifest".into(),
        size: pg_manifest.len() as u64,
        stored_size: pg_manifest.len() as u64,
        sha256: hex::encode(Sha256::digest(&pg_manifest)),
        tablespace: None,
        index: None,
    });
    std::fs::remove_dir_all(&pgbb_dir).map_err(io_err(&pgbb_dir, "remove"))?;
    if let Some(path) = &parent_manifest {
        std::fs::remove_file(path).map_err(io_err(path, "remove"))?;
    }
    // Read from a standby: the primary completes the segment holding the stop LSN.
    source.switch_wal()?;

    // Complete only when the WAL from start to stop is in *this* archive (safety invariant 3):
    // the server only waited for archive_command to succeed, wherever it archives to.
    if waiting_since.is_none() {
        progress.phase("waiting for WAL");
    }
    let seg = facts.wal_segment_size;
    let first = start_lsn.segno(seg);
    // The segment holding the byte before the stop LSN (a standby's stop LSN can be the very
    // start of a segment the primary has not written yet).
    let last = Lsn(stop_lsn.0.saturating_sub(1)).segno(seg).max(first);
    let deadline = waiting_since.unwrap_or_else(Instant::now) + opts.wal_timeout;
    for segno in first..=last {
        let name = segment_name(timeline, segno, seg);
        let parsed = WalName::parse(&name)
            .ok_or_else(|| BackupError::Refused(format!("bad segment name {name}")))?;
        loop {
            match wal::find(repo, &parsed) {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Ok(None) => {
                    return Err(BackupError::WalTimeout {
                        id: id.clone(),
                        segment: name,
                        timeout: opts.wal_timeout,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    let stop_time = jiff::Timestamp::now();
    let manifest = BackupManifest {
        format: MANIFEST_FORMAT,
        id: id.clone(),
        label: opts.label.clone(),
        system_identifier: facts.system_identifier.to_string(),
        pg_version: facts.version.text.clone(),
        pg_major: major,
        timeline,
        start_lsn,
        stop_lsn,
        wal_start: segment_name(timeline, first, seg),
        wal_stop: segment_name(timeline, last, seg),
        wal_segment_size: seg,
        start_time,
        stop_time,
        compression: opts.compression,
        compressed_by: compressed_by.into(),
        files,
        dbagent_version: env!("CARGO_PKG_VERSION").into(),
        backup_type: opts.backup_type,
        parent: parent.map(|p| p.manifest.id),
        taken_from: Some(source.taken_from.clone()),
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Refused(format!("cannot encode manifest.json: {e}")))?;
    let mut json = json;
    json.push(b'\n');
    // Publish: the backup under its real name, then manifest.json last.
    backup.publish(&json)?;
    tracing::info!(backup = %id, "Backup complete");
    Ok(manifest)
}

/// Whether this server can be backed up at all, and whether the server compresses the backup
/// (`true`) or dbagent does (`false`), from `backup.compress_on` and what the server offers.
#[cfg(test)]
fn decide(facts: &ServerFacts, opts: &BackupOptions) -> Result<bool, BackupError> {
    usable(facts)?;
    compress_where(facts, opts)
}

/// Whether the primary (postgres.conninfo) can be backed up at all.
fn usable(facts: &ServerFacts) -> Result<(), BackupError> {
    if facts.in_recovery {
        return Err(BackupError::Refused(
            "the server is a standby; dbagent backs up the primary (point postgres.conninfo at it; to read the backup from a standby, set backup.from and backup.standby_conninfo)"
                .into(),
        ));
    }
    if facts.archive_mode == "off" {
        return Err(BackupError::Refused(
            "archive_mode is off: a backup is only usable with its WAL archived; set archive_mode = on and archive_command to dbagent wal-push (`dbagent check` shows how)".into(),
        ));
    }
    Ok(())
}

/// Whether the server pg_basebackup reads compresses the backup (`true`) or dbagent does
/// (`false`), from `backup.compress_on` and what that server offers.
fn compress_where(facts: &ServerFacts, opts: &BackupOptions) -> Result<bool, BackupError> {
    let server_can = opts.compression != Compression::None
        && facts.server_compression.contains(&opts.compression);
    Ok(match opts.compress_on {
        CompressOn::Dbagent => false,
        CompressOn::Auto => server_can,
        CompressOn::Server if server_can || opts.compression == Compression::None => {
            opts.compression != Compression::None
        }
        CompressOn::Server => {
            return Err(BackupError::Refused(format!(
                "backup.compress_on is server, but the server cannot compress this backup with {}: dbagent has PostgreSQL 15+ compress with zstd or lz4 when its build has them, and this PostgreSQL {} offers {}; set backup.compress_on: auto or dbagent, or another repository.compression",
                opts.compression.as_str(),
                facts.version.text,
                if facts.server_compression.is_empty() {
                    "neither".to_string()
                } else {
                    facts
                        .server_compression
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                }
            )));
        }
    })
}

/// `20261121T061500Z`, made unique within the repository.
fn new_id(repo: &Repo, t: jiff::Timestamp) -> Result<String, RepoError> {
    let base = t.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut id = base.clone();
    let mut n = 1;
    while repo.storage().backup_id_taken(&id)? {
        id = format!("{base}-{n}");
        n += 1;
    }
    Ok(id)
}

/// What interrupted backups left (we hold the lock, so none is in progress).
fn remove_stale_work_dirs(repo: &Repo) {
    for dir in repo.storage().remove_interrupted_backups() {
        tracing::info!(dir = %dir.display(), "Removing the work directory of an interrupted backup");
    }
}

/// Timeline and LSN range from PostgreSQL's backup_manifest ("WAL-Ranges").
fn wal_range(manifest: &[u8]) -> Result<(u32, Lsn, Lsn), BackupError> {
    let bad = |what: &str| BackupError::BaseBackup(format!("backup_manifest: {what}"));
    let v: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| bad(&e.to_string()))?;
    let ranges = v["WAL-Ranges"]
        .as_array()
        .ok_or_else(|| bad("no WAL-Ranges"))?;
    let first = ranges.first().ok_or_else(|| bad("empty WAL-Ranges"))?;
    let last = ranges.last().ok_or_else(|| bad("empty WAL-Ranges"))?;
    let lsn = |r: &serde_json::Value, k: &str| {
        r[k].as_str()
            .and_then(Lsn::parse)
            .ok_or_else(|| bad(&format!("bad {k}")))
    };
    let timeline = last["Timeline"]
        .as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .ok_or_else(|| bad("bad Timeline"))?;
    Ok((timeline, lsn(first, "Start-LSN")?, lsn(last, "End-LSN")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Checkpoint;
    use crate::pg::ServerVersion;

    fn facts(server_compression: Vec<Compression>) -> ServerFacts {
        ServerFacts {
            version: ServerVersion::from_num(150010, "15.10"),
            system_identifier: 7_000_000_000_000_000_001,
            wal_segment_size: 16 << 20,
            tablespaces: Vec::new(),
            estimated_size: 0,
            archive_mode: "on".into(),
            in_recovery: false,
            server_compression,
        }
    }

    fn opts(compression: Compression, compress_on: CompressOn) -> BackupOptions {
        BackupOptions {
            label: None,
            compression,
            level: 0,
            threads: 0,
            compress_on,
            checkpoint: Checkpoint::Fast,
            wal_timeout: Duration::from_secs(60),
            lock_wait: Duration::from_secs(0),
            bin_dir: None,
            backup_type: crate::backup::manifest::BackupType::Full,
        }
    }

    fn refused(r: Result<bool, BackupError>) -> String {
        match r {
            Err(BackupError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_standby_or_a_server_without_archiving_is_refused() {
        let mut f = facts(vec![]);
        f.in_recovery = true;
        let o = opts(Compression::Zstd, CompressOn::Auto);
        assert!(refused(decide(&f, &o)).contains("the server is a standby"));
        let mut f = facts(vec![]);
        f.archive_mode = "off".into();
        assert!(refused(decide(&f, &o)).starts_with("archive_mode is off"));
    }

    #[test]
    fn auto_compresses_on_the_server_only_when_it_has_the_algorithm() {
        let zstd = facts(vec![Compression::Lz4, Compression::Zstd]);
        let none = facts(vec![]);
        let auto = |c| opts(c, CompressOn::Auto);
        assert!(decide(&zstd, &auto(Compression::Zstd)).expect("zstd"));
        assert!(decide(&zstd, &auto(Compression::Lz4)).expect("lz4"));
        assert!(!decide(&zstd, &auto(Compression::Gzip)).expect("gzip"));
        assert!(!decide(&zstd, &auto(Compression::None)).expect("none"));
        assert!(!decide(&none, &auto(Compression::Zstd)).expect("no server zstd"));
    }

    #[test]
    fn dbagent_always_compresses_itself() {
        let zstd = facts(vec![Compression::Zstd]);
        assert!(!decide(&zstd, &opts(Compression::Zstd, CompressOn::Dbagent)).expect("dbagent"));
    }

    #[test]
    fn server_refuses_what_the_server_cannot_do_and_names_what_it_offers() {
        let lz4 = facts(vec![Compression::Lz4]);
        assert!(decide(&lz4, &opts(Compression::Lz4, CompressOn::Server)).expect("lz4"));
        // Nothing to compress: pg_basebackup sends plain tar.
        assert!(!decide(&lz4, &opts(Compression::None, CompressOn::Server)).expect("none"));
        let msg = refused(decide(&lz4, &opts(Compression::Zstd, CompressOn::Server)));
        assert!(
            msg.starts_with(
                "backup.compress_on is server, but the server cannot compress this backup with zstd"
            ),
            "{msg}"
        );
        assert!(msg.contains("this PostgreSQL 15.10 offers lz4;"), "{msg}");
        let both = facts(vec![Compression::Lz4, Compression::Zstd]);
        let msg = refused(decide(&both, &opts(Compression::Gzip, CompressOn::Server)));
        assert!(msg.contains("offers lz4 and zstd;"), "{msg}");
        let msg = refused(decide(
            &facts(vec![]),
            &opts(Compression::Zstd, CompressOn::Server),
        ));
        assert!(msg.contains("offers neither;"), "{msg}");
    }

    #[test]
    fn wal_range_reads_the_first_start_and_the_last_end_and_timeline() {
        let manifest = br#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
            "WAL-Ranges": [
                { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3000000" },
                { "Timeline": 2, "Start-LSN": "0/3000000", "End-LSN": "0/4000100" }
            ]}"#;
        let (tl, start, stop) = wal_range(manifest).expect("range");
        assert_eq!(tl, 2);
        assert_eq!(start, Lsn::parse("0/2000028").expect("lsn"));
        assert_eq!(stop, Lsn::parse("0/4000100").expect("lsn"));
    }

    #[test]
    fn wal_range_says_what_is_wrong_with_a_manifest() {
        let err = |m: &[u8]| match wal_range(m) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("expected an error, got {r:?}"),
        };
        assert_eq!(
            err(br#"{"Files": []}"#),
            "pg_basebackup failed: backup_manifest: no WAL-Ranges"
        );
        assert_eq!(
            err(br#"{"WAL-Ranges": []}"#),
            "pg_basebackup failed: backup_manifest: empty WAL-Ranges"
        );
        assert_eq!(
            err(br#"{"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "x", "End-LSN": "0/1"}]}"#),
            "pg_basebackup failed: backup_manifest: bad Start-LSN"
        );
        assert_eq!(
            err(br#"{"WAL-Ranges": [{"Start-LSN": "0/1", "End-LSN": "0/2"}]}"#),
            "pg_basebackup failed: backup_manifest: bad Timeline"
        );
        assert!(err(b"not json").starts_with("pg_basebackup failed: backup_manifest: "));
    }

    #[test]
    fn backup_ids_are_utc_timestamps_made_unique_in_the_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::at(dir.path());
        let t: jiff::Timestamp = "2026-11-21T06:15:00.5Z".parse().expect("timestamp");
        let id = |t| new_id(&repo, t).expect("new id");
        let backups = dir.path().join("backups");
        assert_eq!(id(t), "20261121T061500Z");
        std::fs::create_dir_all(backups.join("20261121T061500Z")).expect("mkdir");
        assert_eq!(id(t), "20261121T061500Z-1");
        std::fs::create_dir_all(backups.join(".partial-20261121T061500Z-1")).expect("mkdir");
        assert_eq!(id(t), "20261121T061500Z-2");
    }

    #[test]
    fn stale_work_dirs_are_removed_and_backups_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::at(dir.path());
        let backups = dir.path().join("backups");
        std::fs::create_dir_all(backups.join(".partial-20261121T061500Z/pg_basebackup"))
            .expect("mkdir");
        std::fs::create_dir_all(backups.join("20261120T061500Z")).expect("mkdir");
        remove_stale_work_dirs(&repo);
        assert!(!backups.join(".partial-20261121T061500Z").exists());
        assert!(backups.join("20261120T061500Z").exists());
    }
}
