//! Server configuration: a TOML file, overridden by `KIROKU_*` environment
//! variables, overridden by flags. clap reads flags and environment
//! together (a flag beats its variable); the file fills what both leave.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use jiff::SignedDuration;
use jiff::tz::TimeZone;
use kiroku_app::{AuthPolicy, Config, JournalSync};
use kiroku_domain::detection::DetectionRules;
use kiroku_domain::{BusinessHours, Catalog, Category, Role, SeverityScheme};
use serde::Deserialize;

use crate::store::StoreTarget;

/// Where the data lives: flags and environment, shared by every command
/// that opens the store directly.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Directory for the SQLite database (DIR/kiroku.db) and other state.
    #[arg(long, env = "KIROKU_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); when set, the data directory's SQLite file is not used.
    #[arg(
        long,
        env = "KIROKU_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "KIROKU_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "KIROKU_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Time zone for display and incident-number years (IANA name).
    #[arg(long, env = "KIROKU_TIME_ZONE", value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// Severity preset: p0-p3 or p1-p4.
    #[arg(long, env = "KIROKU_SEVERITY_SCHEME", value_name = "PRESET")]
    pub severity_scheme: Option<String>,
    /// Answer intake once a request is synced to DATA_DIR/intake.journal,
    /// and commit it to the database behind (see docs/intake.md).
    #[arg(long, env = "KIROKU_INTAKE_JOURNAL")]
    pub intake_journal: bool,
    /// With the intake journal: 0 (the default) answers once the request
    /// is on disk; MS, from 1 to 1000, answers once it is written to the
    /// journal and has it on disk about MS later, so a crash of the
    /// machine (not of Kiroku) may lose what was answered within it.
    #[arg(long, env = "KIROKU_INTAKE_JOURNAL_SYNC_MS", value_name = "MS")]
    pub intake_journal_sync_ms: Option<u64>,
}

/// The configuration file's shape; every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub time_zone: Option<String>,
    pub severity_scheme: Option<String>,
    pub categories: Option<Vec<Category>>,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default)]
    pub audit: AuditFile,
    #[serde(default)]
    pub notify: NotifyFile,
    /// Detection over the audit log (seed 001 No.29); defaults on.
    #[serde(default)]
    pub detection: DetectionRules,
    #[serde(default)]
    pub reports: ReportsFile,
    #[serde(default)]
    pub intake: IntakeFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeFile {
    /// Answer once a request is synced to the intake journal, and commit
    /// it to the database behind (default false).
    pub journal: Option<bool>,
    /// How long the journal may hold answered requests before it syncs
    /// them (default 0: it syncs before answering).
    pub journal_sync_ms: Option<u64>,
}

/// Postmortems and reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsFile {
    /// The TrueType/OpenType font PDF reports are set in; default: the
    /// first of Debian's Japanese fonts found (IPAex Gothic, Noto Sans CJK).
    pub font: Option<PathBuf>,
    /// 宛先 of a 始末書 whose postmortem names none.
    pub addressees: Option<String>,
    /// Who a regulator contacts for more, e.g. the data protection officer.
    pub contact: Option<String>,
    /// Who approves a postmortem, in order.
    pub approvals: Option<kiroku_domain::postmortem::ApprovalChain>,
    /// The notification duties, replacing the presets (APPI, GDPR, NIS2,
    /// SEC 8-K, HIPAA); see docs/reports.md for the shape.
    pub obligations: Option<Vec<kiroku_domain::obligation::ObligationRule>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Ed25519 seed file; default DATA_DIR/audit-signing.key.
    pub signing_key_file: Option<PathBuf>,
    /// How often a new tree head is signed while events arrive.
    pub head_interval_ms: Option<u64>,
    /// Where each signed head is also written; default DATA_DIR/witness.
    pub witness_dir: Option<PathBuf>,
    /// Each signed head is also POSTed here (JSON), when set.
    pub witness_url: Option<String>,
    #[serde(default)]
    pub sensitive: SensitiveFile,
    #[serde(default)]
    pub archive: ArchiveFile,
}

