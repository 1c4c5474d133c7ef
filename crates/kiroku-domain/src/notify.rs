//! Notifications: the channels they go out on, which alert levels each
//! channel takes (seed 004: Critical → phone + email + chat, Warning →
//! email + chat, Info → chat), what each message says in each channel's
//! own format (Slack Block Kit, a Teams Adaptive Card, Kiroku's JSON), and
//! when a failed delivery is tried again. Pure: sending is the caller's.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::alert::AlertLevel;
use crate::validate::escape_markup;
use crate::{OutboxMessage, ValidationError, validate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Kiroku's JSON, signed with HMAC-SHA256 when the channel has a secret.
    Webhook,
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A Microsoft Teams incoming webhook (Adaptive Card).
    Teams,
    /// Mail over SMTP to the `mailto:` addresses of the channel's URL.
    Email,
    /// A text message to the `tel:` number, through the SMS provider.
    Sms,
    /// A phone call to the `tel:` number that reads the notice out.
    Voice,
}

impl ChannelKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(ChannelKind::Webhook),
            "slack" => Some(ChannelKind::Slack),
            "teams" => Some(ChannelKind::Teams),
            "email" => Some(ChannelKind::Email),
            "sms" => Some(ChannelKind::Sms),
            "voice" => Some(ChannelKind::Voice),
            _ => None,
        }
    }

    pub const NAMES: &'static str = "webhook, slack, teams, email, sms, voice";

    /// The seed 004 routing by level: chat takes every level, email
    /// Critical and Warning, the phone (calls and texts) Critical only.
    pub fn default_levels(self) -> Vec<AlertLevel> {
        match self {
            ChannelKind::Email => vec![AlertLevel::Critical, AlertLevel::Warning],
            ChannelKind::Sms | ChannelKind::Voice => vec![AlertLevel::Critical],
            _ => vec![AlertLevel::Critical, AlertLevel::Warning, AlertLevel::Info],
        }
    }

    /// Checks the address a channel of this kind is sent to.
    pub fn checked_address(self, field: &str, url: &str) -> Result<String, ValidationError> {
        match self {
            ChannelKind::Email => checked_mailto(field, url),
            ChannelKind::Sms | ChannelKind::Voice => checked_phone(field, url),
            _ => checked_url(field, url),
        }
    }
}

/// Where notifications go. The URL of a chat webhook is itself a secret:
/// it is stored, never logged, and shown only in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    pub url: String,
    /// Signs webhook bodies (HMAC-SHA256); never shown again once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub levels: Vec<AlertLevel>,
    /// At most this many deliveries a minute; the rest wait their turn.
    pub rate_per_minute: u32,
    /// A person's own contact method rather than a shared channel: it is
    /// reached only when escalation pages its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
    /// A contact method's notification rule: how long after its owner is
    /// paged it is tried (e.g. email at once, a call after five minutes).
    #[serde(default)]
    pub delay_minutes: u32,
    pub created_at: Timestamp,
    /// Removed: kept for the deliveries that name it, used for no new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<Timestamp>,
}

pub const URL_MAX: usize = 2_048;
pub const RATE_PER_MINUTE_MAX: u32 = 6_000;

impl Channel {
    /// A shared channel still in use: broadcasts and policies reach it.
    pub fn is_shared(&self) -> bool {
        self.owner.is_none() && self.removed_at.is_none()
    }

    /// One of `user`'s contact methods still in use.
    pub fn is_method_of(&self, user: Uuid) -> bool {
        self.owner == Some(user) && self.removed_at.is_none()
    }

    /// The URL with its path hidden: enough to recognise the host (for
    /// mail, the recipients' domains).
    pub fn url_shown(&self) -> String {
        if let Some(number) = self.url.strip_prefix("tel:") {
            let tail: String = number
                .chars()
                .skip(number.len().saturating_sub(4))
                .collect();
            return format!("tel:…{tail}");
        }
        if let Some(to) = self.url.strip_prefix("mailto:") {
            let domains: Vec<&str> = to
                .split(',')
                .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d))
                .collect();
            return format!("mailto:…@{}", domains.join(",…@"));
        }
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split('/').next().unwrap_or("");
                format!("{scheme}://{host}/…")
            }
            None => "…".into(),
        }
    }
}

