//! Notifications as they leave: posted to a channel's webhook over HTTP,
//! mailed over SMTP, or texted and called through a Twilio-compatible REST
//! API. Webhook channels with a secret are signed:
//!
//! - `X-Kiroku-Timestamp`: seconds since the epoch, at sending;
//! - `X-Kiroku-Signature`: `v1=` and the hex HMAC-SHA256, under the
//!   channel's secret, of the timestamp, a `.`, and the body.
//!
//! Receivers recompute it and refuse stale timestamps (replays). Every
//! request carries `Idempotency-Key`, the same on every attempt; a mail's
//! `Message-ID` is derived from it, so a mail sent again after a crash is
//! the same message to the receiving system.

use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use kiroku_app::{Courier, Delivered};
use kiroku_domain::notify::{Channel, ChannelKind, Outgoing};
use reqwest::StatusCode;
use sha2::Sha256;

pub struct HttpCourier {
    client: reqwest::Client,
}

impl HttpCourier {
    pub fn new(client: reqwest::Client) -> Self {
        HttpCourier { client }
    }
}

/// The client every courier shares.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("kiroku/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1={}",
        kiroku_audit::hex::encode(&mac.finalize().into_bytes())
    )
}

/// `Retry-After` in seconds (the HTTP-date form is rare from webhooks and
/// treated as absent).
fn retry_after(res: &reqwest::Response) -> Option<SignedDuration> {
    res.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u32>()
        .ok()
        .map(|s| SignedDuration::from_secs(i64::from(s)))
}

#[async_trait::async_trait]
impl Courier for HttpCourier {
    async fn deliver(&self, channel: &Channel, out: &Outgoing) -> Delivered {
        let mut req = self
            .client
            .post(&channel.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &out.idempotency_key);
        if let Some(secret) = &channel.secret {
            let ts = jiff::Timestamp::now().as_second();
            req = req
                .header("X-Kiroku-Timestamp", ts.to_string())
                .header("X-Kiroku-Signature", signature(secret, ts, &out.body));
        }
        outcome(req.body(out.body.clone()).send().await)
    }
}

/// What a receiver's answer means for the delivery.
fn outcome(answer: reqwest::Result<reqwest::Response>) -> Delivered {
    // Errors name no URL: a chat webhook's URL is its credential.
    match answer {
        Err(e) => Delivered::Retry {
            error: e.without_url().to_string(),
            retry_after: None,
        },
        Ok(res) if res.status().is_success() => Delivered::Sent,
        Ok(res) if res.status() == StatusCode::TOO_MANY_REQUESTS => Delivered::Retry {
            error: "429 Too Many Requests".into(),
            retry_after: retry_after(&res),
        },
        Ok(res)
            if res.status().is_server_error() || res.status() == StatusCode::REQUEST_TIMEOUT =>
        {
            Delivered::Retry {
                error: res.status().to_string(),
                retry_after: retry_after(&res),
            }
        }
        Ok(res) => Delivered::Refused {
            error: res.status().to_string(),
        },
    }
}

/// The SMS and voice provider: Twilio's REST API or one that speaks it.
#[derive(Clone)]
pub struct SmsSettings {
    /// `https://api.twilio.com` for Twilio itself.
    pub base_url: String,
    pub account_sid: String,
    /// Never logged. Also verifies the provider's inbound webhooks.
    pub auth_token: String,
    /// The number texts and calls come from (E.164).
    pub from: String,
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"(set)")
            .field("from", &self.from)
            .finish()
    }
}

pub struct SmsCourier {
    client: reqwest::Client,
    settings: SmsSettings,
}

impl SmsCourier {
    pub fn new(client: reqwest::Client, settings: SmsSettings) -> Self {
        SmsCourier { client, settings }
    }

