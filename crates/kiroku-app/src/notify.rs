//! Notifications that are never lost: every outbox message people are told
//! of becomes one delivery per channel that takes its level, written by the
//! app's transaction (`tx.rs`) in the same commit as the message, so no
//! change can happen without its deliveries. A worker takes due deliveries
//! under a hold (skipping other nodes' rows), hands them to a [`Courier`],
//! and records each outcome — sent, failed and due again after a back-off,
//! or dead — with its audit event and an incident timeline entry. A crash
//! between sending and recording sends again once the hold lapses, with the
//! same idempotency key, so receivers see each notification once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kiroku_domain::alert::AlertLevel;
use kiroku_domain::notify::{
    Bucket, Channel, ChannelKind, Notice, Outgoing, RATE_PER_MINUTE_MAX, RetryPolicy, render,
};
use kiroku_domain::{
    Actor, AuditEvent, Operation, OutboxMessage, Permission, Source, Target, TimelineEntry,
    TimelineKind, validate,
};
use kiroku_store::{DeliveryRecord, DeliveryStatus, Result as StoreResult, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{App, AppError, Caller, Result};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Sent,
    /// Worth trying again: the receiver is down, slow, or asked us to wait.
    Retry {
        error: String,
        retry_after: Option<SignedDuration>,
    },
    /// The receiver refused it for good (a 4xx other than 429).
    Refused {
        error: String,
    },
}

/// Sends one message to one channel. The server's speaks HTTP.
#[async_trait]
pub trait Courier: Send + Sync {
    async fn deliver(&self, channel: &Channel, outgoing: &Outgoing) -> Delivered;
}

#[derive(Debug, Clone)]
pub struct NotifyPolicy {
    pub retry: RetryPolicy,
    /// Kiroku's own address as people reach it, for links in messages.
    pub public_url: Option<String>,
    /// How long a worker holds the deliveries it took; longer than any
    /// attempt may take.
    pub hold: SignedDuration,
    /// Signs acknowledgement links and calendar feeds; without it, pages
    /// carry no link (replies and the API still acknowledge).
    pub link_key: Option<crate::LinkKey>,
    /// How long an acknowledgement link works.
    pub ack_link_ttl: SignedDuration,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        NotifyPolicy {
            retry: RetryPolicy::default(),
            public_url: None,
            hold: SignedDuration::from_secs(60),
            link_key: None,
            ack_link_ttl: SignedDuration::from_hours(24),
        }
    }
}

/// How long the channel list is used before it is read again.
const CHANNELS_TTL: Duration = Duration::from_secs(1);
/// Deliveries in flight at once, across channels.
const IN_FLIGHT_MAX: usize = 32;
/// The longest a worker sleeps with nothing due: work made by this process
/// wakes it at once; this bounds how late it notices what another node
/// made without working on it itself.
const IDLE_MAX: Duration = Duration::from_secs(5);

/// How long a worker sleeps: until `next` is due, at most [`IDLE_MAX`].
pub(crate) fn idle_wait(next: StoreResult<Option<Timestamp>>, now: Timestamp) -> Duration {
    match next {
        Ok(Some(at)) => {
            let ms = at
                .duration_since(now)
                .as_millis()
                .clamp(0, IDLE_MAX.as_millis() as i128);
            Duration::from_millis(ms as u64)
        }
        Ok(None) => IDLE_MAX,
        // The database is away: look again soon.
        Err(_) => Duration::from_secs(1),
    }
}

pub(crate) struct Notifier {
    store: Arc<dyn Store>,
    channels: Mutex<Option<(Instant, Arc<Vec<Channel>>)>>,
    pub(crate) wake: tokio::sync::Notify,
    /// Severity keys, most severe first, to give declared incidents a level.
    severities: Vec<String>,
    public_url: Option<String>,
}

