//! Intake through the journal (`[intake] journal = true`): a request is
//! answered once its events are synced to the journal (`journal.rs`), and
//! the applier here commits them behind it through the same write path as
//! a request answered after its commit, marking in each transaction the
//! last record it applied. Requests are applied in the order they were
//! synced, in batches of up to `APPLY_EVENTS_MAX` events.
//!
//! The applier does not wait for the database to sync each commit: the
//! journal already holds the records, and a commit the database loses in
//! a crash takes its mark with it, so its records are applied again. It
//! lets the database sync once a second under load, or when requests stop
//! coming; only records so kept may be cut from the journal.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiroku_domain::alert::{AlertEvent, Integration};
use kiroku_domain::{Actor, AuditEvent, Operation, Source, Target};
use kiroku_store::Durable;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Accepted, Effect, Job, Provenance, WhileAway, fresh_key};
use crate::journal::{ApplierRunning, Journal, JournalError, JournalFile, JournalSync, Record};
use crate::{App, AppError, Result};

/// The most events one applier transaction takes. Smaller than a
/// request-driven batch's 2,000: the applier, unlike senders, never runs
/// out of work in a storm, and other writers (people declaring,
/// acknowledging) wait for the writer between its transactions. 500
/// applied as fast as 2,000 here (25,300–25,700 against 22,500–24,300
/// alerts/s).
const APPLY_EVENTS_MAX: usize = 500;
/// About how much the applier reads at a time.
const READ_BYTES: usize = 1 << 20;
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long the applier, once caught up, waits for requests to gather.
const GATHER: Duration = Duration::from_millis(20);

/// How long commits go unsynced while requests keep coming.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How long the applier waits for more requests before it has the
/// database sync.
const KEEP_WHEN_IDLE: Duration = Duration::from_millis(50);

/// The applier's nice value, where it has a thread of its own: below the
/// default 0 of the threads answering requests (`start_applier`).
const APPLIER_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to `nice`: on Linux
/// the nice value belongs to each thread, and `setpriority` with 0 names
/// the caller. Threads it starts from then on inherit it. No crate wraps
/// it for one thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn lower_this_threads_priority(nice: i32) {
    // SAFETY: setpriority reads its plain integer arguments only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "intake journal applier left at the default priority"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn lower_this_threads_priority(_nice: i32) {}

/// Resolves once the runtime that started the applier is gone; never for
/// an applier that is a task of that runtime, and ends with it.
type StarterGone = Option<tokio::sync::oneshot::Receiver<()>>;

async fn starter_gone(gone: &mut StarterGone) {
    match gone {
        Some(receiver) => {
            let _ = receiver.await;
        }
        None => std::future::pending().await,
    }
}

/// One request, as its journal record holds it.
#[derive(Serialize, Deserialize)]
pub(super) struct Request {
    /// As it was when the request came, without its routing key.
    pub(super) integration: Integration,
    pub(super) source: Source,
    pub(super) events: Vec<AlertEvent>,
}

impl From<JournalError> for AppError {
    fn from(e: JournalError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

/// Syncs a request's events to the journal. Triggers without a dedup key
/// get theirs now, so that the answer can name it.
pub(super) async fn journal_request(
    journal: &Journal,
    integration: &Integration,
    source: Source,
    mut events: Vec<AlertEvent>,
) -> Result<Vec<Accepted>> {
    let accepted = events
        .iter_mut()
        .map(|event| Accepted {
            dedup_key: event.dedup_key.get_or_insert_with(fresh_key).clone(),
            effect: Effect::Journaled,
            alert_id: None,
            incident_id: None,
        })
        .collect();
    let request = Request {
        integration: Integration {
            key: String::new(),
            ..integration.clone()
        },
        source,
        events,
    };
    let payload = serde_json::to_vec(&request).map_err(|e| AppError::Internal(e.to_string()))?;
    journal.append(payload).await?;
    Ok(accepted)
}

/// A synced record and its request, decoded once; a record that does not
/// decode is dropped with an audit event when its turn comes.
type Decoded<'a> = (&'a Record, Result<Request>);

fn decode(record: &Record) -> Result<Request> {
    serde_json::from_slice(&record.payload)
        .map_err(|e| AppError::Damaged(format!("intake journal record {}: {e}", record.seq)))
}

/// How many events a decoded record carries, at least 1.
fn events_in((record, request): &Decoded<'_>) -> usize {
    match request {
        Ok(r) => r.events.len().max(1),
        Err(_) => event_count(record),
    }
}

/// Splits `records` into runs of at most `APPLY_EVENTS_MAX` events (a
/// larger record alone), each committed in one transaction.
fn runs(records: Vec<Decoded<'_>>) -> Vec<Vec<Decoded<'_>>> {
    let mut runs: Vec<Vec<Decoded<'_>>> = Vec::new();
    let mut events = 0;
    for decoded in records {
        let count = events_in(&decoded);
        match runs.last_mut() {
            Some(run) if events + count <= APPLY_EVENTS_MAX => run.push(decoded),
            _ => {
                runs.push(vec![decoded]);
                events = 0;
            }
        }
        events += count;
    }
    runs
}

/// Waits that double from `RETRY_FIRST` up to `RETRY_MAX`.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(RETRY_FIRST)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(RETRY_MAX);
    }

