//! The incident timeline.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::incident::UserRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Declared,
    StatusChanged,
    Note,
    Updated,
    Alert,
    Notification,
    Communication,
    /// Who was paged, and why; response-start targets missed.
    Escalation,
}

impl TimelineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Declared => "declared",
            TimelineKind::StatusChanged => "status_changed",
            TimelineKind::Note => "note",
            TimelineKind::Updated => "updated",
            TimelineKind::Alert => "alert",
            TimelineKind::Notification => "notification",
            TimelineKind::Communication => "communication",
            TimelineKind::Escalation => "escalation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub at: Timestamp,
    pub kind: TimelineKind,
    pub actor: Option<UserRef>,
    pub body: String,
    /// Structured detail: the states of a transition, the fields changed.
    pub data: Value,
}
