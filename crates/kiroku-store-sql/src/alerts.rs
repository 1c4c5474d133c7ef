//! Services, integrations, alerts and change events: the SQL behind intake.

use kiroku_domain::alert::{Alert, Integration, Service};
use kiroku_store::{AlertGroup, AlertQuery, ChangeRecord, Result, StoreError};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::convert::{from_doc, micros, to_doc};
use crate::escalation::{Versioned, docs_for_update};
use crate::store::{
    Bind, Filter, ROWS_PER_STATEMENT, SqlStore, Statement, multi_insert, pad_to_shape, page,
};
use crate::writer::execute_each;
use crate::{Dialect, map_err};
use kiroku_store::IncidentKey;

impl SqlStore {
    pub(crate) async fn alerts_matching(&self, q: &AlertQuery) -> Result<Vec<Alert>> {
        let mut f = Filter::default();
        f.any_of(
            "status",
            q.statuses.iter().map(|s| s.as_str().to_string()).collect(),
        );
        for (column, id) in [
            ("service_id", q.service_id),
            ("integration_id", q.integration_id),
            ("incident_id", q.incident_id),
        ] {
            if let Some(id) = id {
                f.eq(column, Bind::Text(id.to_string()));
            }
        }
        if let Some(after) = q.after {
            f.before("first_seen_at", after);
        }
        let sql = format!(
            "SELECT doc FROM alerts{} ORDER BY first_seen_at DESC, id DESC LIMIT {}",
            f.where_sql(),
            page(q.limit)
        );
        self.docs(&sql, f.binds).await
    }
}

fn service_row(s: &Service) -> Result<Versioned<'_>> {
    Ok(Versioned {
        table: "services",
        what: "service name",
        id: s.id,
        name: &s.name,
        version: s.version,
        doc: to_doc(s)?,
    })
}

pub(crate) async fn insert_service(conn: &mut AnyConnection, s: &Service) -> Result<()> {
    service_row(s)?.insert(conn).await
}

pub(crate) async fn update_service(
    conn: &mut AnyConnection,
    s: &Service,
    expected_version: i64,
) -> Result<()> {
    service_row(s)?.update(conn, expected_version).await
}

pub(crate) async fn save_integration(
    conn: &mut AnyConnection,
    i: &Integration,
    insert: bool,
) -> Result<()> {
    let sql = if insert {
        "INSERT INTO integrations (id, service_id, key, doc) VALUES ($1, $2, $3, $4)"
    } else {
        "UPDATE integrations SET service_id = $2, key = $3, doc = $4 WHERE id = $1"
    };
    sqlx::query(sql)
        .bind(i.id.to_string())
        .bind(i.service_id.to_string())
        .bind(&i.key)
        .bind(to_doc(i)?)
        .execute(conn)
        .await
        .map_err(map_err)
        .map_err(|e| match e {
            StoreError::Duplicate(_) => StoreError::Duplicate("integration key"),
            other => other,
        })?;
    Ok(())
}

pub(crate) async fn integration_for_update(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: Uuid,
) -> Result<Option<Integration>> {
    take_advisory_locks(conn, dialect, [id]).await?;
    Ok(docs_for_update(conn, dialect, "integrations", "id", id)
        .await?
        .pop())
}

