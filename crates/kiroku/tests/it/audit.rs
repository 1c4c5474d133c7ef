//! The audit trail catches every kind of tampering, on SQLite and
//! PostgreSQL: each case edits the database behind Kiroku's back, then runs
//! `kiroku audit verify` and expects it to name the first bad event.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kiroku_app::{App, Caller, DeclareIncident, TreeSigner};
use kiroku_audit::TreeKey;
use kiroku_store::Store;
use sqlx::AnyPool;

use crate::support::{self, PgDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_kiroku");

/// A database to tamper with, by URL, and the store arguments of the CLI.
struct Target {
    url: String,
    args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<PgDatabase>,
}

async fn target(backend: &str) -> Option<Target> {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiroku.db");
        return Some(Target {
            url: format!("sqlite://{}", path.display()),
            args: vec!["--data-dir".into(), dir.path().display().to_string()],
            _dir: Some(dir),
            _db: None,
        });
    }
    let db = PgDatabase::create().await?;
    Some(Target {
        url: db.url.clone(),
        args: vec!["--database-url".into(), db.url.clone()],
        _dir: None,
        _db: Some(db),
    })
}

async fn open(t: &Target) -> Arc<dyn Store> {
    if let Some(path) = t.url.strip_prefix("sqlite://") {
        Arc::new(
            kiroku_store_sqlite::open(Path::new(path), Default::default())
                .await
                .unwrap(),
        )
    } else {
        Arc::new(
            kiroku_store_postgres::connect(&t.url, Default::default())
                .await
                .unwrap(),
        )
    }
}

/// 13 events (a key registration and 12 declarations) with heads signed at
/// every odd size from 3 and witnessed in `witness`.
async fn populate(t: &Target, seed: [u8; 32], witness: &Path, title: &str) {
    let dir = kiroku::audit::DirWitness {
        dir: witness.to_path_buf(),
    };
    let signer = TreeSigner {
        key: TreeKey::from_seed(seed),
        witnesses: vec![Box::new(dir)],
    };
    let app = App::new(open(t).await, support::config()).with_signer(signer);
    app.register_signing_key().await.unwrap();
    for i in 0..12 {
        let d = DeclareIncident {
            title: format!("{title} {i}"),
            category: "database".into(),
            severity: "P2".into(),
            ..Default::default()
        };
        app.declare_incident(&Caller::local_operator(), d)
            .await
            .unwrap();
        if i % 2 == 1 {
            app.sign_tree_head().await.unwrap().unwrap();
        }
    }
}

async fn sql(t: &Target, statements: &[&str]) {
    support::sql_on(&t.url, statements).await;
}

/// Runs verify; returns (exit code, stdout JSON).
fn verify(t: &Target, witness: Option<&Path>) -> (Option<i32>, serde_json::Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "verify", "--json"]).args(&t.args);
    if let Some(w) = witness {
        cmd.arg("--witness").arg(w);
    }
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn assert_caught(t: &Target, witness: Option<&Path>, problem: &str, seq: u64) {
    let (code, json) = verify(t, witness);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["finding"]["problem"], problem, "{json}");
    assert_eq!(json["finding"]["seq"], seq, "{json}");
}

/// Leaf hash of a document, as the store computes it.
fn leaf(doc: &str) -> String {
    kiroku_audit::merkle::hex(&kiroku_audit::doc_leaf(doc).unwrap())
}

