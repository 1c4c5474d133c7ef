//! Fault injection and soak: `bench/fault kill9|pg-restart|disk-full|
//! receivers-down|soak`. Each scenario starts the release binary, drives
//! writes over loopback while a fault strikes, records every write that
//! was answered, and afterwards checks the store holds each one, that no
//! notification was recorded sent twice, and that `kiroku audit verify`
//! passes. Results go to `bench/results/fault-NAME.md` and `.json`; an
//! invariant that fails makes the run exit non-zero.

mod disk_full;
mod kill9;
mod pg_restart;
mod receivers_down;
mod soak;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use uuid::Uuid;

use kiroku_domain::alert::{Alert, AlertStatus};
use kiroku_domain::{AuditEvent, Status};
use kiroku_store::{
    AlertQuery, AuditQuery, DeliveryStatus, IncidentKey, PAGE_MAX, PageCursor, Store,
};

use crate::{Opts, Report, Server, Target, bootstrap_as, machine, pg_database, pg_reachable};

pub async fn run(o: &Opts, name: &str) -> anyhow::Result<()> {
    let seed = o.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let work = Scratch::new()?;
    match name {
        "kill9" => kill9::run(o, &work, seed).await,
        "pg-restart" => pg_restart::run(o, &work).await,
        "disk-full" => disk_full::run(o, &work).await,
        "receivers-down" => receivers_down::run(o, &work).await,
        "soak" => soak::run(o, &work).await,
        other => bail!(
            "unknown fault scenario {other}; one of kill9, pg-restart, disk-full, receivers-down, soak"
        ),
    }
}

/// The scenario's temporary directories (its SQLite stores, the
/// PostgreSQL targets' key directory), removed when it ends however it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("kiroku-fault-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn sqlite(&self, name: &str) -> Target {
        Target::Sqlite(self.0.join(name))
    }

    /// A configuration file with short delivery holds and retries: a
    /// delivery a killed process held is sent again within seconds rather
    /// than after the default hold.
    fn short_holds(&self) -> anyhow::Result<String> {
        let path = self.0.join("short-holds.toml");
        std::fs::write(
            &path,
            "[notify]\nhold_seconds = 2\nfirst_retry_seconds = 1\nmax_retry_seconds = 2\n",
        )?;
        Ok(path.display().to_string())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // Target::args keeps every PostgreSQL target's keys here.
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("kiroku-bench-pg-{}", std::process::id())),
        );
    }
}

/// A throwaway PostgreSQL database for the scenario, dropped with it; None
/// (after a SKIP line) when no server answers.
struct PgDb {
    admin: String,
    name: String,
    target: Target,
}

impl PgDb {
    async fn create(o: &Opts, scenario: &str, r: &mut Report) -> anyhow::Result<Option<PgDb>> {
        if let Err(e) = pg_reachable(&o.pg_url).await {
            r.line(&format!("SKIP: PostgreSQL ({e})"));
            return Ok(None);
        }
        let name = format!("fault_{}", scenario.replace('-', "_"));
        let url = pg_database(&o.pg_url, &name).await?;
        Ok(Some(PgDb {
            admin: o.pg_url.clone(),
            name: format!("kiroku_bench_{name}"),
            target: Target::Postgres(url),
        }))
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut c)
        .await?;
        Ok(())
    }
}

/// SplitMix64: kill moments that a printed seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A webhook receiver on loopback that counts arrivals by idempotency
/// key and notes when each came. It answers after a short pause, so that
/// kills land while deliveries are in flight, and it can be taken down
/// and brought back on the same port.
#[derive(Clone, Default)]
struct Receiver {
    arrivals: Arc<Mutex<BTreeMap<String, Vec<Instant>>>>,
}

/// A receiver while it listens.
struct Listening {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    /// Listens on `addr` (any free port when None).
    async fn up(&self, addr: Option<SocketAddr>) -> anyhow::Result<Listening> {
        let arrivals = self.arrivals.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let arrivals = arrivals.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    arrivals
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push(Instant::now());
                    "ok"
                }
            }),
        );
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into())).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Listening {
            addr,
            shutdown,
            task,
        })
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .map(|(k, at)| (k.clone(), at.len()))
            .collect()
    }
}

