//! Escalation: who is paged for an incident, in what order and when, and
//! whether its response started in time.
//!
//! A policy is a ladder of levels, each paging its targets (users,
//! schedules, channels) and waiting its delay before the next; the ladder
//! may be climbed again `repeat` times. Rules beside the ladder page at
//! once when their condition holds (seed 002: unresolved after 30 minutes →
//! level 2, after an hour → management, data loss suspected → legal and
//! management), whether or not someone acknowledged. An [`Escalation`] is
//! one incident's progress through its policy; [`Escalation::step`] is the
//! whole engine, pure: the caller stores the state, and wakes it again at
//! [`Escalation::due_at`].

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Rules, ValidationError, validate};

/// Who a level or rule pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PageTarget {
    /// A person, through their own contact methods.
    User { id: Uuid },
    /// Whoever is on call in the schedule when the page goes out.
    Schedule { id: Uuid },
    /// A shared channel (a team's Slack, a webhook).
    Channel { id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    #[serde(default)]
    pub targets: Vec<PageTarget>,
    /// How long this level has to acknowledge before the next is paged.
    pub delay_minutes: u32,
}

/// When a rule pages. Every condition given must hold; at least one must be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Condition {
    /// The incident is still unresolved this long after it was detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved_for_minutes: Option<u32>,
    /// The ladder has paged this level (1-based) or beyond.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reached_level: Option<u32>,
    /// The incident's severity is one of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<String>,
    /// The incident's category is one of these (e.g. `data_loss`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Personal data is (or is not) involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<bool>,
}

