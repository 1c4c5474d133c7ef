//! Postmortems, their frozen versions, action items and notification
//! duties: the SQL behind reports.

use kiroku_domain::metrics::IncidentStamp;
use kiroku_store::{
    ActionItemQuery, ActionItemRecord, FrozenPostmortem, ObligationRecord, PostmortemRecord,
    Result, StoreError,
};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::convert::{from_doc, micros, opt_micros, to_doc};
use crate::escalation::docs_of_incident_for_update;
use crate::store::{Bind, SqlStore, page};
use crate::{Dialect, map_err};

impl SqlStore {
    /// Only the times metrics need, from the columns kept beside each
    /// document (one index holds them all), so that 100,000 incidents do
    /// not cross as whole documents.
    pub(crate) async fn incident_stamp_rows(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: i64,
    ) -> Result<Vec<IncidentStamp>> {
        let sql = format!(
            "SELECT category, severity, detected_at, occurred_at, acknowledged_at, resolved_at
             FROM incidents WHERE detected_at >= $1 AND detected_at < $2
             ORDER BY detected_at LIMIT {}",
            limit.max(1)
        );
        type Row = (String, String, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(micros(from))
            .bind(micros(to))
            .fetch_all(&self.read)
            .await
            .map_err(map_err)?;
        let time = |us: Option<i64>| us.map(crate::convert::from_micros).transpose();
        rows.into_iter()
            .map(
                |(category, severity, detected, occurred, acknowledged, resolved)| {
                    Ok(IncidentStamp {
                        category,
                        severity,
                        occurred_at: time(occurred)?,
                        detected_at: crate::convert::from_micros(detected)?,
                        acknowledged_at: time(acknowledged)?,
                        resolved_at: time(resolved)?,
                    })
                },
            )
            .collect()
    }

    pub(crate) async fn postmortem_row(&self, incident: Uuid) -> Result<Option<PostmortemRecord>> {
        self.doc(
            "SELECT doc FROM postmortems WHERE incident_id = $1",
            Bind::Text(incident.to_string()),
        )
        .await
    }

    pub(crate) async fn postmortem_version_rows(
        &self,
        incident: Uuid,
    ) -> Result<Vec<FrozenPostmortem>> {
        let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT version, sha256, finalised_at, canonical FROM postmortem_versions
             WHERE incident_id = $1 ORDER BY version",
        )
        .bind(incident.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(version, sha256, at, canonical)| {
                Ok(FrozenPostmortem {
                    incident_id: incident,
                    version,
                    sha256,
                    finalised_at: crate::convert::from_micros(at)?,
                    canonical,
                })
            })
            .collect()
    }

    pub(crate) async fn action_item_rows(
        &self,
        q: &ActionItemQuery,
    ) -> Result<Vec<ActionItemRecord>> {
        let (mut sql, binds) = action_item_filter("SELECT doc", q);
        // Undated items sort last on both backends.
        sql.push_str(&format!(
            " ORDER BY CASE WHEN due IS NULL THEN 1 ELSE 0 END, due, id LIMIT {}",
            page(q.limit)
        ));
        self.docs(&sql, binds).await
    }

    pub(crate) async fn action_item_count(&self, q: &ActionItemQuery) -> Result<i64> {
        let (sql, binds) = action_item_filter("SELECT COUNT(*)", q);
        let row = crate::store::bind_all(sqlx::query(&sql), &binds)
            .fetch_one(&self.read)
            .await
            .map_err(map_err)?;
        let (n,): (i64,) = sqlx::FromRow::from_row(&row).map_err(map_err)?;
        Ok(n)
    }

    pub(crate) async fn obligation_rows(
        &self,
        where_clause: &str,
        binds: Vec<Bind>,
        limit: i64,
    ) -> Result<Vec<ObligationRecord>> {
        self.docs(
            &format!(
                "SELECT doc FROM obligations WHERE {where_clause} ORDER BY due_at, incident_id, rule LIMIT {}",
                page(limit)
            ),
            binds,
        )
        .await
    }
}

