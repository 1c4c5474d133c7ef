//! Alert intake side by side with Prometheus Alertmanager, in one run on
//! the same machine: single alerts at concurrency 8 and 64, and batches of
//! 100. Kiroku runs three times: committing every alert (with its audit
//! event) to the database before it answers; with `--intake-journal`,
//! answering once the request is synced to its journal and committing
//! behind; and with the journal synced within 10 ms of answering. In each
//! mode a storm of batches is timed until everything is
//! committed, while a person declares incidents. Alertmanager keeps
//! alerts in memory.
//!
//! Every alert has labels of its own (a new fingerprint, a new dedup key).
//! Kiroku's service groups alerts by `alertname` (ten names) into open
//! incidents, as Alertmanager groups notifications by it. Last, single
//! alerts are timed until committed under a new service's grouping, where
//! each alert opens an incident of its own, with its escalation.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{
    Opts, Report, Server, Summary, Target, bootstrap_as, cpu_seconds_when_idle, fmt, load, median,
    summarise,
};

/// A load shape: name, concurrency, alerts per request.
const SHAPES: [(&str, usize, usize); 3] = [
    ("single alerts, concurrency 8", 8, 1),
    ("single alerts, concurrency 64", 64, 1),
    ("batches of 100, concurrency 8", 8, 100),
];

const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn alert_labels(i: usize) -> Value {
    json!({
        "alertname": format!("BenchAlert{}", i % 10),
        "instance": format!("host-{i}.example.com:9100"),
        "job": "node",
        "severity": SEVERITIES[i % 3],
    })
}

/// Who receives the load.
enum Peer {
    Kiroku { url: String },
    Alertmanager { url: String },
}

impl Peer {
    /// Request number `i` of a run: `per_request` alerts numbered from
    /// `base + i * per_request`.
    fn request(
        &self,
        client: &reqwest::Client,
        base: usize,
        per_request: usize,
        i: usize,
    ) -> reqwest::RequestBuilder {
        let first = base + i * per_request;
        match self {
            Peer::Kiroku { url } => {
                let events: Vec<Value> = (first..first + per_request)
                    .map(|n| {
                        json!({
                            "summary": format!("bench alert {n}"),
                            "source": format!("host-{n}.example.com"),
                            "severity": SEVERITIES[n % 3],
                            "dedup_key": format!("bench-{n}"),
                            "labels": alert_labels(n),
                        })
                    })
                    .collect();
                let body = if per_request == 1 {
                    events.into_iter().next().unwrap()
                } else {
                    json!({ "events": events })
                };
                client.post(url).json(&body)
            }
            Peer::Alertmanager { url } => {
                let now = jiff::Timestamp::now().to_string();
                let alerts: Vec<Value> = (first..first + per_request)
                    .map(|n| {
                        json!({
                            "labels": alert_labels(n),
                            "annotations": { "summary": format!("bench alert {n}") },
                            "startsAt": now,
                        })
                    })
                    .collect();
                client.post(url).json(&alerts)
            }
        }
    }
}

/// Alerts in each run of a shape; every shape runs four times. Batches
/// take five times as many: 60 requests of 100 were over in a tenth of a
/// second against Alertmanager, whose rate then moved 2× between runs.
fn alerts_per_run(o: &Opts, per_request: usize) -> usize {
    let single = if o.quick { 6_000 } else { 30_000 };
    if per_request == 1 { single } else { single * 5 }
}

/// Alerts stored once every shape has run.
fn alerts_driven(o: &Opts) -> usize {
    SHAPES
        .iter()
        .map(|(_, _, per_request)| 4 * alerts_per_run(o, *per_request))
        .sum()
}

/// Alerts stored, in all, before resident memory is read the second time:
/// it must not grow with what is stored.
fn soak_alerts(o: &Opts) -> usize {
    if o.quick { 200_000 } else { 1_000_000 }
}

/// Sends alerts in batches of 100 until `soak_alerts` are stored, the
/// first `stored` already being so.
async fn soak(o: &Opts, peer: Peer, stored: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |i| peer.request(&client, stored, 100, i));
    load(8, soak_alerts(o).saturating_sub(stored) / 100, make).await?;
    Ok(())
}

