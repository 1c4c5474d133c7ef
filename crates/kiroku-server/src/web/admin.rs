//! The pages that set Kiroku up: integrations with the URL and key each
//! monitoring system is given and the services they feed, with their
//! maintenance windows; on-call schedules as a calendar; and users with
//! their roles and one's own API tokens.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use kiroku_app::{AppError, Caller, IntegrationChange, NewIntegration, NewMaintenanceWindow};
use kiroku_domain::Permission;
use kiroku_domain::alert::routing::Grouping;
use kiroku_domain::alert::{IntegrationKind, Service};
use serde::Deserialize;

use super::pages::{PageQuery, count, form_of};
use super::words::Words;
use super::{Chrome, error_page, local, page, signed_in};
use crate::AppState;

/// Where monitoring reaches this server: the configured public address,
/// else the Host the browser used.
fn base_url(s: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &s.app.config().notify.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

struct IntegrationRow {
    id: String,
    disabled: bool,
    service: String,
    kind: &'static str,
    name: String,
    rate_limit: u32,
    url: String,
    key: String,
}

struct WindowRow {
    id: String,
    from: String,
    until: String,
    under_way: bool,
    reason: String,
}

struct ServiceRow {
    id: String,
    name: String,
    rules: usize,
    grouping: String,
    windows: Vec<WindowRow>,
    /// The routing as the JSON a caller writes, edited in place.
    version: i64,
    routing: String,
    routing_error: String,
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    c: Chrome,
    rows: Vec<IntegrationRow>,
    services: Vec<ServiceRow>,
    /// Whether the caller may change services: others see no forms.
    can_manage: bool,
    kinds: Vec<&'static str>,
    shown: Shown,
}

/// How a service's alerts become incidents, in the routing's own terms.
fn grouping(g: &Grouping) -> String {
    match g {
        Grouping::PerAlert => "per_alert".into(),
        Grouping::Labels {
            labels,
            window_minutes,
        } => format!("labels: {} ({window_minutes} min)", labels.join(", ")),
        Grouping::Sender { window_minutes } => format!("sender ({window_minutes} min)"),
    }
}

/// What the integrations page shows besides the list.
#[derive(Default)]
struct Shown {
    error: String,
    /// A key to show once: just created, or issued in place of a leaked one.
    created_key: String,
    rotated: bool,
    kept_routing: Option<KeptRouting>,
}

/// A routing refused, shown again as it was sent, with why.
struct KeptRouting {
    /// The service as the form's path named it: by id or by name.
    service: String,
    /// The version the text was written against, so that saving it again
    /// is refused again if someone else has changed the routing meanwhile.
    version: i64,
    text: String,
    error: String,
}

async fn integrations_page(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    c: Chrome,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let base = base_url(s, headers);
    let (list, services) = match (
        s.app.integrations(caller, None).await,
        s.app.services(caller).await,
    ) {
        (Ok(l), Ok(sv)) => (l, sv),
        (Err(e), _) | (_, Err(e)) => return error_page(c, e),
    };
    let rows = list
        .into_iter()
        .map(|i| {
            let service = services
                .iter()
                .find(|s| s.id == i.service_id)
                .map_or_else(String::new, |s| s.name.clone());
            let shown = if i.key.is_empty() {
                "…"
            } else {
                i.key.as_str()
            };
            let mut url = format!("{base}{}", i.kind.intake_path(shown));
            if i.kind == IntegrationKind::Pagerduty {
                url.push_str(&format!(" (routing_key {shown})"));
            }
            IntegrationRow {
                id: i.id.to_string(),
                disabled: i.disabled,
                service,
                kind: i.kind.as_str(),
                name: i.name,
                rate_limit: i.rate_limit_per_second,
                url,
                key: i.key,
            }
        })
        .collect();
    let zone = &s.app.config().time_zone;
    let now = Timestamp::now();
    let services = services
        .into_iter()
        .map(|sv| ServiceRow {
            id: sv.id.to_string(),
            rules: sv.routing.rules.len(),
            grouping: grouping(&sv.routing.grouping),
            version: sv.version,
            routing: serde_json::to_string_pretty(&sv.routing).unwrap_or_default(),
            routing_error: String::new(),
            windows: sv
                .maintenance
                .iter()
                .filter(|w| w.ends_at > now)
                .map(|w| WindowRow {
                    id: w.id.to_string(),
                    from: local(zone, w.starts_at),
                    until: local(zone, w.ends_at),
                    under_way: w.covers(now),
                    reason: w.reason.clone(),
                })
                .collect(),
            name: sv.name,
        })
        .map(|mut row| {
            if let Some(k) = &shown.kept_routing
                && (k.service == row.id || k.service == row.name)
            {
                row.version = k.version;
                row.routing = k.text.clone();
                row.routing_error = k.error.clone();
            }
            row
        })
        .collect();
    page(
        status,
        &IntegrationsPage {
            c,
            rows,
            services,
            can_manage: caller.require(Permission::ServiceManage).is_ok(),
            kinds: IntegrationKind::ALL.map(IntegrationKind::as_str).to_vec(),
            shown,
        },
    )
}

pub(crate) async fn integrations(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match signed_in(&caller, &headers, q.lang.as_deref(), "/integrations") {
        Ok(c) => {
            integrations_page(&s, &caller, &headers, c, Shown::default(), StatusCode::OK).await
        }
        Err(r) => *r,
    }
}

#[derive(Debug, Deserialize)]
struct IntegrationForm {
    service: String,
    kind: String,
}

pub(crate) async fn create_integration(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, IntegrationForm) = match form_of(&caller, &headers, "/integrations", &body)
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let made = s
        .app
        .create_integration(
            &caller,
            NewIntegration {
                service: f.service,
                kind: f.kind,
                name: None,
                rate_limit_per_second: None,
            },
        )
        .await;
    let shown = made.map(|i| Shown {
        created_key: i.key,
        ..Shown::default()
    });
    integrations_answer(&s, &caller, &headers, c, shown, StatusCode::CREATED).await
}

