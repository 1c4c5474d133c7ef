//! Reading the whole audit log straight from the file, for `kiroku audit
//! verify`: one read-only connection in the calling thread, the file
//! memory-mapped, each row's text lent to the verifier. Through sqlx every
//! row would be copied into owned strings and handed across its worker
//! thread, which costs more than hashing the row.

use std::path::Path;

use kiroku_store::{AuditScan, AuditVisitor, Result, StoreError};
use rusqlite::{Connection, OpenFlags};

/// Enough address space to map a large log (up to what `.cargo/config.toml`
/// builds SQLite to allow; its default stops at 2 GiB): only pages read are
/// resident, and the process ends with the verification. The server's
/// readers do not map: their resident size would grow with the file.
const MMAP_BYTES: i64 = 1 << 40;

pub struct FileScan {
    conn: Connection,
}

fn backend(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            StoreError::Corrupt(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::DatabaseBusy
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        e => StoreError::Backend(e.to_string()),
    }
}

/// Opens the database at `path` for an audit scan; it must already exist.
pub fn audit_scan(path: &Path) -> Result<FileScan> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    Ok(FileScan { conn })
}

impl AuditScan for FileScan {
    fn scan(&mut self, after_seq: i64, up_to: i64, visit: &mut AuditVisitor<'_>) -> Result<()> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT seq, leaf_hash, doc FROM audit_events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
            )
            .map_err(backend)?;
        let mut rows = statement.query([after_seq, up_to]).map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let seq: i64 = row.get(0).map_err(backend)?;
            let bytes = |i: usize| -> Result<&[u8]> {
                row.get_ref(i)
                    .and_then(|v| v.as_bytes().map_err(Into::into))
                    .map_err(|e| StoreError::Corrupt(format!("audit event {seq}: {e}")))
            };
            if !visit(seq, bytes(1)?, bytes(2)?) {
                break;
            }
        }
        Ok(())
    }
}