impl Condition {
    fn is_empty(&self) -> bool {
        self == &Condition::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub when: Condition,
    #[serde(default)]
    pub targets: Vec<PageTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub levels: Vec<Level>,
    /// Times the ladder is climbed again after its last level.
    pub repeat: u32,
    pub rules: Vec<Rule>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// A policy as a caller writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDraft {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub levels: Vec<Level>,
    #[serde(default)]
    pub repeat: u32,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

pub const LEVELS_MAX: usize = 10;
pub const TARGETS_MAX: usize = 20;
pub const RULES_MAX: usize = 20;
pub const REPEAT_MAX: u32 = 9;
/// A level waits at most a day; no rule waits longer than thirty.
pub const DELAY_MAX_MINUTES: u32 = 1_440;
pub const UNRESOLVED_MAX_MINUTES: u32 = 43_200;

/// The name of the policy incidents escalate on when nothing names another.
pub const DEFAULT_POLICY: &str = "default";

fn check_targets(field: &str, targets: &[PageTarget]) -> Result<(), ValidationError> {
    if targets.len() > TARGETS_MAX {
        return Err(ValidationError::new(
            field,
            "out_of_range",
            format!("at most {TARGETS_MAX} targets"),
        ));
    }
    Ok(())
}

fn check_keys(field: &str, given: &[String], known: &[&str]) -> Result<(), ValidationError> {
    match given.iter().find(|g| !known.contains(&g.as_str())) {
        Some(bad) => Err(ValidationError::new(
            field,
            "unknown_value",
            format!("{bad:?} is not one of: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

impl PolicyDraft {
    /// Checks the policy's shape. Targets are checked against what exists
    /// by the caller, who can see users, schedules and channels.
    ///
    /// No policy can loop: a level waits at least a minute, the ladder is
    /// climbed at most ten times, and policies do not hand over to other
    /// policies, so every escalation ends.
    pub fn validated(
        self,
        rules: &Rules,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Policy, ValidationError> {
        let name = validate::line("name", &self.name, validate::SHORT_MAX, true)?;
        let description =
            validate::text("description", &self.description, validate::TEXT_MAX, false)?;
        if self.levels.is_empty() || self.levels.len() > LEVELS_MAX {
            return Err(ValidationError::new(
                "levels",
                "out_of_range",
                format!("must have 1 to {LEVELS_MAX} levels"),
            ));
        }
        for (i, level) in self.levels.iter().enumerate() {
            check_targets(&format!("levels[{i}].targets"), &level.targets)?;
            if !(1..=DELAY_MAX_MINUTES).contains(&level.delay_minutes) {
                return Err(ValidationError::new(
                    &format!("levels[{i}].delay_minutes"),
                    "out_of_range",
                    format!(
                        "must be 1 to {DELAY_MAX_MINUTES} minutes; a level without a wait would page in a loop"
                    ),
                ));
            }
        }
        if self.repeat > REPEAT_MAX {
            return Err(ValidationError::new(
                "repeat",
                "out_of_range",
                format!("must be 0 to {REPEAT_MAX}"),
            ));
        }
        if self.rules.len() > RULES_MAX {
            return Err(ValidationError::new(
                "rules",
                "out_of_range",
                format!("at most {RULES_MAX} rules"),
            ));
        }
        let severities = rules.severities.keys();
        let categories = rules.catalog.keys();
        let mut checked_rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.into_iter().enumerate() {
            let field = |f: &str| format!("rules[{i}].{f}");
            let name = validate::line(&field("name"), &rule.name, validate::SHORT_MAX, true)?;
            if checked_rules.iter().any(|r: &Rule| r.name == name) {
                return Err(ValidationError::new(
                    &field("name"),
                    "duplicate",
                    "rule names must differ: escalations remember the rules that paged by name",
                ));
            }
            check_targets(&field("targets"), &rule.targets)?;
            let when = &rule.when;
            if when.is_empty() {
                return Err(ValidationError::new(
                    &field("when"),
                    "required",
                    "must give at least one condition",
                ));
            }
            if when
                .unresolved_for_minutes
                .is_some_and(|m| !(1..=UNRESOLVED_MAX_MINUTES).contains(&m))
            {
                return Err(ValidationError::new(
                    &field("when.unresolved_for_minutes"),
                    "out_of_range",
                    format!("must be 1 to {UNRESOLVED_MAX_MINUTES}"),
                ));
            }
            if when
                .reached_level
                .is_some_and(|l| l == 0 || l as usize > self.levels.len())
            {
                return Err(ValidationError::new(
                    &field("when.reached_level"),
                    "out_of_range",
                    format!("must name a level, 1 to {}", self.levels.len()),
                ));
            }
            check_keys(&field("when.severities"), &when.severities, &severities)?;
            check_keys(&field("when.categories"), &when.categories, &categories)?;
            checked_rules.push(Rule { name, ..rule });
        }
        Ok(Policy {
            id,
            name,
            description,
            levels: self.levels,
            repeat: self.repeat,
            rules: checked_rules,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }
}

impl Policy {
    /// The shape of seed 004's escalation path: 運用担当者 →15 min→
    /// 運用リーダー →30 min→ 運用マネージャー →60 min→ 開発チーム, and
    /// 経営層 paged once level 3 is reached for the two most severe
    /// severities. The targets are left for an administrator to fill in.
    pub fn seed_004(rules: &Rules, id: Uuid, now: Timestamp) -> Policy {
        let level = |delay_minutes| Level {
            targets: Vec::new(),
            delay_minutes,
        };
        let major: Vec<String> = rules
            .severities
            .keys()
            .into_iter()
            .take(2)
            .map(String::from)
            .collect();
        Policy {
            id,
            name: DEFAULT_POLICY.into(),
            description: "L1 運用担当者 →15分→ L2 運用リーダー →30分→ L3 運用マネージャー →60分→ L4 開発チーム; 重大影響 → L5 経営層".into(),
            levels: vec![level(15), level(30), level(60), level(60)],
            repeat: 0,
            rules: vec![Rule {
                name: "L5 経営層 (major impact)".into(),
                when: Condition {
                    reached_level: Some(3),
                    severities: major,
                    ..Condition::default()
                },
                targets: Vec::new(),
            }],
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// Every target the policy names, for checking that each exists.
    pub fn targets(&self) -> impl Iterator<Item = (String, &PageTarget)> {
        let levels = self.levels.iter().enumerate().flat_map(|(i, l)| {
            l.targets
                .iter()
                .enumerate()
                .map(move |(j, t)| (format!("levels[{i}].targets[{j}]"), t))
        });
        let rules = self.rules.iter().enumerate().flat_map(|(i, r)| {
            r.targets
                .iter()
                .enumerate()
                .map(move |(j, t)| (format!("rules[{i}].targets[{j}]"), t))
        });
        levels.chain(rules)
    }
}

/// What an incident is, as far as rules ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    pub severity: &'a str,
    pub category: &'a str,
    pub personal_data: bool,
}

/// Why a page went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PageReason {
    /// Level `level` (1-based) on climb `round` (1-based).
    Level {
        level: u32,
        round: u32,
    },
    Rule {
        name: String,
    },
    /// Someone asked for it.
    Reescalation {
        level: u32,
    },
}

impl PageReason {
    pub fn describe(&self) -> String {
        match self {
            PageReason::Level { level, round: 1 } => format!("level {level}"),
            PageReason::Level { level, round } => format!("level {level} (round {round})"),
            PageReason::Rule { name } => format!("rule {name:?}"),
            PageReason::Reescalation { level } => format!("level {level}, re-escalated"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub reason: PageReason,
    pub targets: Vec<PageTarget>,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub pages: Vec<Page>,
    /// The response-start target passed unacknowledged in this step.
    pub breached: bool,
}

/// One incident's progress through its policy, and its response-start
/// target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub incident_id: Uuid,
    pub policy_id: Option<Uuid>,
    /// The level (0-based) paged last on this climb; None before the first.
    pub level: Option<usize>,
    /// Climbs begun, counting the first.
    pub round: u32,
    /// When the ladder pages its next level, unless acknowledged first.
    pub next_level_at: Option<Timestamp>,
    /// Rules (by name) that have paged; each pages once, whatever edits
    /// reorder the policy's rules.
    pub rules_fired: Vec<String>,
    /// When the incident was detected: rules count from here.
    pub started_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub response_due_at: Option<Timestamp>,
    pub response_breached_at: Option<Timestamp>,
    /// Resolved: nothing more is paged.
    pub stopped_at: Option<Timestamp>,
    /// Pages sent so far: numbers each one, for idempotency keys.
    #[serde(default)]
    pub pages: u32,
    /// The last re-escalation: an acknowledgement from before it is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reescalated_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReescalateError {
    #[error("the incident is resolved; nothing is paged for it")]
    Stopped,
    #[error("the incident has no escalation policy")]
    NoPolicy,
    #[error("the policy has levels 1 to {0}")]
    NoSuchLevel(usize),
}

impl Escalation {
    /// An incident's escalation, its first level due at once.
    pub fn start(
        incident_id: Uuid,
        policy: Option<&Policy>,
        detected_at: Timestamp,
        response_due_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Escalation {
        Escalation {
            incident_id,
            policy_id: policy.map(|p| p.id),
            level: None,
            round: 1,
            next_level_at: policy.map(|_| now),
            rules_fired: Vec::new(),
            started_at: detected_at,
            acknowledged_at: None,
            response_due_at,
            response_breached_at: None,
            stopped_at: None,
            pages: 0,
            reescalated_at: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.stopped_at.is_none()
    }

    /// Pages due by `now`: at most one level of the ladder (an escalation
    /// woken late pages the level it owes, then waits that level's delay,
    /// rather than paging every overdue level at once), then every rule
    /// that now holds; and the response-start target, once.
    pub fn step(&mut self, policy: Option<&Policy>, facts: Facts<'_>, now: Timestamp) -> Step {
        let mut step = Step::default();
        if self.stopped_at.is_some() {
            return step;
        }
        if let Some(policy) = policy.filter(|p| !p.levels.is_empty()) {
            if self.acknowledged_at.is_none() && self.next_level_at.is_some_and(|at| at <= now) {
                self.climb(policy, now, &mut step);
            }
            for rule in &policy.rules {
                if !self.rules_fired.contains(&rule.name) && self.holds(&rule.when, facts, now) {
                    self.rules_fired.push(rule.name.clone());
                    step.pages.push(Page {
                        reason: PageReason::Rule {
                            name: rule.name.clone(),
                        },
                        targets: rule.targets.clone(),
                    });
                }
            }
        }
        if self.acknowledged_at.is_none()
            && self.response_breached_at.is_none()
            && self.response_due_at.is_some_and(|due| due <= now)
        {
            self.response_breached_at = Some(now);
            step.breached = true;
        }
        step
    }

    fn climb(&mut self, policy: &Policy, now: Timestamp, step: &mut Step) {
        let next = self.level.map_or(0, |l| l + 1);
        let index = if next < policy.levels.len() {
            next
        } else if self.round <= policy.repeat {
            self.round += 1;
            0
        } else {
            // The ladder is spent; rules may still page.
            self.next_level_at = None;
            return;
        };
        let level = &policy.levels[index];
        self.level = Some(index);
        let last = index + 1 == policy.levels.len() && self.round > policy.repeat;
        self.next_level_at = (!last).then(|| minutes_after(now, level.delay_minutes));
        step.pages.push(Page {
            reason: PageReason::Level {
                level: index as u32 + 1,
                round: self.round,
            },
            targets: level.targets.clone(),
        });
    }

    fn holds(&self, when: &Condition, facts: Facts<'_>, now: Timestamp) -> bool {
        let reached = self
            .level
            .map_or(0, |l| l as u32 + 1)
            .max(if self.round > 1 { u32::MAX } else { 0 });
        when.unresolved_for_minutes
            .is_none_or(|m| minutes_after(self.started_at, m) <= now)
            && when.reached_level.is_none_or(|l| reached >= l)
            && (when.severities.is_empty() || when.severities.iter().any(|s| s == facts.severity))
            && (when.categories.is_empty() || when.categories.iter().any(|c| c == facts.category))
            && when.personal_data.is_none_or(|p| p == facts.personal_data)
    }

    /// When the escalation must be stepped again, if ever. Conditions on
    /// the incident's facts are looked at again whenever the incident
    /// changes; only the clock needs a wake-up here.
    pub fn due_at(&self, policy: Option<&Policy>) -> Option<Timestamp> {
        if self.stopped_at.is_some() {
            return None;
        }
        let unacknowledged = self.acknowledged_at.is_none();
        let ladder = self.next_level_at.filter(|_| unacknowledged);
        let response = self
            .response_due_at
            .filter(|_| unacknowledged && self.response_breached_at.is_none());
        let rules = policy.into_iter().flat_map(|p| {
            p.rules.iter().filter_map(|r| {
                let waits = r.when.unresolved_for_minutes?;
                (!self.rules_fired.contains(&r.name)).then(|| minutes_after(self.started_at, waits))
            })
        });
        [ladder, response].into_iter().flatten().chain(rules).min()
    }

    /// Someone took it: the ladder stops; rules on elapsed time and facts
    /// still page until the incident is resolved.
    pub fn acknowledge(&mut self, at: Timestamp) -> bool {
        if self.acknowledged_at.is_some() || self.stopped_at.is_some() {
            return false;
        }
        self.acknowledged_at = Some(at);
        true
    }

    /// Resolved: nothing more is paged.
    pub fn stop(&mut self, at: Timestamp) {
        if self.stopped_at.is_none() {
            self.stopped_at = Some(at);
        }
    }

    /// Pages `to_level` (1-based; the level after the last paged when not
    /// given) at once and climbs on from there until acknowledged again.
    pub fn reescalate(
        &mut self,
        policy: Option<&Policy>,
        to_level: Option<u32>,
        now: Timestamp,
    ) -> Result<Page, ReescalateError> {
        if self.stopped_at.is_some() {
            return Err(ReescalateError::Stopped);
        }
        let policy = policy.ok_or(ReescalateError::NoPolicy)?;
        let count = policy.levels.len();
        let index = match to_level {
            Some(l) if l == 0 || l as usize > count => {
                return Err(ReescalateError::NoSuchLevel(count));
            }
            Some(l) => l as usize - 1,
            None => self.level.map_or(0, |l| (l + 1).min(count - 1)),
        };
        let level = &policy.levels[index];
        self.level = Some(index);
        self.acknowledged_at = None;
        self.reescalated_at = Some(now);
        self.next_level_at = (index + 1 < count).then(|| minutes_after(now, level.delay_minutes));
        Ok(Page {
            reason: PageReason::Reescalation {
                level: index as u32 + 1,
            },
            targets: level.targets.clone(),
        })
    }
}

fn minutes_after(t: Timestamp, minutes: u32) -> Timestamp {
    t + SignedDuration::from_mins(i64::from(minutes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Rules {
        Rules::for_tests("p0-p3", jiff::tz::TimeZone::UTC)
    }

    fn user(n: u128) -> PageTarget {
        PageTarget::User {
            id: Uuid::from_u128(n),
        }
    }

    fn t(mins: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(mins)
    }

    fn facts() -> Facts<'static> {
        Facts {
            severity: "P1",
            category: "server_failure",
            personal_data: false,
        }
    }

    /// Seed 004's ladder with one person a level, and seed 002's rules.
    fn policy() -> Policy {
        let draft: PolicyDraft = serde_json::from_value(serde_json::json!({
            "name": "ops",
            "levels": [
                {"targets": [{"type": "user", "id": Uuid::from_u128(1)}], "delay_minutes": 15},
                {"targets": [{"type": "user", "id": Uuid::from_u128(2)}], "delay_minutes": 30},
                {"targets": [{"type": "user", "id": Uuid::from_u128(3)}], "delay_minutes": 60},
            ],
            "rules": [
                {"name": "30分で解決しない", "when": {"unresolved_for_minutes": 30},
                 "targets": [{"type": "user", "id": Uuid::from_u128(2)}]},
                {"name": "データ損失疑い", "when": {"categories": ["data_loss"]},
                 "targets": [{"type": "user", "id": Uuid::from_u128(9)}]},
            ],
        }))
        .unwrap();
        draft.validated(&rules(), Uuid::nil(), t(0)).unwrap()
    }

    fn levels_paged(step: &Step) -> Vec<u32> {
        step.pages
            .iter()
            .filter_map(|p| match p.reason {
                PageReason::Level { level, .. } => Some(level),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_ladder_climbs_level_by_level_until_acknowledged() {
        let p = policy();
        let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
        assert_eq!(e.due_at(Some(&p)), Some(t(0)));
        let s = e.step(Some(&p), facts(), t(0));
        assert_eq!(levels_paged(&s), [1]);
        assert_eq!(s.pages[0].targets, [user(1)]);
        assert_eq!(e.due_at(Some(&p)), Some(t(15)));
        // Nothing early.
        assert!(e.step(Some(&p), facts(), t(14)).pages.is_empty());
        assert_eq!(levels_paged(&e.step(Some(&p), facts(), t(15))), [2]);
        // At 30 minutes the rule pages too; the ladder waits until 45.
        let s = e.step(Some(&p), facts(), t(30));
        assert_eq!(s.pages.len(), 1);
        assert_eq!(
            s.pages[0].reason,
            PageReason::Rule {
                name: "30分で解決しない".into()
            }
        );
        assert!(e.acknowledge(t(40)));
        assert!(!e.acknowledge(t(41)));
        assert_eq!(e.due_at(Some(&p)), None);
        assert!(e.step(Some(&p), facts(), t(100)).pages.is_empty());
    }

    #[test]
    fn a_spent_ladder_repeats_as_often_as_asked_then_ends() {
        let mut p = policy();
        p.rules.clear();
        p.repeat = 1;
        let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
        let mut paged = Vec::new();
        let mut now = t(0);
        while let Some(due) = e.due_at(Some(&p)) {
            now = now.max(due);
            for page in e.step(Some(&p), facts(), now).pages {
                paged.push(page.reason);
            }
        }
        assert_eq!(
            paged,
            [
                PageReason::Level { level: 1, round: 1 },
                PageReason::Level { level: 2, round: 1 },
                PageReason::Level { level: 3, round: 1 },
                PageReason::Level { level: 1, round: 2 },
                PageReason::Level { level: 2, round: 2 },
                PageReason::Level { level: 3, round: 2 },
            ]
        );
    }

    #[test]
    fn rules_on_facts_page_at_once_even_after_acknowledgement() {
        let p = policy();
        let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
        e.step(Some(&p), facts(), t(0));
        e.acknowledge(t(1));
        let data_loss = Facts {
            category: "data_loss",
            ..facts()
        };
        let s = e.step(Some(&p), data_loss, t(2));
        assert_eq!(s.pages.len(), 1);
        assert_eq!(s.pages[0].targets, [user(9)]);
        // Once only.
        assert!(e.step(Some(&p), data_loss, t(3)).pages.is_empty());
        // Unresolved rules still wake it after the acknowledgement.
        assert_eq!(e.due_at(Some(&p)), Some(t(30)));
        e.stop(t(10));
        assert_eq!(e.due_at(Some(&p)), None);
        assert!(e.step(Some(&p), facts(), t(31)).pages.is_empty());
    }

    #[test]
    fn the_response_target_is_breached_once_unless_acknowledged_in_time() {
        let mut e = Escalation::start(Uuid::nil(), None, t(0), Some(t(5)), t(0));
        assert_eq!(e.due_at(None), Some(t(5)));
        assert!(!e.step(None, facts(), t(4)).breached);
        assert!(e.step(None, facts(), t(5)).breached);
        assert!(!e.step(None, facts(), t(6)).breached);
        assert_eq!(e.response_breached_at, Some(t(5)));
        let mut on_time = Escalation::start(Uuid::nil(), None, t(0), Some(t(5)), t(0));
        on_time.acknowledge(t(3));
        assert_eq!(on_time.due_at(None), None);
        assert!(!on_time.step(None, facts(), t(9)).breached);
    }

    #[test]
    fn reescalation_pages_the_next_level_and_climbs_again() {
        let p = policy();
        let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
        e.step(Some(&p), facts(), t(0));
        e.acknowledge(t(1));
        let page = e.reescalate(Some(&p), None, t(2)).unwrap();
        assert_eq!(page.reason, PageReason::Reescalation { level: 2 });
        assert_eq!(e.due_at(Some(&p)), Some(t(30)).min(Some(t(32))));
        assert_eq!(levels_paged(&e.step(Some(&p), facts(), t(32))), [3]);
        assert_eq!(
            e.reescalate(Some(&p), Some(4), t(33)),
            Err(ReescalateError::NoSuchLevel(3))
        );
        assert_eq!(
            e.reescalate(None, None, t(33)),
            Err(ReescalateError::NoPolicy)
        );
        e.stop(t(40));
        assert_eq!(
            e.reescalate(Some(&p), Some(1), t(41)),
            Err(ReescalateError::Stopped)
        );
    }

    #[test]
    fn the_seed_004_shape_pages_management_at_level_3_for_major_impact() {
        let mut p = Policy::seed_004(&rules(), Uuid::nil(), t(0));
        p.rules[0].targets = vec![user(5)];
        let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
        let mut l5_at = None;
        while let Some(due) = e.due_at(Some(&p)) {
            let s = e.step(Some(&p), facts(), due);
            if s.pages.iter().any(|p| p.targets == [user(5)]) {
                l5_at = Some(due);
            }
        }
        // L1 at 0, L2 at 15, L3 at 45: L5 with L3.
        assert_eq!(l5_at, Some(t(45)));
        let minor = Facts {
            severity: "P3",
            ..facts()
        };
        let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
        while let Some(due) = e.due_at(Some(&p)) {
            assert!(
                e.step(Some(&p), minor, due)
                    .pages
                    .iter()
                    .all(|p| p.targets != [user(5)])
            );
        }
    }

    #[test]
    fn bad_policies_are_refused_with_the_field() {
        let check = |v: serde_json::Value| -> String {
            match serde_json::from_value::<PolicyDraft>(v) {
                Err(e) => format!("json: {e}"),
                Ok(d) => d
                    .validated(&rules(), Uuid::nil(), t(0))
                    .map(|_| "ok".to_string())
                    .unwrap_or_else(|e| format!("{} {}", e.field, e.code)),
            }
        };
        let level = serde_json::json!({"delay_minutes": 5});
        assert_eq!(
            check(serde_json::json!({"name": "x", "levels": []})),
            "levels out_of_range"
        );
        assert_eq!(
            check(serde_json::json!({"name": "x", "levels": [{"delay_minutes": 0}]})),
            "levels[0].delay_minutes out_of_range"
        );
        assert_eq!(
            check(serde_json::json!({"name": "x", "levels": [level], "repeat": 10})),
            "repeat out_of_range"
        );
        assert_eq!(
            check(
                serde_json::json!({"name": "x", "levels": [level], "rules": [{"name": "r", "when": {}}]})
            ),
            "rules[0].when required"
        );
        assert_eq!(
            check(
                serde_json::json!({"name": "x", "levels": [level], "rules": [{"name": "r", "when": {"reached_level": 2}}]})
            ),
            "rules[0].when.reached_level out_of_range"
        );
        assert_eq!(
            check(
                serde_json::json!({"name": "x", "levels": [level], "rules": [{"name": "r", "when": {"severities": ["SEV9"]}}]})
            ),
            "rules[0].when.severities unknown_value"
        );
        assert!(
            check(serde_json::json!({"name": "x", "levels": [{"delay_minutes": 5, "targets": [{"type": "team", "id": Uuid::nil()}]}]}))
                .starts_with("json:")
        );
        assert!(
            check(serde_json::json!({"name": "x", "levels": [level], "loop": true}))
                .starts_with("json:")
        );
        assert_eq!(
            check(serde_json::json!({"name": "x", "levels": [level]})),
            "ok"
        );
    }

    proptest! {
        /// Whatever the policy and however late the wakes, every
        /// escalation ends, pages each level at most `repeat + 1` times,
        /// and never pages before its due time.
        #[test]
        fn every_escalation_ends(delays in proptest::collection::vec(1u32..100, 1..6), repeat in 0u32..4, lateness in proptest::collection::vec(0i64..200, 1..60)) {
            let levels = delays.iter().map(|&d| Level { targets: vec![user(1)], delay_minutes: d }).collect();
            let p = Policy { levels, repeat, rules: Vec::new(), ..policy() };
            let mut e = Escalation::start(Uuid::nil(), Some(&p), t(0), None, t(0));
            let mut pages = 0usize;
            let mut late = lateness.iter().cycle();
            while let Some(due) = e.due_at(Some(&p)) {
                let now = due + SignedDuration::from_mins(*late.next().unwrap());
                prop_assert!(e.step(Some(&p), facts(), due - SignedDuration::from_secs(1)).pages.is_empty());
                pages += e.step(Some(&p), facts(), now).pages.len();
                prop_assert!(pages <= delays.len() * (repeat as usize + 1));
            }
            prop_assert_eq!(pages, delays.len() * (repeat as usize + 1));
        }
    }
}
