//! Escalation as the app runs it. An incident's escalation is a durable
//! timer row, started, acknowledged and stopped by the app transaction
//! (`tx.rs`) from the outbox messages of the same commit, so no incident
//! can open without one and no acknowledgement can miss it. A worker takes
//! due escalations under a hold and steps each in a transaction of its
//! own: the pure step (`kiroku_domain::escalation`) says who is paged, the
//! app turns targets into deliveries (people through their contact
//! methods, schedules through whoever is on call), and records the page on
//! the timeline and in the audit log in the same commit. A crash before the
//! commit leaves the escalation due; after it, the deliveries are durable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kiroku_domain::escalation::{
    DEFAULT_POLICY, Escalation, Facts, Page, PageTarget, Policy, PolicyDraft, ReescalateError,
};
use kiroku_domain::notify::{Channel, Notice, render};
use kiroku_domain::schedule::Schedule;
use kiroku_domain::{
    Incident, Operation, OutboxMessage, Permission, Status, Target, TimelineEntry, TimelineKind,
    Transition,
};
use kiroku_store::{
    DeliveryRecord, DeliveryStatus, IncidentKey, Result as StoreResult, Store, Tx, UserRecord,
};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::links::Link;
use crate::notify::idle_wait;
use crate::services::rename_routed_policy;
use crate::{App, AppError, Caller, Result};

/// How long the directory is used before it is read again.
const DIRECTORY_TTL: Duration = Duration::from_secs(1);
/// Escalations taken per claim.
const CLAIM_MAX: i64 = 64;
/// How long a worker holds the escalations it took (at most the
/// configured hold): a step is one short transaction, and a crashed
/// node's escalations must be taken up again promptly.
const HOLD_MAX: SignedDuration = SignedDuration::from_secs(10);

/// Who and what can be paged, read before a transaction begins (on
/// PostgreSQL a read inside one would wait on the pool it holds).
pub(crate) struct Directory {
    pub(crate) policies: Vec<Policy>,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) users: Vec<UserRecord>,
}

impl Directory {
    fn policy(&self, id: Option<Uuid>) -> Option<&Policy> {
        let id = id?;
        self.policies.iter().find(|p| p.id == id)
    }

    fn policy_named(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    fn user(&self, id: Uuid) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.id == id)
    }
}

