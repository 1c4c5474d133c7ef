//! Notifications end to end: channels created over the API, deliveries
//! made in the change's own transaction, posted to a real HTTP receiver on
//! loopback that counts by idempotency key, retried after failures and
//! 429s, and recorded on the timeline and in the audit log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use jiff::SignedDuration;
use kiroku_domain::notify::RetryPolicy;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{self, TestApp, TestStore};

const SECRET: &str = "a webhook secret of some length";

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) hook: String,
    pub(crate) key: String,
    pub(crate) signature: Option<String>,
    pub(crate) timestamp: Option<String>,
    pub(crate) body: String,
    pub(crate) answered: u16,
    pub(crate) at: Instant,
}

/// Statuses a hook answers in turn, and whether the last one sticks.
type Script = (Vec<u16>, bool);

/// A webhook receiver: each hook answers its scripted statuses in turn,
/// then 200 (or always its last one when `sticky`).
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn hook(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let status = {
        let mut scripts = r.scripts.lock().unwrap();
        match scripts.get_mut(&name) {
            Some((s, true)) => *s.last().unwrap(),
            Some((s, false)) if !s.is_empty() => s.remove(0),
            _ => 200,
        }
    };
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    r.got.lock().unwrap().push(Received {
        hook: name,
        key: header("idempotency-key").unwrap_or_default(),
        signature: header("x-kiroku-signature"),
        timestamp: header("x-kiroku-timestamp"),
        body,
        answered: status,
        at: Instant::now(),
    });
    let mut res = AxStatus::from_u16(status).unwrap().into_response();
    if status == 429 {
        res.headers_mut()
            .insert("retry-after", "1".parse().unwrap());
    }
    res
}

