use crate::handlers::incidents::time_param;
use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::Caller;
use kiroku_domain::Permission;
use kiroku_store::AuditQuery;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn health(State(s): State<AppState>) -> Response {
    match s.app.store().ping().await {
        Ok(()) => {
            Json(json!({ "status": "ok", "backend": s.app.store().backend() })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "backend": s.app.store().backend() })),
            )
                .into_response()
        }
    }
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The categories and severities this installation accepts.
pub async fn meta(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    caller
        .require(Permission::IncidentRead)
        .map_err(ApiError::from)?;
    let c = s.app.config();
    Ok(Json(json!({
        "categories": c.rules.catalog.categories,
        "severity_scheme": c.rules.severities,
        "time_zone": c.time_zone.iana_name(),
        "backend": s.app.store().backend(),
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub actor: Option<String>,
    pub role: Option<String>,
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub result: Option<String>,
    pub source_ip: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub q: Option<String>,
    /// `asc` (oldest first, the default) or `desc`.
    pub order: Option<String>,
    pub cursor: Option<i64>,
    pub limit: Option<i64>,
}

pub async fn audit_events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let newest_first = match p.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_value",
                "must be asc or desc",
            )
            .field("order"));
        }
    };
    let limit = p.limit.unwrap_or(100);
    let items = s
        .app
        .audit_events(
            &caller,
            AuditQuery {
                actor: p.actor,
                role: p.role,
                action: p.action,
                target_kind: p.target_kind,
                target_id: p.target_id,
                outcome: p.result,
                source_ip: p.source_ip,
                time_from: time_param("from", p.from)?,
                time_to: time_param("to", p.to)?,
                text: p.q,
                newest_first,
                after_seq: p.cursor,
                limit,
            },
        )
        .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next })).into_response())
}
