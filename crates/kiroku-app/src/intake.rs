//! Alert intake: events from monitoring become deduplicated alerts, and
//! alerts become incidents, through the one write path. Concurrent
//! requests commit in groups (`group.rs`) of up to [`BATCH_EVENTS_MAX`]
//! events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use jiff::Timestamp;
use kiroku_domain::alert::routing::{Decision, Router};
use kiroku_domain::alert::{
    Alert, AlertAction, AlertEvent, ChangeEvent, Integration, Quiet, Service,
};
use kiroku_domain::{
    AuditEvent, Incident, Operation, OutboxMessage, Source, Status, Target, TimelineEntry,
    TimelineKind, Transition,
};
use kiroku_store::{AlertGroup, ChangeRecord, Durable, IncidentKey, Tx};
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::group::{GroupCommit, Grouped, replicate};
use crate::{App, AppError, Caller, Result};

mod journaled;
mod keys;
mod replay;

use journaled::journal_request;
pub(crate) use keys::KeyCache;
pub use replay::Replayed;

/// The most events one transaction takes; more wait for the next.
const BATCH_EVENTS_MAX: usize = 2_000;

/// What one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// A new alert (and, unless quiet, an incident opened or joined).
    Opened,
    /// A repeat of an open alert, counted.
    Repeated,
    Acknowledged,
    Resolved,
    /// No open alert has that key, or it was already in that state.
    Ignored,
    /// Synced to the intake journal; committed to the database behind it.
    Journaled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub dedup_key: String,
    pub effect: Effect,
    pub alert_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
}

/// Where a batch's jobs come from, as its transaction records it.
pub(crate) enum Provenance {
    /// Senders waiting for the commit to answer them.
    Sender,
    /// Intake journal `.0`, whose records up to `.1` are marked applied.
    Journal(Uuid, u64),
    /// A record the journal dropped and kept, replayed by an operator:
    /// marked by the id its journal and number give it, so that it is
    /// applied once, and audited with the operator's event.
    Replay(Uuid, Box<AuditEvent>),
}

pub(crate) struct Job {
    integration: Integration,
    /// Its service's routing, looked up before the job joins a batch: a
    /// service whose stored routing no longer compiles fails its own
    /// senders, not the others sharing the commit.
    routed: Arc<RoutedService>,
    source: Source,
    events: Vec<AlertEvent>,
    reply: oneshot::Sender<Result<Vec<Accepted>>>,
}

impl Grouped for Job {
    fn weight(&self) -> usize {
        self.events.len()
    }
}

/// Intake's queue of requests waiting for a commit.
pub(crate) fn group_commit() -> GroupCommit<Job> {
    GroupCommit::new(BATCH_EVENTS_MAX)
}

/// How long a service's routing is used before it is read again: a change
/// made through another Kiroku node takes effect within this.
const ROUTING_TTL: Duration = Duration::from_secs(1);

/// How long a request waits for the database to read again what intake
/// read before (a routing key, a routing) before it goes on with that.
const REREAD_WAIT_MAX: Duration = Duration::from_secs(1);

/// Whether a caller may go on with what was read before while the
/// database is away or slow: a request may, when the intake journal will
/// keep it until the database is back; the journal's applier, which
/// commits with what it reads, may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhileAway {
    UseLastRead,
    Wait,
}

impl App {
    /// How a request to intake treats the database away.
    pub(crate) fn intake_while_away(&self) -> WhileAway {
        match self.intake_journal {
            Some(_) => WhileAway::UseLastRead,
            None => WhileAway::Wait,
        }
    }
}

