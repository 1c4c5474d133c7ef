//! The web UI over real HTTP: signing in, the dashboard, declaring,
//! acting on and noting an incident through forms, the security headers,
//! CSRF and cross-origin refusals, escaping, stale forms, role refusals,
//! and the public status page leaking nothing internal.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::support::{self, TestApp};

pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first hidden input named `name`.
    /// The page's "next page" link, as a browser follows it.
    fn next_link(&self) -> String {
        let from = "rel=\"next\" href=\"";
        let at = self.body.find(from).expect("a next link") + from.len();
        let href = self.body[at..].split('"').next().unwrap_or_default();
        href.replace("&#38;", "&").replace("&amp;", "&")
    }

    pub(crate) fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

impl Browser {
    pub(crate) fn new(t: &TestApp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: t.url(""),
            cookies: Vec::new(),
        }
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let raw = v.to_str().unwrap();
            let pair = raw.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !raw.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn done(&mut self, req: reqwest::RequestBuilder) -> Page {
        let res = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        self.keep_cookies(&headers);
        let body = res.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.done(req).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", self.base.trim_end_matches('/'))
            .form(form);
        self.done(req).await
    }

    pub(crate) async fn log_in(&mut self, name: &str, totp: &str) -> Page {
        let form = self.get("/login").await;
        let token = form.hidden("token");
        self.post(
            "/login",
            &[
                ("name", name),
                ("password", support::PASSWORD),
                ("totp_code", totp),
                ("token", &token),
            ],
        )
        .await
    }
}

/// One approval makes a postmortem final here, so one admin can show it.
pub(crate) fn one_step_chain() -> kiroku_app::Config {
    let mut config = support::config();
    config.reports.approvals.steps.truncate(1);
    config.reports.approvals.security_steps.clear();
    config
}

