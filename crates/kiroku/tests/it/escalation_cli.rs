//! The real binary paging: a kill -9 at any moment while incidents open
//! and escalate, then a restart, leaves no page unsent and none sent twice
//! as a receiver counting by idempotency key sees it; an escalation due
//! while the server was down fires on time once it is back; the CLI says
//! who is on call and re-escalates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{Server, assert_audit_verifies, kiroku, ok, on_postgres, on_sqlite};
use crate::notify_cli::{Counter, Rig, assert_each_once, declare, declare_through_kills, drained};

/// The admin (root) reached at `hook`, and the default policy paging them at
/// level 1 and again at level 2 a minute later. Returns the contact
/// method's id.
pub(crate) async fn page_admin(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    hook: &str,
) -> String {
    let res = http
        .post(format!("{server}/api/v1/users/root/contact-methods"))
        .bearer_auth(token)
        .json(
            &json!({"label": "hook", "type": "webhook", "address": hook, "rate_per_minute": 6000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let method: Value = res.json().await.unwrap();
    let users: Value = http
        .get(format!("{server}/api/v1/users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "root")
        .unwrap()["id"]
        .clone();
    let target = json!([{"type": "user", "id": admin}]);
    let res = http
        .put(format!("{server}/api/v1/escalation-policies/default"))
        .bearer_auth(token)
        .json(&json!({"name": "default", "levels": [
            {"targets": target, "delay_minutes": 1},
            {"targets": target, "delay_minutes": 1},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        reqwest::StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    method["id"].as_str().unwrap().to_string()
}

pub(crate) fn page_key(incident: &str, n: u32, channel: &str) -> String {
    format!("page:{incident}:{n}:{channel}")
}

/// Waits until every key in `keys` has arrived.
fn wait_for_keys(counter: &Counter, keys: &[String], within: Duration) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + within;
    loop {
        let counts = counter.counts();
        if keys.iter().all(|k| counts.contains_key(k)) {
            return counts;
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !counts.contains_key(*k)).collect();
        assert!(Instant::now() < deadline, "never paged: {missing:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn crash_pages_each_incident_once(store_args: &[&str]) {
    let rig = Rig::new(store_args);
    let (args, token, rt, http, counter, hook) = (
        rig.args(),
        &rig.token,
        &rig.rt,
        &rig.http,
        &rig.counter,
        &rig.hook,
    );

    let server = Server::start(&args);
    let method = rt.block_on(page_admin(http, &server.url, token, hook));
    server.stop();
    let answered = declare_through_kills(rt, http, &args, token);

    let server = Server::start(&args);
    let first_pages: Vec<String> = answered.iter().map(|id| page_key(id, 1, &method)).collect();
    wait_for_keys(counter, &first_pages, Duration::from_secs(60));
    let sent = rt.block_on(drained(http, &server.url, token));
    server.stop();
    let counts = counter.counts();
    // Counted by idempotency key, each page arrived once (the second
    // levels of those that came due meanwhile included).
    assert_each_once(&counts, sent, "page:", answered.len());
    assert_audit_verifies(&args);
}

#[test]
fn kill_9_during_escalation_pages_each_incident_once_on_sqlite() {
    on_sqlite(crash_pages_each_incident_once);
}

#[test]
fn kill_9_during_escalation_pages_each_incident_once_on_postgres() {
    on_postgres(crash_pages_each_incident_once);
}

/// Level 2 is due a minute after level 1; the server is killed right after
/// level 1 is recorded sent and is back before the minute is up: level 2
/// comes on time, once. The CLI meanwhile says who is on call and re-escalates.
#[test]
fn an_escalation_due_while_down_fires_on_time_after_a_restart() {
    on_sqlite(level_2_after_a_restart);
}

fn level_2_after_a_restart(store_args: &[&str]) {
    let rig = Rig::new(store_args);
    let (args, token, rt, http, counter, hook) = (
        rig.args(),
        &rig.token,
        &rig.rt,
        &rig.http,
        &rig.counter,
        &rig.hook,
    );
    let server = Server::start(&args);
    let method = rt.block_on(page_admin(http, &server.url, token, hook));
    let declaring = std::time::Instant::now();
    let id = rt
        .block_on(declare(http, &server.url, token, "レベル2まで"))
        .unwrap();
    let first = page_key(&id, 1, &method);
    wait_for_keys(
        counter,
        std::slice::from_ref(&first),
        Duration::from_secs(10),
    );
    // Measured where the page landed: the declaration's answer can reach
    // this thread later than the page reaches the receiver on a busy machine.
    let paged_at = counter.first_arrival(&first).unwrap();
    // Killed once level 1 is recorded sent: a kill between the page's
    // arrival and that record resends it under the same idempotency key,
    // which the kill -9 stories above allow and count.
    rt.block_on(drained(http, &server.url, token));
    server.kill9();
    std::thread::sleep(Duration::from_secs(20));
    let server = Server::start(&args);

    // Meanwhile, the CLI: who is on call, and a re-escalation by hand.
    let env = [
        ("KIROKU_SERVER", server.url.as_str()),
        ("KIROKU_TOKEN", token.as_ref()),
    ];
    let res = rt.block_on(
        http.post(format!("{}/api/v1/schedules", server.url))
            .bearer_auth(token)
            .json(&json!({"name": "primary", "layers": [{"name": "weekly", "start": "2026-01-05T10:00:00", "rotation": {"kind": "weekly"}, "members": ["root"]}]}))
            .send(),
    )
    .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let said = ok(&kiroku(&["oncall", "primary"], &env, None));
    assert!(said.starts_with("primary: root (weekly) until "), "{said}");
    let out = kiroku(&["oncall", "nowhere"], &env, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let second = page_key(&id, 2, &method);
    wait_for_keys(
        counter,
        std::slice::from_ref(&second),
        Duration::from_secs(70),
    );
    // Within a second of its minute, counted from before the declaration;
    // and on time, counted from where level 1 landed, which on a busy
    // machine can be seconds after the declaration.
    let second_at = counter.first_arrival(&second).unwrap();
    let since_declaring = second_at - declaring;
    assert!(
        since_declaring >= Duration::from_secs(59),
        "level 2 came {since_declaring:?} after the declaration"
    );
    let waited = second_at - paged_at;
    assert!(
        waited <= Duration::from_secs(64),
        "level 2 came {waited:?} after level 1"
    );
    let counts = counter.counts();
    assert_eq!(counts[&first], 1, "{counts:?}");
    assert_eq!(counts[&second], 1, "{counts:?}");
    // The ladder is spent; a re-escalation pages its last level again.
    let said = ok(&kiroku(&["incident", "escalate", &id], &env, None));
    assert!(said.starts_with("paged level 2 of default"), "{said}");
    wait_for_keys(
        counter,
        &[page_key(&id, 3, &method)],
        Duration::from_secs(10),
    );
    server.stop();
}