async fn doc_of(t: &Target, seq: i64) -> String {
    let pool = AnyPool::connect(&t.url).await.unwrap();
    let (doc,): (String,) = sqlx::query_as("SELECT doc FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    doc
}

async fn tamper_cases(backend: &str) {
    let fresh = || async {
        let t = target(backend).await?;
        let w = tempfile::tempdir().unwrap();
        populate(&t, [7; 32], w.path(), "incident").await;
        Some((t, w))
    };

    // Untouched: verifies, with and without the witness.
    let Some((t, w)) = fresh().await else { return };
    let (code, json) = verify(&t, Some(w.path()));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["summary"]["events"], 13);
    assert_eq!(json["summary"]["heads_checked"], 6);
    assert_eq!(json["summary"]["witnessed_checked"], 6);
    // Its reader gone before it prints (`| head`): still its own verdict,
    // and no panic.
    let mut child = Command::new(BIN)
        .args(["audit", "verify", "--json"])
        .args(&t.args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // One field of one event changed.
    let (t, _w) = fresh().await.unwrap();
    sql(&t, &[r#"UPDATE audit_events SET doc = REPLACE(doc, '"outcome":"success"', '"outcome":"failure"') WHERE seq = 7"#]).await;
    assert_caught(&t, None, "changed", 7);

    // Changed, with the leaf hash recomputed to match: the signed head still catches it.
    let (t, _w) = fresh().await.unwrap();
    let forged = doc_of(&t, 7).await.replace("incident 5", "incident X");
    let stmt = format!(
        "UPDATE audit_events SET doc = '{}', leaf_hash = '{}' WHERE seq = 7",
        forged.replace('\'', "''"),
        leaf(&forged)
    );
    sql(&t, &[&stmt]).await;
    assert_caught(&t, None, "head_mismatch", 6);

    // An event deleted.
    let (t, _w) = fresh().await.unwrap();
    sql(&t, &["DELETE FROM audit_events WHERE seq = 6"]).await;
    assert_caught(&t, None, "deleted", 6);

    // Two events swapped.
    let (t, _w) = fresh().await.unwrap();
    sql(
        &t,
        &[
            "UPDATE audit_events SET seq = -4 WHERE seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE seq = 5",
            "UPDATE audit_events SET seq = 5 WHERE seq = -4",
        ],
    )
    .await;
    assert_caught(&t, None, "reordered", 4);

    // A forged event with a correct-looking leaf inserted at 8, later ones shifted.
    let (t, _w) = fresh().await.unwrap();
    let forged = doc_of(&t, 8).await.replace("incident 6", "forged");
    let insert = format!(
        "INSERT INTO audit_events (seq, id, time, action, outcome, actor_id, target_kind, target_id, leaf_hash, doc) \
         VALUES (8, 'forged', 0, 'incident_create', 'success', NULL, 'incident', NULL, '{}', '{}')",
        leaf(&forged),
        forged.replace('\'', "''")
    );
    sql(
        &t,
        &[
            "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 8",
            "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000",
            &insert,
            "UPDATE audit_head SET size = size + 1",
        ],
    )
    .await;
    assert_caught(&t, None, "inserted", 8);

    // The tail truncated, the recorded size lowered to match.
    let (t, _w) = fresh().await.unwrap();
    sql(
        &t,
        &[
            "DELETE FROM audit_events WHERE seq > 10",
            "UPDATE audit_head SET size = 10",
        ],
    )
    .await;
    assert_caught(&t, None, "truncated", 11);

    // The whole database replaced by one recomputed under a new key: it
    // verifies on its own, and the witness catches it.
    let (_t, w) = fresh().await.unwrap();
    let replaced = target(backend).await.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    populate(&replaced, [9; 32], elsewhere.path(), "rewritten").await;
    let (code, json) = verify(&replaced, None);
    assert_eq!(code, Some(0), "{json}");
    assert_caught(&replaced, Some(w.path()), "witness_mismatch", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_caught_on_sqlite() {
    tamper_cases("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_caught_on_postgres() {
    tamper_cases("postgres").await;
}

/// Every inclusion proof of the log at its current size, as JSON.
async fn all_proofs(t: &Target) -> Vec<serde_json::Value> {
    let store = open(t).await;
    let size = store.audit_size().await.unwrap();
    let app = App::new(store, support::config());
    let mut proofs = Vec::new();
    for seq in 1..=size {
        let p = app
            .inclusion_proof(&Caller::local_operator(), seq, Some(size))
            .await
            .unwrap();
        proofs.push(serde_json::to_value(p).unwrap());
    }
    proofs
}

/// A log written before tree nodes were keyed by their append order (by
/// level and index, with a row for every leaf, as the oldest versions kept
/// them) is migrated in place: it verifies against its witness, every
/// proof is what it was, and appends carry on.
async fn an_older_log_is_migrated(backend: &str) {
    let Some(t) = target(backend).await else {
        return;
    };
    let w = tempfile::tempdir().unwrap();
    populate(&t, [3; 32], w.path(), "before").await;
    let before = all_proofs(&t).await;
    let shift = if backend == "postgres" {
        "::integer"
    } else {
        ""
    };
    let older = [
        "CREATE TABLE audit_nodes_older (level BIGINT NOT NULL, idx BIGINT NOT NULL,
             hash TEXT NOT NULL, PRIMARY KEY (level, idx))"
            .to_string(),
        format!(
            "INSERT INTO audit_nodes_older (level, idx, hash)
             SELECT pos & 63, ((pos >> 6) >> (pos & 63){shift}) - 1, hash FROM audit_nodes"
        ),
        "INSERT INTO audit_nodes_older (level, idx, hash)
             SELECT 0, seq - 1, leaf_hash FROM audit_events"
            .to_string(),
        "DROP TABLE audit_nodes".to_string(),
        "ALTER TABLE audit_nodes_older RENAME TO audit_nodes".to_string(),
        "DELETE FROM kiroku_migrations WHERE version = 8".to_string(),
    ];
    // One batch, on one connection: SQLite names tables by the schema its
    // connection last read.
    sql(&t, &[&older.join(";\n")]).await;

    let after = all_proofs(&t).await;
    assert_eq!(after, before);
    let (code, json) = verify(&t, Some(w.path()));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["summary"]["witnessed_checked"], 6, "{json}");
    populate(&t, [3; 32], w.path(), "after").await;
    let (code, json) = verify(&t, Some(w.path()));
    assert_eq!(code, Some(0), "{json}");
    // The second key registration was the same key's: no event.
    assert_eq!(json["summary"]["events"], 25, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_log_is_migrated_on_sqlite() {
    an_older_log_is_migrated("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_log_is_migrated_on_postgres() {
    an_older_log_is_migrated("postgres").await;
}

#[test]
fn verify_says_what_is_wrong_with_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--witness"])
        .arg(dir.path())
        .args(["--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no tree heads"));
    let out = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let corrupt = dir.path().join("kiroku.db");
    std::fs::write(&corrupt, b"this is not a database").unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

mod over_http {
    use kiroku_audit::merkle::{from_hex, verify_consistency, verify_inclusion};
    use kiroku_audit::{TreeKey, doc_leaf, verify_head};
    use reqwest::StatusCode;
    use serde_json::Value;

    use crate::support::TestApp;

    fn hash(v: &Value) -> [u8; 32] {
        from_hex(v.as_str().unwrap()).unwrap()
    }

    /// A client that trusts only a signed head checks every event's
    /// inclusion and the heads' consistency, from API answers alone.
    #[tokio::test]
    async fn proofs_verify_against_signed_heads() {
        let t = TestApp::sqlite().await;
        let key = TreeKey::from_seed([3; 32]);
        t.app.register_signing_key().await.unwrap();
        t.declare(&t.responder, "one", "P1").await;
        let first = t.app.sign_tree_head().await.unwrap().unwrap();
        for i in 0..5 {
            t.declare(&t.responder, &format!("more {i}"), "P2").await;
        }
        // On demand, over the API.
        let (s, signed) = t
            .post(
                &t.auditor,
                "/api/v1/audit/tree-heads",
                serde_json::json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{signed}");
        let second: kiroku_audit::SignedTreeHead =
            serde_json::from_value(signed["head"].clone()).unwrap();

        assert!(
            t.app.sign_tree_head().await.unwrap().is_none(),
            "no new head without new events"
        );

        let (s, heads) = t.get(&t.auditor, "/api/v1/audit/tree-heads").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(heads["latest"]["tree_size"], second.head.tree_size);
        let latest: kiroku_audit::SignedTreeHead =
            serde_json::from_value(heads["latest"].clone()).unwrap();
        verify_head(&latest, &key.public_hex()).unwrap();
        let root = from_hex(&latest.head.root_hash).unwrap();
        let size = latest.head.tree_size;

        for seq in 1..=size {
            let (s, ev) = t
                .get(&t.auditor, &format!("/api/v1/audit/events/{seq}"))
                .await;
            assert_eq!(s, StatusCode::OK);
            // The leaf can be recomputed from the event as the API returns it.
            let recomputed = doc_leaf(&ev["event"].to_string()).unwrap();
            assert_eq!(recomputed, hash(&ev["leaf_hash"]), "seq {seq}");
            let (s, p) = t
                .get(
                    &t.auditor,
                    &format!("/api/v1/audit/proofs/inclusion?seq={seq}&tree_size={size}"),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{p}");
            let path: Vec<[u8; 32]> = p["audit_path"]
                .as_array()
                .unwrap()
                .iter()
                .map(hash)
                .collect();
            verify_inclusion(seq - 1, size, &recomputed, &path, &root).unwrap();
            assert_eq!(p["signed_head"]["signature"], latest.signature.as_str());
        }
        let (s, c) = t
            .get(
                &t.auditor,
                &format!(
                    "/api/v1/audit/proofs/consistency?first={}&second={size}",
                    first.head.tree_size
                ),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        let proof: Vec<[u8; 32]> = c["proof"].as_array().unwrap().iter().map(hash).collect();
        verify_consistency(
            first.head.tree_size,
            size,
            &from_hex(&first.head.root_hash).unwrap(),
            &root,
            &proof,
        )
        .unwrap();
        // Refused for responders (checked last: the refusal grows the log).
        let (s, _) = t
            .post(
                &t.responder,
                "/api/v1/audit/tree-heads",
                serde_json::json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }

    /// Heads signed before a key rotation still verify after it.
    #[tokio::test]
    async fn old_heads_verify_after_a_key_rotation() {
        let t = TestApp::sqlite().await;
        t.app.register_signing_key().await.unwrap();
        t.declare(&t.responder, "before", "P1").await;
        t.app.sign_tree_head().await.unwrap().unwrap();
        let rotated = t.app.clone().with_signer(kiroku_app::TreeSigner {
            key: TreeKey::from_seed([4; 32]),
            witnesses: Vec::new(),
        });
        rotated.register_signing_key().await.unwrap();
        t.declare(&t.responder, "after", "P1").await;
        let head = rotated.sign_tree_head().await.unwrap().unwrap();
        assert_eq!(head.key_id, TreeKey::from_seed([4; 32]).key_id());
        let summary = t.verified().await;
        assert_eq!(summary.heads_checked, 2);
    }
    /// A log changed behind Kiroku's back answers 500 `data_damaged`,
    /// pointing at `kiroku audit verify`, rather than a bare internal error.
    #[tokio::test]
    async fn a_proof_over_a_damaged_log_says_so() {
        let t = TestApp::sqlite().await;
        for i in 0..3 {
            t.declare(&t.responder, &format!("d{i}"), "P2").await;
        }
        let size = t.audit().await.len();
        // Event 2's row gone: the proof of event 1 needs its leaf.
        crate::support::sql_on(&t.store.url(), &["DELETE FROM audit_events WHERE seq = 2"]).await;
        let (s, body) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/proofs/inclusion?seq=1&tree_size={size}"),
            )
            .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["code"], "data_damaged", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("kiroku audit verify"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn proof_requests_out_of_range_or_unauthorised_are_refused() {
        let t = TestApp::sqlite().await;
        t.declare(&t.responder, "x", "P1").await;
        let size = t.audit().await.len();
        let cases = [
            (
                "/api/v1/audit/proofs/inclusion?seq=0",
                "out_of_range",
                "seq",
            ),
            (
                // Refusals are audited too, so the log grows during this test.
                "/api/v1/audit/proofs/inclusion?seq=1000000",
                "out_of_range",
                "seq",
            ),
            (
                "/api/v1/audit/proofs/inclusion?seq=1&tree_size=1000000",
                "out_of_range",
                "tree_size",
            ),
            (
                "/api/v1/audit/proofs/inclusion?seq=abc",
                "invalid_type",
                "seq",
            ),
            ("/api/v1/audit/proofs/inclusion", "required", "seq"),
            (
                "/api/v1/audit/proofs/consistency?first=0",
                "out_of_range",
                "first",
            ),
            (
                &format!("/api/v1/audit/proofs/consistency?first={}&second=1", size),
                "out_of_range",
                "first",
            ),
            ("/api/v1/audit/tree-heads?limit=0", "out_of_range", "limit"),
        ];
        for (path, code, field) in cases {
            let (s, body) = t.get(&t.auditor, path).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
            assert_eq!(body["code"], code, "{path}: {body}");
            assert_eq!(body["field"], field, "{path}: {body}");
        }
        let (s, _) = t.get(&t.auditor, "/api/v1/audit/events/999999").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = t.get(&t.auditor, "/api/v1/audit/events/not-a-number").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        for path in [
            "/api/v1/audit/proofs/inclusion?seq=1",
            "/api/v1/audit/tree-heads",
            "/api/v1/audit/events/1",
        ] {
            let (s, _) = t.get(&t.responder, path).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
            let (s, _) = t.call(None, reqwest::Method::GET, path, None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        }
    }

    #[tokio::test]
    async fn the_audit_log_searches_by_every_field() {
        let t = TestApp::sqlite().await;
        t.declare(&t.responder, "searchable 100%", "P1").await;
        let body = serde_json::json!({"title": "t", "category": "database", "severity": "P1"});
        let (s, _) = t.post(&t.viewer, "/api/v1/incidents", body).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let login = serde_json::json!({"name": "viewer", "password": "wrong password!"});
        t.http
            .post(t.url("/api/v1/auth/login"))
            .json(&login)
            .send()
            .await
            .unwrap();

        let items = |v: &Value| v["items"].as_array().unwrap().clone();
        let (_, r) = t
            .get(&t.auditor, "/api/v1/audit/events?actor=responder")
            .await;
        assert!(
            !items(&r).is_empty() && items(&r).iter().all(|e| e["actor"]["name"] == "responder"),
            "{r}"
        );
        let (_, r) = t
            .get(
                &t.auditor,
                "/api/v1/audit/events?role=viewer&result=failure",
            )
            .await;
        assert_eq!(items(&r).len(), 1, "{r}");
        assert_eq!(items(&r)[0]["action"], "authz_fail");
        let (_, r) = t
            .get(&t.auditor, "/api/v1/audit/events?action=authn_login_fail")
            .await;
        assert_eq!(items(&r).len(), 1);
        let (_, r) = t
            .get(
                &t.auditor,
                "/api/v1/audit/events?target_kind=incident&action=incident_create",
            )
            .await;
        assert_eq!(items(&r).len(), 1);
        let (_, r) = t
            .get(&t.auditor, "/api/v1/audit/events?source_ip=127.0.0.1")
            .await;
        assert!(items(&r).iter().all(|e| e["source"]["ip"] == "127.0.0.1"));
        let (_, r) = t
            .get(&t.auditor, "/api/v1/audit/events?q=searchable%20100%25")
            .await;
        assert_eq!(items(&r).len(), 1, "{r}");
        let (_, r) = t
            .get(&t.auditor, "/api/v1/audit/events?from=2999-01-01T00:00:00Z")
            .await;
        assert!(items(&r).is_empty());
        let (_, newest) = t
            .get(&t.auditor, "/api/v1/audit/events?order=desc&limit=1")
            .await;
        let cursor = newest["next_cursor"].as_i64().unwrap();
        let (_, older) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/events?order=desc&limit=1&cursor={cursor}"),
            )
            .await;
        assert_eq!(items(&older)[0]["seq"].as_i64().unwrap(), cursor - 1);

        for (path, field) in [
            ("/api/v1/audit/events?result=maybe", "result"),
            ("/api/v1/audit/events?from=yesterday", "from"),
            ("/api/v1/audit/events?order=up", "order"),
            ("/api/v1/audit/events?limit=0", "limit"),
        ] {
            let (s, body) = t.get(&t.auditor, path).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
            assert_eq!(body["field"], field, "{path}: {body}");
        }
        let (s, _) = t.get(&t.viewer, "/api/v1/audit/events").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn other_applications_send_events_all_or_none() {
        use crate::support::{PASSWORD, TestUser};
        use kiroku_app::{Caller, NewUser};
        use serde_json::json;

        let t = TestApp::sqlite().await;
        let operator = Caller::local_operator();
        let user = NewUser {
            name: "billing".into(),
            display_name: String::new(),
            email: None,
            role: kiroku_domain::Role::Application,
            password: PASSWORD.into(),
        };
        t.app.create_user(&operator, user).await.unwrap();
        let token = t
            .app
            .create_token(&operator, Some("billing"), "ingest", None)
            .await
            .unwrap()
            .secret;
        let billing = TestUser {
            name: "billing".into(),
            token,
            totp_uri: None,
        };
        let ev = |i: usize| {
            json!({
                "time": "2026-11-21T09:00:00+09:00",
                "actor": {"id": "u-1", "role": "clerk"},
                "operation": "update",
                "action": "invoice_update",
                "target": {"kind": "invoice", "id": format!("inv-{i}")},
                "before": {"amount": 100}, "after": {"amount": 120.5},
                "source": {"ip": "192.0.2.7", "user_agent": "billing/2.1"},
                "result": "success",
                "seq": 999_999, "leaf_hash": "00"
            })
        };
        let invoices = |t: &TestApp| {
            let store = t.store.store.clone();
            async move {
                let q = kiroku_store::AuditQuery {
                    action: Some("invoice_update".into()),
                    limit: 200,
                    ..Default::default()
                };
                store.audit_events(&q).await.unwrap().len()
            }
        };

        let (s, body) = t
            .post(
                &billing,
                "/api/v1/audit/events",
                json!({"events": [ev(0), ev(1), ev(2)]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert_eq!(body["accepted"], 3);
        let first = body["first_seq"].as_i64().unwrap();
        assert!(first < 999_999, "the server assigns sequence numbers");
        let (_, stored) = t
            .get(&t.auditor, &format!("/api/v1/audit/events/{first}"))
            .await;
        assert_eq!(stored["event"]["seq"], first);
        assert_eq!(stored["event"]["time"], "2026-11-21T00:00:00Z");
        assert_eq!(stored["event"]["source"]["channel"], "ingest:billing");
        assert_eq!(stored["event"]["actor"]["id"], "u-1");

        let mut missing = ev(1);
        missing.as_object_mut().unwrap().remove("source");
        let mut bad_ip = ev(0);
        bad_ip["source"]["ip"] = json!("not an address");
        let mut huge = ev(0);
        huge["after"]["amount"] = json!(9_007_199_254_740_993u64);
        let cases = [
            (
                json!({"events": [ev(0), missing]}),
                "required",
                "events[1].source",
            ),
            (
                json!({"events": [bad_ip]}),
                "invalid_ip",
                "events[0].source.ip",
            ),
            (json!({"events": [huge]}), "out_of_range", "events[0].after"),
            (
                json!({"events": (0..1001).map(ev).collect::<Vec<_>>()}),
                "too_many",
                "events",
            ),
            (json!({"events": []}), "required", "events"),
            (
                json!({"events": [ev(0)], "extra": 1}),
                "unknown_field",
                "extra",
            ),
        ];
        for (body, code, field) in cases {
            let (s, resp) = t.post(&billing, "/api/v1/audit/events", body).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
            assert_eq!(resp["code"], code, "{resp}");
            assert_eq!(resp["field"], field, "{resp}");
        }
        assert_eq!(invoices(&t).await, 3, "a refused batch writes nothing");

        let (s, _) = t
            .post(
                &t.responder,
                "/api/v1/audit/events",
                json!({"events": [ev(0)]}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = t.get(&billing, "/api/v1/incidents").await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "an application token sends events and nothing else"
        );
        let (s, _) = t.get(&billing, "/api/v1/audit/events").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let login = t
            .http
            .post(t.url("/api/v1/auth/login"))
            .json(&json!({"name": "billing", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(login.json::<Value>().await.unwrap()["code"], "token_only");

        // Concurrent senders share commits: each is answered with its own
        // contiguous range, no two overlap, and nothing is lost.
        let sends = (0..40).map(|k| {
            let body =
                json!({"events": (0..25).map(|i| ev(1000 + k * 25 + i)).collect::<Vec<_>>()});
            let (http, url, token) = (
                t.http.clone(),
                t.url("/api/v1/audit/events"),
                billing.token.clone(),
            );
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["accepted"], 25, "{v}");
                v["first_seq"].as_i64().unwrap()
            })
        });
        let before = t.store.store.audit_size().await.unwrap();
        let mut firsts = Vec::new();
        for send in sends.collect::<Vec<_>>() {
            firsts.push(send.await.unwrap());
        }
        firsts.sort_unstable();
        assert!(firsts.windows(2).all(|w| w[1] - w[0] >= 25), "{firsts:?}");
        assert!(t.store.store.audit_size().await.unwrap() >= before + 1000);
        for first in firsts {
            let (_, last) = t
                .get(&t.auditor, &format!("/api/v1/audit/events/{}", first + 24))
                .await;
            assert_eq!(last["event"]["action"], "invoice_update", "{last}");
        }

        let summary = t.verified().await;
        assert!(summary.events > 3);
    }

    #[tokio::test]
    async fn the_log_exports_as_json_lines_and_csv() {
        use sha2::Digest;
        let t = TestApp::sqlite().await;
        t.declare(&t.responder, "export me, \"quoted\"", "P1").await;
        let res = t
            .http
            .get(t.url("/api/v1/audit/export?format=jsonl"))
            .bearer_auth(&t.auditor.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let body = res.text().await.unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines.len() >= 2, "{body}");
        for line in &lines {
            let event: Value = serde_json::from_str(line).unwrap();
            let seq = event["seq"].as_i64().unwrap();
            let (_, stored) = t
                .get(&t.auditor, &format!("/api/v1/audit/events/{seq}"))
                .await;
            let mut h = sha2::Sha256::new();
            h.update([0u8]);
            h.update(line.as_bytes());
            let leaf: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                stored["leaf_hash"],
                leaf.as_str(),
                "each exported line hashes to its leaf"
            );
        }
        assert_eq!(
            serde_json::from_str::<Value>(lines.last().unwrap()).unwrap()["action"],
            "audit_export",
            "the export is audited"
        );

        let csv = t
            .http
            .get(t.url("/api/v1/audit/export?format=csv&from=2000-01-01T00:00:00Z"))
            .bearer_auth(&t.auditor.token)
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status(), StatusCode::OK);
        let text = csv.text().await.unwrap();
        assert!(text.starts_with("seq,time,actor_kind,"), "{text}");
        assert!(text.contains("incident_create"));
        let (s, body) = t.get(&t.auditor, "/api/v1/audit/export?format=xml").await;
        assert_eq!(
            (s, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("format"))
        );
        let (s, body) = t.get(&t.auditor, "/api/v1/audit/export?from=soon").await;
        assert_eq!(
            (s, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("from"))
        );
        let (s, _) = t.get(&t.responder, "/api/v1/audit/export").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn personal_data_is_sealed_opened_on_request_and_shredded() {
        use kiroku_app::Caller;
        use serde_json::json;
        let t = TestApp::sqlite().await;
        let body = json!({
            "title": "leak", "category": "information_leak", "severity": "P0",
            "personal_data": {"involved": true, "items": ["氏名", "メールアドレス"], "people_affected": 1200, "sensitive": true}
        });
        let (s, inc) = t.post(&t.responder, "/api/v1/incidents", body).await;
        assert_eq!(s, StatusCode::CREATED);
        let id = inc["id"].as_str().unwrap().to_string();
        let subject = format!("incident:{id}");
        let raw = t.store.store.audit_raw(0, 1000).await.unwrap();
        assert!(
            raw.iter().all(|e| !e.doc.contains("氏名")),
            "no plaintext personal data in the log"
        );
        let (_, found) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/events?action=incident_create&target_id={id}"),
            )
            .await;
        let event = &found["items"][0];
        assert_eq!(event["after"]["personal_data"]["kiroku_sealed"], "v1");
        assert_eq!(
            event["after"]["title"], "leak",
            "only the sensitive paths are sealed"
        );
        let seq = event["seq"].as_i64().unwrap();

        let (s, opened) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/events/{seq}?decrypt=true"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{opened}");
        assert_eq!(
            opened["event"]["after"]["personal_data"]["items"],
            json!(["氏名", "メールアドレス"]),
            "{opened}"
        );
        let (_, reads) = t
            .get(&t.auditor, "/api/v1/audit/events?action=audit_decrypt")
            .await;
        assert_eq!(
            reads["items"].as_array().unwrap().len(),
            1,
            "the decrypting read is audited"
        );
        let (s, _) = t
            .get(
                &t.responder,
                &format!("/api/v1/audit/events/{seq}?decrypt=true"),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let n = t
            .app
            .shred_subject(&Caller::local_operator(), &subject)
            .await
            .unwrap();
        assert_eq!(n, 1);
        let (_, shredded) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/events/{seq}?decrypt=true"),
            )
            .await;
        assert_eq!(
            shredded["event"]["after"]["personal_data"],
            json!({"kiroku_shredded": subject})
        );
        let summary = t.verified().await;
        assert!(
            summary.events > 0,
            "the tree still verifies after shredding"
        );
        assert_eq!(
            t.app
                .shred_subject(&Caller::local_operator(), &subject)
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );

        // New facts after the erasure are sealed under a new key, which opens.
        let patch = json!({"personal_data": {"involved": true, "items": ["住所"]}});
        let (s, _) = t
            .call(
                Some(&t.responder),
                reqwest::Method::PATCH,
                &format!("/api/v1/incidents/{id}"),
                Some(patch),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, updates) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/events?action=incident_update&target_id={id}"),
            )
            .await;
        let seq = updates["items"][0]["seq"].as_i64().unwrap();
        assert_eq!(updates["items"][0]["after"]["personal_data"]["key"], 2);
        let (_, opened) = t
            .get(
                &t.auditor,
                &format!("/api/v1/audit/events/{seq}?decrypt=true"),
            )
            .await;
        assert_eq!(
            opened["event"]["after"]["personal_data"]["items"],
            json!(["住所"])
        );
        // `before` comes from the live record, not from the shredded log:
        // erasing the record's own facts is a separate edit.
        assert_eq!(
            opened["event"]["before"]["personal_data"]["items"],
            json!(["氏名", "メールアドレス"])
        );
    }

    #[tokio::test]
    async fn development_environments_mask_instead() {
        use kiroku_app::{App, Caller, DeclareIncident, SealMode, Sealer};
        let store = crate::support::sqlite().await;
        let sealer = Sealer {
            kek: [1; 32],
            mode: SealMode::Mask,
            rules: Sealer::default_rules(),
        };
        let app = App::new(store.store.clone(), crate::support::config()).with_sealer(sealer);
        let mut d = DeclareIncident {
            title: "dev".into(),
            category: "database".into(),
            severity: "P3".into(),
            ..Default::default()
        };
        d.personal_data.involved = true;
        d.personal_data.items = vec!["氏名".into()];
        app.declare_incident(&Caller::local_operator(), d)
            .await
            .unwrap();
        let raw = store.store.audit_raw(0, 10).await.unwrap();
        let created = raw
            .iter()
            .find(|e| e.doc.contains("incident_create"))
            .unwrap();
        assert!(
            created.doc.contains("\"personal_data\":\"[masked]\""),
            "{}",
            created.doc
        );
    }
}

fn kiroku_on(t: &Target, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).args(&t.args).output().unwrap()
}

fn verify_archived(t: &Target, archive: Option<&Path>) -> (Option<i32>, serde_json::Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "verify", "--json"]).args(&t.args);
    if let Some(a) = archive {
        cmd.arg("--archive").arg(a);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or_default(),
    )
}

/// A populated log whose events 1..=8 are ten days old; the latest signed
/// head covers 13. Returns the witness directory, to keep it alive.
async fn aged_log(t: &Target, seed: [u8; 32], title: &str) -> tempfile::TempDir {
    let witness = tempfile::tempdir().unwrap();
    populate(t, seed, witness.path(), title).await;
    sql(
        t,
        &["UPDATE audit_events SET time = time - 864000000000 WHERE seq <= 8"],
    )
    .await;
    witness
}

/// Archiving moves old events to a file and out of the database; the tree,
/// its heads and proofs still span them, and the file is checked against
/// the leaves the tree recorded.
async fn archive_cases(backend: &str) {
    let Some(t) = target(backend).await else {
        return;
    };
    let _witness = aged_log(&t, [5; 32], "archived").await;
    let out_dir = tempfile::tempdir().unwrap();
    let archives = out_dir.path().join("archives");
    let dir = archives.to_str().unwrap();

    let out = kiroku_on(
        &t,
        &["audit", "archive", "--older-than-days", "0", "--out", dir],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than-days must be at least 1"));

    let out = kiroku_on(
        &t,
        &["audit", "archive", "--older-than-days", "5", "--out", dir],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("archived events 1..=8 (8)"), "{stdout}");
    let file = archives.join(format!("audit-{:020}-{:020}.jsonl", 1, 8));
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 8);
    // Nothing more is old enough, and nothing is archived twice.
    let out = kiroku_on(
        &t,
        &["audit", "archive", "--older-than-days", "5", "--out", dir],
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("nothing to archive"));

    let pool = AnyPool::connect(&t.url).await.unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE seq <= 8")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "archived rows are gone");
    let (archive_event,): (String,) =
        sqlx::query_as("SELECT doc FROM audit_events WHERE action = 'audit_archive'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(archive_event.contains("\"from_seq\":1") && archive_event.contains("\"to_seq\":8"));

    // Verification spans the whole log: by the recorded leaves alone...
    let (code, json) = verify_archived(&t, None);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["summary"]["events"], 14, "{json}");
    assert_eq!(json["summary"]["archived_by_leaf_only"], 8);
    // ...and by the archive's bytes.
    let (code, json) = verify_archived(&t, Some(&archives));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["summary"]["archived_by_leaf_only"], 0);

    // An archived event still has its inclusion proof, for its own bytes.
    let out = kiroku_on(&t, &["audit", "prove", "3"]);
    assert!(out.status.success());
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proof["leaf_hash"], leaf(&lines[2]), "{proof}");

    // The archive altered: its digest no longer matches...
    let tampered = lines[4].replacen("archived 3", "archived X", 1);
    assert_ne!(tampered, lines[4]);
    let mut edited = lines.clone();
    edited[4] = tampered;
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let (code, json) = verify_archived(&t, Some(&archives));
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["finding"]["problem"], "archive_mismatch", "{json}");
    // ...and with the recorded digest forged to match, the changed line is
    // named by its leaf.
    let forged = {
        use sha2::Digest;
        kiroku_audit::hex::encode(&sha2::Sha256::digest(std::fs::read(&file).unwrap()))
    };
    sql(
        &t,
        &[&format!("UPDATE audit_archives SET sha256 = '{forged}'")],
    )
    .await;
    assert_caught_archived(&t, &archives, "changed", 5);
    // A line removed: the archive ends early.
    std::fs::write(&file, lines[..7].join("\n") + "\n").unwrap();
    let forged = {
        use sha2::Digest;
        kiroku_audit::hex::encode(&sha2::Sha256::digest(std::fs::read(&file).unwrap()))
    };
    sql(
        &t,
        &[&format!("UPDATE audit_archives SET sha256 = '{forged}'")],
    )
    .await;
    assert_caught_archived(&t, &archives, "archive_mismatch", 8);
    // The file gone.
    std::fs::remove_file(&file).unwrap();
    assert_caught_archived(&t, &archives, "archive_mismatch", 1);
    // A recorded leaf of an archived event changed: the signed heads
    // disagree, archive or not.
    sql(
        &t,
        &[&format!(
            // Event 3's leaf: its append order is seq << 6.
            "UPDATE audit_nodes SET hash = '{}' WHERE pos = 3 * 64",
            "ab".repeat(32)
        )],
    )
    .await;
    let (code, json) = verify_archived(&t, None);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["finding"]["problem"], "head_mismatch", "{json}");
}

fn assert_caught_archived(t: &Target, archives: &Path, problem: &str, seq: u64) {
    let (code, json) = verify_archived(t, Some(archives));
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["finding"]["problem"], problem, "{json}");
    assert_eq!(json["finding"]["seq"], seq, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_keeps_the_whole_log_verifiable_on_sqlite() {
    archive_cases("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_keeps_the_whole_log_verifiable_on_postgres() {
    archive_cases("postgres").await;
}

/// `[audit.archive]`: the server's own archiving pass moves what is old
/// enough at start, and the log still verifies against the file.
async fn scheduled_archive_cases(backend: &str) {
    let Some(t) = target(backend).await else {
        return;
    };
    let _witness = aged_log(&t, [6; 32], "retained").await;
    let out = tempfile::tempdir().unwrap();
    let app = App::new(open(&t).await, support::config());
    let pass = tokio::spawn(kiroku::audit::archive_on_schedule(
        app,
        5,
        out.path().to_path_buf(),
    ));
    let file = out.path().join(format!("audit-{:020}-{:020}.jsonl", 1, 8));
    for _ in 0..200 {
        if file.exists() && verify_archived(&t, Some(out.path())).0 == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pass.abort();
    let (code, json) = verify_archived(&t, Some(out.path()));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["summary"]["archived_by_leaf_only"], 0, "{json}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_archives_by_its_retention_setting_on_sqlite() {
    scheduled_archive_cases("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_archives_by_its_retention_setting_on_postgres() {
    scheduled_archive_cases("postgres").await;
}
