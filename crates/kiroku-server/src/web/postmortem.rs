//! The postmortem editor and its approval flow. Lists are edited as lines
//! of text (a measure is `term | text | owner | due | status`), parsed here
//! and checked by the app like any API save.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kiroku_app::{AppError, ApprovePostmortem, Caller, PostmortemView, SavePostmortem};
use kiroku_domain::postmortem::{
    ActionItem, CauseKind, ItemStatus, Lessons, Measure, Postmortem, RootCause, Term,
};
use kiroku_store::IncidentKey;
use serde::Deserialize;

use super::pages::{PageQuery, posted};
use super::{Chrome, error_page, page, signed_in};
use crate::AppState;

/// The editable text of a postmortem, as the form holds it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PostmortemForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    detection: String,
    #[serde(default)]
    direct_cause: String,
    #[serde(default)]
    root_causes: String,
    #[serde(default)]
    contributing_factors: String,
    #[serde(default)]
    five_whys: String,
    #[serde(default)]
    damage: String,
    #[serde(default)]
    measures: String,
    #[serde(default)]
    good: String,
    #[serde(default)]
    bad: String,
    #[serde(default)]
    try_next: String,
    #[serde(default)]
    action_items: String,
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn cells(line: &str) -> Vec<String> {
    line.split('|').map(|c| c.trim().to_string()).collect()
}

fn bad(field: &str, n: usize, message: &str) -> (String, String) {
    (field.to_string(), format!("line {n}: {message}"))
}

fn status_of(field: &str, n: usize, raw: Option<&String>) -> Result<ItemStatus, (String, String)> {
    match raw.map(String::as_str).filter(|s| !s.is_empty()) {
        None => Ok(ItemStatus::NotStarted),
        Some(s) => ItemStatus::parse(s).ok_or_else(|| {
            bad(
                field,
                n,
                "status must be 未着手 / 進行中 / 完了 (or not_started / in_progress / done)",
            )
        }),
    }
}

fn due_of(
    field: &str,
    n: usize,
    raw: Option<&String>,
) -> Result<Option<jiff::civil::Date>, (String, String)> {
    match raw.map(String::as_str).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(d) => d
            .parse()
            .map(Some)
            .map_err(|_| bad(field, n, "the due date must read YYYY-MM-DD")),
    }
}

fn owner_of(raw: Option<&String>) -> Option<String> {
    raw.filter(|o| !o.is_empty()).cloned()
}

impl PostmortemForm {
    /// The postmortem the form describes; action items keep the ids of
    /// those with the same title, so their history stays theirs.
    fn parse(&self, before: &Postmortem) -> Result<Postmortem<String>, (String, String)> {
        let root_causes = lines(&self.root_causes)
            .into_iter()
            .map(|l| {
                let (kind, text) = match l.split_once(':') {
                    Some((k, t)) => match k.trim() {
                        "process" | "プロセス" => (CauseKind::Process, t.trim().to_string()),
                        "technical" | "技術" => (CauseKind::Technical, t.trim().to_string()),
                        "human" | "人的" => (CauseKind::Human, t.trim().to_string()),
                        _ => (CauseKind::Other, l.clone()),
                    },
                    None => (CauseKind::Other, l.clone()),
                };
                RootCause { kind, text }
            })
            .collect();
        let mut measures = Vec::new();
        for (i, l) in lines(&self.measures).iter().enumerate() {
            let c = cells(l);
            let n = i + 1;
            let term = match c[0].as_str() {
                "short" | "短期" => Term::Short,
                "mid" | "中期" => Term::Mid,
                "long" | "長期" => Term::Long,
                _ => {
                    return Err(bad(
                        "measures",
                        n,
                        "start with short / mid / long (短期 / 中期 / 長期)",
                    ));
                }
            };
            measures.push(Measure {
                term,
                text: c.get(1).cloned().unwrap_or_default(),
                owner: owner_of(c.get(2)),
                due: due_of("measures", n, c.get(3))?,
                status: status_of("measures", n, c.get(4))?,
            });
        }
        let mut action_items = Vec::new();
        for (i, l) in lines(&self.action_items).iter().enumerate() {
            let c = cells(l);
            let n = i + 1;
            let title = c[0].clone();
            action_items.push(ActionItem {
                id: before
                    .action_items
                    .iter()
                    .find(|a| a.title == title)
                    .and_then(|a| a.id),
                title,
                owner: owner_of(c.get(1)),
                due: due_of("action_items", n, c.get(2))?,
                status: status_of("action_items", n, c.get(3))?,
            });
        }
        Ok(Postmortem {
            summary: self.summary.clone(),
            detection: self.detection.clone(),
            direct_cause: self.direct_cause.clone(),
            root_causes,
            contributing_factors: lines(&self.contributing_factors),
            five_whys: lines(&self.five_whys),
            damage: self.damage.clone(),
            measures,
            lessons: Lessons {
                good: lines(&self.good),
                bad: lines(&self.bad),
                try_next: lines(&self.try_next),
            },
            action_items,
            ..before
                .clone()
                .try_map_people(|_, u| Ok::<_, ()>(u.name))
                .unwrap_or_default()
        })
    }

