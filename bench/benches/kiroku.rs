//! Kiroku's benchmark runner. Starts the release binary on a fresh store,
//! drives it over loopback HTTP, and writes Markdown and JSON results with
//! a description of the machine. Run it through `bench/run`, or
//! `cargo bench -p kiroku-bench -- --kiroku target/release/kiroku --out bench/results`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use kiroku_bench::seed;

mod fault;
mod intake;
mod paging;
mod reports;

struct Opts {
    kiroku: PathBuf,
    out: PathBuf,
    quick: bool,
    /// Run one section only: create, list, reports, intake, paging or audit.
    only: Option<String>,
    /// PostgreSQL server to create the benchmark databases on.
    pg_url: String,
    /// The audit section's log size, when not the default.
    audit_events: Option<u64>,
    /// Run one fault-injection scenario instead of the benchmarks.
    fault: Option<String>,
    /// A fault scenario's rounds, when not its default.
    rounds: Option<usize>,
    /// The fault scenarios' random seed, to replay a run.
    seed: Option<u64>,
    /// kill9 with intake answering from its journal.
    intake_journal: bool,
    /// kill9 with the journal answering before its sync, synced within
    /// this many milliseconds.
    intake_journal_sync_ms: Option<u64>,
}

impl Opts {
    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == section)
    }
}

