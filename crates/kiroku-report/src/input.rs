//! What a report is built from, and the pieces every report kind shares:
//! dates in the reader's calendar, the placeholder for what nobody wrote,
//! and the timeline read from the recorded events.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use kiroku_domain::postmortem::{Approval, ApprovalStep, ItemStatus, Postmortem, Problem, Stage};
use kiroku_domain::wareki;
use kiroku_domain::{Incident, Status, TimelineEntry, TimelineKind};
use serde::Serialize;

use crate::document::{Block, Lang};

/// The report kinds, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The seed 000 始末書, in the pattern of the incident's category.
    Shimatsusho,
    /// The seed 003 database incident report.
    DbIncident,
    Postmortem,
    /// A draft of the report to the 個人情報保護委員会 (施行規則 8条1項's
    /// nine items).
    AppiReport,
    /// A draft of the GDPR Art. 33 notification, with the Art. 33(3) contents.
    GdprNotification,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "shimatsusho" => Some(Kind::Shimatsusho),
            "db-incident" => Some(Kind::DbIncident),
            "postmortem" => Some(Kind::Postmortem),
            "appi-report" => Some(Kind::AppiReport),
            "gdpr-notification" => Some(Kind::GdprNotification),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shimatsusho => "shimatsusho",
            Kind::DbIncident => "db-incident",
            Kind::Postmortem => "postmortem",
            Kind::AppiReport => "appi-report",
            Kind::GdprNotification => "gdpr-notification",
        }
    }
}

/// The five patterns of the 始末書 template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    InformationLeak,
    ServerFailure,
    DataLoss,
    UnauthorizedAccess,
    ServiceOutage,
}

impl Pattern {
    pub const ALL: [Pattern; 5] = [
        Pattern::InformationLeak,
        Pattern::ServerFailure,
        Pattern::DataLoss,
        Pattern::UnauthorizedAccess,
        Pattern::ServiceOutage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::InformationLeak => "information_leak",
            Pattern::ServerFailure => "server_failure",
            Pattern::DataLoss => "data_loss",
            Pattern::UnauthorizedAccess => "unauthorized_access",
            Pattern::ServiceOutage => "service_outage",
        }
    }

    pub fn parse(s: &str) -> Option<Pattern> {
        Pattern::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The pattern of a category: the template's five by their keys,
    /// database incidents as data loss, anything else as a server failure.
    pub fn of_category(key: &str) -> Pattern {
        match key {
            "database" => Pattern::DataLoss,
            other => Pattern::parse(other).unwrap_or(Pattern::ServerFailure),
        }
    }
}

/// A regulator's duty as a report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObligationLine {
    /// The rule's key, e.g. `appi_preliminary`.
    pub key: String,
    pub name_ja: String,
    pub name_en: String,
    pub due_at: Timestamp,
    /// pending / submitted / not_required.
    pub status: String,
}

/// How bad the DB incident report says it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gravity {
    Critical,
    Major,
    Minor,
}

/// Everything a report shows, read by the app before building.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    pub incident: &'a Incident,
    pub category_ja: &'a str,
    pub category_en: &'a str,
    pub gravity: Gravity,
    pub timeline: &'a [TimelineEntry],
    pub postmortem: &'a Postmortem,
    pub stage: Stage,
    /// The postmortem's version; 0 when none was written.
    pub version: i64,
    pub steps: Vec<&'a ApprovalStep>,
    pub approvals: &'a [Approval],
    /// The frozen version's SHA-256, once final.
    pub final_hash: Option<&'a str>,
    pub problems: &'a [Problem],
    pub obligations: &'a [ObligationLine],
    pub zone: &'a TimeZone,
    /// The day the report is issued (提出日).
    pub issued_at: Timestamp,
    /// 宛先 when the postmortem names none.
    pub default_addressees: &'a str,
    /// Dates as 2025-06-11 even in Japanese (the DB incident report's form).
    pub western_dates: bool,
    /// Who a regulator contacts (the data protection officer or the
    /// privacy desk), for the GDPR notification.
    pub contact: &'a str,
}