    /// A text (`Messages.json`, the rendered `text`) or a call
    /// (`Calls.json`, the rendered `say` read out by TwiML).
    async fn send(&self, channel: &Channel, out: &Outgoing) -> Delivered {
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&out.body) else {
            return Delivered::Refused {
                error: "the message is not a rendered text or call".into(),
            };
        };
        let to = channel.url.trim_start_matches("tel:");
        let s = &self.settings;
        let (resource, content) = match channel.kind {
            ChannelKind::Voice => {
                let say = body["say"].as_str().unwrap_or_default();
                let language = if say.is_ascii() { "en-US" } else { "ja-JP" };
                (
                    "Calls",
                    (
                        "Twiml",
                        format!(
                            "<Response><Say language=\"{language}\">{}</Say></Response>",
                            kiroku_domain::validate::escape_markup(say)
                        ),
                    ),
                )
            }
            _ => (
                "Messages",
                (
                    "Body",
                    body["text"].as_str().unwrap_or_default().to_string(),
                ),
            ),
        };
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json",
            s.base_url.trim_end_matches('/'),
            s.account_sid
        );
        let form = [
            ("To", to),
            ("From", s.from.as_str()),
            (content.0, &content.1),
        ];
        outcome(
            self.client
                .post(url)
                .basic_auth(&s.account_sid, Some(&s.auth_token))
                .header("Idempotency-Key", &out.idempotency_key)
                .form(&form)
                .send()
                .await,
        )
    }
}

/// How mail leaves: the SMTP server and the sender.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Never logged.
    pub password: Option<String>,
    pub from: String,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("from", &self.from)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on the same host or network.
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

pub struct SmtpCourier {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl SmtpCourier {
    pub fn new(s: &SmtpSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        use lettre::transport::smtp::extension::ClientId;
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(TlsParameters::new(s.host.clone())?),
            SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(s.host.clone())?),
        };
        let mut b =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&s.host)
                .port(s.port)
                .tls(tls)
                .hello_name(ClientId::Domain("kiroku".into()))
                .timeout(Some(std::time::Duration::from_secs(10)));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
                u.clone(),
                p.clone(),
            ));
        }
        Ok(SmtpCourier {
            transport: b.build(),
            from: s
                .from
                .parse()
                .with_context(|| format!("notify.smtp.from {:?} is not a mail address", s.from))?,
        })
    }

    async fn send(&self, channel: &Channel, out: &Outgoing) -> Delivered {
        use lettre::AsyncTransport;
        use lettre::message::{Message, MultiPart};
        use sha2::Digest;
        let refused = |error: String| Delivered::Refused { error };
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&out.body) else {
            return refused("the message is not a rendered mail".into());
        };
        let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        let id = kiroku_audit::hex::encode(&sha2::Sha256::digest(out.idempotency_key.as_bytes()));
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(text("subject"))
            .message_id(Some(format!("<{id}@kiroku>")));
        for to in channel.url.trim_start_matches("mailto:").split(',') {
            match to.parse() {
                Ok(mailbox) => m = m.to(mailbox),
                Err(e) => return refused(format!("recipient {to:?}: {e}")),
            }
        }
        let message = match m.multipart(MultiPart::alternative_plain_html(
            text("text"),
            text("html"),
        )) {
            Ok(m) => m,
            Err(e) => return refused(format!("the mail could not be built: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => Delivered::Sent,
            Err(e) if e.is_permanent() => refused(e.to_string()),
            Err(e) => Delivered::Retry {
                error: e.to_string(),
                retry_after: None,
            },
        }
    }
}

/// Each channel's courier: HTTP for webhooks and chat, SMTP for mail, the
/// SMS provider for texts and calls.
pub struct Couriers {
    pub http: HttpCourier,
    pub smtp: Option<SmtpCourier>,
    pub sms: Option<SmsCourier>,
}

#[async_trait::async_trait]
impl Courier for Couriers {
    async fn deliver(&self, channel: &Channel, out: &Outgoing) -> Delivered {
        match (channel.kind, &self.smtp) {
            (ChannelKind::Email, Some(smtp)) => smtp.send(channel, out).await,
            (ChannelKind::Email, None) => Delivered::Refused {
                error: "no SMTP server is configured ([notify.smtp])".into(),
            },
            (ChannelKind::Sms | ChannelKind::Voice, _) => match &self.sms {
                Some(sms) => sms.send(channel, out).await,
                None => Delivered::Refused {
                    error: "no SMS provider is configured ([notify.sms])".into(),
                },
            },
            _ => self.http.deliver(channel, out).await,
        }
    }
}
