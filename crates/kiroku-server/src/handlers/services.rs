//! Services, integrations, routing, maintenance windows and alerts.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiroku_app::{
    Caller, IntegrationChange, ListAlerts, NewIntegration, NewMaintenanceWindow, NewService,
};
use kiroku_domain::alert::routing::Routing;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::if_match;
use crate::error::{ApiError, ApiResult};
use crate::handlers::incidents::csv;
use crate::json::{ApiJson, ApiQuery};

fn uuid_param(field: &str, raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", "must be a UUID").field(field)
    })
}

pub async fn list_services(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    Ok(Json(json!({ "items": s.app.services(&caller).await? })).into_response())
}

pub async fn create_service(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewService>,
) -> ApiResult<Response> {
    let service = s.app.create_service(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(service)).into_response())
}

pub async fn show_service(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.app.service(&caller, &key).await?).into_response())
}

pub async fn set_routing(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(routing): ApiJson<Routing>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let service = s.app.set_routing(&caller, &key, routing, expected).await?;
    Ok(Json(service).into_response())
}

pub async fn add_maintenance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<NewMaintenanceWindow>,
) -> ApiResult<Response> {
    let (_, window) = s.app.add_maintenance_window(&caller, &key, body).await?;
    Ok((StatusCode::CREATED, Json(window)).into_response())
}

pub async fn remove_maintenance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((key, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = uuid_param("id", &id)?;
    let service = s.app.remove_maintenance_window(&caller, &key, id).await?;
    Ok(Json(service).into_response())
}

pub async fn service_changes(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(json!({ "items": s.app.service_changes(&caller, &key).await? })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationParams {
    pub service: Option<String>,
}

pub async fn list_integrations(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<IntegrationParams>,
) -> ApiResult<Response> {
    let list = s
        .app
        .integrations(&caller, p.service.as_deref().filter(|x| !x.is_empty()))
        .await?;
    Ok(Json(json!({ "items": list })).into_response())
}

pub async fn create_integration(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewIntegration>,
) -> ApiResult<Response> {
    let integration = s.app.create_integration(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(integration)).into_response())
}

pub async fn show_integration(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = uuid_param("id", &id)?;
    Ok(Json(s.app.integration(&caller, id).await?).into_response())
}

pub async fn update_integration(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<IntegrationChange>,
) -> ApiResult<Response> {
    let id = uuid_param("id", &id)?;
    let integration = s.app.update_integration(&caller, id, change).await?;
    Ok(Json(integration).into_response())
}

pub async fn rotate_integration_key(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = uuid_param("id", &id)?;
    let integration = s.app.rotate_integration_key(&caller, id).await?;
    Ok(Json(integration).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    pub status: Option<String>,
    pub service: Option<String>,
    pub integration: Option<String>,
    pub incident: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

pub async fn list_alerts(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<AlertParams>,
) -> ApiResult<Response> {
    let nonempty = |v: Option<String>| v.filter(|x| !x.is_empty());
    let list = s
        .app
        .list_alerts(
            &caller,
            ListAlerts {
                statuses: csv(p.status),
                service: nonempty(p.service),
                integration: nonempty(p.integration)
                    .map(|v| uuid_param("integration", &v))
                    .transpose()?,
                incident: nonempty(p.incident)
                    .map(|v| uuid_param("incident", &v))
                    .transpose()?,
                cursor: nonempty(p.cursor),
                limit: p.limit,
            },
        )
        .await?;
    Ok(Json(list).into_response())
}

pub async fn show_alert(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = uuid_param("id", &id)?;
    Ok(Json(s.app.alert(&caller, id).await?).into_response())
}
