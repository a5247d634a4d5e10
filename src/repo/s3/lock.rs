//! The repository locks in a bucket, for agents on different hosts: lease objects under
//! `locks/`.
//!
//! - **Exclusive** (`run`: backup and expire; `delete`: expire against readers): the lock is
//!   the object `locks/<name>.json`, created with a conditional PUT (`If-None-Match: *`), so of
//!   two agents racing exactly one creates it. The holder renews it every
//!   [`RENEW`] with a PUT conditional on its own ETag (`If-Match`); a lock whose object was
//!   not renewed for [`LEASE`] is stale (its holder died or lost the network) and is taken
//!   over with a PUT conditional on the stale ETag, so of two agents taking over, one wins.
//!   Released by deleting it (after checking it is still ours).
//! - **Shared** (`use`: drills and restores reading backups): each reader creates its own
//!   lease object `locks/use/<token>.json`; it backs off while a live `delete` lock exists.
//!   Expire takes `delete` and then waits until no live `use` lease is left.
//!
//! //! A lease whose holder ran on this host and whose process is gone is taken over at once
//! (a killed run on the same host does not block the next one for [`LEASE`]).
//!
//! Failure modes (also in docs/repository.md, "Cross-host lock"): the lease is judged by the object's Last-Modified
//! (the server's clock) against the local clock, so a host whose clock is more than
//! [`LEASE`]/2 off the server's may take a live lock for stale (keep NTP on); a holder that
//! cannot renew for [`LEASE`] (a network partition longer than that) may lose its lock to
//! another host while it still runs, and logs an error when it finds out; a store that
//! ignores conditional writes gives no exclusion at all: `dbagent check` tests for that with
//! a probe object and reports it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::bridge::{block, spawn};
use super::client::{Inner, LOCKS, older_than};
use super::errors::{describe, is_no_such_bucket, is_not_found};
use crate::repo::RepoError;
use crate::repo::storage::{Access, Created, LockKind, StorageLock};

/// How long a lock lives without renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often its holder renews it.
pub const RENEW: Duration = Duration::from_secs(15);
/// How often a waiting agent tries again.
const POLL: Duration = Duration::from_millis(200);

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    holder: String,
    host: String,
    pid: u32,
    token: String,
}

fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn record(what: &str) -> Record {
    let host = host();
    let pid = std::process::id();
    Record {
        holder: format!("{what} (pid {pid} on {host})"),
        host,
        pid,
        token: format!("{:016x}", fastrand::u64(..)),
    }
}

/// A held lease: renewed in the background, deleted on drop.
struct Lease {
    inner: Arc<Inner>,
    rel: String,
    etag: Arc<std::sync::Mutex<Option<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        let ours = self.etag.lock().map(|e| e.clone()).unwrap_or(None);
        // Delete it only while it is still ours (not taken over after a lost lease).
        let quick = self.inner.quick();
        if let Ok(Some(m)) = quick.head(&self.rel)
            && m.e_tag == ours
        {
            let _ = quick.delete_rel(vec![self.rel.clone()]);
        }
    }
}

enum Attempt {
    Held(Lease),
    /// Someone else holds it: who.
    Busy(String),
}

/// Creates `rel` as our lease, or takes it over when stale.
fn try_take(inner: &Arc<Inner>, rel: &str, what: &str) -> Result<Attempt, RepoError> {
    let rec = record(what);
    let body = serde_json::to_vec(&rec).unwrap_or_default();
    match put(inner, rel, body.clone(), PutMode::Create) {
        Ok(etag) => return Ok(Attempt::Held(lease(inner, rel, etag, body))),
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(inner.err(rel, "take the repository lock", e)),
    }
    let Some(meta) = inner.head(rel)? else {
        // Released meanwhile: try again at once next round.
        return Ok(Attempt::Busy("a run that just finished".into()));
    };
    let record = inner
        .get_bytes(rel)?
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
    let dead_here = record.as_ref().is_some_and(holder_died_here);
    let holder = record.map_or_else(|| "an unknown run".to_string(), |r| r.holder);
    if !dead_here && !older_than(meta.last_modified.into(), LEASE) {
        return Ok(Attempt::Busy(holder));
    }
    let stale = UpdateVersion {
        e_tag: meta.e_tag.clone(),
        version: None,
    };
    match put(inner, rel, body.clone(), PutMode::Update(stale)) {
        Ok(etag) => {
            tracing::warn!(
                lock = %inner.url_of(rel).display(),
                "Took over a stale repository lock held by {holder} (not renewed for {}s)",
                LEASE.as_secs()
            );
            Ok(Attempt::Held(lease(inner, rel, etag, body)))
        }
        Err(e) if is_conflict(&e) => Ok(Attempt::Busy(holder)),
        Err(e) => Err(inner.err(rel, "take over the stale repository lock", e)),
    }
}

