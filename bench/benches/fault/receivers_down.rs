//! A webhook receiver down for minutes while incidents page it: the
//! deliveries back off (each attempt and its time from the audit log), and
//! once the receiver is back every page arrives, each once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    Kind, PgDb, Receiver, Rig, Scratch, audit_events_of, audit_verify, finish, header, send_one,
    settled_pages, verify_text,
};
use crate::{Opts, Report, Server, Target, target_store};

/// Incidents declared while the receiver is down.
const INCIDENTS: usize = 20;

pub async fn run(o: &Opts, work: &Scratch) -> anyhow::Result<()> {
    let mut r = header(
        "webhook receiver down",
        "every page arrives once the receiver is back, each idempotency key exactly once, none recorded sent twice and none dead; the attempts made meanwhile back off (from the audit log's notification_failed events); `kiroku audit verify` passes.",
    );
    let mut problems = on(o, &work.sqlite("receivers-down"), &mut r).await?;
    if let Some(pg) = PgDb::create(o, "receivers-down", &mut r).await? {
        problems.extend(on(o, &pg.target, &mut r).await?);
        pg.drop_database().await?;
    }
    finish(o, r, "receivers-down", &problems)
}

/// The scenario on one backend; what went wrong, if anything.
async fn on(o: &Opts, target: &Target, r: &mut Report) -> anyhow::Result<Vec<String>> {
    let down_for = Duration::from_secs(if o.quick { 20 } else { 120 });
    let receiver = Receiver::default();
    let hook = receiver.up(None).await?;
    // The product's own retry policy: first retry after 2 s, doubling.
    let server = Server::start(&o.kiroku, target).await?;
    let rig = Rig::new(o, target, &server, &hook.url()).await?;
    let store = target_store(target).await?;
    let addr = hook.down().await;
    let down_at = Instant::now();
    let (client, mut answered) = (reqwest::Client::new(), super::Answered::default());
    for i in 0..INCIDENTS {
        let key = format!("while-down-{i}");
        send_one(
            Kind::Declare,
            &client,
            &server.url,
            &rig,
            &key,
            &mut answered,
        )
        .await;
    }
    tokio::time::sleep(down_for.saturating_sub(down_at.elapsed())).await;
    let hook = receiver.up(Some(addr)).await?;
    let up_at = Instant::now();
    let (pages, mut problems) = settled_pages(
        store.as_ref(),
        &receiver,
        &rig,
        &answered.incidents,
        down_for + Duration::from_secs(600),
    )
    .await?;
    let all_in = up_at.elapsed();
    if answered.incidents.len() != INCIDENTS {
        problems.push(format!(
            "{} of {INCIDENTS} declarations answered: {}",
            answered.incidents.len(),
            answered.refusals_text()
        ));
    }
    // No kill here, so no transport-level repeat either.
    for (key, n) in receiver.counts() {
        if n != 1 {
            problems.push(format!("{key} arrived {n} times"));
        }
    }

    // Each delivery's failed attempts, by its idempotency key, in order.
    let failed = audit_events_of(store.as_ref(), "notification_failed").await?;
    let mut attempts: BTreeMap<String, Vec<jiff::Timestamp>> = BTreeMap::new();
    for e in &failed {
        if let Some(key) = e.after.as_ref().and_then(|a| a["idempotency_key"].as_str()) {
            attempts.entry(key.to_string()).or_default().push(e.time);
        }
    }
    for times in attempts.values_mut() {
        times.sort();
    }
    // The wait after the k-th failed attempt, over all deliveries.
    let mut waits: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for times in attempts.values() {
        for (k, pair) in times.windows(2).enumerate() {
            waits
                .entry(k + 1)
                .or_default()
                .push(pair[1].duration_since(pair[0]).as_secs_f64());
        }
    }
    let per_delivery: Vec<usize> = attempts.values().map(Vec::len).collect();
    if attempts.len() < INCIDENTS {
        problems.push(format!(
            "only {} deliveries recorded a failed attempt while the receiver was down",
            attempts.len()
        ));
    }
    server.stop();
    let verified = audit_verify(&o.kiroku, target, target.name(), &mut problems)?;
    drop(hook);

    r.line(&format!(
        "\n## {}\n\nThe receiver (connection refused) was down {} s; {INCIDENTS} incidents declared meanwhile, each paging it once.\n",
        target.name(),
        down_for.as_secs()
    ));
    r.line("| after failed attempt | deliveries | wait to the next attempt, min | median | max |");
    r.line("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (k, mut w) in waits {
        w.sort_by(f64::total_cmp);
        r.line(&format!(
            "| {k} | {} | {:.1} s | {:.1} s | {:.1} s |",
            w.len(),
            w[0],
            w[w.len() / 2],
            w[w.len() - 1]
        ));
        rows.push(json!({"after_attempt": k, "deliveries": w.len(), "min_s": w[0], "median_s": w[w.len() / 2], "max_s": w[w.len() - 1]}));
    }
    r.line(&format!(
        "\n{} pages recorded sent, {} keys received, each once; failed attempts per delivery: {}–{}; all delivered {:.1} s after the receiver came back; audit verify: {}.",
        pages.sent,
        pages.received,
        per_delivery.iter().min().unwrap_or(&0),
        per_delivery.iter().max().unwrap_or(&0),
        all_in.as_secs_f64(),
        verify_text(&verified)
    ));
    r.json.insert(
        format!("receivers_down_{}", target.name().to_lowercase()),
        json!({
            "down_s": down_for.as_secs(),
            "incidents": INCIDENTS,
            "pages_sent": pages.sent,
            "pages_received": pages.received,
            "failed_attempts": failed.len(),
            "backoff": rows,
            "all_delivered_after_up_s": all_in.as_secs_f64(),
            "verify_events": verified.ok(),
        }),
    );
    Ok(problems)
}
