//! The postmortem an incident's reports are built from: causes, impact,
//! what was done, what will prevent it, lessons, action items, and the
//! chain of approvals that makes it final. The rule of the 始末書 template
//! holds here: a prevention measure names who and by when, and exhortation
//! is not a measure (精神論不可).

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::incident::UserRef;
use crate::validate::{self, LIST_MAX, SHORT_MAX, TEXT_MAX, ValidationError};

/// How far along a measure, response or action item is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    #[default]
    #[serde(alias = "未着手")]
    NotStarted,
    #[serde(alias = "進行中")]
    InProgress,
    #[serde(alias = "完了")]
    Done,
}

impl ItemStatus {
    pub fn label_ja(self) -> &'static str {
        match self {
            ItemStatus::NotStarted => "未着手",
            ItemStatus::InProgress => "進行中",
            ItemStatus::Done => "完了",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            ItemStatus::NotStarted => "Not started",
            ItemStatus::InProgress => "In progress",
            ItemStatus::Done => "Done",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::NotStarted => "not_started",
            ItemStatus::InProgress => "in_progress",
            ItemStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<ItemStatus> {
        [
            ItemStatus::NotStarted,
            ItemStatus::InProgress,
            ItemStatus::Done,
        ]
        .into_iter()
        .find(|st| st.as_str() == s || st.label_ja() == s)
    }
}

/// The horizon of a prevention measure, as the DB incident report groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// 短期対策 (within a week).
    Short,
    /// 中期対策 (within a month).
    Mid,
    /// 長期対策 (within three months).
    Long,
}

impl Term {
    pub const ALL: [Term; 3] = [Term::Short, Term::Mid, Term::Long];
}

/// The symptoms the DB incident report ticks (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symptom {
    CompleteDataLoss,
    PartialDataLoss,
    DataCorruption,
    PerformanceDegradation,
    ConnectionFailure,
}

impl Symptom {
    pub const ALL: [Symptom; 5] = [
        Symptom::CompleteDataLoss,
        Symptom::PartialDataLoss,
        Symptom::DataCorruption,
        Symptom::PerformanceDegradation,
        Symptom::ConnectionFailure,
    ];

    pub fn label_ja(self) -> &'static str {
        match self {
            Symptom::CompleteDataLoss => "データ完全消失",
            Symptom::PartialDataLoss => "データ部分消失",
            Symptom::DataCorruption => "データ破損",
            Symptom::PerformanceDegradation => "パフォーマンス劣化",
            Symptom::ConnectionFailure => "接続不可",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Symptom::CompleteDataLoss => "Complete data loss",
            Symptom::PartialDataLoss => "Partial data loss",
            Symptom::DataCorruption => "Data corruption",
            Symptom::PerformanceDegradation => "Performance degradation",
            Symptom::ConnectionFailure => "Cannot connect",
        }
    }
}

/// Which kind of cause a root cause is (the seed's プロセス / 技術 / 人的).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    Process,
    Technical,
    Human,
    Other,
}

