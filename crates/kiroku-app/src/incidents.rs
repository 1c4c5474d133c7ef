//! Incident commands and queries.

use jiff::Timestamp;
use kiroku_domain::alert::Alert;
use kiroku_domain::{
    AuditEvent, Incident, IncidentDraft, IncidentPatch, Operation, OutboxMessage, Permission,
    Status, Target, TimelineEntry, TimelineKind, Transition, UserRef, validate,
};
use kiroku_store::{IncidentKey, IncidentQuery, PageCursor, Tx};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::{App, AppError, Caller, Result};

/// A user named by id or by login name.
pub type UserSpec = String;

/// A declaration as callers send it, naming people by name or id.
pub type DeclareIncident = IncidentDraft<UserSpec>;

/// An edit as callers send it.
pub type UpdateIncident = IncidentPatch<UserSpec>;

#[derive(Debug, Clone, Default)]
pub struct ListIncidents {
    pub statuses: Vec<String>,
    pub severities: Vec<String>,
    pub categories: Vec<String>,
    pub environment: Option<String>,
    pub detected_from: Option<Timestamp>,
    pub detected_to: Option<Timestamp>,
    pub text: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentList {
    pub items: Vec<Incident>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) fn incident_target(i: &Incident) -> Target {
    Target::new("incident", Some(i.id.to_string()))
}

fn stamp_of(i: &Incident, s: Status) -> Option<Timestamp> {
    let t = &i.times;
    match s {
        Status::Triggered => Some(t.detected_at),
        Status::Acknowledged => t.acknowledged_at,
        Status::Investigating => t.response_started_at,
        Status::Mitigated => t.mitigated_at,
        Status::Resolved => t.resolved_at,
        Status::Closed => t.closed_at,
    }
}

impl App {
    pub(crate) async fn resolve_user(&self, field: &str, spec: &str) -> Result<UserRef> {
        let found = match Uuid::parse_str(spec) {
            Ok(id) => self.store.user(id).await?,
            Err(_) => self.store.user_by_name(spec).await?,
        };
        match found {
            Some(u) if !u.disabled => Ok(UserRef {
                id: u.id,
                name: u.name,
            }),
            _ => Err(AppError::invalid(
                field,
                "unknown_user",
                format!("no active user {:?}", spec),
            )),
        }
    }

    async fn resolve_users(&self, field: &str, specs: &[UserSpec]) -> Result<Vec<UserRef>> {
        if specs.len() > validate::LIST_MAX {
            return Err(AppError::invalid(
                field,
                "too_many",
                format!("must have at most {} items", validate::LIST_MAX),
            ));
        }
        let mut out = Vec::with_capacity(specs.len());
        for s in specs {
            out.push(self.resolve_user(field, s).await?);
        }
        Ok(out)
    }

    async fn resolve_opt(&self, field: &str, spec: Option<&UserSpec>) -> Result<Option<UserRef>> {
        match spec {
            Some(s) => Ok(Some(self.resolve_user(field, s).await?)),
            None => Ok(None),
        }
    }

    pub(crate) fn timeline_entry(
        &self,
        caller: &Caller,
        incident: &Incident,
        kind: TimelineKind,
        body: String,
        data: serde_json::Value,
        at: Timestamp,
    ) -> TimelineEntry {
        TimelineEntry {
            id: Uuid::now_v7(),
            incident_id: incident.id,
            at,
            kind,
            actor: caller.user_ref(),
            body,
            data,
        }
    }

    /// Declares an incident and gives it the next number of its category.
    pub async fn declare_incident(
        &self,
        caller: &Caller,
        input: DeclareIncident,
    ) -> Result<Incident> {
        caller.require(Permission::IncidentWrite)?;
        let now = self.now();
        let rules = &self.config.rules;
        let reporter = match &input.reporter {
            Some(s) => Some(self.resolve_user("reporter", s).await?),
            None => caller.user_ref(),
        };
        let commander = self
            .resolve_opt("commander", input.commander.as_ref())
            .await?;
        let assignees = self.resolve_users("assignees", &input.assignees).await?;
        let draft = input
            .with_people(commander, assignees, reporter)
            .validated(rules, now)?;
        let mut tx = self.begin().await?;
        let (incident, audit) = self
            .declare_in(&mut tx, caller, draft, now, serde_json::Value::Null)
            .await?;
        tx.append_audit(&audit).await?;
        tx.commit().await?;
        Ok(incident)
    }

