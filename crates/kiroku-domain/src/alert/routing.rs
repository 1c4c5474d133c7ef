//! Routing: a service's ordered rules decide what each alert becomes — the
//! incident's severity and category, its escalation policy, how alerts group
//! into incidents, or whether the alert is suppressed. The first rule whose
//! conditions all hold decides; fields it leaves unset fall back to the
//! service's defaults.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{AlertEvent, AlertSeverity, bounded_group_key};
use crate::{Rules, ValidationError};

pub const RULES_MAX: usize = 100;
pub const WINDOW_MINUTES_MAX: u32 = 7 * 24 * 60;
/// Compiled patterns stay small so that matching stays cheap.
const PATTERN_SIZE_MAX: usize = 256 * 1024;

/// Equality with a string, or a regular expression that must match the
/// whole value (as Alertmanager's `=~` does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Matcher {
    Equals(String),
    Pattern { regex: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Every named label must be present and match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Matcher>,
    /// Any of these severities; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<AlertSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Matcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Matcher>,
}

/// How alerts become incidents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Grouping {
    /// Every alert opens an incident of its own.
    PerAlert,
    /// Alerts with the same values of these labels, arriving within the
    /// window of the group's first alert, join its incident while it is open.
    Labels {
        labels: Vec<String>,
        window_minutes: u32,
    },
    /// Alerts the sender grouped together (Alertmanager's group key) join
    /// one incident, within the window.
    Sender { window_minutes: u32 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteActions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouping: Option<Grouping>,
    /// Record the alert, open no incident, page nobody.
    #[serde(default)]
    pub suppress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub when: Conditions,
    #[serde(default)]
    pub then: RouteActions,
}

/// A service's routing: its rules in order and the defaults they refine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    pub rules: Vec<RouteRule>,
    /// Category of incidents no rule names one for.
    #[serde(default = "default_category")]
    pub category: String,
    #[serde(default = "default_grouping")]
    pub grouping: Grouping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_policy: Option<String>,
    /// Resolve an incident opened by alerts once all of its alerts resolve.
    #[serde(default = "yes")]
    pub auto_resolve: bool,
}

impl Routing {
    /// The escalation policies the routing names, each with the field that
    /// names it: policies are the database's, so whether they exist is
    /// checked where it is read.
    pub fn named_policies(&self) -> Vec<(String, &str)> {
        let rules = self.rules.iter().enumerate().filter_map(|(i, rule)| {
            let name = rule.then.escalation_policy.as_deref()?;
            Some((format!("rules[{i}].then.escalation_policy"), name))
        });
        self.escalation_policy
            .as_deref()
            .map(|name| ("escalation_policy".to_string(), name))
            .into_iter()
            .chain(rules)
            .collect()
    }

    /// Names escalation policy `to` wherever the routing names `from`;
    /// whether it named it.
    pub fn rename_policy(&mut self, from: &str, to: &str) -> bool {
        let names = self
            .rules
            .iter_mut()
            .map(|rule| &mut rule.then.escalation_policy)
            .chain(std::iter::once(&mut self.escalation_policy));
        let mut renamed = false;
        for name in names.filter(|name| name.as_deref() == Some(from)) {
            *name = Some(to.to_string());
            renamed = true;
        }
        renamed
    }
}

fn default_category() -> String {
    "server_failure".into()
}

fn default_grouping() -> Grouping {
    Grouping::PerAlert
}

fn yes() -> bool {
    true
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            rules: Vec::new(),
            category: default_category(),
            grouping: default_grouping(),
            escalation_policy: None,
            auto_resolve: true,
        }
    }
}

/// What the routing decided for one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The matching rule's position, if any matched.
    pub rule: Option<usize>,
    pub severity: String,
    pub category: String,
    pub escalation_policy: Option<String>,
    /// Alerts with equal group keys share an incident; none for per-alert.
    pub group: Option<(String, SignedDuration)>,
    pub suppress: bool,
}

enum CompiledMatcher {
    Equals(String),
    Pattern(Regex),
}

impl CompiledMatcher {
    fn matches(&self, value: &str) -> bool {
        match self {
            CompiledMatcher::Equals(s) => s == value,
            CompiledMatcher::Pattern(r) => r.is_match(value),
        }
    }
}

struct CompiledRule {
    labels: Vec<(String, CompiledMatcher)>,
    severities: Vec<AlertSeverity>,
    source: Option<CompiledMatcher>,
    summary: Option<CompiledMatcher>,
    then: RouteActions,
}