impl CauseKind {
    pub fn label_ja(self) -> &'static str {
        match self {
            CauseKind::Process => "プロセスの問題",
            CauseKind::Technical => "技術的問題",
            CauseKind::Human => "人的要因",
            CauseKind::Other => "その他",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            CauseKind::Process => "Process",
            CauseKind::Technical => "Technical",
            CauseKind::Human => "Human factors",
            CauseKind::Other => "Other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootCause {
    pub kind: CauseKind,
    pub text: String,
}

/// When in the response an action was taken (DB report §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Immediate,
    Recovery,
    Verification,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseAction {
    #[serde(default)]
    pub phase: Phase,
    pub text: String,
    #[serde(default)]
    pub status: ItemStatus,
}

/// A prevention measure (再発防止策). People are `U`: as a caller names
/// them, or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "U: Deserialize<'de>"))]
pub struct Measure<U = UserRef> {
    pub term: Term,
    pub text: String,
    #[serde(default)]
    pub owner: Option<U>,
    #[serde(default)]
    pub due: Option<Date>,
    #[serde(default)]
    pub status: ItemStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lessons {
    pub good: Vec<String>,
    pub bad: Vec<String>,
    #[serde(rename = "try")]
    pub try_next: Vec<String>,
}

/// An action item, tracked across incidents until done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "U: Deserialize<'de>"))]
pub struct ActionItem<U = UserRef> {
    /// Given by Kiroku on first save; send it back to keep the item's history.
    #[serde(default)]
    pub id: Option<Uuid>,
    pub title: String,
    #[serde(default)]
    pub owner: Option<U>,
    #[serde(default)]
    pub due: Option<Date>,
    #[serde(default)]
    pub status: ItemStatus,
}

/// Everything a postmortem records beyond the incident itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    bound(deserialize = "U: Deserialize<'de>")
)]
pub struct Postmortem<U = UserRef> {
    /// エグゼクティブサマリー; the incident's summary when empty.
    pub summary: String,
    /// 発見経緯.
    pub detection: String,
    pub symptoms: Vec<Symptom>,
    pub other_symptom: String,
    /// 直接原因.
    pub direct_cause: String,
    pub root_causes: Vec<RootCause>,
    /// 寄与要因.
    pub contributing_factors: Vec<String>,
    pub five_whys: Vec<String>,
    /// 被害状況: harm to third parties, deletion requests made.
    pub damage: String,
    pub data_loss: String,
    pub financial_loss: String,
    pub reputation: String,
    pub technical_impact: Vec<String>,
    /// The SLO and how far it was missed (サーバ障害).
    pub slo: String,
    /// The point restored to (データ消失).
    pub restore_point: String,
    pub responses: Vec<ResponseAction>,
    pub measures: Vec<Measure<U>>,
    pub lessons: Lessons,
    pub action_items: Vec<ActionItem<U>>,
    /// 本人への対応の実施状況: how the people affected were told and helped.
    pub individuals_notice: String,
    /// 公表の実施状況: whether and how the breach was made public.
    pub publication: String,
    /// 宛先; the configured addressees when empty.
    pub addressees: String,
    /// 提出者の所属.
    pub affiliation: String,
    /// 付録: log locations, tickets, references.
    pub appendix: Vec<String>,
}

impl<U> Default for Postmortem<U> {
    fn default() -> Self {
        Postmortem {
            summary: String::new(),
            detection: String::new(),
            symptoms: Vec::new(),
            other_symptom: String::new(),
            direct_cause: String::new(),
            root_causes: Vec::new(),
            contributing_factors: Vec::new(),
            five_whys: Vec::new(),
            damage: String::new(),
            data_loss: String::new(),
            financial_loss: String::new(),
            reputation: String::new(),
            technical_impact: Vec::new(),
            slo: String::new(),
            restore_point: String::new(),
            responses: Vec::new(),
            measures: Vec::new(),
            lessons: Lessons::default(),
            action_items: Vec::new(),
            individuals_notice: String::new(),
            publication: String::new(),
            addressees: String::new(),
            affiliation: String::new(),
            appendix: Vec::new(),
        }
    }
}

/// Longest item of a list field.
const ITEM_MAX: usize = 2_000;

