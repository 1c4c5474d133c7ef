//! `kiroku report`: a rendered report of an incident, from the API, to a
//! file or to standard output.

use std::io::Write;

use clap::{Args, ValueEnum};

use super::{ClientArgs, client, encode, query};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportKind {
    Shimatsusho,
    DbIncident,
    Postmortem,
    AppiReport,
    GdprNotification,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
    Pdf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The incident, by number or id.
    pub incident: String,
    #[arg(long, value_enum)]
    pub kind: ReportKind,
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
    /// The 始末書 pattern, when not the incident category's.
    #[arg(long)]
    pub pattern: Option<String>,
    /// The postmortem's language: ja (default) or en.
    #[arg(long)]
    pub lang: Option<String>,
    /// Where to write it; standard output when absent or `-`.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

pub async fn report(a: ReportArgs) -> anyhow::Result<()> {
    let kind = match a.kind {
        ReportKind::Shimatsusho => "shimatsusho",
        ReportKind::DbIncident => "db-incident",
        ReportKind::Postmortem => "postmortem",
        ReportKind::AppiReport => "appi-report",
        ReportKind::GdprNotification => "gdpr-notification",
    };
    let format = match a.format {
        ReportFormat::Md => "md",
        ReportFormat::Html => "html",
        ReportFormat::Pdf => "pdf",
    };
    let c = client(&a.client)?;
    let qs = query(&[("pattern", a.pattern), ("lang", a.lang)]);
    let body = c
        .get_file(&format!(
            "/api/v1/incidents/{}/reports/{kind}.{format}{qs}",
            encode(&a.incident)
        ))
        .await?;
    match a.output.as_deref() {
        Some(path) if path != std::path::Path::new("-") => {
            std::fs::write(path, &body).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write {}: {e}; check the directory exists and is writable",
                    path.display()
                )
            })?;
            eprintln!("wrote {} ({} bytes)", path.display(), body.len());
        }
        _ => std::io::stdout().write_all(&body)?,
    }
    Ok(())
}
