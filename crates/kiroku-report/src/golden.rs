//! Golden reports: each kind built from an incident shaped like the seed
//! documents' examples, rendered to Markdown and compared with the
//! snapshot; and the same for incidents with nothing written and with
//! hostile text everywhere.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kiroku_domain::postmortem::{
    ActionItem, Approval, ApprovalChain, CauseKind, ItemStatus, Lessons, Measure, Phase,
    Postmortem, ResponseAction, RootCause, Stage, Symptom, Term, readiness,
};
use kiroku_domain::{
    Impact, Incident, Lifecycle, PersonalData, Status, TimelineEntry, TimelineKind, UserRef,
};
use serde_json::json;
use uuid::Uuid;

use crate::input::{Gravity, Kind, ObligationLine, Pattern, ReportInput};
use crate::{Lang, build, html, markdown};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn user(n: u128, name: &str) -> UserRef {
    UserRef {
        id: Uuid::from_u128(n),
        name: name.into(),
    }
}

fn incident(category: &str, number: &str, title: &str) -> Incident {
    Incident {
        id: Uuid::from_u128(1),
        number: number.into(),
        title: title.into(),
        summary: String::new(),
        category: category.into(),
        severity: "P0".into(),
        status: Status::Resolved,
        environment: "本番環境".into(),
        location: "AWS東京リージョン".into(),
        affected_services: vec!["api".into()],
        times: Lifecycle {
            occurred_at: Some(ts("2025-06-11T05:00:00Z")),
            detected_at: ts("2025-06-11T05:05:00Z"),
            acknowledged_at: Some(ts("2025-06-11T05:07:00Z")),
            response_started_at: Some(ts("2025-06-11T05:10:00Z")),
            mitigated_at: None,
            resolved_at: Some(ts("2025-06-11T05:30:00Z")),
            closed_at: None,
        },
        response_due_at: Some(ts("2025-06-11T05:10:00Z")),
        materiality_determined_at: None,
        impact: Impact::default(),
        personal_data: PersonalData::default(),
        commander: Some(user(2, "sato")),
        assignees: vec![],
        reporter: Some(user(3, "tanaka")),
        created_at: ts("2025-06-11T05:05:00Z"),
        updated_at: ts("2025-06-11T05:30:00Z"),
        version: 5,
    }
}

fn entry(at: &str, kind: TimelineKind, who: Option<&str>, body: &str, to: &str) -> TimelineEntry {
    TimelineEntry {
        id: Uuid::now_v7(),
        incident_id: Uuid::from_u128(1),
        at: ts(at),
        kind,
        actor: who.map(|w| user(9, w)),
        body: body.into(),
        data: if to.is_empty() {
            json!({})
        } else {
            json!({ "to": to })
        },
    }
}

fn timeline() -> Vec<TimelineEntry> {
    vec![
        entry(
            "2025-06-11T05:05:00Z",
            TimelineKind::Declared,
            Some("tanaka"),
            "全テーブルのデータ消失",
            "",
        ),
        entry(
            "2025-06-11T05:07:00Z",
            TimelineKind::StatusChanged,
            Some("sato"),
            "全テーブルのデータ消失を確認",
            "acknowledged",
        ),
        entry(
            "2025-06-11T05:10:00Z",
            TimelineKind::StatusChanged,
            Some("sato"),
            "バックアップからの復旧作業開始",
            "investigating",
        ),
        entry(
            "2025-06-11T05:30:00Z",
            TimelineKind::StatusChanged,
            Some("sato"),
            "データ復旧完了、動作確認OK",
            "resolved",
        ),
    ]
}

fn measure(term: Term, text: &str, due: &str) -> Measure {
    Measure {
        term,
        text: text.into(),
        owner: Some(user(2, "sato")),
        due: Some(due.parse().unwrap()),
        status: ItemStatus::NotStarted,
    }
}