pub(crate) struct Escalator {
    store: Arc<dyn Store>,
    directory: Mutex<Option<(Instant, Arc<Directory>)>>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Escalator {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Escalator {
            store,
            directory: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) async fn directory(&self) -> StoreResult<Arc<Directory>> {
        if let Some(d) = self.cached(DIRECTORY_TTL) {
            return Ok(d);
        }
        let d = Arc::new(Directory {
            policies: self.store.escalation_policies().await?,
            schedules: self.store.schedules().await?,
            users: self.store.users().await?,
        });
        *self.directory.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), d.clone()));
        Ok(d)
    }

    fn cached(&self, ttl: Duration) -> Option<Arc<Directory>> {
        match &*self.directory.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, d)) if at.elapsed() < ttl => Some(d.clone()),
            _ => None,
        }
    }

    /// Marks the copy stale, to be read again before the next transaction;
    /// a transaction under way keeps using it.
    pub(crate) fn forget(&self) {
        let mut slot = self.directory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, _)) = slot.as_mut() {
            *at = Instant::now() - DIRECTORY_TTL;
        }
    }

    /// Starts, acknowledges, stops or wakes escalations as `messages` say,
    /// inside the transaction that made them. Returns whether the worker
    /// should look again once it commits.
    /// `declared` gathers the incidents opened in this transaction: only
    /// those start an escalation when an alert names them (one an alert
    /// joins has its own, and locking it here, after the transaction's
    /// audit appends, would take locks out of order).
    pub(crate) async fn follow(
        &self,
        tx: &mut dyn Tx,
        messages: &[OutboxMessage],
        declared: &mut HashSet<Uuid>,
    ) -> StoreResult<bool> {
        let directory = self.cached(Duration::MAX);
        let policy = |name: Option<&str>| {
            let d = directory.as_deref()?;
            d.policy_named(name.unwrap_or(DEFAULT_POLICY))
                .or_else(|| {
                    // Routing refuses a policy that does not exist, and
                    // follows a rename; a routing set while its policy was
                    // being renamed can still name the old name.
                    tracing::warn!(
                        policy = name.unwrap_or(DEFAULT_POLICY),
                        "a routing names an escalation policy that does not exist; paging through the default one"
                    );
                    d.policy_named(DEFAULT_POLICY)
                })
                .cloned()
        };
        let mut woken = false;
        for m in messages {
            let p = &m.payload;
            let Some(incident) = p
                .get("incident_id")
                .and_then(|v| serde_json::from_value::<Uuid>(v.clone()).ok())
            else {
                continue;
            };
            let at = m.created_at;
            match m.topic.as_str() {
                // Declared from an alert: the alert's message names the policy.
                "incident.declared" => {
                    if p.get("origin").is_none_or(Value::is_null) {
                        start(tx, incident, policy(None), at).await?;
                        woken = true;
                    } else {
                        declared.insert(incident);
                    }
                }
                "alert.triggered" if declared.remove(&incident) => {
                    let named = p.get("escalation_policy").and_then(Value::as_str);
                    start(tx, incident, policy(named), at).await?;
                    woken = true;
                }
                "incident.status_changed" => {
                    let to = p.get("to").and_then(Value::as_str);
                    let Some(mut e) = tx.escalation_for_update(incident).await? else {
                        continue;
                    };
                    let policy = directory.as_deref().and_then(|d| d.policy(e.policy_id));
                    match to.and_then(Status::parse) {
                        // Investigating or mitigated straight from
                        // triggered counts as taken too.
                        Some(s) if s.is_open() && s != Status::Triggered && e.acknowledge(at) => {
                            tx.save_escalation(&e, e.due_at(policy)).await?;
                            tx.cancel_pages(incident, at).await?;
                        }
                        Some(s) if !s.is_open() => {
                            e.stop(at);
                            tx.save_escalation(&e, None).await?;
                            tx.cancel_pages(incident, at).await?;
                        }
                        _ => {}
                    }
                }
                // Rules on the incident's facts are looked at again now.
                "incident.updated" => {
                    if let Some(e) = tx.escalation_for_update(incident).await?
                        && e.is_active()
                    {
                        tx.save_escalation(&e, Some(at)).await?;
                        woken = true;
                    }
                }
                _ => {}
            }
        }
        Ok(woken)
    }
}

/// The escalation of an incident declared in this transaction: its first
/// step is due at once. The step reads the incident's own times. No read
/// for an escalation it has already: it cannot have one yet.
async fn start(
    tx: &mut dyn Tx,
    incident: Uuid,
    policy: Option<Policy>,
    at: Timestamp,
) -> StoreResult<()> {
    let e = Escalation::start(incident, policy.as_ref(), at, None, at);
    tx.save_escalation(&e, Some(at)).await
}

/// One escalation's step, worked out under its locks, not yet written.
struct PreparedStep {
    incident: Incident,
    escalation: Escalation,
    pages: Vec<Page>,
    breached: bool,
    at: Timestamp,
}

/// One recipient of a page.
struct Recipient<'a> {
    channel: &'a Channel,
    person: Option<&'a UserRecord>,
    delay_minutes: u32,
}

/// An escalation as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EscalationView {
    #[serde(flatten)]
    pub escalation: Escalation,
    pub policy: Option<String>,
    pub due_at: Option<Timestamp>,
}

/// What an acknowledgement from a page came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    Acknowledged,
    /// Someone was quicker; nothing changed.
    AlreadyAcknowledged,
    /// The incident is over; nothing changed.
    AlreadyResolved,
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