/// Requests as large as an Alertmanager group of a big outage.
const LARGE_REQUESTS: usize = 10;
const LARGE_REQUEST_ALERTS: usize = 10_000;

/// Sends `LARGE_REQUESTS` requests of `LARGE_REQUEST_ALERTS` alerts one
/// after another, the first `stored` already being so; returns the
/// server's RSS two seconds after they are committed, once it has had
/// time to give back what they needed for a moment.
async fn large_requests(
    peer: &Peer,
    stored: usize,
    server: &Server,
    journal: bool,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let peer = peer_clone(peer);
    let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |i| peer.request(&client, stored, LARGE_REQUEST_ALERTS, i));
    load(1, LARGE_REQUESTS, make).await?;
    if journal {
        server.journal_committed().await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(server.rss_mib())
}

/// One shape's result against one peer.
struct Measured {
    /// The median run, and whether the runs disagreed.
    summary: Summary,
    noisy: bool,
    /// The server's CPU time per alert over the measured runs, including
    /// what it did behind its answers.
    cpu_us_per_alert: f64,
}

/// Runs every shape three times (after a warm-up) against `peer`, whose
/// process is `pid`; returns one row per shape.
async fn drive(o: &Opts, peer: &Peer, pid: u32) -> anyhow::Result<Vec<Measured>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let peer = Arc::new(peer_clone(peer));
    let mut base = 0;
    let mut rows = Vec::new();
    for (_, concurrency, per_request) in SHAPES {
        let requests = alerts_per_run(o, per_request) / per_request;
        let mut runs = Vec::new();
        let mut cpu_seconds = 0.0;
        // The server's CPU time once idle after the last run: where the
        // next run's share begins.
        let mut idle_cpu = 0.0;
        for run in 0..4 {
            let (client, peer) = (client.clone(), peer.clone());
            let from = base;
            let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
                Arc::new(move |i| peer.request(&client, from, per_request, i));
            let s = load(concurrency, requests, make).await?;
            base += requests * per_request;
            let now_idle = cpu_seconds_when_idle(pid).await?;
            // The first run warms up.
            if run > 0 {
                cpu_seconds += now_idle - idle_cpu;
                runs.push(Summary {
                    per_sec: s.per_sec * per_request as f64,
                    ..s
                });
            }
            idle_cpu = now_idle;
        }
        let alerts = (runs.len() * requests * per_request) as f64;
        let (summary, noisy) = median(runs);
        rows.push(Measured {
            summary,
            noisy,
            cpu_us_per_alert: cpu_seconds * 1e6 / alerts,
        });
    }
    Ok(rows)
}

/// Alerts a server holds once `drive` and `storm` have run.
fn server_alerts(o: &Opts) -> usize {
    alerts_driven(o) + storm_alerts(o)
}

fn storm_alerts(o: &Opts) -> usize {
    alerts_per_run(o, 100)
}

/// What a storm showed: the rate alerts were committed at, and how long
/// a person's declarations took meanwhile.
struct Storm {
    committed_per_sec: f64,
    declarations: Summary,
}

/// Batches of 100 at concurrency 8, timed from the first request until
/// every alert is committed (with the journal, until it holds nothing
/// uncommitted: the rate the database keeps up with, which a journal can
/// outrun only for a while), while one person declares incidents one
/// after another. With the journal, starts once what earlier runs left is
/// committed.
async fn storm(
    o: &Opts,
    server: &Server,
    url: &str,
    token: &str,
    journal: bool,
) -> anyhow::Result<Storm> {
    if journal {
        server.journal_committed().await?;
    }
    let client = reqwest::Client::new();
    let done = Arc::new(AtomicBool::new(false));
    let declarer = {
        let (client, done) = (client.clone(), done.clone());
        let (url, token) = (
            format!("{}/api/v1/incidents", server.url),
            token.to_string(),
        );
        tokio::spawn(async move {
            let (t0, mut lat) = (Instant::now(), Vec::new());
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({
                        "title": format!("declared in a storm {}", lat.len()),
                        "category": "database",
                        "severity": "P1",
                    }))
                    .send()
                    .await?
                    .error_for_status()?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(summarise(lat, t0.elapsed()))
        })
    };
    let peer = Peer::Kiroku { url: url.into() };
    let base = alerts_driven(o);
    let alerts = storm_alerts(o);
    let t0 = Instant::now();
    let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |i| peer.request(&client, base, 100, i));
    let sent = load(8, alerts / 100, make).await;
    if journal && sent.is_ok() {
        server.journal_committed().await?;
    }
    let committed_per_sec = alerts as f64 / t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let declarations = declarer.await??;
    sent?;
    Ok(Storm {
        committed_per_sec,
        declarations,
    })
}