impl Notifier {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        severities: Vec<String>,
        public_url: Option<String>,
    ) -> Self {
        Notifier {
            store,
            channels: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            severities,
            public_url,
        }
    }

    /// The channels, read again when the copy is older than a second.
    /// Called before a transaction begins, never inside one: on PostgreSQL
    /// reads share the pool with writers, and a transaction waiting for a
    /// second connection could wait for ever.
    pub(crate) async fn channels(&self) -> StoreResult<Arc<Vec<Channel>>> {
        if let Some(list) = self.cached(CHANNELS_TTL) {
            return Ok(list);
        }
        let list = Arc::new(self.store.channels().await?);
        *self.channels.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The copy `App::begin` refreshed before the transaction began: for
    /// use inside one, where a read could wait on the pool the
    /// transaction holds.
    pub(crate) fn in_transaction(&self) -> Arc<Vec<Channel>> {
        self.cached(Duration::MAX).unwrap_or_default()
    }

    fn cached(&self, ttl: Duration) -> Option<Arc<Vec<Channel>>> {
        match &*self.channels.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, list)) if at.elapsed() < ttl => Some(list.clone()),
            _ => None,
        }
    }

    /// Marks the copy stale, to be read again before the next transaction.
    /// The copy itself stays: a transaction under way keeps using it.
    pub(crate) fn forget_channels(&self) {
        let mut slot = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, _)) = slot.as_mut() {
            *at = Instant::now() - CHANNELS_TTL;
        }
    }

    /// The first two severities page as critical, the third warns, the rest inform.
    pub(crate) fn level_of(&self, severity: &str) -> AlertLevel {
        match self.severities.iter().position(|s| s == severity) {
            Some(0 | 1) => AlertLevel::Critical,
            Some(2) => AlertLevel::Warning,
            _ => AlertLevel::Info,
        }
    }

    pub(crate) fn link(&self, notice: &Notice) -> Option<String> {
        let base = self.public_url.as_deref()?.trim_end_matches('/');
        notice
            .incident_id
            .map(|id| format!("{base}/api/v1/incidents/{id}"))
    }

    /// The deliveries `messages` make: one per channel taking each notice's
    /// level, by the channel list read when the transaction began.
    pub(crate) fn fan_out(&self, messages: &[OutboxMessage]) -> Vec<DeliveryRecord> {
        let channels = self.in_transaction();
        if channels.is_empty() {
            return Vec::new();
        }
        let notices: Vec<(&OutboxMessage, Notice)> = messages
            .iter()
            .filter_map(|m| Notice::of(m, |s| self.level_of(s)).map(|n| (m, n)))
            .collect();
        let mut out = Vec::new();
        for (m, notice) in notices {
            let link = self.link(&notice);
            // People's own contact methods are reached through escalation,
            // and by a message addressed to them (a reminder of their duty).
            let recipient: Option<Uuid> = m
                .payload
                .get("recipient")
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            let reached = channels
                .iter()
                .filter(|c| c.is_shared() || recipient.is_some_and(|u| c.is_method_of(u)));
            for c in reached.filter(|c| c.levels.contains(&notice.level)) {
                let key = format!("{}:{}", m.idempotency_key, c.id);
                let body = render(c.kind, &notice, link.as_deref(), &key).to_string();
                out.push(DeliveryRecord {
                    id: Uuid::now_v7(),
                    channel_id: c.id,
                    idempotency_key: key,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    due_at: m.created_at,
                    created_at: m.created_at,
                    notice: notice.clone(),
                    body,
                    last_error: None,
                    sent_at: None,
                    page: false,
                });
            }
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub levels: Option<Vec<AlertLevel>>,
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
}

/// A channel as the API shows it: the URL only in part, the secret never.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    pub url: String,
    pub signed: bool,
    pub levels: Vec<AlertLevel>,
    pub rate_per_minute: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
    pub delay_minutes: u32,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<Timestamp>,
}

impl From<&Channel> for ChannelView {
    fn from(c: &Channel) -> Self {
        ChannelView {
            id: c.id,
            name: c.name.clone(),
            kind: c.kind,
            url: c.url_shown(),
            signed: c.secret.is_some(),
            levels: c.levels.clone(),
            rate_per_minute: c.rate_per_minute,
            owner: c.owner,
            delay_minutes: c.delay_minutes,
            created_at: c.created_at,
            removed_at: c.removed_at,
        }
    }
}

const SECRET_MIN: usize = 16;
const SECRET_MAX: usize = 256;

impl App {
    pub async fn create_channel(&self, caller: &Caller, input: NewChannel) -> Result<ChannelView> {
        caller.require(Permission::ServiceManage)?;
        let name = validate::line("name", &input.name, validate::SHORT_MAX, true)?;
        if name.starts_with('@') {
            return Err(AppError::invalid(
                "name",
                "reserved",
                "names starting with @ are people's contact methods",
            ));
        }
        let channel = self.checked_channel(NewChannel { name, ..input }, "url")?;
        self.insert_channel(caller, channel).await
    }

