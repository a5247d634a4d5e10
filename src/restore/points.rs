//! Named restore points: `dbagent restore-point NAME` creates one on the server
//! (`pg_create_restore_point`) and records it in the repository, so that
//! `dbagent restore --target name:NAME` can list it, choose the backup that ends before it and
//! prove the WAL up to it is archived.
//!
//! ```text
//! REPO/restore-points/<NAME>.json    {name, lsn, time, timeline, created_by}
//! ```
//! Each record is written durably and never replaced: a duplicate name is refused, as
//! PostgreSQL would happily create two restore points of one name and recovery would stop at
//! the first.

use serde::{Deserialize, Serialize};

use crate::repo::{Created, Key, Kind, Repo, RepoError};
use crate::wal::Lsn;

/// The object of the restore point record `name`.
fn point_key(name: &str) -> Key {
    Key::restore_point(format!("{name}.json"))
}

/// One recorded restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestorePoint {
    pub name: String,
    /// What `pg_create_restore_point` returned: the restore point record's position.
    pub lsn: Lsn,
    pub time: jiff::Timestamp,
    pub timeline: u32,
    /// The server it was created on (`host:port`), for humans.
    pub server: String,
}

/// Why a restore point cannot be used or recorded.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error(
        "restore point name `{0}` is not usable: use 1 to 63 characters from letters, digits, `-`, `_` and `.`, not starting with `.`"
    )]
    BadName(String),
    #[error(
        "a restore point named `{name}` already exists (at {lsn}, {time}); recovery would stop at the first one of that name, so pick another name"
    )]
    Duplicate {
        name: String,
        lsn: Lsn,
        time: jiff::Timestamp,
    },
    #[error("{0}")]
    Repo(#[from] RepoError),
}

/// Names are file names in the repository and values in postgresql.auto.conf: keep them plain.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks `name` before anything is done on the server: valid and not recorded yet.
pub fn check_new(repo: &Repo, name: &str) -> Result<(), PointError> {
    if !valid_name(name) {
        return Err(PointError::BadName(name.to_string()));
    }
    if let Some(p) = find(repo, name)? {
        return Err(PointError::Duplicate {
            name: p.name,
            lsn: p.lsn,
            time: p.time,
        });
    }
    Ok(())
}

/// Records `point` durably; refuses a name that is already recorded.
pub fn record(repo: &Repo, point: &RestorePoint) -> Result<(), PointError> {
    check_new(repo, &point.name)?;
    let key = point_key(&point.name);
    let json = serde_json::to_vec_pretty(point).map_err(|e| RepoError::Corrupt {
        path: repo.locate_kind(Kind::RestorePoint),
        detail: e.to_string(),
    })?;
    let created = repo
        .storage()
        .create_new(&key, &mut |f| {
            f.write_all(&json)?;
            f.write_all(b"\n")
        })
        .map_err(|e| match e {
            // The directory could not be created: said as such.
            e @ RepoError::Io {
                action: "create", ..
            } => e,
            RepoError::Io { source, .. } => RepoError::Io {
                path: repo.locate_kind(Kind::RestorePoint),
                action: "write a restore point in",
                source,
            },
            e => e,
        })?;
    if created == Created::AlreadyExists {
        // Lost a race with another run using the same name.
        return check_new(repo, &point.name);
    }
    Ok(())
}

/// The recorded restore point `name`, if any.
pub fn find(repo: &Repo, name: &str) -> Result<Option<RestorePoint>, RepoError> {
    if !valid_name(name) {
        return Ok(None);
    }
    repo.read_json(&point_key(name))
}

/// Every recorded restore point, oldest first.
pub fn list(repo: &Repo) -> Result<Vec<RestorePoint>, RepoError> {
    let mut out = Vec::new();
    for meta in repo.storage().list(Kind::RestorePoint, "")? {
        if let Some(name) = meta.key.name.strip_suffix(".json")
            && let Some(p) = find(repo, name)?
        {
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.time.cmp(&b.time).then(a.name.cmp(&b.name)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lists_and_refuses_duplicates() {
        let (repo, _) = Repo::in_memory();
        let p = RestorePoint {
            name: "before-migration".into(),
            lsn: Lsn(0x3000028),
            time: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            timeline: 1,
            server: "127.0.0.1:5432".into(),
        };
        record(&repo, &p).unwrap();
        assert_eq!(find(&repo, "before-migration").unwrap(), Some(p.clone()));
        assert_eq!(list(&repo).unwrap(), vec![p.clone()]);
        let err = record(&repo, &p).unwrap_err();
        assert!(matches!(err, PointError::Duplicate { .. }), "{err}");
        for bad in ["", ".x", "a/b", "a b", "x'y", &"n".repeat(64)] {
            assert!(
                matches!(check_new(&repo, bad), Err(PointError::BadName(_))),
                "{bad}"
            );
        }
    }
}
