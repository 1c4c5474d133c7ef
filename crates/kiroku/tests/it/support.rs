//! Test fixtures: stores on both backends, and a running server with one
//! user of each role.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use kiroku_app::{App, Caller, Config, NewUser};
use kiroku_domain::Role;
use kiroku_domain::detection::DetectionRules;
use kiroku_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery staple";

/// A store and whatever must outlive it.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<PgDatabase>,
}

impl TestStore {
    /// The PostgreSQL database's URL, for a second node on it.
    pub fn postgres_url(&self) -> Option<&str> {
        self._db.as_ref().map(|d| d.url.as_str())
    }

    /// The database's URL, to change it behind the store's back.
    pub fn url(&self) -> String {
        match (&self._dir, &self._db) {
            (Some(dir), _) => format!("sqlite://{}", dir.path().join("kiroku.db").display()),
            (None, Some(db)) => db.url.clone(),
            (None, None) => unreachable!("a test store lives in a directory or a database"),
        }
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = kiroku_store_sqlite::open(&dir.path().join("kiroku.db"), Default::default())
        .await
        .unwrap();
    TestStore {
        store: Arc::new(store),
        _dir: Some(dir),
        _db: None,
    }
}

/// The PostgreSQL server tests may use, or a SKIP line and `None`.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("KIROKU_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            // Written past the test harness's capture so that it is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP: PostgreSQL suite (set KIROKU_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres)"
            );
            None
        }
    }
}

