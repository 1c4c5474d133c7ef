//! Reads, and the door to writes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kiroku_audit::merkle::from_hex;
use kiroku_audit::{Hash, NodeId, SignedTreeHead, TreeHead};
use kiroku_domain::alert::{Alert, Integration, Service};
use kiroku_domain::escalation::{Escalation, Policy};
use kiroku_domain::notify::Channel;
use kiroku_domain::schedule::Schedule;
use kiroku_domain::{AuditEvent, Incident, OutboxMessage, TimelineEntry};
use kiroku_store::{
    ActionItemQuery, ActionItemRecord, AlertQuery, ArchiveRecord, AuditQuery, ChangeRecord,
    DeliveryRecord, DeliveryStatus, FrozenPostmortem, IncidentKey, IncidentQuery, ObligationRecord,
    PAGE_MAX, PageCursor, PostmortemRecord, RawAuditEvent, Result, SessionRecord, Store,
    StoreError, ThrottleRecord, TokenRecord, Tx, UserRecord, Work,
};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use uuid::Uuid;

use crate::convert::{contains_pattern, from_doc, from_micros, micros};
use crate::tx::SqlTx;
use crate::wal::WalSync;
use crate::writer::Writer;
use crate::{Dialect, map_err};

/// One store over two pools: SQLite writes through a single connection
/// (SQLite has one writer anyway; queueing in-process beats spinning on
/// `SQLITE_BUSY`) and reads through several; PostgreSQL uses one pool for both.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) read: AnyPool,
    writer: Writer,
    dialect: Dialect,
    /// The audit tree's right edge as the last commit left it, so that an
    /// append need not read it back; checked against the size each time.
    edge: crate::tx::SharedEdge,
    /// Where to LISTEN for other nodes' work (PostgreSQL).
    listen_url: Option<String>,
    /// Syncs SQLite's log after each commit, outside the write lock.
    wal: Option<Arc<WalSync>>,
}

/// The channel nodes NOTIFY of work on (PostgreSQL).
pub(crate) const WORK_CHANNEL: &str = "kiroku_work";

/// A value bound to a dynamically built query.
pub(crate) enum Bind {
    Int(i64),
    Text(String),
    /// Nulls are typed: PostgreSQL refuses a text null for an integer
    /// column, which a held insert cannot cast.
    NullText,
    NullInt,
}

impl Bind {
    pub(crate) fn int_or_null(v: Option<i64>) -> Bind {
        v.map_or(Bind::NullInt, Bind::Int)
    }

    pub(crate) fn text_or_null(v: Option<String>) -> Bind {
        v.map_or(Bind::NullText, Bind::Text)
    }
}

/// Binds by reference, so that a caller's statements stay its own. sqlx's
/// `Any` copies each text once either way: an owned `String` as it is
/// bound, a borrowed one on its way to SQLite's thread.
pub(crate) fn bind_all<'q>(
    mut q: Query<'q, sqlx::Any, AnyArguments<'q>>,
    binds: &'q [Bind],
) -> Query<'q, sqlx::Any, AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::NullText => q.bind(None::<&str>),
            Bind::NullInt => q.bind(None::<i64>),
        };
    }
    q
}

/// Builds `WHERE` clauses and value lists with placeholders in bind order.
#[derive(Default)]
pub(crate) struct Filter {
    pub(crate) clauses: Vec<String>,
    pub(crate) binds: Vec<Bind>,
    /// Numbered `$N` unless set; see [`Dialect::placeholder`].
    dialect: Option<Dialect>,
}

impl Filter {
    /// For statements with many parameters, where each placeholder appears
    /// once and in bind order.
    pub(crate) fn for_dialect(dialect: Dialect) -> Self {
        Filter {
            dialect: Some(dialect),
            ..Filter::default()
        }
    }

    pub(crate) fn placeholder(&mut self, b: Bind) -> String {
        let mut p = String::new();
        self.push_placeholder(&mut p, b);
        p
    }

