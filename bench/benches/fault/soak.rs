//! Soak: a steady mixed load — intake, API reads, pages in a signed-in
//! browser session — for ten minutes, with resident memory and latency
//! sampled every 10 s; no errors, and no growth trend in memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Receiver, Rig, Scratch, finish, header};
use crate::reports::log_in;
use crate::{Opts, Server, bootstrap_as, summarise};

/// Requests a second, spread over `WORKERS` paced workers.
const RATE: u64 = 100;
const WORKERS: u64 = 4;
/// Distinct alerts the intake re-fires: a monitored fleet's steady state,
/// not an ever-growing one.
const ALERT_KEYS: usize = 200;

/// What the workers saw since the last sample.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

pub async fn run(o: &Opts, work: &Scratch) -> anyhow::Result<()> {
    let duration = Duration::from_secs(if o.quick { 60 } else { 600 });
    let every = Duration::from_secs(10);
    let mut r = header(
        "soak",
        "no request fails over the whole run, and resident memory shows no growth trend: the least-squares slope over the second half of the run (when the caches are warm), extrapolated to an hour, stays under 10 % of the mean. The slope after the first minute (the first 20 s in --quick) is shown too.",
    );
    let target = work.sqlite("soak");
    let receiver = Receiver::default();
    let hook = receiver.up(None).await?;
    let server = Server::start(&o.kiroku, &target).await?;
    let rig = Rig::new(o, &target, &server, &hook.url()).await?;
    bootstrap_as(&o.kiroku, &target, "fault-viewer", "responder")?;
    let client = reqwest::Client::new();
    let cookie = log_in(&client, &server.url, "fault-viewer").await?;
    r.line(&format!(
        "{} s at {RATE} requests/s from {WORKERS} paced workers: 40 % alert intake (generic, {ALERT_KEYS} alerts re-firing), 30 % API reads (incident and alert lists), 30 % pages in a signed-in session (dashboard, incident list, status page).\n",
        duration.as_secs()
    ));

    let window = Arc::new(Mutex::new(Window::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (window, next, client) = (window.clone(), next.clone(), client.clone());
        let (base, rig, cookie) = (server.url.clone(), rig.clone(), cookie.clone());
        workers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * WORKERS / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while started.elapsed() < duration {
                tick.tick().await;
                let i = next.fetch_add(1, Ordering::Relaxed);
                let req = match i % 10 {
                    0..4 => client
                        .post(format!("{base}/api/v1/integrations/{}/generic", rig.generic))
                        .json(&json!({"summary": "soak", "source": "soak", "severity": "warning", "dedup_key": format!("soak-{}", i % ALERT_KEYS)})),
                    4 => client.get(format!("{base}/api/v1/incidents?limit=50")).bearer_auth(&rig.admin),
                    5 => client.get(format!("{base}/api/v1/incidents?status=triggered")).bearer_auth(&rig.admin),
                    6 => client.get(format!("{base}/api/v1/alerts?limit=50")).bearer_auth(&rig.admin),
                    7 => client.get(format!("{base}/")).header("cookie", &cookie),
                    8 => client.get(format!("{base}/incidents")).header("cookie", &cookie),
                    _ => client.get(format!("{base}/status")),
                };
                let t0 = Instant::now();
                let outcome = match req.send().await {
                    Ok(res) if res.status().is_success() => {
                        res.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(res) => Err(format!("request {i} answered {}", res.status())),
                    Err(e) => Err(format!("request {i}: {e}")),
                };
                let mut w = window.lock().unwrap();
                match outcome {
                    Ok(()) => w.latencies.push(t0.elapsed()),
                    Err(e) => w.errors.push(e),
                }
            }
        }));
    }

    r.line("| t | RSS | requests | p50 | p99 | errors |");
    r.line("|---|---|---|---|---|---|");
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    while started.elapsed() < duration + Duration::from_secs(1) {
        tick.tick().await;
        let taken = std::mem::take(&mut *window.lock().unwrap());
        let t = started.elapsed().as_secs_f64();
        let rss = server.rss_mib();
        let n = taken.latencies.len();
        let s = (n > 0).then(|| summarise(taken.latencies, every));
        let (p50, p99) = s.map_or((f64::NAN, f64::NAN), |s| (s.p50, s.p99));
        r.line(&format!(
            "| {t:.0} s | {rss:.1} MiB | {n} | {p50:.2} ms | {p99:.2} ms | {} |",
            taken.errors.len()
        ));
        samples.push(json!({"t_s": t, "rss_mib": rss, "requests": n, "p50_ms": p50, "p99_ms": p99, "errors": taken.errors.len()}));
        errors.extend(taken.errors);
    }
    for w in workers {
        w.await?;
    }
    server.stop();
    drop(hook);

    let warm_up = if o.quick { 20.0 } else { 60.0 };
    // Slope per minute of `field` over the samples after `from` seconds.
    let slope_after = |from: f64, field: &str| {
        let (xs, ys): (Vec<f64>, Vec<f64>) = samples
            .iter()
            .filter(|s| s["t_s"].as_f64().unwrap_or(0.0) > from)
            .map(|s| {
                let t = s["t_s"].as_f64().unwrap_or(f64::NAN);
                (t / 60.0, s[field].as_f64().unwrap_or(f64::NAN))
            })
            .unzip();
        slope(&xs, &ys)
    };
    let half = duration.as_secs_f64() / 2.0;
    let (rss_slope, rss_slope_warm) = (
        slope_after(warm_up, "rss_mib"),
        slope_after(half, "rss_mib"),
    );
    let p99_slope = slope_after(half, "p99_ms");
    let rss: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["rss_mib"].as_f64())
        .collect();
    let mean_rss = rss.iter().sum::<f64>() / rss.len() as f64;
    let growth = rss_slope_warm * 60.0 > 0.10 * mean_rss;
    r.line(&format!(
        "\nRSS slope after the first {warm_up:.0} s {rss_slope:+.3} MiB/min; over the second half {rss_slope_warm:+.3} MiB/min ({:+.1} MiB/h, mean {mean_rss:.1} MiB): {}; p99 slope over the second half {p99_slope:+.3} ms/min; {} requests, {} errors.",
        rss_slope_warm * 60.0,
        if growth {
            "a growth trend"
        } else {
            "no growth trend"
        },
        next.load(Ordering::Relaxed),
        errors.len()
    ));
    r.json.insert(
        "soak".into(),
        json!({
            "duration_s": duration.as_secs(),
            "rate_per_s": RATE,
            "samples": samples,
            "rss_slope_mib_per_min_after_warm_up": rss_slope,
            "rss_slope_mib_per_min_second_half": rss_slope_warm,
            "p99_slope_ms_per_min_second_half": p99_slope,
            "mean_rss_mib": mean_rss,
            "growth_trend": growth,
            "errors": errors.len(),
        }),
    );
    let mut problems = Vec::new();
    if let Some(first) = errors.first() {
        problems.push(format!(
            "{} requests failed; the first: {first}",
            errors.len()
        ));
    }
    if growth {
        problems.push(format!(
            "resident memory grows {:.1} MiB/h over a mean of {mean_rss:.1} MiB",
            rss_slope_warm * 60.0
        ));
    }
    finish(o, r, "soak", &problems)
}
