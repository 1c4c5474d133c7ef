//! Kiroku's application layer: every command and query, whatever the door
//! it came through (HTTP, the CLI on the database host).
//!
//! Commands follow one shape: check the caller's permission, validate the
//! input with pure domain functions, then in one store transaction apply the
//! change, append its audit event and enqueue its outbox messages.

mod audit;
mod caller;
mod credentials;
mod detection;
mod duties;
mod error;
mod escalation;
mod group;
mod incidents;
mod intake;
mod journal;
mod links;
mod memory;
mod notify;
mod oncall;
mod policy;
mod reports;
mod seal;
mod services;
mod status;
mod tx;
mod users;

use std::sync::Arc;

use jiff::Timestamp;
use kiroku_domain::detection::DetectionRules;
use kiroku_domain::{Actor, AuditEvent, Operation, Source, Target};
use kiroku_store::{Store, Tx};

pub use audit::{
    ArchiveContents, ConsistencyProof, ExportFormat, ExternalEvent, HeadWitness, INGEST_BATCH_MAX,
    InclusionProof, TreeSigner, external_audit_events,
};
pub use caller::{Caller, Principal, Via};
pub use credentials::{totp_code, totp_uri};
pub use detection::SERVICE as DETECTION_SERVICE;
pub use duties::{DecideObligation, ObligationView};
pub use error::{AppError, ErrorKind};
pub use escalation::{AckOutcome, EscalationView};
pub use incidents::{DeclareIncident, IncidentList, ListIncidents, UpdateIncident, UserSpec};
pub use intake::{Accepted, Effect, Replayed};
pub use journal::RECORD_MAX as INTAKE_RECORD_MAX;
pub use journal::{JournalError, JournalSync};
pub use links::{Link, LinkError, LinkKey};
pub use notify::{ChannelView, Courier, Delivered, NewChannel, NotifyPolicy};
pub use oncall::{ContactMethodView, NewContactMethod, NewOverride};
pub use policy::{AuthPolicy, Config, ReportPolicy};
pub use reports::{
    ApprovePostmortem, BreachEntry, Communicate, CommunicationView, ListActionItems,
    MetricsRequest, PostmortemView, RenderedReport, ReportFormat, ReportRequest, SavePostmortem,
    breach_register_csv,
};
pub use seal::{SealMode, SealRule, Sealer};
pub use services::{
    AlertList, IntegrationChange, ListAlerts, NewIntegration, NewMaintenanceWindow, NewService,
};
pub use status::{Component, ComponentState, PublicIncident, PublicUpdate, StatusView};
pub use users::{
    CreatedUser, IssuedSession, IssuedToken, LoginRequest, NewUser, TokenView, UserView,
};

pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// The application: a store and the rules it enforces.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    signer: Option<Arc<TreeSigner>>,
    sealer: Option<Arc<Sealer>>,
    intake: Arc<group::GroupCommit<intake::Job>>,
    /// When set, intake answers once a request is in this journal, and
    /// commits it behind.
    intake_journal: Option<Arc<journal::Journal>>,
    audit_ingest: Arc<group::GroupCommit<audit::IngestJob>>,
    routings: Arc<intake::RoutingCache>,
    upper_nodes: Arc<audit::UpperNodes>,
    detection: Option<Arc<detection::Detection>>,
    notifier: Arc<notify::Notifier>,
    escalator: Arc<escalation::Escalator>,
    /// The face PDF reports are set in; without one they are refused.
    fonts: Option<kiroku_report::Fonts>,
    /// Routing keys looked up, forgotten when any node changes an
    /// integration.
    routing_keys: Arc<intake::KeyCache>,
}

