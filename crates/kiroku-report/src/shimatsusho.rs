//! The 始末書 (seed 000): the internal apology-and-account report, in the
//! pattern of the incident's kind, each with the sections its pattern adds.

use crate::document::{Block, Document, Lang};
use crate::input::{
    Pattern, ReportInput, fields, heading, list_or_unwritten, minutes_text, or_unwritten,
    paragraph, status_label, unwritten,
};

const JA: Lang = Lang::Ja;

fn title(p: Pattern) -> &'static str {
    match p {
        Pattern::InformationLeak => "情報漏洩インシデント始末書",
        Pattern::ServerFailure => "本番サーバ障害始末書",
        Pattern::DataLoss => "データ消失インシデント始末書",
        Pattern::UnauthorizedAccess => "不正アクセスインシデント始末書",
        Pattern::ServiceOutage => "サービス停止インシデント始末書",
    }
}

/// 令和7年6月11日 14時00分頃（JST）, and for outages the recovery and how
/// long it lasted.
fn when(r: &ReportInput<'_>, p: Pattern) -> String {
    let zone = r.zone.iana_name().map_or(String::new(), |name| match name {
        "Asia/Tokyo" => "（JST）".to_string(),
        other => format!("（{other}）"),
    });
    let start = format!("{}頃{zone}", r.datetime(r.started_at(), JA));
    if !matches!(p, Pattern::ServerFailure | Pattern::ServiceOutage) {
        return start;
    }
    let label = if p == Pattern::ServiceOutage {
        "停止時間"
    } else {
        "ダウンタイム"
    };
    let end = r
        .incident
        .times
        .resolved_at
        .map_or_else(|| unwritten(JA).to_string(), |at| r.datetime(at, JA));
    let length = r.duration(JA).unwrap_or_else(|| unwritten(JA).into());
    format!("{start}〜{end}（復旧）／{label} {length}")
}

fn place(r: &ReportInput<'_>) -> String {
    let i = r.incident;
    let mut out = match (i.environment.is_empty(), i.location.is_empty()) {
        (false, false) => format!("{}（{}）", i.environment, i.location),
        (false, true) => i.environment.clone(),
        (true, false) => i.location.clone(),
        (true, true) => unwritten(JA).to_string(),
    };
    if !i.affected_services.is_empty() {
        out.push_str(&format!(
            " / 該当サービス：{}",
            i.affected_services.join("、")
        ));
    }
    out
}

/// 約1200名 / 未記入: the unit only with a number.
fn count(n: Option<i64>, unit: &str) -> String {
    n.map_or_else(|| unwritten(JA).to_string(), |n| format!("約{n}{unit}"))
}

/// The sections only some patterns have.
fn pattern_sections(r: &ReportInput<'_>, p: Pattern, out: &mut Vec<Block>) {
    let i = r.incident;
    let pm = r.postmortem;
    match p {
        Pattern::InformationLeak => {
            let pd = &i.personal_data;
            let items = if pd.items.is_empty() {
                unwritten(JA).to_string()
            } else {
                pd.items.join("・")
            };
            out.push(heading(1, "漏洩件数・対象範囲"));
            out.push(fields(vec![
                ("対象人数", count(pd.people_affected, "名分")),
                ("レコード数", count(i.impact.records_affected, "件")),
                ("対象項目", items),
                ("要配慮個人情報", yes_no(pd.sensitive)),
                ("財産的被害のおそれ", yes_no(pd.financial_risk)),
                ("不正の目的のおそれ", yes_no(pd.malicious_intent)),
            ]));
        }
        Pattern::ServerFailure => {
            out.push(heading(1, "影響範囲"));
            out.push(fields(vec![
                ("影響ユーザー数", count(i.impact.users_affected, "名")),
                ("影響内容", or_unwritten(&i.impact.business_impact, JA)),
                ("SLO", or_unwritten(&pm.slo, JA)),
            ]));
        }
        Pattern::DataLoss => {
            out.push(heading(1, "影響範囲"));
            out.push(fields(vec![
                ("消失レコード数", count(i.impact.records_affected, "件")),
                ("影響ユーザー数", count(i.impact.users_affected, "名")),
                (
                    "影響テーブル",
                    or_unwritten(&i.impact.tables_affected.join("、"), JA),
                ),
                ("影響内容", or_unwritten(&i.impact.business_impact, JA)),
                ("復元時点", or_unwritten(&pm.restore_point, JA)),
            ]));
        }
        Pattern::UnauthorizedAccess => {
            out.push(heading(1, "影響範囲"));
            out.push(paragraph(or_unwritten(&i.impact.business_impact, JA)));
        }
        Pattern::ServiceOutage => {
            let minutes = i.impact.downtime_minutes.or_else(|| {
                i.times
                    .resolved_at
                    .map(|end| end.duration_since(r.started_at()).as_mins().max(0))
            });
            out.push(heading(1, "影響範囲"));
            out.push(fields(vec![
                ("影響ユーザー数", count(i.impact.users_affected, "名")),
                ("影響内容", or_unwritten(&i.impact.business_impact, JA)),
                (
                    "停止時間",
                    minutes.map_or_else(|| unwritten(JA).into(), |m| minutes_text(m, JA)),
                ),
                (
                    "SLA",
                    if i.impact.sla_breached {
                        "違反あり".into()
                    } else {
                        "違反なし".into()
                    },
                ),
            ]));
        }
    }
}

