//! The notices of seed 002, made from the incident: the P0 notice while it
//! burns, and the recovery notice once it is over.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kiroku_domain::Incident;
use kiroku_domain::postmortem::Postmortem;
use serde::{Deserialize, Serialize};

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// P0インシデント通知.
    P0Notice,
    /// 復旧完了通知.
    RecoveryNotice,
}

/// What the sender adds that the record does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticeInput {
    /// 現在の状況; the incident's status when empty.
    pub situation: String,
    /// 推定復旧時間.
    pub eta: String,
    /// 対応状況; the latest response actions when empty.
    pub actions: String,
    /// 次回更新.
    pub next_update: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeText {
    pub subject: String,
    pub body: String,
}

const UNKNOWN: &str = "未定";

fn local(at: Timestamp, zone: &TimeZone) -> String {
    zone.to_datetime(at).strftime("%Y-%m-%d %H:%M").to_string()
}

fn or(text: &str, fallback: impl FnOnce() -> String) -> String {
    if text.trim().is_empty() {
        fallback()
    } else {
        text.to_string()
    }
}

fn status_ja(i: &Incident) -> &'static str {
    use kiroku_domain::Status::*;
    match i.status {
        Triggered => "検知済み・初動待ち",
        Acknowledged => "確認済み・調査準備中",
        Investigating => "原因調査・対応中",
        Mitigated => "暫定復旧済み・監視中",
        Resolved => "復旧済み",
        Closed => "クローズ済み",
    }
}

/// The notice of `kind` for the incident; `None` for a recovery notice
/// of an incident not yet resolved.
pub fn notice(
    kind: NoticeKind,
    incident: &Incident,
    postmortem: &Postmortem,
    input: &NoticeInput,
    zone: &TimeZone,
) -> Option<NoticeText> {
    let i = incident;
    let started = i.times.occurred_at.unwrap_or(i.times.detected_at);
    let impact = {
        let mut parts = Vec::new();
        if !i.affected_services.is_empty() {
            parts.push(i.affected_services.join("、"));
        }
        if let Some(n) = i.impact.users_affected {
            parts.push(format!("影響ユーザー数 約{n}名"));
        }
        if !i.impact.business_impact.is_empty() {
            parts.push(i.impact.business_impact.clone());
        }
        if parts.is_empty() {
            "調査中".to_string()
        } else {
            parts.join(" / ")
        }
    };
    match kind {
        NoticeKind::P0Notice => {
            let actions = or(&input.actions, || {
                let done: Vec<&str> = postmortem
                    .responses
                    .iter()
                    .map(|a| a.text.as_str())
                    .collect();
                if done.is_empty() {
                    "対応中".into()
                } else {
                    done.join("、")
                }
            });
            Some(NoticeText {
                subject: format!("[{}] {} 緊急事態", i.severity, i.title),
                body: [
                    format!("インシデント番号: {}", i.number),
                    format!("発生時刻: {}", local(started, zone)),
                    format!("影響範囲: {impact}"),
                    format!(
                        "現在の状況: {}",
                        or(&input.situation, || status_ja(i).into())
                    ),
                    format!("推定復旧時間: {}", or(&input.eta, || UNKNOWN.into())),
                    format!("対応状況: {actions}"),
                    format!("次回更新: {}", or(&input.next_update, || UNKNOWN.into())),
                ]
                .join("\n"),
            })
        }
        NoticeKind::RecoveryNotice => {
            let resolved = i.times.resolved_at?;
            let cause = {
                let mut parts: Vec<String> = Vec::new();
                if !postmortem.direct_cause.trim().is_empty() {
                    parts.push(postmortem.direct_cause.clone());
                }
                parts.extend(postmortem.root_causes.iter().map(|c| c.text.clone()));
                if parts.is_empty() {
                    "調査中（ポストモーテムにて報告）".into()
                } else {
                    parts.join("、")
                }
            };
            let measures = if postmortem.measures.is_empty() {
                "検討中（ポストモーテムにて報告）".to_string()
            } else {
                postmortem
                    .measures
                    .iter()
                    .map(|m| m.text.as_str())
                    .collect::<Vec<_>>()
                    .join("、")
            };
            Some(NoticeText {
                subject: format!("[復旧完了] {} 正常化", i.title),
                body: [
                    format!("インシデント番号: {}", i.number),
                    format!("復旧時刻: {}", local(resolved, zone)),
                    format!(
                        "影響時間: {} - {}",
                        local(started, zone),
                        local(resolved, zone)
                    ),
                    format!("影響範囲: {impact}"),
                    format!("根本原因: {cause}"),
                    format!("再発防止策: {measures}"),
                ]
                .join("\n"),
            })
        }
    }
}
