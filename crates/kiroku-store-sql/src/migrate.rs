//! Schema migrations: numbered SQL scripts a backend ships, applied in order
//! in one transaction, each remembered with a checksum so that an edited
//! script is caught rather than silently skipped.

use sha2::{Digest, Sha256};

use crate::writer::Writer;
use crate::{Dialect, map_err};
use kiroku_store::StoreError;

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

fn checksum(sql: &str) -> String {
    kiroku_audit::hex::encode(&Sha256::digest(sql.as_bytes()))
}

/// Brings the schema up to date. Safe to run from several nodes at once:
/// PostgreSQL takes an advisory lock, SQLite an immediate transaction.
pub async fn migrate(
    writer: &Writer,
    dialect: Dialect,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let mut tx = writer.begin().await?;
    if dialect == Dialect::Postgres {
        // An arbitrary constant: "kiroku" as digits of a phone keypad.
        sqlx::query("SELECT pg_advisory_xact_lock(5476858)")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS kiroku_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM kiroku_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
    let newest_known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some((v, _)) = applied.iter().find(|(v, _)| *v > newest_known) {
        return Err(StoreError::Backend(format!(
            "the database has schema version {v}, newer than this build of Kiroku knows; run a newer Kiroku"
        )));
    }
    for m in migrations {
        let sum = checksum(m.sql);
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, stored)) if *stored == sum => continue,
            Some(_) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} ({}) differs from the one applied to this database",
                    m.version, m.name
                )));
            }
            None => {}
        }
        tracing::info!(version = m.version, name = m.name, "applying migration");
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("INSERT INTO kiroku_migrations (version, name, checksum) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(sum)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    tx.commit().await
}