fn items(field: &str, values: &[String]) -> Result<Vec<String>, ValidationError> {
    if values.len() > LIST_MAX {
        return Err(ValidationError::new(
            field,
            "too_many",
            format!("must have at most {LIST_MAX} items"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| validate::text(&format!("{field}[{i}]"), v, ITEM_MAX, true))
        .collect()
}

fn at_most<T>(field: &str, values: &[T]) -> Result<(), ValidationError> {
    if values.len() > LIST_MAX {
        return Err(ValidationError::new(
            field,
            "too_many",
            format!("must have at most {LIST_MAX} items"),
        ));
    }
    Ok(())
}

impl<U> Postmortem<U> {
    /// The same postmortem with its people replaced, failing on the first
    /// that `resolve` refuses; `resolve` gets the field it stands in.
    pub fn try_map_people<V, E>(
        self,
        mut resolve: impl FnMut(&str, U) -> Result<V, E>,
    ) -> Result<Postmortem<V>, E> {
        let mut owner = |list: &str, i: usize, who: Option<U>| {
            who.map(|u| resolve(&format!("{list}[{i}].owner"), u))
                .transpose()
        };
        let mut measures = Vec::with_capacity(self.measures.len());
        for (i, m) in self.measures.into_iter().enumerate() {
            measures.push(Measure {
                owner: owner("measures", i, m.owner)?,
                term: m.term,
                text: m.text,
                due: m.due,
                status: m.status,
            });
        }
        let mut action_items = Vec::with_capacity(self.action_items.len());
        for (i, a) in self.action_items.into_iter().enumerate() {
            action_items.push(ActionItem {
                owner: owner("action_items", i, a.owner)?,
                id: a.id,
                title: a.title,
                due: a.due,
                status: a.status,
            });
        }
        Ok(Postmortem {
            summary: self.summary,
            detection: self.detection,
            symptoms: self.symptoms,
            other_symptom: self.other_symptom,
            direct_cause: self.direct_cause,
            root_causes: self.root_causes,
            contributing_factors: self.contributing_factors,
            five_whys: self.five_whys,
            damage: self.damage,
            data_loss: self.data_loss,
            financial_loss: self.financial_loss,
            reputation: self.reputation,
            technical_impact: self.technical_impact,
            slo: self.slo,
            restore_point: self.restore_point,
            responses: self.responses,
            measures,
            lessons: self.lessons,
            action_items,
            individuals_notice: self.individuals_notice,
            publication: self.publication,
            addressees: self.addressees,
            affiliation: self.affiliation,
            appendix: self.appendix,
        })
    }

    /// Checks every text against the input limits; people are checked by
    /// whoever resolves them.
    pub fn validated(self) -> Result<Postmortem<U>, ValidationError> {
        let text = |field: &str, v: &str| validate::text(field, v, TEXT_MAX, false);
        let line = |field: &str, v: &str| validate::line(field, v, SHORT_MAX, false);
        at_most("symptoms", &self.symptoms)?;
        at_most("root_causes", &self.root_causes)?;
        at_most("responses", &self.responses)?;
        at_most("measures", &self.measures)?;
        at_most("action_items", &self.action_items)?;
        let mut symptoms = self.symptoms;
        symptoms.dedup();
        let root_causes = self
            .root_causes
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(RootCause {
                    kind: c.kind,
                    text: validate::text(
                        &format!("root_causes[{i}].text"),
                        &c.text,
                        ITEM_MAX,
                        true,
                    )?,
                })
            })
            .collect::<Result<_, ValidationError>>()?;
        let responses = self
            .responses
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(ResponseAction {
                    phase: r.phase,
                    text: validate::text(&format!("responses[{i}].text"), &r.text, ITEM_MAX, true)?,
                    status: r.status,
                })
            })
            .collect::<Result<_, ValidationError>>()?;
        let measures = self
            .measures
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(Measure {
                    text: validate::text(&format!("measures[{i}].text"), &m.text, ITEM_MAX, true)?,
                    ..m
                })
            })
            .collect::<Result<_, ValidationError>>()?;
        let action_items = self
            .action_items
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(ActionItem {
                    title: validate::line(
                        &format!("action_items[{i}].title"),
                        &a.title,
                        SHORT_MAX,
                        true,
                    )?,
                    ..a
                })
            })
            .collect::<Result<_, ValidationError>>()?;
        Ok(Postmortem {
            summary: text("summary", &self.summary)?,
            detection: text("detection", &self.detection)?,
            symptoms,
            other_symptom: line("other_symptom", &self.other_symptom)?,
            direct_cause: text("direct_cause", &self.direct_cause)?,
            root_causes,
            contributing_factors: items("contributing_factors", &self.contributing_factors)?,
            five_whys: items("five_whys", &self.five_whys)?,
            damage: text("damage", &self.damage)?,
            data_loss: text("data_loss", &self.data_loss)?,
            financial_loss: text("financial_loss", &self.financial_loss)?,
            reputation: text("reputation", &self.reputation)?,
            technical_impact: items("technical_impact", &self.technical_impact)?,
            slo: text("slo", &self.slo)?,
            restore_point: text("restore_point", &self.restore_point)?,
            responses,
            measures,
            lessons: Lessons {
                good: items("lessons.good", &self.lessons.good)?,
                bad: items("lessons.bad", &self.lessons.bad)?,
                try_next: items("lessons.try", &self.lessons.try_next)?,
            },
            action_items,
            individuals_notice: text("individuals_notice", &self.individuals_notice)?,
            publication: text("publication", &self.publication)?,
            addressees: line("addressees", &self.addressees)?,
            affiliation: line("affiliation", &self.affiliation)?,
            appendix: items("appendix", &self.appendix)?,
        })
    }
}