/// `read` of what was read before (`last_read`); what it finds is kept
/// with `remember`, and what fails for any reason but the database being
/// unavailable is dropped with `forget`, to be read afresh by the next
/// request (unavailable, the last read stays until its time passes again).
/// Where `away` allows, and the database is unavailable or does not answer
/// within [`REREAD_WAIT_MAX`], the last read stands in, so that the
/// database away (a failover) does not stop intake; a read that outlasts
/// the wait runs on and remembers what it finds, so that a slow database
/// still brings the change.
pub(crate) async fn read_again<T: Send + 'static>(
    what: &'static str,
    last_read: Option<T>,
    away: WhileAway,
    read: impl Future<Output = Result<T>> + Send + 'static,
    remember: impl FnOnce(&T) + Send + 'static,
    forget: impl FnOnce() + Send + 'static,
) -> Result<T> {
    let read = async move {
        let read = read.await;
        match &read {
            Ok(found) => remember(found),
            Err(AppError::Unavailable(_)) => {}
            Err(_) => forget(),
        }
        read
    };
    let Some(last_read) = last_read.filter(|_| away == WhileAway::UseLastRead) else {
        return read.await;
    };
    let mut read = tokio::spawn(read);
    match tokio::time::timeout(REREAD_WAIT_MAX, &mut read).await {
        Ok(Ok(Err(AppError::Unavailable(e)))) => {
            tracing::warn!(what, error = %e, "taken as last read: the database is unavailable");
            Ok(last_read)
        }
        Ok(Ok(read)) => read,
        Ok(Err(e)) => Err(AppError::Internal(format!("reading the {what}: {e}"))),
        Err(_) => {
            tracing::warn!(
                what,
                "taken as last read: the database did not answer in time"
            );
            Ok(last_read)
        }
    }
}

/// A service with its routing compiled.
pub(crate) struct RoutedService {
    service: Service,
    router: Router,
}

/// Compiled routings by service, each with the time it was read.
pub(crate) type RoutingCache = Mutex<HashMap<Uuid, (Instant, Arc<RoutedService>)>>;

/// What a batch has read and changed so far, so that later events in the
/// same batch see earlier ones before anything is written.
#[derive(Default)]
struct Batch {
    alerts: HashMap<Uuid, Alert>,
    /// Open alerts by (integration, dedup key).
    open: HashMap<(Uuid, String), Uuid>,
    /// Alerts to write, in the order they changed.
    changed: Vec<Uuid>,
    changed_set: HashSet<Uuid>,
    /// Incidents opened in this batch by grouping key.
    groups: HashMap<(Uuid, String), Uuid>,
    /// Open incidents of the groups the batch's new alerts route to, as
    /// stored before the batch.
    grouped: HashMap<AlertGroup, Option<Uuid>>,
    /// Routing decisions made while finding those groups, by the trigger's
    /// place in the batch: taken, not made again, if it opens an alert.
    decided: HashMap<usize, Decision>,
    /// The place in the batch of the event being applied.
    event_no: usize,
    incidents: HashMap<Uuid, Incident>,
    /// Alerts that joined an open incident, by incident: one timeline
    /// entry each per batch, however many joined.
    joined: HashMap<Uuid, Vec<serde_json::Value>>,
    outbox: Vec<OutboxMessage>,
    /// The current request's events, for its audit event.
    audited: Vec<serde_json::Value>,
    /// The batch's audit events, in order, appended together last: the
    /// audit log's head is taken after every other row the batch locks
    /// (incident number counters included).
    audit: Vec<AuditEvent>,
}

impl Batch {
    /// The open incident a new alert of `group` joins: the one this batch
    /// last opened for the group, else the one read with the batch's open
    /// alerts; none if an earlier alert of the batch has resolved it since
    /// or, locked after that read, it was found resolved.
    fn open_incident_of(&self, group: &AlertGroup) -> Option<Uuid> {
        let id = match self.groups.get(&(group.service, group.key.clone())) {
            Some(id) => Some(*id),
            None => self.grouped.get(group).copied().flatten(),
        };
        id.filter(|id| self.incidents.get(id).is_none_or(|i| i.status.is_open()))
    }

    fn touch(&mut self, alert: Alert) {
        if self.changed_set.insert(alert.id) {
            self.changed.push(alert.id);
        }
        self.alerts.insert(alert.id, alert);
    }
}

