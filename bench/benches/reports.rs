//! Reports and metrics over HTTP: a 始末書 of an incident with 1,000
//! timeline entries as Markdown and as PDF, and the operational metrics
//! over every seeded incident.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Opts, Report, Server, Target, fmt, load, median};

/// Timeline entries on the incident whose report is rendered.
const ENTRIES: usize = 1_000;

pub(crate) async fn reports_bench(
    o: &Opts,
    target: &Target,
    token: &str,
    incidents: usize,
    r: &mut Report,
) -> anyhow::Result<()> {
    let server = Server::start(&o.kiroku, target).await?;
    let client = reqwest::Client::new();
    let declared: Value = client
        .post(format!("{}/api/v1/incidents", server.url))
        .bearer_auth(token)
        .json(
            &json!({ "title": "接続プール枯渇", "category": "server_failure", "severity": "P1",
                       "summary": "全機能が応答不能となった" }),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let number = declared["number"].as_str().unwrap_or_default().to_string();
    let notes = {
        let (client, url, token) = (
            client.clone(),
            format!("{}/api/v1/incidents/{number}/notes", server.url),
            token.to_string(),
        );
        Arc::new(move |i: usize| {
            client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "body": format!("対応メモ {i}: 接続数を確認し、タスクを追加した") }))
        })
    };
    load(4, ENTRIES, notes).await?;
    let to = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let from = to - jiff::SignedDuration::from_hours(24 * 3_650);
    let cases = [
        (
            format!("report: 始末書 Markdown, {ENTRIES} timeline entries"),
            format!("/api/v1/incidents/{number}/reports/shimatsusho.md"),
            if o.quick { 50 } else { 200 },
        ),
        (
            format!("report: 始末書 PDF, {ENTRIES} timeline entries"),
            format!("/api/v1/incidents/{number}/reports/db-incident.pdf"),
            if o.quick { 10 } else { 40 },
        ),
        (
            format!("metrics: {incidents} incidents"),
            format!(
                "/api/v1/metrics?from={}&to={}&bucket=month",
                from.to_string().replace(':', "%3A"),
                to.to_string().replace(':', "%3A")
            ),
            if o.quick { 5 } else { 20 },
        ),
    ];
    for (name, path, n) in cases {
        let make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> = {
            let (client, url, token) = (
                client.clone(),
                format!("{}{path}", server.url),
                token.to_string(),
            );
            Arc::new(move |_| client.get(&url).bearer_auth(&token))
        };
        load(1, 2, make.clone()).await?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(load(1, n, make.clone()).await?);
        }
        let (m, noisy) = median(runs);
        r.line(&format!(
            "| {name}, {} | {} |",
            target.name(),
            fmt(&m, noisy)
        ));
        r.json.insert(
            format!("{}_{}", target.name().to_lowercase(), name.replace([' ', ',', ':'], "_")),
            json!({ "per_sec": m.per_sec, "p50_ms": m.p50, "p99_ms": m.p99, "requests": m.n, "noisy": noisy }),
        );
    }
    server.stop();
    Ok(())
}