impl Listening {
    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stops listening and closes every connection: senders are refused.
    async fn down(self) -> SocketAddr {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        self.addr
    }
}

/// What a scenario's writers need: an admin paged at the receiver, an
/// application sending audit events, and three intake integrations whose
/// alerts page no one, so that pages come only from declared incidents and
/// stay countable: generic and PagerDuty on a grouped service, and
/// PagerDuty on a service whose alerts each open an incident, which their
/// resolve resolves.
#[derive(Clone)]
struct Rig {
    admin: String,
    app: String,
    generic: String,
    pagerduty: String,
    resolving: String,
    integrations: Vec<Uuid>,
    /// The admin's webhook contact method: every page's key names it.
    method: String,
}

impl Rig {
    async fn new(o: &Opts, target: &Target, server: &Server, hook: &str) -> anyhow::Result<Rig> {
        let admin = bootstrap_as(&o.kiroku, target, "fault-admin", "admin")?;
        let app = bootstrap_as(&o.kiroku, target, "fault-app", "application")?;
        let c = reqwest::Client::new();
        let api = |path: &str| format!("{}{path}", server.url);
        let send = |req: reqwest::RequestBuilder| async {
            let res = req.bearer_auth(&admin).send().await?;
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("setup answered {status}: {body}");
            }
            anyhow::Ok(body)
        };
        let method = send(
            c.post(api("/api/v1/users/fault-admin/contact-methods"))
                .json(&json!({"label": "hook", "type": "webhook", "address": hook, "rate_per_minute": 6000})),
        )
        .await?;
        let me = send(c.get(api("/api/v1/me"))).await?;
        // One level, an hour long: each incident is paged once while a
        // scenario runs.
        let me_target = json!([{"type": "user", "id": me["user"]["id"]}]);
        send(c.put(api("/api/v1/escalation-policies/default")).json(
            &json!({"name": "default", "levels": [{"targets": me_target, "delay_minutes": 60}]}),
        ))
        .await?;
        send(
            c.post(api("/api/v1/escalation-policies"))
                .json(&json!({"name": "quiet", "levels": [{"targets": [], "delay_minutes": 60}]})),
        )
        .await?;
        let mut keys = Vec::new();
        for (kind, service) in [
            ("generic", "fault-intake"),
            ("pagerduty", "fault-intake"),
            ("pagerduty", "fault-resolve"),
        ] {
            let i = send(c.post(api("/api/v1/integrations")).json(
                &json!({"type": kind, "service": service, "rate_limit_per_second": 1_000_000}),
            ))
            .await?;
            keys.push((
                i["key"].as_str().context("no key")?.to_string(),
                i["id"].as_str().context("no id")?.parse()?,
            ));
        }
        send(
            // Grouped, so that alerts also join open incidents: the case
            // in which the journal's applied mark once went wrong.
            c.put(api("/api/v1/services/fault-intake/routing"))
                .json(&json!({
                    "escalation_policy": "quiet",
                    "grouping": {"mode": "labels", "labels": ["alertname"], "window_minutes": 60},
                })),
        )
        .await?;
        send(
            c.put(api("/api/v1/services/fault-resolve/routing"))
                .json(&json!({"escalation_policy": "quiet"})),
        )
        .await?;
        Ok(Rig {
            admin,
            app,
            generic: keys[0].0.clone(),
            pagerduty: keys[1].0.clone(),
            resolving: keys[2].0.clone(),
            integrations: keys.iter().map(|k| k.1).collect(),
            method: method["id"].as_str().context("no method id")?.to_string(),
        })
    }

    fn page_key(&self, incident: Uuid) -> String {
        format!("page:{incident}:1:{}", self.method)
    }
}

/// The writes a scenario's senders had answered, and what else they got.
#[derive(Clone, Debug, Default)]
struct Answered {
    /// Dedup keys of alerts answered 202.
    alerts: Vec<String>,
    /// Dedup keys of those alerts whose resolve was answered 202.
    resolved: Vec<String>,
    /// Incidents answered 201.
    incidents: Vec<Uuid>,
    /// Audit batches answered 201: the first seq, and each event's target id.
    audit: Vec<(i64, Vec<String>)>,
    /// Answers other than success, by "status code (family)".
    refusals: BTreeMap<String, usize>,
    /// Requests that got no answer (connection refused or cut).
    unanswered: usize,
}

