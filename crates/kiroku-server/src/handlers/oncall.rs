//! Paging: escalation policies, schedules and who is on call, people's
//! contact methods, and the doors a page is acknowledged through that need
//! no login: a signed link (a confirmation page, then a POST, so that link
//! previews acknowledge nothing), a text reply from the SMS provider
//! (signed by it), and a signed calendar feed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use kiroku_app::{AckOutcome, AppError, Caller, NewContactMethod, NewOverride};
use kiroku_domain::escalation::PolicyDraft;
use kiroku_domain::validate::escape_markup;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::if_match;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiQuery, time_param};

pub async fn list_policies(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let items = s.app.policies(&caller).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn create_policy(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<PolicyDraft>,
) -> ApiResult<Response> {
    let p = s.app.create_policy(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

pub async fn show_policy(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.app.policy(&caller, &k).await?).into_response())
}

pub async fn update_policy(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PolicyDraft>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    Ok(Json(s.app.update_policy(&caller, &k, body, expected).await?).into_response())
}

pub async fn show_escalation(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.app.escalation(&caller, &k).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateBody {
    /// 1-based; the next level when absent.
    pub level: Option<u32>,
}

pub async fn escalate(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: EscalateBody = if body.is_empty() {
        EscalateBody::default()
    } else {
        crate::json::parse_json(&body)?
    };
    Ok(Json(s.app.reescalate(&caller, &k, body.level).await?).into_response())
}

pub async fn list_schedules(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let items = s.app.schedules(&caller).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn create_schedule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let schedule = s.app.create_schedule(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(schedule)).into_response())
}

pub async fn show_schedule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.app.schedule(&caller, &k).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtParams {
    pub at: Option<String>,
}

pub async fn oncall(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiQuery(p): ApiQuery<AtParams>,
) -> ApiResult<Response> {
    let at = time_param("at", p.at)?;
    Ok(Json(s.app.oncall(&caller, &k, at).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    pub from: Option<String>,
    pub until: Option<String>,
}

pub async fn shifts(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiQuery(p): ApiQuery<RangeParams>,
) -> ApiResult<Response> {
    let (from, until) = (time_param("from", p.from)?, time_param("until", p.until)?);
    let items = s.app.shifts(&caller, &k, from, until).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn add_override(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiJson(body): ApiJson<NewOverride>,
) -> ApiResult<Response> {
    let schedule = s.app.add_override(&caller, &k, body).await?;
    Ok((StatusCode::CREATED, Json(schedule)).into_response())
}

pub async fn remove_override(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("override"))?;
    Ok(Json(s.app.remove_override(&caller, &k, id).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserParams {
    pub user: Option<String>,
}

fn calendar(ics: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/calendar; charset=utf-8"),
        )],
        ics,
    )
        .into_response()
}

pub async fn schedule_calendar(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiQuery(p): ApiQuery<UserParams>,
) -> ApiResult<Response> {
    let ics = s
        .app
        .calendar_of(&caller, Some(&k), p.user.as_deref())
        .await?;
    Ok(calendar(ics))
}

pub async fn user_calendar(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(calendar(
        s.app.calendar_of(&caller, None, Some(&name)).await?,
    ))
}

pub async fn user_calendar_feed(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let url = s.app.calendar_feed(&caller, None, Some(&name)).await?;
    Ok(Json(json!({ "url": url })).into_response())
}

pub async fn calendar_feed(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiQuery(p): ApiQuery<UserParams>,
) -> ApiResult<Response> {
    let url = s
        .app
        .calendar_feed(&caller, Some(&k), p.user.as_deref())
        .await?;
    Ok(Json(json!({ "url": url })).into_response())
}

pub async fn calendar_by_link(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match s.app.calendar_by_link(&token).await {
        Ok(ics) => calendar(ics),
        Err(e) => link_refused(e),
    }
}

pub async fn list_contact_methods(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let items = s.app.contact_methods(&caller, &name).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn add_contact_method(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<NewContactMethod>,
) -> ApiResult<Response> {
    let method = s.app.add_contact_method(&caller, &name, body).await?;
    Ok((StatusCode::CREATED, Json(method)).into_response())
}

pub async fn remove_contact_method(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("contact method"))?;
    Ok(Json(s.app.remove_contact_method(&caller, &name, id).await?).into_response())
}

/// A small page for a person who clicked a link; no script, nothing
/// loaded from elsewhere.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{0}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\">\
         <h1>{0}</h1>{body}</body></html>",
        escape_markup(title)
    );
    (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                ),
            ),
        ],
        Html(html),
    )
        .into_response()
}

fn link_refused(e: AppError) -> Response {
    let status = match e.code() {
        "link_expired" => StatusCode::GONE,
        "invalid_link" => StatusCode::FORBIDDEN,
        _ => return ApiError::from(e).into_response(),
    };
    page(
        status,
        "Kiroku",
        &format!("<p>{}</p>", escape_markup(&e.to_string())),
    )
}

/// The confirmation page a link opens.
pub async fn ack_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match s.app.ack_link_incident(&token).await {
        Ok((number, title)) => page(
            StatusCode::OK,
            &format!("Acknowledge {number}?"),
            &format!(
                "<p>{}</p><form method=\"post\"><button type=\"submit\">Acknowledge</button></form>",
                escape_markup(&title)
            ),
        ),
        Err(e) => link_refused(e),
    }
}

pub async fn ack_by_link(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
) -> Response {
    match s.app.acknowledge_by_link(&token, caller.source).await {
        Ok((number, outcome)) => {
            let said = match outcome {
                AckOutcome::Acknowledged => "acknowledged; paging has stopped",
                AckOutcome::AlreadyAcknowledged => "was already acknowledged",
                AckOutcome::AlreadyResolved => "is already resolved",
            };
            page(
                StatusCode::OK,
                &format!("{number} {said}"),
                "<p>You can close this page.</p>",
            )
        }
        Err(e) => link_refused(e),
    }
}

/// Twilio's request signature: base64 HMAC-SHA1, under the account's
/// auth token, of the URL it posted to and every form parameter's name
/// and value, sorted by name.
fn provider_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn twiml(message: &str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"))],
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            escape_markup(message)
        ),
    )
        .into_response()
}

/// A text reply, posted by the SMS provider (`From`, `Body`, form-encoded).
pub async fn inbound_sms(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let refused = |code: &str, message: &str| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code,
            message.to_string(),
        ))
    };
    let (Some(inbound), Some(base)) = (
        s.http.inbound_sms.as_ref(),
        s.app.config().notify.public_url.as_deref(),
    ) else {
        return refused(
            "sms_not_configured",
            "text replies need [notify.sms] and [notify] public_url",
        );
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let url = format!("{}/api/v1/sms/inbound", base.trim_end_matches('/'));
    let expected = provider_signature(&inbound.auth_token, &url, &params);
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return refused(
            "invalid_signature",
            "the request is not signed by the SMS provider",
        );
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let reply = s
        .app
        .acknowledge_by_text(field("From"), field("Body"), caller.source)
        .await?;
    Ok(twiml(&reply))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL and parameters of the example in Twilio's webhook-security
    /// guide; the signature computed independently (Python's `hmac`).
    #[test]
    fn provider_signatures_match_twilios_published_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            provider_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
