//! Alert intake: PagerDuty Events API v2 at `/v2/enqueue` and
//! `/v2/change/enqueue`, and Alertmanager, Grafana and generic webhooks at
//! `/api/v1/integrations/{key}/…`. The routing key is the credential; the
//! answer comes only after the events are committed.
//!
//! Refusals here are logged and counted but not written to the audit log:
//! they carry no person's credential, and a flood of them must not become a
//! flood of writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::{Accepted, AppError};
use kiroku_domain::alert::{
    AlertEvent, Integration, IntegrationKind, Problems, alertmanager, generic, grafana, pagerduty,
};
use kiroku_domain::{Source, ValidationError};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

/// PagerDuty's limit on an event.
pub const PAGERDUTY_BODY_LIMIT: usize = 512 * 1024;
/// Webhooks carry whole groups (up to 10,000 alerts).
pub const WEBHOOK_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// A token bucket per integration: `rate` requests a second, bursts of
/// twice that. Hand-written because it is a few lines and must share the
/// integration's own configured rate; a rate-limiting crate would add a
/// dependency tree for less.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-integration state shared by the intake handlers.
#[derive(Default)]
pub struct IntakeState {
    buckets: Mutex<HashMap<uuid::Uuid, Bucket>>,
}

impl IntakeState {
    /// Ok, or the whole seconds to wait before the next request fits.
    fn admit(&self, integration: &Integration) -> Result<(), u64> {
        let rate = f64::from(integration.rate_limit_per_second.max(1));
        let burst = rate * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(integration.id).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

fn source(req_headers: &axum::http::HeaderMap, peer: Option<std::net::IpAddr>) -> Source {
    Source {
        ip: peer.map(|p| p.to_string()),
        user_agent: req_headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect()),
        channel: "intake".into(),
    }
}

fn peer(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, ()> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ())
}

// --- PagerDuty -------------------------------------------------------------

fn pd_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn pd_invalid(problems: &Problems) -> Response {
    pd_response(
        StatusCode::BAD_REQUEST,
        json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>(),
            "code": "invalid_event",
            "field": problems.first().map(|p| p.field.clone()),
            "problems": problems,
        }),
    )
}

fn pd_too_large() -> Response {
    pd_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({
            "status": "invalid event",
            "message": format!("Request body is larger than {} bytes", PAGERDUTY_BODY_LIMIT),
            "errors": ["body: too large"],
            "code": "payload_too_large",
            "field": "body",
        }),
    )
}

fn pd_throttled(retry_after: u64) -> Response {
    let mut res = pd_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "status": "throttle event",
            "message": "Requests for this integration are arriving too quickly. Please retry later.",
            "code": "rate_limited",
            "field": null,
        }),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

fn pd_unknown_key() -> Response {
    pd_invalid(&vec![ValidationError::new(
        "routing_key",
        "unknown_routing_key",
        "no integration has this routing key",
    )])
}

fn pd_failed(e: AppError) -> Response {
    let api = ApiError::from(e);
    pd_response(
        api.status,
        json!({ "status": "error", "message": api.body.message, "code": api.body.code, "field": null }),
    )
}

fn wrong_kind_message(kind: IntegrationKind) -> String {
    format!(
        "this routing key belongs to a {} integration; send to its own URL",
        kind.as_str()
    )
}

/// How a format answers a request it does not take.
struct Refusals {
    unknown: fn() -> Response,
    wrong_kind: fn(IntegrationKind) -> Response,
    throttled: fn(u64) -> Response,
    failed: fn(AppError) -> Response,
}

/// Looks up the routing key, checks that it belongs to a `kind`
/// integration and admits the request under that integration's rate, or
/// answers for it. A key sent to another kind's URL spends no rate.
async fn admit(
    s: &AppState,
    key: &str,
    kind: IntegrationKind,
    refuse: &Refusals,
) -> Result<Integration, Response> {
    let integration = match s.app.integration_by_key(key).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            tracing::debug!("intake with an unknown routing key");
            return Err((refuse.unknown)());
        }
        Err(e) => return Err((refuse.failed)(e)),
    };
    if integration.kind != kind {
        return Err((refuse.wrong_kind)(integration.kind));
    }
    s.intake.admit(&integration).map_err(refuse.throttled)?;
    Ok(integration)
}

fn pd_wrong_kind(kind: IntegrationKind) -> Response {
    pd_invalid(&vec![ValidationError::new(
        "routing_key",
        "wrong_integration_type",
        wrong_kind_message(kind),
    )])
}

const PAGERDUTY_REFUSALS: Refusals = Refusals {
    unknown: pd_unknown_key,
    wrong_kind: pd_wrong_kind,
    throttled: pd_throttled,
    failed: pd_failed,
};

