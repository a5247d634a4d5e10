//! Incremental backups (PostgreSQL 17+): `pg_basebackup --incremental=<backup_manifest>` sends
//! only the blocks changed since a previous backup, which the server finds in its WAL
//! summaries (`summarize_wal`). Such a backup is restorable only with its chain: the parent it
//! was taken against, that one's parent, ... down to a full backup, combined at restore
//! (src/restore/chain/).
//!
//! Before pg_basebackup runs, dbagent picks the parent (the newest complete backup of this
//! cluster in the repository, full or incremental), and checks what would otherwise fail deep
//! inside the server or, worse, after minutes of streaming: the server is 17+, `summarize_wal`
//! is on, the summarizer has caught up with the WAL, and the summaries still reach back to the
//! parent's start LSN (the server deletes them after `wal_summary_keep_time`). Each refusal is
//! one line naming the setting to change or saying to take a full backup.
//!
//! The parent's PostgreSQL `backup_manifest` (stored uncompressed with every backup) is
//! written to the work directory, next to (not inside) pg_basebackup's target directory, and
//! removed before the backup is published.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::{BackupError, io_err};
use super::facts::ServerFacts;
use crate::backup::manifest::{self, BackupManifest};
use crate::config::Checkpoint;
use crate::pg::PgTarget;
use crate::repo::{Key, Repo};
use crate::wal::Lsn;

/// The first PostgreSQL major version with incremental backups.
pub const MIN_MAJOR: u32 = 17;

/// File name of the parent's backup_manifest in the work directory.
const PARENT_MANIFEST: &str = "parent.backup_manifest";

/// How long dbagent waits for the WAL summarizer to catch up. The summarizer sleeps up to a
/// minute when it finds no new WAL (a checkpoint wakes it), so this is a little longer.
const CATCH_UP_WAIT: Duration = Duration::from_secs(70);

/// How long a summarizer that does not move may be left alone before dbagent wakes it with a
/// checkpoint (only with `backup.checkpoint: fast`: a spread one would not want it).
const NUDGE_AFTER: Duration = Duration::from_secs(2);

/// A WAL page (XLOG_BLCKSZ): the most the summarizer's read position may be short of the
/// insert position and still count as caught up.
const WAL_PAGE: u64 = 8192;

/// What makes the WAL summarizer run: named in every refusal about it.
pub const ENABLE_SUMMARIZE_WAL: &str =
    "ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf();";

/// The backup an incremental backup is taken against.
#[derive(Debug)]
pub struct Parent {
    pub manifest: BackupManifest,
    /// Its PostgreSQL `backup_manifest`, as stored.
    pub pg_manifest: Vec<u8>,
}

/// Refuses an incremental backup of a server before PostgreSQL 17.
pub fn check_version(facts: &ServerFacts) -> Result<(), BackupError> {
    if facts.version.major() < MIN_MAJOR {
        return Err(BackupError::NoIncremental(format!(
            "an incremental backup needs PostgreSQL {MIN_MAJOR}+ (pg_basebackup --incremental and WAL summaries), and this server runs PostgreSQL {}; take a full backup instead (--type full)",
            facts.version.text
        )));
    }
    Ok(())
}

/// Picks the parent and checks that the server can take an incremental backup against it.
/// Called with the repository lock held (expire cannot remove the parent meanwhile).
pub fn prepare(
    repo: &Repo,
    target: &PgTarget,
    facts: &ServerFacts,
    checkpoint: Checkpoint,
) -> Result<Parent, BackupError> {
    check_version(facts)?;
    let parent = find_parent(repo, facts)?;
    let (start, timeline, id) = (
        parent.manifest.start_lsn,
        parent.manifest.timeline,
        parent.manifest.id.clone(),
    );
    block_on(preflight(target, checkpoint, &id, timeline, start))?;
    Ok(parent)
}

/// Writes the parent's backup_manifest into the work directory; the path for
/// `pg_basebackup --incremental`.
pub fn write_parent_manifest(work: &Path, parent: &Parent) -> Result<PathBuf, BackupError> {
    let path = work.join(PARENT_MANIFEST);
    std::fs::write(&path, &parent.pg_manifest).map_err(io_err(&path, "write"))?;
    Ok(path)
}