    /// Numbers, stores and announces a validated draft inside `tx`;
    /// `origin` says what declared it (an alert, say) on its timeline. The
    /// audit event comes back for the caller to append once it holds every
    /// row it will lock, as the audit log's head is taken last.
    pub(crate) async fn declare_in(
        &self,
        tx: &mut Box<dyn Tx>,
        caller: &Caller,
        draft: IncidentDraft,
        now: Timestamp,
        origin: serde_json::Value,
    ) -> Result<(Incident, AuditEvent)> {
        let rules = &self.config.rules;
        let prefix = rules
            .catalog
            .get(&draft.category)
            .map(|c| c.prefix.clone())
            .unwrap_or_default();
        let year = draft
            .detected_at
            .unwrap_or(now)
            .to_zoned(self.config.time_zone.clone())
            .year();
        let n = tx.next_incident_number(&prefix, year).await?;
        let number = kiroku_domain::category::incident_number(&prefix, year, n);
        let incident = draft.declare(rules, Uuid::now_v7(), number, now);
        tx.insert_incident(&incident).await?;
        self.sync_obligations(tx, &incident, true).await?;
        let mut data = json!({ "severity": incident.severity, "category": incident.category });
        let mut announcement = json!({
            "incident_id": incident.id,
            "number": incident.number,
            "title": incident.title,
            "severity": incident.severity,
        });
        if !origin.is_null() {
            data["origin"] = origin.clone();
            announcement["origin"] = origin;
        }
        let entry = self.timeline_entry(
            caller,
            &incident,
            TimelineKind::Declared,
            incident.title.clone(),
            data,
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Create,
                "incident_create",
                incident_target(&incident),
            )
            .with_change(None, Some(json!(incident)));
        tx.enqueue(&[OutboxMessage::new(
            "incident.declared",
            format!("incident.declared:{}", incident.id),
            announcement,
            now,
        )])
        .await?;
        Ok((incident, event))
    }

    /// Moves a locked incident along its lifecycle inside `tx`, with its
    /// timeline entry and announcement; its audit event comes back for the
    /// caller to append, as `declare_in`'s does.
    pub(crate) async fn transition_in(
        &self,
        tx: &mut Box<dyn Tx>,
        caller: &Caller,
        incident: &mut Incident,
        t: Transition,
        note: String,
        now: Timestamp,
    ) -> Result<AuditEvent> {
        let version = incident.version;
        let from = incident.transition(t, now)?;
        let to = incident.status;
        tx.update_incident(&*incident, version).await?;
        let data = json!({ "from": from, "to": to, "transition": t });
        let entry = self.timeline_entry(
            caller,
            &*incident,
            TimelineKind::StatusChanged,
            note,
            data.clone(),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Update,
                &format!("incident_{}", t.as_str()),
                incident_target(&*incident),
            )
            .with_change(
                Some(json!({ "status": from })),
                Some(json!({ "status": to, "at": stamp_of(&*incident, to) })),
            );
        tx.enqueue(&[OutboxMessage::new(
            "incident.status_changed",
            format!("incident.status_changed:{}:{}", incident.id, to.as_str()),
            json!({ "incident_id": incident.id, "number": incident.number, "from": from, "to": to }),
            now,
        )])
        .await?;
        Ok(event)
    }

    pub(crate) async fn locked_incident(
        &self,
        tx: &mut Box<dyn Tx>,
        key: &IncidentKey,
        expected_version: Option<i64>,
    ) -> Result<Incident> {
        let incident = tx
            .incident_for_update(key)
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        if let Some(v) = expected_version
            && v != incident.version
        {
            return Err(AppError::VersionConflict {
                what: "incident",
                current: incident.version,
            });
        }
        Ok(incident)
    }

