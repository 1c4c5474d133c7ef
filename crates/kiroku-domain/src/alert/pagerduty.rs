//! PagerDuty's Events API v2, read as PagerDuty documents it: alert events
//! (`/v2/enqueue`) and change events (`/v2/change/enqueue`). A tool that
//! can page PagerDuty can send to Kiroku by changing only its URL.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields;
use super::{
    AlertAction, AlertEvent, AlertSeverity, ChangeEvent, DEDUP_KEY_MAX, LABEL_VALUE_MAX, Problems,
    SOURCE_MAX, SUMMARY_MAX,
};
use crate::ValidationError;

/// PagerDuty's keys have 32 characters; other senders' may be longer.
pub const ROUTING_KEY_MAX: usize = 64;

/// An alert event and the integration key it was sent with.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyEvent {
    pub routing_key: String,
    pub event: AlertEvent,
}

/// A change event and the integration key it was sent with.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyChange {
    pub routing_key: String,
    pub change: ChangeEvent,
}

/// The top level of both endpoints' bodies; a change event has only
/// `routing_key`, `payload` and `links`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Body {
    routing_key: Value,
    event_action: Value,
    dedup_key: Value,
    payload: Value,
    links: Value,
    images: Value,
    client: Value,
    client_url: Value,
}

/// `payload`, in PagerDuty's Common Event Format; a change event's has
/// only `summary`, `source`, `timestamp` and `custom_details`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Payload {
    summary: Value,
    source: Value,
    severity: Value,
    timestamp: Value,
    component: Value,
    group: Value,
    class: Value,
    custom_details: Value,
}

/// An alert event: `trigger`, `acknowledge` or `resolve`.
pub fn parse_event(body: &[u8]) -> Result<PagerDutyEvent, Problems> {
    let body: Body = fields::body(body)?;
    let mut problems = Problems::new();
    let routing_key = routing_key(&body.routing_key, &mut problems);
    let action = event_action(&body.event_action, &mut problems);
    let follows_up = matches!(
        action,
        Some(AlertAction::Acknowledge | AlertAction::Resolve)
    );
    let dedup_key = fields::key(
        "dedup_key",
        &body.dedup_key,
        DEDUP_KEY_MAX,
        follows_up,
        &mut problems,
    );
    let links = fields::links("links", &body.links, &mut problems);
    if !matches!(body.images, Value::Null | Value::Array(_)) {
        problems.push(ValidationError::new(
            "images",
            "invalid_type",
            "must be an array",
        ));
    }

    // An acknowledge or resolve needs only its key: its payload, if any, is ignored.
    let mut event = AlertEvent {
        action: action.unwrap_or(AlertAction::Trigger),
        dedup_key,
        summary: String::new(),
        source: String::new(),
        severity: AlertSeverity::Info,
        occurred_at: None,
        labels: BTreeMap::new(),
        details: Value::Null,
        links,
        group_key: None,
    };
    let mut custom_details = Value::Null;
    if action == Some(AlertAction::Trigger)
        && let Some(payload) =
            fields::object::<Payload>("payload", body.payload, true, &mut problems)
    {
        custom_details = read_trigger(payload, &mut event, &mut problems);
    }
    event.details = details([
        ("custom_details", custom_details),
        ("client", body.client),
        ("client_url", body.client_url),
        ("images", body.images),
    ]);

    if problems.is_empty() {
        Ok(PagerDutyEvent { routing_key, event })
    } else {
        Err(problems)
    }
}

/// A change event: a deploy, a configuration change.
pub fn parse_change(body: &[u8]) -> Result<PagerDutyChange, Problems> {
    let body: Body = fields::body(body)?;
    let mut problems = Problems::new();
    let routing_key = routing_key(&body.routing_key, &mut problems);
    let links = fields::links("links", &body.links, &mut problems);
    let mut change = ChangeEvent {
        summary: String::new(),
        source: None,
        occurred_at: None,
        details: Value::Null,
        links,
    };
    if let Some(payload) = fields::object::<Payload>("payload", body.payload, true, &mut problems) {
        change.summary = summary(&payload.summary, &mut problems);
        change.source = fields::line(
            "payload.source",
            &payload.source,
            SOURCE_MAX,
            false,
            &mut problems,
        );
        change.occurred_at = fields::time("payload.timestamp", &payload.timestamp, &mut problems);
        change.details = details([("custom_details", payload.custom_details)]);
    }

    if problems.is_empty() {
        Ok(PagerDutyChange {
            routing_key,
            change,
        })
    } else {
        Err(problems)
    }
}

