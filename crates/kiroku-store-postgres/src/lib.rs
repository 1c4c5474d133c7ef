//! PostgreSQL, for several Kiroku nodes sharing one database. Row locks and
//! an advisory lock keep nodes from doing the same work twice.

use std::time::Duration;

use kiroku_store::StoreError;
use kiroku_store_sql::{Dialect, Migration, SqlStore, Writer, install_drivers, map_err, migrate};
use sqlx::Connection;
use sqlx::any::AnyPoolOptions;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("../migrations/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "alerts",
        sql: include_str!("../migrations/0002_alerts.sql"),
    },
    Migration {
        version: 3,
        name: "audit_archives",
        sql: include_str!("../migrations/0003_audit_archives.sql"),
    },
    Migration {
        version: 4,
        name: "notifications",
        sql: include_str!("../migrations/0004_notifications.sql"),
    },
    Migration {
        version: 5,
        name: "escalation",
        sql: include_str!("../migrations/0005_escalation.sql"),
    },
    Migration {
        version: 6,
        name: "reports",
        sql: include_str!("../migrations/0006_reports.sql"),
    },
    Migration {
        version: 7,
        name: "incident_times",
        sql: include_str!("../migrations/0007_incident_times.sql"),
    },
    Migration {
        version: 8,
        name: "audit_append_order",
        sql: include_str!("../migrations/0008_audit_append_order.sql"),
    },
    Migration {
        version: 9,
        name: "intake_journals",
        sql: include_str!("../migrations/0009_intake_journals.sql"),
    },
];

pub struct Options {
    pub max_connections: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_connections: 16,
        }
    }
}

/// Connects to `url` (`postgres://…`) and migrates the schema.
pub async fn connect(url: &str, options: Options) -> Result<SqlStore, StoreError> {
    install_drivers();
    // One plain connection first: a refused or misnamed server fails at
    // once instead of after the pool's acquire timeout.
    let probe = sqlx::AnyConnection::connect(url).await.map_err(map_err)?;
    probe.close().await.map_err(map_err)?;
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections.max(2))
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(map_err)?;
    let writer = Writer::Pool(pool.clone(), Dialect::Postgres);
    migrate(&writer, Dialect::Postgres, MIGRATIONS).await?;
    Ok(SqlStore::new(pool, writer, Dialect::Postgres).with_listener(url))
}