fn postmortem() -> Postmortem {
    Postmortem {
        summary: String::new(),
        detection: "開発者による発見".into(),
        symptoms: vec![Symptom::CompleteDataLoss],
        direct_cause: "npx prisma migrate reset --skip-seed --force".into(),
        root_causes: vec![
            RootCause {
                kind: CauseKind::Process,
                text: "危険なコマンドの実行前確認プロセスが存在しなかった".into(),
            },
            RootCause {
                kind: CauseKind::Technical,
                text: "Prismaマイグレーションにlesson_sessionsテーブルが含まれていなかった".into(),
            },
        ],
        contributing_factors: vec!["開発環境でのバックアップが定期的に取られていなかった".into()],
        five_whys: vec!["なぜ消えたか: reset を実行したため".into()],
        data_loss: "全テーブル（復旧済み）".into(),
        financial_loss: "なし".into(),
        reputation: "なし".into(),
        technical_impact: vec!["開発作業の遅延: 2時間".into()],
        restore_point: "5分前時点（Point-in-Time-Recovery）".into(),
        slo: "99.95%目標に対し当月99.91%".into(),
        damage: "第三者の不正利用は確認されていない".into(),
        responses: vec![
            ResponseAction {
                phase: Phase::Immediate,
                text: "インシデントの影響範囲を確認".into(),
                status: ItemStatus::Done,
            },
            ResponseAction {
                phase: Phase::Recovery,
                text: "不足テーブル（lesson_sessions）の手動作成".into(),
                status: ItemStatus::Done,
            },
            ResponseAction {
                phase: Phase::Verification,
                text: "データ整合性チェック".into(),
                status: ItemStatus::InProgress,
            },
        ],
        measures: vec![
            measure(
                Term::Short,
                "危険なコマンドの実行前確認スクリプトを作成",
                "2025-06-18",
            ),
            measure(Term::Mid, "自動バックアップスクリプトの導入", "2025-07-11"),
            measure(Term::Long, "災害復旧訓練の定期実施", "2025-09-11"),
        ],
        lessons: Lessons {
            good: vec!["インシデントの早期発見".into()],
            bad: vec!["バックアップの不在".into()],
            try_next: vec!["定期的な復旧訓練".into()],
        },
        action_items: vec![ActionItem {
            id: Some(Uuid::from_u128(7)),
            title: "バックアップスクリプト作成".into(),
            owner: Some(user(2, "sato")),
            due: Some("2025-06-12".parse().unwrap()),
            status: ItemStatus::NotStarted,
        }],
        addressees: String::new(),
        affiliation: "SRE部".into(),
        appendix: vec!["ログファイル: /logs/incident/DB-2025-001/".into()],
        ..Postmortem::default()
    }
}

const ALL_KINDS: [Kind; 5] = [
    Kind::Shimatsusho,
    Kind::DbIncident,
    Kind::Postmortem,
    Kind::AppiReport,
    Kind::GdprNotification,
];

struct Fixture {
    incident: Incident,
    timeline: Vec<TimelineEntry>,
    postmortem: Postmortem,
    approvals: Vec<Approval>,
    obligations: Vec<ObligationLine>,
    chain: ApprovalChain,
}

impl Fixture {
    fn new(incident: Incident) -> Fixture {
        Fixture {
            incident,
            timeline: timeline(),
            postmortem: postmortem(),
            approvals: vec![Approval {
                step: "incident_manager".into(),
                approver: user(4, "yamada"),
                at: ts("2025-06-13T01:00:00Z"),
                comment: "確認しました".into(),
            }],
            obligations: Vec::new(),
            chain: ApprovalChain::default(),
        }
    }

    fn render(&self, kind: Kind, pattern: Option<Pattern>, lang: Lang) -> String {
        markdown::render(&self.document(kind, pattern, lang))
    }

    fn document(&self, kind: Kind, pattern: Option<Pattern>, lang: Lang) -> crate::Document {
        let zone = TimeZone::get("Asia/Tokyo").unwrap();
        let problems = readiness(&self.postmortem);
        let input = ReportInput {
            incident: &self.incident,
            category_ja: "データベース障害",
            category_en: "Database incident",
            gravity: Gravity::Critical,
            timeline: &self.timeline,
            postmortem: &self.postmortem,
            stage: Stage::InReview,
            version: 3,
            steps: self.chain.steps_for(&self.incident.category),
            approvals: &self.approvals,
            final_hash: None,
            problems: &problems,
            obligations: &self.obligations,
            zone: &zone,
            issued_at: ts("2025-06-13T03:00:00Z"),
            default_addressees: "代表取締役社長 殿／情報セキュリティ責任者（CISO） 殿",
            western_dates: false,
            contact: "",
        };
        build(kind, &input, pattern, lang)
    }
}

fn leak() -> Fixture {
    let mut i = incident(
        "information_leak",
        "LEAK-2025-001",
        "問い合わせフォームのPIIがDatadogに連携",
    );
    i.summary =
        "ログ出力設定の誤りにより、ユーザー入力情報が外部監視サービスに連携されていた。".into();
    i.personal_data = PersonalData {
        involved: true,
        items: vec![
            "氏名".into(),
            "メールアドレス".into(),
            "問い合わせ内容".into(),
        ],
        people_affected: Some(1200),
        sensitive: false,
        financial_risk: false,
        malicious_intent: false,
    };
    let mut f = Fixture::new(i);
    f.obligations = vec![ObligationLine {
        key: "appi_preliminary".into(),
        name_ja: "個人情報保護委員会への速報".into(),
        name_en: "APPI preliminary report".into(),
        due_at: ts("2025-06-14T05:05:00Z"),
        status: "submitted".into(),
    }];
    f
}

