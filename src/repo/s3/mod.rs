//! The repository in an S3 bucket (AWS S3 or any S3-compatible store), through the
//! `object_store` crate: the same objects as the posix layout's relative paths under
//! `s3://BUCKET/PREFIX/`, with the same guarantees reached differently:
//!
//! - **create-if-absent** is a conditional PUT (`If-None-Match: *`): a WAL segment is never
//!   overwritten; a server that ignores the condition is caught by the caller's read-back
//!   compare (wal-push compares an existing copy before and after writing).
//! - **nothing visible until complete**: a PUT is atomic; a backup file is a multipart upload
//!   completed on commit (aborted when dropped), and a backup exists only once
//!   `backups/<ID>/manifest.json` is written, last. Upload markers (`uploads/...`) let
//!   expire abort what a killed writer left.
//! - **retries**: every request (reads too, and a body cut mid-stream) is retried with
//!   exponential backoff and jitter on connection errors, timeouts, 408, 429 and 5xx, within
//!   `repository.retry_timeout`.
//! - **locks** are lease objects under `locks/` (see [`lock`]), so they work across hosts.
//! - **listing cost**: the WAL archive is listed through a small index (see [`index`]) for
//!   monitoring, exactly for restores.
//!
//! May use: `std`, `object_store`, [`super::storage`], [`super::posix`] (the WAL layout).

mod bridge;
mod client;
mod errors;
mod index;
mod io;
mod lock;
mod options;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjPath;

pub use options::{DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Options};

use super::RepoError;
use super::storage::{
    Access, BackupWriter, Created, Key, Kind, Leftover, LockKind, Meta, ObjectWriter, Storage,
    StorageLock,
};
use bridge::block;
use client::{Inner, UPLOADS, check_key, list_prefix, meta_of, rel_of};
use errors::{describe, is_no_such_bucket};

/// A repository in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    inner: Arc<Inner>,
    index: Arc<index::WalIndex>,
}

impl S3Storage {
    /// A repository in the bucket `opts` names. Fails only on settings (no request is made).
    pub fn new(opts: S3Options) -> Result<S3Storage, String> {
        let store = opts.build()?;
        let url = opts.url();
        let index = index::WalIndex::new(opts.cache_dir.as_deref(), &url, opts.endpoint.as_deref());
        Ok(S3Storage {
            inner: Arc::new(Inner {
                store,
                quick: std::sync::OnceLock::new(),
                opts,
                url,
            }),
            index: Arc::new(index),
        })
    }

    pub fn options(&self) -> &S3Options {
        &self.inner.opts
    }
}

impl Storage for S3Storage {
    fn location(&self) -> PathBuf {
        PathBuf::from(&self.inner.url)
    }

    fn identity(&self) -> String {
        match &self.inner.opts.endpoint {
            Some(e) => format!("{} at {e}", self.inner.url),
            None => self.inner.url.clone(),
        }
    }

    fn locate(&self, key: &Key) -> PathBuf {
        self.inner.url_of(&rel_of(key))
    }

    fn locate_kind(&self, kind: Kind) -> PathBuf {
        let dir = match kind {
            Kind::RepoInfo => "repo.json",
            Kind::Backup => "backups",
            Kind::Wal => "wal",
            Kind::Timeline => "timelines",
            Kind::RestorePoint => "restore-points",
        };
        self.inner.url_of(dir)
    }

    fn check_reachable(&self) -> Result<(), RepoError> {
        self.check_present().map_err(|detail| RepoError::Io {
            path: self.location(),
            action: "reach",
            source: std::io::Error::other(detail),
        })
    }

    fn check_present(&self) -> Result<(), String> {
        // A listing of the prefix answers for the bucket (a missing bucket or bad
        // credentials fail it; an empty repository does not).
        let store = self.inner.store.clone();
        let prefix = (!self.inner.opts.prefix.is_empty())
            .then(|| ObjPath::from(self.inner.opts.prefix.as_str()));
        match block(async move { store.list_with_delimiter(prefix.as_ref()).await }) {
            Ok(_) => Ok(()),
            Err(e) if is_no_such_bucket(&e) => Err(format!(
                "bucket {} does not exist (or is not in region {}); create it or fix repository.bucket/region",
                self.inner.opts.bucket,
                self.inner.opts.region.as_deref().unwrap_or("(default)")
            )),
            Err(e) => Err(format!("cannot reach {}: {}", self.inner.url, describe(&e))),
        }
    }

    fn check_access(&self) -> Access {
        lock::probe(&self.inner)
    }

