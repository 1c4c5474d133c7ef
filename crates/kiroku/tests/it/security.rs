//! The security pass: every route against every kind of bad credential,
//! other people's objects, CSRF, stored XSS, SQL injection in every
//! filter, path traversal in report and export names, credential guessing
//! ending in a lockout, slow clients and huge headers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kiroku_domain::Role;
use kiroku_server::routes::{Access, PAGES, ROUTES};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::{self, PASSWORD, TestApp, TestStore, raw_http, totp_now};
use crate::web::Browser;

/// A route's path with its parameters filled in.
fn fill(path: &str, key: &str) -> String {
    path.replace("{key}", key)
        .replace("{id}", "00000000-0000-7000-8000-000000000000")
        .replace("{name}", "viewer")
        .replace("{seq}", "1")
        .replace("{rule}", "appi_preliminary")
        .replace("{file}", "shimatsusho.md")
        .replace("{kind}", "shimatsusho")
        .replace("{token}", "x")
}

/// A refusal is JSON with a stable code, a message and the field at fault.
fn assert_refusal(body: &Value, want: &str, case: &str) {
    assert_eq!(body["code"], want, "{case}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: {body}"
    );
    assert!(body.get("field").is_some(), "{case}: {body}");
}

/// Counts of what a refused request must not change.
async fn row_counts(t: &TestApp) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for list in [
        "/api/v1/incidents?limit=200",
        "/api/v1/alerts?limit=200",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/services",
        "/api/v1/integrations",
        "/api/v1/schedules",
        "/api/v1/escalation-policies",
        "/api/v1/channels",
    ] {
        let (s, body) = t.get(&t.admin, list).await;
        assert_eq!(s, StatusCode::OK, "{list}: {body}");
        out.push((list.to_string(), body["items"].as_array().unwrap().len()));
    }
    out.push((
        "successful audit events".into(),
        t.successful_audit_events().await,
    ));
    out
}