/// Reads, parses and admits a PagerDuty request, or answers it.
async fn pd_request<T>(
    s: &AppState,
    req: Request,
    parse: fn(&[u8]) -> Result<T, Problems>,
    routing_key: fn(&T) -> &str,
) -> Result<(T, Integration, Source), Response> {
    let (headers, peer) = (req.headers().clone(), peer(&req));
    let body = read_body(req, PAGERDUTY_BODY_LIMIT)
        .await
        .map_err(|()| pd_too_large())?;
    let parsed = parse(&body).map_err(|problems| pd_invalid(&problems))?;
    let integration = admit(
        s,
        routing_key(&parsed),
        IntegrationKind::Pagerduty,
        &PAGERDUTY_REFUSALS,
    )
    .await?;
    Ok((parsed, integration, source(&headers, peer)))
}

pub async fn pagerduty_enqueue(State(s): State<AppState>, req: Request) -> Response {
    let (parsed, integration, source) =
        match pd_request(&s, req, pagerduty::parse_event, |p| &p.routing_key).await {
            Ok(r) => r,
            Err(res) => return res,
        };
    match s
        .app
        .ingest_alerts(&integration, source, vec![parsed.event])
        .await
    {
        Ok(accepted) => pd_response(
            StatusCode::ACCEPTED,
            json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": accepted.first().map(|a| a.dedup_key.clone()),
            }),
        ),
        Err(e) => pd_failed(e),
    }
}

pub async fn pagerduty_change(State(s): State<AppState>, req: Request) -> Response {
    let (parsed, integration, source) =
        match pd_request(&s, req, pagerduty::parse_change, |p| &p.routing_key).await {
            Ok(r) => r,
            Err(res) => return res,
        };
    match s
        .app
        .record_change(&integration, source, parsed.change)
        .await
    {
        Ok(_) => pd_response(
            StatusCode::ACCEPTED,
            json!({ "status": "success", "message": "Change event processed" }),
        ),
        Err(e) => pd_failed(e),
    }
}

// --- Webhooks ----------------------------------------------------------------

fn api_error(e: ApiError) -> Response {
    // Intake refusals skip the audit middleware (see the module comment).
    let mut res = e.into_response();
    res.extensions_mut().remove::<crate::error::Refusal>();
    res
}

fn unknown_key() -> Response {
    api_error(
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_routing_key",
            "no integration has this routing key",
        )
        .field("key"),
    )
}

fn wrong_kind(kind: IntegrationKind) -> Response {
    api_error(
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "wrong_integration_type",
            wrong_kind_message(kind),
        )
        .field("key"),
    )
}

fn throttled(retry_after: u64) -> Response {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "requests for this integration are arriving too quickly; retry later",
    );
    e.retry_after = Some(retry_after as i64);
    api_error(e)
}

fn failed(e: AppError) -> Response {
    api_error(ApiError::from(e))
}

const WEBHOOK_REFUSALS: Refusals = Refusals {
    unknown: unknown_key,
    wrong_kind,
    throttled,
    failed,
};

fn invalid(problems: Problems) -> Response {
    let first = problems.first();
    let mut e = ApiError::new(
        StatusCode::BAD_REQUEST,
        first.map_or("invalid_payload", |p| p.code),
        first.map_or_else(
            || "the payload is invalid".to_string(),
            |p| p.message.clone(),
        ),
    );
    e.body.field = first.map(|p| p.field.clone());
    e.body.detail.insert("problems".into(), json!(problems));
    api_error(e)
}

fn accepted(list: Vec<Accepted>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "success", "events": list.len(), "results": list })),
    )
        .into_response()
}

async fn webhook(
    s: AppState,
    key: String,
    req: Request,
    kind: IntegrationKind,
    parse: fn(&[u8]) -> Result<Vec<AlertEvent>, Problems>,
) -> Response {
    let (headers, peer) = (req.headers().clone(), peer(&req));
    // Key and rate first, so that a flood costs no parsing.
    let integration = match admit(&s, &key, kind, &WEBHOOK_REFUSALS).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    let Ok(body) = read_body(req, WEBHOOK_BODY_LIMIT).await else {
        return api_error(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body must be at most {WEBHOOK_BODY_LIMIT} bytes"),
            )
            .field("body"),
        );
    };
    let events = match parse(&body) {
        Ok(e) => e,
        Err(problems) => return invalid(problems),
    };
    match s
        .app
        .ingest_alerts(&integration, source(&headers, peer), events)
        .await
    {
        Ok(list) => accepted(list),
        Err(e) => failed(e),
    }
}

pub async fn alertmanager_webhook(
    State(s): State<AppState>,
    Path(key): Path<String>,
    req: Request,
) -> Response {
    webhook(s, key, req, IntegrationKind::Alertmanager, |b| {
        alertmanager::parse(b).map(|batch| batch.into_events())
    })
    .await
}

pub async fn grafana_webhook(
    State(s): State<AppState>,
    Path(key): Path<String>,
    req: Request,
) -> Response {
    webhook(s, key, req, IntegrationKind::Grafana, |b| {
        grafana::parse(b).map(|batch| batch.into_events())
    })
    .await
}

pub async fn generic_webhook(
    State(s): State<AppState>,
    Path(key): Path<String>,
    req: Request,
) -> Response {
    webhook(s, key, req, IntegrationKind::Generic, generic::parse).await
}
