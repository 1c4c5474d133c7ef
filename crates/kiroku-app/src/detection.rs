//! Detection wired to the write path (seed 001 No.29). Every committed
//! audit event, Kiroku's own and those other applications send, is shown
//! to the pure detector (`kiroku_domain::detection`) once its transaction
//! commits; so are requests for unknown endpoints, which are not audited.
//! Findings become alerts through Kiroku's own intake, on the built-in
//! service [`SERVICE`]: deduplicated like any alert, bursts opening
//! 不正アクセス incidents, non-routine operations recorded without paging.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kiroku_domain::Source;
use kiroku_domain::alert::routing::{Conditions, RouteActions, RouteRule, Routing};
use kiroku_domain::alert::{AlertAction, AlertEvent, AlertSeverity, Integration};
use kiroku_domain::detection::{DetectionRules, Detector, Finding, Observation};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{App, AppError, Caller, NewIntegration, NewService, Result};

/// The built-in service that detection alerts belong to.
pub const SERVICE: &str = "kiroku-security";
const INTEGRATION: &str = "detection";
/// Findings waiting to be raised; past this they are dropped with a
/// warning rather than held without bound (bursts are deduplicated, so a
/// full queue means the same few findings many times over).
const QUEUE_MAX: usize = 4_096;

pub(crate) struct Detection {
    rules: DetectionRules,
    detector: Mutex<Detector>,
    findings: mpsc::Sender<Finding>,
    queue: Mutex<Option<mpsc::Receiver<Finding>>>,
}

impl Detection {
    pub(crate) fn new(rules: DetectionRules) -> Self {
        let (findings, queue) = mpsc::channel(QUEUE_MAX);
        Detection {
            rules,
            detector: Mutex::new(Detector::new()),
            findings,
            queue: Mutex::new(Some(queue)),
        }
    }

    /// Shows committed observations to the detector and queues what it
    /// finds. Kiroku's own actions (raising these very alerts, creating
    /// their service) are not observed, so detection cannot feed itself.
    pub(crate) fn observe(&self, seen: &[Observation]) {
        let found: Vec<Finding> = {
            let mut d = self.detector.lock().unwrap_or_else(|e| e.into_inner());
            seen.iter()
                .filter(|o| !o.by_kiroku)
                .flat_map(|o| d.observe(o, &self.rules))
                .collect()
        };
        for f in found {
            if let Err(e) = self.findings.try_send(f) {
                tracing::warn!(error = %e, "detection queue full; a finding was dropped");
            }
        }
    }
}

/// The built-in service's routing: bursts open 不正アクセス incidents, one
/// per finding; non-routine operations (info) are recorded, not paged.
fn security_routing() -> Routing {
    Routing {
        rules: vec![RouteRule {
            name: "non-routine operations are recorded, not paged".into(),
            when: Conditions {
                severities: vec![AlertSeverity::Info],
                ..Conditions::default()
            },
            then: RouteActions {
                suppress: true,
                ..RouteActions::default()
            },
        }],
        category: "unauthorized_access".into(),
        ..Routing::default()
    }
}

fn alert_event(f: &Finding) -> AlertEvent {
    let labels = BTreeMap::from([
        ("rule".to_string(), f.rule.as_str().to_string()),
        ("subject".to_string(), f.subject.clone()),
    ]);
    AlertEvent {
        action: AlertAction::Trigger,
        dedup_key: Some(f.dedup_key.clone()),
        summary: f.summary.clone(),
        source: "kiroku".into(),
        severity: if f.warning {
            AlertSeverity::Warning
        } else {
            AlertSeverity::Info
        },
        occurred_at: Some(f.at),
        labels,
        details: json!({ "rule": f.rule, "subject": f.subject, "count": f.count }),
        links: Vec::new(),
        group_key: None,
    }
}

impl App {
    /// Tells detection of a request for an endpoint that does not exist.
    pub fn observe_unknown_endpoint(&self, source: &Source, path: &str) {
        if let Some(d) = &self.detection {
            d.observe(&[Observation::unknown_endpoint(
                self.now(),
                source.ip.clone(),
                path,
            )]);
        }
    }

    /// Raises detection findings as alerts until the app is dropped. The
    /// server runs this once; without it, findings wait in the queue.
    pub async fn run_detection(self) {
        let Some(mut queue) = self
            .detection
            .as_ref()
            .and_then(|d| d.queue.lock().unwrap_or_else(|e| e.into_inner()).take())
        else {
            return;
        };
        let mut integration = None;
        let mut batch = Vec::new();
        while queue.recv_many(&mut batch, 1_000).await > 0 {
            let events: Vec<AlertEvent> = batch.drain(..).map(|f| alert_event(&f)).collect();
            if let Err(e) = self.raise(&mut integration, events).await {
                tracing::error!(error = %e, "could not raise detection alerts");
            }
        }
    }

    async fn raise(
        &self,
        integration: &mut Option<Integration>,
        events: Vec<AlertEvent>,
    ) -> Result<()> {
        let found = match integration {
            Some(i) => i.clone(),
            None => integration
                .insert(self.detection_integration().await?)
                .clone(),
        };
        self.ingest_alerts(&found, Source::system(), events).await?;
        Ok(())
    }

    /// The built-in service and its integration, made on first use.
    async fn detection_integration(&self) -> Result<Integration> {
        let system = Caller::system();
        let service = match self.store.service(SERVICE).await? {
            Some(s) => s,
            None => match self
                .create_service(
                    &system,
                    NewService {
                        name: SERVICE.into(),
                        description: "Kiroku's own detections over its audit log".into(),
                        routing: Some(security_routing()),
                    },
                )
                .await
            {
                Ok(s) => s,
                // Another node made it meanwhile.
                Err(AppError::Duplicate { .. }) => self
                    .store
                    .service(SERVICE)
                    .await?
                    .ok_or(AppError::NotFound { what: "service" })?,
                Err(e) => return Err(e),
            },
        };
        if let Some(i) = self
            .store
            .integrations(Some(service.id))
            .await?
            .into_iter()
            .find(|i| i.name == INTEGRATION)
        {
            return Ok(i);
        }
        self.create_integration(
            &system,
            NewIntegration {
                service: service.id.to_string(),
                kind: "generic".into(),
                name: Some(INTEGRATION.into()),
                rate_limit_per_second: None,
            },
        )
        .await
    }
}