/// Whether the holder of a lease ran on this host and its process is gone (a killed or
/// crashed run): its lease need not be waited out.
fn holder_died_here(r: &Record) -> bool {
    if r.host != host() || r.pid == std::process::id() {
        return false;
    }
    let Ok(pid) = i32::try_from(r.pid) else {
        return false;
    };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

fn put(
    inner: &Arc<Inner>,
    rel: &str,
    body: Vec<u8>,
    mode: PutMode,
) -> object_store::Result<Option<String>> {
    let store = inner.store.clone();
    let path = inner.obj(rel);
    block(async move {
        store
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions {
                    mode,
                    ..Default::default()
                },
            )
            .await
            .map(|r| r.e_tag)
    })
}

/// Starts renewing a lease just created with `etag`.
fn lease(inner: &Arc<Inner>, rel: &str, etag: Option<String>, body: Vec<u8>) -> Lease {
    let etag = Arc::new(std::sync::Mutex::new(etag));
    let (store, path, url) = (inner.store.clone(), inner.obj(rel), inner.url_of(rel));
    let shared = etag.clone();
    let renewer = spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            let current = shared.lock().map(|e| e.clone()).unwrap_or(None);
            let mode = PutMode::Update(UpdateVersion {
                e_tag: current,
                version: None,
            });
            let r = store
                .put_opts(
                    &path,
                    PutPayload::from(body.clone()),
                    PutOptions {
                        mode,
                        ..Default::default()
                    },
                )
                .await;
            match r {
                Ok(put) => {
                    if let Ok(mut e) = shared.lock() {
                        *e = put.e_tag;
                    }
                }
                Err(e) if is_conflict(&e) || is_not_found(&e) => {
                    tracing::error!(
                        lock = %url.display(),
                        "Lost the repository lock (another host took it over after it was not renewed for {}s): {}",
                        LEASE.as_secs(),
                        describe(&e)
                    );
                    return;
                }
                Err(e) => tracing::warn!(
                    lock = %url.display(),
                    "Could not renew the repository lock (will retry): {}",
                    describe(&e)
                ),
            }
        }
    });
    Lease {
        inner: inner.clone(),
        rel: rel.to_string(),
        etag,
        renewer,
    }
}

fn locked(inner: &Inner, what: &str, holder: String, waited: Duration) -> RepoError {
    RepoError::Locked {
        path: inner.url_of(LOCKS),
        what: what.to_string(),
        holder,
        waited,
    }
}

fn exclusive(
    inner: &Arc<Inner>,
    name: &str,
    what: &str,
    wait: Duration,
    start: Instant,
) -> Result<Lease, RepoError> {
    let rel = format!("{LOCKS}/{name}.json");
    loop {
        match try_take(inner, &rel, what)? {
            Attempt::Held(l) => return Ok(l),
            Attempt::Busy(holder) => {
                if start.elapsed() >= wait {
                    return Err(locked(inner, what, holder, start.elapsed()));
                }
                std::thread::sleep(POLL.min(wait.saturating_sub(start.elapsed())));
            }
        }
    }
}

/// The holders of live `use` leases (stale ones are removed).
fn live_readers(inner: &Arc<Inner>) -> Result<Vec<String>, RepoError> {
    let mut out = Vec::new();
    for m in inner.list_rel(&format!("{LOCKS}/use/"))? {
        let rel = inner.rel(&m.location).to_string();
        let t: SystemTime = m.last_modified.into();
        if older_than(t, LEASE) {
            let _ = inner.delete_rel(vec![rel]);
            continue;
        }
        let holder = inner
            .get_bytes(&rel)?
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            .map_or_else(|| "a reader".to_string(), |r| r.holder);
        out.push(holder);
    }
    Ok(out)
}

/// The holder of a live `delete` lock, if any.
fn live_deleter(inner: &Arc<Inner>) -> Result<Option<String>, RepoError> {
    let rel = format!("{LOCKS}/delete.json");
    let Some(meta) = inner.head(&rel)? else {
        return Ok(None);
    };
    if older_than(meta.last_modified.into(), LEASE) {
        return Ok(None);
    }
    Ok(Some(
        inner
            .get_bytes(&rel)?
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            .map_or_else(|| "an expire".to_string(), |r| r.holder),
    ))
}

