//! Postmortems, their approval chain and freezing, the reports rendered
//! from them (Markdown, HTML, PDF checked with pdftotext), notification
//! duties with their reminders, communications and metrics — over the real
//! router, on SQLite and PostgreSQL, and `kiroku report` from the binary.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::kiroku;
use crate::support::{self, TestApp, TestStore, TestUser};

fn ago(days: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days)).to_string()
}

async fn put(t: &TestApp, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    t.call(Some(user), Method::PUT, path, Some(body)).await
}

async fn raw(t: &TestApp, user: Option<&TestUser>, path: &str) -> (StatusCode, String, Vec<u8>) {
    let mut req = t.http.get(t.url(path));
    if let Some(u) = user {
        req = req.bearer_auth(&u.token);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, res.bytes().await.unwrap().to_vec())
}

fn measure(text: &str) -> Value {
    json!({ "term": "short", "text": text, "owner": "responder", "due": "2026-12-20" })
}

fn postmortem(measure_text: &str) -> Value {
    json!({
        "summary": "開発環境で migrate reset を実行し全テーブルが消えた",
        "detection": "開発者による発見",
        "symptoms": ["complete_data_loss"],
        "direct_cause": "npx prisma migrate reset --force",
        "root_causes": [{ "kind": "process", "text": "実行前確認の手順がなかった" }],
        "measures": [measure(measure_text)],
        "lessons": { "good": ["早期発見"], "bad": ["バックアップ不在"], "try": ["復旧訓練"] },
        "action_items": [
            { "title": "バックアップスクリプト作成", "owner": "responder", "due": "2020-01-10", "status": "未着手" }
        ]
    })
}

