//! The pages that set Kiroku up: integrations with the URL and key each
//! monitoring system is given, on-call schedules as a calendar, and users
//! with their roles and one's own API tokens.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use kiroku_app::{AppError, Caller, NewIntegration};
use kiroku_domain::alert::IntegrationKind;
use serde::Deserialize;

use super::pages::{PageQuery, form_of};
use super::{Chrome, error_page, page, signed_in};
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
    service: String,
    kind: &'static str,
    name: String,
    url: String,
    key: String,
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    c: Chrome,
    rows: Vec<IntegrationRow>,
    kinds: Vec<&'static str>,
    error: String,
    created_key: String,
}

async fn integrations_page(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    c: Chrome,
    error: String,
    created_key: String,
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
            let url = match i.kind {
                IntegrationKind::Pagerduty => format!("{base}/v2/enqueue (routing_key {shown})"),
                other => format!("{base}/api/v1/integrations/{shown}/{}", other.as_str()),
            };
            IntegrationRow {
                service,
                kind: i.kind.as_str(),
                name: i.name,
                url,
                key: i.key,
            }
        })
        .collect();
    page(
        status,
        &IntegrationsPage {
            c,
            rows,
            kinds: vec!["pagerduty", "alertmanager", "grafana", "generic"],
            error,
            created_key,
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
            integrations_page(
                &s,
                &caller,
                &headers,
                c,
                String::new(),
                String::new(),
                StatusCode::OK,
            )
            .await
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
    match made {
        Ok(i) => {
            integrations_page(
                &s,
                &caller,
                &headers,
                c,
                String::new(),
                i.key,
                StatusCode::CREATED,
            )
            .await
        }
        Err(AppError::Invalid(v)) => {
            integrations_page(
                &s,
                &caller,
                &headers,
                c,
                v.to_string(),
                String::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => error_page(c, e),
    }
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
}

/// Days the calendar shows ahead.
const CALENDAR_DAYS: i64 = 14;

pub(crate) async fn schedules(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let c = match signed_in(&caller, &headers, q.lang.as_deref(), "/schedules") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let app = &s.app;
    let zone = app.config().time_zone.clone();
    let users = match app.users(&caller).await {
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
    let list = match app.schedules(&caller).await {
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
        let current = match app.oncall(&caller, &sched.name, None).await {
            Ok(o) => o.user.unwrap_or_else(|| c.w.nobody.to_string()),
            Err(e) => return error_page(c, e),
        };
        let until = start + SignedDuration::from_hours(24 * CALENDAR_DAYS);
        let shifts = match app
            .shifts(&caller, &sched.name, Some(start), Some(until))
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
    page(StatusCode::OK, &SchedulesPage { c, schedules: rows })
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
    error: String,
}

async fn users_page(
    s: &AppState,
    caller: &Caller,
    c: Chrome,
    secret: String,
    error: String,
    status: StatusCode,
) -> Response {
    let zone = s.app.config().time_zone.clone();
    let local = |t: Timestamp| zone.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string();
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
            secret,
            error,
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
        Ok(c) => users_page(&s, &caller, c, String::new(), String::new(), StatusCode::OK).await,
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
        Ok(t) => users_page(&s, &caller, c, t.secret, String::new(), StatusCode::CREATED).await,
        Err(AppError::Invalid(v)) => {
            users_page(
                &s,
                &caller,
                c,
                String::new(),
                v.to_string(),
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
