//! Kiroku's HTTP API under `/api/v1`.
//!
//! Handlers are thin: they parse, call [`kiroku_app::App`], and render. The
//! authentication middleware resolves the caller for every route and
//! writes every refused request to the audit log.

mod auth;
mod error;
mod handlers;
mod json;
pub mod routes;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use kiroku_app::App;
use tower_http::timeout::TimeoutLayer;

pub use auth::SESSION_COOKIE;
pub use error::{ApiError, ErrorBody};
pub use handlers::audit::IngestBody;
pub use handlers::meta::OPENAPI;
/// The body parser every JSON route uses, public for the fuzz targets.
pub use json::parse_json;

/// Requests larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Request line and headers larger than this, or more than
/// [`MAX_HEADERS`] headers, are answered 431 and the connection closed.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Mark cookies `Secure` (when served over TLS, directly or by a proxy).
    pub secure_cookies: bool,
    /// Take the client address from `X-Forwarded-For` (behind a proxy).
    pub trust_forwarded_for: bool,
    /// Text replies from the SMS provider are taken, their signatures
    /// checked with its auth token.
    pub inbound_sms: Option<InboundSms>,
    /// A client that has not sent a whole request head within this is
    /// disconnected (slow headers; an idle keep-alive connection too).
    pub header_read_timeout: Duration,
    /// A request not answered within this (a slow body included) gets 408.
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            secure_cookies: false,
            trust_forwarded_for: false,
            inbound_sms: None,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct InboundSms {
    /// Never logged.
    pub auth_token: String,
}

impl std::fmt::Debug for InboundSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboundSms { auth_token: (set) }")
    }
}

#[derive(Clone)]
pub struct AppState {
    /// Behind one pointer: axum clones the state for every request, and
    /// `App` is a dozen shared handles, each a count to raise and lower.
    pub app: Arc<App>,
    pub http: Arc<HttpConfig>,
    pub intake: Arc<handlers::intake::IntakeState>,
}

