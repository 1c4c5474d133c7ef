//! The signed-in pages: log in, the dashboard, incidents (list, declare,
//! the incident with its actions, notes and live timeline).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kiroku_app::{AppError, Caller, DeclareIncident, ListActionItems, ListAlerts, ListIncidents};
use kiroku_domain::alert::{AlertStatus, Quiet};
use kiroku_domain::{
    Incident, Status, TimelineEntry, TimelineKind, Transition, status_change_text,
};
use kiroku_store::IncidentKey;
use serde::Deserialize;

use super::{
    Chrome, LANG_COOKIE, LOGIN_CSRF_COOKIE, csrf_ok, error_page, local, page, public, signed_in,
};
use crate::AppState;

/// Query parameters every page takes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    pub lang: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub q: Option<String>,
    pub cursor: Option<String>,
    /// The alerts page's service, by name or id.
    pub service: Option<String>,
}

/// Remembers a language asked for by `?lang=`, for the next pages.
fn remember_lang(mut res: Response, q: &PageQuery) -> Response {
    if let Some(l) = q.lang.as_deref().filter(|l| matches!(*l, "ja" | "en"))
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={l}; Path=/; SameSite=Lax; Max-Age=31536000"
        ))
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| AppError::invalid("form", "malformed", e.to_string()))
}

// ---------------------------------------------------------------- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    name: String,
    error: Option<String>,
    token: String,
}