fn opts() -> anyhow::Result<Opts> {
    let mut args = std::env::args().skip(1);
    let (mut kiroku, mut out, mut quick, mut only) = (None, None, false, None);
    let (mut audit_events, mut fault, mut rounds, mut seed) = (None, None, None, None);
    let mut intake_journal = false;
    let mut intake_journal_sync_ms = None;
    let number = |flag: &str, v: Option<String>| -> anyhow::Result<u64> {
        v.and_then(|n| n.parse().ok())
            .with_context(|| format!("{flag} takes a number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kiroku" => kiroku = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--only" => only = args.next(),
            "--audit-events" => audit_events = Some(number(&a, args.next())?),
            "--fault" => fault = args.next(),
            "--rounds" => rounds = Some(number(&a, args.next())? as usize),
            "--seed" => seed = Some(number(&a, args.next())?),
            "--intake-journal" => intake_journal = true,
            "--intake-journal-sync-ms" => {
                intake_journal_sync_ms = Some(number(&a, args.next())?);
                intake_journal = true;
            }
            // cargo bench passes this to every harness-less bench.
            "--bench" => {}
            other => bail!(
                "unknown argument {other}; use --kiroku PATH --out DIR [--quick] [--only SECTION] [--audit-events N] [--fault NAME [--rounds N] [--seed N] [--intake-journal] [--intake-journal-sync-ms MS]]"
            ),
        }
    }
    Ok(Opts {
        kiroku: kiroku.context("--kiroku PATH is required")?,
        out: out.context("--out DIR is required")?,
        quick,
        only,
        audit_events,
        fault,
        rounds,
        seed,
        intake_journal,
        intake_journal_sync_ms,
        pg_url: std::env::var("KIROKU_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    })
}

/// Latency summary in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Summary {
    n: usize,
    per_sec: f64,
    p50: f64,
    p99: f64,
}

fn summarise(mut lat: Vec<Duration>, wall: Duration) -> Summary {
    lat.sort();
    let q = |p: f64| {
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Summary {
        n: lat.len(),
        per_sec: lat.len() as f64 / wall.as_secs_f64(),
        p50: q(0.50),
        p99: q(0.99),
    }
}

/// The median run by throughput, and whether the runs disagreed by more
/// than 15 % (noisy).
fn median(mut runs: Vec<Summary>) -> (Summary, bool) {
    runs.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
    let lo = runs.first().unwrap().per_sec;
    let hi = runs.last().unwrap().per_sec;
    (runs[runs.len() / 2], (hi - lo) / hi > 0.15)
}

/// Three runs of `requests` each, and their median (with whether they
/// disagreed): how every latency row here is measured.
async fn median_of_three(
    concurrency: usize,
    requests: usize,
    make: &Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
) -> anyhow::Result<(Summary, bool)> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(load(concurrency, requests, make.clone()).await?);
    }
    Ok(median(runs))
}

/// GETs of `url` in a browser's signed-in session.
fn session_get(
    client: &reqwest::Client,
    url: String,
    cookie: &str,
) -> Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> {
    let (client, cookie) = (client.clone(), cookie.to_string());
    Arc::new(move |_| client.get(&url).header("cookie", &cookie))
}

/// The CPU time, user and system, that process `pid` has used, in
/// seconds; /proc counts it in clock ticks, which are 1/100 s on Linux.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which may hold spaces, in
    // parentheses: utime and stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unreadable /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Process `pid`'s CPU time once it has stopped working, so that what a
/// server does behind its answers (committing a journal, checkpointing)
/// is counted with the requests that caused it.
async fn cpu_seconds_when_idle(pid: u32) -> anyhow::Result<f64> {
    let mut last = cpu_seconds(pid)?;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cpu_seconds(pid)?;
        if now - last <= 0.01 {
            return Ok(now);
        }
        last = now;
    }
    bail!("process {pid} kept working for 20 s after its load ended")
}

/// Sends `total` requests from `concurrency` workers; `make` builds each one.
async fn load(
    concurrency: usize,
    total: usize,
    make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
) -> anyhow::Result<Summary> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, make) = (next.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                let res = make(i).send().await?;
                let status = res.status();
                let _ = res.bytes().await?;
                if !status.is_success() {
                    bail!("request {i} answered {status}");
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for w in workers {
        lat.extend(w.await??);
    }
    Ok(summarise(lat, start.elapsed()))
}

#[derive(Clone)]
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Target {
    fn args(&self) -> Vec<String> {
        match self {
            Target::Sqlite(dir) => vec!["--data-dir".into(), dir.display().to_string()],
            // The data directory holds the signing key and the witness.
            Target::Postgres(url) => vec![
                "--database-url".into(),
                url.clone(),
                "--data-dir".into(),
                std::env::temp_dir()
                    .join(format!("kiroku-bench-pg-{}", std::process::id()))
                    .display()
                    .to_string(),
            ],
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "SQLite",
            Target::Postgres(_) => "PostgreSQL",
        }
    }
}

struct Server {
    child: Child,
    url: String,
    started_in: Duration,
}

impl Server {
    async fn start(kiroku: &Path, target: &Target) -> anyhow::Result<Server> {
        Server::start_with(kiroku, target, &[]).await
    }

    /// Starts `kiroku serve` with `extra` arguments (a `--config FILE`).
    async fn start_with(kiroku: &Path, target: &Target, extra: &[&str]) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t0 = Instant::now();
        // KIROKU_BENCH_SERVER_LOG=FILE keeps the server's info log, for
        // looking into a result.
        let log = std::env::var_os("KIROKU_BENCH_SERVER_LOG");
        let stderr = match &log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => Stdio::null(),
        };
        let child = Command::new(kiroku)
            .arg("serve")
            .args(target.args())
            .args(extra)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("KIROKU_LOG", if log.is_some() { "info" } else { "warn" })
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{url}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("kiroku did not start within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Server {
            child,
            url,
            started_in: t0.elapsed(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in MiB, from /proc.
    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// Returns once intake's journal holds nothing uncommitted.
    async fn journal_committed(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        loop {
            let h: serde_json::Value = client
                .get(format!("{}/healthz", self.url))
                .send()
                .await?
                .json()
                .await?;
            match h["intake_journal_backlog_bytes"].as_u64() {
                Some(0) => return Ok(()),
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                None => bail!("no intake journal backlog in /healthz: {h}"),
            }
        }
    }

    /// SIGKILL: no shutdown work, as in a crash.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn bootstrap(kiroku: &Path, target: &Target) -> anyhow::Result<String> {
    bootstrap_as(kiroku, target, "bench", "responder")
}

/// Creates a user straight in the database and returns an API token for it.
fn bootstrap_as(kiroku: &Path, target: &Target, name: &str, role: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new(kiroku)
        .args([
            "user",
            "create",
            "--name",
            name,
            "--role",
            role,
            "--password-stdin",
        ])
        .args(target.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"benchmark passphrase")?;
    if !child.wait()?.success() {
        bail!("user create failed");
    }
    let out = Command::new(kiroku)
        .args(["token", "create", "--user", name])
        .args(target.args())
        .output()?;
    if !out.status.success() {
        bail!(
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Whether a PostgreSQL server answers at `url`.
async fn pg_reachable(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await?.close().await
}

/// A fresh database `kiroku_bench_{section}` on the server at `admin`.
async fn pg_database(admin: &str, section: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(admin).await?;
    let name = format!("kiroku_bench_{section}");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Ok(format!("{base}/{name}"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} RAM, Linux {}", kernel.trim())
}

struct Report {
    md: String,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn new() -> Report {
        Report {
            md: String::new(),
            json: serde_json::Map::new(),
        }
    }

    fn line(&mut self, s: &str) {
        self.md.push_str(s);
        self.md.push('\n');
        println!("{s}");
    }

    /// Writes `{name}.md` and `{name}.json` into `dir`.
    fn write(self, dir: &Path, name: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{name}.md")), &self.md)?;
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&Value::Object(self.json))? + "\n",
        )?;
        println!("\nwritten to {}", dir.join(format!("{name}.md")).display());
        Ok(())
    }
}

fn fmt(s: &Summary, noisy: bool) -> String {
    format!(
        "{:.0}/s | {:.2} ms | {:.2} ms | {}{}",
        s.per_sec,
        s.p50,
        s.p99,
        s.n,
        if noisy { " (noisy)" } else { "" }
    )
}

async fn create_bench(o: &Opts, target: &Target, r: &mut Report) -> anyhow::Result<()> {
    let token = bootstrap(&o.kiroku, target)?;
    let server = Server::start(&o.kiroku, target).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url = format!("{}/api/v1/incidents", server.url);
    let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> = {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        Arc::new(move |i| {
            let category = ["database", "server_failure", "service_outage"][i % 3];
            let severity = ["P0", "P1", "P2", "P3"][i % 4];
            client.post(&url).bearer_auth(&token).json(&json!({
                "title": format!("bench incident {i}"),
                "category": category,
                "severity": severity,
                "environment": "production",
                "affected_services": ["api"],
            }))
        })
    };
    load(16, 200, make.clone()).await?; // warm-up
    let per_run = if o.quick { 1000 } else { 3000 };
    let (m, noisy) = median_of_three(16, per_run, &make).await?;
    r.line(&format!(
        "| create incident, {} | {} |",
        target.name(),
        fmt(&m, noisy)
    ));
    r.json.insert(
        format!("create_{}", target.name().to_lowercase()),
        json!({ "per_sec": m.per_sec, "p50_ms": m.p50, "p99_ms": m.p99, "requests": m.n, "concurrency": 16, "noisy": noisy }),
    );
    server.stop();
    Ok(())
}

/// Name and query string of each list benchmark.
const LIST_QUERIES: [(&str, &str); 8] = [
    ("newest 50", ""),
    ("status=triggered", "status=triggered"),
    (
        "severity=P0&status=acknowledged,investigating",
        "severity=P0&status=acknowledged,investigating",
    ),
    (
        "category=database&environment=production",
        "category=database&environment=production",
    ),
    (
        "detected in a 7-day window",
        "detected_from=DETECTED_FROM&detected_to=DETECTED_TO",
    ),
    ("page 2 via cursor", "status=triggered&cursor=CURSOR"),
    // Text search is a substring scan in detection order: cheap when the
    // term is common, a full scan when it matches nothing.
    ("text, common term (q=timeout)", "q=timeout"),
    ("text, no match (full scan)", "q=no-such-words"),
];

async fn list_bench(
    o: &Opts,
    target: &Target,
    token: &str,
    size: usize,
    r: &mut Report,
) -> anyhow::Result<()> {
    let token = token.to_string();
    let mut starts = Vec::new();
    for _ in 0..4 {
        let s = Server::start(&o.kiroku, target).await?;
        starts.push(s.started_in);
        s.stop();
    }
    starts.sort();
    let server = Server::start(&o.kiroku, target).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = server.rss_mib();
    let client = reqwest::Client::new();
    let from = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 200);
    let to = from + jiff::SignedDuration::from_hours(24 * 7);
    let first: Value = client
        .get(format!("{}/api/v1/incidents?status=triggered", server.url))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let cursor = first["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (name, q) in LIST_QUERIES {
        let q = q
            .replace("DETECTED_FROM", &from.to_string())
            .replace("DETECTED_TO", &to.to_string())
            .replace("CURSOR", &cursor);
        let url = format!("{}/api/v1/incidents?{q}", server.url);
        let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> = {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            Arc::new(move |_| client.get(&url).bearer_auth(&token))
        };
        load(1, 20, make.clone()).await?;
        let n = match (name.contains("full scan"), o.quick) {
            (true, _) => 20,
            (false, true) => 200,
            (false, false) => 400,
        };
        let (m, noisy) = median_of_three(1, n, &make).await?;
        r.line(&format!(
            "| list: {name}, {size} incidents, {} | {} |",
            target.name(),
            fmt(&m, noisy)
        ));
        r.json.insert(
            format!("list_{}_{size}_{name}", target.name().to_lowercase()),
            json!({ "per_sec": m.per_sec, "p50_ms": m.p50, "p99_ms": m.p99, "requests": m.n, "noisy": noisy }),
        );
    }
    // The pages people open first, over the same incidents.
    let number = first["items"][0]["number"]
        .as_str()
        .context("the list returned no incident")?;
    let session = reports::log_in(&client, &server.url, "bench").await?;
    let pages = [
        ("page: dashboard", "/".to_string()),
        ("page: incident list", "/incidents".to_string()),
        ("page: incident", format!("/incidents/{number}")),
    ];
    reports::page_rows(o, &server.url, &session, &pages, size, target, r).await?;
    let busy_rss = server.rss_mib();
    let start = starts[starts.len() / 2];
    r.line(&format!(
        "| start-up to serving, {size} incidents, {} | {:.0} ms (median of 4) | | | |",
        target.name(),
        start.as_secs_f64() * 1000.0
    ));
    r.line(&format!("| RSS idle / after list load, {size} incidents, {} | {idle_rss:.1} MiB / {busy_rss:.1} MiB | | | |", target.name()));
    r.json.insert(
        format!("process_{}_{size}", target.name().to_lowercase()),
        json!({ "startup_ms": start.as_secs_f64() * 1000.0, "idle_rss_mib": idle_rss, "busy_rss_mib": busy_rss }),
    );
    server.stop();
    Ok(())
}

async fn target_store(target: &Target) -> anyhow::Result<Arc<dyn kiroku_store::Store>> {
    Ok(match target {
        Target::Sqlite(dir) => {
            std::fs::create_dir_all(dir)?;
            Arc::new(kiroku_store_sqlite::open(&dir.join("kiroku.db"), Default::default()).await?)
        }
        Target::Postgres(url) => {
            Arc::new(kiroku_store_postgres::connect(url, Default::default()).await?)
        }
    })
}

/// The machine's ceiling for verification: the SHA-256 work per event (its
/// leaf, and on average one interior node) with nothing read.
fn sha256_bound(event_bytes: usize, n: u64) -> f64 {
    use kiroku_audit::merkle::{leaf_hash, node_hash};
    let doc = vec![b'x'; event_bytes];
    let t0 = Instant::now();
    let mut acc = [0u8; 32];
    for _ in 0..n {
        let leaf = leaf_hash(&doc);
        acc = node_hash(&acc, &leaf);
    }
    std::hint::black_box(acc);
    n as f64 / t0.elapsed().as_secs_f64()
}

/// `count` events appended by `writers` tasks at once, each committing
/// `batch` at a time.
async fn append_from_writers(
    store: &Arc<dyn kiroku_store::Store>,
    count: u64,
    batch: u64,
    writers: u64,
) -> anyhow::Result<()> {
    use kiroku_domain::{Actor, AuditEvent, Operation, Source, Target as AuditTarget};
    let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, taken) = (store.clone(), taken.clone());
            tokio::spawn(async move {
                let source = Source {
                    ip: Some("192.0.2.10".into()),
                    user_agent: Some("app/1.0".into()),
                    channel: "api".into(),
                };
                let actor = Actor {
                    kind: kiroku_domain::ActorKind::User,
                    id: Some("u-1042".into()),
                    name: Some("tanaka".into()),
                    role: Some("operator".into()),
                };
                loop {
                    let from = taken.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    if from >= count {
                        return anyhow::Ok(());
                    }
                    let events: Vec<AuditEvent> = (from..count.min(from + batch))
                        .map(|i| {
                            AuditEvent::success(
                                jiff::Timestamp::now(),
                                &actor,
                                &source,
                                Operation::Update,
                                "record_update",
                                AuditTarget::new("record", Some(format!("r-{i}"))),
                            )
                        })
                        .collect();
                    let mut tx = store.begin().await?;
                    tx.append_audit_batch(events).await?;
                    tx.commit().await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Appends `n` audit events of about 300 bytes in transactions of 1,000,
/// each durable on commit: half from one writer, half from four writers at
/// once, whose commits share the log's syncs (group commit).
async fn audit_bench(o: &Opts, target: &Target, n: u64, r: &mut Report) -> anyhow::Result<()> {
    let store = target_store(target).await?;
    let batch = 1000;
    let mut rates = serde_json::Map::new();
    let mut bytes = 0;
    for (writers, count) in [(1, n / 2), (4, n - n / 2)] {
        let t0 = Instant::now();
        append_from_writers(&store, count, batch, writers).await?;
        let rate = count as f64 / t0.elapsed().as_secs_f64();
        rates.insert(format!("writers_{writers}"), json!(rate));
        let sample = store.audit_raw(0, 1).await?;
        bytes = sample.first().map_or(0, |e| e.doc.len());
        r.line(&format!(
            "| audit append, {count} events of ~{bytes} B, {batch} per commit, {writers} writer{}, {} | {rate:.0}/s | | | |",
            if writers == 1 { "" } else { "s" },
            target.name(),
        ));
    }
    r.json.insert(
        format!("audit_append_{}", target.name().to_lowercase()),
        json!({ "per_sec": rates, "events": n, "batch": batch, "event_bytes": bytes }),
    );

    let token = bootstrap_as(&o.kiroku, target, "auditor", "auditor")?;
    let sender = bootstrap_as(&o.kiroku, target, "billing", "application")?;
    let server = Server::start(&o.kiroku, target).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let base = format!("{}/api/v1/audit/proofs/inclusion", server.url);
    let proof_client = client.clone();
    let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> = Arc::new(move |i| {
        let client = &proof_client;
        let seq = 1 + (i as u64 * 7919) % n;
        client
            .get(format!("{base}?seq={seq}&tree_size={n}"))
            .bearer_auth(&token)
    });
    load(1, 20, make.clone()).await?;
    let (m, noisy) = median_of_three(1, 300, &make).await?;
    r.line(&format!(
        "| inclusion proof over HTTP at {n} events, {} | {} |",
        target.name(),
        fmt(&m, noisy)
    ));
    r.json.insert(
        format!("audit_proof_{}", target.name().to_lowercase()),
        json!({ "p50_ms": m.p50, "p99_ms": m.p99, "tree_size": n }),
    );
    // The audit log page over the same log, as an auditor's browser asks.
    let client = reqwest::Client::new();
    let session = reports::log_in(&client, &server.url, "auditor").await?;
    for (name, path) in [
        ("page: audit log, newest", "/audit"),
        ("page: audit log, by action", "/audit?action=record_update"),
        ("page: audit log, by actor", "/audit?actor=tanaka"),
    ] {
        let make = session_get(&client, format!("{}{path}", server.url), &session);
        load(1, 2, make.clone()).await?;
        let (m, noisy) = median_of_three(1, 50, &make).await?;
        r.line(&format!(
            "| {name}, {n} events, {} | {} |",
            target.name(),
            fmt(&m, noisy)
        ));
        r.json.insert(
            format!(
                "{}_{}",
                target.name().to_lowercase(),
                name.replace([' ', ',', ':'], "_")
            ),
            json!({ "p50_ms": m.p50, "p99_ms": m.p99, "events": n, "noisy": noisy }),
        );
    }
    // Other applications' events over HTTP: concurrent senders share a
    // commit (group commit), each answered once its events are durable.
    for (concurrency, per_request) in [(1usize, 1usize), (64, 1), (64, 100)] {
        let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> = {
            let url = format!("{}/api/v1/audit/events", server.url);
            let (client, sender) = (client.clone(), sender.clone());
            let events: Vec<Value> = (0..per_request)
                .map(|i| {
                    json!({
                        "time": "2026-11-21T09:00:00+09:00",
                        "actor": {"id": "u-1042", "role": "clerk"},
                        "operation": "update",
                        "action": "invoice_update",
                        "target": {"kind": "invoice", "id": format!("inv-{i}")},
                        "source": {"ip": "192.0.2.7", "user_agent": "billing/2.1"},
                        "result": "success"
                    })
                })
                .collect();
            let body = Arc::new(json!({ "events": events }).to_string());
            Arc::new(move |_| {
                client
                    .post(&url)
                    .bearer_auth(&sender)
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
            })
        };
        let requests = if per_request == 1 { 3_000 } else { 300 };
        load(concurrency, 50, make.clone()).await?;
        let (m, noisy) = median_of_three(concurrency, requests, &make).await?;
        r.line(&format!(
            "| external audit events over HTTP, {per_request} per request, concurrency {concurrency}, {} | {:.0} events/s{} | {:.2} ms | {:.2} ms | {} |",
            target.name(),
            m.per_sec * per_request as f64,
            if noisy { " (noisy)" } else { "" },
            m.p50,
            m.p99,
            m.n
        ));
        r.json.insert(
            format!(
                "audit_ingest_{}_c{concurrency}_x{per_request}",
                target.name().to_lowercase()
            ),
            json!({ "events_per_sec": m.per_sec * per_request as f64, "p50_ms": m.p50, "p99_ms": m.p99, "noisy": noisy }),
        );
    }

    server.stop();
    // The proof itself, in process: the log's size, the path's nodes and
    // the signed head read from the store, the path and root computed.
    // After the server ran, so that the log is checkpointed and signed as
    // in use; the first 20 warm up, as over HTTP.
    let app = kiroku_app::App::new(
        store.clone(),
        kiroku_app::Config::with_zone(jiff::tz::TimeZone::UTC),
    );
    let operator = kiroku_app::Caller::local_operator();
    let mut lat = Vec::with_capacity(1_000);
    let t0 = Instant::now();
    for i in 0..1_020u64 {
        let seq = 1 + (i * 7919) % n;
        let t = Instant::now();
        app.inclusion_proof(&operator, seq, Some(n)).await?;
        if i >= 20 {
            lat.push(t.elapsed());
        }
    }
    let m = summarise(lat, t0.elapsed());
    r.line(&format!(
        "| inclusion proof in process at {n} events, {} | | {:.3} ms | {:.3} ms | {} |",
        target.name(),
        m.p50,
        m.p99,
        m.n
    ));
    r.json.insert(
        format!("audit_proof_in_process_{}", target.name().to_lowercase()),
        json!({ "p50_ms": m.p50, "p99_ms": m.p99, "tree_size": n }),
    );
    // Verified after the server ran, so that signed heads cover the log as
    // they do in use (a head a second); on one core, as the goal is
    // stated: pinned where taskset exists.
    let pinned = Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut rates = Vec::new();
    let mut events = n;
    for _ in 0..3 {
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&o.kiroku);
            c
        } else {
            Command::new(&o.kiroku)
        };
        let t0 = Instant::now();
        let out = cmd
            .args(["audit", "verify", "--json"])
            .args(target.args())
            .output()?;
        let secs = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "audit verify failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let summary: Value = serde_json::from_slice(&out.stdout)?;
        events = summary["summary"]["events"].as_u64().unwrap_or(n);
        rates.push(events as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    let noisy = rates[2] > rates[0] * 1.15;
    let cores = if pinned { "one core" } else { "unpinned" };
    r.line(&format!(
        "| audit verify (whole process, {cores}), {events} events, {} | {:.0} events/s{} | | | |",
        target.name(),
        rates[1],
        if noisy { " (noisy)" } else { "" }
    ));
    r.json.insert(
        format!("audit_verify_{}", target.name().to_lowercase()),
        json!({ "events_per_sec": rates[1], "runs": rates, "pinned_to_one_core": pinned, "noisy": noisy }),
    );
    if matches!(target, Target::Sqlite(_)) {
        let bound = sha256_bound(bytes, n);
        r.line(&format!(
            "| SHA-256 alone, one core: a leaf of {bytes} B and a node per event | {bound:.0} events/s | | | |"
        ));
        r.json.insert(
            "sha256_bound_events_per_sec".into(),
            json!({ "events_per_sec": bound, "event_bytes": bytes }),
        );
    }

    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = opts()?;
    if let Some(name) = &o.fault {
        return fault::run(&o, name).await;
    }
    let mut r = Report::new();
    let when = jiff::Timestamp::now();
    r.line("# Kiroku benchmark results\n");
    r.line(&format!("Run {when} on {}.", machine()));
    r.line("Load comes from the same machine over loopback, so client and server share the cores.");
    r.line("Medians of three runs; a run set whose throughput varied by more than 15 % is marked noisy.\n");
    r.line("| benchmark | throughput | p50 | p99 | requests |");
    r.line("|---|---|---|---|---|");
    r.json.insert("machine".into(), json!(machine()));
    r.json.insert("time".into(), json!(when.to_string()));

    let work = std::env::temp_dir().join(format!("kiroku-bench-{}", std::process::id()));
    let pg = match pg_reachable(&o.pg_url).await {
        Ok(()) => true,
        Err(e) => {
            println!("SKIP: PostgreSQL benchmarks ({e})");
            false
        }
    };
    // SQLite in a fresh directory, and PostgreSQL in a fresh database, named
    // `store`, for each section that runs.
    let targets_named = |section: &'static str, store: &str| {
        let (work, admin, store) = (work.clone(), o.pg_url.clone(), store.to_owned());
        let runs = o.runs(section);
        async move {
            let mut out = Vec::new();
            if runs {
                out.push(Target::Sqlite(work.join(format!("{store}-sqlite"))));
                if pg {
                    out.push(Target::Postgres(pg_database(&admin, &store).await?));
                }
            }
            anyhow::Ok(out)
        }
    };
    let targets = |section: &'static str| targets_named(section, section);
    for t in &targets("create").await? {
        create_bench(&o, t, &mut r).await?;
    }

    let sizes: [usize; 2] = if o.quick {
        [10_000, 100_000]
    } else {
        [100_000, 1_000_000]
    };
    for t in &targets("list").await? {
        let store = target_store(t).await?;
        let token = bootstrap(&o.kiroku, t)?;
        let mut have = 0;
        for size in sizes {
            let t0 = Instant::now();
            seed::incidents(store.as_ref(), have, size).await?;
            if let Target::Postgres(url) = t {
                // What autovacuum would have done by the time anyone lists.
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::raw_sql("ANALYZE incidents").execute(&mut c).await?;
            }
            println!(
                "seeded {} incidents into {} in {:.0} s",
                size - have,
                t.name(),
                t0.elapsed().as_secs_f64()
            );
            have = size;
            list_bench(&o, t, &token, size, &mut r).await?;
        }
    }
    // Reports and metrics over as many incidents as the list's smaller size.
    for t in &targets("reports").await? {
        let store = target_store(t).await?;
        let token = bootstrap(&o.kiroku, t)?;
        seed::incidents(store.as_ref(), 0, sizes[0]).await?;
        reports::reports_bench(&o, t, &token, sizes[0], &mut r).await?;
    }
    // Each mode on stores of its own, named after its key.
    let mut modes = Vec::new();
    for (label, key, args) in intake::MODES {
        let targets = targets_named("intake", &format!("intake{key}")).await?;
        modes.push(intake::Mode {
            label,
            key,
            args,
            targets,
        });
    }
    if modes.iter().all(|m| !m.targets.is_empty()) {
        intake::intake_bench(&o, &modes, &work, &mut r).await?;
    }
    let paging_targets = targets("paging").await?;
    if !paging_targets.is_empty() {
        paging::alertmanager_paging(&o, &work, &mut r).await?;
    }
    for t in &paging_targets {
        paging::paging_bench(&o, t, &mut r).await?;
    }
    let audit_n = o
        .audit_events
        .unwrap_or(if o.quick { 100_000 } else { 1_000_000 });
    for t in &targets("audit").await? {
        audit_bench(&o, t, audit_n, &mut r).await?;
    }

    let size_mib =
        std::fs::metadata(&o.kiroku).map_or(f64::NAN, |m| m.len() as f64 / 1024.0 / 1024.0);
    r.line(&format!(
        "| release binary size | {size_mib:.1} MiB | | | |"
    ));
    r.json.insert("binary_mib".into(), json!(size_mib));

    // A partial run (--only) writes beside the full results, not over them.
    let name = o
        .only
        .as_deref()
        .map_or("latest".to_string(), |s| format!("latest-{s}"));
    r.write(&o.out, &name)?;
    // KIROKU_BENCH_KEEP=1 keeps the SQLite files, for looking into a result.
    if std::env::var_os("KIROKU_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}
