//! Sensitive values in audit events (seed 001 No.50): sealed before they are
//! hashed, by a transaction decorator, so that no append can skip it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kiroku_audit::seal::{at_path, open_value, seal_value, sealed_by, unwrap_key, wrap_key};
use kiroku_domain::alert::{Alert, Integration, Service};
use kiroku_domain::{AuditEvent, Incident, OutboxMessage, Permission, TimelineEntry};
use kiroku_store::{
    ChangeRecord, IncidentKey, Result as StoreResult, SessionRecord, StoreError, ThrottleRecord,
    TokenRecord, Tx, UserRecord,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{App, AppError, Caller, Result};

/// What happens to sensitive values: encrypted (production), masked for
/// good (development, where no one needs them back), or kept (off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealMode {
    Encrypt,
    Mask,
    Off,
}

/// Paths under an event's `before` / `after` that hold sensitive values,
/// for events about targets of one kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRule {
    pub target: String,
    /// e.g. `after.personal_data`, or `before` for the whole value.
    pub paths: Vec<String>,
}

pub struct Sealer {
    pub kek: [u8; 32],
    pub mode: SealMode,
    pub rules: Vec<SealRule>,
}

impl Sealer {
    /// Personal-data facts of incidents and users' email addresses.
    pub fn default_rules() -> Vec<SealRule> {
        let both = |field: &str| vec![format!("before.{field}"), format!("after.{field}")];
        vec![
            SealRule {
                target: "incident".into(),
                paths: both("personal_data"),
            },
            SealRule {
                target: "user".into(),
                paths: both("email"),
            },
        ]
    }

    fn paths(&self, target: &str) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter(move |r| r.target == target)
            .flat_map(|r| r.paths.iter().map(String::as_str))
    }
}

fn random<const N: usize>() -> StoreResult<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| StoreError::Backend(format!("random source: {e}")))?;
    Ok(b)
}

/// The value at `before.x.y` / `after.x.y` of an event.
fn value_at<'a>(event: &'a mut AuditEvent, path: &str) -> Option<&'a mut Value> {
    let (side, rest) = path
        .split_once('.')
        .map_or((path, None), |(s, r)| (s, Some(r)));
    let root = match side {
        "before" => event.before.as_mut()?,
        "after" => event.after.as_mut()?,
        _ => return None,
    };
    match rest {
        Some(rest) => at_path(root, rest),
        None => Some(root),
    }
}

/// A transaction that seals sensitive values of every audit event it appends.
pub(crate) struct SealingTx {
    inner: Box<dyn Tx>,
    sealer: Arc<Sealer>,
    keys: HashMap<String, (i64, [u8; 32])>,
}

impl SealingTx {
    pub(crate) fn new(inner: Box<dyn Tx>, sealer: Arc<Sealer>) -> Self {
        SealingTx {
            inner,
            sealer,
            keys: HashMap::new(),
        }
    }

    /// The subject's live data key, made (or remade after a shred) on first use.
    async fn key(&mut self, subject: &str) -> StoreResult<(i64, [u8; 32])> {
        if let Some(k) = self.keys.get(subject) {
            return Ok(*k);
        }
        let key = match self.inner.current_subject_key(subject).await? {
            Some((generation, Some(wrapped))) => {
                let dek = unwrap_key(&self.sealer.kek, &wrapped)
                    .map_err(|e| StoreError::Corrupt(format!("data key of {subject}: {e}")))?;
                (generation, dek)
            }
            current => {
                let generation = current.map_or(1, |(g, _)| g + 1);
                let dek = random::<32>()?;
                let wrapped = wrap_key(&self.sealer.kek, &dek, random::<24>()?);
                self.inner
                    .insert_subject_key(subject, generation, &wrapped, Timestamp::now())
                    .await?;
                (generation, dek)
            }
        };
        self.keys.insert(subject.to_string(), key);
        Ok(key)
    }

    async fn seal(&mut self, event: &AuditEvent) -> StoreResult<AuditEvent> {
        let mut event = event.clone();
        let sealer = self.sealer.clone();
        let subject = format!(
            "{}:{}",
            event.target.kind,
            event.target.id.as_deref().unwrap_or("-")
        );
        let kind = event.target.kind.clone();
        for path in sealer.paths(&kind) {
            let Some(value) = value_at(&mut event, path)
                .filter(|v| !v.is_null())
                .map(|v| v.take())
            else {
                continue;
            };
            let replacement = match sealer.mode {
                SealMode::Off => value,
                SealMode::Mask => json!("[masked]"),
                SealMode::Encrypt => {
                    let (generation, dek) = self.key(&subject).await?;
                    seal_value(&dek, &subject, generation, &value, random::<24>()?)
                }
            };
            if let Some(slot) = value_at(&mut event, path) {
                *slot = replacement;
            }
        }
        Ok(event)
    }
}