/// Every (method, path) the router's source registers, read from the
/// source itself, so that a route added there is seen whether or not it got
/// an access rule.
fn registered_routes() -> BTreeSet<(String, String)> {
    let sources = [
        include_str!("../../../kiroku-server/src/lib.rs"),
        include_str!("../../../kiroku-server/src/web/mod.rs"),
    ];
    let mut out = BTreeSet::new();
    for call in sources.iter().flat_map(|src| src.split(".route(").skip(1)) {
        let Some((path, rest)) = call
            .trim_start()
            .strip_prefix('"')
            .and_then(|c| c.split_once('"'))
        else {
            continue;
        };
        // The handlers end where the router goes on to something else.
        let end = [".merge(", ".route_layer(", "\n}"]
            .iter()
            .filter_map(|end| rest.find(end))
            .min()
            .unwrap_or(rest.len());
        let handlers = &rest[..end];
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = handlers
                .match_indices(&format!("{method}("))
                .any(|(at, _)| {
                    at == 0
                        || !handlers.as_bytes()[at - 1].is_ascii_alphanumeric()
                            && handlers.as_bytes()[at - 1] != b'_'
                });
            if called {
                out.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_served_route_has_an_access_rule() {
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .chain(PAGES)
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let registered = registered_routes();
    let unruled: Vec<_> = registered.difference(&table).collect();
    assert!(
        unruled.is_empty(),
        "routed without an access rule in routes.rs: {unruled:?}"
    );
    // And the scan sees every route, so it would see a new one.
    let unseen: Vec<_> = table.difference(&registered).collect();
    assert!(unseen.is_empty(), "the scan missed {unseen:?}");
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_answers_405_and_head_is_get() {
    let t = TestApp::sqlite().await;
    let refused = |e: &&Value| e["error_code"] == "method_not_allowed";
    // An intake path: refused with the methods it takes, logged but not
    // audited, like every refusal a monitoring system gets.
    let res = t.http.get(t.url("/v2/enqueue")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
    let body: Value = res.json().await.unwrap();
    assert_refusal(&body, "method_not_allowed", "GET /v2/enqueue");
    assert_eq!(t.audit().await.iter().filter(refused).count(), 0);

    // An API path: refused before any credential is looked at, and
    // audited as a refused request, not as an authorisation failure.
    for user in [Some(&t.admin), None] {
        let (status, body) = t
            .call(user, Method::DELETE, "/api/v1/incidents", None)
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
        assert_refusal(&body, "method_not_allowed", "DELETE /api/v1/incidents");
    }
    let audit = t.audit().await;
    let audited: Vec<_> = audit.iter().filter(refused).collect();
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert!(
        audited.iter().all(|e| e["action"] == "request"),
        "{audited:?}"
    );

    // HEAD is GET's: served to whom GET is, refused to anyone else.
    let head = |token: Option<&str>| {
        let mut req = t.http.head(t.url("/api/v1/incidents"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    assert_eq!(
        head(Some(&t.viewer.token)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(head(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

/// A session that ran out an hour ago; its secret.
async fn expired_session(t: &TestApp, user: &str) -> String {
    let user = t.store.store.user_by_name(user).await.unwrap().unwrap();
    let secret = "expired-session-for-tests-000000000000000000000000000";
    let now = jiff::Timestamp::now();
    let mut tx = t.store.store.begin().await.unwrap();
    tx.insert_session(&kiroku_store::SessionRecord {
        hash: kiroku_audit::hex::encode(&sha2::Sha256::digest(secret.as_bytes())),
        user_id: user.id,
        created_at: now - jiff::SignedDuration::from_hours(13),
        expires_at: now - jiff::SignedDuration::from_hours(1),
    })
    .await
    .unwrap();
    crate::support::commit_as_system(
        tx,
        kiroku_domain::Operation::Create,
        "authn_login_success",
        kiroku_domain::Target::new("session", None),
    )
    .await;
    secret.into()
}

#[tokio::test]
async fn every_route_refuses_every_bad_credential() {
    let mut config = support::config();
    // Hundreds of guessed credentials from one address: not the lockout's test.
    config.auth.address_lock_after = 10_000;
    let t = TestApp::with_config(support::sqlite().await, config).await;
    let n = t.declare(&t.responder, "guarded", "P2").await["number"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, issued) = t
        .post(&t.viewer, "/api/v1/tokens", json!({"name": "old laptop"}))
        .await;
    let revoked = issued["secret"].as_str().unwrap().to_string();
    let (s, _) = t
        .call(
            Some(&t.viewer),
            Method::DELETE,
            &format!("/api/v1/tokens/{}", issued["token"]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let expired = expired_session(&t, "responder").await;
    let app = t.user_with_role("billing", Role::Application).await;
    let before = row_counts(&t).await;

    let long = format!("Bearer {}", "a".repeat(300));
    let cases: [(&str, Option<String>, Option<String>, &str); 7] = [
        ("no credentials", None, None, "missing_credentials"),
        (
            "not a bearer",
            Some("Token abc".into()),
            None,
            "invalid_authorization",
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            None,
            "invalid_authorization",
        ),
        (
            "oversized bearer",
            Some(long),
            None,
            "invalid_authorization",
        ),
        (
            "unknown token",
            Some("Bearer kiroku_guess".into()),
            None,
            "invalid_token",
        ),
        (
            "revoked token",
            Some(format!("Bearer {revoked}")),
            None,
            "token_revoked",
        ),
        (
            "expired session",
            None,
            Some(format!("{}={expired}", kiroku_server::SESSION_COOKIE)),
            "session_expired",
        ),
    ];
    // What an application account may do besides sending audit events.
    let application_may = [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/meta"),
        ("POST", "/api/v1/audit/events"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{id}"),
    ];
    for r in ROUTES.iter().filter(|r| r.access == Access::Authenticated) {
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let url = t.url(&fill(r.path, &n));
        for (case, authorization, cookie, code) in &cases {
            let mut req = t.http.request(method.clone(), &url).json(&json!({}));
            if let Some(a) = authorization {
                req = req.header("authorization", a);
            }
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let what = format!("{} {} with {case}", r.method, r.path);
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            assert_refusal(&body, code, &what);
        }
        let (status, body) = t
            .call(
                Some(&app),
                method.clone(),
                &fill(r.path, &n),
                Some(json!({})),
            )
            .await;
        let what = format!("{} {} as an application", r.method, r.path);
        assert!(!status.is_server_error(), "{what}: {status} {body}");
        if !application_may.contains(&(r.method, r.path)) {
            // A body or query is read before the command runs, so an
            // incomplete one may be refused first; it never gets further.
            assert!(
                matches!(status.as_u16(), 400 | 403 | 415 | 422),
                "{what}: {status} {body}"
            );
            assert!(body["code"].is_string(), "{what}: {body}");
        }
    }
    assert_eq!(
        row_counts(&t).await,
        before,
        "a refused request changed something"
    );
    // Each refusal is audited under its reason.
    let audit = t.audit().await;
    for (case, _, _, code) in &cases {
        assert!(
            audit
                .iter()
                .any(|e| e["action"] == "authn_fail" && e["error_code"] == *code),
            "{case} is not audited"
        );
    }
}

#[tokio::test]
async fn other_peoples_tokens_and_contact_methods_are_out_of_reach() {
    let t = TestApp::sqlite().await;
    let (s, theirs) = t
        .post(&t.viewer, "/api/v1/tokens", json!({"name": "viewer's"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token_id = theirs["token"]["id"].as_str().unwrap().to_string();
    let (s, method) = t
        .post(
            &t.responder,
            "/api/v1/users/responder/contact-methods",
            json!({"label": "mail", "type": "email", "address": "mailto:responder@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{method}");
    let method_id = method["id"].as_str().unwrap().to_string();
    let intruder = t.user_with_role("intruder", Role::Responder).await;
    let mut page = Browser::new(&t);
    page.log_in("responder", "").await;
    let csrf = page.get("/").await.hidden("csrf");
    let before = row_counts(&t).await;

    // Another's token: not listed, not revocable, by API or by page.
    let (_, mine) = t.get(&t.responder, "/api/v1/tokens").await;
    assert!(!mine.to_string().contains(&token_id), "{mine}");
    let (s, body) = t
        .call(
            Some(&t.responder),
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let revoked = page
        .post(&format!("/tokens/{token_id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert!(
        matches!(revoked.status.as_u16(), 403 | 404),
        "{}",
        revoked.status
    );

    // Another's contact methods, to someone who may keep their own: not
    // read, added to or removed, neither by their name nor by the
    // method's id under one's own name.
    let cases: [(Method, String, Option<Value>, StatusCode); 4] = [
        (
            Method::GET,
            "/api/v1/users/responder/contact-methods".into(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/api/v1/users/responder/contact-methods".into(),
            Some(json!({"label": "mine now", "type": "email", "address": "mailto:x@example.com"})),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/responder/contact-methods/{method_id}"),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/intruder/contact-methods/{method_id}"),
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, want) in cases {
        let (s, resp) = t.call(Some(&intruder), method.clone(), &path, body).await;
        assert_eq!(s, want, "{method} {path}: {resp}");
        assert!(resp["code"].is_string(), "{resp}");
    }
    assert_eq!(row_counts(&t).await, before);
    let (_, still) = t
        .get(&t.responder, "/api/v1/users/responder/contact-methods")
        .await;
    assert_eq!(still["items"].as_array().unwrap().len(), 1, "{still}");
}

#[tokio::test]
async fn forms_refuse_a_missing_or_foreign_csrf_token_and_other_origins() {
    let t = TestApp::sqlite().await;
    let n = t.declare(&t.responder, "csrf", "P2").await["number"]
        .as_str()
        .unwrap()
        .to_string();
    let mut victim = Browser::new(&t);
    victim.log_in("responder", "").await;
    let own = victim.get("/").await.hidden("csrf");
    let mut other = Browser::new(&t);
    other.log_in("responder", "").await;
    let foreign = other.get("/").await.hidden("csrf");
    assert_ne!(own, foreign, "a token belongs to one session");
    let before = row_counts(&t).await;
    // Enough of every form to be acted on if the token were not checked.
    let fields = [
        ("action", "acknowledge"),
        ("version", "1"),
        ("body", "forged"),
        ("title", "forged"),
        ("category", "database"),
        ("severity", "P2"),
        ("name", "forged"),
        ("status", "not_required"),
    ];
    for r in PAGES
        .iter()
        .filter(|r| r.method == "POST" && r.path != "/login")
    {
        let path = fill(r.path, &n);
        let no_token = fields.to_vec();
        let mut foreign_token = fields.to_vec();
        foreign_token.push(("csrf", &foreign));
        for (case, form) in [
            ("no token", no_token),
            ("another session's token", foreign_token),
        ] {
            let page = victim.post(&path, &form).await;
            // Logging out without the token only leaves the page; the
            // session outlives it (checked at the end).
            let want = if path == "/logout" {
                StatusCode::SEE_OTHER
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(page.status, want, "POST {path} with {case}");
        }
        // The right token from another site's page: not signed in there.
        let mut form = fields.to_vec();
        form.push(("csrf", &own));
        let cross = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(t.url(&path))
            .header("origin", "http://evil.example")
            .header("cookie", victim.cookie_header())
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = cross.status();
        let to_login = cross
            .headers()
            .get("location")
            .is_some_and(|l| l == "/login");
        assert!(
            status == StatusCode::FORBIDDEN || (status == StatusCode::SEE_OTHER && to_login),
            "cross-origin POST {path}: {status}"
        );
    }
    assert_eq!(
        row_counts(&t).await,
        before,
        "a forged form changed something"
    );
    assert!(victim.get("/").await.status.is_success(), "still signed in");
}

const HOSTILE: &str = r#""'><script>alert('x')</script><img src=x onerror=alert(1)>"#;

/// The markup of `HOSTILE` as it would run.
fn unescaped(body: &str) -> bool {
    body.contains("<script>alert") || body.contains("<img src=x")
}

/// `HOSTILE`'s text, escaped either way the server escapes.
fn escaped(body: &str) -> bool {
    body.contains("&#60;script&#62;alert") || body.contains("&lt;script&gt;alert")
}

#[tokio::test]
async fn hostile_text_in_every_rendered_field_comes_back_escaped() {
    let t = TestApp::sqlite().await;
    let (s, inc) = t
        .post(
            &t.responder,
            "/api/v1/incidents",
            json!({
                "title": HOSTILE, "summary": HOSTILE, "category": "information_leak", "severity": "P1",
                "personal_data": {"involved": true, "items": [HOSTILE], "people_affected": 3}
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inc}");
    let n = inc["number"].as_str().unwrap().to_string();
    let writes = [
        (
            format!("/api/v1/incidents/{n}/notes"),
            json!({"body": HOSTILE}),
        ),
        (
            "/api/v1/users".into(),
            json!({"name": "mallory", "display_name": HOSTILE, "role": "viewer", "password": PASSWORD}),
        ),
        ("/api/v1/tokens".into(), json!({"name": HOSTILE})),
        (
            "/api/v1/schedules".into(),
            json!({"name": "primary", "layers": [
                {"name": HOSTILE, "start": "2026-01-05T10:00:00", "rotation": {"kind": "weekly"}, "members": ["responder"]}
            ]}),
        ),
        (
            "/api/v1/integrations".into(),
            json!({"type": "generic", "service": "web"}),
        ),
    ];
    let mut integration = Value::Null;
    for (path, body) in writes {
        let (s, created) = t.post(&t.admin, &path, body).await;
        assert!(s.is_success(), "{path}: {created}");
        integration = created;
    }
    let (s, pm) = t
        .call(
            Some(&t.admin),
            Method::PUT,
            &format!("/api/v1/incidents/{n}/postmortem"),
            Some(json!({"version": 0, "postmortem": {
                "summary": HOSTILE, "detection": HOSTILE, "direct_cause": HOSTILE,
                "root_causes": [{"kind": "process", "text": HOSTILE}],
                "lessons": {"good": [HOSTILE], "bad": [HOSTILE], "try": [HOSTILE]}
            }})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{pm}");
    let sent = t
        .http
        .post(t.url(&format!(
            "/api/v1/integrations/{}/generic",
            integration["key"].as_str().unwrap()
        )))
        .json(&json!({"summary": HOSTILE, "source": HOSTILE, "severity": "critical", "dedup_key": HOSTILE}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());

    let mut b = Browser::new(&t);
    b.log_in("admin", &totp_now(&t.admin.totp_secret())).await;
    // Pages that show the hostile text, then pages that reflect it.
    let showing = [
        "/".to_string(),
        "/incidents".into(),
        format!("/incidents/{n}"),
        format!("/incidents/{n}/timeline"),
        format!("/incidents/{n}/postmortem"),
        // The report page frames the rendered report.
        format!("/api/v1/incidents/{n}/reports/shimatsusho.html"),
        "/users".into(),
    ];
    for path in &showing {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!unescaped(&page.body), "{path} renders markup it was sent");
        assert!(
            escaped(&page.body),
            "{path} does not show the text at all: {}",
            page.body
        );
    }
    let encoded: String = form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect();
    for path in [
        format!("/incidents/{n}/reports/shimatsusho"),
        "/integrations".into(),
        "/audit".into(),
        "/schedules".into(),
        "/policies".into(),
        "/status".into(),
        "/status/feed.atom".into(),
        format!("/incidents?q={encoded}"),
        format!("/audit?q={encoded}"),
        format!("/incidents/{encoded}"),
    ] {
        let page = b.get(&path).await;
        assert!(!page.status.is_server_error(), "{path}: {}", page.status);
        assert!(!unescaped(&page.body), "{path} renders markup it was sent");
    }
}

const INJECTIONS: [&str; 7] = [
    "' OR 1=1 --",
    "\"; DROP TABLE incidents; --",
    "%' --",
    "' UNION SELECT name, sql FROM sqlite_master --",
    "a\0b",
    "\\",
    "'; DELETE FROM audit_events; --",
];

async fn injection_story(store: TestStore) {
    let t = TestApp::on(store).await;
    for i in 0..3 {
        t.declare(&t.responder, &format!("injection target {i}"), "P2")
            .await;
    }
    let (s, integration) = t
        .post(
            &t.admin,
            "/api/v1/integrations",
            json!({"type": "generic", "service": "web"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{integration}");
    t.weekly_schedule().await;
    let before = row_counts(&t).await;
    let long = "'".repeat(10_000);
    let payloads: Vec<&str> = INJECTIONS.iter().copied().chain([long.as_str()]).collect();
    // Every list endpoint and every parameter it takes.
    let lists: [(&str, &[&str]); 14] = [
        (
            "/api/v1/incidents",
            &[
                "status",
                "severity",
                "category",
                "environment",
                "detected_from",
                "detected_to",
                "q",
                "cursor",
                "limit",
            ],
        ),
        (
            "/api/v1/alerts",
            &[
                "status",
                "service",
                "integration",
                "incident",
                "cursor",
                "limit",
            ],
        ),
        (
            "/api/v1/audit/events",
            &[
                "actor",
                "role",
                "action",
                "target_kind",
                "target_id",
                "result",
                "source_ip",
                "from",
                "to",
                "q",
                "order",
                "cursor",
                "limit",
            ],
        ),
        (
            "/api/v1/action-items",
            &["owner", "open", "overdue", "limit"],
        ),
        ("/api/v1/obligations", &["overdue", "limit"]),
        ("/api/v1/notifications", &["status", "limit"]),
        (
            "/api/v1/metrics",
            &["from", "to", "bucket", "format", "lang"],
        ),
        ("/api/v1/breach-register", &["from", "to", "format"]),
        ("/api/v1/integrations", &["service"]),
        ("/api/v1/audit/tree-heads", &["below", "limit"]),
        ("/api/v1/audit/export", &["format", "from", "to"]),
        ("/api/v1/schedules/primary/oncall", &["at"]),
        ("/api/v1/schedules/primary/shifts", &["from", "until"]),
        ("/api/v1/users/responder/calendar.ics", &["user"]),
    ];
    for (path, params) in lists {
        for param in params {
            for payload in &payloads {
                let res = t
                    .http
                    .get(t.url(path))
                    .query(&[(param, payload)])
                    .bearer_auth(&t.admin.token)
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let text = res.text().await.unwrap();
                let what = format!("{path}?{param}={:.40}", payload);
                assert!(
                    status.is_success() || status.is_client_error(),
                    "{what}: {status} {text:.300}"
                );
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if status.is_client_error() {
                    assert!(body["code"].is_string(), "{what}: {text:.300}");
                } else if let Some(items) = body["items"].as_array() {
                    // A filter never matches more because of what it was sent.
                    assert!(items.is_empty(), "{what}: {text:.300}");
                }
            }
        }
    }
    // And every name or id in a path.
    for payload in &payloads {
        let encoded: String = form_urlencoded::byte_serialize(payload.as_bytes()).collect();
        for path in [
            "/api/v1/incidents/{}",
            "/api/v1/incidents/{}/timeline",
            "/api/v1/alerts/{}",
            "/api/v1/services/{}",
            "/api/v1/services/{}/changes",
            "/api/v1/schedules/{}",
            "/api/v1/escalation-policies/{}",
            "/api/v1/users/{}/contact-methods",
            "/api/v1/audit/events/{}",
        ] {
            let path = path.replace("{}", &encoded);
            let (status, body) = t.get(&t.admin, &path).await;
            assert!(
                status.is_client_error() && body["code"].is_string(),
                "{path:.80}: {status} {body:.300}"
            );
        }
    }
    assert_eq!(
        row_counts(&t).await,
        before,
        "an injection changed something"
    );
    t.assert_audit_verifies().await;
}

#[tokio::test]
async fn sql_injection_in_every_filter_changes_nothing_on_sqlite() {
    injection_story(support::sqlite().await).await;
}

#[tokio::test]
async fn sql_injection_in_every_filter_changes_nothing_on_postgres() {
    if let Some(store) = support::postgres().await {
        injection_story(store).await;
    }
}

#[tokio::test]
async fn report_and_export_names_cannot_reach_the_disk() {
    let t = TestApp::sqlite().await;
    let n = t.declare(&t.responder, "traversal", "P2").await["number"]
        .as_str()
        .unwrap()
        .to_string();
    let names = [
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..\\..\\..\\etc\\passwd",
        "..%5C..%5Cetc%5Cpasswd",
        "%2Fetc%2Fpasswd",
        "shimatsusho.md%00.pdf",
        "....%2F%2F....%2F%2Fetc%2Fpasswd.md",
        "..%252F..%252Fetc%252Fpasswd",
    ];
    let mut targets = Vec::new();
    for name in names {
        targets.push(format!("/api/v1/incidents/{n}/reports/{name}"));
        targets.push(format!(
            "/api/v1/incidents/{n}/reports/shimatsusho.md?pattern={name}"
        ));
        targets.push(format!(
            "/api/v1/incidents/{n}/reports/shimatsusho.md?lang={name}"
        ));
        targets.push(format!(
            "/api/v1/incidents/{n}/reports/shimatsusho.md?version={name}"
        ));
        targets.push(format!("/api/v1/audit/export?format={name}"));
        targets.push(format!("/api/v1/metrics?format={name}"));
        targets.push(format!("/api/v1/breach-register?format={name}"));
    }
    for target in targets {
        // Raw, so that no client resolves the dots before the server sees them.
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            t.addr, t.admin.token
        );
        let (status, answer) = raw_http(t.addr, request.as_bytes()).await;
        assert!(
            matches!(status, Some(400 | 404 | 422)),
            "{target}: {answer:.400}"
        );
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert!(json["code"].is_string(), "{target}: {answer:.400}");
        assert!(!answer.contains("root:"), "{target} read /etc/passwd");
    }
}

/// A bearer request for `/api/v1/me` with `token`.
async fn me_with(t: &TestApp, token: &str) -> reqwest::Response {
    t.http
        .get(t.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// A server that locks an address after five failures.
async fn locking_after_five() -> TestApp {
    let mut config = support::config();
    config.auth.address_lock_after = 5;
    TestApp::with_config(support::sqlite().await, config).await
}

#[tokio::test]
async fn guessing_bearer_tokens_locks_the_address_and_is_audited() {
    let t = locking_after_five().await;
    for i in 0..5 {
        let res = me_with(&t, &format!("kiroku_guess{i}")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // Locked: even a real token is refused from there, with Retry-After.
    let res = me_with(&t, &t.viewer.token).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_refusal(&body, "too_many_attempts", "locked address");
    let audit = t.audit().await;
    let lock = audit
        .iter()
        .find(|e| e["action"] == "authn_address_lock")
        .expect("the lock is audited");
    assert_eq!(lock["source"]["ip"], "127.0.0.1");
    let count = |code: &str| {
        audit
            .iter()
            .filter(|e| e["action"] == "authn_fail" && e["error_code"] == code)
            .count()
    };
    assert_eq!(count("invalid_token"), 5);
    assert_eq!(count("too_many_attempts"), 1);
    // A locked address cannot log in either.
    let login = t
        .http
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"name": "viewer", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn wrong_passwords_and_guessed_tokens_count_toward_one_lock() {
    let t = locking_after_five().await;
    for i in 0..3 {
        let res = t
            .http
            .post(t.url("/api/v1/auth/login"))
            .json(&json!({"name": format!("nobody{i}"), "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Revoked and expired tokens were real: they do not count as guesses.
    let (_, issued) = t
        .post(&t.viewer, "/api/v1/tokens", json!({"name": "gone"}))
        .await;
    let id = issued["token"]["id"].as_str().unwrap();
    t.call(
        Some(&t.viewer),
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        None,
    )
    .await;
    for _ in 0..3 {
        let res = me_with(&t, issued["secret"].as_str().unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me_with(&t, &t.viewer.token).await.status(), StatusCode::OK);
    let forged = t
        .http
        .get(t.url("/api/v1/me"))
        .header(
            "cookie",
            format!("{}=forged", kiroku_server::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        me_with(&t, "kiroku_guess").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me_with(&t, &t.viewer.token).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// `kiroku serve` on SQLite with `[http]` set to `http`; the server and its
/// address.
fn serve_with_http(http: &str) -> (crate::cli::Server, std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiroku.toml");
    std::fs::write(&config, format!("[http]\n{http}")).unwrap();
    let server = crate::cli::Server::start(&[
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let addr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (server, addr, dir)
}

/// Writes `parts` one by one, `gap` apart, and reads what comes back until
/// the server closes; the status, if any, and how long the server took.
async fn trickle(
    addr: std::net::SocketAddr,
    parts: &[&str],
    gap: Duration,
) -> (Option<u16>, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    let writer = tokio::spawn(async move {
        for p in parts {
            if write.write_all(p.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        // Then hold the connection open, sending nothing more.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut answer))
        .await
        .expect("a slow client held the connection for 20 s");
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3)?.parse().ok());
    (status, started.elapsed())
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let (_server, addr, _dir) =
        serve_with_http("header_read_timeout_secs = 1\nrequest_timeout_secs = 2\n");
    // Slowloris: a header line every 300 ms, never the blank line.
    let mut slow_head = vec!["GET /healthz HTTP/1.1\r\nHost: kiroku\r\n"];
    slow_head.extend(std::iter::repeat_n("X-Slow: 1\r\n", 100));
    let (status, took) = trickle(addr, &slow_head, Duration::from_millis(300)).await;
    assert!(status.is_none_or(|s| s == 408), "{status:?}");
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    // A connection that never sends anything is closed as well.
    let (_, took) = trickle(addr, &[], Duration::ZERO).await;
    assert!(took < Duration::from_secs(5), "idle for {took:?}");
    // A whole head, then a body that never finishes: 408 as JSON.
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: kiroku\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":";
    let (status, took) = trickle(addr, &[head], Duration::from_millis(100)).await;
    assert_eq!(status, Some(408));
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    // And the server still serves.
    let (status, _) = raw_http(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: kiroku\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200));
}

#[tokio::test]
async fn huge_headers_are_refused_and_the_server_stays_healthy() {
    let t = TestApp::sqlite().await;
    let big = format!(
        "GET /api/v1/me HTTP/1.1\r\nHost: kiroku\r\nAuthorization: Bearer {}\r\nX-Big: {}\r\n\r\n",
        t.viewer.token,
        "a".repeat(100 * 1024)
    );
    let many = format!(
        "GET /api/v1/me HTTP/1.1\r\nHost: kiroku\r\nAuthorization: Bearer {}\r\n{}\r\n",
        t.viewer.token,
        (0..10_000)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let long_line = format!(
        "GET /api/v1/incidents?q={} HTTP/1.1\r\nHost: kiroku\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    for (case, request) in [
        ("a 100 KB header", big),
        ("10,000 headers", many),
        ("a 100 KB request line", long_line),
    ] {
        let (status, answer) = raw_http(t.addr, request.as_bytes()).await;
        assert!(
            status.is_none_or(|s| s == 431 || s == 414),
            "{case}: {answer:.300}"
        );
    }
    let (s, _) = t.get(&t.viewer, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "the server still serves");
    // Just under the limits is still served.
    let res = t
        .http
        .get(t.url("/api/v1/me"))
        .bearer_auth(&t.viewer.token)
        .header("x-fine", "a".repeat(32 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
