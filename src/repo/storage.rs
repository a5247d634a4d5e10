//! The repository storage interface: what the rest of dbagent may do with a repository's
//! objects, named by kind and name, never by path. [`super::posix::PosixStorage`] keeps the
//! objects as files under a directory (the layout in [`super`]) and owns every durability
//! rule (temp name, fsync, link or rename, directory fsync, owner, stale temp cleanup);
//! [`super::memory::MemoryStorage`] keeps them in memory for unit tests. An object store
//! (S3) implementation plugs in here: objects are written whole (or streamed and then
//! committed), listing is by kind and name prefix, create-if-absent is a primitive
//! (conditional PUT), and locks are an operation of the storage.
//!
//! May use: `std`, [`super::RepoError`]. Nothing above `repo` reaches a path through it.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::RepoError;

/// The kinds of object a repository holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `repo.json`, the repository's binding to one cluster (a single object).
    RepoInfo,
    /// A file of a complete backup: named `<ID>/<file>`.
    Backup,
    /// An archived WAL file (segment, `.partial`, `.backup`, `.history`), named by its stored
    /// file name including the compression suffix.
    Wal,
    /// A timeline record, named `<TLI>.json`.
    Timeline,
    /// A restore point record, named `<NAME>.json`.
    RestorePoint,
}

/// One object of the repository: a kind and a name within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub kind: Kind,
    pub name: String,
}

impl Key {
    pub fn repo_info() -> Key {
        Key {
            kind: Kind::RepoInfo,
            name: String::new(),
        }
    }

    /// File `file` of backup `id`.
    pub fn backup(id: &str, file: &str) -> Key {
        Key {
            kind: Kind::Backup,
            name: format!("{id}/{file}"),
        }
    }

    /// The stored WAL file `stored` (name and compression suffix).
    pub fn wal(stored: impl Into<String>) -> Key {
        Key {
            kind: Kind::Wal,
            name: stored.into(),
        }
    }

    pub fn timeline(name: impl Into<String>) -> Key {
        Key {
            kind: Kind::Timeline,
            name: name.into(),
        }
    }

    pub fn restore_point(name: impl Into<String>) -> Key {
        Key {
            kind: Kind::RestorePoint,
            name: name.into(),
        }
    }

    /// For a backup object: its backup ID and file name.
    pub fn backup_parts(&self) -> Option<(&str, &str)> {
        if self.kind != Kind::Backup {
            return None;
        }
        self.name.split_once('/')
    }
}

/// What a listing or a stat says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub key: Key,
    pub size: u64,
    pub modified: SystemTime,
    /// Changes whenever the object is written again (posix: inode, size and modification
    /// time; an object store: its ETag): a copy made of it is valid while this is the same.
    pub version: String,
}

/// What [`Storage::create_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object now exists, durably.
    Created,
    /// An object of that key already existed; nothing was written.
    AlreadyExists,
}

/// The repository locks (see [`super::lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// Runs that must not overlap (backup, expire): exclusive.
    Run,
    /// Runs that read backups and WAL for a long time (drill, restore): shared.
    InUse,
    /// Runs that delete (expire): waits for every [`LockKind::InUse`] holder, exclusive.
    Delete,
}

/// Held while a repository lock is held; dropping it releases the lock.
pub struct StorageLock(#[allow(dead_code)] Box<dyn Send>);

impl StorageLock {
    pub fn new(guard: impl Send + 'static) -> StorageLock {
        StorageLock(Box::new(guard))
    }
}

impl std::fmt::Debug for StorageLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageLock")
    }
}

/// Something in the repository that is not an object: the work of an interrupted writer
/// (a backup never completed or half-expired, a temp file). Removed by expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Where it is, for humans.
    pub location: PathBuf,
    /// For a temp file of an object write: when it was last written (expire only removes
    /// those old enough not to belong to a writer still running). None for a leftover that
    /// is always safe to remove under the repository lock.
    pub written: Option<SystemTime>,
}

/// Whether the repository can be used for writing, as `dbagent check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// It can (or it can be created); what was found.
    Ok(String),
    /// It cannot: what is wrong and what to do.
    Problem { detail: String, fix: String },
}

/// An object being written piece by piece: nothing is visible under its key until
/// [`ObjectWriter::commit`]; dropping it without a commit leaves nothing.
pub trait ObjectWriter: Write + Send {
    /// Makes the object visible durably, unless one of that key exists already.
    fn commit(self: Box<Self>) -> Result<Created, RepoError>;
}