/// Shows what nobody wrote as 「未記入」, never as a blank.
pub(crate) fn or_unwritten(text: &str, lang: Lang) -> String {
    if text.trim().is_empty() {
        unwritten(lang).to_string()
    } else {
        text.to_string()
    }
}

pub(crate) fn unwritten(lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => "未記入",
        Lang::En => "Not recorded",
    }
}

/// A list block, or the placeholder when it is empty.
pub(crate) fn list_or_unwritten(items: Vec<String>, ordered: bool, lang: Lang) -> Block {
    if items.is_empty() {
        paragraph(unwritten(lang))
    } else {
        Block::List { ordered, items }
    }
}

pub(crate) fn heading(level: u8, text: impl Into<String>) -> Block {
    Block::Heading {
        level,
        text: text.into(),
    }
}

pub(crate) fn paragraph(text: impl Into<String>) -> Block {
    Block::Paragraph { text: text.into() }
}

pub(crate) fn fields(pairs: Vec<(&str, String)>) -> Block {
    Block::Fields {
        fields: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

impl ReportInput<'_> {
    /// When it happened: the occurrence if known, else the detection.
    pub(crate) fn started_at(&self) -> Timestamp {
        let t = &self.incident.times;
        t.occurred_at.unwrap_or(t.detected_at)
    }

    /// 令和7年11月21日 14時05分, or ISO-like for English and for dates the
    /// era calendar cannot show.
    pub(crate) fn datetime(&self, at: Timestamp, lang: Lang) -> String {
        let lang = if self.western_dates { Lang::En } else { lang };
        match lang {
            Lang::Ja => wareki::wareki_datetime(at, self.zone).unwrap_or_else(|| {
                self.zone
                    .to_datetime(at)
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            }),
            Lang::En => at
                .to_zoned(self.zone.clone())
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string(),
        }
    }

    pub(crate) fn date(&self, at: Timestamp, lang: Lang) -> String {
        self.civil_date(self.zone.to_datetime(at).date(), lang)
    }

    pub(crate) fn civil_date(&self, date: Date, lang: Lang) -> String {
        match (lang, wareki::era_date(date)) {
            (Lang::Ja, Some(era)) if !self.western_dates => era.to_string(),
            _ => date.to_string(),
        }
    }

    /// Hours and minutes: 25分 / 1時間05分; None without both ends.
    pub(crate) fn duration(&self, lang: Lang) -> Option<String> {
        let minutes = match self.incident.impact.downtime_minutes {
            Some(m) => m,
            None => {
                let end = self.incident.times.resolved_at?;
                end.duration_since(self.started_at()).as_mins().max(0)
            }
        };
        Some(minutes_text(minutes, lang))
    }

    pub(crate) fn addressees(&self) -> String {
        or_unwritten(
            if self.postmortem.addressees.is_empty() {
                self.default_addressees
            } else {
                &self.postmortem.addressees
            },
            Lang::Ja,
        )
    }

    pub(crate) fn summary(&self) -> &str {
        if self.postmortem.summary.trim().is_empty() {
            &self.incident.summary
        } else {
            &self.postmortem.summary
        }
    }

    pub(crate) fn reporter(&self) -> String {
        self.incident
            .reporter
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }

    /// The timeline table: time, event, who, detail — from the recorded
    /// entries, with the occurrence first when it came before detection.
    pub(crate) fn timeline_table(&self, lang: Lang) -> Block {
        let headers = match lang {
            Lang::Ja => ["時刻", "イベント", "担当者", "詳細"],
            Lang::En => ["Time", "Event", "By", "Detail"],
        };
        let same_day = self
            .timeline
            .first()
            .zip(self.timeline.last())
            .is_none_or(|(a, b)| {
                self.zone.to_datetime(a.at).date() == self.zone.to_datetime(b.at).date()
            });
        let time = |at: Timestamp| {
            let local = self.zone.to_datetime(at);
            if same_day {
                local.strftime("%H:%M").to_string()
            } else {
                local.strftime("%m/%d %H:%M").to_string()
            }
        };
        let mut rows = Vec::with_capacity(self.timeline.len() + 1);
        if let Some(occurred) = self.incident.times.occurred_at
            && occurred < self.incident.times.detected_at
        {
            rows.push(vec![
                time(occurred),
                match lang {
                    Lang::Ja => "インシデント発生".into(),
                    Lang::En => "Incident began".into(),
                },
                "-".into(),
                String::new(),
            ]);
        }
        for e in self.timeline {
            rows.push(vec![
                time(e.at),
                event_label(e, lang),
                e.actor
                    .as_ref()
                    .map_or_else(|| "-".into(), |u| u.name.clone()),
                e.body.clone(),
            ]);
        }
        if rows.is_empty() {
            return paragraph(unwritten(lang));
        }
        Block::Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows,
        }
    }

    pub(crate) fn owner_due(
        &self,
        owner: Option<&str>,
        due: Option<Date>,
        lang: Lang,
    ) -> (String, String) {
        (
            owner.map_or_else(|| unwritten(lang).to_string(), str::to_string),
            due.map_or_else(|| unwritten(lang).to_string(), |d| self.civil_date(d, lang)),
        )
    }

    /// Measures, one line each with owner, due date and status.
    pub(crate) fn measure_lines(
        &self,
        term: Option<kiroku_domain::postmortem::Term>,
        lang: Lang,
    ) -> Vec<String> {
        self.postmortem
            .measures
            .iter()
            .filter(|m| term.is_none_or(|t| m.term == t))
            .map(|m| {
                let (owner, due) =
                    self.owner_due(m.owner.as_ref().map(|u| u.name.as_str()), m.due, lang);
                match lang {
                    Lang::Ja => format!(
                        "{}（担当：{owner}／期限：{due}／状況：{}）",
                        m.text,
                        m.status.label_ja()
                    ),
                    Lang::En => format!(
                        "{} (owner: {owner}; due: {due}; status: {})",
                        m.text,
                        m.status.label_en()
                    ),
                }
            })
            .collect()
    }

    pub(crate) fn action_item_table(&self, lang: Lang) -> Block {
        let headers = match lang {
            Lang::Ja => ["アクション", "担当者", "期限", "ステータス"],
            Lang::En => ["Action", "Owner", "Due", "Status"],
        };
        if self.postmortem.action_items.is_empty() {
            return paragraph(unwritten(lang));
        }
        Block::Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: self
                .postmortem
                .action_items
                .iter()
                .map(|a| {
                    let (owner, due) =
                        self.owner_due(a.owner.as_ref().map(|u| u.name.as_str()), a.due, lang);
                    vec![
                        a.title.clone(),
                        owner,
                        due,
                        status_label(a.status, lang).into(),
                    ]
                })
                .collect(),
        }
    }

    /// The approval table, one row per step of the chain.
    pub(crate) fn approval_table(&self, lang: Lang) -> Block {
        let headers = match lang {
            Lang::Ja => ["役割", "氏名", "承認日", "コメント"],
            Lang::En => ["Role", "Name", "Approved", "Comment"],
        };
        Block::Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: self
                .steps
                .iter()
                .map(|step| {
                    let label = match lang {
                        Lang::Ja => step.label_ja.clone(),
                        Lang::En => step.label_en.clone(),
                    };
                    match self.approvals.iter().find(|a| a.step == step.key) {
                        Some(a) => vec![
                            label,
                            a.approver.name.clone(),
                            self.date(a.at, lang),
                            a.comment.clone(),
                        ],
                        None => vec![label, String::new(), String::new(), String::new()],
                    }
                })
                .collect(),
        }
    }

    pub(crate) fn obligation_table(&self, lang: Lang) -> Option<Block> {
        if self.obligations.is_empty() {
            return None;
        }
        let headers = match lang {
            Lang::Ja => ["届出義務", "期限", "状況"],
            Lang::En => ["Duty", "Due", "Status"],
        };
        Some(Block::Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: self
                .obligations
                .iter()
                .map(|o| {
                    vec![
                        match lang {
                            Lang::Ja => o.name_ja.clone(),
                            Lang::En => o.name_en.clone(),
                        },
                        self.datetime(o.due_at, lang),
                        obligation_status_label(&o.status, lang).into(),
                    ]
                })
                .collect(),
        })
    }

    /// Which version this is and whether it is final, with the hash that
    /// the audit trail recorded for it.
    pub(crate) fn provenance(&self, lang: Lang) -> Vec<Block> {
        let stage = match (lang, self.stage) {
            (Lang::Ja, Stage::Final) => "確定",
            (Lang::Ja, Stage::InReview) => "承認待ち",
            (Lang::Ja, Stage::Draft) => "下書き",
            (Lang::En, Stage::Final) => "Final",
            (Lang::En, Stage::InReview) => "In review",
            (Lang::En, Stage::Draft) => "Draft",
        };
        let mut pairs = match lang {
            Lang::Ja => vec![
                ("版", self.version.to_string()),
                ("状態", stage.to_string()),
            ],
            Lang::En => vec![
                ("Version", self.version.to_string()),
                ("Stage", stage.to_string()),
            ],
        };
        if let Some(hash) = self.final_hash {
            pairs.push(("SHA-256", hash.to_string()));
        }
        let mut out = vec![Block::Rule, fields(pairs)];
        if !self.problems.is_empty() {
            out.push(heading(
                2,
                match lang {
                    Lang::Ja => "確定前の確認事項（精神論不可）",
                    Lang::En => "Before this can be final",
                },
            ));
            out.push(Block::List {
                ordered: false,
                items: self
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect(),
            });
        }
        out
    }
}

