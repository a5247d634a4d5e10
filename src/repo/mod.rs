//! The backup repository: its layout, `repo.json` binding it to one
//! cluster, the locks, and the storage interface ([`storage`]) through which everything
//! reaches the repository; [`posix`] keeps it in a directory:
//!
//! ```text
//! REPO/
//!   repo.json                        format, cluster system identifier, major version, WAL segment size
//!   lock                             exclusive lock of backup/expire runs
//!   lock.use                         held shared by runs using backups, exclusively by expire
//!   timelines/<TLI>.json             what is known of each timeline (who created it, when)
//!   restore-points/<NAME>.json       recorded restore points
//!   backups/<ID>/manifest.json       written LAST: a backup without it does not exist
//!   backups/<ID>/<archive>.tar.<ext> pg_basebackup's tar streams, compressed on the fly
//!   backups/<ID>/backup_manifest     PostgreSQL's own manifest
//!   wal/<TLI+LOG>/<SEGMENT>.<ext>    archived WAL segments (and .partial, .backup files)
//!   wal/<TLI>.history.<ext>          timeline history files
//! ```
//! Names starting with `.` are temp files of writes in progress; every reader ignores them.
//!
//! Everything above reaches the repository through [`Repo`] and [`Storage`], never through a
//! path.
//!
//! Layer: access. Uses: units. Used by: agent, backup, check, collect, config, drill, http,
//! restore, rpo, wal.

pub mod compress;
mod durable;
mod error;
pub mod lock;
pub mod memory;
pub mod posix;
pub mod s3;
pub mod seekable;
pub mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use compress::Compression;
pub use durable::local;
pub use error::{FORMAT, RepoError};
pub use lock::RepoLock;
pub use memory::MemoryStorage;
pub use posix::PosixStorage;
pub use s3::{S3Options, S3Storage};
pub use storage::{Created, Key, Kind, LockKind, Meta, Storage, StorageLock};

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

/// A repository, reached through its [`Storage`]: the typed facade every command uses.
#[derive(Debug, Clone)]
pub struct Repo {
    storage: Arc<dyn Storage>,
    location: PathBuf,
}

impl Repo {
    /// The repository in the local directory `root` (which may not exist yet).
    pub fn at(root: impl Into<PathBuf>) -> Repo {
        Repo::with_storage(Arc::new(PosixStorage::new(root)))
    }

    /// The repository in `storage`.
    pub fn with_storage(storage: Arc<dyn Storage>) -> Repo {
        let location = storage.location();
        Repo { storage, location }
    }

    /// A repository in memory (for tests), and its storage (to damage it on purpose).
    pub fn in_memory() -> (Repo, MemoryStorage) {
        let m = MemoryStorage::new();
        (Repo::with_storage(Arc::new(m.clone())), m)
    }

    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// Where `key` is, for messages.
    pub fn locate(&self, key: &Key) -> PathBuf {
        self.storage.locate(key)
    }

    /// Where objects of `kind` are, for messages.
    pub fn locate_kind(&self, kind: Kind) -> PathBuf {
        self.storage.locate_kind(kind)
    }