/// The upserts that store `alerts`.
pub(crate) fn save_alerts(dialect: Dialect, alerts: &[Alert]) -> Result<Vec<Statement>> {
    let rows = alerts
        .iter()
        .map(|a| {
            Ok(vec![
                Bind::Text(a.id.to_string()),
                Bind::Text(a.integration_id.to_string()),
                Bind::Text(a.service_id.to_string()),
                Bind::Text(a.dedup_key.clone()),
                Bind::Text(a.status.as_str().to_string()),
                Bind::text_or_null(a.incident_id.map(|id| id.to_string())),
                Bind::text_or_null(a.grouping_key.clone()),
                Bind::Int(micros(a.first_seen_at)),
                Bind::Int(micros(a.last_seen_at)),
                Bind::Text(to_doc(a)?),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(multi_insert(
        dialect,
        "INSERT INTO alerts (id, integration_id, service_id, dedup_key, status, incident_id,
            group_key, first_seen_at, last_seen_at, doc)",
        rows,
        ROWS_PER_STATEMENT,
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status,
            incident_id = excluded.incident_id, last_seen_at = excluded.last_seen_at,
            doc = excluded.doc",
    ))
}

pub(crate) async fn open_alerts_of_incident(
    conn: &mut AnyConnection,
    incident: Uuid,
) -> Result<Vec<Uuid>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM alerts WHERE incident_id = $1 AND status <> 'resolved'")
            .bind(incident.to_string())
            .fetch_all(conn)
            .await
            .map_err(map_err)?;
    rows.into_iter()
        .map(|(id,)| {
            Uuid::parse_str(&id).map_err(|_| StoreError::Corrupt(format!("alert id {id:?}")))
        })
        .collect()
}

pub(crate) async fn hold_open_alerts_of_incident(
    conn: &mut AnyConnection,
    dialect: Dialect,
    incident: &IncidentKey,
) -> Result<Vec<Alert>> {
    let (column, value) = crate::tx::incident_column(incident);
    let of_incident = format!("incident_id = (SELECT id FROM incidents WHERE {column} = $1)");
    if dialect == Dialect::Postgres {
        // Its services too, which a batch grouping alerts into the
        // incident holds: none joins it meanwhile.
        let sql =
            format!("SELECT DISTINCT integration_id, service_id FROM alerts WHERE {of_incident}");
        let held: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(&value)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let ids = held
            .iter()
            .flat_map(|(i, s)| [i, s])
            .map(|id| Uuid::parse_str(id))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Corrupt("an alert's integration or service id".into()))?;
        take_advisory_locks(conn, dialect, ids).await?;
    }
    // The rows held too, as intake's read holds them, before the incident:
    // an alert that came from an integration this did not hold is then
    // neither changed under it nor waited on in a cycle.
    let sql = format!(
        "SELECT doc FROM alerts WHERE {of_incident} AND status <> 'resolved'{}",
        dialect.for_update()
    );
    let rows: Vec<(String,)> = sqlx::query_as(&sql)
        .bind(value)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(|(d,)| from_doc(d)).collect()
}

/// Advisory locks' statement grows in steps of this many past it.
const LOCKS_PER_SHAPE: usize = 64;

/// Compound terms per statement, well below SQLite's limit of 500.
const TERMS_PER_STATEMENT: usize = 100;

/// Bound values per statement, well below every backend's limit.
const BINDS_PER_STATEMENT: usize = 8_000;

/// Dedup keys per open-alert term.
const KEYS_PER_TERM: usize = 800;

/// Groups per group term (four values each).
const GROUPS_PER_TERM: usize = 500;

/// One compound term of intake's read: one integration's open alerts
/// among some keys, or some groups' open incidents, each group with its
/// number.
enum IntakeTerm<'a> {
    Open(Uuid, &'a [&'a str]),
    Groups(&'a [(usize, &'a AlertGroup)]),
}