pub(crate) fn minutes_text(minutes: i64, lang: Lang) -> String {
    let (h, m) = (minutes / 60, minutes % 60);
    match (lang, h) {
        (Lang::Ja, 0) => format!("{m}分"),
        (Lang::Ja, _) => format!("{h}時間{m:02}分"),
        (Lang::En, 0) => format!("{m} min"),
        (Lang::En, _) => format!("{h} h {m:02} min"),
    }
}

pub(crate) fn status_label(s: ItemStatus, lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => s.label_ja(),
        Lang::En => s.label_en(),
    }
}

fn obligation_status_label(s: &str, lang: Lang) -> &str {
    match (lang, s) {
        (Lang::Ja, "pending") => "未対応",
        (Lang::Ja, "submitted") => "提出済",
        (Lang::Ja, "not_required") => "不要と判断",
        (Lang::En, "pending") => "Pending",
        (Lang::En, "submitted") => "Submitted",
        (Lang::En, "not_required") => "Not required",
        (_, other) => other,
    }
}

fn status_name(s: Status, lang: Lang) -> &'static str {
    match (lang, s) {
        (Lang::Ja, Status::Triggered) => "検知",
        (Lang::Ja, Status::Acknowledged) => "影響確認",
        (Lang::Ja, Status::Investigating) => "対応開始",
        (Lang::Ja, Status::Mitigated) => "暫定復旧",
        (Lang::Ja, Status::Resolved) => "復旧完了",
        (Lang::Ja, Status::Closed) => "クローズ",
        (Lang::En, s) => s.as_str(),
    }
}

fn event_label(e: &TimelineEntry, lang: Lang) -> String {
    let ja = lang == Lang::Ja;
    match e.kind {
        TimelineKind::Declared => if ja {
            "インシデント宣言"
        } else {
            "Declared"
        }
        .into(),
        TimelineKind::StatusChanged => e
            .data
            .get("to")
            .and_then(|v| v.as_str())
            .and_then(Status::parse)
            .map_or_else(
                || if ja { "状態変更" } else { "Status changed" }.to_string(),
                |s| status_name(s, lang).to_string(),
            ),
        TimelineKind::Note => if ja { "メモ" } else { "Note" }.into(),
        TimelineKind::Updated => if ja { "記録更新" } else { "Updated" }.into(),
        TimelineKind::Alert => if ja { "アラート" } else { "Alert" }.into(),
        TimelineKind::Notification => if ja { "通知" } else { "Notification" }.into(),
        TimelineKind::Communication => if ja { "連絡" } else { "Communication" }.into(),
        TimelineKind::Escalation => if ja {
            "エスカレーション"
        } else {
            "Escalation"
        }
        .into(),
    }
}
