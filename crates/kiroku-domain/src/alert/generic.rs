//! Kiroku's generic alert format: JSON that any tool able to make an HTTP
//! request can send — one event, or `{"events": […]}` with at most 10,000.
//! The schema, its defaults and its error codes are documented for senders
//! in `docs/intake.md` ("The generic format"); keep the two in step.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields;
use super::{
    AlertAction, AlertEvent, AlertSeverity, DEDUP_KEY_MAX, Problems, SOURCE_MAX, SUMMARY_MAX,
};
use crate::ValidationError;

#[derive(Default, Deserialize)]
#[serde(default)]
struct Event {
    action: Value,
    dedup_key: Value,
    summary: Value,
    source: Value,
    severity: Value,
    timestamp: Value,
    labels: Value,
    details: Value,
    links: Value,
    /// Whatever else was sent: each is refused.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

pub fn parse(body: &[u8]) -> Result<Vec<AlertEvent>, Problems> {
    let mut top: Map<String, Value> = fields::body(body)?;
    let mut problems = Problems::new();
    let events = match top.remove("events") {
        None => vec![event("", Value::Object(top), &mut problems)],
        Some(events) => {
            for name in top.keys() {
                problems.push(unknown_field(&fields::path("", name)));
            }
            fields::batch("events", events, &mut problems)
                .into_iter()
                .enumerate()
                .map(|(i, e)| event(&format!("events[{i}]"), e, &mut problems))
                .collect()
        }
    };
    if problems.is_empty() {
        Ok(events.into_iter().flatten().collect())
    } else {
        Err(problems)
    }
}

/// One event; `at` is its path, empty for a body of one event.
fn event(at: &str, value: Value, problems: &mut Problems) -> Option<AlertEvent> {
    let event: Event = fields::object(at, value, true, problems)?;
    for name in event.unknown.keys() {
        problems.push(unknown_field(&fields::path(at, name)));
    }
    let field = |name: &str| fields::path(at, name);

    // What an unknown action requires is unknown: only the action is reported.
    let action = action(&field("action"), &event.action, problems);
    let is_trigger = action == Some(AlertAction::Trigger);
    let follows_up = matches!(
        action,
        Some(AlertAction::Acknowledge | AlertAction::Resolve)
    );
    let dedup_key = fields::key(
        &field("dedup_key"),
        &event.dedup_key,
        DEDUP_KEY_MAX,
        follows_up,
        problems,
    );
    let summary = fields::line(
        &field("summary"),
        &event.summary,
        SUMMARY_MAX,
        is_trigger,
        problems,
    );
    let source = fields::line(
        &field("source"),
        &event.source,
        SOURCE_MAX,
        is_trigger,
        problems,
    );
    let severity = severity(&field("severity"), &event.severity, problems);
    let occurred_at = fields::time(&field("timestamp"), &event.timestamp, problems);
    let labels = fields::labels(&field("labels"), &event.labels, problems);
    let links = fields::links(&field("links"), &event.links, problems);

    Some(AlertEvent {
        action: action.unwrap_or(AlertAction::Trigger),
        dedup_key,
        summary: summary.unwrap_or_default(),
        source: source.unwrap_or_default(),
        severity,
        occurred_at,
        labels,
        details: event.details,
        links,
        group_key: None,
    })
}

fn action(field: &str, value: &Value, problems: &mut Problems) -> Option<AlertAction> {
    if value.is_null() || value.as_str() == Some("") {
        return Some(AlertAction::Trigger);
    }
    match fields::verbatim(field, value, usize::MAX, true, problems)?.as_str() {
        "trigger" => Some(AlertAction::Trigger),
        "acknowledge" => Some(AlertAction::Acknowledge),
        "resolve" => Some(AlertAction::Resolve),
        _ => {
            problems.push(ValidationError::new(
                field,
                "invalid_value",
                "must be trigger, acknowledge or resolve",
            ));
            None
        }
    }
}

fn severity(field: &str, value: &Value, problems: &mut Problems) -> AlertSeverity {
    let Some(name) = fields::verbatim(field, value, usize::MAX, false, problems) else {
        return AlertSeverity::Error;
    };
    AlertSeverity::parse_loose(&name).unwrap_or_else(|| {
        problems.push(ValidationError::new(
            field,
            "invalid_value",
            "must be critical, error, warning or info",
        ));
        AlertSeverity::Error
    })
}

fn unknown_field(field: &str) -> ValidationError {
    ValidationError::new(field, "unknown_field", "is not a field of this format")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::fields::arbitrary;
    use crate::alert::{AlertLink, EVENTS_PER_REQUEST_MAX};
    use proptest::prelude::*;
    use serde_json::json;

    fn problems(body: &Value) -> Vec<(String, &'static str)> {
        parse(&serde_json::to_vec(body).unwrap())
            .unwrap_err()
            .into_iter()
            .map(|p| (p.field, p.code))
            .collect()
    }

    fn one(field: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(field.to_string(), code)]
    }

