//! Regulatory notification duties and their deadlines, kept as data so an
//! organisation can adjust the presets or add duties of its own.

use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::incident::PersonalData;
use crate::validate::ValidationError;

/// The longest span a rule may give, in its own unit.
pub const SPAN_MAX: u32 = 10_000;
/// The earliest reminder a rule may ask for: a year before the due time.
pub const REMIND_HOURS_MAX: u32 = 8_760;

/// One duty to notify someone (a regulator, the people affected) by a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObligationRule {
    /// Unique among the rules, e.g. `appi_preliminary`.
    pub key: String,
    /// `APPI`, `GDPR`, `NIS2`, `SEC`, `HIPAA`, or an organisation's own.
    pub regime: String,
    pub name_ja: String,
    pub name_en: String,
    pub applies: Applicability,
    pub due: Deadline,
    /// Remind this long before the due time.
    pub remind_hours_before: Vec<u32>,
    /// This long past the due time, warn once more: the outer limit the
    /// guidance allows (APPI's 速報: due at 3 days, warned at 5).
    #[serde(default)]
    pub late_after_hours: Option<u32>,
}

/// When a rule applies: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applicability {
    /// Personal data must be involved.
    #[serde(default)]
    pub personal_data: bool,
    /// Alternatives of which at least one must hold; empty = no such condition.
    #[serde(default)]
    pub any_of: Vec<Trigger>,
    /// Incident category keys; empty = any category.
    #[serde(default)]
    pub categories: Vec<String>,
}

/// A fact about the personal data that makes a duty apply or lengthens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// 要配慮個人情報.
    Sensitive,
    /// 財産的被害のおそれ.
    FinancialRisk,
    /// 不正の目的のおそれ.
    MaliciousIntent,
    /// More than `count` people affected.
    PeopleOver {
        count: i64,
    },
    Always,
}

/// How long after its anchor a duty falls due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    pub from: Anchor,
    pub within: Span,
    /// A longer span used instead when the trigger holds (APPI: 60 days for 不正の目的).
    #[serde(default)]
    pub extended: Option<(Trigger, Span)>,
}

/// The moment a deadline counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// When the organisation became aware of the incident.
    Awareness,
    /// When the incident was determined to be material (SEC Item 1.05).
    Determination,
}

/// A length of time, counted in the incident's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "unit",
    content = "n",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Span {
    /// Elapsed hours, whatever the clocks do.
    Hours(u32),
    /// Calendar days, due at the same wall-clock time.
    Days(u32),
    /// Monday to Friday, due at the same wall-clock time. Public holidays
    /// are not known here and count as business days, so the deadline is
    /// never later than the rule intends.
    BusinessDays(u32),
    /// Calendar months at the same wall-clock time; a day the month lacks
    /// becomes its last day (Jan 31 + 1 month = Feb 28 or 29).
    Months(u32),
}

impl Span {
    fn count(self) -> u32 {
        match self {
            Span::Hours(n) | Span::Days(n) | Span::BusinessDays(n) | Span::Months(n) => n,
        }
    }

    /// The instant this span after `from`, counted in `zone`.
    fn after(self, from: Timestamp, zone: &TimeZone) -> Result<Timestamp, jiff::Error> {
        // A zero span is due at once; resolving the wall-clock time again
        // could pick the earlier of two repeated hours.
        if self.count() == 0 {
            return Ok(from);
        }
        let local = zone.to_datetime(from);
        let civil = match self {
            Span::Hours(n) => return from.checked_add(SignedDuration::from_hours(i64::from(n))),
            Span::Days(n) => local.checked_add(i64::from(n).days())?,
            Span::Months(n) => local.checked_add(i64::from(n).months())?,
            Span::BusinessDays(n) => add_business_days(local, n)?,
        };
        // A wall-clock time skipped or repeated by a DST change resolves
        // the way most software does: later for a gap, earlier for a fold.
        zone.to_ambiguous_timestamp(civil).compatible()
    }
}

