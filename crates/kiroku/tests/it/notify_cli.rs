//! The real binary delivering notifications: a kill -9 at any moment, and
//! a restart, leaves no notification unsent and none sent twice as a
//! receiver counting by idempotency key sees it; two processes on one
//! PostgreSQL database send each notification once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::cli::{Server, assert_audit_verifies, on_postgres, on_sqlite};
use crate::intake_cli::admin_token;
use crate::support;

/// Counts 200-answered requests by idempotency key, and notes when each
/// key first arrived; answers after a pause so that kills land while
/// deliveries are in flight.
#[derive(Clone, Default)]
pub(crate) struct Counter(Arc<Mutex<BTreeMap<String, (usize, Instant)>>>);

impl Counter {
    pub(crate) async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let me = me.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let key = headers
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    let mut seen = me.0.lock().unwrap();
                    seen.entry(key).or_insert((0, Instant::now())).0 += 1;
                    "ok"
                }
            }),
        );
        let addr = support::serve_loopback(app).await;
        format!("http://{addr}/hook")
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, usize> {
        let seen = self.0.lock().unwrap();
        seen.iter().map(|(k, (n, _))| (k.clone(), *n)).collect()
    }

    /// When `key` first arrived, if it has.
    pub(crate) fn first_arrival(&self, key: &str) -> Option<Instant> {
        self.0.lock().unwrap().get(key).map(|(_, at)| *at)
    }
}

/// What the binary's notification stories start from: a store (with the
/// short holds of `config_file`) and an admin token for it, a client, and
/// a receiver counting by idempotency key.
pub(crate) struct Rig {
    _dir: tempfile::TempDir,
    args: Vec<String>,
    pub(crate) token: String,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) http: reqwest::Client,
    pub(crate) counter: Counter,
    pub(crate) hook: String,
}

