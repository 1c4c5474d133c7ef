//! Rows that are not domain objects: accounts, credentials, throttles, and
//! the queries over incidents and the audit log.

use jiff::Timestamp;
use kiroku_domain::alert::{AlertStatus, ChangeEvent};
use kiroku_domain::{Role, Status};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    /// PHC string (Argon2id).
    pub password_hash: String,
    /// Base32 TOTP secret once enrolled.
    pub totp_secret: Option<String>,
    /// The last TOTP time step accepted, so a code works once.
    pub totp_last_step: Option<i64>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// SHA-256 of the secret, hex; the secret itself is never stored.
    pub hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub hash: String,
    pub user_id: Uuid,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Failures counted against a login name or a source address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleRecord {
    pub key: String,
    pub failures: i64,
    pub window_start: Timestamp,
    pub locked_until: Option<Timestamp>,
}

pub const PAGE_MAX: i64 = 200;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentQuery {
    pub statuses: Vec<Status>,
    pub severities: Vec<String>,
    pub categories: Vec<String>,
    pub environment: Option<String>,
    pub detected_from: Option<Timestamp>,
    pub detected_to: Option<Timestamp>,
    /// Matched against title, number and summary, case-insensitively.
    pub text: Option<String>,
    /// Newest-detected first; continue after this position.
    pub after: Option<PageCursor>,
    pub limit: i64,
}

/// A position in a newest-first list: the row's time (an incident's
/// detection, an alert's first sighting), then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub at: Timestamp,
    pub id: Uuid,
}

impl PageCursor {
    /// The opaque text form handed to clients: `{micros}.{id}`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at.as_microsecond(), self.id.simple())
    }

    pub fn decode(s: &str) -> Option<PageCursor> {
        let (us, id) = s.split_once('.')?;
        Some(PageCursor {
            at: Timestamp::from_microsecond(us.parse().ok()?).ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertQuery {
    pub statuses: Vec<AlertStatus>,
    pub service_id: Option<Uuid>,
    pub integration_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
    /// Newest-first-seen first; continue after this position.
    pub after: Option<PageCursor>,
    pub limit: i64,
}

/// A change event as recorded on a service's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: Uuid,
    pub service_id: Uuid,
    pub integration_id: Uuid,
    pub received_at: Timestamp,
    pub change: ChangeEvent,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// An actor's id or name.
    pub actor: Option<String>,
    pub role: Option<String>,
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    pub source_ip: Option<String>,
    pub time_from: Option<Timestamp>,
    pub time_to: Option<Timestamp>,
    /// Matched anywhere in the event's JSON, case-sensitively.
    pub text: Option<String>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Continue after (or, newest first, before) this sequence number.
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// A range of the audit log moved out to an archive file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveRecord {
    pub from_seq: i64,
    pub to_seq: i64,
    /// The file's name (not its path: archives may move).
    pub file: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    pub archived_at: jiff::Timestamp,
}

/// An audit event exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAuditEvent {
    pub seq: i64,
    pub leaf_hash: String,
    pub doc: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    /// Out of attempts, or refused for good: kept with its last error.
    Dead,
    /// A page whose incident was acknowledged before it was due.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "sent" => Some(DeliveryStatus::Sent),
            "dead" => Some(DeliveryStatus::Dead),
            "cancelled" => Some(DeliveryStatus::Cancelled),
            _ => None,
        }
    }
}

/// One notification for one channel, and how its sending went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub idempotency_key: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub due_at: jiff::Timestamp,
    pub created_at: jiff::Timestamp,
    pub notice: kiroku_domain::notify::Notice,
    /// The body as sent, the same on every attempt.
    pub body: String,
    pub last_error: Option<String>,
    pub sent_at: Option<jiff::Timestamp>,
    /// Made by escalation: an acknowledgement cancels it while it waits.
    #[serde(default)]
    pub page: bool,
}

/// An incident's postmortem as kept: the document, where it stands, and
/// the approvals given to this version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostmortemRecord {
    pub incident_id: Uuid,
    /// Bumped by every save; a writer naming an older one is refused.
    pub version: i64,
    pub stage: kiroku_domain::postmortem::Stage,
    pub postmortem: kiroku_domain::postmortem::Postmortem,
    pub approvals: Vec<kiroku_domain::postmortem::Approval>,
    pub updated_at: Timestamp,
    pub updated_by: Option<kiroku_domain::UserRef>,
    /// The SHA-256 of the last version made final, if one was.
    pub final_hash: Option<String>,
    pub final_version: Option<i64>,
}

/// A version made final, frozen as the canonical bytes that were hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenPostmortem {
    pub incident_id: Uuid,
    pub version: i64,
    pub sha256: String,
    pub finalised_at: Timestamp,
    /// RFC 8785 JSON of the version and its approvals.
    pub canonical: String,
}

/// An action item as tracked across incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionItemRecord {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub incident_number: String,
    pub item: kiroku_domain::postmortem::ActionItem,
    /// Its owner was told it is overdue (once per due date).
    pub reminded: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ActionItemQuery {
    pub incident: Option<Uuid>,
    pub owner: Option<Uuid>,
    /// Only items not done.
    pub open_only: bool,
    /// Only items due before this day.
    pub due_before: Option<jiff::civil::Date>,
    /// Only items whose owner has not been told they are overdue.
    pub unreminded: bool,
    pub limit: i64,
}

/// One duty to notify a regulator or the people affected, with its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationRecord {
    pub incident_id: Uuid,
    pub incident_number: String,
    pub rule: String,
    pub due_at: Timestamp,
    pub remind_at: Vec<Timestamp>,
    /// The late warning past the due time, if the rule has one.
    #[serde(default)]
    pub late_at: Option<Timestamp>,
    pub status: kiroku_domain::obligation::ObligationStatus,
    pub reason: String,
    pub decided_by: Option<kiroku_domain::UserRef>,
    pub decided_at: Option<Timestamp>,
    /// Reminders up to this time have been sent.
    pub reminded_until: Option<Timestamp>,
}

impl ObligationRecord {
    /// When it must be reminded of next; none once decided or all sent.
    pub fn next_reminder(&self) -> Option<Timestamp> {
        if self.status != kiroku_domain::obligation::ObligationStatus::Pending {
            return None;
        }
        kiroku_domain::obligation::next_reminder(
            &self.remind_at,
            self.due_at,
            self.late_at,
            self.reminded_until,
        )
    }
}

/// An alert group as a routing rule defines it, and how far back its
/// window reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertGroup {
    pub service: Uuid,
    pub key: String,
    pub since: Timestamp,
}
