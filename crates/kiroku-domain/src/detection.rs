//! Detection over the audit stream (seed 001 No.29): bursts of login
//! failures per address and per account, bursts of refused requests (403),
//! bursts of requests for endpoints that do not exist, and operations that
//! are not routine (role changes, tokens, keys, exports…). The detector is
//! pure: callers feed it what happened, with its time, and raise what it
//! finds as alerts. Memory is bounded: windows hold at most a burst's
//! count of times, and at most [`TRACKED_MAX`] keys are tracked at once.

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{ActorKind, AuditEvent, Outcome, ValidationError};

/// Keys (an address, an account) followed at once; beyond this the ones
/// seen least recently are forgotten, so a flood from many addresses
/// cannot grow memory without bound.
pub const TRACKED_MAX: usize = 10_000;

/// `count` occurrences within `window_minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub count: u32,
    pub window_minutes: u32,
}

impl Burst {
    fn window(self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.window_minutes))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionRules {
    pub enabled: bool,
    pub login_failures_per_address: Burst,
    pub login_failures_per_account: Burst,
    /// Refusals (403) to one caller: a user, a token, or else an address.
    pub refusals_per_caller: Burst,
    pub unknown_endpoints_per_address: Burst,
    /// Audit actions raised every time they happen, successful or not.
    pub non_routine: Vec<String>,
}

impl Default for DetectionRules {
    fn default() -> Self {
        DetectionRules {
            enabled: true,
            login_failures_per_address: Burst {
                count: 10,
                window_minutes: 5,
            },
            login_failures_per_account: Burst {
                count: 5,
                window_minutes: 5,
            },
            refusals_per_caller: Burst {
                count: 20,
                window_minutes: 5,
            },
            unknown_endpoints_per_address: Burst {
                count: 20,
                window_minutes: 5,
            },
            non_routine: [
                "user_created",
                "user_totp_reset",
                "authn_token_created",
                "authn_token_revoked",
                "audit_export",
                "audit_archive",
                "audit_decrypt",
                "audit_subject_shred",
                "audit_key_registered",
                "integration_create",
                "service_routing_set",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// The most occurrences a burst may ask for, and the longest window.
const BURST_COUNT_MAX: u32 = 100_000;
const BURST_WINDOW_MAX_MINUTES: u32 = 24 * 60;

impl DetectionRules {
    /// Refuses thresholds that could never fire or would hold too much.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let bursts = [
            (
                "login_failures_per_address",
                self.login_failures_per_address,
            ),
            (
                "login_failures_per_account",
                self.login_failures_per_account,
            ),
            ("refusals_per_caller", self.refusals_per_caller),
            (
                "unknown_endpoints_per_address",
                self.unknown_endpoints_per_address,
            ),
        ];
        for (name, b) in bursts {
            if !(1..=BURST_COUNT_MAX).contains(&b.count) {
                return Err(ValidationError::new(
                    &format!("detection.{name}.count"),
                    "out_of_range",
                    format!("must be between 1 and {BURST_COUNT_MAX}"),
                ));
            }
            if !(1..=BURST_WINDOW_MAX_MINUTES).contains(&b.window_minutes) {
                return Err(ValidationError::new(
                    &format!("detection.{name}.window_minutes"),
                    "out_of_range",
                    format!("must be between 1 and {BURST_WINDOW_MAX_MINUTES}"),
                ));
            }
        }
        if let Some(bad) = self.non_routine.iter().find(|a| {
            a.is_empty() || a.len() > 100 || !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        }) {
            return Err(ValidationError::new(
                "detection.non_routine",
                "invalid_value",
                format!("{bad:?} is not an audit action (lower-case letters and _)"),
            ));
        }
        Ok(())
    }
}

/// What the detector is told: one audited operation, or one request for
/// an endpoint that does not exist (never audited: a scan must not become
/// a flood of writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub at: Timestamp,
    pub action: String,
    pub failed: bool,
    pub error_code: Option<String>,
    /// The account or caller named, if any.
    pub actor: Option<String>,
    pub address: Option<String>,
    /// What the operation was about (`kind:id`), for non-routine ones.
    pub target: String,
    /// Kiroku itself acted (raising these very alerts, say): not observed,
    /// so that detection cannot feed on itself.
    pub by_kiroku: bool,
}

/// The action name under which unknown-endpoint requests are observed.
pub const UNKNOWN_ENDPOINT: &str = "unknown_endpoint";

impl Observation {
    pub fn of(event: &AuditEvent) -> Self {
        Observation {
            at: event.time,
            action: event.action.clone(),
            failed: event.outcome == Outcome::Failure,
            error_code: event.error_code.clone(),
            actor: event.actor.name.clone(),
            address: event.source.ip.clone(),
            target: format!(
                "{}:{}",
                event.target.kind,
                event.target.id.as_deref().unwrap_or("-")
            ),
            by_kiroku: event.actor.kind == ActorKind::System && event.actor.role.is_none(),
        }
    }

