//! Checkpoints in the background. SQLite's automatic checkpoint runs in
//! the committing connection, under the write lock: every few thousand
//! pages a commit would copy the log into the database and sync both while
//! every other write waited. A thread of its own copies the log instead,
//! in `PASSIVE` mode, which never blocks the writer; the writer's own
//! checkpoint stays as a backstop at a larger size (`WRITER_PRAGMAS`), so
//! the log is still bounded when the thread falls behind or the log never
//! falls quiet for the copy to finish.
//!
//! While commits flow it copies every few milliseconds. A copy and its
//! sync of the database share the disk with the log's syncs, which every
//! answer waits for: many small copies keep each of those waits short,
//! where a copy of a second's commits held back a whole burst of
//! answers (intake's p99 at concurrency 64: 13–16 ms copying every 10 ms,
//! 18–20 ms every 50 ms, 33–36 ms every second).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kiroku_store_sql::WalSync;
use rusqlite::{Connection, OpenFlags};

/// How soon the thread looks again after it found commits to copy.
const BUSY_INTERVAL: Duration = Duration::from_millis(10);

/// How long it sleeps at most while nothing is committed; the pause
/// doubles up to this from `BUSY_INTERVAL` each time it finds nothing.
const IDLE_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the thread for the database at `path`; it stops once `wal`, which
/// the store owns, is gone.
pub(crate) fn start(path: &Path, wal: &Arc<WalSync>) {
    let Ok(conn) = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        // The writer's own checkpoints still keep the log bounded.
        tracing::warn!(path = %path.display(), "background checkpoints are off: cannot open the database");
        return;
    };
    let wal = Arc::downgrade(wal);
    let spawned = std::thread::Builder::new()
        .name("kiroku-checkpoint".into())
        .spawn(move || run(conn, wal));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "background checkpoints are off");
    }
}

fn run(conn: Connection, wal: Weak<WalSync>) {
    let mut seen = 0;
    let mut pause = BUSY_INTERVAL;
    loop {
        std::thread::sleep(pause);
        let Some(wal) = wal.upgrade() else { return };
        // Every commit syncs the log; the few writes that do not (a token's
        // last use) are copied with the next commit's.
        let syncs = wal.syncs();
        drop(wal);
        if syncs == seen {
            pause = (pause * 2).min(IDLE_INTERVAL);
            continue;
        }
        seen = syncs;
        pause = BUSY_INTERVAL;
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
    }
}
