//! The command line: `serve`, local bootstrap against the database, and an
//! API client for everyday work.

mod alerts;
mod oncall;
mod report;
mod services;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kiroku_app::{App, Caller, NewUser};
use kiroku_domain::Role;
use serde_json::{Value, json};

use crate::client::{Client, Credentials, load_credentials, save_credentials};
use crate::config::{self, ServeArgs, Settings, StoreArgs};

#[derive(Debug, Parser)]
#[command(
    name = "kiroku",
    version,
    about = "Incident response and a tamper-evident audit trail"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (SQLite in ./kiroku-data unless told otherwise).
    Serve(ServeArgs),
    /// Manage users directly in the database (for bootstrap and recovery).
    #[command(subcommand)]
    User(UserCommand),
    /// Issue API tokens directly in the database.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Log in to a server and keep an API token for the other commands.
    Login(LoginArgs),
    /// Work with incidents through the API.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Verify the audit trail and prove events, straight from the database.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Connect monitoring: create and list alert integrations.
    #[command(subcommand)]
    Integration(alerts::IntegrationCommand),
    /// List the alerts monitoring sent.
    #[command(subcommand)]
    Alert(alerts::AlertCommand),
    /// Recover what the intake journal kept aside, straight in the database.
    #[command(subcommand)]
    Intake(alerts::IntakeCommand),
    /// A service's routing rules and maintenance windows.
    #[command(subcommand)]
    Service(services::ServiceCommand),
    /// Who is on call in a schedule, now or at a time.
    Oncall(oncall::OncallArgs),
    /// Render an incident's 始末書, DB incident report or postmortem.
    Report(report::ReportArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every leaf and the tree; check every signed head. Exit 0
    /// only when all holds; otherwise name the first bad event.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Also check the database against heads witnessed in this directory.
        #[arg(long, value_name = "DIR")]
        witness: Option<std::path::PathBuf>,
        /// Check archived events' bytes in the archive files here (without
        /// it, archived events are checked by the leaves the tree records).
        #[arg(long, value_name = "DIR")]
        archive: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Move events older than N days out of the database into an archive
    /// file (JSON Lines, each line hashing to its leaf). Their leaves stay
    /// in the tree, so verification and proofs still span the whole log.
    Archive {
        #[command(flatten)]
        store: StoreArgs,
        /// Archive events stamped more than this many days ago.
        #[arg(long, value_name = "DAYS")]
        older_than_days: u32,
        /// Where archive files go (keep it off the database host).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Check a running server against a tree head you trust (a witness
    /// file): its latest head must be signed by the same key and extend
    /// the trusted one, as a consistency proof from the server shows.
    VerifyOnline {
        #[command(flatten)]
        client: ClientArgs,
        /// A witnessed head file ({size}.json from the witness directory).
        #[arg(long, value_name = "FILE")]
        trusted_head: std::path::PathBuf,
    },
    /// Write the audit log (or a time range of it) as JSON Lines or CSV.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// jsonl (each line hashes to its leaf) or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// RFC 3339; inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339; exclusive.
        #[arg(long)]
        to: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Destroy a subject's data keys (an erasure request, e.g.
    /// `incident:<id>`): its sealed values can no longer be opened, and the
    /// tree still verifies.
    Shred {
        #[command(flatten)]
        store: StoreArgs,
        subject: String,
    },
    /// Print an inclusion proof for event SEQ (JSON).
    Prove {
        #[command(flatten)]
        store: StoreArgs,
        seq: u64,
        /// Prove against this tree size (default: the whole log).
        #[arg(long)]
        tree_size: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
        /// admin, responder, viewer, auditor or application (sends audit events only).
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (required when not on a terminal).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Give a user a new TOTP secret (enrolment or a lost device).
    TotpReset {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue an API token for a user; the secret is printed once.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        user: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        #[arg(long)]
        expires_in_days: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server URL (default: the one `kiroku login` saved).
    #[arg(long, env = "KIROKU_SERVER", global = true)]
    pub server: Option<String>,
    /// API token (default: the one `kiroku login` saved).
    #[arg(long, env = "KIROKU_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(long, env = "KIROKU_SERVER")]
    pub server: String,
    #[arg(long)]
    pub name: String,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The 6-digit code from your authenticator app.
    #[arg(long)]
    pub totp: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        title: String,
        /// e.g. database, server_failure, information_leak (see GET /api/v1/meta).
        #[arg(long)]
        category: String,
        /// e.g. P0–P3.
        #[arg(long)]
        severity: String,
        #[arg(long, default_value = "")]
        summary: String,
        #[arg(long, default_value = "")]
        environment: String,
        /// 発生場所.
        #[arg(long, default_value = "")]
        location: String,
        /// An affected service; repeat for several.
        #[arg(long = "service")]
        services: Vec<String>,
        #[arg(long)]
        commander: Option<String>,
        #[arg(long = "assignee")]
        assignees: Vec<String>,
        /// When it happened (RFC 3339), if before detection.
        #[arg(long)]
        occurred_at: Option<String>,
    },
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Comma-separated statuses.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        environment: Option<String>,
        /// Text in the number, title or summary.
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show an incident and its timeline.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// Number (DB-2026-001) or id.
        incident: String,
    },
    /// Acknowledge.
    Ack(TransitionArgs),
    /// Page an escalation level again at once (the next level by default).
    Escalate(oncall::EscalateArgs),
    /// Start investigating (the response-start time).
    Investigate(TransitionArgs),
    /// Mark mitigated (service restored, 復旧).
    Mitigate(TransitionArgs),
    Resolve(TransitionArgs),
    Close(TransitionArgs),
    /// Add a note to the timeline.
    Note {
        #[command(flatten)]
        client: ClientArgs,
        incident: String,
        text: String,
    },
    /// Record impact and personal-data facts.
    Impact {
        #[command(flatten)]
        client: ClientArgs,
        incident: String,
        #[arg(long)]
        users: Option<i64>,
        #[arg(long)]
        records: Option<i64>,
        /// Comma-separated table names.
        #[arg(long)]
        tables: Option<String>,
        #[arg(long)]
        downtime_minutes: Option<i64>,
        #[arg(long)]
        sla_breached: bool,
        #[arg(long)]
        business_impact: Option<String>,
        /// Comma-separated kinds of personal data (氏名,メールアドレス…); implies personal data is involved.
        #[arg(long)]
        personal_data: Option<String>,
        #[arg(long)]
        people: Option<i64>,
        /// 要配慮個人情報.
        #[arg(long)]
        sensitive: bool,
        /// 財産的被害のおそれ.
        #[arg(long)]
        financial_risk: bool,
        /// 不正の目的のおそれ.
        #[arg(long)]
        malicious_intent: bool,
    },
}

#[derive(Debug, Args)]
pub struct TransitionArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub incident: String,
    #[arg(long)]
    pub note: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KIROKU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::User(cmd) => user(cmd).await,
        Command::Token(cmd) => token(cmd).await,
        Command::Login(args) => login(args).await,
        Command::Incident(cmd) => incident(cmd).await,
        Command::Audit(cmd) => audit(cmd).await,
        Command::Integration(cmd) => alerts::integration(cmd).await,
        Command::Alert(cmd) => alerts::alert(cmd).await,
        Command::Intake(cmd) => alerts::intake(cmd).await,
        Command::Service(cmd) => services::service(cmd).await,
        Command::Oncall(args) => oncall::oncall(args).await,
        Command::Report(args) => report::report(args).await,
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let mut settings = Settings::resolve(&args)?;
    settings.app.notify.link_key = Some(crate::audit::link_key(&settings.link_key_file)?);
    let store = settings.store.open().await?;
    let mut app = App::new(store.clone(), settings.app.clone())
        .with_sealer(settings.audit.sealer()?)
        .with_detection(settings.detection.clone());
    if let Some(journal) = &settings.intake_journal {
        app = app
            .with_intake_journal(&journal.path, journal.sync)
            .await
            .with_context(|| format!("cannot use the intake journal {}", journal.path.display()))?;
    }
    match crate::config::report_fonts(settings.report_font.as_deref()) {
        Ok(fonts) => app = app.with_report_fonts(fonts),
        // PDF reports are refused with a clear error; the rest works.
        Err(e) => tracing::warn!("PDF reports unavailable: {e}"),
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let key = crate::audit::signing_key(&settings.audit.signing_key_file)?;
    let key_id = key.key_id();
    let witness = crate::audit::DirWitness {
        dir: settings.audit.witness_dir.clone(),
    };
    let mut witnesses: Vec<Box<dyn kiroku_app::HeadWitness>> = vec![Box::new(witness)];
    if let Some(url) = &settings.audit.witness_url {
        witnesses.push(Box::new(crate::audit::WebhookWitness::new(url)?));
    }
    let app = app.with_signer(kiroku_app::TreeSigner { key, witnesses });
    app.register_signing_key().await?;
    let detail = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listen": addr.to_string(),
        "backend": store.backend(),
        "tree_key": key_id,
    });
    app.record_system_event("sys_startup", detail.clone())
        .await?;
    let signer = tokio::spawn(sign_heads(app.clone(), settings.audit.head_interval));
    let detection = tokio::spawn(app.clone().run_detection());
    app.ensure_default_policy().await?;
    for problem in app.routings_that_do_not_compile().await? {
        tracing::error!(
            "{problem}: the service's alerts are refused (500) until `kiroku service routing` mends it"
        );
    }
    let client = crate::notify::http_client()?;
    let courier = std::sync::Arc::new(crate::notify::Couriers {
        http: crate::notify::HttpCourier::new(client.clone()),
        smtp: settings
            .smtp
            .as_ref()
            .map(crate::notify::SmtpCourier::new)
            .transpose()?,
        sms: settings
            .sms
            .clone()
            .map(|s| crate::notify::SmsCourier::new(client, s)),
    });
    let notifications = tokio::spawn(app.clone().run_notifications(courier));
    let escalations = tokio::spawn(app.clone().run_escalations());
    let reminders = tokio::spawn(app.clone().run_reminders());
    let archiving =
        settings.audit.archive.clone().map(|(days, dir)| {
            tokio::spawn(crate::audit::archive_on_schedule(app.clone(), days, dir))
        });
    let other_nodes = tokio::spawn(app.clone().watch_other_nodes());
    tracing::info!(store = %settings.store.describe(), "kiroku listening on http://{addr}");
    let header_read_timeout = settings.http.header_read_timeout;
    let router = kiroku_server::router(app.clone(), settings.http);
    kiroku_server::serve(listener, router, header_read_timeout, shutdown_signal()).await?;
    signer.abort();
    detection.abort();
    notifications.abort();
    escalations.abort();
    reminders.abort();
    other_nodes.abort();
    if let Some(a) = archiving {
        a.abort();
    }
    app.close_intake_journal().await;
    app.record_system_event("sys_shutdown", detail).await?;
    sign_head(&app).await;
    tracing::info!("stopped");
    Ok(())
}