/// The newest complete backup of this cluster (system identifier), with its backup_manifest.
fn find_parent(repo: &Repo, facts: &ServerFacts) -> Result<Parent, BackupError> {
    let sysid = facts.system_identifier.to_string();
    let Some(parent) = manifest::list(repo)?
        .into_iter()
        .rev()
        .find(|m| m.system_identifier == sysid)
    else {
        return Err(BackupError::NoIncremental(
            "no backup to be incremental against; take a full backup first (--type full)".into(),
        ));
    };
    if parent.pg_major != facts.version.major() {
        return Err(BackupError::NoIncremental(format!(
            "the newest backup, {}, is of PostgreSQL {} and the server runs {}: an incremental backup needs a parent of the same major version; take a full backup (--type full)",
            parent.id,
            parent.pg_major,
            facts.version.major()
        )));
    }
    let key = Key::backup(&parent.id, "backup_manifest");
    let Some(pg_manifest) = repo.storage().read(&key)? else {
        return Err(BackupError::NoIncremental(format!(
            "backup {} has no backup_manifest in the repository, so nothing can be incremental against it; run `dbagent backups verify {}` and take a full backup (--type full)",
            parent.id, parent.id
        )));
    };
    if let Some(f) = parent.files.iter().find(|f| f.name == "backup_manifest") {
        let sha = hex::encode(Sha256::digest(&pg_manifest));
        if sha != f.sha256 {
            return Err(BackupError::NoIncremental(format!(
                "the backup_manifest of backup {} does not match its checksum in manifest.json (damaged?); run `dbagent backups verify {}` and take a full backup (--type full)",
                parent.id, parent.id
            )));
        }
    }
    Ok(Parent {
        manifest: parent,
        pg_manifest,
    })
}

/// Runs `f` to completion on a runtime of its own, in a thread of its own (the caller may be
/// inside another runtime).
fn block_on<T: Send>(
    f: impl Future<Output = Result<T, BackupError>> + Send,
) -> Result<T, BackupError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err(Path::new("tokio runtime"), "start"))?
                .block_on(f)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(BackupError::Refused(
                "the incremental pre-flight thread panicked".into(),
            ))
        })
    })
}