    pub fn unknown_endpoint(at: Timestamp, address: Option<String>, path: &str) -> Self {
        Observation {
            at,
            action: UNKNOWN_ENDPOINT.into(),
            failed: true,
            error_code: Some("not_found".into()),
            actor: None,
            address,
            target: format!("path:{}", path.chars().take(256).collect::<String>()),
            by_kiroku: false,
        }
    }
}

/// Which rule found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    LoginFailuresPerAddress,
    LoginFailuresPerAccount,
    RefusalsPerCaller,
    UnknownEndpointsPerAddress,
    NonRoutine,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LoginFailuresPerAddress => "login_failures_per_address",
            Rule::LoginFailuresPerAccount => "login_failures_per_account",
            Rule::RefusalsPerCaller => "refusals_per_caller",
            Rule::UnknownEndpointsPerAddress => "unknown_endpoints_per_address",
            Rule::NonRoutine => "non_routine",
        }
    }
}

/// Something worth an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    /// Repeats of the same finding share it, so they count on one alert.
    pub dedup_key: String,
    pub summary: String,
    /// Bursts are warnings; non-routine operations are information.
    pub warning: bool,
    /// What the finding is about: the address, account or action.
    pub subject: String,
    pub count: u32,
    pub at: Timestamp,
}

/// Times of recent occurrences of one key, oldest first.
#[derive(Debug, Default)]
struct Window {
    times: VecDeque<Timestamp>,
    /// While set, the burst has fired and does not fire again until it
    /// has fallen below its count.
    fired: bool,
    last_seen: Timestamp,
}

#[derive(Debug, Default)]
pub struct Detector {
    windows: HashMap<(Rule, String), Window>,
}

/// Whether an observation is a failed login (a person's or a token's).
fn is_login_failure(o: &Observation) -> bool {
    matches!(o.action.as_str(), "authn_login_fail" | "authn_login_lock")
        || (o.action == "authn_fail" && o.failed)
}

impl Detector {
    pub fn new() -> Self {
        Detector::default()
    }

    /// What `o` sets off under `rules`.
    pub fn observe(&mut self, o: &Observation, rules: &DetectionRules) -> Vec<Finding> {
        let mut found = Vec::new();
        if !rules.enabled {
            return found;
        }
        if is_login_failure(o) {
            if let Some(a) = &o.address {
                found.extend(self.count(
                    Rule::LoginFailuresPerAddress,
                    a,
                    rules.login_failures_per_address,
                    o.at,
                ));
            }
            // Token failures name no account.
            if o.action != "authn_fail"
                && let Some(name) = &o.actor
            {
                found.extend(self.count(
                    Rule::LoginFailuresPerAccount,
                    name,
                    rules.login_failures_per_account,
                    o.at,
                ));
            }
        }
        if o.action == "authz_fail"
            && let Some(who) = o.actor.as_ref().or(o.address.as_ref())
        {
            found.extend(self.count(
                Rule::RefusalsPerCaller,
                who,
                rules.refusals_per_caller,
                o.at,
            ));
        }
        if o.action == UNKNOWN_ENDPOINT
            && let Some(a) = &o.address
        {
            found.extend(self.count(
                Rule::UnknownEndpointsPerAddress,
                a,
                rules.unknown_endpoints_per_address,
                o.at,
            ));
        }
        if rules.non_routine.contains(&o.action) {
            let who = o.actor.as_deref().unwrap_or("anonymous");
            let outcome = if o.failed { " (refused)" } else { "" };
            found.push(Finding {
                rule: Rule::NonRoutine,
                // Each occurrence is its own alert: there is nothing to
                // deduplicate in "someone exported the audit log".
                dedup_key: format!(
                    "non_routine:{}:{}:{}",
                    o.action,
                    o.target,
                    o.at.as_microsecond()
                ),
                summary: format!(
                    "Non-routine operation {} by {who} on {}{outcome}",
                    o.action, o.target
                ),
                warning: false,
                subject: o.action.clone(),
                count: 1,
                at: o.at,
            });
        }
        found
    }