/// Signs a head whenever the tree grew, at the configured cadence.
async fn sign_heads(app: App, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sign_head(&app).await;
    }
}

async fn sign_head(app: &App) {
    if let Err(e) = app.sign_tree_head().await {
        tracing::error!(error = %e, "could not sign a tree head");
    }
}

async fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::VerifyOnline {
            client: a,
            trusted_head,
        } => {
            let text = std::fs::read_to_string(&trusted_head).with_context(|| {
                format!("cannot read the trusted head {}", trusted_head.display())
            })?;
            let trusted: crate::audit::Witnessed =
                serde_json::from_str(&text).with_context(|| {
                    format!("{} is not a witnessed tree head", trusted_head.display())
                })?;
            let report = crate::audit::verify_online(&client(&a)?, &trusted).await?;
            if a.json {
                print_json(&report)?;
            } else {
                println!("ok: {report}");
            }
            Ok(())
        }
        AuditCommand::Archive {
            store,
            older_than_days,
            out,
        } => {
            if older_than_days == 0 {
                bail!("--older-than-days must be at least 1");
            }
            let app = local_writer(&store).await?;
            let caller = Caller::local_operator();
            match crate::audit::archive_older_than(&app, &caller, &out, older_than_days).await? {
                None => println!(
                    "nothing to archive: no signed events older than {older_than_days} days beyond those archived"
                ),
                Some((record, removed)) => println!(
                    "archived events {}..={} ({removed}) to {} (sha256 {})",
                    record.from_seq,
                    record.to_seq,
                    out.join(&record.file).display(),
                    record.sha256
                ),
            }
            Ok(())
        }
        AuditCommand::Verify {
            store,
            witness,
            archive,
            json,
        } => {
            let witnessed = match &witness {
                Some(dir) => crate::audit::read_witness(dir)?,
                None => Vec::new(),
            };
            let app = local_app(&store).await?;
            let file = config::read_file(store.config.as_deref())?;
            let scan = config::store_target(&store, &file)?.audit_scan()?;
            let tty = std::io::stderr().is_terminal() && !json;
            let archives = |a: &kiroku_store::ArchiveRecord| match &archive {
                Some(dir) => crate::audit::archive_contents(dir, a),
                None => kiroku_app::ArchiveContents::LeavesOnly,
            };
            let outcome = app
                .verify_audit(witnessed, archives, scan, move |done, total| {
                    if tty {
                        eprint!("\r{}", progress_bar(done, total));
                    }
                })
                .await
                .map_err(failed)?;
            if tty {
                eprintln!();
            }
            match outcome {
                Ok(summary) => {
                    if json {
                        print_json(&json!({ "ok": true, "summary": summary }))?;
                    } else {
                        println!(
                            "ok: {} events, {} signed heads{} verified; root {}",
                            summary.events,
                            summary.heads_checked,
                            if witness.is_some() {
                                format!(", {} witnessed heads", summary.witnessed_checked)
                            } else {
                                String::new()
                            },
                            summary.root_hash
                        );
                        if summary.archived_by_leaf_only > 0 {
                            println!(
                                "note: {} archived events were checked by their recorded leaves only; pass --archive DIR to check their contents",
                                summary.archived_by_leaf_only
                            );
                        }
                    }
                    Ok(())
                }
                Err(finding) => {
                    if json {
                        print_json(&json!({ "ok": false, "finding": finding }))?;
                    }
                    let at = finding
                        .seq
                        .map(|s| format!(" at seq {s}"))
                        .unwrap_or_default();
                    bail!(
                        "audit trail {}{at}: {}",
                        finding.problem.as_str(),
                        finding.detail
                    )
                }
            }
        }
        AuditCommand::Export {
            store,
            format,
            from,
            to,
            output,
        } => {
            use std::io::Write;
            let format = kiroku_app::ExportFormat::parse(&format)
                .context("--format must be jsonl or csv")?;
            let time = |flag: &str, v: Option<String>| -> anyhow::Result<Option<jiff::Timestamp>> {
                v.map(|s| {
                    s.parse().with_context(|| {
                        format!("{flag} must be an RFC 3339 time such as 2026-11-21T09:00:00+09:00")
                    })
                })
                .transpose()
            };
            let mut q = kiroku_store::AuditQuery {
                time_from: time("--from", from)?,
                time_to: time("--to", to)?,
                limit: kiroku_store::PAGE_MAX,
                ..Default::default()
            };
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let app = local_app(&store).await?;
            let caller = Caller::local_operator();
            app.begin_export(&caller, &q, format)
                .await
                .map_err(failed)?;
            out.write_all(format.header().as_bytes())?;
            loop {
                let (chunk, next) = app.export_chunk(&q, format).await.map_err(failed)?;
                out.write_all(chunk.as_bytes())?;
                match next {
                    Some(n) => q.after_seq = Some(n),
                    None => break,
                }
            }
            out.flush()?;
            Ok(())
        }
        AuditCommand::Shred { store, subject } => {
            let app = local_writer(&store).await?;
            let n = app
                .shred_subject(&Caller::local_operator(), &subject)
                .await
                .map_err(failed)?;
            println!(
                "destroyed {n} data key(s) of {subject}; its sealed values can no longer be opened"
            );
            Ok(())
        }
        AuditCommand::Prove {
            store,
            seq,
            tree_size,
        } => {
            let app = local_app(&store).await?;
            let proof = app
                .inclusion_proof(&Caller::local_operator(), seq, tree_size)
                .await
                .map_err(failed)?;
            print_json(&proof)
        }
    }
}

