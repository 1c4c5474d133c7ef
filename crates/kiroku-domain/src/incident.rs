//! Incidents: what happened, how bad, where, to whom, and who is on it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::category::Catalog;
use crate::lifecycle::{IllegalTransition, Lifecycle, Status, Transition};
use crate::severity::{BusinessHours, SeverityScheme};
use crate::validate::{self, LIST_MAX, SHORT_MAX, TEXT_MAX, TITLE_MAX, ValidationError};

/// An incident's version as an HTTP entity tag, `"v3"`: the server sends
/// it as ETag and a client sends it back in If-Match.
pub fn version_tag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// The version an entity tag names, strong or weak (`W/"v3"`).
pub fn version_in_tag(tag: &str) -> Option<i64> {
    tag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')?
        .parse()
        .ok()
}

/// A user as an incident names them; the name is kept so that reports need
/// no lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Impact {
    pub users_affected: Option<i64>,
    pub records_affected: Option<i64>,
    pub tables_affected: Vec<String>,
    pub downtime_minutes: Option<i64>,
    pub sla_breached: bool,
    pub business_impact: String,
}

/// Personal-data facts, as the regulators' reporting duties need them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersonalData {
    pub involved: bool,
    /// The kinds of data, e.g. 氏名, メールアドレス.
    pub items: Vec<String>,
    pub people_affected: Option<i64>,
    /// 要配慮個人情報.
    pub sensitive: bool,
    /// 財産的被害のおそれ.
    pub financial_risk: bool,
    /// 不正の目的のおそれ.
    pub malicious_intent: bool,
}

impl Impact {
    fn validated(self) -> Result<Impact, ValidationError> {
        Ok(Impact {
            users_affected: validate::non_negative("impact.users_affected", self.users_affected)?,
            records_affected: validate::non_negative(
                "impact.records_affected",
                self.records_affected,
            )?,
            tables_affected: validate::lines(
                "impact.tables_affected",
                &self.tables_affected,
                LIST_MAX,
                SHORT_MAX,
            )?,
            downtime_minutes: validate::non_negative(
                "impact.downtime_minutes",
                self.downtime_minutes,
            )?,
            sla_breached: self.sla_breached,
            business_impact: validate::text(
                "impact.business_impact",
                &self.business_impact,
                TEXT_MAX,
                false,
            )?,
        })
    }
}

impl PersonalData {
    fn validated(self) -> Result<PersonalData, ValidationError> {
        let pd = PersonalData {
            involved: self.involved,
            items: validate::lines("personal_data.items", &self.items, LIST_MAX, SHORT_MAX)?,
            people_affected: validate::non_negative(
                "personal_data.people_affected",
                self.people_affected,
            )?,
            sensitive: self.sensitive,
            financial_risk: self.financial_risk,
            malicious_intent: self.malicious_intent,
        };
        let claims_something = !pd.items.is_empty()
            || pd.people_affected.is_some_and(|n| n > 0)
            || pd.sensitive
            || pd.financial_risk
            || pd.malicious_intent;
        if claims_something && !pd.involved {
            return Err(ValidationError::new(
                "personal_data.involved",
                "inconsistent",
                "must be true when items, people, or risks are recorded",
            ));
        }
        Ok(pd)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub summary: String,
    pub category: String,
    pub severity: String,
    pub status: Status,
    pub environment: String,
    /// 発生場所.
    pub location: String,
    pub affected_services: Vec<String>,
    #[serde(flatten)]
    pub times: Lifecycle,
    /// When the response must have started, from the severity's target.
    pub response_due_at: Option<Timestamp>,
    /// When the incident was determined to be material (SEC 8-K Item 1.05
    /// counts its four business days from here).
    #[serde(default)]
    pub materiality_determined_at: Option<Timestamp>,
    pub impact: Impact,
    pub personal_data: PersonalData,
    pub commander: Option<UserRef>,
    pub assignees: Vec<UserRef>,
    pub reporter: Option<UserRef>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by every change; a writer that names an older one is refused.
    pub version: i64,
}

/// What a declaration says, before it has a number. People are `U`: as a
/// caller names them (`IncidentDraft<String>`), or as resolved users.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentDraft<U = UserRef> {
    pub title: String,
    #[serde(default)]
    pub summary: String,
    pub category: String,
    pub severity: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub affected_services: Vec<String>,
    pub occurred_at: Option<Timestamp>,
    pub detected_at: Option<Timestamp>,
    #[serde(default)]
    pub impact: Impact,
    #[serde(default)]
    pub personal_data: PersonalData,
    pub commander: Option<U>,
    #[serde(default = "Vec::new")]
    pub assignees: Vec<U>,
    /// Defaults to whoever declares.
    pub reporter: Option<U>,
}

