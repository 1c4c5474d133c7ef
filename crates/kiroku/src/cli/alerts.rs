//! `kiroku integration …` and `kiroku alert …`: the API client side of
//! alert intake.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use kiroku_app::{AppError, Caller, INTAKE_RECORD_MAX};
use kiroku_domain::alert::IntegrationKind;
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    ClientArgs, client, cut, encode, failed, local_writer, print_items, print_json, query, text,
    time,
};
use crate::config::StoreArgs;

#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Create an integration (and its service, if new); prints the routing
    /// key and the URL to give the monitoring system.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// pagerduty, alertmanager, grafana or generic.
        #[arg(long = "type")]
        kind: String,
        /// The service the alerts are about, by name or id.
        #[arg(long)]
        service: String,
        #[arg(long)]
        name: Option<String>,
        /// Requests accepted per second before 429 (default 1000).
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// List integrations.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        service: Option<String>,
    },
    /// Rename an integration, change its rate limit, or disable it (its
    /// routing key then refused) or enable it again.
    #[command(group(
        clap::ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["name", "rate_limit", "disable", "enable"])
    ))]
    Update {
        #[command(flatten)]
        client: ClientArgs,
        /// The integration's id (`kiroku integration list` shows it).
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Requests accepted per second before 429.
        #[arg(long)]
        rate_limit: Option<u32>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    /// Give an integration a new routing key, for one that has leaked; the
    /// old key is refused from then on. Prints the new key and URL.
    RotateKey {
        #[command(flatten)]
        client: ClientArgs,
        /// The integration's id (`kiroku integration list` shows it).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IntakeCommand {
    /// Apply a record the intake journal dropped and kept
    /// (DATA_DIR/intake.journal.dropped-…), once what failed it is mended:
    /// straight to the database, as the server would have. Only the bytes
    /// the drop kept are taken, and each dropped record applies once.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// The kept file, as the audit event of the drop names it (`kept_in`).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub async fn intake(cmd: IntakeCommand) -> anyhow::Result<()> {
    use std::io::Read;
    let IntakeCommand::Replay { store, file, json } = cmd;
    let name = file.display().to_string();
    // Read through a limit: a device or a pipe says nothing of its length.
    let mut bytes = Vec::new();
    std::fs::File::open(&file)
        .and_then(|f| f.take(INTAKE_RECORD_MAX as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() > INTAKE_RECORD_MAX {
        bail!(
            "{name} is larger than any record the intake journal keeps ({INTAKE_RECORD_MAX} bytes)"
        );
    }
    let app = local_writer(&store).await?;
    let replayed = match app
        .replay_kept_intake(&Caller::local_operator(), &name, &bytes)
        .await
    {
        Ok(r) => r,
        Err(AppError::Duplicate { .. }) => {
            bail!("{name} was replayed before; nothing was done")
        }
        Err(e @ (AppError::Invalid(_) | AppError::NotFound { .. })) => {
            bail!("{e}; nothing was done, and {name} stays")
        }
        // The operator mends what failed the record (a stored routing that
        // no longer compiles, say), so they are told what it is.
        Err(AppError::Internal(detail)) => {
            bail!("{detail}; nothing was done, and {name} stays")
        }
        Err(e) => return Err(failed(e).context(format!("replaying {name}"))),
    };
    if json {
        return print_json(&replayed);
    }
    // Counted by the names the API gives the effects.
    let mut effects = std::collections::BTreeMap::new();
    for event in &replayed.events {
        let effect = serde_json::to_value(event.effect)?;
        *effects
            .entry(effect.as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    let effects: Vec<String> = effects.iter().map(|(e, n)| format!("{n} {e}")).collect();
    println!(
        "replayed {} events of {name}, record {} of intake journal {}: {}",
        replayed.events.len(),
        replayed.seq,
        replayed.journal,
        effects.join(", ")
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// List alerts, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Comma-separated: triggered, acknowledged, resolved.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// Where a monitoring system sends events for this integration.
fn intake_url(server: &str, i: &Value) -> String {
    match i["kind"].as_str().and_then(IntegrationKind::parse) {
        Some(kind) => format!("{server}{}", kind.intake_path(&text(&i["key"]))),
        None => String::new(),
    }
}

/// The name of the service `id` in `services` (`GET /api/v1/services`),
/// for lists that name a service by its id; the id itself for a service
/// no longer there.
fn service_name(services: &Value, id: &Value) -> String {
    services["items"]
        .as_array()
        .and_then(|all| all.iter().find(|s| &s["id"] == id))
        .map_or_else(|| text(id), |s| text(&s["name"]))
}

fn integration_path(id: &str) -> String {
    format!("/api/v1/integrations/{}", encode(id))
}

/// What `create`, `update` and `rotate-key` print: the integration, its
/// routing key and where to send alerts.
fn print_integration(a: &ClientArgs, server: &str, what: &str, i: &Value) -> anyhow::Result<()> {
    if a.json {
        let mut shown = i.clone();
        shown["url"] = json!(intake_url(server, i));
        return print_json(&shown);
    }
    println!(
        "{what} {} integration {}",
        text(&i["kind"]),
        text(&i["name"])
    );
    println!("id:          {}", text(&i["id"]));
    println!("routing key: {}", text(&i["key"]));
    println!("url:         {}", intake_url(server, i));
    if i["disabled"] == true {
        println!("disabled: its routing key is refused until it is enabled again");
    }
    Ok(())
}

pub async fn integration(cmd: IntegrationCommand) -> anyhow::Result<()> {
    match cmd {
        IntegrationCommand::Create {
            client: a,
            kind,
            service,
            name,
            rate_limit,
        } => {
            let c = client(&a)?;
            let body = json!({
                "type": kind, "service": service, "name": name,
                "rate_limit_per_second": rate_limit,
            });
            let i = c.post("/api/v1/integrations", &body).await?;
            print_integration(&a, &c.server, "created", &i)
        }
        IntegrationCommand::Update {
            client: a,
            id,
            name,
            rate_limit,
            disable,
            enable,
        } => {
            let c = client(&a)?;
            let body = json!({
                "name": name,
                "rate_limit_per_second": rate_limit,
                "disabled": (disable || enable).then_some(disable),
            });
            let (i, _) = c
                .send(Method::PATCH, &integration_path(&id), Some(&body))
                .await?;
            print_integration(&a, &c.server, "updated", &i)
        }
        IntegrationCommand::RotateKey { client: a, id } => {
            let c = client(&a)?;
            let path = format!("{}/rotate-key", integration_path(&id));
            let i = c.post(&path, &json!({})).await?;
            print_integration(&a, &c.server, "new routing key for", &i)
        }
        IntegrationCommand::List { client: a, service } => {
            let c = client(&a)?;
            let list = c
                .get(&format!(
                    "/api/v1/integrations{}",
                    query(&[("service", service)])
                ))
                .await?;
            if a.json {
                return print_json(&list);
            }
            let services = c.get("/api/v1/services").await?;
            print_items(&list, &["ID", "NAME", "TYPE", "SERVICE", "URL"], |i| {
                vec![
                    text(&i["id"]),
                    if i["disabled"] == true {
                        format!("{} (disabled)", text(&i["name"]))
                    } else {
                        text(&i["name"])
                    },
                    text(&i["kind"]),
                    service_name(&services, &i["service_id"]),
                    match text(&i["key"]) {
                        key if key.is_empty() => "(hidden)".into(),
                        // PagerDuty's URL is every integration's: the key tells them apart.
                        key if i["kind"] == "pagerduty" => {
                            format!("{} (routing_key {key})", intake_url(&c.server, i))
                        }
                        _ => intake_url(&c.server, i),
                    },
                ]
            });
            Ok(())
        }
    }
}

pub async fn alert(cmd: AlertCommand) -> anyhow::Result<()> {
    match cmd {
        AlertCommand::List {
            client: a,
            status,
            service,
            limit,
            cursor,
        } => {
            let c = client(&a)?;
            let qs = query(&[
                ("status", status),
                ("service", service),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
            ]);
            let list = c.get(&format!("/api/v1/alerts{qs}")).await?;
            if a.json {
                return print_json(&list);
            }
            let services = c.get("/api/v1/services").await?;
            print_items(
                &list,
                &[
                    "STATUS",
                    "LEVEL",
                    "SERVICE",
                    "COUNT",
                    "LAST SEEN",
                    "DEDUP KEY",
                    "SUMMARY",
                ],
                |i| {
                    vec![
                        // An alert that paged nobody says why.
                        match i["quiet"].as_str() {
                            Some(quiet) => format!("{} ({quiet})", text(&i["status"])),
                            None => text(&i["status"]),
                        },
                        text(&i["level"]),
                        service_name(&services, &i["service_id"]),
                        i["count"].to_string(),
                        time(&i["last_seen_at"]),
                        cut(&text(&i["dedup_key"]), 24),
                        cut(&text(&i["summary"]), 60),
                    ]
                },
            );
            Ok(())
        }
    }
}