/// Checks a channel's URL: absolute http(s), no credentials in it.
pub fn checked_url(field: &str, url: &str) -> Result<String, ValidationError> {
    let url = validate::line(field, url, URL_MAX, true)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ValidationError::new(field, "invalid_url", "must be an http:// or https:// URL")
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return Err(ValidationError::new(
            field,
            "invalid_url",
            "must name a host, without user or password",
        ));
    }
    Ok(url)
}

/// The most recipients one mail channel may name.
pub const RECIPIENTS_MAX: usize = 20;

/// Checks a mail channel's `mailto:a@x,b@y`: one to twenty addresses, each
/// a local part and a domain without spaces or angle brackets.
pub fn checked_mailto(field: &str, url: &str) -> Result<String, ValidationError> {
    let url = validate::line(field, url, URL_MAX, true)?;
    let bad = || {
        ValidationError::new(
            field,
            "invalid_url",
            format!("must be mailto: and 1 to {RECIPIENTS_MAX} addresses, comma-separated"),
        )
    };
    let to = url.strip_prefix("mailto:").ok_or_else(bad)?;
    let addresses: Vec<&str> = to.split(',').map(str::trim).collect();
    let valid = |a: &str| {
        a.len() <= 254
            && a.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.contains('@')
            })
            && !a.contains(|c: char| c.is_whitespace() || "<>()[];:\\\"".contains(c))
    };
    if addresses.is_empty()
        || addresses.len() > RECIPIENTS_MAX
        || !addresses.iter().all(|a| valid(a))
    {
        return Err(bad());
    }
    Ok(format!("mailto:{}", addresses.join(",")))
}

/// Checks a phone channel's `tel:+819012345678`: E.164, a plus and 8 to
/// 15 digits, separators dropped.
pub fn checked_phone(field: &str, url: &str) -> Result<String, ValidationError> {
    let url = validate::line(field, url, 64, true)?;
    let bad = || {
        ValidationError::new(
            field,
            "invalid_phone",
            "must be tel: and an E.164 number, e.g. tel:+819012345678",
        )
    };
    let number = url.strip_prefix("tel:").ok_or_else(bad)?;
    let digits: String = number
        .strip_prefix('+')
        .ok_or_else(bad)?
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '(' | ')'))
        .collect();
    if !(8..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(bad());
    }
    Ok(format!("tel:+{digits}"))
}

/// What a notification says, whatever the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub topic: String,
    pub level: AlertLevel,
    pub title: String,
    pub text: String,
    pub incident_id: Option<Uuid>,
    pub incident_number: Option<String>,
    /// A signed, expiring one-click acknowledgement link (pages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_url: Option<String>,
    /// What a text reply acknowledges with: `ACK {code}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_code: Option<String>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Notice {
    /// The notice an outbox message makes, if it is one people are told of.
    /// `severity_level` maps an incident severity to an alert level.
    pub fn of(m: &OutboxMessage, severity_level: impl Fn(&str) -> AlertLevel) -> Option<Notice> {
        let p = &m.payload;
        let incident_id = p
            .get("incident_id")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let number = str_of(p, "number").map(String::from);
        let (level, title, text) = match m.topic.as_str() {
            "alert.triggered" => {
                let level = p
                    .get("level")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or(AlertLevel::Warning);
                let summary = str_of(p, "summary").unwrap_or("alert").to_string();
                (
                    level,
                    summary,
                    format!("severity {}", str_of(p, "severity").unwrap_or("?")),
                )
            }
            // Declared from an alert: the alert's own notice says it.
            "incident.declared" if p.get("origin").is_none_or(Value::is_null) => {
                let severity = str_of(p, "severity").unwrap_or("");
                (
                    severity_level(severity),
                    format!(
                        "{} {}",
                        number.as_deref().unwrap_or(""),
                        str_of(p, "title").unwrap_or("")
                    )
                    .trim()
                    .to_string(),
                    format!("declared, severity {severity}"),
                )
            }
            "incident.response_breached" => {
                let severity = str_of(p, "severity").unwrap_or("");
                (
                    severity_level(severity),
                    format!(
                        "{} response not started in time",
                        number.as_deref().unwrap_or("incident")
                    ),
                    format!(
                        "severity {severity}: the response was due to start by {}",
                        str_of(p, "response_due_at").unwrap_or("?")
                    ),
                )
            }
            "incident.status_changed"
                if matches!(str_of(p, "to"), Some("resolved" | "acknowledged")) =>
            {
                let to = str_of(p, "to").unwrap_or("");
                (
                    AlertLevel::Info,
                    format!("{} {to}", number.as_deref().unwrap_or("incident")),
                    format!("{} → {to}", str_of(p, "from").unwrap_or("?")),
                )
            }
            "obligation.reminder" | "obligation.overdue" => {
                let overdue = m.topic == "obligation.overdue";
                (
                    if overdue {
                        AlertLevel::Critical
                    } else {
                        AlertLevel::Warning
                    },
                    format!(
                        "{} {}{}",
                        number.as_deref().unwrap_or("incident"),
                        str_of(p, "name_ja").unwrap_or("届出"),
                        if overdue {
                            " 期限超過"
                        } else {
                            " 期限が近づいています"
                        }
                    ),
                    format!(
                        "{}: due {}",
                        str_of(p, "name_en").unwrap_or("notification duty"),
                        str_of(p, "due_local").unwrap_or("?")
                    ),
                )
            }
            "action_item.overdue" => (
                AlertLevel::Warning,
                format!(
                    "{} アクションアイテム期限超過: {}",
                    number.as_deref().unwrap_or("incident"),
                    str_of(p, "title").unwrap_or("")
                ),
                format!(
                    "owner {}, due {}",
                    str_of(p, "owner").unwrap_or("-"),
                    str_of(p, "due").unwrap_or("?")
                ),
            ),
            // A notice people wrote (the P0 notice, the recovery notice).
            "incident.communication" => (
                p.get("level")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or(AlertLevel::Info),
                str_of(p, "subject").unwrap_or("").to_string(),
                str_of(p, "body").unwrap_or("").to_string(),
            ),
            _ => return None,
        };
        Some(Notice {
            topic: m.topic.clone(),
            level,
            title: title.chars().take(validate::TITLE_MAX).collect(),
            text,
            incident_id,
            incident_number: number,
            ack_url: None,
            ack_code: None,
        })
    }
}