impl Rig {
    pub(crate) fn new(store_args: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = store_args.iter().map(|a| a.to_string()).collect();
        args.extend(["--config".to_string(), config_file(dir.path())]);
        let token = admin_token(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let counter = Counter::default();
        let hook = rt.block_on(counter.start());
        Rig {
            _dir: dir,
            args,
            token,
            rt,
            http: reqwest::Client::new(),
            counter,
            hook,
        }
    }

    /// The store and configuration arguments for the binary.
    pub(crate) fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

pub(crate) fn config_file(dir: &std::path::Path) -> String {
    let path = dir.join("kiroku.toml");
    std::fs::write(
        &path,
        "[notify]\nhold_seconds = 2\nfirst_retry_seconds = 1\nmax_retry_seconds = 2\n",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

async fn create_channel(http: &reqwest::Client, server: &str, token: &str, url: &str) -> String {
    let res = http
        .post(format!("{server}/api/v1/channels"))
        .bearer_auth(token)
        .json(&json!({"name": "pager", "type": "webhook", "url": url, "rate_per_minute": 6000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let c: Value = res.json().await.unwrap();
    c["id"].as_str().unwrap().to_string()
}

/// The declared incident's id, or what went wrong.
pub(crate) async fn declare(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    title: &str,
) -> Result<String, String> {
    let res = http
        .post(format!("{server}/api/v1/incidents"))
        .bearer_auth(token)
        .json(&json!({"title": title, "category": "database", "severity": "P1"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let text = res.text().await.map_err(|e| e.to_string())?;
    let i: Value = serde_json::from_str(&text).map_err(|_| format!("{status}: {text}"))?;
    match i["id"].as_str() {
        Some(id) if status == reqwest::StatusCode::CREATED => Ok(id.to_string()),
        _ => Err(format!("{status}: {i}")),
    }
}

/// Waits until no delivery is pending; returns how many were sent.
pub(crate) async fn drained(http: &reqwest::Client, server: &str, token: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let get = |status: &str| {
            http.get(format!(
                "{server}/api/v1/notifications?status={status}&limit=1000"
            ))
            .bearer_auth(token)
            .send()
        };
        let pending: Value = get("pending").await.unwrap().json().await.unwrap();
        if pending["items"].as_array().unwrap().is_empty() {
            let sent: Value = get("sent").await.unwrap().json().await.unwrap();
            return sent["items"].as_array().unwrap().len();
        }
        assert!(
            Instant::now() < deadline,
            "deliveries still pending: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Four rounds of four workers declaring incidents until a kill -9 stops
/// the server, each round's kill a little later; the ids of the
/// declarations that were answered.
pub(crate) fn declare_through_kills(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    args: &[&str],
    token: &str,
) -> Vec<String> {
    let mut answered = Vec::new();
    for round in 0..4 {
        let server = Server::start(args);
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (http, url, token) = (http.clone(), server.url.clone(), token.to_string());
                rt.spawn(async move {
                    let mut got = Vec::new();
                    for i in 0.. {
                        match declare(&http, &url, &token, &format!("crash r{round} w{w} {i}"))
                            .await
                        {
                            Ok(id) => got.push(id),
                            Err(_) => break,
                        }
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        server.kill9();
        for w in workers {
            answered.extend(rt.block_on(w).unwrap());
        }
    }
    assert!(answered.len() > 20, "too little load: {}", answered.len());
    answered
}

fn crash_sends_each_notification_once(store_args: &[&str]) {
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
    let channel = rt.block_on(create_channel(http, &server.url, token, hook));
    server.stop();
    let answered = declare_through_kills(rt, http, &args, token);

    let server = Server::start(&args);
    let sent = rt.block_on(drained(http, &server.url, token));
    server.stop();
    let counts = counter.counts();
    // Every answered declaration was notified...
    for id in &answered {
        let key = format!("incident.declared:{id}:{channel}");
        assert!(counts.contains_key(&key), "no notification for {id}");
    }
    // ...and, counted by idempotency key, each arrived once.
    assert_each_once(&counts, sent, "incident.declared:", answered.len());
    assert_audit_verifies(&args);
}

/// As many distinct idempotency keys arrived as deliveries were recorded
/// sent, each starting with `prefix` (no stranger); how many arrived again
/// after a kill (a crash between sending and recording) is printed.
pub(crate) fn assert_each_once(
    counts: &BTreeMap<String, usize>,
    sent: usize,
    prefix: &str,
    answered: usize,
) {
    assert_eq!(counts.len(), sent, "{counts:?}");
    assert!(counts.keys().all(|k| k.starts_with(prefix)), "{counts:?}");
    let resent: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "{prefix} {answered} answered declarations, {} delivered, {resent} repeated after a kill",
        counts.len()
    );
}

#[test]
fn kill_9_during_delivery_sends_each_notification_once_on_sqlite() {
    on_sqlite(crash_sends_each_notification_once);
}

#[test]
fn kill_9_during_delivery_sends_each_notification_once_on_postgres() {
    on_postgres(crash_sends_each_notification_once);
}

/// Two nodes on one database, both delivering and escalating: each
/// notification and each page once.
#[test]
fn two_nodes_send_each_notification_exactly_once() {
    on_postgres(two_nodes_send_each_once);
}

fn two_nodes_send_each_once(store_args: &[&str]) {
    let rig = Rig::new(store_args);
    let (args, token, rt, http, counter, hook) = (
        rig.args(),
        &rig.token,
        &rig.rt,
        &rig.http,
        &rig.counter,
        &rig.hook,
    );
    let (a, b) = (Server::start(&args), Server::start(&args));
    let channel = rt.block_on(create_channel(http, &a.url, token, hook));
    let method = rt.block_on(crate::escalation_cli::page_admin(http, &b.url, token, hook));
    // A channel made on one node is used by the others within a second.
    std::thread::sleep(Duration::from_millis(1_200));
    let ids: Vec<String> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..60 {
            let url = if i % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let (http, token) = (http.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                declare(&http, &url, &token, &format!("two nodes {i}"))
                    .await
                    .unwrap_or_else(|e| panic!("declaration {i}: {e}"))
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids
    });
    let expected: BTreeSet<String> = ids
        .iter()
        .flat_map(|id| {
            [
                format!("incident.declared:{id}:{channel}"),
                crate::escalation_cli::page_key(id, 1, &method),
            ]
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter.counts().len() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = rt.block_on(drained(http, &a.url, token));
    a.stop();
    b.stop();
    let counts = counter.counts();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(counts.values().all(|n| *n == 1), "sent twice: {counts:?}");
    assert_eq!(sent, 120);
}

/// A real SMTP server on loopback that prints what it receives: Python's
/// `smtpd` DebuggingServer (CPython up to 3.11), or None with a SKIP line.
fn smtp_sink() -> Option<(std::process::Child, u16, Arc<Mutex<String>>)> {
    use std::io::BufRead;
    let has = std::process::Command::new("python3")
        .args(["-W", "ignore", "-c", "import smtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        println!("SKIP: SMTP delivery (needs python3 with the smtpd module as an SMTP sink)");
        return None;
    }
    let port = support::free_port();
    let mut child = std::process::Command::new("python3")
        .args([
            "-u",
            "-W",
            "ignore",
            "-m",
            "smtpd",
            "-n",
            "-c",
            "DebuggingServer",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    // Until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the SMTP sink did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, port, out))
}

#[test]
fn mail_goes_out_over_smtp() {
    let Some((mut sink, port, received)) = smtp_sink() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiroku.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\npublic_url = \"https://kiroku.example\"\n[notify.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"kiroku@example.com\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let token = admin_token(&args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let server = Server::start(&args);
    let created: Value = rt.block_on(async {
        let res = http
            .post(format!("{}/api/v1/channels", server.url))
            .bearer_auth(&token)
            .json(&json!({"name": "ops-mail", "type": "email",
                          "url": "mailto:ops@example.com,cto@example.jp"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::CREATED);
        res.json().await.unwrap()
    });
    assert_eq!(created["url"], "mailto:…@example.com,…@example.jp");
    assert_eq!(created["levels"], json!(["critical", "warning"]));
    let id = rt
        .block_on(declare(&http, &server.url, &token, "本番DB接続不可 <b>"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !received.lock().unwrap().contains("END MESSAGE") {
        assert!(Instant::now() < deadline, "no mail arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = rt.block_on(drained(&http, &server.url, &token));
    server.stop();
    let _ = sink.kill();
    let _ = sink.wait();
    let mail = received.lock().unwrap().clone();
    assert_eq!(sent, 1);
    assert!(mail.contains("From: kiroku@example.com"), "{mail}");
    assert!(
        mail.contains("ops@example.com") && mail.contains("cto@example.jp"),
        "{mail}"
    );
    // The Japanese subject travels as an RFC 2047 encoded word.
    use base64::Engine;
    let word = base64::engine::general_purpose::STANDARD.encode("本番DB接続不可");
    assert!(
        mail.contains(&format!(
            "Subject: [CRITICAL] DB-2026-001 =?utf-8?b?{word}?="
        )),
        "{mail}"
    );
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(mail.contains("Message-ID: <"), "{mail}");
    assert!(
        mail.contains(&format!("https://kiroku.example/api/v1/incidents/{id}")),
        "{mail}"
    );
}

#[test]
fn bad_smtp_settings_stop_serve_with_what_to_fix() {
    use crate::cli::{fails, serve_with_config};
    let smtp = "[notify.smtp]\nhost = \"smtp.example.com\"\nfrom = \"kiroku@example.com\"\n";
    fails(
        &serve_with_config(&format!("{smtp}username = \"kiroku\"\n")),
        "notify.smtp needs both a username and a password",
    );
    fails(
        &serve_with_config(&format!("{smtp}tls = \"ssl\"\n")),
        "not a valid Kiroku configuration",
    );
    fails(
        &serve_with_config(
            "[notify.smtp]\nhost = \"smtp.example.com\"\nfrom = \"not an address\"\n",
        ),
        "notify.smtp.from \"not an address\" is not a mail address",
    );
    fails(
        &serve_with_config("[notify]\nmax_attempts = 0\n"),
        "notify.max_attempts must be between 1 and 100",
    );
}