/// The incidents the batch's acknowledgements and resolves may move: those
/// of the open alerts they name and, where a trigger of the batch names the
/// same key (and so may open a new alert under it), the open incident of
/// the group it routes to, which that alert may join. An alert the batch
/// opens otherwise joins an incident the batch declares.
fn incidents_alerts_may_follow(jobs: &[Job], batch: &Batch, now: Timestamp) -> Vec<Uuid> {
    let events = || {
        jobs.iter()
            .flat_map(|job| job.events.iter().map(move |event| (job, event)))
    };
    let named: HashSet<(Uuid, &str)> = events()
        .filter(|(_, e)| e.action != AlertAction::Trigger)
        .filter_map(|(job, e)| Some((job.integration.id, e.dedup_key.as_deref()?)))
        .collect();
    if named.is_empty() {
        return Vec::new();
    }
    let mut followed = HashSet::new();
    for (integration, key) in &named {
        if let Some(id) = batch.open.get(&(*integration, key.to_string())) {
            followed.extend(batch.alerts[id].incident_id);
        }
    }
    // Numbered as `groups_of` numbers the decisions it keeps.
    for (n, (job, event)) in events().enumerate() {
        let Some(key) = event.dedup_key.as_deref() else {
            continue;
        };
        if event.action != AlertAction::Trigger || !named.contains(&(job.integration.id, key)) {
            continue;
        }
        let Some(group) = batch
            .decided
            .get(&n)
            .and_then(|d| alert_group(job.routed.service.id, d, now))
        else {
            continue;
        };
        // Any window: an earlier alert of the group, routed under another
        // window (its routing read before a change), may have found the
        // incident this one then joins.
        followed.extend(
            batch
                .grouped
                .iter()
                .filter(|(g, _)| g.service == group.service && g.key == group.key)
                .filter_map(|(_, id)| *id),
        );
    }
    followed.into_iter().collect()
}

/// The key a trigger without one gets.
fn fresh_key() -> String {
    Uuid::now_v7().simple().to_string()
}

fn fail_batch(jobs: Vec<Job>, e: &AppError) {
    tracing::warn!(error = %e, "alert batch failed");
    for job in jobs {
        let _ = job.reply.send(Err(replicate(e)));
    }
}

/// The group a routing decision puts a new alert of `service` in, with how
/// far back its window reaches from `now`.
fn alert_group(service: Uuid, decision: &Decision, now: Timestamp) -> Option<AlertGroup> {
    decision.group.as_ref().map(|(key, window)| AlertGroup {
        service,
        key: key.clone(),
        since: now - *window,
    })
}

/// The most alerts one timeline entry lists by id: "alerts joined", or
/// "alerts resolved with the incident".
pub(crate) const ALERTS_LISTED_MAX: usize = 100;

/// A timeline entry's words for what `happened` to alerts: one alert is
/// named by its summary (the only one given), more are counted.
pub(crate) fn alerts_entry_body(happened: &str, count: usize, only_summary: &str) -> String {
    match count {
        1 => format!("alert {happened}: {only_summary}"),
        _ => format!("{count} alerts {happened}"),
    }
}

fn joined_entry(
    incident_id: Uuid,
    mut joined: Vec<serde_json::Value>,
    now: Timestamp,
) -> TimelineEntry {
    let count = joined.len();
    let only = joined[0]["summary"].as_str().unwrap_or_default();
    let body = alerts_entry_body("joined", count, only);
    joined.truncate(ALERTS_LISTED_MAX);
    TimelineEntry {
        id: Uuid::now_v7(),
        incident_id,
        at: now,
        kind: TimelineKind::Alert,
        actor: None,
        body,
        data: json!({ "count": count, "alerts": joined }),
    }
}

