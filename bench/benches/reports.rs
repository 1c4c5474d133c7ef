//! Reports and metrics over HTTP: a 始末書 of an incident with 1,000
//! timeline entries as Markdown and as PDF, and the operational metrics
//! over every seeded incident.

use std::sync::Arc;

use serde_json::{Value, json};

use std::time::{Duration, Instant};

use kiroku_report::{Gravity, Kind, Lang, ReportInput};

use super::{
    Opts, Report, Server, Summary, Target, fmt, load, median, median_of_three, session_get,
    summarise,
};

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
    render_only(&client, &server.url, token, &number, o.quick, target, r).await?;
    let cases = [
        (
            format!("report over HTTP: 始末書 Markdown ({ENTRIES} timeline entries)"),
            format!("/api/v1/incidents/{number}/reports/shimatsusho.md"),
            if o.quick { 50 } else { 200 },
        ),
        (
            format!("report over HTTP: 始末書 PDF ({ENTRIES} timeline entries)"),
            format!("/api/v1/incidents/{number}/reports/shimatsusho.pdf"),
            if o.quick { 20 } else { 100 },
        ),
        (
            format!("report over HTTP: DB incident report PDF, {ENTRIES}-row timeline table"),
            format!("/api/v1/incidents/{number}/reports/db-incident.pdf"),
            if o.quick { 10 } else { 40 },
        ),
        (
            format!("metrics over HTTP: {incidents} incidents"),
            format!(
                "/api/v1/metrics?from={}&to={}&bucket=month",
                from.to_string().replace(':', "%3A"),
                to.to_string().replace(':', "%3A")
            ),
            if o.quick { 5 } else { 20 },
        ),
    ];
    let session = log_in(&client, &server.url, "bench").await?;
    let pages = [
        ("page: dashboard", "/".to_string()),
        ("page: incident list", "/incidents".to_string()),
        ("page: incident", format!("/incidents/{number}")),
        (
            "page: postmortem",
            format!("/incidents/{number}/postmortem"),
        ),
        ("page: status (public)", "/status".to_string()),
    ];
    page_rows(o, &server.url, &session, &pages, incidents, target, r).await?;
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
        let (m, noisy) = median_of_three(1, n, &make).await?;
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

/// One way of rendering, returning the size made.
type Renders<'a> = Box<dyn Fn() -> usize + 'a>;

/// Building and rendering alone, without the database or HTTP: the
/// incident and its timeline as the server returns them, rendered here.
async fn render_only(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    number: &str,
    quick: bool,
    target: &Target,
    r: &mut Report,
) -> anyhow::Result<()> {
    let get = |path: String| {
        let req = client.get(format!("{url}{path}")).bearer_auth(token);
        async move {
            anyhow::Ok(
                req.send()
                    .await?
                    .error_for_status()?
                    .json::<Value>()
                    .await?,
            )
        }
    };
    let incident: kiroku_domain::Incident =
        serde_json::from_value(get(format!("/api/v1/incidents/{number}")).await?)?;
    let timeline: Vec<kiroku_domain::TimelineEntry> = serde_json::from_value(
        get(format!("/api/v1/incidents/{number}/timeline")).await?["items"].take(),
    )?;
    let fonts = kiroku_report::pdf::Fonts::load_installed()?;
    let zone = jiff::tz::TimeZone::get("Asia/Tokyo")?;
    let postmortem = kiroku_domain::postmortem::Postmortem::default();
    let chain = kiroku_domain::postmortem::ApprovalChain::default();
    let input = ReportInput {
        incident: &incident,
        category_ja: "サーバ障害",
        category_en: "Server failure",
        gravity: Gravity::Major,
        timeline: &timeline,
        postmortem: &postmortem,
        stage: kiroku_domain::postmortem::Stage::Draft,
        version: 0,
        steps: chain.steps_for(&incident.category),
        approvals: &[],
        final_hash: None,
        problems: &[],
        obligations: &[],
        zone: &zone,
        issued_at: jiff::Timestamp::now(),
        default_addressees: "代表取締役社長 殿",
        western_dates: false,
        contact: "",
    };
    let n = if quick { 20 } else { 100 };
    let time = |render: &dyn Fn() -> usize| -> Summary {
        let start = Instant::now();
        let lat: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(render());
                t.elapsed()
            })
            .collect();
        summarise(lat, start.elapsed())
    };
    let cases: [(&str, Renders<'_>); 3] = [
        (
            "render only: 始末書 Markdown",
            Box::new(|| {
                kiroku_report::markdown::render(&kiroku_report::build(
                    Kind::Shimatsusho,
                    &input,
                    None,
                    Lang::Ja,
                ))
                .len()
            }),
        ),
        (
            "render only: 始末書 PDF",
            Box::new(|| {
                kiroku_report::pdf::render(
                    &kiroku_report::build(Kind::Shimatsusho, &input, None, Lang::Ja),
                    &fonts,
                )
                .map_or(0, |b| b.len())
            }),
        ),
        (
            "render only: DB incident report PDF, 1,000-row timeline table",
            Box::new(|| {
                kiroku_report::pdf::render(
                    &kiroku_report::build(Kind::DbIncident, &input, None, Lang::Ja),
                    &fonts,
                )
                .map_or(0, |b| b.len())
            }),
        ),
    ];
    for (name, render) in cases {
        let runs: Vec<Summary> = (0..3).map(|_| time(render.as_ref())).collect();
        let (m, noisy) = median(runs);
        r.line(&format!(
            "| {name}, {} timeline entries ({}) | {} |",
            timeline.len(),
            target.name(),
            fmt(&m, noisy)
        ));
        r.json.insert(
            format!("{}_{}", target.name().to_lowercase(), name.replace([' ', ',', ':'], "_")),
            json!({ "per_sec": m.per_sec, "p50_ms": m.p50, "p99_ms": m.p99, "renders": m.n, "noisy": noisy }),
        );
    }
    Ok(())
}

/// A session cookie for a user the bench created, as a browser gets one.
/// A row per page: its latency in a signed-in browser session.
pub(crate) async fn page_rows(
    o: &Opts,
    url: &str,
    session: &str,
    pages: &[(&str, String)],
    incidents: usize,
    target: &Target,
    r: &mut Report,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for (name, path) in pages {
        let make = session_get(&client, format!("{url}{path}"), session);
        load(1, 2, make.clone()).await?;
        let n = if o.quick { 20 } else { 100 };
        let (m, noisy) = median_of_three(1, n, &make).await?;
        let label = format!("{name}, {incidents} incidents");
        r.line(&format!(
            "| {label}, {} | {} |",
            target.name(),
            fmt(&m, noisy)
        ));
        r.json.insert(
            format!("{}_{}", target.name().to_lowercase(), label.replace([' ', ',', ':', '(', ')'], "_")),
            json!({ "per_sec": m.per_sec, "p50_ms": m.p50, "p99_ms": m.p99, "requests": m.n, "noisy": noisy }),
        );
    }
    Ok(())
}

pub(crate) async fn log_in(
    client: &reqwest::Client,
    url: &str,
    name: &str,
) -> anyhow::Result<String> {
    let res = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({ "name": name, "password": "benchmark passphrase" }))
        .send()
        .await?
        .error_for_status()?;
    let cookie = res
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    cookie.ok_or_else(|| anyhow::anyhow!("the login set no session cookie"))
}