pub fn acquire(
    inner: &Arc<Inner>,
    kind: LockKind,
    what: &str,
    wait: Duration,
) -> Result<StorageLock, RepoError> {
    let start = Instant::now();
    match kind {
        LockKind::Run => Ok(StorageLock::new(exclusive(
            inner, "run", what, wait, start,
        )?)),
        LockKind::Delete => {
            let held = exclusive(inner, "delete", what, wait, start)?;
            loop {
                let readers = live_readers(inner)?;
                let Some(first) = readers.into_iter().next() else {
                    return Ok(StorageLock::new(held));
                };
                if start.elapsed() >= wait {
                    drop(held);
                    return Err(locked(inner, what, first, start.elapsed()));
                }
                std::thread::sleep(POLL.min(wait.saturating_sub(start.elapsed())));
            }
        }
        LockKind::InUse => loop {
            let rec = record(what);
            let rel = format!("{LOCKS}/use/{}.json", rec.token);
            let body = serde_json::to_vec(&rec).unwrap_or_default();
            let etag = put(inner, &rel, body.clone(), PutMode::Create)
                .map_err(|e| inner.err(&rel, "take the repository lock", e))?;
            let held = lease(inner, &rel, etag, body);
            match live_deleter(inner)? {
                None => return Ok(StorageLock::new(held)),
                Some(holder) => {
                    drop(held);
                    if start.elapsed() >= wait {
                        return Err(locked(inner, what, holder, start.elapsed()));
                    }
                    std::thread::sleep(POLL.min(wait.saturating_sub(start.elapsed())));
                }
            }
        },
    }
}

/// What `dbagent check` reports: the bucket reachable, the credentials accepted, and list,
/// get, put and delete allowed, tested with a probe object; conditional writes honoured.
pub fn probe(inner: &Arc<Inner>) -> Access {
    let problem = |detail: String, fix: &str| Access::Problem {
        detail,
        fix: fix.to_string(),
    };
    let rel = format!("{LOCKS}/probe-{}-{}.json", host(), std::process::id());
    let url = inner.url.clone();
    let store = inner.store.clone();
    let prefix = (!inner.opts.prefix.is_empty()).then(|| inner.obj(""));
    let listed = block(async move { store.list_with_delimiter(prefix.as_ref()).await });
    if let Err(e) = listed {
        return match &e {
            e if is_no_such_bucket(e) => problem(
                format!(
                    "bucket {} does not exist (or is in another region than {})",
                    inner.opts.bucket,
                    inner.opts.region.as_deref().unwrap_or("the default")
                ),
                "create the bucket, or fix repository.bucket, repository.region or repository.endpoint",
            ),
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => problem(
                format!("cannot list {url}: {}", describe(&e)),
                "give dbagent credentials allowed s3:ListBucket on the bucket (see \"IAM policy\" in docs/repository.md)",
            ),
            _ => problem(
                format!("cannot reach {url}: {}", describe(&e)),
                "check repository.endpoint, the network path to it and its TLS certificate (repository.ca_file)",
            ),
        };
    }
    type Step<'a> = (&'a str, &'a dyn Fn() -> Result<bool, RepoError>);
    let steps: [Step; 4] = [
        ("put", &|| {
            inner.put_rel(&rel, b"probe".to_vec(), false).map(|_| true)
        }),
        ("get", &|| {
            Ok(inner.get_bytes(&rel)?.as_deref() == Some(b"probe".as_slice()))
        }),
        ("conditional put", &|| {
            Ok(inner.put_rel(&rel, b"other".to_vec(), true)? == Created::AlreadyExists)
        }),
        ("delete", &|| {
            inner.delete_rel(vec![rel.clone()])?;
            Ok(inner.head(&rel)?.is_none())
        }),
    ];
    for (step, run) in steps {
        match run() {
            Ok(true) => {}
            Ok(false) if step == "conditional put" => {
                let _ = inner.delete_rel(vec![rel.clone()]);
                return problem(
                    format!(
                        "{url}: the server overwrote an object on a conditional PUT (If-None-Match: *): it does not support conditional writes, so the repository lock cannot exclude another host and wal-push relies on its read-back compare alone"
                    ),
                    "use a store with conditional writes (AWS S3, MinIO, Ceph RGW, R2 ...), or let only one agent use this repository",
                );
            }
            Ok(false) => {
                let _ = inner.delete_rel(vec![rel.clone()]);
                return problem(
                    format!("{url}: the probe object {rel} did not read back as written ({step})"),
                    "check that the endpoint is an S3-compatible store with read-after-write consistency",
                );
            }
            Err(e) => {
                let _ = inner.delete_rel(vec![rel.clone()]);
                return problem(
                    format!("{url}: {step} of a probe object failed: {e}"),
                    "allow s3:GetObject, s3:PutObject and s3:DeleteObject on the prefix (see \"IAM policy\" in docs/repository.md)",
                );
            }
        }
    }
    Access::Ok(format!(
        "bucket {} reachable{}; list, get, put, conditional put and delete allowed under {url}",
        inner.opts.bucket,
        inner
            .opts
            .endpoint
            .as_deref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default()
    ))
}
