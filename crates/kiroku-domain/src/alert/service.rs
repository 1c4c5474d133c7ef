//! Services own integrations, routing and maintenance windows.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::IntegrationKind;
use super::routing::{MaintenanceWindow, Routing};

/// Something monitored that alerts are about: an application, a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub routing: Routing,
    pub maintenance: Vec<MaintenanceWindow>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

impl Service {
    pub fn in_maintenance(&self, at: Timestamp) -> Option<&MaintenanceWindow> {
        self.maintenance.iter().find(|w| w.covers(at))
    }
}

/// A door alerts come in by: a format, the service it feeds and the routing
/// key that names it (in PagerDuty events, or in the webhook URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub id: Uuid,
    pub service_id: Uuid,
    pub kind: IntegrationKind,
    pub name: String,
    /// 32 lowercase hex characters, as PagerDuty's integration keys.
    pub key: String,
    /// Requests accepted per second before 429 (with bursts of twice that).
    pub rate_limit_per_second: u32,
    pub disabled: bool,
    pub created_at: Timestamp,
}

pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 1000;
pub const RATE_LIMIT_PER_SECOND_MAX: u32 = 1_000_000;
