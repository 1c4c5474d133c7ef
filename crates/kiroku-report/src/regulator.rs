//! Drafts of what regulators are sent: the report to the 個人情報保護委員会
//! with the nine items of 施行規則 8条1項, and the GDPR Art. 33
//! notification with the contents Art. 33(3) asks for — both filled from
//! the incident, for people to check and file.

use crate::document::{Block, Document, Lang};
use crate::input::{
    ReportInput, fields, heading, list_or_unwritten, or_unwritten, paragraph, status_label,
    unwritten,
};

fn yes_no_ja(b: bool) -> String {
    if b { "該当" } else { "非該当" }.into()
}

fn status_of<'a>(r: &'a ReportInput<'_>, key: &str) -> Option<&'a str> {
    r.obligations
        .iter()
        .find(|o| o.key == key)
        .map(|o| o.status.as_str())
}

fn causes(r: &ReportInput<'_>, lang: Lang) -> Vec<String> {
    let pm = r.postmortem;
    (!pm.direct_cause.trim().is_empty())
        .then(|| pm.direct_cause.clone())
        .into_iter()
        .chain(pm.root_causes.iter().map(|c| {
            let kind = match lang {
                Lang::Ja => c.kind.label_ja(),
                Lang::En => c.kind.label_en(),
            };
            format!("{kind}: {}", c.text)
        }))
        .chain(pm.contributing_factors.iter().cloned())
        .collect()
}

fn actions(r: &ReportInput<'_>, lang: Lang) -> Vec<String> {
    r.postmortem
        .responses
        .iter()
        .map(|a| format!("{} ({})", a.text, status_label(a.status, lang)))
        .collect()
}

/// 漏えい等報告 to the 個人情報保護委員会: a 速報 until the preliminary
/// report is submitted, then a 確報.
pub fn appi(r: &ReportInput<'_>) -> Document {
    const JA: Lang = Lang::Ja;
    let i = r.incident;
    let pd = &i.personal_data;
    let pm = r.postmortem;
    let stage = if status_of(r, "appi_preliminary") == Some("submitted") {
        "確報"
    } else {
        "速報"
    };
    let people = pd
        .people_affected
        .map_or_else(|| unwritten(JA).to_string(), |n| format!("{n}人"));
    let individuals = {
        let done = status_of(r, "appi_individuals").map(|s| match s {
            "submitted" => "通知済み",
            "not_required" => "通知不要と判断",
            _ => "未通知",
        });
        match (pm.individuals_notice.trim().is_empty(), done) {
            (true, None) => unwritten(JA).to_string(),
            (true, Some(d)) => d.to_string(),
            (false, None) => pm.individuals_notice.clone(),
            (false, Some(d)) => format!("{}（{d}）", pm.individuals_notice),
        }
    };
    let mut b = vec![
        fields(vec![
            ("報告の種類", stage.to_string()),
            ("インシデント番号", i.number.clone()),
            ("作成日", r.date(r.issued_at, JA)),
            ("報告者", or_unwritten(&pm.affiliation, JA)),
        ]),
        paragraph(
            "個人情報の保護に関する法律第26条第1項及び同法施行規則第8条に基づき、下記のとおり報告します。",
        ),
        heading(1, "報告対象の該当性（施行規則第7条）"),
        fields(vec![
            ("要配慮個人情報", yes_no_ja(pd.sensitive)),
            ("財産的被害のおそれ", yes_no_ja(pd.financial_risk)),
            ("不正の目的によるおそれ", yes_no_ja(pd.malicious_intent)),
            (
                "1,000人を超える",
                yes_no_ja(pd.people_affected.is_some_and(|n| n > 1_000)),
            ),
        ]),
        heading(1, "1. 概要"),
        fields(vec![
            ("発生日時", r.datetime(r.started_at(), JA)),
            ("発覚日時", r.datetime(i.times.detected_at, JA)),
            ("発生場所", or_unwritten(&i.location, JA)),
        ]),
        paragraph(or_unwritten(r.summary(), JA)),
        heading(
            1,
            "2. 漏えい等が発生し、又は発生したおそれがある個人データの項目",
        ),
        list_or_unwritten(pd.items.clone(), false, JA),
        heading(
            1,
            "3. 漏えい等が発生し、又は発生したおそれがある個人データに係る本人の数",
        ),
        paragraph(people),
        heading(1, "4. 原因"),
        list_or_unwritten(causes(r, JA), true, JA),
        heading(1, "5. 二次被害又はそのおそれの有無及びその内容"),
        paragraph(or_unwritten(&pm.damage, JA)),
        heading(1, "6. 本人への対応の実施状況"),
        paragraph(individuals),
        heading(1, "7. 公表の実施状況"),
        paragraph(or_unwritten(&pm.publication, JA)),
        heading(1, "8. 再発防止のための措置"),
        list_or_unwritten(r.measure_lines(None, JA), true, JA),
        heading(1, "9. その他参考となる事項"),
    ];
    let mut other: Vec<String> = actions(r, JA)
        .into_iter()
        .map(|a| format!("対応: {a}"))
        .collect();
    other.extend(pm.appendix.iter().cloned());
    b.push(list_or_unwritten(other, false, JA));
    if let Some(table) = r.obligation_table(JA) {
        b.push(heading(1, "届出・通知義務の状況"));
        b.push(table);
    }
    b.extend(r.provenance(JA));
    Document {
        lang: JA,
        title: format!("個人データの漏えい等報告書（{stage}・案）"),
        blocks: b,
    }
}