/// Fills `event` from a trigger's payload; returns its custom details.
fn read_trigger(payload: Payload, event: &mut AlertEvent, problems: &mut Problems) -> Value {
    event.summary = summary(&payload.summary, problems);
    event.source = fields::line(
        "payload.source",
        &payload.source,
        SOURCE_MAX,
        true,
        problems,
    )
    .unwrap_or_default();
    event.severity = severity(&payload.severity, problems);
    event.occurred_at = fields::time("payload.timestamp", &payload.timestamp, problems);
    for (name, value) in [
        ("component", &payload.component),
        ("group", &payload.group),
        ("class", &payload.class),
    ] {
        let field = format!("payload.{name}");
        if let Some(value) = fields::verbatim(&field, value, LABEL_VALUE_MAX, false, problems) {
            event.labels.insert(name.to_string(), value);
        }
    }
    payload.custom_details
}

fn routing_key(value: &Value, problems: &mut Problems) -> String {
    fields::key("routing_key", value, ROUTING_KEY_MAX, true, problems).unwrap_or_default()
}

fn event_action(value: &Value, problems: &mut Problems) -> Option<AlertAction> {
    match fields::verbatim("event_action", value, usize::MAX, true, problems)?.as_str() {
        "trigger" => Some(AlertAction::Trigger),
        "acknowledge" => Some(AlertAction::Acknowledge),
        "resolve" => Some(AlertAction::Resolve),
        _ => {
            problems.push(ValidationError::new(
                "event_action",
                "invalid_value",
                "must be trigger, acknowledge or resolve",
            ));
            None
        }
    }
}

fn summary(value: &Value, problems: &mut Problems) -> String {
    fields::line("payload.summary", value, SUMMARY_MAX, true, problems).unwrap_or_default()
}

/// PagerDuty takes exactly one of its four names, and so does this.
fn severity(value: &Value, problems: &mut Problems) -> AlertSeverity {
    let Some(name) = fields::verbatim("payload.severity", value, usize::MAX, true, problems) else {
        return AlertSeverity::Info;
    };
    AlertSeverity::parse(&name).unwrap_or_else(|| {
        problems.push(ValidationError::new(
            "payload.severity",
            "invalid_value",
            "must be critical, error, warning or info",
        ));
        AlertSeverity::Info
    })
}

