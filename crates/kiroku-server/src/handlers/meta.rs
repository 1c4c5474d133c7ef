use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::Caller;
use kiroku_domain::Permission;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn health(State(s): State<AppState>) -> Response {
    match s.app.store().ping().await {
        Ok(()) => {
            let mut body = json!({ "status": "ok", "backend": s.app.store().backend() });
            if let Some(backlog) = s.app.intake_backlog() {
                body["intake_journal_backlog_bytes"] = json!(backlog);
            }
            Json(body).into_response()
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
