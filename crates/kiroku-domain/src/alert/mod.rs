//! Alerts: what monitoring sends, in one normal form whatever the format it
//! arrived in, and the deduplicated alert Kiroku keeps of it.
//!
//! Each intake format has a parser of its own (`pagerduty`, `alertmanager`,
//! `grafana`, `generic`) that turns a request body into [`AlertEvent`]s or a
//! list of [`ValidationError`]s naming every field at fault. Parsers never
//! panic on any input; their property tests feed them arbitrary bytes.

pub mod alertmanager;
mod fields;
pub mod generic;
pub mod grafana;
pub mod pagerduty;
pub mod routing;
mod service;

pub use service::{DEFAULT_RATE_LIMIT_PER_SECOND, Integration, RATE_LIMIT_PER_SECOND_MAX, Service};

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::incident::{CLOCK_SKEW, IncidentDraft};
use crate::{ValidationError, validate};

/// The most events one request may carry (an Alertmanager group can be large).
pub const EVENTS_PER_REQUEST_MAX: usize = 10_000;
/// PagerDuty's limits, applied to every format.
pub const DEDUP_KEY_MAX: usize = 255;
pub const SUMMARY_MAX: usize = 1024;
pub const SOURCE_MAX: usize = 255;
pub const LABELS_MAX: usize = 64;
pub const LABEL_NAME_MAX: usize = 128;
pub const LABEL_VALUE_MAX: usize = 1024;
/// The longest key alerts are grouped by, in bytes. Two reasons: each
/// event of a group carries its sender's group key (Alertmanager's names
/// the route and the group's label values, a few hundred bytes), and the
/// key routing groups by is indexed, where PostgreSQL holds at most 2,704
/// bytes an entry.
pub const GROUP_KEY_MAX: usize = 1024;