impl<U> Default for IncidentDraft<U> {
    fn default() -> Self {
        IncidentDraft {
            title: String::new(),
            summary: String::new(),
            category: String::new(),
            severity: String::new(),
            environment: String::new(),
            location: String::new(),
            affected_services: Vec::new(),
            occurred_at: None,
            detected_at: None,
            impact: Impact::default(),
            personal_data: PersonalData::default(),
            commander: None,
            assignees: Vec::new(),
            reporter: None,
        }
    }
}

impl<U> IncidentDraft<U> {
    /// The same draft with its people replaced.
    pub fn with_people<V>(
        self,
        commander: Option<V>,
        assignees: Vec<V>,
        reporter: Option<V>,
    ) -> IncidentDraft<V> {
        IncidentDraft {
            title: self.title,
            summary: self.summary,
            category: self.category,
            severity: self.severity,
            environment: self.environment,
            location: self.location,
            affected_services: self.affected_services,
            occurred_at: self.occurred_at,
            detected_at: self.detected_at,
            impact: self.impact,
            personal_data: self.personal_data,
            commander,
            assignees,
            reporter,
        }
    }
}

/// The rules a declaration or an edit is checked against.
#[derive(Debug, Clone)]
pub struct Rules {
    pub catalog: Catalog,
    pub severities: SeverityScheme,
    pub business_hours: BusinessHours,
}

#[cfg(test)]
impl Rules {
    /// The default catalog, severity `preset` and weekday business hours in
    /// `tz`: what the domain's tests decide against.
    pub(crate) fn for_tests(preset: &str, tz: jiff::tz::TimeZone) -> Rules {
        Rules {
            catalog: Catalog::default(),
            severities: SeverityScheme::preset(preset).unwrap(),
            business_hours: BusinessHours::weekdays(tz),
        }
    }
}

/// Clocks drift; a time this far ahead of ours is still accepted.
pub(crate) const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

fn check_category(rules: &Rules, key: &str) -> Result<String, ValidationError> {
    match rules.catalog.get(key) {
        Some(c) => Ok(c.key.clone()),
        None => Err(ValidationError::new(
            "category",
            "unknown_value",
            format!("must be one of: {}", rules.catalog.keys().join(", ")),
        )),
    }
}

fn check_severity(rules: &Rules, key: &str) -> Result<String, ValidationError> {
    match rules.severities.level(key) {
        Some(l) => Ok(l.key.clone()),
        None => Err(ValidationError::new(
            "severity",
            "unknown_value",
            format!("must be one of: {}", rules.severities.keys().join(", ")),
        )),
    }
}

fn check_times(
    occurred: Option<Timestamp>,
    detected: Timestamp,
    now: Timestamp,
) -> Result<(), ValidationError> {
    if detected > now + CLOCK_SKEW {
        return Err(ValidationError::new(
            "detected_at",
            "in_future",
            "must not be in the future",
        ));
    }
    if occurred.is_some_and(|o| o > detected) {
        return Err(ValidationError::new(
            "occurred_at",
            "after_detection",
            "must not be later than detected_at",
        ));
    }
    Ok(())
}