/// `summarize_wal` on, the summarizer caught up, the summaries reaching back to the parent.
async fn preflight(
    target: &PgTarget,
    checkpoint: Checkpoint,
    parent: &str,
    timeline: u32,
    start: Lsn,
) -> Result<(), BackupError> {
    let client = target.connect().await?;
    let q = |what: &'static str| move |e: tokio_postgres::Error| target.query_error(what, &e);
    let setting: String = client
        .query_one("SELECT current_setting('summarize_wal')", &[])
        .await
        .map_err(q("summarize_wal"))?
        .get(0);
    if setting != "on" {
        return Err(BackupError::NoIncremental(format!(
            "summarize_wal is off on the server: an incremental backup needs its WAL summaries; turn it on with `{ENABLE_SUMMARIZE_WAL}` (no restart needed), then take a full backup (--type full) for the incrementals to be taken against"
        )));
    }

    // Caught up: the summarizer has read the WAL that existed when we asked.
    let state = "SELECT pending_lsn::text, summarizer_pid, \
                 (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_insert_lsn() END)::text \
                 FROM pg_get_wal_summarizer_state()";
    let started = Instant::now();
    let mut goal: Option<Lsn> = None;
    let mut last_seen: Option<(Lsn, Instant)> = None;
    let mut nudged = false;
    loop {
        let row = match client.query_one(state, &[]).await {
            Ok(r) => r,
            Err(e) if no_privilege(&e) => {
                tracing::warn!(
                    "The backup role may not call pg_get_wal_summarizer_state(); not checking that the WAL summarizer has caught up (the server checks it during the backup)"
                );
                return Ok(());
            }
            Err(e) => return Err(q("the WAL summarizer's state")(e).into()),
        };
        let pending = row
            .get::<_, Option<String>>(0)
            .as_deref()
            .and_then(Lsn::parse);
        let pid: Option<i32> = row.get(1);
        let now_lsn = row
            .get::<_, Option<String>>(2)
            .as_deref()
            .and_then(Lsn::parse);
        let goal = *goal.get_or_insert(now_lsn.unwrap_or(Lsn(0)));
        let pending = pending.unwrap_or(Lsn(0));
        // Within a page: the insert position may sit past a page header the summarizer has
        // no record to read beyond.
        if pid.is_some() && pending.0 + WAL_PAGE >= goal.0 {
            break;
        }
        match last_seen {
            Some((lsn, _)) if lsn == pending => {}
            _ => last_seen = Some((pending, Instant::now())),
        }
        let still_since = last_seen.map_or(started, |(_, t)| t);
        if !nudged && checkpoint == Checkpoint::Fast && still_since.elapsed() >= NUDGE_AFTER {
            // A checkpoint wakes a sleeping summarizer; without the right to run one, wait.
            nudged = true;
            if let Err(e) = client.batch_execute("CHECKPOINT").await {
                tracing::debug!(error = %e, "Could not run CHECKPOINT to wake the WAL summarizer");
            }
        }
        if started.elapsed() >= CATCH_UP_WAIT {
            return Err(BackupError::NoIncremental(match pid {
                None => format!(
                    "summarize_wal is on but the WAL summarizer process is not running (waited {}s); look for walsummarizer errors in the server log, and make sure `{ENABLE_SUMMARIZE_WAL}` took effect",
                    CATCH_UP_WAIT.as_secs()
                ),
                Some(_) => format!(
                    "the WAL summarizer lags: it has read the WAL up to {pending}, and the server was at {goal} {}s ago; an incremental backup needs it caught up. Look for walsummarizer errors in the server log, or take a full backup (--type full)",
                    CATCH_UP_WAIT.as_secs()
                ),
            }));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let rows = match client
        .query(
            "SELECT tli::bigint, start_lsn::text, end_lsn::text FROM pg_available_wal_summaries()",
            &[],
        )
        .await
    {
        Ok(r) => r,
        Err(e) if no_privilege(&e) => {
            tracing::warn!(
                "The backup role may not call pg_available_wal_summaries(); not checking that the WAL summaries reach back to the parent backup (the server checks it during the backup)"
            );
            return Ok(());
        }
        Err(e) => return Err(q("the available WAL summaries")(e).into()),
    };
    let summaries: Vec<Summary> = rows
        .iter()
        .filter_map(|r| {
            Some(Summary {
                tli: u32::try_from(r.get::<_, i64>(0)).ok()?,
                start: Lsn::parse(r.get(1))?,
                end: Lsn::parse(r.get(2))?,
            })
        })
        .collect();
    if !reaches_back(&summaries, timeline, start) {
        return Err(BackupError::NoIncremental(format!(
            "the WAL summaries no longer reach back to backup {parent} (its start LSN {start} on timeline {timeline}; the server keeps them for wal_summary_keep_time, and has none from before summarize_wal was turned on); take a full backup (--type full)"
        )));
    }
    Ok(())
}

fn no_privilege(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
}

/// One row of `pg_available_wal_summaries()`.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub tli: u32,
    pub start: Lsn,
    pub end: Lsn,
}

/// Whether the summaries of `tli` cover, without a gap, everything from `from` to the newest
/// one of that timeline.
pub fn reaches_back(summaries: &[Summary], tli: u32, from: Lsn) -> bool {
    let mut own: Vec<&Summary> = summaries.iter().filter(|s| s.tli == tli).collect();
    own.sort_by_key(|s| (s.start, s.end));
    // One must hold `from` (or end there: the next starts at that redo point). Summaries that
    // all end before it have not got there: the summarizer was off at the parent's start.
    if !own.iter().any(|s| s.start <= from && s.end >= from) {
        return false;
    }
    let newest = own.iter().map(|s| s.end).max().unwrap_or(from);
    let mut covered = from;
    for s in own {
        if s.start <= covered && s.end > covered {
            covered = s.end;
        }
    }
    covered >= newest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::ServerVersion;

    fn facts(num: u32, text: &str) -> ServerFacts {
        ServerFacts {
            version: ServerVersion::from_num(num, text),
            system_identifier: 7_000_000_000_000_000_001,
            wal_segment_size: 16 << 20,
            tablespaces: Vec::new(),
            estimated_size: 0,
            archive_mode: "on".into(),
            in_recovery: false,
            server_compression: Vec::new(),
        }
    }

    fn s(tli: u32, start: u64, end: u64) -> Summary {
        Summary {
            tli,
            start: Lsn(start),
            end: Lsn(end),
        }
    }

    #[test]
    fn an_incremental_before_17_is_refused_naming_the_version_and_the_way_out() {
        let err = check_version(&facts(160004, "16.4")).expect_err("16 refused");
        let msg = err.to_string();
        assert!(msg.contains("needs PostgreSQL 17+"), "{msg}");
        assert!(msg.contains("runs PostgreSQL 16.4"), "{msg}");
        assert!(
            msg.ends_with("take a full backup instead (--type full)"),
            "{msg}"
        );
        check_version(&facts(170002, "17.2")).expect("17 accepted");
        check_version(&facts(180001, "18.1")).expect("18 accepted");
    }

    #[test]
    fn summaries_reach_back_when_they_cover_from_the_parent_without_a_gap() {
        // Summaries end at checkpoint redo points: the parent's start is one of them.
        let sums = [s(1, 100, 200), s(1, 200, 300), s(1, 300, 450)];
        assert!(reaches_back(&sums, 1, Lsn(200)));
        assert!(reaches_back(&sums, 1, Lsn(250)));
        assert!(reaches_back(&sums, 1, Lsn(100)));
        // Nothing summarized since the parent started.
        assert!(reaches_back(&[s(1, 100, 200)], 1, Lsn(200)));
    }

    #[test]
    fn summaries_do_not_reach_back_when_removed_or_started_later_or_with_a_gap() {
        // The oldest ones were removed (wal_summary_keep_time), or summarize_wal came later.
        assert!(!reaches_back(&[s(1, 300, 400)], 1, Lsn(200)));
        assert!(!reaches_back(&[], 1, Lsn(200)));
        // All end before the parent started (summarize_wal was off then, on again since).
        assert!(!reaches_back(&[s(1, 100, 150)], 1, Lsn(200)));
        assert!(!reaches_back(
            &[s(1, 100, 150), s(1, 150, 180)],
            1,
            Lsn(200)
        ));
        // Another timeline's summaries do not count.
        assert!(!reaches_back(&[s(2, 100, 400)], 1, Lsn(200)));
        // A hole (summarize_wal off for a while).
        assert!(!reaches_back(
            &[s(1, 100, 200), s(1, 200, 300), s(1, 350, 400)],
            1,
            Lsn(200)
        ));
    }

    #[test]
    fn the_parent_is_the_newest_backup_of_the_same_cluster_and_its_manifest_must_match() {
        use crate::backup::manifest::{BackupFile, BackupType, MANIFEST_FORMAT};
        use crate::repo::Compression;
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::at(dir.path());
        let f = facts(180001, "18.1");
        let err = find_parent(&repo, &f).expect_err("empty repository");
        assert_eq!(
            err.to_string(),
            "no backup to be incremental against; take a full backup first (--type full)"
        );
        let put = |id: &str, sysid: u64, minute: u32, pg_manifest: &[u8], sha: &str| {
            let d = dir.path().join("backups").join(id);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("backup_manifest"), pg_manifest).expect("write");
            let t: jiff::Timestamp = format!("2026-12-01T10:{minute:02}:00Z")
                .parse()
                .expect("time");
            let m = BackupManifest {
                format: MANIFEST_FORMAT,
                id: id.into(),
                label: None,
                system_identifier: sysid.to_string(),
                pg_version: "18.1".into(),
                pg_major: 18,
                timeline: 1,
                start_lsn: Lsn(0x200_0028),
                stop_lsn: Lsn(0x200_0100),
                wal_start: "000000010000000000000002".into(),
                wal_stop: "000000010000000000000002".into(),
                wal_segment_size: 16 << 20,
                start_time: t,
                stop_time: t,
                compression: Compression::Zstd,
                compressed_by: "dbagent".into(),
                files: vec![BackupFile {
                    name: "backup_manifest".into(),
                    size: pg_manifest.len() as u64,
                    stored_size: pg_manifest.len() as u64,
                    sha256: sha.into(),
                    tablespace: None,
                    index: None,
                }],
                dbagent_version: "test".into(),
                backup_type: BackupType::Full,
                parent: None,
                taken_from: None,
            };
            std::fs::write(
                d.join("manifest.json"),
                serde_json::to_vec(&m).expect("json"),
            )
            .expect("write");
        };
        let good = br#"{"PostgreSQL-Backup-Manifest-Version": 2}"#;
        let sha = hex::encode(Sha256::digest(good));
        put("20261201T100000Z", f.system_identifier, 0, good, &sha);
        put("20261201T100100Z", f.system_identifier, 1, good, &sha);
        // Newer, but of another cluster: never a parent.
        put("20261201T100200Z", 42, 2, good, &sha);
        let p = find_parent(&repo, &f).expect("parent");
        assert_eq!(p.manifest.id, "20261201T100100Z");
        assert_eq!(p.pg_manifest, good);
        put("20261201T100300Z", f.system_identifier, 3, b"damaged", &sha);
        let err = find_parent(&repo, &f).expect_err("damaged");
        assert!(
            err.to_string()
                .starts_with("the backup_manifest of backup 20261201T100300Z does not match"),
            "{err}"
        );
        let err = find_parent(&repo, &facts(170002, "17.2")).expect_err("other major");
        assert!(err.to_string().contains("same major version"), "{err}");
    }
}
