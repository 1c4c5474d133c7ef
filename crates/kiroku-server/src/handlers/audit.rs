//! The audit trail's proofs and tree heads.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiroku_app::Caller;
use kiroku_store::AuditQuery;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiQuery, time_param};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Open sealed values (audited as a decrypting read).
    #[serde(default)]
    pub decrypt: bool,
}

pub async fn event(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(seq): Path<String>,
    ApiQuery(p): ApiQuery<EventParams>,
) -> ApiResult<Response> {
    let seq: i64 = seq
        .parse()
        .map_err(|_| ApiError::not_found("audit event"))?;
    let (event, leaf_hash) = if p.decrypt {
        s.app.audit_event_opened(&caller, seq).await?
    } else {
        s.app.audit_event(&caller, seq).await?
    };
    Ok(Json(json!({ "event": event, "leaf_hash": leaf_hash })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadParams {
    pub below: Option<u64>,
    pub limit: Option<i64>,
}

pub async fn tree_heads(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<HeadParams>,
) -> ApiResult<Response> {
    let limit = p.limit.unwrap_or(50);
    let items = s.app.tree_heads(&caller, p.below, limit).await?;
    Ok(Json(json!({ "latest": items.first(), "items": items })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    pub seq: u64,
    pub tree_size: Option<u64>,
}

pub async fn inclusion(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<InclusionParams>,
) -> ApiResult<Response> {
    Ok(Json(s.app.inclusion_proof(&caller, p.seq, p.tree_size).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    pub first: u64,
    pub second: Option<u64>,
}

pub async fn consistency(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<ConsistencyParams>,
) -> ApiResult<Response> {
    Ok(Json(s.app.consistency_proof(&caller, p.first, p.second).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    pub events: Vec<kiroku_app::ExternalEvent>,
}

/// Audit events from other applications: all accepted or none.
pub async fn ingest(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    crate::json::ApiJson(body): crate::json::ApiJson<IngestBody>,
) -> ApiResult<Response> {
    let seqs = s.app.ingest_audit_events(&caller, body.events).await?;
    let body =
        json!({ "accepted": seqs.len(), "first_seq": seqs.first(), "last_seq": seqs.last() });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Signs a head now if the tree grew: 201 with the new head, else 200 with
/// the latest.
pub async fn sign_now(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let (new, head) = s.app.sign_tree_head_now(&caller).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "head": head }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `jsonl` (default) or `csv`.
    pub format: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Streams the audit log for a time range, page by page, as JSON Lines or
/// CSV; the export itself is audited first.
pub async fn export(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> ApiResult<Response> {
    use kiroku_app::ExportFormat;
    let format = ExportFormat::parse(p.format.as_deref().unwrap_or("jsonl")).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_value",
            "must be jsonl or csv",
        )
        .field("format")
    })?;
    let query = kiroku_store::AuditQuery {
        time_from: time_param("from", p.from)?,
        time_to: time_param("to", p.to)?,
        limit: kiroku_store::PAGE_MAX,
        ..Default::default()
    };
    s.app.begin_export(&caller, &query, format).await?;
    let start = Some((s.app.clone(), query, true));
    let chunks = futures_util::stream::unfold(start, move |state| async move {
        let (app, mut q, first) = state?;
        match app.export_chunk(&q, format).await {
            Ok((mut chunk, next)) => {
                if first {
                    chunk.insert_str(0, format.header());
                }
                let rest = next.map(|n| {
                    q.after_seq = Some(n);
                    (app, q, false)
                });
                Some((Ok::<_, std::io::Error>(chunk), rest))
            }
            // Headers are sent; ending the body early tells the client.
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    let ext = if format == ExportFormat::Csv {
        "csv"
    } else {
        "jsonl"
    };
    let headers = [
        (
            axum::http::header::CONTENT_TYPE,
            format.content_type().to_string(),
        ),
        (
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"kiroku-audit.{ext}\""),
        ),
    ];
    Ok((headers, axum::body::Body::from_stream(chunks)).into_response())
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

pub async fn events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Response> {
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
