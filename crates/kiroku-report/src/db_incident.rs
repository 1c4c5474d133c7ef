//! The database incident report (seed 003, DB-2025-001), sections 1–10.

use kiroku_domain::postmortem::{Phase, Symptom, Term};

use crate::document::{Block, Document, Lang};
use crate::input::{
    Gravity, ReportInput, fields, heading, list_or_unwritten, or_unwritten, paragraph,
    status_label, unwritten,
};

const JA: Lang = Lang::Ja;

fn count(n: Option<i64>) -> String {
    n.map_or_else(|| unwritten(JA).to_string(), |n| n.to_string())
}

pub fn build(r: &ReportInput<'_>) -> Document {
    let r = &ReportInput {
        western_dates: true,
        ..r.clone()
    };
    let i = r.incident;
    let pm = r.postmortem;
    let gravity = match r.gravity {
        Gravity::Critical => "🔴 Critical",
        Gravity::Major => "🟡 Major",
        Gravity::Minor => "🟢 Minor",
    };
    let mut b = vec![
        fields(vec![
            ("インシデント番号", i.number.clone()),
            ("発生日時", r.datetime(r.started_at(), JA)),
            ("報告者", or_unwritten(&r.reporter(), JA)),
            ("重要度", format!("{gravity}（{}）", i.severity)),
        ]),
        heading(1, "1. エグゼクティブサマリー"),
        paragraph(or_unwritten(r.summary(), JA)),
        heading(1, "2. インシデント詳細"),
        heading(2, "2.1 発生状況"),
        fields(vec![
            ("検知時刻", r.datetime(i.times.detected_at, JA)),
            ("検知方法", or_unwritten(&pm.detection, JA)),
            ("影響環境", or_unwritten(&i.environment, JA)),
            (
                "影響を受けたテーブル",
                or_unwritten(&i.impact.tables_affected.join("、"), JA),
            ),
            ("影響を受けたレコード数", count(i.impact.records_affected)),
            ("影響を受けたユーザー数", count(i.impact.users_affected)),
        ]),
        heading(2, "2.2 症状"),
        Block::Checklist {
            items: Symptom::ALL
                .iter()
                .map(|s| (pm.symptoms.contains(s), s.label_ja().to_string()))
                .chain(std::iter::once((
                    !pm.other_symptom.is_empty(),
                    format!("その他: {}", pm.other_symptom),
                )))
                .collect(),
        },
        heading(1, "3. タイムライン"),
        r.timeline_table(JA),
        heading(1, "4. 根本原因分析（RCA）"),
        heading(2, "4.1 直接原因"),
    ];
    b.push(if pm.direct_cause.trim().is_empty() {
        paragraph(unwritten(JA))
    } else {
        Block::Code {
            text: pm.direct_cause.clone(),
        }
    });
    b.push(heading(2, "4.2 根本原因"));
    b.push(list_or_unwritten(
        pm.root_causes
            .iter()
            .map(|c| format!("{}: {}", c.kind.label_ja(), c.text))
            .collect(),
        true,
        JA,
    ));
    b.push(heading(2, "4.3 寄与要因"));
    b.push(list_or_unwritten(
        pm.contributing_factors.clone(),
        false,
        JA,
    ));
    if !pm.five_whys.is_empty() {
        b.push(heading(2, "4.4 なぜなぜ分析"));
        b.push(Block::List {
            ordered: true,
            items: pm.five_whys.clone(),
        });
    }
    b.push(heading(1, "5. 影響分析"));
    b.push(heading(2, "5.1 ビジネスへの影響"));
    b.push(fields(vec![
        (
            "サービス停止時間",
            r.duration(JA).unwrap_or_else(|| unwritten(JA).into()),
        ),
        ("影響を受けたユーザー数", count(i.impact.users_affected)),
        ("金銭的損失", or_unwritten(&pm.financial_loss, JA)),
        ("評判への影響", or_unwritten(&pm.reputation, JA)),
        ("データ損失", or_unwritten(&pm.data_loss, JA)),
        ("業務影響", or_unwritten(&i.impact.business_impact, JA)),
    ]));
    b.push(heading(2, "5.2 技術的影響"));
    b.push(list_or_unwritten(pm.technical_impact.clone(), false, JA));
    b.push(heading(1, "6. 対応内容"));
    for (phase, title) in [
        (Phase::Immediate, "6.1 即時対応"),
        (Phase::Recovery, "6.2 復旧作業"),
        (Phase::Verification, "6.3 検証作業"),
    ] {
        b.push(heading(2, title));
        b.push(list_or_unwritten(
            pm.responses
                .iter()
                .filter(|a| a.phase == phase)
                .map(|a| format!("{}（{}）", a.text, status_label(a.status, JA)))
                .collect(),
            true,
            JA,
        ));
    }
    b.push(heading(1, "7. 再発防止策"));
    for (term, title) in Term::ALL.into_iter().zip([
        "7.1 短期対策（1週間以内）",
        "7.2 中期対策（1ヶ月以内）",
        "7.3 長期対策（3ヶ月以内）",
    ]) {
        b.push(heading(2, title));
        let items: Vec<(bool, String)> = pm
            .measures
            .iter()
            .filter(|m| m.term == term)
            .map(|m| m.status == kiroku_domain::postmortem::ItemStatus::Done)
            .zip(r.measure_lines(Some(term), JA))
            .collect();
        b.push(if items.is_empty() {
            paragraph(unwritten(JA))
        } else {
            Block::Checklist { items }
        });
    }
    b.push(heading(1, "8. 学んだ教訓"));
    for (title, items) in [
        ("Good（うまくいったこと）", &pm.lessons.good),
        ("Bad（改善が必要なこと）", &pm.lessons.bad),
        ("Try（次回試すこと）", &pm.lessons.try_next),
    ] {
        b.push(heading(3, title));
        b.push(list_or_unwritten(items.clone(), false, JA));
    }
    b.push(heading(1, "9. アクションアイテム"));
    b.push(r.action_item_table(JA));
    b.push(heading(1, "10. 承認"));
    b.push(r.approval_table(JA));
    if let Some(table) = r.obligation_table(JA) {
        b.push(heading(1, "付記: 届出・通知義務"));
        b.push(table);
    }
    if !pm.appendix.is_empty() {
        b.push(heading(1, "付録"));
        b.push(Block::List {
            ordered: false,
            items: pm.appendix.clone(),
        });
    }
    b.extend(r.provenance(JA));
    Document {
        lang: JA,
        title: "データベースインシデントレポート".into(),
        blocks: b,
    }
}