/// The statement selecting `what` from the action items `q` asks for.
fn action_item_filter(what: &str, q: &ActionItemQuery) -> (String, Vec<Bind>) {
    let mut sql = format!("{what} FROM action_items WHERE 1 = 1");
    let mut binds = Vec::new();
    let mut param = |sql: &mut String, clause: &str, b: Bind| {
        binds.push(b);
        sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(i) = q.incident {
        param(&mut sql, " AND incident_id = ?", Bind::Text(i.to_string()));
    }
    if let Some(o) = q.owner {
        param(&mut sql, " AND owner_id = ?", Bind::Text(o.to_string()));
    }
    if q.open_only {
        sql.push_str(" AND status <> 'done'");
    }
    if let Some(d) = q.due_before {
        param(&mut sql, " AND due < ?", Bind::Text(d.to_string()));
    }
    if q.unreminded {
        sql.push_str(" AND reminded = 0");
    }
    (sql, binds)
}

pub(crate) async fn postmortem_for_update(
    conn: &mut AnyConnection,
    dialect: Dialect,
    incident: Uuid,
) -> Result<Option<PostmortemRecord>> {
    Ok(
        docs_of_incident_for_update(conn, dialect, "postmortems", incident)
            .await?
            .pop(),
    )
}

pub(crate) async fn save_postmortem(
    conn: &mut AnyConnection,
    record: &PostmortemRecord,
    expected_version: i64,
) -> Result<()> {
    let doc = to_doc(record)?;
    let id = record.incident_id.to_string();
    let done = if expected_version == 0 {
        sqlx::query(
            "INSERT INTO postmortems (incident_id, version, doc) VALUES ($1, $2, $3)
             ON CONFLICT (incident_id) DO NOTHING",
        )
        .bind(&id)
        .bind(record.version)
        .bind(doc)
        .execute(&mut *conn)
        .await
    } else {
        sqlx::query(
            "UPDATE postmortems SET version = $1, doc = $2 WHERE incident_id = $3 AND version = $4",
        )
        .bind(record.version)
        .bind(doc)
        .bind(&id)
        .bind(expected_version)
        .execute(&mut *conn)
        .await
    }
    .map_err(map_err)?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let current: Option<(i64,)> =
        sqlx::query_as("SELECT version FROM postmortems WHERE incident_id = $1")
            .bind(&id)
            .fetch_optional(conn)
            .await
            .map_err(map_err)?;
    Err(StoreError::VersionMismatch {
        current: current.map_or(0, |(v,)| v),
    })
}

pub(crate) async fn insert_postmortem_version(
    conn: &mut AnyConnection,
    frozen: &FrozenPostmortem,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO postmortem_versions (incident_id, version, sha256, finalised_at, canonical)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(frozen.incident_id.to_string())
    .bind(frozen.version)
    .bind(&frozen.sha256)
    .bind(micros(frozen.finalised_at))
    .bind(&frozen.canonical)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn replace_action_items(
    conn: &mut AnyConnection,
    incident: Uuid,
    items: &[ActionItemRecord],
) -> Result<()> {
    sqlx::query("DELETE FROM action_items WHERE incident_id = $1")
        .bind(incident.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    for r in items {
        sqlx::query(
            "INSERT INTO action_items (id, incident_id, status, owner_id, due, reminded, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.id.to_string())
        .bind(incident.to_string())
        .bind(r.item.status.as_str())
        .bind(r.item.owner.as_ref().map(|u| u.id.to_string()))
        .bind(r.item.due.map(|d| d.to_string()))
        .bind(i64::from(r.reminded))
        .bind(to_doc(r)?)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

pub(crate) async fn mark_action_item_reminded(conn: &mut AnyConnection, id: Uuid) -> Result<()> {
    let row: Option<(String,)> = sqlx::query_as("SELECT doc FROM action_items WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    let Some((doc,)) = row else {
        return Ok(());
    };
    let mut record: ActionItemRecord = from_doc(&doc)?;
    record.reminded = true;
    sqlx::query("UPDATE action_items SET reminded = 1, doc = $1 WHERE id = $2")
        .bind(to_doc(&record)?)
        .bind(id.to_string())
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn obligations_for_update(
    conn: &mut AnyConnection,
    dialect: Dialect,
    incident: Uuid,
) -> Result<Vec<ObligationRecord>> {
    let mut rows: Vec<ObligationRecord> =
        docs_of_incident_for_update(conn, dialect, "obligations", incident).await?;
    rows.sort_by(|a, b| (a.due_at, &a.rule).cmp(&(b.due_at, &b.rule)));
    Ok(rows)
}

pub(crate) async fn save_obligation(
    conn: &mut AnyConnection,
    record: &ObligationRecord,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO obligations (incident_id, rule, status, due_at, remind_at, doc)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (incident_id, rule) DO UPDATE SET status = excluded.status,
            due_at = excluded.due_at, remind_at = excluded.remind_at, doc = excluded.doc",
    )
    .bind(record.incident_id.to_string())
    .bind(&record.rule)
    .bind(record.status.as_str())
    .bind(micros(record.due_at))
    .bind(opt_micros(record.next_reminder()))
    .bind(to_doc(record)?)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn delete_obligation(
    conn: &mut AnyConnection,
    incident: Uuid,
    rule: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM obligations WHERE incident_id = $1 AND rule = $2")
        .bind(incident.to_string())
        .bind(rule)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}