    /// Appends `b`'s placeholder to `sql`.
    fn push_placeholder(&mut self, sql: &mut String, b: Bind) {
        self.binds.push(b);
        let n = self.binds.len();
        match self.dialect {
            Some(d) => d.push_placeholder(sql, n),
            None => Dialect::Postgres.push_placeholder(sql, n),
        }
    }

    pub(crate) fn eq(&mut self, column: &str, b: Bind) {
        let p = self.placeholder(b);
        self.clauses.push(format!("{column} = {p}"));
    }

    pub(crate) fn any_of(&mut self, column: &str, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        let ps: Vec<String> = values
            .into_iter()
            .map(|v| self.placeholder(Bind::Text(v)))
            .collect();
        self.clauses
            .push(format!("{column} IN ({})", ps.join(", ")));
    }

    fn cmp(&mut self, column: &str, op: &str, b: Bind) {
        let p = self.placeholder(b);
        self.clauses.push(format!("{column} {op} {p}"));
    }

    fn like(&mut self, column: &str, pattern: String) {
        let p = self.placeholder(Bind::Text(pattern));
        self.clauses.push(format!("{column} LIKE {p} ESCAPE '\\'"));
    }

    /// Rows before `cursor` in a `(time column, id) DESC` order.
    pub(crate) fn before(&mut self, time_column: &str, cursor: PageCursor) {
        let t = self.placeholder(Bind::Int(micros(cursor.at)));
        let id = self.placeholder(Bind::Text(cursor.id.to_string()));
        self.clauses
            .push(format!("({time_column}, id) < ({t}, {id})"));
    }

    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// A statement and its parameters, in placeholder order.
pub(crate) type Statement = (String, Vec<Bind>);

/// Rows per multi-row insert: with at most 10 binds a row, far below every
/// backend's limit on bound parameters.
pub(crate) const ROWS_PER_STATEMENT: usize = 200;

/// The reads of the rows in `table` whose `column` is one of `ids` (table
/// and column always ours), one per `IDS_PER_STATEMENT`, locking them for
/// the rest of the transaction in order of id: the order in which writers
/// taking them one by one, sorted, take them. Ids are hyphenated
/// lower-case text of one shape, which byte-wise and glibc collations
/// order as the ids' bytes. Each statement's ids are padded to one of a
/// few counts, so that its text stays prepared.
pub(crate) fn locking_reads(
    dialect: Dialect,
    table: &'static str,
    column: &'static str,
    ids: &[Uuid],
) -> Vec<Statement> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.chunks(IDS_PER_STATEMENT)
        .map(|chunk| {
            let mut chunk = chunk.to_vec();
            pad_to_shape(&mut chunk, IDS_PER_STATEMENT);
            let mut f = Filter::for_dialect(dialect);
            f.any_of(column, chunk.iter().map(Uuid::to_string).collect());
            let sql = format!(
                "SELECT doc FROM {table}{} ORDER BY {column}{}",
                f.where_sql(),
                dialect.for_update()
            );
            (sql, f.binds)
        })
        .collect()
}

/// The documents in the first column of `rows`.
pub(crate) fn docs_of_rows<T: serde::de::DeserializeOwned>(rows: &[AnyRow]) -> Result<Vec<T>> {
    rows.iter()
        .map(|row| from_doc(&row.try_get::<String, _>(0).map_err(map_err)?))
        .collect()
}

/// Ids per locking read, well below every backend's limit on bound values.
const IDS_PER_STATEMENT: usize = 500;

/// Repeats the last of `items` until their count is a power of two, or
/// a multiple of `chunk` past it: the read's text then takes one of a few
/// shapes, which the statement caches keep prepared, where a text for
/// every count would be parsed afresh. A key met twice in an `IN` list, or
/// a group looked up twice under its number, changes no answer.
pub(crate) fn pad_to_shape<T: Copy>(items: &mut Vec<T>, chunk: usize) {
    let Some(&last) = items.last() else { return };
    let shape = if items.len() < chunk {
        items.len().next_power_of_two().min(chunk)
    } else {
        items.len().next_multiple_of(chunk)
    };
    items.resize(shape, last);
}

