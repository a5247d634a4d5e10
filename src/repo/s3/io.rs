//! Reading and writing objects: a reader that streams an object with one batch read ahead,
//! the buffered single-PUT writer for small objects (WAL, records), and the backup writer
//! whose files are multipart uploads streamed part by part (memory bounded by two parts per
//! file, whatever the backup's size), each recorded by a marker under `uploads/` while in
//! progress so that an interrupted one can be aborted later.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStoreExt, PutPayload};

use super::bridge::{block, join, spawn};
use super::client::{Inner, UPLOADS};
use super::errors::{describe, io_kind, is_not_found};
use crate::repo::RepoError;
use crate::repo::storage::{BackupWriter, Created, ObjectWriter};

/// How much a reader fetches per step (and holds read ahead).
const BATCH: usize = 1 << 20;

type Body = BoxStream<'static, object_store::Result<Bytes>>;
type Fetched = (Body, io::Result<Vec<u8>>, bool);

/// Opens `rel` for reading; `Ok(None)` when there is no such object.
pub fn open(inner: &Arc<Inner>, rel: &str) -> Result<Option<Box<dyn Read + Send>>, RepoError> {
    let store = inner.store.clone();
    let path = inner.obj(rel);
    match block(async move { store.get(&path).await }) {
        Ok(r) => {
            let body = r.into_stream();
            Ok(Some(Box::new(ObjectReader {
                url: inner.url_of(rel),
                cur: Vec::new(),
                pos: 0,
                pending: Some(spawn(fetch(body))),
                done: false,
            })))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(inner.err(rel, "read", e)),
    }
}

/// Pulls up to [`BATCH`] bytes from `body` (object_store resumes a body cut mid-way itself).
async fn fetch(mut body: Body) -> Fetched {
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        match body.next().await {
            Some(Ok(b)) => {
                buf.extend_from_slice(&b);
                if buf.len() >= BATCH {
                    return (body, Ok(buf), false);
                }
            }
            Some(Err(e)) => {
                let kind = io_kind(&e);
                return (body, Err(io::Error::new(kind, describe(&e))), true);
            }
            None => return (body, Ok(buf), true),
        }
    }
}

struct ObjectReader {
    url: PathBuf,
    cur: Vec<u8>,
    pos: usize,
    pending: Option<tokio::task::JoinHandle<Fetched>>,
    done: bool,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = out.len().min(self.cur.len() - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let Some(handle) = self.pending.take() else {
                return Ok(0);
            };
            let (body, batch, end) = join(handle)?;
            self.cur = batch.map_err(|e| {
                io::Error::new(e.kind(), format!("reading {}: {e}", self.url.display()))
            })?;
            self.pos = 0;
            if end {
                self.done = true;
                continue;
            }
            self.pending = Some(spawn(fetch(body)));
        }
    }
}

/// A small object written whole on commit with a conditional PUT (create only if absent).
pub struct ObjectPut {
    inner: Arc<Inner>,
    rel: String,
    buf: Vec<u8>,
}

impl ObjectPut {
    pub fn new(inner: Arc<Inner>, rel: String) -> ObjectPut {
        ObjectPut {
            inner,
            rel,
            buf: Vec::new(),
        }
    }
}

impl Write for ObjectPut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for ObjectPut {
    fn commit(self: Box<Self>) -> Result<Created, RepoError> {
        let this = *self;
        this.inner.put_rel(&this.rel, this.buf, true)
    }
}

/// The marker of a multipart upload in progress: which object, which upload.
#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    object: String,
    upload_id: String,
}

fn marker_rel(rel: &str) -> String {
    format!("{UPLOADS}/{rel}.json")
}

/// Aborts the upload a marker records and removes the marker (an upload already gone is
/// fine: the marker may have outlived it).
pub fn abort_marked(inner: &Arc<Inner>, marker: &str) -> Result<(), RepoError> {
    if let Some(text) = inner.get_bytes(marker)?
        && let Ok(m) = serde_json::from_slice::<Marker>(&text)
    {
        let store = inner.store.clone();
        let path = inner.obj(&m.object);
        let r = block(async move { store.abort_multipart(&path, &m.upload_id).await });
        match r {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(inner.err(marker, "abort the upload of", e)),
        }
    }
    inner.delete_rel(vec![marker.to_string()])
}

/// One file of a backup: parts are uploaded while the next is filled (at most one in flight),
/// completed on commit, aborted when dropped uncommitted.
struct MultipartFile {
    inner: Arc<Inner>,
    rel: String,
    buf: Vec<u8>,
    upload: Option<String>,
    parts: Vec<PartId>,
    in_flight: Option<tokio::task::JoinHandle<object_store::Result<PartId>>>,
    finished: bool,
}

impl MultipartFile {
    fn part_size(&self) -> usize {
        self.inner.opts.part_size as usize
    }

    fn wait_in_flight(&mut self) -> io::Result<()> {
        if let Some(h) = self.in_flight.take() {
            let part = join(h)?.map_err(|e| self.io_err(&e))?;
            self.parts.push(part);
        }
        Ok(())
    }

    fn io_err(&self, e: &object_store::Error) -> io::Error {
        io::Error::new(
            io_kind(e),
            format!(
                "uploading {}: {}",
                self.inner.url_of(&self.rel).display(),
                describe(e)
            ),
        )
    }

