//! Who is calling: the bearer token or session cookie on each request,
//! the access rule of the route, and the audit record of every refusal.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiroku_app::{Caller, Principal, Via};
use kiroku_domain::{Source, Target};
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, Refusal};
use crate::routes::{Access, path_access, route_rule};

pub const SESSION_COOKIE: &str = "kiroku_session";

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    let v = headers.get(header::AUTHORIZATION)?;
    let parsed = v
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256);
    Some(parsed.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_authorization",
            "the Authorization header must read `Bearer <token>`",
        )
    }))
}

pub(crate) fn source(state: &AppState, req: &Request) -> Source {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let forwarded = state
        .http
        .trust_forwarded_for
        .then(|| {
            req.headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().chars().take(64).collect::<String>())
        })
        .flatten();
    Source {
        ip: forwarded.or(peer),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect()),
        channel: "api".into(),
    }
}

/// A cookie-authenticated write must come from our own pages: the Origin,
/// when the browser sends one, must match the Host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    source: &Source,
) -> Result<Option<Principal>, ApiError> {
    if let Some(token) = bearer(headers) {
        return Ok(Some(state.app.authenticate_token(token?, source).await?));
    }
    if let Some(secret) = cookie(headers, SESSION_COOKIE) {
        let p = state.app.authenticate_session(secret, source).await?;
        let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if unsafe_method && !same_origin(headers) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "cross-site requests with a session cookie are refused",
            ));
        }
        return Ok(Some(p));
    }
    Ok(None)
}

/// Resolves the caller, enforces the route's access rule, and audits every
/// refused request (4xx) as a failure with who, what and why.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let src = source(&state, &req);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let rule = route.as_deref().and_then(|r| route_rule(&method, r));
    let path: String = req.uri().path().chars().take(256).collect();

    let mut caller = Caller::anonymous(src);
    let response = match (&route, rule) {
        // Unknown paths answer 404 from the fallback, which does not pass here.
        (Some(r), None) => match path_access(r) {
            // Every served route has a rule (a test holds it), so a listed
            // path without one for this method was asked with the wrong
            // method; the router adds the Allow header.
            Some(access) => {
                let refused = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not served here; the Allow header lists what is"),
                )
                .into_response();
                // A monitoring system's refusals are logged, not audited.
                if access == Access::RoutingKey {
                    tracing::info!(%method, route = %r, "intake request with a method not served");
                    return refused;
                }
                refused
            }
            None => ApiError::new(
                StatusCode::FORBIDDEN,
                "no_access_rule",
                "this route has no access rule; it is refused until it has one",
            )
            .into_response(),
        },
        // Monitoring systems authenticate by routing key in the handler.
        (_, Some(r)) if r.access == Access::RoutingKey => {
            return if has_nul(req.uri()) {
                nul_refused()
            } else {
                next.run(req).await
            };
        }
        _ if has_nul(req.uri()) => nul_refused(),
        (_, rule) => match resolve(&state, req.headers(), &method, &caller.source).await {
            // A public route needs no credentials, so a stale cookie sent
            // along (a person clicking an acknowledgement link) is ignored.
            Err(_) if matches!(rule, Some(r) if r.access == Access::Public) => {
                req.extensions_mut().insert(caller.clone());
                next.run(req).await
            }
            Err(e) => e.into_response(),
            Ok(principal) => {
                caller.principal = principal;
                let needs_login = matches!(rule, Some(r) if r.access != Access::Public);
                if needs_login && caller.principal.is_none() {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing_credentials",
                        "log in or send an API token (Authorization: Bearer …)",
                    )
                    .into_response()
                } else {
                    req.extensions_mut().insert(caller.clone());
                    next.run(req).await
                }
            }
        },
    };

    let status = response.status();
    if status.is_client_error()
        && let Some(refusal) = response
            .extensions()
            .get::<Refusal>()
            .filter(|r| !r.audited)
    {
        let action = match status {
            StatusCode::UNAUTHORIZED => "authn_fail",
            // An address locked for guessing credentials.
            StatusCode::TOO_MANY_REQUESTS if refusal.code == "too_many_attempts" => "authn_fail",
            StatusCode::FORBIDDEN => "authz_fail",
            _ => rule.map_or("request", |r| r.action),
        };
        let target = Target::new("route", route.as_ref().map(|r| format!("{method} {r}")));
        let shown = match &route {
            Some(r) if crate::routes::path_holds_credential(r) => r.clone(),
            _ => path,
        };
        let detail = json!({
            "method": method.as_str(),
            "path": shown,
            "status": status.as_u16(),
            "field": refusal.field,
        });
        if let Err(e) = state
            .app
            .audit_refusal(
                &caller.actor(),
                &caller.source,
                action,
                target,
                &refusal.code,
                detail,
            )
            .await
        {
            tracing::error!(error = %e, "could not audit a refused request");
            return ApiError::from(e).into_response();
        }
    }
    response
}

/// PostgreSQL refuses NUL in text, so no NUL may reach a query.
fn nul_refused() -> Response {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_characters",
        "the URL must not contain NUL (%00)",
    )
    .field("url")
    .into_response()
}

/// Whether the path or query carries a percent-encoded NUL.
fn has_nul(uri: &axum::http::Uri) -> bool {
    uri.path_and_query().is_some_and(|pq| {
        pq.as_str()
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    })
}

/// `Some(version)` from `If-Match: "v3"`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(kiroku_domain::incident::version_in_tag)
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_if_match",
                "If-Match must be the ETag of the incident, e.g. \"v3\"",
            )
            .field("If-Match")
        })
}

pub fn is_session(caller: &Caller) -> bool {
    matches!(
        caller.principal,
        Some(Principal {
            via: Via::Session { .. },
            ..
        })
    )
}
