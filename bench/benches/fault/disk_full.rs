//! The SQLite volume filled while writes run: Kiroku keeps running and
//! refuses writes with a clear JSON error, loses nothing it answered, and
//! takes writes again once space is freed; the file stays sound and the
//! audit log verifies.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::{
    Answered, Receiver, Rig, Scratch, Senders, audit_verify, finish, header, verify_text,
    writes_and_pages,
};
use crate::{Opts, Server, Target, target_store};

/// A tmpfs mounted for the scenario, unmounted when it ends.
struct Volume(PathBuf);

impl Volume {
    fn mount(dir: &Path, size: &str) -> Result<Volume, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Volume(dir.to_path_buf()))
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        // Lazily: a server killed on an early exit may still be closing its files.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the volume refuses another byte; the bytes written.
fn fill(path: &Path) -> anyhow::Result<u64> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => return Err(e.into()),
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

/// `PRAGMA integrity_check` on the file: "ok", or what is wrong.
async fn integrity(db: &Path) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut c)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("; "))
}

pub async fn run(o: &Opts, work: &Scratch) -> anyhow::Result<()> {
    let full_for = Duration::from_secs(if o.quick { 5 } else { 20 });
    let mut r = header(
        "disk full on the SQLite volume",
        "while the volume is full Kiroku keeps running and refuses writes with 503 or 507 and a JSON code (no 500, no dropped connection); every write answered before, during and after is stored; once the filler is deleted writes are answered again; every answered incident was paged, none recorded sent twice; `PRAGMA integrity_check` says ok and `kiroku audit verify` passes.",
    );
    let mount = work.0.join("volume");
    let volume = match Volume::mount(&mount, "256m") {
        Ok(v) => v,
        Err(why) => {
            r.line(&format!(
                "SKIP: cannot mount a tmpfs at {} ({why})",
                mount.display()
            ));
            return finish(o, r, "disk-full", &[]);
        }
    };
    let target = Target::Sqlite(volume.0.join("data"));
    let config = work.short_holds()?;
    let receiver = Receiver::default();
    let hook = receiver.up(None).await?;
    let mut server = Server::start_with(&o.kiroku, &target, &["--config", &config]).await?;
    let rig = Rig::new(o, &target, &server, &hook.url()).await?;
    let store = target_store(&target).await?;
    r.line(&format!(
        "A 256 MiB tmpfs holds the data directory; a filler file takes all its free space for {} s while eight writers run, then is deleted.\n",
        full_for.as_secs()
    ));
    r.line("| phase | seconds | alerts answered | incidents answered | audit events answered | refusals | no answer |");
    r.line("|---|---|---|---|---|---|---|");

    let mut problems = Vec::new();
    let mut all = Answered::default();
    let filler = volume.0.join("filler");
    let mut phases = serde_json::Map::new();
    for (phase, secs) in [
        ("before", Duration::from_secs(2)),
        ("full", full_for),
        // Short: writers at full speed fill the volume again within seconds.
        ("space freed", Duration::from_secs(3)),
    ] {
        match phase {
            "full" => {
                let bytes = fill(&filler)?;
                r.line(&format!(
                    "| (filler: {:.1} MiB) | | | | | | |",
                    bytes as f64 / 1048576.0
                ));
            }
            "space freed" => std::fs::remove_file(&filler)?,
            _ => {}
        }
        let senders = Senders::start(&server.url, &rig, &phase.replace(' ', "-"));
        tokio::time::sleep(secs).await;
        let got = senders.finish().await?;
        if !server.alive() {
            problems.push(format!("kiroku exited in phase {phase}"));
        }
        r.line(&format!(
            "| {phase} | {} | {} | {} | {} | {} | {} |",
            secs.as_secs(),
            got.alerts.len(),
            got.incidents.len(),
            got.audit_events(),
            got.refusals_text(),
            got.unanswered
        ));
        if phase == "space freed" && got.writes() == 0 {
            problems.push("no write was answered after space was freed".into());
        }
        for (what, n) in &got.refusals {
            if !(what.starts_with("503 ") || what.starts_with("507 ")) || what.contains("(no code)")
            {
                problems.push(format!("{phase}: {n} requests answered {what}"));
            }
        }
        if got.unanswered > 0 {
            problems.push(format!(
                "{phase}: {} requests got no answer",
                got.unanswered
            ));
        }
        phases.insert(phase.into(), got.json());
        all.merge(got);
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
    drop(store);
    let Target::Sqlite(data) = &target else {
        unreachable!("the volume holds a SQLite store")
    };
    let integrity = integrity(&data.join("kiroku.db")).await?;
    if integrity != "ok" {
        problems.push(format!("integrity_check: {integrity}"));
    }
    let verified = audit_verify(&o.kiroku, &target, "at the end", &mut problems)?;
    r.line(&format!(
        "\n{}; {} pages recorded sent ({} sent again after recording them failed); integrity_check: {integrity}; audit verify: {}.",
        all.checked(),
        pages.sent,
        pages.repeats,
        verify_text(&verified)
    ));
    r.json.insert(
        "disk_full".into(),
        json!({"phases": phases, "answered": all.json(), "pages_sent": pages.sent, "integrity": integrity, "verify_events": verified.ok()}),
    );
    finish(o, r, "disk-full", &problems)
}
