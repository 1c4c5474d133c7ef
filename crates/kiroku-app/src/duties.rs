//! Notification duties (APPI, GDPR, NIS2, SEC 8-K, HIPAA and an
//! organisation's own): kept per incident as its personal-data facts
//! change, decided by people (submitted / not required, with the reason
//! and who decided), and reminded of before they fall due and once when
//! they do. Action items that pass their due date are reminded of here too.

use std::time::Duration;

use jiff::Timestamp;
use kiroku_domain::obligation::{self, ObligationStatus};
use kiroku_domain::{
    Incident, Operation, OutboxMessage, Permission, Target, TimelineKind, validate,
};
use kiroku_store::{ActionItemQuery, IncidentKey, ObligationRecord, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::incidents::incident_target;
use crate::{App, AppError, Caller, Result};

/// A duty as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ObligationView {
    pub key: String,
    pub incident_id: uuid::Uuid,
    pub incident_number: String,
    pub regime: String,
    pub name_ja: String,
    pub name_en: String,
    pub due_at: Timestamp,
    pub remind_at: Vec<Timestamp>,
    pub status: ObligationStatus,
    pub reason: String,
    pub decided_by: Option<kiroku_domain::UserRef>,
    pub decided_at: Option<Timestamp>,
    /// Pending and past its due time.
    pub overdue: bool,
}

/// A decision about a duty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideObligation {
    pub status: ObligationStatus,
    /// Why it is not required, or the submission's reference; required for
    /// `not_required`.
    #[serde(default)]
    pub reason: String,
}

/// How often the reminder worker looks for what is due.
const REMINDER_SWEEP: Duration = Duration::from_secs(30);
/// Reminders sent per sweep at most; the rest wait for the next.
const REMINDER_BATCH: i64 = 100;

impl App {
    fn obligation_view(&self, r: ObligationRecord, now: Timestamp) -> ObligationView {
        let rule = self
            .config
            .reports
            .obligations
            .iter()
            .find(|rule| rule.key == r.rule);
        ObligationView {
            regime: rule.map_or_else(String::new, |x| x.regime.clone()),
            name_ja: rule.map_or_else(|| r.rule.clone(), |x| x.name_ja.clone()),
            name_en: rule.map_or_else(|| r.rule.clone(), |x| x.name_en.clone()),
            overdue: r.status == ObligationStatus::Pending && r.due_at <= now,
            key: r.rule,
            incident_id: r.incident_id,
            incident_number: r.incident_number,
            due_at: r.due_at,
            remind_at: r.remind_at,
            status: r.status,
            reason: r.reason,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
        }
    }

    /// The duties an incident's facts bring, with their status, counted
    /// from its detection (the time Kiroku knows it was known) in the
    /// configured zone.
    pub async fn obligations(
        &self,
        caller: &Caller,
        key: &IncidentKey,
    ) -> Result<Vec<ObligationView>> {
        let incident = self.incident(caller, key).await?;
        self.obligations_of(caller, &incident).await
    }

    /// The duties of an incident the caller has already read.
    pub async fn obligations_of(
        &self,
        caller: &Caller,
        incident: &Incident,
    ) -> Result<Vec<ObligationView>> {
        caller.require(Permission::IncidentRead)?;
        let now = self.now();
        Ok(self
            .store
            .obligations(incident.id)
            .await?
            .into_iter()
            .map(|r| self.obligation_view(r, now))
            .collect())
    }

    /// Pending duties across incidents, soonest first; `overdue_only`
    /// keeps those already past due (the dashboard's list).
    pub async fn pending_obligations(
        &self,
        caller: &Caller,
        overdue_only: bool,
        limit: Option<i64>,
    ) -> Result<Vec<ObligationView>> {
        caller.require(Permission::IncidentRead)?;
        let now = self.now();
        let (limit, _) = crate::services::page_request(limit, None)?;
        Ok(self
            .store
            .pending_obligations(overdue_only.then_some(now), limit)
            .await?
            .into_iter()
            .map(|r| self.obligation_view(r, now))
            .collect())
    }