impl Postmortem {
    /// Gives each action item without an id a fresh one from `next_id`.
    pub fn assign_item_ids(&mut self, mut next_id: impl FnMut() -> Uuid) {
        for a in &mut self.action_items {
            if a.id.is_none() {
                a.id = Some(next_id());
            }
        }
    }
}

/// Something that keeps a postmortem from becoming final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

/// Words that ask people to try harder instead of changing anything.
const EXHORTATIONS: &[&str] = &[
    "徹底",
    "注意する",
    "注意を払う",
    "注意喚起",
    "心がけ",
    "心掛け",
    "意識する",
    "意識を高め",
    "意識向上",
    "気をつけ",
    "気を付け",
    "留意する",
    "肝に銘じ",
    "再認識",
    "努める",
    "努力する",
    "慎重に",
    "be careful",
    "be more careful",
    "pay attention",
    "pay more attention",
    "keep in mind",
    "be aware",
    "raise awareness",
    "be vigilant",
    "take care",
    "try harder",
    "double-check carefully",
    "remind everyone",
    "remind staff",
];

/// Words that name a mechanism: something built, set, required or removed.
const MECHANISMS: &[&str] = &[
    "導入",
    "自動",
    "追加",
    "設定",
    "必須化",
    "必須",
    "禁止",
    "実装",
    "作成",
    "変更",
    "廃止",
    "制限",
    "監視",
    "アラート",
    "テスト",
    "lint",
    "ci",
    "チェックリスト",
    "承認制",
    "ブロック",
    "訓練",
    "手順書",
    "改訂",
    "置き換",
    "移行",
    "automate",
    "automatic",
    "add ",
    "implement",
    "introduce",
    "install",
    "require",
    "enforce",
    "alert",
    "monitor",
    "test",
    "block",
    "restrict",
    "remove",
    "configure",
    "deploy",
    "migrate",
    "checklist",
    "drill",
    "runbook",
];

/// Why a measure's text only exhorts, if it does: it asks for care or
/// awareness and names no mechanism that would change the outcome.
pub fn exhortation(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let word = EXHORTATIONS.iter().find(|w| lower.contains(*w))?;
    if MECHANISMS.iter().any(|m| contains_word(&lower, m)) {
        return None;
    }
    Some(format!(
        "「{word}」 only exhorts (精神論): name the mechanism that prevents a recurrence — what is built, configured, required or removed"
    ))
}

/// `needle` in `haystack`; ASCII needles must stand as words, so `ci` is
/// not found in `decide`.
fn contains_word(haystack: &str, needle: &str) -> bool {
    if !needle.is_ascii() || needle.ends_with(' ') {
        return haystack.contains(needle);
    }
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        boundary(before) && boundary(after)
    })
}

