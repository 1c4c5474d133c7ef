//! Channels and deliveries: the SQL behind notifications.

use jiff::Timestamp;
use kiroku_domain::notify::Channel;
use kiroku_store::{DeliveryRecord, DeliveryStatus, Result};

use crate::convert::{from_micros, micros, to_doc};
use crate::store::{Bind, Filter, SqlStore, Statement, decode_docs, multi_insert};
use crate::{Dialect, map_err};

/// 7 binds a row.
const ROWS_PER_STATEMENT: usize = 200;

impl Dialect {
    /// Rows another transaction holds are passed over, not waited for, so
    /// that two nodes claiming at once take different deliveries.
    fn skip_locked(self) -> &'static str {
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
        let sql = format!(
            "UPDATE deliveries SET claimed_until = $1 WHERE id IN (
                SELECT id FROM deliveries
                WHERE status = 'pending' AND due_at <= $2
                  AND (claimed_until IS NULL OR claimed_until <= $2)
                ORDER BY due_at LIMIT $3{}
             ) RETURNING doc",
            self.dialect().skip_locked()
        );
        let rows: Vec<(String,)> = sqlx::query_as(&sql)
            .bind(micros(until))
            .bind(micros(now))
            .bind(limit.clamp(1, 1_000))
            .fetch_all(self.writer())
            .await
            .map_err(map_err)?;
        decode_docs(rows)
    }

    pub(crate) async fn defer(&self, id: uuid::Uuid, until: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET claimed_until = $1 WHERE id = $2 AND status = 'pending'",
        )
        .bind(micros(until))
        .bind(id.to_string())
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn next_due(&self) -> Result<Option<Timestamp>> {
        // A held delivery is due again when its hold ends.
        let (at,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > due_at
                        THEN claimed_until ELSE due_at END)
             FROM deliveries WHERE status = 'pending'",
        )
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        at.map(from_micros).transpose()
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
        "INSERT INTO deliveries (id, channel_id, idempotency_key, status, due_at, created_at, doc)",
        rows,
        ROWS_PER_STATEMENT,
        " ON CONFLICT (idempotency_key) DO NOTHING",
    ))
}