fn add_business_days(from: DateTime, n: u32) -> Result<DateTime, jiff::Error> {
    // Any 7 consecutive days hold exactly 5 weekdays, so whole weeks jump
    // ahead at once. At least one day is left to step through so a start
    // on a weekend still ends on a weekday.
    let weeks = n.saturating_sub(1) / 5;
    let mut remaining = n - weeks * 5;
    let mut at = from.checked_add((i64::from(weeks) * 7).days())?;
    while remaining > 0 {
        at = at.checked_add(1.day())?;
        if !matches!(at.weekday(), Weekday::Saturday | Weekday::Sunday) {
            remaining -= 1;
        }
    }
    Ok(at)
}

/// Where a duty stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObligationStatus {
    #[default]
    Pending,
    Submitted,
    /// Decided not to apply, with the reason recorded.
    NotRequired,
}

impl ObligationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ObligationStatus::Pending => "pending",
            ObligationStatus::Submitted => "submitted",
            ObligationStatus::NotRequired => "not_required",
        }
    }
}

/// The next reminder of a pending duty after `sent_until`: its next
/// reminder time, then the due time itself (the overdue notice), then the
/// late warning, then none.
pub fn next_reminder(
    remind_at: &[Timestamp],
    due_at: Timestamp,
    late_at: Option<Timestamp>,
    sent_until: Option<Timestamp>,
) -> Option<Timestamp> {
    reminder_times(remind_at, due_at, late_at).find(|at| sent_until.is_none_or(|sent| *at > sent))
}

/// Every reminder of a duty in order: before the due time, at it, and the
/// late warning after it.
pub fn reminder_times(
    remind_at: &[Timestamp],
    due_at: Timestamp,
    late_at: Option<Timestamp>,
) -> impl Iterator<Item = Timestamp> + '_ {
    remind_at
        .iter()
        .copied()
        .chain(std::iter::once(due_at))
        .chain(late_at)
}

/// What is known about an incident that decides its duties.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The incident's category key.
    pub category: &'a str,
    pub personal_data: &'a PersonalData,
    pub aware_at: Timestamp,
    /// When materiality was determined, if it has been.
    pub determined_at: Option<Timestamp>,
}

/// A duty that applies, with its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    /// The rule's key.
    pub rule: String,
    pub due_at: Timestamp,
    /// Earliest first; only reminders after the anchor.
    pub remind_at: Vec<Timestamp>,
    /// The second warning past the due time, if the rule asks for one.
    pub late_at: Option<Timestamp>,
}

impl Trigger {
    fn holds(&self, data: &PersonalData) -> bool {
        match self {
            Trigger::Sensitive => data.sensitive,
            Trigger::FinancialRisk => data.financial_risk,
            Trigger::MaliciousIntent => data.malicious_intent,
            Trigger::PeopleOver { count } => data.people_affected.is_some_and(|n| n > *count),
            Trigger::Always => true,
        }
    }
}

impl Applicability {
    fn holds(&self, facts: &Facts<'_>) -> bool {
        let data = facts.personal_data;
        (!self.personal_data || data.involved)
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| t.holds(data)))
            && (self.categories.is_empty() || self.categories.iter().any(|c| c == facts.category))
    }
}

/// The duties among `rules` that apply to `facts`, in rule order, with
/// deadlines counted in `zone`. A rule counted from determination is left
/// out until materiality has been determined.
pub fn due_obligations(rules: &[ObligationRule], facts: &Facts<'_>, zone: &TimeZone) -> Vec<Due> {
    rules
        .iter()
        .filter(|rule| rule.applies.holds(facts))
        .filter_map(|rule| {
            let anchor = match rule.due.from {
                Anchor::Awareness => facts.aware_at,
                Anchor::Determination => facts.determined_at?,
            };
            let span = match &rule.due.extended {
                Some((trigger, longer)) if trigger.holds(facts.personal_data) => *longer,
                _ => rule.due.within,
            };
            // Only a deadline past the year 9999 fails; the duty is still
            // listed rather than silently dropped.
            let due_at = span.after(anchor, zone).unwrap_or(Timestamp::MAX);
            let mut remind_at: Vec<Timestamp> = rule
                .remind_hours_before
                .iter()
                .filter_map(|hours| {
                    due_at
                        .checked_sub(SignedDuration::from_hours(i64::from(*hours)))
                        .ok()
                })
                .filter(|at| *at > anchor)
                .collect();
            remind_at.sort();
            remind_at.dedup();
            let late_at = rule.late_after_hours.and_then(|hours| {
                due_at
                    .checked_add(SignedDuration::from_hours(i64::from(hours)))
                    .ok()
            });
            Some(Due {
                rule: rule.key.clone(),
                due_at,
                remind_at,
                late_at,
            })
        })
        .collect()
}