/// The integrations page after a form: `shown` with `status`, the page
/// with the form's mistake (422), or the error's own page.
async fn integrations_answer(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    c: Chrome,
    shown: Result<Shown, AppError>,
    status: StatusCode,
) -> Response {
    match shown {
        Ok(shown) => integrations_page(s, caller, headers, c, shown, status).await,
        Err(AppError::Invalid(v)) => {
            let shown = Shown {
                error: v.to_string(),
                ..Shown::default()
            };
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            integrations_page(s, caller, headers, c, shown, status).await
        }
        Err(e) => error_page(c, e),
    }
}

#[derive(Debug, Deserialize)]
struct IntegrationAction {
    action: String,
    /// With `save`: the integration's name and rate limit.
    name: Option<String>,
    rate_limit: Option<String>,
}

/// A new key for a leaked one, the integration disabled or enabled, or
/// renamed and given another rate limit.
pub(crate) async fn change_integration(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, IntegrationAction) =
        match form_of(&caller, &headers, "/integrations", &body) {
            Ok(v) => v,
            Err(r) => return *r,
        };
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(
            c,
            AppError::NotFound {
                what: "integration",
            },
        );
    };
    let changed = match f.action.as_str() {
        "rotate" => s.app.rotate_integration_key(&caller, id).await,
        "disable" | "enable" => {
            let change = IntegrationChange {
                disabled: Some(f.action == "disable"),
                ..IntegrationChange::default()
            };
            s.app.update_integration(&caller, id, change).await
        }
        "save" => match count(
            "rate_limit_per_second",
            f.rate_limit.as_deref().unwrap_or(""),
        ) {
            Ok(rate_limit_per_second) => {
                let change = IntegrationChange {
                    name: f.name,
                    rate_limit_per_second,
                    ..IntegrationChange::default()
                };
                s.app.update_integration(&caller, id, change).await
            }
            Err(e) => Err(e),
        },
        _ => Err(AppError::invalid(
            "action",
            "unknown_value",
            "must be one of: rotate, disable, enable, save",
        )),
    };
    let rotated = f.action == "rotate";
    let shown = changed.map(|i| Shown {
        created_key: if rotated { i.key } else { String::new() },
        rotated,
        ..Shown::default()
    });
    integrations_answer(&s, &caller, &headers, c, shown, StatusCode::OK).await
}

/// Why a document edited as JSON on a page was not saved.
enum Refused {
    /// A mistake in it, or a version someone else has replaced meanwhile:
    /// shown beside the text as sent, answered with the status.
    Kept(String, StatusCode),
    /// Anything else, which gets its own page.
    Failed(AppError),
}

/// Parses a document edited as JSON on a page and saves it with `save`.
async fn save_json<T, O, Fut>(
    w: &Words,
    text: &str,
    save: impl FnOnce(T) -> Fut,
) -> Result<O, Refused>
where
    T: serde::de::DeserializeOwned,
    Fut: std::future::Future<Output = Result<O, AppError>>,
{
    let de = &mut serde_json::Deserializer::from_str(text);
    let doc = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Refused::Kept(
            format!("{path}: {}", e.into_inner()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })?;
    save(doc).await.map_err(|e| match e {
        AppError::Invalid(v) => Refused::Kept(v.to_string(), StatusCode::UNPROCESSABLE_ENTITY),
        AppError::VersionConflict { .. } => {
            Refused::Kept(w.stale.to_string(), StatusCode::CONFLICT)
        }
        e => Refused::Failed(e),
    })
}

