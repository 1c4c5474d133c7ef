//! The route table: every route with its access rule and audit action.
//! A route that is served but missing here is refused (`no_access_rule`);
//! a method that a listed path does not serve answers 405.

use axum::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not.
    Public,
    /// Any authenticated caller; the command checks the role's permission.
    Authenticated,
    /// Monitoring systems: the routing key in the body or the path is the
    /// credential, checked by the handler; refusals are not audited.
    RoutingKey,
}

#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The audit action a refused request is recorded under.
    pub action: &'static str,
}

const fn rule(
    method: &'static str,
    path: &'static str,
    access: Access,
    action: &'static str,
) -> RouteRule {
    RouteRule {
        method,
        path,
        access,
        action,
    }
}

use Access::{Authenticated as A, Public as P, RoutingKey as K};

pub const ROUTES: &[RouteRule] = &[
    rule("GET", "/healthz", P, "health_check"),
    rule("GET", "/api/v1/openapi.json", P, "openapi_read"),
    rule("POST", "/api/v1/auth/login", P, "authn_login"),
    rule("POST", "/api/v1/auth/logout", A, "authn_logout"),
    rule("GET", "/api/v1/me", A, "me_read"),
    rule("GET", "/api/v1/meta", A, "meta_read"),
    rule("GET", "/api/v1/incidents", A, "incident_list"),
    rule("POST", "/api/v1/incidents", A, "incident_create"),
    rule("GET", "/api/v1/incidents/{key}", A, "incident_read"),
    rule("PATCH", "/api/v1/incidents/{key}", A, "incident_update"),
    rule(
        "POST",
        "/api/v1/incidents/{key}/acknowledge",
        A,
        "incident_acknowledge",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/investigate",
        A,
        "incident_investigate",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/mitigate",
        A,
        "incident_mitigate",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/resolve",
        A,
        "incident_resolve",
    ),
    rule("POST", "/api/v1/incidents/{key}/close", A, "incident_close"),
    rule(
        "GET",
        "/api/v1/incidents/{key}/timeline",
        A,
        "incident_timeline_read",
    ),
    rule(
        "GET",
        "/api/v1/incidents/{key}/obligations",
        A,
        "incident_obligations_read",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/notes",
        A,
        "incident_note_add",
    ),
    rule(
        "GET",
        "/api/v1/incidents/{key}/postmortem",
        A,
        "postmortem_read",
    ),
    rule(
        "PUT",
        "/api/v1/incidents/{key}/postmortem",
        A,
        "postmortem_save",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/postmortem/approvals",
        A,
        "postmortem_approve",
    ),
    rule(
        "GET",
        "/api/v1/incidents/{key}/reports/{file}",
        A,
        "incident_report_read",
    ),
    rule(
        "PUT",
        "/api/v1/incidents/{key}/obligations/{rule}",
        A,
        "obligation_decide",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/communications",
        A,
        "incident_communicate",
    ),
    rule("GET", "/api/v1/obligations", A, "obligation_list"),
    rule("GET", "/api/v1/action-items", A, "action_item_list"),
    rule("GET", "/api/v1/metrics", A, "metrics_read"),
    rule("GET", "/api/v1/breach-register", A, "breach_register_read"),
    rule("GET", "/api/v1/users", A, "user_list"),
    rule("POST", "/api/v1/users", A, "user_create"),
    rule("GET", "/api/v1/tokens", A, "authn_token_list"),
    rule("POST", "/api/v1/tokens", A, "authn_token_create"),
    rule("DELETE", "/api/v1/tokens/{id}", A, "authn_token_revoke"),
    rule("GET", "/api/v1/audit/events", A, "audit_read"),
    rule("POST", "/api/v1/audit/events", A, "audit_ingest"),
    rule("GET", "/api/v1/audit/export", A, "audit_export"),
    rule("GET", "/api/v1/audit/events/{seq}", A, "audit_read"),
    rule("GET", "/api/v1/audit/tree-heads", A, "audit_tree_head_read"),
    rule(
        "POST",
        "/api/v1/audit/tree-heads",
        A,
        "audit_tree_head_sign",
    ),
    rule(
        "GET",
        "/api/v1/audit/proofs/inclusion",
        A,
        "audit_proof_read",
    ),
    rule(
        "GET",
        "/api/v1/audit/proofs/consistency",
        A,
        "audit_proof_read",
    ),
    rule("GET", "/api/v1/services", A, "service_list"),
    rule("POST", "/api/v1/services", A, "service_create"),
    rule("GET", "/api/v1/services/{key}", A, "service_read"),
    rule(
        "PUT",
        "/api/v1/services/{key}/routing",
        A,
        "service_routing_set",
    ),
    rule(
        "POST",
        "/api/v1/services/{key}/maintenance-windows",
        A,
        "service_maintenance_add",
    ),
    rule(
        "DELETE",
        "/api/v1/services/{key}/maintenance-windows/{id}",
        A,
        "service_maintenance_remove",
    ),
    rule(
        "GET",
        "/api/v1/services/{key}/changes",
        A,
        "service_change_list",
    ),
    rule("GET", "/api/v1/channels", A, "channel_list"),
    rule("POST", "/api/v1/channels", A, "channel_create"),
    rule("DELETE", "/api/v1/channels/{id}", A, "channel_remove"),
    rule("GET", "/api/v1/notifications", A, "notification_list"),
    rule(
        "GET",
        "/api/v1/escalation-policies",
        A,
        "escalation_policy_list",
    ),
    rule(
        "POST",
        "/api/v1/escalation-policies",
        A,
        "escalation_policy_create",
    ),
    rule(
        "GET",
        "/api/v1/escalation-policies/{key}",
        A,
        "escalation_policy_read",
    ),
    rule(
        "PUT",
        "/api/v1/escalation-policies/{key}",
        A,
        "escalation_policy_update",
    ),
    rule(
        "GET",
        "/api/v1/incidents/{key}/escalation",
        A,
        "escalation_read",
    ),
    rule(
        "POST",
        "/api/v1/incidents/{key}/escalate",
        A,
        "incident_escalate",
    ),
    rule("GET", "/api/v1/schedules", A, "schedule_list"),
    rule("POST", "/api/v1/schedules", A, "schedule_create"),
    rule("GET", "/api/v1/schedules/{key}", A, "schedule_read"),
    rule("GET", "/api/v1/schedules/{key}/oncall", A, "oncall_read"),
    rule("GET", "/api/v1/schedules/{key}/shifts", A, "schedule_read"),
    rule(
        "POST",
        "/api/v1/schedules/{key}/overrides",
        A,
        "schedule_override_add",
    ),
    rule(
        "DELETE",
        "/api/v1/schedules/{key}/overrides/{id}",
        A,
        "schedule_override_remove",
    ),
    rule(
        "GET",
        "/api/v1/schedules/{key}/calendar.ics",
        A,
        "schedule_read",
    ),
    rule(
        "POST",
        "/api/v1/schedules/{key}/feed",
        A,
        "schedule_feed_create",
    ),
    rule(
        "GET",
        "/api/v1/users/{name}/calendar.ics",
        A,
        "schedule_read",
    ),
    rule(
        "POST",
        "/api/v1/users/{name}/calendar-feed",
        A,
        "schedule_feed_create",
    ),
    rule(
        "GET",
        "/api/v1/users/{name}/contact-methods",
        A,
        "contact_method_list",
    ),
    rule(
        "POST",
        "/api/v1/users/{name}/contact-methods",
        A,
        "contact_method_create",
    ),
    rule(
        "DELETE",
        "/api/v1/users/{name}/contact-methods/{id}",
        A,
        "contact_method_remove",
    ),
    // The link or the provider's signature is the credential.
    rule("GET", "/ack/{token}", P, "escalation_acknowledge"),
    rule("POST", "/ack/{token}", P, "escalation_acknowledge"),
    rule("GET", "/ical/{token}", P, "schedule_read"),
    rule("POST", "/api/v1/sms/inbound", P, "escalation_acknowledge"),
    rule("GET", "/api/v1/integrations", A, "integration_list"),
    rule("POST", "/api/v1/integrations", A, "integration_create"),
    rule("GET", "/api/v1/integrations/{key}", A, "integration_read"),
    rule(
        "PATCH",
        "/api/v1/integrations/{key}",
        A,
        "integration_update",
    ),
    rule(
        "POST",
        "/api/v1/integrations/{key}/rotate-key",
        A,
        "integration_key_rotate",
    ),
    rule("GET", "/api/v1/alerts", A, "alert_list"),
    rule("GET", "/api/v1/alerts/{id}", A, "alert_read"),
    rule("POST", "/v2/enqueue", K, "alert_intake"),
    rule("POST", "/v2/change/enqueue", K, "change_intake"),
    rule(
        "POST",
        "/api/v1/integrations/{key}/alertmanager",
        K,
        "alert_intake",
    ),
    rule(
        "POST",
        "/api/v1/integrations/{key}/grafana",
        K,
        "alert_intake",
    ),
    rule(
        "POST",
        "/api/v1/integrations/{key}/generic",
        K,
        "alert_intake",
    ),
];

