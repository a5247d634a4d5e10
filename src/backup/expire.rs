//! Retention: which backups and archived WAL `dbagent backups expire` removes, and removing
//! them. [`plan`] decides from data alone (manifests, WAL names, `retention`, the time), so
//! the decision is unit-tested and printed by `--dry-run` exactly as it is executed;
//! [`expire`] takes the repository lock, reads the repository, plans and executes.
//!
//! Safety invariant: retention never expires the WAL that a kept backup needs to reach its
//! recovery window. Every segment from the oldest kept backup's `wal_start` on is kept (and
//! every segment on a newer timeline, and every timeline history file); with no backups at
//! all nothing is removed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::chain;
use super::manifest::{self, BackupManifest, BackupType};
use super::verify::WalRange;
use crate::config::RetentionConfig;
use crate::repo::storage::Leftover;
use crate::repo::{Key, Kind, Repo, RepoError};
use crate::wal::{WalFileKind, WalName};

/// Temp files of interrupted WAL writes younger than this are left alone: a wal-push (which
/// does not take the repository lock) may still be writing them.
pub const TEMP_FILE_MIN_AGE: Duration = Duration::from_secs(60 * 60);

/// Which retention rules keep a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepRules {
    /// One of the newest `retention.full` backups.
    pub full: bool,
    /// Its stop time is within `retention.window`.
    pub window: bool,
    /// The newest backup that stopped before the window starts: replaying WAL from it
    /// reaches the window's start.
    pub window_start: bool,
    /// A kept incremental backup depends on it (it is in that backup's chain).
    pub chain: bool,
}

impl KeepRules {
    pub fn any(self) -> bool {
        self.full || self.window || self.window_start || self.chain
    }

    /// Stable identifiers of the rules, joined by `+`: `full`, `window`, `window_start`,
    /// `chain`, `full+window`, `full+window_start`, `window+chain`, ...
    pub fn reason(self) -> String {
        let mut parts = Vec::new();
        if self.full {
            parts.push("full");
        }
        if self.window {
            parts.push("window");
        }
        if self.window_start {
            parts.push("window_start");
        }
        if self.chain {
            parts.push("chain");
        }
        parts.join("+")
    }

    /// The rules in words, for the text output.
    pub fn describe(self, retention: &RetentionConfig) -> String {
        let window = retention.window.map(short_duration).unwrap_or_default();
        let mut parts = Vec::new();
        if self.full {
            parts.push(match retention.full {
                0 | 1 => "the newest full backup or its chain (retention.full)".to_string(),
                n => format!("one of the newest {n} full backups or their chains (retention.full)"),
            });
        }
        if self.window {
            parts.push(format!("within the {window} window (retention.window)"));
        }
        if self.window_start {
            parts.push(format!(
                "needed to restore to the start of the {window} window (retention.window)"
            ));
        }
        if self.chain {
            parts.push("a kept incremental backup depends on it (chain)".to_string());
        }
        parts.join("; ")
    }
}

/// `7d`, `36h`, `90m`, `45s`: a duration as written in dbagent.yml.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A backup that stays, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptBackup {
    pub id: String,
    /// [`KeepRules::reason`].
    pub reason: String,
    #[serde(skip)]
    pub rules: KeepRules,
}

/// What an expire run removes; data only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ExpirePlan {
    /// Oldest first.
    pub kept: Vec<KeptBackup>,
    /// Backup IDs, oldest first.
    pub removed: Vec<String>,
    /// The oldest kept backup's `wal_start`: WAL from here on is kept. None when no WAL is
    /// removed at all.
    pub wal_kept_from: Option<String>,
    /// WAL file names (segments, `.partial`, `.backup`), sorted.
    pub wal_removed: Vec<String>,
    /// Why WAL that looks expendable is kept anyway (a manifest whose WAL range is unreadable).
    pub notes: Vec<String>,
}