    fn get(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, RepoError> {
        check_key(&self.inner, key)?;
        io::open(&self.inner, &rel_of(key))
    }

    fn read(&self, key: &Key) -> Result<Option<Vec<u8>>, RepoError> {
        check_key(&self.inner, key)?;
        self.inner.get_bytes(&rel_of(key))
    }

    fn stat(&self, key: &Key) -> Result<Option<Meta>, RepoError> {
        check_key(&self.inner, key)?;
        Ok(self
            .inner
            .head(&rel_of(key))?
            .and_then(|m| meta_of(key.kind, &self.inner, &m)))
    }

    fn stat_first(&self, keys: &[Key]) -> Result<Option<Meta>, RepoError> {
        let Some(first) = keys.first() else {
            return Ok(None);
        };
        let rels: Vec<String> = keys.iter().map(rel_of).collect();
        for key in keys {
            check_key(&self.inner, key)?;
        }
        if keys.iter().any(|k| k.kind != first.kind) {
            return keys.iter().try_fold(None, |found, k| match found {
                Some(m) => Ok(Some(m)),
                None => self.stat(k),
            });
        }
        // One listing of the keys' common prefix.
        let common = rels.iter().skip(1).fold(rels[0].as_str(), |acc, r| {
            let n = acc
                .bytes()
                .zip(r.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            &acc[..n]
        });
        let listed = self.inner.list_rel(common)?;
        for key in keys {
            let want = self.inner.obj(&rel_of(key));
            if let Some(m) = listed.iter().find(|m| m.location == want) {
                return Ok(meta_of(key.kind, &self.inner, m));
            }
        }
        Ok(None)
    }

    fn writer(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, RepoError> {
        check_key(&self.inner, key)?;
        Ok(Box::new(io::ObjectPut::new(
            self.inner.clone(),
            rel_of(key),
        )))
    }

    fn create_new(
        &self,
        key: &Key,
        write: &mut dyn FnMut(&mut (dyn Write + Send)) -> std::io::Result<()>,
    ) -> Result<Created, RepoError> {
        check_key(&self.inner, key)?;
        let rel = rel_of(key);
        let mut buf: Vec<u8> = Vec::new();
        write(&mut buf).map_err(|source| RepoError::Io {
            path: self.inner.url_of(&rel),
            action: "write",
            source,
        })?;
        let created = self.inner.put_rel(&rel, buf, true)?;
        if key.kind == Kind::Wal && created == Created::Created {
            self.index.changed();
        }
        Ok(created)
    }

    fn put(&self, key: &Key, bytes: &[u8]) -> Result<(), RepoError> {
        check_key(&self.inner, key)?;
        self.inner
            .put_rel(&rel_of(key), bytes.to_vec(), false)
            .map(|_| ())
    }

    fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Meta>, RepoError> {
        let mut out: Vec<Meta> = self
            .inner
            .list_rel(&list_prefix(kind, prefix))?
            .iter()
            .filter_map(|m| meta_of(kind, &self.inner, m))
            .filter(|m| m.key.name.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.name.cmp(&b.key.name));
        Ok(out)
    }

    fn list_recent(&self, kind: Kind) -> Result<Vec<Meta>, RepoError> {
        if kind != Kind::Wal {
            return self.list(kind, "");
        }
        index::list(&self.inner, &self.index)
    }

    fn delete(&self, keys: &[Key]) -> Result<(), RepoError> {
        for key in keys {
            check_key(&self.inner, key)?;
        }
        if keys.iter().any(|k| k.kind == Kind::Wal) {
            self.index.changed();
        }
        self.inner.delete_rel(keys.iter().map(rel_of).collect())
    }

    fn backup_writer(&self, id: &str) -> Result<Box<dyn BackupWriter>, RepoError> {
        check_key(&self.inner, &Key::backup(id, "manifest.json"))?;
        io::BackupUpload::start(self.inner.clone(), id)
    }

    fn remove_interrupted_backups(&self) -> Vec<PathBuf> {
        // Called under the Run lock: no backup is being written, so every upload marker and
        // every backup without a manifest is what an interrupted writer left.
        let mut removed = Vec::new();
        if let Ok(leftovers) = self.leftovers() {
            for l in leftovers {
                if self.remove_leftover(&l).is_ok() {
                    removed.push(l.location);
                }
            }
        }
        removed
    }

    fn delete_backup(&self, id: &str) -> Result<(), RepoError> {
        let manifest = Key::backup(id, "manifest.json");
        check_key(&self.inner, &manifest)?;
        // The manifest first: the backup stops existing at once; what remains is a leftover.
        self.inner.delete_rel(vec![rel_of(&manifest)])?;
        let rest: Vec<String> = self
            .inner
            .list_rel(&format!("backups/{id}/"))?
            .iter()
            .map(|m| self.inner.rel(&m.location).to_string())
            .collect();
        self.inner.delete_rel(rest)
    }

    fn leftovers(&self) -> Result<Vec<Leftover>, RepoError> {
        let mut out = Vec::new();
        let mut ids: std::collections::BTreeMap<String, bool> = Default::default();
        for m in self.inner.list_rel("backups/")? {
            let rel = self.inner.rel(&m.location);
            let Some((id, file)) = rel.strip_prefix("backups/").and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            let has = ids.entry(id.to_string()).or_default();
            *has |= file == "manifest.json";
        }
        for (id, complete) in ids {
            if !complete {
                out.push(Leftover {
                    location: self.inner.url_of(&format!("backups/{id}/")),
                    written: None,
                });
            }
        }
        for m in self.inner.list_rel(&format!("{UPLOADS}/"))? {
            out.push(Leftover {
                location: self.inner.url_of(self.inner.rel(&m.location)),
                written: Some(m.last_modified.into()),
            });
        }
        Ok(out)
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), RepoError> {
        let loc = leftover.location.to_string_lossy();
        let Some(rel) = loc
            .strip_prefix(self.inner.url.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Err(RepoError::Corrupt {
                path: leftover.location.clone(),
                detail: "not in this repository; nothing was removed".into(),
            });
        };
        if rel.starts_with("backups/") && rel.ends_with('/') {
            let all: Vec<String> = self
                .inner
                .list_rel(rel)?
                .iter()
                .map(|m| self.inner.rel(&m.location).to_string())
                .collect();
            return self.inner.delete_rel(all);
        }
        if rel.starts_with(&format!("{UPLOADS}/")) {
            return io::abort_marked(&self.inner, rel);
        }
        Err(RepoError::Corrupt {
            path: leftover.location.clone(),
            detail: "not a leftover this storage knows; nothing was removed".into(),
        })
    }

    fn lock(&self, kind: LockKind, what: &str, wait: Duration) -> Result<StorageLock, RepoError> {
        lock::acquire(&self.inner, kind, what, wait)
    }
}

#[cfg(test)]
pub(crate) mod tests;
