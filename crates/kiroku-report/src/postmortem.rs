//! The postmortem, in Japanese or English: what happened, why, what it
//! cost, what was done, and what will keep it from happening again.

use kiroku_domain::postmortem::{Phase, Term};

use crate::document::{Document, Lang};
use crate::input::{
    ReportInput, fields, heading, list_or_unwritten, or_unwritten, paragraph, status_label,
    unwritten,
};

/// The labels of one language.
struct Words {
    title: &'static str,
    number: &'static str,
    category: &'static str,
    severity: &'static str,
    status: &'static str,
    began: &'static str,
    detected: &'static str,
    acknowledged: &'static str,
    resolved: &'static str,
    summary: &'static str,
    timeline: &'static str,
    impact: &'static str,
    users: &'static str,
    records: &'static str,
    downtime: &'static str,
    data_loss: &'static str,
    business: &'static str,
    analysis: &'static str,
    direct: &'static str,
    root: &'static str,
    contributing: &'static str,
    whys: &'static str,
    response: &'static str,
    phases: [&'static str; 3],
    prevention: &'static str,
    terms: [&'static str; 3],
    lessons: &'static str,
    kpt: [&'static str; 3],
    actions: &'static str,
    duties: &'static str,
    approvals: &'static str,
}

const JA: Words = Words {
    title: "ポストモーテム",
    number: "インシデント番号",
    category: "カテゴリ",
    severity: "重要度",
    status: "状態",
    began: "発生",
    detected: "検知",
    acknowledged: "初動",
    resolved: "復旧",
    summary: "概要",
    timeline: "タイムライン",
    impact: "影響分析",
    users: "影響ユーザー数",
    records: "影響レコード数",
    downtime: "ダウンタイム",
    data_loss: "データ損失",
    business: "ビジネス影響",
    analysis: "原因分析",
    direct: "直接原因",
    root: "根本原因",
    contributing: "寄与要因",
    whys: "なぜなぜ分析",
    response: "対応内容",
    phases: ["即時対応", "復旧作業", "検証作業"],
    prevention: "再発防止策",
    terms: ["短期", "中期", "長期"],
    lessons: "学んだ教訓（KPT）",
    kpt: ["Good", "Bad", "Try"],
    actions: "アクションアイテム",
    duties: "届出・通知義務",
    approvals: "承認",
};

const EN: Words = Words {
    title: "Postmortem",
    number: "Incident",
    category: "Category",
    severity: "Severity",
    status: "Status",
    began: "Began",
    detected: "Detected",
    acknowledged: "Acknowledged",
    resolved: "Resolved",
    summary: "Summary",
    timeline: "Timeline",
    impact: "Impact",
    users: "Users affected",
    records: "Records affected",
    downtime: "Downtime",
    data_loss: "Data loss",
    business: "Business impact",
    analysis: "Root cause analysis",
    direct: "Direct cause",
    root: "Root causes",
    contributing: "Contributing factors",
    whys: "Five whys",
    response: "Response",
    phases: ["Immediate", "Recovery", "Verification"],
    prevention: "Prevention",
    terms: ["Short term", "Mid term", "Long term"],
    lessons: "Lessons (Keep / Problem / Try)",
    kpt: ["Good", "Bad", "Try"],
    actions: "Action items",
    duties: "Notification duties",
    approvals: "Approvals",
};

pub fn build(r: &ReportInput<'_>, lang: Lang) -> Document {
    let w = match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    };
    let i = r.incident;
    let pm = r.postmortem;
    let at = |t: Option<jiff::Timestamp>| {
        t.map_or_else(|| unwritten(lang).to_string(), |t| r.datetime(t, lang))
    };
    let count = |n: Option<i64>| n.map_or_else(|| unwritten(lang).to_string(), |n| n.to_string());
    let category = match lang {
        Lang::Ja => r.category_ja,
        Lang::En => r.category_en,
    };
    let mut b = vec![
        fields(vec![
            (w.number, i.number.clone()),
            (w.category, category.to_string()),
            (w.severity, i.severity.clone()),
            (w.status, i.status.as_str().to_string()),
            (w.began, at(Some(r.started_at()))),
            (w.detected, at(Some(i.times.detected_at))),
            (w.acknowledged, at(i.times.acknowledged_at)),
            (w.resolved, at(i.times.resolved_at)),
        ]),
        heading(1, w.summary),
        paragraph(or_unwritten(r.summary(), lang)),
        heading(1, w.timeline),
        r.timeline_table(lang),
        heading(1, w.impact),
        fields(vec![
            (w.users, count(i.impact.users_affected)),
            (w.records, count(i.impact.records_affected)),
            (
                w.downtime,
                r.duration(lang).unwrap_or_else(|| unwritten(lang).into()),
            ),
            (w.data_loss, or_unwritten(&pm.data_loss, lang)),
            (w.business, or_unwritten(&i.impact.business_impact, lang)),
        ]),
        heading(1, w.analysis),
        heading(2, w.direct),
        paragraph(or_unwritten(&pm.direct_cause, lang)),
        heading(2, w.root),
        list_or_unwritten(
            pm.root_causes
                .iter()
                .map(|c| {
                    let kind = match lang {
                        Lang::Ja => c.kind.label_ja(),
                        Lang::En => c.kind.label_en(),
                    };
                    format!("{kind}: {}", c.text)
                })
                .collect(),
            true,
            lang,
        ),
        heading(2, w.contributing),
        list_or_unwritten(pm.contributing_factors.clone(), false, lang),
        heading(2, w.whys),
        list_or_unwritten(pm.five_whys.clone(), true, lang),
        heading(1, w.response),
    ];
    for (phase, title) in [Phase::Immediate, Phase::Recovery, Phase::Verification]
        .into_iter()
        .zip(w.phases)
    {
        let items: Vec<String> = pm
            .responses
            .iter()
            .filter(|a| a.phase == phase)
            .map(|a| format!("{} ({})", a.text, status_label(a.status, lang)))
            .collect();
        if !items.is_empty() {
            b.push(heading(2, title));
            b.push(list_or_unwritten(items, true, lang));
        }
    }
    if pm.responses.is_empty() {
        b.push(paragraph(unwritten(lang)));
    }
    b.push(heading(1, w.prevention));
    for (term, title) in Term::ALL.into_iter().zip(w.terms) {
        b.push(heading(2, title));
        b.push(list_or_unwritten(
            r.measure_lines(Some(term), lang),
            true,
            lang,
        ));
    }
    b.push(heading(1, w.lessons));
    for (title, items) in
        w.kpt
            .into_iter()
            .zip([&pm.lessons.good, &pm.lessons.bad, &pm.lessons.try_next])
    {
        b.push(heading(3, title));
        b.push(list_or_unwritten(items.clone(), false, lang));
    }
    b.push(heading(1, w.actions));
    b.push(r.action_item_table(lang));
    if let Some(table) = r.obligation_table(lang) {
        b.push(heading(1, w.duties));
        b.push(table);
    }
    b.push(heading(1, w.approvals));
    b.push(r.approval_table(lang));
    b.extend(r.provenance(lang));
    Document {
        lang,
        title: format!("{}: {} {}", w.title, i.number, i.title),
        blocks: b,
    }
}