/// Decides which backups and WAL files to remove. `wal` is every WAL file of the archive
/// (duplicates allowed); `now` is the end of the recovery window. `retention.full` counts
/// full backups: the newest N full backups are kept with every incremental backup built on
/// them; the window rules keep what restores into the window. A backup is kept if any rule
/// keeps it, and so is every backup a kept incremental depends on (its chain). The newest
/// backup is always kept, even with `retention.full` 0.
pub fn plan(
    backups: &[BackupManifest],
    wal: &[WalName],
    retention: &RetentionConfig,
    now: jiff::Timestamp,
) -> ExpirePlan {
    let mut sorted: Vec<&BackupManifest> = backups.iter().collect();
    sorted.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
    let n = sorted.len();
    let mut rules = vec![KeepRules::default(); n];

    let full = usize::try_from(retention.full.max(1)).unwrap_or(usize::MAX);
    let kept_fulls: BTreeSet<&str> = sorted
        .iter()
        .filter(|m| m.backup_type == BackupType::Full)
        .rev()
        .take(full)
        .map(|m| m.id.as_str())
        .collect();
    for (i, m) in sorted.iter().enumerate() {
        let root = chain::root_of(backups, &m.id).map(|r| r.id.as_str());
        if root.is_some_and(|r| kept_fulls.contains(r)) || i + 1 == n {
            rules[i].full = true;
        }
    }
    if let Some(window) = retention.window {
        // A window reaching before the representable past keeps everything.
        let cutoff = now.checked_sub(window).unwrap_or(jiff::Timestamp::MIN);
        let mut before: Option<usize> = None;
        for (i, m) in sorted.iter().enumerate() {
            if m.stop_time >= cutoff {
                rules[i].window = true;
            } else if before.is_none_or(|b| m.stop_time >= sorted[b].stop_time)
                // An incremental whose chain is broken restores nothing.
                && chain::chain(backups, &m.id).is_ok()
            {
                before = Some(i);
            }
        }
        if let Some(b) = before {
            rules[b].window_start = true;
        }
    }
    // Never remove a backup that a kept one depends on.
    let mut keep: BTreeSet<String> = sorted
        .iter()
        .zip(&rules)
        .filter(|(_, r)| r.any())
        .map(|(m, _)| m.id.clone())
        .collect();
    chain::close_over_parents(backups, &mut keep);
    for (m, r) in sorted.iter().zip(rules.iter_mut()) {
        if !r.any() && keep.contains(&m.id) {
            r.chain = true;
        }
    }

    let mut out = ExpirePlan::default();
    let mut kept: Vec<&BackupManifest> = Vec::new();
    for (m, r) in sorted.iter().zip(&rules) {
        if r.any()
            && let Err(e) = chain::chain(backups, &m.id)
        {
            out.notes.push(format!(
                "backup {} is kept but cannot be restored: {e}",
                m.id
            ));
        }
        if r.any() {
            kept.push(m);
            out.kept.push(KeptBackup {
                id: m.id.clone(),
                reason: r.reason(),
                rules: *r,
            });
        } else {
            out.removed.push(m.id.clone());
        }
    }

    // WAL: removable only when below the start of every kept backup's WAL, on its timeline or
    // an older one. With backups in time order that is "below the oldest kept backup".
    let mut bounds = Vec::new();
    let mut unreadable = false;
    for m in &kept {
        match WalRange::of(m) {
            Ok(r) => bounds.push(r),
            Err(e) => {
                unreadable = true;
                out.notes.push(format!(
                "no WAL removed: the WAL range of backup {} is unreadable ({e}); run `dbagent backups verify {}`",
                m.id, m.id
            ))
            }
        }
    }
    if bounds.is_empty() || unreadable {
        return out;
    }
    out.wal_kept_from = kept.first().map(|m| m.wal_start.clone());
    let removable = |w: &WalName| {
        w.kind != WalFileKind::History
            && bounds
                .iter()
                .all(|b| w.tli <= b.tli && w.segno(b.seg_size) < b.first)
    };
    let names: BTreeSet<&str> = wal
        .iter()
        .filter(|w| removable(w))
        .map(|w| w.name.as_str())
        .collect();
    out.wal_removed = names.into_iter().map(str::to_string).collect();
    out
}

/// What an expire run did (or, with `dry_run`, would do); `backups expire --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpireReport {
    pub dry_run: bool,
    pub kept: Vec<KeptBackup>,
    pub removed: Vec<String>,
    pub wal_removed: usize,
    pub wal_removed_first: Option<String>,
    pub wal_removed_last: Option<String>,
    pub wal_kept_from: Option<String>,
    /// Leftovers of interrupted backups, expires and WAL writes.
    pub leftovers_removed: Vec<String>,
    pub notes: Vec<String>,
}

impl ExpireReport {
    fn new(plan: &ExpirePlan, leftovers: &[PathBuf], dry_run: bool) -> ExpireReport {
        ExpireReport {
            dry_run,
            kept: plan.kept.clone(),
            removed: plan.removed.clone(),
            wal_removed: plan.wal_removed.len(),
            wal_removed_first: plan.wal_removed.first().cloned(),
            wal_removed_last: plan.wal_removed.last().cloned(),
            wal_kept_from: plan.wal_kept_from.clone(),
            leftovers_removed: leftovers.iter().map(|p| p.display().to_string()).collect(),
            notes: plan.notes.clone(),
        }
    }
}

/// One stored WAL file.
#[derive(Debug, Clone)]
pub struct StoredWal {
    pub name: WalName,
    pub key: Key,
}

