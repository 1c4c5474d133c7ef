//! Channels and deliveries: the SQL behind notifications.

use jiff::Timestamp;
use kiroku_domain::notify::Channel;
use kiroku_store::{DeliveryRecord, DeliveryStatus, Result};

use crate::convert::{micros, to_doc};
use crate::store::{
    Bind, Filter, ROWS_PER_STATEMENT, SqlStore, Statement, decode_docs, multi_insert,
};
use crate::{Dialect, map_err};

impl Dialect {
    /// Rows another transaction holds are passed over, not waited for, so
    /// that two nodes claiming at once take different deliveries.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            // One writer at a time: nothing to skip.
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

impl SqlStore {
    pub(crate) async fn all_channels(&self) -> Result<Vec<Channel>> {
        self.docs("SELECT doc FROM channels ORDER BY name", Vec::new())
            .await
    }

    pub(crate) async fn deliveries_of(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        let mut f = Filter::default();
        if let Some(s) = status {
            f.eq("status", Bind::Text(s.as_str().into()));
        }
        let sql = format!(
            "SELECT doc FROM deliveries{} ORDER BY created_at DESC, id DESC LIMIT {}",
            f.where_sql(),
            limit.clamp(1, 1_000)
        );
        self.docs(&sql, f.binds).await
    }

    pub(crate) async fn claim(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        let rows = self
            .claim_due(
                "deliveries",
                "id",
                "status = 'pending'",
                "doc",
                now,
                until,
                limit,
            )
            .await?;
        decode_docs(rows)
    }

    /// Holds up to `limit` of `table`'s timers (`pending` selects the live
    /// ones) due by `now` that no worker holds, until `until`; returns
    /// `returning` of each. Rows another transaction holds are passed over.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn claim_due(
        &self,
        table: &'static str,
        key: &'static str,
        pending: &'static str,
        returning: &'static str,
        now: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<(String,)>> {
        let sql = format!(
            "UPDATE {table} SET claimed_until = $1 WHERE {key} IN (
                SELECT {key} FROM {table}
                WHERE {pending} AND due_at <= $2
                  AND (claimed_until IS NULL OR claimed_until <= $2)
                ORDER BY due_at LIMIT $3{}
             ) RETURNING {returning}",
            self.dialect().skip_locked()
        );
        let mut conn = self.writer().acquire().await?;
        let held = sqlx::query_as(&sql)
            .bind(micros(until))
            .bind(micros(now))
            .bind(limit.clamp(1, 1_000))
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        drop(conn);
        // A hold is what keeps a second worker from sending the same
        // message: it must outlast a power cut, as it does a crash.
        self.sync_log().await?;
        Ok(held)
    }

    pub(crate) async fn defer(&self, id: uuid::Uuid, until: Timestamp) -> Result<()> {
        let mut conn = self.writer().acquire().await?;
        sqlx::query(
            "UPDATE deliveries SET claimed_until = $1 WHERE id = $2 AND status = 'pending'",
        )
        .bind(micros(until))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}

fn delivery_row(d: &DeliveryRecord) -> Result<Vec<Bind>> {
    Ok(vec![
        Bind::Text(d.id.to_string()),
        Bind::Text(d.channel_id.to_string()),
        Bind::Text(d.idempotency_key.clone()),
        Bind::Text(d.status.as_str().into()),
        Bind::Int(micros(d.due_at)),
        Bind::Int(micros(d.created_at)),
        Bind::Text(to_doc(d)?),
        Bind::text_or_null(d.notice.incident_id.map(|id| id.to_string())),
        Bind::Int(i64::from(d.page)),
    ])
}

pub(crate) fn insert_deliveries(
    dialect: Dialect,
    deliveries: &[DeliveryRecord],
) -> Result<Vec<Statement>> {
    let rows = deliveries
        .iter()
        .map(delivery_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(multi_insert(
        dialect,
        "INSERT INTO deliveries (id, channel_id, idempotency_key, status, due_at, created_at, doc, incident_id, page)",
        rows,
        ROWS_PER_STATEMENT,
        " ON CONFLICT (idempotency_key) DO NOTHING",
    ))
}