impl Answered {
    /// "N answered writes checked (a alerts, r resolves, i incidents, e
    /// audit events)".
    fn checked(&self) -> String {
        format!(
            "{} answered writes checked ({} alerts, {} resolves, {} incidents, {} audit events)",
            self.writes(),
            self.alerts.len(),
            self.resolved.len(),
            self.incidents.len(),
            self.audit_events()
        )
    }

    fn merge(&mut self, other: Answered) {
        self.alerts.extend(other.alerts);
        self.resolved.extend(other.resolved);
        self.incidents.extend(other.incidents);
        self.audit.extend(other.audit);
        for (k, n) in other.refusals {
            *self.refusals.entry(k).or_default() += n;
        }
        self.unanswered += other.unanswered;
    }

    fn audit_events(&self) -> usize {
        self.audit.iter().map(|(_, ids)| ids.len()).sum()
    }

    fn writes(&self) -> usize {
        self.alerts.len() + self.resolved.len() + self.incidents.len() + self.audit_events()
    }

    fn refusals_text(&self) -> String {
        if self.refusals.is_empty() {
            return "none".into();
        }
        self.refusals
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn json(&self) -> Value {
        json!({
            "alerts": self.alerts.len(),
            "resolves": self.resolved.len(),
            "incidents": self.incidents.len(),
            "audit_events": self.audit_events(),
            "refusals": self.refusals,
            "unanswered": self.unanswered,
        })
    }
}

/// One writer's kind of request.
#[derive(Clone, Copy)]
enum Kind {
    Generic,
    PagerDuty,
    /// A PagerDuty trigger that opens an incident, then its resolve.
    Resolving,
    Resolve,
    Declare,
    AuditEvents,
}

impl Kind {
    /// What a refusal is counted under.
    fn family(&self) -> &'static str {
        match self {
            Kind::Generic | Kind::PagerDuty | Kind::Resolving | Kind::Resolve => INTAKE,
            Kind::Declare => "declarations",
            Kind::AuditEvents => "audit events",
        }
    }
}

/// The family of intake requests, in refusals' keys.
const INTAKE: &str = "intake";

/// `kiroku serve`'s arguments for the intake journal, as `--intake-journal`
/// and `--intake-journal-sync-ms` given to the scenario ask.
fn journal_args(o: &Opts) -> Vec<String> {
    let mut args = Vec::new();
    if o.intake_journal {
        args.push("--intake-journal".to_string());
    }
    if let Some(ms) = o.intake_journal_sync_ms {
        args.extend(["--intake-journal-sync-ms".to_string(), ms.to_string()]);
    }
    args
}

/// Eight closed-loop writers — four intake senders (two formats, one of
/// them resolving each alert it opens), two declaring incidents, two
/// sending audit events in fives — until stopped.
struct Senders {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Answered>>,
}

impl Senders {
    fn start(base: &str, rig: &Rig, tag: &str) -> Senders {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client");
        let kinds = [
            Kind::Generic,
            Kind::PagerDuty,
            Kind::Generic,
            Kind::Resolving,
            Kind::Declare,
            Kind::Declare,
            Kind::AuditEvents,
            Kind::AuditEvents,
        ];
        let tasks = kinds
            .into_iter()
            .enumerate()
            .map(|(w, kind)| {
                let (stop, client, rig) = (stop.clone(), client.clone(), rig.clone());
                let (base, tag) = (base.to_string(), format!("{tag}-w{w}"));
                tokio::spawn(async move { send(kind, &client, &base, &rig, &tag, &stop).await })
            })
            .collect();
        Senders { stop, tasks }
    }

    async fn finish(self) -> anyhow::Result<Answered> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Answered::default();
        for t in self.tasks {
            all.merge(t.await?);
        }
        Ok(all)
    }
}

