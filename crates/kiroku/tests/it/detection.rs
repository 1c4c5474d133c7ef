//! Detection over the audit log (seed 001 No.29), end to end over HTTP:
//! bursts of login failures, refusals and unknown endpoints, and
//! non-routine operations, each raised once as an alert on the built-in
//! security service, through the same intake as monitoring's alerts.

use std::time::{Duration, Instant};

use kiroku_domain::detection::{Burst, DetectionRules};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{self, TestApp, TestStore};

fn rules() -> DetectionRules {
    let three = Burst {
        count: 3,
        window_minutes: 5,
    };
    DetectionRules {
        login_failures_per_address: three,
        login_failures_per_account: three,
        refusals_per_caller: three,
        unknown_endpoints_per_address: three,
        ..DetectionRules::default()
    }
}

async fn security_alerts(t: &TestApp) -> Vec<Value> {
    let (status, body) = t
        .get(&t.admin, "/api/v1/alerts?service=kiroku-security&limit=200")
        .await;
    if status == StatusCode::NOT_FOUND {
        // The service is made with the first finding.
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Waits until an alert with `dedup_key` exists; returns it.
async fn alert_for(t: &TestApp, dedup_key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = security_alerts(t)
            .await
            .into_iter()
            .find(|a| a["dedup_key"] == dedup_key)
        {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no alert {dedup_key}; have {:#?}",
            security_alerts(t).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn failed_login(t: &TestApp, name: &str) {
    let res = t
        .http
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"name": name, "password": "not the password at all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn detection_story(store: TestStore) {
    let t = TestApp::with_detection(store, rules()).await;

    // Two failures are below the burst: nothing is raised.
    failed_login(&t, "responder").await;
    failed_login(&t, "responder").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !security_alerts(&t).await.iter().any(|a| a["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("login_failures")),
        "raised below the threshold"
    );
    // The third makes a burst, for the account and for the address.
    failed_login(&t, "responder").await;
    let account = alert_for(&t, "login_failures_per_account:responder").await;
    let address = alert_for(&t, "login_failures_per_address:127.0.0.1").await;
    assert_eq!(account["level"], "warning");
    assert_eq!(account["labels"]["rule"], "login_failures_per_account");
    assert!(
        account["summary"]
            .as_str()
            .unwrap()
            .contains("3 login failures for account responder within 5 min"),
        "{account}"
    );
    // It shows on the dashboard, in its own section.
    let mut browser = crate::web::Browser::new(&t);
    assert_eq!(
        browser.log_in("viewer", "").await.status,
        StatusCode::SEE_OTHER
    );
    let dashboard = browser.get("/?lang=en").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    let security = dashboard
        .body
        .split("Security detections (open)")
        .nth(1)
        .expect("a security section");
    assert!(
        security.contains("3 login failures for account responder within 5 min"),
        "{}",
        dashboard.body
    );
    // A burst opens a 不正アクセス incident of its own.
    let (status, incident) = t
        .get(
            &t.admin,
            &format!(
                "/api/v1/incidents/{}",
                account["incident_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{incident}");
    assert_eq!(incident["category"], "unauthorized_access");
    assert!(
        incident["number"].as_str().unwrap().starts_with("SEC-"),
        "{incident}"
    );
    assert_ne!(account["incident_id"], address["incident_id"]);
    // More failures inside the window raise nothing new.
    failed_login(&t, "responder").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = alert_for(&t, "login_failures_per_account:responder").await;
    assert_eq!(again["count"], 1, "{again}");

    // Refusals: a viewer reading the user list, three times.
    for _ in 0..3 {
        let (status, _) = t.get(&t.viewer, "/api/v1/users").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    alert_for(&t, "refusals_per_caller:viewer").await;

    // A scan for endpoints that do not exist, with hostile paths.
    for path in [
        "/.env",
        "/wp-login.php",
        "/api/v1/%E2%80%AE%F0%9F%92%A5",
        &format!("/{}", "a".repeat(5_000)),
    ] {
        let (status, body) = t.call(None, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["code"], "not_found");
    }
    alert_for(&t, "unknown_endpoints_per_address:127.0.0.1").await;

    // A non-routine operation: recorded as information, paging nobody.
    let (status, token) = t
        .post(&t.admin, "/api/v1/tokens", json!({"name": "ci"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        if let Some(a) = security_alerts(&t).await.into_iter().find(|a| {
            a["labels"]["subject"] == "authn_token_created"
                && a["summary"].as_str().unwrap().contains("by admin")
        }) {
            break a;
        }
        assert!(Instant::now() < deadline, "no non-routine alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(created["level"], "info");
    assert_eq!(created["quiet"], "suppressed", "{created}");
    assert!(created["incident_id"].is_null());

    // Kiroku's own actions (making its service, raising these alerts) are
    // not findings themselves.
    assert!(
        !security_alerts(&t)
            .await
            .iter()
            .any(|a| a["labels"]["subject"] == "integration_create"
                || a["labels"]["subject"] == "service_create"),
        "detection fed on itself"
    );
    // The alerts came through the audited intake, by the built-in
    // integration, and the log still proves itself.
    let audit = t.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "alert_intake"
        && e["actor"]["kind"] == "integration"
        && e["actor"]["name"] == "detection"));
    t.assert_audit_verifies().await;

    // Reading the security alerts is as guarded as any alert list.
    let (status, _) = t
        .call(
            None,
            Method::GET,
            "/api/v1/alerts?service=kiroku-security",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn detection_raises_alerts_on_sqlite() {
    detection_story(support::sqlite().await).await;
}

#[tokio::test]
async fn detection_raises_alerts_on_postgres() {
    let Some(store) = support::postgres().await else {
        return;
    };
    detection_story(store).await;
}