impl IntakeTerm<'_> {
    fn binds(&self) -> usize {
        match self {
            IntakeTerm::Open(_, keys) => 1 + keys.len(),
            IntakeTerm::Groups(groups) => 4 * groups.len(),
        }
    }

    /// The term, its subquery named `t{k}`, its values bound in `f`.
    fn sql(&self, f: &mut Filter, k: usize, dialect: Dialect) -> String {
        let lock = dialect.for_update();
        match self {
            // PostgreSQL plans an IN list from its statistics: without
            // them (a new table, or autovacuum off) it reads every open
            // alert of the integration and filters, 40 ms at 80,000 where
            // a probe per key takes 1 ms. A lateral lookup per key probes
            // the index whatever the statistics say. SQLite's planner
            // probes the open-alert index for each key of a plain IN list
            // (a row-value IN list can fall back to scanning).
            IntakeTerm::Open(integration, keys) => {
                let integration = f.placeholder(Bind::Text(integration.to_string()));
                let keys: Vec<String> = keys
                    .iter()
                    .map(|key| f.placeholder(Bind::Text(key.to_string())))
                    .collect();
                match dialect {
                    Dialect::Postgres => format!(
                        "SELECT n, doc FROM (
                           SELECT -1 AS n, a.doc
                           FROM (SELECT DISTINCT column1 AS key FROM (VALUES ({})) AS v) AS keys,
                           LATERAL (SELECT doc FROM alerts
                             WHERE integration_id = {integration} AND dedup_key = keys.key
                               AND status <> 'resolved'{lock}) AS a) AS t{k}",
                        keys.join("), (")
                    ),
                    Dialect::Sqlite => format!(
                        "SELECT n, doc FROM (
                           SELECT -1 AS n, doc FROM alerts
                           WHERE integration_id = {integration} AND dedup_key IN ({})
                             AND status <> 'resolved'{lock}) AS t{k}",
                        keys.join(", ")
                    ),
                }
            }
            // The groups are a list of values, each looked up by the same
            // subquery: the text grows by a few characters per group, so
            // that a read of many groups stays short enough to be kept
            // prepared.
            IntakeTerm::Groups(groups) => {
                let rows: Vec<String> = groups
                    .iter()
                    .map(|(n, g)| {
                        format!(
                            "({}, {}, {}, {})",
                            f.placeholder(Bind::Int(*n as i64)),
                            f.placeholder(Bind::Text(g.service.to_string())),
                            f.placeholder(Bind::Text(g.key.clone())),
                            f.placeholder(Bind::Int(micros(g.since)))
                        )
                    })
                    .collect();
                format!(
                    "SELECT n, doc FROM (
                       SELECT g.column1 AS n, COALESCE((
                         SELECT a.incident_id FROM alerts a
                         JOIN incidents i ON i.id = a.incident_id
                         WHERE a.service_id = g.column2 AND a.group_key = g.column3
                           AND a.first_seen_at >= g.column4
                           AND i.status NOT IN ('resolved', 'closed')
                         ORDER BY a.first_seen_at DESC LIMIT 1), '') AS doc
                       FROM (VALUES {}) AS g) AS t{k}",
                    rows.join(", ")
                )
            }
        }
    }
}

/// What intake reads before it applies a batch: the open alerts among
/// `(integration, dedup key)` pairs, held against concurrent writers, and
/// for each group the incident that its latest alert first seen at or
/// after its `since` belongs to, if that incident is still open. Every
/// term yields `(n, text)` rows, so that the terms join with `UNION ALL`
/// into as few statements as the limits allow (one for any batch of
/// fewer than 100 integrations): an open alert's document where n is -1,
/// else the incident of group number n, empty if it has none
/// ([`intake_found`] sorts them out).
/// On PostgreSQL, which takes a statement per round trip, that is one
/// round trip where each part was one.
pub(crate) fn intake_reads(
    dialect: Dialect,
    keys: &[(Uuid, String)],
    groups: &[AlertGroup],
) -> Vec<Statement> {
    let mut by_integration: std::collections::BTreeMap<Uuid, Vec<&str>> = Default::default();
    for (integration, key) in keys {
        by_integration.entry(*integration).or_default().push(key);
    }
    for keys in by_integration.values_mut() {
        pad_to_shape(keys, KEYS_PER_TERM);
    }
    let mut numbered: Vec<(usize, &AlertGroup)> = groups.iter().enumerate().collect();
    pad_to_shape(&mut numbered, GROUPS_PER_TERM);
    let terms = by_integration
        .iter()
        .flat_map(|(integration, keys)| {
            keys.chunks(KEYS_PER_TERM)
                .map(|chunk| IntakeTerm::Open(*integration, chunk))
        })
        .chain(numbered.chunks(GROUPS_PER_TERM).map(IntakeTerm::Groups));
    let mut reads = Vec::new();
    let mut terms = terms.peekable();
    while terms.peek().is_some() {
        let mut f = Filter::for_dialect(dialect);
        let mut parts = Vec::new();
        while let Some(term) = terms.next_if(|t| {
            parts.is_empty()
                || (parts.len() < TERMS_PER_STATEMENT
                    && f.binds.len() + t.binds() <= BINDS_PER_STATEMENT)
        }) {
            parts.push(term.sql(&mut f, parts.len(), dialect));
        }
        reads.push((parts.join(" UNION ALL "), f.binds));
    }
    reads
}