#[async_trait]
impl Tx for SealingTx {
    async fn append_audit(&mut self, event: &AuditEvent) -> StoreResult<i64> {
        if self.sealer.paths(&event.target.kind).next().is_none() {
            return self.inner.append_audit(event).await;
        }
        let sealed = self.seal(event).await?;
        self.inner.append_audit(&sealed).await
    }
    async fn append_audit_batch(&mut self, events: &[AuditEvent]) -> StoreResult<Vec<i64>> {
        if events
            .iter()
            .all(|e| self.sealer.paths(&e.target.kind).next().is_none())
        {
            return self.inner.append_audit_batch(events).await;
        }
        let mut sealed = Vec::with_capacity(events.len());
        for e in events {
            sealed.push(self.seal(e).await?);
        }
        self.inner.append_audit_batch(&sealed).await
    }
    async fn next_incident_number(&mut self, prefix: &str, year: i16) -> StoreResult<i64> {
        self.inner.next_incident_number(prefix, year).await
    }
    async fn insert_incident(&mut self, i: &Incident) -> StoreResult<()> {
        self.inner.insert_incident(i).await
    }
    async fn incident_for_update(&mut self, key: &IncidentKey) -> StoreResult<Option<Incident>> {
        self.inner.incident_for_update(key).await
    }
    async fn update_incident(&mut self, i: &Incident, expected_version: i64) -> StoreResult<()> {
        self.inner.update_incident(i, expected_version).await
    }
    async fn append_timeline(&mut self, e: &TimelineEntry) -> StoreResult<()> {
        self.inner.append_timeline(e).await
    }
    async fn insert_user(&mut self, u: &UserRecord) -> StoreResult<()> {
        self.inner.insert_user(u).await
    }
    async fn update_user(&mut self, u: &UserRecord) -> StoreResult<()> {
        self.inner.update_user(u).await
    }
    async fn insert_token(&mut self, t: &TokenRecord) -> StoreResult<()> {
        self.inner.insert_token(t).await
    }
    async fn revoke_token(&mut self, id: Uuid, at: Timestamp) -> StoreResult<bool> {
        self.inner.revoke_token(id, at).await
    }
    async fn insert_session(&mut self, s: &SessionRecord) -> StoreResult<()> {
        self.inner.insert_session(s).await
    }
    async fn delete_session(&mut self, hash: &str) -> StoreResult<bool> {
        self.inner.delete_session(hash).await
    }
    async fn count_failure(
        &mut self,
        key: &str,
        at: Timestamp,
        before: Timestamp,
    ) -> StoreResult<ThrottleRecord> {
        self.inner.count_failure(key, at, before).await
    }
    async fn lock_key(&mut self, key: &str, until: Timestamp) -> StoreResult<()> {
        self.inner.lock_key(key, until).await
    }
    async fn clear_failures(&mut self, key: &str) -> StoreResult<()> {
        self.inner.clear_failures(key).await
    }
    async fn insert_audit_key(
        &mut self,
        key_id: &str,
        public_hex: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.inner.insert_audit_key(key_id, public_hex, at).await
    }
    async fn current_subject_key(
        &mut self,
        subject: &str,
    ) -> StoreResult<Option<(i64, Option<String>)>> {
        self.inner.current_subject_key(subject).await
    }
    async fn insert_subject_key(
        &mut self,
        subject: &str,
        generation: i64,
        wrapped: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.inner
            .insert_subject_key(subject, generation, wrapped, at)
            .await
    }
    async fn shred_subject(&mut self, subject: &str, at: Timestamp) -> StoreResult<u64> {
        self.keys.remove(subject);
        self.inner.shred_subject(subject, at).await
    }
    async fn enqueue(&mut self, m: &[OutboxMessage]) -> StoreResult<()> {
        self.inner.enqueue(m).await
    }
    async fn insert_service(&mut self, s: &Service) -> StoreResult<()> {
        self.inner.insert_service(s).await
    }
    async fn update_service(&mut self, s: &Service, expected_version: i64) -> StoreResult<()> {
        self.inner.update_service(s, expected_version).await
    }
    async fn insert_integration(&mut self, i: &Integration) -> StoreResult<()> {
        self.inner.insert_integration(i).await
    }
    async fn update_integration(&mut self, i: &Integration) -> StoreResult<()> {
        self.inner.update_integration(i).await
    }
    async fn open_alerts(&mut self, keys: &[(Uuid, String)]) -> StoreResult<Vec<Alert>> {
        self.inner.open_alerts(keys).await
    }
    async fn save_alerts(&mut self, alerts: &[Alert]) -> StoreResult<()> {
        self.inner.save_alerts(alerts).await
    }
    async fn open_alerts_of_incident(&mut self, incident: Uuid) -> StoreResult<Vec<Uuid>> {
        self.inner.open_alerts_of_incident(incident).await
    }
    async fn group_incident(
        &mut self,
        service: Uuid,
        group_key: &str,
        since: Timestamp,
    ) -> StoreResult<Option<Uuid>> {
        self.inner.group_incident(service, group_key, since).await
    }
    async fn insert_service_change(&mut self, c: &ChangeRecord) -> StoreResult<()> {
        self.inner.insert_service_change(c).await
    }
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.inner.commit().await
    }
}