impl IncidentDraft {
    /// Normalises the draft and checks it against the rules.
    pub fn validated(
        self,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<IncidentDraft, ValidationError> {
        let detected = self.detected_at.unwrap_or(now);
        check_times(self.occurred_at, detected, now)?;
        Ok(IncidentDraft {
            title: validate::line("title", &self.title, TITLE_MAX, true)?,
            summary: validate::text("summary", &self.summary, TEXT_MAX, false)?,
            category: check_category(rules, &self.category)?,
            severity: check_severity(rules, &self.severity)?,
            environment: validate::line("environment", &self.environment, 64, false)?,
            location: validate::line("location", &self.location, SHORT_MAX, false)?,
            affected_services: validate::lines(
                "affected_services",
                &self.affected_services,
                LIST_MAX,
                SHORT_MAX,
            )?,
            occurred_at: self.occurred_at,
            detected_at: Some(detected),
            impact: self.impact.validated()?,
            personal_data: self.personal_data.validated()?,
            commander: self.commander,
            assignees: dedup_users(self.assignees),
            reporter: self.reporter,
        })
    }

    /// The incident a validated draft declares.
    pub fn declare(self, rules: &Rules, id: Uuid, number: String, now: Timestamp) -> Incident {
        let detected = self.detected_at.unwrap_or(now);
        let response_due_at =
            rules
                .severities
                .response_due(&self.severity, detected, &rules.business_hours);
        Incident {
            id,
            number,
            title: self.title,
            summary: self.summary,
            category: self.category,
            severity: self.severity,
            status: Status::Triggered,
            environment: self.environment,
            location: self.location,
            affected_services: self.affected_services,
            times: Lifecycle::new(self.occurred_at, detected),
            response_due_at,
            materiality_determined_at: None,
            impact: self.impact,
            personal_data: self.personal_data,
            commander: self.commander,
            assignees: self.assignees,
            reporter: self.reporter,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

fn dedup_users(users: Vec<UserRef>) -> Vec<UserRef> {
    let mut out: Vec<UserRef> = Vec::with_capacity(users.len());
    for u in users {
        if !out.iter().any(|o| o.id == u.id) {
            out.push(u);
        }
    }
    out
}

/// An edit: each `Some` field replaces the incident's; `commander: null`
/// (`Some(None)`) removes the commander. People are `U`, as in a draft.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch<U = UserRef> {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub category: Option<String>,
    pub severity: Option<String>,
    pub environment: Option<String>,
    pub location: Option<String>,
    pub affected_services: Option<Vec<String>>,
    pub occurred_at: Option<Timestamp>,
    pub materiality_determined_at: Option<Timestamp>,
    pub impact: Option<Impact>,
    pub personal_data: Option<PersonalData>,
    #[serde(default, deserialize_with = "present")]
    pub commander: Option<Option<U>>,
    pub assignees: Option<Vec<U>>,
}

impl<U> Default for IncidentPatch<U> {
    fn default() -> Self {
        IncidentPatch {
            title: None,
            summary: None,
            category: None,
            severity: None,
            environment: None,
            location: None,
            affected_services: None,
            occurred_at: None,
            materiality_determined_at: None,
            impact: None,
            personal_data: None,
            commander: None,
            assignees: None,
        }
    }
}

impl<U> IncidentPatch<U> {
    /// The same edit with its people replaced.
    pub fn with_people<V>(
        self,
        commander: Option<Option<V>>,
        assignees: Option<Vec<V>>,
    ) -> IncidentPatch<V> {
        IncidentPatch {
            title: self.title,
            summary: self.summary,
            category: self.category,
            severity: self.severity,
            environment: self.environment,
            location: self.location,
            affected_services: self.affected_services,
            occurred_at: self.occurred_at,
            materiality_determined_at: self.materiality_determined_at,
            impact: self.impact,
            personal_data: self.personal_data,
            commander,
            assignees,
        }
    }
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Incident {
    /// Applies an edit; returns the names of the fields that changed.
    pub fn apply_patch(
        &mut self,
        patch: IncidentPatch,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<Vec<&'static str>, ValidationError> {
        let mut next = self.clone();
        if let Some(v) = patch.title {
            next.title = validate::line("title", &v, TITLE_MAX, true)?;
        }
        if let Some(v) = patch.summary {
            next.summary = validate::text("summary", &v, TEXT_MAX, false)?;
        }
        if let Some(v) = patch.category {
            next.category = check_category(rules, &v)?;
        }
        if let Some(v) = patch.severity {
            next.severity = check_severity(rules, &v)?;
            next.response_due_at = rules.severities.response_due(
                &next.severity,
                next.times.detected_at,
                &rules.business_hours,
            );
        }
        if let Some(v) = patch.environment {
            next.environment = validate::line("environment", &v, 64, false)?;
        }
        if let Some(v) = patch.location {
            next.location = validate::line("location", &v, SHORT_MAX, false)?;
        }
        if let Some(v) = patch.affected_services {
            next.affected_services = validate::lines("affected_services", &v, LIST_MAX, SHORT_MAX)?;
        }
        if let Some(v) = patch.occurred_at {
            check_times(Some(v), next.times.detected_at, now)?;
            next.times.occurred_at = Some(v);
        }
        if let Some(v) = patch.materiality_determined_at {
            if v > now + CLOCK_SKEW {
                return Err(ValidationError::new(
                    "materiality_determined_at",
                    "in_future",
                    "must not be in the future",
                ));
            }
            next.materiality_determined_at = Some(v);
        }
        if let Some(v) = patch.impact {
            next.impact = v.validated()?;
        }
        if let Some(v) = patch.personal_data {
            next.personal_data = v.validated()?;
        }
        if let Some(v) = patch.commander {
            next.commander = v;
        }
        if let Some(v) = patch.assignees {
            next.assignees = dedup_users(v);
        }
        let changed = self.changed_fields(&next);
        if !changed.is_empty() {
            next.updated_at = now;
            next.version += 1;
            *self = next;
        }
        Ok(changed)
    }

    fn changed_fields(&self, other: &Incident) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name: &'static str, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        check("title", self.title != other.title);
        check("summary", self.summary != other.summary);
        check("category", self.category != other.category);
        check("severity", self.severity != other.severity);
        check("environment", self.environment != other.environment);
        check("location", self.location != other.location);
        check(
            "affected_services",
            self.affected_services != other.affected_services,
        );
        check(
            "occurred_at",
            self.times.occurred_at != other.times.occurred_at,
        );
        check(
            "materiality_determined_at",
            self.materiality_determined_at != other.materiality_determined_at,
        );
        check("impact", self.impact != other.impact);
        check("personal_data", self.personal_data != other.personal_data);
        check("commander", self.commander != other.commander);
        check("assignees", self.assignees != other.assignees);
        out
    }

    /// Moves the incident along its lifecycle.
    pub fn transition(
        &mut self,
        t: Transition,
        now: Timestamp,
    ) -> Result<Status, IllegalTransition> {
        let from = self.status;
        self.status = self.times.apply(from, t, now)?;
        self.updated_at = now;
        self.version += 1;
        Ok(from)
    }

    /// Whether the response-start target has passed without a response.
    pub fn response_overdue(&self, now: Timestamp) -> bool {
        let started = self
            .times
            .response_started_at
            .or(self.times.acknowledged_at);
        match (self.response_due_at, started) {
            (Some(due), Some(at)) => at > due,
            (Some(due), None) => now > due,
            (None, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_tag_reads_back_as_its_version() {
        assert_eq!(version_tag(3), "\"v3\"");
        assert_eq!(version_in_tag(&version_tag(42)), Some(42));
        assert_eq!(version_in_tag(" W/\"v7\" "), Some(7));
        for bad in ["", "\"3\"", "\"vx\"", "*", "\"v\""] {
            assert_eq!(version_in_tag(bad), None, "{bad}");
        }
    }
    use jiff::tz::TimeZone;

    fn rules() -> Rules {
        Rules::for_tests("p0-p3", TimeZone::get("Asia/Tokyo").unwrap())
    }

    fn now() -> Timestamp {
        "2026-11-21T02:00:00Z".parse().unwrap()
    }

    fn draft() -> IncidentDraft {
        IncidentDraft {
            title: "  DB connection pool exhausted ".into(),
            summary: "全機能が応答不能".into(),
            category: "database".into(),
            severity: "P0".into(),
            environment: "production".into(),
            location: "AWS 東京リージョン".into(),
            affected_services: vec!["api".into(), "api".into(), "web".into()],
            occurred_at: None,
            detected_at: None,
            impact: Impact::default(),
            personal_data: PersonalData::default(),
            commander: None,
            assignees: vec![],
            reporter: None,
        }
    }

    #[test]
    fn declaring_normalises_and_sets_targets() {
        let inc = draft().validated(&rules(), now()).unwrap().declare(
            &rules(),
            Uuid::now_v7(),
            "DB-2026-001".into(),
            now(),
        );
        assert_eq!(inc.title, "DB connection pool exhausted");
        assert_eq!(inc.affected_services, vec!["api", "web"]);
        assert_eq!(inc.status, Status::Triggered);
        assert_eq!(inc.times.detected_at, now());
        assert_eq!(
            inc.response_due_at,
            Some("2026-11-21T02:05:00Z".parse().unwrap())
        );
        assert!(!inc.response_overdue(now()));
        assert!(inc.response_overdue("2026-11-21T02:06:00Z".parse().unwrap()));
    }

    #[test]
    fn bad_drafts_name_the_field() {
        let r = rules();
        let field = |d: IncidentDraft| d.validated(&r, now()).unwrap_err().field;
        assert_eq!(
            field(IncidentDraft {
                severity: "P9".into(),
                ..draft()
            }),
            "severity"
        );
        assert_eq!(
            field(IncidentDraft {
                category: "x".into(),
                ..draft()
            }),
            "category"
        );
        assert_eq!(
            field(IncidentDraft {
                title: "".into(),
                ..draft()
            }),
            "title"
        );
        assert_eq!(
            field(IncidentDraft {
                detected_at: Some("2027-01-01T00:00:00Z".parse().unwrap()),
                ..draft()
            }),
            "detected_at"
        );
        assert_eq!(
            field(IncidentDraft {
                personal_data: PersonalData {
                    sensitive: true,
                    ..Default::default()
                },
                ..draft()
            }),
            "personal_data.involved"
        );
        assert_eq!(
            field(IncidentDraft {
                impact: Impact {
                    users_affected: Some(-1),
                    ..Default::default()
                },
                ..draft()
            }),
            "impact.users_affected"
        );
    }

    #[test]
    fn patch_reports_changes_and_bumps_version() {
        let r = rules();
        let mut inc = draft().validated(&r, now()).unwrap().declare(
            &r,
            Uuid::now_v7(),
            "DB-2026-001".into(),
            now(),
        );
        let changed = inc
            .apply_patch(
                IncidentPatch {
                    severity: Some("P2".into()),
                    title: Some("DB connection pool exhausted".into()),
                    ..Default::default()
                },
                &r,
                now(),
            )
            .unwrap();
        assert_eq!(changed, vec!["severity"]);
        assert_eq!(inc.version, 2);
        assert_eq!(
            inc.response_due_at,
            Some("2026-11-21T06:00:00Z".parse().unwrap())
        );
        let none = inc
            .apply_patch(IncidentPatch::default(), &r, now())
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(inc.version, 2);
    }
}
