//! The HTTP API end to end: the lifecycle on both backends, who may do
//! what, logins and their throttling, sessions, and what the audit log
//! records of each.

use insta::assert_json_snapshot;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::{self, PASSWORD, TestApp, TestUser, totp_now};

/// The operator's flow from the first paragraph of the core issue, on a
/// given backend: every step lands on the timeline and in the audit log.
async fn lifecycle(t: &TestApp) {
    let r = &t.responder;
    let (s, inc) = t
        .post(
            r,
            "/api/v1/incidents",
            json!({
                "title": "DB connection pool exhausted",
                "summary": "全機能が応答不能",
                "category": "database",
                "severity": "P0",
                "environment": "production",
                "location": "本番環境（AWS東京リージョン）",
                "affected_services": ["api", "web"],
                "commander": "admin",
                "assignees": ["responder"],
                "occurred_at": "2026-11-21T09:00:00+09:00"
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inc}");
    let number = inc["number"].as_str().unwrap().to_string();
    assert!(
        number.starts_with("DB-") && number.ends_with("-001"),
        "{number}"
    );
    assert_eq!(inc["commander"]["name"], "admin");
    assert_eq!(inc["reporter"]["name"], "responder");

    let path = |p: &str| format!("/api/v1/incidents/{number}{p}");
    let (s, _) = t
        .post(r, &path("/acknowledge"), json!({ "note": "見ています" }))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.post(r, &path("/investigate"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t
        .post(r, &path("/notes"), json!({ "body": "接続数上限に到達" }))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = t
        .call(
            Some(r),
            Method::PATCH,
            &path(""),
            Some(json!({
                "impact": { "users_affected": 1200, "records_affected": 0, "downtime_minutes": 42, "sla_breached": true },
                "personal_data": { "involved": true, "items": ["氏名", "メールアドレス"], "people_affected": 1200 }
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for step in ["mitigate", "resolve", "close"] {
        let (s, body) = t.post(r, &path(&format!("/{step}")), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{step}: {body}");
    }
    let (s, inc) = t.get(r, &path("")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(inc["status"], "closed");
    for stamp in [
        "detected_at",
        "acknowledged_at",
        "response_started_at",
        "mitigated_at",
        "resolved_at",
        "closed_at",
        "occurred_at",
    ] {
        assert!(inc[stamp].is_string(), "{stamp} missing");
    }
    assert_eq!(inc["impact"]["users_affected"], 1200);

    let (_, tl) = t.get(r, &path("/timeline")).await;
    let kinds: Vec<&str> = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "declared",
            "status_changed",
            "status_changed",
            "note",
            "updated",
            "status_changed",
            "status_changed",
            "status_changed"
        ]
    );
    assert!(
        tl["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"]["name"] == "responder")
    );

    let id = inc["id"].as_str().unwrap();
    let events: Vec<Value> = t
        .audit()
        .await
        .into_iter()
        .filter(|e| e["target"]["id"] == id)
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "incident_create",
            "incident_acknowledge",
            "incident_investigate",
            "incident_note_add",
            "incident_update",
            "incident_mitigate",
            "incident_resolve",
            "incident_close",
            // Reading an incident with personal data is audited.
            "incident_read_personal_data",
        ]
    );
    for e in &events {
        assert_eq!(e["actor"]["name"], "responder");
        assert_eq!(e["actor"]["role"], "responder");
        assert_eq!(e["source"]["ip"], "127.0.0.1");
        assert_eq!(e["source"]["user_agent"], "kiroku-tests/1");
        assert_eq!(e["outcome"], "success");
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "UTC");
    }
    let ack = &events[1];
    assert_eq!(ack["before"]["status"], "triggered");
    assert_eq!(ack["after"]["status"], "acknowledged");
    let update = &events[4];
    assert!(update["before"]["impact"]["users_affected"].is_null());
    assert_eq!(update["after"]["impact"]["users_affected"], 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() {
    lifecycle(&TestApp::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() {
    let Some(store) = support::postgres().await else {
        return;
    };
    lifecycle(&TestApp::on(store).await).await;
}

#[tokio::test]
async fn incident_json_shape() {
    let t = TestApp::sqlite().await;
    let inc = t.declare(&t.responder, "Snapshot <b>me</b>", "P1").await;
    assert_json_snapshot!("declared_incident", inc, {
        ".id" => "[id]",
        ".number" => "[number]",
        ".reporter.id" => "[id]",
        ".detected_at" => "[time]",
        ".created_at" => "[time]",
        ".updated_at" => "[time]",
        ".response_due_at" => "[time]",
    });
}

#[tokio::test]
async fn illegal_transition_names_both_states_and_is_audited() {
    let t = TestApp::sqlite().await;
    let inc = t.declare(&t.responder, "x", "P2").await;
    let n = inc["number"].as_str().unwrap();
    let (s, body) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{n}/close"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["code"], "illegal_transition");
    assert_eq!(body["current"], "triggered");
    assert_eq!(body["requested"], "closed");
    assert_eq!(body["field"], "status");
    let last = t.audit().await.pop().unwrap();
    assert_eq!(last["action"], "incident_close");
    assert_eq!(last["outcome"], "failure");
    assert_eq!(last["error_code"], "illegal_transition");
    assert_eq!(last["actor"]["name"], "responder");
    let (_, again) = t.get(&t.responder, &format!("/api/v1/incidents/{n}")).await;
    assert_eq!(again["status"], "triggered");
}

#[tokio::test]
async fn stale_if_match_is_refused() {
    let t = TestApp::sqlite().await;
    let inc = t.declare(&t.responder, "x", "P2").await;
    let url = t.url(&format!(
        "/api/v1/incidents/{}",
        inc["id"].as_str().unwrap()
    ));
    let res = t
        .http
        .get(&url)
        .bearer_auth(&t.responder.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["etag"], "\"v1\"");
    let ok = t
        .http
        .patch(&url)
        .bearer_auth(&t.responder.token)
        .header("if-match", "\"v1\"")
        .json(&json!({"title": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let stale = t
        .http
        .patch(&url)
        .bearer_auth(&t.responder.token)
        .header("if-match", "\"v1\"")
        .json(&json!({"title": "z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["code"], "version_conflict");
    assert_eq!(body["current_version"], 2);
}

/// Expected status for each role on each kind of request.
#[tokio::test]
async fn permission_matrix_cell_by_cell() {
    let t = TestApp::sqlite().await;
    let inc = t.declare(&t.responder, "matrix", "P3").await;
    let n = inc["number"].as_str().unwrap().to_string();
    type Case = (&'static str, Method, String, Option<Value>);
    let cases: Vec<Case> = vec![
        (
            "read incidents",
            Method::GET,
            "/api/v1/incidents".into(),
            None,
        ),
        (
            "read one",
            Method::GET,
            format!("/api/v1/incidents/{n}"),
            None,
        ),
        (
            "declare",
            Method::POST,
            "/api/v1/incidents".into(),
            Some(json!({"title":"t","category":"database","severity":"P3"})),
        ),
        (
            "note",
            Method::POST,
            format!("/api/v1/incidents/{n}/notes"),
            Some(json!({"body":"b"})),
        ),
        (
            "edit",
            Method::PATCH,
            format!("/api/v1/incidents/{n}"),
            Some(json!({"summary":"s"})),
        ),
        ("audit", Method::GET, "/api/v1/audit/events".into(), None),
        ("list users", Method::GET, "/api/v1/users".into(), None),
        (
            "create user",
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"name":"NEWUSER","role":"viewer","password":PASSWORD})),
        ),
        (
            "own token",
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name":"mine"})),
        ),
        (
            "token for other",
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name":"theirs","user":"viewer"})),
        ),
    ];
    // admin, responder, viewer, auditor, anonymous
    let expected: [(&str, [u16; 5]); 10] = [
        ("read incidents", [200, 200, 200, 200, 401]),
        ("read one", [200, 200, 200, 200, 401]),
        ("declare", [201, 201, 403, 403, 401]),
        ("note", [201, 201, 403, 403, 401]),
        ("edit", [200, 200, 403, 403, 401]),
        ("audit", [200, 403, 403, 200, 401]),
        ("list users", [200, 403, 403, 403, 401]),
        // The name is invalid on purpose: admins get 422, others never get that far.
        ("create user", [422, 403, 403, 403, 401]),
        ("own token", [201, 201, 201, 201, 401]),
        ("token for other", [201, 403, 201, 403, 401]),
    ];
    let users: [Option<&TestUser>; 5] = [
        Some(&t.admin),
        Some(&t.responder),
        Some(&t.viewer),
        Some(&t.auditor),
        None,
    ];
    for ((name, method, path, body), (ename, row)) in cases.into_iter().zip(expected) {
        assert_eq!(name, ename);
        for (user, want) in users.iter().zip(row) {
            let (s, resp) = t.call(*user, method.clone(), &path, body.clone()).await;
            let who = user.map_or("anonymous", |u| u.name.as_str());
            assert_eq!(s.as_u16(), want, "{name} as {who}: {resp}");
            if !s.is_success() {
                assert!(
                    resp["code"].is_string() && resp["message"].is_string(),
                    "{name} as {who}: {resp}"
                );
            }
        }
    }
    let refusals = t
        .audit()
        .await
        .into_iter()
        .filter(|e| e["action"] == "authz_fail")
        .count();
    assert_eq!(refusals, 16, "every 403 in the matrix is audited");
}

/// GET /api/v1/me with a session cookie.
async fn get_me(t: &TestApp, cookie: &str) -> reqwest::Response {
    t.http
        .get(t.url("/api/v1/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// The `kiroku_session=…` pair a login set.
fn session_cookie(res: &reqwest::Response) -> String {
    let header = res.headers()["set-cookie"].to_str().unwrap();
    header.split(';').next().unwrap().to_string()
}

async fn login(t: &TestApp, body: Value) -> reqwest::Response {
    t.http
        .post(t.url("/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_login_needs_a_fresh_totp_code() {
    let t = TestApp::sqlite().await;
    let secret = t.admin.totp_secret();
    let res = login(&t, json!({"name":"admin","password":PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "totp_required");
    let res = login(
        &t,
        json!({"name":"admin","password":PASSWORD,"totp_code":"000000"}),
    )
    .await;
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_totp");
    let code = totp_now(&secret);
    let res = login(
        &t,
        json!({"name":"admin","password":PASSWORD,"totp_code":code}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // The same code cannot be replayed.
    let res = login(
        &t,
        json!({"name":"admin","password":PASSWORD,"totp_code":code}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let actions: Vec<String> = t
        .audit()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"authn_login_success".to_string()));
    assert_eq!(
        actions.iter().filter(|a| *a == "authn_login_fail").count(),
        2
    );
}

#[tokio::test]
async fn sessions_work_expire_on_logout_and_refuse_cross_site_writes() {
    let t = TestApp::sqlite().await;
    let res = login(&t, json!({"name":"responder","password":PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = session_cookie(&res);
    let me = get_me(&t, &cookie).await;
    assert_eq!(
        me.json::<Value>().await.unwrap()["user"]["name"],
        "responder"
    );
    let body = json!({"title":"t","category":"database","severity":"P3"});
    let cross = t
        .http
        .post(t.url("/api/v1/incidents"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(cross.json::<Value>().await.unwrap()["code"], "cross_origin");
    let same = t
        .http
        .post(t.url("/api/v1/incidents"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", t.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::CREATED);
    let out = t
        .http
        .post(t.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = get_me(&t, &cookie).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        after.json::<Value>().await.unwrap()["code"],
        "invalid_session"
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_are_audited() {
    let t = TestApp::sqlite().await;
    for i in 1..=5 {
        let res = login(&t, json!({"name":"viewer","password":"wrong password!"})).await;
        let want = if i < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(res.status(), want, "attempt {i}");
    }
    // Locked: even the right password is refused, with Retry-After.
    let res = login(&t, json!({"name":"viewer","password":PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "too_many_attempts"
    );
    let events = t.audit().await;
    let count = |a: &str| events.iter().filter(|e| e["action"] == a).count();
    assert_eq!(count("authn_login_fail"), 6);
    assert_eq!(count("authn_login_lock"), 1);
    let lock = events
        .iter()
        .find(|e| e["action"] == "authn_login_lock")
        .unwrap();
    assert_eq!(lock["source"]["ip"], "127.0.0.1");
    // Other accounts are unaffected.
    let res = login(&t, json!({"name":"responder","password":PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_address_is_locked_after_many_failures_across_names() {
    let store = support::sqlite().await;
    let mut config = support::config();
    config.auth.address_lock_after = 4;
    let t = TestApp::with_config(store, config).await;
    for i in 0..4 {
        let res = login(&t, json!({"name": format!("nobody{i}"), "password":"x"})).await;
        assert_ne!(res.status(), StatusCode::OK);
    }
    let res = login(&t, json!({"name":"responder","password":PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn tokens_are_listed_revoked_and_then_refused() {
    let t = TestApp::sqlite().await;
    let (s, issued) = t
        .post(&t.viewer, "/api/v1/tokens", json!({"name":"laptop"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = issued["secret"].as_str().unwrap().to_string();
    let laptop = TestUser {
        name: "viewer".into(),
        token: secret,
        totp_uri: None,
    };
    let (s, _) = t.get(&laptop, "/api/v1/incidents").await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = t.get(&t.viewer, "/api/v1/tokens").await;
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|t| t.get("secret").is_none() && t.get("hash").is_none())
    );
    let id = issued["token"]["id"].as_str().unwrap();
    // Someone else's token is not theirs to see or revoke.
    let (s, _) = t
        .call(
            Some(&t.responder),
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t
        .call(
            Some(&t.viewer),
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = t.get(&laptop, "/api/v1/incidents").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "token_revoked");
    let last = t.audit().await.pop().unwrap();
    assert_eq!(last["action"], "authn_fail");
    assert_eq!(last["error_code"], "token_revoked");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let t = TestApp::sqlite().await;
    let user = t.store.store.user_by_name("viewer").await.unwrap().unwrap();
    let now = jiff::Timestamp::now();
    let secret = "kiroku_expired-token-for-tests-0000000000000000000000";
    let record = kiroku_store::TokenRecord {
        id: uuid::Uuid::now_v7(),
        user_id: user.id,
        name: "old".into(),
        hash: sha2::Sha256::digest(secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        created_at: now - jiff::SignedDuration::from_hours(48),
        expires_at: Some(now - jiff::SignedDuration::from_hours(1)),
        last_used_at: None,
        revoked_at: None,
    };
    let mut tx = t.store.store.begin().await.unwrap();
    tx.insert_token(&record).await.unwrap();
    crate::support::commit_as_system(
        tx,
        kiroku_domain::Operation::Create,
        "authn_token_created",
        kiroku_domain::Target::new("token", Some(record.id.to_string())),
    )
    .await;
    let old = TestUser {
        name: "viewer".into(),
        token: secret.into(),
        totp_uri: None,
    };
    let (s, body) = t.get(&old, "/api/v1/incidents").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "token_expired");
}

#[tokio::test]
async fn list_filters_and_pages_over_http() {
    let t = TestApp::sqlite().await;
    for i in 0..5 {
        t.declare(
            &t.responder,
            &format!("svc {i}"),
            if i < 2 { "P0" } else { "P2" },
        )
        .await;
    }
    let (s, body) = t
        .get(&t.viewer, "/api/v1/incidents?severity=P0&status=triggered")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (_, p1) = t.get(&t.viewer, "/api/v1/incidents?limit=3").await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 3);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = t
        .get(
            &t.viewer,
            &format!("/api/v1/incidents?limit=3&cursor={cursor}"),
        )
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 2);
    assert!(p2["next_cursor"].is_null());
    let (_, q) = t.get(&t.viewer, "/api/v1/incidents?q=SVC%203").await;
    assert_eq!(q["items"].as_array().unwrap().len(), 1);
    let (s, _) = t
        .get(
            &t.viewer,
            "/api/v1/incidents?detected_from=2026-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn health_and_unknown_endpoints() {
    let t = TestApp::sqlite().await;
    let (s, body) = t.call(None, Method::GET, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["backend"], "sqlite");
    let (s, body) = t
        .call(None, Method::GET, "/api/v1/nothing-here", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn sessions_expire() {
    let store = support::sqlite().await;
    let mut config = support::config();
    // Long enough that a loaded machine still answers the first read in time.
    config.auth.session_ttl = jiff::SignedDuration::from_secs(3);
    let t = TestApp::with_config(store, config).await;
    let res = login(&t, json!({"name":"viewer","password":PASSWORD})).await;
    let cookie = session_cookie(&res);
    let me = get_me(&t, &cookie).await;
    assert_eq!(me.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let me = get_me(&t, &cookie).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me.json::<Value>().await.unwrap()["code"], "session_expired");
}

/// An incident's personal-data facts decide which regulators must be told
/// and by when, counted from its detection.
#[tokio::test]
async fn regulators_duties_follow_the_personal_data_facts() {
    let t = TestApp::sqlite().await;
    let detected = "2026-11-30T01:00:00Z";
    let (status, leak) = t
        .post(
            &t.responder,
            "/api/v1/incidents",
            json!({"title": "顧客情報の漏洩", "category": "information_leak", "severity": "P0",
                   "detected_at": detected,
                   "personal_data": {"involved": true, "items": ["氏名"], "people_affected": 1500}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{leak}");
    let path = format!(
        "/api/v1/incidents/{}/obligations",
        leak["number"].as_str().unwrap()
    );
    let (status, duties) = t.get(&t.viewer, &path).await;
    assert_eq!(status, StatusCode::OK, "{duties}");
    let due = |key: &str| {
        duties["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["key"] == key)
            .map(|d| d["due_at"].as_str().unwrap().to_string())
    };
    // Over 1,000 people: APPI's 速報 in 3 days, 確報 in 30; GDPR in 72 h.
    assert_eq!(
        due("appi_preliminary").as_deref(),
        Some("2026-12-03T01:00:00Z")
    );
    assert_eq!(due("appi_final").as_deref(), Some("2026-12-30T01:00:00Z"));
    assert_eq!(due("gdpr_art33").as_deref(), Some("2026-12-03T01:00:00Z"));
    assert!(due("nis2_early_warning").is_some(), "{duties}");
    // Materiality is not determined: no SEC 8-K clock yet.
    assert!(due("sec_8k").is_none());
    // Reading them reads personal-data facts: audited like the incident.
    let audit = t.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "incident_read_personal_data")
    );
    // No personal data, a database incident: nothing to report.
    let plain = t.declare(&t.responder, "遅延", "P2").await;
    let (_, none) = t
        .get(
            &t.viewer,
            &format!(
                "/api/v1/incidents/{}/obligations",
                plain["number"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(none["items"], json!([]));
    let (status, _) = t.call(None, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t
        .get(&t.viewer, "/api/v1/incidents/NOPE-1/obligations")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
