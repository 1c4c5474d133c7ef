//! Group sync of SQLite's write-ahead log, outside the write lock.
//!
//! With `synchronous = FULL` SQLite syncs the log inside `COMMIT`, while it
//! holds the database's one write lock: every transaction then waits for
//! the previous one's sync before it can even begin. The writer runs with
//! `synchronous = NORMAL` instead (a commit survives the process dying,
//! since its pages are in the kernel's cache), and each transaction syncs
//! the log itself after it has let go of the lock and before it reports
//! anything as done. Syncs are shared: one that starts after a commit
//! covers it and every commit before it, so a burst of commits pays for
//! one or two syncs while the next transactions already run. Two may be
//! under way at once: a commit that lands while a sync runs starts the
//! next one then, rather than waiting for the first to end and then for
//! all of the second, and the disk takes both together.
//!
//! A checkpoint syncs the log before copying it into the database and the
//! database afterwards (SQLite's rule under `NORMAL`), so frames a
//! checkpoint moved, or a log restart overwrote, are already on disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kiroku_store::{Result, StoreError};
use tokio::sync::watch;

/// The most syncs under way at once. Two let a commit's wait be about one
/// sync instead of one and a half: single alerts at concurrency 8 gained
/// about 9 %; four gained no more.
const SYNCS_IN_FLIGHT: usize = 2;

/// Sync requests so far, the syncs under way, and the last request a
/// sync under way covers.
#[derive(Default)]
struct Requests {
    made: u64,
    syncing: usize,
    begun: u64,
}

pub struct WalSync {
    wal: PathBuf,
    state: Mutex<Requests>,
    /// The last request a completed sync covers.
    synced: watch::Sender<u64>,
    syncs: AtomicU64,
}

impl WalSync {
    /// For the database file at `db`; its log is beside it.
    pub fn new(db: &Path) -> Arc<Self> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Arc::new(WalSync {
            wal: PathBuf::from(wal),
            state: Mutex::default(),
            synced: watch::Sender::new(0),
            syncs: AtomicU64::new(0),
        })
    }

    /// Syncs done so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Returns once a sync that began after this call has completed: all
    /// the log written before the call is then on disk.
    pub async fn sync(self: &Arc<Self>) -> Result<()> {
        let ticket = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.made += 1;
            state.made
        };
        let mut synced = self.synced.subscribe();
        loop {
            if *synced.borrow_and_update() >= ticket {
                return Ok(());
            }
            let target = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.begun >= ticket || state.syncing >= SYNCS_IN_FLIGHT {
                    None
                } else {
                    state.syncing += 1;
                    state.begun = state.made;
                    Some(state.made)
                }
            };
            match target {
                // Spawned, so that a caller going away cannot leave the sync
                // marked as under way for ever.
                Some(target) => {
                    let this = self.clone();
                    tokio::spawn(async move { this.sync_through(target).await })
                        .await
                        .map_err(|e| StoreError::Backend(format!("log sync: {e}")))??;
                }
                None => {
                    // A sync under way covers this request, or two are under
                    // way already: wait for one to end, then look again.
                    let _ = synced.changed().await;
                }
            }
        }
    }

    async fn sync_through(&self, target: u64) -> Result<()> {
        let wal = self.wal.clone();
        let done = tokio::task::spawn_blocking(move || sync_file(&wal)).await;
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.syncing -= 1;
            // What a failed sync was to cover is no longer under way: its
            // waiters begin another rather than wait for it.
            if !matches!(done, Ok(Ok(()))) {
                state.begun = *self.synced.borrow();
            }
        }
        let result = match done {
            Ok(Ok(())) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(format!(
                "syncing {}: {e}",
                self.wal.display()
            ))),
            Err(e) => Err(StoreError::Backend(format!("log sync: {e}"))),
        };
        // Woken either way: after a failure the next waiter tries again.
        self.synced.send_modify(|synced| {
            if result.is_ok() {
                *synced = (*synced).max(target);
            }
        });
        result
    }
}

/// `fdatasync` of the log. Its absence means no transaction wrote since
/// the last connection closed, which checkpoints and syncs it.
fn sync_file(path: &Path) -> io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