/// A one-row `INSERT … VALUES (…) …tail`, with the dialect's placeholders,
/// so that a transaction may hold it with its other inserts.
pub(crate) fn insert_row(
    dialect: Dialect,
    head: &str,
    row: Vec<Bind>,
    tail: &str,
) -> Vec<Statement> {
    multi_insert(dialect, head, vec![row], 1, tail)
}

/// `INSERT … VALUES (…), (…) …tail` statements of at most `per_statement`
/// rows each: one round trip per chunk rather than per row, within every
/// backend's limit on bound parameters.
pub(crate) fn multi_insert(
    dialect: Dialect,
    head: &str,
    rows: Vec<Vec<Bind>>,
    per_statement: usize,
    tail: &str,
) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut f = Filter::for_dialect(dialect);
        let mut sql = format!("{head} VALUES ");
        for (r, row) in rows.by_ref().take(per_statement).enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for (c, b) in row.into_iter().enumerate() {
                if c > 0 {
                    sql.push_str(", ");
                }
                f.push_placeholder(&mut sql, b);
            }
            sql.push(')');
        }
        sql.push_str(tail);
        out.push((sql, f.binds));
    }
    out
}

/// Callers may ask for one row past a page, to learn whether another follows.
pub(crate) fn page(limit: i64) -> i64 {
    limit.clamp(1, PAGE_MAX + 1)
}

/// Reads tree nodes by id, in chunks that stay within every backend's limit
/// on bound parameters. A leaf (level 0) is its event's `leaf_hash` while
/// the event is in the database, and a stored node once it is archived.
/// Stored nodes are keyed by [`NodeId::append_order`]; a leaf's order is
/// its event's `seq` << 6.
pub(crate) async fn fetch_nodes(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>> {
    let mut out = HashMap::with_capacity(ids.len());
    let leaves: Vec<&NodeId> = ids.iter().filter(|id| id.level == 0).collect();
    for chunk in leaves.chunks(500) {
        let mut f = Filter::for_dialect(dialect);
        let seqs: Vec<String> = chunk
            .iter()
            .map(|id| f.placeholder(Bind::Int(id.index as i64 + 1)))
            .collect();
        let sql = format!(
            "SELECT seq * 64, leaf_hash FROM audit_events WHERE seq IN ({})",
            seqs.join(", ")
        );
        read_nodes(&mut *conn, &sql, &f.binds, &mut out).await?;
    }
    // Every other node, and the leaves of archived events.
    // A node past the orders' range is in no tree; it is simply not found.
    let stored: Vec<u64> = ids
        .iter()
        .filter(|id| !out.contains_key(id))
        .filter_map(|id| id.append_order())
        .collect();
    for chunk in stored.chunks(500) {
        let mut f = Filter::for_dialect(dialect);
        let orders: Vec<String> = chunk
            .iter()
            .map(|order| f.placeholder(Bind::Int(*order as i64)))
            .collect();
        let sql = format!(
            "SELECT pos, hash FROM audit_nodes WHERE pos IN ({})",
            orders.join(", ")
        );
        read_nodes(&mut *conn, &sql, &f.binds, &mut out).await?;
    }
    Ok(out)
}

/// Adds the `(append order, hash)` rows `sql` selects to `out`.
async fn read_nodes(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    binds: &[Bind],
    out: &mut HashMap<NodeId, Hash>,
) -> Result<()> {
    let rows = bind_all(sqlx::query(sql), binds)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    for row in rows {
        let (pos, hash): (i64, String) = sqlx::FromRow::from_row(&row).map_err(map_err)?;
        let (node, hash) = u64::try_from(pos)
            .ok()
            .and_then(NodeId::from_append_order)
            .zip(from_hex(&hash))
            .ok_or_else(|| StoreError::Corrupt(format!("audit node {pos} is not a node's hash")))?;
        out.insert(node, hash);
    }
    Ok(())
}

/// Rows read as tuples of their columns.
pub(crate) fn from_rows<T>(rows: &[sqlx::any::AnyRow]) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    rows.iter()
        .map(sqlx::FromRow::from_row)
        .collect::<std::result::Result<_, _>>()
        .map_err(map_err)
}

