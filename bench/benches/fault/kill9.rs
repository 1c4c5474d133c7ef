//! kill -9 at random moments while intake, declarations (which page) and
//! other applications' audit events run, on SQLite and on PostgreSQL;
//! after each kill a restart on the same data, and every answered write
//! must be there and the audit log must verify. With `--intake-journal`,
//! intake answers from its journal, and each restart's check waits until
//! the journal is applied.

use std::time::Duration;

use serde_json::json;

use super::{
    Answered, PgDb, Receiver, Rig, Rng, Scratch, Senders, audit_verify, finish, header,
    journal_args, missing, verify_text, writes_and_pages,
};
use crate::{Opts, Report, Server, Target, target_store};

pub async fn run(o: &Opts, work: &Scratch, seed: u64) -> anyhow::Result<()> {
    let rounds = o.rounds.unwrap_or(if o.quick { 5 } else { 20 });
    let mut r = header(
        "kill -9",
        "after each kill and restart, every alert answered 202, incident answered 201 and audit event answered 201 is stored (each alert counted once, each audit event at its answered seq), and every alert whose resolve was answered 202 is resolved with its incident; `kiroku audit verify` passes after every kill; at the end every answered incident was paged, no idempotency key is recorded sent twice, and the receiver saw exactly the keys recorded sent.",
    );
    r.line(&format!(
        "Seed {seed} (`--seed {seed}` replays the kill moments); {rounds} rounds per backend, each kill 0.2–3 s into the load."
    ));
    r.json.insert("seed".into(), json!(seed));
    match o.intake_journal_sync_ms {
        Some(ms) => r.line(&format!(
            "Intake answers once a request is written to its journal, synced within {ms} ms (`--intake-journal-sync-ms {ms}`)."
        )),
        None if o.intake_journal => {
            r.line("Intake answers once a request is synced to its journal (`--intake-journal`).")
        }
        None => {}
    }
    r.json
        .insert("intake_journal".into(), json!(o.intake_journal));
    r.json.insert(
        "intake_journal_sync_ms".into(),
        json!(o.intake_journal_sync_ms),
    );
    let mut rng = Rng(seed);
    let mut problems = Vec::new();
    problems.extend(on(o, work, &work.sqlite("kill9"), rounds, &mut rng, &mut r).await?);
    if let Some(pg) = PgDb::create(o, "kill9", &mut r).await? {
        problems.extend(on(o, work, &pg.target, rounds, &mut rng, &mut r).await?);
        pg.drop_database().await?;
    }
    let name = match (o.intake_journal, o.intake_journal_sync_ms) {
        (_, Some(ms)) => format!("kill9-journal-{ms}ms"),
        (true, None) => "kill9-journal".into(),
        (false, None) => "kill9".into(),
    };
    finish(o, r, &name, &problems)
}

async fn on(
    o: &Opts,
    work: &Scratch,
    target: &Target,
    rounds: usize,
    rng: &mut Rng,
    r: &mut Report,
) -> anyhow::Result<Vec<String>> {
    let name = target.name();
    let config = work.short_holds()?;
    let journal = journal_args(o);
    let mut extra = vec!["--config", config.as_str()];
    extra.extend(journal.iter().map(String::as_str));
    let serve = || Server::start_with(&o.kiroku, target, &extra);
    let receiver = Receiver::default();
    let hook = receiver.up(None).await?;
    let server = serve().await?;
    let rig = Rig::new(o, target, &server, &hook.url()).await?;
    server.stop();
    let store = target_store(target).await?;

    r.line(&format!("\n## {name}\n"));
    r.line("| round | killed after | alerts answered | incidents answered | audit events answered | unanswered | audit verify |");
    r.line("|---|---|---|---|---|---|---|");
    let mut problems = Vec::new();
    let (mut all, mut last) = (Answered::default(), Answered::default());
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let server = serve().await?;
        // The previous round's writes, after its kill and this restart.
        if o.intake_journal {
            server.journal_committed().await?;
        }
        problems.extend(missing(store.as_ref(), &rig, &last).await?);
        let senders = Senders::start(&server.url, &rig, &format!("r{round}"));
        let after = rng.between(200, 3000);
        tokio::time::sleep(Duration::from_millis(after)).await;
        server.kill9();
        last = senders.finish().await?;
        let verified = audit_verify(
            &o.kiroku,
            target,
            &format!("{name} round {round}"),
            &mut problems,
        )?;
        let verify = match &verified {
            Ok(events) => format!("ok, {events} events"),
            Err(_) => "FAILED".into(),
        };
        r.line(&format!(
            "| {round} | {after} ms | {} | {} | {} | {} | {verify} |",
            last.alerts.len(),
            last.incidents.len(),
            last.audit_events(),
            last.unanswered
        ));
        rows.push(json!({"round": round, "killed_after_ms": after, "answered": last.json(), "verify_ok": verified.is_ok()}));
        all.merge(last.clone());
    }
    let server = serve().await?;
    if o.intake_journal {
        server.journal_committed().await?;
    }
    let pages = writes_and_pages(
        store.as_ref(),
        &receiver,
        &rig,
        &all,
        Duration::from_secs(180),
        &mut problems,
    )
    .await?;
    server.stop();
    hook.down().await;
    let verified = audit_verify(&o.kiroku, target, &format!("{name}, final"), &mut problems)?;
    r.line(&format!(
        "\n{name}: {rounds} kills; {}, {} missing; {} pages recorded sent, {} keys received, {} transport-level repeats after kills, {} recorded sent twice; final audit verify: {}.",
        all.checked(),
        problems.iter().filter(|p| p.contains("not stored") || p.contains("not at seq")).count(),
        pages.sent,
        pages.received,
        pages.repeats,
        pages.recorded_twice,
        verify_text(&verified)
    ));
    r.json.insert(
        format!("kill9_{}", name.to_lowercase()),
        json!({
            "rounds": rows,
            "answered": all.json(),
            "pages": {"sent": pages.sent, "received": pages.received, "transport_repeats": pages.repeats, "recorded_twice": pages.recorded_twice},
            "final_verify_events": verified.ok(),
            "problems": problems.len(),
        }),
    );
    Ok(problems)
}