#[tokio::test]
async fn pages_work_and_refuse_what_they_must() {
    let t = TestApp::with_config(support::sqlite().await, one_step_chain()).await;
    let mut b = Browser::new(&t);

    // Signed out, pages send to the login page; it carries the headers.
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location(), "/login");
    let login = b.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert!(!login.body.contains("<script>"), "no inline script");
    assert!(login.body.contains("lang=\"ja\""));

    // A login form posted without its token is refused; a wrong password
    // is an error on the page.
    let forged = b
        .post(
            "/login",
            &[
                ("name", "responder"),
                ("password", support::PASSWORD),
                ("token", "x"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let wrong = b.log_in("responder", "").await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER, "{}", wrong.body);
    let signed = b.get("/").await;
    assert_eq!(signed.status, StatusCode::OK);
    assert!(signed.body.contains("ダッシュボード"), "{}", signed.body);
    let session = b
        .cookies
        .iter()
        .find(|(k, _)| k == kiroku_server::SESSION_COOKIE)
        .cloned()
        .unwrap();

    // Declaring: an error keeps what was typed and names the field.
    let form = b.get("/incidents/new").await;
    let csrf = form.hidden("csrf");
    let bad = b
        .post(
            "/incidents",
            &[
                ("csrf", &csrf),
                ("title", ""),
                ("summary", "typed summary"),
                ("category", "database"),
                ("severity", "P1"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"error-title\"") && bad.body.contains("typed summary"));
    let no_token = b
        .post(
            "/incidents",
            &[
                ("title", "forged"),
                ("category", "database"),
                ("severity", "P1"),
            ],
        )
        .await;
    assert_eq!(
        no_token.status,
        StatusCode::FORBIDDEN,
        "a form without its token changes nothing"
    );
    let xss = "<script>alert(1)</script>";
    let made = b
        .post(
            "/incidents",
            &[
                ("csrf", &csrf),
                ("title", xss),
                ("category", "database"),
                ("severity", "P1"),
                ("services", "api"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let path = made.location().to_string();
    let incident = b.get(&path).await;
    assert_eq!(incident.status, StatusCode::OK);
    assert!(
        incident
            .body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
    );
    assert!(!incident.body.contains(xss));
    let version = incident.hidden("version");

    // A form of another site, or without its token, changes nothing.
    let cross = b
        .http
        .post(format!("{}{path}/transition", b.base))
        .header("origin", "http://evil.example")
        .header("cookie", b.cookie_header())
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "acknowledge"),
            ("version", &version),
        ])
        .send()
        .await
        .unwrap();
    // The cookie does not count from another origin: not signed in there.
    assert_eq!(cross.status(), StatusCode::SEE_OTHER);
    assert_eq!(cross.headers()[LOCATION], "/login");
    assert!(
        b.get(&path).await.body.contains(">triggered<"),
        "nothing changed"
    );
    let tokenless = b
        .post(
            &format!("{path}/transition"),
            &[
                ("csrf", "nope"),
                ("action", "acknowledge"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
    // A stale form is detected, not applied over the newer state.
    let number = path.trim_start_matches("/incidents/").to_string();
    let (s, _) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{number}/notes"),
            json!({ "body": "meanwhile" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = t
        .post(
            &t.responder,
            &format!("/api/v1/incidents/{number}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let stale = b
        .post(
            &format!("{path}/transition"),
            &[
                ("csrf", &csrf),
                ("action", "investigate"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.body.contains("id=\"action-error\""));
    let fresh = b.get(&path).await;
    let current = fresh.hidden("version");
    let moved = b
        .post(
            &format!("{path}/transition"),
            &[
                ("csrf", &csrf),
                ("action", "investigate"),
                ("version", &current),
            ],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);

    // Notes: an empty one keeps the page with the error; a note shows in
    // the live timeline fragment, escaped.
    let empty = b
        .post(
            &format!("{path}/notes"),
            &[("csrf", &csrf), ("body", "   ")],
        )
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("id=\"note-error\""));
    let noted = b
        .post(
            &format!("{path}/notes"),
            &[("csrf", &csrf), ("body", "<b>接続プール</b>を確認")],
        )
        .await;
    assert_eq!(noted.status, StatusCode::SEE_OTHER);
    let live = b.get(&format!("{path}/timeline")).await;
    assert!(
        live.body
            .contains("&#60;b&#62;接続プール&#60;/b&#62;を確認"),
        "{}",
        live.body
    );

    // Impact, people and personal data from the page bring the duties,
    // decided from the page with their reason.
    let page_now = b.get(&path).await;
    let v = page_now.hidden("version");
    let bad_count = b
        .post(
            &format!("{path}/edit"),
            &[("csrf", &csrf), ("version", &v), ("users_affected", "many")],
        )
        .await;
    assert_eq!(bad_count.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_count.body.contains("id=\"edit-error\"")
            && bad_count.body.contains("impact.users_affected")
    );
    let edited = b
        .post(
            &format!("{path}/edit"),
            &[
                ("csrf", &csrf),
                ("version", &v),
                ("commander", "responder"),
                ("users_affected", "1500"),
                ("personal_data", "1"),
                ("data_items", "氏名, メールアドレス"),
                ("people_affected", "1500"),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let reads = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| e["action"] == "incident_read_personal_data")
            .count()
    };
    let before = reads(&t.audit().await);
    let with_duties = b.get(&path).await;
    assert_eq!(
        reads(&t.audit().await),
        before + 1,
        "one audited read a page"
    );
    assert!(
        with_duties.body.contains("id=\"duty-appi_preliminary\""),
        "{}",
        with_duties.body
    );
    let unreasoned = b
        .post(
            &format!("{path}/obligations/appi_preliminary"),
            &[("csrf", &csrf), ("status", "not_required")],
        )
        .await;
    assert_eq!(unreasoned.status, StatusCode::UNPROCESSABLE_ENTITY);
    let decided = b
        .post(
            &format!("{path}/obligations/appi_preliminary"),
            &[
                ("csrf", &csrf),
                ("status", "submitted"),
                ("reason", "PPC-2026-0001"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER);
    assert!(b.get(&path).await.body.contains("PPC-2026-0001"));

    // English by a switch, remembered.
    let en = b.get("/incidents?lang=en").await;
    assert!(en.body.contains("Incidents") && en.body.contains("lang=\"en\""));
    assert!(b.get("/").await.body.contains("Dashboard"));

    // A viewer's direct URL to an action is a 403 page, not data.
    let mut viewer = Browser::new(&t);
    assert_eq!(
        viewer.log_in("viewer", "").await.status,
        StatusCode::SEE_OTHER
    );
    let vform = viewer.get(&path).await;
    let vcsrf = vform.hidden("csrf");
    let refused = viewer
        .post(
            &format!("{path}/transition"),
            &[
                ("csrf", &vcsrf),
                ("action", "resolve"),
                ("version", &vform.hidden("version")),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        !refused.body.contains("alert(1)"),
        "a refusal shows no incident data"
    );
    let missing = viewer.get("/incidents/NOPE-2026-001").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Refusals by page are audited as the API's are.
    let audit = t.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "authz_fail" && e["error_code"] == "forbidden")
    );
    assert!(
        audit
            .iter()
            .any(|e| e["error_code"] == "csrf_token_invalid")
    );

    // The public status page: the component is affected, but nothing of
    // the incident shows until an update is published.
    let (s, _) = t
        .post(&t.admin, "/api/v1/services", json!({ "name": "api" }))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut anyone = Browser::new(&t);
    let status = anyone.get("/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert!(
        status.body.contains("api") && status.body.contains("一部障害"),
        "{}",
        status.body
    );
    for secret in ["alert(1)", "meanwhile", "接続プール", "responder", &number] {
        assert!(
            !status.body.contains(secret),
            "the status page leaks {secret}"
        );
    }
    let (s, sent) = t
        .post(
            &t.admin,
            &format!("/api/v1/incidents/{number}/communications"),
            json!({ "kind": "p0_notice", "eta": "30分" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sent}");
    let status = anyone.get("/status").await;
    assert!(
        status.body.contains("推定復旧時間: 30分"),
        "{}",
        status.body
    );
    assert!(!status.body.contains("meanwhile"));
    let feed = anyone.get("/status/feed.atom").await;
    assert_eq!(
        feed.headers["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    assert!(
        feed.body
            .contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">")
    );
    assert!(!feed.body.contains(xss), "the feed escapes what it carries");

    // The postmortem editor: 精神論 is refused at approval with the reason;
    // fixed, one approval makes it final with its hash.
    let mut admin = Browser::new(&t);
    let code = support::totp_now(&t.admin.totp_secret());
    assert_eq!(
        admin.log_in("admin", &code).await.status,
        StatusCode::SEE_OTHER
    );
    let pm_path = format!("{path}/postmortem");
    let pm = admin.get(&pm_path).await;
    assert_eq!(pm.status, StatusCode::OK, "{}", pm.body);
    let acsrf = pm.hidden("csrf");
    let bad_line = admin
        .post(
            &pm_path,
            &[
                ("csrf", &acsrf),
                ("version", "0"),
                ("measures", "soon | 徹底する"),
            ],
        )
        .await;
    assert_eq!(bad_line.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_line.body.contains("id=\"error-measures\"")
            && bad_line.body.contains("soon | 徹底する")
    );
    let saved = admin
        .post(
            &pm_path,
            &[
                ("csrf", &acsrf),
                ("version", "0"),
                ("direct_cause", "接続プール枯渇"),
                ("measures", "short | 確認を徹底する | admin | 2026-12-20"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let refused = admin
        .post(
            &format!("{pm_path}/approve"),
            &[
                ("csrf", &acsrf),
                ("version", "1"),
                ("step", "incident_manager"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("id=\"approval-error\"") && refused.body.contains("精神論"),
        "{}",
        refused.body
    );
    let fixed = admin
        .post(
            &pm_path,
            &[
                ("csrf", &acsrf),
                ("version", "1"),
                ("direct_cause", "接続プール枯渇"),
                (
                    "measures",
                    "short | 接続プール監視アラートを追加 | admin | 2026-12-20",
                ),
            ],
        )
        .await;
    assert_eq!(fixed.status, StatusCode::SEE_OTHER, "{}", fixed.body);
    let stale_save = admin
        .post(
            &pm_path,
            &[("csrf", &acsrf), ("version", "1"), ("summary", "late")],
        )
        .await;
    assert_eq!(stale_save.status, StatusCode::CONFLICT);
    let approved = admin
        .post(
            &format!("{pm_path}/approve"),
            &[
                ("csrf", &acsrf),
                ("version", "2"),
                ("step", "incident_manager"),
                ("comment", "確認"),
            ],
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let final_page = admin.get(&pm_path).await;
    assert!(
        final_page.body.contains(">final<") && final_page.body.contains("id=\"pm-hash\""),
        "{}",
        final_page.body
    );

    // The audit log page: auditors and admins; the finalisation is there,
    // with a proof to download once a head covers it.
    t.app.register_signing_key().await.unwrap();
    t.app.sign_tree_head().await.unwrap();
    let audit = admin.get("/audit?action=postmortem_finalise").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.body.contains("postmortem_finalise")
            && audit.body.contains("/api/v1/audit/proofs/inclusion?seq="),
        "{}",
        audit.body
    );
    let viewer_audit = viewer.get("/audit").await;
    assert_eq!(viewer_audit.status, StatusCode::FORBIDDEN);
    assert!(!viewer_audit.body.contains("postmortem_finalise"));

    // Integrations show the URL and key to configure; only admins create.
    let created = admin
        .post(
            "/integrations",
            &[
                ("csrf", &acsrf),
                ("service", "api"),
                ("kind", "alertmanager"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(
        created.body.contains("id=\"created-key\"")
            && created.body.contains("/api/v1/integrations/")
    );
    let not_admin = b
        .post(
            "/integrations",
            &[("csrf", &csrf), ("service", "api"), ("kind", "generic")],
        )
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);
    let odd = admin
        .post(
            "/integrations",
            &[("csrf", &acsrf), ("service", "api"), ("kind", "nagios")],
        )
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(odd.body.contains("id=\"integration-error\""));
    // A leaked key is replaced from the page, and an integration disabled
    // and enabled again; only by admins, and only with the page's token.
    let between = |body: &str, from: &str, to: &str| {
        let rest = &body[body.find(from).unwrap_or_else(|| panic!("no {from}")) + from.len()..];
        rest[..rest.find(to).unwrap()].to_string()
    };
    let first_key = between(&created.body, "<code id=\"created-key\">", "<");
    let id = between(&created.body, "<tr id=\"integration-", "\"");
    let change = format!("/integrations/{id}");
    let rotated = admin
        .post(&change, &[("csrf", &acsrf), ("action", "rotate")])
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let second_key = between(&rotated.body, "<code id=\"created-key\">", "<");
    assert_eq!(second_key.len(), 32);
    assert_ne!(second_key, first_key);
    let disabled = admin
        .post(&change, &[("csrf", &acsrf), ("action", "disable")])
        .await;
    assert_eq!(disabled.status, StatusCode::OK);
    assert!(
        disabled.body.contains("class=\"disabled\"") && disabled.body.contains("value=\"enable\"")
    );
    let unknown_to_intake = t
        .http
        .post(t.url(&format!("/api/v1/integrations/{second_key}/alertmanager")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_to_intake.status(), StatusCode::NOT_FOUND);
    let enabled = admin
        .post(&change, &[("csrf", &acsrf), ("action", "enable")])
        .await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert!(
        !enabled.body.contains("class=\"disabled\""),
        "{}",
        enabled.body
    );
    let not_admin = b
        .post(&change, &[("csrf", &csrf), ("action", "disable")])
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);
    let forged = admin.post(&change, &[("action", "rotate")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let odd = admin
        .post(&change, &[("csrf", &acsrf), ("action", "delete")])
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(odd.body.contains("id=\"integration-error\""));
    let nowhere = admin
        .post(
            "/integrations/not-an-id",
            &[("csrf", &acsrf), ("action", "rotate")],
        )
        .await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    let (_, read) = t.get(&t.admin, &format!("/api/v1/integrations/{id}")).await;
    assert_eq!(
        (read["key"].as_str(), read["disabled"].as_bool()),
        (Some(second_key.as_str()), Some(false))
    );
    // The on-call calendar, and an override added from it.
    t.weekly_schedule().await;
    let calendar = admin.get("/schedules").await;
    assert_eq!(calendar.status, StatusCode::OK);
    assert!(
        calendar.body.contains("primary") && calendar.body.contains("responder"),
        "{}",
        calendar.body
    );
    let start = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48))
        .to_zoned(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap())
        .strftime("%Y-%m-%dT%H:%M")
        .to_string();
    let end = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(60))
        .to_zoned(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap())
        .strftime("%Y-%m-%dT%H:%M")
        .to_string();
    let swapped = admin
        .post(
            "/schedules/primary/overrides",
            &[
                ("csrf", &acsrf),
                ("user", "admin"),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(swapped.status, StatusCode::SEE_OTHER, "{}", swapped.body);
    let covered = admin.get("/schedules").await.body;
    assert!(
        covered.contains("admin, responder") || covered.contains("responder, admin"),
        "{covered}"
    );
    let backwards = admin
        .post(
            "/schedules/primary/overrides",
            &[
                ("csrf", &acsrf),
                ("user", "admin"),
                ("start", &end),
                ("end", &start),
            ],
        )
        .await;
    assert_eq!(backwards.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(backwards.body.contains("id=\"override-error\""));
    let garbled = admin
        .post(
            "/schedules/primary/overrides",
            &[
                ("csrf", &acsrf),
                ("user", "admin"),
                ("start", "tomorrow"),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(garbled.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Report previews: known kinds show in a frame; others are 404 pages.
    let preview = admin.get(&format!("{path}/reports/shimatsusho")).await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(preview.body.contains("<iframe") && preview.body.contains("shimatsusho.html"));
    assert_eq!(
        admin.get(&format!("{path}/reports/memo")).await.status,
        StatusCode::NOT_FOUND
    );
    // Users and tokens: admins see everyone; a token's secret shows once.
    let people = admin.get("/users").await;
    assert!(people.body.contains("id=\"users\"") && people.body.contains("auditor"));
    assert!(
        !b.get("/users").await.body.contains("id=\"users\""),
        "others see only their tokens"
    );
    let issued = admin
        .post("/tokens", &[("csrf", &acsrf), ("name", "from the page")])
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    assert!(issued.body.contains("id=\"token-secret\""));
    assert!(
        !admin
            .get("/users")
            .await
            .body
            .contains("id=\"token-secret\""),
        "shown once"
    );

    // Escalation policies are edited as their JSON; a bad one keeps the
    // text with the reason, a stale one is refused.
    t.app.ensure_default_policy().await.unwrap();
    let policies = admin.get("/policies").await;
    assert_eq!(policies.status, StatusCode::OK);
    let pversion = policies.hidden("version");
    let broken = admin
        .post(
            "/policies/default",
            &[
                ("csrf", &acsrf),
                ("version", &pversion),
                ("json", "{\"name\": \"default\", \"levels\": 7}"),
            ],
        )
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        broken.body.contains("id=\"policy-error\"") && broken.body.contains("levels"),
        "{}",
        broken.body
    );
    let good = r#"{"name": "default", "levels": [{"targets": [], "delay_minutes": 10}]}"#;
    let saved = admin
        .post(
            "/policies/default",
            &[("csrf", &acsrf), ("version", &pversion), ("json", good)],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stale_policy = admin
        .post(
            "/policies/default",
            &[("csrf", &acsrf), ("version", &pversion), ("json", good)],
        )
        .await;
    assert_eq!(stale_policy.status, StatusCode::CONFLICT);
    let not_theirs = b
        .post(
            "/policies/default",
            &[("csrf", &csrf), ("version", "99"), ("json", good)],
        )
        .await;
    assert_eq!(not_theirs.status, StatusCode::FORBIDDEN);
    // Admins create users; an admin's second-factor enrolment shows once.
    let made_user = admin
        .post(
            "/users",
            &[
                ("csrf", &acsrf),
                ("name", "yamada"),
                ("role", "admin"),
                ("password", "another long passphrase"),
            ],
        )
        .await;
    assert_eq!(made_user.status, StatusCode::CREATED, "{}", made_user.body);
    assert!(
        made_user.body.contains("id=\"user-enrolment\"") && made_user.body.contains("otpauth://")
    );
    let again = admin
        .post(
            "/users",
            &[
                ("csrf", &acsrf),
                ("name", "yamada"),
                ("role", "viewer"),
                ("password", "another long passphrase"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    let by_responder = b
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("name", "mallory"),
                ("role", "admin"),
                ("password", "another long passphrase"),
            ],
        )
        .await;
    assert_eq!(by_responder.status, StatusCode::FORBIDDEN);

    // Logging out ends the session for the API too.
    let logout = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    let after = t
        .http
        .get(t.url("/api/v1/me"))
        .header("cookie", format!("{}={}", session.0, session.1))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

/// The integrations page renames an integration and changes its rate
/// limit, edits a service's routing, and quiets the service with a
/// maintenance window that a later alert honours; a removed window pages
/// again. Bad values come back as the page's error, other roles and forged
/// forms are refused. The alerts page then says which alerts paged nobody
/// and why.
#[tokio::test]
async fn services_are_tuned_and_quieted_and_alerts_listed_from_the_pages() {
    let t = TestApp::sqlite().await;
    let mut admin = Browser::new(&t);
    let code = support::totp_now(&t.admin.totp_secret());
    assert_eq!(
        admin.log_in("admin", &code).await.status,
        StatusCode::SEE_OTHER
    );
    let mut responder = Browser::new(&t);
    responder.log_in("responder", "").await;
    let (status, integration) = t
        .post(
            &t.admin,
            "/api/v1/integrations",
            json!({"type": "generic", "service": "checkout"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (id, key) = (
        integration["id"].as_str().unwrap().to_string(),
        integration["key"].as_str().unwrap().to_string(),
    );
    let (_, service) = t.get(&t.admin, "/api/v1/services/checkout").await;
    let service_id = service["id"].as_str().unwrap().to_string();
    // The incident an alert opened, or null when it paged nobody.
    let incident_of = |dedup: &'static str| {
        let req = t
            .http
            .post(t.url(&format!("/api/v1/integrations/{key}/generic")))
            .json(&json!({"summary": dedup, "source": "web-1", "dedup_key": dedup}));
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::ACCEPTED);
            res.json::<serde_json::Value>().await.unwrap()["results"][0]["incident_id"].clone()
        }
    };

    let page = admin.get("/integrations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("id=\"service-{service_id}\"")));
    let csrf = page.hidden("csrf");
    let change = format!("/integrations/{id}");
    let saved = admin
        .post(
            &change,
            &[
                ("csrf", &csrf),
                ("action", "save"),
                ("name", "prometheus <prod>"),
                ("rate_limit", "250"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(
        saved.body.contains("value=\"prometheus &#60;prod&#62;\""),
        "{}",
        saved.body
    );
    let (_, read) = t.get(&t.admin, &format!("/api/v1/integrations/{id}")).await;
    assert_eq!(
        (
            read["name"].as_str(),
            read["rate_limit_per_second"].as_u64()
        ),
        (Some("prometheus <prod>"), Some(250))
    );
    for (rate, error) in [("lots", "whole number"), ("0", "between 1 and")] {
        let bad = admin
            .post(
                &change,
                &[
                    ("csrf", &csrf),
                    ("action", "save"),
                    ("name", "x"),
                    ("rate_limit", rate),
                ],
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{rate}");
        assert!(bad.body.contains(error), "{rate}: {}", bad.body);
    }

    // The routing, edited as its JSON: a rule suppressing noise takes
    // effect; a mistake keeps the text with where it is wrong, and a stale
    // version is refused.
    let routing = format!("/services/{service_id}/routing");
    let noise = json!({"rules": [{"name": "noise", "when": {"summary": {"regex": "noise.*"}}, "then": {"suppress": true}}]}).to_string();
    let saved = admin
        .post(
            &routing,
            &[("csrf", &csrf), ("version", "1"), ("json", &noise)],
        )
        .await;
    // Each change answers with a redirect to the service, so that a reload
    // sends nothing twice.
    let to_service = format!("/integrations#service-{service_id}");
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), to_service);
    let shown = admin.get("/integrations").await;
    assert!(
        shown.body.contains("noise.*") && shown.body.contains("name=\"version\" value=\"2\""),
        "{}",
        shown.body
    );
    let stale = admin
        .post(
            &routing,
            &[("csrf", &csrf), ("version", "1"), ("json", &noise)],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert!(stale.body.contains("id=\"routing-error\""));
    // The kept text keeps its version: sent again, it is refused again.
    assert!(
        stale.body.contains("name=\"version\" value=\"1\""),
        "{}",
        stale.body
    );
    let typo = r#"{"rules": [{"when": {"summry": "x"}}]}"#;
    let refused = admin
        .post(
            &routing,
            &[("csrf", &csrf), ("version", "2"), ("json", typo)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("rules[0].when") && refused.body.contains("summry"),
        "{}",
        refused.body
    );
    let bad_regex = r#"{"rules": [{"when": {"summary": {"regex": "(open"}}}]}"#;
    let refused = admin
        .post(
            &routing,
            &[("csrf", &csrf), ("version", "2"), ("json", bad_regex)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("(open"),
        "the text is kept: {}",
        refused.body
    );
    // Named in the path rather than by id, the text is kept all the same.
    let by_name = admin
        .post(
            "/services/checkout/routing",
            &[("csrf", &csrf), ("version", "2"), ("json", typo)],
        )
        .await;
    assert_eq!(by_name.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(by_name.body.contains("summry"), "{}", by_name.body);
    assert!(incident_of("noise-1").await.is_null(), "suppressed");
    assert!(!incident_of("before").await.is_null());
    let zone = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    let local = |hours: i64| {
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours))
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let add = format!("/services/{service_id}/maintenance");
    let until = local(2);
    let added = admin
        .post(
            &add,
            &[
                ("csrf", &csrf),
                ("from", ""),
                ("until", &until),
                ("reason", "DB upgrade"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(added.location(), to_service);
    let shown = admin.get("/integrations").await;
    assert!(shown.body.contains("DB upgrade"), "{}", shown.body);
    let window_id = {
        let at = shown.body.find("<tr id=\"window-").unwrap() + "<tr id=\"window-".len();
        shown.body[at..at + 36].to_string()
    };
    assert!(
        incident_of("during").await.is_null(),
        "the window quiets the service"
    );
    let (from, until) = (local(24), local(26));
    let planned = admin
        .post(
            &add,
            &[
                ("csrf", &csrf),
                ("from", &from),
                ("until", &until),
                ("reason", "DC move"),
            ],
        )
        .await;
    assert_eq!(planned.status, StatusCode::SEE_OTHER);
    let shown = admin.get("/integrations").await;
    assert!(shown.body.contains("DC move") && shown.body.contains("予定"));
    // Others read the routing and the windows, and get no forms.
    let read_only = responder.get("/integrations").await;
    assert!(read_only.body.contains("DC move") && read_only.body.contains("noise.*"));
    assert!(
        !read_only.body.contains("action=\"/services/"),
        "{}",
        read_only.body
    );

    for (from, until, error) in [
        ("", "tomorrow", "YYYY-MM-DDTHH:MM"),
        (until.as_str(), from.as_str(), "must be after starts_at"),
        ("", &local(24 * 40), "at most 31 days"),
    ] {
        let bad = admin
            .post(&add, &[("csrf", &csrf), ("from", from), ("until", until)])
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{until}");
        assert!(bad.body.contains(error), "{error}: {}", bad.body);
    }
    let nowhere = admin
        .post(
            "/services/no-such-service/maintenance",
            &[("csrf", &csrf), ("until", &until)],
        )
        .await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    let forged = admin.post(&add, &[("until", &until)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let rcsrf = responder.get("/").await.hidden("csrf");
    let remove = format!("/services/{service_id}/maintenance/{window_id}/remove");
    for (path, form) in [
        (
            &add,
            vec![("csrf", rcsrf.as_str()), ("until", until.as_str())],
        ),
        (&remove, vec![("csrf", rcsrf.as_str())]),
        (
            &routing,
            vec![("csrf", rcsrf.as_str()), ("version", "2"), ("json", "{}")],
        ),
        (
            &change,
            vec![
                ("csrf", rcsrf.as_str()),
                ("action", "save"),
                ("rate_limit", "1"),
            ],
        ),
    ] {
        let refused = responder.post(path, &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(incident_of("still-during").await.is_null());

    let removed = admin.post(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(!admin.get("/integrations").await.body.contains(&window_id));
    assert!(!incident_of("after").await.is_null(), "paging is back");
    let again = admin.post(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let odd = admin
        .post(
            &format!("/services/{service_id}/maintenance/not-an-id/remove"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(odd.status, StatusCode::NOT_FOUND);

    // The alerts page: what paged nobody says why, filters keep what was
    // chosen, a bad one is shown beside them, and it pages by 50.
    let listed = responder
        .get("/alerts?status=triggered&service=checkout")
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    for (summary, why) in [("during", "メンテナンス中"), ("noise-1", "抑制")] {
        let row = listed
            .body
            .split("<tr")
            .find(|r| r.contains(&format!("<td>{summary}</td>")))
            .unwrap_or_else(|| panic!("no {summary}: {}", listed.body));
        assert!(row.contains(why), "{summary}: {row}");
    }
    let row = listed
        .body
        .split("<tr")
        .find(|r| r.contains("<td>after</td>"))
        .unwrap();
    assert!(row.contains("href=\"/incidents/"), "{row}");
    let hostile = t
        .http
        .post(t.url(&format!("/api/v1/integrations/{key}/generic")))
        .json(&json!({"events": (0..55).map(|n| json!({"summary": format!("<script>x{n}</script> & #more"), "source": "web-1", "dedup_key": format!("bulk-{n}")})).collect::<Vec<_>>()}))
        .send()
        .await
        .unwrap();
    assert_eq!(hostile.status(), StatusCode::ACCEPTED);
    let first = responder.get("/alerts?service=checkout").await;
    assert!(
        !first.body.contains("<script>x") && first.body.contains("&#60;script&#62;x"),
        "escaped"
    );
    assert_eq!(first.body.matches("<tr class=\"level-").count(), 50);
    let next = first.next_link();
    assert!(next.contains("service=checkout"), "{next}");
    let second = responder.get(&next).await;
    assert_eq!(second.status, StatusCode::OK);
    // The newest 50 were on the first page; the rest, older, on this one.
    let rows = second.body.matches("<tr class=\"level-").count();
    assert!(rows >= 5, "{}", second.body);
    assert!(!second.body.contains("x54&#60;") && second.body.contains("x0&#60;"));
    // The incidents these alerts opened page by a search holding & and #.
    let found = responder.get("/incidents?q=%26+%23more").await;
    let next = found.next_link();
    assert!(next.contains("q=%26+%23more"), "{next}");
    let rest = responder.get(&next).await;
    assert_eq!(rest.status, StatusCode::OK);
    assert_eq!(
        rest.body.matches("<tr><td><a href=\"/incidents/").count(),
        5,
        "{}",
        rest.body
    );
    let bad = responder.get("/alerts?status=firing").await;
    assert!(
        bad.body.contains("id=\"alerts-error\"")
            && bad.body.contains("triggered, acknowledged, resolved"),
        "{}",
        bad.body
    );
    let nowhere = responder.get("/alerts?service=nowhere").await;
    assert!(
        nowhere.body.contains("service not found"),
        "{}",
        nowhere.body
    );
    let signed_out = Browser::new(&t).get("/alerts").await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
}
