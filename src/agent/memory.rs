//! The agent's memory hygiene with glibc's allocator (Debian's): a long-running sidecar whose
//! polls allocate and free the same few megabytes every interval.
//!
//! - [`limit_arenas`]: glibc gives each thread that allocates its own arena (up to 8 per core),
//!   and memory freed in one arena is not reused by another; two arenas serve the agent's few
//!   threads (two runtime workers, the evaluation thread, short blocking tasks) without
//!   contention worth measuring.
//! - [`release_free`]: after each poll, free pages at the top of the heaps go back to the
//!   system (`malloc_trim`), so the resident set is what the agent holds, not what its busiest
//!   poll once needed.
//!
//! On other C libraries both are no-ops.

/// Caps glibc's malloc arenas at two. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads run.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap memory to the system.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
