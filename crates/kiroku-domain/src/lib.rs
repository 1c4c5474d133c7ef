//! The domain of Kiroku as plain types and plain functions.
//!
//! Nothing in this crate performs I/O, reads a clock or touches a database:
//! callers pass the current time in. That keeps the rules (the lifecycle,
//! response-start targets, numbering, the permission matrix) testable in
//! isolation and identical on every storage backend.

pub mod access;
pub mod alert;
pub mod audit;
pub mod category;
pub mod detection;
pub mod escalation;
pub mod incident;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod obligation;
pub mod outbox;
pub mod postmortem;
pub mod schedule;
pub mod severity;
pub mod timeline;
pub mod validate;
pub mod wareki;

pub use access::{Permission, Role};
pub use audit::{Actor, ActorKind, AuditEvent, Operation, Outcome, Source, Target};
pub use category::{Catalog, Category};
pub use incident::{Impact, Incident, IncidentDraft, IncidentPatch, PersonalData, Rules, UserRef};
pub use lifecycle::{IllegalTransition, Lifecycle, Status, Transition};
pub use outbox::OutboxMessage;
pub use severity::{BusinessHours, ResponseTarget, SeverityLevel, SeverityScheme};
pub use timeline::{TimelineEntry, TimelineKind, status_change_text};
pub use validate::ValidationError;