/// The web UI's pages. They are public to the middleware: each page
/// resolves the session itself and sends a visitor without one to the
/// login page, and each form checks its CSRF token.
pub const PAGES: &[RouteRule] = &[
    rule("GET", "/", P, "page_read"),
    rule("GET", "/login", P, "page_read"),
    rule("POST", "/login", P, "authn_login"),
    rule("POST", "/logout", P, "authn_logout"),
    rule("GET", "/incidents", P, "page_read"),
    rule("POST", "/incidents", P, "incident_create"),
    rule("GET", "/incidents/new", P, "page_read"),
    rule("GET", "/alerts", P, "page_read"),
    rule("GET", "/incidents/{key}", P, "page_read"),
    rule("GET", "/incidents/{key}/timeline", P, "page_read"),
    rule(
        "POST",
        "/incidents/{key}/transition",
        P,
        "incident_transition",
    ),
    rule("POST", "/incidents/{key}/notes", P, "incident_note_add"),
    rule("POST", "/incidents/{key}/edit", P, "incident_update"),
    rule("GET", "/incidents/{key}/reports/{kind}", P, "page_read"),
    rule(
        "POST",
        "/incidents/{key}/obligations/{rule}",
        P,
        "obligation_decide",
    ),
    rule("GET", "/incidents/{key}/postmortem", P, "page_read"),
    rule("POST", "/incidents/{key}/postmortem", P, "postmortem_save"),
    rule(
        "POST",
        "/incidents/{key}/postmortem/approve",
        P,
        "postmortem_approve",
    ),
    rule("GET", "/audit", P, "audit_read"),
    rule("GET", "/integrations", P, "page_read"),
    rule("POST", "/integrations", P, "integration_create"),
    rule("POST", "/integrations/{id}", P, "integration_update"),
    rule(
        "POST",
        "/services/{service}/routing",
        P,
        "service_routing_set",
    ),
    rule(
        "POST",
        "/services/{service}/maintenance",
        P,
        "service_maintenance_add",
    ),
    rule(
        "POST",
        "/services/{service}/maintenance/{window}/remove",
        P,
        "service_maintenance_remove",
    ),
    rule("GET", "/schedules", P, "page_read"),
    rule(
        "POST",
        "/schedules/{name}/overrides",
        P,
        "schedule_override_add",
    ),
    rule("GET", "/users", P, "page_read"),
    rule("POST", "/users", P, "user_create"),
    rule("GET", "/policies", P, "page_read"),
    rule("POST", "/policies/{name}", P, "escalation_policy_update"),
    rule("POST", "/tokens", P, "authn_token_create"),
    rule("POST", "/tokens/{id}/revoke", P, "authn_token_revoke"),
    rule("GET", "/status", P, "status_read"),
    rule("GET", "/status/feed.atom", P, "status_read"),
    rule("GET", "/assets/app.css", P, "page_read"),
    rule("GET", "/assets/app.js", P, "page_read"),
];

/// How a path is reached by whichever methods it serves: `None` for a path
/// not in the table.
pub fn path_access(path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .chain(PAGES)
        .find(|r| r.path == path)
        .map(|r| r.access)
}

/// Whether a request's path, on the route whose template is `template`,
/// may hold a credential, so that only the template may be recorded: a
/// signed link's `{token}`, or the segment after `/api/v1/integrations/`,
/// which is a routing key on intake routes and may be one sent by mistake
/// where an integration's id belongs.
pub fn path_holds_credential(template: &str) -> bool {
    template.contains("{token}") || template.starts_with("/api/v1/integrations/{key}")
}

/// The rule for `method` on `path`; `HEAD` is `GET`'s, as the router
/// serves it.
pub fn route_rule(method: &Method, path: &str) -> Option<&'static RouteRule> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .chain(PAGES)
        .find(|r| r.path == path && r.method == method)
}
