//! The settings the application enforces.

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use kiroku_domain::incident::Rules;
use kiroku_domain::obligation::{self, ObligationRule};
use kiroku_domain::postmortem::ApprovalChain;
use kiroku_domain::{BusinessHours, Catalog, Role, SeverityScheme};

#[derive(Debug, Clone)]
pub struct Config {
    pub rules: Rules,
    /// Incident numbers take their year here; times are shown here.
    pub time_zone: TimeZone,
    pub auth: AuthPolicy,
    pub notify: crate::NotifyPolicy,
    pub reports: ReportPolicy,
}

/// How postmortems are approved and which duties incidents bring.
#[derive(Debug, Clone)]
pub struct ReportPolicy {
    pub approvals: ApprovalChain,
    /// The notification duties: the presets, or an organisation's own.
    pub obligations: Vec<ObligationRule>,
    /// 宛先 of a 始末書 whose postmortem names none.
    pub addressees: String,
    /// Who a regulator contacts for more (GDPR Art. 33(3)(b)).
    pub contact: String,
}

impl Default for ReportPolicy {
    fn default() -> Self {
        ReportPolicy {
            approvals: ApprovalChain::default(),
            obligations: obligation::presets(),
            addressees: "代表取締役社長 殿／情報セキュリティ責任者（CISO） 殿".into(),
            contact: String::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// Roles that must log in with a TOTP second factor.
    pub totp_required_for: Vec<Role>,
    pub session_ttl: SignedDuration,
    /// Failures on one account, within `failure_window`, that lock it.
    pub account_lock_after: i64,
    /// Failures from one address, within `failure_window`, that lock it.
    pub address_lock_after: i64,
    pub failure_window: SignedDuration,
    pub lock_for: SignedDuration,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            totp_required_for: vec![Role::Admin],
            session_ttl: SignedDuration::from_hours(12),
            account_lock_after: 5,
            address_lock_after: 20,
            failure_window: SignedDuration::from_mins(15),
            lock_for: SignedDuration::from_mins(15),
        }
    }
}

impl Config {
    /// Defaults: the P0–P3 scheme, the built-in categories, Asia/Tokyo.
    pub fn with_zone(time_zone: TimeZone) -> Self {
        Config {
            rules: Rules {
                catalog: Catalog::default(),
                severities: SeverityScheme::preset("p0-p3").expect("built-in preset"),
                business_hours: BusinessHours::weekdays(time_zone.clone()),
            },
            time_zone,
            auth: AuthPolicy::default(),
            notify: crate::NotifyPolicy::default(),
            reports: ReportPolicy::default(),
        }
    }
}