/// PostgreSQL's advisory locks, one for each of `ids` (integrations and
/// services), which intake takes before it reads and an integration's
/// change before it reads the row. Across nodes they make intake's read
/// and its writes one step per integration and grouped service: two nodes
/// that both read no open alert for a key would both open one, and the
/// second would fail its whole batch on the open-alert index; two that
/// both read no open incident for a group would open one each. And a key
/// rotation, which takes the integration's row lock that the alerts'
/// foreign key checks wait for, never holds it while a batch of that
/// integration holds the audit log's head. The locks are taken in key
/// order, so that no two transactions wait on each other, and held until
/// commit; the read that follows, a statement of its own, sees what the
/// last holder committed. Nothing on SQLite, whose one writer already makes
/// every transaction one step.
pub(crate) async fn take_advisory_locks(
    conn: &mut AnyConnection,
    dialect: Dialect,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<()> {
    if dialect != Dialect::Postgres {
        return Ok(());
    }
    // A UUID's last 8 bytes are random in every version Kiroku makes.
    let lock_key = |id: Uuid| i64::from_be_bytes(id.as_bytes()[8..].try_into().expect("8 bytes"));
    let locks: std::collections::BTreeSet<i64> = ids.into_iter().map(lock_key).collect();
    let mut locks: Vec<i64> = locks.into_iter().collect();
    if locks.is_empty() {
        return Ok(());
    }
    // A lock taken twice in one transaction is simply held; repeating the
    // last keeps the statement to a few shapes, which stay prepared.
    pad_to_shape(&mut locks, LOCKS_PER_SHAPE);
    let mut f = Filter::for_dialect(dialect);
    let rows: Vec<String> = locks
        .into_iter()
        .map(|k| f.placeholder(Bind::Int(k)))
        .collect();
    // The lock in `FROM`, so that no row carries its `void`; a values
    // list is scanned in order, so the locks are taken in that order.
    let sql = format!(
        "SELECT k FROM (VALUES ({})) AS v(k), LATERAL pg_advisory_xact_lock(k)",
        rows.join("), (")
    );
    execute_each(conn, vec![(sql, f.binds)]).await
}

/// The open alerts, and each of `groups` groups' open incident, from the
/// rows of [`intake_reads`].
pub(crate) fn intake_found(
    rows: Vec<(i64, String)>,
    groups: usize,
) -> Result<(Vec<Alert>, Vec<Option<Uuid>>)> {
    let mut alerts = Vec::new();
    let mut found = vec![None; groups];
    for (n, text) in rows {
        if n < 0 {
            alerts.push(from_doc(&text)?);
            continue;
        }
        // A group without an open incident.
        if text.is_empty() {
            continue;
        }
        let id = Uuid::parse_str(&text)
            .map_err(|_| StoreError::Corrupt(format!("incident id {text:?}")))?;
        let slot = found
            .get_mut(n as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("alert group number {n}")))?;
        *slot = Some(id);
    }
    Ok((alerts, found))
}

pub(crate) async fn insert_service_change(
    conn: &mut AnyConnection,
    c: &ChangeRecord,
) -> Result<()> {
    sqlx::query("INSERT INTO service_changes (id, service_id, at, doc) VALUES ($1, $2, $3, $4)")
        .bind(c.id.to_string())
        .bind(c.service_id.to_string())
        .bind(micros(c.received_at))
        .bind(to_doc(c)?)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}