/// Single alerts at concurrency 8 on a service that gives each alert an
/// incident of its own (`per_alert`, a new service's grouping), timed
/// until all are committed; the service groups by `alertname` again after.
/// Run last, so that the incidents it opens change no other row.
async fn own_incidents(
    o: &Opts,
    server: &Server,
    peer: &Peer,
    token: &str,
    journal: bool,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let routing = format!("{}/api/v1/services/bench/routing", server.url);
    let set_grouping = |grouping: Value| {
        client
            .put(&routing)
            .bearer_auth(token)
            .json(&json!({ "grouping": grouping }))
            .send()
    };
    set_grouping(json!({"mode": "per_alert"}))
        .await?
        .error_for_status()?;
    if journal {
        server.journal_committed().await?;
    }
    // Past every alert numbered before, so that each opens an alert.
    let base = 4 * soak_alerts(o);
    let alerts = alerts_per_run(o, 1);
    let (load_client, peer) = (client.clone(), Arc::new(peer_clone(peer)));
    let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
        Arc::new(move |i| peer.request(&load_client, base, 1, i));
    let t0 = Instant::now();
    load(8, alerts, make).await?;
    if journal {
        server.journal_committed().await?;
    }
    let per_sec = alerts as f64 / t0.elapsed().as_secs_f64();
    set_grouping(by_alertname()).await?.error_for_status()?;
    Ok(per_sec)
}

fn peer_clone(p: &Peer) -> Peer {
    match p {
        Peer::Kiroku { url } => Peer::Kiroku { url: url.clone() },
        Peer::Alertmanager { url } => Peer::Alertmanager { url: url.clone() },
    }
}