/// A backup being written: its files are streamed in (each visible to nobody), and
/// [`BackupWriter::publish`] makes the backup exist, its manifest last (a backup without
/// manifest.json does not exist). Dropped unpublished, it leaves nothing (or a leftover that
/// expire and the next backup remove).
pub trait BackupWriter: Send + Sync {
    /// Where the backup is being written, for messages.
    fn location(&self) -> PathBuf;

    /// A private local directory for the programs that produce the backup (pg_basebackup's
    /// target directory and pipes), removed with the writer.
    fn scratch(&self) -> &std::path::Path;

    /// Starts writing file `name` of the backup; [`ObjectWriter::commit`] makes it durable
    /// (not visible: only [`BackupWriter::publish`] does that).
    fn file(&self, name: &str) -> Result<Box<dyn ObjectWriter>, RepoError>;

    /// Forgets the files written so far (a backup started again).
    fn discard_files(&self) -> Result<(), RepoError>;

    /// Makes the backup exist: what was written is durable under its ID, then `manifest`
    /// is stored as `manifest.json`, last. On failure nothing of the backup is visible.
    fn publish(&self, manifest: &[u8]) -> Result<(), RepoError>;
}

/// A repository's storage. Every method names the object it failed on in its error.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Where the repository is, for messages (a directory, later a URL).
    fn location(&self) -> PathBuf;

    /// What names this repository for good (the key of its records in state.db): a canonical
    /// path, a bucket URL.
    fn identity(&self) -> String {
        self.location().display().to_string()
    }

    /// Where `key` is, for messages.
    fn locate(&self, key: &Key) -> PathBuf;

    /// Where objects of `kind` are, for messages.
    fn locate_kind(&self, kind: Kind) -> PathBuf;

    /// Fails when the repository cannot be reached at all (an unmounted or unreadable
    /// directory), as opposed to holding no objects yet.
    fn check_reachable(&self) -> Result<(), RepoError>;

    /// Fails, saying why, when the repository is not there at all (storage not mounted):
    /// for wal-get, which must not take a missing repository for a missing file.
    fn check_present(&self) -> Result<(), String> {
        Ok(())
    }

    /// After [`Storage::stat`] found no `key`: fails when that may be because the place it
    /// would be in cannot be read, so that absence is certain when this is Ok.
    fn confirm_absent(&self, _key: &Key) -> Result<(), String> {
        Ok(())
    }

    /// Whether the repository can be written (or created on first use).
    fn check_access(&self) -> Access {
        Access::Ok(format!(
            "repository {} is reachable",
            self.location().display()
        ))
    }

    /// Opens `key` for reading; `Ok(None)` when it does not exist.
    fn get(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, RepoError>;

    /// Reads `key` whole; `Ok(None)` when it does not exist.
    fn read(&self, key: &Key) -> Result<Option<Vec<u8>>, RepoError> {
        let Some(mut r) = self.get(key)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|source| RepoError::Io {
            path: self.locate(key),
            action: "read",
            source,
        })?;
        Ok(Some(out))
    }

    /// Size and modification time of `key`; `Ok(None)` when it does not exist.
    fn stat(&self, key: &Key) -> Result<Option<Meta>, RepoError>;

    /// The first of `keys` that exists (keys that differ only in a suffix, such as one
    /// object's possible compressions); `Ok(None)` when none does. An object store answers
    /// it with one listing instead of a request per key.
    fn stat_first(&self, keys: &[Key]) -> Result<Option<Meta>, RepoError> {
        for key in keys {
            if let Some(m) = self.stat(key)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// Starts writing `key` (see [`ObjectWriter`]).
    fn writer(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, RepoError>;

    /// Creates `key` with what `write` produces, durably, never replacing an existing
    /// object. On any error nothing is visible under `key`.
    fn create_new(
        &self,
        key: &Key,
        write: &mut dyn FnMut(&mut (dyn Write + Send)) -> io::Result<()>,
    ) -> Result<Created, RepoError> {
        let mut w = self.writer(key)?;
        write(&mut w).map_err(|source| RepoError::Io {
            path: self.locate(key),
            action: "write",
            source,
        })?;
        w.commit()
    }

    /// Writes `key`, replacing an existing object atomically. For objects rewritten on
    /// purpose (repo.json), never for WAL or backups.
    fn put(&self, key: &Key, bytes: &[u8]) -> Result<(), RepoError>;

    /// Every object of `kind` whose name starts with `prefix`, sorted by name. Writes in
    /// progress are never listed.
    fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Meta>, RepoError>;

    /// Every object of `kind`, for monitoring: may come from an index that is refreshed
    /// incrementally (an object store lists a large archive in many requests), so an object
    /// that arrived out of order or was deleted may show late. Restores, drills, verify and
    /// expire use [`Storage::list`].
    fn list_recent(&self, kind: Kind) -> Result<Vec<Meta>, RepoError> {
        self.list(kind, "")
    }

    /// Deletes `keys`; an object already gone is fine.
    fn delete(&self, keys: &[Key]) -> Result<(), RepoError>;

    /// Starts writing backup `id` (see [`BackupWriter`]).
    fn backup_writer(&self, id: &str) -> Result<Box<dyn BackupWriter>, RepoError>;

    /// Whether backup ID `id` is in use (complete or being written).
    fn backup_id_taken(&self, id: &str) -> Result<bool, RepoError> {
        Ok(!self.list(Kind::Backup, &format!("{id}/"))?.is_empty())
    }

    /// Removes what interrupted backups left (called under the [`LockKind::Run`] lock, so
    /// none is in progress); returns where.
    fn remove_interrupted_backups(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Deletes backup `id` as a whole: it stops existing at once (its manifest first), and
    /// an interruption leaves a [`Leftover`], never a half backup.
    fn delete_backup(&self, id: &str) -> Result<(), RepoError>;

    /// The work of interrupted writers (see [`Leftover`]).
    fn leftovers(&self) -> Result<Vec<Leftover>, RepoError>;

    /// Removes a leftover listed by [`Storage::leftovers`].
    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), RepoError>;

    /// Removes what killed earlier writers of `keys` left, when they are certainly dead (or
    /// hung for long). Best effort; returns where it removed something.
    fn remove_stale_writes(&self, _keys: &[Key]) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Makes an existing object durable (a writer may have died between making it visible
    /// and making that durable).
    fn ensure_durable(&self, _key: &Key) -> Result<(), RepoError> {
        Ok(())
    }

    /// Takes a repository lock for `what`, waiting up to `wait`.
    fn lock(&self, kind: LockKind, what: &str, wait: Duration) -> Result<StorageLock, RepoError>;
}

#[cfg(test)]
pub(crate) mod contract {
    //! The contract every [`Storage`] keeps, as one test function per rule over `&dyn
    //! Storage`: run for posix and memory here, and for every later implementation.
    use super::*;

    fn put_new(s: &dyn Storage, key: &Key, bytes: &[u8]) -> Created {
        s.create_new(key, &mut |w| w.write_all(bytes)).unwrap()
    }

    pub fn create_new_never_overwrites(s: &dyn Storage) {
        let key = Key::wal("000000010000000000000001.zst");
        assert_eq!(put_new(s, &key, b"one"), Created::Created);
        assert_eq!(put_new(s, &key, b"two"), Created::AlreadyExists);
        assert_eq!(s.read(&key).unwrap().unwrap(), b"one");
        assert_eq!(s.stat(&key).unwrap().unwrap().size, 3);
        let failed = Key::wal("000000010000000000000002.zst");
        let err = s
            .create_new(&failed, &mut |_| Err(io::Error::other("disk full")))
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(s.read(&failed).unwrap(), None);
        assert_eq!(s.stat(&failed).unwrap(), None);
        let names: Vec<String> = s
            .list(Kind::Wal, "")
            .unwrap()
            .into_iter()
            .map(|m| m.key.name)
            .collect();
        assert_eq!(names, vec!["000000010000000000000001.zst".to_string()]);
    }

    pub fn writer_abort_leaves_nothing(s: &dyn Storage) {
        let key = Key::backup("20261201T000000Z", "base.tar.zst");
        let mut w = s.writer(&key).unwrap();
        w.write_all(b"half a tar").unwrap();
        drop(w);
        assert_eq!(s.read(&key).unwrap(), None);
        assert!(s.list(Kind::Backup, "").unwrap().is_empty());
        let mut w = s.writer(&key).unwrap();
        w.write_all(b"a whole tar").unwrap();
        assert_eq!(w.commit().unwrap(), Created::Created);
        assert_eq!(s.read(&key).unwrap().unwrap(), b"a whole tar");
    }

    pub fn list_is_by_kind_and_prefix_and_sorted(s: &dyn Storage) {
        for name in [
            "000000020000000000000003.zst",
            "000000010000000000000001.zst",
            "00000002.history.zst",
            "000000010000000100000000.lz4",
        ] {
            put_new(s, &Key::wal(name), b"w");
        }
        put_new(s, &Key::backup("B1", "manifest.json"), b"{}");
        put_new(s, &Key::restore_point("p.json"), b"{}");
        put_new(s, &Key::timeline("00000002.json"), b"{}");
        s.put(&Key::repo_info(), b"{}").unwrap();
        let names = |kind, prefix| -> Vec<String> {
            s.list(kind, prefix)
                .unwrap()
                .into_iter()
                .map(|m| {
                    assert_eq!(m.key.kind, kind);
                    m.key.name
                })
                .collect()
        };
        assert_eq!(
            names(Kind::Wal, ""),
            [
                "000000010000000000000001.zst",
                "000000010000000100000000.lz4",
                "00000002.history.zst",
                "000000020000000000000003.zst"
            ]
        );
        assert_eq!(
            names(Kind::Wal, "0000000100000000"),
            ["000000010000000000000001.zst"]
        );
        assert_eq!(
            names(Kind::Wal, "00000002"),
            ["00000002.history.zst", "000000020000000000000003.zst"]
        );
        assert_eq!(names(Kind::Backup, ""), ["B1/manifest.json"]);
        assert_eq!(names(Kind::RestorePoint, ""), ["p.json"]);
        assert_eq!(names(Kind::Timeline, ""), ["00000002.json"]);
        s.delete(&[
            Key::wal("000000010000000000000001.zst"),
            Key::wal("000000010000000000000009.zst"),
        ])
        .unwrap();
        assert_eq!(names(Kind::Wal, "00000001").len(), 1);
        s.delete_backup("B1").unwrap();
        assert!(names(Kind::Backup, "").is_empty());
    }

    pub fn put_replaces(s: &dyn Storage) {
        let key = Key::repo_info();
        assert_eq!(s.read(&key).unwrap(), None);
        s.put(&key, b"one").unwrap();
        s.put(&key, b"two").unwrap();
        assert_eq!(s.read(&key).unwrap().unwrap(), b"two");
    }

    pub fn locks_exclude(s: &dyn Storage) {
        let held = s.lock(LockKind::Run, "backup", Duration::ZERO).unwrap();
        let err = s
            .lock(LockKind::Run, "expire", Duration::from_millis(300))
            .unwrap_err();
        assert!(err.to_string().contains("locked by backup (pid"), "{err}");
        drop(held);
        drop(s.lock(LockKind::Run, "expire", Duration::ZERO).unwrap());
        let a = s.lock(LockKind::InUse, "drill", Duration::ZERO).unwrap();
        let b = s.lock(LockKind::InUse, "drill", Duration::ZERO).unwrap();
        assert!(s.lock(LockKind::Delete, "expire", Duration::ZERO).is_err());
        drop((a, b));
        let d = s.lock(LockKind::Delete, "expire", Duration::ZERO).unwrap();
        assert!(s.lock(LockKind::InUse, "drill", Duration::ZERO).is_err());
        drop(d);
    }

    pub fn stat_first_finds_the_first_that_exists(s: &dyn Storage) {
        let keys = [
            Key::wal("000000010000000000000001.zst"),
            Key::wal("000000010000000000000001.lz4"),
            Key::wal("000000010000000000000001"),
        ];
        assert_eq!(s.stat_first(&keys).unwrap(), None);
        put_new(s, &Key::wal("000000010000000000000001.partial.zst"), b"p");
        put_new(s, &Key::wal("000000010000000000000001.lz4"), b"lz");
        let found = s.stat_first(&keys).unwrap().unwrap();
        assert_eq!(found.key, keys[1]);
        assert_eq!(found.size, 2);
    }

    pub fn all(make: &dyn Fn() -> Box<dyn Storage>) {
        stat_first_finds_the_first_that_exists(&*make());
        create_new_never_overwrites(&*make());
        writer_abort_leaves_nothing(&*make());
        list_is_by_kind_and_prefix_and_sorted(&*make());
        put_replaces(&*make());
        locks_exclude(&*make());
    }
}
