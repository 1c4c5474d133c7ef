//! Prometheus Alertmanager's webhook, payload version 4: one notification
//! for a group of alerts, each alert an event of its own. Grafana's webhook
//! has the same shape and is read by the same code (see `grafana`).
//!
//! Alertmanager's texts are written by rule authors, not by the sender, so
//! a summary or source too long is cut rather than refused: refusing would
//! lose the alert. Labels are routed on and must keep within the limits.

use std::collections::BTreeMap;

use super::fields;
use super::{
    AlertAction, AlertEvent, AlertSeverity, DEDUP_KEY_MAX, Problems, SOURCE_MAX, SUMMARY_MAX,
    bounded_group_key,
};
use crate::ValidationError;
use jiff::Timestamp;
use serde_json::{Map, Value};

/// One webhook notification: a group of alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerBatch {
    pub group_key: String,
    pub receiver: String,
    pub common_labels: BTreeMap<String, String>,
    /// Everything else the group said (`status`, `groupLabels`,
    /// `commonAnnotations`, `externalURL`, `truncatedAlerts`…), as sent. Kept
    /// here once rather than in every event, whose details hold the alert's own.
    pub details: Value,
    pub events: Vec<AlertEvent>,
}

impl AlertmanagerBatch {
    /// The events, each carrying what identifies its group (receiver, group
    /// key, the common labels it holds itself) so that it is kept with the
    /// alert; the rest of the group's text stays out of 10,000 copies. The
    /// receiver and group key are bounded (`parse_group`), and common labels
    /// a real Alertmanager sends are in every alert's own labels: copied
    /// whatever they were, a hostile group's 74 KB of them would become
    /// 740 MB across 10,000 alerts.
    pub fn into_events(self) -> Vec<AlertEvent> {
        self.events
            .into_iter()
            .map(|mut e| {
                let common: BTreeMap<&String, &String> = self
                    .common_labels
                    .iter()
                    .filter(|(name, value)| e.labels.get(*name) == Some(*value))
                    .collect();
                let group = serde_json::json!({
                    "receiver": self.receiver,
                    "groupKey": self.group_key,
                    "commonLabels": common,
                });
                if let Value::Object(d) = &mut e.details {
                    d.insert("group".into(), group);
                }
                e
            })
            .collect()
    }
}

/// What sets apart the formats shaped like Alertmanager's.
pub(super) struct Dialect {
    /// The only payload `version` understood.
    pub(super) version: &'static str,
    /// The source of last resort: the sender's name.
    pub(super) sender: &'static str,
    /// The alert fields holding URLs, each with the text of its link.
    pub(super) links: &'static [(&'static str, &'static str)],
}

const ALERTMANAGER: Dialect = Dialect {
    version: "4",
    sender: "alertmanager",
    links: &[("generatorURL", "Source")],
};

/// Go's zero time, which Alertmanager writes for a time it does not have.
const GO_ZERO_TIME: Timestamp = Timestamp::constant(-62_135_596_800, 0);

pub fn parse(body: &[u8]) -> Result<AlertmanagerBatch, Problems> {
    parse_group(body, &ALERTMANAGER)
}