    /// A channel from `input`, checked; `address_field` names its address
    /// in errors.
    pub(crate) fn checked_channel(
        &self,
        input: NewChannel,
        address_field: &str,
    ) -> Result<Channel> {
        let kind = ChannelKind::parse(&input.kind).ok_or_else(|| {
            AppError::invalid(
                "type",
                "unknown_value",
                format!("must be one of: {}", ChannelKind::NAMES),
            )
        })?;
        let url = kind.checked_address(address_field, &input.url)?;
        let secret = match input.secret {
            Some(s) if !(SECRET_MIN..=SECRET_MAX).contains(&s.len()) => {
                return Err(AppError::invalid(
                    "secret",
                    "out_of_range",
                    format!("must be {SECRET_MIN} to {SECRET_MAX} bytes"),
                ));
            }
            Some(_) if kind != ChannelKind::Webhook => {
                return Err(AppError::invalid(
                    "secret",
                    "not_allowed",
                    "only webhook channels sign their messages",
                ));
            }
            s => s,
        };
        let levels = input.levels.unwrap_or_else(|| kind.default_levels());
        if levels.is_empty() {
            return Err(AppError::invalid(
                "levels",
                "required",
                "must name at least one level",
            ));
        }
        let rate = input.rate_per_minute.unwrap_or(60);
        if !(1..=RATE_PER_MINUTE_MAX).contains(&rate) {
            return Err(AppError::invalid(
                "rate_per_minute",
                "out_of_range",
                format!("must be between 1 and {}", RATE_PER_MINUTE_MAX),
            ));
        }
        Ok(Channel {
            id: Uuid::now_v7(),
            name: input.name,
            kind,
            url,
            secret,
            levels,
            rate_per_minute: rate,
            owner: None,
            delay_minutes: 0,
            created_at: self.now(),
            removed_at: None,
        })
    }