#[test]
fn each_shimatsusho_pattern() {
    let server = {
        let mut i = incident("server_failure", "SRV-2025-001", "RDS接続プール枯渇");
        i.impact = Impact {
            users_affected: Some(52000),
            business_impact: "全機能が応答不能".into(),
            ..Impact::default()
        };
        Fixture::new(i)
    };
    let loss = {
        let mut i = incident("data_loss", "LOSS-2025-001", "usersテーブルのレコード削除");
        i.impact = Impact {
            records_affected: Some(3400),
            users_affected: Some(3400),
            tables_affected: vec!["users".into()],
            ..Impact::default()
        };
        Fixture::new(i)
    };
    let access = {
        let mut i = incident(
            "unauthorized_access",
            "SEC-2025-001",
            "管理コンソールへのブルートフォース",
        );
        i.impact.business_impact = "なし（侵入未遂で阻止）".into();
        Fixture::new(i)
    };
    let outage = {
        let mut i = incident(
            "service_outage",
            "OUT-2025-001",
            "設定変更のデプロイで全停止",
        );
        i.impact = Impact {
            sla_breached: true,
            downtime_minutes: Some(25),
            ..Impact::default()
        };
        Fixture::new(i)
    };
    let leak = leak();
    for (name, f) in [
        ("information_leak", &leak),
        ("server_failure", &server),
        ("data_loss", &loss),
        ("unauthorized_access", &access),
        ("service_outage", &outage),
    ] {
        let md = f.render(Kind::Shimatsusho, None, Lang::Ja);
        insta::assert_snapshot!(format!("shimatsusho_{name}"), md);
    }
    // The pattern's own sections are there, and only there.
    let leak_md = leak.render(Kind::Shimatsusho, None, Lang::Ja);
    assert!(leak_md.contains("漏洩件数・対象範囲"));
    assert!(leak_md.contains("令和7年6月11日 14時00分頃（JST）"));
    assert!(
        server
            .render(Kind::Shimatsusho, None, Lang::Ja)
            .contains("ダウンタイム 30分")
    );
    assert!(
        loss.render(Kind::Shimatsusho, None, Lang::Ja)
            .contains("復元時点")
    );
    assert!(
        !loss
            .render(Kind::Shimatsusho, None, Lang::Ja)
            .contains("漏洩件数")
    );
    assert!(
        outage
            .render(Kind::Shimatsusho, None, Lang::Ja)
            .contains("停止時間 25分")
    );
    // A category outside the five takes the pattern asked for.
    let db = Fixture::new(incident("database", "DB-2025-001", "x"));
    assert!(
        db.render(Kind::Shimatsusho, Some(Pattern::InformationLeak), Lang::Ja)
            .contains("情報漏洩インシデント始末書")
    );
}

