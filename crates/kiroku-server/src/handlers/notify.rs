//! Notification channels and the deliveries made to them.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiroku_app::{Caller, NewChannel};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiQuery};

pub async fn list_channels(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let list = s.app.list_channels(&caller).await?;
    Ok(Json(json!({ "items": list })).into_response())
}

pub async fn create_channel(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewChannel>,
) -> ApiResult<Response> {
    let channel = s.app.create_channel(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(channel)).into_response())
}

pub async fn remove_channel(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::not_found("channel"))?;
    Ok(Json(s.app.remove_channel(&caller, id).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    pub status: Option<String>,
    pub limit: Option<i64>,
}

pub async fn list_deliveries(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<DeliveryParams>,
) -> ApiResult<Response> {
    let list = s
        .app
        .list_deliveries(&caller, p.status.as_deref(), p.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({ "items": list })).into_response())
}