/// `key`, or when longer than [`GROUP_KEY_MAX`] its start and a SHA-256 of
/// the whole, so that keys differing only past the cut stay apart.
fn bounded_group_key(key: String) -> String {
    if key.len() <= GROUP_KEY_MAX {
        return key;
    }
    let suffix = format!("…sha256:{:x}", Sha256::digest(key.as_bytes()));
    let end = key.floor_char_boundary(GROUP_KEY_MAX - suffix.len());
    format!("{}{suffix}", &key[..end])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationKind {
    Pagerduty,
    Alertmanager,
    Grafana,
    Generic,
}

impl IntegrationKind {
    pub const ALL: [IntegrationKind; 4] = [
        IntegrationKind::Pagerduty,
        IntegrationKind::Alertmanager,
        IntegrationKind::Grafana,
        IntegrationKind::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationKind::Pagerduty => "pagerduty",
            IntegrationKind::Alertmanager => "alertmanager",
            IntegrationKind::Grafana => "grafana",
            IntegrationKind::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<IntegrationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The path a monitoring system sends this kind's events to, under
    /// the server's address: PagerDuty's carry the routing `key` in the
    /// body, webhooks in the path.
    pub fn intake_path(self, key: &str) -> String {
        match self {
            IntegrationKind::Pagerduty => "/v2/enqueue".into(),
            webhook => format!("/api/v1/integrations/{key}/{}", webhook.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    Trigger,
    Acknowledge,
    Resolve,
}

/// PagerDuty's four severities: the normal form every format maps onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

impl AlertSeverity {
    pub const ALL: [AlertSeverity; 4] = [
        AlertSeverity::Critical,
        AlertSeverity::Error,
        AlertSeverity::Warning,
        AlertSeverity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Critical => "critical",
            AlertSeverity::Error => "error",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Info => "info",
        }
    }

    /// Exactly one of the four names (PagerDuty is strict).
    pub fn parse(s: &str) -> Option<AlertSeverity> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A severity label as monitoring systems write them (`page`, `high`,
    /// `warn`, `P1`…); unknown words read as `None`.
    pub fn parse_loose(s: &str) -> Option<AlertSeverity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "page" | "emergency" | "fatal" | "disaster" | "p0" | "p1"
            | "sev0" | "sev1" => Some(AlertSeverity::Critical),
            "error" | "err" | "high" | "major" | "p2" | "sev2" => Some(AlertSeverity::Error),
            "warning" | "warn" | "medium" | "minor" | "average" | "p3" | "sev3" => {
                Some(AlertSeverity::Warning)
            }
            "info" | "information" | "informational" | "low" | "notice" | "none" | "ok" | "p4"
            | "p5" | "sev4" | "sev5" => Some(AlertSeverity::Info),
            _ => None,
        }
    }

    /// The alert level of seed 004 that notifications pick channels by.
    pub fn level(self) -> AlertLevel {
        match self {
            AlertSeverity::Critical | AlertSeverity::Error => AlertLevel::Critical,
            AlertSeverity::Warning => AlertLevel::Warning,
            AlertSeverity::Info => AlertLevel::Info,
        }
    }
}

/// Critical: users are affected; Warning: they may be; Info: watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Critical,
    Warning,
    Info,
}

impl AlertLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Critical => "critical",
            AlertLevel::Warning => "warning",
            AlertLevel::Info => "info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLink {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One alert event in Kiroku's normal form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub action: AlertAction,
    /// The key that makes repeats one alert. Only a trigger may lack one
    /// (it is then given a fresh key).
    pub dedup_key: Option<String>,
    pub summary: String,
    pub source: String,
    pub severity: AlertSeverity,
    /// When the sender says it happened.
    pub occurred_at: Option<Timestamp>,
    /// Labels to route and group by (Alertmanager's labels; PagerDuty's
    /// component, group and class).
    pub labels: BTreeMap<String, String>,
    /// Everything else the sender said, kept as sent.
    pub details: serde_json::Value,
    pub links: Vec<AlertLink>,
    /// The sender's own grouping (Alertmanager's groupKey).
    pub group_key: Option<String>,
}

/// A change event (a deploy, a configuration change) for a service's
/// timeline: PagerDuty's `/v2/change/enqueue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub summary: String,
    pub source: Option<String>,
    pub occurred_at: Option<Timestamp>,
    pub details: serde_json::Value,
    pub links: Vec<AlertLink>,
}

/// A request body that does not parse: every problem found, each naming
/// its field (`payload.summary`, `alerts[3].labels`).
pub type Problems = Vec<ValidationError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 3] = [
        AlertStatus::Triggered,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Triggered => "triggered",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why an alert pages nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quiet {
    /// A routing rule suppresses it.
    Suppressed,
    /// It arrived during a maintenance window.
    Maintenance,
}

/// One deduplicated alert: the first trigger and every repeat of its key
/// until it resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub service_id: Uuid,
    pub dedup_key: String,
    pub status: AlertStatus,
    pub summary: String,
    pub source: String,
    pub severity: AlertSeverity,
    pub level: AlertLevel,
    pub labels: BTreeMap<String, String>,
    pub details: serde_json::Value,
    pub links: Vec<AlertLink>,
    /// The sender's own grouping (Alertmanager's groupKey).
    pub group_key: Option<String>,
    /// The routing's grouping: alerts with equal keys share an incident.
    pub grouping_key: Option<String>,
    /// Triggers received, the first included.
    pub count: i64,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// The incident it opened or joined; none when quiet.
    pub incident_id: Option<Uuid>,
    pub quiet: Option<Quiet>,
    /// The routing rule that matched, by position.
    pub rule: Option<usize>,
}

impl Alert {
    /// The alert a first trigger opens, taking the trigger's words.
    pub fn open(
        id: Uuid,
        integration_id: Uuid,
        service_id: Uuid,
        dedup_key: String,
        event: AlertEvent,
        now: Timestamp,
    ) -> Alert {
        Alert {
            id,
            integration_id,
            service_id,
            dedup_key,
            status: AlertStatus::Triggered,
            summary: event.summary,
            source: event.source,
            severity: event.severity,
            level: event.severity.level(),
            labels: event.labels,
            details: event.details,
            links: event.links,
            group_key: event.group_key,
            grouping_key: None,
            count: 1,
            first_seen_at: now,
            last_seen_at: now,
            acknowledged_at: None,
            resolved_at: None,
            incident_id: None,
            quiet: None,
            rule: None,
        }
    }