#[test]
fn db_incident_report_like_db_2025_001() {
    let mut i = incident(
        "database",
        "DB-2025-001",
        "prisma migrate reset による開発DBのデータ消失",
    );
    i.environment = "開発".into();
    i.summary = "開発環境で prisma migrate reset を実行し、全テーブルのデータが消失した。バックアップから30分で復旧した。".into();
    i.impact = Impact {
        users_affected: Some(0),
        tables_affected: vec!["lesson_sessions".into(), "users".into()],
        downtime_minutes: Some(30),
        ..Impact::default()
    };
    let f = Fixture::new(i);
    let md = f.render(Kind::DbIncident, None, Lang::Ja);
    let headings: Vec<String> = f
        .document(Kind::DbIncident, None, Lang::Ja)
        .blocks
        .into_iter()
        .filter_map(|b| match b {
            crate::Block::Heading { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    for section in [
        "1. エグゼクティブサマリー",
        "2. インシデント詳細",
        "3. タイムライン",
        "4. 根本原因分析（RCA）",
        "5. 影響分析",
        "6. 対応内容",
        "7. 再発防止策",
        "8. 学んだ教訓",
        "9. アクションアイテム",
        "10. 承認",
    ] {
        assert!(headings.iter().any(|h| h == section), "missing {section}");
    }
    // The timeline comes from the recorded events, in local time.
    assert!(md.contains("| 14:00 | インシデント発生"));
    assert!(md.contains("| 14:30 | 復旧完了 | sato |"));
    insta::assert_snapshot!("db_incident", md);
}

#[test]
fn postmortem_in_both_languages() {
    let f = leak();
    insta::assert_snapshot!("postmortem_ja", f.render(Kind::Postmortem, None, Lang::Ja));
    let en = f.render(Kind::Postmortem, None, Lang::En);
    assert!(en.contains("2025-06-11 14:00 JST"));
    insta::assert_snapshot!("postmortem_en", en);
}

#[test]
fn regulator_drafts_carry_every_item() {
    let mut f = leak();
    f.postmortem.individuals_notice = "対象者1,200名へメールで個別に連絡".into();
    f.postmortem.publication = "自社サイトにてお知らせを掲載".into();
    let appi = f.document(Kind::AppiReport, None, Lang::Ja);
    let headings: Vec<String> = appi
        .blocks
        .iter()
        .filter_map(|b| match b {
            crate::Block::Heading { level: 1, text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    for n in 1..=9 {
        assert!(
            headings.iter().any(|h| h.starts_with(&format!("{n}. "))),
            "item {n} missing: {headings:?}"
        );
    }
    // The preliminary report was submitted, so this is the final one.
    assert!(appi.title.contains("確報"), "{}", appi.title);
    let md = markdown::render(&appi);
    assert!(md.contains("1200人") && md.contains("氏名"), "{md}");
    insta::assert_snapshot!("appi_report", md);
    let gdpr = markdown::render(&f.document(Kind::GdprNotification, None, Lang::En));
    for item in ["(a) Nature", "(b) Contact", "(c) Likely", "(d) Measures"] {
        assert!(gdpr.contains(item), "{item} missing:\n{gdpr}");
    }
    insta::assert_snapshot!("gdpr_notification", gdpr);
}

#[test]
fn missing_data_shows_unwritten_never_blank() {
    let mut i = incident("data_loss", "LOSS-2025-002", "t");
    i.environment.clear();
    i.location.clear();
    i.affected_services.clear();
    i.times.occurred_at = None;
    i.times.resolved_at = None;
    i.reporter = None;
    let f = Fixture {
        timeline: Vec::new(),
        postmortem: Postmortem::default(),
        approvals: Vec::new(),
        ..Fixture::new(i)
    };
    for kind in ALL_KINDS {
        for lang in [Lang::Ja, Lang::En] {
            let md = f.render(kind, None, lang);
            let english =
                kind == Kind::GdprNotification || (kind == Kind::Postmortem && lang == Lang::En);
            let placeholder = if english { "Not recorded" } else { "未記入" };
            assert!(md.contains(placeholder), "{kind:?} {lang:?}:\n{md}");
        }
    }
    let md = f.render(Kind::Shimatsusho, None, Lang::Ja);
    // Not final: what is missing is listed with the 精神論不可 rule.
    assert!(md.contains("確定前の確認事項"));
    assert!(md.contains("measures_missing") || md.contains("prevention measure"));
}

#[test]
fn hostile_text_is_escaped_in_every_kind() {
    let evil = "<script>alert(1)</script>\n# 見出し\n| a | b |\n```\n[x](javascript:alert(1))";
    let mut i = incident("information_leak", "LEAK-2025-009", evil);
    i.summary = evil.into();
    i.location = evil.into();
    let mut f = Fixture::new(i);
    f.postmortem.direct_cause = evil.into();
    f.postmortem.measures[0].text = evil.into();
    f.postmortem.lessons.good = vec![evil.into()];
    f.timeline[0].body = evil.into();
    for kind in ALL_KINDS {
        // Inside a fenced code block text is shown as typed, which is safe.
        let md = outside_fences(&f.render(kind, None, Lang::Ja));
        assert!(!md.contains("<script>"), "{kind:?}");
        assert!(!md.contains("\n# 見出し"), "{kind:?}");
        assert!(!md.contains("[x](javascript"), "{kind:?}");
        let page = html::render(&f.document(kind, None, Lang::Ja));
        assert!(!page.contains("<script>"), "{kind:?}");
        assert!(page.contains("&lt;script&gt;"), "{kind:?}");
    }
}

/// The Markdown with its fenced code blocks left out.
fn outside_fences(md: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<&str> = None;
    for line in md.lines() {
        match fence {
            Some(f) if line == f => fence = None,
            Some(_) => {}
            None if line.starts_with("```") => fence = Some(line),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}