fn yes_no(b: bool) -> String {
    if b { "あり" } else { "なし" }.into()
}

/// The 始末書 of `pattern` for the incident.
pub fn build(r: &ReportInput<'_>, pattern: Pattern) -> Document {
    let i = r.incident;
    let pm = r.postmortem;
    let mut b = vec![
        fields(vec![
            ("インシデント番号", i.number.clone()),
            ("提出日", r.date(r.issued_at, JA)),
            (
                "提出者",
                format!(
                    "所属 {}／氏名 {}",
                    or_unwritten(&pm.affiliation, JA),
                    or_unwritten(&r.reporter(), JA)
                ),
            ),
            ("宛先", r.addressees()),
        ]),
        paragraph(
            "下記のインシデントを発生させたことにつき、深くお詫び申し上げます。経緯・原因・対応・再発防止策について、以下のとおりご報告いたします。",
        ),
        heading(1, "発生日時"),
        paragraph(when(r, pattern)),
        heading(1, "発生場所"),
        paragraph(place(r)),
        heading(1, "インシデント概要"),
        paragraph(or_unwritten(r.summary(), JA)),
    ];
    pattern_sections(r, pattern, &mut b);
    b.push(heading(1, "発見経緯"));
    b.push(paragraph(format!(
        "{}（検知：{}）",
        or_unwritten(&pm.detection, JA),
        r.datetime(i.times.detected_at, JA)
    )));
    b.push(heading(1, "原因"));
    let causes: Vec<String> = (!pm.direct_cause.trim().is_empty())
        .then(|| format!("直接原因：{}", pm.direct_cause))
        .into_iter()
        .chain(
            pm.root_causes
                .iter()
                .map(|c| format!("{}：{}", c.kind.label_ja(), c.text)),
        )
        .chain(
            pm.contributing_factors
                .iter()
                .map(|c| format!("寄与要因：{c}")),
        )
        .collect();
    b.push(list_or_unwritten(causes, true, JA));
    if matches!(
        pattern,
        Pattern::InformationLeak | Pattern::UnauthorizedAccess
    ) {
        b.push(heading(1, "被害状況"));
        b.push(paragraph(or_unwritten(&pm.damage, JA)));
    }
    b.push(heading(1, "対応措置"));
    b.push(list_or_unwritten(
        pm.responses
            .iter()
            .map(|a| format!("{}（{}）", a.text, status_label(a.status, JA)))
            .collect(),
        true,
        JA,
    ));
    b.push(heading(1, "再発防止策"));
    b.push(list_or_unwritten(r.measure_lines(None, JA), true, JA));
    if let Some(table) = r.obligation_table(JA) {
        b.push(heading(1, "届出・通知義務"));
        b.push(table);
    }
    b.push(paragraph(
        "今後このような事態を繰り返さぬよう、再発防止策を着実に実行し、信頼回復に努めます。",
    ));
    b.push(heading(1, "承認"));
    b.push(r.approval_table(JA));
    b.extend(r.provenance(JA));
    Document {
        lang: JA,
        title: title(pattern).into(),
        blocks: b,
    }
}
