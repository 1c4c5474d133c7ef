use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::{Caller, LoginRequest, NewUser, UserView};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{SESSION_COOKIE, is_session};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;

pub(crate) fn session_cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if state.http.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

pub async fn login(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let session = s.app.login(&caller.source, req).await?;
    let max_age = s.app.config().auth.session_ttl.as_secs();
    let mut res =
        Json(json!({ "user": session.user, "expires_at": session.expires_at })).into_response();
    if let Some(c) = session_cookie(&s, &session.secret, max_age) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}

pub async fn logout(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    s.app.logout(&caller).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = session_cookie(&s, "", 0) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}

pub async fn me(Extension(caller): Extension<Caller>) -> ApiResult<Response> {
    let user = caller.user().ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(json!({
        "user": UserView::from(user),
        "via": if is_session(&caller) { "session" } else { "token" },
    }))
    .into_response())
}

pub async fn users(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    Ok(Json(json!({ "items": s.app.users(&caller).await? })).into_response())
}

pub async fn create_user(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let created = s.app.create_user(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn tokens(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    Ok(Json(json!({ "items": s.app.tokens(&caller).await? })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// Admins may issue for another user.
    pub user: Option<String>,
    pub expires_in_days: Option<i64>,
}

pub async fn create_token(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<Response> {
    let issued = s
        .app
        .create_token(
            &caller,
            body.user.as_deref(),
            &body.name,
            body.expires_in_days,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

pub async fn revoke_token(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("token"))?;
    s.app.revoke_token(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