/// Checks that keys are present and unique, spans are 1..=[`SPAN_MAX`] and
/// reminders at most [`REMIND_HOURS_MAX`] hours ahead.
pub fn validate_rules(rules: &[ObligationRule]) -> Result<(), ValidationError> {
    for (i, rule) in rules.iter().enumerate() {
        let field = |name: &str| format!("rules[{i}].{name}");
        if rule.key.trim().is_empty() {
            return Err(ValidationError::new(
                &field("key"),
                "required",
                "must not be empty",
            ));
        }
        if rules[..i].iter().any(|earlier| earlier.key == rule.key) {
            return Err(ValidationError::new(
                &field("key"),
                "duplicate",
                format!("{} is already used by another rule", rule.key),
            ));
        }
        let spans = std::iter::once(("due.within", rule.due.within))
            .chain(rule.due.extended.iter().map(|(_, s)| ("due.extended", *s)));
        for (name, span) in spans {
            if !(1..=SPAN_MAX).contains(&span.count()) {
                return Err(ValidationError::new(
                    &field(name),
                    "out_of_range",
                    format!("must be between 1 and {SPAN_MAX}"),
                ));
            }
        }
        if rule
            .remind_hours_before
            .iter()
            .chain(rule.late_after_hours.iter())
            .any(|hours| *hours > REMIND_HOURS_MAX)
        {
            return Err(ValidationError::new(
                &field("remind_hours_before"),
                "out_of_range",
                format!("must be at most {REMIND_HOURS_MAX} hours"),
            ));
        }
    }
    Ok(())
}

struct Preset<'a> {
    key: &'a str,
    regime: &'a str,
    name_ja: &'a str,
    name_en: &'a str,
    applies: &'a Applicability,
    within: Span,
    remind_hours_before: &'a [u32],
}

impl Preset<'_> {
    fn warned_late(self, after_hours: u32) -> ObligationRule {
        ObligationRule {
            late_after_hours: Some(after_hours),
            ..self.after_awareness()
        }
    }

    fn rule(self, from: Anchor, extended: Option<(Trigger, Span)>) -> ObligationRule {
        ObligationRule {
            key: self.key.into(),
            regime: self.regime.into(),
            name_ja: self.name_ja.into(),
            name_en: self.name_en.into(),
            applies: self.applies.clone(),
            due: Deadline {
                from,
                within: self.within,
                extended,
            },
            remind_hours_before: self.remind_hours_before.to_vec(),
            late_after_hours: None,
        }
    }

    fn after_awareness(self) -> ObligationRule {
        self.rule(Anchor::Awareness, None)
    }
}