    /// Brings a locked incident's duties in line with its facts inside
    /// `tx`: new duties start pending, changed deadlines move, and pending
    /// duties the facts no longer bring are dropped. Decided ones stay.
    pub(crate) async fn sync_obligations(
        &self,
        tx: &mut Box<dyn Tx>,
        incident: &Incident,
        declared: bool,
    ) -> Result<()> {
        let facts = obligation::Facts {
            category: &incident.category,
            personal_data: &incident.personal_data,
            aware_at: incident.times.detected_at,
            determined_at: incident.materiality_determined_at,
        };
        let due = obligation::due_obligations(
            &self.config.reports.obligations,
            &facts,
            &self.config.time_zone,
        );
        let existing = if declared {
            Vec::new()
        } else {
            tx.obligations_for_update(incident.id).await?
        };
        for d in &due {
            let record = match existing.iter().find(|e| e.rule == d.rule) {
                Some(e)
                    if e.due_at == d.due_at
                        && e.remind_at == d.remind_at
                        && e.late_at == d.late_at =>
                {
                    continue;
                }
                Some(e) => ObligationRecord {
                    due_at: d.due_at,
                    remind_at: d.remind_at.clone(),
                    late_at: d.late_at,
                    ..e.clone()
                },
                None => ObligationRecord {
                    incident_id: incident.id,
                    incident_number: incident.number.clone(),
                    rule: d.rule.clone(),
                    due_at: d.due_at,
                    remind_at: d.remind_at.clone(),
                    late_at: d.late_at,
                    status: ObligationStatus::Pending,
                    reason: String::new(),
                    decided_by: None,
                    decided_at: None,
                    reminded_until: None,
                },
            };
            tx.save_obligation(&record).await?;
        }
        for e in &existing {
            if e.status == ObligationStatus::Pending && !due.iter().any(|d| d.rule == e.rule) {
                tx.delete_obligation(incident.id, &e.rule).await?;
            }
        }
        Ok(())
    }

