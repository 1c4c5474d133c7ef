//! `kiroku oncall` and `kiroku incident escalate`: the API client side of
//! paging.

use clap::Args;
use serde_json::json;

use super::{ClientArgs, client, encode, print_json, query, text, time};

#[derive(Debug, Args)]
pub struct OncallArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The schedule, by name or id.
    pub schedule: String,
    /// RFC 3339 (default: now).
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Debug, Args)]
pub struct EscalateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The incident, by number or id.
    pub incident: String,
    /// The level to page, 1-based (default: the next one).
    #[arg(long)]
    pub level: Option<u32>,
}

pub async fn oncall(a: OncallArgs) -> anyhow::Result<()> {
    let c = client(&a.client)?;
    let qs = query(&[("at", a.at)]);
    let o = c
        .get(&format!(
            "/api/v1/schedules/{}/oncall{qs}",
            encode(&a.schedule)
        ))
        .await?;
    if a.client.json {
        return print_json(&o);
    }
    match o["user"].as_str() {
        Some(user) => println!(
            "{}: {user} ({}) until {}",
            text(&o["schedule"]),
            text(&o["source"]),
            time(&o["shift"]["end"])
        ),
        None => println!("{}: nobody is on call", text(&o["schedule"])),
    }
    Ok(())
}

pub async fn escalate(a: EscalateArgs) -> anyhow::Result<()> {
    let c = client(&a.client)?;
    let body = match a.level {
        Some(l) => json!({ "level": l }),
        None => json!({}),
    };
    let e = c
        .post(
            &format!("/api/v1/incidents/{}/escalate", encode(&a.incident)),
            &body,
        )
        .await?;
    if a.client.json {
        return print_json(&e);
    }
    let level = e["level"].as_u64().map_or(0, |l| l + 1);
    println!(
        "paged level {level} of {}; next at {}",
        text(&e["policy"]),
        time(&e["due_at"])
    );
    Ok(())
}
