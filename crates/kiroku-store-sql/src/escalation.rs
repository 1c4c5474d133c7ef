//! Escalation policies, schedules and escalations: the SQL behind paging.
//! Policies and schedules share the shape of services (named, versioned
//! documents), and the helpers for that shape live here.

use jiff::Timestamp;
use kiroku_domain::escalation::Escalation;
use kiroku_store::{Result, StoreError};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::convert::{from_doc, micros, opt_micros, to_doc};
use crate::store::{Bind, Filter, SqlStore, Statement, docs_of_rows, insert_row, locking_reads};
use crate::writer::fetch_each;
use crate::{Dialect, map_err};

/// A named, versioned document's row. `table` is always one of ours,
/// never a caller's text.
pub(crate) struct Versioned<'a> {
    pub table: &'static str,
    /// What a taken name is called in the error.
    pub what: &'static str,
    pub id: Uuid,
    pub name: &'a str,
    pub version: i64,
    pub doc: String,
}

impl Versioned<'_> {
    pub(crate) async fn insert(self, conn: &mut AnyConnection) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (id, name, version, doc) VALUES ($1, $2, $3, $4)",
            self.table
        );
        sqlx::query(&sql)
            .bind(self.id.to_string())
            .bind(self.name)
            .bind(self.version)
            .bind(self.doc)
            .execute(conn)
            .await
            .map_err(map_err)
            .map_err(|e| match e {
                StoreError::Duplicate(_) => StoreError::Duplicate(self.what),
                other => other,
            })?;
        Ok(())
    }

    /// Replaces the row if it is still at `expected_version`.
    pub(crate) async fn update(
        self,
        conn: &mut AnyConnection,
        expected_version: i64,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET name = $1, version = $2, doc = $3 WHERE id = $4 AND version = $5",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(self.name)
            .bind(self.version)
            .bind(&self.doc)
            .bind(self.id.to_string())
            .bind(expected_version)
            .execute(&mut *conn)
            .await
            .map_err(map_err)
            .map_err(|e| match e {
                StoreError::Duplicate(_) => StoreError::Duplicate(self.what),
                other => other,
            })?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let sql = format!("SELECT version FROM {} WHERE id = $1", self.table);
        let current: Option<(i64,)> = sqlx::query_as(&sql)
            .bind(self.id.to_string())
            .fetch_optional(conn)
            .await
            .map_err(map_err)?;
        Err(StoreError::VersionMismatch {
            current: current.map_or(0, |(v,)| v),
        })
    }
}

impl SqlStore {
    /// A named document by id or by name.
    pub(crate) async fn named<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> Result<Option<T>> {
        let column = if Uuid::parse_str(key).is_ok() {
            "id"
        } else {
            "name"
        };
        self.doc(
            &format!("SELECT doc FROM {table} WHERE {column} = $1"),
            crate::store::Bind::Text(key.to_string()),
        )
        .await
    }

    pub(crate) async fn claim_escalations_due(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        let rows = self
            .claim_due(
                "escalations",
                "incident_id",
                "due_at IS NOT NULL",
                "incident_id",
                now,
                until,
                limit,
            )
            .await?;
        rows.into_iter()
            .map(|(id,)| Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Saves steps that paged no one (bookkeeping: the fields they changed
    /// are copies of the incidents') and releases the holds, in one commit.
    pub(crate) async fn release_escalations(
        &self,
        list: &[(Escalation, Option<Timestamp>)],
        held_until: Timestamp,
    ) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let dialect = self.dialect();
        let mut statements = Vec::with_capacity(list.len());
        for (e, due_at) in list {
            let mut f = Filter::for_dialect(dialect);
            let sql = format!(
                "UPDATE escalations SET due_at = {}, claimed_until = NULL, doc = {}
                 WHERE incident_id = {} AND claimed_until = {}",
                f.placeholder(Bind::int_or_null(opt_micros(*due_at))),
                f.placeholder(Bind::Text(to_doc(e)?)),
                f.placeholder(Bind::Text(e.incident_id.to_string())),
                f.placeholder(Bind::Int(micros(held_until))),
            );
            statements.push((sql, f.binds));
        }
        self.writer().run_in_transaction(statements).await
    }
}

/// The documents of one incident's rows in `table` (always one of ours),
/// locked for the rest of the transaction.
pub(crate) async fn docs_of_incident_for_update<T: serde::de::DeserializeOwned>(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &'static str,
    incident: Uuid,
) -> Result<Vec<T>> {
    docs_for_update(conn, dialect, table, "incident_id", incident).await
}

/// The documents of the rows in `table` whose `column` is `id` (both
/// always ours), locked for the rest of the transaction.
pub(crate) async fn docs_for_update<T: serde::de::DeserializeOwned>(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &'static str,
    column: &'static str,
    id: Uuid,
) -> Result<Vec<T>> {
    let reads = locking_reads(dialect, table, column, &[id]);
    docs_of_rows(&fetch_each(conn, reads).await?)
}

/// The upsert of an escalation's row, held like other inserts: it follows
/// a locked read of the row, or the incident was declared in the same
/// transaction.
pub(crate) fn save_escalation(
    dialect: Dialect,
    e: &Escalation,
    due_at: Option<Timestamp>,
) -> Result<Vec<Statement>> {
    Ok(insert_row(
        dialect,
        "INSERT INTO escalations (incident_id, due_at, claimed_until, doc)",
        vec![
            Bind::Text(e.incident_id.to_string()),
            Bind::int_or_null(opt_micros(due_at)),
            Bind::NullInt,
            Bind::Text(to_doc(e)?),
        ],
        " ON CONFLICT (incident_id) DO UPDATE SET due_at = excluded.due_at,
            claimed_until = NULL, doc = excluded.doc",
    ))
}

/// Cancels the incident's waiting pages: each row's document is rewritten
/// with it, since the document is what is read back.
pub(crate) async fn cancel_pages(
    conn: &mut AnyConnection,
    dialect: Dialect,
    incident: Uuid,
    at: Timestamp,
) -> Result<u64> {
    let sql = format!(
        "SELECT doc FROM deliveries
         WHERE incident_id = $1 AND page = 1 AND status = 'pending'
           AND (claimed_until IS NULL OR claimed_until <= $2){}",
        dialect.for_update()
    );
    let rows: Vec<(String,)> = sqlx::query_as(&sql)
        .bind(incident.to_string())
        .bind(micros(at))
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut cancelled = 0;
    for (doc,) in rows {
        let mut d: kiroku_store::DeliveryRecord = from_doc(&doc)?;
        d.status = kiroku_store::DeliveryStatus::Cancelled;
        d.last_error = Some("acknowledged before it was due".into());
        sqlx::query("UPDATE deliveries SET status = $1, doc = $2 WHERE id = $3")
            .bind(d.status.as_str())
            .bind(to_doc(&d)?)
            .bind(d.id.to_string())
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        cancelled += 1;
    }
    Ok(cancelled)
}