    /// Moves an incident along its lifecycle, optionally with a note.
    pub async fn transition(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        t: Transition,
        note: Option<String>,
        expected_version: Option<i64>,
    ) -> Result<Incident> {
        caller.require(Permission::IncidentWrite)?;
        let note = match note {
            Some(n) => validate::text("note", &n, validate::TEXT_MAX, false)?,
            None => String::new(),
        };
        let now = self.now();
        let mut tx = self.begin().await?;
        // Its alerts resolve with it, as PagerDuty's do, so that one still
        // firing opens a new incident at its next trigger instead of being
        // counted on a closed one. They are held before the incident is
        // locked, in the order intake takes the two.
        let alerts = match t {
            Transition::Resolve => tx.hold_open_alerts_of_incident(key).await?,
            _ => Vec::new(),
        };
        let mut incident = self.locked_incident(&mut tx, key, expected_version).await?;
        let audit = self
            .transition_in(&mut tx, caller, &mut incident, t, note, now)
            .await?;
        tx.append_audit(&audit).await?;
        self.resolve_alerts_with(&mut tx, caller, &incident, alerts, now)
            .await?;
        tx.commit().await?;
        Ok(incident)
    }

    /// Resolves the alerts a person's resolve of `incident` leaves open,
    /// with one timeline entry and one audit event for them all.
    async fn resolve_alerts_with(
        &self,
        tx: &mut Box<dyn Tx>,
        caller: &Caller,
        incident: &Incident,
        mut alerts: Vec<Alert>,
        now: Timestamp,
    ) -> Result<()> {
        alerts.retain_mut(|a| a.resolve_with_incident(now));
        if alerts.is_empty() {
            return Ok(());
        }
        tx.save_alerts(&alerts).await?;
        let ids: Vec<Uuid> = alerts.iter().map(|a| a.id).collect();
        let body = crate::intake::alerts_entry_body(
            "resolved with the incident",
            alerts.len(),
            &alerts[0].summary,
        );
        // The timeline, which pages reread, names a few; the audit event,
        // the record, names them all, as intake's does.
        let listed = &ids[..ids.len().min(crate::intake::ALERTS_LISTED_MAX)];
        let entry = self.timeline_entry(
            caller,
            incident,
            TimelineKind::Alert,
            body,
            json!({ "count": ids.len(), "resolved": listed }),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Update,
                "alert_resolve",
                incident_target(incident),
            )
            .with_change(None, Some(json!({ "alerts": ids, "status": "resolved" })));
        tx.append_audit(&event).await?;
        Ok(())
    }

    pub async fn add_note(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        body: &str,
    ) -> Result<TimelineEntry> {
        caller.require(Permission::IncidentWrite)?;
        let body = validate::text("body", body, validate::TEXT_MAX, true)?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let incident = self.locked_incident(&mut tx, key, None).await?;
        let entry =
            self.timeline_entry(caller, &incident, TimelineKind::Note, body, json!({}), now);
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Create,
                "incident_note_add",
                incident_target(&incident),
            )
            .with_change(
                None,
                Some(json!({ "entry_id": entry.id, "body": entry.body })),
            );
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Edits fields, impact, personal-data facts and people.
    pub async fn update_incident(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        input: UpdateIncident,
        expected_version: Option<i64>,
    ) -> Result<Incident> {
        caller.require(Permission::IncidentWrite)?;
        let commander = match &input.commander {
            Some(spec) => Some(self.resolve_opt("commander", spec.as_ref()).await?),
            None => None,
        };
        let assignees = match &input.assignees {
            Some(specs) => Some(self.resolve_users("assignees", specs).await?),
            None => None,
        };
        let patch = input.with_people(commander, assignees);
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut incident = self.locked_incident(&mut tx, key, expected_version).await?;
        let before = json!(incident);
        let version = incident.version;
        let changed = incident.apply_patch(patch, &self.config.rules, now)?;
        if changed.is_empty() {
            return Ok(incident);
        }
        tx.update_incident(&incident, version).await?;
        if changed.iter().any(|f| {
            matches!(
                *f,
                "personal_data" | "category" | "materiality_determined_at"
            )
        }) {
            self.sync_obligations(&mut tx, &incident, false).await?;
        }
        let after = json!(incident);
        let pick = |v: &serde_json::Value| {
            json!(
                changed
                    .iter()
                    .map(|f| (f.to_string(), v[f].clone()))
                    .collect::<serde_json::Map<_, _>>()
            )
        };
        let entry = self.timeline_entry(
            caller,
            &incident,
            TimelineKind::Updated,
            changed.join(", "),
            json!({ "fields": changed, "after": pick(&after) }),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Update,
                "incident_update",
                incident_target(&incident),
            )
            .with_change(Some(pick(&before)), Some(pick(&after)));
        tx.append_audit(&event).await?;
        tx.enqueue(&[OutboxMessage::new(
            "incident.updated",
            format!("incident.updated:{}:{}", incident.id, incident.version),
            json!({ "incident_id": incident.id, "number": incident.number, "fields": changed }),
            now,
        )])
        .await?;
        tx.commit().await?;
        Ok(incident)
    }

