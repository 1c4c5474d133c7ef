//! Postmortems, approvals, rendered reports, notification duties,
//! communications and operational metrics.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::{
    ApprovePostmortem, Caller, Communicate, DecideObligation, ListActionItems, MetricsRequest,
    ReportRequest, SavePostmortem,
};
use kiroku_domain::metrics::{self, BucketSize, ChartLang};
use kiroku_store::IncidentKey;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiQuery, time_param};

fn key(raw: &str) -> IncidentKey {
    IncidentKey::parse(raw)
}

pub async fn show_postmortem(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.app.postmortem(&caller, &key(&k)).await?).into_response())
}

pub async fn save_postmortem(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiJson(body): ApiJson<SavePostmortem>,
) -> ApiResult<Response> {
    Ok(Json(s.app.save_postmortem(&caller, &key(&k), body).await?).into_response())
}

pub async fn approve_postmortem(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiJson(body): ApiJson<ApprovePostmortem>,
) -> ApiResult<Response> {
    Ok(Json(s.app.approve_postmortem(&caller, &key(&k), body).await?).into_response())
}

/// `/reports/{kind}.{format}`, e.g. `shimatsusho.pdf`.
pub async fn report(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, file)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ReportRequest>,
) -> ApiResult<Response> {
    let Some((kind, format)) = file.rsplit_once('.') else {
        return Err(ApiError::not_found(
            "report (name it as kind.format, e.g. shimatsusho.pdf)",
        ));
    };
    let report = s.app.report(&caller, &key(&k), kind, format, &q).await?;
    let mut res = (StatusCode::OK, report.body).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(report.content_type),
    );
    // The name is ours (number, kind, extension), but quote it anyway.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"{}\"",
        report.file_name.replace(['"', '\\'], "_")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A report is a document, never a page that runs anything.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(res)
}

pub async fn decide_obligation(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, rule)): Path<(String, String)>,
    ApiJson(body): ApiJson<DecideObligation>,
) -> ApiResult<Response> {
    Ok(Json(
        s.app
            .decide_obligation(&caller, &key(&k), &rule, body)
            .await?,
    )
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingParams {
    #[serde(default)]
    pub overdue: bool,
    pub limit: Option<i64>,
}

pub async fn pending_obligations(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<PendingParams>,
) -> ApiResult<Response> {
    let items = s
        .app
        .pending_obligations(&caller, p.overdue, p.limit)
        .await?;
    Ok(Json(json!({ "items": items })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionItemParams {
    pub owner: Option<String>,
    #[serde(default)]
    pub open: bool,
    #[serde(default)]
    pub overdue: bool,
    pub limit: Option<i64>,
}

pub async fn action_items(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<ActionItemParams>,
) -> ApiResult<Response> {
    let items = s
        .app
        .action_items(
            &caller,
            ListActionItems {
                owner: p.owner.filter(|o| !o.is_empty()),
                open_only: p.open,
                overdue_only: p.overdue,
                limit: p.limit,
            },
        )
        .await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn communicate(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(k): Path<String>,
    ApiJson(body): ApiJson<Communicate>,
) -> ApiResult<Response> {
    let sent = body.send;
    let view = s.app.communicate(&caller, &key(&k), body).await?;
    let status = if sent {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub bucket: Option<BucketSize>,
    pub format: Option<String>,
    pub lang: Option<String>,
}

pub async fn metrics(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<MetricsParams>,
) -> ApiResult<Response> {
    let required = |field: &str, v: Option<String>| -> ApiResult<jiff::Timestamp> {
        time_param(field, v)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "required",
                "give the period as RFC 3339 times, e.g. from=2026-11-01T00:00:00Z",
            )
            .field(field)
        })
    };
    let request = MetricsRequest {
        from: required("from", p.from)?,
        to: required("to", p.to)?,
        bucket: p.bucket,
    };
    let lang = match p.lang.as_deref() {
        None | Some("ja") => ChartLang::Ja,
        Some("en") => ChartLang::En,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_value",
                "must be ja or en",
            )
            .field("lang"));
        }
    };
    let format = p.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "csv" | "svg") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_value",
            "must be json, csv or svg",
        )
        .field("format"));
    }
    let m = s.app.metrics(&caller, &request).await?;
    Ok(match format.as_str() {
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            metrics::to_csv(&m),
        )
            .into_response(),
        "svg" => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
            ],
            metrics::to_svg(&m, lang),
        )
            .into_response(),
        _ => Json(m).into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

/// The GDPR Art. 33(5) breach register, as JSON or CSV.
pub async fn breach_register(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<RegisterParams>,
) -> ApiResult<Response> {
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_value",
                "must be json or csv",
            )
            .field("format"));
        }
    };
    let from = time_param("from", p.from)?;
    let to = time_param("to", p.to)?;
    let entries = s.app.breach_register(&caller, from, to).await?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            kiroku_app::breach_register_csv(&entries),
        )
            .into_response()
    } else {
        Json(json!({ "items": entries })).into_response()
    })
}
