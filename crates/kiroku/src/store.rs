//! Choosing and opening the store a configuration names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use kiroku_store::{AuditScan, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// `DIR/kiroku.db`, created on first use.
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreTarget {
    pub fn new(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<StoreTarget> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(StoreTarget::Sqlite(data_dir.join("kiroku.db"))),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(StoreTarget::Postgres(u.to_string()))
            }
            Some(u) if u.starts_with("sqlite://") => Ok(StoreTarget::Sqlite(PathBuf::from(
                u.trim_start_matches("sqlite://"),
            ))),
            Some(_) => bail!(
                "the database URL must start with postgres:// (or sqlite://); leave it unset to use the SQLite file in the data directory"
            ),
        }
    }

    /// Says where the data lives without exposing a password in the URL.
    pub fn describe(&self) -> String {
        match self {
            StoreTarget::Sqlite(p) => format!("SQLite at {}", p.display()),
            StoreTarget::Postgres(u) => {
                let host = u.rsplit('@').next().unwrap_or(u);
                let host = host
                    .trim_start_matches("postgres://")
                    .trim_start_matches("postgresql://");
                format!("PostgreSQL at {host}")
            }
        }
    }

    /// The fast whole-log reader the backend offers, if any; the store
    /// must have been opened (so created and migrated) first.
    pub fn audit_scan(&self) -> anyhow::Result<Option<Box<dyn AuditScan>>> {
        match self {
            StoreTarget::Sqlite(path) => {
                let scan = kiroku_store_sqlite::audit_scan(path)
                    .with_context(|| format!("cannot open {}", self.describe()))?;
                Ok(Some(Box::new(scan)))
            }
            StoreTarget::Postgres(_) => Ok(None),
        }
    }

    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            StoreTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the data directory {}", dir.display())
                    })?;
                }
                let store = kiroku_store_sqlite::open(path, Default::default())
                    .await
                    .with_context(|| format!("cannot open {}", self.describe()))?;
                Ok(Arc::new(store))
            }
            StoreTarget::Postgres(url) => {
                let store = kiroku_store_postgres::connect(url, Default::default())
                    .await
                    .with_context(|| format!("cannot connect to {}", self.describe()))?;
                Ok(Arc::new(store))
            }
        }
    }
}
