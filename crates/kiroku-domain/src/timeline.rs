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

/// How a change of status reads wherever a timeline is listed (the CLI,
/// the incident page): both states before its note, as in "triggered →
/// resolved by its alerts". `data` is the entry's, holding `from` and `to`.
pub fn status_change_text(data: &Value, note: &str) -> String {
    let state = |key: &str| data[key].as_str().unwrap_or_default();
    format!("{} → {} {note}", state("from"), state("to"))
        .trim_end()
        .to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_of_status_names_both_states_before_its_note() {
        let data = json!({ "from": "triggered", "to": "resolved" });
        assert_eq!(
            status_change_text(&data, "by its alerts"),
            "triggered → resolved by its alerts"
        );
        assert_eq!(status_change_text(&data, ""), "triggered → resolved");
    }
}
