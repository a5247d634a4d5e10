//! One bucket and prefix: the object_store client with the repository's settings, the
//! mapping between repository keys and object paths (the posix layout's relative paths
//! under `PREFIX/`), and the requests every other part builds on, each naming the object in
//! its error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::bridge::block;
use super::errors::{describe, io_kind, is_not_found};
use super::options::S3Options;
use crate::repo::RepoError;
use crate::repo::storage::{Created, Key, Kind, Meta};

/// Where uploads in progress are recorded (one marker per multipart upload).
pub const UPLOADS: &str = "uploads";
/// Where the lease objects of the repository locks are.
pub const LOCKS: &str = "locks";

/// A bucket and prefix, and how to reach it.
#[derive(Debug)]
pub struct Inner {
    pub store: Arc<AmazonS3>,
    /// The same client retrying briefly, built when first needed: for best-effort cleanup
    /// on a failure path (a multipart upload aborted, a lease released), so that a failed
    /// run exits promptly during an outage; what it could not remove the next backup or
    /// expire removes.
    pub quick: std::sync::OnceLock<Arc<AmazonS3>>,
    pub opts: S3Options,
    pub url: String,
}

/// How long best-effort cleanup retries (see [`Inner::quick`]).
pub const QUICK_RETRY: Duration = Duration::from_secs(5);

impl Inner {
    /// This bucket through the briefly retrying client.
    pub fn quick(&self) -> Arc<Inner> {
        let store = self
            .quick
            .get_or_init(|| {
                self.opts
                    .build_retrying(self.opts.retry_timeout.min(QUICK_RETRY))
                    .unwrap_or_else(|_| self.store.clone())
            })
            .clone();
        Arc::new(Inner {
            store: store.clone(),
            quick: std::sync::OnceLock::from(store),
            opts: self.opts.clone(),
            url: self.url.clone(),
        })
    }

