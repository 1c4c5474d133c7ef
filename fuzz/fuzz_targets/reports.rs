//! Reports from what people type: a declaration, timeline notes and a
//! postmortem, each read by the server's JSON parser and checked as the
//! app checks them, then one report built and rendered to Markdown and
//! HTML (PDF needs a font loaded and is left to the renderer's tests).
//!
//! The first byte picks the report, its language, the postmortem's stage
//! and the gravity; the rest is `{"incident": …, "notes": […],
//! "postmortem": …}`.
#![no_main]

use std::sync::LazyLock;

use jiff::Timestamp;
use kiroku_app::{Config, DeclareIncident, UserSpec};
use kiroku_domain::postmortem::{Postmortem, Stage, readiness};
use kiroku_domain::validate::{self, TEXT_MAX};
use kiroku_domain::{TimelineEntry, TimelineKind, UserRef};
use kiroku_report::{Gravity, Kind, Lang, Pattern, ReportInput};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed {
    incident: DeclareIncident,
    #[serde(default)]
    notes: Vec<String>,
    #[serde(default)]
    postmortem: Postmortem<UserSpec>,
}

/// Every 始末書 pattern, then every other kind.
const REPORTS: [(Kind, Option<Pattern>); 9] = [
    (Kind::Shimatsusho, Some(Pattern::ALL[0])),
    (Kind::Shimatsusho, Some(Pattern::ALL[1])),
    (Kind::Shimatsusho, Some(Pattern::ALL[2])),
    (Kind::Shimatsusho, Some(Pattern::ALL[3])),
    (Kind::Shimatsusho, Some(Pattern::ALL[4])),
    (Kind::DbIncident, None),
    (Kind::Postmortem, None),
    (Kind::AppiReport, None),
    (Kind::GdprNotification, None),
];

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::with_zone(jiff::tz::TimeZone::get("Asia/Tokyo").expect("the default zone"))
});

/// A frozen version's SHA-256, shown on final reports.
const FINAL_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

const NOW: Timestamp = Timestamp::constant(1_795_000_000, 0);

/// Names stand for accounts; the app would look them up.
fn person(name: String) -> UserRef {
    UserRef {
        id: Uuid::nil(),
        name,
    }
}

/// The value a check accepted; a refusal must name its field.
fn accepted<T>(outcome: Result<T, kiroku_domain::ValidationError>) -> Option<T> {
    outcome.map_err(|e| kiroku_fuzz::check_refusal(&e)).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let typed: Typed = match kiroku_server::parse_json(body) {
        Ok(typed) => typed,
        Err(e) => {
            assert!(e.body.code == "malformed_json" || e.body.field.is_some());
            return;
        }
    };
    let config = &*CONFIG;
    let mut draft = typed.incident;
    let commander = draft.commander.take().map(person);
    let assignees = std::mem::take(&mut draft.assignees)
        .into_iter()
        .map(person)
        .collect();
    let reporter = draft.reporter.take().map(person);
    let draft = draft.with_people(commander, assignees, reporter);
    let Some(draft) = accepted(draft.validated(&config.rules, NOW)) else {
        return;
    };
    let incident = draft.declare(&config.rules, Uuid::nil(), "SRV-2026-0001".into(), NOW);
    let mut timeline = Vec::with_capacity(typed.notes.len());
    for note in &typed.notes {
        let Some(body) = accepted(validate::text("body", note, TEXT_MAX, true)) else {
            return;
        };
        timeline.push(TimelineEntry {
            id: Uuid::nil(),
            incident_id: incident.id,
            at: NOW,
            kind: TimelineKind::Note,
            actor: incident.reporter.clone(),
            body,
            data: serde_json::json!({}),
        });
    }
    let Some(postmortem) = accepted(typed.postmortem.validated()) else {
        return;
    };
    let Ok(postmortem) =
        postmortem.try_map_people(|_, name| Ok::<_, std::convert::Infallible>(person(name)));

    let selector = usize::from(selector);
    let (kind, pattern) = REPORTS[selector % REPORTS.len()];
    let lang = [Lang::Ja, Lang::En][selector / 9 % 2];
    let stage = [Stage::Draft, Stage::InReview, Stage::Final][selector / 18 % 3];
    let gravity = [Gravity::Critical, Gravity::Major, Gravity::Minor][selector / 54 % 3];
    let problems = readiness(&postmortem);
    let input = ReportInput {
        incident: &incident,
        category_ja: &incident.category,
        category_en: &incident.category,
        gravity,
        timeline: &timeline,
        postmortem: &postmortem,
        stage,
        version: 1,
        steps: config.reports.approvals.steps_for(&incident.category),
        approvals: &[],
        final_hash: (stage == Stage::Final).then_some(FINAL_HASH),
        problems: &problems,
        obligations: &[],
        zone: &config.time_zone,
        issued_at: NOW,
        default_addressees: &config.reports.addressees,
        western_dates: kind == Kind::DbIncident,
        contact: &config.reports.contact,
    };
    let doc = kiroku_report::build(kind, &input, pattern, lang);
    kiroku_fuzz::check_html(&kiroku_report::html::render(&doc));
    kiroku_fuzz::check_markdown(&kiroku_report::markdown::render(&doc));
});
