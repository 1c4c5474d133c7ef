//! Grafana's unified alerting webhook, payload version 1: Alertmanager's
//! shape (read by `alertmanager`'s code) with links to Grafana's pages.
//! Grafana's own fields (`orgId`, `title`, `state`, `message`; an alert's
//! `values`, `valueString`, `imageURL`) are kept in details as sent.

use super::Problems;
use super::alertmanager::{self, AlertmanagerBatch, Dialect};

pub type GrafanaBatch = AlertmanagerBatch;

const GRAFANA: Dialect = Dialect {
    version: "1",
    sender: "grafana",
    links: &[
        ("generatorURL", "Alert rule"),
        ("dashboardURL", "Dashboard"),
        ("panelURL", "Panel"),
        ("silenceURL", "Silence"),
    ],
};

pub fn parse(body: &[u8]) -> Result<GrafanaBatch, Problems> {
    alertmanager::parse_group(body, &GRAFANA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::fields::arbitrary;
    use crate::alert::{AlertAction, AlertLink, AlertSeverity};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// The example payload of Grafana's webhook notifier documentation.
    const EXAMPLE: &str = r#"{
      "receiver": "My Super Webhook",
      "status": "firing",
      "orgId": 1,
      "alerts": [
        {
          "status": "firing",
          "labels": {
            "alertname": "High memory usage",
            "team": "blue",
            "zone": "us-1"
          },
          "annotations": {
            "description": "The system has high memory usage",
            "runbook_url": "https://myrunbook.com/runbook/1234",
            "summary": "This alert was triggered for zone us-1"
          },
          "startsAt": "2021-10-12T09:51:03.157076+02:00",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
          "fingerprint": "c6eadffa33fcdf37",
          "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
          "dashboardURL": "",
          "panelURL": "",
          "values": {
            "B": 44.23943737541908,
            "C": 1
          }
        },
        {
          "status": "firing",
          "labels": {
            "alertname": "High CPU usage",
            "team": "blue",
            "zone": "eu-1"
          },
          "annotations": {
            "description": "The system has high CPU usage",
            "runbook_url": "https://myrunbook.com/runbook/1234",
            "summary": "This alert was triggered for zone eu-1"
          },
          "startsAt": "2021-10-12T09:56:03.157076+02:00",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
          "fingerprint": "bc97ff14869b13e3",
          "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1",
          "dashboardURL": "",
          "panelURL": "",
          "values": {
            "B": 44.23943737541908,
            "C": 1
          }
        }
      ],
      "groupLabels": {},
      "commonLabels": {
        "team": "blue"
      },
      "commonAnnotations": {},
      "externalURL": "https://play.grafana.org/",
      "version": "1",
      "groupKey": "{}:{}",
      "truncatedAlerts": 0,
      "title": "[FIRING:2]  (blue)",
      "state": "alerting",
      "message": "**Firing**\n\nLabels:\n - alertname = T2\n - team = blue\n - zone = us-1\nAnnotations:\n - description = This is the alert rule checking the second system\n - runbook_url = https://myrunbook.com\n - summary = This is my summary\nSource: https://play.grafana.org/alerting/1afz29v7z/edit\nSilence: https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1\n\nLabels:\n - alertname = T1\n - team = blue\n - zone = eu-1\nAnnotations:\nSource: https://play.grafana.org/alerting/d1rdpdv7k/edit\nSilence: https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1\n"
    }"#;

    #[test]
    fn the_documented_example() {
        let batch = parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(batch.group_key, "{}:{}");
        assert_eq!(batch.receiver, "My Super Webhook");
        assert_eq!(batch.common_labels["team"], "blue");
        assert_eq!(batch.details["orgId"], 1);
        assert_eq!(batch.details["title"], "[FIRING:2]  (blue)");
        assert_eq!(batch.details["state"], "alerting");
        assert_eq!(batch.events.len(), 2);

        let first = &batch.events[0];
        assert_eq!(first.action, AlertAction::Trigger);
        assert_eq!(first.dedup_key.as_deref(), Some("c6eadffa33fcdf37"));
        assert_eq!(first.summary, "This alert was triggered for zone us-1");
        // No instance or job label: the Grafana instance is the source.
        assert_eq!(first.source, "play.grafana.org");
        assert_eq!(first.severity, AlertSeverity::Error);
        assert_eq!(
            first.occurred_at,
            Some("2021-10-12T07:51:03.157076Z".parse().unwrap())
        );
        assert_eq!(first.labels["zone"], "us-1");
        assert_eq!(
            first.details["values"],
            json!({"B": 44.23943737541908, "C": 1})
        );
        assert_eq!(first.group_key.as_deref(), Some("{}:{}"));
        // Empty dashboard and panel URLs make no link.
        assert_eq!(
            first.links,
            [
                AlertLink {
                    href: "https://play.grafana.org/alerting/1afz29v7z/edit".into(),
                    text: Some("Alert rule".into()),
                },
                AlertLink {
                    href: "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1".into(),
                    text: Some("Silence".into()),
                },
            ]
        );
        assert_eq!(
            batch.events[1].dedup_key.as_deref(),
            Some("bc97ff14869b13e3")
        );
    }

    #[test]
    fn dashboard_and_panel_links_and_a_resolved_alert() {
        let mut body: Value = serde_json::from_str(EXAMPLE).unwrap();
        let alert = &mut body["alerts"][0];
        alert["status"] = json!("resolved");
        alert["endsAt"] = json!("2021-10-12T10:01:03Z");
        alert["dashboardURL"] = json!("https://play.grafana.org/d/abc");
        alert["panelURL"] = json!("https://play.grafana.org/d/abc?viewPanel=2");
        alert["imageURL"] = json!("https://play.grafana.org/img/1.png");
        let event = parse(&serde_json::to_vec(&body).unwrap())
            .unwrap()
            .events
            .remove(0);
        assert_eq!(event.action, AlertAction::Resolve);
        assert_eq!(
            event.occurred_at,
            Some("2021-10-12T10:01:03Z".parse().unwrap())
        );
        let texts: Vec<_> = event
            .links
            .iter()
            .filter_map(|l| l.text.as_deref())
            .collect();
        assert_eq!(texts, ["Alert rule", "Dashboard", "Panel", "Silence"]);
        assert_eq!(
            event.details["imageURL"],
            "https://play.grafana.org/img/1.png"
        );
    }

    #[test]
    fn the_version_must_be_1() {
        let body = EXAMPLE.replace(r#""version": "1""#, r#""version": "4""#);
        let problems = parse(body.as_bytes()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].field.as_str(), problems[0].code),
            ("version", "unsupported_version")
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects() {
        let deep = "[".repeat(100_000);
        let cases: [&[u8]; 4] = [b"<html>", b"\"\xfe\"", b"[]", deep.as_bytes()];
        for body in cases {
            let problems = parse(body).unwrap_err();
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
            "version", "groupKey", "receiver", "commonLabels", "externalURL", "alerts", "status",
            "labels", "annotations", "startsAt", "endsAt", "fingerprint", "generatorURL",
            "silenceURL", "dashboardURL", "panelURL", "values", "summary",
        ])) {
            let _ = parse(&serde_json::to_vec(&body).unwrap());
        }

        #[test]
        fn valid_alerts_read_back_as_sent(
            summary in arbitrary::CLEAN_LINE,
            labels in proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,20}", 0..8),
            fingerprint in "[0-9a-f]{16}",
            firing in any::<bool>(),
        ) {
            let body = json!({
                "version": "1",
                "groupKey": "{}:{}",
                "alerts": [{
                    "status": if firing { "firing" } else { "resolved" },
                    "labels": labels,
                    "annotations": {"summary": summary},
                    "fingerprint": fingerprint,
                    "panelURL": "https://grafana.example.com/d/x?viewPanel=1",
                }],
            });
            let event = parse(&serde_json::to_vec(&body).unwrap()).unwrap().events.remove(0);
            prop_assert_eq!(event.action, if firing { AlertAction::Trigger } else { AlertAction::Resolve });
            prop_assert_eq!(&event.summary, &summary);
            prop_assert_eq!(&event.labels, &labels);
            prop_assert_eq!(event.dedup_key, Some(fingerprint));
            prop_assert_eq!(event.links.len(), 1);
        }
    }
}