    /// Records a decision about one duty: submitted, not required (with
    /// the reason), or pending again.
    pub async fn decide_obligation(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        rule: &str,
        input: DecideObligation,
    ) -> Result<ObligationView> {
        caller.require(Permission::IncidentWrite)?;
        let reason = validate::text("reason", &input.reason, validate::SHORT_MAX * 5, false)?;
        if input.status == ObligationStatus::NotRequired && reason.trim().is_empty() {
            return Err(AppError::invalid(
                "reason",
                "required",
                "say why the duty does not apply",
            ));
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let incident = self.locked_incident(&mut tx, key, None).await?;
        let before = tx
            .obligations_for_update(incident.id)
            .await?
            .into_iter()
            .find(|r| r.rule == rule)
            .ok_or(AppError::NotFound { what: "obligation" })?;
        let decided = input.status != ObligationStatus::Pending;
        let after = ObligationRecord {
            status: input.status,
            reason,
            decided_by: if decided { caller.user_ref() } else { None },
            decided_at: decided.then_some(now),
            ..before.clone()
        };
        tx.save_obligation(&after).await?;
        let view = self.obligation_view(after.clone(), now);
        let entry = self.timeline_entry(
            caller,
            &incident,
            TimelineKind::Updated,
            format!("{}: {}", view.name_ja, after.status.as_str()),
            json!({ "obligation": rule, "status": after.status, "reason": after.reason }),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Update,
                "obligation_decide",
                Target::new("obligation", Some(format!("{}:{rule}", incident.id))),
            )
            .with_change(
                Some(json!({ "status": before.status, "reason": before.reason })),
                Some(json!({ "status": after.status, "reason": after.reason })),
            );
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Sends the reminders that are due: duties nearing or past their due
    /// time, and action items past theirs. Each goes out once: its record
    /// says so in the same commit as its outbox message.
    pub async fn send_due_reminders(&self) -> Result<usize> {
        let now = self.now();
        let mut sent = 0;
        for r in self
            .store
            .obligations_to_remind(now, REMINDER_BATCH)
            .await?
        {
            sent += usize::from(self.remind_obligation(&r, now).await?);
        }
        let today = self.config.time_zone.to_datetime(now).date();
        let overdue = self
            .store
            .action_items(&ActionItemQuery {
                open_only: true,
                due_before: Some(today),
                unreminded: true,
                limit: REMINDER_BATCH,
                ..ActionItemQuery::default()
            })
            .await?;
        for item in overdue {
            let mut tx = self.begin().await?;
            let Some(incident) = tx
                .incident_for_update(&IncidentKey::Id(item.incident_id))
                .await?
            else {
                continue;
            };
            tx.mark_action_item_reminded(item.id).await?;
            let due = item.item.due.map(|d| d.to_string()).unwrap_or_default();
            tx.enqueue(&[OutboxMessage::new(
                "action_item.overdue",
                format!("action_item.overdue:{}:{due}", item.id),
                json!({
                    "incident_id": incident.id,
                    "number": incident.number,
                    "title": item.item.title,
                    "owner": item.item.owner.as_ref().map(|u| u.name.clone()),
                    "recipient": item.item.owner.as_ref().map(|u| u.id),
                    "due": due,
                }),
                now,
            )])
            .await?;
            let event = Caller::system()
                .event(
                    now,
                    Operation::Execute,
                    "action_item_remind",
                    Target::new("action_item", Some(item.id.to_string())),
                )
                .with_change(None, Some(json!({ "due": due })));
            tx.append_audit(&event).await?;
            tx.commit().await?;
            sent += 1;
        }
        Ok(sent)
    }

    async fn remind_obligation(&self, seen: &ObligationRecord, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        // The incident first, as every writer of its rows locks it.
        let Some(incident) = tx
            .incident_for_update(&IncidentKey::Id(seen.incident_id))
            .await?
        else {
            return Ok(false);
        };
        let Some(mut record) = tx
            .obligations_for_update(incident.id)
            .await?
            .into_iter()
            .find(|r| r.rule == seen.rule)
        else {
            return Ok(false);
        };
        let Some(next) = record.next_reminder().filter(|at| *at <= now) else {
            // Another node sent it, or a decision came first.
            return Ok(false);
        };
        // After downtime several may be due: one message says where it stands.
        let latest = obligation::reminder_times(&record.remind_at, record.due_at, record.late_at)
            .filter(|at| *at <= now)
            .max()
            .unwrap_or(next);
        record.reminded_until = Some(latest);
        tx.save_obligation(&record).await?;
        let overdue = latest >= record.due_at;
        let view = self.obligation_view(record.clone(), now);
        let topic = if overdue {
            "obligation.overdue"
        } else {
            "obligation.reminder"
        };
        let due_local =
            kiroku_domain::wareki::wareki_datetime(record.due_at, &self.config.time_zone)
                .unwrap_or_else(|| record.due_at.to_string());
        tx.enqueue(&[OutboxMessage::new(
            topic,
            format!(
                "{topic}:{}:{}:{}",
                incident.id,
                record.rule,
                latest.as_microsecond()
            ),
            json!({
                "incident_id": incident.id,
                "number": incident.number,
                "rule": record.rule,
                "name_ja": view.name_ja,
                "name_en": view.name_en,
                "due_at": record.due_at,
                "due_local": due_local,
                // The commander answers for the incident's duties.
                "recipient": incident.commander.as_ref().map(|u| u.id),
            }),
            now,
        )])
        .await?;
        let system = Caller::system();
        let entry = self.timeline_entry(
            &system,
            &incident,
            TimelineKind::Notification,
            format!("{}: 期限 {due_local}", view.name_ja),
            json!({ "obligation": record.rule, "overdue": overdue }),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = system
            .event(
                now,
                Operation::Execute,
                "obligation_remind",
                incident_target(&incident),
            )
            .with_change(
                None,
                Some(json!({ "rule": record.rule, "overdue": overdue })),
            );
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sends due reminders every half minute, for as long as it runs.
    pub async fn run_reminders(self) {
        loop {
            if let Err(e) = self.send_due_reminders().await {
                tracing::warn!(error = %e, "sending reminders failed; trying again");
            }
            tokio::time::sleep(REMINDER_SWEEP).await;
        }
    }
}