    fn send_part(&mut self) -> io::Result<()> {
        if self.upload.is_none() {
            let store = self.inner.store.clone();
            let path = self.inner.obj(&self.rel);
            let id = block(async move { store.create_multipart(&path).await })
                .map_err(|e| self.io_err(&e))?;
            let marker = serde_json::to_vec(&Marker {
                object: self.rel.clone(),
                upload_id: id.clone(),
            })
            .map_err(io::Error::other)?;
            self.upload = Some(id);
            self.inner
                .put_rel(&marker_rel(&self.rel), marker, false)
                .map_err(io::Error::from)?;
        }
        self.wait_in_flight()?;
        let size = self.part_size();
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(size));
        let store = self.inner.store.clone();
        let path = self.inner.obj(&self.rel);
        let id = self.upload.clone().unwrap_or_default();
        let idx = self.parts.len();
        self.in_flight = Some(spawn(async move {
            store
                .put_part(&path, &id, idx, PutPayload::from(data))
                .await
        }));
        Ok(())
    }

    fn abort(&mut self) {
        if let Some(h) = self.in_flight.take() {
            let _ = join(h);
        }
        if self.upload.take().is_some() {
            let _ = abort_marked(&self.inner, &marker_rel(&self.rel));
        }
    }
}

impl Write for MultipartFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.part_size() - self.buf.len();
        let n = buf.len().min(room);
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() >= self.part_size() {
            self.send_part()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MultipartFile {
    fn commit(mut self: Box<Self>) -> Result<Created, RepoError> {
        let url = self.inner.url_of(&self.rel);
        let io_err = |source| RepoError::Io {
            path: url.clone(),
            action: "write",
            source,
        };
        if self.upload.is_none() {
            let data = std::mem::take(&mut self.buf);
            self.inner.put_rel(&self.rel, data, false)?;
            self.finished = true;
            return Ok(Created::Created);
        }
        if !self.buf.is_empty() {
            self.send_part().map_err(io_err)?;
        }
        self.wait_in_flight().map_err(io_err)?;
        let store = self.inner.store.clone();
        let path = self.inner.obj(&self.rel);
        let id = self.upload.clone().unwrap_or_default();
        let parts = std::mem::take(&mut self.parts);
        block(async move { store.complete_multipart(&path, &id, parts).await })
            .map_err(|e| self.inner.err(&self.rel, "complete the upload of", e))?;
        self.finished = true;
        self.upload = None;
        self.inner.delete_rel(vec![marker_rel(&self.rel)])?;
        Ok(Created::Created)
    }
}

impl Drop for MultipartFile {
    fn drop(&mut self) {
        if !self.finished {
            self.abort();
        }
    }
}

/// A backup being written to `backups/<ID>/`: it exists once manifest.json is there.
pub struct BackupUpload {
    inner: Arc<Inner>,
    id: String,
    scratch: PathBuf,
    published: AtomicBool,
}

impl BackupUpload {
    pub fn start(inner: Arc<Inner>, id: &str) -> Result<Box<dyn BackupWriter>, RepoError> {
        let scratch = std::env::temp_dir().join(format!(
            "dbagent-backup-{id}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&scratch).map_err(|source| RepoError::Io {
            path: scratch.clone(),
            action: "create the local scratch directory",
            source,
        })?;
        Ok(Box::new(BackupUpload {
            inner,
            id: id.to_string(),
            scratch,
            published: AtomicBool::new(false),
        }))
    }

    fn files(&self) -> Result<Vec<String>, RepoError> {
        Ok(self
            .inner
            .list_rel(&format!("backups/{}/", self.id))?
            .iter()
            .map(|m| self.inner.rel(&m.location).to_string())
            .collect())
    }
}

impl BackupWriter for BackupUpload {
    fn location(&self) -> PathBuf {
        self.inner.url_of(&format!("backups/{}", self.id))
    }

    fn scratch(&self) -> &Path {
        &self.scratch
    }

    fn file(&self, name: &str) -> Result<Box<dyn ObjectWriter>, RepoError> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(RepoError::Corrupt {
                path: self.location().join(name),
                detail: format!("`{name}` is not the name of a file of a backup"),
            });
        }
        let part = self.inner.opts.part_size as usize;
        Ok(Box::new(MultipartFile {
            inner: self.inner.clone(),
            rel: format!("backups/{}/{name}", self.id),
            buf: Vec::with_capacity(part.min(1 << 20)),
            upload: None,
            parts: Vec::new(),
            in_flight: None,
            finished: false,
        }))
    }

    fn discard_files(&self) -> Result<(), RepoError> {
        let files = self.files()?;
        self.inner.delete_rel(files)
    }

    fn publish(&self, manifest: &[u8]) -> Result<(), RepoError> {
        let rel = format!("backups/{}/manifest.json", self.id);
        match self.inner.put_rel(&rel, manifest.to_vec(), true)? {
            Created::Created => {
                self.published.store(true, Ordering::SeqCst);
                Ok(())
            }
            Created::AlreadyExists => Err(RepoError::Corrupt {
                path: self.inner.url_of(&rel),
                detail: "another backup with this ID was published meanwhile".into(),
            }),
        }
    }
}

impl Drop for BackupUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
        if !self.published.load(Ordering::SeqCst)
            && let Ok(files) = self.files()
        {
            let _ = self.inner.delete_rel(files);
        }
    }
}
