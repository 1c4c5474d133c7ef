//! The write transaction: the only place rows change.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use kiroku_domain::alert::{Alert, Integration, Service};
use kiroku_domain::escalation::{Escalation, Policy};
use kiroku_domain::notify::Channel;
use kiroku_domain::schedule::Schedule;
use kiroku_domain::{AuditEvent, Incident, OutboxMessage, TimelineEntry};
use kiroku_store::{
    ActionItemRecord, AlertGroup, ArchiveRecord, ChangeRecord, DeliveryRecord, Durable,
    FrozenPostmortem, IncidentKey, ObligationRecord, PostmortemRecord, Result, SessionRecord,
    StoreError, ThrottleRecord, TokenRecord, Tx, UserRecord, Work,
};
use sqlx::any::AnyRow;
use sqlx::{Column, Row};
use uuid::Uuid;

use kiroku_audit::merkle::{hex, leaf_hash, peaks_of};
use kiroku_audit::{CompactRange, canonical_event};

use crate::convert::{from_doc, from_micros, micros, opt_micros, search_text, to_doc};
use crate::escalation::{self, Versioned};
use crate::reports;
use crate::store::{
    Bind, Filter, ROWS_PER_STATEMENT, Statement, docs_of_rows, from_rows, insert_row,
    locking_reads, multi_insert,
};
use crate::wal::WalSync;
use crate::writer::{WriteTx, execute_each, fetch_each, fetch_joined};
use crate::{Dialect, alerts, map_err, notify};

/// The column that names the audit log's size read with `BEGIN`.
const HEAD_SIZE: &str = "audit_head_size";

/// The tree's right edge after the last commit, shared by transactions.
pub(crate) type SharedEdge = Arc<Mutex<Option<CompactRange>>>;

pub struct SqlTx {
    tx: WriteTx,
    /// The audit log's size as this transaction leaves it, once read with
    /// `BEGIN`, which on SQLite goes with the first statements: appends
    /// then need no round trip of their own. The write lock, held from
    /// `BEGIN`, keeps it current.
    head: Option<i64>,
    dialect: Dialect,
    audited: bool,
    /// The tree's right edge after this transaction's appends.
    edge: Option<CompactRange>,
    committed_edge: SharedEdge,
    /// Inserts kept for the next round trip (SQLite only; see `write`).
    deferred: Vec<Statement>,
    /// Work for the workers this transaction made, announced to every
    /// node with its commit (PostgreSQL's NOTIFY is transactional).
    work: Vec<Work>,
    /// SQLite's log sync, which makes the commit durable.
    wal: Option<Arc<WalSync>>,
}

impl SqlTx {
    pub(crate) fn new(
        tx: WriteTx,
        dialect: Dialect,
        edge: SharedEdge,
        wal: Option<Arc<WalSync>>,
    ) -> Self {
        SqlTx {
            tx,
            head: None,
            dialect,
            audited: false,
            edge: None,
            committed_edge: edge,
            deferred: Vec::new(),
            work: Vec::new(),
            wal,
        }
    }

    fn announce(&mut self, work: Work, when: bool) {
        if when && !self.work.contains(&work) {
            self.work.push(work);
        }
    }

    /// Runs an insert whose outcome nothing waits for. On SQLite it is kept
    /// and sent with the others in one multi-statement round trip before
    /// the next read or the commit: each round trip to SQLite's worker
    /// thread costs a context switch, which dominates a group commit.
    /// Anonymous placeholders number on across the statements.
    async fn write(&mut self, statements: Vec<Statement>) -> Result<()> {
        match self.dialect {
            Dialect::Sqlite => {
                // A numbered placeholder (`$1`) would name the joined
                // batch's argument, not the statement's: the applied mark
                // of the intake journal once took its values so.
                #[cfg(debug_assertions)]
                if let Some((sql, _)) = statements.iter().find(|(sql, _)| sql.contains('$')) {
                    panic!("held statements take anonymous placeholders: {sql}");
                }
                self.deferred.extend(statements)
            }
            Dialect::Postgres => execute_each(&mut self.tx, statements).await?,
        }
        Ok(())
    }

    /// Sends what is kept: `BEGIN` if it is still to go, and the inserts.
    async fn flush(&mut self) -> Result<()> {
        self.send(Vec::new()).await.map(drop)
    }

