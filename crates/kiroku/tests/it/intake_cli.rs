//! The real binary taking alerts: `kiroku integration create` prints what
//! to configure, `rotate-key` and `update` replace or refuse a key, and a
//! kill -9 during intake loses no answered alert.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cli::{Server, assert_audit_verifies, fails, kiroku, ok, on_postgres, on_sqlite};
use crate::support::{PASSWORD, journal_file, journal_request};

/// An admin token made directly in the database.
pub(crate) fn admin_token(store_args: &[&str]) -> String {
    user_token(store_args, "root", "admin")
}

/// A token for a new user `name` with `role`, made directly in the
/// database.
fn user_token(store_args: &[&str], name: &str, role: &str) -> String {
    let mut create = vec![
        "user",
        "create",
        "--name",
        name,
        "--role",
        role,
        "--password-stdin",
    ];
    create.extend_from_slice(store_args);
    ok(&kiroku(&create, &[], Some(PASSWORD)));
    let mut issue = vec!["token", "create", "--user", name];
    issue.extend_from_slice(store_args);
    ok(&kiroku(&issue, &[], None)).trim().to_string()
}

/// `kiroku integration create` against a running server: the key and the
/// URL it prints.
fn create_integration(server: &Server, token: &str, kind: &str) -> (String, String) {
    let out = ok(&kiroku(
        &[
            "integration",
            "create",
            "--type",
            kind,
            "--service",
            "checkout",
        ],
        &[("KIROKU_SERVER", &server.url), ("KIROKU_TOKEN", token)],
        None,
    ));
    (printed(&out, "routing key:"), printed(&out, "url:"))
}

