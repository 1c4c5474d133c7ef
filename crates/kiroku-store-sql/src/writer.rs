//! Where writes go. PostgreSQL takes a connection from its pool for each
//! transaction. SQLite has one writer, and its connection is held for good
//! instead of pooled: a pool pings each connection as it comes back, one
//! more round trip to SQLite's worker thread per transaction, which the
//! next transaction waits for; and with `BEGIN` and `COMMIT` in our hands
//! the commit rides in the same round trip as the transaction's last
//! inserts (`SqlTx::commit_visible`).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use kiroku_store::Result;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::store::{Bind, Statement, bind_all};
use crate::{Dialect, map_err};

#[derive(Clone)]
pub enum Writer {
    Pool(AnyPool, Dialect),
    Sole(Arc<Mutex<SoleWriter>>),
}

/// SQLite's one writer connection.
pub struct SoleWriter {
    conn: AnyConnection,
    /// A transaction was begun and has not ended.
    open: bool,
}

impl SoleWriter {
    /// Ends what a dropped transaction left. SQLite may have rolled it
    /// back by itself (a full disk, an I/O error): "no transaction is
    /// active" is then the expected answer, and the connection is fine.
    async fn roll_back(&mut self) {
        if self.open {
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            self.open = false;
        }
    }
}

impl Writer {
    /// SQLite's writer on `conn`, which it keeps.
    pub fn sole(conn: AnyConnection) -> Self {
        Writer::Sole(Arc::new(Mutex::new(SoleWriter { conn, open: false })))
    }

    /// A connection for statements outside a transaction.
    pub async fn acquire(&self) -> Result<WriteConn> {
        Ok(match self {
            Writer::Pool(pool, _) => WriteConn::Pooled(pool.acquire().await.map_err(map_err)?),
            Writer::Sole(sole) => WriteConn::Sole(hold(sole).await),
        })
    }

    /// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite, so that it
    /// holds the database's write lock from the start.
    pub async fn begin(&self) -> Result<WriteTx> {
        let mut tx = self.begin_later().await?;
        if matches!(tx, WriteTx::Sole(_)) {
            execute_joined(
                &mut tx,
                vec![(Dialect::Sqlite.begin_statement().into(), Vec::new())],
            )
            .await?;
        }
        Ok(tx)
    }

    /// Runs `statements` in a transaction of their own: on SQLite `BEGIN`,
    /// the statements and `COMMIT` go in one round trip.
    pub(crate) async fn run_in_transaction(&self, statements: Vec<Statement>) -> Result<()> {
        let tx = self.begin_later().await?;
        let mut all = Vec::with_capacity(statements.len() + 1);
        if matches!(tx, WriteTx::Sole(_)) {
            all.push((Dialect::Sqlite.begin_statement().into(), Vec::new()));
        }
        all.extend(statements);
        tx.commit_with(all).await
    }

    /// A write transaction that on SQLite only holds the writer: the
    /// caller sends SQLite's `BEGIN` ahead of its first statements, which
    /// saves a round trip.
    pub(crate) async fn begin_later(&self) -> Result<WriteTx> {
        Ok(match self {
            Writer::Pool(pool, dialect) => WriteTx::Pooled(
                pool.begin_with(dialect.begin_statement())
                    .await
                    .map_err(map_err)?,
            ),
            Writer::Sole(sole) => {
                let mut sole = hold(sole).await;
                // Dropped from here on, it rolls back, whether or not
                // `BEGIN` was sent.
                sole.writer().open = true;
                WriteTx::Sole(sole)
            }
        })
    }
}

/// Waits for SQLite's writer, and ends what a dropped transaction left.
async fn hold(sole: &Arc<Mutex<SoleWriter>>) -> SoleTx {
    let mut held = sole.clone().lock_owned().await;
    held.roll_back().await;
    SoleTx(Some(held))
}

/// SQLite's writer, held. Dropped inside a transaction (an error, a caller
/// gone), it rolls back at once on a task of its own, so that the
/// database's write lock is not kept until the next write.
pub struct SoleTx(Option<OwnedMutexGuard<SoleWriter>>);