pub(crate) fn decode_docs<T: serde::de::DeserializeOwned>(rows: Vec<(String,)>) -> Result<Vec<T>> {
    rows.iter().map(|(d,)| from_doc(d)).collect()
}

impl SqlStore {
    pub fn new(read: AnyPool, writer: Writer, dialect: Dialect) -> Self {
        SqlStore {
            read,
            writer,
            dialect,
            edge: Default::default(),
            listen_url: None,
            wal: None,
        }
    }

    /// The store whose commits are made durable by `wal` (SQLite's writer
    /// runs with `synchronous = NORMAL`; see `wal.rs`).
    pub fn with_wal_sync(self, wal: Arc<WalSync>) -> Self {
        SqlStore {
            wal: Some(wal),
            ..self
        }
    }

    /// Returns once every commit visible before the call is durable (on
    /// SQLite, by a sync of its log), for writes made outside a `Tx`.
    pub(crate) async fn sync_log(&self) -> Result<()> {
        match &self.wal {
            Some(wal) => wal.sync().await,
            None => Ok(()),
        }
    }

    /// Log syncs done so far (SQLite).
    pub fn log_syncs(&self) -> u64 {
        self.wal.as_ref().map_or(0, |w| w.syncs())
    }

    /// The store that hears other nodes' commits of work by LISTEN on
    /// `url`, a PostgreSQL server's.
    pub fn with_listener(self, url: &str) -> Self {
        SqlStore {
            listen_url: Some(url.to_string()),
            ..self
        }
    }