/// The built-in duties under APPI, GDPR, NIS2, SEC and HIPAA. Where the law
/// says "promptly" or "without undue delay", the span is a conservative
/// default to adjust.
pub fn presets() -> Vec<ObligationRule> {
    // 個人情報保護法 26条・施行規則 7条: reportable when any of these holds.
    let appi = Applicability {
        personal_data: true,
        any_of: vec![
            Trigger::Sensitive,
            Trigger::FinancialRisk,
            Trigger::MaliciousIntent,
            Trigger::PeopleOver { count: 1000 },
        ],
        categories: Vec::new(),
    };
    let any_personal_data = Applicability {
        personal_data: true,
        any_of: vec![Trigger::Always],
        categories: Vec::new(),
    };
    let gdpr_high_risk = Applicability {
        personal_data: true,
        any_of: vec![Trigger::Sensitive, Trigger::FinancialRisk],
        categories: Vec::new(),
    };
    // Categories that stand for a significant incident under NIS2 Art. 23.
    let nis2_significant = Applicability {
        personal_data: false,
        any_of: vec![Trigger::Always],
        categories: vec![
            "unauthorized_access".into(),
            "service_outage".into(),
            "information_leak".into(),
        ],
    };
    let sec_cyber = Applicability {
        personal_data: false,
        any_of: Vec::new(),
        categories: vec!["unauthorized_access".into(), "information_leak".into()],
    };
    vec![
        // 施行規則 8条1項: 速報は「速やかに」; guidance reads this as 概ね3〜5日以内.
        Preset {
            key: "appi_preliminary",
            regime: "APPI",
            name_ja: "個人情報保護委員会への速報",
            name_en: "Preliminary report to the PPC",
            applies: &appi,
            within: Span::Days(3),
            remind_hours_before: &[48, 24],
        }
        .warned_late(48),
        // 施行規則 8条2項: 確報は30日以内, 不正の目的によるおそれは60日以内.
        Preset {
            key: "appi_final",
            regime: "APPI",
            name_ja: "個人情報保護委員会への確報",
            name_en: "Final report to the PPC",
            applies: &appi,
            within: Span::Days(30),
            remind_hours_before: &[168, 48],
        }
        .rule(
            Anchor::Awareness,
            Some((Trigger::MaliciousIntent, Span::Days(60))),
        ),
        // 施行規則 10条: 本人への通知は「速やかに」.
        Preset {
            key: "appi_individuals",
            regime: "APPI",
            name_ja: "本人への通知",
            name_en: "Notice to the people affected",
            applies: &appi,
            within: Span::Days(3),
            remind_hours_before: &[24],
        }
        .after_awareness(),
        Preset {
            key: "gdpr_art33",
            regime: "GDPR",
            name_ja: "監督機関への通知（GDPR第33条）",
            name_en: "Notification to the supervisory authority (GDPR Art. 33)",
            applies: &any_personal_data,
            within: Span::Hours(72),
            remind_hours_before: &[48, 24],
        }
        .after_awareness(),
        // Art. 34 asks for "without undue delay" when the risk is high.
        Preset {
            key: "gdpr_art34",
            regime: "GDPR",
            name_ja: "データ主体への連絡（GDPR第34条）",
            name_en: "Communication to data subjects (GDPR Art. 34)",
            applies: &gdpr_high_risk,
            within: Span::Hours(72),
            remind_hours_before: &[24],
        }
        .after_awareness(),
        Preset {
            key: "nis2_early_warning",
            regime: "NIS2",
            name_ja: "早期警告（NIS2第23条）",
            name_en: "Early warning (NIS2 Art. 23)",
            applies: &nis2_significant,
            within: Span::Hours(24),
            remind_hours_before: &[6],
        }
        .after_awareness(),
        Preset {
            key: "nis2_notification",
            regime: "NIS2",
            name_ja: "インシデント通知（NIS2第23条）",
            name_en: "Incident notification (NIS2 Art. 23)",
            applies: &nis2_significant,
            within: Span::Hours(72),
            remind_hours_before: &[24],
        }
        .after_awareness(),
        // NIS2 counts the month from the incident notification; counting from
        // awareness falls due no later than that.
        Preset {
            key: "nis2_final_report",
            regime: "NIS2",
            name_ja: "最終報告（NIS2第23条）",
            name_en: "Final report (NIS2 Art. 23)",
            applies: &nis2_significant,
            within: Span::Months(1),
            remind_hours_before: &[168, 48],
        }
        .after_awareness(),
        Preset {
            key: "sec_8k",
            regime: "SEC",
            name_ja: "Form 8-K Item 1.05 の提出",
            name_en: "Form 8-K Item 1.05 filing",
            applies: &sec_cyber,
            within: Span::BusinessDays(4),
            remind_hours_before: &[48, 24],
        }
        .rule(Anchor::Determination, None),
        // 45 CFR 164.404: no later than 60 calendar days after discovery.
        Preset {
            key: "hipaa_breach",
            regime: "HIPAA",
            name_ja: "HIPAA 侵害通知",
            name_en: "HIPAA breach notification",
            applies: &any_personal_data,
            within: Span::Days(60),
            remind_hours_before: &[336, 72],
        }
        .after_awareness(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tokyo() -> TimeZone {
        TimeZone::get("Asia/Tokyo").unwrap()
    }

    fn personal(people: i64) -> PersonalData {
        PersonalData {
            involved: true,
            people_affected: Some(people),
            ..PersonalData::default()
        }
    }

    fn due_for(category: &str, data: &PersonalData, aware_at: Timestamp) -> Vec<Due> {
        let facts = Facts {
            category,
            personal_data: data,
            aware_at,
            determined_at: None,
        };
        due_obligations(&presets(), &facts, &tokyo())
    }

    fn find<'a>(dues: &'a [Due], key: &str) -> Option<&'a Due> {
        dues.iter().find(|d| d.rule == key)
    }

    fn rule(key: &str, from: Anchor, within: Span) -> ObligationRule {
        ObligationRule {
            key: key.into(),
            regime: "TEST".into(),
            name_ja: key.into(),
            name_en: key.into(),
            applies: Applicability::default(),
            due: Deadline {
                from,
                within,
                extended: None,
            },
            remind_hours_before: Vec::new(),
            late_after_hours: None,
        }
    }

    fn single_due(span: Span, from: Timestamp, zone: &TimeZone) -> Timestamp {
        let data = PersonalData::default();
        let facts = Facts {
            category: "other",
            personal_data: &data,
            aware_at: from,
            determined_at: None,
        };
        let rules = [rule("r", Anchor::Awareness, span)];
        due_obligations(&rules, &facts, zone)[0].due_at
    }

    #[test]
    fn appi_needs_more_than_1000_people_or_another_trigger() {
        let aware = ts("2025-11-21T01:00:00Z");
        let dues = due_for("information_leak", &personal(999), aware);
        assert!(find(&dues, "appi_preliminary").is_none());
        assert!(find(&dues, "gdpr_art33").is_some());

        let dues = due_for("information_leak", &personal(1_001), aware);
        let preliminary = find(&dues, "appi_preliminary").unwrap();
        assert_eq!(preliminary.due_at, ts("2025-11-24T01:00:00Z"));
        assert_eq!(
            preliminary.remind_at,
            [ts("2025-11-22T01:00:00Z"), ts("2025-11-23T01:00:00Z")]
        );
        assert!(find(&dues, "appi_individuals").is_some());
        // Due at 3 days, warned once more at 5, the outer limit of 「速やかに」.
        assert_eq!(preliminary.late_at, Some(ts("2025-11-26T01:00:00Z")));
        let order: Vec<Timestamp> = reminder_times(
            &preliminary.remind_at,
            preliminary.due_at,
            preliminary.late_at,
        )
        .collect();
        assert_eq!(order.len(), 4);
        assert_eq!(
            next_reminder(
                &preliminary.remind_at,
                preliminary.due_at,
                preliminary.late_at,
                Some(preliminary.due_at)
            ),
            preliminary.late_at
        );
        assert_eq!(
            next_reminder(
                &preliminary.remind_at,
                preliminary.due_at,
                preliminary.late_at,
                preliminary.late_at
            ),
            None
        );

        let sensitive = PersonalData {
            sensitive: true,
            ..personal(1)
        };
        let dues = due_for("information_leak", &sensitive, aware);
        assert!(find(&dues, "appi_preliminary").is_some());
        assert!(find(&dues, "gdpr_art34").is_some());
    }

    #[test]
    fn appi_final_report_takes_60_days_for_malicious_intent() {
        let aware = ts("2025-11-21T01:00:00Z");
        let dues = due_for("information_leak", &personal(5_000), aware);
        assert_eq!(
            find(&dues, "appi_final").unwrap().due_at,
            ts("2025-12-21T01:00:00Z")
        );
        let malicious = PersonalData {
            malicious_intent: true,
            ..personal(1)
        };
        let dues = due_for("information_leak", &malicious, aware);
        assert_eq!(
            find(&dues, "appi_final").unwrap().due_at,
            ts("2026-01-20T01:00:00Z")
        );
    }

    #[test]
    fn gdpr_art33_is_exactly_72_hours() {
        let aware = ts("2025-03-08T13:47:12Z");
        let dues = due_for("data_loss", &personal(1), aware);
        let due = find(&dues, "gdpr_art33").unwrap();
        assert_eq!(due.due_at, aware + SignedDuration::from_hours(72));
        assert!(find(&dues, "nis2_early_warning").is_none());
    }

    #[test]
    fn nis2_month_ends_on_the_last_day_of_february() {
        let none = PersonalData::default();
        // 2025-01-31 09:00 JST.
        let dues = due_for("service_outage", &none, ts("2025-01-31T00:00:00Z"));
        assert_eq!(
            find(&dues, "nis2_final_report").unwrap().due_at,
            ts("2025-02-28T00:00:00Z")
        );
        assert_eq!(
            find(&dues, "nis2_early_warning").unwrap().due_at,
            ts("2025-02-01T00:00:00Z")
        );
        assert!(find(&dues, "gdpr_art33").is_none());
        let dues = due_for("service_outage", &none, ts("2024-01-31T00:00:00Z"));
        assert_eq!(
            find(&dues, "nis2_final_report").unwrap().due_at,
            ts("2024-02-29T00:00:00Z")
        );
    }

    #[test]
    fn sec_counts_four_business_days_from_determination() {
        let none = PersonalData::default();
        let sec_due = |determined: &str| {
            let facts = Facts {
                category: "unauthorized_access",
                personal_data: &none,
                aware_at: ts("2025-11-01T00:00:00Z"),
                determined_at: Some(ts(determined)),
            };
            let dues = due_obligations(&presets(), &facts, &tokyo());
            find(&dues, "sec_8k").unwrap().due_at
        };
        // Thursday 2025-11-20 10:00 JST → Wednesday 2025-11-26 10:00 JST.
        assert_eq!(sec_due("2025-11-20T01:00:00Z"), ts("2025-11-26T01:00:00Z"));
        // Friday 2025-11-21 10:00 JST → Thursday 2025-11-27 10:00 JST.
        assert_eq!(sec_due("2025-11-21T01:00:00Z"), ts("2025-11-27T01:00:00Z"));
    }

    #[test]
    fn determination_rules_wait_for_determination() {
        let none = PersonalData::default();
        let dues = due_for("unauthorized_access", &none, ts("2025-11-20T01:00:00Z"));
        assert!(find(&dues, "sec_8k").is_none());
        assert!(find(&dues, "nis2_early_warning").is_some());
    }

    #[test]
    fn days_keep_wall_clock_time_across_dst() {
        let new_york = TimeZone::get("America/New_York").unwrap();
        // 2025-03-08 09:00 EST; clocks spring forward on 2025-03-09.
        let from = ts("2025-03-08T14:00:00Z");
        // 09:00 EDT, only 23 hours later.
        assert_eq!(
            single_due(Span::Days(1), from, &new_york),
            ts("2025-03-09T13:00:00Z")
        );
        assert_eq!(
            single_due(Span::Hours(24), from, &new_york),
            ts("2025-03-09T14:00:00Z")
        );
    }

    #[test]
    fn reminders_before_the_anchor_are_dropped() {
        let data = PersonalData::default();
        let facts = Facts {
            category: "other",
            personal_data: &data,
            aware_at: ts("2025-11-21T00:00:00Z"),
            determined_at: None,
        };
        let mut short = rule("short", Anchor::Awareness, Span::Hours(24));
        short.remind_hours_before = vec![48, 6, 24];
        let dues = due_obligations(&[short], &facts, &tokyo());
        assert_eq!(dues[0].remind_at, [ts("2025-11-21T18:00:00Z")]);
    }

    #[test]
    fn validation_rejects_bad_keys_spans_and_reminders() {
        let ok = rule("a", Anchor::Awareness, Span::Days(1));
        assert_eq!(validate_rules(std::slice::from_ref(&ok)), Ok(()));

        let err = validate_rules(&[ok.clone(), ok.clone()]).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("rules[1].key", "duplicate")
        );

        let err = validate_rules(&[rule(" ", Anchor::Awareness, Span::Days(1))]).unwrap_err();
        assert_eq!((err.field.as_str(), err.code), ("rules[0].key", "required"));

        let err = validate_rules(&[rule("z", Anchor::Awareness, Span::Hours(0))]).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("rules[0].due.within", "out_of_range")
        );

        let mut extended = ok.clone();
        extended.due.extended = Some((Trigger::Always, Span::Months(10_001)));
        let err = validate_rules(&[extended]).unwrap_err();
        assert_eq!(err.field, "rules[0].due.extended");

        let mut far = ok;
        far.remind_hours_before = vec![8_761];
        let err = validate_rules(&[far]).unwrap_err();
        assert_eq!(err.field, "rules[0].remind_hours_before");
    }

    #[test]
    fn presets_are_valid_and_round_trip_through_json() {
        let rules = presets();
        assert_eq!(validate_rules(&rules), Ok(()));
        let json = serde_json::to_string(&rules).unwrap();
        let back: Vec<ObligationRule> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rules);
        assert!(json.contains(r#"{"unit":"business_days","n":4}"#));
        assert!(json.contains(r#"{"kind":"people_over","count":1000}"#));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad = r#"{"from":"awareness","within":{"unit":"days","n":3},"grace":1}"#;
        assert!(serde_json::from_str::<Deadline>(bad).is_err());
        let good = r#"{"from":"awareness","within":{"unit":"days","n":3}}"#;
        assert!(serde_json::from_str::<Deadline>(good).is_ok());
        let span = r#"{"unit":"days","n":3,"x":1}"#;
        assert!(serde_json::from_str::<Span>(span).is_err());
        let trigger = r#"{"kind":"people_over","count":1,"x":1}"#;
        assert!(serde_json::from_str::<Trigger>(trigger).is_err());
    }

    fn any_span() -> impl Strategy<Value = Span> {
        let n = 0..=SPAN_MAX;
        prop_oneof![
            n.clone().prop_map(Span::Hours),
            n.clone().prop_map(Span::Days),
            n.clone().prop_map(Span::BusinessDays),
            n.prop_map(Span::Months),
        ]
    }

    fn any_zone() -> impl Strategy<Value = TimeZone> {
        prop_oneof![
            Just(TimeZone::UTC),
            Just(tokyo()),
            Just(TimeZone::get("America/New_York").unwrap()),
            Just(TimeZone::get("Europe/Berlin").unwrap()),
        ]
    }

    // 1970 to 2096.
    fn any_instant() -> impl Strategy<Value = Timestamp> {
        (0i64..4_000_000_000).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    proptest! {
        #[test]
        fn due_is_never_before_the_anchor(
            span in any_span(),
            from in any_instant(),
            zone in any_zone(),
        ) {
            prop_assert!(single_due(span, from, &zone) >= from);
        }

        #[test]
        fn business_days_never_end_on_a_weekend(
            n in 1..=SPAN_MAX,
            from in any_instant(),
            zone in any_zone(),
        ) {
            let due = single_due(Span::BusinessDays(n), from, &zone);
            let weekday = zone.to_datetime(due).weekday();
            prop_assert!(!matches!(weekday, Weekday::Saturday | Weekday::Sunday));
        }
    }
}