/// Applies `retention` to `repo` under the repository lock (also for a dry run, so the
/// leftovers it lists are not the work of a running backup). A repository that does not
/// exist yet has nothing to expire and is not created.
pub fn expire(
    repo: &Repo,
    retention: &RetentionConfig,
    lock_wait: Duration,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<ExpireReport, RepoError> {
    if repo.info()?.is_none() && repo.storage().check_present().is_err() {
        return Ok(ExpireReport::new(&ExpirePlan::default(), &[], dry_run));
    }
    let _lock = repo.lock("expire", lock_wait)?;
    // A drill restoring a backup holds it in use: wait for it (or fail naming it).
    let _in_use = repo.lock_for_delete("expire", lock_wait)?;
    let backups = manifest::list(repo)?;
    let wal = scan_wal(repo)?;
    let names: Vec<WalName> = wal.iter().map(|w| w.name.clone()).collect();
    let plan = plan(&backups, &names, retention, now);
    let leftovers = leftovers(repo, now)?;
    if !dry_run {
        execute(repo, &plan, &wal, &leftovers)?;
    }
    let shown: Vec<PathBuf> = leftovers.iter().map(|l| l.location.clone()).collect();
    Ok(ExpireReport::new(&plan, &shown, dry_run))
}

/// Removes what `plan` says: backups (each stops existing at once), then WAL oldest first,
/// then leftovers.
pub fn execute(
    repo: &Repo,
    plan: &ExpirePlan,
    wal: &[StoredWal],
    leftovers: &[Leftover],
) -> Result<(), RepoError> {
    for id in &plan.removed {
        remove_backup(repo, id)?;
    }

    let doomed: BTreeSet<&str> = plan.wal_removed.iter().map(String::as_str).collect();
    let mut files: Vec<&StoredWal> = wal
        .iter()
        .filter(|w| doomed.contains(w.name.name.as_str()))
        .collect();
    files.sort_by(|a, b| a.name.name.cmp(&b.name.name));
    let keys: Vec<Key> = files.into_iter().map(|w| w.key.clone()).collect();
    repo.storage().delete(&keys)?;

    for leftover in leftovers {
        tracing::info!(path = %leftover.location.display(), "Removing leftover");
        repo.storage().remove_leftover(leftover)?;
    }
    Ok(())
}

fn remove_backup(repo: &Repo, id: &str) -> Result<(), RepoError> {
    let manifest_key = manifest::backup_key(id, manifest::MANIFEST_FILE);
    if id.is_empty() || id.starts_with('.') || id.contains('/') {
        return Err(RepoError::Corrupt {
            path: repo.locate_kind(Kind::Backup).join(id),
            detail: format!("backup ID `{id}` is not a directory name"),
        });
    }
    // The stored backup must be this very backup: never remove one by a guessed name.
    match manifest::read_manifest(repo, id)? {
        Some(m) if m.id == id => {}
        _ => {
            return Err(RepoError::Corrupt {
                path: repo.locate(&manifest_key),
                detail: format!("it does not describe backup {id}; nothing was removed for it"),
            });
        }
    }
    tracing::info!(backup = %id, "Expiring backup");
    repo.storage().delete_backup(id)
}

/// Every stored WAL file (segments, `.partial`, `.backup`, `.history`).
pub fn scan_wal(repo: &Repo) -> Result<Vec<StoredWal>, RepoError> {
    Ok(crate::wal::list_stored(repo, "")?
        .into_iter()
        .map(|(name, _, meta)| StoredWal {
            name,
            key: meta.key,
        })
        .collect())
}

/// The work of interrupted writers that expire removes: leftovers of backups and expires
/// (only meaningful under the repository lock, which every backup run holds), and temp files
/// of WAL writes last written at least [`TEMP_FILE_MIN_AGE`] before `now` (a wal-push does
/// not take the lock).
pub fn leftovers(repo: &Repo, now: jiff::Timestamp) -> Result<Vec<Leftover>, RepoError> {
    let now = SystemTime::from(now);
    let (mut always, mut temps): (Vec<Leftover>, Vec<Leftover>) = repo
        .storage()
        .leftovers()?
        .into_iter()
        .partition(|l| l.written.is_none());
    temps.retain(|l| {
        l.written.is_some_and(|t| {
            now.duration_since(t)
                .is_ok_and(|age| age >= TEMP_FILE_MIN_AGE)
        })
    });
    temps.sort_by(|a, b| a.location.cmp(&b.location));
    always.extend(temps);
    Ok(always)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::MANIFEST_FILE;
    use crate::backup::verify::tests::{SEG, manifest};
    use crate::wal::name::segment_name;
    use proptest::prelude::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn retention(full: u32, window: Option<Duration>) -> RetentionConfig {
        RetentionConfig { full, window }
    }

    fn seg(tli: u32, segno: u64) -> WalName {
        WalName::parse(&segment_name(tli, segno, SEG)).unwrap()
    }

    fn segs(tli: u32, range: std::ops::Range<u64>) -> Vec<WalName> {
        range.map(|s| seg(tli, s)).collect()
    }

    /// Four daily backups on timeline 1: day N needs segments 10N..=10N+2.
    fn four_days() -> Vec<BackupManifest> {
        (1..=4)
            .map(|d| {
                manifest(
                    &format!("2026112{d}T000000Z"),
                    1,
                    10 * d,
                    10 * d + 2,
                    &format!("2026-11-2{d}T00:01:00Z"),
                )
            })
            .collect()
    }

    fn ids(kept: &[KeptBackup]) -> Vec<&str> {
        kept.iter().map(|k| k.id.as_str()).collect()
    }

    #[test]
    fn keep_two_of_four_keeps_the_two_newest_and_wal_from_the_older_kept_one() {
        let backups = four_days();
        let wal = segs(1, 0..50);
        let p = plan(
            &backups,
            &wal,
            &retention(2, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert_eq!(ids(&p.kept), ["20261123T000000Z", "20261124T000000Z"]);
        assert!(p.kept.iter().all(|k| k.reason == "full"));
        assert_eq!(p.removed, ["20261121T000000Z", "20261122T000000Z"]);
        let expected: Vec<String> = (0..30).map(|s| segment_name(1, s, SEG)).collect();
        assert_eq!(p.wal_removed, expected);
        assert_eq!(p.wal_kept_from.as_deref(), Some(&*segment_name(1, 30, SEG)));
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut backups = four_days();
        backups.reverse();
        let p = plan(
            &backups,
            &[],
            &retention(1, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert_eq!(ids(&p.kept), ["20261124T000000Z"]);
        assert_eq!(p.removed.len(), 3);
    }

    #[test]
    fn window_keeps_the_backup_before_the_window_start() {
        let backups = four_days();
        let wal = segs(1, 0..50);
        // Window start: 2026-11-22T12:00Z. Days 3 and 4 stopped inside it; day 2 stopped just
        // before it and is needed to restore to its start; day 1 is not needed.
        let p = plan(
            &backups,
            &wal,
            &retention(1, Some(Duration::from_secs(60 * 60 * 60))),
            ts("2026-11-25T00:00:00Z"),
        );
        let kept: Vec<(&str, &str)> = p
            .kept
            .iter()
            .map(|k| (k.id.as_str(), k.reason.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("20261122T000000Z", "window_start"),
                ("20261123T000000Z", "window"),
                ("20261124T000000Z", "full+window"),
            ]
        );
        assert_eq!(p.removed, ["20261121T000000Z"]);
        assert_eq!(p.wal_removed.last().unwrap(), &segment_name(1, 19, SEG));
        assert_eq!(p.wal_removed.len(), 20);
    }

    #[test]
    fn window_covering_everything_keeps_everything() {
        let p = plan(
            &four_days(),
            &segs(1, 0..50),
            &retention(1, Some(Duration::from_secs(u64::MAX / 2))),
            ts("2026-11-25T00:00:00Z"),
        );
        assert_eq!(p.kept.len(), 4);
        assert!(p.removed.is_empty());
        assert_eq!(
            p.wal_removed.len(),
            10,
            "only WAL older than the oldest backup"
        );
    }

    #[test]
    fn no_backups_no_wal_removed() {
        let wal = segs(1, 0..50);
        let p = plan(&[], &wal, &retention(1, None), ts("2026-11-25T00:00:00Z"));
        assert_eq!(p, ExpirePlan::default());
    }

    #[test]
    fn history_files_and_newer_timelines_are_never_removed() {
        let backups = four_days();
        let mut wal = segs(1, 0..50);
        wal.extend(segs(2, 0..50));
        for extra in [
            "00000001.history",
            "00000002.history",
            "000000010000000000000005.partial",
            "000000010000000000000006.00000028.backup",
            "000000010000000000000028.00000028.backup",
        ] {
            wal.push(WalName::parse(extra).unwrap());
        }
        let p = plan(
            &backups,
            &wal,
            &retention(1, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert!(p.wal_removed.iter().all(|n| !n.ends_with(".history")));
        assert!(p.wal_removed.iter().all(|n| n.starts_with("00000001")));
        assert!(
            p.wal_removed
                .contains(&"000000010000000000000005.partial".to_string())
        );
        assert!(
            p.wal_removed
                .contains(&"000000010000000000000006.00000028.backup".to_string())
        );
        assert!(
            !p.wal_removed
                .contains(&"000000010000000000000028.00000028.backup".to_string())
        );
        assert_eq!(p.wal_removed.len(), 40 + 2);
    }

    #[test]
    fn older_timelines_below_the_kept_start_go() {
        // The kept backup is on timeline 2 from segment 40: timeline 1 below 40 goes.
        let mut backups = four_days();
        backups[3] = manifest("20261124T000000Z", 2, 40, 42, "2026-11-24T00:01:00Z");
        let mut wal = segs(1, 0..45);
        wal.extend(segs(2, 35..50));
        let p = plan(
            &backups,
            &wal,
            &retention(1, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert!(p.wal_removed.contains(&segment_name(1, 39, SEG)));
        assert!(p.wal_removed.contains(&segment_name(2, 39, SEG)));
        assert!(!p.wal_removed.contains(&segment_name(1, 40, SEG)));
        assert!(!p.wal_removed.contains(&segment_name(2, 40, SEG)));
    }

    #[test]
    fn unreadable_wal_range_of_a_kept_backup_removes_no_wal() {
        let mut backups = four_days();
        backups[3].wal_start = "garbage".into();
        let p = plan(
            &backups,
            &segs(1, 0..50),
            &retention(2, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert!(p.wal_removed.is_empty());
        assert_eq!(p.wal_kept_from, None);
        assert!(p.notes[0].contains("20261124T000000Z"), "{:?}", p.notes);
        assert_eq!(p.removed.len(), 2);
    }

    /// F1 <- I1 <- I2 (day 1), F2 <- I3 (day 2).
    fn two_chains() -> Vec<BackupManifest> {
        use crate::backup::chain::tests::incremental;
        vec![
            manifest("F1", 1, 10, 10, "2026-11-21T00:00:00Z"),
            incremental("I1", "F1", 12, "2026-11-21T06:00:00Z"),
            incremental("I2", "I1", 14, "2026-11-21T12:00:00Z"),
            manifest("F2", 1, 20, 20, "2026-11-22T00:00:00Z"),
            incremental("I3", "F2", 22, "2026-11-22T06:00:00Z"),
        ]
    }

    #[test]
    fn retention_full_counts_chains_and_removes_a_whole_old_chain() {
        let p = plan(
            &two_chains(),
            &segs(1, 0..30),
            &retention(1, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert_eq!(ids(&p.kept), ["F2", "I3"]);
        assert!(p.kept.iter().all(|k| k.reason == "full"));
        assert_eq!(p.removed, ["F1", "I1", "I2"]);
        assert_eq!(p.wal_kept_from.as_deref(), Some(&*segment_name(1, 20, SEG)));
        let p = plan(
            &two_chains(),
            &[],
            &retention(2, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert_eq!(p.kept.len(), 5);
    }

    #[test]
    fn a_kept_incremental_keeps_its_whole_chain() {
        // The window (from 2026-11-21T10:00Z) holds I2, F2, I3; I2 needs I1 and F1.
        let p = plan(
            &two_chains(),
            &segs(1, 0..30),
            &retention(1, Some(Duration::from_secs(86 * 3600))),
            ts("2026-11-25T00:00:00Z"),
        );
        let kept: Vec<(&str, &str)> = p
            .kept
            .iter()
            .map(|k| (k.id.as_str(), k.reason.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("F1", "chain"),
                ("I1", "window_start"),
                ("I2", "window"),
                ("F2", "full+window"),
                ("I3", "full+window"),
            ]
        );
        assert!(p.removed.is_empty());
        assert_eq!(p.wal_kept_from.as_deref(), Some(&*segment_name(1, 10, SEG)));
        let described = p.kept[0].rules.describe(&retention(1, None));
        assert!(described.contains("depends on it"), "{described}");
    }

    #[test]
    fn the_newest_backup_is_kept_even_when_its_chain_is_broken() {
        use crate::backup::chain::tests::incremental;
        let mut b = two_chains();
        b.push(incremental("X", "gone", 24, "2026-11-23T00:00:00Z"));
        let p = plan(&b, &[], &retention(1, None), ts("2026-11-25T00:00:00Z"));
        assert_eq!(ids(&p.kept), ["F2", "I3", "X"]);
        assert!(p.notes.iter().any(|n| n.contains("gone")), "{:?}", p.notes);
    }

    #[test]
    fn full_zero_still_keeps_the_newest() {
        let p = plan(
            &four_days(),
            &[],
            &retention(0, None),
            ts("2026-11-25T00:00:00Z"),
        );
        assert_eq!(ids(&p.kept), ["20261124T000000Z"]);
    }

    /// Random backup sets: each entry is (gap in hours since the previous backup, segments
    /// of WAL written since the previous backup's start, WAL segments it spans, whether the
    /// timeline changed) and (whether it is incremental, how far back its parent is, whether
    /// its parent is missing).
    fn backups_strategy() -> impl Strategy<Value = Vec<BackupManifest>> {
        prop::collection::vec(
            (
                (1u64..72, 1u64..40, 0u64..4, prop::bool::weighted(0.2)),
                (
                    prop::bool::weighted(0.6),
                    0usize..8,
                    prop::bool::weighted(0.05),
                ),
            ),
            0..10,
        )
        .prop_map(|specs| {
            let mut out: Vec<BackupManifest> = Vec::new();
            let mut time = ts("2026-01-01T00:00:00Z");
            let (mut segno, mut tli) = (5u64, 1u32);
            for (i, ((gap, advance, span, new_tli), (incremental, back, orphan))) in
                specs.into_iter().enumerate()
            {
                time += jiff::SignedDuration::from_hours(gap as i64);
                segno += advance;
                if new_tli {
                    tli += 1;
                }
                let stop = time.to_string();
                let mut m = manifest(&format!("b{i:02}"), tli, segno, segno + span, &stop);
                // An incremental on one of the (up to 8) previous backups, or on one that is
                // not in the repository.
                if incremental && i > 0 {
                    m.backup_type = BackupType::Incremental;
                    m.parent = Some(if orphan {
                        "gone".to_string()
                    } else {
                        out[i - 1 - back.min(i - 1)].id.clone()
                    });
                }
                out.push(m);
            }
            out
        })
    }

    proptest! {
        #[test]
        fn wal_from_the_oldest_kept_backup_on_is_never_removed(
            backups in backups_strategy(),
            full in 0u32..5,
            window_hours in prop::option::of(0u64..400),
            now_offset_hours in 0u64..800,
        ) {
            let max_tli = backups.iter().map(|b| b.timeline).max().unwrap_or(1);
            let max_seg = backups.iter().map(|b| WalRange::of(b).unwrap().last).max().unwrap_or(10) + 5;
            let mut wal = Vec::new();
            for tli in 1..=max_tli + 1 {
                wal.extend(segs(tli, 0..max_seg));
                wal.push(WalName::parse(&format!("{tli:08X}.history")).unwrap());
            }
            let now = ts("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_hours(now_offset_hours as i64);
            let window = window_hours.map(|h| Duration::from_secs(h * 3600));
            let p = plan(&backups, &wal, &retention(full, window), now);

            // Every backup is either kept or removed, once.
            prop_assert_eq!(p.kept.len() + p.removed.len(), backups.len());
            if backups.is_empty() {
                prop_assert!(p.wal_removed.is_empty());
                return Ok(());
            }
            // The newest backup is always kept.
            prop_assert_eq!(&p.kept.last().unwrap().id, &backups.last().unwrap().id);
            // At least min(full, number of full backups) full backups are kept, each with every
            // incremental built on it.
            let kept_ids: BTreeSet<&str> = p.kept.iter().map(|k| k.id.as_str()).collect();
            let fulls: Vec<&BackupManifest> = backups
                .iter()
                .filter(|b| b.backup_type == BackupType::Full)
                .collect();
            let newest_fulls: Vec<&str> = fulls
                .iter()
                .rev()
                .take(full.max(1) as usize)
                .map(|b| b.id.as_str())
                .collect();
            for f in &newest_fulls {
                prop_assert!(kept_ids.contains(f), "full {} removed", f);
            }
            for b in &backups {
                if let Some(root) = chain::root_of(&backups, &b.id)
                    && newest_fulls.contains(&root.id.as_str())
                {
                    prop_assert!(kept_ids.contains(b.id.as_str()), "{} of a kept chain removed", b.id);
                }
            }
            // Never remove a backup that a kept one depends on: every kept backup's existing
            // ancestors are kept.
            for k in &p.kept {
                let (ancestors, _) = chain::chain_ids(&backups, &k.id);
                for a in &ancestors {
                    prop_assert!(kept_ids.contains(a.as_str()), "{} needed by {} removed", a, k.id);
                }
            }

            let by_id = |id: &str| backups.iter().find(|b| b.id == id).unwrap();
            let oldest_kept = by_id(&p.kept[0].id);
            let start = WalRange::of(oldest_kept).unwrap();
            let removed: BTreeSet<&str> = p.wal_removed.iter().map(String::as_str).collect();
            for w in &wal {
                let needed = w.kind == WalFileKind::History
                    || w.tli > start.tli
                    || w.segno(SEG) >= start.first;
                if needed {
                    prop_assert!(!removed.contains(w.name.as_str()), "{} removed", w.name);
                }
            }
            // Every kept backup's own WAL is kept.
            for k in &p.kept {
                for name in WalRange::of(by_id(&k.id)).unwrap().names() {
                    prop_assert!(!removed.contains(name.as_str()), "{} of {} removed", name, k.id);
                }
            }
            // The recovery window is reachable: if some backup could restore to the window's
            // start, a kept one can, and every backup stopped inside the window is kept.
            if let Some(w) = window {
                let cutoff = now.checked_sub(w).unwrap();
                let kept: Vec<&BackupManifest> = p.kept.iter().map(|k| by_id(&k.id)).collect();
                let restorable = |b: &BackupManifest| chain::chain(&backups, &b.id).is_ok();
                if backups.iter().any(|b| b.stop_time < cutoff && restorable(b)) {
                    prop_assert!(kept.iter().any(|b| b.stop_time < cutoff && restorable(b)));
                }
                for b in &backups {
                    if b.stop_time >= cutoff {
                        prop_assert!(kept.iter().any(|k| k.id == b.id), "{} in window removed", b.id);
                    }
                }
            }
        }
    }

    // --- execution, on a repository in a tempdir ---

    fn write_manifest(repo: &Repo, m: &BackupManifest) {
        let s = repo.storage();
        s.put(&Key::backup(&m.id, "base.tar.zst"), b"data").unwrap();
        let json = serde_json::to_vec(m).unwrap();
        s.put(&Key::backup(&m.id, MANIFEST_FILE), &json).unwrap();
    }

    fn write_wal(repo: &Repo, w: &WalName) {
        let key = crate::wal::stored_key(w, crate::repo::Compression::Zstd);
        repo.storage().put(&key, b"wal").unwrap();
    }

    fn synthetic_repo() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(dir.path().join("repo"));
        fill(&repo);
        (dir, repo)
    }

    fn fill(repo: &Repo) {
        repo.bind(7_000_000_000_000_000_001, Some(15), SEG).unwrap();
        for m in four_days() {
            write_manifest(repo, &m);
        }
        for w in segs(1, 0..50) {
            write_wal(repo, &w);
        }
        write_wal(repo, &WalName::parse("00000001.history").unwrap());
    }

    fn tree(root: &std::path::Path) -> Vec<String> {
        fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().display().to_string());
                if p.is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn dry_run_removes_nothing_and_reports_the_plan() {
        let (_d, repo) = synthetic_repo();
        let root = _d.path().join("repo");
        std::fs::create_dir_all(root.join("backups/.partial-20261125T000000Z")).unwrap();
        let before = tree(&root);
        let now = ts("2026-11-25T00:00:00Z");
        let r = expire(&repo, &retention(2, None), Duration::ZERO, now, true).unwrap();
        assert!(r.dry_run);
        assert_eq!(r.removed, ["20261121T000000Z", "20261122T000000Z"]);
        assert_eq!(r.wal_removed, 30);
        assert_eq!(r.leftovers_removed.len(), 1);
        let after: Vec<String> = tree(&root)
            .into_iter()
            .filter(|p| p != "lock" && p != "lock.use")
            .collect();
        let before: Vec<String> = before
            .into_iter()
            .filter(|p| p != "lock" && p != "lock.use")
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn expire_removes_exactly_the_plan_and_leftovers() {
        let (_d, repo) = synthetic_repo();
        let backups = _d.path().join("repo/backups");
        std::fs::create_dir_all(backups.join(".partial-20261125T000000Z")).unwrap();
        std::fs::create_dir_all(backups.join("20261125T000000Z")).unwrap();
        std::fs::create_dir_all(backups.join(".expired-20261101T000000Z/x")).unwrap();
        let wal_dir = _d.path().join("repo/wal/0000000100000000");
        let old_tmp = wal_dir.join(".000000010000000000000031.77.tmp");
        let new_tmp = wal_dir.join(".000000010000000000000032.78.tmp");
        std::fs::write(&old_tmp, b"x").unwrap();
        std::fs::write(&new_tmp, b"x").unwrap();
        let now = ts("2026-11-25T00:00:00Z");
        let two_hours_ago = SystemTime::from(now) - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old_tmp)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new_tmp)
            .unwrap()
            .set_modified(SystemTime::from(now) - Duration::from_secs(60))
            .unwrap();

        let r = expire(&repo, &retention(2, None), Duration::ZERO, now, false).unwrap();
        assert!(!r.dry_run);
        assert_eq!(r.removed, ["20261121T000000Z", "20261122T000000Z"]);
        assert_eq!(r.wal_removed, 30);
        assert_eq!(
            r.wal_removed_first.as_deref(),
            Some(&*segment_name(1, 0, SEG))
        );
        assert_eq!(
            r.wal_removed_last.as_deref(),
            Some(&*segment_name(1, 29, SEG))
        );
        assert_eq!(r.leftovers_removed.len(), 4, "{:?}", r.leftovers_removed);

        let remaining = manifest::list(&repo).unwrap();
        let ids: Vec<&str> = remaining.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["20261123T000000Z", "20261124T000000Z"]);
        let mut names: Vec<String> = scan_wal(&repo)
            .unwrap()
            .into_iter()
            .map(|w| w.name.name)
            .collect();
        names.sort();
        let mut expected: Vec<String> = (30..50).map(|s| segment_name(1, s, SEG)).collect();
        expected.push("00000001.history".into());
        expected.sort();
        assert_eq!(names, expected);
        let entries: Vec<String> = std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(entries, ["20261123T000000Z", "20261124T000000Z"]);
        assert!(!old_tmp.exists());
        assert!(
            new_tmp.exists(),
            "a young temp file may be a wal-push at work"
        );

        // A second run has nothing left to do.
        let r = expire(&repo, &retention(2, None), Duration::ZERO, now, false).unwrap();
        assert!(r.removed.is_empty() && r.wal_removed == 0 && r.leftovers_removed.is_empty());
    }

    #[test]
    fn missing_repository_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(dir.path().join("nope"));
        let r = expire(
            &repo,
            &retention(1, None),
            Duration::ZERO,
            ts("2026-11-25T00:00:00Z"),
            false,
        )
        .unwrap();
        assert!(r.kept.is_empty() && r.removed.is_empty());
        assert!(!dir.path().join("nope").exists());
    }

    #[test]
    fn held_lock_fails_naming_the_holder() {
        let (_d, repo) = synthetic_repo();
        let _held = repo.lock("backup", Duration::ZERO).unwrap();
        let err = expire(
            &repo,
            &retention(1, None),
            Duration::ZERO,
            ts("2026-11-25T00:00:00Z"),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("locked by backup"), "{err}");
    }

    #[test]
    fn a_backup_in_use_by_a_drill_stops_expire_but_not_a_backup() {
        let (_d, posix) = synthetic_repo();
        let (memory, _) = Repo::in_memory();
        fill(&memory);
        for repo in [posix, memory] {
            a_backup_in_use_by_a_drill_stops_expire_but_not_a_backup_in(repo);
        }
    }

    fn a_backup_in_use_by_a_drill_stops_expire_but_not_a_backup_in(repo: Repo) {
        let drill = repo.lock_in_use("drill", Duration::ZERO).unwrap();
        // Two drills may share the backups; a backup does not wait for either.
        let _second = repo.lock_in_use("drill", Duration::ZERO).unwrap();
        drop(repo.lock("backup", Duration::ZERO).unwrap());
        let err = expire(
            &repo,
            &retention(1, None),
            Duration::ZERO,
            ts("2026-11-25T00:00:00Z"),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("locked by drill"), "{err}");
        assert!(
            manifest::read_manifest(&repo, "20261121T000000Z")
                .unwrap()
                .is_some()
        );
        drop(drill);
        drop(_second);
        let r = expire(
            &repo,
            &retention(1, None),
            Duration::ZERO,
            ts("2026-11-25T00:00:00Z"),
            false,
        )
        .unwrap();
        assert!(!r.removed.is_empty());
        // While expire deletes, no drill can start.
        let _lock = repo.lock_for_delete("expire", Duration::ZERO).unwrap();
        let err = repo.lock_in_use("drill", Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("locked by expire"), "{err}");
    }

    // --- execution, on a repository in memory ---

    #[test]
    fn expire_in_memory_removes_the_plan_and_keeps_what_kept_backups_need() {
        let (repo, mem) = Repo::in_memory();
        fill(&repo);
        // A backup that never got its manifest is a leftover.
        repo.storage()
            .put(&Key::backup("20261125T000000Z", "base.tar.zst"), b"half")
            .unwrap();
        let now = ts("2026-11-25T00:00:00Z");
        let dry = expire(&repo, &retention(2, None), Duration::ZERO, now, true).unwrap();
        let before = mem.keys();
        let r = expire(&repo, &retention(2, None), Duration::ZERO, now, false).unwrap();
        assert_eq!(dry.removed, r.removed);
        assert_eq!(r.removed, ["20261121T000000Z", "20261122T000000Z"]);
        assert_eq!(r.wal_removed, 30);
        assert_eq!(r.leftovers_removed, ["memory:Backup/20261125T000000Z"]);
        let after = mem.keys();
        let gone: Vec<&Key> = before.iter().filter(|k| !after.contains(k)).collect();
        assert_eq!(gone.len(), 2 * 2 + 30 + 1, "{gone:?}");
        let ids: Vec<String> = manifest::list(&repo)
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["20261123T000000Z", "20261124T000000Z"]);
        let mut names: Vec<String> = scan_wal(&repo)
            .unwrap()
            .into_iter()
            .map(|w| w.name.name)
            .collect();
        names.sort();
        assert_eq!(names.len(), 21);
        assert!(names.contains(&segment_name(1, 30, SEG)));
        assert!(!names.contains(&segment_name(1, 29, SEG)));
        assert!(names.contains(&"00000001.history".to_string()));
        // A manifest that does not describe its backup stops expire from removing it.
        let mut other = four_days()[2].clone();
        other.id = "someone-else".into();
        repo.storage()
            .put(
                &Key::backup("20261123T000000Z", MANIFEST_FILE),
                &serde_json::to_vec(&other).unwrap(),
            )
            .unwrap();
        let err = remove_backup(&repo, "20261123T000000Z").unwrap_err();
        assert!(
            err.to_string().contains("does not describe backup"),
            "{err}"
        );
        assert!(
            repo.storage()
                .stat(&Key::backup("20261123T000000Z", "base.tar.zst"))
                .unwrap()
                .is_some()
        );
    }
}