    /// The form filled from a saved postmortem.
    fn of(view: &PostmortemView) -> PostmortemForm {
        let pm = &view.postmortem;
        let who = |o: &Option<kiroku_domain::UserRef>| {
            o.as_ref().map(|u| u.name.clone()).unwrap_or_default()
        };
        let date = |d: &Option<jiff::civil::Date>| d.map(|d| d.to_string()).unwrap_or_default();
        PostmortemForm {
            version: view.version,
            summary: pm.summary.clone(),
            detection: pm.detection.clone(),
            direct_cause: pm.direct_cause.clone(),
            root_causes: pm
                .root_causes
                .iter()
                .map(|c| {
                    let k = match c.kind {
                        CauseKind::Process => "process",
                        CauseKind::Technical => "technical",
                        CauseKind::Human => "human",
                        CauseKind::Other => "other",
                    };
                    format!("{k}: {}", c.text)
                })
                .collect::<Vec<_>>()
                .join("\n"),
            contributing_factors: pm.contributing_factors.join("\n"),
            five_whys: pm.five_whys.join("\n"),
            damage: pm.damage.clone(),
            measures: pm
                .measures
                .iter()
                .map(|m| {
                    let t = match m.term {
                        Term::Short => "short",
                        Term::Mid => "mid",
                        Term::Long => "long",
                    };
                    format!(
                        "{t} | {} | {} | {} | {}",
                        m.text,
                        who(&m.owner),
                        date(&m.due),
                        m.status.label_ja()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            good: pm.lessons.good.join("\n"),
            bad: pm.lessons.bad.join("\n"),
            try_next: pm.lessons.try_next.join("\n"),
            action_items: pm
                .action_items
                .iter()
                .map(|a| {
                    format!(
                        "{} | {} | {} | {}",
                        a.title,
                        who(&a.owner),
                        date(&a.due),
                        a.status.label_ja()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Template)]
#[template(path = "postmortem.html")]
struct PostmortemPage {
    c: Chrome,
    number: String,
    view: PostmortemView,
    f: PostmortemForm,
    /// The chain: label, approver, when, comment.
    steps: Vec<(String, String, String, String)>,
    /// The text areas: name, label, text, rows.
    fields: Vec<(&'static str, &'static str, String, u8)>,
    next_step: Option<String>,
    error_field: String,
    error: String,
    problems: Vec<String>,
}

/// What a page shows beside the saved postmortem: the form as sent, the
/// error at its field, the readiness problems an approval met.
#[derive(Default)]
struct Shown {
    form: Option<PostmortemForm>,
    error: Option<(String, String)>,
    problems: Vec<String>,
}

async fn render(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
    key: &str,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let Shown {
        form,
        error,
        problems,
    } = shown;
    let view = match s.app.postmortem(caller, &IncidentKey::parse(key)).await {
        Ok(v) => v,
        Err(e) => return error_page(c, e),
    };
    let next_step = view
        .steps
        .iter()
        .find(|st| st.approval.is_none())
        .map(|st| st.key.clone());
    let f = form.unwrap_or_else(|| PostmortemForm::of(&view));
    let zone = &s.app.config().time_zone;
    let steps = view
        .steps
        .iter()
        .map(|st| {
            let label = if c.lang == "en" {
                &st.label_en
            } else {
                &st.label_ja
            };
            match &st.approval {
                Some(a) => (
                    label.clone(),
                    a.approver.name.clone(),
                    super::local(zone, a.at),
                    a.comment.clone(),
                ),
                None => (label.clone(), String::new(), String::new(), String::new()),
            }
        })
        .collect();
    let w = c.w;
    let fields = vec![
        ("summary", w.summary, f.summary.clone(), 3),
        ("detection", w.detection, f.detection.clone(), 2),
        ("direct_cause", w.direct_cause, f.direct_cause.clone(), 2),
        ("root_causes", w.root_causes, f.root_causes.clone(), 3),
        (
            "contributing_factors",
            w.contributing,
            f.contributing_factors.clone(),
            3,
        ),
        ("five_whys", w.five_whys, f.five_whys.clone(), 3),
        ("damage", w.damage, f.damage.clone(), 2),
        ("measures", w.measures, f.measures.clone(), 4),
        ("good", "Good", f.good.clone(), 2),
        ("bad", "Bad", f.bad.clone(), 2),
        ("try_next", "Try", f.try_next.clone(), 2),
        ("action_items", w.action_items, f.action_items.clone(), 3),
    ];
    let (error_field, error) = error.unwrap_or_default();
    let problems = if problems.is_empty() {
        view.problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    } else {
        problems
    };
    page(
        status,
        &PostmortemPage {
            number: view.incident_number.clone(),
            c,
            view,
            f,
            steps,
            fields,
            next_step,
            error_field,
            error,
            problems,
        },
    )
}

pub(crate) async fn show(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let here = format!("/incidents/{key}/postmortem");
    match signed_in(&caller, &headers, q.lang.as_deref(), &here) {
        Ok(c) => render(&s, &caller, c, &key, Shown::default(), StatusCode::OK).await,
        Err(r) => *r,
    }
}

pub(crate) async fn save(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, PostmortemForm) = match posted(&caller, &headers, &key, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let before = match s.app.postmortem(&caller, &IncidentKey::parse(&key)).await {
        Ok(v) => v.postmortem,
        Err(e) => return error_page(c, e),
    };
    // What goes wrong keeps the form as sent, with the error at its field.
    let (error, status) = match f.parse(&before) {
        Err(e) => (e, StatusCode::UNPROCESSABLE_ENTITY),
        Ok(draft) => {
            let saved = s
                .app
                .save_postmortem(
                    &caller,
                    &IncidentKey::parse(&key),
                    SavePostmortem {
                        version: f.version,
                        postmortem: draft,
                    },
                )
                .await;
            match saved {
                Ok(_) => {
                    return Redirect::to(&format!("/incidents/{key}/postmortem")).into_response();
                }
                Err(AppError::Invalid(v)) => {
                    let field = v.field.split(['[', '.']).next().unwrap_or("").to_string();
                    ((field, v.to_string()), StatusCode::UNPROCESSABLE_ENTITY)
                }
                Err(AppError::VersionConflict { .. }) => (
                    ("version".into(), c.w.stale.to_string()),
                    StatusCode::CONFLICT,
                ),
                Err(e) => return error_page(c, e),
            }
        }
    };
    let shown = Shown {
        form: Some(f),
        error: Some(error),
        ..Shown::default()
    };
    render(&s, &caller, c, &key, shown, status).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApproveForm {
    step: String,
    version: i64,
    #[serde(default)]
    comment: String,
}

pub(crate) async fn approve(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, ApproveForm) = match posted(&caller, &headers, &key, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let approved = s
        .app
        .approve_postmortem(
            &caller,
            &IncidentKey::parse(&key),
            ApprovePostmortem {
                step: f.step,
                version: f.version,
                comment: f.comment,
            },
        )
        .await;
    let (message, problems) = match approved {
        Ok(_) => return Redirect::to(&format!("/incidents/{key}/postmortem")).into_response(),
        Err(AppError::Refused {
            message, problems, ..
        }) => (message, problems),
        Err(AppError::VersionConflict { .. }) => (c.w.stale.to_string(), Vec::new()),
        Err(e) => return error_page(c, e),
    };
    let shown = Shown {
        error: Some(("approval".to_string(), message)),
        problems: problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect(),
        ..Shown::default()
    };
    render(&s, &caller, c, &key, shown, StatusCode::CONFLICT).await
}
