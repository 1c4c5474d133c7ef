//! The audit log page: search, the latest signed tree head, and a proof
//! to download for each event the head covers. Auditors and admins only.

use askama::Template;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kiroku_app::{AppError, Caller};
use kiroku_domain::Outcome;
use kiroku_store::AuditQuery;
use serde::Deserialize;

use super::{Chrome, error_page, page, signed_in};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    lang: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    q: Option<String>,
}

struct HeadRow {
    size: u64,
    root: String,
    at: String,
}

struct EventRow {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: &'static str,
    /// The signed tree size a proof of this event can be asked against.
    proof_size: Option<u64>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    head: Option<HeadRow>,
    events: Vec<EventRow>,
    actor: String,
    action: String,
    q: String,
    error: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

pub(crate) async fn audit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(p): Query<AuditParams>,
) -> Response {
    let c = match signed_in(&caller, &headers, p.lang.as_deref(), "/audit") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let zone = s.app.config().time_zone.clone();
    let local = |t: jiff::Timestamp| {
        zone.to_datetime(t)
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let head = match s.app.tree_heads(&caller, None, 1).await {
        Ok(h) => h.into_iter().next().map(|h| HeadRow {
            size: h.head.tree_size,
            root: h.head.root_hash,
            at: local(h.head.time),
        }),
        Err(e) => return error_page(c, e),
    };
    let found = s
        .app
        .audit_events(
            &caller,
            AuditQuery {
                actor: given(&p.actor),
                action: given(&p.action),
                text: given(&p.q),
                newest_first: true,
                limit: 100,
                ..AuditQuery::default()
            },
        )
        .await;
    let (events, error) = match found {
        Ok(events) => (events, None),
        Err(AppError::Invalid(v)) => (Vec::new(), Some(v.to_string())),
        Err(e) => return error_page(c, e),
    };
    let covered = head.as_ref().map_or(0, |h| h.size);
    let events = events
        .into_iter()
        .map(|e| EventRow {
            seq: e.seq,
            at: local(e.time),
            actor: e
                .actor
                .name
                .clone()
                .or(e.actor.id.clone())
                .unwrap_or_default(),
            action: e.action,
            target: format!("{} {}", e.target.kind, e.target.id.unwrap_or_default()),
            outcome: if e.outcome == Outcome::Success {
                "success"
            } else {
                "failure"
            },
            proof_size: (e.seq as u64 <= covered).then_some(covered),
        })
        .collect();
    page(
        StatusCode::OK,
        &AuditPage {
            c,
            head,
            events,
            actor: p.actor.unwrap_or_default(),
            action: p.action.unwrap_or_default(),
            q: p.q.unwrap_or_default(),
            error,
        },
    )
}
