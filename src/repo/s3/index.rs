//! A small index of the WAL archive's listing, so that monitoring (the recovery and standby
//! collectors, `dbagent check`) does not list the whole archive on every poll: 100,000
//! segments are 100 LIST requests, a poll with the index is about six.
//!
//! The archive is laid out by log directory (`wal/<TLI+LOG>/`, 256 segments of 16 MiB each).
//! The index keeps each directory's listing; a call lists the top of `wal/` with a delimiter
//! (the directories and the history files: one request up to 1,000 directories), drops
//! directories that are gone, lists again the newest directory of every timeline (where
//! segments arrive) and any directory it has not seen, and refreshes a few of the others, the
//! longest unrefreshed first; every [`FULL_EVERY`] it lists everything. So a segment that
//! arrives out of order in an older directory, or one expire removed from a directory that
//! still exists, shows within [`FULL_EVERY`] at worst. Restores, drills, `wal verify` and
//! expire never use it: they list exactly.
//!
//! The index lives in memory (the agent keeps its storage) and, when the storage was given a
//! cache directory (the state directory), in a file there, so one-shot commands benefit too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use object_store::ObjectStore;

use super::bridge::block;
use super::client::{Inner, meta_of};
use crate::repo::RepoError;
use crate::repo::storage::{Kind, Meta};

