//! Storage traits. [`Store`] reads; [`Tx`] is the one way to write.
//!
//! Every change runs inside a [`Tx`]: the change itself, its audit events
//! and its outbox messages commit together or not at all. A transaction
//! refuses to commit without an audit event, so no change can slip past the
//! audit log.

mod records;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use kiroku_audit::{Hash, NodeId, SignedTreeHead};
use kiroku_domain::alert::{Alert, Integration, Service};
use kiroku_domain::escalation::{Escalation, Policy};
use kiroku_domain::notify::Channel;
use kiroku_domain::schedule::Schedule;
use kiroku_domain::{AuditEvent, Incident, OutboxMessage, TimelineEntry};
use uuid::Uuid;

pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (a user name, a token hash).
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// Someone else changed the row since it was read.
    #[error("changed meanwhile: now at version {current}")]
    VersionMismatch { current: i64 },
    /// A commit without an audit event: a bug in the caller, never the user's.
    #[error("a transaction must append an audit event before it commits")]
    Unaudited,
    /// The database cannot be reached, or asks to be asked again.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full: nothing was written, and writes are
    /// taken again once there is space.
    #[error("database disk full: {0}")]
    DiskFull(String),
    /// Stored bytes do not decode: the database was edited outside Kiroku.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Hears one stored event, `(seq, leaf_hash, doc)`; false stops the scan.
pub type AuditVisitor<'a> = dyn FnMut(i64, &[u8], &[u8]) -> bool + 'a;

/// Stored audit events read in sequence order in one pass, each row lent
/// rather than copied: how a whole log is verified on one core. A backend
/// offers one where it can read faster than page by page.
pub trait AuditScan: Send {
    /// Calls `visit(seq, leaf_hash, doc)` for every event with
    /// `after_seq < seq <= up_to`, in order, until `visit` returns false.
    fn scan(&mut self, after_seq: i64, up_to: i64, visit: &mut AuditVisitor<'_>) -> Result<()>;
}

/// Work a commit left for the workers of every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Deliveries,
    Escalations,
    /// An integration changed: routing keys each node remembers are
    /// forgotten, so that a replaced or disabled key is refused at once.
    Integrations,
}

impl Work {
    pub const ALL: [Work; 3] = [Work::Deliveries, Work::Escalations, Work::Integrations];

    pub fn as_str(self) -> &'static str {
        match self {
            Work::Deliveries => "deliveries",
            Work::Escalations => "escalations",
            Work::Integrations => "integrations",
        }
    }

    pub fn parse(s: &str) -> Option<Work> {
        Work::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

/// How an incident is named in a URL: its id or its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentKey {
    Id(Uuid),
    Number(String),
}