    /// Runs `attempt` until it succeeds, waiting between tries and saying
    /// `failing` of each failure; `None` once the journal is closed, what
    /// was not done being left to the next start.
    async fn until_done<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
        &mut self,
        journal: &Journal,
        failing: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Option<T> {
        loop {
            match attempt().await {
                Ok(done) => return Some(done),
                Err(_) if journal.is_closed() => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "{failing}");
                    self.wait().await;
                }
            }
        }
    }
}

impl App {
    /// Opens the intake journal at `path` and starts applying it: first
    /// what an earlier run synced but did not commit, then each request
    /// as it is synced. From then on intake answers once a request is in
    /// the journal, as `sync` says.
    pub async fn with_intake_journal(
        mut self,
        path: &Path,
        sync: JournalSync,
    ) -> Result<App, JournalError> {
        let file = JournalFile::open(path)?;
        let applied = self.store.intake_journal_applied(file.id()).await?;
        let journal = file.start(applied, sync)?;
        self.intake_journal = Some(journal.clone());
        let ended = journal.applier_started();
        self.clone().start_applier(journal, applied, ended);
        Ok(self)
    }

    /// Starts applying the journal. Where the store allows it (SQLite,
    /// whose connections run on threads of their own), the applier runs on
    /// a thread and runtime of its own, at a lower priority than the
    /// runtime that answers requests: under load the cores go to answering
    /// first. Measured against the applier on the answering runtime
    /// (SQLite, single alerts, 2-core AMD EPYC): concurrency 64 from
    /// 9,400–9,900 to 11,000–15,600/s with p99 from 20–23 to 12–16 ms,
    /// concurrency 8 from a median of 6,600 to 7,100/s; on a thread of its
    /// own at the same priority, 64 reached only 10,700–10,800/s. The
    /// applier stops once the runtime that started it is gone, between
    /// transactions, so that it leaves no transaction or log sync half
    /// done.
    fn start_applier(self, journal: Arc<Journal>, applied: u64, ended: ApplierRunning) {
        if !self.store.io_on_own_threads() {
            tokio::spawn(self.apply_journal(journal, applied, None, ended));
            return;
        }
        let starter = tokio::runtime::Handle::current();
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        starter.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await
        });
        let fallback = (self.clone(), journal.clone(), starter.clone());
        let applier = std::thread::Builder::new()
            .name("intake-applier".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        lower_this_threads_priority(APPLIER_NICE);
                        runtime.block_on(self.apply_journal(journal, applied, Some(gone), ended));
                    }
                    Err(e) => self.apply_on(&starter, journal, applied, ended, &e),
                }
            });
        if let Err(e) = applier {
            // The sender went with the thread's closure: register anew.
            let (app, journal, starter) = fallback;
            let ended = journal.applier_started();
            app.apply_on(&starter, journal, applied, ended, &e);
        }
    }

    /// Applies the journal as a task of the answering runtime, as on
    /// PostgreSQL, when the applier's own thread or runtime cannot be had.
    fn apply_on(
        self,
        starter: &tokio::runtime::Handle,
        journal: Arc<Journal>,
        applied: u64,
        ended: ApplierRunning,
        why: &dyn std::fmt::Display,
    ) {
        tracing::warn!(error = %why, "intake journal applied on the answering runtime");
        starter.spawn(self.apply_journal(journal, applied, None, ended));
    }

    /// Closes the intake journal, if there is one: intake answers 503
    /// from then on. Returns once the applier has ended, after the
    /// transaction it was in and the database's sync of it, so that
    /// whatever is written next (on shutdown, the last audit event and
    /// signed head) follows the last intake applied; the rest is applied
    /// on the next start.
    pub async fn close_intake_journal(&self) {
        if let Some(journal) = &self.intake_journal {
            journal.close().await;
        }
    }

    /// How many bytes of synced requests are yet to be committed; `None`
    /// without a journal.
    pub fn intake_backlog(&self) -> Option<u64> {
        self.intake_journal.as_ref().map(|j| j.backlog())
    }

    async fn apply_journal(
        self,
        journal: Arc<Journal>,
        applied: u64,
        mut gone: StarterGone,
        _ended: ApplierRunning,
    ) {
        // The last commit the database has not synced, and where the
        // records it applied end.
        let mut unkept: Option<(Durable, u64)> = None;
        let mut kept_at = Instant::now();
        loop {
            let keeping = unkept.is_some();
            let next = async {
                if keeping {
                    tokio::time::timeout(KEEP_WHEN_IDLE, journal.read(READ_BYTES)).await
                } else {
                    Ok(journal.read(READ_BYTES).await)
                }
            };
            // What was applied and not kept is applied again on the next
            // start, as after a crash.
            let read = tokio::select! {
                () = starter_gone(&mut gone) => return,
                read = next => read,
            };
            let records = match read {
                Ok(Ok(records)) => records,
                Err(_idle) => {
                    keep(&journal, unkept.take()).await;
                    kept_at = Instant::now();
                    continue;
                }
                Ok(Err(JournalError::Closed)) => {
                    // A clean stop keeps what was applied, so that the
                    // next start does not apply it again.
                    keep(&journal, unkept.take()).await;
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "intake journal unreadable");
                    tokio::time::sleep(RETRY_MAX).await;
                    continue;
                }
            };
            let fresh: Vec<Decoded<'_>> = records
                .iter()
                .filter(|r| r.seq > applied)
                .map(|r| (r, decode(r)))
                .collect();
            let events: usize = fresh.iter().map(events_in).sum();
            let largest = fresh.iter().map(events_in).max().unwrap_or(0);
            let mut committed = Durable::now();
            for run in runs(fresh) {
                match self.apply_run(&journal, run).await {
                    Some(c) => committed = c,
                    // Closed at a record neither applied nor marked: none
                    // after it is applied, and this read is not noted
                    // applied, so the journal keeps it for the next start.
                    None => {
                        keep(&journal, unkept.take()).await;
                        return;
                    }
                }
            }
            if let Some(last) = records.last() {
                journal.applied(last.end);
                // A later commit's sync covers the earlier ones.
                unkept = Some((committed, last.end));
            }
            drop(records);
            crate::memory::after_request(largest);
            if kept_at.elapsed() >= KEEP_EVERY {
                keep(&journal, unkept.take()).await;
                kept_at = Instant::now();
            }
            // Caught up: let requests gather into a larger batch, which
            // costs the database far less per alert than a few at a time.
            if events < APPLY_EVENTS_MAX / 2 {
                tokio::select! {
                    () = starter_gone(&mut gone) => return,
                    () = tokio::time::sleep(GATHER) => {}
                }
            }
        }
    }

    /// Commits a run in one transaction; if one of its records does not
    /// decode, or the commit fails for a reason other than the database
    /// being away, record by record, dropping (with an audit event) any
    /// that fails alone. Returns the wait for the last commit's sync, or
    /// `None` once the journal is closed at a record neither applied nor
    /// dropped: nothing after it may be marked applied, or the next start
    /// would pass it by.
    async fn apply_run(&self, journal: &Journal, run: Vec<Decoded<'_>>) -> Option<Durable> {
        let records: Vec<&Record> = run.iter().map(|(r, _)| *r).collect();
        let requests: Result<Vec<Request>> = run.into_iter().map(|(_, r)| r).collect();
        let e = match requests {
            Ok(requests) => match self.commit_retrying(journal, &records, requests).await {
                Ok(committed) => return Some(committed),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if journal.is_closed() {
            return None;
        }
        if let [record] = records[..] {
            return self
                .drop_record(journal, record, &e)
                .await
                .then(Durable::now);
        }
        tracing::warn!(error = %e, "intake journal batch failed; applying its records one by one");
        let mut committed = Durable::now();
        for record in records {
            let alone = match decode(record) {
                Ok(request) => {
                    self.commit_retrying(journal, &[record], vec![request])
                        .await
                }
                Err(e) => Err(e),
            };
            committed = match alone {
                Ok(c) => c,
                Err(_) if journal.is_closed() => return None,
                Err(e) => {
                    if !self.drop_record(journal, record, &e).await {
                        return None;
                    }
                    Durable::now()
                }
            };
        }
        Some(committed)
    }

    /// Commits `requests`, the requests of `records`, retrying while the
    /// database is away (each retry decodes them again: a failed commit
    /// has taken their events); a commit that did land, though its answer
    /// was lost, is not made twice.
    async fn commit_retrying(
        &self,
        journal: &Journal,
        records: &[&Record],
        requests: Vec<Request>,
    ) -> Result<Durable> {
        let journal_id = journal.id();
        let last = records.last().map_or(0, |r| r.seq);
        let mut requests = Some(requests);
        let mut backoff = Backoff::new();
        loop {
            let requests = match requests.take() {
                Some(requests) => requests,
                None => records.iter().map(|r| decode(r)).collect::<Result<_>>()?,
            };
            match self.commit_requests(journal_id, last, requests).await {
                Err(e @ (AppError::Unavailable(_) | AppError::DiskFull(_))) => {
                    if journal.is_closed() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "intake journal waits for the database");
                    backoff.wait().await;
                    // Landed after all: only PostgreSQL's commit can land
                    // unanswered, and it is durable once it has.
                    if matches!(self.store.intake_journal_applied(journal_id).await, Ok(s) if s >= last)
                    {
                        return Ok(Durable::now());
                    }
                }
                other => return other,
            }
        }
    }

    /// The job of a request whose sender was answered when its record was
    /// synced: nobody waits for its result.
    pub(super) async fn unanswered_job(&self, request: Request) -> Result<Job> {
        let routed = self
            .routed_service(request.integration.service_id, WhileAway::Wait)
            .await?;
        let (reply, _) = oneshot::channel();
        Ok(Job {
            integration: request.integration,
            routed,
            source: request.source,
            events: request.events,
            reply,
        })
    }

    /// One transaction for `requests`, marking record `last` applied.
    async fn commit_requests(
        &self,
        journal: Uuid,
        last: u64,
        requests: Vec<Request>,
    ) -> Result<Durable> {
        let mut jobs = Vec::with_capacity(requests.len());
        for request in requests {
            jobs.push(self.unanswered_job(request).await?);
        }
        let (_, committed) = self
            .apply_batch(&mut jobs, Provenance::Journal(journal, last))
            .await?;
        Ok(committed)
    }

    /// Marks a record that cannot be applied (its service or integration
    /// deleted since, say) as applied, with an audit event naming it and
    /// the file it is kept in (`Journal::keep_dropped`); until it is kept,
    /// it is not marked. Returns whether it was marked: not when the
    /// journal closed first.
    async fn drop_record(&self, journal: &Journal, record: &Record, error: &AppError) -> bool {
        let journal_id = journal.id();
        let mut backoff = Backoff::new();
        let Some(kept_in) = backoff
            .until_done(
                journal,
                &format!("intake journal cannot keep record {} it drops", record.seq),
                || journal.keep_dropped(record),
            )
            .await
        else {
            return false;
        };
        tracing::error!(
            seq = record.seq,
            error = ?error,
            kept_in = %kept_in.display(),
            "intake journal record dropped"
        );
        let event = AuditEvent::success(
            self.now(),
            &Actor::system(),
            &Source::system(),
            Operation::Execute,
            "alert_intake",
            Target::new("intake_journal", Some(journal_id.to_string())),
        )
        .with_change(
            None,
            Some(json!({
                "seq": record.seq,
                "events": event_count(record),
                "error": format!("{error:?}"),
                "kept_in": kept_in.display().to_string(),
                // What a replay of the file is checked against.
                "sha256": kept_digest(&record.payload),
            })),
        )
        .failure(error.code());
        let event = &event;
        let mark_dropped = || async move {
            let mut tx = self.begin().await?;
            tx.append_audit(event).await?;
            tx.mark_intake_journal_applied(journal_id, record.seq)
                .await?;
            tx.commit().await?;
            Ok::<_, AppError>(())
        };
        backoff
            .until_done(
                journal,
                "intake journal cannot record a dropped record yet",
                mark_dropped,
            )
            .await
            .is_some()
    }
}

/// Has the database sync the applier's last commit, then lets the
/// journal cut back what it applied. A failed sync leaves the records in
/// the journal, to be kept by a later one.
async fn keep(journal: &Journal, unkept: Option<(Durable, u64)>) {
    let Some((committed, end)) = unkept else {
        return;
    };
    match committed.wait().await {
        Ok(()) => journal.kept(end),
        Err(e) => tracing::warn!(error = %e, "intake journal: the database did not sync"),
    }
}

/// The SHA-256 of a kept record's bytes, in hex.
pub(super) fn kept_digest(payload: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    kiroku_audit::hex::encode(&Sha256::digest(payload))
}

/// How many events a record that does not decode as a request holds, read
/// from its `events` array alone; 1 when even that does not decode.
fn event_count(record: &Record) -> usize {
    #[derive(Deserialize)]
    struct Events {
        events: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Events>(&record.payload).map_or(1, |r| r.events.len().max(1))
}
