//! Chains of backups: an incremental backup (PostgreSQL 17+ `pg_basebackup --incremental`)
//! restores only together with the backup it was taken against, and that one with its own
//! parent, down to a full backup. A backup's chain is that list, root (the full) first and
//! the backup itself last. Everything that reads the catalogue with incrementals in it
//! (list, show, verify, expire, restore) asks this module, from manifests alone.

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::{BackupManifest, BackupType};

/// Why a backup's chain cannot be put together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "backup {backup} is incremental on backup {parent}, which is not in the repository: the chain is broken and {backup} cannot be restored; restore an older complete chain or take a full backup (`dbagent backup --type full`)"
    )]
    MissingParent { backup: String, parent: String },
    #[error(
        "backup {backup} is marked incremental but names no parent backup: its manifest is damaged; it cannot be restored"
    )]
    NoParent { backup: String },
    #[error(
        "backup {backup}'s chain of parents loops back to itself: the manifests are damaged; it cannot be restored"
    )]
    Cycle { backup: String },
    #[error("no complete backup {backup}")]
    Unknown { backup: String },
}

impl ChainError {
    /// The backup that is missing or damaged (the one to name to the user).
    pub fn missing(&self) -> &str {
        match self {
            ChainError::MissingParent { parent, .. } => parent,
            ChainError::NoParent { backup }
            | ChainError::Cycle { backup }
            | ChainError::Unknown { backup } => backup,
        }
    }
}

/// The parent a backup depends on: none for a full backup (whatever `parent` says).
pub fn parent_of(m: &BackupManifest) -> Option<&str> {
    match m.backup_type {
        BackupType::Full => None,
        BackupType::Incremental => m.parent.as_deref(),
    }
}

/// The chain of backup `id` among `backups`: root (a full backup) first, `id` last. A full
/// backup's chain is itself.
pub fn chain<'a>(
    backups: &'a [BackupManifest],
    id: &str,
) -> Result<Vec<&'a BackupManifest>, ChainError> {
    let by_id: BTreeMap<&str, &BackupManifest> =
        backups.iter().map(|m| (m.id.as_str(), m)).collect();
    chain_in(&by_id, id)
}

fn chain_in<'a>(
    by_id: &BTreeMap<&str, &'a BackupManifest>,
    id: &str,
) -> Result<Vec<&'a BackupManifest>, ChainError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut current = *by_id.get(id).ok_or_else(|| ChainError::Unknown {
        backup: id.to_string(),
    })?;
    loop {
        if !seen.insert(current.id.as_str()) {
            return Err(ChainError::Cycle {
                backup: id.to_string(),
            });
        }
        out.push(current);
        if current.backup_type == BackupType::Full {
            break;
        }
        let Some(parent) = current.parent.as_deref() else {
            return Err(ChainError::NoParent {
                backup: current.id.clone(),
            });
        };
        current = *by_id.get(parent).ok_or_else(|| ChainError::MissingParent {
            backup: current.id.clone(),
            parent: parent.to_string(),
        })?;
    }
    out.reverse();
    Ok(out)
}

/// The IDs of `id`'s chain, root first; as far as it can be followed when it is broken (the
/// error says where it breaks).
pub fn chain_ids(backups: &[BackupManifest], id: &str) -> (Vec<String>, Option<ChainError>) {
    match chain(backups, id) {
        Ok(c) => (c.into_iter().map(|m| m.id.clone()).collect(), None),
        Err(e) => {
            let by_id: BTreeMap<&str, &BackupManifest> =
                backups.iter().map(|m| (m.id.as_str(), m)).collect();
            let mut ids = Vec::new();
            let mut cur = by_id.get(id).copied();
            while let Some(m) = cur {
                if ids.contains(&m.id) {
                    break;
                }
                ids.push(m.id.clone());
                cur = parent_of(m).and_then(|p| by_id.get(p).copied());
            }
            ids.reverse();
            (ids, Some(e))
        }
    }
}

/// Closes `keep` (IDs) over parents: every existing ancestor of a kept backup is added. IDs
/// whose ancestor is missing stay (the break is reported elsewhere).
pub fn close_over_parents(backups: &[BackupManifest], keep: &mut BTreeSet<String>) {
    let by_id: BTreeMap<&str, &BackupManifest> =
        backups.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut todo: Vec<String> = keep.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        let Some(m) = by_id.get(id.as_str()) else {
            continue;
        };
        if let Some(p) = parent_of(m)
            && by_id.contains_key(p)
            && keep.insert(p.to_string())
        {
            todo.push(p.to_string());
        }
    }
}

/// The full backup each backup descends from (itself for a full one); None when its chain is
/// broken.
pub fn root_of<'a>(backups: &'a [BackupManifest], id: &str) -> Option<&'a BackupManifest> {
    chain(backups, id).ok().and_then(|c| c.first().copied())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::verify::tests::manifest;

    /// An incremental backup `id` on `parent`, needing segment `seg`.
    pub fn incremental(id: &str, parent: &str, seg: u64, stop: &str) -> BackupManifest {
        let mut m = manifest(id, 1, seg, seg, stop);
        m.backup_type = BackupType::Incremental;
        m.parent = Some(parent.to_string());
        m
    }

    fn sample() -> Vec<BackupManifest> {
        vec![
            manifest("F1", 1, 10, 10, "2026-11-21T00:00:00Z"),
            incremental("I1", "F1", 11, "2026-11-21T01:00:00Z"),
            incremental("I2", "I1", 12, "2026-11-21T02:00:00Z"),
            incremental("X1", "GONE", 13, "2026-11-21T03:00:00Z"),
        ]
    }

    #[test]
    fn chain_is_root_first() {
        let b = sample();
        let ids: Vec<&str> = chain(&b, "I2")
            .unwrap()
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(ids, ["F1", "I1", "I2"]);
        assert_eq!(chain(&b, "F1").unwrap().len(), 1);
        assert_eq!(root_of(&b, "I2").unwrap().id, "F1");
    }

    #[test]
    fn broken_chain_names_the_missing_parent() {
        let b = sample();
        let e = chain(&b, "X1").unwrap_err();
        assert_eq!(e.missing(), "GONE");
        assert!(e.to_string().contains("GONE"), "{e}");
        let (ids, err) = chain_ids(&b, "X1");
        assert_eq!(ids, ["X1"]);
        assert!(err.is_some());
    }

    #[test]
    fn a_loop_of_parents_is_an_error_not_a_hang() {
        let b = vec![
            incremental("A", "B", 1, "2026-11-21T00:00:00Z"),
            incremental("B", "A", 2, "2026-11-21T01:00:00Z"),
        ];
        assert!(matches!(chain(&b, "A"), Err(ChainError::Cycle { .. })));
        let _ = chain_ids(&b, "A");
    }

    #[test]
    fn closure_adds_every_ancestor() {
        let b = sample();
        let mut keep: BTreeSet<String> = ["I2".to_string(), "X1".to_string()].into();
        close_over_parents(&b, &mut keep);
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        assert_eq!(keep, ["F1", "I1", "I2", "X1"]);
    }
}