/// The app over the store, for reading (verify, prove, export).
/// `[#####-----]  50% 500 / 1000 events`, for a terminal.
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100).min(100);
    format!(
        "verifying [{}{}] {percent:3}% {done} / {total} events",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize)
    )
}

async fn local_app(store: &StoreArgs) -> anyhow::Result<App> {
    let file = config::read_file(store.config.as_deref())?;
    let target = config::store_target(store, &file)?;
    let config = config::app_config(&file, None, None)?;
    Ok(App::new(target.open().await?, config))
}

/// The app over the store, for changes: it seals sensitive values as the
/// server does, so it loads (or creates) the key-encryption key.
async fn local_writer(store: &StoreArgs) -> anyhow::Result<App> {
    let file = config::read_file(store.config.as_deref())?;
    let sealer = config::audit_settings(store, &file)?.sealer()?;
    Ok(local_app(store).await?.with_sealer(sealer))
}

fn read_secret(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read standard input")?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password on; pass --password-stdin and pipe it in");
    }
    Ok(rpassword::prompt_password(prompt)?)
}

/// A command's failure, with the field at fault when there is one.
fn failed(e: kiroku_app::AppError) -> anyhow::Error {
    match e.field() {
        Some(f) => anyhow::anyhow!("{e} (field {f})"),
        None => anyhow::anyhow!("{e}"),
    }
}