/// The Art. 33 notification to the supervisory authority, with the
/// Art. 33(3) contents in their order.
pub fn gdpr(r: &ReportInput<'_>) -> Document {
    const EN: Lang = Lang::En;
    let i = r.incident;
    let pd = &i.personal_data;
    let pm = r.postmortem;
    let count = |n: Option<i64>| n.map_or_else(|| unwritten(EN).to_string(), |n| n.to_string());
    let mut consequences: Vec<String> = Vec::new();
    if !pm.damage.trim().is_empty() {
        consequences.push(pm.damage.clone());
    }
    for (holds, what) in [
        (pd.sensitive, "special categories of data are involved"),
        (
            pd.financial_risk,
            "risk of financial harm to the people affected",
        ),
        (
            pd.malicious_intent,
            "the breach may have been caused with malicious intent",
        ),
    ] {
        if holds {
            consequences.push(what.into());
        }
    }
    if !i.impact.business_impact.trim().is_empty() {
        consequences.push(i.impact.business_impact.clone());
    }
    let mut measures = actions(r, EN);
    measures.extend(r.measure_lines(None, EN));
    let late = r
        .obligations
        .iter()
        .find(|o| o.key == "gdpr_art33")
        .filter(|o| o.due_at < r.issued_at && o.status == "pending")
        .map(|_| {
            paragraph(format!(
                "Art. 33(1): this notification is made after 72 hours; the reasons for the delay: {}",
                unwritten(EN)
            ))
        });
    let mut b = vec![
        fields(vec![
            ("Incident", i.number.clone()),
            ("Prepared", r.date(r.issued_at, EN)),
            ("Became aware", r.datetime(i.times.detected_at, EN)),
            ("Began", r.datetime(r.started_at(), EN)),
        ]),
        heading(1, "(a) Nature of the personal data breach"),
        paragraph(or_unwritten(r.summary(), EN)),
        fields(vec![
            (
                "Categories of personal data",
                or_unwritten(&pd.items.join(", "), EN),
            ),
            (
                "Approximate number of data subjects",
                count(pd.people_affected),
            ),
            (
                "Approximate number of records",
                count(i.impact.records_affected),
            ),
        ]),
        heading(1, "(b) Contact point for more information"),
        paragraph(or_unwritten(r.contact, EN)),
        heading(1, "(c) Likely consequences"),
        list_or_unwritten(consequences, false, EN),
        heading(1, "(d) Measures taken or proposed, including mitigation"),
        list_or_unwritten(measures, true, EN),
        heading(1, "Cause"),
        list_or_unwritten(causes(r, EN), true, EN),
        heading(1, "Communication to the data subjects (Art. 34)"),
        paragraph(or_unwritten(&pm.individuals_notice, EN)),
    ];
    b.extend(late);
    if let Some(table) = r.obligation_table(EN) {
        b.push(heading(1, "Notification duties"));
        b.push(table);
    }
    b.push(Block::Rule);
    b.push(paragraph(
        "Draft prepared from the incident record; check every item before filing.",
    ));
    Document {
        lang: EN,
        title: format!(
            "Personal data breach notification (GDPR Art. 33): {}",
            i.number
        ),
        blocks: b,
    }
}
