//! A repository held in memory, for unit tests of everything that reads or writes a
//! repository (expire, verify, the restore planner) without a file system. It keeps the
//! same contract as [`super::posix::PosixStorage`] (see `storage::contract`), including
//! the locks, within one process.
//!
//! May use: `std`, [`super::storage`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::RepoError;
use super::storage::{
    BackupWriter, Created, Key, Kind, Leftover, LockKind, Meta, ObjectWriter, Storage, StorageLock,
};

#[derive(Debug, Clone)]
struct Object {
    bytes: Arc<Vec<u8>>,
    modified: SystemTime,
}

impl Object {
    fn meta(&self, key: &Key) -> Meta {
        Meta {
            key: key.clone(),
            size: self.bytes.len() as u64,
            modified: self.modified,
            version: format!("{:p}", Arc::as_ptr(&self.bytes)),
        }
    }
}

#[derive(Debug, Default)]
struct LockState {
    exclusive: Option<String>,
    shared: usize,
    /// What the last shared holder said it was (the posix lock file keeps that too).
    shared_holder: String,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<Key, Object>,
    locks: HashMap<&'static str, LockState>,
}

/// A repository in memory. Clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `bytes` under `key` as written at `modified` (replacing what was there): for
    /// tests that need an object of a given age, or a damaged one.
    pub fn insert(&self, key: Key, bytes: Vec<u8>, modified: SystemTime) {
        self.state().objects.insert(
            key,
            Object {
                bytes: Arc::new(bytes),
                modified,
            },
        );
    }

    /// Every key held, sorted.
    pub fn keys(&self) -> Vec<Key> {
        self.state().objects.keys().cloned().collect()
    }
}

struct MemoryWriter {
    storage: MemoryStorage,
    key: Key,
    buf: Vec<u8>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MemoryWriter {
    fn commit(self: Box<Self>) -> Result<Created, RepoError> {
        let mut state = self.storage.state();
        if state.objects.contains_key(&self.key) {
            return Ok(Created::AlreadyExists);
        }
        state.objects.insert(
            self.key,
            Object {
                bytes: Arc::new(self.buf),
                modified: SystemTime::now(),
            },
        );
        Ok(Created::Created)
    }
}

/// A lock held on a [`MemoryStorage`].
struct MemoryLock {
    storage: MemoryStorage,
    name: &'static str,
    shared: bool,
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        let mut state = self.storage.state();
        if let Some(l) = state.locks.get_mut(self.name) {
            if self.shared {
                l.shared = l.shared.saturating_sub(1);
            } else {
                l.exclusive = None;
            }
        }
    }
}

/// A backup being written into memory: its files are kept aside until published.
struct MemoryBackup {
    storage: MemoryStorage,
    id: String,
    scratch: PathBuf,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

struct MemoryBackupFile {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    name: String,
    buf: Vec<u8>,
}

impl Write for MemoryBackupFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MemoryBackupFile {
    fn commit(self: Box<Self>) -> Result<Created, RepoError> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if files.contains_key(&self.name) {
            return Ok(Created::AlreadyExists);
        }
        files.insert(self.name, self.buf);
        Ok(Created::Created)
    }
}

impl BackupWriter for MemoryBackup {
    fn location(&self) -> PathBuf {
        self.storage.locate_kind(Kind::Backup).join(&self.id)
    }

    fn scratch(&self) -> &std::path::Path {
        &self.scratch
    }

    fn file(&self, name: &str) -> Result<Box<dyn ObjectWriter>, RepoError> {
        Ok(Box::new(MemoryBackupFile {
            files: Arc::clone(&self.files),
            name: name.to_string(),
            buf: Vec::new(),
        }))
    }

    fn discard_files(&self) -> Result<(), RepoError> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }

    fn publish(&self, manifest: &[u8]) -> Result<(), RepoError> {
        let files = std::mem::take(&mut *self.files.lock().unwrap_or_else(PoisonError::into_inner));
        let now = SystemTime::now();
        for (name, bytes) in files {
            self.storage
                .insert(Key::backup(&self.id, &name), bytes, now);
        }
        self.storage.insert(
            Key::backup(&self.id, "manifest.json"),
            manifest.to_vec(),
            now,
        );
        Ok(())
    }
}

