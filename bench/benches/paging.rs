//! Paging latency, measured where it matters: from an alert's POST to the
//! page arriving at a webhook receiver on loopback, for Kiroku and, in the
//! same run, for Prometheus Alertmanager set to notify as soon as it can
//! (a group wait of 0 s; its default is 30 s). Idle, and while intake runs
//! at full load; then with 100,000 escalations pending, how late each one
//! that comes due fires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::intake::Alertmanager;
use super::{Opts, Report, Server, Summary, Target, bootstrap_as, load, summarise, target_store};
use kiroku_bench::seed;

/// Arrival times of pages: Kiroku's by incident id, Alertmanager's by
/// each alert's `probe` label.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<HashMap<String, Instant>>>);

impl Arrivals {
    async fn start(&self) -> anyhow::Result<String> {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/page",
            axum::routing::post(move |body: String| {
                let me = me.clone();
                async move {
                    let at = Instant::now();
                    if let Ok(v) = serde_json::from_str::<Value>(&body) {
                        let alerts = v["alerts"].as_array().into_iter().flatten();
                        let ids = v["incident_id"]
                            .as_str()
                            .into_iter()
                            .chain(alerts.filter_map(|a| a["labels"]["probe"].as_str()));
                        let mut seen = me.0.lock().unwrap();
                        for id in ids {
                            seen.entry(id.to_string()).or_insert(at);
                        }
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}/page"))
    }

    async fn wait(&self, id: &str, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.0.lock().unwrap().get(id) {
                return Some(*at);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

struct Setup {
    token: String,
    /// The generic intake URL of the service whose alerts page.
    paging: String,
    /// One whose alerts page no one (its policy names nobody).
    quiet: String,
}

async fn setup(o: &Opts, target: &Target, server: &Server, hook: &str) -> anyhow::Result<Setup> {
    let token = bootstrap_as(&o.kiroku, target, "paging-admin", "admin")?;
    let c = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", server.url);
    c.post(api("/api/v1/users/paging-admin/contact-methods"))
        .bearer_auth(&token)
        .json(
            &json!({"label": "hook", "type": "webhook", "address": hook, "rate_per_minute": 6000}),
        )
        .send()
        .await?
        .error_for_status()?;
    let me: Value = c
        .get(api("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let id = me["user"]["id"].clone();
    for (name, targets) in [
        ("pager", json!([{"type": "user", "id": id}])),
        ("quiet", json!([])),
    ] {
        c.post(api("/api/v1/escalation-policies"))
            .bearer_auth(&token)
            .json(&json!({"name": name, "levels": [{"targets": targets, "delay_minutes": 60}]}))
            .send()
            .await?
            .error_for_status()?;
    }
    let mut urls = Vec::new();
    for (service, policy) in [("paged", "pager"), ("busy", "quiet")] {
        let i: Value = c
            .post(api("/api/v1/integrations"))
            .bearer_auth(&token)
            .json(
                &json!({"type": "generic", "service": service, "rate_limit_per_second": 1_000_000}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        c.put(api(&format!("/api/v1/services/{service}/routing")))
            .bearer_auth(&token)
            .json(&json!({"escalation_policy": policy}))
            .send()
            .await?
            .error_for_status()?;
        let key = i["key"].as_str().context("no key")?;
        urls.push(format!("{}/api/v1/integrations/{key}/generic", server.url));
    }
    let quiet = urls.pop().unwrap();
    Ok(Setup {
        token,
        paging: urls.pop().unwrap(),
        quiet,
    })
}

/// Sends `n` critical alerts, one every `gap`, each opening an incident;
/// the time from each POST to its page arriving.
async fn probe(
    url: &str,
    arrivals: &Arrivals,
    tag: &str,
    n: usize,
    gap: Duration,
) -> anyhow::Result<Summary> {
    let c = reqwest::Client::new();
    let start = Instant::now();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let res: Value = c
            .post(url)
            .json(&json!({"summary": format!("probe {tag} {i}"), "source": "bench", "severity": "critical", "dedup_key": format!("{tag}-{i}")}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = res["results"][0]["incident_id"]
            .as_str()
            .context("the probe opened no incident")?;
        let at = arrivals
            .wait(id, Duration::from_secs(30))
            .await
            .context("a page never arrived")?;
        lat.push(at - t0);
        tokio::time::sleep(gap).await;
    }
    Ok(summarise(lat, start.elapsed()))
}

/// Alertmanager's side: `n` alerts, each a group of its own, from POST to
/// its webhook notification arriving.
pub async fn alertmanager_paging(
    o: &Opts,
    work: &std::path::Path,
    r: &mut Report,
) -> anyhow::Result<()> {
    let Some(bin) = Alertmanager::binary() else {
        println!(
            "SKIP: Alertmanager side of the paging benchmark (install prometheus-alertmanager)"
        );
        return Ok(());
    };
    let arrivals = Arrivals::default();
    let hook = arrivals.start().await?;
    let config = format!(
        "route:\n  receiver: hook\n  group_by: ['probe']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: false\n"
    );
    let am = Alertmanager::start(bin, work, "alertmanager-paging", &config).await?;
    let url = format!("{}/api/v2/alerts", am.url);
    let c = reqwest::Client::new();
    let n = if o.quick { 100 } else { 300 };
    let start = Instant::now();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let probe = format!("am-{i}");
        let t0 = Instant::now();
        c.post(&url)
            .json(&json!([{
                "labels": {"alertname": "Probe", "probe": probe, "severity": "critical"},
                "annotations": {"summary": format!("probe {i}")},
                "startsAt": jiff::Timestamp::now().to_string(),
            }]))
            .send()
            .await?
            .error_for_status()?;
        let at = arrivals
            .wait(&probe, Duration::from_secs(30))
            .await
            .context("Alertmanager never notified")?;
        // The first ten warm up.
        if i >= 10 {
            lat.push(at - t0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = summarise(lat, start.elapsed());
    ms_row(
        r,
        &format!(
            "alert → notification at a webhook, idle, Alertmanager {} (group_wait 0s)",
            Alertmanager::version(bin)
                .split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .unwrap_or("")
        ),
        &s,
    );
    r.json.insert(
        "paging_alertmanager".into(),
        json!({"idle": {"p50_ms": s.p50, "p99_ms": s.p99, "n": s.n}, "group_wait": "0s"}),
    );
    Ok(())
}

fn ms_row(r: &mut Report, name: &str, s: &Summary) {
    r.line(&format!(
        "| {name} | | {:.2} ms | {:.2} ms | {} |",
        s.p50, s.p99, s.n
    ));
}

pub async fn paging_bench(o: &Opts, target: &Target, r: &mut Report) -> anyhow::Result<()> {
    let arrivals = Arrivals::default();
    let hook = arrivals.start().await?;
    let server = Server::start(&o.kiroku, target).await?;
    let s = setup(o, target, &server, &hook).await?;
    let name = target.name();
    let n = if o.quick { 100 } else { 300 };
    probe(&s.paging, &arrivals, "warm", 10, Duration::from_millis(5)).await?;
    let idle = probe(&s.paging, &arrivals, "idle", n, Duration::from_millis(20)).await?;
    ms_row(
        r,
        &format!("alert → page at a webhook, idle, {name}"),
        &idle,
    );

    // Intake at full load on another service meanwhile.
    let busy = {
        let (client, url) = (reqwest::Client::new(), s.quiet.clone());
        let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> = Arc::new(
            move |i| {
                client.post(&url).json(&json!({"summary": format!("load {i}"), "source": "bench", "severity": "warning", "dedup_key": format!("load-{i}")}))
            },
        );
        tokio::spawn(load(8, if o.quick { 6_000 } else { 20_000 }, make))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = probe(
        &s.paging,
        &arrivals,
        "load",
        n / 2,
        Duration::from_millis(20),
    )
    .await?;
    let intake = busy.await??;
    ms_row(
        r,
        &format!(
            "alert → page, intake at full load ({:.0} alerts/s), {name}",
            intake.per_sec
        ),
        &loaded,
    );
    let policy: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/escalation-policies/pager", server.url))
        .bearer_auth(&s.token)
        .send()
        .await?
        .json()
        .await?;
    server.stop();

    // 100,000 pending escalations: most due in a day, 1,000 due over 20 s
    // starting shortly after the server is back.
    let policy: kiroku_domain::escalation::Policy = serde_json::from_value(policy)?;
    let store = target_store(target).await?;
    let pending = if o.quick { 10_000 } else { 100_000 };
    let due_soon = 1_000;
    let t0 = Instant::now();
    let far = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    seed::escalations(store.as_ref(), &policy, pending - due_soon, |_| far).await?;
    let base = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
    let dues: Vec<jiff::Timestamp> = (0..due_soon)
        .map(|i| base + jiff::SignedDuration::from_millis(20 * i as i64))
        .collect();
    let soon = seed::escalations(store.as_ref(), &policy, due_soon, |i| dues[i]).await?;
    let due_of: HashMap<String, jiff::Timestamp> = soon
        .iter()
        .map(|id| id.to_string())
        .zip(dues.iter().copied())
        .collect();
    drop(store);
    println!(
        "seeded {pending} pending escalations into {name} in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let server = Server::start(&o.kiroku, target).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.0.lock().unwrap().len() < due_of.len() + n + n / 2 + 10
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Lateness: arrival (on this machine's clock) minus due time.
    let (now_wall, now_mono) = (jiff::Timestamp::now(), Instant::now());
    let mut late = Vec::new();
    let got = arrivals.0.lock().unwrap().clone();
    for (id, due) in &due_of {
        if let Some(at) = got.get(id) {
            let at_wall = now_wall - jiff::SignedDuration::try_from(now_mono - *at)?;
            late.push(Duration::from_secs_f64(
                at_wall.duration_since(*due).as_secs_f64().max(0.0),
            ));
        }
    }
    let fired = late.len();
    let worst = late.iter().max().copied().unwrap_or_default();
    let lateness = summarise(late, Duration::from_secs(20));
    r.line(&format!(
        "| page lateness after its due time, {pending} escalations pending, {name} ({fired} of {} fired, worst {:.0} ms) | | {:.2} ms | {:.2} ms | {} |",
        due_of.len(),
        worst.as_secs_f64() * 1000.0,
        lateness.p50,
        lateness.p99,
        lateness.n
    ));
    r.json.insert(
        format!("paging_{}", name.to_lowercase()),
        json!({
            "idle": {"p50_ms": idle.p50, "p99_ms": idle.p99, "n": idle.n},
            "under_load": {"p50_ms": loaded.p50, "p99_ms": loaded.p99, "n": loaded.n, "intake_alerts_per_sec": intake.per_sec},
            "pending": {"escalations": pending, "due": due_of.len(), "fired": fired, "lateness_p50_ms": lateness.p50, "lateness_p99_ms": lateness.p99, "worst_ms": worst.as_secs_f64() * 1000.0},
        }),
    );
    server.stop();
    Ok(())
}
