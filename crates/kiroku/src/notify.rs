//! Notifications over HTTP: the courier that posts each delivery to its
//! channel's webhook. Webhook channels with a secret are signed:
//!
//! - `X-Kiroku-Timestamp`: seconds since the epoch, at sending;
//! - `X-Kiroku-Signature`: `v1=` and the hex HMAC-SHA256, under the
//!   channel's secret, of the timestamp, a `.`, and the body.
//!
//! Receivers recompute it and refuse stale timestamps (replays). Every
//! request carries `Idempotency-Key`, the same on every attempt.

use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use kiroku_app::{Courier, Delivered};
use kiroku_domain::notify::{Channel, Outgoing};
use reqwest::StatusCode;
use sha2::Sha256;

pub struct HttpCourier {
    client: reqwest::Client,
}

impl HttpCourier {
    pub fn new() -> anyhow::Result<Self> {
        Ok(HttpCourier {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .user_agent(concat!("kiroku/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }
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
        // Errors name no URL: a chat webhook's URL is its credential.
        match req.body(out.body.clone()).send().await {
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
                if res.status().is_server_error()
                    || res.status() == StatusCode::REQUEST_TIMEOUT =>
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
}