/// The value after `name` on its line of `out`.
fn printed(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// `kiroku integration rotate-key` prints a new key, which is taken while
/// the old one is refused; `kiroku integration update --disable` refuses
/// the key until `--enable`; a mistake says what is wrong.
#[test]
fn a_leaked_routing_key_is_rotated_from_the_cli() {
    on_sqlite(|store_args| {
        let token = admin_token(store_args);
        let server = Server::start(store_args);
        let (_, old_url) = create_integration(&server, &token, "generic");
        let env = [
            ("KIROKU_SERVER", server.url.as_str()),
            ("KIROKU_TOKEN", token.as_str()),
        ];
        let listed = ok(&kiroku(&["integration", "list"], &env, None));
        let id = listed
            .lines()
            .find(|l| l.contains(&old_url))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no id in {listed}"))
            .to_string();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let http = reqwest::Client::new();
        let send = |url: &str| {
            let body = json!({"summary": "leak", "source": "cli", "dedup_key": "leak"});
            rt.block_on(async { http.post(url).json(&body).send().await.unwrap().status() })
        };
        assert_eq!(send(&old_url), reqwest::StatusCode::ACCEPTED);

        let rotated = ok(&kiroku(&["integration", "rotate-key", &id], &env, None));
        let new_url = printed(&rotated, "url:");
        assert_ne!(new_url, old_url);
        assert_eq!(printed(&rotated, "id:"), id);
        assert_eq!(send(&old_url), reqwest::StatusCode::NOT_FOUND);
        assert_eq!(send(&new_url), reqwest::StatusCode::ACCEPTED);

        let disabled = ok(&kiroku(
            &["integration", "update", &id, "--disable"],
            &env,
            None,
        ));
        assert!(
            disabled.contains("refused until it is enabled"),
            "{disabled}"
        );
        assert_eq!(send(&new_url), reqwest::StatusCode::NOT_FOUND);
        let listed = ok(&kiroku(&["integration", "list"], &env, None));
        assert!(listed.contains("generic (disabled)"), "{listed}");
        let update = [
            "integration",
            "update",
            &id,
            "--enable",
            "--rate-limit",
            "5",
        ];
        let enabled = ok(&kiroku(&update, &env, None));
        assert!(!enabled.contains("refused"), "{enabled}");
        assert_eq!(send(&new_url), reqwest::StatusCode::ACCEPTED);

        let update = ["integration", "update", &id, "--rate-limit", "0"];
        fails(
            &kiroku(&update, &env, None),
            "must be between 1 and 1000000",
        );
        let nothing = kiroku(&["integration", "update", &id], &env, None);
        assert!(!nothing.status.success());
        assert!(String::from_utf8_lossy(&nothing.stderr).contains("required"));
        let update = ["integration", "update", "not-an-id", "--disable"];
        fails(&kiroku(&update, &env, None), "must be a UUID");
        let both = kiroku(
            &["integration", "update", &id, "--disable", "--enable"],
            &env,
            None,
        );
        assert!(!both.status.success());
        assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
        server.stop();
    });
}

/// `kiroku service routing` sets the rules that suppress or route alerts,
/// `kiroku service maintenance add` quiets a service at once and `remove`
/// ends that, `kiroku service show` and `list` say so; mistakes and a
/// viewer are refused with a message that says what to do.
#[test]
fn a_service_is_routed_and_quieted_for_maintenance_from_the_cli() {
    on_sqlite(|store_args| {
        let token = admin_token(store_args);
        let viewer_token = user_token(store_args, "eve", "viewer");
        let server = Server::start(store_args);
        let (_, url) = create_integration(&server, &token, "generic");
        let env = [
            ("KIROKU_SERVER", server.url.as_str()),
            ("KIROKU_TOKEN", token.as_str()),
        ];
        let rt = tokio::runtime::Runtime::new().unwrap();
        let http = reqwest::Client::new();
        // The incident the alert opened, or null when it pages nobody.
        let incident_of = |key: &str, labels: Value| {
            let body =
                json!({"summary": key, "source": "db-1", "dedup_key": key, "labels": labels});
            rt.block_on(async {
                let res = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
                res.json::<Value>().await.unwrap()["results"][0]["incident_id"].clone()
            })
        };

        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("routing.json");
        std::fs::write(
            &rules,
            json!({"rules": [
                {"name": "noise", "when": {"labels": {"alertname": {"regex": "Watchdog|InfoInhibitor"}}},
                 "then": {"suppress": true}},
                {"name": "database", "when": {"labels": {"team": "db"}}, "then": {"category": "database"}}
            ]})
            .to_string(),
        )
        .unwrap();
        let rules = rules.to_str().unwrap();
        let set = ok(&kiroku(
            &["service", "routing", "checkout", "--file", rules],
            &env,
            None,
        ));
        assert!(set.contains("routing of checkout set: 2 rules"), "{set}");
        // Guarded by the version it was read at: a later change refuses it.
        let guarded = [
            "service",
            "routing",
            "checkout",
            "--file",
            rules,
            "--if-version",
        ];
        fails(
            &kiroku(&[&guarded[..], &["1"]].concat(), &env, None),
            "is at version 2, not the version given",
        );
        let set = ok(&kiroku(&[&guarded[..], &["2"]].concat(), &env, None));
        assert!(set.contains("version 3"), "{set}");
        let shown = ok(&kiroku(&["service", "show", "checkout"], &env, None));
        assert!(
            shown.contains("noise") && shown.contains("database"),
            "{shown}"
        );
        assert!(shown.contains("maintenance windows\n  none"), "{shown}");
        assert!(incident_of("watchdog", json!({"alertname": "Watchdog"})).is_null());
        assert!(!incident_of("disk-1", json!({"team": "db"})).is_null());

        let added = ok(&kiroku(
            &[
                "service",
                "maintenance",
                "add",
                "checkout",
                "--for",
                "1h",
                "--reason",
                "DB upgrade",
            ],
            &env,
            None,
        ));
        let window = printed(&added, "maintenance window")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert!(incident_of("disk-2", json!({"team": "db"})).is_null());
        // The alert list says which service and why it paged nobody.
        let alerts = ok(&kiroku(&["alert", "list"], &env, None));
        assert!(
            alerts.lines().any(|l| l.contains("disk-2")
                && l.contains("triggered (maintenance)")
                && l.contains("checkout")),
            "{alerts}"
        );
        let created: Value = serde_json::from_str(&ok(&kiroku(
            &[
                "integration",
                "create",
                "--type",
                "grafana",
                "--service",
                "checkout",
                "--json",
            ],
            &env,
            None,
        )))
        .unwrap();
        let key = created["key"].as_str().unwrap();
        assert_eq!(
            created["url"],
            format!("{}/api/v1/integrations/{key}/grafana", server.url)
        );
        let integrations = ok(&kiroku(&["integration", "list"], &env, None));
        assert!(
            integrations
                .lines()
                .any(|l| l.contains("generic") && l.contains("checkout")),
            "{integrations}"
        );
        let listed = ok(&kiroku(&["service", "list"], &env, None));
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with("checkout") && l.contains("under way")),
            "{listed}"
        );
        let shown = ok(&kiroku(&["service", "show", "checkout"], &env, None));
        assert!(
            shown.contains(&window) && shown.contains("DB upgrade"),
            "{shown}"
        );

        let removed = ok(&kiroku(
            &["service", "maintenance", "remove", "checkout", &window],
            &env,
            None,
        ));
        assert!(removed.contains("page again"), "{removed}");
        assert!(!incident_of("disk-3", json!({"team": "db"})).is_null());

        let not_json = dir.path().join("not.json");
        std::fs::write(&not_json, "rules: []").unwrap();
        let not_json = not_json.to_str().unwrap();
        fails(
            &kiroku(
                &["service", "routing", "checkout", "--file", not_json],
                &env,
                None,
            ),
            "is not JSON",
        );
        let unknown_field = dir.path().join("unknown.json");
        std::fs::write(&unknown_field, r#"{"rules": [], "pager": "on"}"#).unwrap();
        let unknown_field = unknown_field.to_str().unwrap();
        fails(
            &kiroku(
                &["service", "routing", "checkout", "--file", unknown_field],
                &env,
                None,
            ),
            "pager",
        );
        let bad_regex = dir.path().join("regex.json");
        std::fs::write(
            &bad_regex,
            r#"{"rules": [{"when": {"summary": {"regex": "(unclosed"}}}]}"#,
        )
        .unwrap();
        let bad_regex = bad_regex.to_str().unwrap();
        fails(
            &kiroku(
                &["service", "routing", "checkout", "--file", bad_regex],
                &env,
                None,
            ),
            "regex",
        );
        let missing = [
            "service",
            "routing",
            "checkout",
            "--file",
            "/nonexistent/r.json",
        ];
        fails(
            &kiroku(&missing, &env, None),
            "cannot read /nonexistent/r.json",
        );
        let add = ["service", "maintenance", "add", "checkout", "--for", "soon"];
        fails(
            &kiroku(&add, &env, None),
            "--for must be a length such as 90m",
        );
        let add = ["service", "maintenance", "add", "checkout", "--for", "40d"];
        fails(&kiroku(&add, &env, None), "at most 31 days");
        let add = [
            "service",
            "maintenance",
            "add",
            "checkout",
            "--until",
            "tomorrow",
        ];
        fails(
            &kiroku(&add, &env, None),
            "--until must be an RFC 3339 time",
        );
        let no_end = kiroku(&["service", "maintenance", "add", "checkout"], &env, None);
        assert!(!no_end.status.success());
        assert!(String::from_utf8_lossy(&no_end.stderr).contains("required"));
        let add = ["service", "maintenance", "add", "nowhere", "--for", "1h"];
        fails(&kiroku(&add, &env, None), "not found");
        let remove = ["service", "maintenance", "remove", "checkout", &window];
        fails(&kiroku(&remove, &env, None), "not found");
        let remove = [
            "service",
            "maintenance",
            "remove",
            "checkout",
            "../../users",
        ];
        fails(&kiroku(&remove, &env, None), "must be a UUID");
        let as_viewer = [
            ("KIROKU_SERVER", server.url.as_str()),
            ("KIROKU_TOKEN", viewer_token.as_str()),
        ];
        let add = ["service", "maintenance", "add", "checkout", "--for", "1h"];
        fails(&kiroku(&add, &as_viewer, None), "forbidden");
        fails(
            &kiroku(
                &["service", "routing", "checkout", "--file", rules],
                &as_viewer,
                None,
            ),
            "forbidden",
        );
        assert!(!incident_of("disk-4", json!({"team": "db"})).is_null());
        server.stop();
    });
}