async fn reports_story(store: TestStore) {
    let mut config = support::config();
    // Approvers by name, so that each step is someone else's.
    let chain = &mut config.reports.approvals;
    chain.steps[0].approvers = vec!["responder".into()];
    chain.steps[2].approvers = vec!["cto".into()];
    let t = TestApp::with_config(store, config).await;
    let cto = t.user_with_role("cto", kiroku_domain::Role::Admin).await;

    // --- Notification duties from personal-data facts, with reminders.
    let (s, leak) = t
        .post(
            &t.admin,
            "/api/v1/incidents",
            json!({
                "title": "問い合わせ内容がログ基盤へ",
                "category": "information_leak",
                "severity": "P1",
                "detected_at": ago(4),
                "personal_data": { "involved": true, "items": ["氏名", "メールアドレス"], "people_affected": 1500 }
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{leak}");
    let leak_no = leak["number"].as_str().unwrap().to_string();
    let (s, duties) = t
        .get(
            &t.admin,
            &format!("/api/v1/incidents/{leak_no}/obligations"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let appi = duties["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "appi_preliminary")
        .unwrap_or_else(|| panic!("no APPI duty in {duties}"))
        .clone();
    assert_eq!(appi["status"], "pending");
    assert_eq!(appi["overdue"], true);
    let (_, overdue) = t.get(&t.viewer, "/api/v1/obligations?overdue=true").await;
    assert!(
        overdue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["incident_number"] == leak_no)
    );
    // Reminders go out once: the second sweep finds nothing left to send.
    let sent = t.app.send_due_reminders().await.unwrap();
    assert!(sent >= 2, "sent {sent}");
    assert_eq!(t.app.send_due_reminders().await.unwrap(), 0);
    let outbox = t.store.store.outbox(1_000).await.unwrap();
    assert!(outbox.iter().any(|m| m.topic == "obligation.overdue"));
    let duty = format!("/api/v1/incidents/{leak_no}/obligations/appi_preliminary");
    let (s, e) = put(&t, &t.admin, &duty, json!({ "status": "not_required" })).await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason"))
    );
    let (s, _) = put(&t, &t.viewer, &duty, json!({ "status": "submitted" })).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = put(
        &t,
        &t.admin,
        &format!("/api/v1/incidents/{leak_no}/obligations/nope"),
        json!({ "status": "submitted" }),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = put(&t, &t.admin, &duty, json!({ "status": "filed" })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, decided) = put(
        &t,
        &t.admin,
        &duty,
        json!({ "status": "submitted", "reason": "受付番号 PPC-123" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{decided}");
    assert_eq!(decided["decided_by"]["name"], "admin");
    assert_eq!(decided["overdue"], false);
    // Drafts for the regulators, filled from the incident.
    let (s, _, body) = raw(
        &t,
        Some(&t.viewer),
        &format!("/api/v1/incidents/{leak_no}/reports/appi-report.md"),
    )
    .await;
    let appi = String::from_utf8(body).unwrap();
    assert_eq!(s, StatusCode::OK, "{appi}");
    assert!(
        appi.contains("確報") && appi.contains("1500人") && appi.contains("メールアドレス"),
        "{appi}"
    );
    let (s, _, body) = raw(
        &t,
        Some(&t.viewer),
        &format!("/api/v1/incidents/{leak_no}/reports/gdpr-notification.md"),
    )
    .await;
    let gdpr = String::from_utf8(body).unwrap();
    assert_eq!(s, StatusCode::OK, "{gdpr}");
    assert!(
        gdpr.contains("Approximate number of data subjects") && gdpr.contains("1500"),
        "{gdpr}"
    );
    // The Art. 33(5) register lists the breach with its facts and duties.
    let (s, register) = t.get(&t.auditor, "/api/v1/breach-register").await;
    assert_eq!(s, StatusCode::OK, "{register}");
    let entry = &register["items"][0];
    assert_eq!(entry["number"], leak_no.as_str());
    assert_eq!(entry["people_affected"], 1500);
    assert!(entry["duties"].to_string().contains("appi_preliminary"));
    let (s, kind, csv) = raw(&t, Some(&t.auditor), "/api/v1/breach-register?format=csv").await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.starts_with("text/csv"));
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("number,title,") && csv.contains(&leak_no),
        "{csv}"
    );
    let (s, e) = t
        .get(&t.auditor, "/api/v1/breach-register?format=xml")
        .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("format"))
    );
    let (s, _, _) = raw(&t, None, "/api/v1/breach-register").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // SEC 8-K counts from the materiality determination, once recorded.
    let (s, e) = t
        .call(
            Some(&t.admin),
            Method::PATCH,
            &format!("/api/v1/incidents/{leak_no}"),
            Some(json!({ "materiality_determined_at": "2999-01-01T00:00:00Z" })),
        )
        .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("materiality_determined_at")
        )
    );
    let (s, e) = t
        .call(
            Some(&t.admin),
            Method::PATCH,
            &format!("/api/v1/incidents/{leak_no}"),
            Some(json!({ "materiality_determined_at": ago(1) })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, duties) = t
        .get(
            &t.admin,
            &format!("/api/v1/incidents/{leak_no}/obligations"),
        )
        .await;
    let keys: Vec<&str> = duties["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["key"].as_str())
        .collect();
    assert!(keys.contains(&"sec_8k"), "{keys:?}");
    let submitted = duties["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "appi_preliminary")
        .unwrap();
    assert_eq!(
        submitted["status"], "submitted",
        "a decision survives a change of facts"
    );

    // --- A postmortem: bad input, 精神論不可, the chain, freezing.
    let db = t.declare(&t.admin, "開発DBのデータ消失", "P1").await;
    let no = db["number"].as_str().unwrap().to_string();
    let pm = format!("/api/v1/incidents/{no}/postmortem");
    let (s, empty) = t.get(&t.viewer, &pm).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(empty["version"], 0);
    assert!(empty["problems"].to_string().contains("measures_missing"));
    let mut unknown_owner = postmortem("WHERE句必須Lintを導入");
    unknown_owner["action_items"][0]["owner"] = json!("nobody");
    let (s, e) = put(
        &t,
        &t.admin,
        &pm,
        json!({ "version": 0, "postmortem": unknown_owner }),
    )
    .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("action_items[0].owner")
        ),
        "{e}"
    );
    let (s, e) = put(
        &t,
        &t.admin,
        &pm,
        json!({ "version": 0, "postmortem": { "summary": "x".repeat(20_001) } }),
    )
    .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("summary"))
    );
    let (s, e) = put(
        &t,
        &t.admin,
        &pm,
        json!({ "version": 0, "postmortem": { "bogus": 1 } }),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, _) = put(
        &t,
        &t.viewer,
        &pm,
        json!({ "version": 0, "postmortem": {} }),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v1) = put(
        &t,
        &t.admin,
        &pm,
        json!({ "version": 0, "postmortem": postmortem("本番作業時の確認を徹底する") }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v1}");
    assert_eq!(v1["version"], 1);
    assert!(v1["postmortem"]["action_items"][0]["id"].is_string());
    let (s, _) = put(&t, &t.admin, &pm, json!({ "version": 0, "postmortem": {} })).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let approvals = format!("{pm}/approvals");
    let (s, e) = t
        .post(
            &t.responder,
            &approvals,
            json!({ "step": "incident_manager", "version": 1 }),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_ready")),
        "{e}"
    );
    assert_eq!(e["problems"][0]["code"], "exhortation_only");
    assert_eq!(e["field"], "measures[0].text");
    let (s, v2) = put(
        &t,
        &t.admin,
        &pm,
        json!({ "version": 1, "postmortem": postmortem("WHERE句必須Lint（sqlfluff）を導入") }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v2["problems"], json!([]));
    let approve = |who: &'static str, step: &'static str, version: i64| {
        let user = match who {
            "responder" => &t.responder,
            "admin" => &t.admin,
            _ => &cto,
        };
        t.post(
            user,
            &approvals,
            json!({ "step": step, "version": version, "comment": "確認" }),
        )
    };
    let (s, e) = approve("admin", "tech_lead", 2).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_order"))
    );
    let (s, e) = approve("admin", "incident_manager", 2).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_approver"))
    );
    let (s, e) = approve("responder", "incident_manager", 1).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{e}");
    let (s, r) = approve("responder", "incident_manager", 2).await;
    assert_eq!(
        (s, r["stage"].as_str()),
        (StatusCode::OK, Some("in_review")),
        "{r}"
    );
    let (s, r) = approve("admin", "tech_lead", 2).await;
    assert_eq!(
        (s, r["stage"].as_str()),
        (StatusCode::OK, Some("in_review"))
    );
    let (s, e) = approve("admin", "cto", 2).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_approver"))
    );
    let (s, fin) = approve("cto", "cto", 2).await;
    assert_eq!(
        (s, fin["stage"].as_str()),
        (StatusCode::OK, Some("final")),
        "{fin}"
    );
    let hash = fin["final_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert_eq!(fin["versions"][0]["sha256"], hash.as_str());
    let audited = t.audit().await;
    let finalised = audited
        .iter()
        .find(|e| e["action"] == "postmortem_finalise")
        .expect("finalisation audited");
    assert!(finalised.to_string().contains(&hash));
    let (s, e) = approve("cto", "cto", 2).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_final"))
    );
    // A later edit is a new version; the frozen one stays.
    let (s, v3) = put(
        &t,
        &t.admin,
        &pm,
        json!({ "version": 2, "postmortem": postmortem("WHERE句必須Lint（sqlfluff）を導入") }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v3["version"].as_i64(), v3["stage"].as_str()),
        (Some(3), Some("draft"))
    );
    assert_eq!(v3["final_version"], 2);
    assert_eq!(v3["versions"].as_array().unwrap().len(), 1);

    // --- Action items across incidents, reminded once when overdue.
    let (s, items) = t.get(&t.viewer, "/api/v1/action-items?overdue=true").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(items["items"][0]["incident_number"], no.as_str(), "{items}");
    // The owner hears of it on their own contact method, once.
    let rx = crate::notify::Receiver::default();
    let hooks = rx.start().await;
    let (s, e) = t
        .post(
            &t.admin,
            "/api/v1/users/responder/contact-methods",
            json!({ "label": "hook", "type": "webhook", "address": format!("{hooks}/owner") }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert_eq!(t.app.send_due_reminders().await.unwrap(), 1);
    assert_eq!(t.app.send_due_reminders().await.unwrap(), 0);
    rx.wait_for("the owner's reminder", |r| !r.of("owner").is_empty())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let heard = rx.of("owner");
    assert_eq!(heard.len(), 1, "{heard:#?}");
    assert!(
        heard[0].body.contains("バックアップスクリプト作成"),
        "{}",
        heard[0].body
    );
    let (s, _) = t.get(&t.viewer, "/api/v1/action-items?owner=nobody").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // --- Reports in every format.
    let report = |file: &str| format!("/api/v1/incidents/{no}/reports/{file}");
    let (s, kind, body) = raw(&t, Some(&t.viewer), &report("shimatsusho.md")).await;
    let md = String::from_utf8(body).unwrap();
    assert_eq!(s, StatusCode::OK, "{md}");
    assert!(kind.starts_with("text/markdown"));
    assert!(
        md.contains("データ消失インシデント始末書") && md.contains("令和"),
        "{md}"
    );
    let (s, kind, body) = raw(&t, Some(&t.viewer), &report("db-incident.html")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.starts_with("text/html"));
    assert!(String::from_utf8(body).unwrap().contains("10. 承認"));
    let (s, _, body) = raw(
        &t,
        Some(&t.viewer),
        &format!("{}?lang=en", report("postmortem.md")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("Root cause analysis")
    );
    for (path, status, field) in [
        (report("nonsense.md"), StatusCode::NOT_FOUND, None),
        (report("postmortem.docx"), StatusCode::NOT_FOUND, None),
        (report("postmortem"), StatusCode::NOT_FOUND, None),
        (
            format!("{}?pattern=bogus", report("shimatsusho.md")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("pattern"),
        ),
        (
            format!("{}?lang=fr", report("postmortem.md")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lang"),
        ),
        (
            format!("{}?evil=1", report("postmortem.md")),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "/api/v1/incidents/NOPE-1/reports/postmortem.md".to_string(),
            StatusCode::NOT_FOUND,
            None,
        ),
    ] {
        let (s, e) = t.get(&t.viewer, &path).await;
        assert_eq!(s, status, "{path}: {e}");
        assert!(e["code"].is_string(), "{path}: {e}");
        if field.is_some() {
            assert_eq!(e["field"].as_str(), field, "{path}");
        }
    }
    let (s, _, _) = raw(&t, None, &report("postmortem.md")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    pdf_shows_every_section(
        &t,
        &report("db-incident.pdf"),
        &[
            "データベースインシデントレポート",
            "エグゼクティブサマリー",
            "インシデント詳細",
            "タイムライン",
            "根本原因分析",
            "影響分析",
            "対応内容",
            "再発防止策",
            "学んだ教訓",
            "アクションアイテム",
            "承認",
            "WHERE句必須Lint",
        ],
    )
    .await;
    pdf_shows_every_section(
        &t,
        &report("shimatsusho.pdf"),
        &[
            "データ消失インシデント始末書",
            "発生日時",
            "発生場所",
            "インシデント概要",
            "影響範囲",
            "復元時点",
            "発見経緯",
            "原因",
            "対応措置",
            "再発防止策",
            "承認",
            "令和",
        ],
    )
    .await;
    // The frozen version renders as approved, with its hash; an unknown one is 404.
    let (s, _, body) = raw(
        &t,
        Some(&t.viewer),
        &format!("{}?version=2", report("postmortem.md")),
    )
    .await;
    let frozen = String::from_utf8(body).unwrap();
    assert_eq!(s, StatusCode::OK, "{frozen}");
    assert!(
        frozen.contains(&hash) && frozen.contains("確定"),
        "{frozen}"
    );
    let (s, e) = t
        .get(&t.viewer, &format!("{}?version=3", report("postmortem.md")))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    // --- Communications.
    let comms = format!("/api/v1/incidents/{no}/communications");
    let (s, preview) = t
        .post(
            &t.viewer,
            &comms,
            json!({ "kind": "p0_notice", "send": false, "eta": "30分" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{preview}");
    assert!(preview["subject"].as_str().unwrap().starts_with("[P1] "));
    assert!(
        preview["body"]
            .as_str()
            .unwrap()
            .contains("推定復旧時間: 30分")
    );
    let (s, _) = t
        .post(&t.viewer, &comms, json!({ "kind": "p0_notice" }))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = t
        .post(&t.admin, &comms, json!({ "kind": "recovery_notice" }))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_resolved"))
    );
    let (s, _) = t.post(&t.admin, &comms, json!({ "kind": "rumour" })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = t
        .post(
            &t.admin,
            &format!("/api/v1/incidents/{no}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, sent) = t
        .post(&t.admin, &comms, json!({ "kind": "recovery_notice" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sent}");
    assert!(
        sent["body"]
            .as_str()
            .unwrap()
            .contains("再発防止策: WHERE句必須Lint")
    );
    let (_, timeline) = t
        .get(&t.admin, &format!("/api/v1/incidents/{no}/timeline"))
        .await;
    assert!(
        timeline["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "communication")
    );
    let outbox = t.store.store.outbox(1_000).await.unwrap();
    assert!(outbox.iter().any(|m| m.topic == "incident.communication"));

    // --- Metrics.
    let period = format!(
        "from={}&to={}",
        urlencode(&ago(30)),
        urlencode(&(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string())
    );
    let (s, m) = t
        .get(&t.viewer, &format!("/api/v1/metrics?{period}&bucket=day"))
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["incident_count"], 2);
    assert_eq!(m["by_category"]["database"], 1);
    assert_eq!(m["time_to_resolve"]["sample_count"], 1);
    assert_eq!(m["overdue_action_items"], 1);
    let (s, kind, csv) = raw(
        &t,
        Some(&t.viewer),
        &format!("/api/v1/metrics?{period}&format=csv"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.starts_with("text/csv"));
    assert!(
        String::from_utf8(csv)
            .unwrap()
            .starts_with("metric,dimension,key,value\r\n")
    );
    let (s, kind, svg) = raw(
        &t,
        Some(&t.viewer),
        &format!("/api/v1/metrics?{period}&format=svg&lang=en"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(kind.starts_with("image/svg+xml"));
    assert!(String::from_utf8(svg).unwrap().starts_with("<svg"));
    for (q, field) in [
        ("to=2026-01-01T00:00:00Z", "from"),
        ("from=yesterday&to=2026-01-01T00:00:00Z", "from"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        (
            "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&format=xls",
            "format",
        ),
        (
            "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&bucket=hour",
            "bucket",
        ),
    ] {
        let (s, e) = t.get(&t.viewer, &format!("/api/v1/metrics?{q}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {e}");
        assert_eq!(e["field"], field, "{q}");
    }
    let (s, _, _) = raw(&t, None, &format!("/api/v1/metrics?{period}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // --- The binary's client writes the file.
    let out = std::env::temp_dir().join(format!("kiroku-report-{}.md", uuid::Uuid::now_v7()));
    let output = out.to_str().unwrap().to_string();
    let ran = cli(
        &t,
        &[
            "report",
            &no,
            "--kind",
            "db-incident",
            "--format",
            "md",
            "-o",
            &output,
        ],
    )
    .await;
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("データベースインシデントレポート")
    );
    let _ = std::fs::remove_file(&out);
    let ran = cli(&t, &["report", "NOPE-1", "--kind", "postmortem"]).await;
    assert!(!ran.status.success());
    assert!(String::from_utf8_lossy(&ran.stderr).contains("not found"));
    let ran = cli(&t, &["report", &no, "--kind", "memo"]).await;
    assert!(!ran.status.success());
    assert!(String::from_utf8_lossy(&ran.stderr).contains("shimatsusho"));

    t.assert_audit_verifies().await;
}

/// The real binary as the viewer's API client, off the runtime that serves it.
async fn cli(t: &TestApp, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (server, token) = (t.url(""), t.viewer.token.clone());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kiroku(
            &args,
            &[("KIROKU_SERVER", &server), ("KIROKU_TOKEN", &token)],
            None,
        )
    })
    .await
    .unwrap()
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// The PDF carries its text: pdftotext finds every section of the report.
async fn pdf_shows_every_section(t: &TestApp, path: &str, sections: &[&str]) {
    let (s, kind, pdf) = raw(t, Some(&t.viewer), path).await;
    if s == StatusCode::SERVICE_UNAVAILABLE {
        println!(
            "SKIP: PDF reports: no Japanese font on this machine (install fonts-ipaexfont-gothic)"
        );
        return;
    }
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&pdf));
    assert_eq!(kind, "application/pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let file = std::env::temp_dir().join(format!("kiroku-report-{}.pdf", uuid::Uuid::now_v7()));
    std::fs::write(&file, &pdf).unwrap();
    let text = std::process::Command::new("pdftotext")
        .args([file.to_str().unwrap(), "-"])
        .output();
    let _ = std::fs::remove_file(&file);
    let Ok(text) = text else {
        println!("SKIP: PDF text check: pdftotext is not installed (Debian package poppler-utils)");
        return;
    };
    let text = String::from_utf8_lossy(&text.stdout);
    for section in sections {
        assert!(text.contains(section), "the PDF lacks {section}:\n{text}");
    }
}

#[tokio::test]
async fn reports_on_sqlite() {
    reports_story(support::sqlite().await).await;
}

#[tokio::test]
async fn reports_on_postgres() {
    let Some(store) = support::postgres().await else {
        println!("SKIP: reports_on_postgres: KIROKU_TEST_DATABASE_URL is not set");
        return;
    };
    reports_story(store).await;
}