    pub(crate) async fn doc<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        key: Bind,
    ) -> Result<Option<T>> {
        let row: Option<(String,)> = bind_all(sqlx::query(sql), std::slice::from_ref(&key))
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?
            .map(|r| sqlx::FromRow::from_row(&r))
            .transpose()
            .map_err(map_err)?;
        row.map(|(d,)| from_doc(&d)).transpose()
    }

    /// When a worker should next look at `table`'s timers (`pending`
    /// selects the live ones): the earliest due one no worker holds, or
    /// the earliest hold to lapse. Both are index scans that stop at the
    /// first row, however many timers wait.
    pub(crate) async fn next_wake(
        &self,
        table: &'static str,
        pending: &'static str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let free: Option<(i64,)> = sqlx::query_as(&format!(
            "SELECT due_at FROM {table} WHERE {pending}
               AND (claimed_until IS NULL OR claimed_until <= $1)
             ORDER BY due_at LIMIT 1"
        ))
        .bind(micros(now))
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        let (held,): (Option<i64>,) = sqlx::query_as(&format!(
            "SELECT MIN(claimed_until) FROM {table} WHERE {pending} AND claimed_until > $1"
        ))
        .bind(micros(now))
        .fetch_one(&self.read)
        .await
        .map_err(map_err)?;
        free.map(|(at,)| at)
            .into_iter()
            .chain(held)
            .min()
            .map(from_micros)
            .transpose()
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    pub(crate) async fn docs<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<T>> {
        let rows = bind_all(sqlx::query(sql), &binds)
            .fetch_all(&self.read)
            .await
            .map_err(map_err)?;
        decode_docs(from_rows(&rows)?)
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    fn io_on_own_threads(&self) -> bool {
        self.dialect == Dialect::Sqlite
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let tx = self.writer.begin_later().await?;
        Ok(Box::new(SqlTx::new(
            tx,
            self.dialect,
            self.edge.clone(),
            self.wal.clone(),
        )))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn incident(&self, key: &IncidentKey) -> Result<Option<Incident>> {
        match key {
            IncidentKey::Id(id) => {
                self.doc(
                    "SELECT doc FROM incidents WHERE id = $1",
                    Bind::Text(id.to_string()),
                )
                .await
            }
            IncidentKey::Number(n) => {
                self.doc(
                    "SELECT doc FROM incidents WHERE number = $1",
                    Bind::Text(n.clone()),
                )
                .await
            }
        }
    }

    async fn incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>> {
        let mut f = Filter::default();
        f.any_of(
            "status",
            q.statuses.iter().map(|s| s.as_str().to_string()).collect(),
        );
        f.any_of("severity", q.severities.clone());
        f.any_of("category", q.categories.clone());
        if let Some(env) = &q.environment {
            f.eq("environment", Bind::Text(env.clone()));
        }
        if let Some(t) = q.detected_from {
            f.cmp("detected_at", ">=", Bind::Int(micros(t)));
        }
        if let Some(t) = q.detected_to {
            f.cmp("detected_at", "<", Bind::Int(micros(t)));
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            f.like("search", contains_pattern(&text.to_lowercase()));
        }
        if let Some(after) = q.after {
            f.before("detected_at", after);
        }
        let sql = format!(
            "SELECT doc FROM incidents{} ORDER BY detected_at DESC, id DESC LIMIT {}",
            f.where_sql(),
            page(q.limit)
        );
        self.docs(&sql, f.binds).await
    }

    async fn timeline(&self, incident: Uuid) -> Result<Vec<TimelineEntry>> {
        self.docs(
            "SELECT doc FROM timeline WHERE incident_id = $1 ORDER BY id",
            vec![Bind::Text(incident.to_string())],
        )
        .await
    }

    async fn timelines(&self, incidents: &[Uuid]) -> Result<HashMap<Uuid, Vec<TimelineEntry>>> {
        let mut out: HashMap<Uuid, Vec<TimelineEntry>> = HashMap::new();
        // In chunks that stay within every backend's limit on bound parameters.
        for chunk in incidents.chunks(500) {
            let mut f = Filter::for_dialect(self.dialect);
            let ids: Vec<String> = chunk
                .iter()
                .map(|id| f.placeholder(Bind::Text(id.to_string())))
                .collect();
            let sql = format!(
                "SELECT doc FROM timeline WHERE incident_id IN ({}) ORDER BY incident_id, id",
                ids.join(", ")
            );
            for entry in self.docs::<TimelineEntry>(&sql, f.binds).await? {
                out.entry(entry.incident_id).or_default().push(entry);
            }
        }
        Ok(out)
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>> {
        self.doc(
            "SELECT doc FROM users WHERE id = $1",
            Bind::Text(id.to_string()),
        )
        .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        self.doc(
            "SELECT doc FROM users WHERE name = $1",
            Bind::Text(name.to_string()),
        )
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        self.docs("SELECT doc FROM users ORDER BY name", vec![])
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT doc, last_used_at FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.read)
                .await
                .map_err(map_err)?;
        row.map(|(doc, last_used)| {
            let mut t: TokenRecord = from_doc(&doc)?;
            t.last_used_at = last_used.map(from_micros).transpose()?;
            Ok(t)
        })
        .transpose()
    }

    async fn tokens_of(&self, user: Uuid) -> Result<Vec<TokenRecord>> {
        let rows: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT doc, last_used_at FROM tokens WHERE user_id = $1 ORDER BY id")
                .bind(user.to_string())
                .fetch_all(&self.read)
                .await
                .map_err(map_err)?;
        rows.into_iter()
            .map(|(doc, last_used)| {
                let mut t: TokenRecord = from_doc(&doc)?;
                t.last_used_at = last_used.map(from_micros).transpose()?;
                Ok(t)
            })
            .collect()
    }

    async fn session_by_hash(&self, hash: &str) -> Result<Option<SessionRecord>> {
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT hash, user_id, created_at, expires_at FROM sessions WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        row.map(|(hash, user, created, expires)| {
            Ok(SessionRecord {
                hash,
                user_id: Uuid::parse_str(&user)
                    .map_err(|e| StoreError::Corrupt(format!("session user id: {e}")))?,
                created_at: from_micros(created)?,
                expires_at: from_micros(expires)?,
            })
        })
        .transpose()
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>> {
        let row: Option<(String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT key, failures, window_start, locked_until FROM login_throttle WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        row.map(crate::tx::throttle_record).transpose()
    }

    async fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut f = Filter::default();
        if let Some(a) = &q.actor {
            let p1 = f.placeholder(Bind::Text(a.clone()));
            let p2 = f.placeholder(Bind::Text(a.clone()));
            f.clauses
                .push(format!("(actor_id = {p1} OR actor_name = {p2})"));
        }
        let columns = [
            ("actor_role", &q.role),
            ("action", &q.action),
            ("target_kind", &q.target_kind),
            ("target_id", &q.target_id),
            ("outcome", &q.outcome),
            ("source_ip", &q.source_ip),
        ];
        for (column, value) in columns {
            if let Some(v) = value {
                f.eq(column, Bind::Text(v.clone()));
            }
        }
        if let Some(t) = q.time_from {
            f.cmp("time", ">=", Bind::Int(micros(t)));
        }
        if let Some(t) = q.time_to {
            f.cmp("time", "<", Bind::Int(micros(t)));
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            f.like("doc", contains_pattern(text));
        }
        let (op, order) = if q.newest_first {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(s) = q.after_seq {
            f.cmp("seq", op, Bind::Int(s));
        }
        let sql = format!(
            "SELECT doc FROM audit_events{} ORDER BY seq {order} LIMIT {}",
            f.where_sql(),
            page(q.limit)
        );
        self.docs(&sql, f.binds).await
    }

    async fn audit_event(&self, seq: i64) -> Result<Option<(AuditEvent, String)>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT doc, leaf_hash FROM audit_events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&self.read)
                .await
                .map_err(map_err)?;
        row.map(|(doc, leaf)| Ok((from_doc(&doc)?, leaf)))
            .transpose()
    }

    async fn audit_raw(&self, after_seq: i64, limit: i64) -> Result<Vec<RawAuditEvent>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, leaf_hash, doc FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(seq, leaf_hash, doc)| RawAuditEvent {
                seq,
                leaf_hash,
                doc,
            })
            .collect())
    }

    async fn audit_leaves(
        &self,
        after_seq: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>> {
        // A leaf's append order is its event's seq << 6; the interior
        // nodes between two leaves are skipped by their level bits.
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT pos / 64, hash FROM audit_nodes WHERE pos > $1 AND pos <= $2
             AND pos % 64 = 0 ORDER BY pos LIMIT $3",
        )
        .bind(after_seq.saturating_mul(64))
        .bind(up_to.saturating_mul(64))
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(seq, hash)| {
                let leaf = from_hex(&hash).ok_or_else(|| {
                    StoreError::Corrupt(format!("the leaf of event {seq} is not a hash"))
                })?;
                Ok((seq, leaf))
            })
            .collect()
    }

    async fn audit_seq_before(&self, before: Timestamp) -> Result<Option<i64>> {
        let (seq,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM audit_events WHERE time < $1")
                .bind(micros(before))
                .fetch_one(&self.read)
                .await
                .map_err(map_err)?;
        Ok(seq)
    }

    async fn audit_archives(&self) -> Result<Vec<ArchiveRecord>> {
        let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
            "SELECT from_seq, to_seq, file, sha256, archived_at FROM audit_archives ORDER BY from_seq",
        )
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(from_seq, to_seq, file, sha256, at)| {
                Ok(ArchiveRecord {
                    from_seq,
                    to_seq,
                    file,
                    sha256,
                    archived_at: from_micros(at)?,
                })
            })
            .collect()
    }

    async fn audit_size(&self) -> Result<u64> {
        let (size,): (i64,) = sqlx::query_as("SELECT size FROM audit_head WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(map_err)?;
        Ok(size as u64)
    }

    async fn intake_journal_applied(&self, journal: Uuid) -> Result<u64> {
        let seq: Option<(i64,)> =
            sqlx::query_as("SELECT applied_seq FROM intake_journals WHERE id = $1")
                .bind(journal.to_string())
                .fetch_optional(&self.read)
                .await
                .map_err(map_err)?;
        Ok(seq.map_or(0, |(s,)| s as u64))
    }

    async fn audit_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>> {
        let mut conn = self.read.acquire().await.map_err(map_err)?;
        fetch_nodes(&mut conn, self.dialect, ids).await
    }

    async fn tree_heads(&self, below_size: Option<u64>, limit: i64) -> Result<Vec<SignedTreeHead>> {
        let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(
            "SELECT tree_size, root_hash, time, key_id, signature FROM audit_tree_heads
             WHERE tree_size < $1 ORDER BY tree_size DESC LIMIT $2",
        )
        .bind(below_size.map_or(i64::MAX, |s| s as i64))
        .bind(page(limit))
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(size, root, time, key_id, signature)| {
                Ok(SignedTreeHead {
                    head: TreeHead {
                        tree_size: size as u64,
                        root_hash: root,
                        time: from_micros(time)?,
                    },
                    key_id,
                    signature,
                })
            })
            .collect()
    }

    async fn subject_key(&self, subject: &str, generation: i64) -> Result<Option<Option<String>>> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT wrapped_key FROM audit_subject_keys WHERE subject = $1 AND generation = $2",
        )
        .bind(subject)
        .bind(generation)
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        Ok(row.map(|(w,)| w))
    }

    async fn audit_keys(&self) -> Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT key_id, public_key FROM audit_keys ORDER BY created_at")
            .fetch_all(&self.read)
            .await
            .map_err(map_err)
    }

    async fn insert_tree_head(&self, h: &SignedTreeHead) -> Result<bool> {
        let mut conn = self.writer.acquire().await?;
        let done = sqlx::query(
            "INSERT INTO audit_tree_heads (tree_size, root_hash, time, key_id, signature)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(h.head.tree_size as i64)
        .bind(&h.head.root_hash)
        .bind(micros(h.head.time))
        .bind(&h.key_id)
        .bind(&h.signature)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        drop(conn);
        // A stored head goes to witnesses next: it, and the events it
        // covers (earlier in the log), must be durable first.
        self.sync_log().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn services(&self) -> Result<Vec<Service>> {
        self.docs("SELECT doc FROM services ORDER BY name", vec![])
            .await
    }

    async fn service(&self, key: &str) -> Result<Option<Service>> {
        self.named("services", key).await
    }

    async fn integrations(&self, service: Option<Uuid>) -> Result<Vec<Integration>> {
        let mut f = Filter::default();
        if let Some(s) = service {
            f.eq("service_id", Bind::Text(s.to_string()));
        }
        let sql = format!("SELECT doc FROM integrations{} ORDER BY id", f.where_sql());
        self.docs(&sql, f.binds).await
    }

    async fn integration(&self, id: Uuid) -> Result<Option<Integration>> {
        self.doc(
            "SELECT doc FROM integrations WHERE id = $1",
            Bind::Text(id.to_string()),
        )
        .await
    }

    async fn integration_by_key(&self, key: &str) -> Result<Option<Integration>> {
        self.doc(
            "SELECT doc FROM integrations WHERE key = $1",
            Bind::Text(key.to_string()),
        )
        .await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>> {
        self.alerts_matching(query).await
    }

    async fn alert(&self, id: Uuid) -> Result<Option<Alert>> {
        self.doc(
            "SELECT doc FROM alerts WHERE id = $1",
            Bind::Text(id.to_string()),
        )
        .await
    }

    async fn service_changes(&self, service: Uuid, limit: i64) -> Result<Vec<ChangeRecord>> {
        self.docs(
            &format!(
                "SELECT doc FROM service_changes WHERE service_id = $1 ORDER BY at DESC, id DESC LIMIT {}",
                page(limit)
            ),
            vec![Bind::Text(service.to_string())],
        )
        .await
    }

    async fn incident_stamps(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> Result<Vec<kiroku_domain::metrics::IncidentStamp>> {
        self.incident_stamp_rows(from, to, limit).await
    }

    async fn postmortem(&self, incident: Uuid) -> Result<Option<PostmortemRecord>> {
        self.postmortem_row(incident).await
    }

    async fn postmortem_versions(&self, incident: Uuid) -> Result<Vec<FrozenPostmortem>> {
        self.postmortem_version_rows(incident).await
    }

    async fn action_items(&self, query: &ActionItemQuery) -> Result<Vec<ActionItemRecord>> {
        self.action_item_rows(query).await
    }

    async fn count_action_items(&self, query: &ActionItemQuery) -> Result<i64> {
        self.action_item_count(query).await
    }

    async fn obligations(&self, incident: Uuid) -> Result<Vec<ObligationRecord>> {
        self.obligation_rows(
            "incident_id = $1",
            vec![Bind::Text(incident.to_string())],
            PAGE_MAX,
        )
        .await
    }

    async fn pending_obligations(
        &self,
        due_before: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<ObligationRecord>> {
        match due_before {
            Some(t) => {
                self.obligation_rows(
                    "status = 'pending' AND due_at <= $1",
                    vec![Bind::Int(micros(t))],
                    limit,
                )
                .await
            }
            None => {
                self.obligation_rows("status = 'pending'", vec![], limit)
                    .await
            }
        }
    }

    async fn obligations_to_remind(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<ObligationRecord>> {
        self.obligation_rows(
            "remind_at IS NOT NULL AND remind_at <= $1",
            vec![Bind::Int(micros(now))],
            limit,
        )
        .await
    }

    async fn outbox(&self, limit: i64) -> Result<Vec<OutboxMessage>> {
        self.docs(
            &format!("SELECT doc FROM outbox ORDER BY id LIMIT {}", page(limit)),
            vec![],
        )
        .await
    }

    async fn channels(&self) -> Result<Vec<Channel>> {
        self.all_channels().await
    }

    async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        self.deliveries_of(status, limit).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        self.claim(now, until, limit).await
    }

    async fn next_delivery_at(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        self.next_wake("deliveries", "status = 'pending'", now)
            .await
    }

    async fn defer_delivery(&self, id: Uuid, until: Timestamp) -> Result<()> {
        self.defer(id, until).await
    }

    async fn escalation_policies(&self) -> Result<Vec<Policy>> {
        self.docs(
            "SELECT doc FROM escalation_policies ORDER BY name",
            Vec::new(),
        )
        .await
    }

    async fn escalation_policy(&self, key: &str) -> Result<Option<Policy>> {
        self.named("escalation_policies", key).await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>> {
        self.docs("SELECT doc FROM schedules ORDER BY name", Vec::new())
            .await
    }

    async fn schedule(&self, key: &str) -> Result<Option<Schedule>> {
        self.named("schedules", key).await
    }

    async fn escalation(&self, incident: Uuid) -> Result<Option<Escalation>> {
        self.doc(
            "SELECT doc FROM escalations WHERE incident_id = $1",
            Bind::Text(incident.to_string()),
        )
        .await
    }

    async fn release_escalations(
        &self,
        list: &[(Escalation, Option<Timestamp>)],
        held_until: Timestamp,
    ) -> Result<()> {
        SqlStore::release_escalations(self, list, held_until).await
    }

    async fn claim_escalations(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        self.claim_escalations_due(now, until, limit).await
    }

    async fn next_escalation_at(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        self.next_wake("escalations", "due_at IS NOT NULL", now)
            .await
    }

    async fn watch_work(&self, on_work: Box<dyn Fn(Work) + Send + Sync>) -> Result<()> {
        let Some(url) = &self.listen_url else {
            return Ok(());
        };
        let mut listener = sqlx::postgres::PgListener::connect(url)
            .await
            .map_err(map_err)?;
        listener.listen(WORK_CHANNEL).await.map_err(map_err)?;
        loop {
            // After a lost connection the listener reconnects and listens
            // again; what was missed meanwhile the workers' own wake-ups
            // find.
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Some(work) = Work::parse(n.payload()) {
                        on_work(work);
                    }
                }
                // Reconnected: whatever was announced meanwhile is unheard.
                Ok(None) => Work::ALL.into_iter().for_each(&on_work),
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    async fn touch_token(&self, id: Uuid, at: Timestamp) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
            .bind(micros(at))
            .bind(id.to_string())
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
