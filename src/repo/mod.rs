//! The backup repository on a local (posix) path: its layout, `repo.json` binding it to one
//! cluster, the lock, and the file primitives every writer uses.
//!
//! ```text
//! REPO/
//!   repo.json                        format, cluster system identifier, major version, WAL segment size
//!   lock                             exclusive lock of backup/expire runs
//!   backups/<ID>/manifest.json       written LAST: a backup without it does not exist
//!   backups/<ID>/<archive>.tar.<ext> pg_basebackup's tar streams, compressed on the fly
//!   backups/<ID>/backup_manifest     PostgreSQL's own manifest
//!   wal/<TLI+LOG>/<SEGMENT>.<ext>    archived WAL segments (and .partial, .backup files)
//!   wal/<TLI>.history.<ext>          timeline history files
//! ```
//! Names starting with `.` are temp files of writes in progress; every reader ignores them.
//!
//! Layer: access. Uses: nothing of the crate. Used by: backup, check, collect, config, drill, http,
//! restore, rpo, wal.

pub mod compress;
pub mod durable;
mod error;
pub mod lock;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use compress::Compression;
pub use error::{FORMAT, RepoError};
pub use lock::RepoLock;

/// `repo.json`: which cluster this repository belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoInfo {
    pub format: u32,
    /// pg_control's system identifier, as a decimal string (JSON numbers lose precision).
    pub system_identifier: String,
    /// PostgreSQL major version, when known (set by the first backup if the first writer was
    /// a wal-push that could not tell).
    pub pg_major: Option<u32>,
    pub wal_segment_size: u64,
    pub created_at: jiff::Timestamp,
}

/// A repository at a path (which may not exist yet).
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

impl Repo {
    pub fn at(root: impl Into<PathBuf>) -> Repo {
        Repo { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn info_path(&self) -> PathBuf {
        self.root.join("repo.json")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.root.join("wal")
    }

    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The lock that runs using a backup hold shared and expire exclusively.
    pub fn use_lock_path(&self) -> PathBuf {
        self.root.join("lock.use")
    }

    /// Reads repo.json; `Ok(None)` when the repository has not been created yet.
    pub fn info(&self) -> Result<Option<RepoInfo>, RepoError> {
        let path = self.info_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A root that exists but cannot be listed is unreadable, not empty.
                if let Err(e) = std::fs::metadata(&self.root)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    return Err(RepoError::Io {
                        path: self.root.clone(),
                        action: "read the repository",
                        source: e,
                    });
                }
                if self.root.is_dir()
                    && let Err(e) = std::fs::read_dir(&self.root)
                {
                    return Err(RepoError::Io {
                        path: self.root.clone(),
                        action: "read the repository",
                        source: e,
                    });
                }
                return Ok(None);
            }
            Err(source) => {
                return Err(RepoError::Io {
                    path,
                    action: "read",
                    source,
                });
            }
        };
        let info: RepoInfo = serde_json::from_str(&text).map_err(|e| RepoError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if info.format != FORMAT {
            return Err(RepoError::Format {
                path,
                found: info.format,
            });
        }
        Ok(Some(info))
    }

    /// Binds the repository to a cluster on first use, or checks that it is bound to this one.
    /// Two processes binding at once both succeed if they agree (the file is created with
    /// link-or-fail semantics and then re-read).
    pub fn bind(
        &self,
        system_identifier: u64,
        pg_major: Option<u32>,
        wal_segment_size: u64,
    ) -> Result<RepoInfo, RepoError> {
        let sysid = system_identifier.to_string();
        if let Some(info) = self.info()? {
            return self.check_binding(info, &sysid, pg_major);
        }
        durable::create_dir_all_durable(&self.root).map_err(|source| RepoError::Io {
            path: self.root.clone(),
            action: "create the repository",
            source,
        })?;
        let info = RepoInfo {
            format: FORMAT,
            system_identifier: sysid.clone(),
            pg_major,
            wal_segment_size,
            created_at: jiff::Timestamp::now(),
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| RepoError::Corrupt {
            path: self.info_path(),
            detail: e.to_string(),
        })?;
        durable::create_new(&self.root, "repo.json", |f| {
            use std::io::Write;
            f.write_all(&json)?;
            f.write_all(b"\n")
        })
        .map_err(|source| RepoError::Io {
            path: self.info_path(),
            action: "create",
            source,
        })?;
        // Whoever won the race, the file on disk is the truth.
        match self.info()? {
            Some(info) => self.check_binding(info, &sysid, pg_major),
            None => Err(RepoError::Corrupt {
                path: self.info_path(),
                detail: "vanished right after it was created".into(),
            }),
        }
    }

