//! The bridge from the repository's blocking interface to object_store's async one: one
//! process-wide runtime (never dropped, so dropping a storage is safe anywhere, also inside
//! another runtime), and [`block`] that runs a future on it and waits on a plain channel (so
//! it may be called from a blocking thread of any runtime without nesting runtimes).

use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // A runtime that cannot start means no thread can be created: nothing else would
        // work either, and the storage has no error path at construction for it.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dbagent-s3")
            .enable_all()
            .build()
            .expect("cannot start the object storage runtime (out of threads?)")
    })
}

/// Runs `fut` on the storage runtime and waits for its result.
pub fn block<F, T>(fut: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    match rx.recv() {
        Ok(v) => v,
        // The task panicked: surface it here rather than hang.
        Err(_) => panic!("object storage task failed"),
    }
}

/// Starts `fut` on the storage runtime without waiting (a part upload, a read-ahead, a lease
/// renewal); [`join`] waits for it.
pub fn spawn<F, T>(fut: F) -> tokio::task::JoinHandle<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    runtime().spawn(fut)
}

/// Waits for a task started by [`spawn`]; an error when it panicked or was cancelled.
pub fn join<T: Send + 'static>(handle: tokio::task::JoinHandle<T>) -> std::io::Result<T> {
    block(handle).map_err(std::io::Error::other)
}