impl CompiledRule {
    fn matches(&self, e: &AlertEvent) -> bool {
        (self.severities.is_empty() || self.severities.contains(&e.severity))
            && self.source.as_ref().is_none_or(|m| m.matches(&e.source))
            && self.summary.as_ref().is_none_or(|m| m.matches(&e.summary))
            && self
                .labels
                .iter()
                .all(|(k, m)| e.labels.get(k).is_some_and(|v| m.matches(v)))
    }
}

/// A service's routing checked against the installation's rules, with its
/// patterns compiled once.
pub struct Router {
    routing: Routing,
    rules: Vec<CompiledRule>,
}

fn compile_matcher(field: &str, m: &Matcher) -> Result<CompiledMatcher, ValidationError> {
    match m {
        Matcher::Equals(s) => Ok(CompiledMatcher::Equals(s.clone())),
        Matcher::Pattern { regex } => regex::RegexBuilder::new(&format!("^(?:{regex})$"))
            .size_limit(PATTERN_SIZE_MAX)
            .build()
            .map(CompiledMatcher::Pattern)
            .map_err(|e| {
                let reason = e.to_string();
                let first = reason.lines().last().unwrap_or("invalid").trim();
                ValidationError::new(
                    field,
                    "invalid_regex",
                    format!("not a valid regular expression: {first}"),
                )
            }),
    }
}

fn check_grouping(field: &str, g: &Grouping) -> Result<(), ValidationError> {
    let window = match g {
        Grouping::PerAlert => return Ok(()),
        Grouping::Labels {
            labels,
            window_minutes,
        } => {
            if labels.is_empty() || labels.len() > super::LABELS_MAX {
                return Err(ValidationError::new(
                    &format!("{field}.labels"),
                    "invalid_value",
                    format!("must name 1 to {} labels", super::LABELS_MAX),
                ));
            }
            *window_minutes
        }
        Grouping::Sender { window_minutes } => *window_minutes,
    };
    if window == 0 || window > WINDOW_MINUTES_MAX {
        return Err(ValidationError::new(
            &format!("{field}.window_minutes"),
            "out_of_range",
            format!("must be between 1 and {WINDOW_MINUTES_MAX}"),
        ));
    }
    Ok(())
}

fn check_severity(field: &str, key: &str, rules: &Rules) -> Result<(), ValidationError> {
    if rules.severities.level(key).is_none() {
        return Err(ValidationError::new(
            field,
            "unknown_value",
            format!("must be one of: {}", rules.severities.keys().join(", ")),
        ));
    }
    Ok(())
}

fn check_category(field: &str, key: &str, rules: &Rules) -> Result<(), ValidationError> {
    if rules.catalog.get(key).is_none() {
        return Err(ValidationError::new(
            field,
            "unknown_value",
            format!("must be one of: {}", rules.catalog.keys().join(", ")),
        ));
    }
    Ok(())
}

impl Router {
    /// Checks every rule (patterns compile, severities and categories exist)
    /// and compiles it.
    pub fn new(routing: Routing, rules: &Rules) -> Result<Router, ValidationError> {
        if routing.rules.len() > RULES_MAX {
            return Err(ValidationError::new(
                "rules",
                "too_many",
                format!("must have at most {RULES_MAX} rules"),
            ));
        }
        check_category("category", &routing.category, rules)?;
        check_grouping("grouping", &routing.grouping)?;
        let mut compiled = Vec::with_capacity(routing.rules.len());
        for (i, rule) in routing.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let when = &rule.when;
            let labels = when
                .labels
                .iter()
                .map(|(k, m)| {
                    Ok((
                        k.clone(),
                        compile_matcher(&format!("{at}.when.labels.{k}"), m)?,
                    ))
                })
                .collect::<Result<Vec<_>, ValidationError>>()?;
            let source = when
                .source
                .as_ref()
                .map(|m| compile_matcher(&format!("{at}.when.source"), m))
                .transpose()?;
            let summary = when
                .summary
                .as_ref()
                .map(|m| compile_matcher(&format!("{at}.when.summary"), m))
                .transpose()?;
            let then = &rule.then;
            if let Some(s) = &then.severity {
                check_severity(&format!("{at}.then.severity"), s, rules)?;
            }
            if let Some(c) = &then.category {
                check_category(&format!("{at}.then.category"), c, rules)?;
            }
            if let Some(g) = &then.grouping {
                check_grouping(&format!("{at}.then.grouping"), g)?;
            }
            compiled.push(CompiledRule {
                labels,
                severities: when.severities.clone(),
                source,
                summary,
                then: then.clone(),
            });
        }
        Ok(Router {
            routing,
            rules: compiled,
        })
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// What `event` becomes under these rules and the installation's
    /// severity scheme.
    pub fn decide(&self, event: &AlertEvent, rules: &Rules) -> Decision {
        let matched = self.rules.iter().position(|r| r.matches(event));
        let then = matched.map(|i| &self.rules[i].then);
        let grouping = then
            .and_then(|t| t.grouping.as_ref())
            .unwrap_or(&self.routing.grouping);
        Decision {
            rule: matched,
            severity: then
                .and_then(|t| t.severity.clone())
                .unwrap_or_else(|| default_severity(event.severity, rules)),
            category: then
                .and_then(|t| t.category.clone())
                .unwrap_or_else(|| self.routing.category.clone()),
            escalation_policy: then
                .and_then(|t| t.escalation_policy.clone())
                .or_else(|| self.routing.escalation_policy.clone()),
            group: group_key(grouping, event, matched),
            suppress: then.is_some_and(|t| t.suppress),
        }
    }
}