pub(super) fn parse_group(body: &[u8], dialect: &Dialect) -> Result<AlertmanagerBatch, Problems> {
    let mut group: Map<String, Value> = fields::body(body)?;
    let mut problems = Problems::new();
    match fields::get(&group, "version") {
        Value::String(v) if v == dialect.version => {}
        Value::Null => problems.push(ValidationError::new(
            "version",
            "required",
            "must not be empty",
        )),
        _ => problems.push(ValidationError::new(
            "version",
            "unsupported_version",
            format!("must be \"{}\"", dialect.version),
        )),
    }
    let alerts = fields::batch(
        "alerts",
        group.remove("alerts").unwrap_or_default(),
        &mut problems,
    );
    let (common_labels, _) = fields::clipped_labels(
        "commonLabels",
        fields::get(&group, "commonLabels"),
        LABELS_READ,
        &mut problems,
    );
    // Informational fields: read when they are strings, and kept in details whatever they are.
    let text = |key: &str| {
        fields::get(&group, key)
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let group_key = bounded_group_key(text("groupKey"));
    let receiver = fields::clipped_line(&text("receiver"), RECEIVER_MAX);
    let external_url = text("externalURL");
    let fallback_source = host(&external_url)
        .or(Some(receiver.as_str()).filter(|r| !r.is_empty()))
        .unwrap_or(dialect.sender);
    let context = Context {
        dialect,
        group_key: Some(group_key.clone()).filter(|k| !k.is_empty()),
        fallback_source: fields::clipped_line(fallback_source, SOURCE_MAX),
    };

    let events: Vec<AlertEvent> = alerts
        .into_iter()
        .enumerate()
        .filter_map(|(i, alert)| event(&format!("alerts[{i}]"), alert, &context, &mut problems))
        .collect();

    if problems.is_empty() {
        Ok(AlertmanagerBatch {
            group_key,
            receiver,
            common_labels,
            details: Value::Object(group),
            events,
        })
    } else {
        Err(problems)
    }
}

/// What every alert of a group shares.
struct Context<'a> {
    dialect: &'a Dialect,
    group_key: Option<String>,
    fallback_source: String,
}

fn event(at: &str, alert: Value, context: &Context, problems: &mut Problems) -> Option<AlertEvent> {
    let mut alert: Map<String, Value> = fields::object(at, alert, true, problems)?;
    let sent_labels = alert.remove("labels").unwrap_or_default();
    let (labels, clipped) = fields::clipped_labels(
        &fields::path(at, "labels"),
        &sent_labels,
        LABELS_READ,
        problems,
    );
    // What was cut is kept whole with the rest of what was sent.
    if clipped {
        alert.insert("labels".into(), sent_labels.clone());
    }
    let status_field = fields::path(at, "status");
    let action = match fields::verbatim(
        &status_field,
        fields::get(&alert, "status"),
        usize::MAX,
        true,
        problems,
    ) {
        Some(status) if status == "firing" => AlertAction::Trigger,
        Some(status) if status == "resolved" => AlertAction::Resolve,
        Some(_) => {
            problems.push(ValidationError::new(
                &status_field,
                "invalid_value",
                "must be firing or resolved",
            ));
            AlertAction::Trigger
        }
        None => AlertAction::Trigger,
    };
    let mut time = |key: &str| {
        fields::time(&fields::path(at, key), fields::get(&alert, key), problems)
            .filter(|t| *t != GO_ZERO_TIME)
    };
    let starts_at = time("startsAt");
    let ends_at = time("endsAt");
    let dedup_key = fields::key(
        &fields::path(at, "fingerprint"),
        fields::get(&alert, "fingerprint"),
        DEDUP_KEY_MAX,
        false,
        problems,
    )
    .unwrap_or_else(|| fingerprint(&sent_labels));

    let annotation = |key: &str| {
        fields::get(&alert, "annotations")
            .get(key)
            .and_then(Value::as_str)
    };
    let summary = [
        annotation("summary"),
        annotation("description"),
        labels.get("alertname").map(String::as_str),
    ]
    .into_iter()
    .flatten()
    .map(|text| fields::clipped_line(text, SUMMARY_MAX))
    .find(|text| !text.is_empty())
    .unwrap_or_else(|| fields::clipped_line(&render(&labels), SUMMARY_MAX));
    let source = [labels.get("instance"), labels.get("job")]
        .into_iter()
        .flatten()
        .map(|text| fields::clipped_line(text, SOURCE_MAX))
        .find(|text| !text.is_empty())
        .unwrap_or_else(|| context.fallback_source.clone());
    let severity = labels
        .get("severity")
        .and_then(|s| AlertSeverity::parse_loose(s))
        .unwrap_or(AlertSeverity::Error);
    let links = context
        .dialect
        .links
        .iter()
        .filter_map(|(key, text)| fields::web_link(fields::get(&alert, key).as_str()?, text))
        .collect();

    Some(AlertEvent {
        action,
        dedup_key: Some(dedup_key),
        summary,
        source,
        severity,
        occurred_at: match action {
            AlertAction::Resolve => ends_at,
            _ => starts_at,
        },
        labels,
        details: Value::Object(alert),
        links,
        group_key: context.group_key.clone(),
    })
}

