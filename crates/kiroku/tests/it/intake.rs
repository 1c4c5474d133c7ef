//! Alert intake over real HTTP: PagerDuty Events v2, Alertmanager, Grafana
//! and generic webhooks, deduplication, routing, grouping, maintenance,
//! back-pressure and bad input, on both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{self, TestApp};

/// Creates an integration as admin; returns (key, id).
async fn integration(t: &TestApp, kind: &str, service: &str) -> (String, String) {
    integration_with(t, json!({ "type": kind, "service": service })).await
}

async fn integration_with(t: &TestApp, body: Value) -> (String, String) {
    let (status, i) = t.post(&t.admin, "/api/v1/integrations", body).await;
    assert_eq!(status, StatusCode::CREATED, "{i}");
    let key = i["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    (key, i["id"].as_str().unwrap().to_string())
}

/// Posts raw JSON anonymously (monitoring systems carry no user token).
async fn send(t: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    t.call(None, reqwest::Method::POST, path, Some(body.clone()))
        .await
}

/// Sends every `(path, body)` at once, as concurrent senders do, so that
/// they share commits; the answers come back in the same order.
async fn send_at_once(t: &TestApp, requests: Vec<(String, Value)>) -> Vec<(StatusCode, Value)> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(path, body)| {
            let (http, url) = (t.http.clone(), t.url(&path));
            tokio::spawn(async move {
                let res = http.post(&url).json(&body).send().await.unwrap();
                (res.status(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn pd_trigger(key: &str, dedup: Option<&str>, summary: &str) -> Value {
    // As in PagerDuty's documentation of the Events API v2.
    let mut e = json!({
        "payload": {
            "summary": summary,
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
            "severity": "critical",
            "component": "postgres",
            "group": "prod-datapipe",
            "class": "deploy",
            "custom_details": { "ping time": "1500ms", "load avg": 0.75 }
        },
        "routing_key": key,
        "images": [{ "src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png", "href": "https://example.com/", "alt": "Example text" }],
        "links": [{ "href": "https://example.com/", "text": "Link text" }],
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.example.com"
    });
    if let Some(d) = dedup {
        e["dedup_key"] = json!(d);
    }
    e
}

async fn alerts(t: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = t.get(&t.responder, &format!("/api/v1/alerts{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Every alert of `service`, page after page.
async fn every_alert(t: &TestApp, service: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = t
            .get(
                &t.viewer,
                &format!("/api/v1/alerts?service={service}&limit=200{cursor}"),
            )
            .await;
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

async fn incident(t: &TestApp, id: &Value) -> Value {
    let (status, body) = t
        .get(
            &t.responder,
            &format!("/api/v1/incidents/{}", id.as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn am_alert(status: &str, fingerprint: &str, labels: Value) -> Value {
    json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": format!("{} is down", labels["instance"].as_str().unwrap_or("?")) },
        "startsAt": "2026-11-21T00:00:00Z",
        "endsAt": if status == "resolved" { "2026-11-21T00:05:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus.example.com/graph",
        "fingerprint": fingerprint
    })
}

fn am_payload(alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"InstanceDown\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "kiroku",
        "groupLabels": { "alertname": "InstanceDown" },
        "commonLabels": { "alertname": "InstanceDown" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com",
        "alerts": alerts
    })
}

/// PagerDuty events: dedup, acknowledge, resolve, re-trigger after close,
/// generated keys, and every step in the audit log.
async fn pagerduty_story(t: &TestApp) {
    let (key, _) = integration(t, "pagerduty", "billing").await;
    let (status, body) = send(
        t,
        "/v2/enqueue",
        &pd_trigger(&key, Some("db-1/disk"), "Disk full on db-1"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed", "dedup_key": "db-1/disk"})
    );
    // A repeat is counted, not opened again.
    let (status, _) = send(
        t,
        "/v2/enqueue",
        &pd_trigger(&key, Some("db-1/disk"), "Disk full on db-1 (still)"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let list = alerts(t, "?service=billing").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let alert = &list[0];
    assert_eq!(alert["count"], 2);
    assert_eq!(alert["status"], "triggered");
    assert_eq!(alert["level"], "critical");
    assert_eq!(alert["summary"], "Disk full on db-1 (still)");
    assert_eq!(alert["labels"]["component"], "postgres");
    let inc = incident(t, &alert["incident_id"]).await;
    assert_eq!(inc["status"], "triggered");
    assert_eq!(
        inc["severity"], "P0",
        "critical maps to the scheme's first level"
    );
    assert_eq!(inc["category"], "server_failure");
    assert_eq!(inc["title"], "Disk full on db-1");

    let ack = json!({"routing_key": key, "event_action": "acknowledge", "dedup_key": "db-1/disk"});
    assert_eq!(send(t, "/v2/enqueue", &ack).await.0, StatusCode::ACCEPTED);
    let inc = incident(t, &alert["incident_id"]).await;
    assert_eq!(inc["status"], "acknowledged");

    let resolve = json!({"routing_key": key, "event_action": "resolve", "dedup_key": "db-1/disk"});
    assert_eq!(
        send(t, "/v2/enqueue", &resolve).await.0,
        StatusCode::ACCEPTED
    );
    let inc = incident(t, &alert["incident_id"]).await;
    assert_eq!(inc["status"], "resolved", "its only alert resolved");
    assert_eq!(alerts(t, "?status=resolved").await.len(), 1);
    // Resolving again changes nothing.
    assert_eq!(
        send(t, "/v2/enqueue", &resolve).await.0,
        StatusCode::ACCEPTED
    );

    // A trigger after the close opens a new alert and a new incident.
    send(
        t,
        "/v2/enqueue",
        &pd_trigger(&key, Some("db-1/disk"), "Disk full again"),
    )
    .await;
    let list = alerts(t, "?service=billing").await;
    assert_eq!(list.len(), 2);
    assert_ne!(list[0]["incident_id"], list[1]["incident_id"]);

    // No dedup key: one is made up and returned.
    let (status, body) = send(t, "/v2/enqueue", &pd_trigger(&key, None, "Something")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["dedup_key"].as_str().unwrap().len(), 32);

    // Change events land on the service's timeline.
    let change = json!({
        "routing_key": key,
        "payload": {
            "summary": "Build Success: Increase snapshot create timeout to 30 seconds",
            "timestamp": "2020-07-17T08:42:58.315+0000",
            "source": "acme-build-pipeline-tool-default-i-9999",
            "custom_details": { "build_state": "passed", "build_number": "2", "run_time": "1236s" }
        },
        "links": [{ "href": "https://acme.pagerduty.dev/build/2", "text": "View more details in Acme!" }]
    });
    let (status, body) = send(t, "/v2/change/enqueue", &change).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, changes) = t.get(&t.viewer, "/api/v1/services/billing/changes").await;
    assert_eq!(
        changes["items"][0]["change"]["summary"],
        "Build Success: Increase snapshot create timeout to 30 seconds"
    );

    let audit = t.audit().await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "integration_create",
        "alert_intake",
        "incident_create",
        "incident_acknowledge",
        "incident_resolve",
        "service_change_record",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // One audit event per request, saying what each event did.
    let effects: Vec<&str> = audit
        .iter()
        .filter(|e| e["action"] == "alert_intake")
        .map(|e| e["after"]["events"][0]["effect"].as_str().unwrap())
        .collect();
    assert_eq!(
        effects[..5],
        ["opened", "repeated", "acknowledged", "resolved", "ignored"]
    );
    let intake = audit
        .iter()
        .find(|e| e["action"] == "alert_intake")
        .unwrap();
    assert_eq!(intake["actor"]["kind"], "integration");
    assert_eq!(intake["actor"]["role"], "integration");
    assert_eq!(intake["target"]["kind"], "integration");
    assert_eq!(intake["after"]["events"][0]["summary"], "Disk full on db-1");
    // The routing key is a credential: it is in no audit event.
    assert!(!serde_json::to_string(&audit).unwrap().contains(&key));
    t.assert_audit_verifies().await;
}

/// Alertmanager groups: alerts sharing labels join one incident, which
/// resolves when the last of them does.
async fn alertmanager_story(t: &TestApp) {
    let (key, _) = integration(t, "alertmanager", "web").await;
    set_routing(t, "web", json!({
                "grouping": {"mode": "labels", "labels": ["alertname"], "window_minutes": 60},
                "rules": [
                    {"name": "db", "when": {"labels": {"team": "db"}}, "then": {"severity": "P1", "category": "database"}},
                    {"name": "noise", "when": {"labels": {"alertname": {"regex": "Watchdog|InfoInhibitor"}}}, "then": {"suppress": true}}
                ]
            })).await;
    let url = format!("/api/v1/integrations/{key}/alertmanager");
    let a = am_alert(
        "firing",
        "fa1",
        json!({"alertname": "InstanceDown", "instance": "web-1", "severity": "critical"}),
    );
    let b = am_alert(
        "firing",
        "fb2",
        json!({"alertname": "InstanceDown", "instance": "web-2", "severity": "critical"}),
    );
    let dog = am_alert(
        "firing",
        "fd3",
        json!({"alertname": "Watchdog", "instance": "-", "severity": "none"}),
    );
    let (status, body) = send(t, &url, &am_payload(vec![a.clone(), b.clone(), dog])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"], 3);
    let firing = alerts(t, "?service=web&status=triggered").await;
    assert_eq!(firing.len(), 3);
    let grouped: Vec<&Value> = firing.iter().filter(|a| a["quiet"].is_null()).collect();
    assert_eq!(grouped.len(), 2);
    assert_eq!(
        grouped[0]["incident_id"], grouped[1]["incident_id"],
        "one incident for the group"
    );
    let watchdog = firing
        .iter()
        .find(|a| a["labels"]["alertname"] == "Watchdog")
        .unwrap();
    assert_eq!(watchdog["quiet"], "suppressed");
    assert!(watchdog["incident_id"].is_null());
    let incident_id = grouped[0]["incident_id"].clone();

    // Alertmanager sends the whole group again, one alert now resolved.
    let a_resolved = am_alert(
        "resolved",
        "fa1",
        json!({"alertname": "InstanceDown", "instance": "web-1", "severity": "critical"}),
    );
    send(t, &url, &am_payload(vec![a_resolved, b.clone()])).await;
    assert_eq!(
        incident(t, &incident_id).await["status"],
        "triggered",
        "one alert still firing"
    );
    let b_resolved = am_alert(
        "resolved",
        "fb2",
        json!({"alertname": "InstanceDown", "instance": "web-2", "severity": "critical"}),
    );
    send(t, &url, &am_payload(vec![b_resolved])).await;
    assert_eq!(incident(t, &incident_id).await["status"], "resolved");
    let (_, timeline) = t
        .get(
            &t.responder,
            &format!(
                "/api/v1/incidents/{}/timeline",
                incident_id.as_str().unwrap()
            ),
        )
        .await;
    let kinds: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["declared", "alert", "status_changed"], "{timeline}");

    // A routing rule picks severity and category.
    let db = am_alert(
        "firing",
        "fdb",
        json!({"alertname": "ReplicationLag", "instance": "db-1", "team": "db"}),
    );
    send(t, &url, &am_payload(vec![db])).await;
    let list = alerts(t, "?service=web&status=triggered").await;
    let db = list.iter().find(|a| a["dedup_key"] == "fdb").unwrap();
    assert_eq!(db["rule"], 0);
    let inc = incident(t, &db["incident_id"]).await;
    assert_eq!(
        (inc["severity"].as_str(), inc["category"].as_str()),
        (Some("P1"), Some("database"))
    );
}

/// Grafana's webhook, the generic format, and maintenance windows.
async fn grafana_generic_maintenance_story(t: &TestApp) {
    let (gkey, _) = integration(t, "grafana", "api").await;
    let grafana = json!({
        "receiver": "kiroku", "status": "firing", "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighLatency", "grafana_folder": "API", "severity": "warning"},
            "annotations": {"summary": "p95 latency above 1s"},
            "startsAt": "2026-11-21T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.example.com/alerting/grafana/abc/view",
            "fingerprint": "a1b2c3", "silenceURL": "https://grafana.example.com/alerting/silence/new",
            "dashboardURL": "", "panelURL": "", "values": {"B": 1.2}, "valueString": "[ var='B' value=1.2 ]"
        }],
        "groupLabels": {"alertname": "HighLatency"}, "commonLabels": {"alertname": "HighLatency"},
        "commonAnnotations": {}, "externalURL": "https://grafana.example.com/",
        "version": "1", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
        "title": "[FIRING:1] HighLatency API", "state": "alerting", "message": "p95 latency above 1s"
    });
    let (status, body) = send(t, &format!("/api/v1/integrations/{gkey}/grafana"), &grafana).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let list = alerts(t, "?service=api").await;
    assert_eq!(list[0]["level"], "warning");
    assert_eq!(incident(t, &list[0]["incident_id"]).await["severity"], "P2");

    let (key, _) = integration(t, "generic", "api").await;
    let url = format!("/api/v1/integrations/{key}/generic");
    let (status, body) = send(
        t,
        &url,
        &json!({"summary": "Queue backlog over 10k", "source": "worker-3", "severity": "warning", "dedup_key": "q"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["effect"], "opened");

    // During maintenance alerts are kept but page nobody.
    let now = jiff::Timestamp::now();
    let (status, w) = t
        .post(
            &t.admin,
            "/api/v1/services/api/maintenance-windows",
            json!({"starts_at": now - jiff::SignedDuration::from_mins(1), "ends_at": now + jiff::SignedDuration::from_mins(30), "reason": "DB upgrade"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let (_, body) = send(
        t,
        &url,
        &json!({"summary": "Replica down", "source": "db-2", "dedup_key": "m"}),
    )
    .await;
    assert_eq!(body["results"][0]["effect"], "opened");
    assert!(body["results"][0]["incident_id"].is_null());
    let alert = t
        .get(
            &t.viewer,
            &format!(
                "/api/v1/alerts/{}",
                body["results"][0]["alert_id"].as_str().unwrap()
            ),
        )
        .await
        .1;
    assert_eq!(alert["quiet"], "maintenance");
    let (status, _) = t
        .call(
            Some(&t.admin),
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/services/api/maintenance-windows/{}",
                w["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = send(
        t,
        &url,
        &json!({"summary": "Replica down", "source": "db-3"}),
    )
    .await;
    assert!(
        !body["results"][0]["incident_id"].is_null(),
        "pages again after the window"
    );

    // One request may mix actions; a repeat in the same batch is counted.
    let (status, body) = send(
        t,
        &url,
        &json!({"events": [
            {"summary": "A", "source": "s", "dedup_key": "batch"},
            {"summary": "A again", "source": "s", "dedup_key": "batch"},
            {"action": "resolve", "dedup_key": "batch"},
            {"summary": "A reopened", "source": "s", "dedup_key": "batch"}
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let effects: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["effect"].as_str().unwrap())
        .collect();
    assert_eq!(effects, ["opened", "repeated", "resolved", "opened"]);
    assert_ne!(
        body["results"][0]["alert_id"],
        body["results"][3]["alert_id"]
    );
}

/// Many concurrent senders: every one answered, every alert stored once,
/// and the audit tree intact.
async fn concurrent_story(t: &TestApp) {
    let (key, _) = integration(t, "generic", "load").await;
    let path = format!("/api/v1/integrations/{key}/generic");
    let requests = (0..200)
        .map(|i| {
            let body = json!({"summary": format!("alert {i}"), "source": "load", "dedup_key": format!("k{}", i % 50)});
            (path.clone(), body)
        })
        .collect();
    for (status, body) in send_at_once(t, requests).await {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let total: i64 = every_alert(t, "load")
        .await
        .iter()
        .map(|a| a["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 200, "every trigger counted once");
    assert_eq!(alerts(t, "?service=load&limit=200").await.len(), 50);
    t.assert_audit_verifies().await;
}

/// A person resolving an incident resolves the alerts still open in it,
/// as PagerDuty's alerts follow their incident: the next trigger of one
/// opens a new alert and a new incident, which pages again, instead of
/// being counted on a resolved one.
async fn resolving_an_incident_resolves_its_alerts_story(t: &TestApp) {
    let (key, _) = integration(t, "generic", "pay").await;
    let grouping =
        json!({"grouping": {"mode": "labels", "labels": ["cluster"], "window_minutes": 60}});
    set_routing(t, "pay", grouping).await;
    let path = format!("/api/v1/integrations/{key}/generic");
    let trigger = |dedup: &str| json!({"summary": format!("{dedup} failing"), "source": "pay-1", "dedup_key": dedup, "labels": {"cluster": "c1"}});
    let (_, first) = send(
        t,
        &path,
        &json!({"events": [trigger("cpu"), trigger("disk"), trigger("net")]}),
    )
    .await;
    let incident_id = first["results"][0]["incident_id"].clone();
    assert!(
        first["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["incident_id"] == incident_id)
    );
    // One alert resolved by its sender first; the person resolves the rest.
    let (status, _) = send(t, &path, &json!({"action": "resolve", "dedup_key": "net"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let before = alerts(t, "?service=pay").await;
    let id = incident_id.as_str().unwrap();
    let (status, body) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        alerts(t, "?service=pay&status=resolved").await.len(),
        1,
        "acknowledging leaves them"
    );
    // By its number, as the pages name it.
    let number = incident(t, &incident_id).await["number"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{number}/resolve"),
            json!({"note": "fixed by hand"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = alerts(t, "?service=pay").await;
    assert_eq!(after.len(), 3);
    for a in &after {
        assert_eq!(a["status"], "resolved", "{a}");
        let was = before.iter().find(|b| b["id"] == a["id"]).unwrap();
        assert_eq!(
            a["last_seen_at"], was["last_seen_at"],
            "the sender said nothing"
        );
    }
    let (_, timeline) = t
        .get(&t.responder, &format!("/api/v1/incidents/{id}/timeline"))
        .await;
    assert!(
        timeline["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["body"] == "2 alerts resolved with the incident"),
        "{timeline}"
    );

    // Still firing: the next trigger opens a new alert and a new incident.
    let (_, again) = send(t, &path, &trigger("cpu")).await;
    let result = &again["results"][0];
    assert_eq!(result["effect"], "opened", "{again}");
    assert_ne!(result["incident_id"], incident_id);
    assert_eq!(
        incident(t, &result["incident_id"]).await["status"],
        "triggered"
    );
    assert_eq!(alerts(t, "?service=pay&status=triggered").await.len(), 1);
    // The sender's resolve of the old key now finds the new alert only.
    let (_, resolved) = send(t, &path, &json!({"action": "resolve", "dedup_key": "cpu"})).await;
    assert_eq!(resolved["results"][0]["alert_id"], result["alert_id"]);
    assert_eq!(
        incident(t, &result["incident_id"]).await["status"],
        "resolved"
    );

    // An incident with nothing open left records no alert change.
    let (_, lone) = send(
        t,
        &path,
        &json!({"summary": "lone", "source": "x", "dedup_key": "lone"}),
    )
    .await;
    let lone = lone["results"][0]["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = send(t, &path, &json!({"action": "resolve", "dedup_key": "lone"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{lone}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "already resolved by its alert: {body}"
    );
    let audit = t.audit().await;
    let resolves: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "alert_resolve")
        .collect();
    assert_eq!(resolves.len(), 1, "{resolves:?}");
    assert_eq!(resolves[0]["actor"]["name"], "responder");
    assert_eq!(resolves[0]["target"]["id"], incident_id);
    assert_eq!(resolves[0]["after"]["alerts"].as_array().unwrap().len(), 2);
    t.assert_audit_verifies().await;
}

/// What PostgreSQL cannot keep: NUL in text, and index entries over 2,704
/// bytes. A key an alert is found by again holding NUL is refused with the
/// field named, on every store alike; a label value that groups alerts may
/// hold NUL, and may be as long as any label value.
async fn nul_and_overlong_keys_story(t: &TestApp) {
    let (pd, _) = integration(t, "pagerduty", "nul").await;
    let mut dedup = pd_trigger(&pd, Some("db\u{0}1"), "s");
    let mut routing = pd_trigger(&pd, None, "s");
    routing["routing_key"] = json!(format!("{pd}\u{0}"));
    for (event, field) in [(&mut dedup, "dedup_key"), (&mut routing, "routing_key")] {
        let (status, body) = send(t, "/v2/enqueue", event).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["status"], "invalid event", "{body}");
        assert_eq!(
            (body["problems"][0]["code"].as_str(), body["field"].as_str()),
            (Some("invalid_characters"), Some(field)),
            "{body}"
        );
    }
    let (generic, _) = integration(t, "generic", "nul").await;
    let generic = format!("/api/v1/integrations/{generic}/generic");
    let (am, _) = integration(t, "alertmanager", "nul").await;
    let am = format!("/api/v1/integrations/{am}/alertmanager");
    let (grafana, _) = integration(t, "grafana", "nul").await;
    let grafana = format!("/api/v1/integrations/{grafana}/grafana");
    let fingerprinted = am_payload(vec![
        am_alert("firing", "f1", json!({"alertname": "A", "instance": "a"})),
        am_alert(
            "firing",
            "f\u{0}2",
            json!({"alertname": "A", "instance": "b"}),
        ),
    ]);
    let mut grafana_fingerprinted = fingerprinted.clone();
    grafana_fingerprinted["version"] = json!("1");
    let refused = [
        (
            &generic,
            json!({"summary": "s", "source": "s", "dedup_key": "k\u{0}"}),
            "dedup_key",
        ),
        (&am, fingerprinted.clone(), "alerts[1].fingerprint"),
        (&grafana, grafana_fingerprinted, "alerts[1].fingerprint"),
    ];
    for (url, body, field) in refused {
        let (status, answer) = send(t, url, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {answer}");
        assert_eq!(
            (answer["code"].as_str(), answer["field"].as_str()),
            (Some("invalid_characters"), Some(field)),
            "{answer}"
        );
    }
    assert!(alerts(t, "?service=nul").await.is_empty());

    // Grouped by a label whose value holds NUL: the two alerts sharing it
    // join one incident; a value spelling NUL's escape does not join them.
    set_routing(
        t,
        "nul",
        json!({"grouping": {"mode": "labels", "labels": ["shard"], "window_minutes": 60}}),
    )
    .await;
    let nul = "a\u{0}b".to_string();
    let sent = [
        ("one", nul.clone()),
        ("two", nul.clone()),
        ("three", "a\\0b".into()),
    ];
    let incidents = incidents_by_shard(t, &generic, &sent).await;
    assert!(incidents[0].is_string() && incidents[0] == incidents[1]);
    assert_ne!(incidents[0], incidents[2]);
    let stored = alerts(t, "?service=nul").await;
    let one = stored.iter().find(|a| a["dedup_key"] == "one").unwrap();
    assert_eq!(one["labels"]["shard"], nul.as_str());

    // Grouped by label values of 1,024 characters of three bytes each, in
    // no order PostgreSQL could compress: the same value joins, one
    // differing in its last character does not.
    let long: String = (0..1023u32)
        .map(|i| char::from_u32(0x4e00 + i * 7919 % 20_000).unwrap())
        .collect();
    let sent = [
        ("long-1", format!("{long}害")),
        ("long-2", format!("{long}害")),
        ("long-3", format!("{long}碍")),
    ];
    let incidents = incidents_by_shard(t, &generic, &sent).await;
    assert!(incidents[0].is_string() && incidents[0] == incidents[1]);
    assert_ne!(incidents[0], incidents[2]);

    // Grouped by the sender's group, whose key holds NUL.
    set_routing(
        t,
        "nul",
        json!({"grouping": {"mode": "sender", "window_minutes": 60}}),
    )
    .await;
    let mut group = am_payload(vec![
        am_alert("firing", "g1", json!({"alertname": "B", "instance": "a"})),
        am_alert("firing", "g2", json!({"alertname": "B", "instance": "b"})),
    ]);
    group["groupKey"] = json!("{}:{alertname=\"B\u{0}\"}");
    let (status, body) = send(t, &am, &group).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let incidents: Vec<&Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["incident_id"])
        .collect();
    assert_eq!(incidents.len(), 2, "{body}");
    assert!(
        incidents[0].is_string() && incidents[0] == incidents[1],
        "{body}"
    );
    t.assert_audit_verifies().await;
}

/// Every value of a good request of each format, in turn, replaced by
/// hostile ones (NUL, 3 KB of text no store compresses, 70,000
/// characters, numbers out of range, the wrong type): each request is
/// answered 202 or 4xx, never 5xx, with the service grouping by labels so
/// that label values reach the stored grouping key.
async fn hostile_values_in_every_field_story(t: &TestApp) {
    let mut keys = std::collections::BTreeMap::new();
    for kind in ["pagerduty", "alertmanager", "grafana", "generic"] {
        let body = json!({"type": kind, "service": "hostile", "rate_limit_per_second": 1_000_000});
        keys.insert(kind, integration_with(t, body).await.0);
    }
    set_routing(
        t,
        "hostile",
        json!({"grouping": {"mode": "labels", "labels": ["shard", "alertname"], "window_minutes": 60}}),
    )
    .await;
    let links = json!([{"href": "https://example.com/", "text": "t"}]);
    let mut alertmanager = am_payload(vec![am_alert(
        "firing",
        "0123456789abcdef",
        json!({"alertname": "A", "instance": "i", "shard": "s"}),
    )]);
    let mut grafana = alertmanager.clone();
    grafana["version"] = json!("1");
    let formats = [
        (
            "/v2/enqueue".to_string(),
            pd_trigger(&keys["pagerduty"], Some("d"), "s"),
        ),
        (
            "/v2/change/enqueue".to_string(),
            json!({"routing_key": keys["pagerduty"], "payload": {"summary": "s", "source": "x", "timestamp": "2026-12-07T00:00:00Z", "custom_details": {"a": "b"}}, "links": links}),
        ),
        (
            format!("/api/v1/integrations/{}/alertmanager", keys["alertmanager"]),
            std::mem::take(&mut alertmanager),
        ),
        (
            format!("/api/v1/integrations/{}/grafana", keys["grafana"]),
            grafana,
        ),
        (
            format!("/api/v1/integrations/{}/generic", keys["generic"]),
            json!({"summary": "s", "source": "x", "severity": "critical", "dedup_key": "d", "labels": {"shard": "s"}, "details": {"a": "b"}, "links": links}),
        ),
    ];
    let uncompressible: String = (0..1024u32)
        .map(|i| char::from_u32(0x4e00 + i * 7919 % 20_000).unwrap())
        .collect();
    let hostile = [
        json!("a\u{0}b"),
        json!(uncompressible),
        json!("\u{202e}evil\u{202c}"),
        json!("x".repeat(70_000)),
        json!(""),
        json!(1e308),
        json!(u64::MAX),
        json!(null),
        json!([[[[]]]]),
        json!({}),
    ];
    let mut answered = std::collections::BTreeMap::new();
    for (path, good) in &formats {
        for at in value_paths(good) {
            // The routing key is the credential: hostile ones are the
            // bad-input stories' business.
            if at.first().map(String::as_str) == Some("routing_key") {
                continue;
            }
            for value in &hostile {
                let mut body = good.clone();
                *body.pointer_mut(&pointer(&at)).unwrap() = value.clone();
                let (status, answer) = send(t, path, &body).await;
                assert!(
                    status == StatusCode::ACCEPTED || status.is_client_error(),
                    "{path} with {at:?} = {:.40}: {status} {answer}",
                    value.to_string()
                );
                *answered.entry(status.as_u16()).or_insert(0) += 1;
            }
        }
    }
    // Both kinds of answer were given: the values reached the store.
    let count = |status: u16| answered.get(&status).copied().unwrap_or(0);
    assert!(count(202) > 100 && count(400) > 100, "{answered:?}");
    t.assert_audit_verifies().await;
}

/// The path of every value in `v` but `v` itself, containers included, as
/// keys and indices.
fn value_paths(v: &Value) -> Vec<Vec<String>> {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, x)| (k.clone(), x)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (i.to_string(), x))
            .collect(),
        _ => Vec::new(),
    };
    let mut paths = Vec::new();
    for (step, child) in children {
        paths.push(vec![step.clone()]);
        for mut below in value_paths(child) {
            below.insert(0, step.clone());
            paths.push(below);
        }
    }
    paths
}

/// A JSON pointer (RFC 6901) to `path`.
fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|step| format!("/{}", step.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Sends a generic alert for each `(dedup key, shard label)` to `url`;
/// returns the incident each joined or opened, in order.
async fn incidents_by_shard(t: &TestApp, url: &str, sent: &[(&str, String)]) -> Vec<Value> {
    let mut incidents = Vec::with_capacity(sent.len());
    for (dedup, shard) in sent {
        let alert =
            json!({"summary": "s", "source": "s", "dedup_key": dedup, "labels": {"shard": shard}});
        let (status, body) = send(t, url, &alert).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{dedup}: {body}");
        incidents.push(body["results"][0]["incident_id"].clone());
    }
    incidents
}

/// Sets `service`'s routing, as admin.
async fn set_routing(t: &TestApp, service: &str, routing: Value) {
    let path = format!("/api/v1/services/{service}/routing");
    let (status, body) = t
        .call(Some(&t.admin), reqwest::Method::PUT, &path, Some(routing))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

macro_rules! on_both_backends {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $story() {
                    let t = super::TestApp::sqlite().await;
                    super::$story(&t).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $story() {
                    let Some(store) = super::support::postgres().await else { return };
                    let t = super::TestApp::on(store).await;
                    super::$story(&t).await;
                }
            )*
        }
    };
}

on_both_backends!(
    pagerduty_story,
    alertmanager_story,
    grafana_generic_maintenance_story,
    concurrent_story,
    resolving_an_incident_resolves_its_alerts_story,
    nul_and_overlong_keys_story,
    pagerduty_bad_input_story,
    webhook_bad_input_and_huge_groups_story,
    hostile_values_in_every_field_story,
);

/// Writes a routing category straight into the store, as another node or
/// a configuration change since would leave it.
async fn store_routing_category(t: &TestApp, service: &str, category: &str) {
    let store = &t.store.store;
    let mut service = store.service(service).await.unwrap().unwrap();
    let version = service.version;
    service.routing.category = category.into();
    service.version += 1;
    let mut tx = store.begin().await.unwrap();
    tx.update_service(&service, version).await.unwrap();
    crate::support::commit_as_system(
        tx,
        kiroku_domain::Operation::Update,
        "service_routing_update",
        kiroku_domain::Target::new("service", Some(service.id.to_string())),
    )
    .await;
}

/// A service whose stored routing no longer compiles (its category since
/// taken out of the configuration, say) fails its own senders only, not
/// those of other services whose requests share a commit with theirs. A
/// routing changed behind this node's back is read again within a second.
#[tokio::test]
async fn a_routing_that_no_longer_compiles_fails_its_own_senders_only() {
    let t = TestApp::sqlite().await;
    let (broken, _) = integration(&t, "generic", "broken").await;
    let (fine, _) = integration(&t, "generic", "fine").await;
    store_routing_category(&t, "broken", "retired-category").await;

    let requests = (0..40)
        .map(|i| {
            let key = if i % 2 == 0 { &broken } else { &fine };
            let body = json!({"summary": format!("alert {i}"), "source": "h", "dedup_key": format!("k{i}")});
            (format!("/api/v1/integrations/{key}/generic"), body)
        })
        .collect();
    for (i, (status, body)) in send_at_once(&t, requests).await.into_iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
            assert_eq!(body["code"], "internal", "{body}");
        } else {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
    }
    assert_eq!(alerts(&t, "?service=fine&limit=200").await.len(), 20);
    assert!(alerts(&t, "?service=broken&limit=200").await.is_empty());

    // A routing that failed is not kept: repaired, it works at once.
    let path = format!("/api/v1/integrations/{broken}/generic");
    let alert = |n: &str| json!({"summary": n, "source": "h", "dedup_key": n});
    store_routing_category(&t, "broken", "server_failure").await;
    assert_eq!(send(&t, &path, &alert("a")).await.0, StatusCode::ACCEPTED);
    // A good routing is kept for a second, then read again.
    store_routing_category(&t, "broken", "retired-category").await;
    assert_eq!(send(&t, &path, &alert("b")).await.0, StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    for n in ["c", "d"] {
        let (status, body) = send(&t, &path, &alert(n)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{n}: {body}");
    }
}

/// Senders' clocks run ahead of ours. A time a little ahead reads as now,
/// one far ahead is dropped, and neither fails the senders whose alerts
/// share its commit.
#[tokio::test]
async fn a_sender_clock_ahead_of_ours_fails_nobody() {
    let t = TestApp::sqlite().await;
    let (key, _) = integration(&t, "generic", "skew").await;
    set_routing(&t, "skew", json!({"grouping": {"mode": "per_alert"}})).await;
    let path = format!("/api/v1/integrations/{key}/generic");
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now + jiff::SignedDuration::from_secs(secs)).to_string();
    let mut sent = vec![
        ("ahead-30s".to_string(), Some(at(30))),
        ("ahead-1h".to_string(), Some(at(3600))),
        ("past".to_string(), Some("2026-01-01T00:00:00Z".to_string())),
    ];
    sent.extend((0..30).map(|i| (format!("plain-{i}"), None)));
    let requests = sent
        .iter()
        .map(|(dedup, timestamp)| {
            let mut body = json!({"summary": dedup, "source": "h", "dedup_key": dedup});
            if let Some(ts) = timestamp {
                body["timestamp"] = json!(ts);
            }
            (path.clone(), body)
        })
        .collect();
    let mut incidents = std::collections::HashMap::new();
    for ((dedup, _), (status, body)) in sent.iter().zip(send_at_once(&t, requests).await) {
        assert_eq!(status, StatusCode::ACCEPTED, "{dedup}: {body}");
        incidents.insert(dedup.clone(), body["results"][0]["incident_id"].clone());
    }
    let ahead = incident(&t, &incidents["ahead-30s"]).await;
    assert_eq!(ahead["occurred_at"], ahead["detected_at"], "{ahead}");
    let far = incident(&t, &incidents["ahead-1h"]).await;
    assert_eq!(far["occurred_at"], Value::Null, "{far}");
    let past = incident(&t, &incidents["past"]).await;
    assert_eq!(past["occurred_at"], "2026-01-01T00:00:00Z", "{past}");
}

async fn send_raw(
    t: &TestApp,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let res = t
        .http
        .post(t.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

async fn pagerduty_bad_input_story(t: &TestApp) {
    let (key, _) = integration(t, "pagerduty", "billing").await;
    let good = pd_trigger(&key, Some("k"), "ok");
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut e = good.clone();
                e["routing_key"] = json!("0123456789abcdef0123456789abcdef");
                e
            },
            "routing_key",
        ),
        (
            {
                let mut e = good.clone();
                e["event_action"] = json!("explode");
                e
            },
            "event_action",
        ),
        (
            {
                let mut e = good.clone();
                e["payload"].as_object_mut().unwrap().remove("summary");
                e
            },
            "payload.summary",
        ),
        (
            {
                let mut e = good.clone();
                e["payload"].as_object_mut().unwrap().remove("source");
                e
            },
            "payload.source",
        ),
        (
            {
                let mut e = good.clone();
                e["payload"]["severity"] = json!("disaster");
                e
            },
            "payload.severity",
        ),
        (
            {
                let mut e = good.clone();
                e["payload"]["timestamp"] = json!("yesterday");
                e
            },
            "payload.timestamp",
        ),
        (
            {
                let mut e = good.clone();
                e["payload"]["summary"] = json!("x".repeat(1025));
                e
            },
            "payload.summary",
        ),
        (
            {
                let mut e = good.clone();
                e["dedup_key"] = json!("k".repeat(256));
                e
            },
            "dedup_key",
        ),
        (
            json!({"routing_key": key, "event_action": "resolve"}),
            "dedup_key",
        ),
        (json!([1, 2, 3]), "body"),
    ];
    for (event, field) in cases {
        let (status, body) = send(t, "/v2/enqueue", &event).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["status"], "invalid event", "{body}");
        assert_eq!(body["message"], "Event object is invalid");
        assert!(
            body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap().starts_with(field)),
            "{field} not named in {body}"
        );
        assert!(
            body["code"].is_string() && body["field"].is_string(),
            "{body}"
        );
    }
    for raw in [
        b"not json".to_vec(),
        b"{\"a\":".to_vec(),
        vec![0xff, 0xfe],
        "[".repeat(100_000).into_bytes(),
    ] {
        let (status, body, _) = send_raw(t, "/v2/enqueue", raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["status"], "invalid event");
    }
    // Over PagerDuty's 512 KB limit.
    let mut big = good.clone();
    big["payload"]["custom_details"] = json!({ "blob": "x".repeat(600 * 1024) });
    let (status, body, _) = send_raw(t, "/v2/enqueue", serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    // A PagerDuty key at a webhook URL, and the other way round.
    let (status, body) = send(
        t,
        &format!("/api/v1/integrations/{key}/generic"),
        &json!({"summary": "s", "source": "s"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("wrong_integration_type"))
    );
    let (generic_key, _) = integration(t, "generic", "pd").await;
    let (status, body) = send(t, "/v2/enqueue", &pd_trigger(&generic_key, None, "s")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["status"], "invalid event", "{body}");
    assert_eq!(
        (body["problems"][0]["code"].as_str(), body["field"].as_str()),
        (Some("wrong_integration_type"), Some("routing_key")),
        "{body}"
    );
    // Nothing of the above became an alert, and the server is still up.
    assert!(alerts(t, "").await.is_empty());
    assert_eq!(send(t, "/v2/enqueue", &good).await.0, StatusCode::ACCEPTED);
}

async fn webhook_bad_input_and_huge_groups_story(t: &TestApp) {
    let (key, _) = integration(t, "alertmanager", "web").await;
    let url = format!("/api/v1/integrations/{key}/alertmanager");
    let (status, body) = send(
        t,
        "/api/v1/integrations/00000000000000000000000000000000/alertmanager",
        &am_payload(vec![]),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("unknown_routing_key"),
            Some("key")
        )
    );
    for (raw, code) in [
        (b"<xml/>".to_vec(), "invalid_json"),
        ("[".repeat(100_000).into_bytes(), "invalid_json"),
        (
            serde_json::to_vec(&json!({"version": "3", "alerts": []})).unwrap(),
            "unsupported_version",
        ),
    ] {
        let (status, body, _) = send_raw(t, &url, raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["field"].is_string() && body["message"].is_string());
    }
    // The content type is not what admits a body: `curl -d` declares a form.
    for declared in ["text/plain", "application/x-www-form-urlencoded"] {
        let res = t
            .http
            .post(t.url(&url))
            .header("content-type", declared)
            .body(serde_json::to_vec(&am_payload(vec![])).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{declared}");
    }
    // Labels in odd Unicode are kept exactly.
    let odd = json!({"alertname": "Odd", "instance": "\u{202e}evil\u{202c}", "emoji": "🔥🔥", "nul": "a\u{0}b", "日本語": "障害"});
    let (status, _) = send(
        t,
        &url,
        &am_payload(vec![am_alert("firing", "odd", odd.clone())]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let stored = alerts(t, "").await;
    assert_eq!(stored[0]["labels"], odd);
    // The group's common label is not this alert's own: not copied to it.
    assert_eq!(stored[0]["details"]["group"]["commonLabels"], json!({}));
    assert_eq!(
        stored[0]["details"]["group"]["groupKey"],
        "{}:{alertname=\"InstanceDown\"}"
    );

    // A group of 10,000 alerts is taken whole; 10,001 is refused whole.
    set_routing(
        t,
        "web",
        json!({"grouping": {"mode": "sender", "window_minutes": 60}}),
    )
    .await;
    let many: Vec<Value> = (0..10_000)
        .map(|i| {
            am_alert(
                "firing",
                &format!("f{i}"),
                json!({"alertname": "Many", "instance": format!("host-{i}")}),
            )
        })
        .collect();
    let (status, body) = send(t, &url, &am_payload(many.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"], 10_000);
    let mut too_many = many;
    too_many.push(am_alert(
        "firing",
        "one-more",
        json!({"alertname": "Many", "instance": "x"}),
    ));
    let (status, body) = send(t, &url, &am_payload(too_many)).await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too_many"), Some("alerts"))
    );
    // A hostile group: 10,000 alerts under a 1 MB group key and 64 KB of
    // common labels they do not hold. Copied into every alert, that was
    // 20 GB; now each alert carries a bounded key.
    let mut hostile = am_payload(
        (0..10_000)
            .map(|i| am_alert("firing", &format!("h{i}"), json!({"alertname": "Hostile"})))
            .collect(),
    );
    hostile["groupKey"] = json!("k".repeat(1_000_000));
    hostile["commonLabels"] = (0..64)
        .map(|i| (format!("c{i}"), json!("v".repeat(1000))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let (status, body) = send(t, &url, &hostile).await;
    assert_eq!(
        (status, body["events"].as_u64()),
        (StatusCode::ACCEPTED, Some(10_000)),
        "{body}"
    );
    let stored = alerts(t, "").await;
    let key = stored[0]["details"]["group"]["groupKey"].as_str().unwrap();
    assert!(key.len() <= 1024 && key.starts_with("kkk"), "{}", key.len());
    assert_eq!(stored[0]["details"]["group"]["commonLabels"], json!({}));
    // More than 16 MiB.
    let (status, body, _) = send_raw(t, &url, vec![b' '; 17 * 1024 * 1024]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    t.assert_audit_verifies().await;
}

#[tokio::test]
async fn a_flood_from_one_integration_is_throttled_and_the_others_are_not() {
    let t = TestApp::sqlite().await;
    let (noisy, _) = integration_with(
        &t,
        json!({"type": "generic", "service": "noisy", "rate_limit_per_second": 5}),
    )
    .await;
    let (quiet, _) = integration(&t, "generic", "quiet").await;
    let mut throttled = 0;
    for i in 0..40 {
        let res = t
            .http
            .post(t.url(&format!("/api/v1/integrations/{noisy}/generic")))
            .json(&json!({"summary": format!("flood {i}"), "source": "x"}))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled += 1;
            let retry: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry));
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["code"], "rate_limited");
        } else {
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
        // The other integration is unaffected throughout.
        let (status, _) = send(
            &t,
            &format!("/api/v1/integrations/{quiet}/generic"),
            &json!({"summary": "fine", "source": "y", "dedup_key": "q"}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert!(
        throttled >= 25,
        "only {throttled} of 40 throttled at 5/s with bursts of 10"
    );
    // A key sent to another kind's URL is refused for that, and spends
    // none of its integration's rate.
    let (slow, _) = integration_with(
        &t,
        json!({"type": "generic", "service": "quiet", "rate_limit_per_second": 1}),
    )
    .await;
    for _ in 0..10 {
        let (status, body) = send(
            &t,
            &format!("/api/v1/integrations/{slow}/alertmanager"),
            &json!([]),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("wrong_integration_type"))
        );
        let (status, body) = send(&t, "/v2/enqueue", &pd_trigger(&slow, None, "s")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, body) = send(
        &t,
        &format!("/api/v1/integrations/{slow}/generic"),
        &json!({"summary": "fine", "source": "z"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // PagerDuty's shape for the same.
    let (pd, _) = integration_with(
        &t,
        json!({"type": "pagerduty", "service": "noisy", "rate_limit_per_second": 1}),
    )
    .await;
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..5 {
        last = send(&t, "/v2/enqueue", &pd_trigger(&pd, Some("x"), "flood")).await;
    }
    assert_eq!(last.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(last.1["status"], "throttle event");
}

#[tokio::test]
async fn managing_integrations_needs_the_right_role_and_valid_rules() {
    let t = TestApp::sqlite().await;
    let (key, id) = integration(&t, "alertmanager", "web").await;
    // Anonymous, viewer, responder.
    let (status, _) = t
        .call(None, reqwest::Method::GET, "/api/v1/alerts", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for user in [&t.viewer, &t.responder, &t.auditor] {
        let (status, body) = t
            .post(
                user,
                "/api/v1/integrations",
                json!({"type": "generic", "service": "web"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = t.post(user, "/api/v1/services", json!({"name": "x"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Keys are shown to those who manage integrations only.
    let (_, list) = t.get(&t.responder, "/api/v1/integrations").await;
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["items"][0]["key"], "");
    let (_, list) = t.get(&t.admin, "/api/v1/integrations?service=web").await;
    assert_eq!(list["items"][0]["key"], key.as_str());

    let bad = [
        (
            json!({"type": "nagios", "service": "web"}),
            "type",
            "unknown_value",
        ),
        (
            json!({"type": "generic", "service": ""}),
            "service",
            "required",
        ),
        (
            json!({"type": "generic", "service": "web", "rate_limit_per_second": 0}),
            "rate_limit_per_second",
            "out_of_range",
        ),
        (
            json!({"type": "generic", "service": "web", "colour": "red"}),
            "colour",
            "unknown_field",
        ),
    ];
    for (body, field, code) in bad {
        let (status, res) = t.post(&t.admin, "/api/v1/integrations", body).await;
        assert!(status.is_client_error(), "{res}");
        assert_eq!(
            (res["field"].as_str(), res["code"].as_str()),
            (Some(field), Some(code)),
            "{res}"
        );
    }
    // `kind`, as the answer names it, is read as `type`.
    let (status, res) = t
        .post(
            &t.admin,
            "/api/v1/integrations",
            json!({"kind": "grafana", "service": "web"}),
        )
        .await;
    assert_eq!(
        (status, res["kind"].as_str()),
        (StatusCode::CREATED, Some("grafana")),
        "{res}"
    );
    let routing = |body: Value| {
        let t = &t;
        async move {
            t.call(
                Some(&t.admin),
                reqwest::Method::PUT,
                "/api/v1/services/web/routing",
                Some(body),
            )
            .await
        }
    };
    let (status, res) =
        routing(json!({"rules": [{"when": {"summary": {"regex": "(oops"}}}]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (res["field"].as_str(), res["code"].as_str()),
        (Some("routing.rules[0].when.summary"), Some("invalid_regex"))
    );
    let (status, res) = routing(json!({"rules": [{"then": {"severity": "P9"}}]})).await;
    assert_eq!(
        (status, res["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("routing.rules[0].then.severity")
        )
    );
    let (status, res) =
        routing(json!({"grouping": {"mode": "labels", "labels": [], "window_minutes": 5}})).await;
    assert_eq!(
        (status, res["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("routing.grouping.labels")
        )
    );
    // A stale If-Match is refused, not overwritten.
    set_routing(&t, "web", json!({})).await;
    let res = t
        .http
        .put(t.url("/api/v1/services/web/routing"))
        .bearer_auth(&t.admin.token)
        .header("if-match", "\"v1\"")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(res.status().as_u16(), 409 | 412),
        "{}",
        res.status()
    );
    // Maintenance windows that make no sense.
    let (status, res) = t
        .post(
            &t.admin,
            "/api/v1/services/web/maintenance-windows",
            json!({"starts_at": "2026-11-21T10:00:00Z", "ends_at": "2026-11-21T09:00:00Z"}),
        )
        .await;
    assert_eq!(
        (status, res["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("ends_at"))
    );
    let (status, res) = t.get(&t.viewer, "/api/v1/alerts/not-a-uuid").await;
    assert_eq!(
        (status, res["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_id"))
    );
    let (status, res) = t.get(&t.viewer, "/api/v1/alerts?status=burning").await;
    assert_eq!(
        (status, res["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("status"))
    );
    let (status, _) = t.get(&t.viewer, "/api/v1/services/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Reads `query` until `want` alerts are there: with the journal, an
/// alert is committed a little after its 202.
async fn alerts_eventually(t: &TestApp, query: &str, want: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = alerts(t, query).await;
        if found.len() >= want || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// With the intake journal, each format is answered once its request is
/// synced, and the alert follows: a generated PagerDuty key is the one
/// stored, repeats count, a resolve resolves the incident. Bad input is
/// refused before the journal, exactly as without it.
#[tokio::test]
async fn journaled_intake_answers_once_synced_and_commits_behind() {
    let t = TestApp::journaled(support::sqlite().await).await;
    let (pd_key, _) = integration(&t, "pagerduty", "journaled").await;
    let (generic_key, _) = integration(&t, "generic", "journaled").await;

    let (status, body) = send(&t, "/v2/enqueue", &pd_trigger(&pd_key, None, "PING OK")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["message"], "Event processed");
    let generated = body["dedup_key"].as_str().unwrap().to_string();
    let found = alerts_eventually(&t, "?service=journaled", 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["dedup_key"], generated.as_str());
    assert!(!found[0]["incident_id"].is_null());

    let path = format!("/api/v1/integrations/{generic_key}/generic");
    let event = json!({"summary": "queue deep", "source": "mq-1", "dedup_key": "mq-1"});
    let answers = send_at_once(&t, vec![(path.clone(), event.clone()); 5]).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["results"][0]["effect"], "journaled");
        assert_eq!(body["results"][0]["dedup_key"], "mq-1");
        assert!(body["results"][0]["alert_id"].is_null());
    }
    let resolve = json!({"action": "resolve", "summary": "queue deep", "source": "mq-1", "dedup_key": "mq-1"});
    let (status, _) = send(&t, &path, &resolve).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let resolved = alerts_eventually(&t, "?service=journaled&status=resolved", 1).await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["count"], 5);
    assert_eq!(
        incident(&t, &resolved[0]["incident_id"]).await["status"],
        "resolved"
    );

    let (status, body) = send(&t, &path, &json!({"summary": "no source"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send(
        &t,
        "/v2/enqueue",
        &json!({"routing_key": pd_key, "event_action": "explode"}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid event"))
    );

    let (status, health) = t.call(None, reqwest::Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(health["intake_journal_backlog_bytes"].is_u64(), "{health}");
    t.assert_audit_verifies().await;
}

/// Two nodes on one PostgreSQL database take the same alerts at once, as
/// behind a load balancer, from two integrations of one service grouping
/// by a label: every request is answered 202, each (integration, dedup
/// key) has one open alert counting every trigger, and each group one
/// incident, whichever node saw its first alert. A key replaced through
/// one node is refused by the other at once.
#[tokio::test]
async fn two_nodes_take_the_same_alerts_at_once() {
    let Some(store) = support::postgres().await else {
        return;
    };
    let url = store.postgres_url().unwrap().to_string();
    let t = TestApp::on(store).await;
    let (first, _) = integration(&t, "generic", "pair").await;
    let (second, _) = integration(&t, "generic", "pair").await;
    set_routing(
        &t,
        "pair",
        json!({"grouping": {"mode": "labels", "labels": ["cluster"], "window_minutes": 60}}),
    )
    .await;
    let other = kiroku_app::App::new(
        std::sync::Arc::new(
            kiroku_store_postgres::connect(&url, Default::default())
                .await
                .unwrap(),
        ),
        support::config(),
    );
    tokio::spawn(other.clone().watch_other_nodes());
    let other = support::serve_loopback(kiroku_server::router(other, Default::default())).await;

    // Each key is sent four times at once: to each node, from each
    // integration.
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let key = if i / 2 % 2 == 0 { &first } else { &second };
            let path = format!("/api/v1/integrations/{key}/generic");
            let url = if i % 2 == 0 {
                t.url(&path)
            } else {
                format!("http://{other}{path}")
            };
            let body = json!({
                "summary": format!("alert {}", i / 4),
                "source": "pair",
                "dedup_key": format!("k{}", i / 4),
                "labels": {"cluster": format!("c{}", i / 4 % 4)},
            });
            let http = t.http.clone();
            tokio::spawn(async move {
                let res = http.post(&url).json(&body).send().await.unwrap();
                (res.status(), res.text().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let found = alerts(&t, "?service=pair&limit=200").await;
    assert_eq!(found.len(), 200, "one open alert per integration and key");
    assert!(
        found.iter().all(|a| a["count"] == 2),
        "every trigger counted once"
    );
    let incidents: std::collections::HashSet<&str> = found
        .iter()
        .map(|a| a["incident_id"].as_str().unwrap())
        .collect();
    assert_eq!(incidents.len(), 4, "one incident per cluster");

    // A key replaced on one node is refused by the other at once, not
    // once the other's 5 s memory of it has passed.
    let old = format!("http://{other}/api/v1/integrations/{first}/generic");
    let alert = json!({"summary": "late", "source": "pair", "dedup_key": "late"});
    let res = t.http.post(&old).json(&alert).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (_, listed) = t.get(&t.admin, "/api/v1/integrations?service=pair").await;
    let id = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == first.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rotate = format!("/api/v1/integrations/{id}/rotate-key");
    let (status, _) = t.post(&t.admin, &rotate, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let rotated_at = std::time::Instant::now();
    loop {
        let res = t.http.post(&old).json(&alert).send().await.unwrap();
        if res.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            rotated_at.elapsed() < std::time::Duration::from_secs(1),
            "the other node still takes the replaced key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    t.assert_audit_verifies().await;
}

/// An admin renames an integration, lowers its rate limit, disables and
/// enables it, and rotates a leaked routing key: each takes effect on the
/// next request, the audit log records each change and never a key, and
/// nobody else may do any of it.
#[tokio::test]
async fn an_integration_is_throttled_disabled_and_its_key_rotated() {
    let t = TestApp::sqlite().await;
    let (old_key, id) = integration(&t, "generic", "leaky").await;
    let path = |key: &str| format!("/api/v1/integrations/{key}/generic");
    let alert = json!({"summary": "disk full", "source": "db-1", "dedup_key": "disk"});
    let item = format!("/api/v1/integrations/{id}");
    assert_eq!(
        send(&t, &path(&old_key), &alert).await.0,
        StatusCode::ACCEPTED
    );

    // Rotation: the old key is refused at once, the new one taken.
    let rotate = format!("{item}/rotate-key");
    let (status, rotated) = t.post(&t.admin, &rotate, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(new_key.len(), 32);
    assert_ne!(new_key, old_key);
    let (status, body) = send(&t, &path(&old_key), &alert).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "unknown_routing_key");
    let (status, body) = send(&t, &path(&new_key), &alert).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["effect"], "repeated", "the same alert");

    // Disabled, the key is refused as unknown; enabled, taken again.
    let (status, body) = patch(&t, Some(&t.admin), &item, json!({"disabled": true})).await;
    assert_eq!(
        (status, body["disabled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(
        send(&t, &path(&new_key), &alert).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = patch(
        &t,
        Some(&t.admin),
        &item,
        json!({"disabled": false, "name": "監視 db"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "監視 db");
    assert_eq!(body["key"], new_key.as_str(), "the key stays");
    assert_eq!(
        send(&t, &path(&new_key), &alert).await.0,
        StatusCode::ACCEPTED
    );

    // A lower rate limit holds from the next request: 1 a second, bursts of 2.
    let (status, _) = patch(
        &t,
        Some(&t.admin),
        &item,
        json!({"rate_limit_per_second": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(&t, &path(&new_key), &alert).await.0);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    // Read back: the key only for admins.
    let (status, read) = t.get(&t.viewer, &item).await;
    assert_eq!((status, read["key"].as_str()), (StatusCode::OK, Some("")));
    assert_eq!(read["rate_limit_per_second"], 1);
    let (_, read) = t.get(&t.admin, &item).await;
    assert_eq!(read["key"], new_key.as_str());

    // Nobody else may change it; bad input names its field.
    for user in [&t.viewer, &t.responder, &t.auditor] {
        let (status, _) = patch(&t, Some(user), &item, json!({"disabled": true})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = t.post(user, &rotate, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = patch(&t, None, &item, json!({"disabled": true})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t.call(None, reqwest::Method::POST, &rotate, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad = [
        (
            json!({"rate_limit_per_second": 0}),
            "rate_limit_per_second",
            "out_of_range",
        ),
        (
            json!({"rate_limit_per_second": -5}),
            "rate_limit_per_second",
            "invalid_type",
        ),
        (json!({"name": ""}), "name", "required"),
        (json!({"name": "x".repeat(10_000)}), "name", "too_long"),
        (
            json!({"key": "0123456789abcdef0123456789abcdef"}),
            "key",
            "unknown_field",
        ),
        (json!({"disabled": "yes"}), "disabled", "invalid_type"),
    ];
    for (body, field, code) in bad {
        let (status, res) = patch(&t, Some(&t.admin), &item, body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status} {res}");
        assert_eq!(
            (res["field"].as_str(), res["code"].as_str()),
            (Some(field), Some(code)),
            "{body}: {res}"
        );
    }
    let res = t
        .http
        .patch(t.url(&item))
        .bearer_auth(&t.admin.token)
        .header("content-type", "application/json")
        .body("{\"disabled\": tru")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let unknown = format!("/api/v1/integrations/{}", uuid::Uuid::now_v7());
    let (status, res) = t
        .call(
            Some(&t.admin),
            reqwest::Method::PATCH,
            &unknown,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, res) = t
        .post(
            &t.admin,
            "/api/v1/integrations/not-a-uuid/rotate-key",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, res["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );
    // A change that changes nothing writes nothing.
    let (status, _) = patch(&t, Some(&t.admin), &item, json!({"disabled": false})).await;
    assert_eq!(status, StatusCode::OK);
    // A routing key sent where the id belongs is refused, and the refusal's
    // audit event names the route, not the key.
    let mistaken = format!("/api/v1/integrations/{new_key}");
    let (status, _) = patch(&t, Some(&t.admin), &mistaken, json!({"disabled": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = t.call(None, reqwest::Method::GET, &mistaken, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&t, &mistaken, &alert).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Still as the admin left it.
    let (_, read) = t.get(&t.admin, &item).await;
    assert_eq!(
        (read["name"].as_str(), read["disabled"].as_bool()),
        (Some("監視 db"), Some(false))
    );

    // Audited, with the settings before and after, never a key.
    let audit = t.audit().await;
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains(&old_key) && !text.contains(&new_key),
        "a key in the audit log"
    );
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e["outcome"] == "success")
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("integration_"))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "integration_update")
            .count(),
        3,
        "{actions:?}"
    );
    assert!(actions.contains(&"integration_key_rotate"), "{actions:?}");
    let disabled = audit
        .iter()
        .find(|e| e["action"] == "integration_update" && e["after"]["disabled"] == true)
        .expect("the disabling is audited");
    assert_eq!(disabled["before"]["disabled"], false);
    t.assert_audit_verifies().await;
}

async fn patch(
    t: &TestApp,
    user: Option<&support::TestUser>,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    t.call(user, reqwest::Method::PATCH, path, Some(body)).await
}

/// On PostgreSQL an admin renames, disables and rotates an integration's
/// key, and a responder edits the incident its alerts join, while they
/// pour in: nobody waits on anybody in a cycle, so no request fails for
/// it (a deadlock would answer 503).
#[tokio::test]
async fn an_integration_changes_while_its_alerts_pour_in() {
    let Some(store) = support::postgres().await else {
        return;
    };
    let t = std::sync::Arc::new(TestApp::on(store).await);
    let (key, id) = integration(&t, "generic", "busy").await;
    let grouping =
        json!({"grouping": {"mode": "labels", "labels": ["cluster"], "window_minutes": 60}});
    let routing = "/api/v1/services/busy/routing";
    let (status, _) = t
        .call(
            Some(&t.admin),
            reqwest::Method::PUT,
            routing,
            Some(grouping),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let labelled = |dedup: String| json!({"summary": "busy", "source": "s", "dedup_key": dedup, "labels": {"cluster": "c1"}});
    let path = format!("/api/v1/integrations/{key}/generic");
    let (_, body) = send(&t, &path, &labelled("first".into())).await;
    let incident = format!(
        "/api/v1/incidents/{}",
        body["results"][0]["incident_id"].as_str().unwrap()
    );
    let key = std::sync::Arc::new(std::sync::RwLock::new(key));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|w| {
            let (t, key, done) = (t.clone(), key.clone(), done.clone());
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::new();
                let mut n = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = key.read().unwrap().clone();
                    let body = labelled(format!("{w}-{n}"));
                    let (status, _) =
                        send(&t, &format!("/api/v1/integrations/{key}/generic"), &body).await;
                    *statuses.entry(status.as_u16()).or_insert(0) += 1;
                    n += 1;
                }
                statuses
            })
        })
        .collect();
    let item = format!("/api/v1/integrations/{id}");
    for round in 0..15 {
        let (status, body) = t
            .post(&t.admin, &format!("{item}/rotate-key"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "rotation {round}: {body}");
        *key.write().unwrap() = body["key"].as_str().unwrap().to_string();
        let change = json!({"name": format!("busy {round}"), "disabled": round % 3 == 0});
        let (status, body) = patch(&t, Some(&t.admin), &item, change).await;
        assert_eq!(status, StatusCode::OK, "change {round}: {body}");
        let edit = json!({"title": format!("busy, edited {round}")});
        let (status, body) = patch(&t, Some(&t.responder), &incident, edit).await;
        assert_eq!(status, StatusCode::OK, "incident edit {round}: {body}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = std::collections::BTreeMap::new();
    for sender in senders {
        for (status, count) in sender.await.unwrap() {
            *answered.entry(status).or_insert(0) += count;
        }
    }
    // 404: a key just replaced, or the integration disabled.
    assert!(
        answered.keys().all(|s| *s == 202 || *s == 404),
        "{answered:?}"
    );
    assert!(answered.get(&202).copied().unwrap_or(0) > 0, "{answered:?}");
    t.assert_audit_verifies().await;
}

/// On PostgreSQL a responder resolves the incident that alerts keep
/// repeating into: no repeat is lost to the resolve, no alert stays open
/// in a resolved incident, and nobody waits on anybody in a cycle.
#[tokio::test]
async fn an_incident_is_resolved_while_its_alerts_repeat() {
    let Some(store) = support::postgres().await else {
        return;
    };
    let t = std::sync::Arc::new(TestApp::on(store).await);
    // Two integrations: alerts of either join the service's incident.
    let (first, _) = integration(&t, "generic", "flappy").await;
    let (second, _) = integration(&t, "generic", "flappy").await;
    let grouping =
        json!({"grouping": {"mode": "labels", "labels": ["cluster"], "window_minutes": 60}});
    set_routing(&t, "flappy", grouping).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|w| {
            let key = if w % 2 == 0 { &first } else { &second };
            let path = format!("/api/v1/integrations/{key}/generic");
            let (t, done) = (t.clone(), done.clone());
            tokio::spawn(async move {
                let (mut n, mut triggers) = (0, 0);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let dedup = format!("{w}-{}", n % 3);
                    // The second integration's senders also acknowledge and
                    // resolve, which hold no service: their batches meet
                    // the resolve on the alert rows alone.
                    let body = match (w % 2, n % 8) {
                        (1, 3) => json!({"action": "acknowledge", "dedup_key": dedup}),
                        (1, 7) => json!({"action": "resolve", "dedup_key": dedup}),
                        _ => {
                            triggers += 1;
                            json!({"summary": "flap", "source": "s", "dedup_key": dedup, "labels": {"cluster": "c1"}})
                        }
                    };
                    let (status, body) = send(&t, &path, &body).await;
                    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
                    n += 1;
                }
                triggers
            })
        })
        .collect();
    let mut resolved = 0;
    for round in 0..30 {
        let open = alerts(&t, "?service=flappy&status=triggered").await;
        let Some(id) = open.iter().find_map(|a| a["incident_id"].as_str()) else {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        };
        let (status, body) = t
            .post(
                &t.responder,
                &format!("/api/v1/incidents/{id}/resolve"),
                json!({}),
            )
            .await;
        match status {
            StatusCode::OK => resolved += 1,
            // Its alerts resolved it between the read and the resolve.
            StatusCode::CONFLICT if incident(&t, &json!(id)).await["status"] == "resolved" => {}
            _ => panic!("resolve {round}: {status} {body}"),
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut triggers = 0;
    for sender in senders {
        triggers += sender.await.unwrap();
    }
    assert!(resolved >= 10, "only {resolved} resolves took");
    let stored = every_alert(&t, "flappy").await;
    let counted: i64 = stored.iter().map(|a| a["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, triggers, "every repeat counted once");
    for a in stored.iter().filter(|a| a["status"] != "resolved") {
        let i = incident(&t, &a["incident_id"]).await;
        assert_ne!(
            i["status"], "resolved",
            "open alert {} in a resolved incident",
            a["id"]
        );
    }
    t.assert_audit_verifies().await;
}

/// Holds a row in a transaction of its own, as a person's change does
/// (`hold`, binding `id`), sends `payload` to `path`, waits until intake
/// waits for that row, then takes the audit log's head, as the person's
/// next step would, and commits. The head must be free: were intake holding
/// it while it waits, the two would wait on each other and PostgreSQL would
/// give one up. Intake's answer comes back.
async fn intake_behind_a_person(
    t: &TestApp,
    hold: &str,
    id: &str,
    path: &str,
    payload: Value,
) -> (StatusCode, Value) {
    use sqlx::Connection;
    let url = t.store.url();
    let mut person = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut person).await.unwrap();
    sqlx::query(hold)
        .bind(id)
        .execute(&mut person)
        .await
        .unwrap();
    let (http, target) = (t.http.clone(), t.url(path));
    let request = tokio::spawn(async move {
        let res = http.post(&target).json(&payload).send().await.unwrap();
        (res.status(), res.json::<Value>().await.unwrap())
    });
    // Intake's transaction is the one holding advisory locks.
    let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
    let waiting = "SELECT count(*) FROM pg_stat_activity a \
        WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' \
        AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (n,): (i64,) = sqlx::query_as(waiting)
            .fetch_one(&mut watcher)
            .await
            .unwrap();
        if n > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "intake never waited for the held row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sqlx::raw_sql("SET LOCAL lock_timeout = '5s'")
        .execute(&mut person)
        .await
        .unwrap();
    sqlx::raw_sql("SELECT size FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut person)
        .await
        .expect("the person's transaction takes the audit head while intake waits");
    sqlx::raw_sql("COMMIT").execute(&mut person).await.unwrap();
    request.await.unwrap()
}

/// An alert that resolves an incident a person holds waits for the person
/// without holding the audit log's head, though an earlier alert of its
/// request opened an incident (and so has an audit event) first.
#[tokio::test]
async fn an_alert_waiting_for_a_held_incident_holds_no_audit_head() {
    let Some(store) = support::postgres().await else {
        return;
    };
    let t = TestApp::on(store).await;
    let (key, _) = integration(&t, "alertmanager", "db").await;
    let path = format!("/api/v1/integrations/{key}/alertmanager");
    let held = am_alert(
        "firing",
        "held",
        json!({"alertname": "Lag", "instance": "db-1"}),
    );
    let (status, body) = send(&t, &path, &am_payload(vec![held.clone()])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let incident_id = alerts(&t, "?service=db").await[0]["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut resolved = held.clone();
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!("2026-11-21T00:05:00Z");
    let new = am_alert(
        "firing",
        "new",
        json!({"alertname": "Down", "instance": "db-2"}),
    );
    let (status, body) = intake_behind_a_person(
        &t,
        "SELECT id FROM incidents WHERE id = $1 FOR NO KEY UPDATE",
        &incident_id,
        &path,
        am_payload(vec![new, resolved]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        incident(&t, &json!(incident_id)).await["status"],
        "resolved"
    );
    let open = alerts(&t, "?service=db&status=triggered").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_ne!(open[0]["incident_id"], json!(incident_id));
    t.assert_audit_verifies().await;
}

/// A batch opening incidents of two categories waits for a person
/// declaring one of the second's (who holds its number counter) without
/// holding the audit log's head: the batch appends its audit events last.
#[tokio::test]
async fn a_batch_waiting_for_a_held_incident_number_holds_no_audit_head() {
    let Some(store) = support::postgres().await else {
        return;
    };
    let t = TestApp::on(store).await;
    let (key, _) = integration(&t, "alertmanager", "db").await;
    set_routing(
        &t,
        "db",
        json!({"rules": [{"name": "db", "when": {"labels": {"team": "db"}}, "then": {"category": "database"}}]}),
    )
    .await;
    let path = format!("/api/v1/integrations/{key}/alertmanager");
    let db = |fingerprint: &str| {
        am_alert(
            "firing",
            fingerprint,
            json!({"alertname": "Lag", "instance": fingerprint, "team": "db"}),
        )
    };
    let (status, body) = send(&t, &path, &am_payload(vec![db("first")])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let first = incident(&t, &alerts(&t, "?service=db").await[0]["incident_id"]).await;
    let prefix = first["number"].as_str().unwrap().split('-').next().unwrap();
    let other = am_alert(
        "firing",
        "other",
        json!({"alertname": "Down", "instance": "web-1"}),
    );
    let (status, body) = intake_behind_a_person(
        &t,
        "SELECT last FROM incident_counters WHERE prefix = $1 FOR UPDATE",
        prefix,
        &path,
        am_payload(vec![other, db("second")]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut numbers = Vec::new();
    for a in alerts(&t, "?service=db").await {
        numbers.push(incident(&t, &a["incident_id"]).await["number"].clone());
    }
    numbers.sort_by_key(|n| n.to_string());
    assert_eq!(numbers.len(), 3, "{numbers:?}");
    assert!(
        numbers
            .iter()
            .filter(|n| n.as_str().unwrap().starts_with(prefix))
            .count()
            == 2,
        "{numbers:?}"
    );
    t.assert_audit_verifies().await;
}

/// Within one request, a group's alert opens an incident and resolves it,
/// and then another alert of the group fires: that one opens a new
/// incident instead of joining the resolved one.
#[tokio::test]
async fn an_alert_after_its_group_resolved_in_the_same_request_opens_a_new_incident() {
    let t = TestApp::sqlite().await;
    let (key, _) = integration(&t, "alertmanager", "disks").await;
    set_routing(
        &t,
        "disks",
        json!({"grouping": {"mode": "labels", "labels": ["alertname"], "window_minutes": 60}}),
    )
    .await;
    let path = format!("/api/v1/integrations/{key}/alertmanager");
    let disk = |status: &str, instance: &str| {
        am_alert(
            status,
            instance,
            json!({"alertname": "DiskFull", "instance": instance}),
        )
    };
    let payload = am_payload(vec![
        disk("firing", "d1"),
        disk("resolved", "d1"),
        disk("firing", "d2"),
    ]);
    let (status, body) = send(&t, &path, &payload).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let stored = every_alert(&t, "disks").await;
    let of = |fingerprint: &str| {
        stored
            .iter()
            .find(|a| a["dedup_key"] == fingerprint)
            .unwrap_or_else(|| panic!("no alert {fingerprint}: {stored:?}"))
            .clone()
    };
    let (first, second) = (of("d1"), of("d2"));
    assert_eq!(first["status"], "resolved");
    assert_eq!(
        incident(&t, &first["incident_id"]).await["status"],
        "resolved"
    );
    assert_eq!(second["status"], "triggered");
    assert_ne!(second["incident_id"], first["incident_id"]);
    assert_eq!(
        incident(&t, &second["incident_id"]).await["status"],
        "triggered"
    );
}
