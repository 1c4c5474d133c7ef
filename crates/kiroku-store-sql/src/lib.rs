//! The SQL implementation of Kiroku's storage traits, over sqlx's `Any`
//! driver so that one set of queries serves SQLite and PostgreSQL.
//!
//! Each backend crate owns its schema (migrations), its connection policy
//! and the few places where the dialects differ ([`Dialect`]). Everything is
//! stored in portable types: `BIGINT` microseconds for times, `TEXT` for
//! ids, and a JSON `doc` column holding the whole object beside the columns
//! that queries filter on.

mod alerts;
mod convert;
mod escalation;
mod migrate;
mod notify;
mod reports;
mod store;
mod tx;
mod wal;
mod writer;

pub use migrate::{Migration, migrate};
pub use store::SqlStore;
pub use wal::WalSync;
pub use writer::{WriteConn, WriteTx, Writer};

use kiroku_store::StoreError;

/// Where SQLite and PostgreSQL differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Row lock for read-modify-write inside a transaction. SQLite needs none:
    /// its write transactions start `IMMEDIATE`, holding the database lock.
    /// On PostgreSQL the lock that leaves the row's keys alone, which a
    /// foreign key check does not wait for: intake inserting an alert of an
    /// incident after it has taken the audit log's head must not wait for
    /// someone who holds that incident and waits for the head.
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR NO KEY UPDATE",
        }
    }

    pub(crate) fn begin_statement(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// How an append's multi-row inserts begin. On SQLite, a statement
    /// that could fail after writing some of its rows keeps a journal of
    /// every page it touches so as to undo only itself; failing one of
    /// these fails the whole transaction anyway, so SQLite is told to roll
    /// that back instead, and keeps no such journal.
    fn bulk_insert(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT OR ROLLBACK INTO",
            Dialect::Postgres => "INSERT INTO",
        }
    }

    /// The `n`th (1-based) bound parameter of a statement built in bind
    /// order. SQLite gets anonymous `?`: looking up a named parameter is
    /// linear in the number of parameters there, which makes a multi-row
    /// insert quadratic.
    fn push_placeholder(self, sql: &mut String, n: usize) {
        use std::fmt::Write;
        match self {
            Dialect::Sqlite => sql.push('?'),
            Dialect::Postgres => {
                let _ = write!(sql, "${n}");
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// Installs sqlx's drivers for `Any`; idempotent.
pub fn install_drivers() {
    sqlx::any::install_default_drivers();
}

/// Maps a driver error to what callers can act on.
pub fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Duplicate("row");
            }
            // SQLITE_FULL (13) and PostgreSQL's disk_full (53100).
            let code = db.code().unwrap_or_default();
            if code == "13" || code == "53100" {
                return StoreError::DiskFull(db.to_string());
            }
            // PostgreSQL gave up one of two transactions waiting on each
            // other (40P01) or could not serialise them (40001): nothing
            // was written, and the same request may simply be sent again.
            if code == "40P01" || code == "40001" {
                return StoreError::Unavailable(format!("try again: {db}"));
            }
            // PostgreSQL going away under a session: shut down or
            // restarted (57P01-57P03), or the connection lost (class 08).
            // The pool connects afresh; the request may be sent again.
            if code.starts_with("57P") || code.starts_with("08") {
                return StoreError::Unavailable(db.to_string());
            }
            StoreError::Backend(db.to_string())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}