/// The scheme's levels, most severe first, taken in the order of the four
/// alert severities (critical → the first, info → the fourth or the last).
fn default_severity(s: AlertSeverity, rules: &Rules) -> String {
    let levels = &rules.severities.levels;
    let rank = AlertSeverity::ALL.iter().position(|v| *v == s).unwrap_or(0);
    levels
        .get(rank.min(levels.len().saturating_sub(1)))
        .map(|l| l.key.clone())
        .unwrap_or_default()
}

fn group_key(
    g: &Grouping,
    event: &AlertEvent,
    rule: Option<usize>,
) -> Option<(String, SignedDuration)> {
    // The rule's position is part of the key: alerts routed by different
    // rules never share an incident.
    let scope = rule.map_or("default".to_string(), |i| format!("rule{i}"));
    match g {
        Grouping::PerAlert => None,
        Grouping::Labels {
            labels,
            window_minutes,
        } => {
            let mut key = format!("{scope}:labels:");
            for (n, l) in labels.iter().enumerate() {
                if n > 0 {
                    key.push(',');
                }
                push_escaped(&mut key, l);
                key.push('=');
                push_escaped(&mut key, event.labels.get(l).map_or("", String::as_str));
            }
            Some((bounded_group_key(key), window(*window_minutes)))
        }
        Grouping::Sender { window_minutes } => {
            let mut key = format!("{scope}:sender:");
            push_escaped(&mut key, event.group_key.as_deref().unwrap_or_default());
            Some((bounded_group_key(key), window(*window_minutes)))
        }
    }
}

fn window(minutes: u32) -> SignedDuration {
    SignedDuration::from_mins(i64::from(minutes))
}

/// Appends `s` with backslashes, `,` and `=` escaped, so that a value
/// cannot forge another group's key, and NUL written `\0`: PostgreSQL
/// cannot keep it in text, and a label value may hold one.
fn push_escaped(key: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' | ',' | '=' => {
                key.push('\\');
                key.push(c);
            }
            '\0' => key.push_str("\\0"),
            _ => key.push(c),
        }
    }
}

/// A period in which a service's alerts are recorded but page nobody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub id: uuid::Uuid,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub reason: String,
}