    /// Counts one occurrence of `key` under `rule`; a finding when the
    /// burst is reached (once, until the window drains below it again).
    fn count(&mut self, rule: Rule, key: &str, burst: Burst, at: Timestamp) -> Option<Finding> {
        if self.windows.len() >= TRACKED_MAX && !self.windows.contains_key(&(rule, key.to_string()))
        {
            self.forget_stalest();
        }
        let w = self.windows.entry((rule, key.to_string())).or_default();
        w.last_seen = w.last_seen.max(at);
        let since = at - burst.window();
        while w.times.front().is_some_and(|t| *t <= since) {
            w.times.pop_front();
        }
        w.times.push_back(at);
        // Only the latest `count` times matter.
        while w.times.len() > burst.count as usize {
            w.times.pop_front();
        }
        let reached = w.times.len() >= burst.count as usize;
        if !reached {
            w.fired = false;
            return None;
        }
        if w.fired {
            return None;
        }
        w.fired = true;
        let what = match rule {
            Rule::LoginFailuresPerAddress => format!("login failures from {key}"),
            Rule::LoginFailuresPerAccount => format!("login failures for account {key}"),
            Rule::RefusalsPerCaller => format!("refused requests (403) for {key}"),
            Rule::UnknownEndpointsPerAddress => {
                format!("requests for unknown endpoints from {key}")
            }
            Rule::NonRoutine => unreachable!("non-routine operations are not counted"),
        };
        Some(Finding {
            rule,
            dedup_key: format!("{}:{key}", rule.as_str()),
            summary: format!("{} {what} within {} min", burst.count, burst.window_minutes),
            warning: true,
            subject: key.to_string(),
            count: burst.count,
            at,
        })
    }

    /// Forgets the tenth of the keys seen least recently.
    fn forget_stalest(&mut self) {
        let mut seen: Vec<Timestamp> = self.windows.values().map(|w| w.last_seen).collect();
        let cut = seen.len() / 10;
        let (_, cutoff, _) = seen.select_nth_unstable(cut);
        let cutoff = *cutoff;
        self.windows.retain(|_, w| w.last_seen > cutoff);
    }

