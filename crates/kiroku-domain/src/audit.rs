//! Audit events with the MUST fields of the audit-trail design: time (UTC),
//! actor id and role, operation and action, target with before/after
//! values, source IP and user agent, result and error code.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Token,
    /// A monitoring integration sending alerts, named by its routing key.
    Integration,
    System,
    Anonymous,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
}

impl Actor {
    pub fn anonymous() -> Self {
        Actor {
            kind: ActorKind::Anonymous,
            id: None,
            name: None,
            role: None,
        }
    }

    pub fn system() -> Self {
        Actor {
            kind: ActorKind::System,
            id: None,
            name: Some("kiroku".into()),
            role: None,
        }
    }
}

/// The CRUD-and-login class of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Read,
    Update,
    Delete,
    Login,
    Logout,
    Execute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `incident`, `user`, `token`, `session`, `route` …
    pub kind: String,
    pub id: Option<String>,
}

impl Target {
    pub fn new(kind: &str, id: impl Into<Option<String>>) -> Self {
        Target {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `api`, `cli` (local, against the database) or `system`.
    pub channel: String,
}

impl Source {
    pub fn local_cli() -> Self {
        Source {
            ip: None,
            user_agent: None,
            channel: "cli".into(),
        }
    }

    pub fn system() -> Self {
        Source {
            ip: None,
            user_agent: None,
            channel: "system".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the log, assigned on append; gap-free from 1.
    pub seq: i64,
    pub id: Uuid,
    pub time: Timestamp,
    pub actor: Actor,
    pub operation: Operation,
    /// Event name in the OWASP logging vocabulary, e.g. `authn_login_fail`,
    /// `authz_fail`, `incident_create`.
    pub action: String,
    pub target: Target,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub source: Source,
    pub outcome: Outcome,
    pub error_code: Option<String>,
}

impl AuditEvent {
    /// A successful operation, not yet appended (seq 0).
    pub fn success(
        time: Timestamp,
        actor: &Actor,
        source: &Source,
        operation: Operation,
        action: &str,
        target: Target,
    ) -> Self {
        AuditEvent {
            seq: 0,
            id: Uuid::now_v7(),
            time,
            actor: actor.clone(),
            operation,
            action: action.into(),
            target,
            before: None,
            after: None,
            source: source.clone(),
            outcome: Outcome::Success,
            error_code: None,
        }
    }

    pub fn failure(self, error_code: &str) -> Self {
        AuditEvent {
            outcome: Outcome::Failure,
            error_code: Some(error_code.into()),
            ..self
        }
    }

    pub fn with_change(self, before: Option<Value>, after: Option<Value>) -> Self {
        AuditEvent {
            before,
            after,
            ..self
        }
    }
}
