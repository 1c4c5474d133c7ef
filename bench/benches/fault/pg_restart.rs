//! The local PostgreSQL restarted while writes run: Kiroku keeps running,
//! answers 503 (never anything worse) while the database is away, serves
//! again once it is back, and every write it answered is stored. With
//! `--intake-journal`, intake is not refused at all: it answers from the
//! journal while the database is away.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::{
    Answered, INTAKE, Kind, PgDb, Receiver, Rig, Scratch, Senders, audit_verify, finish, header,
    journal_args, send_one, verify_text, writes_and_pages,
};
use crate::{Opts, Server, target_store};

pub async fn run(o: &Opts, work: &Scratch) -> anyhow::Result<()> {
    let restarts = o.rounds.unwrap_or(if o.quick { 1 } else { 3 });
    let mut r = header(
        "PostgreSQL restarted under load",
        "Kiroku's process survives each restart; while the database is away requests fail with 503 and a JSON code, never another status; writes are answered again after the restart; every alert, incident and audit event answered before, during or after is stored; every answered incident was paged, none recorded sent twice; `kiroku audit verify` passes.",
    );
    let Some(pg) = PgDb::create(o, "pg-restart", &mut r).await? else {
        return finish(o, r, "pg-restart", &[]);
    };
    let Some((version, cluster)) = cluster() else {
        r.line("SKIP: no local PostgreSQL cluster to restart (pg_lsclusters found none)");
        pg.drop_database().await?;
        return finish(o, r, "pg-restart", &[]);
    };
    r.line(&format!(
        "{restarts} restart(s) of cluster {version}/{cluster} (`pg_ctlcluster {version} {cluster} restart`, fast shutdown: sessions are cut), 5 s of load between them.\n"
    ));
    let target = &pg.target;
    let config = work.short_holds()?;
    let receiver = Receiver::default();
    let hook = receiver.up(None).await?;
    let journal = journal_args(o);
    if !journal.is_empty() {
        r.line(&format!(
            "Intake answers from its journal (`{}`).\n",
            journal.join(" ")
        ));
    }
    let mut extra = vec!["--config", config.as_str()];
    extra.extend(journal.iter().map(String::as_str));
    let mut server = Server::start_with(&o.kiroku, target, &extra).await?;
    let rig = Rig::new(o, target, &server, &hook.url()).await?;
    let store = target_store(target).await?;

    r.line("| restart | pg_ctlcluster took | first write answered after | answered from the restart to 5 s after | refusals meanwhile |");
    r.line("|---|---|---|---|---|");
    let mut problems = Vec::new();
    let mut all = Answered::default();
    let mut rows = Vec::new();
    let senders = Senders::start(&server.url, &rig, "before");
    tokio::time::sleep(Duration::from_secs(3)).await;
    all.merge(senders.finish().await?);
    for k in 1..=restarts {
        let senders = Senders::start(&server.url, &rig, &format!("restart{k}"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        restart(&version, &cluster)?;
        let took = t0.elapsed();
        // How soon a declaration is answered again, while the load goes on.
        let probe = reqwest::Client::new();
        let back = loop {
            let key = format!("restart{k}-probe");
            if send_one(Kind::Declare, &probe, &server.url, &rig, &key, &mut all).await {
                break t0.elapsed();
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("no write answered within 120 s of the restart");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let got = senders.finish().await?;
        if !server.alive() {
            problems.push(format!("kiroku exited during restart {k}"));
            break;
        }
        r.line(&format!(
            "| {k} | {:.1} s | {:.1} s | {} writes | {} |",
            took.as_secs_f64(),
            back.as_secs_f64(),
            got.writes(),
            got.refusals_text()
        ));
        rows.push(json!({"restart": k, "pg_ctlcluster_s": took.as_secs_f64(), "first_write_after_s": back.as_secs_f64(), "answered": got.json()}));
        all.merge(got);
    }
    for (what, n) in &all.refusals {
        if !what.starts_with("503 ") {
            problems.push(format!(
                "{n} requests answered {what} (only 503 is expected)"
            ));
        }
    }
    if o.intake_journal {
        let intake: usize = all
            .refusals
            .iter()
            .filter(|(what, _)| what.ends_with(&format!("({INTAKE})")))
            .map(|(_, n)| n)
            .sum();
        if intake > 0 {
            problems.push(format!(
                "{intake} intake requests refused, though the journal takes them while the database is away"
            ));
        }
    }
    if all.unanswered > 0 {
        problems.push(format!("{} requests got no answer at all", all.unanswered));
    }
    if o.intake_journal {
        server.journal_committed().await?;
    }
    let pages = writes_and_pages(
        store.as_ref(),
        &receiver,
        &rig,
        &all,
        Duration::from_secs(120),
        &mut problems,
    )
    .await?;
    server.stop();
    hook.down().await;
    let verified = audit_verify(&o.kiroku, target, "at the end", &mut problems)?;
    r.line(&format!(
        "\n{}; refusals: {}; {} pages recorded sent, each once ({} sent again after recording them failed); audit verify: {}.",
        all.checked(),
        all.refusals_text(),
        pages.sent,
        pages.repeats,
        verify_text(&verified)
    ));
    r.json.insert(
        "pg_restart".into(),
        json!({"restarts": rows, "answered": all.json(), "pages_sent": pages.sent, "verify_events": verified.ok()}),
    );
    drop(store);
    pg.drop_database().await?;
    finish(o, r, "pg-restart", &problems)
}

/// The first local cluster: its version and name.
fn cluster() -> Option<(String, String)> {
    let out = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut fields = text.lines().next()?.split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

fn restart(version: &str, cluster: &str) -> anyhow::Result<()> {
    let status = Command::new("pg_ctlcluster")
        .args([version, cluster, "restart"])
        .status()
        .context("pg_ctlcluster")?;
    if !status.success() {
        bail!("pg_ctlcluster {version} {cluster} restart failed: {status}");
    }
    Ok(())
}