impl App {
    /// The default policy, shaped like seed 004, unless one exists.
    pub async fn ensure_default_policy(&self) -> Result<()> {
        if self
            .store
            .escalation_policy(DEFAULT_POLICY)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let policy = Policy::seed_004(&self.config.rules, Uuid::now_v7(), self.now());
        match self.insert_policy(&Caller::system(), policy).await {
            // Another node made it first.
            Ok(_) | Err(AppError::Duplicate { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn insert_policy(&self, caller: &Caller, policy: Policy) -> Result<Policy> {
        let mut tx = self.begin().await?;
        tx.insert_policy(&policy)
            .await
            .map_err(crate::error::duplicate_of("escalation policy", "name"))?;
        tx.append_audit(
            &caller
                .event(
                    policy.created_at,
                    Operation::Create,
                    "escalation_policy_create",
                    Target::new("escalation_policy", Some(policy.id.to_string())),
                )
                .with_change(None, Some(json!(policy))),
        )
        .await?;
        tx.commit().await?;
        self.escalator.forget();
        Ok(policy)
    }

    /// Checks that every target a policy names exists and can be paged.
    async fn check_targets(&self, policy: &Policy) -> Result<()> {
        // Read as they are now, not from the paging directory: a user or
        // schedule made a moment ago may already be named.
        let channels = self.notifier.channels().await?;
        let users = self.store.users().await?;
        let schedules = self.store.schedules().await?;
        for (field, target) in policy.targets() {
            let known = match target {
                PageTarget::User { id } => users.iter().any(|u| u.id == *id && !u.disabled),
                PageTarget::Schedule { id } => schedules.iter().any(|s| s.id == *id),
                PageTarget::Channel { id } => channels.iter().any(|c| c.id == *id && c.is_shared()),
            };
            if !known {
                return Err(AppError::invalid(
                    &field,
                    "unknown_target",
                    "names no active user, schedule or shared channel",
                ));
            }
        }
        Ok(())
    }

    pub async fn create_policy(&self, caller: &Caller, draft: PolicyDraft) -> Result<Policy> {
        caller.require(Permission::ServiceManage)?;
        let now = self.now();
        let policy = draft.validated(&self.config.rules, Uuid::now_v7(), now)?;
        self.check_targets(&policy).await?;
        self.insert_policy(caller, policy).await
    }

    /// Replaces a policy's levels and rules; escalations under way follow
    /// the new ones from their next step. A new name carries through to
    /// the routing of every service that names the policy.
    pub async fn update_policy(
        &self,
        caller: &Caller,
        key: &str,
        draft: PolicyDraft,
        expected_version: Option<i64>,
    ) -> Result<Policy> {
        caller.require(Permission::ServiceManage)?;
        let before = self.policy(caller, key).await?;
        if expected_version.is_some_and(|v| v != before.version) {
            return Err(AppError::VersionConflict {
                what: "escalation policy",
                current: before.version,
            });
        }
        let now = self.now();
        let validated = draft.validated(&self.config.rules, before.id, now)?;
        let policy = Policy {
            created_at: before.created_at,
            version: before.version + 1,
            ..validated
        };
        self.check_targets(&policy).await?;
        let renamed = before.name != policy.name;
        // Read before the transaction holds a connection.
        let services = if renamed {
            self.store.services().await?
        } else {
            Vec::new()
        };
        let mut tx = self.begin().await?;
        tx.update_policy(&policy, before.version)
            .await
            .map_err(crate::error::stale_or_taken("escalation policy"))?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Update,
                    "escalation_policy_update",
                    Target::new("escalation_policy", Some(policy.id.to_string())),
                )
                .with_change(Some(json!(before)), Some(json!(policy))),
        )
        .await?;
        let rerouted = rename_routed_policy(
            tx.as_mut(),
            caller,
            &services,
            &before.name,
            &policy.name,
            now,
        )
        .await?;
        tx.commit().await?;
        self.escalator.forget();
        for service in rerouted {
            self.forget_routing(service);
        }
        Ok(policy)
    }

    pub async fn policies(&self, caller: &Caller) -> Result<Vec<Policy>> {
        caller.require(Permission::IncidentRead)?;
        Ok(self.store.escalation_policies().await?)
    }

    pub async fn policy(&self, caller: &Caller, key: &str) -> Result<Policy> {
        caller.require(Permission::IncidentRead)?;
        self.store
            .escalation_policy(key)
            .await?
            .ok_or(AppError::NotFound {
                what: "escalation policy",
            })
    }

    pub async fn escalation(&self, caller: &Caller, key: &str) -> Result<EscalationView> {
        let incident = self.incident(caller, &IncidentKey::parse(key)).await?;
        let e = self
            .store
            .escalation(incident.id)
            .await?
            .ok_or(AppError::NotFound { what: "escalation" })?;
        let directory = self.escalator.directory().await?;
        let policy = directory.policy(e.policy_id);
        Ok(EscalationView {
            due_at: e.due_at(policy),
            policy: policy.map(|p| p.name.clone()),
            escalation: e,
        })
    }

    /// Steps due escalations until the app is dropped.
    pub async fn run_escalations(self) {
        loop {
            let now = self.now();
            let until = now + HOLD_MAX.min(self.config.notify.hold);
            match self.store.claim_escalations(now, until, CLAIM_MAX).await {
                Ok(mut taken) if !taken.is_empty() => {
                    // In one order, as every batch takes its incidents.
                    taken.sort();
                    // Failures are logged; their holds lapse and they are
                    // stepped again.
                    let _ = self.step_escalations(&taken, until).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not take due escalations"),
            }
            let now = self.now();
            let wait = idle_wait(self.store.next_escalation_at(now).await, now);
            tokio::select! {
                _ = self.escalator.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Steps a claimed batch in one transaction (one commit for all, as
    /// intake's group commit does). Should the batch fail, each is stepped
    /// in a transaction of its own, so that one bad escalation cannot hold
    /// up the others.
    async fn step_escalations(&self, incidents: &[Uuid], held_until: Timestamp) -> Result<()> {
        if incidents.len() > 1 && self.step_batch(incidents, held_until).await.is_ok() {
            return Ok(());
        }
        let mut first_error = Ok(());
        for id in incidents {
            if let Err(e) = self.step_batch(std::slice::from_ref(id), held_until).await {
                tracing::error!(error = %e, incident = %id, "could not step an escalation");
                first_error = first_error.and(Err(e));
            }
        }
        first_error
    }

    async fn step_batch(&self, incidents: &[Uuid], held_until: Timestamp) -> Result<()> {
        let directory = self.escalator.directory().await?;
        let mut tx = self.begin().await?;
        // Every incident, then every escalation, is locked before anything
        // is written, each kind in one read: writers take an incident
        // before its escalation and before the audit log's head, and a
        // batch that took its second incident after its first audit append
        // could deadlock with a transition.
        let locked = tx.incidents_for_update(incidents).await?;
        let mut escalations: HashMap<Uuid, Escalation> = tx
            .escalations_for_update(incidents)
            .await?
            .into_iter()
            .map(|e| (e.incident_id, e))
            .collect();
        let mut steps = Vec::new();
        let mut idle = Vec::new();
        for incident in locked {
            let Some(e) = escalations.remove(&incident.id) else {
                continue;
            };
            match self.prepare_step(&directory, incident, e) {
                step if step.pages.is_empty() && !step.breached => {
                    let due = step
                        .escalation
                        .due_at(directory.policy(step.escalation.policy_id));
                    idle.push((step.escalation, due));
                }
                step => steps.push(step),
            }
        }
        if steps.is_empty() {
            // Nothing was paged: no change to audit, only holds to release.
            drop(tx);
            self.store.release_escalations(&idle, held_until).await?;
            return Ok(());
        }
        for step in steps {
            self.write_step(&mut tx, &directory, step).await?;
        }
        for (e, due) in &idle {
            tx.save_escalation(e, *due).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Works out the step of an escalation and its incident, both locked
    /// by the caller; writes nothing.
    fn prepare_step(
        &self,
        directory: &Directory,
        incident: Incident,
        mut e: Escalation,
    ) -> PreparedStep {
        // The incident's times are the truth; the escalation keeps copies.
        e.started_at = incident.times.detected_at;
        e.response_due_at = incident.response_due_at;
        // An acknowledgement from before a re-escalation is not taken again.
        if let Some(at) = incident.times.acknowledged_at
            && e.reescalated_at.is_none_or(|r| at > r)
        {
            e.acknowledge(at);
        }
        if !incident.status.is_open() {
            e.stop(incident.times.resolved_at.unwrap_or(incident.updated_at));
        }
        let now = self.now();
        let facts = Facts {
            severity: &incident.severity,
            category: &incident.category,
            personal_data: incident.personal_data.involved,
        };
        let step = e.step(directory.policy(e.policy_id), facts, now);
        // A level or rule that names no one (the default policy before an
        // administrator fills it in) has nothing to record.
        let pages = step
            .pages
            .into_iter()
            .filter(|p| !p.targets.is_empty())
            .collect();
        PreparedStep {
            incident,
            escalation: e,
            pages,
            breached: step.breached,
            at: now,
        }
    }

    /// Writes a prepared step's pages and breach, with their timeline
    /// entries and audit events, inside `tx`.
    async fn write_step(
        &self,
        tx: &mut Box<dyn Tx>,
        directory: &Directory,
        step: PreparedStep,
    ) -> Result<()> {
        let PreparedStep {
            incident,
            escalation: mut e,
            pages,
            breached,
            at: now,
        } = step;
        let policy = directory.policy(e.policy_id);
        let caller = Caller::system();
        for page in pages {
            self.page(tx, directory, &caller, &incident, &mut e, page, now)
                .await?;
        }
        if breached {
            let due = incident.response_due_at.unwrap_or(now);
            let body = format!(
                "response-start target missed: the response was due to start by {}",
                due.to_zoned(self.config.time_zone.clone())
                    .strftime("%Y-%m-%d %H:%M %Z")
            );
            let data = json!({ "response_due_at": due, "severity": incident.severity });
            let what = (Operation::Execute, "response_target_breached");
            self.record_escalation(tx, &caller, &incident, what, body, data, now)
                .await?;
            tx.enqueue(&[OutboxMessage::new(
                "incident.response_breached",
                format!("incident.response_breached:{}", incident.id),
                json!({
                    "incident_id": incident.id,
                    "number": incident.number,
                    "severity": incident.severity,
                    "response_due_at": due,
                }),
                now,
            )])
            .await?;
        }
        tx.save_escalation(&e, e.due_at(policy)).await?;
        Ok(())
    }

    /// What escalation did to an incident: its timeline entry (by the
    /// caller, when a person) and its audit event, with the same detail.
    #[allow(clippy::too_many_arguments)]
    async fn record_escalation(
        &self,
        tx: &mut Box<dyn Tx>,
        caller: &Caller,
        incident: &Incident,
        (operation, action): (Operation, &str),
        body: String,
        data: Value,
        at: Timestamp,
    ) -> Result<()> {
        tx.append_timeline(&TimelineEntry {
            id: Uuid::now_v7(),
            incident_id: incident.id,
            at,
            kind: TimelineKind::Escalation,
            actor: caller.user_ref(),
            body,
            data: data.clone(),
        })
        .await?;
        tx.append_audit(
            &caller
                .event(
                    at,
                    operation,
                    action,
                    crate::incidents::incident_target(incident),
                )
                .with_change(None, Some(data)),
        )
        .await?;
        Ok(())
    }

    /// Turns one page into deliveries, with its timeline entry and audit
    /// event, inside `tx`.
    #[allow(clippy::too_many_arguments)]
    async fn page(
        &self,
        tx: &mut Box<dyn Tx>,
        directory: &Directory,
        caller: &Caller,
        incident: &Incident,
        e: &mut Escalation,
        page: Page,
        now: Timestamp,
    ) -> Result<()> {
        let channels = self.notifier.in_transaction();
        let level = self.notifier.level_of(&incident.severity);
        let mut recipients: Vec<Recipient> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        fn active(u: Option<&UserRecord>) -> Option<&UserRecord> {
            u.filter(|u| !u.disabled)
        }
        for target in &page.targets {
            let user = match target {
                PageTarget::Channel { id } => {
                    match channels.iter().find(|c| c.id == *id && c.is_shared()) {
                        Some(c) => recipients.push(Recipient {
                            channel: c,
                            person: None,
                            delay_minutes: 0,
                        }),
                        None => notes.push("a channel that no longer exists".into()),
                    }
                    continue;
                }
                PageTarget::User { id } => active(directory.user(*id)),
                PageTarget::Schedule { id } => {
                    match directory.schedules.iter().find(|s| s.id == *id) {
                        None => {
                            notes.push("a schedule that no longer exists".into());
                            None
                        }
                        Some(s) => match s.oncall(now) {
                            Some(shift) => {
                                let u = directory.user(shift.user);
                                if let Some(u) = u {
                                    notes.push(format!("{} is on call in {}", u.name, s.name));
                                }
                                active(u)
                            }
                            None => {
                                notes.push(format!("nobody is on call in {}", s.name));
                                None
                            }
                        },
                    }
                }
            };
            let Some(user) = user else {
                if matches!(target, PageTarget::User { .. }) {
                    notes.push("a user who is gone or disabled".into());
                }
                continue;
            };
            let methods: Vec<&Channel> = channels
                .iter()
                .filter(|c| c.is_method_of(user.id) && c.levels.contains(&level))
                .collect();
            if methods.is_empty() {
                notes.push(format!(
                    "{} has no contact method for {}",
                    user.name,
                    json!(level).as_str().unwrap_or("this level")
                ));
            }
            for c in methods {
                recipients.push(Recipient {
                    channel: c,
                    person: Some(user),
                    delay_minutes: c.delay_minutes,
                });
            }
        }
        let mut seen = HashSet::new();
        recipients.retain(|r| seen.insert(r.channel.id));
        e.pages += 1;
        let reason = page.reason.describe();
        let notice = Notice {
            topic: "incident.page".into(),
            level,
            title: format!("{} {}", incident.number, incident.title),
            text: format!("{reason}: {}", first_line(&incident.summary)),
            incident_id: Some(incident.id),
            incident_number: Some(incident.number.clone()),
            ack_url: None,
            ack_code: Some(incident.number.clone()),
        };
        let link = self.notifier.link(&notice);
        let mut deliveries = Vec::with_capacity(recipients.len());
        let mut sent_to = Vec::with_capacity(recipients.len());
        for r in &recipients {
            let key = format!("page:{}:{}:{}", incident.id, e.pages, r.channel.id);
            let notice = Notice {
                ack_url: self.ack_url(incident.id, r.person.map(|p| p.id), now),
                ..notice.clone()
            };
            let due_at = now + SignedDuration::from_mins(i64::from(r.delay_minutes));
            let body = render(r.channel.kind, &notice, link.as_deref(), &key).to_string();
            sent_to.push(if r.delay_minutes == 0 {
                r.channel.name.clone()
            } else {
                format!("{} (after {} min)", r.channel.name, r.delay_minutes)
            });
            deliveries.push(DeliveryRecord {
                id: Uuid::now_v7(),
                channel_id: r.channel.id,
                idempotency_key: key,
                status: DeliveryStatus::Pending,
                attempts: 0,
                due_at,
                created_at: now,
                notice,
                body,
                last_error: None,
                sent_at: None,
                page: true,
            });
        }
        if !deliveries.is_empty() {
            tx.insert_deliveries(&deliveries).await?;
        }
        let mut body = if sent_to.is_empty() {
            format!("paged {reason}: nobody to page")
        } else {
            format!("paged {reason}: {}", sent_to.join(", "))
        };
        if !notes.is_empty() {
            body.push_str(&format!(" ({})", notes.join("; ")));
        }
        let data = json!({ "reason": page.reason, "to": sent_to, "notes": notes });
        let what = (Operation::Execute, "incident_page");
        self.record_escalation(tx, caller, incident, what, body, data, now)
            .await
    }

    /// A one-click acknowledgement link for `person`, when Kiroku knows
    /// its own address and holds a link key.
    fn ack_url(&self, incident: Uuid, person: Option<Uuid>, now: Timestamp) -> Option<String> {
        let notify = &self.config.notify;
        let base = notify.public_url.as_deref()?.trim_end_matches('/');
        let key = notify.link_key.as_ref()?;
        let token = key.sign(&Link {
            purpose: "ack".into(),
            subject: incident,
            person,
            expires: Some(now + notify.ack_link_ttl),
            by: None,
        });
        Some(format!("{base}/ack/{token}"))
    }

    /// Pages a level again at once, as someone asks (the next level when
    /// none is named), and climbs on from there until acknowledged.
    pub async fn reescalate(
        &self,
        caller: &Caller,
        key: &str,
        level: Option<u32>,
    ) -> Result<EscalationView> {
        caller.require(Permission::IncidentWrite)?;
        let directory = self.escalator.directory().await?;
        let mut tx = self.begin().await?;
        let incident = tx
            .incident_for_update(&IncidentKey::parse(key))
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        let mut e = tx
            .escalation_for_update(incident.id)
            .await?
            .ok_or(AppError::NotFound { what: "escalation" })?;
        let policy = directory.policy(e.policy_id);
        let now = self.now();
        let page = e.reescalate(policy, level, now).map_err(|err| match err {
            ReescalateError::NoSuchLevel(_) => {
                AppError::invalid("level", "out_of_range", err.to_string())
            }
            ReescalateError::Stopped | ReescalateError::NoPolicy => {
                AppError::invalid("incident", "not_escalating", err.to_string())
            }
        })?;
        self.page(&mut tx, &directory, caller, &incident, &mut e, page, now)
            .await?;
        tx.save_escalation(&e, e.due_at(policy)).await?;
        tx.commit().await?;
        self.escalator.wake.notify_one();
        Ok(EscalationView {
            due_at: e.due_at(policy),
            policy: policy.map(|p| p.name.clone()),
            escalation: e,
        })
    }

    /// Acknowledges an incident from a page: a triggered incident moves to
    /// acknowledged (which stops its escalation); one already past that
    /// only has its paging stopped; otherwise nothing changes.
    pub(crate) async fn acknowledge_page(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        how: &str,
    ) -> Result<(String, AckOutcome)> {
        let directory = self.escalator.directory().await?;
        let mut tx = self.begin().await?;
        let mut incident = tx
            .incident_for_update(key)
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        let now = self.now();
        let number = incident.number.clone();
        if incident.status == Status::Triggered {
            let audit = self
                .transition_in(
                    &mut tx,
                    caller,
                    &mut incident,
                    Transition::Acknowledge,
                    format!("acknowledged {how}"),
                    now,
                )
                .await?;
            tx.append_audit(&audit).await?;
            tx.commit().await?;
            return Ok((number, AckOutcome::Acknowledged));
        }
        if !incident.status.is_open() {
            return Ok((number, AckOutcome::AlreadyResolved));
        }
        let Some(mut e) = tx.escalation_for_update(incident.id).await? else {
            return Ok((number, AckOutcome::AlreadyAcknowledged));
        };
        if !e.acknowledge(now) {
            return Ok((number, AckOutcome::AlreadyAcknowledged));
        }
        tx.save_escalation(&e, e.due_at(directory.policy(e.policy_id)))
            .await?;
        let cancelled = tx.cancel_pages(incident.id, now).await?;
        let who = caller.actor().name.unwrap_or_else(|| "someone".into());
        let data = json!({ "how": how, "pages_cancelled": cancelled });
        let body = format!("paging stopped: acknowledged by {who} {how}");
        let what = (Operation::Update, "escalation_acknowledge");
        self.record_escalation(&mut tx, caller, &incident, what, body, data, now)
            .await?;
        tx.commit().await?;
        Ok((number, AckOutcome::Acknowledged))
    }
}
