//! `kiroku service …`: the API client side of a service's routing rules and
//! maintenance windows.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kiroku_domain::alert::routing::MaintenanceWindow;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientArgs, client, cut, encode, print_items, print_json, table, text, time};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A service's routing defaults, its rules in order and its maintenance
    /// windows.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// The service, by name or id.
        service: String,
    },
    /// Replace a service's routing with the JSON in FILE (`-` for standard
    /// input); docs/intake.md shows the format.
    Routing {
        #[command(flatten)]
        client: ClientArgs,
        /// The service, by name or id.
        service: String,
        #[arg(long)]
        file: PathBuf,
        /// Refuse unless the service is still at this version (`kiroku
        /// service show` prints it), so that nobody's change meanwhile is
        /// replaced unseen.
        #[arg(long)]
        if_version: Option<i64>,
    },
    /// Windows in which a service's alerts are recorded but page nobody.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Add a window: from `--from` (default now) for `--for` or until
    /// `--until`, at most 31 days.
    #[command(group(
        clap::ArgGroup::new("end").required(true).args(["duration", "until"])
    ))]
    Add {
        #[command(flatten)]
        client: ClientArgs,
        /// The service, by name or id.
        service: String,
        /// RFC 3339, such as 2026-12-08T01:00:00+09:00 (default: now).
        #[arg(long)]
        from: Option<String>,
        /// How long it lasts: 90m, 2h, 1h30m, 3d.
        #[arg(long = "for")]
        duration: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        until: Option<String>,
        /// Why, for whoever looks at the alerts afterwards.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove a window, ending it at once if it is under way.
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        /// The service, by name or id.
        service: String,
        /// The window's id (`kiroku service show` lists them).
        id: String,
    },
}

fn service_path(service: &str) -> String {
    format!("/api/v1/services/{}", encode(service))
}

fn timestamp(flag: &str, raw: &str) -> anyhow::Result<jiff::Timestamp> {
    raw.parse().with_context(|| {
        format!("{flag} must be an RFC 3339 time such as 2026-12-08T01:00:00+09:00, not {raw:?}")
    })
}

/// `--from` and the window's end, from `--for` or `--until`.
fn window_span(
    from: Option<&str>,
    duration: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<(jiff::Timestamp, jiff::Timestamp)> {
    let starts = match from {
        Some(raw) => timestamp("--from", raw)?,
        None => jiff::Timestamp::now(),
    };
    let ends = match (duration, until) {
        (Some(raw), _) => {
            // Days count as 24 hours: a window is a length of time, not a
            // span of calendar days.
            let length = raw
                .parse::<jiff::Span>()
                .and_then(|s| s.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--for must be a length such as 90m, 2h, 1h30m or 3d, not {raw:?}"
                    )
                })?;
            starts
                .checked_add(length)
                .with_context(|| format!("--for {raw} ends past the calendar's end"))?
        }
        (None, Some(raw)) => timestamp("--until", raw)?,
        (None, None) => anyhow::bail!("say when the window ends: --for or --until"),
    };
    Ok((starts, ends))
}

fn grouping(g: &Value) -> String {
    let window = |g: &Value| format!("within {} min", text(&g["window_minutes"]));
    match g["mode"].as_str() {
        Some("labels") => {
            let labels: Vec<String> = g["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            format!("by labels {} {}", labels.join(", "), window(g))
        }
        Some("sender") => format!("by the sender's group {}", window(g)),
        _ => "an incident per alert".into(),
    }
}

/// A rule's actions as JSON, without the `suppress` every rule carries.
fn actions(then: &Value) -> String {
    let mut then = then.clone();
    if then["suppress"] == false
        && let Some(o) = then.as_object_mut()
    {
        o.remove("suppress");
    }
    then.to_string()
}

/// The window in an answer, read as the domain's, so that "under way"
/// means what it means to intake.
fn window(w: &Value) -> Option<MaintenanceWindow> {
    serde_json::from_value(w.clone()).ok()
}

/// Whether a maintenance window is planned, under way or over at `now`.
fn window_state(w: &Value, now: jiff::Timestamp) -> &'static str {
    match window(w) {
        Some(w) if w.covers(now) => "under way",
        Some(w) if w.ends_at <= now => "ended",
        Some(_) => "planned",
        None => "-",
    }
}