/// Every path no route serves. Not audited (a scan must not become a
/// flood of writes), but shown to detection, which counts such requests
/// per address.
async fn not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
) -> Response {
    let path: String = req.uri().path().chars().take(256).collect();
    state
        .app
        .observe_unknown_endpoint(&auth::source(&state, &req), &path);
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

pub fn router(app: App, http: HttpConfig) -> Router {
    use handlers::{
        auth as a, incidents as i, intake as k, meta as m, notify as n, oncall as o, services as sv,
    };
    let request_timeout = http.request_timeout;
    let state = AppState {
        app: Arc::new(app),
        http: Arc::new(http),
        intake: Arc::default(),
    };
    Router::new()
        .route("/healthz", get(m::health))
        .route("/api/v1/openapi.json", get(m::openapi))
        .route("/api/v1/auth/login", post(a::login))
        .route("/api/v1/auth/logout", post(a::logout))
        .route("/api/v1/me", get(a::me))
        .route("/api/v1/meta", get(m::meta))
        .route("/api/v1/incidents", get(i::list).post(i::declare))
        .route("/api/v1/incidents/{key}", get(i::show).patch(i::update))
        .route("/api/v1/incidents/{key}/acknowledge", post(i::acknowledge))
        .route("/api/v1/incidents/{key}/investigate", post(i::investigate))
        .route("/api/v1/incidents/{key}/mitigate", post(i::mitigate))
        .route("/api/v1/incidents/{key}/resolve", post(i::resolve))
        .route("/api/v1/incidents/{key}/close", post(i::close))
        .route("/api/v1/incidents/{key}/timeline", get(i::timeline))
        .route("/api/v1/incidents/{key}/obligations", get(i::obligations))
        .route("/api/v1/incidents/{key}/notes", post(i::add_note))
        .route(
            "/api/v1/incidents/{key}/postmortem",
            get(handlers::reports::show_postmortem).put(handlers::reports::save_postmortem),
        )
        .route(
            "/api/v1/incidents/{key}/postmortem/approvals",
            post(handlers::reports::approve_postmortem),
        )
        .route(
            "/api/v1/incidents/{key}/reports/{file}",
            get(handlers::reports::report),
        )
        .route(
            "/api/v1/incidents/{key}/obligations/{rule}",
            axum::routing::put(handlers::reports::decide_obligation),
        )
        .route(
            "/api/v1/incidents/{key}/communications",
            post(handlers::reports::communicate),
        )
        .route(
            "/api/v1/obligations",
            get(handlers::reports::pending_obligations),
        )
        .route("/api/v1/action-items", get(handlers::reports::action_items))
        .route("/api/v1/metrics", get(handlers::reports::metrics))
        .route(
            "/api/v1/breach-register",
            get(handlers::reports::breach_register),
        )
        .route("/api/v1/users", get(a::users).post(a::create_user))
        .route("/api/v1/tokens", get(a::tokens).post(a::create_token))
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(a::revoke_token),
        )
        .route(
            "/api/v1/audit/events",
            get(handlers::audit::events).post(handlers::audit::ingest),
        )
        .route("/api/v1/audit/events/{seq}", get(handlers::audit::event))
        .route("/api/v1/audit/export", get(handlers::audit::export))
        .route(
            "/api/v1/audit/tree-heads",
            get(handlers::audit::tree_heads).post(handlers::audit::sign_now),
        )
        .route(
            "/api/v1/audit/proofs/inclusion",
            get(handlers::audit::inclusion),
        )
        .route(
            "/api/v1/audit/proofs/consistency",
            get(handlers::audit::consistency),
        )
        .route(
            "/api/v1/services",
            get(sv::list_services).post(sv::create_service),
        )
        .route("/api/v1/services/{key}", get(sv::show_service))
        .route("/api/v1/services/{key}/routing", put(sv::set_routing))
        .route(
            "/api/v1/services/{key}/maintenance-windows",
            post(sv::add_maintenance),
        )
        .route(
            "/api/v1/services/{key}/maintenance-windows/{id}",
            axum::routing::delete(sv::remove_maintenance),
        )
        .route("/api/v1/services/{key}/changes", get(sv::service_changes))
        .route(
            "/api/v1/channels",
            get(n::list_channels).post(n::create_channel),
        )
        .route("/api/v1/channels/{id}", delete(n::remove_channel))
        .route("/api/v1/notifications", get(n::list_deliveries))
        .route(
            "/api/v1/integrations",
            get(sv::list_integrations).post(sv::create_integration),
        )
        // `{key}` is the integration's id here, and its routing key on
        // the intake paths below: one segment, one name.
        .route(
            "/api/v1/integrations/{key}",
            get(sv::show_integration).patch(sv::update_integration),
        )
        .route(
            "/api/v1/integrations/{key}/rotate-key",
            post(sv::rotate_integration_key),
        )
        .route(
            "/api/v1/escalation-policies",
            get(o::list_policies).post(o::create_policy),
        )
        .route(
            "/api/v1/escalation-policies/{key}",
            get(o::show_policy).put(o::update_policy),
        )
        .route(
            "/api/v1/incidents/{key}/escalation",
            get(o::show_escalation),
        )
        .route("/api/v1/incidents/{key}/escalate", post(o::escalate))
        .route(
            "/api/v1/schedules",
            get(o::list_schedules).post(o::create_schedule),
        )
        .route("/api/v1/schedules/{key}", get(o::show_schedule))
        .route("/api/v1/schedules/{key}/oncall", get(o::oncall))
        .route("/api/v1/schedules/{key}/shifts", get(o::shifts))
        .route("/api/v1/schedules/{key}/overrides", post(o::add_override))
        .route(
            "/api/v1/schedules/{key}/overrides/{id}",
            delete(o::remove_override),
        )
        .route(
            "/api/v1/schedules/{key}/calendar.ics",
            get(o::schedule_calendar),
        )
        .route("/api/v1/schedules/{key}/feed", post(o::calendar_feed))
        .route("/api/v1/users/{name}/calendar.ics", get(o::user_calendar))
        .route(
            "/api/v1/users/{name}/calendar-feed",
            post(o::user_calendar_feed),
        )
        .route(
            "/api/v1/users/{name}/contact-methods",
            get(o::list_contact_methods).post(o::add_contact_method),
        )
        .route(
            "/api/v1/users/{name}/contact-methods/{id}",
            delete(o::remove_contact_method),
        )
        .route("/ack/{token}", get(o::ack_page).post(o::ack_by_link))
        .route("/ical/{token}", get(o::calendar_by_link))
        .route("/api/v1/sms/inbound", post(o::inbound_sms))
        .route("/api/v1/alerts", get(sv::list_alerts))
        .route("/api/v1/alerts/{id}", get(sv::show_alert))
        .route(
            "/v2/enqueue",
            post(k::pagerduty_enqueue).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v2/change/enqueue",
            post(k::pagerduty_change).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/integrations/{key}/alertmanager",
            post(k::alertmanager_webhook).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/integrations/{key}/grafana",
            post(k::grafana_webhook).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/integrations/{key}/generic",
            post(k::generic_webhook).layer(DefaultBodyLimit::disable()),
        )
        .merge(web::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Method, route and status at debug level; headers (and so
        // credentials) are never logged, nor paths that carry a signed
        // link: a served route is named by its template.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
                    tracing::debug_span!("request", method = %req.method(), %route)
                },
            ),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

/// Serves HTTP/1.1 until `shutdown` completes, then finishes in-flight
/// requests. Each connection must send its request head within
/// `header_read_timeout` (a slowloris client is cut off; axum's own server
/// sets no such limit) and keep it within [`MAX_HEADER_BYTES`] and
/// [`MAX_HEADERS`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    // Each connection is watched, so that shutting down asks them all to
    // finish their requests and waits until they have.
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let conn = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
