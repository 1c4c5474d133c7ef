//! The application's transaction: the store's, wrapped so that no audit
//! append can skip what every append needs. Sensitive values are sealed
//! before they reach the store (seed 001 No.50, `seal.rs`), and what each
//! appended event says is kept for detection once the transaction commits
//! (seed 001 No.29, `detection.rs`); every outbox message is fanned out to
//! the deliveries of the channels that take it (`notify.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kiroku_domain::alert::{Alert, Integration, Service};
use kiroku_domain::detection::Observation;
use kiroku_domain::escalation::{Escalation, Policy};
use kiroku_domain::notify::Channel;
use kiroku_domain::schedule::Schedule;
use kiroku_domain::{AuditEvent, Incident, OutboxMessage, TimelineEntry};
use kiroku_store::{
    AlertGroup, ArchiveRecord, ChangeRecord, DeliveryRecord, Durable, IncidentKey,
    Result as StoreResult, SessionRecord, ThrottleRecord, TokenRecord, Tx, UserRecord,
};
use uuid::Uuid;

use crate::detection::Detection;
use crate::escalation::Escalator;
use crate::incidents::incident_target;
use crate::notify::Notifier;
use crate::seal::{SealKeys, subject_of};

pub(crate) struct AppTx {
    inner: Box<dyn Tx>,
    seal: Option<SealKeys>,
    /// The detector, and what this transaction's events said.
    observed: Option<(Arc<Detection>, Vec<Observation>)>,
    notifier: Arc<Notifier>,
    /// Deliveries were made: the worker is woken after the commit.
    delivering: bool,
    escalator: Arc<Escalator>,
    /// Escalations were started or woken: their worker looks after the commit.
    escalating: bool,
    /// Incidents opened by this transaction, until their alert names a policy.
    declared: HashSet<Uuid>,
}

impl AppTx {
    pub(crate) fn new(
        inner: Box<dyn Tx>,
        seal: Option<SealKeys>,
        detection: Option<Arc<Detection>>,
        notifier: Arc<Notifier>,
        escalator: Arc<Escalator>,
    ) -> Self {
        AppTx {
            inner,
            seal,
            observed: detection.map(|d| (d, Vec::new())),
            notifier,
            delivering: false,
            escalator,
            escalating: false,
            declared: HashSet::new(),
        }
    }

    fn observe(&mut self, events: &[AuditEvent]) {
        if let Some((_, seen)) = &mut self.observed {
            seen.extend(events.iter().map(Observation::of));
        }
    }
}