    fn parse_value(body: &Value) -> Vec<AlertEvent> {
        parse(&serde_json::to_vec(body).unwrap()).unwrap()
    }

    #[test]
    fn a_single_event() {
        let events = parse_value(&json!({
            "summary": "Disk 95% full on db-1",
            "source": "db-1.example.com",
            "severity": "warning",
            "dedup_key": "db-1/disk/var",
            "timestamp": "2026-11-21T09:00:00+09:00",
            "labels": {"service": "billing", "env": "prod"},
            "details": {"used_bytes": 1_020_054_732_800_u64, "mount": "/var"},
            "links": [{"href": "https://grafana.example.com/d/disk", "text": "Disk dashboard"}]
        }));
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.action, AlertAction::Trigger);
        assert_eq!(event.dedup_key.as_deref(), Some("db-1/disk/var"));
        assert_eq!(event.summary, "Disk 95% full on db-1");
        assert_eq!(event.source, "db-1.example.com");
        assert_eq!(event.severity, AlertSeverity::Warning);
        assert_eq!(
            event.occurred_at,
            Some("2026-11-21T00:00:00Z".parse().unwrap())
        );
        assert_eq!(event.labels["service"], "billing");
        assert_eq!(
            event.details,
            json!({"used_bytes": 1_020_054_732_800_u64, "mount": "/var"})
        );
        assert_eq!(
            event.links,
            [AlertLink {
                href: "https://grafana.example.com/d/disk".into(),
                text: Some("Disk dashboard".into())
            }]
        );
        assert_eq!(event.group_key, None);
    }

    #[test]
    fn defaults() {
        let event = parse_value(&json!({"summary": "s", "source": "h"})).remove(0);
        assert_eq!(event.action, AlertAction::Trigger);
        assert_eq!(event.severity, AlertSeverity::Error);
        assert_eq!(event.dedup_key, None);
        assert_eq!(event.occurred_at, None);
        assert!(event.labels.is_empty() && event.links.is_empty());
        assert_eq!(event.details, Value::Null);
    }

    #[test]
    fn a_batch() {
        let events = parse_value(&json!({"events": [
            {"summary": "API down", "source": "api", "severity": "P1", "dedup_key": "api"},
            {"action": "acknowledge", "dedup_key": "api"},
            {"action": "resolve", "dedup_key": "api", "summary": "API back"},
        ]}));
        let actions: Vec<_> = events.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                AlertAction::Trigger,
                AlertAction::Acknowledge,
                AlertAction::Resolve
            ]
        );
        assert_eq!(events[0].severity, AlertSeverity::Critical);
        assert_eq!(events[1].summary, "");
        assert_eq!(events[2].summary, "API back");
        assert!(events.iter().all(|e| e.dedup_key.as_deref() == Some("api")));
        assert!(parse_value(&json!({"events": []})).is_empty());
    }

    #[test]
    fn problems_in_a_batch_name_the_event() {
        let body = json!({"events": [
            {"summary": "ok", "source": "ok"},
            {"source": "h", "links": [{"href": "file:///etc/passwd"}]},
            {"action": "resolve"},
            "trigger",
        ]});
        assert_eq!(
            problems(&body),
            [
                ("events[1].summary".to_string(), "required"),
                ("events[1].links[0].href".to_string(), "invalid_value"),
                ("events[2].dedup_key".to_string(), "required"),
                ("events[3]".to_string(), "invalid_type"),
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert_eq!(
            problems(&json!({"sumary": "typo", "source": "h"})),
            [
                ("sumary".to_string(), "unknown_field"),
                ("summary".to_string(), "required")
            ]
        );
        let body =
            json!({"events": [{"summary": "s", "source": "h", "severty": "info"}], "version": 1});
        assert_eq!(
            problems(&body),
            [
                ("version".to_string(), "unknown_field"),
                ("events[0].severty".to_string(), "unknown_field")
            ]
        );
    }

    /// Found by fuzzing: a key that is the empty string was refused with
    /// an empty `field`, naming nothing.
    #[test]
    fn an_unknown_field_with_an_empty_name_is_still_named() {
        assert_eq!(
            problems(&json!({"summary": "s", "source": "h", "": 1})),
            [("\"\"".to_string(), "unknown_field")]
        );
        assert_eq!(
            problems(&json!({"events": [{"summary": "s", "source": "h", "": 1}], "": 2})),
            [
                ("\"\"".to_string(), "unknown_field"),
                ("events[0].\"\"".to_string(), "unknown_field")
            ]
        );
    }

    #[test]
    fn an_unknown_action() {
        let body = json!({"action": "escalate", "summary": "s", "source": "h"});
        assert_eq!(problems(&body), one("action", "invalid_value"));
        assert_eq!(
            problems(&json!({"action": "snooze"})),
            one("action", "invalid_value")
        );
        assert_eq!(
            problems(&json!({"action": 1, "dedup_key": "k"})),
            one("action", "invalid_type")
        );
    }

    #[test]
    fn a_trigger_needs_a_summary_and_a_source() {
        assert_eq!(
            problems(&json!({"source": "h"})),
            one("summary", "required")
        );
        assert_eq!(
            problems(&json!({"summary": "s", "source": "\n"})),
            one("source", "required")
        );
        assert_eq!(
            problems(
                &json!({"summary": "s".repeat(SUMMARY_MAX + 1), "source": "h".repeat(SOURCE_MAX + 1)})
            ),
            [
                ("summary".to_string(), "too_long"),
                ("source".to_string(), "too_long")
            ]
        );
    }

    #[test]
    fn severities_read_loosely() {
        for (word, expected) in [
            ("critical", AlertSeverity::Critical),
            ("Sev1", AlertSeverity::Critical),
            ("high", AlertSeverity::Error),
            ("WARN", AlertSeverity::Warning),
            ("low", AlertSeverity::Info),
        ] {
            let event =
                parse_value(&json!({"summary": "s", "source": "h", "severity": word})).remove(0);
            assert_eq!(event.severity, expected, "{word}");
        }
        let body = json!({"summary": "s", "source": "h", "severity": "apocalyptic"});
        assert_eq!(problems(&body), one("severity", "invalid_value"));
        let body = json!({"summary": "s", "source": "h", "severity": 1});
        assert_eq!(problems(&body), one("severity", "invalid_type"));
    }

    #[test]
    fn a_bad_timestamp() {
        let body = json!({"summary": "s", "source": "h", "timestamp": "2026-11-21"});
        assert_eq!(problems(&body), one("timestamp", "invalid_time"));
    }

    #[test]
    fn an_oversize_dedup_key() {
        let body =
            json!({"summary": "s", "source": "h", "dedup_key": "k".repeat(DEDUP_KEY_MAX + 1)});
        assert_eq!(problems(&body), one("dedup_key", "too_long"));
    }

    #[test]
    fn labels_keep_odd_unicode_and_refuse_non_strings() {
        let event = parse_value(&json!({"summary": "s", "source": "h",
            "labels": {"\u{202e}name": "\u{200f}v", "🔥": "a\u{0}b"}}))
        .remove(0);
        assert_eq!(event.labels["\u{202e}name"], "\u{200f}v");
        assert_eq!(event.labels["🔥"], "a\u{0}b");
        let body = json!({"summary": "s", "source": "h", "labels": {"replicas": 3}});
        assert_eq!(problems(&body), one("labels", "invalid_type"));
    }

    #[test]
    fn too_many_events() {
        let events = vec![json!({"summary": "s", "source": "h"}); EVENTS_PER_REQUEST_MAX + 1];
        assert_eq!(
            problems(&json!({"events": events})),
            one("events", "too_many")
        );
        assert_eq!(
            problems(&json!({"events": {}})),
            one("events", "invalid_type")
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects() {
        let deep = "[".repeat(100_000);
        let cases: [&[u8]; 5] = [
            b"summary=s",
            b"{\"summary\": \"\xed\xa0\x80\"}",
            br#"[{"summary": "s", "source": "h"}]"#,
            b"42",
            deep.as_bytes(),
        ];
        for body in cases {
            let problems = parse(body).unwrap_err();
            assert_eq!(problems.len(), 1);
            assert_eq!(
                (problems[0].field.as_str(), problems[0].code),
                ("body", "invalid_json")
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(body in arbitrary::json(&[
            "events", "action", "dedup_key", "summary", "source", "severity", "timestamp",
            "labels", "details", "links", "href", "text",
        ])) {
            let _ = parse(&serde_json::to_vec(&body).unwrap());
        }

        #[test]
        fn valid_events_read_back_as_sent(
            events in proptest::collection::vec(
                (
                    proptest::sample::select(&[AlertAction::Trigger, AlertAction::Acknowledge, AlertAction::Resolve][..]),
                    "[!-~]{1,255}",
                    arbitrary::CLEAN_LINE,
                    arbitrary::CLEAN_LINE,
                    proptest::sample::select(&AlertSeverity::ALL[..]),
                    proptest::collection::btree_map("\\PC{1,16}", "\\PC{0,32}", 0..6),
                    proptest::option::of(0i64..4_000_000_000),
                ),
                1..6,
            ),
        ) {
            let wire: Vec<Value> = events
                .iter()
                .map(|(action, dedup_key, summary, source, severity, labels, second)| json!({
                    "action": action,
                    "dedup_key": dedup_key,
                    "summary": summary,
                    "source": source,
                    "severity": severity,
                    "labels": labels,
                    "timestamp": second.map(|s| jiff::Timestamp::from_second(s).unwrap().to_string()),
                    "details": {"n": labels.len()},
                }))
                .collect();
            let parsed = parse_value(&json!({"events": wire}));
            prop_assert_eq!(parsed.len(), events.len());
            for (event, (action, dedup_key, summary, source, severity, labels, second)) in parsed.iter().zip(&events) {
                prop_assert_eq!(event.action, *action);
                prop_assert_eq!(event.dedup_key.as_ref(), Some(dedup_key));
                prop_assert_eq!(&event.summary, summary);
                prop_assert_eq!(&event.source, source);
                prop_assert_eq!(event.severity, *severity);
                prop_assert_eq!(&event.labels, labels);
                prop_assert_eq!(event.occurred_at, second.map(|s| jiff::Timestamp::from_second(s).unwrap()));
                prop_assert_eq!(&event.details, &json!({"n": labels.len()}));
            }
        }
    }
}