impl Drop for MemoryBackup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Storage for MemoryStorage {
    fn backup_writer(&self, id: &str) -> Result<Box<dyn BackupWriter>, RepoError> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch =
            std::env::temp_dir().join(format!("dbagent-memory-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(|source| RepoError::Io {
            path: scratch.clone(),
            action: "create",
            source,
        })?;
        Ok(Box::new(MemoryBackup {
            storage: self.clone(),
            id: id.to_string(),
            scratch,
            files: Arc::default(),
        }))
    }

    fn location(&self) -> PathBuf {
        PathBuf::from("memory:")
    }

    fn locate(&self, key: &Key) -> PathBuf {
        self.locate_kind(key.kind).join(&key.name)
    }

    fn locate_kind(&self, kind: Kind) -> PathBuf {
        PathBuf::from(format!("memory:{kind:?}"))
    }

    fn check_reachable(&self) -> Result<(), RepoError> {
        Ok(())
    }

    fn get(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, RepoError> {
        Ok(self
            .read(key)?
            .map(|b| Box::new(io::Cursor::new(b)) as Box<dyn Read + Send>))
    }

    fn read(&self, key: &Key) -> Result<Option<Vec<u8>>, RepoError> {
        Ok(self
            .state()
            .objects
            .get(key)
            .map(|o| o.bytes.as_ref().clone()))
    }

    fn stat(&self, key: &Key) -> Result<Option<Meta>, RepoError> {
        Ok(self.state().objects.get(key).map(|o| o.meta(key)))
    }

    fn writer(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, RepoError> {
        Ok(Box::new(MemoryWriter {
            storage: self.clone(),
            key: key.clone(),
            buf: Vec::new(),
        }))
    }

    fn put(&self, key: &Key, bytes: &[u8]) -> Result<(), RepoError> {
        self.insert(key.clone(), bytes.to_vec(), SystemTime::now());
        Ok(())
    }

    fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Meta>, RepoError> {
        Ok(self
            .state()
            .objects
            .iter()
            .filter(|(k, _)| k.kind == kind && k.name.starts_with(prefix))
            .map(|(k, o)| o.meta(k))
            .collect())
    }

    fn delete(&self, keys: &[Key]) -> Result<(), RepoError> {
        let mut state = self.state();
        for key in keys {
            state.objects.remove(key);
        }
        Ok(())
    }

    fn delete_backup(&self, id: &str) -> Result<(), RepoError> {
        let prefix = format!("{id}/");
        self.state()
            .objects
            .retain(|k, _| !(k.kind == Kind::Backup && k.name.starts_with(&prefix)));
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<Leftover>, RepoError> {
        // Writes are never half done in memory: only backups without a manifest are left.
        let state = self.state();
        let mut ids: BTreeMap<&str, bool> = BTreeMap::new();
        for k in state.objects.keys() {
            if let Some((id, file)) = k.backup_parts() {
                *ids.entry(id).or_default() |= file == "manifest.json";
            }
        }
        Ok(ids
            .into_iter()
            .filter(|(_, complete)| !complete)
            .map(|(id, _)| Leftover {
                location: self.locate_kind(Kind::Backup).join(id),
                written: None,
            })
            .collect())
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), RepoError> {
        if let Some(id) = leftover
            .location
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        {
            self.delete_backup(&id)?;
        }
        Ok(())
    }

    fn lock(&self, kind: LockKind, what: &str, wait: Duration) -> Result<StorageLock, RepoError> {
        let (name, shared) = match kind {
            LockKind::Run => ("lock", false),
            LockKind::InUse => ("lock.use", true),
            LockKind::Delete => ("lock.use", false),
        };
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut state = self.state();
                let l = state.locks.entry(name).or_default();
                let free = l.exclusive.is_none() && (shared || l.shared == 0);
                if free {
                    let holder = format!("{what} (pid {})", std::process::id());
                    if shared {
                        l.shared += 1;
                        l.shared_holder = holder;
                    } else {
                        l.exclusive = Some(holder);
                    }
                    return Ok(StorageLock::new(MemoryLock {
                        storage: self.clone(),
                        name,
                        shared,
                    }));
                }
                if Instant::now() >= deadline {
                    return Err(RepoError::Locked {
                        path: self.location().join(name),
                        what: what.to_string(),
                        holder: l
                            .exclusive
                            .clone()
                            .unwrap_or_else(|| l.shared_holder.clone()),
                        waited: wait,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::storage::contract;

    #[test]
    fn memory_storage_keeps_the_storage_contract() {
        contract::all(&|| Box::new(MemoryStorage::new()));
    }
}
