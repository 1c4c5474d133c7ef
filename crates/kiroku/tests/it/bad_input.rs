//! Bad input of every kind gets a JSON error naming what is wrong, a 4xx
//! status, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApp;

/// Case name, path, body, content type, expected status, code and field.
type BodyCase<'a> = (
    &'a str,
    &'a str,
    Vec<u8>,
    &'a str,
    StatusCode,
    &'a str,
    Option<&'a str>,
);

/// Counts of what a bad request must not change.
async fn state(t: &TestApp) -> (usize, usize, Vec<Value>) {
    let (_, list) = t.get(&t.admin, "/api/v1/incidents?limit=200").await;
    let successes = t.successful_audit_events().await;
    (
        list["items"].as_array().unwrap().len(),
        successes,
        list["items"].as_array().unwrap().clone(),
    )
}

fn assert_error(
    status: StatusCode,
    body: &Value,
    want: StatusCode,
    code: &str,
    field: Option<&str>,
    case: &str,
) {
    assert_eq!(status, want, "{case}: {body}");
    assert_eq!(body["code"], code, "{case}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: {body}"
    );
    if let Some(f) = field {
        assert_eq!(body["field"], f, "{case}: {body}");
    }
}

async fn raw(
    t: &TestApp,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let res = t
        .http
        .request(method, t.url(path))
        .bearer_auth(&t.responder.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let t = TestApp::sqlite().await;
    let existing = t.declare(&t.responder, "existing", "P1").await;
    let n = existing["number"].as_str().unwrap().to_string();
    let before = state(&t).await;
    let json_ct = "application/json";
    let notes = format!("/api/v1/incidents/{n}/notes");
    let ack = format!("/api/v1/incidents/{n}/acknowledge");
    let cases: Vec<BodyCase> = vec![
        ("truncated JSON", "/api/v1/incidents", b"{\"title\":".to_vec(), json_ct, StatusCode::BAD_REQUEST, "malformed_json", None),
        ("not JSON at all", "/api/v1/incidents", b"title=x".to_vec(), json_ct, StatusCode::BAD_REQUEST, "malformed_json", None),
        ("form content type", "/api/v1/incidents", b"title=x".to_vec(), "application/x-www-form-urlencoded", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None),
        ("wrong type", "/api/v1/incidents", br#"{"title":42,"category":"database","severity":"P1"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", Some("title")),
        ("missing field", "/api/v1/incidents", br#"{"title":"x","category":"database"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "required", Some("severity")),
        ("unknown field", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P1","sevrity":"P0"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "unknown_field", Some("sevrity")),
        ("unknown severity", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P9"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "unknown_value", Some("severity")),
        ("unknown category", "/api/v1/incidents", br#"{"title":"x","category":"weather","severity":"P1"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "unknown_value", Some("category")),
        ("empty title", "/api/v1/incidents", br#"{"title":"   ","category":"database","severity":"P1"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "required", Some("title")),
        ("control characters", "/api/v1/incidents", b"{\"title\":\"a\\u0007b\",\"category\":\"database\",\"severity\":\"P1\"}".to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "invalid_characters", Some("title")),
        ("negative count", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P1","impact":{"users_affected":-5}}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "out_of_range", Some("impact.users_affected")),
        ("nested wrong type", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P1","impact":{"sla_breached":"yes"}}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", Some("impact.sla_breached")),
        ("unknown commander", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P1","commander":"ghost"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "unknown_user", Some("commander")),
        ("future detection", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P1","detected_at":"2999-01-01T00:00:00Z"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "in_future", Some("detected_at")),
        ("bad time", "/api/v1/incidents", br#"{"title":"x","category":"database","severity":"P1","detected_at":"yesterday"}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", Some("detected_at")),
        ("invalid UTF-8", "/api/v1/incidents", b"{\"title\":\"\xff\xfe\",\"category\":\"database\",\"severity\":\"P1\"}".to_vec(), json_ct, StatusCode::BAD_REQUEST, "malformed_json", None),
        ("empty note", &notes, br#"{"body":""}"#.to_vec(), json_ct, StatusCode::UNPROCESSABLE_ENTITY, "required", Some("body")),
        ("transition body not JSON", &ack, b"nope".to_vec(), json_ct, StatusCode::BAD_REQUEST, "malformed_json", None),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(a, p, b, c, s, code, f)| (a, p.to_string(), b, c, s, code, f))
        .collect();
    for (case, path, body, ct, want, code, field) in cases {
        let (s, resp) = raw(&t, Method::POST, &path, ct, body).await;
        assert_error(s, &resp, want, code, field, case);
    }
    // Deep nesting is refused without exhausting the stack, whatever the shape.
    for deep in [
        "[".repeat(100_000),
        format!(
            "{{\"title\":\"x\",\"category\":\"database\",\"severity\":\"P1\",\"impact\":{{\"tables_affected\":{}",
            "[".repeat(100_000)
        ),
    ] {
        let (s, resp) = raw(
            &t,
            Method::POST,
            "/api/v1/incidents",
            json_ct,
            deep.into_bytes(),
        )
        .await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
            "deep nesting: {s} {resp}"
        );
        assert!(resp["code"].is_string());
    }
    let long = "長".repeat(201);
    let (s, resp) = t
        .post(
            &t.responder,
            "/api/v1/incidents",
            json!({"title": long, "category":"database","severity":"P1"}),
        )
        .await;
    assert_error(
        s,
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_long",
        Some("title"),
        "title over 200 characters",
    );
    let many: Vec<String> = (0..101).map(|i| format!("svc{i}")).collect();
    let (s, resp) = t
        .post(
            &t.responder,
            "/api/v1/incidents",
            json!({"title":"x","category":"database","severity":"P1","affected_services": many}),
        )
        .await;
    assert_error(
        s,
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many",
        Some("affected_services"),
        "too many services",
    );
    assert_eq!(state(&t).await, before, "bad requests changed something");
    // Refusals are audited as failures.
    let failures = t
        .audit()
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .count();
    assert!(failures >= 20, "{failures}");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let t = TestApp::sqlite().await;
    let before = state(&t).await;
    let big = format!(
        r#"{{"title":"x","category":"database","severity":"P1","summary":"{}"}}"#,
        "a".repeat(1024 * 1024 + 10)
    );
    let (s, resp) = raw(
        &t,
        Method::POST,
        "/api/v1/incidents",
        "application/json",
        big.into_bytes(),
    )
    .await;
    assert_error(
        s,
        &resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
        "1 MiB + 10",
    );
    // Just under the limit but over the summary's own limit: a 422, not a 413.
    let under = format!(
        r#"{{"title":"x","category":"database","severity":"P1","summary":"{}"}}"#,
        "a".repeat(30_000)
    );
    let (s, resp) = raw(
        &t,
        Method::POST,
        "/api/v1/incidents",
        "application/json",
        under.into_bytes(),
    )
    .await;
    assert_error(
        s,
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_long",
        Some("summary"),
        "summary over limit",
    );
    assert_eq!(state(&t).await, before);
}

#[tokio::test]
async fn hostile_text_is_stored_verbatim() {
    let t = TestApp::sqlite().await;
    let hostile = [
        "<script>alert(1)</script>",
        "'; DROP TABLE incidents; --",
        "\" OR 1=1 --",
        "Robert'); DELETE FROM audit_events;--",
        "🔥 障害 %_\\",
    ];
    for text in hostile {
        let inc = t.declare(&t.responder, text, "P2").await;
        assert_eq!(inc["title"], text);
        let (_, again) = t
            .get(
                &t.viewer,
                &format!("/api/v1/incidents/{}", inc["id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(again["title"], text);
        let (s, note) = t
            .post(
                &t.responder,
                &format!(
                    "/api/v1/incidents/{}/notes",
                    inc["number"].as_str().unwrap()
                ),
                json!({"body": text}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(note["body"], text);
    }
    let (_, list) = t.get(&t.viewer, "/api/v1/incidents").await;
    assert_eq!(list["items"].as_array().unwrap().len(), hostile.len());
    let (s, body) = t.get(&t.viewer, "/api/v1/incidents?q=%27%3B%20DROP").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_queries_and_unknown_things() {
    let t = TestApp::sqlite().await;
    let cases: [(&str, StatusCode, &str, Option<&str>); 9] = [
        (
            "/api/v1/incidents?status=open",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_value",
            Some("status"),
        ),
        (
            "/api/v1/incidents?severity=P7",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_value",
            Some("severity"),
        ),
        (
            "/api/v1/incidents?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_range",
            Some("limit"),
        ),
        (
            "/api/v1/incidents?limit=ten",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("limit"),
        ),
        (
            "/api/v1/incidents?cursor=%27%20OR%201%3D1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            "/api/v1/incidents?detected_from=tuesday",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
            Some("detected_from"),
        ),
        (
            "/api/v1/incidents?bogus=1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("bogus"),
        ),
        (
            "/api/v1/incidents/DB-1999-999",
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "/api/v1/incidents/00000000-0000-7000-8000-000000000000/timeline",
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
    ];
    for (path, want, code, field) in cases {
        let (s, body) = t.get(&t.viewer, path).await;
        assert_error(s, &body, want, code, field, path);
    }
    let (s, body) = t
        .post(
            &t.responder,
            "/api/v1/incidents/NOPE-1/acknowledge",
            json!({}),
        )
        .await;
    assert_error(
        s,
        &body,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        "transition unknown",
    );
}

#[tokio::test]
async fn bad_credentials_of_every_kind() {
    let t = TestApp::sqlite().await;
    let cases: [(Option<&str>, &str); 4] = [
        (None, "missing_credentials"),
        (Some("Bearer kiroku_not-a-real-token"), "invalid_token"),
        (Some("Basic YWRtaW46YWRtaW4="), "invalid_authorization"),
        (Some("Bearer "), "invalid_authorization"),
    ];
    for (header, code) in cases {
        let mut req = t.http.get(t.url("/api/v1/incidents"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{header:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], code, "{header:?}");
    }
    let res = t
        .http
        .get(t.url("/api/v1/me"))
        .header("cookie", "kiroku_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let events = t.audit().await;
    let authn = events
        .iter()
        .filter(|e| e["action"] == "authn_fail")
        .count();
    assert_eq!(authn, 5, "each refused credential is audited");
    let bad_login = t
        .http
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"name": "x".repeat(10_000), "password": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_login.status(), StatusCode::UNAUTHORIZED);
}