impl SoleTx {
    fn writer(&mut self) -> &mut SoleWriter {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for SoleTx {
    fn drop(&mut self) {
        if let Some(mut sole) = self.0.take().filter(|s| s.open)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { sole.roll_back().await });
        }
    }
}

/// A write connection outside a transaction.
pub enum WriteConn {
    Pooled(PoolConnection<Any>),
    Sole(SoleTx),
}

/// A write transaction.
pub enum WriteTx {
    Pooled(Transaction<'static, Any>),
    Sole(SoleTx),
}

impl WriteTx {
    /// Runs `statements`, then commits: on SQLite in one round trip.
    pub(crate) async fn commit_with(self, mut statements: Vec<Statement>) -> Result<()> {
        match self {
            WriteTx::Pooled(mut tx) => {
                execute_each(&mut tx, statements).await?;
                tx.commit().await.map_err(map_err)
            }
            WriteTx::Sole(mut sole) => {
                statements.push(("COMMIT".into(), Vec::new()));
                let w = sole.writer();
                execute_joined(&mut w.conn, statements).await?;
                w.open = false;
                Ok(())
            }
        }
    }

    pub async fn commit(self) -> Result<()> {
        self.commit_with(Vec::new()).await
    }
}

/// Runs `statements` one by one (PostgreSQL prepares one statement per
/// query).
pub(crate) async fn execute_each(
    conn: &mut AnyConnection,
    statements: Vec<Statement>,
) -> Result<()> {
    fetch_each(conn, statements).await.map(drop)
}

/// [`execute_each`], returning the rows of every statement in order.
pub(crate) async fn fetch_each(
    conn: &mut AnyConnection,
    statements: Vec<Statement>,
) -> Result<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for (sql, binds) in statements {
        rows.extend(
            bind_all(sqlx::query(&sql), &binds)
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?,
        );
    }
    Ok(rows)
}

/// The longest joined query kept prepared. A joined query's text follows
/// its transaction's make-up (how many alerts, events, incidents), so the
/// long ones seldom recur, while the connection's statement cache kept a
/// hundred of them compiled: about 40 MiB once intake had taken a million
/// alerts in batches. The short ones, a few single alerts' worth, recur
/// and are worth keeping.
const JOINED_CACHED_MAX: usize = 4096;

/// Runs `statements` as one multi-statement query (one round trip);
/// anonymous placeholders number on across them.
pub(crate) async fn execute_joined(
    conn: &mut AnyConnection,
    statements: Vec<Statement>,
) -> Result<()> {
    fetch_joined(conn, statements).await.map(drop)
}

/// [`execute_joined`], returning the rows of every statement in order.
pub(crate) async fn fetch_joined(
    conn: &mut AnyConnection,
    statements: Vec<Statement>,
) -> Result<Vec<AnyRow>> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let (sqls, binds): (Vec<String>, Vec<Vec<Bind>>) = statements.into_iter().unzip();
    let sql = sqls.join(";\n");
    let binds: Vec<Bind> = binds.into_iter().flatten().collect();
    bind_all(
        sqlx::query(&sql).persistent(sql.len() <= JOINED_CACHED_MAX),
        &binds,
    )
    .fetch_all(conn)
    .await
    .map_err(map_err)
}

macro_rules! deref_to_connection {
    ($t:ty) => {
        impl Deref for $t {
            type Target = AnyConnection;
            fn deref(&self) -> &AnyConnection {
                match self {
                    Self::Pooled(c) => c,
                    Self::Sole(s) => &s.0.as_ref().expect("held until dropped").conn,
                }
            }
        }
        impl DerefMut for $t {
            fn deref_mut(&mut self) -> &mut AnyConnection {
                match self {
                    Self::Pooled(c) => c,
                    Self::Sole(s) => &mut s.writer().conn,
                }
            }
        }
    };
}
deref_to_connection!(WriteConn);
deref_to_connection!(WriteTx);