#[async_trait]
impl Tx for AppTx {
    async fn append_audit(&mut self, event: &AuditEvent) -> StoreResult<i64> {
        self.observe(std::slice::from_ref(event));
        match &mut self.seal {
            Some(keys) if keys.applies_to(&event.target.kind) => {
                let sealed = keys.seal(&mut *self.inner, event).await?;
                self.inner.append_audit(&sealed).await
            }
            _ => self.inner.append_audit(event).await,
        }
    }
    async fn append_audit_batch(&mut self, events: Vec<AuditEvent>) -> StoreResult<Vec<i64>> {
        self.observe(&events);
        match &mut self.seal {
            Some(keys) if events.iter().any(|e| keys.applies_to(&e.target.kind)) => {
                let mut sealed = Vec::with_capacity(events.len());
                for e in &events {
                    sealed.push(keys.seal(&mut *self.inner, e).await?);
                }
                self.inner.append_audit_batch(sealed).await
            }
            _ => self.inner.append_audit_batch(events).await,
        }
    }
    async fn next_incident_number(&mut self, prefix: &str, year: i16) -> StoreResult<i64> {
        self.inner.next_incident_number(prefix, year).await
    }
    async fn insert_incident(&mut self, i: &Incident) -> StoreResult<()> {
        self.inner.insert_incident(i).await?;
        if let Some(keys) = &mut self.seal {
            keys.made(subject_of(&incident_target(i)));
        }
        Ok(())
    }
    async fn incident_for_update(&mut self, key: &IncidentKey) -> StoreResult<Option<Incident>> {
        self.inner.incident_for_update(key).await
    }
    async fn incidents_for_update(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Incident>> {
        self.inner.incidents_for_update(ids).await
    }
    async fn update_incident(&mut self, i: &Incident, expected_version: i64) -> StoreResult<()> {
        self.inner.update_incident(i, expected_version).await
    }
    async fn append_timeline_entries(&mut self, entries: &[TimelineEntry]) -> StoreResult<()> {
        self.inner.append_timeline_entries(entries).await
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
        if let Some(keys) = &mut self.seal {
            keys.forget(subject);
        }
        self.inner.shred_subject(subject, at).await
    }
    async fn archive_audit(&mut self, a: &ArchiveRecord) -> StoreResult<u64> {
        self.inner.archive_audit(a).await
    }
    async fn enqueue(&mut self, m: &[OutboxMessage]) -> StoreResult<()> {
        self.inner.enqueue(m).await?;
        let deliveries = self.notifier.fan_out(m);
        if !deliveries.is_empty() {
            self.inner.insert_deliveries(&deliveries).await?;
            self.delivering = true;
        }
        if self
            .escalator
            .follow(&mut *self.inner, m, &mut self.declared)
            .await?
        {
            self.escalating = true;
        }
        Ok(())
    }
    async fn insert_deliveries(&mut self, d: &[DeliveryRecord]) -> StoreResult<()> {
        self.delivering |= !d.is_empty();
        self.inner.insert_deliveries(d).await
    }
    async fn update_delivery(&mut self, d: &DeliveryRecord) -> StoreResult<()> {
        self.inner.update_delivery(d).await
    }
    async fn insert_channel(&mut self, c: &Channel) -> StoreResult<()> {
        self.inner.insert_channel(c).await
    }
    async fn update_channel(&mut self, c: &Channel) -> StoreResult<()> {
        self.inner.update_channel(c).await
    }
    async fn insert_policy(&mut self, p: &Policy) -> StoreResult<()> {
        self.inner.insert_policy(p).await
    }
    async fn update_policy(&mut self, p: &Policy, expected_version: i64) -> StoreResult<()> {
        self.inner.update_policy(p, expected_version).await
    }
    async fn insert_schedule(&mut self, s: &Schedule) -> StoreResult<()> {
        self.inner.insert_schedule(s).await
    }
    async fn update_schedule(&mut self, s: &Schedule, expected_version: i64) -> StoreResult<()> {
        self.inner.update_schedule(s, expected_version).await
    }
    async fn escalations_for_update(&mut self, incidents: &[Uuid]) -> StoreResult<Vec<Escalation>> {
        self.inner.escalations_for_update(incidents).await
    }
    async fn save_escalation(
        &mut self,
        e: &Escalation,
        due_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        self.escalating |= due_at.is_some();
        self.inner.save_escalation(e, due_at).await
    }
    async fn cancel_pages(&mut self, incident: Uuid, at: Timestamp) -> StoreResult<u64> {
        self.inner.cancel_pages(incident, at).await
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
    async fn integration_for_update(&mut self, id: Uuid) -> StoreResult<Option<Integration>> {
        self.inner.integration_for_update(id).await
    }
    async fn open_alerts_and_groups(
        &mut self,
        integrations: &[Uuid],
        keys: &[(Uuid, String)],
        groups: &[AlertGroup],
    ) -> StoreResult<(Vec<Alert>, Vec<Option<Uuid>>)> {
        self.inner
            .open_alerts_and_groups(integrations, keys, groups)
            .await
    }
    async fn save_alerts(&mut self, alerts: &[Alert]) -> StoreResult<()> {
        self.inner.save_alerts(alerts).await
    }
    async fn open_alerts_of_incident(&mut self, incident: Uuid) -> StoreResult<Vec<Uuid>> {
        self.inner.open_alerts_of_incident(incident).await
    }
    async fn hold_open_alerts_of_incident(
        &mut self,
        incident: &IncidentKey,
    ) -> StoreResult<Vec<Alert>> {
        self.inner.hold_open_alerts_of_incident(incident).await
    }
    async fn insert_service_change(&mut self, c: &ChangeRecord) -> StoreResult<()> {
        self.inner.insert_service_change(c).await
    }
    async fn mark_intake_journal_applied(&mut self, journal: Uuid, seq: u64) -> StoreResult<()> {
        self.inner.mark_intake_journal_applied(journal, seq).await
    }
    async fn mark_intake_replayed(&mut self, replay: Uuid) -> StoreResult<()> {
        self.inner.mark_intake_replayed(replay).await
    }
    async fn postmortem_for_update(
        &mut self,
        incident: Uuid,
    ) -> StoreResult<Option<kiroku_store::PostmortemRecord>> {
        self.inner.postmortem_for_update(incident).await
    }
    async fn save_postmortem(
        &mut self,
        record: &kiroku_store::PostmortemRecord,
        expected_version: i64,
    ) -> StoreResult<()> {
        self.inner.save_postmortem(record, expected_version).await
    }
    async fn insert_postmortem_version(
        &mut self,
        frozen: &kiroku_store::FrozenPostmortem,
    ) -> StoreResult<()> {
        self.inner.insert_postmortem_version(frozen).await
    }
    async fn replace_action_items(
        &mut self,
        incident: Uuid,
        items: &[kiroku_store::ActionItemRecord],
    ) -> StoreResult<()> {
        self.inner.replace_action_items(incident, items).await
    }
    async fn mark_action_item_reminded(&mut self, id: Uuid) -> StoreResult<()> {
        self.inner.mark_action_item_reminded(id).await
    }
    async fn obligations_for_update(
        &mut self,
        incident: Uuid,
    ) -> StoreResult<Vec<kiroku_store::ObligationRecord>> {
        self.inner.obligations_for_update(incident).await
    }
    async fn save_obligation(
        &mut self,
        record: &kiroku_store::ObligationRecord,
    ) -> StoreResult<()> {
        self.inner.save_obligation(record).await
    }
    async fn delete_obligation(&mut self, incident: Uuid, rule: &str) -> StoreResult<()> {
        self.inner.delete_obligation(incident, rule).await
    }
    async fn commit_visible(self: Box<Self>) -> StoreResult<Durable> {
        let AppTx {
            inner,
            observed,
            notifier,
            delivering,
            escalator,
            escalating,
            ..
        } = *self;
        let durable = inner.commit_visible().await?;
        // Workers act on what is durable, never on what a power cut could
        // still take back.
        Ok(Durable::after(async move {
            durable.wait().await?;
            if delivering {
                notifier.wake.notify_one();
            }
            if escalating {
                escalator.wake.notify_one();
            }
            // Only what was committed is observed: a rolled-back attempt
            // left its own refusal event, which is observed in its turn.
            if let Some((detection, seen)) = observed {
                detection.observe(&seen);
            }
            Ok(())
        }))
    }
}