/// A service's routing saved from its text on the integrations page; a
/// stale version is refused, and a mistake keeps the text with the reason.
pub(crate) async fn save_routing(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, JsonForm) = match form_of(&caller, &headers, "/integrations", &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let saved = save_json(c.w, &f.json, |routing| {
        s.app
            .set_routing(&caller, &service, routing, Some(f.version))
    })
    .await;
    let (error, status) = match saved {
        Ok(saved) => return to_service(&saved),
        Err(Refused::Kept(error, status)) => (error, status),
        Err(Refused::Failed(e)) => return error_page(c, e),
    };
    let shown = Shown {
        kept_routing: Some(KeptRouting {
            service,
            version: f.version,
            text: f.json,
            error,
        }),
        ..Shown::default()
    };
    integrations_page(&s, &caller, &headers, c, shown, status).await
}

/// `YYYY-MM-DDTHH:MM`, as a datetime-local input sends it, read in the
/// configured zone.
fn local_time(zone: &jiff::tz::TimeZone, field: &str, raw: &str) -> Result<Timestamp, AppError> {
    raw.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(zone.clone()).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| AppError::invalid(field, "invalid_time", "must read YYYY-MM-DDTHH:MM"))
}

#[derive(Debug, Deserialize)]
struct MaintenanceForm {
    /// Empty for now.
    #[serde(default)]
    from: String,
    until: String,
    #[serde(default)]
    reason: String,
}

/// A maintenance window added to a service from the integrations page.
pub(crate) async fn add_maintenance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, MaintenanceForm) = match form_of(&caller, &headers, "/integrations", &body)
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let zone = &s.app.config().time_zone;
    let starts_at = match f.from.trim() {
        "" => Ok(Timestamp::now()),
        raw => local_time(zone, "starts_at", raw),
    };
    let added = match (starts_at, local_time(zone, "ends_at", &f.until)) {
        (Ok(starts_at), Ok(ends_at)) => {
            let window = NewMaintenanceWindow {
                starts_at,
                ends_at,
                reason: f.reason,
            };
            s.app
                .add_maintenance_window(&caller, &service, window)
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match added {
        Ok((service, _)) => to_service(&service),
        Err(e) => integrations_answer(&s, &caller, &headers, c, Err(e), StatusCode::OK).await,
    }
}

/// A maintenance window removed, which ends it if it is under way.
pub(crate) async fn remove_maintenance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((service, window)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (c, _): (Chrome, serde::de::IgnoredAny) =
        match form_of(&caller, &headers, "/integrations", &body) {
            Ok(v) => v,
            Err(r) => return *r,
        };
    let removed = match uuid::Uuid::parse_str(&window) {
        Ok(id) => s.app.remove_maintenance_window(&caller, &service, id).await,
        Err(_) => Err(AppError::NotFound {
            what: "maintenance window",
        }),
    };
    match removed {
        Ok(service) => to_service(&service),
        Err(e) => integrations_answer(&s, &caller, &headers, c, Err(e), StatusCode::OK).await,
    }
}

/// After a service's change, its place on the integrations page: a
/// redirect, so that reloading the page sends nothing twice.
fn to_service(service: &Service) -> Response {
    Redirect::to(&format!("/integrations#service-{}", service.id)).into_response()
}

struct DayRow {
    date: String,
    who: Vec<String>,
}

struct ScheduleRow {
    name: String,
    now: String,
    days: Vec<DayRow>,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    c: Chrome,
    schedules: Vec<ScheduleRow>,
    error: String,
}

/// Days the calendar shows ahead.
const CALENDAR_DAYS: i64 = 14;

pub(crate) async fn schedules(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match signed_in(&caller, &headers, q.lang.as_deref(), "/schedules") {
        Ok(c) => schedules_page(&s, &caller, c, String::new(), StatusCode::OK).await,
        Err(r) => *r,
    }
}

async fn schedules_page(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
    error: String,
    status: StatusCode,
) -> Response {
    let app = &s.app;
    let zone = app.config().time_zone.clone();
    let users = match app.users(caller).await {
        Ok(u) => u,
        // Names need the user list; without it ids are shown.
        Err(AppError::Forbidden { .. }) => Vec::new(),
        Err(e) => return error_page(c, e),
    };
    let name_of = |id: uuid::Uuid| {
        users
            .iter()
            .find(|u| u.id == id)
            .map_or_else(|| id.to_string(), |u| u.name.clone())
    };
    let list = match app.schedules(caller).await {
        Ok(l) => l,
        Err(e) => return error_page(c, e),
    };
    let now = Timestamp::now();
    let start = zone
        .to_datetime(now)
        .date()
        .to_zoned(zone.clone())
        .map(|z| z.timestamp())
        .unwrap_or(now);
    let mut rows = Vec::new();
    for sched in list {
        let current = match app.oncall(caller, &sched.name, None).await {
            Ok(o) => o.user.unwrap_or_else(|| c.w.nobody.to_string()),
            Err(e) => return error_page(c, e),
        };
        let until = start + SignedDuration::from_hours(24 * CALENDAR_DAYS);
        let shifts = match app
            .shifts(caller, &sched.name, Some(start), Some(until))
            .await
        {
            Ok(sh) => sh,
            Err(e) => return error_page(c, e),
        };
        let days = (0..CALENDAR_DAYS)
            .map(|d| {
                let from = start + SignedDuration::from_hours(24 * d);
                let to = from + SignedDuration::from_hours(24);
                let mut who: Vec<String> = shifts
                    .iter()
                    .filter(|sh| sh.start < to && sh.end > from)
                    .map(|sh| name_of(sh.user))
                    .collect();
                who.dedup();
                DayRow {
                    date: zone.to_datetime(from).strftime("%m/%d (%a)").to_string(),
                    who,
                }
            })
            .collect();
        rows.push(ScheduleRow {
            name: sched.name.clone(),
            now: current,
            days,
        });
    }
    page(
        status,
        &SchedulesPage {
            c,
            schedules: rows,
            error,
        },
    )
}

struct UserRow {
    name: String,
    role: &'static str,
    totp: bool,
    disabled: bool,
}

struct TokenRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    c: Chrome,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    secret: String,
    /// A new user's second-factor enrolment URI, shown once.
    enrolment: String,
    error: String,
}