    /// Keys followed now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn login_fail(at: Timestamp, name: &str, ip: &str) -> Observation {
        Observation {
            at,
            action: "authn_login_fail".into(),
            failed: true,
            error_code: Some("invalid_credentials".into()),
            actor: Some(name.into()),
            address: Some(ip.into()),
            target: "session:-".into(),
            by_kiroku: false,
        }
    }

    #[test]
    fn a_burst_fires_once_and_again_after_it_drains() {
        let rules = DetectionRules::default();
        let mut d = Detector::new();
        let mut fired = Vec::new();
        // Ten failures from one address, each for a different account.
        for i in 0..10 {
            fired.extend(d.observe(&login_fail(t(i), &format!("u{i}"), "203.0.113.9"), &rules));
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].rule, Rule::LoginFailuresPerAddress);
        assert_eq!(fired[0].dedup_key, "login_failures_per_address:203.0.113.9");
        assert!(fired[0].warning);
        // More within the window: already raised.
        assert!(
            d.observe(&login_fail(t(11), "x", "203.0.113.9"), &rules)
                .is_empty()
        );
        // After a quiet window the burst must build up again.
        assert!(
            d.observe(&login_fail(t(1000), "x", "203.0.113.9"), &rules)
                .is_empty()
        );
        let again: Vec<_> = (1..10)
            .flat_map(|i| {
                d.observe(
                    &login_fail(t(1000 + i), &format!("v{i}"), "203.0.113.9"),
                    &rules,
                )
            })
            .collect();
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn failures_spread_beyond_the_window_never_fire() {
        let rules = DetectionRules::default();
        let mut d = Detector::new();
        // One a minute for an hour: never five within five minutes... but
        // exactly at the edge: a failure every 75 s puts 4 in any window.
        for i in 0..48 {
            assert!(
                d.observe(
                    &login_fail(t(i * 75), "alice", &format!("198.51.100.{i}")),
                    &rules
                )
                .is_empty()
            );
        }
    }

    #[test]
    fn accounts_and_addresses_count_apart() {
        let rules = DetectionRules::default();
        let mut d = Detector::new();
        let found: Vec<_> = (0..5)
            .flat_map(|i| {
                d.observe(
                    &login_fail(t(i), "alice", &format!("198.51.100.{i}")),
                    &rules,
                )
            })
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, Rule::LoginFailuresPerAccount);
        assert_eq!(found[0].subject, "alice");
    }

    #[test]
    fn refusals_unknown_endpoints_and_non_routine_operations() {
        let rules = DetectionRules {
            refusals_per_caller: Burst {
                count: 3,
                window_minutes: 1,
            },
            unknown_endpoints_per_address: Burst {
                count: 3,
                window_minutes: 1,
            },
            ..DetectionRules::default()
        };
        let mut d = Detector::new();
        let forbidden = |at| Observation {
            at,
            action: "authz_fail".into(),
            failed: true,
            error_code: Some("forbidden".into()),
            actor: Some("viewer1".into()),
            address: Some("192.0.2.1".into()),
            target: "route:GET /api/v1/users".into(),
            by_kiroku: false,
        };
        let found: Vec<_> = (0..3)
            .flat_map(|i| d.observe(&forbidden(t(i)), &rules))
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].dedup_key, "refusals_per_caller:viewer1");

        let scan: Vec<_> = ["/.env", "/wp-login.php", "/admin"]
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                d.observe(
                    &Observation::unknown_endpoint(t(i as i64), Some("192.0.2.7".into()), p),
                    &rules,
                )
            })
            .collect();
        assert_eq!(scan.len(), 1);
        assert_eq!(scan[0].rule, Rule::UnknownEndpointsPerAddress);

        let export = Observation {
            at: t(5),
            action: "audit_export".into(),
            failed: false,
            error_code: None,
            actor: Some("auditor1".into()),
            address: Some("192.0.2.3".into()),
            target: "audit_log:-".into(),
            by_kiroku: false,
        };
        let found = d.observe(&export, &rules);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, Rule::NonRoutine);
        assert!(!found[0].warning);
        assert!(
            found[0].summary.contains("audit_export by auditor1"),
            "{}",
            found[0].summary
        );
        // Two exports are two alerts.
        let second = d.observe(
            &Observation {
                at: t(6),
                ..export.clone()
            },
            &rules,
        );
        assert_ne!(second[0].dedup_key, found[0].dedup_key);
    }

    #[test]
    fn disabled_rules_find_nothing() {
        let rules = DetectionRules {
            enabled: false,
            ..DetectionRules::default()
        };
        let mut d = Detector::new();
        assert!((0..50).all(|i| {
            d.observe(&login_fail(t(i), "a", "192.0.2.1"), &rules)
                .is_empty()
        }));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = DetectionRules {
            login_failures_per_account: Burst {
                count: 0,
                window_minutes: 5,
            },
            ..DetectionRules::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().field,
            "detection.login_failures_per_account.count"
        );
        let bad = DetectionRules {
            refusals_per_caller: Burst {
                count: 5,
                window_minutes: 100_000,
            },
            ..DetectionRules::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().field,
            "detection.refusals_per_caller.window_minutes"
        );
        let bad = DetectionRules {
            non_routine: vec!["DROP TABLE".into()],
            ..DetectionRules::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "detection.non_routine");
        assert!(DetectionRules::default().validate().is_ok());
    }

    proptest! {
        /// Against a model that keeps every time: a burst fires exactly
        /// when the latest `count` occurrences fit in the window and the
        /// previous occurrence did not already reach it.
        #[test]
        fn bursts_match_a_model(gaps in proptest::collection::vec(0i64..200, 1..200), count in 1u32..8, minutes in 1u32..4) {
            let burst = Burst { count, window_minutes: minutes };
            let rules = DetectionRules { login_failures_per_address: burst, login_failures_per_account: Burst { count: 100_000, window_minutes: 1 }, ..DetectionRules::default() };
            let mut d = Detector::new();
            let mut times: Vec<Timestamp> = Vec::new();
            let mut now = 0;
            let mut reached_before = false;
            for g in gaps {
                now += g;
                let at = t(now);
                times.push(at);
                let window = SignedDuration::from_mins(i64::from(minutes));
                let recent = times.iter().filter(|x| **x > at - window).count();
                let reached = recent >= count as usize;
                let expect = reached && !reached_before;
                reached_before = reached;
                let fired = d.observe(&login_fail(at, "a", "192.0.2.1"), &rules);
                prop_assert_eq!(!fired.is_empty(), expect);
            }
        }
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_addresses() {
        let rules = DetectionRules::default();
        let mut d = Detector::new();
        for i in 0..25_000 {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            d.observe(&login_fail(t(i), "a", &ip), &rules);
        }
        assert!(d.tracked() <= TRACKED_MAX, "{}", d.tracked());
        // The account seen in every failure is still followed.
        assert!(
            d.windows
                .contains_key(&(Rule::LoginFailuresPerAccount, "a".to_string()))
        );
    }
}