/// Retention: events older than `older_than_days` (and signed) are moved
/// to files in `dir` by `serve`, hourly; unset, nothing is archived.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveFile {
    pub older_than_days: Option<u32>,
    /// Default DATA_DIR/audit-archive.
    pub dir: Option<PathBuf>,
}

/// Sensitive values in audit events: sealed (`encrypt`, the default),
/// masked for good (`mask`, for development environments) or kept (`off`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitiveFile {
    pub mode: Option<kiroku_app::SealMode>,
    /// Key-encryption key file; default DATA_DIR/audit-data.kek.
    pub kek_file: Option<PathBuf>,
    /// Added to the built-in rules (incidents' personal data, users' email).
    #[serde(default)]
    pub rules: Vec<kiroku_app::SealRule>,
}

/// Where the audit trail keeps its files, and how often it signs.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub witness_url: Option<String>,
    pub kek_file: PathBuf,
    pub seal_mode: kiroku_app::SealMode,
    pub seal_rules: Vec<kiroku_app::SealRule>,
    pub signing_key_file: PathBuf,
    pub head_interval: std::time::Duration,
    pub witness_dir: PathBuf,
    /// Archive events older than this many days into this directory.
    pub archive: Option<(u32, PathBuf)>,
}

pub fn audit_settings(args: &StoreArgs, file: &FileConfig) -> anyhow::Result<AuditSettings> {
    let dir = data_dir(args, file);
    let ms = file.audit.head_interval_ms.unwrap_or(1000);
    if !(10..=3_600_000).contains(&ms) {
        bail!("audit.head_interval_ms must be between 10 and 3600000, not {ms}");
    }
    let mut seal_rules = kiroku_app::Sealer::default_rules();
    seal_rules.extend(file.audit.sensitive.rules.iter().cloned());
    if let Some(u) = &file.audit.witness_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        bail!("audit.witness_url must be an http:// or https:// URL, not {u:?}");
    }
    let archive = match file.audit.archive.older_than_days {
        Some(0) => bail!("audit.archive.older_than_days must be at least 1"),
        Some(days) => Some((
            days,
            file.audit
                .archive
                .dir
                .clone()
                .unwrap_or_else(|| dir.join("audit-archive")),
        )),
        None => None,
    };
    Ok(AuditSettings {
        archive,
        witness_url: file.audit.witness_url.clone(),
        kek_file: file
            .audit
            .sensitive
            .kek_file
            .clone()
            .unwrap_or_else(|| dir.join("audit-data.kek")),
        seal_mode: file
            .audit
            .sensitive
            .mode
            .unwrap_or(kiroku_app::SealMode::Encrypt),
        seal_rules,
        signing_key_file: file
            .audit
            .signing_key_file
            .clone()
            .unwrap_or_else(|| dir.join("audit-signing.key")),
        head_interval: std::time::Duration::from_millis(ms),
        witness_dir: file
            .audit
            .witness_dir
            .clone()
            .unwrap_or_else(|| dir.join("witness")),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub secure_cookies: Option<bool>,
    pub trust_forwarded_for: Option<bool>,
    pub header_read_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
}

/// `[http] FIELD` in whole seconds, 1 to 3600.
fn http_secs(
    field: &str,
    v: Option<u64>,
    default: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    match v {
        None => Ok(default),
        Some(s) if (1..=3600).contains(&s) => Ok(std::time::Duration::from_secs(s)),
        Some(s) => bail!("http.{field} must be between 1 and 3600 seconds, not {s}"),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub totp_required_for: Option<Vec<Role>>,
    pub session_ttl_minutes: Option<i64>,
    pub account_lock_after: Option<i64>,
    pub address_lock_after: Option<i64>,
    pub failure_window_minutes: Option<i64>,
    pub lock_minutes: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    /// Kiroku's address as people reach it, for links in notifications.
    pub public_url: Option<String>,
    pub first_retry_seconds: Option<i64>,
    pub max_retry_seconds: Option<i64>,
    pub max_attempts: Option<u32>,
    /// How long a worker holds the deliveries it took (a crashed node's
    /// are taken up again after this).
    pub hold_seconds: Option<i64>,
    /// The SMTP server that mail channels send through.
    pub smtp: Option<SmtpFile>,
    /// The Twilio-compatible provider texts and calls go through.
    pub sms: Option<SmsFile>,
    /// Signs acknowledgement links and calendar feeds (created on first
    /// start; `KIROKU_LINK_KEY` instead). Nodes sharing a database share it.
    pub link_key_file: Option<PathBuf>,
    /// How long an acknowledgement link works (default 24).
    pub ack_link_hours: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsFile {
    /// `https://api.twilio.com`, or a provider that speaks its API.
    pub base_url: String,
    pub account_sid: String,
    /// Better in `KIROKU_SMS_AUTH_TOKEN`.
    pub auth_token: Option<String>,
    /// The number texts and calls come from, E.164 (`+815012345678`).
    pub from: String,
}

/// The SMS provider from the file, its token from the environment when
/// set there.
pub fn sms_settings(file: &FileConfig) -> anyhow::Result<Option<crate::notify::SmsSettings>> {
    let Some(f) = &file.notify.sms else {
        return Ok(None);
    };
    kiroku_domain::notify::checked_url("notify.sms.base_url", &f.base_url)
        .map_err(|e| anyhow::anyhow!("notify.sms.base_url {}", e.message))?;
    if f.account_sid.is_empty() || !f.account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("notify.sms.account_sid must be letters and digits");
    }
    let from = kiroku_domain::notify::checked_phone("notify.sms.from", &format!("tel:{}", f.from))
        .map_err(|e| anyhow::anyhow!("notify.sms.from {}", e.message))?;
    let Some(auth_token) = std::env::var("KIROKU_SMS_AUTH_TOKEN")
        .ok()
        .or_else(|| f.auth_token.clone())
    else {
        bail!("notify.sms needs an auth token: set KIROKU_SMS_AUTH_TOKEN");
    };
    Ok(Some(crate::notify::SmsSettings {
        base_url: f.base_url.clone(),
        account_sid: f.account_sid.clone(),
        auth_token,
        from: from.trim_start_matches("tel:").to_string(),
    }))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: String,
    pub port: Option<u16>,
    /// none, starttls (the default) or tls.
    pub tls: Option<crate::notify::SmtpTls>,
    pub username: Option<String>,
    /// Better in `KIROKU_SMTP_PASSWORD`.
    pub password: Option<String>,
    pub from: String,
}

/// The SMTP settings from the file, the password from the environment
/// when set there.
pub fn smtp_settings(file: &FileConfig) -> anyhow::Result<Option<crate::notify::SmtpSettings>> {
    use crate::notify::SmtpTls;
    let Some(f) = &file.notify.smtp else {
        return Ok(None);
    };
    if f.host.trim().is_empty() || f.host.contains(char::is_whitespace) {
        bail!("notify.smtp.host must be a host name");
    }
    let tls = f.tls.unwrap_or(SmtpTls::Starttls);
    let port = f.port.unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    });
    let password = std::env::var("KIROKU_SMTP_PASSWORD")
        .ok()
        .or_else(|| f.password.clone());
    if f.username.is_some() != password.is_some() {
        bail!(
            "notify.smtp needs both a username and a password (KIROKU_SMTP_PASSWORD), or neither"
        );
    }
    Ok(Some(crate::notify::SmtpSettings {
        host: f.host.clone(),
        port,
        tls,
        username: f.username.clone(),
        password,
        from: f.from.clone(),
    }))
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "kiroku-data";
pub const DEFAULT_TIME_ZONE: &str = "Asia/Tokyo";

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: StoreTarget,
    pub app: Config,
    pub http: kiroku_server::HttpConfig,
    pub audit: AuditSettings,
    pub detection: DetectionRules,
    pub smtp: Option<crate::notify::SmtpSettings>,
    pub sms: Option<crate::notify::SmsSettings>,
    pub link_key_file: PathBuf,
    pub report_font: Option<PathBuf>,
    /// Where intake's journal is, and when it answers, when intake
    /// answers from it.
    pub intake_journal: Option<IntakeJournal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntakeJournal {
    pub path: PathBuf,
    pub sync: JournalSync,
}

/// The longest `intake.journal_sync_ms`.
const JOURNAL_SYNC_MS_MAX: u64 = 1_000;

fn intake_journal(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<IntakeJournal>> {
    let on = args.intake_journal || file.intake.journal.unwrap_or(false);
    let ms = args
        .intake_journal_sync_ms
        .or(file.intake.journal_sync_ms)
        .unwrap_or(0);
    let sync = match ms {
        0 => JournalSync::BeforeAnswer,
        1..=JOURNAL_SYNC_MS_MAX => JournalSync::Within(std::time::Duration::from_millis(ms)),
        _ => bail!(
            "intake.journal_sync_ms (--intake-journal-sync-ms) must be between 0 and \
             {JOURNAL_SYNC_MS_MAX}, not {ms}"
        ),
    };
    if !on {
        if ms > 0 {
            bail!(
                "intake.journal_sync_ms (--intake-journal-sync-ms) is for the intake journal: \
                 turn it on with --intake-journal or [intake] journal = true"
            );
        }
        return Ok(None);
    }
    Ok(Some(IntakeJournal {
        path: data_dir(&args.store, file).join("intake.journal"),
        sync,
    }))
}

/// The font PDF reports are set in: the configured file, or the first of
/// the usual Japanese fonts this machine has.
pub fn report_fonts(configured: Option<&Path>) -> anyhow::Result<kiroku_report::Fonts> {
    if let Some(path) = configured {
        return kiroku_report::Fonts::load(path)
            .with_context(|| format!("reports.font {} is not a usable font", path.display()));
    }
    kiroku_report::Fonts::load_installed()
        .context("no Japanese font found; install fonts-ipaexfont-gothic or set reports.font")
}

pub fn read_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse_file(&text)
        .with_context(|| format!("{} is not a valid Kiroku configuration", path.display()))
}

/// The file's shape: unknown keys and mistyped values are refused here,
/// values out of range by [`Settings::from_file`].
pub fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
    Ok(toml::from_str(text)?)
}