/// What keeps `pm` from becoming final: measures without an owner or a
/// due date, measures that only exhort, and a report with no cause or no
/// measure at all.
pub fn readiness(pm: &Postmortem) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |field: String, code: &'static str, message: String| {
        out.push(Problem {
            field,
            code,
            message,
        })
    };
    if pm.direct_cause.trim().is_empty() && pm.root_causes.is_empty() {
        add(
            "direct_cause".into(),
            "cause_missing",
            "a final report states the direct cause or a root cause".into(),
        );
    }
    if pm.measures.is_empty() {
        add(
            "measures".into(),
            "measures_missing",
            "a final report lists at least one prevention measure".into(),
        );
    }
    for (i, m) in pm.measures.iter().enumerate() {
        if m.owner.is_none() {
            add(
                format!("measures[{i}].owner"),
                "owner_missing",
                "each prevention measure names its owner (精神論不可)".into(),
            );
        }
        if m.due.is_none() {
            add(
                format!("measures[{i}].due"),
                "due_missing",
                "each prevention measure has a due date (精神論不可)".into(),
            );
        }
        if let Some(reason) = exhortation(&m.text) {
            add(format!("measures[{i}].text"), "exhortation_only", reason);
        }
    }
    out
}

/// Where a postmortem stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    Draft,
    /// Some approvals given, not all.
    InReview,
    /// Every step approved; frozen as a version.
    Final,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Draft => "draft",
            Stage::InReview => "in_review",
            Stage::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        [Stage::Draft, Stage::InReview, Stage::Final]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// One step of the approval chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStep {
    pub key: String,
    pub label_ja: String,
    pub label_en: String,
    /// Login names who may approve this step; empty = any administrator.
    #[serde(default)]
    pub approvers: Vec<String>,
}

/// Who approves a postmortem, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalChain {
    pub steps: Vec<ApprovalStep>,
    /// Added after `steps` for incidents of the security categories.
    #[serde(default)]
    pub security_steps: Vec<ApprovalStep>,
    #[serde(default)]
    pub security_categories: Vec<String>,
    /// One person approves at most one step.
    #[serde(default = "yes")]
    pub distinct_approvers: bool,
}

fn yes() -> bool {
    true
}

fn step(key: &str, ja: &str, en: &str) -> ApprovalStep {
    ApprovalStep {
        key: key.into(),
        label_ja: ja.into(),
        label_en: en.into(),
        approvers: Vec::new(),
    }
}

impl Default for ApprovalChain {
    /// The DB incident report's chain (incident manager → tech lead → CTO),
    /// with the CISO after them for leaks and unauthorised access.
    fn default() -> Self {
        ApprovalChain {
            steps: vec![
                step("incident_manager", "インシデント管理者", "Incident manager"),
                step("tech_lead", "テックリード", "Tech lead"),
                step("cto", "CTO", "CTO"),
            ],
            security_steps: vec![step("ciso", "CISO", "CISO")],
            security_categories: vec!["information_leak".into(), "unauthorized_access".into()],
            distinct_approvers: true,
        }
    }
}

/// An approval given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub step: String,
    pub approver: UserRef,
    pub at: Timestamp,
    #[serde(default)]
    pub comment: String,
}

/// Why an approval is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRefused {
    /// Nothing is left to approve.
    AlreadyFinal,
    /// Another step comes first.
    OutOfOrder {
        next: String,
    },
    UnknownStep,
    /// The approver is not one of the step's.
    NotApprover {
        step: String,
    },
    /// The approver already approved another step.
    SameApprover {
        step: String,
    },
    /// The report is not ready to be final.
    NotReady(Vec<Problem>),
}

impl ApprovalChain {
    /// The steps an incident of `category` goes through.
    pub fn steps_for(&self, category: &str) -> Vec<&ApprovalStep> {
        let security = self.security_categories.iter().any(|c| c == category);
        self.steps
            .iter()
            .chain(self.security_steps.iter().filter(|_| security))
            .collect()
    }