/// Three rounds of eight senders killed mid-flight, then every answered
/// alert is stored once. With `--intake-journal` among `journal_args` the
/// answers come from the journal, and the restart applies what the kills
/// left behind.
fn intake_crash_loses_nothing(store_args: &[&str], journal_args: &[&str]) {
    let journal = !journal_args.is_empty();
    let token = admin_token(store_args);
    let serve_args: Vec<&str> = store_args.iter().chain(journal_args).copied().collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let server = Server::start(store_args);
    let (key, url) = create_integration(&server, &token, "generic");
    assert_eq!(
        url,
        format!("{}/api/v1/integrations/{key}/generic", server.url)
    );
    let (pd_key, pd_url) = create_integration(&server, &token, "pagerduty");
    assert_eq!(pd_url, format!("{}/v2/enqueue", server.url));
    // Grouped, as most monitoring is: alerts join the open incident, the
    // case in which the journal's applied mark once went wrong on SQLite.
    let grouped =
        json!({"grouping": {"mode": "labels", "labels": ["alertname"], "window_minutes": 60}});
    rt.block_on(
        http.put(format!("{}/api/v1/services/checkout/routing", server.url))
            .bearer_auth(&token)
            .json(&grouped)
            .send(),
    )
    .unwrap()
    .error_for_status()
    .unwrap();
    let env = [
        ("KIROKU_SERVER", server.url.as_str()),
        ("KIROKU_TOKEN", token.as_str()),
    ];
    let listed = ok(&kiroku(&["integration", "list"], &env, None));
    assert!(
        listed.contains(&url) && listed.contains(&pd_url),
        "{listed}"
    );
    fails(
        &kiroku(
            &[
                "integration",
                "create",
                "--type",
                "nagios",
                "--service",
                "x",
            ],
            &env,
            None,
        ),
        "must be one of: pagerduty, alertmanager, grafana, generic",
    );
    server.stop();

    let mut answered: Vec<String> = Vec::new();
    for round in 0..3 {
        let server = Server::start(&serve_args);
        let generic = format!("{}/api/v1/integrations/{key}/generic", server.url);
        let pagerduty = format!("{}/v2/enqueue", server.url);
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (http, generic, pagerduty, pd_key) =
                    (http.clone(), generic.clone(), pagerduty.clone(), pd_key.clone());
                rt.spawn(async move {
                    let mut got = Vec::new();
                    for i in 0.. {
                        let dedup = format!("r{round}-w{w}-{i}");
                        let req = if w % 2 == 0 {
                            http.post(&generic).json(&json!({"summary": dedup, "source": "crash", "dedup_key": dedup}))
                        } else {
                            http.post(&pagerduty).json(&json!({
                                "routing_key": pd_key, "event_action": "trigger", "dedup_key": dedup,
                                "payload": {"summary": dedup, "source": "crash", "severity": "error"}
                            }))
                        };
                        let Ok(res) = req.send().await else { break };
                        if res.status() != reqwest::StatusCode::ACCEPTED {
                            break;
                        }
                        let body: Value = res.json().await.unwrap_or_default();
                        let effect = &body["results"][0]["effect"];
                        if w % 2 == 0 && journal != (effect == "journaled") {
                            panic!("answered {effect} with journal {journal}");
                        }
                        got.push(dedup);
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(500 + 200 * round));
        server.kill9();
        for w in workers {
            answered.extend(rt.block_on(w).unwrap());
        }
    }
    assert!(
        answered.len() > 50,
        "too little load to mean anything: {}",
        answered.len()
    );

    let server = Server::start(&serve_args);
    let base = server.url.clone();
    // With the journal, what the kills left unapplied is applied after the
    // start: read until every answered alert is there, or for 60 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stored = loop {
        let stored = stored_dedup_keys(&rt, &http, &base, &token);
        if answered.iter().all(|d| stored.contains(d)) || std::time::Instant::now() > deadline {
            break stored;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    server.stop();
    for d in &answered {
        assert!(
            stored.contains(d),
            "answered alert {d} was lost ({} answered, {} stored)",
            answered.len(),
            stored.len()
        );
    }
    assert_audit_verifies(store_args);
}

/// Every stored alert's dedup key, each checked to be counted once and to
/// have its incident.
fn stored_dedup_keys(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> BTreeSet<String> {
    rt.block_on(async {
        let mut stored = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let page: Value = http
                .get(format!(
                    "{base}/api/v1/alerts?service=checkout&limit=200{cursor}"
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for a in page["items"].as_array().unwrap() {
                assert_eq!(a["count"], 1, "an alert counted twice: {a}");
                assert!(
                    !a["incident_id"].is_null(),
                    "an alert without its incident: {a}"
                );
                stored.insert(a["dedup_key"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break stored,
            }
        }
    })
}

/// A record the journal's applier dropped, because the service's routing
/// names a severity the scheme Kiroku was restarted with lacks, is
/// replayed from the CLI once the routing is mended, straight into the
/// database while the server runs: its alert appears, with its incident.
/// Before the mend, the same file again, bytes never kept, a folder and a
/// file that is not there each get a message and exit 1, and change
/// nothing.
fn kept_record_replay(store_args: &[&str]) {
    let token = admin_token(store_args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, url: String, body: Value| {
        rt.block_on(async {
            let res = http
                .request(method, url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{}", res.status());
            res.json::<Value>().await.unwrap()
        })
    };
    let routing = |severity: &str| json!({"rules": [{"then": {"severity": severity}}]});
    let server = Server::start(store_args);
    create_integration(&server, &token, "generic");
    let routing_url = format!("{}/api/v1/services/checkout/routing", server.url);
    call(reqwest::Method::PUT, routing_url, routing("P0"));
    let listed = call(
        reqwest::Method::GET,
        format!("{}/api/v1/integrations", server.url),
        Value::Null,
    );
    let integration = serde_json::from_value(listed["items"][0].clone()).unwrap();
    server.stop();

    // What a journal holds when Kiroku stops before applying it.
    let data_dir = std::path::Path::new(
        store_args[store_args.iter().position(|a| *a == "--data-dir").unwrap() + 1],
    );
    let journal = uuid::Uuid::now_v7();
    let record = journal_request(&integration, &["kept-1"]);
    std::fs::write(
        data_dir.join("intake.journal"),
        journal_file(journal, &[(1, record.clone())]),
    )
    .unwrap();
    // Restarted under a scheme without P0; the CLI reads the same file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiroku.toml");
    std::fs::write(&config, "severity_scheme = \"p1-p4\"\n").unwrap();
    let config = config.to_str().unwrap();
    let serve_args: Vec<&str> = store_args
        .iter()
        .copied()
        .chain(["--config", config, "--intake-journal"])
        .collect();
    let server = Server::start(&serve_args);
    let kept = data_dir.join(format!("intake.journal.dropped-{journal}-1"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !kept.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the record was not dropped"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::read(&kept).unwrap(), record);
    let log = server.log();
    assert!(
        log.contains("stored routing of checkout: rules[0].then.severity: must be one of: P1, P2, P3, P4: the service's alerts are refused (500) until `kiroku service routing` mends it"),
        "the start names the routing that no longer compiles: {log}"
    );
    let junk = dir.path().join("junk");
    std::fs::write(&junk, r#"{"events": 3}"#).unwrap();
    let replay = |file: &std::path::Path| {
        let mut args = vec![
            "intake",
            "replay",
            file.to_str().unwrap(),
            "--config",
            config,
        ];
        args.extend_from_slice(store_args);
        kiroku(&args, &[], None)
    };

    fails(&replay(&dir.path().join("gone")), "cannot read");
    fails(&replay(dir.path()), "cannot read");
    fails(
        &replay(&junk),
        "no dropped intake record was kept with these bytes",
    );
    fails(&replay(&kept), "must be one of: P1, P2, P3, P4");
    call(
        reqwest::Method::PUT,
        format!("{}/api/v1/services/checkout/routing", server.url),
        routing("P1"),
    );
    let out = ok(&replay(&kept));
    assert!(
        out.starts_with("replayed 1 events of") && out.contains("1 opened"),
        "{out}"
    );
    fails(&replay(&kept), "was replayed before");
    let stored = stored_dedup_keys(&rt, &http, &server.url, &token);
    assert_eq!(stored, BTreeSet::from(["kept-1".into()]));
    server.stop();
    assert_audit_verifies(store_args);
}

#[test]
fn a_kept_record_is_replayed_from_the_cli_on_sqlite() {
    on_sqlite(kept_record_replay);
}

#[test]
fn a_kept_record_is_replayed_from_the_cli_on_postgres() {
    on_postgres(kept_record_replay);
}

#[test]
fn kill_9_during_intake_loses_nothing_on_sqlite() {
    on_sqlite(|store| intake_crash_loses_nothing(store, &[]));
}

#[test]
fn kill_9_during_intake_loses_nothing_on_postgres() {
    on_postgres(|store| intake_crash_loses_nothing(store, &[]));
}

#[test]
fn kill_9_during_journaled_intake_loses_nothing_on_sqlite() {
    on_sqlite(|store| intake_crash_loses_nothing(store, &["--intake-journal"]));
}

#[test]
fn kill_9_during_journaled_intake_loses_nothing_on_postgres() {
    on_postgres(|store| intake_crash_loses_nothing(store, &["--intake-journal"]));
}

/// Answered before the journal's sync, a request is still in the file
/// when Kiroku is killed: only a crash of the machine can lose it.
#[test]
fn kill_9_during_intake_answered_before_the_sync_loses_nothing() {
    on_sqlite(|store| {
        intake_crash_loses_nothing(
            store,
            &["--intake-journal", "--intake-journal-sync-ms", "10"],
        )
    });
}

/// The database, its log and the intake journal hold routing keys and what
/// monitoring sent: only their owner may read them, under the usual umask
/// (022) that would leave them readable by all.
#[cfg(unix)]
#[test]
fn the_data_files_are_their_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let token = admin_token(&["--data-dir", data_dir]);
    let server = Server::start(&["--data-dir", data_dir, "--intake-journal"]);
    let (_key, url) = create_integration(&server, &token, "generic");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt.block_on(
        reqwest::Client::new()
            .post(&url)
            .json(&json!({"summary": "s", "source": "s"}))
            .send(),
    );
    assert_eq!(sent.unwrap().status(), reqwest::StatusCode::ACCEPTED);
    for name in [
        "kiroku.db",
        "kiroku.db-wal",
        "kiroku.db-shm",
        "intake.journal",
    ] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
    }
    server.stop();
    // One opened up since is left so, and said so.
    let db = dir.path().join("kiroku.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(&["--data-dir", data_dir]);
    let log = server.log();
    server.stop();
    assert!(log.contains("can be read by others"), "{log}");
    let mode = std::fs::metadata(&db).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
}