impl IncidentKey {
    pub fn parse(s: &str) -> IncidentKey {
        match Uuid::parse_str(s) {
            Ok(id) => IncidentKey::Id(id),
            Err(_) => IncidentKey::Number(s.to_string()),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Whether the store's I/O runs on threads of its own, as SQLite's
    /// does, so that any async runtime may use it; PostgreSQL's sockets
    /// belong to the runtime that opened them.
    fn io_on_own_threads(&self) -> bool;

    /// Starts the one kind of write there is.
    async fn begin(&self) -> Result<Box<dyn Tx>>;

    async fn ping(&self) -> Result<()>;

    async fn incident(&self, key: &IncidentKey) -> Result<Option<Incident>>;
    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>>;
    async fn timeline(&self, incident: Uuid) -> Result<Vec<TimelineEntry>>;
    /// The timelines of many incidents in one read, each oldest first;
    /// an incident without entries is absent.
    async fn timelines(&self, incidents: &[Uuid]) -> Result<HashMap<Uuid, Vec<TimelineEntry>>>;

    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn users(&self) -> Result<Vec<UserRecord>>;

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn tokens_of(&self, user: Uuid) -> Result<Vec<TokenRecord>>;
    async fn session_by_hash(&self, hash: &str) -> Result<Option<SessionRecord>>;
    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>>;

    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
    /// One event and its leaf hash (hex).
    async fn audit_event(&self, seq: i64) -> Result<Option<(AuditEvent, String)>>;
    /// Events as stored, for verification: nothing decoded, nothing trusted.
    async fn audit_raw(&self, after_seq: i64, limit: i64) -> Result<Vec<RawAuditEvent>>;
    /// Leaf hashes from the tree itself (archived events have no row),
    /// by seq, for `after_seq < seq <= up_to`.
    async fn audit_leaves(
        &self,
        after_seq: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>>;
    /// The last event (by seq) stamped before `before`, if any.
    async fn audit_seq_before(&self, before: jiff::Timestamp) -> Result<Option<i64>>;
    /// The archived ranges, oldest first.
    async fn audit_archives(&self) -> Result<Vec<ArchiveRecord>>;
    /// How many events the log says it holds.
    async fn audit_size(&self) -> Result<u64>;
    /// The last record of intake journal `journal` whose events are
    /// committed; 0 when none is.
    async fn intake_journal_applied(&self, journal: Uuid) -> Result<u64>;
    /// Stored subtree hashes; absent ids are absent from the map.
    async fn audit_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>>;
    /// Signed tree heads, largest first, below `below_size` when given.
    async fn tree_heads(&self, below_size: Option<u64>, limit: i64) -> Result<Vec<SignedTreeHead>>;
    /// One data key: None when unknown, Some(None) once shredded.
    async fn subject_key(&self, subject: &str, generation: i64) -> Result<Option<Option<String>>>;
    /// Every key that signed heads: (key id, public key hex).
    async fn audit_keys(&self) -> Result<Vec<(String, String)>>;
    /// Stores a signed head; false when one of that size exists. Heads are
    /// attestations about the log, not changes to it, so they are not
    /// themselves audited (that would grow the tree they describe).
    async fn insert_tree_head(&self, head: &SignedTreeHead) -> Result<bool>;
    async fn outbox(&self, limit: i64) -> Result<Vec<OutboxMessage>>;

    async fn services(&self) -> Result<Vec<Service>>;
    /// A service by id or by name.
    async fn service(&self, key: &str) -> Result<Option<Service>>;
    async fn integrations(&self, service: Option<Uuid>) -> Result<Vec<Integration>>;
    async fn integration(&self, id: Uuid) -> Result<Option<Integration>>;
    async fn integration_by_key(&self, key: &str) -> Result<Option<Integration>>;
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>>;
    async fn alert(&self, id: Uuid) -> Result<Option<Alert>>;
    /// A service's change events, newest first.
    async fn service_changes(&self, service: Uuid, limit: i64) -> Result<Vec<ChangeRecord>>;

    /// The times of incidents detected in `[from, to)`, at most `limit`.
    async fn incident_stamps(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: i64,
    ) -> Result<Vec<kiroku_domain::metrics::IncidentStamp>>;
    async fn postmortem(&self, incident: Uuid) -> Result<Option<PostmortemRecord>>;
    /// The versions made final, oldest first.
    async fn postmortem_versions(&self, incident: Uuid) -> Result<Vec<FrozenPostmortem>>;
    /// Action items by due date (undated last), then id.
    async fn action_items(&self, query: &ActionItemQuery) -> Result<Vec<ActionItemRecord>>;
    /// How many action items `query` matches, whatever its limit.
    async fn count_action_items(&self, query: &ActionItemQuery) -> Result<i64>;
    async fn obligations(&self, incident: Uuid) -> Result<Vec<ObligationRecord>>;
    /// Pending duties, soonest due first; with `due_before`, only those due by then.
    async fn pending_obligations(
        &self,
        due_before: Option<jiff::Timestamp>,
        limit: i64,
    ) -> Result<Vec<ObligationRecord>>;
    /// Pending duties whose next reminder is due by `now`.
    async fn obligations_to_remind(
        &self,
        now: jiff::Timestamp,
        limit: i64,
    ) -> Result<Vec<ObligationRecord>>;

    async fn channels(&self) -> Result<Vec<Channel>>;
    /// Deliveries newest first, optionally of one status.
    async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>>;
    /// Takes up to `limit` pending deliveries due by `now` that no worker
    /// holds, holding them until `until`. Bookkeeping rather than a change
    /// (what a delivery did is recorded, audited, when it is done), so it
    /// bypasses the audit log; on PostgreSQL rows held by another node's
    /// claim are skipped, not waited for.
    async fn claim_deliveries(
        &self,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>>;
    /// When the next pending delivery may be taken, if any is pending: a
    /// held one when its hold ends.
    async fn next_delivery_at(&self, now: jiff::Timestamp) -> Result<Option<jiff::Timestamp>>;
    /// Holds a taken delivery until `until` without an attempt (its
    /// channel is at its rate): bookkeeping, like the claim.
    async fn defer_delivery(&self, id: uuid::Uuid, until: jiff::Timestamp) -> Result<()>;

    async fn escalation_policies(&self) -> Result<Vec<Policy>>;
    /// A policy by id or by name.
    async fn escalation_policy(&self, key: &str) -> Result<Option<Policy>>;
    async fn schedules(&self) -> Result<Vec<Schedule>>;
    /// A schedule by id or by name.
    async fn schedule(&self, key: &str) -> Result<Option<Schedule>>;
    async fn escalation(&self, incident: Uuid) -> Result<Option<Escalation>>;
    /// Saves steps that paged no one and changed nothing but copies of
    /// their incidents' fields, each due again when given, releasing the
    /// holds, in one commit; only rows still held until `held_until` (the
    /// caller's claim) are written, so a change made meanwhile stands.
    /// Bookkeeping, like the claim.
    async fn release_escalations(
        &self,
        escalations: &[(Escalation, Option<jiff::Timestamp>)],
        held_until: jiff::Timestamp,
    ) -> Result<()>;
    /// Takes up to `limit` escalations due by `now` that no worker holds,
    /// holding them until `until`; returns their incidents. Bookkeeping,
    /// like the claim of deliveries: what stepping them does is audited.
    async fn claim_escalations(
        &self,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
        limit: i64,
    ) -> Result<Vec<Uuid>>;
    /// When the next escalation is due, if any is: a held one when its
    /// hold ends.
    async fn next_escalation_at(&self, now: jiff::Timestamp) -> Result<Option<jiff::Timestamp>>;

    /// Calls `on_work` whenever any node commits work for the workers
    /// (new deliveries, escalations due), until the store is gone; a
    /// backend that one node has to itself needs none (its commits wake its
    /// own workers) and returns at once.
    async fn watch_work(&self, on_work: Box<dyn Fn(Work) + Send + Sync>) -> Result<()> {
        let _ = on_work;
        Ok(())
    }

    /// Records that a token was used. Bookkeeping rather than a change, so it
    /// bypasses the audit log; callers throttle it.
    async fn touch_token(&self, id: Uuid, at: jiff::Timestamp) -> Result<()>;
}

/// One write transaction. A backend may hold an insert that nothing reads
/// back until the next read or the commit, and send them together: an
/// error such an insert meets (a taken key, say) fails that later call,
/// and the transaction with it.
#[async_trait]
pub trait Tx: Send {
    /// The next number for `prefix` in `year`: gap-free and unique, because
    /// the counter row stays locked until this transaction ends.
    async fn next_incident_number(&mut self, prefix: &str, year: i16) -> Result<i64>;
    async fn insert_incident(&mut self, incident: &Incident) -> Result<()>;
    /// Reads an incident and holds it against concurrent writers.
    async fn incident_for_update(&mut self, key: &IncidentKey) -> Result<Option<Incident>>;
    /// Reads those of `ids` that exist and holds them against concurrent
    /// writers, taking them in order of id, in one round trip (none for no
    /// ids, unless held writes wait to be sent).
    async fn incidents_for_update(&mut self, ids: &[Uuid]) -> Result<Vec<Incident>>;
    /// Replaces the incident if the stored version is `expected_version`.
    async fn update_incident(&mut self, incident: &Incident, expected_version: i64) -> Result<()>;
    /// Appends entries to their incidents' timelines, many per statement.
    async fn append_timeline_entries(&mut self, entries: &[TimelineEntry]) -> Result<()>;
    async fn append_timeline(&mut self, entry: &TimelineEntry) -> Result<()> {
        self.append_timeline_entries(std::slice::from_ref(entry))
            .await
    }

    async fn insert_user(&mut self, user: &UserRecord) -> Result<()>;
    async fn update_user(&mut self, user: &UserRecord) -> Result<()>;
    async fn insert_token(&mut self, token: &TokenRecord) -> Result<()>;
    async fn revoke_token(&mut self, id: Uuid, at: jiff::Timestamp) -> Result<bool>;
    async fn insert_session(&mut self, session: &SessionRecord) -> Result<()>;
    async fn delete_session(&mut self, hash: &str) -> Result<bool>;

    /// Counts a failure against `key` in a window that restarts once
    /// `window_start_before` has passed; returns the record as it now stands.
    async fn count_failure(
        &mut self,
        key: &str,
        at: jiff::Timestamp,
        window_start_before: jiff::Timestamp,
    ) -> Result<ThrottleRecord>;
    async fn lock_key(&mut self, key: &str, until: jiff::Timestamp) -> Result<()>;
    async fn clear_failures(&mut self, key: &str) -> Result<()>;

    /// Appends to the audit log and its Merkle tree; returns the event's
    /// sequence number.
    async fn append_audit(&mut self, event: &AuditEvent) -> Result<i64>;
    /// Appends several events in one go (batches from other applications,
    /// group commit); returns their sequence numbers in order. Taken by
    /// value: a large batch moves to the thread that hashes it.
    async fn append_audit_batch(&mut self, events: Vec<AuditEvent>) -> Result<Vec<i64>>;
    async fn insert_audit_key(
        &mut self,
        key_id: &str,
        public_hex: &str,
        at: jiff::Timestamp,
    ) -> Result<()>;
    /// A subject's newest data key: (generation, wrapped key or None once shredded).
    async fn current_subject_key(&mut self, subject: &str)
    -> Result<Option<(i64, Option<String>)>>;
    async fn insert_subject_key(
        &mut self,
        subject: &str,
        generation: i64,
        wrapped: &str,
        at: jiff::Timestamp,
    ) -> Result<()>;
    /// Destroys every data key of a subject; returns how many were live.
    async fn shred_subject(&mut self, subject: &str, at: jiff::Timestamp) -> Result<u64>;
    /// Records an archive and removes its events' rows (their leaves stay
    /// in the tree); returns how many rows went.
    async fn archive_audit(&mut self, archive: &ArchiveRecord) -> Result<u64>;
    /// Queues messages for delivery once this transaction commits.
    async fn enqueue(&mut self, messages: &[OutboxMessage]) -> Result<()>;

    async fn insert_channel(&mut self, channel: &Channel) -> Result<()>;
    /// Replaces a channel; a removed one gives up its name for reuse.
    async fn update_channel(&mut self, channel: &Channel) -> Result<()>;
    /// Deliveries of newly committed messages; one whose idempotency key
    /// exists already is left as it is.
    async fn insert_deliveries(&mut self, deliveries: &[DeliveryRecord]) -> Result<()>;
    /// Records an attempt's outcome and releases the worker's hold.
    async fn update_delivery(&mut self, delivery: &DeliveryRecord) -> Result<()>;

    async fn insert_policy(&mut self, policy: &Policy) -> Result<()>;
    /// Replaces the policy if the stored version is `expected_version`.
    async fn update_policy(&mut self, policy: &Policy, expected_version: i64) -> Result<()>;
    async fn insert_schedule(&mut self, schedule: &Schedule) -> Result<()>;
    /// Replaces the schedule if the stored version is `expected_version`.
    async fn update_schedule(&mut self, schedule: &Schedule, expected_version: i64) -> Result<()>;
    /// An incident's escalation, held against concurrent writers.
    async fn escalation_for_update(&mut self, incident: Uuid) -> Result<Option<Escalation>> {
        Ok(self.escalations_for_update(&[incident]).await?.pop())
    }
    /// The escalations of those of `incidents` that have one, held against
    /// concurrent writers, taken in order of incident, in one round trip.
    async fn escalations_for_update(&mut self, incidents: &[Uuid]) -> Result<Vec<Escalation>>;
    /// Inserts or replaces an escalation, due again at `due_at`, and
    /// releases any worker's hold on it.
    async fn save_escalation(
        &mut self,
        escalation: &Escalation,
        due_at: Option<jiff::Timestamp>,
    ) -> Result<()>;
    /// Cancels an incident's pages still waiting to go out; returns how many.
    async fn cancel_pages(&mut self, incident: Uuid, at: jiff::Timestamp) -> Result<u64>;

    async fn insert_service(&mut self, service: &Service) -> Result<()>;
    /// Replaces the service if the stored version is `expected_version`.
    async fn update_service(&mut self, service: &Service, expected_version: i64) -> Result<()>;
    async fn insert_integration(&mut self, integration: &Integration) -> Result<()>;
    async fn update_integration(&mut self, integration: &Integration) -> Result<()>;
    /// The integration, locked for the rest of the transaction.
    async fn integration_for_update(&mut self, id: Uuid) -> Result<Option<Integration>>;
    /// What an intake batch reads before it applies, in one round trip
    /// where the backend allows: the open alerts among `(integration,
    /// dedup key)` pairs, held against concurrent writers; and for each
    /// group, in order, the incident that the group's latest alert first
    /// seen at or after its `since` belongs to, if that incident is still
    /// open. First it holds every one of the batch's `integrations` (in
    /// any order, repeats allowed), and the groups' services, against
    /// other nodes' intake and against changes to the integrations.
    async fn open_alerts_and_groups(
        &mut self,
        integrations: &[Uuid],
        keys: &[(Uuid, String)],
        groups: &[AlertGroup],
    ) -> Result<(Vec<Alert>, Vec<Option<Uuid>>)>;
    /// Inserts or replaces alerts, many per statement.
    async fn save_alerts(&mut self, alerts: &[Alert]) -> Result<()>;
    /// The ids of an incident's alerts still open.
    async fn open_alerts_of_incident(&mut self, incident: Uuid) -> Result<Vec<Uuid>>;
    /// An incident's alerts still open, held with the integrations and
    /// services of its alerts as `open_alerts_and_groups` holds them, so
    /// that no batch changes one of them or joins the incident before this
    /// transaction ends. Call it before locking the incident: intake holds
    /// them first.
    async fn hold_open_alerts_of_incident(&mut self, incident: &IncidentKey) -> Result<Vec<Alert>>;
    async fn insert_service_change(&mut self, change: &ChangeRecord) -> Result<()>;
    /// Records that intake journal `journal` is applied up to record `seq`,
    /// with the changes those records made.
    async fn mark_intake_journal_applied(&mut self, journal: Uuid, seq: u64) -> Result<()>;
    /// Records that the kept intake record `replay` (named by its journal
    /// and number) is applied, with the changes it made; fails with
    /// `Duplicate` when it already was, and waits for a transaction
    /// marking it meanwhile. Not held: the refusal comes at once.
    async fn mark_intake_replayed(&mut self, replay: Uuid) -> Result<()>;

    /// Call with the incident locked, so saves of one postmortem queue.
    async fn postmortem_for_update(&mut self, incident: Uuid) -> Result<Option<PostmortemRecord>>;
    /// Inserts (`expected_version` 0) or replaces the row at that version.
    async fn save_postmortem(
        &mut self,
        record: &PostmortemRecord,
        expected_version: i64,
    ) -> Result<()>;
    async fn insert_postmortem_version(&mut self, frozen: &FrozenPostmortem) -> Result<()>;
    /// Makes the incident's tracked action items exactly `items`.
    async fn replace_action_items(
        &mut self,
        incident: Uuid,
        items: &[ActionItemRecord],
    ) -> Result<()>;
    async fn mark_action_item_reminded(&mut self, id: Uuid) -> Result<()>;
    /// Call with the incident locked.
    async fn obligations_for_update(&mut self, incident: Uuid) -> Result<Vec<ObligationRecord>>;
    async fn save_obligation(&mut self, record: &ObligationRecord) -> Result<()>;
    async fn delete_obligation(&mut self, incident: Uuid, rule: &str) -> Result<()>;

    /// Commits: the changes are visible once this returns, and durable
    /// once the returned [`Durable`] completes. Nothing may be reported as
    /// done before then; [`Tx::commit`] waits for both.
    async fn commit_visible(self: Box<Self>) -> Result<Durable>;

    /// Commits and returns once the changes are durable.
    async fn commit(self: Box<Self>) -> Result<()> {
        self.commit_visible().await?.wait().await
    }
}

/// The wait for a commit to reach stable storage. A backend whose commit
/// is durable when it returns gives [`Durable::now`]; one that syncs after
/// releasing its write lock (SQLite here), so that the next transaction
/// runs during the sync, gives the sync still to come.
#[must_use = "a commit is not durable until its Durable completes"]
pub struct Durable(Option<Pin<Box<dyn Future<Output = Result<()>> + Send>>>);

impl Durable {
    /// Already durable.
    pub fn now() -> Self {
        Durable(None)
    }

    /// Durable once `sync` completes.
    pub fn after(sync: impl Future<Output = Result<()>> + Send + 'static) -> Self {
        Durable(Some(Box::pin(sync)))
    }

    pub async fn wait(self) -> Result<()> {
        match self.0 {
            Some(sync) => sync.await,
            None => Ok(()),
        }
    }
}