    /// The object path of `rel` (a path relative to the repository root).
    pub fn obj(&self, rel: &str) -> ObjPath {
        if self.opts.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.opts.prefix))
        }
    }

    /// The path of `obj` relative to the repository root.
    pub fn rel<'a>(&self, obj: &'a ObjPath) -> &'a str {
        let s = obj.as_ref();
        if self.opts.prefix.is_empty() {
            s
        } else {
            s.strip_prefix(self.opts.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(s)
        }
    }

    pub fn url_of(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}/{rel}", self.url))
    }

    pub fn err(&self, rel: &str, action: &'static str, e: object_store::Error) -> RepoError {
        RepoError::Io {
            path: self.url_of(rel),
            action,
            source: std::io::Error::new(io_kind(&e), describe(&e)),
        }
    }

    /// Lists every object whose relative path starts with `rel_prefix` (a plain string
    /// prefix, as S3 lists: `wal/0000000100000000/000000010000000000000001` lists that
    /// segment's stored copies and nothing else), page by page.
    pub fn list_rel(&self, rel_prefix: &str) -> Result<Vec<object_store::ObjectMeta>, RepoError> {
        let fut = list_objects(self.store.clone(), self.full_prefix(rel_prefix));
        block(fut).map_err(|e| self.err(rel_prefix, "list", e))
    }

    /// The object key prefix of `rel_prefix` (a plain string, trailing `/` kept).
    pub fn full_prefix(&self, rel_prefix: &str) -> String {
        if self.opts.prefix.is_empty() {
            rel_prefix.to_string()
        } else {
            format!("{}/{rel_prefix}", self.opts.prefix)
        }
    }

    pub fn head(&self, rel: &str) -> Result<Option<object_store::ObjectMeta>, RepoError> {
        let store = self.store.clone();
        let path = self.obj(rel);
        match block(async move { store.head(&path).await }) {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err(rel, "stat", e)),
        }
    }

    pub fn get_bytes(&self, rel: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let store = self.store.clone();
        let path = self.obj(rel);
        let r = block(async move {
            let r = store.get(&path).await?;
            r.bytes().await
        });
        match r {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err(rel, "read", e)),
        }
    }

    /// PUTs `bytes` at `rel`: created only if absent with `create`, else replacing.
    pub fn put_rel(&self, rel: &str, bytes: Vec<u8>, create: bool) -> Result<Created, RepoError> {
        let store = self.store.clone();
        let path = self.obj(rel);
        let mode = if create {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let r = block(async move {
            store
                .put_opts(
                    &path,
                    PutPayload::from(bytes),
                    PutOptions {
                        mode,
                        ..Default::default()
                    },
                )
                .await
        });
        match r {
            Ok(_) => Ok(Created::Created),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) if create => Ok(Created::AlreadyExists),
            Err(e) => Err(self.err(rel, "write", e)),
        }
    }

    /// Deletes objects by relative path, in batches (the server's bulk delete).
    pub fn delete_rel(&self, rels: Vec<String>) -> Result<(), RepoError> {
        for batch in rels.chunks(1000) {
            let paths: Vec<ObjPath> = batch.iter().map(|r| self.obj(r)).collect();
            let store = self.store.clone();
            let failed = block(async move {
                let input = futures_util::stream::iter(paths.into_iter().map(Ok)).boxed();
                let mut out = store.delete_stream(input);
                let mut failed = None;
                while let Some(r) = out.next().await {
                    match r {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
                failed
            });
            if let Some(e) = failed {
                return Err(self.err(&batch[0], "delete", e));
            }
        }
        Ok(())
    }
}

/// Every object whose key starts with `full` (see [`Inner::list_rel`]), page by page.
pub async fn list_objects(
    store: Arc<AmazonS3>,
    full: String,
) -> object_store::Result<Vec<object_store::ObjectMeta>> {
    let mut out = Vec::new();
    let mut page_token = None;
    loop {
        let page = store
            .list_paginated(
                Some(&full),
                PaginatedListOptions {
                    page_token: page_token.take(),
                    ..Default::default()
                },
            )
            .await?;
        out.extend(page.result.objects);
        match page.page_token {
            Some(t) => page_token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The repository-relative path of `key` (the posix layout's relative path).
pub fn rel_of(key: &Key) -> String {
    match key.kind {
        Kind::RepoInfo => "repo.json".into(),
        Kind::Backup => format!("backups/{}", key.name),
        Kind::Wal => match crate::repo::posix::wal_subdir(&key.name) {
            Some(dir) => format!("wal/{dir}/{}", key.name),
            None => format!("wal/{}", key.name),
        },
        Kind::Timeline => format!("timelines/{}", key.name),
        Kind::RestorePoint => format!("restore-points/{}", key.name),
    }
}

/// The key of the object at `rel`, if it is one (not a marker, lock or temp object).
pub fn key_of(kind: Kind, rel: &str) -> Option<Key> {
    let name = match kind {
        Kind::RepoInfo => return (rel == "repo.json").then(Key::repo_info),
        Kind::Backup => rel.strip_prefix("backups/")?,
        Kind::Wal => {
            let rest = rel.strip_prefix("wal/")?;
            match rest.split_once('/') {
                Some((dir, name)) if crate::repo::posix::wal_subdir(name) == Some(dir) => name,
                Some(_) => return None,
                None => rest,
            }
        }
        Kind::Timeline => rel.strip_prefix("timelines/")?,
        Kind::RestorePoint => rel.strip_prefix("restore-points/")?,
    };
    if name.is_empty() || name.split('/').any(|p| p.is_empty() || p.starts_with('.')) {
        return None;
    }
    if kind == Kind::Backup && name.split('/').count() != 2 {
        return None;
    }
    if kind != Kind::Backup && name.contains('/') {
        return None;
    }
    Some(Key {
        kind,
        name: name.to_string(),
    })
}

pub fn check_key(inner: &Inner, key: &Key) -> Result<(), RepoError> {
    let ok = match key.kind {
        Kind::RepoInfo => key.name.is_empty(),
        _ => key_of(key.kind, &rel_of(key)).as_ref() == Some(key),
    };
    if ok {
        Ok(())
    } else {
        Err(RepoError::Corrupt {
            path: inner.url_of(&rel_of(key)),
            detail: format!("`{}` is not a valid object name", key.name),
        })
    }
}

pub fn meta_of(kind: Kind, inner: &Inner, m: &object_store::ObjectMeta) -> Option<Meta> {
    let key = key_of(kind, inner.rel(&m.location))?;
    Some(Meta {
        key,
        size: m.size,
        modified: m.last_modified.into(),
        version: m.e_tag.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                m.size,
                m.last_modified.timestamp_nanos_opt().unwrap_or(0)
            )
        }),
    })
}

/// The listing prefix (relative path) for objects of `kind` whose name starts with `prefix`.
pub fn list_prefix(kind: Kind, prefix: &str) -> String {
    match kind {
        Kind::RepoInfo => "repo.json".into(),
        Kind::Wal if prefix.len() > 16 => {
            match crate::repo::posix::wal_subdir(&format!("{prefix:0<24}")) {
                Some(dir) => format!("wal/{dir}/{prefix}"),
                None => format!("wal/{prefix}"),
            }
        }
        _ => rel_of(&Key {
            kind,
            name: prefix.to_string(),
        }),
    }
}

/// When `modified` is at least `age` before now (false for a time in the future).
pub fn older_than(modified: SystemTime, age: Duration) -> bool {
    SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|d| d >= age)
}
