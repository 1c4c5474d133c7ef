//! The pages in a real browser: Debian's Chromium, headless, driven by
//! playwright-core from Node (`tests/browser/journey.mjs`) against a real
//! Kiroku on loopback. Log in with TOTP, declare (a hostile title renders
//! as text), acknowledge, note, resolve, write and approve the postmortem,
//! download the PDF, search the audit log, switch to English, view the
//! status page; screenshots go to target/screenshots.
//! Without Chromium, Node or playwright-core it prints SKIP.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{PASSWORD, TestApp};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn missing() -> Option<&'static str> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("Chromium is not installed (Debian package chromium)");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("Node.js is not installed");
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci in crates/kiroku/tests/browser)");
    }
    None
}

#[tokio::test]
async fn journey_in_chromium() {
    if let Some(why) = missing() {
        println!("SKIP: browser journey: {why}");
        return;
    }
    let t =
        TestApp::with_config(crate::support::sqlite().await, crate::web::one_step_chain()).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let args = vec![
        browser_dir().join("journey.mjs").display().to_string(),
        t.url("").trim_end_matches('/').to_string(),
        t.admin.name.clone(),
        PASSWORD.to_string(),
        t.admin.totp_secret(),
        shots.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("node").args(&args).output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{said}");
    assert!(
        out.status.success(),
        "the browser journey failed:\n{said}\n{err}"
    );
    for shot in [
        "login",
        "dashboard",
        "incidents",
        "incident",
        "postmortem",
        "audit",
        "status",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).exists(),
            "no screenshot of {shot}"
        );
    }
}
