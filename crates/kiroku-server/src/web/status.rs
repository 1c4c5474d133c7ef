//! The public status page and its Atom feed: components, incidents with
//! the updates that were published, and nothing internal.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use kiroku_app::{ComponentState, PublicIncident};
use kiroku_domain::validate::escape_markup;

use super::pages::PageQuery;
use super::{Chrome, error_page, local, page, public};
use crate::AppState;

struct ComponentRow {
    name: String,
    state: &'static str,
    label: &'static str,
}

struct UpdateRow {
    at: String,
    subject: String,
    body: String,
}

struct IncidentRow {
    started: String,
    resolved: String,
    components: String,
    updates: Vec<UpdateRow>,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    c: Chrome,
    components: Vec<ComponentRow>,
    active: Vec<IncidentRow>,
    history: Vec<IncidentRow>,
}

fn incident_row(zone: &TimeZone, i: PublicIncident) -> IncidentRow {
    IncidentRow {
        started: local(zone, i.started_at),
        resolved: i.resolved_at.map(|t| local(zone, t)).unwrap_or_default(),
        components: i.components.join(", "),
        updates: i
            .updates
            .into_iter()
            .map(|u| UpdateRow {
                at: local(zone, u.at),
                subject: u.subject,
                body: u.body,
            })
            .collect(),
    }
}

pub(crate) async fn status(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let c = public(&headers, q.lang.as_deref(), "/status");
    let view = match s.app.public_status().await {
        Ok(v) => v,
        Err(e) => return error_page(c, e),
    };
    let zone = s.app.config().time_zone.clone();
    let components = view
        .components
        .into_iter()
        .map(|k| {
            let (state, label) = match k.state {
                ComponentState::Operational => ("operational", c.w.operational),
                ComponentState::Degraded => ("degraded", c.w.degraded),
                ComponentState::Outage => ("outage", c.w.outage),
            };
            ComponentRow {
                name: k.name,
                state,
                label,
            }
        })
        .collect();
    let active = view
        .active
        .into_iter()
        .map(|i| incident_row(&zone, i))
        .collect();
    let history = view
        .history
        .into_iter()
        .map(|i| incident_row(&zone, i))
        .collect();
    page(
        StatusCode::OK,
        &StatusPage {
            c,
            components,
            active,
            history,
        },
    )
}

/// RFC 4287: one entry per published update, newest first.
pub(crate) async fn feed(State(s): State<AppState>) -> Response {
    let view = match s.app.public_status().await {
        Ok(v) => v,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let mut entries: Vec<(jiff::Timestamp, String)> = Vec::new();
    for i in view.active.iter().chain(&view.history) {
        for (n, u) in i.updates.iter().enumerate() {
            entries.push((
                u.at,
                format!(
                    "<entry><id>urn:uuid:{}#{n}</id><title>{}</title><updated>{}</updated><content type=\"text\">{}</content></entry>",
                    i.id,
                    escape_markup(&u.subject),
                    u.at,
                    escape_markup(&u.body)
                ),
            ));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let updated = entries
        .first()
        .map_or_else(jiff::Timestamp::now, |(at, _)| *at);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:kiroku:status</id><title>Status</title><updated>{updated}</updated><link rel=\"alternate\" href=\"/status\"/>{}</feed>\n",
        entries.into_iter().map(|(_, e)| e).collect::<String>()
    );
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        body,
    )
        .into_response()
}
