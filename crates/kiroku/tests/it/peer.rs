//! Compatibility with the real peer: Prometheus Alertmanager (the Debian
//! package `prometheus-alertmanager`) with Kiroku as its webhook receiver.
//! An alert posted to Alertmanager becomes an incident in Kiroku; its
//! resolution resolves it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestApp;

/// The Alertmanager binary, if installed.
pub fn alertmanager_binary() -> Option<String> {
    [
        "/usr/bin/prometheus-alertmanager",
        "/usr/local/bin/alertmanager",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_string)
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn alertmanager_delivers_firing_and_resolved_alerts_to_kiroku() {
    let Some(bin) = alertmanager_binary() else {
        println!(
            "SKIP: Alertmanager compatibility (install the Debian package prometheus-alertmanager)"
        );
        return;
    };
    let t = TestApp::sqlite().await;
    let (status, i) = t
        .post(
            &t.admin,
            "/api/v1/integrations",
            json!({"type": "alertmanager", "service": "db"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = i["key"].as_str().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: kiroku\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: kiroku\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
            t.url(&format!("/api/v1/integrations/{key}/alertmanager"))
        ),
    )
    .unwrap();
    let port = crate::support::free_port();
    let am = format!("http://127.0.0.1:{port}");
    let _peer = Peer(
        Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager"),
    );
    let http = reqwest::Client::new();
    wait_for("Alertmanager to be ready", async || {
        let res = http.get(format!("{am}/-/ready")).send().await.ok()?;
        res.status().is_success().then_some(())
    })
    .await;

    let labels = json!({"alertname": "DiskFull", "instance": "db-1", "severity": "critical"});
    let started = jiff::Timestamp::now().to_string();
    let post = |ends: Option<String>| {
        let mut alert = json!({
            "labels": labels,
            "annotations": {"summary": "Disk full on db-1"},
            "startsAt": started,
        });
        if let Some(e) = ends {
            alert["endsAt"] = json!(e);
        }
        let (http, am) = (http.clone(), am.clone());
        async move {
            let res = http
                .post(format!("{am}/api/v2/alerts"))
                .json(&json!([alert]))
                .send()
                .await
                .unwrap();
            let status = res.status();
            assert!(
                status.is_success(),
                "{status} {}",
                res.text().await.unwrap()
            );
        }
    };
    post(None).await;
    let alert: Value = wait_for("the alert to reach Kiroku", async || {
        let (_, list) = t.get(&t.viewer, "/api/v1/alerts?service=db").await;
        list["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(alert["summary"], "Disk full on db-1");
    assert_eq!(alert["level"], "critical");
    assert_eq!(alert["labels"]["instance"], "db-1");
    assert_eq!(alert["details"]["group"]["receiver"], "kiroku");
    let incident_path = format!(
        "/api/v1/incidents/{}",
        alert["incident_id"].as_str().unwrap()
    );
    let (_, incident) = t.get(&t.viewer, &incident_path).await;
    assert_eq!(incident["status"], "triggered");
    assert_eq!(incident["title"], "Disk full on db-1");

    post(Some(jiff::Timestamp::now().to_string())).await;
    wait_for("the resolution to resolve the incident", async || {
        let (_, incident) = t.get(&t.viewer, &incident_path).await;
        (incident["status"] == "resolved").then_some(())
    })
    .await;
    let (_, list) = t.get(&t.viewer, "/api/v1/alerts?service=db").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "one alert, deduplicated by fingerprint"
    );
    assert_eq!(list["items"][0]["status"], "resolved");
}