    pub(crate) async fn insert_channel(
        &self,
        caller: &Caller,
        channel: Channel,
    ) -> Result<ChannelView> {
        let now = channel.created_at;
        let view = ChannelView::from(&channel);
        let mut tx = self.begin().await?;
        tx.insert_channel(&channel)
            .await
            .map_err(crate::error::duplicate_of("channel", "name"))?;
        let action = if channel.owner.is_some() {
            "contact_method_create"
        } else {
            "channel_create"
        };
        // The URL of a chat webhook is a credential: the log names the host only.
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Create,
                    action,
                    Target::new("channel", Some(channel.id.to_string())),
                )
                .with_change(None, Some(json!(view))),
        )
        .await?;
        tx.commit().await?;
        self.notifier.forget_channels();
        Ok(view)
    }

    /// Removes a shared channel: nothing new goes to it; deliveries still
    /// waiting become dead letters saying so.
    pub async fn remove_channel(&self, caller: &Caller, id: Uuid) -> Result<ChannelView> {
        caller.require(Permission::ServiceManage)?;
        let channel = self
            .store
            .channels()
            .await?
            .into_iter()
            .find(|c| c.id == id && c.is_shared())
            .ok_or(AppError::NotFound { what: "channel" })?;
        self.retire_channel(caller, channel, "channel_remove").await
    }

    /// Marks `channel` removed, with its audit event.
    pub(crate) async fn retire_channel(
        &self,
        caller: &Caller,
        mut channel: Channel,
        action: &str,
    ) -> Result<ChannelView> {
        let now = self.now();
        channel.removed_at = Some(now);
        let view = ChannelView::from(&channel);
        let mut tx = self.begin().await?;
        tx.update_channel(&channel).await?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Delete,
                    action,
                    Target::new("channel", Some(channel.id.to_string())),
                )
                .with_change(Some(json!(view)), None),
        )
        .await?;
        tx.commit().await?;
        self.notifier.forget_channels();
        Ok(view)
    }

    pub async fn list_channels(&self, caller: &Caller) -> Result<Vec<ChannelView>> {
        caller.require(Permission::ServiceManage)?;
        Ok(self
            .store
            .channels()
            .await?
            .iter()
            .filter(|c| c.is_shared())
            .map(ChannelView::from)
            .collect())
    }

    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        caller.require(Permission::ServiceManage)?;
        let status = status
            .map(|s| {
                DeliveryStatus::parse(s).ok_or_else(|| {
                    AppError::invalid(
                        "status",
                        "unknown_value",
                        "must be one of: pending, sent, dead, cancelled",
                    )
                })
            })
            .transpose()?;
        Ok(self.store.deliveries(status, limit).await?)
    }

    /// Sends due deliveries through `courier` until the app is dropped.
    pub async fn run_notifications(self, courier: Arc<dyn Courier>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
        // Each channel's rate, kept by the node that sends.
        let mut buckets: HashMap<Uuid, Bucket> = HashMap::new();
        loop {
            let free = slots.available_permits();
            if free > 0 {
                let now = self.now();
                match self
                    .store
                    .claim_deliveries(now, now + self.config.notify.hold, free as i64)
                    .await
                {
                    Ok(taken) if !taken.is_empty() => {
                        let channels = self.notifier.channels().await.unwrap_or_default();
                        for d in taken {
                            let rate = channels
                                .iter()
                                .find(|c| c.id == d.channel_id)
                                .map_or(RATE_PER_MINUTE_MAX, |c| c.rate_per_minute);
                            let bucket = buckets
                                .entry(d.channel_id)
                                .or_insert_with(|| Bucket::full(rate, now));
                            if let Err(wait) = bucket.take(rate, now) {
                                if let Err(e) = self.store.defer_delivery(d.id, now + wait).await {
                                    tracing::warn!(error = %e, "could not defer a delivery");
                                }
                                continue;
                            }
                            let Ok(slot) = slots.clone().acquire_owned().await else {
                                return;
                            };
                            let (app, courier) = (self.clone(), courier.clone());
                            tokio::spawn(async move {
                                app.attempt(courier.as_ref(), d).await;
                                drop(slot);
                            });
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not take due deliveries"),
                }
            }
            let now = self.now();
            let wait = idle_wait(self.store.next_delivery_at(now).await, now);
            tokio::select! {
                _ = self.notifier.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One attempt at one delivery, and its record.
    async fn attempt(&self, courier: &dyn Courier, mut d: DeliveryRecord) {
        let channel = match self.notifier.channels().await {
            Ok(list) => list.iter().find(|c| c.id == d.channel_id).cloned(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read channels; the delivery waits");
                return;
            }
        };
        let outcome = match &channel {
            Some(c) if c.removed_at.is_some() => Delivered::Refused {
                error: "the channel was removed".into(),
            },
            Some(c) => {
                let out = Outgoing {
                    body: d.body.clone(),
                    idempotency_key: d.idempotency_key.clone(),
                };
                courier.deliver(c, &out).await
            }
            None => Delivered::Refused {
                error: "the channel no longer exists".into(),
            },
        };
        let now = self.now();
        d.attempts += 1;
        let action = match &outcome {
            Delivered::Sent => {
                d.status = DeliveryStatus::Sent;
                d.sent_at = Some(now);
                d.last_error = None;
                "notification_sent"
            }
            Delivered::Retry { error, retry_after }
                if d.attempts < self.config.notify.retry.max_attempts =>
            {
                let jitter = f64::from(random_u16()) / 65_536.0;
                d.due_at = now
                    + self
                        .config
                        .notify
                        .retry
                        .delay(d.attempts, jitter, *retry_after);
                d.last_error = Some(error.clone());
                "notification_failed"
            }
            Delivered::Retry { error, .. } | Delivered::Refused { error } => {
                d.status = DeliveryStatus::Dead;
                d.last_error = Some(error.clone());
                "notification_dead"
            }
        };
        if let Err(e) = self.record_attempt(&d, channel.as_ref(), action, now).await {
            // The hold lapses and the delivery is tried again.
            tracing::error!(error = %e, delivery = %d.id, "could not record a delivery attempt");
        }
    }

    async fn record_attempt(
        &self,
        d: &DeliveryRecord,
        channel: Option<&Channel>,
        action: &str,
        now: Timestamp,
    ) -> Result<()> {
        let channel_name = channel.map_or("(removed)", |c| c.name.as_str());
        let detail = json!({
            "channel": channel_name,
            "type": channel.map(|c| c.kind),
            "topic": d.notice.topic,
            "level": d.notice.level,
            "attempt": d.attempts,
            "idempotency_key": d.idempotency_key,
            "error": d.last_error,
            "next_attempt_at": (d.status == DeliveryStatus::Pending).then_some(d.due_at),
        });
        let mut tx = self.begin().await?;
        tx.update_delivery(d).await?;
        // The timeline entry first: it takes a share lock on the incident,
        // and a transition locks the incident before the audit head, so
        // taking them in the same order cannot deadlock.
        if let Some(incident_id) = d.notice.incident_id {
            let body = match d.status {
                DeliveryStatus::Sent => format!("notified {channel_name}"),
                DeliveryStatus::Pending => format!(
                    "notifying {channel_name} failed (attempt {}); trying again",
                    d.attempts
                ),
                DeliveryStatus::Dead => format!("notifying {channel_name} failed for good"),
                DeliveryStatus::Cancelled => format!("page to {channel_name} cancelled"),
            };
            tx.append_timeline(&TimelineEntry {
                id: Uuid::now_v7(),
                incident_id,
                at: now,
                kind: TimelineKind::Notification,
                actor: None,
                body,
                data: detail.clone(),
            })
            .await?;
        }
        let mut event = AuditEvent::success(
            now,
            &Actor::system(),
            &Source::system(),
            Operation::Execute,
            action,
            Target::new("delivery", Some(d.id.to_string())),
        )
        .with_change(None, Some(detail));
        if d.status != DeliveryStatus::Sent {
            event = event.failure(if d.status == DeliveryStatus::Dead {
                "delivery_dead"
            } else {
                "delivery_failed"
            });
        }
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // Jitter only spreads retries; a failed random source means none.
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b)
}