/// One message for one channel, as it will be sent: body and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub body: String,
    /// Stable across retries; receivers deduplicate on it.
    pub idempotency_key: String,
}

fn level_label(l: AlertLevel) -> &'static str {
    match l {
        AlertLevel::Critical => "CRITICAL",
        AlertLevel::Warning => "WARNING",
        AlertLevel::Info => "INFO",
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body a channel of `kind` gets for `notice`; `link` is the
/// incident's page, when there is one.
pub fn render(
    kind: ChannelKind,
    notice: &Notice,
    link: Option<&str>,
    idempotency_key: &str,
) -> Value {
    let label = level_label(notice.level);
    match kind {
        ChannelKind::Webhook => json!({
            "idempotency_key": idempotency_key,
            "topic": notice.topic,
            "level": notice.level,
            "title": notice.title,
            "text": notice.text,
            "incident_id": notice.incident_id,
            "incident_number": notice.incident_number,
            "link": link,
            "ack_url": notice.ack_url,
        }),
        ChannelKind::Slack => {
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": format!("[{label}] {}", notice.title).chars().take(150).collect::<String>()}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&notice.text)}}),
            ];
            let mut buttons = Vec::new();
            if let Some(link) = link {
                buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Open incident"}, "url": link}));
            }
            if let Some(ack) = &notice.ack_url {
                buttons.push(json!({"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Acknowledge"}, "url": ack}));
            }
            if !buttons.is_empty() {
                blocks.push(json!({"type": "actions", "elements": buttons}));
            }
            json!({ "text": format!("[{label}] {}", notice.title), "blocks": blocks })
        }
        ChannelKind::Email => {
            let subject = format!("[{label}] {}", notice.title);
            let mut text = format!("{}\n\n{}\n", notice.title, notice.text);
            let mut html = format!(
                "<h1>[{label}] {}</h1>\n<p>{}</p>\n",
                escape_markup(&notice.title),
                escape_markup(&notice.text)
            );
            if let Some(link) = link {
                text.push_str(&format!("\n{link}\n"));
                html.push_str(&format!(
                    "<p><a href=\"{0}\">{0}</a></p>\n",
                    escape_markup(link)
                ));
            }
            if let Some(ack) = &notice.ack_url {
                text.push_str(&format!("\nAcknowledge: {ack}\n"));
                html.push_str(&format!(
                    "<p><a href=\"{}\">Acknowledge</a></p>\n",
                    escape_markup(ack)
                ));
            }
            json!({ "subject": subject, "text": text, "html": html })
        }
        ChannelKind::Teams => {
            let mut card = json!({
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                     "text": format!("[{label}] {}", notice.title)},
                    {"type": "TextBlock", "wrap": true, "text": notice.text},
                ],
            });
            let actions: Vec<Value> = link
                .map(|l| ("Open incident", l))
                .into_iter()
                .chain(notice.ack_url.as_deref().map(|a| ("Acknowledge", a)))
                .map(|(title, url)| json!({"type": "Action.OpenUrl", "title": title, "url": url}))
                .collect();
            if !actions.is_empty() {
                card["actions"] = Value::Array(actions);
            }
            json!({
                "type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
            })
        }
        ChannelKind::Sms => {
            let mut text = format!("[{label}] {}", notice.title);
            if let Some(code) = &notice.ack_code {
                text.push_str(&format!(" / Reply ACK {code} to acknowledge"));
            }
            if let Some(ack) = &notice.ack_url {
                text.push_str(&format!(" {ack}"));
            }
            json!({ "text": text.chars().take(SMS_MAX).collect::<String>() })
        }
        ChannelKind::Voice => {
            let mut say = format!("Kiroku. {label}. {}. {}.", notice.title, notice.text);
            if notice.ack_code.is_some() {
                say.push_str(" Reply to the text message to acknowledge.");
            }
            json!({ "say": say.chars().take(VOICE_MAX).collect::<String>() })
        }
    }
}