/// How often the whole archive is listed again (seconds).
pub const FULL_EVERY: u64 = 3600;
/// How many older directories a call refreshes.
const REFRESH_PER_CALL: usize = 4;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Obj {
    /// Path relative to the repository root.
    rel: String,
    size: u64,
    /// Unix milliseconds.
    modified: i64,
    etag: Option<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Dir {
    listed_at: u64,
    objects: Vec<Obj>,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    /// The storage this index describes (a file found under another name is ignored).
    identity: String,
    full_at: u64,
    /// The objects at the top of `wal/` (history files), as last listed.
    #[serde(default)]
    top: Vec<Obj>,
    dirs: BTreeMap<String, Dir>,
}

#[derive(Debug)]
pub struct WalIndex {
    file: Option<PathBuf>,
    identity: String,
    state: Mutex<Option<State>>,
    /// When this process last refreshed the state: within [`REUSE`], a second caller (the
    /// next check of the same `dbagent check`) gets it as it is.
    refreshed: Mutex<Option<std::time::Instant>>,
}

/// How long a refresh answers further calls of the same process.
const REUSE: std::time::Duration = std::time::Duration::from_secs(5);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn obj(inner: &Inner, m: &object_store::ObjectMeta) -> Obj {
    Obj {
        rel: inner.rel(&m.location).to_string(),
        size: m.size,
        modified: m.last_modified.timestamp_millis(),
        etag: m.e_tag.clone(),
    }
}

impl WalIndex {
    pub fn new(cache_dir: Option<&Path>, url: &str, endpoint: Option<&str>) -> WalIndex {
        let identity = format!("{url} {}", endpoint.unwrap_or(""));
        let file = cache_dir.map(|d| {
            // FNV-1a of the identity: a stable, short file name per repository.
            let mut h: u64 = 0xcbf29ce484222325;
            for b in identity.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
            d.join(format!("s3-wal-index-{h:016x}.json"))
        });
        WalIndex {
            file,
            identity,
            state: Mutex::new(None),
            refreshed: Mutex::new(None),
        }
    }

    fn load(&self) -> Option<State> {
        let text = std::fs::read(self.file.as_ref()?).ok()?;
        serde_json::from_slice::<State>(&text)
            .ok()
            .filter(|s| s.identity == self.identity)
    }

    fn save(&self, state: &State) {
        let Some(file) = &self.file else { return };
        let Some(dir) = file.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!(
            ".s3-wal-index-{}-{}.tmp",
            std::process::id(),
            fastrand::u32(..)
        ));
        let ok = serde_json::to_vec(state)
            .ok()
            .is_some_and(|b| std::fs::write(&tmp, b).is_ok());
        // Best effort: a cache that cannot be written only costs the next run a listing.
        if !ok || std::fs::rename(&tmp, file).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// This process changed the archive (created or deleted WAL): the next call lists again
    /// rather than reuse the last refresh.
    pub fn changed(&self) {
        if let Ok(mut r) = self.refreshed.lock() {
            *r = None;
        }
    }
}

/// The WAL archive's objects, from the index (see the module doc).
pub fn list(inner: &Arc<Inner>, index: &WalIndex) -> Result<Vec<Meta>, RepoError> {
    let mut guard = index.state.lock().map_err(|_| RepoError::Corrupt {
        path: inner.url_of("wal"),
        detail: "the listing index lock was poisoned".into(),
    })?;
    let recent = index
        .refreshed
        .lock()
        .ok()
        .and_then(|r| *r)
        .is_some_and(|at| at.elapsed() < REUSE);
    if recent && let Some(state) = guard.as_ref() {
        return Ok(metas(inner, state));
    }
    if guard.is_none() {
        *guard = index.load();
    }
    let t = now();
    let mut top: Vec<Obj> = Vec::new();
    let mut state = match guard.take() {
        Some(mut state) if t.saturating_sub(state.full_at) < FULL_EVERY => {
            let store = inner.store.clone();
            let wal = inner.obj("wal");
            let listed = block(async move { store.list_with_delimiter(Some(&wal)).await })
                .map_err(|e| inner.err("wal/", "list", e))?;
            top = listed.objects.iter().map(|m| obj(inner, m)).collect();
            let present: Vec<String> = listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect();
            state.dirs.retain(|d, _| present.contains(d));
            let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
            for d in &present {
                let tli = d.get(..8).unwrap_or(d);
                let e = newest.entry(tli).or_insert(d);
                if d.as_str() > *e {
                    *e = d;
                }
            }
            let mut todo: Vec<String> = present
                .iter()
                .filter(|d| !state.dirs.contains_key(*d) || newest.values().any(|n| n == d))
                .cloned()
                .collect();
            let mut others: Vec<(&String, u64)> = state
                .dirs
                .iter()
                .filter(|(d, _)| !todo.contains(d))
                .map(|(d, e)| (d, e.listed_at))
                .collect();
            others.sort_by_key(|(_, at)| *at);
            todo.extend(
                others
                    .into_iter()
                    .take(REFRESH_PER_CALL)
                    .map(|(d, _)| d.clone()),
            );
            // The directories at once: one round trip instead of one per directory.
            let lists = todo.iter().map(|d| {
                super::client::list_objects(
                    inner.store.clone(),
                    inner.full_prefix(&format!("wal/{d}/")),
                )
            });
            let listed = block(futures_util::future::join_all(lists));
            for (d, objects) in todo.into_iter().zip(listed) {
                let objects = objects.map_err(|e| inner.err(&format!("wal/{d}/"), "list", e))?;
                state.dirs.insert(
                    d,
                    Dir {
                        listed_at: t,
                        objects: objects.iter().map(|m| obj(inner, m)).collect(),
                    },
                );
            }
            state
        }
        _ => {
            let mut state = State {
                identity: index.identity.clone(),
                full_at: t,
                top: Vec::new(),
                dirs: BTreeMap::new(),
            };
            let store = inner.store.clone();
            let wal = inner.obj("wal");
            let all = block(async move {
                let mut out = Vec::new();
                let mut s = store.list(Some(&wal));
                while let Some(m) = s.next().await {
                    out.push(m?);
                }
                Ok::<_, object_store::Error>(out)
            })
            .map_err(|e| inner.err("wal/", "list", e))?;
            for m in &all {
                let o = obj(inner, m);
                match o.rel.strip_prefix("wal/").and_then(|r| r.split_once('/')) {
                    Some((d, _)) => state
                        .dirs
                        .entry(d.to_string())
                        .or_insert_with(|| Dir {
                            listed_at: t,
                            objects: Vec::new(),
                        })
                        .objects
                        .push(o),
                    None => top.push(o),
                }
            }
            state
        }
    };
    state.top = top;
    index.save(&state);
    let out = metas(inner, &state);
    *guard = Some(state);
    if let Ok(mut r) = index.refreshed.lock() {
        *r = Some(std::time::Instant::now());
    }
    Ok(out)
}

fn metas(inner: &Inner, state: &State) -> Vec<Meta> {
    let mut out: Vec<Meta> = state
        .top
        .iter()
        .chain(state.dirs.values().flat_map(|d| d.objects.iter()))
        .filter_map(|o| to_meta(inner, o))
        .collect();
    out.sort_by(|a, b| a.key.name.cmp(&b.key.name));
    out
}

fn to_meta(inner: &Inner, o: &Obj) -> Option<Meta> {
    let modified = chrono_free(o.modified);
    let m = object_store::ObjectMeta {
        location: inner.obj(&o.rel),
        last_modified: modified?,
        size: o.size,
        e_tag: o.etag.clone(),
        version: None,
    };
    meta_of(Kind::Wal, inner, &m)
}

/// Unix milliseconds as object_store's timestamp type.
fn chrono_free(ms: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(ms)
}