    /// Reads repo.json; `Ok(None)` when the repository has not been created yet.
    pub fn info(&self) -> Result<Option<RepoInfo>, RepoError> {
        let key = Key::repo_info();
        let Some(text) = self.storage.read(&key)? else {
            self.storage.check_reachable()?;
            return Ok(None);
        };
        let path = self.locate(&key);
        let info: RepoInfo = serde_json::from_slice(&text).map_err(|e| RepoError::Corrupt {
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
    /// Two processes binding at once both succeed if they agree (the object is created only
    /// if absent and then re-read).
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
        let key = Key::repo_info();
        let info = RepoInfo {
            format: FORMAT,
            system_identifier: sysid.clone(),
            pg_major,
            wal_segment_size,
            created_at: jiff::Timestamp::now(),
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| RepoError::Corrupt {
            path: self.locate(&key),
            detail: e.to_string(),
        })?;
        self.storage
            .create_new(&key, &mut |f| {
                f.write_all(&json)?;
                f.write_all(b"\n")
            })
            .map_err(|e| match e {
                RepoError::Io { path, source, .. } => RepoError::Io {
                    action: if path == self.location {
                        "create the repository"
                    } else {
                        "create"
                    },
                    path,
                    source,
                },
                e => e,
            })?;
        // Whoever won the race, the stored object is the truth.
        match self.info()? {
            Some(info) => self.check_binding(info, &sysid, pg_major),
            None => Err(RepoError::Corrupt {
                path: self.locate(&key),
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
                path: self.location.clone(),
                repo: info.system_identifier,
                found: sysid.to_string(),
            });
        }
        if info.pg_major.is_none() && pg_major.is_some() {
            info.pg_major = pg_major;
            let key = Key::repo_info();
            let json = serde_json::to_vec_pretty(&info).map_err(|e| RepoError::Corrupt {
                path: self.locate(&key),
                detail: e.to_string(),
            })?;
            self.storage.put(&key, &json)?;
        }
        Ok(info)
    }

    /// Takes the repository lock (see [`lock`]).
    pub fn lock(&self, what: &str, wait: Duration) -> Result<StorageLock, RepoError> {
        self.storage.lock(LockKind::Run, what, wait)
    }

    /// Holds the backups and WAL in use against deletion (shared with other users): a drill
    /// restoring a backup takes it, so that expire waits or fails instead of deleting what it
    /// restores. Backups do not take it, so a drill never stops a backup.
    pub fn lock_in_use(&self, what: &str, wait: Duration) -> Result<StorageLock, RepoError> {
        self.storage.lock(LockKind::InUse, what, wait)
    }

    /// Waits for every run using backups to finish and keeps new ones out: taken by expire
    /// (after [`Repo::lock`]) before it deletes anything.
    pub fn lock_for_delete(&self, what: &str, wait: Duration) -> Result<StorageLock, RepoError> {
        self.storage.lock(LockKind::Delete, what, wait)
    }

    /// Reads a JSON object of the repository (a manifest, a restore point): `Ok(None)` when
    /// it does not exist, `Io` when it cannot be read, `Corrupt` when it does not parse.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<T>, RepoError> {
        let Some(bytes) = self.storage.read(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RepoError::Corrupt {
                path: self.locate(key),
                detail: e.to_string(),
            })
    }
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

    /// The acceptance of the storage interface, kept true: no code outside `src/repo/`
    /// builds a repository path or uses the file primitives behind the storage. Test modules
    /// (which set up posix repositories on purpose) and comments are not searched.
    #[test]
    fn no_repository_path_is_built_outside_the_storage() {
        const BUILDING: &[&str] = &[
            "repo.root()",
            ".root().join(",
            "wal_dir()",
            "backups_dir()",
            "info_path()",
            "lock_path()",
            "records_dir(",
            "points_dir(",
            "backup_dir(",
            "stored_path(",
            ".join(\"wal\")",
            ".join(\"backups\")",
            ".join(\"timelines\")",
            ".join(\"restore-points\")",
            ".join(\"repo.json\")",
            ".join(\"manifest.json\")",
            "join(MANIFEST_FILE)",
            "join(manifest::MANIFEST_FILE)",
            "\".partial-",
            "\".expired-",
            "repo::durable",
        ];
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        files.sort();
        let mut offenders = Vec::new();
        for file in files {
            if file.starts_with(src.join("repo")) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("#[cfg(test)]") {
                    break;
                }
                if code.starts_with("//") {
                    continue;
                }
                if let Some(p) = BUILDING.iter().find(|p| code.contains(*p)) {
                    let rel = file.strip_prefix(&src).unwrap().display().to_string();
                    offenders.push(format!("src/{rel}:{}: `{p}` in: {code}", n + 1));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "repository paths built outside src/repo (go through repo::Storage):\n{}",
            offenders.join("\n")
        );
    }
}