/// Prints `v` as JSON. A reader that has gone (`| head`) is not an error
/// of ours: the rest is not wanted, and the exit status still says how the
/// command went.
fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            store,
            name,
            role,
            display_name,
            email,
            password_stdin,
            json,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!(
                    "unknown role {role:?}; use admin, responder, viewer, auditor or application"
                )
            })?;
            let password = read_secret(password_stdin, "Password: ")?;
            let app = local_writer(&store).await?;
            let created = app
                .create_user(
                    &Caller::local_operator(),
                    NewUser {
                        name,
                        display_name,
                        email,
                        role,
                        password,
                    },
                )
                .await
                .map_err(failed)?;
            if json {
                return print_json(&created);
            }
            println!(
                "created {} ({})",
                created.user.name,
                created.user.role.as_str()
            );
            if let Some(uri) = created.totp_uri {
                println!(
                    "This role logs in with a second factor. Add this to an authenticator app now;"
                );
                println!("it is shown only once:\n  {uri}");
            }
            Ok(())
        }
        UserCommand::TotpReset { store, name } => {
            let app = local_writer(&store).await?;
            let uri = app.reset_totp(&Caller::local_operator(), &name).await?;
            println!(
                "new second factor for {name}; add it to an authenticator app (shown once):\n  {uri}"
            );
            Ok(())
        }
    }
}