/// What the users page shows once: a new token's secret or a new user's
/// enrolment, or the error of the form sent.
#[derive(Default)]
struct Once {
    secret: String,
    enrolment: String,
    error: String,
}

async fn users_page(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
    once: Once,
    status: StatusCode,
) -> Response {
    let zone = s.app.config().time_zone.clone();
    let local = |t: Timestamp| local(&zone, t);
    let users = match s.app.users(caller).await {
        Ok(u) => u,
        Err(AppError::Forbidden { .. }) => Vec::new(),
        Err(e) => return error_page(c, e),
    };
    let tokens = match s.app.tokens(caller).await {
        Ok(t) => t,
        Err(e) => return error_page(c, e),
    };
    page(
        status,
        &UsersPage {
            users: users
                .into_iter()
                .map(|u| UserRow {
                    name: u.name,
                    role: u.role.as_str(),
                    totp: u.totp_enrolled,
                    disabled: u.disabled,
                })
                .collect(),
            tokens: tokens
                .into_iter()
                .map(|t| TokenRow {
                    id: t.id.to_string(),
                    name: t.name,
                    created: local(t.created_at),
                    last_used: t.last_used_at.map(local).unwrap_or_default(),
                    revoked: t.revoked_at.is_some(),
                })
                .collect(),
            c,
            secret: once.secret,
            enrolment: once.enrolment,
            error: once.error,
        },
    )
}

pub(crate) async fn users(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match signed_in(&caller, &headers, q.lang.as_deref(), "/users") {
        Ok(c) => users_page(&s, &caller, c, Once::default(), StatusCode::OK).await,
        Err(r) => *r,
    }
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    name: String,
}

pub(crate) async fn create_token(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, TokenForm) = match form_of(&caller, &headers, "/users", &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match s.app.create_token(&caller, None, &f.name, None).await {
        // The secret is shown this once, as the API shows it.
        Ok(t) => {
            users_page(
                &s,
                &caller,
                c,
                Once {
                    secret: t.secret,
                    ..Once::default()
                },
                StatusCode::CREATED,
            )
            .await
        }
        Err(AppError::Invalid(v)) => {
            users_page(
                &s,
                &caller,
                c,
                Once {
                    error: v.to_string(),
                    ..Once::default()
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => error_page(c, e),
    }
}

pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (c, _): (Chrome, serde::de::IgnoredAny) = match form_of(&caller, &headers, "/users", &body)
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(c, AppError::NotFound { what: "token" });
    };
    match s.app.revoke_token(&caller, id).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(e) => error_page(c, e),
    }
}