    /// The incident this alert opens when it joins none, on the service
    /// named `service`: titled by the alert's summary, which with its
    /// source is the incident's summary. `occurred_at` is when the sender
    /// says it happened: ahead of `now` by no more than clocks drift, it
    /// reads as `now`; further ahead, it is not a fact to keep. Whatever the
    /// alert holds within the intake limits, the draft validates, so one
    /// sender's alert cannot fail the commit it shares with others.
    pub fn incident_draft(
        &self,
        occurred_at: Option<Timestamp>,
        service: &str,
        category: String,
        severity: String,
        now: Timestamp,
    ) -> IncidentDraft {
        IncidentDraft {
            title: title_of(&self.summary, service),
            summary: format!("{}\n\nsource: {}", self.summary, self.source)
                .chars()
                .map(|c| if validate::refused_in_text(c) { ' ' } else { c })
                .collect(),
            category,
            severity,
            affected_services: vec![service.to_string()],
            occurred_at: occurred_at
                .filter(|t| *t <= now + CLOCK_SKEW)
                .map(|t| t.min(now)),
            detected_at: Some(now),
            ..IncidentDraft::default()
        }
    }

    pub fn is_open(&self) -> bool {
        self.status != AlertStatus::Resolved
    }

    /// A repeated trigger: counted, and its latest words kept.
    pub fn repeat(&mut self, event: &AlertEvent, now: Timestamp) {
        self.count += 1;
        self.last_seen_at = now;
        self.summary = event.summary.clone();
        self.severity = event.severity;
        self.level = event.severity.level();
        self.labels = event.labels.clone();
        self.details = event.details.clone();
        self.links = event.links.clone();
    }

    /// True when this changed the alert.
    pub fn acknowledge(&mut self, now: Timestamp) -> bool {
        if self.status != AlertStatus::Triggered {
            return false;
        }
        self.status = AlertStatus::Acknowledged;
        self.acknowledged_at = Some(now);
        self.last_seen_at = now;
        true
    }

    /// The sender says it is over, with `details` (Alertmanager's resolved
    /// alert, say), which replace the trigger's unless empty. True when
    /// this changed the alert.
    pub fn resolve(&mut self, details: &serde_json::Value, now: Timestamp) -> bool {
        let changed = self.resolve_with_incident(now);
        if changed {
            self.last_seen_at = now;
            let empty = details.is_null() || details.as_object().is_some_and(|d| d.is_empty());
            if !empty {
                self.details = details.clone();
            }
        }
        changed
    }

    /// A person resolved its incident, as PagerDuty's alerts follow theirs:
    /// a later trigger with its key opens a new alert, which pages again.
    /// The sender said nothing, so when it was last seen stays. True when
    /// this changed the alert.
    pub fn resolve_with_incident(&mut self, now: Timestamp) -> bool {
        if self.status == AlertStatus::Resolved {
            return false;
        }
        self.status = AlertStatus::Resolved;
        self.resolved_at = Some(now);
        true
    }
}