    /// Whether `BEGIN` has gone: PostgreSQL's pool sends it at once.
    fn begun(&self) -> bool {
        self.dialect == Dialect::Postgres || self.head.is_some()
    }

    /// `BEGIN` with a read of the audit log's size, unless sent already.
    fn opening(&self) -> Vec<Statement> {
        if self.begun() {
            return Vec::new();
        }
        vec![
            (self.dialect.begin_statement().into(), Vec::new()),
            (
                format!("SELECT size AS {HEAD_SIZE} FROM audit_head WHERE id = 1"),
                Vec::new(),
            ),
        ]
    }

    /// Sends `BEGIN` if it is still to go, the kept inserts and `reads` in
    /// one round trip, and returns the rows of `reads`. PostgreSQL, which
    /// keeps nothing and has begun, prepares one statement per query: its
    /// reads go one by one.
    async fn send(&mut self, reads: Vec<Statement>) -> Result<Vec<AnyRow>> {
        if self.dialect == Dialect::Postgres {
            return fetch_each(&mut self.tx, reads).await;
        }
        let opening = self.opening();
        let reads_head = !opening.is_empty();
        if opening.is_empty() && self.deferred.is_empty() && reads.is_empty() {
            return Ok(Vec::new());
        }
        let mut statements = opening;
        statements.append(&mut self.deferred);
        statements.extend(reads);
        let mut rows = fetch_joined(&mut self.tx, statements).await?;
        if reads_head {
            let head = rows
                .first()
                .filter(|row| row.columns().first().is_some_and(|c| c.name() == HEAD_SIZE))
                .ok_or_else(|| StoreError::Corrupt("the audit log's head row is missing".into()))?;
            self.head = Some(head.try_get(0).map_err(map_err)?);
            rows.remove(0);
        }
        Ok(rows)
    }

    /// The right edge of the tree of `size` leaves: as this transaction or
    /// the last commit left it when the size says it is current (the head
    /// row lock makes the size name one tree), else from its stored peaks.
    async fn edge(&mut self, size: u64) -> Result<CompactRange> {
        if let Some(edge) = self.edge.take().filter(|e| e.size() == size) {
            return Ok(edge);
        }
        let committed = self
            .committed_edge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|e| e.size() == size);
        if let Some(edge) = committed {
            return Ok(edge);
        }
        self.flush().await?;
        let ids = peaks_of(size);
        let found = crate::store::fetch_nodes(&mut self.tx, self.dialect, &ids).await?;
        let peaks = ids
            .iter()
            .map(|id| {
                found.get(id).map(|h| (id.level, *h)).ok_or_else(|| {
                    StoreError::Corrupt(format!("audit tree node {id:?} is missing"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CompactRange::from_peaks(size, peaks))
    }
}

pub(crate) fn throttle_record(
    (key, failures, window_start, locked_until): (String, i64, i64, Option<i64>),
) -> Result<ThrottleRecord> {
    Ok(ThrottleRecord {
        key,
        failures,
        window_start: from_micros(window_start)?,
        locked_until: locked_until.map(from_micros).transpose()?,
    })
}

fn incident_search(i: &Incident) -> String {
    search_text(&[&i.number, &i.title, &i.summary])
}

fn policy_row(p: &Policy) -> Result<Versioned<'_>> {
    Ok(Versioned {
        table: "escalation_policies",
        what: "escalation policy name",
        id: p.id,
        name: &p.name,
        version: p.version,
        doc: to_doc(p)?,
    })
}

fn schedule_row(s: &Schedule) -> Result<Versioned<'_>> {
    Ok(Versioned {
        table: "schedules",
        what: "schedule name",
        id: s.id,
        name: &s.name,
        version: s.version,
        doc: to_doc(s)?,
    })
}

fn duplicate(what: &'static str) -> impl Fn(StoreError) -> StoreError {
    move |e| match e {
        StoreError::Duplicate(_) => StoreError::Duplicate(what),
        other => other,
    }
}

#[async_trait]
impl Tx for SqlTx {
    async fn next_incident_number(&mut self, prefix: &str, year: i16) -> Result<i64> {
        // With the held inserts before it, in one round trip.
        let mut f = Filter::for_dialect(self.dialect);
        let sql = format!(
            "INSERT INTO incident_counters (prefix, year, last) VALUES ({}, {}, 1)
             ON CONFLICT (prefix, year) DO UPDATE SET last = incident_counters.last + 1
             RETURNING last",
            f.placeholder(Bind::Text(prefix.to_string())),
            f.placeholder(Bind::Int(i64::from(year))),
        );
        let rows = self.send(vec![(sql, f.binds)]).await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("no incident number was drawn".into()))?;
        row.try_get(0).map_err(map_err)
    }

    async fn insert_incident(&mut self, i: &Incident) -> Result<()> {
        // Held: its number was drawn in this transaction, so the unique
        // number cannot be taken by the time the insert reaches SQLite.
        let row = vec![
            Bind::Text(i.id.to_string()),
            Bind::Text(i.number.clone()),
            Bind::Text(i.status.as_str().to_string()),
            Bind::Text(i.severity.clone()),
            Bind::Text(i.category.clone()),
            Bind::Text(i.environment.clone()),
            Bind::Int(micros(i.times.detected_at)),
            Bind::Text(incident_search(i)),
            Bind::Int(i.version),
            Bind::Text(to_doc(i)?),
            Bind::int_or_null(opt_micros(i.times.occurred_at)),
            Bind::int_or_null(opt_micros(i.times.acknowledged_at)),
            Bind::int_or_null(opt_micros(i.times.resolved_at)),
        ];
        let statements = insert_row(
            self.dialect,
            "INSERT INTO incidents (id, number, status, severity, category, environment,
                detected_at, search, version, doc, occurred_at, acknowledged_at, resolved_at)",
            row,
            "",
        );
        self.write(statements)
            .await
            .map_err(duplicate("incident number"))
    }