impl App {
    /// Records `events` from `integration`; returns once they are committed.
    pub async fn ingest_alerts(
        &self,
        integration: &Integration,
        source: Source,
        events: Vec<AlertEvent>,
    ) -> Result<Vec<Accepted>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let count = events.len();
        let routed = self
            .routed_service(integration.service_id, self.intake_while_away())
            .await?;
        let accepted = match &self.intake_journal {
            Some(journal) => journal_request(journal, integration, source, events).await,
            None => {
                let (reply, answer) = oneshot::channel();
                let job = Job {
                    integration: integration.clone(),
                    routed,
                    source,
                    events,
                    reply,
                };
                self.intake
                    .submit(job, answer, self, |app, batch| async move {
                        app.commit_batch(batch).await
                    })
                    .await
            }
        };
        crate::memory::after_request(count);
        accepted
    }

    /// Applies and commits a batch, and returns as soon as the next batch
    /// may begin; its callers are answered once the commit is durable.
    async fn commit_batch(&self, mut jobs: Vec<Job>) {
        match self.apply_batch(&mut jobs, Provenance::Sender).await {
            Ok((results, durable)) => {
                tokio::spawn(async move {
                    match durable.wait().await {
                        Ok(()) => {
                            for (job, result) in jobs.into_iter().zip(results) {
                                let _ = job.reply.send(Ok(result));
                            }
                        }
                        Err(e) => fail_batch(jobs, &e.into()),
                    }
                });
            }
            Err(e) => fail_batch(jobs, &e),
        }
    }

    /// A service and its compiled routing, read at most once a second.
    /// When a second has passed, the first request to see it reads the
    /// routing again; the others meanwhile keep the one they have, rather
    /// than every waiting request reading it at once. `away` says whether
    /// the last read may stand in for a read the database does not answer.
    async fn routed_service(&self, id: Uuid, away: WhileAway) -> Result<Arc<RoutedService>> {
        let last_read = match self
            .routings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
        {
            Some((at, routed)) if at.elapsed() < ROUTING_TTL => return Ok(routed.clone()),
            Some((at, routed)) => {
                *at = Instant::now();
                Some(routed.clone())
            }
            None => None,
        };
        let (app, remembering, forgetting) = (self.clone(), self.clone(), self.clone());
        read_again(
            "routing",
            last_read,
            away,
            async move { app.read_routed_service(id).await },
            move |routed| {
                remembering
                    .routings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, (Instant::now(), routed.clone()));
            },
            // What no longer reads or compiles is not used again.
            move || forgetting.forget_routing(id),
        )
        .await
    }

    async fn read_routed_service(&self, id: Uuid) -> Result<Arc<RoutedService>> {
        let service = self
            .store
            .service(&id.to_string())
            .await?
            .ok_or(AppError::NotFound { what: "service" })?;
        let router = self.compile_routing(&service).map_err(AppError::Internal)?;
        Ok(Arc::new(RoutedService { service, router }))
    }

    /// A service's stored routing compiled under this configuration; the
    /// error names the service and what no longer fits.
    fn compile_routing(&self, service: &Service) -> std::result::Result<Router, String> {
        Router::new(service.routing.clone(), &self.config.rules)
            .map_err(|e| format!("stored routing of {}: {e}", service.name))
    }

    /// What keeps each service whose stored routing does not compile under
    /// this configuration (it names a severity or category the
    /// configuration no longer has) from taking alerts: its intake answers
    /// 500 until the routing is mended.
    pub async fn routings_that_do_not_compile(&self) -> Result<Vec<String>> {
        let services = self.store.services().await?;
        Ok(services
            .iter()
            .filter_map(|s| self.compile_routing(s).err())
            .collect())
    }

    /// Forgets a service's compiled routing after a local change.
    pub(crate) fn forget_routing(&self, id: Uuid) {
        self.routings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Takes the jobs' events: a new alert keeps its trigger's words
    /// without copying them. What `from` names is recorded in the same
    /// transaction.
    async fn apply_batch(
        &self,
        jobs: &mut [Job],
        from: Provenance,
    ) -> Result<(Vec<Vec<Accepted>>, Durable)> {
        let now = self.now();
        let mut batch = Batch::default();
        let keys: Vec<(Uuid, String)> = jobs
            .iter()
            .flat_map(|j| {
                j.events
                    .iter()
                    .filter_map(|e| e.dedup_key.clone().map(|k| (j.integration.id, k)))
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let integrations: Vec<Uuid> = jobs.iter().map(|j| j.integration.id).collect();
        let groups = self.groups_of(jobs, &mut batch, now);
        let mut tx = self.begin().await?;
        let journaled = match from {
            Provenance::Sender => None,
            Provenance::Journal(journal, seq) => Some((journal, seq)),
            Provenance::Replay(replay, event) => {
                // First, while the transaction holds nothing else: a second
                // replay of the record waits here, then is refused, before
                // it does any work, and no other duplicate is taken for it.
                tx.mark_intake_replayed(replay)
                    .await
                    .map_err(crate::error::duplicate_of(replay::ALREADY, "file"))?;
                batch.audit.push(*event);
                None
            }
        };
        let (open, found) = tx
            .open_alerts_and_groups(&integrations, &keys, &groups)
            .await?;
        for alert in open {
            batch
                .open
                .insert((alert.integration_id, alert.dedup_key.clone()), alert.id);
            batch.alerts.insert(alert.id, alert);
        }
        batch.grouped = groups.into_iter().zip(found).collect();
        // Every incident an alert of the batch may acknowledge or resolve
        // is locked now, in one read in order of id, before the batch
        // draws an incident number or takes the audit log's head: the
        // order every writer keeps.
        let followed = incidents_alerts_may_follow(jobs, &batch, now);
        for incident in tx.incidents_for_update(&followed).await? {
            batch.incidents.insert(incident.id, incident);
        }
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs.iter_mut() {
            let caller = Caller::integration(
                job.integration.id,
                &job.integration.name,
                job.source.clone(),
            );
            let events = std::mem::take(&mut job.events);
            let job = &*job;
            let mut accepted = Vec::with_capacity(events.len());
            for event in events {
                accepted.push(
                    self.apply_event(&mut tx, &mut batch, &caller, job, event, now)
                        .await?,
                );
                batch.event_no += 1;
            }
            // One audit event per request, listing what each of its events
            // did: a group of 10,000 alerts is one delivery, not 10,000.
            let entries = std::mem::take(&mut batch.audited);
            batch.audit.push(
                caller
                    .event(
                        now,
                        Operation::Execute,
                        "alert_intake",
                        Target::new("integration", Some(job.integration.id.to_string())),
                    )
                    .with_change(
                        None,
                        Some(
                            json!({ "service_id": job.integration.service_id, "events": entries }),
                        ),
                    ),
            );
            results.push(accepted);
        }
        // The batch's one audit append, last of its locks, reads the tree's
        // head; the inserts after it need no answer, so a backend may send
        // them together with the commit.
        tx.append_audit_batch(std::mem::take(&mut batch.audit))
            .await?;
        let changed: Vec<Alert> = batch
            .changed
            .iter()
            .filter_map(|id| batch.alerts.remove(id))
            .collect();
        tx.save_alerts(&changed).await?;
        tx.enqueue(&batch.outbox).await?;
        let joined: Vec<TimelineEntry> = batch
            .joined
            .into_iter()
            .map(|(incident_id, alerts)| joined_entry(incident_id, alerts, now))
            .collect();
        tx.append_timeline_entries(&joined).await?;
        if let Some((journal, seq)) = journaled {
            tx.mark_intake_journal_applied(journal, seq).await?;
        }
        let durable = tx.commit_visible().await?;
        Ok((results, durable))
    }

    /// The alert groups that the batch's triggers route to, so that their
    /// open incidents are read with the open alerts, before it is known
    /// which triggers repeat an open alert. Each decision is kept for its
    /// event, should that event open an alert.
    fn groups_of(&self, jobs: &[Job], batch: &mut Batch, now: Timestamp) -> Vec<AlertGroup> {
        let mut groups = HashSet::new();
        let events = jobs
            .iter()
            .flat_map(|job| job.events.iter().map(move |event| (&job.routed, event)));
        for (n, (routed, event)) in events.enumerate() {
            if event.action != AlertAction::Trigger {
                continue;
            }
            let decision = routed.router.decide(event, &self.config.rules);
            groups.extend(alert_group(routed.service.id, &decision, now));
            batch.decided.insert(n, decision);
        }
        groups.into_iter().collect()
    }

    async fn apply_event(
        &self,
        tx: &mut Box<dyn Tx>,
        batch: &mut Batch,
        caller: &Caller,
        job: &Job,
        mut event: AlertEvent,
        now: Timestamp,
    ) -> Result<Accepted> {
        let integration = &job.integration;
        let action = event.action;
        let key = event.dedup_key.take().unwrap_or_else(fresh_key);
        let open = batch.open.get(&(integration.id, key.clone())).copied();
        let (effect, alert) = match (action, open) {
            (AlertAction::Trigger, Some(id)) => {
                let mut alert = batch.alerts[&id].clone();
                alert.repeat(&event, now);
                (Effect::Repeated, Some(alert))
            }
            (AlertAction::Trigger, None) => {
                let alert = self
                    .open_alert(tx, batch, caller, job, key.clone(), event, now)
                    .await?;
                batch.open.insert((integration.id, key.clone()), alert.id);
                (Effect::Opened, Some(alert))
            }
            (AlertAction::Acknowledge, Some(id)) => {
                let mut alert = batch.alerts[&id].clone();
                if alert.acknowledge(now) {
                    if let Some(incident) = alert.incident_id {
                        self.follow_incident(
                            tx,
                            batch,
                            caller,
                            incident,
                            Transition::Acknowledge,
                            now,
                        )
                        .await?;
                    }
                    (Effect::Acknowledged, Some(alert))
                } else {
                    (Effect::Ignored, Some(alert))
                }
            }
            (AlertAction::Resolve, Some(id)) => {
                let mut alert = batch.alerts[&id].clone();
                alert.resolve(&event.details, now);
                batch.open.remove(&(integration.id, key.clone()));
                let alert_id = alert.id;
                let incident = alert.incident_id;
                batch.touch(alert);
                if let Some(incident) = incident
                    && job.routed.service.routing.auto_resolve
                    && self.all_resolved(tx, batch, incident).await?
                {
                    self.follow_incident(tx, batch, caller, incident, Transition::Resolve, now)
                        .await?;
                }
                let alert = batch.alerts[&alert_id].clone();
                (Effect::Resolved, Some(alert))
            }
            (_, None) => (Effect::Ignored, None),
        };
        // What the request's audit event says of this event: enough to find
        // the alert and see what changed; the alert row holds the rest.
        let mut entry = json!({
            "action": action,
            "dedup_key": key,
            "effect": effect,
        });
        if let Some(a) = &alert {
            entry["alert_id"] = json!(a.id);
            entry["status"] = json!(a.status);
            entry["severity"] = json!(a.severity);
            entry["incident_id"] = json!(a.incident_id);
            if effect == Effect::Opened {
                entry["summary"] = json!(a.summary);
                entry["quiet"] = json!(a.quiet);
            }
        }
        batch.audited.push(entry);
        let (alert_id, incident_id) = match alert {
            Some(a) => {
                let ids = (Some(a.id), a.incident_id);
                batch.touch(a);
                ids
            }
            None => (None, None),
        };
        Ok(Accepted {
            dedup_key: key,
            effect,
            alert_id,
            incident_id,
        })
    }

    /// A first trigger: routed, then quiet, joined to its group's open
    /// incident, or opening one of its own.
    #[allow(clippy::too_many_arguments)]
    async fn open_alert(
        &self,
        tx: &mut Box<dyn Tx>,
        batch: &mut Batch,
        caller: &Caller,
        job: &Job,
        key: String,
        event: AlertEvent,
        now: Timestamp,
    ) -> Result<Alert> {
        let rules = &self.config.rules;
        let integration = &job.integration;
        let (service, router) = (&job.routed.service, &job.routed.router);
        let decision = batch
            .decided
            .remove(&batch.event_no)
            .unwrap_or_else(|| router.decide(&event, rules));
        let occurred_at = event.occurred_at;
        let mut alert = Alert::open(Uuid::now_v7(), integration.id, service.id, key, event, now);
        alert.rule = decision.rule;
        alert.quiet = if decision.suppress {
            Some(Quiet::Suppressed)
        } else if service.in_maintenance(now).is_some() {
            Some(Quiet::Maintenance)
        } else {
            None
        };
        if alert.quiet.is_some() {
            return Ok(alert);
        }
        let joined = alert_group(service.id, &decision, now).and_then(|wanted| {
            alert.grouping_key = Some(wanted.key.clone());
            batch.open_incident_of(&wanted)
        });
        let origin = json!({
            "alert_id": alert.id,
            "integration_id": integration.id,
            "dedup_key": alert.dedup_key,
            "level": alert.level,
            "summary": alert.summary,
        });
        let incident_id = match joined {
            Some(id) => {
                batch.joined.entry(id).or_default().push(origin);
                id
            }
            None => {
                let draft = alert
                    .incident_draft(
                        occurred_at,
                        &service.name,
                        decision.category.clone(),
                        decision.severity.clone(),
                        now,
                    )
                    .validated(rules, now)?;
                let (incident, audit) = self.declare_in(tx, caller, draft, now, origin).await?;
                batch.audit.push(audit);
                let id = incident.id;
                batch.incidents.insert(id, incident);
                id
            }
        };
        if let Some(group) = &alert.grouping_key {
            batch
                .groups
                .insert((service.id, group.clone()), incident_id);
        }
        alert.incident_id = Some(incident_id);
        batch.outbox.push(OutboxMessage::new(
            "alert.triggered",
            format!("alert.triggered:{}", alert.id),
            json!({
                "alert_id": alert.id,
                "incident_id": incident_id,
                "service_id": service.id,
                "level": alert.level,
                "severity": alert.severity,
                "summary": alert.summary,
                "escalation_policy": decision.escalation_policy,
            }),
            now,
        ));
        Ok(alert)
    }

    /// Whether every alert of `incident` is resolved, counting this batch's
    /// unwritten changes.
    async fn all_resolved(
        &self,
        tx: &mut Box<dyn Tx>,
        batch: &Batch,
        incident: Uuid,
    ) -> Result<bool> {
        let stored_open = tx.open_alerts_of_incident(incident).await?;
        let still_open_stored = stored_open
            .iter()
            .any(|id| batch.alerts.get(id).is_none_or(Alert::is_open));
        let open_in_batch = batch
            .alerts
            .values()
            .any(|a| a.incident_id == Some(incident) && a.is_open());
        Ok(!still_open_stored && !open_in_batch)
    }

    /// Moves an alert's incident along when the alert says so, unless the
    /// incident is already there or past it.
    async fn follow_incident(
        &self,
        tx: &mut Box<dyn Tx>,
        batch: &mut Batch,
        caller: &Caller,
        incident: Uuid,
        t: Transition,
        now: Timestamp,
    ) -> Result<()> {
        // Locked with the batch's first reads, or opened by it. Should one
        // have been missed, the alert's change still comes first: it is
        // locked now, out of the usual order.
        let mut current = match batch.incidents.remove(&incident) {
            Some(i) => i,
            None => {
                tracing::warn!(%incident, "an alert's incident was not locked with its batch");
                match tx.incident_for_update(&IncidentKey::Id(incident)).await? {
                    Some(i) => i,
                    None => return Ok(()),
                }
            }
        };
        let behind = match t {
            Transition::Acknowledge => current.status == Status::Triggered,
            Transition::Resolve => matches!(
                current.status,
                Status::Triggered
                    | Status::Acknowledged
                    | Status::Investigating
                    | Status::Mitigated
            ),
            _ => false,
        };
        if behind {
            // Shown after the change of status: "triggered → resolved by its alerts".
            let note = "by its alerts".to_string();
            let audit = self
                .transition_in(tx, caller, &mut current, t, note, now)
                .await?;
            batch.audit.push(audit);
        }
        batch.incidents.insert(incident, current);
        Ok(())
    }

    /// Records a change event (a deploy, say) on the integration's service.
    pub async fn record_change(
        &self,
        integration: &Integration,
        source: Source,
        change: ChangeEvent,
    ) -> Result<ChangeRecord> {
        let caller = Caller::integration(integration.id, &integration.name, source);
        let now = self.now();
        let record = ChangeRecord {
            id: Uuid::now_v7(),
            service_id: integration.service_id,
            integration_id: integration.id,
            received_at: now,
            change,
        };
        let mut tx = self.begin().await?;
        tx.insert_service_change(&record).await?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Create,
                    "service_change_record",
                    Target::new("service", Some(integration.service_id.to_string())),
                )
                .with_change(
                    None,
                    Some(json!({ "change_id": record.id, "summary": record.change.summary })),
                ),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }
}