    /// Reads one incident. Reading one that holds personal-data facts is
    /// itself audited, as the audit-trail design asks of sensitive reads.
    pub async fn incident(&self, caller: &Caller, key: &IncidentKey) -> Result<Incident> {
        caller.require(Permission::IncidentRead)?;
        let incident = self
            .store
            .incident(key)
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        if incident.personal_data.involved {
            self.audit_only(caller.event(
                self.now(),
                Operation::Read,
                "incident_read_personal_data",
                incident_target(&incident),
            ))
            .await?;
        }
        Ok(incident)
    }

    pub async fn timeline(&self, caller: &Caller, key: &IncidentKey) -> Result<Vec<TimelineEntry>> {
        caller.require(Permission::IncidentRead)?;
        let incident = self
            .store
            .incident(key)
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        self.timeline_of(caller, &incident).await
    }

    /// The timeline of an incident the caller has already read.
    pub async fn timeline_of(
        &self,
        caller: &Caller,
        incident: &Incident,
    ) -> Result<Vec<TimelineEntry>> {
        caller.require(Permission::IncidentRead)?;
        Ok(self.store.timeline(incident.id).await?)
    }

    pub async fn list_incidents(&self, caller: &Caller, q: ListIncidents) -> Result<IncidentList> {
        caller.require(Permission::IncidentRead)?;
        let rules = &self.config.rules;
        let statuses = q
            .statuses
            .iter()
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    AppError::invalid(
                        "status",
                        "unknown_value",
                        "must be one of: triggered, acknowledged, investigating, mitigated, resolved, closed",
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for s in &q.severities {
            if rules.severities.level(s).is_none() {
                return Err(AppError::invalid(
                    "severity",
                    "unknown_value",
                    format!("must be one of: {}", rules.severities.keys().join(", ")),
                ));
            }
        }
        for c in &q.categories {
            if rules.catalog.get(c).is_none() {
                return Err(AppError::invalid(
                    "category",
                    "unknown_value",
                    format!("must be one of: {}", rules.catalog.keys().join(", ")),
                ));
            }
        }
        let (limit, after) = crate::services::page_request(q.limit, q.cursor.as_deref())?;
        let text = match &q.text {
            Some(t) => Some(validate::line("q", t, validate::SHORT_MAX, false)?),
            None => None,
        };
        let items = self
            .store
            .incidents(&IncidentQuery {
                statuses,
                severities: q.severities,
                categories: q.categories,
                environment: q.environment,
                detected_from: q.detected_from,
                detected_to: q.detected_to,
                text,
                after,
                limit: limit + 1,
            })
            .await?;
        let (items, next_cursor) = crate::services::page_of(items, limit, |i| PageCursor {
            at: i.times.detected_at,
            id: i.id,
        });
        Ok(IncidentList { items, next_cursor })
    }
}