fn login_page(c: Chrome, name: String, error: Option<String>, status: StatusCode) -> Response {
    let mut raw = [0u8; 16];
    let token = match getrandom::fill(&mut raw) {
        Ok(()) => kiroku_audit::hex::encode(&raw),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let mut res = page(
        status,
        &LoginPage {
            c,
            name,
            error,
            token: token.clone(),
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn login_form(headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let c = public(&headers, q.lang.as_deref(), "/login");
    remember_lang(login_page(c, String::new(), None, StatusCode::OK), &q)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    totp_code: String,
    token: String,
}

pub(crate) async fn login(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let c = public(&headers, None, "/login");
    let f: LoginForm = match form(&body) {
        Ok(f) => f,
        Err(e) => return error_page(c, e),
    };
    let expected = super::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if expected.is_empty() || expected != f.token {
        let message = c.w.stale.to_string();
        return login_page(c, f.name, Some(message), StatusCode::FORBIDDEN);
    }
    let request = kiroku_app::LoginRequest {
        name: f.name.clone(),
        password: f.password,
        totp_code: Some(f.totp_code).filter(|t| !t.trim().is_empty()),
    };
    match s.app.login(&caller.source, request).await {
        Ok(session) => {
            let max_age = s.app.config().auth.session_ttl.as_secs();
            let mut res = Redirect::to("/").into_response();
            if let Some(v) = crate::handlers::auth::session_cookie(&s, &session.secret, max_age) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => {
            let status = match e {
                AppError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_page(c, f.name, Some(e.to_string()), status)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ok = form::<CsrfForm>(&body).is_ok_and(|f| csrf_ok(&headers, &f.csrf));
    if ok {
        let _ = s.app.logout(&caller).await;
    }
    let mut res = Redirect::to("/login").into_response();
    if ok && let Some(v) = crate::handlers::auth::session_cookie(&s, "", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

// ------------------------------------------------------------ dashboard

struct Countdown {
    due_iso: String,
    text: String,
    overdue: bool,
}

fn countdown(w: &super::Words, due: Option<Timestamp>, now: Timestamp) -> Option<Countdown> {
    let due = due?;
    let minutes = due.duration_since(now).as_mins();
    let overdue = minutes < 0;
    let m = minutes.abs();
    let amount = if m >= 60 {
        format!("{}h{:02}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    };
    Some(Countdown {
        due_iso: due.to_string(),
        text: if overdue {
            format!("{amount} {}", w.overdue)
        } else {
            amount
        },
        overdue,
    })
}

struct Row {
    number: String,
    title: String,
    severity: String,
    status: &'static str,
    detected: String,
    detected_iso: String,
    countdown: Option<Countdown>,
}

fn row(i: &Incident, zone: &TimeZone, w: &super::Words, now: Timestamp) -> Row {
    let started = i.times.response_started_at.or(i.times.acknowledged_at);
    Row {
        number: i.number.clone(),
        title: i.title.clone(),
        severity: i.severity.clone(),
        status: i.status.as_str(),
        detected: local(zone, i.times.detected_at),
        detected_iso: i.times.detected_at.to_string(),
        countdown: if started.is_none() {
            countdown(w, i.response_due_at, now)
        } else {
            None
        },
    }
}

struct SeverityGroup {
    severity: String,
    rows: Vec<Row>,
}

struct Line {
    left: String,
    right: String,
    href: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    c: Chrome,
    groups: Vec<SeverityGroup>,
    oncall: Vec<Line>,
    alerts: Vec<Line>,
    security: Vec<Line>,
    obligations: Vec<Line>,
    actions: Vec<Line>,
}

/// An alert as a dashboard line: its summary and when it was last seen.
fn alert_line(a: kiroku_domain::alert::Alert, zone: &TimeZone) -> Line {
    Line {
        left: a.summary,
        right: local(zone, a.last_seen_at),
        href: String::new(),
    }
}

/// A section the role may not see is left out, not an error.
fn allowed<T: Default>(r: Result<T, AppError>) -> Result<T, AppError> {
    match r {
        Err(AppError::Forbidden { .. }) => Ok(T::default()),
        other => other,
    }
}

pub(crate) async fn dashboard(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let c = match signed_in(&caller, &headers, q.lang.as_deref(), "/") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match dashboard_data(&s, &caller, c).await {
        Ok(d) => remember_lang(page(StatusCode::OK, &d), &q),
        Err((c, e)) => error_page(c, e),
    }
}

/// The dashboard, or the chrome back with the error to show in it.
async fn dashboard_data(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
) -> Result<Dashboard, (Chrome, AppError)> {
    match dashboard_sections(s, caller, &c).await {
        Ok(sections) => Ok(sections(c)),
        Err(e) => Err((c, e)),
    }
}

async fn dashboard_sections(
    s: &AppState,
    caller: &Caller,
    c: &Chrome,
) -> Result<impl FnOnce(Chrome) -> Dashboard + use<>, AppError> {
    let app = &s.app;
    let zone = &app.config().time_zone;
    let now = Timestamp::now();
    let open = app
        .list_incidents(
            caller,
            ListIncidents {
                statuses: ["triggered", "acknowledged", "investigating", "mitigated"]
                    .map(String::from)
                    .to_vec(),
                limit: Some(200),
                ..ListIncidents::default()
            },
        )
        .await?;
    let groups = app
        .config()
        .rules
        .severities
        .levels
        .iter()
        .map(|l| SeverityGroup {
            severity: l.key.clone(),
            rows: open
                .items
                .iter()
                .filter(|i| i.severity == l.key)
                .map(|i| row(i, zone, c.w, now))
                .collect(),
        })
        .filter(|g| !g.rows.is_empty())
        .collect();
    let mut oncall = Vec::new();
    for sched in allowed(app.schedules(caller).await)? {
        let who = app.oncall(caller, &sched.name, None).await?;
        oncall.push(Line {
            left: sched.name.clone(),
            right: who.user.unwrap_or_else(|| c.w.nobody.to_string()),
            href: String::new(),
        });
    }
    let alerts = allowed(
        app.list_alerts(
            caller,
            ListAlerts {
                limit: Some(10),
                ..ListAlerts::default()
            },
        )
        .await
        .map(|l| l.items),
    )?
    .into_iter()
    .map(|a| alert_line(a, zone))
    .collect();
    // What detection raised (seed 001 No.29) and nobody has resolved; the
    // service exists from the first finding on.
    let detected = app
        .list_alerts(
            caller,
            ListAlerts {
                service: Some(kiroku_app::DETECTION_SERVICE.into()),
                statuses: vec!["triggered".into(), "acknowledged".into()],
                limit: Some(10),
                ..ListAlerts::default()
            },
        )
        .await;
    let security = match detected {
        Err(AppError::NotFound { .. }) => Vec::new(),
        other => allowed(other.map(|l| l.items))?,
    }
    .into_iter()
    .map(|a| alert_line(a, zone))
    .collect();
    let obligations = allowed(app.pending_obligations(caller, true, Some(20)).await)?
        .into_iter()
        .map(|o| Line {
            href: format!("/incidents/{}", o.incident_number),
            left: format!(
                "{} {}",
                o.incident_number,
                if c.lang == "en" { o.name_en } else { o.name_ja }
            ),
            right: local(zone, o.due_at),
        })
        .collect();
    let actions = allowed(
        app.action_items(
            caller,
            ListActionItems {
                overdue_only: true,
                limit: Some(20),
                ..ListActionItems::default()
            },
        )
        .await,
    )?
    .into_iter()
    .map(|a| Line {
        href: format!("/incidents/{}", a.incident_number),
        left: format!("{} {}", a.incident_number, a.item.title),
        right: a.item.due.map(|d| d.to_string()).unwrap_or_default(),
    })
    .collect();
    Ok(move |c| Dashboard {
        c,
        groups,
        oncall,
        alerts,
        security,
        obligations,
        actions,
    })
}

// ------------------------------------------------------------ incidents

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    c: Chrome,
    rows: Vec<Row>,
    statuses: Vec<&'static str>,
    severities: Vec<String>,
    status: String,
    severity: String,
    q: String,
    next: Option<String>,
    error: Option<String>,
}

pub(crate) async fn incidents(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let c = match signed_in(&caller, &headers, q.lang.as_deref(), "/incidents") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let zone = s.app.config().time_zone.clone();
    let status = q.status.clone().unwrap_or_default();
    let severity = q.severity.clone().unwrap_or_default();
    let text = q.q.clone().unwrap_or_default();
    let listed = s
        .app
        .list_incidents(
            &caller,
            ListIncidents {
                statuses: Some(status.clone())
                    .filter(|s| !s.is_empty())
                    .into_iter()
                    .collect(),
                severities: Some(severity.clone())
                    .filter(|s| !s.is_empty())
                    .into_iter()
                    .collect(),
                text: Some(text.clone()).filter(|t| !t.trim().is_empty()),
                cursor: q.cursor.clone().filter(|c| !c.is_empty()),
                limit: Some(50),
                ..ListIncidents::default()
            },
        )
        .await;
    let now = Timestamp::now();
    let (rows, next, error) = match listed {
        Ok(l) => (
            l.items.iter().map(|i| row(i, &zone, c.w, now)).collect(),
            l.next_cursor,
            None,
        ),
        // A bad filter is shown beside the form, which keeps what was typed.
        Err(AppError::Invalid(v)) => (Vec::new(), None, Some(v.to_string())),
        Err(e) => return error_page(c, e),
    };
    let severities = s
        .app
        .config()
        .rules
        .severities
        .levels
        .iter()
        .map(|l| l.key.clone())
        .collect();
    let next = next.map(|cursor| {
        next_query(&[
            ("status", &status),
            ("severity", &severity),
            ("q", &text),
            ("cursor", &cursor),
        ])
    });
    let page_ = IncidentsPage {
        c,
        rows,
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        severities,
        status,
        severity,
        q: text,
        next,
        error,
    };
    remember_lang(page(StatusCode::OK, &page_), &q)
}

/// A list's next page as a query string, encoded here rather than in the
/// template: a search or a service's name may hold `&`, `#` or `+`.
fn next_query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

// ------------------------------------------------------------ alerts

struct AlertRow {
    level: &'static str,
    status: &'static str,
    quiet: &'static str,
    count: i64,
    last_seen: String,
    last_seen_iso: String,
    summary: String,
    source: String,
    service: String,
    incident: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    c: Chrome,
    rows: Vec<AlertRow>,
    statuses: Vec<&'static str>,
    services: Vec<String>,
    status: String,
    service: String,
    /// The next page's query string.
    next: Option<String>,
    error: Option<String>,
}

/// Alerts as monitoring sent them, newest first, by status and service.
pub(crate) async fn alerts(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let c = match signed_in(&caller, &headers, q.lang.as_deref(), "/alerts") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let zone = s.app.config().time_zone.clone();
    let status = q.status.clone().unwrap_or_default();
    let service = q.service.clone().unwrap_or_default();
    let services = match s.app.services(&caller).await {
        Ok(list) => list,
        Err(e) => return error_page(c, e),
    };
    let listed = s
        .app
        .list_alerts(
            &caller,
            ListAlerts {
                statuses: Some(status.clone())
                    .filter(|s| !s.is_empty())
                    .into_iter()
                    .collect(),
                service: Some(service.clone()).filter(|s| !s.is_empty()),
                cursor: q.cursor.clone().filter(|c| !c.is_empty()),
                limit: Some(50),
                ..ListAlerts::default()
            },
        )
        .await;
    let (rows, next, error) = match listed {
        Ok(l) => (
            l.items
                .into_iter()
                .map(|a| AlertRow {
                    level: a.level.as_str(),
                    status: a.status.as_str(),
                    quiet: match a.quiet {
                        Some(Quiet::Maintenance) => c.w.in_maintenance,
                        Some(Quiet::Suppressed) => c.w.suppressed,
                        None => "",
                    },
                    count: a.count,
                    last_seen: local(&zone, a.last_seen_at),
                    last_seen_iso: a.last_seen_at.to_string(),
                    service: services
                        .iter()
                        .find(|s| s.id == a.service_id)
                        .map_or_else(String::new, |s| s.name.clone()),
                    incident: a.incident_id.map(|i| i.to_string()).unwrap_or_default(),
                    summary: a.summary,
                    source: a.source,
                })
                .collect(),
            l.next_cursor,
            None,
        ),
        // A bad filter is shown beside the form, which keeps what was chosen.
        Err(AppError::Invalid(v)) => (Vec::new(), None, Some(v.to_string())),
        Err(e @ AppError::NotFound { .. }) => (Vec::new(), None, Some(e.to_string())),
        Err(e) => return error_page(c, e),
    };
    let next = next.map(|cursor| {
        next_query(&[
            ("status", &status),
            ("service", &service),
            ("cursor", &cursor),
        ])
    });
    let page_ = AlertsPage {
        c,
        rows,
        statuses: AlertStatus::ALL.map(AlertStatus::as_str).to_vec(),
        services: services.into_iter().map(|s| s.name).collect(),
        status,
        service,
        next,
        error,
    };
    remember_lang(page(StatusCode::OK, &page_), &q)
}

#[derive(Template)]
#[template(path = "declare.html")]
struct DeclarePage {
    c: Chrome,
    f: DeclareForm,
    categories: Vec<(String, String)>,
    severities: Vec<String>,
    error_field: String,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
struct DeclareForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    services: String,
}

fn declare_page(
    s: &AppState,
    c: Chrome,
    f: DeclareForm,
    err: Option<(String, String)>,
) -> Response {
    let rules = &s.app.config().rules;
    let categories = rules
        .catalog
        .categories
        .iter()
        .map(|k| {
            let label = if c.lang == "en" {
                &k.label_en
            } else {
                &k.label_ja
            };
            (k.key.clone(), label.clone())
        })
        .collect();
    let severities = rules
        .severities
        .levels
        .iter()
        .map(|l| l.key.clone())
        .collect();
    let status = if err.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (error_field, error) = err.unwrap_or_default();
    page(
        status,
        &DeclarePage {
            c,
            f,
            categories,
            severities,
            error_field,
            error,
        },
    )
}

pub(crate) async fn declare_form(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match signed_in(&caller, &headers, q.lang.as_deref(), "/incidents/new") {
        Ok(c) => declare_page(&s, c, DeclareForm::default(), None),
        Err(r) => *r,
    }
}

pub(crate) async fn declare(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, DeclareForm) = match form_of(&caller, &headers, "/incidents/new", &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let draft = DeclareIncident {
        title: f.title.clone(),
        summary: f.summary.clone(),
        category: f.category.clone(),
        severity: f.severity.clone(),
        environment: f.environment.clone(),
        location: f.location.clone(),
        affected_services: f
            .services
            .split([',', '、'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        ..DeclareIncident::default()
    };
    match s.app.declare_incident(&caller, draft).await {
        Ok(i) => Redirect::to(&format!("/incidents/{}", i.number)).into_response(),
        Err(AppError::Invalid(v)) => {
            declare_page(&s, c, f, Some((v.field.clone(), v.message.clone())))
        }
        Err(e) => error_page(c, e),
    }
}

// -------------------------------------------------------- one incident

struct Entry {
    at: String,
    iso: String,
    kind: &'static str,
    who: String,
    body: String,
}

fn entries(zone: &TimeZone, timeline: Vec<TimelineEntry>) -> Vec<Entry> {
    timeline
        .into_iter()
        .rev()
        .map(|e| Entry {
            at: local(zone, e.at),
            iso: e.at.to_string(),
            kind: e.kind.as_str(),
            who: e.actor.map(|u| u.name).unwrap_or_default(),
            body: match e.kind {
                TimelineKind::StatusChanged => status_change_text(&e.data, &e.body),
                _ => e.body,
            },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    c: Chrome,
    i: Incident,
    detected: String,
    detected_iso: String,
    countdown: Option<Countdown>,
    transitions: Vec<(&'static str, &'static str)>,
    entries: Vec<Entry>,
    duties: Vec<DutyRow>,
    alerts: Vec<Line>,
    note: String,
    note_error: String,
    action_error: String,
    edit_error: String,
}

struct DutyRow {
    key: String,
    name: String,
    due: String,
    due_iso: String,
    status: &'static str,
    overdue: bool,
    reason: String,
}

#[derive(Template)]
#[template(path = "timeline.html")]
struct TimelineFragment {
    entries: Vec<Entry>,
}

fn transition_label(w: &super::Words, t: Transition) -> &'static str {
    match t {
        Transition::Acknowledge => w.acknowledge,
        Transition::Investigate => w.investigate,
        Transition::Mitigate => w.mitigate,
        Transition::Resolve => w.resolve,
        Transition::Close => w.close,
    }
}

/// What a form sent back keeps: the note typed, and the errors beside it.
#[derive(Default)]
struct Kept {
    note: String,
    note_error: String,
    action_error: String,
    edit_error: String,
}

async fn incident_page(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
    key: &str,
    kept: Kept,
    status: StatusCode,
) -> Response {
    let app = &s.app;
    let zone = app.config().time_zone.clone();
    let key = IncidentKey::parse(key);
    let i = match app.incident(caller, &key).await {
        Ok(i) => i,
        Err(e) => return error_page(c, e),
    };
    // One read of the incident (audited when it holds personal data); the
    // rest is read for it, not looked up again.
    let timeline = match app.timeline_of(caller, &i).await {
        Ok(t) => t,
        Err(e) => return error_page(c, e),
    };
    let duties = match app.obligations_of(caller, &i).await {
        Ok(o) => o
            .into_iter()
            .map(|o| DutyRow {
                name: if c.lang == "en" { o.name_en } else { o.name_ja },
                due: local(&zone, o.due_at),
                due_iso: o.due_at.to_string(),
                status: o.status.as_str(),
                overdue: o.overdue,
                reason: o.reason,
                key: o.key,
            })
            .collect(),
        Err(e) => return error_page(c, e),
    };
    let alerts = allowed(
        app.list_alerts(
            caller,
            ListAlerts {
                incident: Some(i.id),
                limit: Some(50),
                ..ListAlerts::default()
            },
        )
        .await
        .map(|l| l.items),
    );
    let alerts = match alerts {
        Ok(a) => a
            .into_iter()
            .map(|a| Line {
                left: a.summary,
                right: format!("{:?} ×{}", a.status, a.count).to_lowercase(),
                href: String::new(),
            })
            .collect(),
        Err(e) => return error_page(c, e),
    };
    let now = Timestamp::now();
    let started = i.times.response_started_at.or(i.times.acknowledged_at);
    let transitions = Transition::ALL
        .into_iter()
        .filter(|t| t.target() > i.status)
        .map(|t| (t.as_str(), transition_label(c.w, t)))
        .collect();
    let page_ = IncidentPage {
        detected: local(&zone, i.times.detected_at),
        detected_iso: i.times.detected_at.to_string(),
        countdown: if started.is_none() {
            countdown(c.w, i.response_due_at, now)
        } else {
            None
        },
        transitions,
        entries: entries(&zone, timeline),
        duties,
        alerts,
        note: kept.note,
        note_error: kept.note_error,
        action_error: kept.action_error,
        edit_error: kept.edit_error,
        c,
        i,
    };
    page(status, &page_)
}

pub(crate) async fn incident(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let here = format!("/incidents/{key}");
    let c = match signed_in(&caller, &headers, q.lang.as_deref(), &here) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let res = incident_page(&s, &caller, c, &key, Kept::default(), StatusCode::OK).await;
    remember_lang(res, &q)
}

/// The timeline alone, for the page's script to refresh it in place.
pub(crate) async fn timeline_fragment(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let c = match signed_in(&caller, &headers, None, "") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match s.app.timeline(&caller, &IncidentKey::parse(&key)).await {
        Ok(t) => page(
            StatusCode::OK,
            &TimelineFragment {
                entries: entries(&s.app.config().time_zone, t),
            },
        ),
        Err(e) => error_page(c, e),
    }
}

/// A form posted to an incident's page.
pub(crate) fn posted<T: serde::de::DeserializeOwned>(
    caller: &Caller,
    headers: &HeaderMap,
    key: &str,
    body: &Bytes,
) -> Result<(Chrome, T), Box<Response>> {
    form_of(caller, headers, &format!("/incidents/{key}"), body)
}

/// A form posted from the page at `here`: the signed-in chrome and the
/// parsed form, or the answer that ends the request.
pub(crate) fn form_of<T: serde::de::DeserializeOwned>(
    caller: &Caller,
    headers: &HeaderMap,
    here: &str,
    body: &Bytes,
) -> Result<(Chrome, T), Box<Response>> {
    let c = signed_in(caller, headers, None, here)?;
    // Every form of a signed-in page carries the session's token; one
    // without it came from elsewhere and changes nothing.
    let token: CsrfForm = serde_urlencoded::from_bytes(body).unwrap_or_default();
    if !csrf_ok(headers, &token.csrf) {
        let message = c.w.stale.to_string();
        let res = page(StatusCode::FORBIDDEN, &super::ErrorPage { c, message });
        return Err(Box::new(super::refused(
            res,
            "csrf_token_invalid",
            Some("csrf"),
        )));
    }
    match form(body) {
        Ok(f) => Ok((c, f)),
        Err(e) => Err(Box::new(error_page(c, e))),
    }
}

#[derive(Debug, Deserialize)]
struct TransitionForm {
    action: String,
    version: i64,
    #[serde(default)]
    note: String,
}

pub(crate) async fn transition(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, TransitionForm) = match posted(&caller, &headers, &key, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let error = |c: Chrome, message: String, status| {
        incident_page(
            &s,
            &caller,
            c,
            &key,
            Kept {
                action_error: message,
                ..Kept::default()
            },
            status,
        )
    };
    let Some(t) = Transition::ALL.into_iter().find(|t| t.as_str() == f.action) else {
        return error(
            c,
            format!("unknown action {:?}", f.action),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let note = Some(f.note).filter(|n| !n.trim().is_empty());
    match s
        .app
        .transition(&caller, &IncidentKey::parse(&key), t, note, Some(f.version))
        .await
    {
        Ok(i) => Redirect::to(&format!("/incidents/{}", i.number)).into_response(),
        Err(AppError::VersionConflict { .. }) => {
            let message = c.w.stale.to_string();
            error(c, message, StatusCode::CONFLICT).await
        }
        Err(e @ (AppError::Forbidden { .. } | AppError::NotFound { .. })) => error_page(c, e),
        Err(e) => error(c, e.to_string(), StatusCode::CONFLICT).await,
    }
}

#[derive(Debug, Deserialize)]
struct NoteForm {
    body: String,
}

pub(crate) async fn note(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, NoteForm) = match posted(&caller, &headers, &key, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match s
        .app
        .add_note(&caller, &IncidentKey::parse(&key), &f.body)
        .await
    {
        Ok(_) => Redirect::to(&format!("/incidents/{key}")).into_response(),
        // What was typed stays, with the reason beside it.
        Err(AppError::Invalid(v)) => {
            incident_page(
                &s,
                &caller,
                c,
                &key,
                Kept {
                    note: f.body,
                    note_error: v.message.clone(),
                    ..Kept::default()
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => error_page(c, e),
    }
}

#[derive(Debug, Deserialize)]
struct FactsForm {
    version: i64,
    #[serde(default)]
    commander: String,
    #[serde(default)]
    assignees: String,
    #[serde(default)]
    users_affected: String,
    #[serde(default)]
    records_affected: String,
    #[serde(default)]
    downtime_minutes: String,
    #[serde(default)]
    business_impact: String,
    #[serde(default)]
    personal_data: Option<String>,
    #[serde(default)]
    data_items: String,
    #[serde(default)]
    people_affected: String,
    #[serde(default)]
    sensitive: Option<String>,
    #[serde(default)]
    financial_risk: Option<String>,
    #[serde(default)]
    malicious_intent: Option<String>,
}

fn names(list: &str) -> Vec<String> {
    list.split([',', '、'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A form's optional whole number: empty is none.
pub(crate) fn count<T: std::str::FromStr>(field: &str, raw: &str) -> Result<Option<T>, AppError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|_| AppError::invalid(field, "not_a_number", "must be a whole number"))
}

impl FactsForm {
    fn patch(&self) -> Result<kiroku_app::UpdateIncident, AppError> {
        let commander = self.commander.trim();
        Ok(kiroku_app::UpdateIncident {
            commander: Some((!commander.is_empty()).then(|| commander.to_string())),
            assignees: Some(names(&self.assignees)),
            impact: Some(kiroku_domain::Impact {
                users_affected: count("impact.users_affected", &self.users_affected)?,
                records_affected: count("impact.records_affected", &self.records_affected)?,
                downtime_minutes: count("impact.downtime_minutes", &self.downtime_minutes)?,
                business_impact: self.business_impact.clone(),
                ..kiroku_domain::Impact::default()
            }),
            personal_data: Some(kiroku_domain::PersonalData {
                involved: self.personal_data.is_some(),
                items: names(&self.data_items),
                people_affected: count("personal_data.people_affected", &self.people_affected)?,
                sensitive: self.sensitive.is_some(),
                financial_risk: self.financial_risk.is_some(),
                malicious_intent: self.malicious_intent.is_some(),
            }),
            ..kiroku_app::UpdateIncident::default()
        })
    }
}

/// Commander, assignees, impact and personal-data facts, from the page.
pub(crate) async fn edit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, FactsForm) = match posted(&caller, &headers, &key, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let refuse = |c: Chrome, message: String, status| {
        let kept = Kept {
            edit_error: message,
            ..Kept::default()
        };
        incident_page(&s, &caller, c, &key, kept, status)
    };
    let patch = match f.patch() {
        Ok(p) => p,
        Err(e) => return refuse(c, e.to_string(), StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    match s
        .app
        .update_incident(&caller, &IncidentKey::parse(&key), patch, Some(f.version))
        .await
    {
        Ok(i) => Redirect::to(&format!("/incidents/{}", i.number)).into_response(),
        Err(AppError::VersionConflict { .. }) => {
            let message = c.w.stale.to_string();
            refuse(c, message, StatusCode::CONFLICT).await
        }
        Err(AppError::Invalid(v)) => {
            refuse(c, v.to_string(), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => error_page(c, e),
    }
}

#[derive(Debug, Deserialize)]
struct DutyForm {
    status: String,
    #[serde(default)]
    reason: String,
}

/// A decision about one notification duty, from the page.
pub(crate) async fn decide(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((key, rule)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, DutyForm) = match posted(&caller, &headers, &key, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let refuse = |c: Chrome, message: String, status| {
        let kept = Kept {
            edit_error: message,
            ..Kept::default()
        };
        incident_page(&s, &caller, c, &key, kept, status)
    };
    let status = match f.status.as_str() {
        "pending" => kiroku_domain::obligation::ObligationStatus::Pending,
        "submitted" => kiroku_domain::obligation::ObligationStatus::Submitted,
        "not_required" => kiroku_domain::obligation::ObligationStatus::NotRequired,
        other => {
            let message = format!("unknown status {other:?}");
            return refuse(c, message, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let decided = s
        .app
        .decide_obligation(
            &caller,
            &IncidentKey::parse(&key),
            &rule,
            kiroku_app::DecideObligation {
                status,
                reason: f.reason,
            },
        )
        .await;
    match decided {
        Ok(_) => Redirect::to(&format!("/incidents/{key}")).into_response(),
        Err(AppError::Invalid(v)) => {
            refuse(c, v.to_string(), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => error_page(c, e),
    }
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPreview {
    c: Chrome,
    number: String,
    kind: String,
}

/// A report shown in the page, with its downloads.
pub(crate) async fn report_preview(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((key, kind)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let here = format!("/incidents/{key}/reports/{kind}");
    let c = match signed_in(&caller, &headers, q.lang.as_deref(), &here) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if kiroku_report::Kind::parse(&kind).is_none() {
        return error_page(
            c,
            AppError::NotFound {
                what: "report kind",
            },
        );
    }
    match s.app.incident(&caller, &IncidentKey::parse(&key)).await {
        Ok(i) => page(
            StatusCode::OK,
            &ReportPreview {
                c,
                number: i.number,
                kind,
            },
        ),
        Err(e) => error_page(c, e),
    }
}