/// A throwaway database, dropped when the test ends.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Option<PgDatabase> {
        use sqlx::Connection;
        let admin_url = postgres_admin_url()?;
        let name = format!("kiroku_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("KIROKU_TEST_DATABASE_URL is set but PostgreSQL cannot be reached");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // A fresh runtime on its own thread: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

pub async fn postgres() -> Option<TestStore> {
    let db = PgDatabase::create().await?;
    let store = kiroku_store_postgres::connect(&db.url, Default::default())
        .await
        .unwrap();
    Some(TestStore {
        store: Arc::new(store),
        _dir: None,
        _db: Some(db),
    })
}

/// Runs `statements` on the database at `url`, behind its store's back.
pub async fn sql_on(url: &str, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(s)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    pool.close().await;
}

pub fn config() -> Config {
    Config::with_zone(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap())
}

/// A user of the running server and the token it calls with.
#[derive(Clone)]
pub struct TestUser {
    pub name: String,
    pub token: String,
    pub totp_uri: Option<String>,
}

impl TestUser {
    pub fn totp_secret(&self) -> String {
        let uri = self.totp_uri.as_deref().expect("user has TOTP");
        uri.split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    }
}

/// What some tests add to the server.
#[derive(Default)]
struct Extras {
    detection: Option<DetectionRules>,
    links: bool,
    sms: Option<kiroku::notify::SmsSettings>,
    /// Intake answers from a journal in this directory.
    journal: Option<tempfile::TempDir>,
}

/// A real Kiroku server on a loopback port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub app: App,
    pub store: TestStore,
    pub http: reqwest::Client,
    pub admin: TestUser,
    pub responder: TestUser,
    pub viewer: TestUser,
    pub auditor: TestUser,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _journal_dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub async fn on(store: TestStore) -> TestApp {
        Self::with_config(store, config()).await
    }

    pub async fn sqlite() -> TestApp {
        Self::on(sqlite().await).await
    }

    pub async fn with_config(store: TestStore, config: Config) -> TestApp {
        Self::build(store, config, Extras::default()).await
    }

    /// A server whose intake answers from its journal, as
    /// `kiroku serve --intake-journal` does.
    pub async fn journaled(store: TestStore) -> TestApp {
        let journal = Some(tempfile::tempdir().unwrap());
        Self::build(
            store,
            config(),
            Extras {
                journal,
                ..Extras::default()
            },
        )
        .await
    }

    /// A server that runs detection under `rules`, as `kiroku serve` does.
    pub async fn with_detection(store: TestStore, rules: DetectionRules) -> TestApp {
        Self::build(
            store,
            config(),
            Extras {
                detection: Some(rules),
                ..Extras::default()
            },
        )
        .await
    }

    /// A server that pages: it knows its own address (for links in
    /// messages), holds a link key, and texts and calls through `sms`.
    pub async fn paging(
        store: TestStore,
        config: Config,
        sms: Option<kiroku::notify::SmsSettings>,
    ) -> TestApp {
        Self::build(
            store,
            config,
            Extras {
                links: true,
                sms,
                ..Extras::default()
            },
        )
        .await
    }

    async fn build(store: TestStore, mut config: Config, extras: Extras) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if extras.links {
            config.notify.public_url = Some(format!("http://{addr}"));
            config.notify.link_key = Some(kiroku_app::LinkKey::new([5; 32]));
        }
        // Signs with a fixed test key; tests register it before signing.
        let signer = kiroku_app::TreeSigner {
            key: kiroku_audit::TreeKey::from_seed([3; 32]),
            witnesses: Vec::new(),
        };
        let sealer = kiroku_app::Sealer {
            kek: [8; 32],
            mode: kiroku_app::SealMode::Encrypt,
            rules: kiroku_app::Sealer::default_rules(),
        };
        let mut app = App::new(store.store.clone(), config)
            .with_signer(signer)
            .with_sealer(sealer);
        // As `kiroku serve` does; without a font PDF reports answer 503.
        if let Ok(fonts) = kiroku::config::report_fonts(None) {
            app = app.with_report_fonts(fonts);
        }
        if let Some(dir) = &extras.journal {
            app = app
                .with_intake_journal(&dir.path().join("intake.journal"), Default::default())
                .await
                .unwrap();
        }
        if let Some(rules) = extras.detection {
            app = app.with_detection(rules);
            tokio::spawn(app.clone().run_detection());
        }
        let client = kiroku::notify::http_client().unwrap();
        let http = kiroku_server::HttpConfig {
            inbound_sms: extras.sms.as_ref().map(|s| kiroku_server::InboundSms {
                auth_token: s.auth_token.clone(),
            }),
            ..Default::default()
        };
        let courier = Arc::new(kiroku::notify::Couriers {
            http: kiroku::notify::HttpCourier::new(client.clone()),
            smtp: None,
            sms: extras
                .sms
                .map(|s| kiroku::notify::SmsCourier::new(client, s)),
        });
        tokio::spawn(app.clone().run_notifications(courier));
        tokio::spawn(app.clone().run_escalations());
        tokio::spawn(app.clone().watch_other_nodes());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let header_read_timeout = http.header_read_timeout;
        let router = kiroku_server::router(app.clone(), http);
        tokio::spawn(async move {
            kiroku_server::serve(listener, router, header_read_timeout, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let mut users = Vec::new();
        for role in [Role::Admin, Role::Responder, Role::Viewer, Role::Auditor] {
            users.push(made_user(&app, role.as_str(), role).await);
        }
        let mut users = users.into_iter();
        TestApp {
            addr,
            app,
            store,
            http: reqwest::Client::builder()
                .user_agent("kiroku-tests/1")
                .build()
                .unwrap(),
            admin: users.next().unwrap(),
            responder: users.next().unwrap(),
            viewer: users.next().unwrap(),
            auditor: users.next().unwrap(),
            shutdown: Some(tx),
            _journal_dir: extras.journal,
        }
    }

    /// Another user of `role`, made by the operator, and a token of theirs.
    pub async fn user_with_role(&self, name: &str, role: Role) -> TestUser {
        made_user(&self.app, name, role).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends JSON as `user` (or anonymously) and returns status and body.
    pub async fn call(
        &self,
        user: Option<&TestUser>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(u) = user {
            req = req.bearer_auth(&u.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn get(&self, user: &TestUser, path: &str) -> (StatusCode, Value) {
        self.call(Some(user), Method::GET, path, None).await
    }

    pub async fn post(&self, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Some(user), Method::POST, path, Some(body)).await
    }

    pub async fn declare(&self, user: &TestUser, title: &str, severity: &str) -> Value {
        let (status, body) = self
            .post(
                user,
                "/api/v1/incidents",
                json!({ "title": title, "category": "database", "severity": severity }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// The audit log recomputed and checked against every signed head;
    /// the summary.
    pub async fn verified(&self) -> kiroku_audit::verify::Summary {
        verified(&self.app).await
    }

    pub async fn assert_audit_verifies(&self) {
        self.verified().await;
    }

    /// Every audit event so far, oldest first.
    /// The on-call schedule `primary`, weekly with the responder alone,
    /// made by the admin; its stored form.
    pub async fn weekly_schedule(&self) -> Value {
        let (status, schedule) = self
            .post(
                &self.admin,
                "/api/v1/schedules",
                json!({"name": "primary", "layers": [
                    {"name": "weekly", "start": "2026-01-05T10:00:00", "rotation": {"kind": "weekly"}, "members": ["responder"]}
                ]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{schedule}");
        schedule
    }

    /// How many audit events record a success: what a refused request
    /// must leave as it was.
    pub async fn successful_audit_events(&self) -> usize {
        self.audit()
            .await
            .iter()
            .filter(|e| e["outcome"] == "success")
            .count()
    }

    pub async fn audit(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .store
                .audit_events(&kiroku_store::AuditQuery {
                    after_seq: Some(after),
                    limit: 200,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                return out;
            }
            after = page.last().unwrap().seq;
            out.extend(page.into_iter().map(|e| serde_json::to_value(e).unwrap()));
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The current TOTP code for a secret.
/// An audit event by the system, for a test that writes to the store
/// behind the app's back: no transaction commits without one.
pub fn system_event(
    operation: kiroku_domain::Operation,
    action: &str,
    target: kiroku_domain::Target,
) -> kiroku_domain::AuditEvent {
    kiroku_domain::AuditEvent::success(
        jiff::Timestamp::now(),
        &kiroku_domain::Actor::system(),
        &kiroku_domain::Source::system(),
        operation,
        action,
        target,
    )
}

/// Commits `tx`, written behind the app's back, with the system audit
/// event that every change carries.
pub async fn commit_as_system(
    mut tx: Box<dyn kiroku_store::Tx>,
    operation: kiroku_domain::Operation,
    action: &str,
    target: kiroku_domain::Target,
) {
    tx.append_audit(&system_event(operation, action, target))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

pub fn totp_now(secret: &str) -> String {
    kiroku_app::totp_code(secret, jiff::Timestamp::now().as_second() as u64).unwrap()
}

/// A port nothing listens on now, for a peer process to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `app` on a loopback port in the background; its address.
pub async fn serve_loopback(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Sends `request` as raw bytes on a fresh connection (so that no client
/// tidies the path or the headers) and reads until the server closes it.
/// The status, `None` when the server closed without answering, and the
/// whole answer. Panics if the server neither answers nor closes in 10 s.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (Option<u16>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A server that refuses early may reset the connection mid-write.
    let _ = conn.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("the server neither answered nor closed the connection");
    let _ = read;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

/// A user of `role` made by the operator, and a token of theirs.
async fn made_user(app: &App, name: &str, role: Role) -> TestUser {
    let caller = Caller::local_operator();
    let created = app
        .create_user(
            &caller,
            NewUser {
                name: name.into(),
                display_name: String::new(),
                email: None,
                role,
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap();
    let token = app
        .create_token(&caller, Some(name), "test", None)
        .await
        .unwrap();
    TestUser {
        name: name.into(),
        token: token.secret,
        totp_uri: created.totp_uri,
    }
}

/// `app`'s audit log recomputed and checked against every signed head;
/// the summary.
pub async fn verified(app: &App) -> kiroku_audit::verify::Summary {
    app.verify_audit(
        Vec::new(),
        |_| kiroku_app::ArchiveContents::LeavesOnly,
        None,
        |_, _| {},
    )
    .await
    .unwrap()
    .unwrap_or_else(|f| panic!("the audit log does not verify: {f:?}"))
}

/// A TCP relay to a database server that can be cut, as a failover to a
/// host not yet up cuts it: every connection through it is dropped, and
/// new ones are left unanswered, until it is mended.
pub struct Relay {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    pub async fn start(server: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = tokio::sync::watch::Sender::new(false);
        let (mut heard, for_each) = (cut.subscribe(), cut.subscribe());
        tokio::spawn(async move {
            loop {
                // Cut: what connects waits in the listener's backlog.
                if heard.wait_for(|cut| !*cut).await.is_err() {
                    return;
                }
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        let mut cut = for_each.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(server).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.wait_for(|cut| *cut) => {}
                            }
                        });
                    }
                    _ = heard.wait_for(|cut| *cut) => {}
                }
            }
        });
        Relay { addr, cut }
    }

    /// A relay to the server of the PostgreSQL database at `url`, and the
    /// URL of that database through it.
    pub async fn to_postgres(url: &str) -> (Relay, String) {
        let mut through = reqwest::Url::parse(url).unwrap();
        let server = format!(
            "{}:{}",
            through.host_str().unwrap(),
            through.port().unwrap_or(5432)
        );
        let server = tokio::net::lookup_host(server)
            .await
            .unwrap()
            .next()
            .unwrap();
        let relay = Relay::start(server).await;
        through
            .set_host(Some(&relay.addr.ip().to_string()))
            .unwrap();
        through.set_port(Some(relay.addr.port())).unwrap();
        (relay, through.to_string())
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn mend(&self) {
        self.cut.send_replace(false);
    }
}

/// A journal record of one request from `integration`: an alert for each
/// of `keys`, all named `DiskFull`, as intake writes it.
pub fn journal_request(integration: &kiroku_domain::alert::Integration, keys: &[&str]) -> Vec<u8> {
    let body = serde_json::json!({ "events": keys.iter().map(|k| serde_json::json!({
        "summary": format!("disk full on {k}"), "source": k, "severity": "critical", "dedup_key": k,
        "labels": {"alertname": "DiskFull"},
    })).collect::<Vec<_>>() });
    let events = kiroku_domain::alert::generic::parse(body.to_string().as_bytes()).unwrap();
    let mut integration = serde_json::to_value(integration).unwrap();
    integration["key"] = "".into();
    serde_json::to_vec(&serde_json::json!({
        "integration": integration, "source": kiroku_domain::Source::system(), "events": events,
    }))
    .unwrap()
}

/// The intake journal's file, written here from its documented format:
/// a 32-byte header, then records of length, number, checksum, payload.
pub fn journal_file(id: uuid::Uuid, records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = b"kiroku-intake-j1".to_vec();
    out.extend_from_slice(id.as_bytes());
    for (seq, payload) in records {
        let check = Sha256::new()
            .chain_update(seq.to_le_bytes())
            .chain_update(payload)
            .finalize();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&check[..8]);
        out.extend_from_slice(payload);
    }
    out
}