struct PolicyRow {
    name: String,
    version: i64,
    json: String,
    error: String,
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    c: Chrome,
    policies: Vec<PolicyRow>,
}

/// A policy as its editor shows it: the document a caller writes.
fn draft_json(p: &kiroku_domain::escalation::Policy) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "name": p.name,
        "description": p.description,
        "levels": p.levels,
        "repeat": p.repeat,
        "rules": p.rules,
    }))
    .unwrap_or_default()
}

async fn policies_page(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
    kept: Option<PolicyRow>,
    status: StatusCode,
) -> Response {
    let list = match s.app.policies(caller).await {
        Ok(l) => l,
        Err(e) => return error_page(c, e),
    };
    let policies = list
        .iter()
        .map(|p| match &kept {
            // The one sent back keeps what was typed, with its error.
            Some(k) if k.name == p.name => PolicyRow {
                name: k.name.clone(),
                version: k.version,
                json: k.json.clone(),
                error: k.error.clone(),
            },
            _ => PolicyRow {
                name: p.name.clone(),
                version: p.version,
                json: draft_json(p),
                error: String::new(),
            },
        })
        .collect();
    page(status, &PoliciesPage { c, policies })
}

pub(crate) async fn policies(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match signed_in(&caller, &headers, q.lang.as_deref(), "/policies") {
        Ok(c) => policies_page(&s, &caller, c, None, StatusCode::OK).await,
        Err(r) => *r,
    }
}

/// A document edited as JSON text on a page (a policy, a routing), with
/// the version it was written against.
#[derive(Debug, Deserialize)]
struct JsonForm {
    version: i64,
    json: String,
}

pub(crate) async fn save_policy(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, JsonForm) = match form_of(&caller, &headers, "/policies", &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // What goes wrong keeps the text as sent, with the reason beside it.
    let saved = save_json(c.w, &f.json, |draft| {
        s.app.update_policy(&caller, &name, draft, Some(f.version))
    })
    .await;
    let (error, status) = match saved {
        Ok(_) => return Redirect::to("/policies").into_response(),
        Err(Refused::Kept(error, status)) => (error, status),
        Err(Refused::Failed(e)) => return error_page(c, e),
    };
    let kept = PolicyRow {
        name,
        version: f.version,
        json: f.json,
        error,
    };
    policies_page(&s, &caller, c, Some(kept), status).await
}

#[derive(Debug, Deserialize)]
struct UserForm {
    name: String,
    role: String,
    password: String,
}

pub(crate) async fn create_user(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, UserForm) = match form_of(&caller, &headers, "/users", &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(role) = kiroku_domain::Role::parse(&f.role) else {
        let message = format!("unknown role {:?}", f.role);
        return users_page(
            &s,
            &caller,
            c,
            Once {
                error: message,
                ..Once::default()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let made = s
        .app
        .create_user(
            &caller,
            kiroku_app::NewUser {
                name: f.name,
                display_name: String::new(),
                email: None,
                role,
                password: f.password,
            },
        )
        .await;
    match made {
        // The second-factor enrolment is shown this once, like a token.
        Ok(u) => {
            users_page(
                &s,
                &caller,
                c,
                Once {
                    enrolment: u.totp_uri.unwrap_or_default(),
                    ..Once::default()
                },
                StatusCode::CREATED,
            )
            .await
        }
        Err(e @ (AppError::Invalid(_) | AppError::Duplicate { .. })) => {
            users_page(
                &s,
                &caller,
                c,
                Once {
                    error: e.to_string(),
                    ..Once::default()
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => error_page(c, e),
    }
}

#[derive(Debug, Deserialize)]
struct OverrideForm {
    user: String,
    /// As `local_time` reads it.
    start: String,
    end: String,
}

/// Someone else on call for a while: an override, from the calendar page.
pub(crate) async fn add_override(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (c, f): (Chrome, OverrideForm) = match form_of(&caller, &headers, "/schedules", &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let zone = &s.app.config().time_zone;
    let added = match (
        local_time(zone, "start", &f.start),
        local_time(zone, "end", &f.end),
    ) {
        (Ok(start), Ok(end)) => {
            s.app
                .add_override(
                    &caller,
                    &name,
                    kiroku_app::NewOverride {
                        user: f.user,
                        start,
                        end,
                    },
                )
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match added {
        Ok(_) => Redirect::to("/schedules").into_response(),
        Err(AppError::Invalid(v)) => {
            schedules_page(
                &s,
                &caller,
                c,
                v.to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => error_page(c, e),
    }
}