/// An incident title from an alert summary: one line, within the limit.
fn title_of(summary: &str, service: &str) -> String {
    let line: String = summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(validate::TITLE_MAX)
        .collect();
    let line = line.trim();
    if line.is_empty() {
        format!("Alert on {service}")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use proptest::prelude::*;

    use super::*;
    use crate::incident::Rules;

    fn rules() -> Rules {
        Rules::for_tests("p1-p4", jiff::tz::TimeZone::UTC)
    }

    fn alert(summary: String, source: String) -> Alert {
        let event = AlertEvent {
            action: AlertAction::Trigger,
            dedup_key: None,
            summary,
            source,
            severity: AlertSeverity::Critical,
            occurred_at: None,
            labels: BTreeMap::new(),
            details: serde_json::Value::Null,
            links: Vec::new(),
            group_key: None,
        };
        let id = Uuid::nil();
        Alert::open(id, id, id, "k".into(), event, Timestamp::UNIX_EPOCH)
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..=max).prop_map(String::from_iter)
    }

    /// When the sender says it happened, against what the incident records.
    #[test]
    fn a_sender_clock_ahead_reads_as_now_and_far_ahead_is_dropped() {
        let now: Timestamp = "2026-12-06T18:00:00Z".parse().unwrap();
        let occurred = |ahead: i64| {
            alert("disk full".into(), "db-1".into())
                .incident_draft(
                    Some(now + SignedDuration::from_secs(ahead)),
                    "db",
                    "other".into(),
                    "P1".into(),
                    now,
                )
                .occurred_at
        };
        assert_eq!(occurred(-60), Some(now - SignedDuration::from_mins(1)));
        assert_eq!(occurred(30), Some(now));
        assert_eq!(occurred(300), Some(now));
        assert_eq!(occurred(301), None);
    }

    /// The sender's resolve is a sighting; a person's resolve through the
    /// incident is not. Either closes the alert once.
    #[test]
    fn an_alert_resolves_by_its_sender_or_with_its_incident() {
        let opened = alert("disk full".into(), "db-1".into());
        let later = Timestamp::UNIX_EPOCH + SignedDuration::from_mins(5);
        let mut by_sender = opened.clone();
        assert!(by_sender.resolve(&serde_json::json!({}), later));
        assert_eq!(
            (
                by_sender.status,
                by_sender.resolved_at,
                by_sender.last_seen_at
            ),
            (AlertStatus::Resolved, Some(later), later)
        );
        assert_eq!(
            by_sender.details, opened.details,
            "nothing said, nothing lost"
        );
        let resolved_details = serde_json::json!({"status": "resolved"});
        let mut with_details = opened.clone();
        assert!(with_details.resolve(&resolved_details, later));
        assert_eq!(with_details.details, resolved_details);
        let mut with_incident = opened.clone();
        assert!(with_incident.resolve_with_incident(later));
        assert_eq!(
            (with_incident.status, with_incident.resolved_at),
            (AlertStatus::Resolved, Some(later))
        );
        assert_eq!(with_incident.last_seen_at, opened.last_seen_at);
        assert!(!with_incident.resolve_with_incident(later + SignedDuration::from_mins(1)));
        assert!(!with_incident.resolve(&resolved_details, later + SignedDuration::from_mins(1)));
        assert_eq!(with_incident.details, opened.details);
        assert_eq!(with_incident.resolved_at, Some(later));
    }

    proptest! {
        /// Whatever an alert holds within the intake limits, and whatever
        /// time its sender gives, the incident it opens is valid: a refused
        /// draft would fail every request sharing its commit.
        #[test]
        fn every_alert_makes_a_valid_incident_draft(
            summary in text(SUMMARY_MAX),
            source in text(SOURCE_MAX),
            service in "[a-z][a-z0-9-]{0,62}",
            // Seconds ahead of now: anywhere in two centuries, or near the
            // clock-skew bound.
            ahead in proptest::option::of(prop_oneof![
                -3_000_000_000i64..3_000_000_000,
                -600i64..600,
            ]),
        ) {
            let rules = rules();
            let now: Timestamp = "2026-12-06T18:00:00Z".parse().unwrap();
            let category = rules.catalog.keys()[0].to_string();
            let severity = rules.severities.keys()[0].to_string();
            let draft = alert(summary, source).incident_draft(
                ahead.map(|s| now + SignedDuration::from_secs(s)),
                &service,
                category,
                severity,
                now,
            );
            prop_assert!(draft.validated(&rules, now).is_ok());
        }
    }
}
