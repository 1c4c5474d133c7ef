//! The real `kiroku` binary: bootstrap, serve, log in, work an incident,
//! stop gracefully, and say what to do when something is wrong.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::support::{self, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_kiroku");

pub(crate) fn kiroku(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("KIROKU_SERVER")
        .env_remove("KIROKU_TOKEN")
        .env_remove("KIROKU_DATABASE_URL")
        .env_remove("KIROKU_DATA_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kiroku");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub(crate) fn fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// A running `kiroku serve` and the URL it announced.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub(crate) fn start(store_args: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(store_args);
        let mut child = Command::new(BIN)
            .args(&args)
            .env("KIROKU_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let url = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .unwrap();
            log.lock().unwrap().push_str(&line);
            if let Some(i) = line.find("http://") {
                break line[i..].split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining so the server never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Server { child, url, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills without warning, as a crash or the OOM killer would.
    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn totp_from(created: &str) -> String {
    let secret = created
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    support::totp_now(secret)
}

/// The README's journey, driven entirely by the binary.
fn journey(store_args: &[&str], creds: &Path) {
    let mut local = vec![
        "user",
        "create",
        "--name",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
    ];
    local.extend_from_slice(store_args);
    let created = ok(&kiroku(&local, &[], Some(&format!("{PASSWORD}\n"))));
    assert!(
        created.contains("otpauth://totp/Kiroku:admin?secret="),
        "{created}"
    );

    let server = Server::start(store_args);
    let creds_s = creds.to_str().unwrap();
    let env = [
        ("KIROKU_CREDENTIALS", creds_s),
        ("KIROKU_TIME_ZONE", "Asia/Tokyo"),
    ];
    let code = totp_from(&created);
    let login = ok(&kiroku(
        &[
            "login",
            "--server",
            &server.url,
            "--name",
            "admin",
            "--password-stdin",
            "--totp",
            &code,
        ],
        &env,
        Some(PASSWORD),
    ));
    assert!(login.contains("logged in"), "{login}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(creds).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let declared = ok(&kiroku(
        &[
            "incident",
            "create",
            "--title",
            "本番DB接続不可",
            "--category",
            "database",
            "--severity",
            "P1",
            "--service",
            "api",
            "--environment",
            "production",
        ],
        &env,
        None,
    ));
    let number = declared.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        number.starts_with("DB-") && number.ends_with("-001"),
        "{declared}"
    );
    ok(&kiroku(
        &["incident", "ack", &number, "--note", "対応します"],
        &env,
        None,
    ));
    ok(&kiroku(&["incident", "investigate", &number], &env, None));
    ok(&kiroku(
        &["incident", "note", &number, "接続プール枯渇を確認"],
        &env,
        None,
    ));
    ok(&kiroku(
        &[
            "incident",
            "impact",
            &number,
            "--users",
            "1500",
            "--downtime-minutes",
            "30",
            "--personal-data",
            "氏名,メールアドレス",
            "--people",
            "1500",
        ],
        &env,
        None,
    ));
    for step in ["mitigate", "resolve", "close"] {
        ok(&kiroku(&["incident", step, &number], &env, None));
    }
    let shown: Value = serde_json::from_str(&ok(&kiroku(
        &["incident", "show", &number, "--json"],
        &env,
        None,
    )))
    .unwrap();
    assert_eq!(shown["incident"]["status"], "closed");
    assert_eq!(shown["incident"]["impact"]["users_affected"], 1500);
    assert_eq!(shown["timeline"].as_array().unwrap().len(), 8);
    let table = ok(&kiroku(&["incident", "list"], &env, None));
    assert!(
        table.starts_with("NUMBER") && table.contains(&number),
        "{table}"
    );
    let human = ok(&kiroku(&["incident", "show", &number], &env, None));
    assert!(
        human.contains("JST") && human.contains("接続プール枯渇を確認"),
        "{human}"
    );
    fails(
        &kiroku(&["incident", "ack", &number], &env, None),
        "illegal_transition",
    );

    // Online: the server's newest head extends one witnessed earlier.
    let data_dir = store_args
        .iter()
        .position(|a| *a == "--data-dir")
        .map(|i| store_args[i + 1])
        .unwrap();
    let witness_dir = Path::new(data_dir).join("witness");
    let heads = |min: usize| {
        for _ in 0..100 {
            let mut files: Vec<_> = std::fs::read_dir(&witness_dir)
                .map(|d| d.map_while(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            if files.len() >= min {
                return files;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server witnessed fewer than {min} heads");
    };
    let trusted = heads(1)[0].clone();
    let before = heads(1).len();
    ok(&kiroku(
        &["incident", "note", &number, "after the trusted head"],
        &env,
        None,
    ));
    heads(before + 1);
    let online = ok(&kiroku(
        &[
            "audit",
            "verify-online",
            "--trusted-head",
            trusted.to_str().unwrap(),
        ],
        &env,
        None,
    ));
    assert!(online.contains("extends the trusted head"), "{online}");
    let forged_path = Path::new(data_dir).join("forged-head.json");
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&trusted).unwrap()).unwrap();
    let root = forged["root_hash"].as_str().unwrap().to_string();
    let flipped = if root.starts_with('0') { "1" } else { "0" };
    forged["root_hash"] = Value::String(format!("{flipped}{}", &root[1..]));
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    fails(
        &kiroku(
            &[
                "audit",
                "verify-online",
                "--trusted-head",
                forged_path.to_str().unwrap(),
            ],
            &env,
            None,
        ),
        "does not verify",
    );

    // Debug logging on, yet no secret reached the log.
    let log = server.log();
    assert!(
        log.contains("DEBUG"),
        "the server logged nothing at debug level"
    );
    let saved = std::fs::read_to_string(creds).unwrap();
    let token = saved
        .split("token = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    for secret in [PASSWORD, token, code.as_str()] {
        assert!(!log.contains(secret), "a secret is in the server log");
    }

    let status = server.stop();
    assert!(status.success(), "graceful stop on SIGTERM: {status:?}");

    // The audit trail, offline: verified against its witness, exported.
    let witness = store_args
        .iter()
        .position(|a| *a == "--data-dir")
        .map(|i| format!("{}/witness", store_args[i + 1]));
    let mut verify = vec!["audit", "verify"];
    verify.extend_from_slice(store_args);
    if let Some(dir) = &witness {
        verify.extend_from_slice(&["--witness", dir]);
    }
    let verified = ok(&kiroku(&verify, &[], None));
    assert!(verified.starts_with("ok:"), "{verified}");
    let mut export = vec!["audit", "export", "--format", "csv"];
    export.extend_from_slice(store_args);
    let csv = ok(&kiroku(&export, &[], None));
    assert!(
        csv.starts_with("seq,time,") && csv.contains("incident_acknowledge"),
        "{csv}"
    );
    export[3] = "xml";
    fails(&kiroku(&export, &[], None), "--format must be jsonl or csv");

    // Token bootstrap straight against the database, then the server again.
    let mut issue = vec!["token", "create", "--user", "admin"];
    issue.extend_from_slice(store_args);
    let token = ok(&kiroku(&issue, &[], None)).trim().to_string();
    assert!(token.starts_with("kiroku_"));
    let server = Server::start(store_args);
    let listed = ok(&kiroku(
        &["incident", "list", "--json", "--server", &server.url],
        &[("KIROKU_TOKEN", &token)],
        None,
    ));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["items"][0]["number"], number.as_str());
    server.stop();
}

#[test]
fn journey_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journey(
        &["--data-dir", data.to_str().unwrap()],
        &dir.path().join("creds.toml"),
    );
    assert!(data.join("kiroku.db").exists());
}

#[test]
fn journey_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(support::PgDatabase::create()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The data directory still holds the signing key and the witness.
    let data = dir.path().join("data");
    journey(
        &[
            "--database-url",
            &db.url,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &dir.path().join("creds.toml"),
    );
    drop(db);
}

#[test]
fn mistakes_get_a_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    fails(
        &kiroku(
            &[
                "user",
                "create",
                "--data-dir",
                d,
                "--name",
                "x",
                "--role",
                "wizard",
                "--password-stdin",
            ],
            &[],
            Some(PASSWORD),
        ),
        "use admin, responder, viewer, auditor or application",
    );
    fails(
        &kiroku(
            &[
                "user",
                "create",
                "--data-dir",
                d,
                "--name",
                "x",
                "--role",
                "viewer",
                "--password-stdin",
            ],
            &[],
            Some("short"),
        ),
        "at least 12 characters",
    );
    fails(
        &kiroku(
            &[
                "user",
                "create",
                "--data-dir",
                d,
                "--name",
                "x",
                "--role",
                "viewer",
            ],
            &[],
            None,
        ),
        "--password-stdin",
    );
    fails(
        &kiroku(
            &["token", "create", "--data-dir", d, "--user", "ghost"],
            &[],
            None,
        ),
        "user not found",
    );
    fails(
        &kiroku(
            &["incident", "list", "--server", "http://127.0.0.1:9"],
            &[],
            None,
        ),
        "cannot reach Kiroku",
    );
    fails(
        &kiroku(
            &["incident", "list"],
            &[("KIROKU_CREDENTIALS", &format!("{d}/none.toml"))],
            None,
        ),
        "kiroku login",
    );
    fails(
        &kiroku(
            &["serve", "--data-dir", d, "--listen", "not-an-address"],
            &[],
            None,
        ),
        "is not an address",
    );
    fails(
        &kiroku(&["serve", "--database-url", "mysql://x/y"], &[], None),
        "postgres://",
    );
    fails(
        &kiroku(
            &["serve", "--data-dir", d, "--intake-journal-sync-ms", "10"],
            &[],
            None,
        ),
        "turn it on with --intake-journal",
    );
    fails(
        &kiroku(
            &["serve", "--data-dir", d, "--intake-journal"],
            &[("KIROKU_INTAKE_JOURNAL_SYNC_MS", "5000")],
            None,
        ),
        "between 0 and 1000",
    );
    fails(
        &kiroku(
            &[
                "serve",
                "--data-dir",
                d,
                "--config",
                &format!("{d}/missing.toml"),
            ],
            &[],
            None,
        ),
        "cannot read the configuration file",
    );
    let usage = kiroku(&["incident", "create"], &[], None);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--title"));
}

#[test]
fn wrong_credentials_from_the_cli_say_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = Server::start(&["--data-dir", data.to_str().unwrap()]);
    let out = kiroku(
        &["incident", "list", "--server", &server.url],
        &[("KIROKU_TOKEN", "kiroku_wrong")],
        None,
    );
    fails(&out, "invalid_token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("kiroku login"));
    let out = kiroku(
        &[
            "login",
            "--server",
            &server.url,
            "--name",
            "nobody",
            "--password-stdin",
        ],
        &[],
        Some("whatever-password"),
    );
    fails(&out, "wrong name or password");
    server.stop();
}

/// kill -9 in the middle of a burst of declarations: after a restart every
/// acknowledged incident is there, numbers and the audit sequence have no
/// gap, and every incident has its audit event.
fn crash_loses_nothing(store_args: &[&str]) {
    let mut create = vec![
        "user",
        "create",
        "--name",
        "ops",
        "--role",
        "responder",
        "--password-stdin",
    ];
    create.extend_from_slice(store_args);
    ok(&kiroku(&create, &[], Some(PASSWORD)));
    let mut issue = vec!["token", "create", "--user", "ops"];
    issue.extend_from_slice(store_args);
    let token = ok(&kiroku(&issue, &[], None)).trim().to_string();
    let mut create = vec![
        "user",
        "create",
        "--name",
        "audit",
        "--role",
        "auditor",
        "--password-stdin",
    ];
    create.extend_from_slice(store_args);
    ok(&kiroku(&create, &[], Some(PASSWORD)));
    let mut issue = vec!["token", "create", "--user", "audit"];
    issue.extend_from_slice(store_args);
    let auditor = ok(&kiroku(&issue, &[], None)).trim().to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let server = Server::start(store_args);
        let url = format!("{}/api/v1/incidents", server.url);
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (http, url, token) = (http.clone(), url.clone(), token.clone());
                rt.spawn(async move {
                    let mut got = Vec::new();
                    for i in 0.. {
                        let body = serde_json::json!({"title": format!("r{round} w{w} #{i}"), "category": "database", "severity": "P2"});
                        match http.post(&url).bearer_auth(&token).json(&body).send().await {
                            Ok(res) if res.status() == reqwest::StatusCode::CREATED => {
                                let v: Value = match res.json().await {
                                    Ok(v) => v,
                                    Err(_) => break,
                                };
                                got.push(v["number"].as_str().unwrap().to_string());
                            }
                            _ => break,
                        }
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(400 + 150 * round));
        server.kill9();
        for w in workers {
            acknowledged.extend(rt.block_on(w).unwrap());
        }
    }
    assert!(
        acknowledged.len() > 20,
        "too little load to mean anything: {}",
        acknowledged.len()
    );

    let server = Server::start(store_args);
    let base = server.url.clone();
    let (numbers, seqs, created, startups) = rt.block_on(async {
        let get = |path: String, token: String| {
            let http = http.clone();
            async move {
                http.get(path)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let mut numbers = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = get(
                format!("{base}/api/v1/incidents?limit=200{cursor}"),
                token.clone(),
            )
            .await;
            numbers.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["number"].as_str().unwrap().to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        let mut seqs = Vec::new();
        let mut created = std::collections::BTreeSet::new();
        let mut startups = 0;
        let mut after = 0;
        loop {
            let page = get(
                format!("{base}/api/v1/audit/events?limit=200&cursor={after}"),
                auditor.clone(),
            )
            .await;
            let items = page["items"].as_array().unwrap().clone();
            if items.is_empty() {
                break;
            }
            for e in &items {
                seqs.push(e["seq"].as_i64().unwrap());
                if e["action"] == "sys_startup" {
                    startups += 1;
                }
                if e["action"] == "incident_create" {
                    created.insert(e["after"]["number"].as_str().unwrap().to_string());
                }
            }
            after = *seqs.last().unwrap();
        }
        (numbers, seqs, created, startups)
    });
    server.stop();

    let stored: std::collections::BTreeSet<String> = numbers.iter().cloned().collect();
    for n in &acknowledged {
        assert!(
            stored.contains(n),
            "acknowledged {n} was lost; {} acknowledged, {} stored: {:?}",
            acknowledged.len(),
            stored.len(),
            stored.iter().take(5).collect::<Vec<_>>()
        );
    }
    let mut suffixes: Vec<u32> = numbers
        .iter()
        .map(|n| n.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    suffixes.sort();
    assert_eq!(
        suffixes,
        (1..=numbers.len() as u32).collect::<Vec<_>>(),
        "numbers have a gap or a duplicate"
    );
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "the audit sequence has a gap"
    );
    assert_eq!(
        created, stored,
        "every incident has its audit event, and no event lacks its incident"
    );
    assert_eq!(startups, 4, "each start is audited");
    // The tree over the log survived the crashes too.
    assert_audit_verifies(store_args);
}

/// Runs `story` with the binary's store arguments for SQLite in a fresh
/// data directory.
pub(crate) fn on_sqlite(story: impl FnOnce(&[&str])) {
    let dir = tempfile::tempdir().unwrap();
    story(&["--data-dir", dir.path().to_str().unwrap()]);
}

/// Runs `story` with the binary's store arguments for a fresh PostgreSQL
/// database (keys and witness in a fresh data directory); without a
/// server, a SKIP line and nothing else.
pub(crate) fn on_postgres(story: impl FnOnce(&[&str])) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(support::PgDatabase::create()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    story(&[
        "--database-url",
        &db.url,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
}

/// `kiroku audit verify` on the store says all holds.
pub(crate) fn assert_audit_verifies(store_args: &[&str]) {
    let mut verify = vec!["audit", "verify"];
    verify.extend_from_slice(store_args);
    let out = ok(&kiroku(&verify, &[], None));
    assert!(out.starts_with("ok:"), "{out}");
}

#[test]
fn kill_9_loses_nothing_on_sqlite() {
    on_sqlite(crash_loses_nothing);
}

#[test]
fn kill_9_loses_nothing_on_postgres() {
    on_postgres(crash_loses_nothing);
}

/// Each signed head also reaches a webhook outside the database; a real
/// receiver on loopback checks what arrives.
#[test]
fn heads_are_posted_to_the_witness_webhook() {
    use std::sync::{Arc, Mutex};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/heads",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            sink.lock().unwrap().push(v);
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiroku.toml");
    std::fs::write(
        &config,
        format!("[audit]\nwitness_url = \"http://{addr}/heads\"\nhead_interval_ms = 100\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let store = [
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let server = Server::start(&store);
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.stop();
    let heads = received.lock().unwrap().clone();
    assert!(!heads.is_empty(), "no head reached the webhook");
    for h in heads {
        let head: kiroku_audit::SignedTreeHead = serde_json::from_value(h.clone()).unwrap();
        kiroku_audit::verify_head(&head, h["public_key"].as_str().unwrap()).unwrap();
    }

    std::fs::write(&config, "[audit]\nwitness_url = \"ftp://nowhere\"\n").unwrap();
    let mut serve = vec!["serve"];
    serve.extend_from_slice(&store);
    fails(
        &kiroku(&serve, &[], None),
        "audit.witness_url must be an http",
    );
    fails(
        &serve_with_config("[audit.archive]\nolder_than_days = 0\n"),
        "audit.archive.older_than_days must be at least 1",
    );
    fails(
        &serve_with_config("[audit.archive]\nolder_than = 5\n"),
        "not a valid Kiroku configuration",
    );
}

/// `kiroku serve` with a configuration file holding `text`, on a fresh
/// data directory.
pub(crate) fn serve_with_config(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiroku.toml");
    std::fs::write(&config, text).unwrap();
    let data = dir.path().join("data");
    kiroku(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        None,
    )
}

#[test]
fn bad_detection_settings_stop_serve_with_the_field_named() {
    fails(
        &serve_with_config(
            "[detection]\nlogin_failures_per_account = { count = 0, window_minutes = 5 }\n",
        ),
        "detection.login_failures_per_account.count: must be between 1 and 100000",
    );
    fails(
        &serve_with_config("[detection]\nnon_routine = [\"audit_export; DROP TABLE\"]\n"),
        "detection.non_routine",
    );
    fails(
        &serve_with_config("[detection]\nlogin_failures = 3\n"),
        "not a valid Kiroku configuration",
    );
}