async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            store,
            user,
            name,
            expires_in_days,
            json,
        } => {
            let app = local_writer(&store).await?;
            let issued = app
                .create_token(
                    &Caller::local_operator(),
                    Some(&user),
                    &name,
                    expires_in_days,
                )
                .await
                .map_err(failed)?;
            if json {
                return print_json(&issued);
            }
            // The secret alone on stdout, so that scripts can capture it.
            println!("{}", issued.secret);
            eprintln!(
                "token {} for {user}; it is shown only this once",
                issued.token.id
            );
            Ok(())
        }
    }
}

async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let password = read_secret(args.password_stdin, "Password: ")?;
    let anon = Client::new(&args.server, None)?;
    let mut body = json!({ "name": args.name, "password": password, "totp_code": args.totp });
    let attempt = anon
        .send(reqwest::Method::POST, "/api/v1/auth/login", Some(&body))
        .await;
    let (_, headers) = match attempt {
        Err(crate::client::ClientError::Api { code, .. })
            if code == "totp_required" && args.totp.is_none() =>
        {
            if !std::io::stdin().is_terminal() || args.password_stdin {
                bail!("this account logs in with a second factor; pass --totp CODE");
            }
            let code = rpassword::prompt_password("Authenticator code: ")?;
            body["totp_code"] = json!(code.trim());
            anon.send(reqwest::Method::POST, "/api/v1/auth/login", Some(&body))
                .await?
        }
        other => other?,
    };
    let cookie = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|kv| kv.starts_with(kiroku_server::SESSION_COOKIE))
        })
        .map(str::to_string)
        .context("the server did not start a session")?;
    let session = Client::new(&args.server, None)?.with_session(cookie);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".into());
    let issued = session
        .post(
            "/api/v1/tokens",
            &json!({ "name": format!("kiroku login ({host})") }),
        )
        .await?;
    // The token is what the CLI keeps; the browser-style session is not needed.
    let _ = session
        .send(reqwest::Method::POST, "/api/v1/auth/logout", None)
        .await;
    let token = issued["secret"]
        .as_str()
        .context("the server issued no token")?;
    let path = save_credentials(&Credentials {
        server: anon.server.clone(),
        token: token.into(),
    })?;
    println!(
        "logged in to {} as {}; token saved in {}",
        anon.server,
        args.name,
        path.display()
    );
    Ok(())
}

fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    let saved = load_credentials();
    let server = args
        .server
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.server.clone()))
        .context("no server: run `kiroku login --server URL --name NAME`, or pass --server / KIROKU_SERVER")?;
    let token = args.token.clone().or_else(|| saved.map(|c| c.token));
    Ok(Client::new(&server, token)?)
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{}", encoded.join("&"))
    }
}

/// Percent-encodes every byte but the unreserved ones: for a query value
/// or a path segment (an incident number, a schedule's name in any
/// script).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let zone = std::env::var("KIROKU_TIME_ZONE")
                .unwrap_or_else(|_| config::DEFAULT_TIME_ZONE.into());
            let tz = jiff::tz::TimeZone::get(&zone).unwrap_or(jiff::tz::TimeZone::UTC);
            t.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z").to_string()
        })
        .unwrap_or_else(|| "-".into())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Left-aligned columns; titles are cut to keep rows on one line.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([headers[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// Prints a list answer's `items` as a table, one row per item, and how to
/// ask for the next page when there is one.
fn print_items(list: &Value, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    let rows = list["items"]
        .as_array()
        .map(|items| items.iter().map(row).collect())
        .unwrap_or_default();
    table(headers, rows);
    if let Some(next) = list["next_cursor"].as_str() {
        println!("more: --cursor {next}");
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.into()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn print_incident(i: &Value) {
    let f = |k: &str| text(&i[k]);
    println!("{}  {}", f("number"), f("title"));
    let rows = [
        ("status", f("status")),
        ("severity", f("severity")),
        ("category", f("category")),
        ("environment", f("environment")),
        ("location", f("location")),
        (
            "services",
            i["affected_services"]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        ),
        ("commander", text(&i["commander"]["name"])),
        ("reporter", text(&i["reporter"]["name"])),
        ("occurred", time(&i["occurred_at"])),
        ("detected", time(&i["detected_at"])),
        ("response due", time(&i["response_due_at"])),
        ("acknowledged", time(&i["acknowledged_at"])),
        ("response started", time(&i["response_started_at"])),
        ("mitigated", time(&i["mitigated_at"])),
        ("resolved", time(&i["resolved_at"])),
        ("closed", time(&i["closed_at"])),
    ];
    for (k, v) in rows {
        println!("  {k:<17}{v}");
    }
}

async fn transition(name: &str, a: TransitionArgs) -> anyhow::Result<()> {
    let c = client(&a.client)?;
    let body = match &a.note {
        Some(n) => json!({ "note": n }),
        None => json!({}),
    };
    let i = c
        .post(
            &format!("/api/v1/incidents/{}/{name}", encode(&a.incident)),
            &body,
        )
        .await?;
    if a.client.json {
        return print_json(&i);
    }
    println!("{} is now {}", text(&i["number"]), text(&i["status"]));
    Ok(())
}

fn csv_list(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
}

async fn incident(cmd: IncidentCommand) -> anyhow::Result<()> {
    match cmd {
        IncidentCommand::Create {
            client: a,
            title,
            category,
            severity,
            summary,
            environment,
            location,
            services,
            commander,
            assignees,
            occurred_at,
        } => {
            let c = client(&a)?;
            let body = json!({
                "title": title, "category": category, "severity": severity, "summary": summary,
                "environment": environment, "location": location, "affected_services": services,
                "commander": commander, "assignees": assignees, "occurred_at": occurred_at,
            });
            let i = c.post("/api/v1/incidents", &body).await?;
            if a.json {
                return print_json(&i);
            }
            println!(
                "declared {}  {}  (respond by {})",
                text(&i["number"]),
                text(&i["title"]),
                time(&i["response_due_at"])
            );
            Ok(())
        }
        IncidentCommand::List {
            client: a,
            status,
            severity,
            category,
            environment,
            q,
            limit,
            cursor,
        } => {
            let c = client(&a)?;
            let qs = query(&[
                ("status", status),
                ("severity", severity),
                ("category", category),
                ("environment", environment),
                ("q", q),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
            ]);
            let list = c.get(&format!("/api/v1/incidents{qs}")).await?;
            if a.json {
                return print_json(&list);
            }
            print_items(
                &list,
                &["NUMBER", "STATUS", "SEV", "CATEGORY", "DETECTED", "TITLE"],
                |i| {
                    vec![
                        text(&i["number"]),
                        text(&i["status"]),
                        text(&i["severity"]),
                        text(&i["category"]),
                        time(&i["detected_at"]),
                        cut(&text(&i["title"]), 60),
                    ]
                },
            );
            Ok(())
        }
        IncidentCommand::Show {
            client: a,
            incident,
        } => {
            let c = client(&a)?;
            let i = c
                .get(&format!("/api/v1/incidents/{}", encode(&incident)))
                .await?;
            let tl = c
                .get(&format!("/api/v1/incidents/{}/timeline", encode(&incident)))
                .await?;
            if a.json {
                return print_json(&json!({ "incident": i, "timeline": tl["items"] }));
            }
            print_incident(&i);
            println!("\ntimeline");
            for e in tl["items"].as_array().into_iter().flatten() {
                let who = text(&e["actor"]["name"]);
                let what = match e["kind"].as_str() {
                    Some("status_changed") => {
                        kiroku_domain::status_change_text(&e["data"], &text(&e["body"]))
                    }
                    _ => format!("{} {}", text(&e["kind"]), text(&e["body"])),
                };
                println!(
                    "  {}  {:<12} {}",
                    time(&e["at"]),
                    cut(&who, 12),
                    what.trim_end()
                );
            }
            Ok(())
        }
        IncidentCommand::Ack(a) => transition("acknowledge", a).await,
        IncidentCommand::Escalate(a) => oncall::escalate(a).await,
        IncidentCommand::Investigate(a) => transition("investigate", a).await,
        IncidentCommand::Mitigate(a) => transition("mitigate", a).await,
        IncidentCommand::Resolve(a) => transition("resolve", a).await,
        IncidentCommand::Close(a) => transition("close", a).await,
        IncidentCommand::Note {
            client: a,
            incident,
            text: body,
        } => {
            let c = client(&a)?;
            let e = c
                .post(
                    &format!("/api/v1/incidents/{}/notes", encode(&incident)),
                    &json!({ "body": body }),
                )
                .await?;
            if a.json {
                return print_json(&e);
            }
            println!("note added to {incident}");
            Ok(())
        }
        IncidentCommand::Impact {
            client: a,
            incident,
            users,
            records,
            tables,
            downtime_minutes,
            sla_breached,
            business_impact,
            personal_data,
            people,
            sensitive,
            financial_risk,
            malicious_intent,
        } => {
            let c = client(&a)?;
            let mut patch = json!({
                "impact": {
                    "users_affected": users, "records_affected": records,
                    "tables_affected": csv_list(tables).unwrap_or_default(),
                    "downtime_minutes": downtime_minutes, "sla_breached": sla_breached,
                    "business_impact": business_impact.unwrap_or_default(),
                }
            });
            let items = csv_list(personal_data);
            if items.is_some()
                || people.is_some()
                || sensitive
                || financial_risk
                || malicious_intent
            {
                patch["personal_data"] = json!({
                    "involved": true, "items": items.unwrap_or_default(), "people_affected": people,
                    "sensitive": sensitive, "financial_risk": financial_risk, "malicious_intent": malicious_intent,
                });
            }
            let (i, _) = c
                .send(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/incidents/{}", encode(&incident)),
                    Some(&patch),
                )
                .await?;
            if a.json {
                return print_json(&i);
            }
            println!("impact recorded on {}", text(&i["number"]));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn path_segments_and_query_values_escape_each_utf8_byte() {
        assert_eq!(encode("2026-0001"), "2026-0001");
        assert_eq!(encode("一次 a/b?"), "%E4%B8%80%E6%AC%A1%20a%2Fb%3F");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