fn data_dir(args: &StoreArgs, file: &FileConfig) -> PathBuf {
    args.data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

pub fn store_target(args: &StoreArgs, file: &FileConfig) -> anyhow::Result<StoreTarget> {
    let dir = data_dir(args, file);
    let url = args
        .database_url
        .clone()
        .or_else(|| file.database_url.clone());
    StoreTarget::new(&dir, url.as_deref())
}

fn minutes(field: &str, v: Option<i64>, default: SignedDuration) -> anyhow::Result<SignedDuration> {
    match v {
        None => Ok(default),
        Some(m) if (1..=525_600).contains(&m) => Ok(SignedDuration::from_mins(m)),
        Some(m) => bail!("auth.{field} must be between 1 and 525600 minutes, not {m}"),
    }
}

fn count(field: &str, v: Option<i64>, default: i64) -> anyhow::Result<i64> {
    match v {
        None => Ok(default),
        Some(n) if (1..=10_000).contains(&n) => Ok(n),
        Some(n) => bail!("auth.{field} must be between 1 and 10000, not {n}"),
    }
}

/// The application's rules from the file and overrides.
pub fn app_config(
    file: &FileConfig,
    time_zone: Option<&str>,
    severity_scheme: Option<&str>,
) -> anyhow::Result<Config> {
    let zone_name = time_zone
        .or(file.time_zone.as_deref())
        .unwrap_or(DEFAULT_TIME_ZONE);
    let zone = TimeZone::get(zone_name).with_context(|| {
        format!("unknown time zone {zone_name:?}; use an IANA name such as Asia/Tokyo")
    })?;
    let mut config = Config::with_zone(zone.clone());
    let scheme = severity_scheme
        .or(file.severity_scheme.as_deref())
        .unwrap_or("p0-p3");
    config.rules.severities = SeverityScheme::preset(scheme).with_context(|| {
        format!(
            "unknown severity scheme {scheme:?}; use one of {}",
            SeverityScheme::PRESETS.join(", ")
        )
    })?;
    config.rules.business_hours = BusinessHours::weekdays(zone);
    if let Some(categories) = &file.categories {
        let catalog = Catalog {
            categories: categories.clone(),
        };
        catalog
            .check()
            .map_err(|e| anyhow::anyhow!("categories: {e}"))?;
        config.rules.catalog = catalog;
    }
    let d = AuthPolicy::default();
    let a = &file.auth;
    config.auth = AuthPolicy {
        totp_required_for: a.totp_required_for.clone().unwrap_or(d.totp_required_for),
        session_ttl: minutes("session_ttl_minutes", a.session_ttl_minutes, d.session_ttl)?,
        account_lock_after: count(
            "account_lock_after",
            a.account_lock_after,
            d.account_lock_after,
        )?,
        address_lock_after: count(
            "address_lock_after",
            a.address_lock_after,
            d.address_lock_after,
        )?,
        failure_window: minutes(
            "failure_window_minutes",
            a.failure_window_minutes,
            d.failure_window,
        )?,
        lock_for: minutes("lock_minutes", a.lock_minutes, d.lock_for)?,
    };
    let n = &file.notify;
    let retry = config.notify.retry;
    let seconds = |field: &str, v: Option<i64>, default: SignedDuration| match v {
        None => Ok(default),
        Some(s) if (1..=86_400).contains(&s) => Ok(SignedDuration::from_secs(s)),
        Some(s) => bail!("notify.{field} must be between 1 and 86400 seconds, not {s}"),
    };
    config.notify.retry = kiroku_domain::notify::RetryPolicy {
        first_delay: seconds(
            "first_retry_seconds",
            n.first_retry_seconds,
            retry.first_delay,
        )?,
        max_delay: seconds("max_retry_seconds", n.max_retry_seconds, retry.max_delay)?,
        max_attempts: match n.max_attempts {
            None => retry.max_attempts,
            Some(a) if (1..=100).contains(&a) => a,
            Some(a) => bail!("notify.max_attempts must be between 1 and 100, not {a}"),
        },
    };
    config.notify.hold = seconds("hold_seconds", n.hold_seconds, config.notify.hold)?;
    config.notify.ack_link_ttl = match n.ack_link_hours {
        None => config.notify.ack_link_ttl,
        Some(h) if (1..=720).contains(&h) => SignedDuration::from_hours(h),
        Some(h) => bail!("notify.ack_link_hours must be between 1 and 720, not {h}"),
    };
    if let Some(url) = &n.public_url {
        kiroku_domain::notify::checked_url("notify.public_url", url)
            .map_err(|e| anyhow::anyhow!("notify.public_url {}", e.message))?;
        config.notify.public_url = Some(url.clone());
    }
    let r = &file.reports;
    if let Some(a) = &r.addressees {
        config.reports.addressees =
            kiroku_domain::validate::line("reports.addressees", a, 200, false)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Some(c) = &r.contact {
        config.reports.contact = kiroku_domain::validate::line("reports.contact", c, 200, false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Some(chain) = &r.approvals {
        chain
            .check()
            .map_err(|e| anyhow::anyhow!("reports.approvals: {e}"))?;
        config.reports.approvals = chain.clone();
    }
    if let Some(rules) = &r.obligations {
        kiroku_domain::obligation::validate_rules(rules)
            .map_err(|e| anyhow::anyhow!("reports.obligations: {e}"))?;
        config.reports.obligations = rules.clone();
    }
    Ok(config)
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        Settings::from_file(args, &read_file(args.store.config.as_deref())?)
    }

    /// The settings of a file already read, flags and environment over it;
    /// reads no file, so the fuzz target checks every value's rule.
    pub fn from_file(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Settings> {
        let listen_raw = args
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_raw.parse().with_context(|| {
            format!("--listen {listen_raw:?} is not an address such as 127.0.0.1:8080")
        })?;
        Ok(Settings {
            listen,
            store: store_target(&args.store, file)?,
            audit: audit_settings(&args.store, file)?,
            app: app_config(
                file,
                args.time_zone.as_deref(),
                args.severity_scheme.as_deref(),
            )?,
            http: {
                let d = kiroku_server::HttpConfig::default();
                kiroku_server::HttpConfig {
                    secure_cookies: file.http.secure_cookies.unwrap_or(false),
                    trust_forwarded_for: file.http.trust_forwarded_for.unwrap_or(false),
                    inbound_sms: sms_settings(file)?.map(|s| kiroku_server::InboundSms {
                        auth_token: s.auth_token,
                    }),
                    header_read_timeout: http_secs(
                        "header_read_timeout_secs",
                        file.http.header_read_timeout_secs,
                        d.header_read_timeout,
                    )?,
                    request_timeout: http_secs(
                        "request_timeout_secs",
                        file.http.request_timeout_secs,
                        d.request_timeout,
                    )?,
                }
            },
            smtp: smtp_settings(file)?,
            sms: sms_settings(file)?,
            report_font: file.reports.font.clone(),
            link_key_file: file
                .notify
                .link_key_file
                .clone()
                .unwrap_or_else(|| data_dir(&args.store, file).join("link.key")),
            intake_journal: intake_journal(args, file)?,
            detection: {
                file.detection
                    .validate()
                    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
                file.detection.clone()
            },
        })
    }
}

impl AuditSettings {
    /// The sealer these settings describe, its key loaded (or created).
    pub fn sealer(&self) -> anyhow::Result<kiroku_app::Sealer> {
        Ok(kiroku_app::Sealer {
            kek: crate::audit::data_kek(&self.kek_file)?,
            mode: self.seal_mode,
            rules: self.seal_rules.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("kiroku-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kiroku.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nseverity_scheme = \"p1-p4\"\n[auth]\nlock_minutes = 5\n",
        )
        .unwrap();
        let args = ServeArgs {
            store: StoreArgs {
                config: Some(path.clone()),
                ..Default::default()
            },
            listen: Some("127.0.0.1:7777".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 7777);
        assert_eq!(s.app.rules.severities.name, "p1-p4");
        assert_eq!(s.app.auth.lock_for, SignedDuration::from_mins(5));
        assert_eq!(
            s.store,
            StoreTarget::Sqlite(PathBuf::from("kiroku-data/kiroku.db"))
        );

        std::fs::write(&path, "listen = 1\n").unwrap();
        assert!(Settings::resolve(&args).is_err());
        std::fs::write(&path, "lissen = \"x\"\n").unwrap();
        let e = format!("{:#}", Settings::resolve(&args).unwrap_err());
        assert!(e.contains("lissen"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_say_what_to_do() {
        let e = app_config(&FileConfig::default(), Some("Mars/Olympus"), None).unwrap_err();
        assert!(e.to_string().contains("IANA"));
        let e = app_config(&FileConfig::default(), None, Some("p5")).unwrap_err();
        assert!(e.to_string().contains("p0-p3"));
        assert!(StoreTarget::new(Path::new("d"), Some("mysql://x")).is_err());
        let journal = |on: bool, ms: u64| {
            let args = ServeArgs {
                intake_journal: on,
                intake_journal_sync_ms: Some(ms),
                ..Default::default()
            };
            intake_journal(&args, &FileConfig::default())
        };
        let e = journal(false, 5).unwrap_err().to_string();
        assert!(e.contains("--intake-journal"), "{e}");
        let e = journal(true, 1_001).unwrap_err().to_string();
        assert!(e.contains("between 0 and 1000"), "{e}");
        assert_eq!(journal(false, 0).unwrap(), None);
        assert_eq!(
            journal(true, 0).unwrap().unwrap().sync,
            JournalSync::BeforeAnswer
        );
        assert_eq!(
            journal(true, 10).unwrap().unwrap().sync,
            JournalSync::Within(std::time::Duration::from_millis(10))
        );
        assert_eq!(
            StoreTarget::new(Path::new("d"), Some("postgres://u:secret@db:5432/k"))
                .unwrap()
                .describe(),
            "PostgreSQL at db:5432/k"
        );
    }
}
