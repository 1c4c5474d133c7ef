//! Paging end to end, on both backends: people's contact methods, an
//! on-call schedule, an escalation policy with seed 002's rule on data
//! loss, an alert that pages whoever is on call through a real webhook
//! receiver and a Twilio-compatible SMS provider on loopback, one-click
//! acknowledgement links, text replies signed as the provider signs them,
//! re-escalation, response-start targets, and the bad input around it all.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::notify::Receiver;
use crate::support::{self, TestApp, TestStore};

const ACCOUNT: &str = "AC0123456789abcdef";
const AUTH_TOKEN: &str = "provider auth token";
const PHONE: &str = "+819011112222";

/// One request to the SMS provider.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) resource: String,
    pub(crate) to: String,
    pub(crate) content: String,
    pub(crate) key: String,
}

/// A Twilio-compatible REST API on loopback: checks the account's basic
/// auth, records each text and call.
#[derive(Clone, Default)]
pub(crate) struct Provider {
    pub(crate) sent: Arc<Mutex<Vec<Sent>>>,
}

async fn provider_post(
    State(p): State<Provider>,
    Path((account, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{AUTH_TOKEN}"))
    );
    let authorised = headers
        .get("authorization")
        .is_some_and(|v| v.to_str().unwrap() == expected);
    if account != ACCOUNT || !authorised {
        return AxStatus::UNAUTHORIZED.into_response();
    }
    let form: Vec<(String, String)> = form_urlencoded_pairs(&body);
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    p.sent.lock().unwrap().push(Sent {
        resource: resource.trim_end_matches(".json").to_string(),
        to: get("To"),
        content: if resource.starts_with("Calls") {
            get("Twiml")
        } else {
            get("Body")
        },
        key: headers
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
    });
    (AxStatus::CREATED, axum::Json(json!({"sid": "SM1"}))).into_response()
}

fn form_urlencoded_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

impl Provider {
    pub(crate) async fn start(&self) -> kiroku::notify::SmsSettings {
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/{resource}",
                axum::routing::post(provider_post),
            )
            .with_state(self.clone());
        let addr = support::serve_loopback(app).await;
        kiroku::notify::SmsSettings {
            base_url: format!("http://{addr}"),
            account_sid: ACCOUNT.into(),
            auth_token: AUTH_TOKEN.into(),
            from: "+815000000000".into(),
        }
    }

    pub(crate) fn to(&self, resource: &str) -> Vec<Sent> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.resource == resource)
            .cloned()
            .collect()
    }
}

