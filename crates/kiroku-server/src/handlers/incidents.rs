use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::{Caller, DeclareIncident, ListIncidents, UpdateIncident};
use kiroku_domain::incident::version_tag;
use kiroku_domain::{Incident, Transition};
use kiroku_store::IncidentKey;
use serde::Deserialize;

use crate::AppState;
use crate::auth::if_match;
use crate::error::ApiResult;
use crate::json::{ApiJson, ApiQuery, time_param};

fn key(raw: &str) -> IncidentKey {
    IncidentKey::parse(raw)
}

/// The incident with its version as ETag, for If-Match on the next write.
fn with_etag(status: StatusCode, incident: Incident) -> Response {
    let etag = HeaderValue::from_str(&version_tag(incident.version)).ok();
    let mut res = (status, Json(incident)).into_response();
    if let Some(v) = etag {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

pub async fn declare(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<DeclareIncident>,
) -> ApiResult<Response> {
    let incident = s.app.declare_incident(&caller, body).await?;
    Ok(with_etag(StatusCode::CREATED, incident))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    Ok(with_etag(
        StatusCode::OK,
        s.app.incident(&caller, &key(&k)).await?,
    ))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateIncident>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let incident = s
        .app
        .update_incident(&caller, &key(&k), body, expected)
        .await?;
    Ok(with_etag(StatusCode::OK, incident))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    pub note: Option<String>,
}

/// The body of a transition is optional; when sent it must be JSON.
async fn transition(
    s: AppState,
    caller: Caller,
    k: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
    t: Transition,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let note = if body.is_empty() {
        None
    } else {
        crate::json::parse_json::<TransitionBody>(&body)?.note
    };
    let incident = s
        .app
        .transition(&caller, &key(&k), t, note, expected)
        .await?;
    Ok(with_etag(StatusCode::OK, incident))
}

macro_rules! transition_handler {
    ($name:ident, $t:expr) => {
        pub async fn $name(
            State(s): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(k): Path<String>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> ApiResult<Response> {
            transition(s, caller, k, headers, body, $t).await
        }
    };
}

transition_handler!(acknowledge, Transition::Acknowledge);
transition_handler!(investigate, Transition::Investigate);
transition_handler!(mitigate, Transition::Mitigate);
transition_handler!(resolve, Transition::Resolve);
transition_handler!(close, Transition::Close);

pub async fn timeline(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    let entries = s.app.timeline(&caller, &key(&k)).await?;
    Ok(Json(serde_json::json!({ "items": entries })).into_response())
}

pub async fn obligations(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    let items = s.app.obligations(&caller, &key(&k)).await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub body: String,
}

pub async fn add_note(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiJson(note): ApiJson<NoteBody>,
) -> ApiResult<Response> {
    let entry = s.app.add_note(&caller, &key(&k), &note.body).await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

/// List filters; several values of one filter are comma-separated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub environment: Option<String>,
    pub detected_from: Option<String>,
    pub detected_to: Option<String>,
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

pub(crate) fn csv(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

pub async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Response> {
    let list = s
        .app
        .list_incidents(
            &caller,
            ListIncidents {
                statuses: csv(p.status),
                severities: csv(p.severity),
                categories: csv(p.category),
                environment: p.environment.filter(|e| !e.is_empty()),
                detected_from: time_param("detected_from", p.detected_from)?,
                detected_to: time_param("detected_to", p.detected_to)?,
                text: p.q,
                cursor: p.cursor.filter(|c| !c.is_empty()),
                limit: p.limit,
            },
        )
        .await?;
    Ok(Json(list).into_response())
}