    /// Checks keys are present and unique.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("the approval chain needs at least one step".into());
        }
        let mut seen = std::collections::HashSet::new();
        for s in self.steps.iter().chain(&self.security_steps) {
            if s.key.is_empty() || !seen.insert(s.key.as_str()) {
                return Err(format!(
                    "approval step key {:?} is empty or repeated",
                    s.key
                ));
            }
        }
        Ok(())
    }

    /// Records `approver`'s approval of `step_key` if the chain allows it,
    /// and returns the stage the postmortem reaches.
    #[allow(clippy::too_many_arguments)]
    pub fn approve(
        &self,
        category: &str,
        given: &mut Vec<Approval>,
        pm: &Postmortem,
        step_key: &str,
        approver: &UserRef,
        approver_is_admin: bool,
        comment: String,
        now: Timestamp,
    ) -> Result<Stage, ApprovalRefused> {
        let steps = self.steps_for(category);
        let next = steps
            .iter()
            .find(|s| !given.iter().any(|a| a.step == s.key))
            .ok_or(ApprovalRefused::AlreadyFinal)?;
        let step = steps
            .iter()
            .find(|s| s.key == step_key)
            .ok_or(ApprovalRefused::UnknownStep)?;
        if step.key != next.key {
            return Err(ApprovalRefused::OutOfOrder {
                next: next.key.clone(),
            });
        }
        let allowed = if step.approvers.is_empty() {
            approver_is_admin
        } else {
            step.approvers.contains(&approver.name)
        };
        if !allowed {
            return Err(ApprovalRefused::NotApprover {
                step: step.key.clone(),
            });
        }
        if let Some(earlier) = given
            .iter()
            .find(|a| self.distinct_approvers && a.approver.id == approver.id)
        {
            return Err(ApprovalRefused::SameApprover {
                step: earlier.step.clone(),
            });
        }
        let problems = readiness(pm);
        if !problems.is_empty() {
            return Err(ApprovalRefused::NotReady(problems));
        }
        given.push(Approval {
            step: step.key.clone(),
            approver: approver.clone(),
            at: now,
            comment,
        });
        Ok(if given.len() == steps.len() {
            Stage::Final
        } else {
            Stage::InReview
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserRef {
        UserRef {
            id: Uuid::now_v7(),
            name: name.into(),
        }
    }

    fn measure(text: &str) -> Measure {
        Measure {
            term: Term::Short,
            text: text.into(),
            owner: Some(user("sato")),
            due: Some("2026-12-15".parse().unwrap()),
            status: ItemStatus::NotStarted,
        }
    }

    fn ready() -> Postmortem {
        Postmortem {
            direct_cause: "WHERE句のないDELETE".into(),
            measures: vec![measure("WHERE句必須Lint（sqlfluff）を導入する")],
            ..Default::default()
        }
    }

    #[test]
    fn exhortation_is_flagged_with_a_reason() {
        for text in [
            "本番作業時の確認を徹底する",
            "今後は注意する",
            "常に意識する",
            "細心の注意を払うよう心がける",
            "Everyone should be more careful with production",
            "Pay attention to the migration output",
        ] {
            let reason = exhortation(text).unwrap_or_else(|| panic!("not flagged: {text}"));
            assert!(reason.contains("精神論"), "{reason}");
        }
        for text in [
            "WHERE句必須Lintを導入し、確認を徹底する",
            "本番DB直接操作の原則禁止（必ずマイグレーションPR経由）",
            "Add a CI check that blocks DELETE without WHERE",
            "接続プール監視アラート追加",
            "We decide carefully",
        ] {
            assert_eq!(exhortation(text), None, "{text}");
        }
    }

    #[test]
    fn readiness_names_each_gap() {
        assert!(readiness(&ready()).is_empty());
        let pm = Postmortem {
            measures: vec![
                Measure {
                    owner: None,
                    due: None,
                    ..measure("手順を徹底する")
                },
                measure("監視を追加する"),
            ],
            ..Default::default()
        };
        let codes: Vec<_> = readiness(&pm)
            .into_iter()
            .map(|p| (p.field, p.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("direct_cause".to_string(), "cause_missing"),
                ("measures[0].owner".to_string(), "owner_missing"),
                ("measures[0].due".to_string(), "due_missing"),
                ("measures[0].text".to_string(), "exhortation_only"),
            ]
        );
        let empty = readiness(&Postmortem::default());
        assert!(empty.iter().any(|p| p.code == "measures_missing"));
    }

    #[test]
    fn approvals_follow_the_chain() {
        let chain = ApprovalChain::default();
        let pm = ready();
        let (manager, lead, cto, ciso) = (user("m"), user("l"), user("c"), user("s"));
        let mut given = Vec::new();
        let now = Timestamp::UNIX_EPOCH;
        let approve = |given: &mut Vec<Approval>, step: &str, who: &UserRef| {
            chain.approve(
                "unauthorized_access",
                given,
                &pm,
                step,
                who,
                true,
                String::new(),
                now,
            )
        };
        assert_eq!(
            approve(&mut given, "cto", &cto),
            Err(ApprovalRefused::OutOfOrder {
                next: "incident_manager".into()
            })
        );
        assert_eq!(
            approve(&mut given, "incident_manager", &manager),
            Ok(Stage::InReview)
        );
        assert_eq!(
            approve(&mut given, "tech_lead", &manager),
            Err(ApprovalRefused::SameApprover {
                step: "incident_manager".into()
            })
        );
        assert_eq!(approve(&mut given, "tech_lead", &lead), Ok(Stage::InReview));
        assert_eq!(approve(&mut given, "cto", &cto), Ok(Stage::InReview));
        assert_eq!(approve(&mut given, "ciso", &ciso), Ok(Stage::Final));
        assert_eq!(
            approve(&mut given, "ciso", &user("x")),
            Err(ApprovalRefused::AlreadyFinal)
        );
        // Outside the security categories the chain ends at the CTO.
        assert_eq!(chain.steps_for("database").len(), 3);
        assert_eq!(chain.steps_for("information_leak").len(), 4);
    }

    #[test]
    fn approvers_are_checked_and_readiness_is_required() {
        let mut chain = ApprovalChain::default();
        chain.steps[0].approvers = vec!["yamada".into()];
        let now = Timestamp::UNIX_EPOCH;
        let mut given = Vec::new();
        let refused = chain.approve(
            "database",
            &mut given,
            &ready(),
            "incident_manager",
            &user("tanaka"),
            true,
            String::new(),
            now,
        );
        assert_eq!(
            refused,
            Err(ApprovalRefused::NotApprover {
                step: "incident_manager".into()
            })
        );
        let unready = chain.approve(
            "database",
            &mut given,
            &Postmortem::default(),
            "incident_manager",
            &user("yamada"),
            false,
            String::new(),
            now,
        );
        assert!(matches!(unready, Err(ApprovalRefused::NotReady(p)) if !p.is_empty()));
        assert!(given.is_empty());
        // An empty approver list means administrators.
        let mut chain = ApprovalChain::default();
        chain.steps.truncate(1);
        assert!(matches!(
            chain.approve(
                "database",
                &mut given,
                &ready(),
                "incident_manager",
                &user("a"),
                false,
                String::new(),
                now
            ),
            Err(ApprovalRefused::NotApprover { .. })
        ));
    }

    #[test]
    fn validation_names_the_field() {
        let long = "x".repeat(ITEM_MAX + 1);
        let pm: Postmortem<String> = Postmortem {
            contributing_factors: vec!["ok".into(), long],
            ..Default::default()
        };
        assert_eq!(pm.validated().unwrap_err().field, "contributing_factors[1]");
        let pm: Postmortem<String> = Postmortem {
            measures: vec![Measure {
                term: Term::Mid,
                text: " ".into(),
                owner: None,
                due: None,
                status: ItemStatus::Done,
            }],
            ..Default::default()
        };
        assert_eq!(pm.validated().unwrap_err().field, "measures[0].text");
        let pm: Postmortem<String> = Postmortem {
            addressees: "a\u{0}b".into(),
            ..Default::default()
        };
        assert_eq!(pm.validated().unwrap_err().code, "invalid_characters");
    }

    #[test]
    fn statuses_accept_the_japanese_labels() {
        let s: ItemStatus = serde_json::from_str("\"進行中\"").unwrap();
        assert_eq!(s, ItemStatus::InProgress);
        assert_eq!(ItemStatus::parse("完了"), Some(ItemStatus::Done));
        let pm: Result<Postmortem<String>, _> = serde_json::from_str(r#"{"nonsense":1}"#);
        assert!(pm.is_err());
    }
}