impl App {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let notifier = notify::Notifier::new(
            store.clone(),
            config
                .rules
                .severities
                .levels
                .iter()
                .map(|l| l.key.clone())
                .collect(),
            config.notify.public_url.clone(),
        );
        App {
            notifier: Arc::new(notifier),
            escalator: Arc::new(escalation::Escalator::new(store.clone())),
            store,
            config: Arc::new(config),
            signer: None,
            sealer: None,
            intake: Arc::new(intake::group_commit()),
            intake_journal: None,
            audit_ingest: Arc::new(audit::ingest_group_commit()),
            routings: Arc::default(),
            upper_nodes: Arc::default(),
            detection: None,
            fonts: None,
            routing_keys: Arc::default(),
        }
    }

    /// The app that renders PDF reports in `fonts`.
    pub fn with_report_fonts(self, fonts: kiroku_report::Fonts) -> Self {
        App {
            fonts: Some(fonts),
            ..self
        }
    }

    /// The app that watches its committed audit events for what seed 001
    /// No.29 asks to detect; [`App::run_detection`] raises the findings.
    pub fn with_detection(self, rules: DetectionRules) -> Self {
        // Switched off, nothing is observed at all.
        let detection = rules
            .enabled
            .then(|| Arc::new(detection::Detection::new(rules)));
        App { detection, ..self }
    }

    /// The app that seals sensitive values before they reach the audit log.
    pub fn with_sealer(self, sealer: Sealer) -> Self {
        App {
            sealer: Some(Arc::new(sealer)),
            ..self
        }
    }

    /// The app that signs tree heads (the server; tools reading the
    /// database need none).
    pub fn with_signer(self, signer: TreeSigner) -> Self {
        App {
            signer: Some(Arc::new(signer)),
            ..self
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    /// Wakes this node's workers when another node commits work for them
    /// (PostgreSQL LISTEN/NOTIFY), until the app is dropped; on a store one
    /// node has to itself it returns at once.
    pub async fn watch_other_nodes(self) {
        loop {
            let (notifier, escalator) = (self.notifier.clone(), self.escalator.clone());
            let routing_keys = self.routing_keys.clone();
            let heard = self
                .store
                .watch_work(Box::new(move |work| match work {
                    kiroku_store::Work::Deliveries => notifier.wake.notify_one(),
                    kiroku_store::Work::Escalations => escalator.wake.notify_one(),
                    kiroku_store::Work::Integrations => routing_keys.changed(),
                }))
                .await;
            match heard {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "not hearing other nodes' work; listening again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Records a refused attempt (unauthenticated, forbidden, invalid,
    /// conflicting) as a failed audit event of its own, since the attempt's
    /// transaction, if any, was rolled back.
    pub async fn audit_refusal(
        &self,
        actor: &Actor,
        source: &Source,
        action: &str,
        target: Target,
        error_code: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let event = AuditEvent::success(
            self.now(),
            actor,
            source,
            Operation::Execute,
            action,
            target,
        )
        .with_change(None, Some(detail))
        .failure(error_code);
        if users::is_guess(error_code) {
            return self.credential_guessed(source, event).await;
        }
        self.audit_only(event).await
    }

    /// Records a lifecycle event of Kiroku itself (`sys_startup`,
    /// `sys_shutdown`), so that gaps in operation show in the audit log.
    pub async fn record_system_event(&self, action: &str, detail: serde_json::Value) -> Result<()> {
        let event = AuditEvent::success(
            self.now(),
            &Actor::system(),
            &Source::system(),
            Operation::Execute,
            action,
            Target::new("system", None),
        )
        .with_change(None, Some(detail));
        self.audit_only(event).await
    }

    /// A transaction whose only write is an audit event.
    async fn audit_only(&self, event: AuditEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every write starts here; audit appends are sealed on the way.
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        // Read before the transaction holds a connection (see `Notifier::channels`).
        self.notifier.channels().await?;
        self.escalator.directory().await?;
        let tx = self.store.begin().await?;
        let seal = self
            .sealer
            .as_ref()
            .filter(|s| s.mode != SealMode::Off)
            .map(|s| seal::SealKeys::new(s.clone()));
        Ok(Box::new(tx::AppTx::new(
            tx,
            seal,
            self.detection.clone(),
            self.notifier.clone(),
            self.escalator.clone(),
        )))
    }
}