/// The details kept of an event: the given fields the sender set, as sent.
fn details<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let kept: Map<String, Value> = entries
        .into_iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertLink;
    use crate::alert::fields::arbitrary;
    use proptest::prelude::*;
    use serde_json::json;

    /// PagerDuty's documented trigger example, without its explanatory comment.
    const TRIGGER: &str = r#"{
      "payload": {
        "summary": "Example alert on host1.example.com",
        "timestamp": "2015-07-17T08:42:58.315+0000",
        "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
        "severity": "info",
        "component": "postgres",
        "group": "prod-datapipe",
        "class": "deploy",
        "custom_details": {
          "ping time": "1500ms",
          "load avg": 0.75
        }
      },
      "routing_key": "samplekeyhere",
      "dedup_key": "samplekeyhere",
      "images": [
        {
          "src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png",
          "href": "https://example.com/",
          "alt": "Example text"
        }
      ],
      "links": [
        {
          "href": "https://example.com/",
          "text": "Link text"
        }
      ],
      "event_action": "trigger",
      "client": "Sample Monitoring Service",
      "client_url": "https://monitoring.example.com"
    }"#;

    /// PagerDuty's documented change event example.
    const CHANGE: &str = r#"{
      "routing_key": "samplekeyhere",
      "payload": {
        "summary": "Build Success: Increase snapshot create timeout to 30 seconds",
        "timestamp": "2020-07-17T08:42:58.315+0000",
        "source": "acme-build-pipeline-tool-default-i-9999",
        "custom_details": {
          "build_state": "passed",
          "build_number": "2",
          "run_time": "1236s"
        }
      },
      "links": [
        {
          "href": "https://acme.pagerduty.dev/build/2",
          "text": "View more details in Acme!"
        }
      ]
    }"#;

    fn trigger_with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut body: Value = serde_json::from_str(TRIGGER).unwrap();
        change(&mut body);
        serde_json::to_vec(&body).unwrap()
    }

    fn problems(body: &[u8]) -> Vec<(String, &'static str)> {
        parse_event(body)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.field, p.code))
            .collect()
    }

    fn one(field: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(field.to_string(), code)]
    }

    #[test]
    fn the_documented_trigger_example() {
        let parsed = parse_event(TRIGGER.as_bytes()).unwrap();
        assert_eq!(parsed.routing_key, "samplekeyhere");
        let event = parsed.event;
        assert_eq!(event.action, AlertAction::Trigger);
        assert_eq!(event.dedup_key.as_deref(), Some("samplekeyhere"));
        assert_eq!(event.summary, "Example alert on host1.example.com");
        assert_eq!(
            event.source,
            "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003"
        );
        assert_eq!(event.severity, AlertSeverity::Info);
        assert_eq!(
            event.occurred_at,
            Some("2015-07-17T08:42:58.315Z".parse().unwrap())
        );
        let labels: Vec<_> = event
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("class", "deploy"),
                ("component", "postgres"),
                ("group", "prod-datapipe")
            ]
        );
        assert_eq!(
            event.details,
            json!({
                "custom_details": {"ping time": "1500ms", "load avg": 0.75},
                "client": "Sample Monitoring Service",
                "client_url": "https://monitoring.example.com",
                "images": [{
                    "src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png",
                    "href": "https://example.com/",
                    "alt": "Example text"
                }]
            })
        );
        assert_eq!(
            event.links,
            [AlertLink {
                href: "https://example.com/".into(),
                text: Some("Link text".into())
            }]
        );
        assert_eq!(event.group_key, None);
    }

    #[test]
    fn the_documented_acknowledge_and_resolve_examples() {
        for (action, expected) in [
            ("acknowledge", AlertAction::Acknowledge),
            ("resolve", AlertAction::Resolve),
        ] {
            let body = format!(
                r#"{{"routing_key": "routingkeyhere", "dedup_key": "dedupkeyhere", "event_action": "{action}"}}"#
            );
            let parsed = parse_event(body.as_bytes()).unwrap();
            assert_eq!(parsed.routing_key, "routingkeyhere");
            assert_eq!(parsed.event.action, expected);
            assert_eq!(parsed.event.dedup_key.as_deref(), Some("dedupkeyhere"));
            assert_eq!(parsed.event.summary, "");
            assert_eq!(parsed.event.source, "");
            assert_eq!(parsed.event.severity, AlertSeverity::Info);
            assert_eq!(parsed.event.details, json!({}));
        }
    }

    #[test]
    fn a_follow_up_ignores_its_payload_and_needs_its_key() {
        let body = br#"{"routing_key": "k", "dedup_key": "d", "event_action": "resolve", "payload": {"severity": "nonsense"}}"#;
        assert_eq!(
            parse_event(body).unwrap().event.severity,
            AlertSeverity::Info
        );
        let body = br#"{"routing_key": "k", "event_action": "acknowledge"}"#;
        assert_eq!(problems(body), one("dedup_key", "required"));
    }

    #[test]
    fn a_trigger_without_a_dedup_key_is_given_none() {
        let body = trigger_with(|b| {
            b.as_object_mut().unwrap().remove("dedup_key");
        });
        assert_eq!(parse_event(&body).unwrap().event.dedup_key, None);
    }

    #[test]
    fn the_documented_change_example() {
        let parsed = parse_change(CHANGE.as_bytes()).unwrap();
        assert_eq!(parsed.routing_key, "samplekeyhere");
        let change = parsed.change;
        assert_eq!(
            change.summary,
            "Build Success: Increase snapshot create timeout to 30 seconds"
        );
        assert_eq!(
            change.source.as_deref(),
            Some("acme-build-pipeline-tool-default-i-9999")
        );
        assert_eq!(
            change.occurred_at,
            Some("2020-07-17T08:42:58.315Z".parse().unwrap())
        );
        assert_eq!(
            change.details,
            json!({"custom_details": {"build_state": "passed", "build_number": "2", "run_time": "1236s"}})
        );
        assert_eq!(
            change.links,
            [AlertLink {
                href: "https://acme.pagerduty.dev/build/2".into(),
                text: Some("View more details in Acme!".into())
            }]
        );
    }

    #[test]
    fn a_change_needs_a_key_and_a_summary() {
        let found: Vec<_> = parse_change(br#"{"payload": {"source": "ci", "timestamp": "soon"}}"#)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.field, p.code))
            .collect();
        assert_eq!(
            found,
            [
                ("routing_key".to_string(), "required"),
                ("payload.summary".to_string(), "required"),
                ("payload.timestamp".to_string(), "invalid_time"),
            ]
        );
        let found = parse_change(br#"{"routing_key": "k"}"#).unwrap_err();
        assert_eq!(
            (found[0].field.as_str(), found[0].code),
            ("payload", "required")
        );
        let minimal =
            parse_change(br#"{"routing_key": "k", "payload": {"summary": "Deployed"}}"#).unwrap();
        assert_eq!(minimal.change.source, None);
        assert_eq!(minimal.change.details, json!({}));
    }

    #[test]
    fn an_unknown_event_action() {
        let body = trigger_with(|b| b["event_action"] = json!("escalate"));
        assert_eq!(problems(&body), one("event_action", "invalid_value"));
        let body = trigger_with(|b| b["event_action"] = Value::Null);
        assert_eq!(problems(&body), one("event_action", "required"));
    }

    #[test]
    fn a_missing_summary() {
        let body = trigger_with(|b| {
            b["payload"].as_object_mut().unwrap().remove("summary");
        });
        assert_eq!(problems(&body), one("payload.summary", "required"));
        let body = trigger_with(|b| b["payload"]["summary"] = json!(" \n "));
        assert_eq!(problems(&body), one("payload.summary", "required"));
    }

    #[test]
    fn a_missing_source() {
        let body = trigger_with(|b| {
            b["payload"].as_object_mut().unwrap().remove("source");
        });
        assert_eq!(problems(&body), one("payload.source", "required"));
    }

    #[test]
    fn a_severity_must_be_one_of_the_four_exactly() {
        for bad in ["high", "Critical", ""] {
            let body = trigger_with(|b| b["payload"]["severity"] = json!(bad));
            let code = if bad.is_empty() {
                "required"
            } else {
                "invalid_value"
            };
            assert_eq!(problems(&body), one("payload.severity", code), "{bad}");
        }
        for severity in AlertSeverity::ALL {
            let body = trigger_with(|b| b["payload"]["severity"] = json!(severity.as_str()));
            assert_eq!(parse_event(&body).unwrap().event.severity, severity);
        }
    }

    #[test]
    fn a_bad_timestamp() {
        let body = trigger_with(|b| b["payload"]["timestamp"] = json!("17/07/2015 08:42"));
        assert_eq!(problems(&body), one("payload.timestamp", "invalid_time"));
    }

    #[test]
    fn an_oversize_dedup_key() {
        let body = trigger_with(|b| b["dedup_key"] = json!("k".repeat(DEDUP_KEY_MAX + 1)));
        assert_eq!(problems(&body), one("dedup_key", "too_long"));
        let body = trigger_with(|b| b["dedup_key"] = json!("鍵".repeat(DEDUP_KEY_MAX)));
        assert!(parse_event(&body).is_ok());
    }

    #[test]
    fn a_key_holding_nul_is_refused() {
        let body = trigger_with(|b| b["dedup_key"] = json!("db\u{0}1"));
        assert_eq!(problems(&body), one("dedup_key", "invalid_characters"));
        let body = trigger_with(|b| b["routing_key"] = json!("\u{0}"));
        assert_eq!(problems(&body), one("routing_key", "invalid_characters"));
        // Other control characters are kept: only NUL has no place in text.
        let body = trigger_with(|b| b["dedup_key"] = json!("db\t1"));
        assert_eq!(
            parse_event(&body).unwrap().event.dedup_key.as_deref(),
            Some("db\t1")
        );
    }

    #[test]
    fn summaries_are_cleaned_to_one_line_and_limited() {
        let body =
            trigger_with(|b| b["payload"]["summary"] = json!("  CPU high\r\n\ton\u{0} web-1  "));
        assert_eq!(
            parse_event(&body).unwrap().event.summary,
            "CPU high on web-1"
        );
        let body = trigger_with(|b| b["payload"]["summary"] = json!("🔥".repeat(SUMMARY_MAX)));
        assert!(parse_event(&body).is_ok());
        let body = trigger_with(|b| b["payload"]["summary"] = json!("x".repeat(SUMMARY_MAX + 1)));
        assert_eq!(problems(&body), one("payload.summary", "too_long"));
    }

    #[test]
    fn routing_keys_are_required_and_limited() {
        let body = trigger_with(|b| b["routing_key"] = json!(""));
        assert_eq!(problems(&body), one("routing_key", "required"));
        let body = trigger_with(|b| b["routing_key"] = json!("k".repeat(ROUTING_KEY_MAX + 1)));
        assert_eq!(problems(&body), one("routing_key", "too_long"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let body = br#"{"event_action": "trigger", "dedup_key": 5,
            "payload": {"summary": ["x"], "severity": "bad", "timestamp": "never", "component": 1},
            "links": [{"href": "ftp://example.com"}], "images": {}}"#;
        assert_eq!(
            problems(body),
            [
                ("routing_key".to_string(), "required"),
                ("dedup_key".to_string(), "invalid_type"),
                ("links[0].href".to_string(), "invalid_value"),
                ("images".to_string(), "invalid_type"),
                ("payload.summary".to_string(), "invalid_type"),
                ("payload.source".to_string(), "required"),
                ("payload.severity".to_string(), "invalid_value"),
                ("payload.timestamp".to_string(), "invalid_time"),
                ("payload.component".to_string(), "invalid_type"),
            ]
        );
    }

    #[test]
    fn a_trigger_needs_a_payload_object() {
        let body = trigger_with(|b| {
            b.as_object_mut().unwrap().remove("payload");
        });
        assert_eq!(problems(&body), one("payload", "required"));
        let body = trigger_with(|b| b["payload"] = json!("summary"));
        assert_eq!(problems(&body), one("payload", "invalid_type"));
    }

    #[test]
    fn bodies_that_are_not_json_objects() {
        let cases: [&[u8]; 5] = [
            b"routing_key=abc",
            b"{\"routing_key\": \"\xc3\x28\"}",
            br#"[{"routing_key": "k", "event_action": "trigger"}]"#,
            b"",
            b"{\"routing_key\": \"k\"",
        ];
        for body in cases {
            assert_eq!(problems(body), one("body", "invalid_json"));
            assert_eq!(parse_change(body).unwrap_err()[0].code, "invalid_json");
        }
    }

    #[test]
    fn deeply_nested_json_is_refused() {
        let deep = "[".repeat(100_000);
        assert_eq!(problems(deep.as_bytes()), one("body", "invalid_json"));
        let nested = format!(
            r#"{{"routing_key":"k","event_action":"trigger","payload":{{"summary":"s","source":"s","severity":"info","custom_details":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(problems(nested.as_bytes()), one("body", "invalid_json"));
    }

    #[test]
    fn labels_keep_odd_unicode() {
        let body = trigger_with(|b| {
            b["payload"]["component"] = json!("\u{202e}gresql\u{200f}");
            b["payload"]["group"] = json!("🐘 a\u{0}b");
        });
        let event = parse_event(&body).unwrap().event;
        assert_eq!(event.labels["component"], "\u{202e}gresql\u{200f}");
        assert_eq!(event.labels["group"], "🐘 a\u{0}b");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_event(&body);
            let _ = parse_change(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(body in arbitrary::json(&[
            "routing_key", "event_action", "dedup_key", "payload", "links", "images", "client",
            "client_url", "summary", "source", "severity", "timestamp", "component", "group",
            "class", "custom_details", "href", "text",
        ])) {
            let bytes = serde_json::to_vec(&body).unwrap();
            let _ = parse_event(&bytes);
            let _ = parse_change(&bytes);
        }

        #[test]
        fn valid_triggers_read_back_as_sent(
            routing_key in "[0-9a-f]{32}",
            dedup_key in proptest::option::of("[!-~]{1,255}"),
            summary in arbitrary::CLEAN_LINE,
            source in arbitrary::CLEAN_LINE,
            severity in proptest::sample::select(&AlertSeverity::ALL[..]),
            second in 0i64..4_000_000_000,
            component in proptest::option::of("\\PC{1,30}"),
            custom_details in proptest::collection::btree_map("\\PC{0,8}", any::<i64>(), 0..4),
        ) {
            let occurred_at = jiff::Timestamp::from_second(second).unwrap();
            let body = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": summary,
                    "source": source,
                    "severity": severity.as_str(),
                    "timestamp": occurred_at.to_string(),
                    "component": component,
                    "custom_details": custom_details,
                },
            });
            let parsed = parse_event(&serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!(parsed.routing_key, routing_key);
            let event = parsed.event;
            prop_assert_eq!(event.action, AlertAction::Trigger);
            prop_assert_eq!(event.dedup_key, dedup_key);
            prop_assert_eq!(event.summary, summary);
            prop_assert_eq!(event.source, source);
            prop_assert_eq!(event.severity, severity);
            prop_assert_eq!(event.occurred_at, Some(occurred_at));
            prop_assert_eq!(event.labels.get("component"), component.as_ref());
            prop_assert_eq!(&event.details["custom_details"], &json!(custom_details));
        }
    }
}