/// What the provider signs an inbound request with.
fn provider_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A text reply as the provider posts it; the status and the body.
async fn text_reply(t: &TestApp, from: &str, body: &str, sign: bool) -> (StatusCode, String) {
    let params = [("From", from), ("To", "+815000000000"), ("Body", body)];
    let url = t.url("/api/v1/sms/inbound");
    let signature = if sign {
        provider_signature(&url, &params)
    } else {
        "bm90IGEgc2lnbmF0dXJl".into()
    };
    let res = t
        .http
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// Pages (topic `incident.page`) a webhook receiver got on `hook`.
fn pages(rx: &Receiver, hook: &str) -> Vec<Value> {
    rx.of(hook)
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .filter(|b| b["topic"] == "incident.page")
        .collect()
}

async fn created(t: &TestApp, user: &support::TestUser, path: &str, body: Value) -> Value {
    let (status, v) = t.post(user, path, body).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {v}");
    v
}

async fn user_id(t: &TestApp, name: &str) -> String {
    let (_, users) = t.get(&t.admin, "/api/v1/users").await;
    users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn quick_retries() -> kiroku_app::Config {
    let mut c = support::config();
    c.notify.retry = kiroku_domain::notify::RetryPolicy {
        first_delay: jiff::SignedDuration::from_millis(200),
        max_delay: jiff::SignedDuration::from_secs(1),
        max_attempts: 3,
    };
    c
}

/// The responder reached through a webhook receiver (hook `r`): the
/// receiver, and the responder as a policy's targets.
async fn reach_the_responder(t: &TestApp) -> (Receiver, Value) {
    let rx = Receiver::default();
    let hooks = rx.start().await;
    created(
        t,
        &t.admin,
        "/api/v1/users/responder/contact-methods",
        json!({"label": "hook", "type": "webhook", "address": format!("{hooks}/r"), "rate_per_minute": 6000}),
    )
    .await;
    let responder = user_id(t, "responder").await;
    (rx, json!([{"type": "user", "id": responder}]))
}

/// The default policy paging the responder through a webhook receiver
/// (hook `r`), which is returned.
async fn page_the_responder(t: &TestApp) -> Receiver {
    let (rx, target) = reach_the_responder(t).await;
    created(
        t,
        &t.admin,
        "/api/v1/escalation-policies",
        json!({"name": "default", "levels": [{"targets": target, "delay_minutes": 5}]}),
    )
    .await;
    rx
}

/// A calendar as a viewer fetches it.
async fn calendar(t: &TestApp, path: &str) -> String {
    let res = t
        .http
        .get(t.url(path))
        .bearer_auth(&t.viewer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    assert_eq!(
        res.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    res.text().await.unwrap()
}

/// The incident's timeline entries of `kind`.
async fn timeline_of(t: &TestApp, number: &str, kind: &str) -> Vec<Value> {
    let (_, tl) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{number}/timeline"))
        .await;
    tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

async fn paging_story(store: TestStore) {
    let provider = Provider::default();
    let sms = provider.start().await;
    let t = TestApp::paging(store, quick_retries(), Some(sms)).await;
    let rx = Receiver::default();
    let hooks = rx.start().await;

    // The responder is reached through a webhook (only an administrator
    // adds those) and a text at once, and a call after a minute.
    let methods = "/api/v1/users/responder/contact-methods";
    let (status, e) = t
        .post(
            &t.responder,
            methods,
            json!({"label": "hook", "type": "webhook", "address": format!("{hooks}/alice")}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["code"], "not_allowed");
    let hook = created(
        &t,
        &t.admin,
        methods,
        json!({"label": "hook", "type": "webhook", "address": format!("{hooks}/alice")}),
    )
    .await;
    assert_eq!(hook["name"], "@responder/hook");
    assert_eq!(hook["url"], format!("{}/…", &hooks[..hooks.len() - 5]));
    let phone = created(
        &t,
        &t.responder,
        methods,
        json!({"label": "phone", "type": "sms", "address": "tel:+81-90-1111-2222"}),
    )
    .await;
    assert_eq!(phone["levels"], json!(["critical"]));
    created(
        &t,
        &t.responder,
        methods,
        json!({"label": "call", "type": "voice", "address": format!("tel:{PHONE}"), "delay_minutes": 1}),
    )
    .await;
    let (status, _) = t.get(&t.viewer, methods).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) = t
        .post(
            &t.responder,
            "/api/v1/users/admin/contact-methods",
            json!({"label": "x", "type": "webhook", "address": format!("{hooks}/x")}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    // Contact methods are no shared channels.
    let (_, shared) = t.get(&t.admin, "/api/v1/channels").await;
    assert_eq!(shared["items"], json!([]));
    created(
        &t,
        &t.admin,
        "/api/v1/users/admin/contact-methods",
        json!({"label": "hook", "type": "webhook", "address": format!("{hooks}/admin")}),
    )
    .await;
    created(
        &t,
        &t.admin,
        "/api/v1/users/admin/contact-methods",
        json!({"label": "call", "type": "voice", "address": "tel:+819033334444"}),
    )
    .await;
    // Legal hears of pages only (a shared channel takes no level's notices
    // when it takes none it is not asked for).
    let legal = created(
        &t,
        &t.admin,
        "/api/v1/channels",
        json!({"name": "legal", "type": "webhook", "url": format!("{hooks}/legal"), "levels": ["critical"]}),
    )
    .await;

    let schedule = t.weekly_schedule().await;
    assert_eq!(schedule["time_zone"], "Asia/Tokyo");
    let (status, oncall) = t.get(&t.viewer, "/api/v1/schedules/primary/oncall").await;
    assert_eq!(status, StatusCode::OK, "{oncall}");
    assert_eq!(oncall["user"], "responder");
    assert_eq!(oncall["source"], "weekly");

    let admin_id = user_id(&t, "admin").await;
    let policy = created(
        &t,
        &t.admin,
        "/api/v1/escalation-policies",
        json!({"name": "ops", "levels": [
            {"targets": [{"type": "schedule", "id": schedule["id"]}], "delay_minutes": 1},
            {"targets": [{"type": "user", "id": admin_id}], "delay_minutes": 1},
        ], "rules": [
            {"name": "データ損失疑い", "when": {"categories": ["data_loss"]},
             "targets": [{"type": "channel", "id": legal["id"]}]}
        ]}),
    )
    .await;
    assert_eq!(policy["version"], 1);

    let (status, i) = t
        .post(
            &t.admin,
            "/api/v1/integrations",
            json!({"type": "generic", "service": "db"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{i}");
    let key = i["key"].as_str().unwrap();
    // A policy that does not exist is refused, not paged through the
    // default one; so is one named by its id, which routing does not read.
    for (routing, field) in [
        (
            json!({"escalation_policy": "opz"}),
            "routing.escalation_policy",
        ),
        (
            json!({"rules": [{"when": {}, "then": {"escalation_policy": "opz"}}]}),
            "routing.rules[0].then.escalation_policy",
        ),
        (
            json!({"escalation_policy": policy["id"]}),
            "routing.escalation_policy",
        ),
    ] {
        let (status, body) = t
            .call(
                Some(&t.admin),
                Method::PUT,
                "/api/v1/services/db/routing",
                Some(routing),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "unknown_value", "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
    let (status, _) = t
        .call(
            Some(&t.admin),
            Method::PUT,
            "/api/v1/services/db/routing",
            Some(json!({"escalation_policy": "ops", "rules": [
                {"when": {"severities": ["critical"]}, "then": {"escalation_policy": "ops"}}
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Renaming the policy carries through to the routing that names it;
    // the pages below go through it, not the default policy.
    let renamed =
        json!({"name": "ops-primary", "levels": policy["levels"], "rules": policy["rules"]});
    let (status, body) = t
        .call(
            Some(&t.admin),
            Method::PUT,
            "/api/v1/escalation-policies/ops",
            Some(renamed),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, service) = t.get(&t.viewer, "/api/v1/services/db").await;
    assert_eq!(
        service["routing"]["escalation_policy"], "ops-primary",
        "{service}"
    );
    assert_eq!(
        service["routing"]["rules"][0]["then"]["escalation_policy"], "ops-primary",
        "{service}"
    );
    let (_, audit) = t
        .get(
            &t.auditor,
            "/api/v1/audit/events?action=service_routing_set",
        )
        .await;
    let newest = audit["items"].as_array().unwrap().last().unwrap();
    assert_eq!(newest["actor"]["name"], "admin", "{audit}");
    assert_eq!(
        newest["after"]["routing"]["escalation_policy"], "ops-primary",
        "{audit}"
    );
    assert_eq!(
        newest["before"]["routing"]["escalation_policy"], "ops",
        "{audit}"
    );
    let alert = |dedup: &str| json!({"summary": "Primary DB refuses connections", "source": "db-1", "severity": "critical", "dedup_key": dedup});
    let url = format!("/api/v1/integrations/{key}/generic");
    let (status, accepted) = t.call(None, Method::POST, &url, Some(alert("db-1"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let incident_id = accepted["results"][0]["incident_id"].as_str().unwrap();
    let (_, incident) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{incident_id}"))
        .await;
    let number = incident["number"].as_str().unwrap().to_string();

    // Level 1: whoever is on call, through every method, at once.
    rx.wait_for("the page", |r| pages(r, "alice").len() == 1)
        .await;
    let page = pages(&rx, "alice").remove(0);
    assert_eq!(page["level"], "critical");
    assert!(page["title"].as_str().unwrap().starts_with(&number));
    let ack_url = page["ack_url"].as_str().unwrap().to_string();
    assert!(ack_url.starts_with(&t.url("/ack/")), "{ack_url}");
    for _ in 0..200 {
        if !provider.to("Messages").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let texts = provider.to("Messages");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0].to, PHONE);
    assert!(texts[0].key.starts_with("page:"), "{texts:?}");
    assert!(
        texts[0].content.contains(&format!("Reply ACK {number}")),
        "{texts:?}"
    );
    let entries = timeline_of(&t, &number, "escalation").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let said = entries[0]["body"].as_str().unwrap();
    assert!(
        said.contains("paged level 1")
            && said.contains("@responder/phone")
            && said.contains("@responder/call (after 1 min)")
            && said.contains("responder is on call in primary"),
        "{said}"
    );
    let (status, esc) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{number}/escalation"))
        .await;
    assert_eq!(status, StatusCode::OK, "{esc}");
    assert_eq!(esc["policy"], "ops-primary");
    assert_eq!(esc["level"], 0);
    assert!(esc["due_at"].is_string());

    // The link opens a confirmation page; acknowledging takes a POST.
    let res = t.http.get(&ack_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("method=\"post\"") && html.contains(&number),
        "{html}"
    );
    let (_, still) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{number}"))
        .await;
    assert_eq!(still["status"], "triggered");
    let res = t.http.post(&ack_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("acknowledged; paging has stopped")
    );
    let (_, acked) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{number}"))
        .await;
    assert_eq!(acked["status"], "acknowledged");
    // The call that waited is cancelled; the audit names who acknowledged.
    let (_, cancelled) = t
        .get(&t.admin, "/api/v1/notifications?status=cancelled")
        .await;
    let cancelled = cancelled["items"].as_array().unwrap();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0]["notice"]["topic"], "incident.page");
    let audit = t.audit().await;
    let ack = audit
        .iter()
        .find(|e| e["action"] == "incident_acknowledge")
        .unwrap();
    assert_eq!(ack["actor"]["name"], "responder");
    // Again: a safe no-op. Altered or cut: refused.
    let res = t.http.post(&ack_url).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("already acknowledged"));
    let mut forged = ack_url.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        forged,
        ack_url[..ack_url.len() - 10].to_string(),
        t.url("/ack/x.y"),
    ] {
        let res = t.http.post(&bad).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{bad}");
    }

    // Re-escalation pages the next level at once.
    let escalate = format!("/api/v1/incidents/{number}/escalate");
    let (status, _) = t.post(&t.viewer, &escalate, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) = t.post(&t.responder, &escalate, json!({"level": 9})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "level");
    let (status, e) = t
        .post(&t.responder, &escalate, json!({"level": 1, "loop": true}))
        .await;
    assert!(status.is_client_error(), "{e}");
    let (status, esc) = t.post(&t.responder, &escalate, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{esc}");
    assert_eq!(esc["level"], 1);
    rx.wait_for("the level-2 page", |r| pages(r, "admin").len() == 1)
        .await;
    for _ in 0..200 {
        if !provider.to("Calls").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls = provider.to("Calls");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].to, "+819033334444");
    assert!(
        calls[0]
            .content
            .starts_with("<Response><Say language=\"en-US\">Kiroku. CRITICAL."),
        "{calls:?}"
    );

    // Data loss suspected: legal at once, by the rule.
    let (status, _) = t
        .call(
            Some(&t.responder),
            Method::PATCH,
            &format!("/api/v1/incidents/{number}"),
            Some(json!({"category": "data_loss"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    rx.wait_for("legal's page", |r| pages(r, "legal").len() == 1)
        .await;
    assert!(
        pages(&rx, "legal")[0]["text"]
            .as_str()
            .unwrap()
            .contains("データ損失疑い")
    );
    // The step that paged legal did not take the acknowledgement from
    // before the re-escalation again: the ladder still climbs.
    let (_, esc) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{number}/escalation"))
        .await;
    assert!(esc["acknowledged_at"].is_null(), "{esc}");
    assert!(esc["due_at"].is_string(), "{esc}");
    assert_eq!(esc["rules_fired"], json!(["データ損失疑い"]));

    // A second incident, acknowledged by text reply.
    let (_, accepted) = t.call(None, Method::POST, &url, Some(alert("db-2"))).await;
    let second = accepted["results"][0]["incident_id"].as_str().unwrap();
    let (_, second) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{second}"))
        .await;
    let second = second["number"].as_str().unwrap().to_string();
    rx.wait_for("the second page", |r| pages(r, "alice").len() == 2)
        .await;
    let (status, body) = text_reply(&t, PHONE, &format!("ack {second}"), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = text_reply(&t, "+819099999999", &format!("ACK {second}"), true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The number of a call, not a text, is no sender either.
    let (status, body) = text_reply(&t, "+819033334444", &format!("ACK {second}"), true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = text_reply(&t, PHONE, "hello?", true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Reply ACK"), "{body}");
    let (status, body) =
        text_reply(&t, PHONE, &format!("ack {}", second.to_lowercase()), true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("<Response><Message>") && body.contains("acknowledged."),
        "{body}"
    );
    let (_, acked) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{second}"))
        .await;
    assert_eq!(acked["status"], "acknowledged");
    // A replay changes nothing.
    let (_, body) = text_reply(&t, PHONE, &format!("ACK {second}"), true).await;
    assert!(body.contains("already acknowledged"), "{body}");
    let (_, body) = text_reply(&t, PHONE, "ACK NOPE-2026-999", true).await;
    assert!(body.contains("No incident"), "{body}");

    // Resolving stops the escalation for good.
    let (status, _) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{number}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, esc) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{number}/escalation"))
        .await;
    assert!(esc["stopped_at"].is_string(), "{esc}");
    assert!(esc["due_at"].is_null());
    let (status, e) = t.post(&t.responder, &escalate, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["code"], "not_escalating");

    // Contact methods and channels can be removed, and their names reused.
    let (_, listed) = t.get(&t.responder, methods).await;
    let call = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "@responder/call")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let remove = format!("{methods}/{call}");
    let (status, _) = t.call(Some(&t.viewer), Method::DELETE, &remove, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, gone) = t
        .call(Some(&t.responder), Method::DELETE, &remove, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert!(gone["removed_at"].is_string());
    let (status, _) = t
        .call(Some(&t.responder), Method::DELETE, &remove, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = t.get(&t.responder, methods).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    created(
        &t,
        &t.responder,
        methods,
        json!({"label": "call", "type": "voice", "address": format!("tel:{PHONE}"), "delay_minutes": 1}),
    )
    .await;
    let legal_path = format!("/api/v1/channels/{}", legal["id"].as_str().unwrap());
    let (status, _) = t
        .call(Some(&t.responder), Method::DELETE, &legal_path, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t
        .call(Some(&t.admin), Method::DELETE, &legal_path, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, shared) = t.get(&t.admin, "/api/v1/channels").await;
    assert_eq!(shared["items"], json!([]));
    let (status, e) = t
        .call(
            Some(&t.admin),
            Method::DELETE,
            "/api/v1/channels/not-an-id",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");

    // Every page is audited, and each went out once.
    let audit = t.audit().await;
    assert!(
        audit
            .iter()
            .filter(|e| e["action"] == "incident_page")
            .count()
            >= 4
    );
    let mut keys: Vec<String> = rx.of("alice").into_iter().map(|r| r.key).collect();
    let all = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all, "a page went out twice");
    t.assert_audit_verifies().await;
}

#[tokio::test]
async fn paging_on_sqlite() {
    paging_story(support::sqlite().await).await;
}

#[tokio::test]
async fn paging_on_postgres() {
    let Some(store) = support::postgres().await else {
        return;
    };
    paging_story(store).await;
}

#[tokio::test]
async fn a_response_start_target_missed_is_recorded_and_announced() {
    let t = TestApp::paging(support::sqlite().await, quick_retries(), None).await;
    let rx = Receiver::default();
    let hooks = rx.start().await;
    created(
        &t,
        &t.admin,
        "/api/v1/channels",
        json!({"name": "ops", "type": "webhook", "url": format!("{hooks}/ops")}),
    )
    .await;
    // Detected ten minutes ago, P0: its response was due five minutes ago.
    let detected = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let incident = created(
        &t,
        &t.responder,
        "/api/v1/incidents",
        json!({"title": "決済停止", "category": "service_outage", "severity": "P0", "detected_at": detected}),
    )
    .await;
    let number = incident["number"].as_str().unwrap();
    rx.wait_for("the breach notice", |r| {
        r.of("ops")
            .iter()
            .any(|m| m.body.contains("incident.response_breached"))
    })
    .await;
    let entries = timeline_of(&t, number, "escalation").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("response-start target missed")
    );
    let audit = t.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["action"] == "response_target_breached")
            .count(),
        1
    );
    // Acknowledged in time: no breach.
    let fresh = t.declare(&t.responder, "遅延", "P0").await;
    let n2 = fresh["number"].as_str().unwrap();
    let (status, _) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{n2}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, esc) = t
        .get(&t.viewer, &format!("/api/v1/incidents/{n2}/escalation"))
        .await;
    assert!(esc["acknowledged_at"].is_string(), "{esc}");
    assert!(esc["response_breached_at"].is_null());
    assert!(esc["due_at"].is_null(), "{esc}");
}

/// Pages each incident got on hook `r`, by incident id.
fn pages_by_incident(rx: &Receiver) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for page in pages(rx, "r") {
        *counts
            .entry(page["incident_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// The worker steps a claimed batch in one transaction; when one of its
/// incidents cannot be read, each is stepped alone: the others are paged
/// and the unreadable one waits, its escalation kept.
#[tokio::test]
async fn one_unreadable_incident_holds_up_no_other_escalation_of_its_batch() {
    let t = TestApp::paging(support::sqlite().await, quick_retries(), None).await;
    let (rx, target) = reach_the_responder(&t).await;
    created(
        &t,
        &t.admin,
        "/api/v1/escalation-policies",
        json!({"name": "default", "levels": [
            {"targets": target, "delay_minutes": 1},
            {"targets": target, "delay_minutes": 1},
        ]}),
    )
    .await;
    let mut ids = Vec::new();
    for title in ["読めない", "二つ目", "三つ目"] {
        let incident = t.declare(&t.responder, title, "P1").await;
        ids.push(incident["id"].as_str().unwrap().to_string());
    }
    rx.wait_for("level 1 of each", |rx| pages_by_incident(rx).len() == 3)
        .await;

    // In one transaction, behind the store's back: the first incident's
    // document spoilt, and level 2 of all three due now, so that the
    // worker claims them together.
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(2);
    let mut statements = vec![format!(
        "UPDATE incidents SET doc = 'not a document' WHERE id = '{}'",
        ids[0]
    )];
    for id in &ids {
        let mut e = t
            .store
            .store
            .escalation(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        e.next_level_at = Some(past);
        let doc = serde_json::to_string(&e).unwrap().replace('\'', "''");
        statements.push(format!(
            "UPDATE escalations SET due_at = {}, claimed_until = NULL, doc = '{doc}' WHERE incident_id = '{id}'",
            past.as_microsecond()
        ));
    }
    let sql = format!("BEGIN; {}; COMMIT;", statements.join("; "));
    support::sql_on(&t.store.url(), &[&sql]).await;

    rx.wait_for("level 2 of the readable two", |rx| {
        let counts = pages_by_incident(rx);
        counts.get(&ids[1]) == Some(&2) && counts.get(&ids[2]) == Some(&2)
    })
    .await;
    let counts = pages_by_incident(&rx);
    assert_eq!(counts.get(&ids[0]), Some(&1), "{counts:?}");
    let kept = t
        .store
        .store
        .escalation(ids[0].parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.next_level_at, Some(past), "the unreadable one waits");
}

#[tokio::test]
async fn bad_policies_schedules_and_contact_methods_are_refused_with_the_field() {
    let t = TestApp::paging(support::sqlite().await, quick_retries(), None).await;
    let level = json!({"targets": [], "delay_minutes": 5});
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "/api/v1/escalation-policies",
            json!({"name": "x", "levels": [{"targets": [{"type": "user", "id": uuid::Uuid::nil()}], "delay_minutes": 5}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_target",
            "levels[0].targets[0]",
        ),
        (
            "/api/v1/escalation-policies",
            json!({"name": "x", "levels": [{"delay_minutes": 0}], "repeat": 3}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_range",
            "levels[0].delay_minutes",
        ),
        (
            "/api/v1/escalation-policies",
            json!({"name": "x", "levels": [level], "repeat": 1000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_range",
            "repeat",
        ),
        (
            "/api/v1/escalation-policies",
            json!({"name": "x", "levels": [level], "handoff": "y"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            "handoff",
        ),
        (
            "/api/v1/escalation-policies",
            json!({"name": "x".repeat(300), "levels": [level]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
            "name",
        ),
        (
            "/api/v1/schedules",
            json!({"name": "office", "layers": [{"name": "day", "start": "2026-01-05T09:00:00", "rotation": {"kind": "daily"}, "members": ["responder"], "restriction": {"from": "09:00", "to": "18:00"}}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schedule_gap",
            "layers",
        ),
        (
            "/api/v1/schedules",
            json!({"name": "z", "time_zone": "Mars/Olympus", "layers": [{"name": "a", "start": "2026-01-05T09:00:00", "rotation": {"kind": "daily"}, "members": ["responder"]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_time_zone",
            "time_zone",
        ),
        (
            "/api/v1/schedules",
            json!({"name": "z", "layers": [{"name": "a", "start": "2026-01-05T09:00:00", "rotation": {"kind": "daily"}, "members": ["nobody"]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_user",
            "layers[0].members[0]",
        ),
        (
            "/api/v1/users/admin/contact-methods",
            json!({"label": "p", "type": "sms", "address": "090-1111-2222"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
            "address",
        ),
        (
            "/api/v1/users/admin/contact-methods",
            json!({"label": "p", "type": "pager", "address": "tel:+819011112222"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_value",
            "type",
        ),
        (
            "/api/v1/users/admin/contact-methods",
            json!({"label": "p", "type": "webhook", "address": "http://127.0.0.1:9/x", "delay_minutes": 100000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_range",
            "delay_minutes",
        ),
        (
            "/api/v1/channels",
            json!({"name": "@responder/hook", "type": "webhook", "url": "http://127.0.0.1:9/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved",
            "name",
        ),
    ];
    for (path, body, status, code, field) in cases {
        let (got, e) = t.post(&t.admin, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {e}");
        assert_eq!(e["code"], code, "{path} {body}: {e}");
        assert_eq!(e["field"], field, "{path} {body}: {e}");
    }
    // A text reply names its sender by number: one person's only.
    let phone = json!({"label": "phone", "type": "sms", "address": "tel:+819055556666"});
    created(
        &t,
        &t.responder,
        "/api/v1/users/responder/contact-methods",
        phone.clone(),
    )
    .await;
    let (status, e) = t
        .post(&t.admin, "/api/v1/users/admin/contact-methods", phone)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["field"], "address");
    // Gaps are allowed when asked for; DST zones hand off at wall-clock time.
    created(
        &t,
        &t.admin,
        "/api/v1/schedules",
        json!({"name": "office", "allow_gaps": true, "layers": [{"name": "day", "start": "2026-01-05T09:00:00", "rotation": {"kind": "daily"}, "members": ["responder"], "restriction": {"from": "09:00", "to": "18:00"}}]}),
    )
    .await;
    created(
        &t,
        &t.admin,
        "/api/v1/schedules",
        json!({"name": "nyc", "time_zone": "America/New_York", "layers": [{"name": "a", "start": "2026-03-01T02:30:00", "rotation": {"kind": "daily"}, "members": ["responder", "admin"]}]}),
    )
    .await;
    let (status, shifts) = t
        .get(
            &t.viewer,
            "/api/v1/schedules/nyc/shifts?from=2026-03-07T12:00:00Z&until=2026-03-10T12:00:00Z",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shifts}");
    let starts: Vec<&str> = shifts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start"].as_str().unwrap())
        .collect();
    // 02:30 EST, then 03:30 EDT (02:30 does not exist on the 8th), then 02:30 EDT.
    assert_eq!(
        starts[1..],
        [
            "2026-03-08T07:30:00Z",
            "2026-03-09T06:30:00Z",
            "2026-03-10T06:30:00Z"
        ],
        "{shifts}"
    );
    // Overrides may not overlap.
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let end = start + jiff::SignedDuration::from_hours(2);
    let ov = json!({"user": "admin", "start": start, "end": end});
    created(&t, &t.admin, "/api/v1/schedules/nyc/overrides", ov.clone()).await;
    let (status, e) = t
        .post(&t.admin, "/api/v1/schedules/nyc/overrides", ov)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["code"], "overlapping_override");
    let (status, e) = t
        .post(
            &t.admin,
            "/api/v1/schedules/nyc/overrides",
            json!({"user": "admin", "start": end + jiff::SignedDuration::from_hours(5), "end": end}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Roles: only admins configure paging; readers read; strangers nothing.
    let (status, _) = t
        .post(
            &t.responder,
            "/api/v1/escalation-policies",
            json!({"name": "x", "levels": [level]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.call(None, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t.get(&t.viewer, "/api/v1/schedules/nyc").await;
    assert_eq!(status, StatusCode::OK);
    // A stale If-Match is refused.
    created(
        &t,
        &t.admin,
        "/api/v1/escalation-policies",
        json!({"name": "p", "levels": [level]}),
    )
    .await;
    let res = t
        .http
        .put(t.url("/api/v1/escalation-policies/p"))
        .bearer_auth(&t.admin.token)
        .header("if-match", "\"v7\"")
        .json(&json!({"name": "p", "levels": [level]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    // The calendar: RFC 5545 from the API, and from a signed feed link.
    let ics = calendar(&t, "/api/v1/schedules/nyc/calendar.ics?user=admin").await;
    assert!(
        ics.starts_with("BEGIN:VCALENDAR\r\n") && ics.contains("BEGIN:VEVENT"),
        "{ics}"
    );
    let (status, feed) = t
        .post(&t.viewer, "/api/v1/schedules/nyc/feed", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let feed = feed["url"].as_str().unwrap();
    let res = t.http.get(feed).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("X-WR-CALNAME:nyc"));
    let res = t.http.get(format!("{feed}x")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // One person's shifts across every schedule, and its feed.
    let ics = calendar(&t, "/api/v1/users/responder/calendar.ics").await;
    assert!(
        ics.contains("CATEGORIES:nyc") && ics.contains("CATEGORIES:office"),
        "{ics}"
    );
    let (status, feed) = t
        .post(
            &t.responder,
            "/api/v1/users/responder/calendar-feed",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let feed = feed["url"].as_str().unwrap().to_string();
    let res = t.http.get(&feed).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("X-WR-CALNAME:On call: "));
    // The feed stops working with its maker's access.
    let store = &t.store.store;
    let mut maker = store.user_by_name("responder").await.unwrap().unwrap();
    maker.disabled = true;
    let mut tx = store.begin().await.unwrap();
    tx.update_user(&maker).await.unwrap();
    crate::support::commit_as_system(
        tx,
        kiroku_domain::Operation::Update,
        "user_disable",
        kiroku_domain::Target::new("user", Some(maker.id.to_string())),
    )
    .await;
    let res = t.http.get(&feed).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_expired_acknowledgement_link_is_refused_and_changes_nothing() {
    let mut config = quick_retries();
    config.notify.ack_link_ttl = jiff::SignedDuration::from_secs(1);
    let t = TestApp::paging(support::sqlite().await, config, None).await;
    let rx = page_the_responder(&t).await;
    let incident = t.declare(&t.admin, "期限切れ", "P1").await;
    rx.wait_for("the page", |r| pages(r, "r").len() == 1).await;
    let ack_url = pages(&rx, "r")[0]["ack_url"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let res = t.http.post(&ack_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::GONE);
    assert!(res.text().await.unwrap().contains("expired"));
    let (_, still) = t
        .get(
            &t.viewer,
            &format!("/api/v1/incidents/{}", incident["number"].as_str().unwrap()),
        )
        .await;
    assert_eq!(still["status"], "triggered");
}

/// A node that only writes (no workers of its own) opens incidents; the
/// other node's escalation worker hears of each through PostgreSQL's
/// NOTIFY and pages at once, not at its next idle look (every 5 s).
#[tokio::test]
async fn another_nodes_commit_wakes_this_nodes_workers() {
    let Some(store) = support::postgres().await else {
        return;
    };
    let url = store.postgres_url().unwrap().to_string();
    let t = TestApp::paging(store, quick_retries(), None).await;
    let rx = page_the_responder(&t).await;
    let writer = kiroku_app::App::new(
        Arc::new(
            kiroku_store_postgres::connect(&url, Default::default())
                .await
                .unwrap(),
        ),
        support::config(),
    );
    for i in 0..3 {
        // Let the worker settle into its idle sleep first.
        tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
        let draft: kiroku_app::DeclareIncident = serde_json::from_value(
            json!({"title": format!("別ノード {i}"), "category": "database", "severity": "P1"}),
        )
        .unwrap();
        let declared_at = std::time::Instant::now();
        writer
            .declare_incident(&kiroku_app::Caller::local_operator(), draft)
            .await
            .unwrap();
        while pages(&rx, "r").len() < i + 1 {
            assert!(
                declared_at.elapsed() < std::time::Duration::from_secs(1),
                "page {i} waited for the idle look, not the other node's notice"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
