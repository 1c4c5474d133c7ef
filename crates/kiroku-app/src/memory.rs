//! Gives memory back to the system after a large intake request.
//!
//! A request of thousands of alerts needs a few hundred megabytes for a
//! moment (its body, the parsed events, the rows and their documents, the
//! audit event), in small pieces among longer-lived ones. glibc's allocator
//! keeps the freed pages of such a heap for itself: one 10,000-alert
//! request left the server at 182 MiB resident, twelve at about 270 MiB,
//! and `malloc_trim` brought it back to 59 MiB. Neither a setting of its
//! thresholds nor fewer arenas did; no crate calls it for the system
//! allocator, hence the call here.
//!
//! The `kiroku` binary allocates Rust's memory with mimalloc, which gives
//! it back on its own (`kiroku/src/allocator.rs`); the trim still serves
//! what is allocated from glibc's heap there, SQLite's pages among it, and
//! every program of this library on the system allocator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A request with at least this many events is large.
const LARGE_REQUEST_EVENTS: usize = 1_000;

/// How long after a large request its memory is given back: the intake
/// journal's applier has committed it by then, and every large request
/// in that time shares the one trim.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Memory is the process's, so the pending trim is too.
static TRIM_PENDING: AtomicBool = AtomicBool::new(false);

/// Called when a request of `events` is done with: by intake once it has
/// answered, and by the journal's applier once it has applied it.
pub(crate) fn after_request(events: usize) {
    if events < LARGE_REQUEST_EVENTS || TRIM_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        let pending = Pending;
        tokio::time::sleep(TRIM_AFTER).await;
        drop(pending);
        let _ = tokio::task::spawn_blocking(give_back_free_memory).await;
    });
}

/// The pending trim, until its task has waited or is dropped unfinished
/// with its runtime (the intake journal applier's, say): a flag left set
/// would stop every later trim.
struct Pending;

impl Drop for Pending {
    fn drop(&mut self) {
        TRIM_PENDING.store(false, Ordering::Release);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_free_memory() {
    // SAFETY: malloc_trim takes no pointer and frees nothing in use; it only
    // hands the allocator's free pages back to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give back on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_free_memory() {}