impl Receiver {
    pub(crate) async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/hook/{name}", axum::routing::post(hook))
            .with_state(self.clone());
        let addr = support::serve_loopback(app).await;
        format!("http://{addr}/hook")
    }

    pub(crate) fn script(&self, hook: &str, statuses: &[u16], sticky: bool) {
        self.scripts
            .lock()
            .unwrap()
            .insert(hook.into(), (statuses.to_vec(), sticky));
    }

    pub(crate) fn of(&self, hook: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.hook == hook)
            .cloned()
            .collect()
    }

    pub(crate) async fn wait_for(&self, what: &str, done: impl Fn(&Receiver) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:#?}",
                self.got.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn fast_retries() -> kiroku_app::Config {
    let mut c = support::config();
    c.notify.retry = RetryPolicy {
        first_delay: SignedDuration::from_millis(200),
        max_delay: SignedDuration::from_secs(1),
        max_attempts: 3,
    };
    c.notify.public_url = Some("https://kiroku.example".into());
    c
}

async fn channel(t: &TestApp, body: Value) -> Value {
    let (status, c) = t.post(&t.admin, "/api/v1/channels", body).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    c
}

async fn notify_story(store: TestStore) {
    let t = TestApp::with_config(store, fast_retries()).await;
    let rx = Receiver::default();
    let base = rx.start().await;
    rx.script("flaky", &[500, 429], false);
    rx.script("down", &[500], true);
    channel(
        &t,
        json!({"name": "ops-slack", "type": "slack", "url": format!("{base}/slack")}),
    )
    .await;
    let signed = channel(
        &t,
        json!({"name": "pager", "type": "webhook", "url": format!("{base}/signed"),
               "secret": SECRET, "levels": ["critical"]}),
    )
    .await;
    assert_eq!(signed["signed"], true);
    // The URL is shown by host only, and the secret never.
    assert!(!signed.to_string().contains(SECRET) && !signed.to_string().contains("/signed"));
    channel(
        &t,
        json!({"name": "flaky", "type": "webhook", "url": format!("{base}/flaky")}),
    )
    .await;
    channel(
        &t,
        json!({"name": "down", "type": "webhook", "url": format!("{base}/down")}),
    )
    .await;
    channel(
        &t,
        json!({"name": "teams", "type": "teams", "url": format!("{base}/teams"), "levels": ["info"]}),
    )
    .await;

    let incident = t.declare(&t.responder, "本番DB接続不可", "P0").await;
    let number = incident["number"].as_str().unwrap().to_string();
    rx.wait_for("the slack notice", |r| !r.of("slack").is_empty())
        .await;
    rx.wait_for("the signed notice", |r| !r.of("signed").is_empty())
        .await;
    rx.wait_for("flaky's third attempt", |r| r.of("flaky").len() >= 3)
        .await;
    rx.wait_for("down's last attempt", |r| r.of("down").len() >= 3)
        .await;

    // Slack: Block Kit with the level, the incident and a link to it.
    let slack: Value = serde_json::from_str(&rx.of("slack")[0].body).unwrap();
    let header = slack["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        header.starts_with("[CRITICAL] ") && header.contains(&number),
        "{slack}"
    );
    assert!(
        slack["blocks"][2]["elements"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://kiroku.example/api/v1/incidents/")
    );
    // The signed webhook: the signature is over the timestamp and the body.
    let got = &rx.of("signed")[0];
    let ts: i64 = got.timestamp.as_deref().unwrap().parse().unwrap();
    assert_eq!(
        got.signature.as_deref().unwrap(),
        kiroku::notify::signature(SECRET, ts, &got.body)
    );
    assert!(
        kiroku::notify::signature("another secret entirely", ts, &got.body)
            != *got.signature.as_ref().unwrap()
    );
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["level"], "critical");
    assert_eq!(body["idempotency_key"], got.key);
    // Flaky: 500, then 429 (Retry-After: 1 s obeyed), then delivered, under
    // one idempotency key.
    let flaky = rx.of("flaky");
    assert_eq!(
        flaky.iter().map(|r| r.answered).collect::<Vec<_>>()[..3],
        [500, 429, 200]
    );
    assert!(flaky.iter().all(|r| r.key == flaky[0].key));
    assert!(
        flaky[2].at - flaky[1].at >= Duration::from_millis(950),
        "Retry-After was not obeyed"
    );
    // Down: three attempts, then dead; it delayed nobody else.
    let down = rx.of("down");
    assert!(rx.of("slack")[0].at < down[2].at);
    // Teams takes info only: nothing yet.
    assert!(rx.of("teams").is_empty());

    // Resolving tells the info channels.
    for step in ["acknowledge", "resolve"] {
        let (status, body) = t
            .post(
                &t.responder,
                &format!("/api/v1/incidents/{number}/{step}"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    rx.wait_for("the resolved card", |r| {
        r.of("teams").iter().any(|x| x.body.contains("resolved"))
    })
    .await;
    let card: Value = serde_json::from_str(&rx.of("teams").last().unwrap().body).unwrap();
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");

    // Each delivered notification reached each receiver once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for r in rx.got.lock().unwrap().iter().filter(|r| r.answered == 200) {
        *delivered.entry(r.key.clone()).or_default() += 1;
    }
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    assert_eq!(rx.of("signed").len(), 1, "critical only");

    // The dead letter, with its last error.
    let (status, dead) = t.get(&t.admin, "/api/v1/notifications?status=dead").await;
    assert_eq!(status, StatusCode::OK);
    let dead = dead["items"].as_array().unwrap();
    assert!(
        dead.iter()
            .all(|d| d["channel_id"] == dead[0]["channel_id"]),
        "only down's: {dead:?}"
    );
    let declared = dead
        .iter()
        .find(|d| d["notice"]["topic"] == "incident.declared")
        .unwrap_or_else(|| panic!("{dead:?}"));
    assert_eq!(declared["attempts"], 3);
    assert_eq!(declared["last_error"], "500 Internal Server Error");
    assert_eq!(
        declared["notice"]["title"],
        format!("{number} 本番DB接続不可")
    );
    // On the timeline and in the audit log.
    let (_, timeline) = t
        .get(
            &t.responder,
            &format!("/api/v1/incidents/{number}/timeline"),
        )
        .await;
    let bodies: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "notification")
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&"notified ops-slack"), "{bodies:?}");
    assert!(
        bodies.contains(&"notifying down failed for good"),
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.starts_with("notifying flaky failed (attempt 1)"))
    );
    let audit = t.audit().await;
    for action in [
        "channel_create",
        "notification_sent",
        "notification_failed",
        "notification_dead",
    ] {
        assert!(audit.iter().any(|e| e["action"] == action), "no {action}");
    }
    // No channel's URL or secret reached the audit log.
    let log = serde_json::to_string(&audit).unwrap();
    assert!(!log.contains(SECRET) && !log.contains(&format!("{base}/slack")));
    t.assert_audit_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_delivered_retried_and_recorded_on_sqlite() {
    notify_story(support::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_delivered_retried_and_recorded_on_postgres() {
    let Some(store) = support::postgres().await else {
        return;
    };
    notify_story(store).await;
}

#[tokio::test]
async fn bad_channels_are_refused_with_the_field_named() {
    let t = TestApp::sqlite().await;
    let cases = [
        (
            json!({"name": "a", "type": "slack", "url": "ftp://x/y"}),
            "url",
            "invalid_url",
        ),
        (
            json!({"name": "a", "type": "slack", "url": "https://u:p@host/x"}),
            "url",
            "invalid_url",
        ),
        (
            json!({"name": "a", "type": "pigeon", "url": "https://h/x"}),
            "type",
            "unknown_value",
        ),
        (
            json!({"name": "a", "type": "slack", "url": "https://h/x", "secret": SECRET}),
            "secret",
            "not_allowed",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "https://h/x", "secret": "short"}),
            "secret",
            "out_of_range",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "https://h/x", "levels": []}),
            "levels",
            "required",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "https://h/x", "levels": ["loud"]}),
            "levels[0]",
            "unknown_value",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "https://h/x", "rate_per_minute": 0}),
            "rate_per_minute",
            "out_of_range",
        ),
        (
            json!({"name": "", "type": "webhook", "url": "https://h/x"}),
            "name",
            "required",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "https://h/x", "color": "red"}),
            "color",
            "unknown_field",
        ),
        (
            json!({"name": "a", "type": "webhook", "url": "x".repeat(3000)}),
            "url",
            "too_long",
        ),
        (
            json!({"name": "a", "type": "email", "url": "https://h/x"}),
            "url",
            "invalid_url",
        ),
        (
            json!({"name": "a", "type": "email", "url": "mailto:ops@example.com\r\nBcc: x@evil.example"}),
            "url",
            "invalid_characters",
        ),
        (
            json!({"name": "a", "type": "email", "url": "mailto:nobody"}),
            "url",
            "invalid_url",
        ),
    ];
    for (body, field, code) in cases {
        let (status, e) = t.post(&t.admin, "/api/v1/channels", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {e}");
        assert_eq!(e["field"], field, "{body} → {e}");
        assert_eq!(e["code"], code, "{body} → {e}");
    }
    let ok = json!({"name": "ops", "type": "webhook", "url": "https://h/x"});
    let (status, _) = t.post(&t.viewer, "/api/v1/channels", ok.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.post(&t.responder, "/api/v1/channels", ok.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t
        .call(None, Method::POST, "/api/v1/channels", Some(ok.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t.post(&t.admin, "/api/v1/channels", ok.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, e) = t.post(&t.admin, "/api/v1/channels", ok).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    let (status, e) = t.get(&t.admin, "/api/v1/notifications?status=lost").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "status");
    let (status, _) = t.get(&t.viewer, "/api/v1/notifications").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.get(&t.viewer, "/api/v1/channels").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A channel's rate: six seconds' worth at once, the rest as it refills,
/// none lost, and other channels not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_at_its_rate_gets_the_rest_later() {
    let t = TestApp::with_config(support::sqlite().await, fast_retries()).await;
    let rx = Receiver::default();
    let base = rx.start().await;
    channel(
        &t,
        json!({"name": "slow", "type": "webhook", "url": format!("{base}/slow"), "rate_per_minute": 60}),
    )
    .await;
    channel(&t, json!({"name": "fast", "type": "webhook", "url": format!("{base}/fast"), "rate_per_minute": 6000})).await;
    for i in 0..8 {
        t.declare(&t.responder, &format!("burst {i}"), "P1").await;
    }
    rx.wait_for("all of fast's", |r| r.of("fast").len() == 8)
        .await;
    rx.wait_for("all of slow's", |r| r.of("slow").len() == 8)
        .await;
    let slow = rx.of("slow");
    let fast = rx.of("fast");
    assert!(
        slow[7].at - slow[0].at >= Duration::from_millis(1_500),
        "the last two waited for the bucket to refill"
    );
    assert!(fast[7].at < slow[7].at, "the fast channel was not held up");
    let keys: std::collections::BTreeSet<_> = slow.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 8, "each once");
}