impl MaintenanceWindow {
    pub fn covers(&self, at: Timestamp) -> bool {
        self.starts_at <= at && at < self.ends_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertAction;
    use proptest::prelude::*;

    fn rules() -> Rules {
        Rules::for_tests("p1-p4", jiff::tz::TimeZone::UTC)
    }

    fn event(severity: AlertSeverity, labels: &[(&str, &str)]) -> AlertEvent {
        AlertEvent {
            action: AlertAction::Trigger,
            dedup_key: None,
            summary: "disk full on db-1".into(),
            source: "db-1.example.com".into(),
            severity,
            occurred_at: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            details: serde_json::Value::Null,
            links: vec![],
            group_key: Some("{}:{alertname=\"DiskFull\"}".into()),
        }
    }

    fn routing(json: serde_json::Value) -> Router {
        Router::new(serde_json::from_value(json).unwrap(), &rules()).unwrap()
    }

    #[test]
    fn a_renamed_policy_is_renamed_wherever_the_routing_names_it() {
        let mut routing: Routing = serde_json::from_value(serde_json::json!({
            "escalation_policy": "dba",
            "rules": [
                {"when": {}, "then": {"escalation_policy": "dba"}},
                {"when": {}, "then": {"escalation_policy": "web"}},
            ],
        }))
        .unwrap();
        assert!(!routing.rename_policy("dbas", "database"));
        assert!(routing.rename_policy("dba", "database"));
        let named: Vec<_> = routing
            .named_policies()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(named, ["database", "database", "web"]);
    }

    #[test]
    fn without_rules_severity_follows_the_alert_and_each_alert_is_its_own_incident() {
        let r = routing(serde_json::json!({}));
        let d = r.decide(&event(AlertSeverity::Critical, &[]), &rules());
        assert_eq!(d.severity, "P1");
        assert_eq!(d.category, "server_failure");
        assert_eq!(d.group, None);
        assert!(!d.suppress);
        assert_eq!(
            r.decide(&event(AlertSeverity::Info, &[]), &rules())
                .severity,
            "P4"
        );
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let r = routing(serde_json::json!({
            "rules": [
                {"name": "db", "when": {"labels": {"team": "db", "env": {"regex": "prod|stg"}}},
                 "then": {"severity": "P2", "category": "database", "escalation_policy": "dba"}},
                {"name": "noise", "when": {"summary": {"regex": ".*flapping.*"}}, "then": {"suppress": true}},
                {"name": "all-db", "when": {"labels": {"team": "db"}}, "then": {"severity": "P3"}}
            ]
        }));
        let d = r.decide(
            &event(AlertSeverity::Critical, &[("team", "db"), ("env", "prod")]),
            &rules(),
        );
        assert_eq!(
            (d.rule, d.severity.as_str(), d.category.as_str()),
            (Some(0), "P2", "database")
        );
        assert_eq!(d.escalation_policy.as_deref(), Some("dba"));
        // The pattern must match the whole value.
        let d = r.decide(
            &event(
                AlertSeverity::Critical,
                &[("team", "db"), ("env", "production")],
            ),
            &rules(),
        );
        assert_eq!(d.rule, Some(2));
        let mut flapping = event(AlertSeverity::Warning, &[]);
        flapping.summary = "link flapping on sw-3".into();
        assert!(r.decide(&flapping, &rules()).suppress);
    }

    #[test]
    fn severities_and_source_conditions() {
        let r = routing(serde_json::json!({
            "rules": [{"when": {"severities": ["warning", "info"], "source": {"regex": "db-.*"}},
                       "then": {"severity": "P4"}}]
        }));
        assert_eq!(
            r.decide(&event(AlertSeverity::Warning, &[]), &rules()).rule,
            Some(0)
        );
        assert_eq!(
            r.decide(&event(AlertSeverity::Critical, &[]), &rules())
                .rule,
            None
        );
    }

    #[test]
    fn grouping_by_labels_and_by_sender() {
        let r = routing(serde_json::json!({
            "grouping": {"mode": "labels", "labels": ["alertname", "cluster"], "window_minutes": 30}
        }));
        let a = r.decide(
            &event(
                AlertSeverity::Error,
                &[("alertname", "Down"), ("cluster", "a")],
            ),
            &rules(),
        );
        let b = r.decide(
            &event(
                AlertSeverity::Error,
                &[("alertname", "Down"), ("cluster", "a"), ("pod", "x")],
            ),
            &rules(),
        );
        let c = r.decide(
            &event(
                AlertSeverity::Error,
                &[("alertname", "Down"), ("cluster", "b")],
            ),
            &rules(),
        );
        assert_eq!(a.group, b.group);
        assert_ne!(a.group, c.group);
        assert_eq!(a.group.unwrap().1, SignedDuration::from_mins(30));
        // A value holding the separators cannot pose as another group.
        let forged = r.decide(
            &event(AlertSeverity::Error, &[("alertname", "Down,cluster=a")]),
            &rules(),
        );
        assert_ne!(forged.group, b.group);
        // Keys are stored with alerts: their form must not drift.
        let escaped = r.decide(
            &event(AlertSeverity::Error, &[("alertname", r"Down,cluster=a\x")]),
            &rules(),
        );
        assert_eq!(
            escaped.group.unwrap().0,
            r"default:labels:alertname=Down\,cluster\=a\\x,cluster="
        );

        let s = routing(serde_json::json!({"grouping": {"mode": "sender", "window_minutes": 5}}));
        assert!(
            s.decide(&event(AlertSeverity::Error, &[]), &rules())
                .group
                .unwrap()
                .0
                .contains("DiskFull")
        );
    }

    #[test]
    fn bad_rules_name_their_field() {
        let bad = |json: serde_json::Value| {
            Router::new(serde_json::from_value(json).unwrap(), &rules())
                .err()
                .map(|e| (e.field, e.code))
        };
        assert_eq!(
            bad(serde_json::json!({"rules": [{"when": {"summary": {"regex": "(unclosed"}}}]})),
            Some(("rules[0].when.summary".into(), "invalid_regex"))
        );
        assert_eq!(
            bad(serde_json::json!({"rules": [{}, {"then": {"severity": "SEV9"}}]})),
            Some(("rules[1].then.severity".into(), "unknown_value"))
        );
        assert_eq!(
            bad(serde_json::json!({"category": "nope"})),
            Some(("category".into(), "unknown_value"))
        );
        assert_eq!(
            bad(
                serde_json::json!({"grouping": {"mode": "labels", "labels": ["a"], "window_minutes": 0}})
            ),
            Some(("grouping.window_minutes".into(), "out_of_range"))
        );
        // A pattern too large to compile cheaply is refused, not run.
        let huge = format!("({})", "a{1000}".repeat(50));
        assert_eq!(
            bad(serde_json::json!({"rules": [{"when": {"source": {"regex": huge}}}]})).map(|e| e.1),
            Some("invalid_regex")
        );
        assert!(serde_json::from_value::<Routing>(serde_json::json!({"rulez": []})).is_err());
    }

    #[test]
    fn maintenance_windows_cover_their_half_open_span() {
        let w = MaintenanceWindow {
            id: uuid::Uuid::nil(),
            starts_at: "2026-11-21T01:00:00Z".parse().unwrap(),
            ends_at: "2026-11-21T02:00:00Z".parse().unwrap(),
            reason: "DB upgrade".into(),
        };
        assert!(w.covers("2026-11-21T01:00:00Z".parse().unwrap()));
        assert!(w.covers("2026-11-21T01:59:59Z".parse().unwrap()));
        assert!(!w.covers("2026-11-21T02:00:00Z".parse().unwrap()));
    }

    #[test]
    fn long_label_values_make_bounded_group_keys_that_stay_apart() {
        let r = routing(serde_json::json!(
            {"grouping": {"mode": "labels", "labels": ["x", "y"], "window_minutes": 5}}
        ));
        let long = "障".repeat(1024);
        let key = |y: &str| {
            r.decide(
                &event(AlertSeverity::Info, &[("x", &long), ("y", y)]),
                &rules(),
            )
            .group
            .unwrap()
            .0
        };
        let (a, b) = (key("a"), key("b"));
        assert!(a.len() <= crate::alert::GROUP_KEY_MAX, "{}", a.len());
        assert!(b.len() <= crate::alert::GROUP_KEY_MAX, "{}", b.len());
        assert_ne!(a, b);
        assert_eq!(a, key("a"));
    }

    /// Label values from the characters a group key escapes, and others.
    fn escapable() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!['a', '0', ',', '=', '\\', '\0']),
            0..6,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn label_group_keys_hold_no_nul_and_differ_exactly_when_the_values_do(
            a in escapable(), b in escapable(), c in escapable(), d in escapable()
        ) {
            let r = routing(serde_json::json!(
                {"grouping": {"mode": "labels", "labels": ["x", "y"], "window_minutes": 5}}
            ));
            let key = |x: &str, y: &str| {
                r.decide(&event(AlertSeverity::Info, &[("x", x), ("y", y)]), &rules())
                    .group
                    .unwrap()
                    .0
            };
            let (first, second) = (key(&a, &b), key(&c, &d));
            prop_assert!(!first.contains('\0') && !second.contains('\0'));
            prop_assert_eq!(first == second, (a, b) == (c, d));
        }

        #[test]
        fn any_pattern_either_compiles_or_is_refused_and_matching_never_panics(
            pattern in ".{0,40}", value in ".{0,40}"
        ) {
            let routing = Routing {
                rules: vec![RouteRule {
                    name: String::new(),
                    when: Conditions { summary: Some(Matcher::Pattern { regex: pattern }), ..Default::default() },
                    then: RouteActions::default(),
                }],
                ..Routing::default()
            };
            if let Ok(r) = Router::new(routing, &rules()) {
                let mut e = event(AlertSeverity::Info, &[]);
                e.summary = value;
                let _ = r.decide(&e, &rules());
            }
        }
    }
}
