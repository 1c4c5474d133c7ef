//! The embedded default: one SQLite file, created and migrated on first
//! open, in WAL mode. Every commit's log is synced before the commit is
//! reported done (`WalSync`), so that an acknowledged write survives a
//! crash of the process or of the machine.

mod checkpoint;
mod scan;
mod vfs;

use std::path::Path;
use std::time::Duration;

use kiroku_store::StoreError;
use kiroku_store_sql::{
    Dialect, Migration, SqlStore, WalSync, Writer, install_drivers, map_err, migrate,
};
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, Connection};

pub use scan::{FileScan, audit_scan};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("../migrations/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "alerts",
        sql: include_str!("../migrations/0002_alerts.sql"),
    },
    Migration {
        version: 3,
        name: "audit_archives",
        sql: include_str!("../migrations/0003_audit_archives.sql"),
    },
    Migration {
        version: 4,
        name: "notifications",
        sql: include_str!("../migrations/0004_notifications.sql"),
    },
    Migration {
        version: 5,
        name: "escalation",
        sql: include_str!("../migrations/0005_escalation.sql"),
    },
    Migration {
        version: 6,
        name: "reports",
        sql: include_str!("../migrations/0006_reports.sql"),
    },
    Migration {
        version: 7,
        name: "incident_times",
        sql: include_str!("../migrations/0007_incident_times.sql"),
    },
    Migration {
        version: 8,
        name: "audit_append_order",
        sql: include_str!("../migrations/0008_audit_append_order.sql"),
    },
    Migration {
        version: 9,
        name: "intake_journals",
        sql: include_str!("../migrations/0009_intake_journals.sql"),
    },
];

pub struct Options {
    /// Connections for reads; writes always use one.
    pub read_connections: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_connections: 8,
        }
    }
}

/// `sqlite://` URL for a path, with the characters the URL parser treats
/// specially escaped.
fn url(path: &Path, mode: &str) -> String {
    let mut p = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => p.push_str("%25"),
            '?' => p.push_str("%3F"),
            '#' => p.push_str("%23"),
            _ => p.push(c),
        }
    }
    format!("sqlite://{p}?mode={mode}&vfs={}", vfs::NAME)
}

/// `synchronous = NORMAL`: commits do not sync the log under the write
/// lock; `WalSync` does, after it (see kiroku-store-sql's `wal.rs`).
/// 4 KiB pages, set when the file is created. Smaller pages once meant
/// fewer bytes for a commit's sync to wait on; with the sync outside the
/// write lock, 4 KiB measured the same for intake and faster for audit
/// appends and verification (more 380-byte events to a page).
const PRAGMAS: &str = "PRAGMA page_size = 4096;
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA foreign_keys = ON;
    PRAGMA busy_timeout = 10000;";

/// The writer's own: statement journals stay in memory rather than in a
/// temporary file created and deleted in every commit, and the writer
/// checkpoints only once the log reaches 40 MB (10,000 pages): the
/// background thread (`checkpoint.rs`) copies it long before, off the
/// write path.
const WRITER_PRAGMAS: &str = "PRAGMA temp_store = MEMORY;
    PRAGMA wal_autocheckpoint = 10000;";

const READER_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;";

/// The one writer on the database at `path` (creating the file if
/// needed), as `open` makes it: a connection held for good (see
/// kiroku-store-sql's `writer.rs`).
pub async fn writer(path: &Path) -> Result<Writer, StoreError> {
    create_private(path)?;
    install_drivers();
    vfs::register().map_err(StoreError::Backend)?;
    let mut conn = AnyConnection::connect(&url(path, "rwc"))
        .await
        .map_err(map_err)?;
    conn.execute(PRAGMAS).await.map_err(map_err)?;
    conn.execute(WRITER_PRAGMAS).await.map_err(map_err)?;
    Ok(Writer::sole(conn))
}

/// Creates the database file, empty, if it is missing, readable and
/// writable by its owner only: it holds routing keys and people's
/// records. SQLite gives its log and shared-memory files the database
/// file's permissions, and takes an empty file for an empty database.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_others_may_read(path);
            Ok(())
        }
        Err(e) => Err(StoreError::Backend(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// A database made before it was created private, or opened up since,
/// is left as it is (a group may share it on purpose), but said so.
#[cfg(unix)]
fn warn_if_others_may_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the database, which holds routing keys, can be read by others; `chmod 600` it and its -wal and -shm files"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_may_read(_path: &Path) {}

/// Opens (creating if needed) the database at `path` and migrates it.
pub async fn open(path: &Path, options: Options) -> Result<SqlStore, StoreError> {
    let write = writer(path).await?;
    migrate(&write, Dialect::Sqlite, MIGRATIONS).await?;
    let wal = WalSync::new(path);
    wal.sync().await?;
    // Every reader is opened here and kept: a connection's worker thread
    // takes the priority of the thread that opens it, and one opened later
    // from the intake journal's applier (`start_applier`, below the
    // answering threads) would serve requests at the applier's priority.
    let readers = options.read_connections.max(1);
    let read = AnyPoolOptions::new()
        .max_connections(readers)
        .min_connections(readers)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(READER_PRAGMAS).await?;
                Ok(())
            })
        })
        .connect(&url(path, "ro"))
        .await
        .map_err(map_err)?;
    let mut opened = Vec::new();
    for _ in 0..readers {
        opened.push(read.acquire().await.map_err(map_err)?);
    }
    drop(opened);
    checkpoint::start(path, &wal);
    Ok(SqlStore::new(read, write, Dialect::Sqlite).with_wal_sync(wal))
}
