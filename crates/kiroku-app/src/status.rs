//! The public status page's facts: which components are affected, and the
//! updates people chose to publish (the notices sent from an incident).
//! Nothing else of an incident is public: not its title, summary, notes,
//! people or personal-data facts.

use jiff::{SignedDuration, Timestamp};
use kiroku_domain::{Incident, Status, TimelineEntry, TimelineKind};
use kiroku_store::IncidentQuery;
use serde::Serialize;
use uuid::Uuid;

use crate::{App, Result};

/// How a component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    Operational,
    Degraded,
    Outage,
}

#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    pub state: ComponentState,
}

/// A published update: the subject and text of a notice that was sent.
#[derive(Debug, Clone, Serialize)]
pub struct PublicUpdate {
    pub at: Timestamp,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicIncident {
    /// Stable and meaningless outside: the incident's id.
    pub id: uuid::Uuid,
    pub started_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub components: Vec<String>,
    pub updates: Vec<PublicUpdate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub components: Vec<Component>,
    pub active: Vec<PublicIncident>,
    /// Resolved within the last [`HISTORY_DAYS`] days, newest first.
    pub history: Vec<PublicIncident>,
}

pub const HISTORY_DAYS: i64 = 30;

impl App {
    /// An incident as the public sees it, from its timeline entries.
    fn public_incident(i: &Incident, timeline: Vec<TimelineEntry>) -> PublicIncident {
        let updates = timeline
            .into_iter()
            .filter(|e| e.kind == TimelineKind::Communication)
            .map(|e| {
                let (subject, body) = e.body.split_once('\n').unwrap_or((&e.body, ""));
                PublicUpdate {
                    at: e.at,
                    subject: subject.to_string(),
                    body: body.to_string(),
                }
            })
            .rev()
            .collect();
        PublicIncident {
            id: i.id,
            started_at: i.times.occurred_at.unwrap_or(i.times.detected_at),
            resolved_at: i.times.resolved_at,
            components: i.affected_services.clone(),
            updates,
        }
    }

    /// The status page, for anyone: no caller, no permission, and only
    /// what is public.
    pub async fn public_status(&self) -> Result<StatusView> {
        let now = self.now();
        let services = self.store.services().await?;
        let recent = self
            .store
            .incidents(&IncidentQuery {
                detected_from: Some(now - SignedDuration::from_hours(24 * HISTORY_DAYS)),
                limit: kiroku_store::PAGE_MAX,
                ..IncidentQuery::default()
            })
            .await?;
        let open: Vec<&Incident> = recent.iter().filter(|i| i.status.is_open()).collect();
        let levels = &self.config.rules.severities.levels;
        let most_severe = |i: &Incident| levels.first().is_some_and(|l| l.key == i.severity);
        let components = services
            .iter()
            .filter(|s| s.name != crate::DETECTION_SERVICE)
            .map(|s| {
                let hit: Vec<&&Incident> = open
                    .iter()
                    .filter(|i| i.affected_services.contains(&s.name))
                    .collect();
                Component {
                    name: s.name.clone(),
                    state: if hit
                        .iter()
                        .any(|i| most_severe(i) && i.status < Status::Mitigated)
                    {
                        ComponentState::Outage
                    } else if hit.is_empty() {
                        ComponentState::Operational
                    } else {
                        ComponentState::Degraded
                    },
                }
            })
            .collect();
        let ids: Vec<Uuid> = recent.iter().map(|i| i.id).collect();
        let mut timelines = self.store.timelines(&ids).await?;
        let mut active = Vec::new();
        let mut history = Vec::new();
        for i in &recent {
            // Only what was announced is public; a quiet incident stays inside.
            let p = Self::public_incident(i, timelines.remove(&i.id).unwrap_or_default());
            if p.updates.is_empty() {
                continue;
            }
            if i.status.is_open() {
                active.push(p);
            } else {
                history.push(p);
            }
        }
        Ok(StatusView {
            components,
            active,
            history,
        })
    }
}