fn print_service(s: &Value) {
    let now = jiff::Timestamp::now();
    let r = &s["routing"];
    println!("{}  (version {})", text(&s["name"]), text(&s["version"]));
    let rows = [
        ("id", text(&s["id"])),
        ("category", text(&r["category"])),
        ("grouping", grouping(&r["grouping"])),
        ("escalation", text(&r["escalation_policy"])),
        (
            "auto-resolve",
            if r["auto_resolve"] == true {
                "when all its alerts resolve"
            } else {
                "no"
            }
            .into(),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<14}{v}");
    }
    let rules: Vec<Vec<String>> = r["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(n, rule)| {
            vec![
                (n + 1).to_string(),
                text(&rule["name"]),
                cut(&rule["when"].to_string(), 60),
                cut(&actions(&rule["then"]), 60),
            ]
        })
        .collect();
    println!("\nrules (the first that matches decides)");
    if rules.is_empty() {
        println!("  none: every alert takes the defaults above");
    } else {
        table(&["#", "NAME", "WHEN", "THEN"], rules);
    }
    println!("\nmaintenance windows");
    let windows: Vec<Vec<String>> = s["maintenance"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            vec![
                text(&w["id"]),
                time(&w["starts_at"]),
                time(&w["ends_at"]),
                window_state(w, now).into(),
                cut(&text(&w["reason"]), 40),
            ]
        })
        .collect();
    if windows.is_empty() {
        println!("  none");
    } else {
        table(&["ID", "FROM", "UNTIL", "STATE", "REASON"], windows);
    }
}

fn read_routing(file: &PathBuf) -> anyhow::Result<Value> {
    let raw = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read the routing from standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    serde_json::from_str(&raw).with_context(|| {
        format!(
            "{} is not JSON; docs/intake.md shows a service's routing",
            file.display()
        )
    })
}

pub async fn service(cmd: ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::List { client: a } => {
            let c = client(&a)?;
            let list = c.get("/api/v1/services").await?;
            if a.json {
                return print_json(&list);
            }
            let now = jiff::Timestamp::now();
            print_items(&list, &["NAME", "RULES", "GROUPING", "MAINTENANCE"], |s| {
                let under_way = s["maintenance"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(window)
                    .any(|w| w.covers(now));
                vec![
                    text(&s["name"]),
                    s["routing"]["rules"]
                        .as_array()
                        .map_or(0, Vec::len)
                        .to_string(),
                    grouping(&s["routing"]["grouping"]),
                    if under_way { "under way" } else { "-" }.into(),
                ]
            });
            Ok(())
        }
        ServiceCommand::Show { client: a, service } => {
            let c = client(&a)?;
            let s = c.get(&service_path(&service)).await?;
            if a.json {
                return print_json(&s);
            }
            print_service(&s);
            Ok(())
        }
        ServiceCommand::Routing {
            client: a,
            service,
            file,
            if_version,
        } => {
            let routing = read_routing(&file)?;
            let c = client(&a)?;
            let path = format!("{}/routing", service_path(&service));
            let (s, _) = c
                .send_if_version(Method::PUT, &path, Some(&routing), if_version)
                .await?;
            if a.json {
                return print_json(&s);
            }
            println!(
                "routing of {} set: {} rules, version {}",
                text(&s["name"]),
                s["routing"]["rules"].as_array().map_or(0, Vec::len),
                text(&s["version"])
            );
            Ok(())
        }
        ServiceCommand::Maintenance(MaintenanceCommand::Add {
            client: a,
            service,
            from,
            duration,
            until,
            reason,
        }) => {
            let (starts_at, ends_at) =
                window_span(from.as_deref(), duration.as_deref(), until.as_deref())?;
            let c = client(&a)?;
            let path = format!("{}/maintenance-windows", service_path(&service));
            let body = json!({ "starts_at": starts_at, "ends_at": ends_at, "reason": reason });
            let w = c.post(&path, &body).await?;
            if a.json {
                return print_json(&w);
            }
            println!("maintenance window {} on {service}", text(&w["id"]));
            println!("from:  {}", time(&w["starts_at"]));
            println!("until: {}", time(&w["ends_at"]));
            println!("alerts arriving in it are recorded and page nobody");
            Ok(())
        }
        ServiceCommand::Maintenance(MaintenanceCommand::Remove {
            client: a,
            service,
            id,
        }) => {
            let c = client(&a)?;
            let path = format!(
                "{}/maintenance-windows/{}",
                service_path(&service),
                encode(&id)
            );
            let (s, _) = c.send(Method::DELETE, &path, None).await?;
            if a.json {
                return print_json(&s);
            }
            println!("maintenance window {id} removed from {service}; its alerts page again");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::window_span;

    #[test]
    fn a_window_ends_after_its_length_or_at_its_end() {
        let from = "2026-12-08T01:00:00+09:00";
        let (a, b) = window_span(Some(from), Some("1h30m"), None).unwrap();
        assert_eq!(b.duration_since(a), jiff::SignedDuration::from_mins(90));
        let (_, b) = window_span(Some(from), None, Some("2026-12-08T03:00:00+09:00")).unwrap();
        assert_eq!(b.to_string(), "2026-12-07T18:00:00Z");
        let (a, b) = window_span(Some(from), Some("3d"), None).unwrap();
        assert_eq!(b.duration_since(a), jiff::SignedDuration::from_hours(72));
        let e = window_span(Some(from), Some("soon"), None).unwrap_err();
        assert!(e.to_string().contains("--for must be a length"), "{e}");
        let e = window_span(Some("tomorrow"), Some("2h"), None).unwrap_err();
        assert!(
            e.to_string().contains("--from must be an RFC 3339 time"),
            "{e}"
        );
    }
}