/// Long enough for a title, a code and a link in a few SMS segments.
const SMS_MAX: usize = 480;
/// What a call reads out before it hangs up.
const VOICE_MAX: usize = 600;

/// A channel's rate: a token bucket holding six seconds' worth of its
/// deliveries (at least one), filling at `rate_per_minute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Bucket {
    pub fn full(rate_per_minute: u32, at: Timestamp) -> Self {
        Bucket {
            tokens: Self::capacity(rate_per_minute),
            at,
        }
    }

    fn capacity(rate_per_minute: u32) -> f64 {
        (f64::from(rate_per_minute) / 10.0).max(1.0)
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate_per_minute: u32, now: Timestamp) -> Result<(), SignedDuration> {
        let per_second = f64::from(rate_per_minute.max(1)) / 60.0;
        let elapsed = now.duration_since(self.at).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * per_second).min(Self::capacity(rate_per_minute));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(SignedDuration::from_secs_f64(
                (1.0 - self.tokens) / per_second,
            ))
        }
    }
}

/// How failed deliveries are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: SignedDuration,
    pub max_delay: SignedDuration,
    /// Attempts before a delivery is dead (kept, with its last error).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: SignedDuration::from_secs(2),
            max_delay: SignedDuration::from_mins(10),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): doubling from the
    /// first delay, capped, with "full jitter" (`jitter` in [0, 1) picks a
    /// point in the upper half, so that retries of many deliveries spread
    /// out but none comes back at once). A receiver's `Retry-After` is a
    /// floor.
    pub fn delay(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<SignedDuration>,
    ) -> SignedDuration {
        let exp = attempt.saturating_sub(1).min(30);
        let base = self
            .first_delay
            .checked_mul(1i32 << exp.min(20))
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        let spread = base.as_secs_f64() * (0.5 + jitter / 2.0);
        let delay = SignedDuration::from_secs_f64(spread);
        match retry_after {
            Some(r) => delay.max(r.min(self.max_delay * 6)),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(topic: &str, payload: Value) -> OutboxMessage {
        OutboxMessage::new(topic, format!("{topic}:1"), payload, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn notices_come_from_the_topics_people_are_told_of() {
        let critical = |_: &str| AlertLevel::Critical;
        let alert = message(
            "alert.triggered",
            json!({"level": "critical", "summary": "DB down <script>", "severity": "critical",
                   "incident_id": "01900000-0000-7000-8000-000000000000"}),
        );
        let n = Notice::of(&alert, critical).unwrap();
        assert_eq!(n.level, AlertLevel::Critical);
        assert_eq!(n.title, "DB down <script>");
        assert!(n.incident_id.is_some());
        // Declared from an alert: the alert already said it.
        let from_alert = message(
            "incident.declared",
            json!({"number": "DB-2026-001", "origin": {"alert_id": "x"}}),
        );
        assert!(Notice::of(&from_alert, critical).is_none());
        let by_hand = message(
            "incident.declared",
            json!({"number": "DB-2026-001", "title": "本番DB接続不可", "severity": "P1"}),
        );
        let n = Notice::of(&by_hand, |s| {
            if s == "P1" {
                AlertLevel::Critical
            } else {
                AlertLevel::Info
            }
        })
        .unwrap();
        assert_eq!(n.title, "DB-2026-001 本番DB接続不可");
        assert_eq!(n.level, AlertLevel::Critical);
        let resolved = message(
            "incident.status_changed",
            json!({"number": "DB-2026-001", "from": "mitigated", "to": "resolved"}),
        );
        assert_eq!(
            Notice::of(&resolved, critical).unwrap().level,
            AlertLevel::Info
        );
        let investigating = message("incident.status_changed", json!({"to": "investigating"}));
        assert!(Notice::of(&investigating, critical).is_none());
        assert!(Notice::of(&message("incident.updated", json!({})), critical).is_none());
    }

    #[test]
    fn each_channel_gets_its_own_format_with_hostile_text_kept_inert() {
        let n = Notice {
            topic: "alert.triggered".into(),
            level: AlertLevel::Critical,
            title: "<!channel> & <https://evil|click>".into(),
            text: "severity critical <b>".into(),
            incident_id: None,
            incident_number: None,
            ack_url: None,
            ack_code: None,
        };
        let slack = render(
            ChannelKind::Slack,
            &n,
            Some("https://kiroku.example/i/1"),
            "k1",
        );
        // Header blocks are plain text; the mrkdwn section is escaped.
        assert_eq!(slack["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(
            slack["blocks"][1]["text"]["text"],
            "severity critical &lt;b&gt;"
        );
        assert_eq!(
            slack["blocks"][2]["elements"][0]["url"],
            "https://kiroku.example/i/1"
        );
        let teams = render(ChannelKind::Teams, &n, None, "k1");
        assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
        assert!(teams["attachments"][0]["content"].get("actions").is_none());
        let hook = render(ChannelKind::Webhook, &n, None, "k1");
        assert_eq!(hook["idempotency_key"], "k1");
        assert_eq!(hook["level"], "critical");
    }

    #[test]
    fn mail_goes_to_checked_addresses_with_html_escaped() {
        assert_eq!(
            checked_mailto("url", "mailto:ops@example.com, oncall@example.jp").unwrap(),
            "mailto:ops@example.com,oncall@example.jp"
        );
        for bad in [
            "ops@example.com",
            "mailto:",
            "mailto:nobody",
            "mailto:a@b",
            "mailto:a b@example.com",
            "mailto:<a@example.com>",
            "mailto:a@example.com\r\nBcc: x@evil.com",
        ] {
            assert!(checked_mailto("url", bad).is_err(), "{bad}");
        }
        let many = format!("mailto:{}", vec!["a@example.com"; 21].join(","));
        assert!(checked_mailto("url", &many).is_err());
        let n = Notice {
            topic: "incident.declared".into(),
            level: AlertLevel::Critical,
            title: "DB-2026-001 <script>alert(1)</script>".into(),
            text: "declared".into(),
            incident_id: None,
            incident_number: None,
            ack_url: None,
            ack_code: None,
        };
        let mail = render(
            ChannelKind::Email,
            &n,
            Some("https://k.example/i?a=1&b=2"),
            "k",
        );
        assert_eq!(
            mail["subject"],
            "[CRITICAL] DB-2026-001 <script>alert(1)</script>"
        );
        let html = mail["html"].as_str().unwrap();
        assert!(
            html.contains("&lt;script&gt;") && !html.contains("<script>"),
            "{html}"
        );
        assert!(html.contains("a=1&amp;b=2"));
        let c = Channel {
            id: Uuid::nil(),
            name: "mail".into(),
            kind: ChannelKind::Email,
            url: "mailto:ops@example.com,cto@example.jp".into(),
            secret: None,
            levels: ChannelKind::Email.default_levels(),
            rate_per_minute: 60,
            owner: None,
            delay_minutes: 0,
            created_at: Timestamp::UNIX_EPOCH,
            removed_at: None,
        };
        assert_eq!(c.url_shown(), "mailto:…@example.com,…@example.jp");
        assert_eq!(c.levels, [AlertLevel::Critical, AlertLevel::Warning]);
    }

    #[test]
    fn phones_are_e164_and_texts_carry_the_reply_code() {
        assert_eq!(
            checked_phone("address", "tel:+81-90-1234-5678").unwrap(),
            "tel:+819012345678"
        );
        for bad in [
            "+819012345678",
            "tel:09012345678",
            "tel:+0123456789",
            "tel:+81 90 abc",
            "tel:+1234",
            "tel:+1234567890123456",
            "tel:+81901234;ext=1",
        ] {
            assert!(checked_phone("address", bad).is_err(), "{bad}");
        }
        let n = Notice {
            topic: "incident.page".into(),
            level: AlertLevel::Critical,
            title: "DB-2026-001 本番DB接続不可".into(),
            text: "level 1".into(),
            incident_id: None,
            incident_number: Some("DB-2026-001".into()),
            ack_url: Some("https://k.example/ack/t".into()),
            ack_code: Some("DB-2026-001".into()),
        };
        let sms = render(ChannelKind::Sms, &n, None, "k");
        assert_eq!(
            sms["text"],
            "[CRITICAL] DB-2026-001 本番DB接続不可 / Reply ACK DB-2026-001 to acknowledge https://k.example/ack/t"
        );
        let voice = render(ChannelKind::Voice, &n, None, "k");
        assert!(voice["say"].as_str().unwrap().contains("本番DB接続不可"));
        let slack = render(ChannelKind::Slack, &n, Some("https://k.example/i/1"), "k");
        assert_eq!(
            slack["blocks"][2]["elements"][1]["url"],
            "https://k.example/ack/t"
        );
        let teams = render(ChannelKind::Teams, &n, None, "k");
        assert_eq!(
            teams["attachments"][0]["content"]["actions"][0]["title"],
            "Acknowledge"
        );
        assert_eq!(ChannelKind::Voice.default_levels(), [AlertLevel::Critical]);
    }

    #[test]
    fn urls_are_checked() {
        assert!(checked_url("url", "https://hooks.slack.com/services/T/B/X").is_ok());
        assert!(checked_url("url", "http://127.0.0.1:9/x").is_ok());
        for bad in [
            "",
            "ftp://x",
            "https://",
            "https://user:pw@host/x",
            "javascript:alert(1)",
            "https://a b/",
        ] {
            assert!(checked_url("url", bad).is_err(), "{bad}");
        }
        let c = Channel {
            id: Uuid::nil(),
            name: "ops".into(),
            kind: ChannelKind::Slack,
            url: "https://hooks.slack.com/services/T000/B000/secret".into(),
            secret: None,
            levels: ChannelKind::Slack.default_levels(),
            rate_per_minute: 60,
            owner: None,
            delay_minutes: 0,
            created_at: Timestamp::UNIX_EPOCH,
            removed_at: None,
        };
        assert_eq!(c.url_shown(), "https://hooks.slack.com/…");
    }

    #[test]
    fn a_channel_at_its_rate_waits_its_turn() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut b = Bucket::full(60, t0);
        // Six seconds' worth at once, then one a second.
        assert!((0..6).all(|_| b.take(60, t0).is_ok()));
        let wait = b.take(60, t0).unwrap_err();
        assert_eq!(wait, SignedDuration::from_secs(1));
        assert!(b.take(60, t0 + SignedDuration::from_secs(1)).is_ok());
        // A slow channel still takes one at a time.
        let mut slow = Bucket::full(1, t0);
        assert!(slow.take(1, t0).is_ok());
        assert_eq!(slow.take(1, t0).unwrap_err(), SignedDuration::from_secs(60));
    }

    proptest! {
        #[test]
        fn retry_delays_are_bounded_and_honour_retry_after(attempt in 1u32..100, jitter in 0.0f64..1.0, after in proptest::option::of(0i64..100_000)) {
            let p = RetryPolicy::default();
            let retry_after = after.map(SignedDuration::from_secs);
            let d = p.delay(attempt, jitter, retry_after);
            prop_assert!(d >= SignedDuration::from_secs(1));
            prop_assert!(d <= p.max_delay * 6);
            if let Some(r) = retry_after {
                prop_assert!(d >= r.min(p.max_delay * 6));
            } else {
                prop_assert!(d <= p.max_delay);
                // Never less than half the un-jittered back-off.
                let base = (p.first_delay.as_secs_f64() * 2f64.powi((attempt - 1).min(20) as i32)).min(p.max_delay.as_secs_f64());
                prop_assert!(d.as_secs_f64() >= base / 2.0 - 1e-6);
            }
        }
    }
}