/// A receiver is a name in Alertmanager's configuration.
const RECEIVER_MAX: usize = 255;

/// The labels an alert's summary, source and severity are read from:
/// kept first when an alert has more labels than Kiroku keeps.
const LABELS_READ: &[&str] = &["alertname", "instance", "job", "severity"];

/// The host of a URL, without user or port.
fn host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next()?,
        None => host_port.split(':').next()?,
    };
    Some(host).filter(|h| !h.is_empty())
}

/// The key Alertmanager itself gives an alert when the sender left out
/// `fingerprint`: Prometheus's fingerprint of its label set (64-bit FNV-1a
/// over the sorted names and values, each followed by a 0xFF byte), in hex.
/// Of the labels as sent, before any was cut, so that alerts differing
/// only beyond the limits stay apart.
fn fingerprint(sent_labels: &Value) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let sorted: BTreeMap<&str, &str> = sent_labels
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?)))
        .collect();
    let mut hash = OFFSET;
    for (name, value) in sorted {
        for part in [name, value] {
            for byte in part.bytes().chain([0xff]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
    }
    format!("{hash:016x}")
}

/// Labels as Prometheus shows them: `{alertname="Down", job="api"}`.
fn render(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::fields::arbitrary;
    use crate::alert::{
        AlertLink, EVENTS_PER_REQUEST_MAX, GROUP_KEY_MAX, LABEL_VALUE_MAX, LABELS_MAX,
    };
    use proptest::prelude::*;
    use serde_json::json;

    /// A version 4 notification with one alert firing and one resolved.
    const GROUP: &str = r#"{
      "version": "4",
      "groupKey": "{}/{severity=\"critical\"}:{alertname=\"ProbeFailure\"}",
      "truncatedAlerts": 0,
      "status": "firing",
      "receiver": "kiroku",
      "groupLabels": {"alertname": "ProbeFailure"},
      "commonLabels": {"alertname": "ProbeFailure", "job": "http_checks", "severity": "critical"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager.example.org:9093",
      "alerts": [
        {
          "status": "firing",
          "labels": {
            "alertname": "ProbeFailure",
            "instance": "https://server.example.org",
            "job": "http_checks",
            "severity": "critical"
          },
          "annotations": {
            "description": "Instance https://server.example.org has been down for over 5m.",
            "summary": "BlackBox Probe Failure: https://server.example.org"
          },
          "startsAt": "2023-02-06T13:08:45.828Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1",
          "fingerprint": "1a30ba71cca2921f"
        },
        {
          "status": "resolved",
          "labels": {
            "alertname": "ProbeFailure",
            "instance": "https://api.example.org",
            "job": "http_checks",
            "severity": "critical"
          },
          "annotations": {
            "description": "Instance https://api.example.org has been down for over 5m."
          },
          "startsAt": "2023-02-06T12:58:45.828Z",
          "endsAt": "2023-02-06T13:10:15.828+01:00",
          "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1",
          "fingerprint": "7c5b1e2f0d9a3b44"
        }
      ]
    }"#;

    fn group_with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut body: Value = serde_json::from_str(GROUP).unwrap();
        change(&mut body);
        serde_json::to_vec(&body).unwrap()
    }

    /// The first alert of a group whose alerts are changed by `change`.
    fn first_alert(change: impl FnOnce(&mut Value)) -> AlertEvent {
        let body = group_with(|b| change(&mut b["alerts"][0]));
        parse(&body).unwrap().events.remove(0)
    }

    fn problems(body: &[u8]) -> Vec<(String, &'static str)> {
        parse(body)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.field, p.code))
            .collect()
    }

    fn one(field: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(field.to_string(), code)]
    }

    #[test]
    fn one_firing_and_one_resolved_alert() {
        let batch = parse(GROUP.as_bytes()).unwrap();
        assert_eq!(
            batch.group_key,
            r#"{}/{severity="critical"}:{alertname="ProbeFailure"}"#
        );
        assert_eq!(batch.receiver, "kiroku");
        assert_eq!(batch.common_labels["job"], "http_checks");
        assert_eq!(
            batch.details["externalURL"],
            "http://alertmanager.example.org:9093"
        );
        assert_eq!(batch.details["truncatedAlerts"], 0);
        assert!(batch.details.get("alerts").is_none());
        assert_eq!(batch.events.len(), 2);

        let firing = &batch.events[0];
        assert_eq!(firing.action, AlertAction::Trigger);
        assert_eq!(firing.dedup_key.as_deref(), Some("1a30ba71cca2921f"));
        assert_eq!(
            firing.summary,
            "BlackBox Probe Failure: https://server.example.org"
        );
        assert_eq!(firing.source, "https://server.example.org");
        assert_eq!(firing.severity, AlertSeverity::Critical);
        assert_eq!(
            firing.occurred_at,
            Some("2023-02-06T13:08:45.828Z".parse().unwrap())
        );
        assert_eq!(firing.labels.len(), 4);
        assert_eq!(firing.group_key.as_deref(), Some(batch.group_key.as_str()));
        assert_eq!(
            firing.links,
            [AlertLink {
                href: "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1".into(),
                text: Some("Source".into()),
            }]
        );
        assert_eq!(
            firing.details["annotations"]["description"],
            "Instance https://server.example.org has been down for over 5m."
        );
        assert_eq!(firing.details["startsAt"], "2023-02-06T13:08:45.828Z");
        assert!(firing.details.get("labels").is_none());

        let resolved = &batch.events[1];
        assert_eq!(resolved.action, AlertAction::Resolve);
        assert_eq!(resolved.dedup_key.as_deref(), Some("7c5b1e2f0d9a3b44"));
        assert_eq!(
            resolved.summary,
            "Instance https://api.example.org has been down for over 5m."
        );
        assert_eq!(
            resolved.occurred_at,
            Some("2023-02-06T12:10:15.828Z".parse().unwrap())
        );
    }

    #[test]
    fn the_version_must_be_4() {
        let body = group_with(|b| b["version"] = json!("3"));
        assert_eq!(problems(&body), one("version", "unsupported_version"));
        let body = group_with(|b| b["version"] = json!(4));
        assert_eq!(problems(&body), one("version", "unsupported_version"));
        let body = group_with(|b| {
            b.as_object_mut().unwrap().remove("version");
        });
        assert_eq!(problems(&body), one("version", "required"));
    }

    /// A group's own text, however long, is not multiplied by its alerts:
    /// the events hold what the body held and a bounded amount more each.
    #[test]
    fn a_groups_text_is_not_copied_into_every_alert_whole() {
        let long = |c: char, n: usize| c.to_string().repeat(n);
        let common: Map<String, Value> = (0..64)
            .map(|i| (format!("c{i}"), json!(long('v', 1000))))
            .collect();
        let alerts = vec![r#"{"status":"firing","labels":{"alertname":"A","c0":"x"}}"#; 200];
        let group = |key: &str| {
            let body = json!({
                "version": "4", "groupKey": key, "receiver": long('r', 100_000),
                "commonLabels": common, "alerts": [],
            })
            .to_string();
            body.replace(
                r#""alerts":[]"#,
                &format!(r#""alerts":[{}]"#, alerts.join(",")),
            )
        };
        let body = group(&(long('k', 100_000) + "1"));
        let events = parse(body.as_bytes()).unwrap().into_events();
        let held = serde_json::to_vec(&events).unwrap().len();
        // Each event: its alert as sent, plus a group key twice and a
        // receiver, each bounded.
        let bound = body.len() + alerts.len() * (2 * GROUP_KEY_MAX + RECEIVER_MAX + 1024);
        assert!(held < bound, "{held} bytes of events from {}", body.len());
        let key = events[0].group_key.clone().unwrap();
        assert!(
            key.len() <= GROUP_KEY_MAX && key.starts_with("kkk"),
            "{key}"
        );
        assert_eq!(
            events[0].details["group"]["receiver"]
                .as_str()
                .unwrap()
                .len(),
            RECEIVER_MAX
        );
        // Common labels the alert does not hold itself are not copied; those
        // it holds are.
        assert_eq!(events[0].details["group"]["commonLabels"], json!({}));
        let body = group(&(long('k', 100_000) + "2"));
        let other = parse(body.as_bytes()).unwrap().into_events();
        assert_ne!(other[0].group_key.clone().unwrap(), key, "groups merged");

        let events = parse(GROUP.as_bytes()).unwrap().into_events();
        assert_eq!(
            events[0].details["group"]["commonLabels"],
            json!({"alertname": "ProbeFailure", "job": "http_checks", "severity": "critical"})
        );
    }

    #[test]
    fn more_alerts_than_a_request_may_carry() {
        let alert = r#"{"status":"firing","labels":{"alertname":"A"},"fingerprint":"f"}"#;
        let alerts = vec![alert; EVENTS_PER_REQUEST_MAX + 1].join(",");
        let body = format!(r#"{{"version":"4","groupKey":"g","alerts":[{alerts}]}}"#);
        assert_eq!(problems(body.as_bytes()), one("alerts", "too_many"));

        let alerts = vec![alert; EVENTS_PER_REQUEST_MAX].join(",");
        let body = format!(r#"{{"version":"4","groupKey":"g","alerts":[{alerts}]}}"#);
        assert_eq!(
            parse(body.as_bytes()).unwrap().events.len(),
            EVENTS_PER_REQUEST_MAX
        );
    }

    #[test]
    fn alerts_are_required() {
        let body = group_with(|b| {
            b.as_object_mut().unwrap().remove("alerts");
        });
        assert_eq!(problems(&body), one("alerts", "required"));
        let body = group_with(|b| b["alerts"] = json!({}));
        assert_eq!(problems(&body), one("alerts", "invalid_type"));
        let body = group_with(|b| b["alerts"][1] = json!("firing"));
        assert_eq!(problems(&body), one("alerts[1]", "invalid_type"));
    }

    #[test]
    fn labels_beyond_the_limits_are_cut_and_kept_whole_in_details() {
        let many: Map<String, Value> = (0..=LABELS_MAX)
            .map(|i| (format!("l{i:03}"), json!("v")))
            .collect();
        let event = first_alert(|a| a["labels"] = Value::Object(many.clone()));
        assert_eq!(event.labels.len(), LABELS_MAX);
        assert!(event.labels.contains_key("l000"));
        assert!(!event.labels.contains_key(&format!("l{LABELS_MAX:03}")));
        assert_eq!(event.details["labels"], Value::Object(many));
        let long = "🔥".repeat(LABEL_VALUE_MAX + 1);
        let event = first_alert(|a| a["labels"]["job"] = json!(long));
        assert_eq!(event.labels["job"].chars().count(), LABEL_VALUE_MAX);
        assert_eq!(event.details["labels"]["job"], json!(long));
        let event = first_alert(|_| {});
        assert!(
            event.details.get("labels").is_none(),
            "nothing cut, nothing kept twice"
        );
        // The labels read for summary, source and severity are kept first,
        // and alerts differing only beyond the limits keep keys of their own.
        let crowded = |last: &str| {
            first_alert(|a| {
                a.as_object_mut().unwrap().remove("fingerprint");
                for i in 0..LABELS_MAX {
                    a["labels"][format!("a{i:03}")] = json!("v");
                }
                a["labels"]["zz"] = json!(last);
            })
        };
        let (first, second) = (crowded("1"), crowded("2"));
        assert_eq!(first.labels.len(), LABELS_MAX);
        assert_eq!(first.labels["severity"], "critical");
        assert_eq!(first.labels["alertname"], "ProbeFailure");
        assert_eq!(first.labels, second.labels);
        assert_ne!(first.dedup_key, second.dedup_key);
        let body = group_with(|b| b["alerts"][0]["labels"]["job"] = json!(["a"]));
        assert_eq!(problems(&body), one("alerts[0].labels", "invalid_type"));
    }

    #[test]
    fn labels_keep_odd_unicode() {
        let event = first_alert(|a| {
            a["labels"]["team"] = json!("\u{200f}فريق\u{202e}");
            a["labels"]["🔥"] = json!("a\u{0}b");
        });
        assert_eq!(event.labels["team"], "\u{200f}فريق\u{202e}");
        assert_eq!(event.labels["🔥"], "a\u{0}b");
    }

    #[test]
    fn an_alert_must_be_firing_or_resolved() {
        let body = group_with(|b| b["alerts"][0]["status"] = json!("pending"));
        assert_eq!(problems(&body), one("alerts[0].status", "invalid_value"));
        let body = group_with(|b| b["alerts"][0]["status"] = Value::Null);
        assert_eq!(problems(&body), one("alerts[0].status", "required"));
    }

    #[test]
    fn bad_times() {
        let body = group_with(|b| {
            b["alerts"][0]["startsAt"] = json!("2023-02-06 13:08");
            b["alerts"][1]["endsAt"] = json!(0);
        });
        assert_eq!(
            problems(&body),
            [
                ("alerts[0].startsAt".to_string(), "invalid_time"),
                ("alerts[1].endsAt".to_string(), "invalid_time"),
            ]
        );
    }

    #[test]
    fn go_zero_time_reads_as_absent() {
        let event = first_alert(|a| {
            a["status"] = json!("resolved");
            a["endsAt"] = json!("0001-01-01T00:00:00Z");
        });
        assert_eq!(event.occurred_at, None);
        assert_eq!(
            first_alert(|a| a["startsAt"] = json!("0001-01-01T00:00:00Z")).occurred_at,
            None
        );
    }

    #[test]
    fn the_summary_falls_back_to_description_then_alertname_then_labels() {
        let event = first_alert(|a| a["annotations"]["summary"] = json!(" \n"));
        assert_eq!(
            event.summary,
            "Instance https://server.example.org has been down for over 5m."
        );
        let event = first_alert(|a| a["annotations"] = json!({}));
        assert_eq!(event.summary, "ProbeFailure");
        let event = first_alert(|a| {
            a["annotations"] = json!("not an object");
            a["labels"] = json!({"job": "api", "env": "prod \"eu\""});
        });
        assert_eq!(event.summary, r#"{env="prod \"eu\"", job="api"}"#);
    }

    #[test]
    fn long_texts_are_cut_rather_than_refused() {
        let event = first_alert(|a| {
            a["annotations"]["summary"] = json!(format!("line one\n{}", "🔥".repeat(SUMMARY_MAX)));
            a["labels"]["instance"] = json!("h".repeat(SOURCE_MAX * 2));
        });
        assert_eq!(event.summary.chars().count(), SUMMARY_MAX);
        assert!(event.summary.starts_with("line one 🔥"));
        assert_eq!(event.source, "h".repeat(SOURCE_MAX));
    }

    #[test]
    fn the_source_falls_back_to_job_then_the_alertmanager() {
        let without_instance = |a: &mut Value| {
            a["labels"].as_object_mut().unwrap().remove("instance");
        };
        assert_eq!(first_alert(without_instance).source, "http_checks");

        let anonymous = |b: &mut Value| {
            b["alerts"][0]["labels"] = json!({"alertname": "A"});
        };
        let source = |change: &dyn Fn(&mut Value)| {
            let body = group_with(|b| {
                anonymous(b);
                change(b);
            });
            parse(&body).unwrap().events.remove(0).source
        };
        assert_eq!(source(&|_| {}), "alertmanager.example.org");
        assert_eq!(source(&|b| b["externalURL"] = json!("")), "kiroku");
        assert_eq!(
            source(&|b| {
                b["externalURL"] = json!(null);
                b["receiver"] = json!("");
            }),
            "alertmanager"
        );
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host("http://am.example.org:9093/x"), Some("am.example.org"));
        assert_eq!(
            host("https://user:pw@am.example.org"),
            Some("am.example.org")
        );
        assert_eq!(host("http://[::1]:9093/"), Some("::1"));
        assert_eq!(host("https://am.example.org?x#y"), Some("am.example.org"));
        assert_eq!(host("am.example.org"), None);
        assert_eq!(host("http:///path"), None);
    }

    #[test]
    fn severity_reads_loosely_and_defaults_to_error() {
        assert_eq!(
            first_alert(|a| a["labels"]["severity"] = json!("page")).severity,
            AlertSeverity::Critical
        );
        assert_eq!(
            first_alert(|a| a["labels"]["severity"] = json!(" Warn ")).severity,
            AlertSeverity::Warning
        );
        let unknown = first_alert(|a| a["labels"]["severity"] = json!("catastrophic"));
        assert_eq!(unknown.severity, AlertSeverity::Error);
        assert_eq!(unknown.labels["severity"], "catastrophic");
        let absent = first_alert(|a| {
            a["labels"].as_object_mut().unwrap().remove("severity");
        });
        assert_eq!(absent.severity, AlertSeverity::Error);
    }

    #[test]
    fn a_missing_fingerprint_is_computed_as_prometheus_does() {
        let event = first_alert(|a| {
            a.as_object_mut().unwrap().remove("fingerprint");
            a["labels"] = json!({"a": "b"});
        });
        assert_eq!(event.dedup_key.as_deref(), Some("d2b371819297f98a"));
        assert_eq!(fingerprint(&json!({})), "cbf29ce484222325");
        let body =
            group_with(|b| b["alerts"][0]["fingerprint"] = json!("f".repeat(DEDUP_KEY_MAX + 1)));
        assert_eq!(problems(&body), one("alerts[0].fingerprint", "too_long"));
        let body = group_with(|b| b["alerts"][0]["fingerprint"] = json!("f\u{0}"));
        assert_eq!(
            problems(&body),
            one("alerts[0].fingerprint", "invalid_characters")
        );
    }

    #[test]
    fn links_that_are_not_web_urls_are_left_out() {
        let event = first_alert(|a| a["generatorURL"] = json!("javascript:alert(1)"));
        assert!(event.links.is_empty());
        assert_eq!(event.details["generatorURL"], "javascript:alert(1)");
    }

    #[test]
    fn bodies_that_are_not_json_objects() {
        let cases: [&[u8]; 4] = [
            b"version=4",
            b"{\"version\": \"\xff\"}",
            br#"[{"version": "4"}]"#,
            b"null",
        ];
        for body in cases {
            assert_eq!(problems(body), one("body", "invalid_json"));
        }
        let deep = "[".repeat(100_000);
        assert_eq!(problems(deep.as_bytes()), one("body", "invalid_json"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(body in arbitrary::json(&[
            "version", "groupKey", "status", "receiver", "commonLabels", "externalURL", "alerts",
            "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint",
            "summary", "description", "alertname", "instance", "job", "severity",
        ])) {
            let _ = parse(&serde_json::to_vec(&body).unwrap());
        }

        #[test]
        fn valid_alerts_read_back_as_sent(
            alerts in proptest::collection::vec(
                (
                    any::<bool>(),
                    proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,20}", 0..8),
                    arbitrary::CLEAN_LINE,
                    0i64..4_000_000_000,
                    "[0-9a-f]{16}",
                ),
                0..5,
            ),
        ) {
            let wire: Vec<Value> = alerts
                .iter()
                .map(|(firing, labels, summary, second, fingerprint)| {
                    let at = Timestamp::from_second(*second).unwrap().to_string();
                    json!({
                        "status": if *firing { "firing" } else { "resolved" },
                        "labels": labels,
                        "annotations": {"summary": summary},
                        "startsAt": at,
                        "endsAt": if *firing { "0001-01-01T00:00:00Z".to_string() } else { at.clone() },
                        "fingerprint": fingerprint,
                    })
                })
                .collect();
            let body = json!({"version": "4", "groupKey": "g", "alerts": wire});
            let batch = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!(batch.events.len(), alerts.len());
            for (event, (firing, labels, summary, second, fingerprint)) in batch.events.iter().zip(&alerts) {
                let action = if *firing { AlertAction::Trigger } else { AlertAction::Resolve };
                prop_assert_eq!(event.action, action);
                prop_assert_eq!(&event.labels, labels);
                prop_assert_eq!(&event.summary, summary);
                prop_assert_eq!(event.occurred_at, Some(Timestamp::from_second(*second).unwrap()));
                prop_assert_eq!(event.dedup_key.as_deref(), Some(fingerprint.as_str()));
                prop_assert_eq!(event.group_key.as_deref(), Some("g"));
            }
        }
    }
}
