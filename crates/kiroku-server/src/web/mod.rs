//! The web UI: server-rendered pages from compile-checked templates
//! (askama, every value escaped), one small script of our own for
//! countdowns and the live timeline, and the public status page.
//!
//! Pages sign in with the API's session cookie. Every form carries a CSRF
//! token derived from the session (a page of ours is the only place that
//! can read it), and the authentication middleware also refuses a
//! cookie-authenticated write whose Origin is not ours. Every page answers
//! with a Content-Security-Policy that allows no inline script.

mod admin;
mod audit;
mod pages;
mod postmortem;
mod status;
mod words;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kiroku_app::{AppError, Caller};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::SESSION_COOKIE;
pub(crate) use crate::auth::cookie;
pub use words::{Lang, Words};

pub(crate) const LANG_COOKIE: &str = "kiroku_lang";
/// Set on the login page, so that its form cannot be posted from elsewhere.
pub(crate) const LOGIN_CSRF_COOKIE: &str = "kiroku_login";

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

/// What every page's layout needs.
pub(crate) struct Chrome {
    pub w: &'static Words,
    pub lang: &'static str,
    pub user: Option<String>,
    pub csrf: String,
    /// The current path, for the language switch.
    pub here: String,
}

/// A time as the pages show it, in the configured zone (the script shows
/// it again in the reader's).
pub(crate) fn local(zone: &jiff::tz::TimeZone, at: jiff::Timestamp) -> String {
    zone.to_datetime(at).strftime("%Y-%m-%d %H:%M").to_string()
}

/// The token a form of this session carries: only our pages can show it,
/// since only they can read the HttpOnly session cookie's value's digest.
pub(crate) fn csrf_token(headers: &HeaderMap) -> String {
    let secret = cookie(headers, SESSION_COOKIE).unwrap_or("");
    let digest = Sha256::digest(format!("kiroku-csrf:{secret}").as_bytes());
    kiroku_audit::hex::encode(&digest[..16])
}

pub(crate) fn csrf_ok(headers: &HeaderMap, sent: &str) -> bool {
    let expected = csrf_token(headers);
    // Equal length always: compare every byte so timing says nothing.
    expected.len() == sent.len()
        && expected
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The headers every page carries.
fn harden(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A rendered template as a page, or the error page when rendering fails.
pub(crate) fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => harden(
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            harden((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub c: Chrome,
    pub message: String,
}

/// An application error as a page: 403 and 404 pages show no data.
pub(crate) fn error_page(c: Chrome, e: AppError) -> Response {
    let (status, message) = match &e {
        AppError::Forbidden { .. } => (StatusCode::FORBIDDEN, c.w.forbidden.to_string()),
        AppError::NotFound { .. } => (StatusCode::NOT_FOUND, c.w.not_found.to_string()),
        AppError::VersionConflict { .. } => (StatusCode::CONFLICT, c.w.stale.to_string()),
        AppError::Unauthenticated { .. } => return Redirect::to("/login").into_response(),
        AppError::Damaged(_)
        | AppError::Internal(_)
        | AppError::Unavailable(_)
        | AppError::DiskFull(_) => {
            tracing::error!(error = %e, detail = ?e, "page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        other => (StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    };
    let res = page(status, &ErrorPage { c, message });
    refused(res, e.code(), e.field())
}

/// Marks a refusal page so the middleware writes it to the audit log, as
/// it does every refused API request.
pub(crate) fn refused(mut res: Response, code: &str, field: Option<&str>) -> Response {
    if res.status().is_client_error() {
        res.extensions_mut().insert(crate::error::Refusal {
            code: code.to_string(),
            field: field.map(str::to_string),
            audited: false,
        });
    }
    res
}

/// The caller's chrome, or a redirect to the login page.
pub(crate) fn signed_in(
    caller: &Caller,
    headers: &HeaderMap,
    lang_query: Option<&str>,
    here: &str,
) -> Result<Chrome, Box<Response>> {
    let lang = Lang::pick(lang_query, headers);
    match caller.user() {
        Some(u) if crate::auth::is_session(caller) => Ok(Chrome {
            w: lang.words(),
            lang: lang.tag(),
            user: Some(u.name.clone()),
            csrf: csrf_token(headers),
            here: here.to_string(),
        }),
        _ => Err(Box::new(Redirect::to("/login").into_response())),
    }
}

/// The chrome of a page anyone may see.
pub(crate) fn public(headers: &HeaderMap, lang_query: Option<&str>, here: &str) -> Chrome {
    let lang = Lang::pick(lang_query, headers);
    Chrome {
        w: lang.words(),
        lang: lang.tag(),
        user: None,
        csrf: String::new(),
        here: here.to_string(),
    }
}

async fn css() -> Response {
    harden(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response())
}

async fn js() -> Response {
    harden(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            JS,
        )
            .into_response(),
    )
}

/// The pages, served beside the API.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/incidents", get(pages::incidents).post(pages::declare))
        .route("/incidents/new", get(pages::declare_form))
        .route("/alerts", get(pages::alerts))
        .route("/incidents/{key}", get(pages::incident))
        .route("/incidents/{key}/timeline", get(pages::timeline_fragment))
        .route("/incidents/{key}/transition", post(pages::transition))
        .route("/incidents/{key}/notes", post(pages::note))
        .route("/incidents/{key}/edit", post(pages::edit))
        .route(
            "/incidents/{key}/reports/{kind}",
            get(pages::report_preview),
        )
        .route("/incidents/{key}/obligations/{rule}", post(pages::decide))
        .route(
            "/incidents/{key}/postmortem",
            get(postmortem::show).post(postmortem::save),
        )
        .route(
            "/incidents/{key}/postmortem/approve",
            post(postmortem::approve),
        )
        .route("/audit", get(audit::audit))
        .route(
            "/integrations",
            get(admin::integrations).post(admin::create_integration),
        )
        .route("/integrations/{id}", post(admin::change_integration))
        .route("/services/{service}/routing", post(admin::save_routing))
        .route(
            "/services/{service}/maintenance",
            post(admin::add_maintenance),
        )
        .route(
            "/services/{service}/maintenance/{window}/remove",
            post(admin::remove_maintenance),
        )
        .route("/schedules", get(admin::schedules))
        .route("/schedules/{name}/overrides", post(admin::add_override))
        .route("/users", get(admin::users).post(admin::create_user))
        .route("/policies", get(admin::policies))
        .route("/policies/{name}", post(admin::save_policy))
        .route("/tokens", post(admin::create_token))
        .route("/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/status", get(status::status))
        .route("/status/feed.atom", get(status::feed))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}