    async fn incident_for_update(&mut self, key: &IncidentKey) -> Result<Option<Incident>> {
        self.flush().await?;
        let (column, value) = incident_column(key);
        let sql = format!(
            "SELECT doc FROM incidents WHERE {column} = $1{}",
            self.dialect.for_update()
        );
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)?;
        row.map(|(d,)| from_doc(&d)).transpose()
    }

    async fn incidents_for_update(&mut self, ids: &[Uuid]) -> Result<Vec<Incident>> {
        let reads = locking_reads(self.dialect, "incidents", "id", ids);
        docs_of_rows(&self.send(reads).await?)
    }

    async fn update_incident(&mut self, i: &Incident, expected_version: i64) -> Result<()> {
        self.flush().await?;
        let done = sqlx::query(
            "UPDATE incidents SET status = $1, severity = $2, category = $3, environment = $4,
                detected_at = $5, search = $6, version = $7, doc = $8,
                occurred_at = $9, acknowledged_at = $10, resolved_at = $11
             WHERE id = $12 AND version = $13",
        )
        .bind(i.status.as_str())
        .bind(&i.severity)
        .bind(&i.category)
        .bind(&i.environment)
        .bind(micros(i.times.detected_at))
        .bind(incident_search(i))
        .bind(i.version)
        .bind(to_doc(i)?)
        .bind(opt_micros(i.times.occurred_at))
        .bind(opt_micros(i.times.acknowledged_at))
        .bind(opt_micros(i.times.resolved_at))
        .bind(i.id.to_string())
        .bind(expected_version)
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let current: Option<(i64,)> = sqlx::query_as("SELECT version FROM incidents WHERE id = $1")
            .bind(i.id.to_string())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Err(StoreError::VersionMismatch {
            current: current.map_or(0, |(v,)| v),
        })
    }

    async fn append_timeline_entries(&mut self, entries: &[TimelineEntry]) -> Result<()> {
        let rows = entries
            .iter()
            .map(|e| {
                Ok(vec![
                    Bind::Text(e.id.to_string()),
                    Bind::Text(e.incident_id.to_string()),
                    Bind::Int(micros(e.at)),
                    Bind::Text(to_doc(e)?),
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let statements = multi_insert(
            self.dialect,
            "INSERT INTO timeline (id, incident_id, at, doc)",
            rows,
            ROWS_PER_STATEMENT,
            "",
        );
        self.write(statements).await
    }

    async fn insert_user(&mut self, u: &UserRecord) -> Result<()> {
        self.flush().await?;
        sqlx::query("INSERT INTO users (id, name, doc) VALUES ($1, $2, $3)")
            .bind(u.id.to_string())
            .bind(&u.name)
            .bind(to_doc(u)?)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)
            .map_err(duplicate("user name"))?;
        Ok(())
    }

    async fn update_user(&mut self, u: &UserRecord) -> Result<()> {
        self.flush().await?;
        sqlx::query("UPDATE users SET name = $1, doc = $2 WHERE id = $3")
            .bind(&u.name)
            .bind(to_doc(u)?)
            .bind(u.id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)
            .map_err(duplicate("user name"))?;
        Ok(())
    }

    async fn insert_token(&mut self, t: &TokenRecord) -> Result<()> {
        self.flush().await?;
        sqlx::query(
            "INSERT INTO tokens (id, user_id, hash, last_used_at, doc) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(t.id.to_string())
        .bind(t.user_id.to_string())
        .bind(&t.hash)
        .bind(opt_micros(t.last_used_at))
        .bind(to_doc(t)?)
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)
        .map_err(duplicate("token"))?;
        Ok(())
    }

    async fn revoke_token(&mut self, id: Uuid, at: Timestamp) -> Result<bool> {
        self.flush().await?;
        let row: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT doc FROM tokens WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_err)?;
        let Some((doc,)) = row else { return Ok(false) };
        let mut t: TokenRecord = from_doc(&doc)?;
        if t.revoked_at.is_some() {
            return Ok(false);
        }
        t.revoked_at = Some(at);
        sqlx::query("UPDATE tokens SET doc = $1 WHERE id = $2")
            .bind(to_doc(&t)?)
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(true)
    }

    async fn insert_session(&mut self, s: &SessionRecord) -> Result<()> {
        self.flush().await?;
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.hash)
        .bind(s.user_id.to_string())
        .bind(micros(s.created_at))
        .bind(micros(s.expires_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn delete_session(&mut self, hash: &str) -> Result<bool> {
        self.flush().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(hash)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_failure(
        &mut self,
        key: &str,
        at: Timestamp,
        window_start_before: Timestamp,
    ) -> Result<ThrottleRecord> {
        self.flush().await?;
        let row: (String, i64, i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO login_throttle (key, failures, window_start, locked_until)
             VALUES ($1, 1, $2, NULL)
             ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN login_throttle.window_start < $3
                               THEN 1 ELSE login_throttle.failures + 1 END,
               window_start = CASE WHEN login_throttle.window_start < $3
                                   THEN $2 ELSE login_throttle.window_start END
             RETURNING key, failures, window_start, locked_until",
        )
        .bind(key)
        .bind(micros(at))
        .bind(micros(window_start_before))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(map_err)?;
        throttle_record(row)
    }

    async fn lock_key(&mut self, key: &str, until: Timestamp) -> Result<()> {
        self.flush().await?;
        sqlx::query("UPDATE login_throttle SET locked_until = $1 WHERE key = $2")
            .bind(micros(until))
            .bind(key)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn clear_failures(&mut self, key: &str) -> Result<()> {
        self.flush().await?;
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(key)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn append_audit(&mut self, event: &AuditEvent) -> Result<i64> {
        let seqs = self.append_audit_batch(vec![event.clone()]).await?;
        Ok(seqs[0])
    }

    async fn append_audit_batch(&mut self, events: Vec<AuditEvent>) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The head row serialises appends: the sequence is gap-free and in
        // commit order, as the Merkle tree over it requires.
        let added = events.len() as i64;
        if !self.begun() {
            // On SQLite, `BEGIN` reads the head.
            self.flush().await?;
        }
        let last = match self.head {
            Some(size) => {
                self.write(vec![(
                    "UPDATE audit_head SET size = size + ? WHERE id = 1".into(),
                    vec![Bind::Int(added)],
                )])
                .await?;
                self.head = Some(size + added);
                size + added
            }
            None => {
                let (last,): (i64,) = sqlx::query_as(
                    "UPDATE audit_head SET size = size + $1 WHERE id = 1 RETURNING size",
                )
                .bind(added)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(map_err)?;
                last
            }
        };
        let first = last - events.len() as i64 + 1;
        let mut edge = self.edge(first as u64 - 1).await?;
        let dialect = self.dialect;
        if events.len() <= AUDIT_PIPELINE_CHUNK {
            let statements = audit_statements(dialect, events.into_iter(), first, &mut edge)?;
            self.edge = Some(edge);
            self.write(statements).await?;
        } else {
            // A pipeline: a blocking thread hashes and binds chunk after
            // chunk while this task hands each to the database as it comes,
            // so that both cores work. The last chunk is kept for `write`,
            // which on SQLite sends it with COMMIT.
            let (send, mut received) = tokio::sync::mpsc::channel(2);
            let produce = tokio::task::spawn_blocking(move || {
                let mut seq = first;
                let mut events = events.into_iter();
                while events.len() > 0 {
                    let last = events.len() <= AUDIT_PIPELINE_CHUNK;
                    let chunk = events.by_ref().take(AUDIT_PIPELINE_CHUNK);
                    let statements = audit_statements(dialect, chunk, seq, &mut edge)?;
                    seq += AUDIT_PIPELINE_CHUNK as i64;
                    if send.blocking_send((statements, last)).is_err() {
                        break;
                    }
                }
                Ok::<_, StoreError>(edge)
            });
            let mut kept = Vec::new();
            while let Some((statements, last)) = received.recv().await {
                if last {
                    kept = statements;
                } else {
                    self.write(statements).await?;
                    self.flush().await?;
                }
            }
            let edge = produce
                .await
                .map_err(|e| StoreError::Backend(format!("appending audit events: {e}")))??;
            self.edge = Some(edge);
            self.write(kept).await?;
        }
        self.audited = true;
        Ok((first..=last).collect())
    }

    async fn current_subject_key(
        &mut self,
        subject: &str,
    ) -> Result<Option<(i64, Option<String>)>> {
        self.flush().await?;
        let sql = format!(
            "SELECT generation, wrapped_key FROM audit_subject_keys WHERE subject = $1
             ORDER BY generation DESC LIMIT 1{}",
            self.dialect.for_update()
        );
        sqlx::query_as(&sql)
            .bind(subject)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)
    }

    async fn insert_subject_key(
        &mut self,
        subject: &str,
        generation: i64,
        wrapped: &str,
        at: Timestamp,
    ) -> Result<()> {
        // Held: the generation was read under lock in this transaction, or
        // the subject was made in it.
        let statements = insert_row(
            self.dialect,
            "INSERT INTO audit_subject_keys (subject, generation, wrapped_key, created_at)",
            vec![
                Bind::Text(subject.to_string()),
                Bind::Int(generation),
                Bind::Text(wrapped.to_string()),
                Bind::Int(micros(at)),
            ],
            "",
        );
        self.write(statements)
            .await
            .map_err(duplicate("subject key"))
    }

    async fn shred_subject(&mut self, subject: &str, at: Timestamp) -> Result<u64> {
        self.flush().await?;
        let done = sqlx::query(
            "UPDATE audit_subject_keys SET wrapped_key = NULL, shredded_at = $1
             WHERE subject = $2 AND wrapped_key IS NOT NULL",
        )
        .bind(micros(at))
        .bind(subject)
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn archive_audit(&mut self, a: &ArchiveRecord) -> Result<u64> {
        self.flush().await?;
        sqlx::query(
            "INSERT INTO audit_archives (from_seq, to_seq, file, sha256, archived_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(a.from_seq)
        .bind(a.to_seq)
        .bind(&a.file)
        .bind(&a.sha256)
        .bind(micros(a.archived_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)
        .map_err(duplicate("archive"))?;
        // The leaves stay, as stored nodes keyed by their append order,
        // seq << 6 (logs written before leaves lived only in their events
        // already hold them).
        sqlx::query(
            "INSERT INTO audit_nodes (pos, hash)
             SELECT seq * 64, leaf_hash FROM audit_events WHERE seq >= $1 AND seq <= $2
             ON CONFLICT DO NOTHING",
        )
        .bind(a.from_seq)
        .bind(a.to_seq)
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        let gone = sqlx::query("DELETE FROM audit_events WHERE seq >= $1 AND seq <= $2")
            .bind(a.from_seq)
            .bind(a.to_seq)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(gone.rows_affected())
    }

    async fn insert_audit_key(
        &mut self,
        key_id: &str,
        public_hex: &str,
        at: Timestamp,
    ) -> Result<()> {
        self.flush().await?;
        sqlx::query("INSERT INTO audit_keys (key_id, public_key, created_at) VALUES ($1, $2, $3)")
            .bind(key_id)
            .bind(public_hex)
            .bind(micros(at))
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)
            .map_err(duplicate("audit key"))?;
        Ok(())
    }

    async fn enqueue(&mut self, messages: &[OutboxMessage]) -> Result<()> {
        let rows = messages
            .iter()
            .map(|m| {
                Ok(vec![
                    Bind::Text(m.id.to_string()),
                    Bind::Text(m.topic.clone()),
                    Bind::Text(m.idempotency_key.clone()),
                    Bind::Int(micros(m.created_at)),
                    Bind::Text(to_doc(m)?),
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let statements = multi_insert(
            self.dialect,
            "INSERT INTO outbox (id, topic, idempotency_key, created_at, doc)",
            rows,
            ROWS_PER_STATEMENT,
            "",
        );
        self.write(statements).await
    }

    async fn insert_service(&mut self, service: &Service) -> Result<()> {
        self.flush().await?;
        alerts::insert_service(&mut self.tx, service).await
    }

    async fn update_service(&mut self, service: &Service, expected_version: i64) -> Result<()> {
        self.flush().await?;
        alerts::update_service(&mut self.tx, service, expected_version).await
    }

    async fn insert_integration(&mut self, integration: &Integration) -> Result<()> {
        self.flush().await?;
        alerts::save_integration(&mut self.tx, integration, true).await
    }

    async fn update_integration(&mut self, integration: &Integration) -> Result<()> {
        self.announce(Work::Integrations, true);
        self.flush().await?;
        alerts::save_integration(&mut self.tx, integration, false).await
    }

    async fn integration_for_update(&mut self, id: Uuid) -> Result<Option<Integration>> {
        self.flush().await?;
        alerts::integration_for_update(&mut self.tx, self.dialect, id).await
    }

    async fn open_alerts_and_groups(
        &mut self,
        integrations: &[Uuid],
        keys: &[(Uuid, String)],
        groups: &[AlertGroup],
    ) -> Result<(Vec<Alert>, Vec<Option<Uuid>>)> {
        let locked = integrations
            .iter()
            .copied()
            .chain(groups.iter().map(|g| g.service));
        alerts::take_advisory_locks(&mut self.tx, self.dialect, locked).await?;
        let reads = alerts::intake_reads(self.dialect, keys, groups);
        // Every term of the reads yields `(n, text)` rows.
        let rows = from_rows(&self.send(reads).await?)?;
        alerts::intake_found(rows, groups.len())
    }

    async fn insert_channel(&mut self, c: &Channel) -> Result<()> {
        self.flush().await?;
        sqlx::query("INSERT INTO channels (id, name, doc) VALUES ($1, $2, $3)")
            .bind(c.id.to_string())
            .bind(&c.name)
            .bind(to_doc(c)?)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)
            .map_err(duplicate("channel"))?;
        Ok(())
    }

    async fn update_channel(&mut self, c: &Channel) -> Result<()> {
        self.flush().await?;
        // The name column only keeps names unique among channels in use.
        let name = match c.removed_at {
            Some(_) => format!("(removed) {}", c.id),
            None => c.name.clone(),
        };
        sqlx::query("UPDATE channels SET name = $1, doc = $2 WHERE id = $3")
            .bind(name)
            .bind(to_doc(c)?)
            .bind(c.id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)
            .map_err(duplicate("channel"))?;
        Ok(())
    }

    async fn insert_deliveries(&mut self, list: &[DeliveryRecord]) -> Result<()> {
        self.announce(Work::Deliveries, !list.is_empty());
        let statements = notify::insert_deliveries(self.dialect, list)?;
        self.write(statements).await
    }

    async fn update_delivery(&mut self, d: &DeliveryRecord) -> Result<()> {
        self.flush().await?;
        sqlx::query(
            "UPDATE deliveries SET status = $1, due_at = $2, claimed_until = NULL, doc = $3
             WHERE id = $4",
        )
        .bind(d.status.as_str())
        .bind(micros(d.due_at))
        .bind(to_doc(d)?)
        .bind(d.id.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn save_alerts(&mut self, list: &[Alert]) -> Result<()> {
        let statements = alerts::save_alerts(self.dialect, list)?;
        self.write(statements).await
    }

    async fn open_alerts_of_incident(&mut self, incident: Uuid) -> Result<Vec<Uuid>> {
        self.flush().await?;
        alerts::open_alerts_of_incident(&mut self.tx, incident).await
    }

    async fn hold_open_alerts_of_incident(&mut self, incident: &IncidentKey) -> Result<Vec<Alert>> {
        self.flush().await?;
        alerts::hold_open_alerts_of_incident(&mut self.tx, self.dialect, incident).await
    }

    async fn insert_policy(&mut self, p: &Policy) -> Result<()> {
        self.flush().await?;
        policy_row(p)?.insert(&mut self.tx).await
    }

    async fn update_policy(&mut self, p: &Policy, expected_version: i64) -> Result<()> {
        self.flush().await?;
        policy_row(p)?.update(&mut self.tx, expected_version).await
    }

    async fn insert_schedule(&mut self, s: &Schedule) -> Result<()> {
        self.flush().await?;
        schedule_row(s)?.insert(&mut self.tx).await
    }

    async fn update_schedule(&mut self, s: &Schedule, expected_version: i64) -> Result<()> {
        self.flush().await?;
        schedule_row(s)?
            .update(&mut self.tx, expected_version)
            .await
    }

    async fn escalations_for_update(&mut self, incidents: &[Uuid]) -> Result<Vec<Escalation>> {
        let reads = locking_reads(self.dialect, "escalations", "incident_id", incidents);
        docs_of_rows(&self.send(reads).await?)
    }

    async fn save_escalation(&mut self, e: &Escalation, due_at: Option<Timestamp>) -> Result<()> {
        self.announce(Work::Escalations, due_at.is_some());
        let statements = escalation::save_escalation(self.dialect, e, due_at)?;
        self.write(statements).await
    }

    async fn cancel_pages(&mut self, incident: Uuid, at: Timestamp) -> Result<u64> {
        self.flush().await?;
        escalation::cancel_pages(&mut self.tx, self.dialect, incident, at).await
    }

    async fn insert_service_change(&mut self, change: &ChangeRecord) -> Result<()> {
        self.flush().await?;
        alerts::insert_service_change(&mut self.tx, change).await
    }

    async fn mark_intake_journal_applied(&mut self, journal: Uuid, seq: u64) -> Result<()> {
        // Held on SQLite and sent with the statements before it, so its
        // placeholders are the dialect's own, numbered in the joined batch:
        // a literal `$1` there is the batch's first argument.
        let statements = insert_row(
            self.dialect,
            "INSERT INTO intake_journals (id, applied_seq)",
            vec![
                Bind::Text(journal.to_string()),
                // Records are numbered from 1, one node's at a time: far
                // below i64's range.
                Bind::Int(seq as i64),
            ],
            " ON CONFLICT (id) DO UPDATE SET applied_seq = excluded.applied_seq",
        );
        self.write(statements).await
    }

    async fn mark_intake_replayed(&mut self, replay: Uuid) -> Result<()> {
        self.flush().await?;
        // A replayed record counts as a journal of one record; its row,
        // inserted and never updated, is what makes a second replay fail.
        sqlx::query("INSERT INTO intake_journals (id, applied_seq) VALUES ($1, 1)")
            .bind(replay.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(crate::map_err)?;
        Ok(())
    }

    async fn postmortem_for_update(&mut self, incident: Uuid) -> Result<Option<PostmortemRecord>> {
        self.flush().await?;
        reports::postmortem_for_update(&mut self.tx, self.dialect, incident).await
    }

    async fn save_postmortem(
        &mut self,
        record: &PostmortemRecord,
        expected_version: i64,
    ) -> Result<()> {
        self.flush().await?;
        reports::save_postmortem(&mut self.tx, record, expected_version).await
    }

    async fn insert_postmortem_version(&mut self, frozen: &FrozenPostmortem) -> Result<()> {
        self.flush().await?;
        reports::insert_postmortem_version(&mut self.tx, frozen).await
    }

    async fn replace_action_items(
        &mut self,
        incident: Uuid,
        items: &[ActionItemRecord],
    ) -> Result<()> {
        self.flush().await?;
        reports::replace_action_items(&mut self.tx, incident, items).await
    }

    async fn mark_action_item_reminded(&mut self, id: Uuid) -> Result<()> {
        self.flush().await?;
        reports::mark_action_item_reminded(&mut self.tx, id).await
    }

    async fn obligations_for_update(&mut self, incident: Uuid) -> Result<Vec<ObligationRecord>> {
        self.flush().await?;
        reports::obligations_for_update(&mut self.tx, self.dialect, incident).await
    }

    async fn save_obligation(&mut self, record: &ObligationRecord) -> Result<()> {
        self.flush().await?;
        reports::save_obligation(&mut self.tx, record).await
    }

    async fn delete_obligation(&mut self, incident: Uuid, rule: &str) -> Result<()> {
        self.flush().await?;
        reports::delete_obligation(&mut self.tx, incident, rule).await
    }

    async fn commit_visible(mut self: Box<Self>) -> Result<Durable> {
        if !self.audited {
            return Err(StoreError::Unaudited);
        }
        if self.dialect == Dialect::Postgres {
            for work in std::mem::take(&mut self.work) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(crate::store::WORK_CHANNEL)
                    .bind(work.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
            }
        }
        // On SQLite the kept inserts and the commit go in one round trip.
        let mut statements = self.opening();
        statements.append(&mut self.deferred);
        self.tx.commit_with(statements).await?;
        if let Some(edge) = self.edge {
            *self
                .committed_edge
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(edge);
        }
        Ok(match self.wal {
            Some(wal) => Durable::after(async move { wal.sync().await }),
            None => Durable::now(),
        })
    }
}

/// Events per step of an append's pipeline, and per insert statement:
/// large enough that a step's round trip to the database is small beside
/// its inserts, small enough to stay within every backend's limit on bound
/// parameters (13 per event).
const AUDIT_PIPELINE_CHUNK: usize = 125;

/// The inserts that append `events`, numbered from `first`, to the log and
/// to the tree whose right edge is `edge`.
fn audit_statements(
    dialect: Dialect,
    events: impl Iterator<Item = AuditEvent>,
    first: i64,
    edge: &mut CompactRange,
) -> Result<Vec<Statement>> {
    let mut nodes = Vec::with_capacity(AUDIT_PIPELINE_CHUNK * 2);
    let mut event_rows = Vec::with_capacity(AUDIT_PIPELINE_CHUNK);
    // Each event takes its number; its fields then move into the binds.
    for (seq, mut event) in (first..).zip(events) {
        event.seq = seq;
        // Stored canonical: the document's bytes are the leaf's bytes.
        let doc = canonical_event(&event).map_err(|e| StoreError::Backend(e.to_string()))?;
        let leaf = leaf_hash(doc.as_bytes());
        // A leaf is the event row's `leaf_hash`; it joins the stored nodes
        // only when its event is archived.
        edge.append_with(leaf, |id, hash| {
            if id.level > 0 {
                nodes.push((id, hash));
            }
        });
        event_rows.push(vec![
            Bind::Int(event.seq),
            Bind::Text(event.id.to_string()),
            Bind::Int(micros(event.time)),
            Bind::Text(event.action),
            Bind::Text(
                match event.outcome {
                    kiroku_domain::Outcome::Success => "success",
                    kiroku_domain::Outcome::Failure => "failure",
                }
                .into(),
            ),
            Bind::text_or_null(event.actor.id),
            Bind::text_or_null(event.actor.name),
            Bind::text_or_null(event.actor.role),
            Bind::text_or_null(event.source.ip),
            Bind::Text(event.target.kind),
            Bind::text_or_null(event.target.id),
            Bind::Text(hex(&leaf)),
            Bind::Text(doc),
        ]);
    }
    let node_rows = nodes
        .iter()
        .map(|(id, hash)| {
            let order = id.append_order().ok_or_else(|| {
                StoreError::Backend("the audit log is at its largest size".into())
            })?;
            Ok(vec![Bind::Int(order as i64), Bind::Text(hex(hash))])
        })
        .collect::<Result<_>>()?;
    let mut statements = multi_insert(
        dialect,
        &format!("{} audit_nodes (pos, hash)", dialect.bulk_insert()),
        node_rows,
        500,
        "",
    );
    statements.extend(multi_insert(
        dialect,
        &format!(
            "{} audit_events (seq, id, time, action, outcome, actor_id, actor_name,
            actor_role, source_ip, target_kind, target_id, leaf_hash, doc)",
            dialect.bulk_insert()
        ),
        event_rows,
        AUDIT_PIPELINE_CHUNK,
        "",
    ));
    Ok(statements)
}

/// The incidents column `key` names a row by, and its value.
pub(crate) fn incident_column(key: &IncidentKey) -> (&'static str, String) {
    match key {
        IncidentKey::Id(id) => ("id", id.to_string()),
        IncidentKey::Number(n) => ("number", n.clone()),
    }
}