    fn check_binding(
        &self,
        mut info: RepoInfo,
        sysid: &str,
        pg_major: Option<u32>,
    ) -> Result<RepoInfo, RepoError> {
        if info.system_identifier != sysid {
            return Err(RepoError::OtherCluster {
                path: self.root.clone(),
                repo: info.system_identifier,
                found: sysid.to_string(),
            });
        }
        if info.pg_major.is_none() && pg_major.is_some() {
            info.pg_major = pg_major;
            let json = serde_json::to_vec_pretty(&info).map_err(|e| RepoError::Corrupt {
                path: self.info_path(),
                detail: e.to_string(),
            })?;
            durable::replace(&self.root, "repo.json", &json).map_err(|source| RepoError::Io {
                path: self.info_path(),
                action: "update",
                source,
            })?;
        }
        Ok(info)
    }

    /// Takes the repository lock (see [`lock`]).
    pub fn lock(&self, what: &str, wait: Duration) -> Result<RepoLock, RepoError> {
        durable::create_dir_all_durable(&self.root).map_err(|source| RepoError::Io {
            path: self.root.clone(),
            action: "create the repository",
            source,
        })?;
        RepoLock::acquire(&self.lock_path(), what, wait)
    }

    /// Holds the backups and WAL in use against deletion (shared with other users): a drill
    /// restoring a backup takes it, so that expire waits or fails instead of deleting what it
    /// restores. Backups do not take it, so a drill never stops a backup.
    pub fn lock_in_use(&self, what: &str, wait: Duration) -> Result<RepoLock, RepoError> {
        RepoLock::acquire_shared(&self.use_lock_path(), what, wait)
    }

    /// Waits for every run using backups to finish and keeps new ones out: taken by expire
    /// (after [`Repo::lock`]) before it deletes anything.
    pub fn lock_for_delete(&self, what: &str, wait: Duration) -> Result<RepoLock, RepoError> {
        RepoLock::acquire(&self.use_lock_path(), what, wait)
    }
}

/// Reads a JSON file of the repository (a manifest, a restore point): `Ok(None)` when it does
/// not exist, `Io` when it cannot be read, `Corrupt` when it does not parse.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RepoError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RepoError::Io {
                path: path.to_path_buf(),
                action: "read",
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RepoError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_on_first_use_and_refuses_another_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(dir.path().join("repo"));
        assert!(repo.info().unwrap().is_none());
        let info = repo
            .bind(7_000_000_000_000_000_001, None, 16 << 20)
            .unwrap();
        assert_eq!(info.system_identifier, "7000000000000000001");
        let again = repo
            .bind(7_000_000_000_000_000_001, Some(15), 16 << 20)
            .unwrap();
        assert_eq!(again.pg_major, Some(15));
        assert_eq!(repo.info().unwrap().unwrap().pg_major, Some(15));
        let err = repo.bind(42, None, 16 << 20).unwrap_err();
        assert!(matches!(err, RepoError::OtherCluster { .. }), "{err}");
    }

    #[test]
    fn second_lock_holder_fails_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(dir.path());
        let held = repo.lock("backup", Duration::ZERO).unwrap();
        // A second open file description conflicts even within one process.
        let err = repo.lock("expire", Duration::from_millis(300)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("locked by backup (pid"), "{msg}");
        drop(held);
        repo.lock("expire", Duration::ZERO).unwrap();
    }

    #[test]
    fn damaged_repo_json_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("repo.json"), b"{not json").unwrap();
        let err = Repo::at(dir.path()).info().unwrap_err();
        assert!(matches!(err, RepoError::Corrupt { .. }), "{err}");
    }
}