/// A running Prometheus Alertmanager, in a directory of its own.
pub(crate) struct Alertmanager {
    child: Child,
    pub(crate) url: String,
    _dir: std::path::PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Alertmanager {
    pub(crate) fn binary() -> Option<&'static str> {
        [
            "/usr/bin/prometheus-alertmanager",
            "/usr/local/bin/alertmanager",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
    }

    pub(crate) fn version(bin: &str) -> String {
        Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().map(str::to_string)
            })
            .unwrap_or_default()
    }

    /// Starts `bin` in `work/name` with `config` (alertmanager.yml's text).
    pub(crate) async fn start(
        bin: &str,
        work: &Path,
        name: &str,
        config: &str,
    ) -> anyhow::Result<Alertmanager> {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir)?;
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start alertmanager")?;
        let url = format!("http://127.0.0.1:{port}");
        let am = Alertmanager {
            child,
            url,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return Ok(am);
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("alertmanager did not start within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The bench service's grouping: alerts sharing `alertname` join one
/// open incident.
fn by_alertname() -> Value {
    json!({"mode": "labels", "labels": ["alertname"], "window_minutes": 1440})
}

/// A generic integration on a service that groups by alertname; returns
/// its intake URL and an admin's token.
async fn kiroku_integration(
    o: &Opts,
    target: &Target,
    server: &Server,
) -> anyhow::Result<(String, String)> {
    let token = bootstrap_as(&o.kiroku, target, "intake-admin", "admin")?;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/integrations", server.url))
        .bearer_auth(&token)
        .json(&json!({"type": "generic", "service": "bench", "rate_limit_per_second": 1_000_000}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    client
        .put(format!("{}/api/v1/services/bench/routing", server.url))
        .bearer_auth(&token)
        .json(&json!({ "grouping": by_alertname() }))
        .send()
        .await?
        .error_for_status()?;
    let key = created["key"].as_str().context("no key")?;
    let url = format!("{}/api/v1/integrations/{key}/generic", server.url);
    Ok((url, token))
}

/// About the size of a single alert's journal record.
const FLUSHED_BYTES: usize = 600;
const FLUSHES: u32 = 2_000;

/// The mean time to write `FLUSHED_BYTES` to a file in `dir` and have
/// the disk keep them: the least that an answer given only once its alert
/// is on disk waits beyond what an answer from memory does. The file is
/// lengthened first, as the intake journal does, so that no sync has to
/// record a new length as well.
fn flush_micros(dir: &Path) -> anyhow::Result<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("flush-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    file.set_len((FLUSHED_BYTES as u64) * u64::from(FLUSHES))?;
    file.sync_all()?;
    let record = [b'x'; FLUSHED_BYTES];
    let start = Instant::now();
    for _ in 0..FLUSHES {
        file.write_all(&record)?;
        file.sync_data()?;
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(FLUSHES);
    std::fs::remove_file(&path)?;
    Ok(micros)
}

/// The ways Kiroku answers intake, each as its `Mode`'s label, key and
/// serve arguments.
pub const MODES: [(&str, &str, &[&str]); 3] = [
    ("", "", &[]),
    (", journal", "_journal", &["--intake-journal"]),
    (
        ", journal synced within 10 ms",
        "_journal_10ms",
        &["--intake-journal", "--intake-journal-sync-ms", "10"],
    ),
];

/// One way Kiroku answers intake, run on fresh targets of its own, one per
/// backend, in the same order for every mode.
pub struct Mode {
    /// Added to the backend's name in the report, and to its JSON keys.
    pub label: &'static str,
    pub key: &'static str,
    pub args: &'static [&'static str],
    pub targets: Vec<Target>,
}

pub async fn intake_bench(
    o: &Opts,
    modes: &[Mode],
    work: &Path,
    r: &mut Report,
) -> anyhow::Result<()> {
    let am_rows = match Alertmanager::binary() {
        Some(bin) => {
            // Alerts go nowhere: ingestion is what is measured.
            let am = Alertmanager::start(
                bin,
                work,
                "alertmanager",
                "route:\n  receiver: blackhole\n  group_by: ['alertname']\nreceivers:\n  - name: blackhole\n",
            )
            .await?;
            let rows = drive(
                o,
                &Peer::Alertmanager {
                    url: format!("{}/api/v2/alerts", am.url),
                },
                am.child.id(),
            )
            .await?;
            r.json.insert(
                "alertmanager_version".into(),
                json!(Alertmanager::version(bin)),
            );
            Some(rows)
        }
        None => {
            println!(
                "SKIP: Alertmanager side of the intake benchmark (install prometheus-alertmanager)"
            );
            None
        }
    };
    let flush = flush_micros(work)?;
    r.line(&format!(
        "| write {FLUSHED_BYTES} bytes into a file on this disk, lengthened beforehand, and flush them (fdatasync), one at a time | {flush:.0} µs | | | |"
    ));
    r.json.insert("flush_us".into(), json!(flush));
    if let Some(rows) = &am_rows {
        for ((shape, concurrency, per_request), m) in SHAPES.iter().zip(rows) {
            if *per_request == 1 {
                // Little's law: `concurrency` requests in flight, each
                // answered one flush later than Alertmanager answered it.
                let latency = *concurrency as f64 / m.summary.per_sec + flush / 1e6;
                let bound = *concurrency as f64 / latency;
                let ratio = bound / m.summary.per_sec;
                r.line(&format!(
                    "| intake, {shape}, Alertmanager's answers each one flush later: the most a server can reach that is otherwise as fast and flushes before it answers | {bound:.0}/s ({ratio:.2}× Alertmanager) | | | |"
                ));
                r.json.insert(
                    format!("intake_flush_bound_c{concurrency}"),
                    json!({ "alerts_per_sec": bound, "ratio_to_alertmanager": ratio }),
                );
            }
            let cpu = m.cpu_us_per_alert;
            r.line(&format!(
                "| intake, {shape}, Alertmanager (in memory; {cpu:.0} µs CPU per alert) | {} |",
                fmt(&m.summary, m.noisy)
            ));
            let s = &m.summary;
            r.json.insert(
                format!("intake_alertmanager_c{concurrency}_b{per_request}"),
                json!({ "alerts_per_sec": s.per_sec, "p50_ms": s.p50, "p99_ms": s.p99, "requests": s.n, "noisy": m.noisy, "cpu_us_per_alert": cpu }),
            );
        }
    }
    let backends = modes.first().map_or(0, |m| m.targets.len());
    let runs = (0..backends).flat_map(|b| modes.iter().map(move |m| (&m.targets[b], m)));
    for (target, mode) in runs {
        let journal = mode.args.contains(&"--intake-journal");
        let name = format!("{}{}", target.name(), mode.label);
        let key = format!("{}{}", target.name().to_lowercase(), mode.key);
        let server = Server::start_with(&o.kiroku, target, mode.args).await?;
        let (url, token) = kiroku_integration(o, target, &server).await?;
        let rows = drive(o, &Peer::Kiroku { url: url.clone() }, server.pid()).await?;
        let storm = storm(o, &server, &url, &token, journal).await?;
        let d = &storm.declarations;
        r.line(&format!(
            "| intake, batches of 100, concurrency 8, Kiroku {name}, until all are committed | {:.0} alerts/s |",
            storm.committed_per_sec
        ));
        r.line(&format!(
            "| declare an incident meanwhile, one after another, Kiroku {name} | {} | {:.2} ms | {:.2} ms | {} |",
            format_args!("{:.0}/s", d.per_sec),
            d.p50,
            d.p99,
            d.n
        ));
        r.json.insert(
            format!("intake_{key}_committed_b100"),
            json!({
                "alerts_per_sec": storm.committed_per_sec,
                "declarations": { "per_sec": d.per_sec, "p50_ms": d.p50, "p99_ms": d.p99, "n": d.n },
            }),
        );
        let (stored, rss) = (server_alerts(o), server.rss_mib());
        let peer = Peer::Kiroku { url };
        soak(o, peer_clone(&peer), stored).await?;
        let soaked_rss = server.rss_mib();
        let grouped_rss = large_requests(&peer, soak_alerts(o), &server, journal).await?;
        let own = own_incidents(o, &server, &peer, &token, journal).await?;
        for (i, ((shape, concurrency, per_request), m)) in SHAPES.iter().zip(&rows).enumerate() {
            let (s, cpu) = (&m.summary, m.cpu_us_per_alert);
            let am = am_rows.as_ref().map(|am| &am[i]);
            let ratio = am
                .map(|am| format!("{:.2}× Alertmanager; ", s.per_sec / am.summary.per_sec))
                .unwrap_or_default();
            r.line(&format!(
                "| intake, {shape}, Kiroku {name} ({ratio}{cpu:.0} µs CPU per alert) | {} |",
                fmt(s, m.noisy)
            ));
            r.json.insert(
                format!("intake_{key}_c{concurrency}_b{per_request}"),
                json!({
                    "alerts_per_sec": s.per_sec, "p50_ms": s.p50, "p99_ms": s.p99, "requests": s.n, "noisy": m.noisy,
                    "cpu_us_per_alert": cpu,
                    "ratio_to_alertmanager": am.map(|am| s.per_sec / am.summary.per_sec),
                    "cpu_ratio_to_alertmanager": am.map(|am| cpu / am.cpu_us_per_alert),
                }),
            );
        }
        r.line(&format!(
            "| RSS after {stored} / {} alerts stored, {name} | {rss:.1} / {soaked_rss:.1} MiB | | | |",
            soak_alerts(o),
        ));
        r.line(&format!(
            "| RSS after {LARGE_REQUESTS} more requests of {LARGE_REQUEST_ALERTS} alerts each, {name} | {grouped_rss:.1} MiB | | | |",
        ));
        r.line(&format!(
            "| intake, single alerts, concurrency 8, each opening an incident of its own (the default grouping), Kiroku {name}, until all are committed | {own:.0} alerts/s |"
        ));
        r.json.insert(
            format!("intake_{key}_committed_own_incidents_c8"),
            json!({ "alerts_per_sec": own }),
        );
        r.json.insert(
            format!("intake_rss_mib_{key}"),
            json!({
                "rss_mib": soaked_rss, "alerts": soak_alerts(o),
                "rss_mib_before": rss, "alerts_before": stored,
                "rss_mib_after_large_requests": grouped_rss,
            }),
        );
        server.stop();
    }
    Ok(())
}