/// Replaces every sealed value inside `v` with its plaintext (or a note
/// that it was shredded); returns the subjects opened.
async fn open_all(
    app: &App,
    kek: &[u8; 32],
    v: &mut Value,
    opened: &mut Vec<String>,
) -> Result<()> {
    if let Some((subject, generation)) = sealed_by(v) {
        let subject = subject.to_string();
        *v = match app.store.subject_key(&subject, generation).await? {
            Some(Some(wrapped)) => {
                let dek =
                    unwrap_key(kek, &wrapped).map_err(|e| AppError::Internal(e.to_string()))?;
                open_value(&dek, v).map_err(|e| AppError::Internal(e.to_string()))?
            }
            Some(None) => json!({ "kiroku_shredded": subject }),
            None => {
                return Err(AppError::Internal(format!(
                    "no data key {subject} #{generation}"
                )));
            }
        };
        opened.push(subject);
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                Box::pin(open_all(app, kek, x, opened)).await?;
            }
        }
        Value::Array(xs) => {
            for x in xs {
                Box::pin(open_all(app, kek, x, opened)).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl App {
    /// One audit event with its sealed values opened; the decrypting read
    /// is itself audited.
    pub async fn audit_event_opened(
        &self,
        caller: &Caller,
        seq: i64,
    ) -> Result<(AuditEvent, String)> {
        let (mut event, leaf) = self.audit_event(caller, seq).await?;
        let sealer = self
            .sealer
            .as_ref()
            .ok_or_else(|| AppError::Unavailable("no key-encryption key is configured".into()))?;
        let mut opened = Vec::new();
        for side in [&mut event.before, &mut event.after].into_iter().flatten() {
            open_all(self, &sealer.kek, side, &mut opened).await?;
        }
        if !opened.is_empty() {
            let e = AuditEvent::success(
                self.now(),
                &caller.actor(),
                &caller.source,
                kiroku_domain::Operation::Read,
                "audit_decrypt",
                kiroku_domain::Target::new("audit_event", Some(seq.to_string())),
            )
            .with_change(None, Some(json!({ "subjects": opened })));
            self.audit_only(e).await?;
        }
        Ok((event, leaf))
    }

    /// Destroys a subject's data keys (an erasure request): its sealed
    /// values can no longer be opened, and the tree still verifies.
    pub async fn shred_subject(&self, caller: &Caller, subject: &str) -> Result<u64> {
        caller.require(Permission::UserManage)?;
        let subject = kiroku_domain::validate::line("subject", subject, 300, true)?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let n = tx.shred_subject(&subject, now).await?;
        if n == 0 {
            return Err(AppError::NotFound {
                what: "live data key for that subject",
            });
        }
        let e = AuditEvent::success(
            now,
            &caller.actor(),
            &caller.source,
            kiroku_domain::Operation::Delete,
            "audit_subject_shred",
            kiroku_domain::Target::new("audit_subject", Some(subject)),
        )
        .with_change(None, Some(json!({ "keys_destroyed": n })));
        tx.append_audit(&e).await?;
        tx.commit().await?;
        Ok(n)
    }
}