async fn send(
    kind: Kind,
    client: &reqwest::Client,
    base: &str,
    rig: &Rig,
    tag: &str,
    stop: &AtomicBool,
) -> Answered {
    let mut got = Answered::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("{tag}-{i}");
        let mut answered = send_one(kind, client, base, rig, &key, &mut got).await;
        if answered && matches!(kind, Kind::Resolving) {
            answered = send_one(Kind::Resolve, client, base, rig, &key, &mut got).await;
        }
        if !answered {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    got
}

/// Sends one write keyed `key` and notes its answer in `got`; whether it
/// was answered with success.
async fn send_one(
    kind: Kind,
    client: &reqwest::Client,
    base: &str,
    rig: &Rig,
    key: &str,
    got: &mut Answered,
) -> bool {
    let ids: Vec<String> = (0..5).map(|j| format!("{key}-{j}")).collect();
    let req = match kind {
        Kind::Generic => client
            .post(format!(
                "{base}/api/v1/integrations/{}/generic",
                rig.generic
            ))
            .json(&json!({"summary": key, "source": "fault", "severity": "critical", "dedup_key": key})),
        Kind::PagerDuty | Kind::Resolving | Kind::Resolve => {
            let (routing_key, action) = match kind {
                Kind::PagerDuty => (&rig.pagerduty, "trigger"),
                Kind::Resolving => (&rig.resolving, "trigger"),
                _ => (&rig.resolving, "resolve"),
            };
            client.post(format!("{base}/v2/enqueue")).json(&json!({
                "routing_key": routing_key, "event_action": action, "dedup_key": key,
                "payload": {"summary": key, "source": "fault", "severity": "error"}
            }))
        }
        Kind::Declare => client
            .post(format!("{base}/api/v1/incidents"))
            .bearer_auth(&rig.admin)
            .json(&json!({"title": key, "category": "database", "severity": "P1"})),
        Kind::AuditEvents => {
            let events: Vec<Value> = ids
                .iter()
                .map(|id| {
                    json!({
                        "time": "2026-11-21T09:00:00+09:00",
                        "actor": {"id": "u-1042", "role": "clerk"},
                        "operation": "update",
                        "action": "invoice_update",
                        "target": {"kind": "invoice", "id": id},
                        "source": {"ip": "192.0.2.7", "user_agent": "billing/2.1"},
                        "result": "success"
                    })
                })
                .collect();
            client
                .post(format!("{base}/api/v1/audit/events"))
                .bearer_auth(&rig.app)
                .json(&json!({ "events": events }))
        }
    };
    let answer = match req.send().await {
        Ok(res) => {
            let status = res.status();
            res.bytes().await.map(|b| (status, b))
        }
        Err(e) => Err(e),
    };
    let Ok((status, body)) = answer else {
        got.unanswered += 1;
        return false;
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match kind {
        Kind::Generic | Kind::PagerDuty | Kind::Resolving
            if status == reqwest::StatusCode::ACCEPTED =>
        {
            got.alerts.push(key.to_string());
            return true;
        }
        Kind::Resolve if status == reqwest::StatusCode::ACCEPTED => {
            got.resolved.push(key.to_string());
            return true;
        }
        Kind::Declare if status == reqwest::StatusCode::CREATED => {
            if let Some(id) = body["id"].as_str().and_then(|s| s.parse().ok()) {
                got.incidents.push(id);
                return true;
            }
        }
        Kind::AuditEvents if status == reqwest::StatusCode::CREATED => {
            if let Some(first) = body["first_seq"].as_i64() {
                got.audit.push((first, ids));
                return true;
            }
        }
        _ => {}
    }
    // Intake answers in its sender's own protocol; the rest with {code}.
    let code = body["code"]
        .as_str()
        .or(body["status"].as_str())
        .unwrap_or("(no code)");
    *got.refusals
        .entry(format!("{} {code} ({})", status.as_u16(), kind.family()))
        .or_default() += 1;
    false
}

/// Every audit event recorded with `action`, in sequence order.
async fn audit_events_of(store: &dyn Store, action: &str) -> anyhow::Result<Vec<AuditEvent>> {
    let mut all = Vec::new();
    loop {
        let page = store
            .audit_events(&AuditQuery {
                action: Some(action.into()),
                after_seq: all.last().map(|e: &AuditEvent| e.seq),
                // A page at a time, until one comes back empty.
                limit: PAGE_MAX,
                ..Default::default()
            })
            .await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Every answered write that the store does not hold as answered.
async fn missing(store: &dyn Store, rig: &Rig, answered: &Answered) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stored: BTreeMap<String, Alert> = BTreeMap::new();
    for integration in &rig.integrations {
        let mut query = AlertQuery {
            integration_id: Some(*integration),
            // A page at a time, until one comes back empty.
            limit: PAGE_MAX,
            ..Default::default()
        };
        loop {
            let page = store.alerts(&query).await?;
            query.after = page.last().map(|a| PageCursor {
                at: a.first_seen_at,
                id: a.id,
            });
            if page.is_empty() {
                break;
            }
            stored.extend(page.into_iter().map(|a| (a.dedup_key.clone(), a)));
        }
    }
    for key in &answered.alerts {
        match stored.get(key).map(|a| a.count) {
            None => problems.push(format!("answered alert {key} is not stored")),
            // Each key is triggered once: a count above one would be a repeat.
            Some(n) if n != 1 => problems.push(format!("alert {key} counted {n} times")),
            Some(_) => {}
        }
    }
    // Its alert resolved and, as its only alert, the incident with it.
    for key in &answered.resolved {
        let Some(alert) = stored.get(key) else {
            continue;
        };
        if alert.status != AlertStatus::Resolved {
            problems.push(format!("answered resolve of alert {key} is not stored"));
            continue;
        }
        let incident = match alert.incident_id {
            Some(id) => store.incident(&IncidentKey::Id(id)).await?,
            None => None,
        };
        if incident.is_none_or(|i| i.status != Status::Resolved) {
            problems.push(format!("alert {key} resolved, its incident not"));
        }
    }
    for id in &answered.incidents {
        if store.incident(&IncidentKey::Id(*id)).await?.is_none() {
            problems.push(format!("answered incident {id} is not stored"));
        }
    }
    for (first, ids) in &answered.audit {
        let rows = store.audit_raw(first - 1, ids.len() as i64).await?;
        for (k, id) in ids.iter().enumerate() {
            let seq = first + k as i64;
            let found = rows
                .iter()
                .find(|e| e.seq == seq)
                .and_then(|e| serde_json::from_str::<Value>(&e.doc).ok())
                .is_some_and(|doc| doc["target"]["id"] == *id.as_str());
            if !found {
                problems.push(format!("answered audit event {id} is not at seq {seq}"));
            }
        }
    }
    Ok(problems)
}

/// What the pages came to once every delivery was settled.
struct Pages {
    /// Deliveries the server recorded sent.
    sent: usize,
    /// Idempotency keys that reached the receiver.
    received: usize,
    /// Arrivals beyond the first of a key: a kill between sending and
    /// recording, resent after the restart (expected after kills only).
    repeats: usize,
    /// Keys the audit log records sent more than once (must be none).
    recorded_twice: usize,
}

/// The server's own record of each delivery sent, its audit event, by
/// idempotency key.
async fn recorded_sent(store: &dyn Store) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for e in audit_events_of(store, "notification_sent").await? {
        let key = e.after.as_ref().and_then(|a| a["idempotency_key"].as_str());
        *recorded
            .entry(key.unwrap_or("(none)").to_string())
            .or_default() += 1;
    }
    Ok(recorded)
}

/// Waits up to `within` until no delivery is pending and every answered
/// incident is recorded paged, then checks each was, that the audit log
/// records no idempotency key sent twice, and that the receiver saw
/// exactly the recorded keys.
async fn settled_pages(
    store: &dyn Store,
    receiver: &Receiver,
    rig: &Rig,
    incidents: &[Uuid],
    within: Duration,
) -> anyhow::Result<(Pages, Vec<String>)> {
    let deadline = Instant::now() + within;
    let mut problems = Vec::new();
    // Settled: nothing pending, and every answered incident paged (an
    // escalation a killed process held is stepped once its hold lapses).
    let recorded = loop {
        let pending = !store
            .deliveries(Some(DeliveryStatus::Pending), 1)
            .await?
            .is_empty();
        let recorded = recorded_sent(store).await?;
        if !pending
            && incidents
                .iter()
                .all(|id| recorded.contains_key(&rig.page_key(*id)))
        {
            break recorded;
        }
        if Instant::now() > deadline {
            if pending {
                problems.push(format!("deliveries still pending after {within:?}"));
            }
            break recorded;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let dead = store.deliveries(Some(DeliveryStatus::Dead), 10).await?;
    if let Some(d) = dead.first() {
        problems.push(format!(
            "{} deliveries dead, e.g. {}: {:?}",
            dead.len(),
            d.idempotency_key,
            d.last_error
        ));
    }
    let sent: usize = recorded.values().sum();
    for (key, n) in &recorded {
        if *n > 1 {
            problems.push(format!("{key} recorded sent {n} times"));
        }
    }
    for id in incidents {
        if !recorded.contains_key(&rig.page_key(*id)) {
            problems.push(format!("answered incident {id} was never paged"));
        }
    }
    let counts = receiver.counts();
    for key in recorded.keys().filter(|k| !counts.contains_key(*k)) {
        problems.push(format!("{key} recorded sent but never arrived"));
    }
    for key in counts.keys().filter(|k| !recorded.contains_key(*k)) {
        problems.push(format!("{key} arrived but is not recorded sent"));
    }
    let pages = Pages {
        sent,
        received: counts.len(),
        repeats: counts.values().map(|n| n - 1).sum(),
        recorded_twice: recorded.values().filter(|n| **n > 1).count(),
    };
    Ok((pages, problems))
}

/// Every answered write looked for in the store, then the pages settled:
/// what the pages came to; whatever went wrong joins `problems`.
async fn writes_and_pages(
    store: &dyn Store,
    receiver: &Receiver,
    rig: &Rig,
    answered: &Answered,
    within: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<Pages> {
    problems.extend(missing(store, rig, answered).await?);
    let (pages, paging) = settled_pages(store, receiver, rig, &answered.incidents, within).await?;
    problems.extend(paging);
    Ok(pages)
}

/// `kiroku audit verify` on the target: the events it checked, or its
/// complaint, which is also added to `problems` under `what`.
fn audit_verify(
    kiroku: &Path,
    target: &Target,
    what: &str,
    problems: &mut Vec<String>,
) -> anyhow::Result<Result<u64, String>> {
    let verified = run_audit_verify(kiroku, target)?;
    if let Err(why) = &verified {
        problems.push(format!("{what}: audit verify failed: {why}"));
    }
    Ok(verified)
}

/// How a verify came out, for a results line.
fn verify_text(verified: &Result<u64, String>) -> String {
    match verified {
        Ok(n) => format!("ok, {n} events"),
        Err(_) => "FAILED".into(),
    }
}

fn run_audit_verify(kiroku: &Path, target: &Target) -> anyhow::Result<Result<u64, String>> {
    let out = std::process::Command::new(kiroku)
        .args(["audit", "verify", "--json"])
        .args(target.args())
        .output()?;
    if !out.status.success() {
        return Ok(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    Ok(Ok(summary["summary"]["events"].as_u64().unwrap_or(0)))
}

/// A results file's opening: what ran, where, and what is checked.
fn header(title: &str, checks: &str) -> Report {
    let mut r = Report::new();
    let when = jiff::Timestamp::now();
    r.line(&format!("# Kiroku fault injection: {title}\n"));
    r.line(&format!("Run {when} on {}.", machine()));
    r.line(
        "Load comes from the same machine over loopback, so client and server share the cores.\n",
    );
    r.line(&format!("Checked: {checks}\n"));
    r.json.insert("machine".into(), json!(machine()));
    r.json.insert("time".into(), json!(when.to_string()));
    r
}

/// Ends a scenario: the verdict, the results files, and an error when an
/// invariant failed.
fn finish(o: &Opts, mut r: Report, name: &str, problems: &[String]) -> anyhow::Result<()> {
    let verdict = if problems.is_empty() { "PASS" } else { "FAIL" };
    r.line(&format!("\n**Verdict: {verdict}**"));
    for p in problems.iter().take(20) {
        r.line(&format!("- {p}"));
    }
    if problems.len() > 20 {
        r.line(&format!("- … and {} more", problems.len() - 20));
    }
    r.json.insert("verdict".into(), json!(verdict));
    r.json.insert("problems".into(), json!(problems));
    r.write(&o.out, &format!("fault-{name}"))?;
    if !problems.is_empty() {
        bail!("{name}: {} invariant(s) failed", problems.len());
    }
    Ok(())
}
