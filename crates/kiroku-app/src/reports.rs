//! Postmortems and the reports made from them: saving a version, the
//! approval chain that makes it final (frozen, its SHA-256 in the audit
//! trail), tracked action items, and the 始末書, DB incident report and
//! postmortem rendered as Markdown, HTML or PDF.

use std::collections::HashMap;

use jiff::Timestamp;
use kiroku_domain::postmortem::{Approval, ApprovalRefused, Postmortem, Problem, Stage, readiness};
use kiroku_domain::{Incident, Operation, Permission, Role, Target, TimelineKind, UserRef};
use kiroku_report::{Document, Gravity, Kind, Lang, ObligationLine, Pattern, ReportInput};
use kiroku_store::{
    ActionItemQuery, ActionItemRecord, FrozenPostmortem, IncidentKey, PostmortemRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::incidents::{UserSpec, incident_target};
use crate::{App, AppError, Caller, Result};

/// A postmortem as a caller saves it, naming owners by login name or id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavePostmortem {
    /// The version being replaced; 0 for the first save.
    pub version: i64,
    pub postmortem: Postmortem<UserSpec>,
}

/// An approval of one step, of the version the approver read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePostmortem {
    pub step: String,
    pub version: i64,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub key: String,
    pub label_ja: String,
    pub label_en: String,
    pub approval: Option<Approval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub version: i64,
    pub sha256: String,
    pub finalised_at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostmortemView {
    pub incident_id: Uuid,
    pub incident_number: String,
    /// 0 until first saved.
    pub version: i64,
    pub stage: Stage,
    pub postmortem: Postmortem,
    pub steps: Vec<StepView>,
    /// What keeps it from being final (精神論不可).
    pub problems: Vec<Problem>,
    pub final_version: Option<i64>,
    pub final_hash: Option<String>,
    pub versions: Vec<VersionView>,
    pub updated_at: Option<Timestamp>,
    pub updated_by: Option<UserRef>,
}

/// The formats a report renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
    Pdf,
}

impl ReportFormat {
    pub fn parse(s: &str) -> Option<ReportFormat> {
        match s {
            "md" => Some(ReportFormat::Markdown),
            "html" => Some(ReportFormat::Html),
            "pdf" => Some(ReportFormat::Pdf),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
            ReportFormat::Pdf => "pdf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "text/markdown; charset=utf-8",
            ReportFormat::Html => "text/html; charset=utf-8",
            ReportFormat::Pdf => "application/pdf",
        }
    }
}

/// Which report, how: `kind` and `format` as the URL names them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub lang: Option<String>,
    /// A version made final, rendered from its frozen bytes; the current
    /// postmortem when absent.
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RenderedReport {
    pub content_type: &'static str,
    pub file_name: String,
    pub body: Vec<u8>,
}

/// Tracked action items as the API lists them.
#[derive(Debug, Clone, Default)]
pub struct ListActionItems {
    pub owner: Option<String>,
    pub open_only: bool,
    pub overdue_only: bool,
    pub limit: Option<i64>,
}

fn refused(e: ApprovalRefused) -> AppError {
    let (code, message, field) = match e {
        ApprovalRefused::AlreadyFinal => (
            "already_final",
            "every step is approved; edit the postmortem to start a new version".to_string(),
            None,
        ),
        ApprovalRefused::OutOfOrder { next } => (
            "out_of_order",
            format!("step {next:?} is approved first"),
            Some("step"),
        ),
        ApprovalRefused::UnknownStep => (
            "unknown_step",
            "no such step in this incident's approval chain".into(),
            Some("step"),
        ),
        ApprovalRefused::NotApprover { step } => (
            "not_approver",
            format!("you are not an approver of step {step:?}"),
            Some("step"),
        ),
        ApprovalRefused::SameApprover { step } => (
            "same_approver",
            format!("you approved step {step:?}; another person approves this one"),
            Some("step"),
        ),
        ApprovalRefused::NotReady(problems) => {
            return AppError::Refused {
                code: "not_ready",
                message: format!(
                    "the postmortem cannot be final yet: {} problem(s), see problems",
                    problems.len()
                ),
                field: problems.first().map(|p| p.field.clone()),
                problems,
            };
        }
    };
    AppError::Refused {
        code,
        message,
        field: field.map(str::to_string),
        problems: Vec::new(),
    }
}

fn stale(current: i64) -> AppError {
    AppError::VersionConflict {
        what: "postmortem",
        current,
    }
}

impl App {
    async fn postmortem_target(&self, caller: &Caller, key: &IncidentKey) -> Result<Incident> {
        caller.require(Permission::IncidentRead)?;
        self.store
            .incident(key)
            .await?
            .ok_or(AppError::NotFound { what: "incident" })
    }

    fn view_of(
        &self,
        incident: &Incident,
        record: Option<PostmortemRecord>,
        versions: Vec<FrozenPostmortem>,
    ) -> PostmortemView {
        let steps = self
            .config
            .reports
            .approvals
            .steps_for(&incident.category)
            .into_iter()
            .map(|s| StepView {
                key: s.key.clone(),
                label_ja: s.label_ja.clone(),
                label_en: s.label_en.clone(),
                approval: record
                    .as_ref()
                    .and_then(|r| r.approvals.iter().find(|a| a.step == s.key).cloned()),
            })
            .collect();
        let r = record.unwrap_or_else(|| empty_record(incident.id));
        PostmortemView {
            incident_id: incident.id,
            incident_number: incident.number.clone(),
            version: r.version,
            stage: r.stage,
            problems: readiness(&r.postmortem),
            postmortem: r.postmortem,
            steps,
            final_version: r.final_version,
            final_hash: r.final_hash,
            versions: versions
                .into_iter()
                .map(|v| VersionView {
                    version: v.version,
                    sha256: v.sha256,
                    finalised_at: v.finalised_at,
                })
                .collect(),
            updated_at: (r.version > 0).then_some(r.updated_at),
            updated_by: r.updated_by,
        }
    }

    pub async fn postmortem(&self, caller: &Caller, key: &IncidentKey) -> Result<PostmortemView> {
        let incident = self.postmortem_target(caller, key).await?;
        let record = self.store.postmortem(incident.id).await?;
        let versions = self.store.postmortem_versions(incident.id).await?;
        Ok(self.view_of(&incident, record, versions))
    }

    /// Saves a new version of the postmortem. Approvals belong to the
    /// version they were given to, so a save starts the chain again.
    pub async fn save_postmortem(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        input: SavePostmortem,
    ) -> Result<PostmortemView> {
        caller.require(Permission::IncidentWrite)?;
        let draft = input.postmortem.validated()?;
        // Each name once; an unknown one is reported at the field it is in.
        let mut people: HashMap<String, Option<UserRef>> = HashMap::new();
        for spec in draft
            .measures
            .iter()
            .filter_map(|m| m.owner.as_ref())
            .chain(draft.action_items.iter().filter_map(|a| a.owner.as_ref()))
        {
            if !people.contains_key(spec) {
                let user = match self.resolve_user("owner", spec).await {
                    Ok(u) => Some(u),
                    Err(AppError::Invalid(_)) => None,
                    Err(other) => return Err(other),
                };
                people.insert(spec.clone(), user);
            }
        }
        let mut postmortem = draft.try_map_people(|field, spec| {
            people.get(&spec).cloned().flatten().ok_or_else(|| {
                AppError::invalid(field, "unknown_user", format!("no active user {spec:?}"))
            })
        })?;
        postmortem.assign_item_ids(Uuid::now_v7);
        let incident = self.postmortem_target(caller, key).await?;
        // Read before the transaction holds a connection; the version
        // check below catches a save in between.
        let tracked = self
            .store
            .action_items(&ActionItemQuery {
                incident: Some(incident.id),
                limit: kiroku_store::PAGE_MAX,
                ..ActionItemQuery::default()
            })
            .await?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let incident = self
            .locked_incident(&mut tx, &IncidentKey::Id(incident.id), None)
            .await?;
        let before = tx.postmortem_for_update(incident.id).await?;
        let current = before.as_ref().map_or(0, |r| r.version);
        if input.version != current {
            return Err(stale(current));
        }
        let record = PostmortemRecord {
            incident_id: incident.id,
            version: current + 1,
            stage: Stage::Draft,
            postmortem,
            approvals: Vec::new(),
            updated_at: now,
            updated_by: caller.user_ref(),
            final_hash: before.as_ref().and_then(|r| r.final_hash.clone()),
            final_version: before.as_ref().and_then(|r| r.final_version),
        };
        tx.save_postmortem(&record, current).await?;
        let items: Vec<ActionItemRecord> = record
            .postmortem
            .action_items
            .iter()
            .filter_map(|a| {
                let id = a.id?;
                let earlier = tracked.iter().find(|t| t.id == id);
                Some(ActionItemRecord {
                    id,
                    incident_id: incident.id,
                    incident_number: incident.number.clone(),
                    item: a.clone(),
                    // Told once per due date: a new date is told again.
                    reminded: earlier.is_some_and(|t| t.reminded && t.item.due == a.due),
                })
            })
            .collect();
        tx.replace_action_items(incident.id, &items).await?;
        let entry = self.timeline_entry(
            caller,
            &incident,
            TimelineKind::Updated,
            format!("postmortem v{}", record.version),
            json!({ "postmortem_version": record.version }),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                if current == 0 {
                    Operation::Create
                } else {
                    Operation::Update
                },
                "postmortem_save",
                incident_target(&incident),
            )
            .with_change(
                before.as_ref().map(|r| json!({ "version": r.version, "stage": r.stage, "approvals": r.approvals.len() })),
                Some(json!({ "version": record.version, "postmortem": record.postmortem })),
            );
        tx.append_audit(&event).await?;
        tx.commit().await?;
        let versions = self.store.postmortem_versions(incident.id).await?;
        Ok(self.view_of(&incident, Some(record), versions))
    }

    /// Approves one step of the chain for the version the approver read;
    /// the last step makes it final: frozen, hashed, and the hash audited.
    pub async fn approve_postmortem(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        input: ApprovePostmortem,
    ) -> Result<PostmortemView> {
        caller.require(Permission::IncidentWrite)?;
        let approver = caller.user_ref().ok_or(AppError::Forbidden {
            role: "application",
            permission: "approving a postmortem (a person approves)",
        })?;
        let comment = kiroku_domain::validate::text("comment", &input.comment, 2_000, false)?;
        let incident = self.postmortem_target(caller, key).await?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let incident = self
            .locked_incident(&mut tx, &IncidentKey::Id(incident.id), None)
            .await?;
        let mut record = tx
            .postmortem_for_update(incident.id)
            .await?
            .ok_or(AppError::NotFound { what: "postmortem" })?;
        if input.version != record.version {
            return Err(stale(record.version));
        }
        let stage = self
            .config
            .reports
            .approvals
            .approve(
                &incident.category,
                &mut record.approvals,
                &record.postmortem,
                &input.step,
                &approver,
                caller.user().is_some_and(|u| u.role == Role::Admin),
                comment,
                now,
            )
            .map_err(refused)?;
        record.stage = stage;
        let mut frozen = None;
        if stage == Stage::Final {
            let canonical = kiroku_audit::canonical_doc(&json!({
                "incident_id": incident.id,
                "incident_number": incident.number,
                "version": record.version,
                "postmortem": record.postmortem,
                "approvals": record.approvals,
            }))
            .map_err(|e| AppError::Internal(format!("canonical postmortem: {e}")))?;
            let sha256 = kiroku_audit::hex::encode(&Sha256::digest(canonical.as_bytes()));
            record.final_hash = Some(sha256.clone());
            record.final_version = Some(record.version);
            let f = FrozenPostmortem {
                incident_id: incident.id,
                version: record.version,
                sha256,
                finalised_at: now,
                canonical,
            };
            tx.insert_postmortem_version(&f).await?;
            frozen = Some(f);
        }
        tx.save_postmortem(&record, record.version).await?;
        let entry = self.timeline_entry(
            caller,
            &incident,
            TimelineKind::Updated,
            match &frozen {
                Some(f) => format!("postmortem v{} final (SHA-256 {})", f.version, f.sha256),
                None => format!("postmortem v{} approved: {}", record.version, input.step),
            },
            json!({ "postmortem_version": record.version, "step": input.step, "stage": stage }),
            now,
        );
        tx.append_timeline(&entry).await?;
        let event = caller
            .event(
                now,
                Operation::Execute,
                if frozen.is_some() {
                    "postmortem_finalise"
                } else {
                    "postmortem_approve"
                },
                incident_target(&incident),
            )
            .with_change(
                None,
                Some(json!({
                    "version": record.version,
                    "step": input.step,
                    "stage": stage,
                    "sha256": frozen.as_ref().map(|f| f.sha256.clone()),
                })),
            );
        tx.append_audit(&event).await?;
        tx.commit().await?;
        let versions = self.store.postmortem_versions(incident.id).await?;
        Ok(self.view_of(&incident, Some(record), versions))
    }

    /// Tracked action items across incidents, soonest due first.
    pub async fn action_items(
        &self,
        caller: &Caller,
        q: ListActionItems,
    ) -> Result<Vec<ActionItemRecord>> {
        caller.require(Permission::IncidentRead)?;
        let (limit, _) = crate::services::page_request(q.limit, None)?;
        let owner = match &q.owner {
            Some(spec) => Some(self.resolve_user("owner", spec).await?.id),
            None => None,
        };
        let today = self.config.time_zone.to_datetime(self.now()).date();
        Ok(self
            .store
            .action_items(&ActionItemQuery {
                owner,
                open_only: q.open_only || q.overdue_only,
                due_before: q.overdue_only.then_some(today),
                limit,
                ..ActionItemQuery::default()
            })
            .await?)
    }

    /// The document of a report, before rendering.
    pub async fn report_document(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        kind: &str,
        request: &ReportRequest,
    ) -> Result<Document> {
        let kind = Kind::parse(kind).ok_or(AppError::NotFound {
            what: "report kind (shimatsusho, db-incident, postmortem, appi-report, gdpr-notification)",
        })?;
        let pattern = match &request.pattern {
            Some(p) => Some(Pattern::parse(p).ok_or_else(|| {
                AppError::invalid(
                    "pattern",
                    "unknown_value",
                    "must be one of: information_leak, server_failure, data_loss, unauthorized_access, service_outage",
                )
            })?),
            None => None,
        };
        let lang = match request.lang.as_deref() {
            None | Some("ja") => Lang::Ja,
            Some("en") => Lang::En,
            Some(_) => {
                return Err(AppError::invalid(
                    "lang",
                    "unknown_value",
                    "must be ja or en",
                ));
            }
        };
        // Reports show the personal-data facts, so reading one is audited.
        caller.require(Permission::IncidentRead)?;
        let incident = self
            .store
            .incident(key)
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        let timeline = self.store.timeline(incident.id).await?;
        let record = match request.version {
            None => self
                .store
                .postmortem(incident.id)
                .await?
                .unwrap_or_else(|| empty_record(incident.id)),
            Some(v) => self.frozen_record(incident.id, v).await?,
        };
        let duties = self.store.obligations(incident.id).await?;
        let obligations: Vec<ObligationLine> = duties
            .into_iter()
            .map(|r| {
                let rule = self
                    .config
                    .reports
                    .obligations
                    .iter()
                    .find(|x| x.key == r.rule);
                ObligationLine {
                    key: r.rule.clone(),
                    name_ja: rule.map_or_else(|| r.rule.clone(), |x| x.name_ja.clone()),
                    name_en: rule.map_or_else(|| r.rule.clone(), |x| x.name_en.clone()),
                    due_at: r.due_at,
                    status: r.status.as_str().to_string(),
                }
            })
            .collect();
        let rules = &self.config.rules;
        let category = rules.catalog.get(&incident.category);
        let levels = &rules.severities.levels;
        let rank = levels.iter().position(|l| l.key == incident.severity);
        let gravity = match rank {
            Some(0) => Gravity::Critical,
            Some(i) if i + 1 == levels.len() => Gravity::Minor,
            _ => Gravity::Major,
        };
        let problems = readiness(&record.postmortem);
        let input = ReportInput {
            incident: &incident,
            category_ja: category.map_or(incident.category.as_str(), |c| c.label_ja.as_str()),
            category_en: category.map_or(incident.category.as_str(), |c| c.label_en.as_str()),
            gravity,
            timeline: &timeline,
            postmortem: &record.postmortem,
            stage: record.stage,
            version: record.version,
            steps: self.config.reports.approvals.steps_for(&incident.category),
            approvals: &record.approvals,
            final_hash: record
                .final_hash
                .as_deref()
                .filter(|_| record.stage == Stage::Final),
            problems: &problems,
            obligations: &obligations,
            zone: &self.config.time_zone,
            issued_at: self.now(),
            default_addressees: &self.config.reports.addressees,
            western_dates: false,
            contact: &self.config.reports.contact,
        };
        let doc = kiroku_report::build(kind, &input, pattern, lang);
        self.audit_only(
            caller
                .event(
                    self.now(),
                    Operation::Read,
                    "incident_report_read",
                    Target::new("incident", Some(incident.id.to_string())),
                )
                .with_change(None, Some(json!({ "kind": kind.as_str() }))),
        )
        .await?;
        Ok(doc)
    }

    /// A final version as it was frozen: the bytes whose SHA-256 the audit
    /// trail holds, read back, so a report of it shows what was approved.
    async fn frozen_record(&self, incident: Uuid, version: i64) -> Result<PostmortemRecord> {
        let frozen = self
            .store
            .postmortem_versions(incident)
            .await?
            .into_iter()
            .find(|f| f.version == version)
            .ok_or(AppError::NotFound {
                what: "final postmortem version",
            })?;
        #[derive(Deserialize)]
        struct Frozen {
            postmortem: Postmortem,
            approvals: Vec<Approval>,
        }
        let parsed: Frozen = serde_json::from_str(&frozen.canonical)
            .map_err(|e| AppError::Internal(format!("frozen postmortem v{version}: {e}")))?;
        Ok(PostmortemRecord {
            incident_id: incident,
            version,
            stage: Stage::Final,
            postmortem: parsed.postmortem,
            approvals: parsed.approvals,
            updated_at: frozen.finalised_at,
            updated_by: None,
            final_hash: Some(frozen.sha256),
            final_version: Some(version),
        })
    }

    /// A report rendered: `kind` shimatsusho / db-incident / postmortem,
    /// `format` md / html / pdf.
    pub async fn report(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        kind: &str,
        format: &str,
        request: &ReportRequest,
    ) -> Result<RenderedReport> {
        let format = ReportFormat::parse(format).ok_or(AppError::NotFound {
            what: "report format (md, html, pdf)",
        })?;
        // An unknown kind is a 404 whether or not PDFs can be made.
        if format == ReportFormat::Pdf && self.fonts.is_none() && Kind::parse(kind).is_some() {
            return Err(no_fonts());
        }
        let doc = self.report_document(caller, key, kind, request).await?;
        let body = match format {
            ReportFormat::Markdown => kiroku_report::markdown::render(&doc).into_bytes(),
            ReportFormat::Html => kiroku_report::html::render(&doc).into_bytes(),
            ReportFormat::Pdf => {
                let fonts = self.fonts.clone().ok_or_else(no_fonts)?;
                // Laying out pages is CPU work; keep it off the request threads.
                tokio::task::spawn_blocking(move || kiroku_report::pdf::render(&doc, &fonts))
                    .await
                    .map_err(|e| AppError::Internal(format!("pdf task: {e}")))?
                    .map_err(|e| AppError::Internal(format!("pdf: {e}")))?
            }
        };
        let number = match key {
            IncidentKey::Number(n) => n.clone(),
            IncidentKey::Id(id) => id.to_string(),
        };
        Ok(RenderedReport {
            content_type: format.content_type(),
            file_name: format!("{number}-{kind}.{}", format.extension()),
            body,
        })
    }
}

fn no_fonts() -> AppError {
    AppError::NotConfigured {
        code: "pdf_fonts_missing",
        message: "PDF needs a Japanese font: install fonts-ipaexfont-gothic (or fonts-noto-cjk) or set reports.font".into(),
    }
}

fn empty_record(incident_id: Uuid) -> PostmortemRecord {
    PostmortemRecord {
        incident_id,
        version: 0,
        stage: Stage::Draft,
        postmortem: Postmortem::default(),
        approvals: Vec::new(),
        updated_at: Timestamp::UNIX_EPOCH,
        updated_by: None,
        final_hash: None,
        final_version: None,
    }
}

/// A notice to send (or, with `send: false`, to see first).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Communicate {
    pub kind: kiroku_report::communication::NoticeKind,
    #[serde(default, flatten)]
    pub input: kiroku_report::communication::NoticeInput,
    #[serde(default = "yes")]
    pub send: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize)]
pub struct CommunicationView {
    pub subject: String,
    pub body: String,
    pub sent: bool,
}

/// Operational metrics for a period, in the asked format.
#[derive(Debug, Clone)]
pub struct MetricsRequest {
    pub from: Timestamp,
    pub to: Timestamp,
    pub bucket: Option<kiroku_domain::metrics::BucketSize>,
}

/// The most incidents one metrics request reads.
const METRICS_MAX: i64 = 1_000_000;

impl App {
    /// The P0 notice or the recovery notice, made from the incident and
    /// sent through the notification channels; kept on the timeline.
    pub async fn communicate(
        &self,
        caller: &Caller,
        key: &IncidentKey,
        request: Communicate,
    ) -> Result<CommunicationView> {
        caller.require(Permission::IncidentRead)?;
        if request.send {
            caller.require(Permission::IncidentWrite)?;
        }
        let n = &request.input;
        for (field, value) in [
            ("situation", &n.situation),
            ("eta", &n.eta),
            ("actions", &n.actions),
            ("next_update", &n.next_update),
        ] {
            kiroku_domain::validate::text(field, value, 2_000, false)?;
        }
        let incident = self.postmortem_target(caller, key).await?;
        let record = self
            .store
            .postmortem(incident.id)
            .await?
            .unwrap_or_else(|| empty_record(incident.id));
        let text = kiroku_report::communication::notice(
            request.kind,
            &incident,
            &record.postmortem,
            n,
            &self.config.time_zone,
        )
        .ok_or_else(|| AppError::Refused {
            code: "not_resolved",
            message: "a recovery notice needs the incident resolved first".into(),
            field: Some("kind".into()),
            problems: Vec::new(),
        })?;
        if !request.send {
            return Ok(CommunicationView {
                subject: text.subject,
                body: text.body,
                sent: false,
            });
        }
        let now = self.now();
        let level = match request.kind {
            kiroku_report::communication::NoticeKind::P0Notice => "critical",
            kiroku_report::communication::NoticeKind::RecoveryNotice => "info",
        };
        let mut tx = self.begin().await?;
        let incident = self
            .locked_incident(&mut tx, &IncidentKey::Id(incident.id), None)
            .await?;
        let entry = self.timeline_entry(
            caller,
            &incident,
            TimelineKind::Communication,
            format!("{}\n{}", text.subject, text.body),
            json!({ "kind": request.kind }),
            now,
        );
        tx.append_timeline(&entry).await?;
        tx.enqueue(&[kiroku_domain::OutboxMessage::new(
            "incident.communication",
            format!("incident.communication:{}", entry.id),
            json!({
                "incident_id": incident.id,
                "number": incident.number,
                "level": level,
                "subject": text.subject,
                "body": text.body,
            }),
            now,
        )])
        .await?;
        let event = caller
            .event(
                now,
                Operation::Create,
                "incident_communicate",
                incident_target(&incident),
            )
            .with_change(
                None,
                Some(json!({ "kind": request.kind, "subject": text.subject })),
            );
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(CommunicationView {
            subject: text.subject,
            body: text.body,
            sent: true,
        })
    }

    /// MTTA, MTTR, MTBF and counts over incidents detected in the period.
    pub async fn metrics(
        &self,
        caller: &Caller,
        request: &MetricsRequest,
    ) -> Result<kiroku_domain::metrics::Metrics> {
        caller.require(Permission::IncidentRead)?;
        if request.to <= request.from {
            return Err(AppError::invalid(
                "to",
                "out_of_range",
                "must be later than from",
            ));
        }
        let stamps = self
            .store
            .incident_stamps(request.from, request.to, METRICS_MAX)
            .await?;
        let today = self.config.time_zone.to_datetime(self.now()).date();
        let overdue = self
            .store
            .count_action_items(&ActionItemQuery {
                open_only: true,
                due_before: Some(today),
                ..ActionItemQuery::default()
            })
            .await?;
        let trend = request
            .bucket
            .map(|size| kiroku_domain::metrics::TrendSpec {
                size,
                zone: self.config.time_zone.clone(),
            });
        Ok(kiroku_domain::metrics::compute(
            &stamps,
            kiroku_domain::metrics::Period {
                from: request.from,
                to: request.to,
            },
            overdue.max(0) as u64,
            trend.as_ref(),
        ))
    }
}

/// One breach as the GDPR Art. 33(5) register documents it: the facts,
/// the effects and the remedial action, with the duties and where they stand.
#[derive(Debug, Clone, Serialize)]
pub struct BreachEntry {
    pub incident_id: Uuid,
    pub number: String,
    pub title: String,
    pub category: String,
    pub status: kiroku_domain::Status,
    pub occurred_at: Option<Timestamp>,
    pub detected_at: Timestamp,
    pub data_items: Vec<String>,
    pub people_affected: Option<i64>,
    pub records_affected: Option<i64>,
    pub sensitive: bool,
    pub financial_risk: bool,
    pub malicious_intent: bool,
    pub effects: Vec<String>,
    pub remedial_actions: Vec<String>,
    pub duties: Vec<BreachDuty>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreachDuty {
    pub key: String,
    pub status: kiroku_domain::obligation::ObligationStatus,
    pub due_at: Timestamp,
    pub decided_at: Option<Timestamp>,
}

/// The register's columns, for CSV.
const BREACH_CSV_HEADER: &str = "number,title,category,status,occurred_at,detected_at,data_items,people_affected,records_affected,sensitive,financial_risk,malicious_intent,effects,remedial_actions,duties\r\n";

impl BreachEntry {
    pub fn csv_row(&self) -> String {
        let opt = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        let cells = [
            self.number.clone(),
            self.title.clone(),
            self.category.clone(),
            self.status.as_str().to_string(),
            opt(self.occurred_at),
            self.detected_at.to_string(),
            self.data_items.join("; "),
            num(self.people_affected),
            num(self.records_affected),
            self.sensitive.to_string(),
            self.financial_risk.to_string(),
            self.malicious_intent.to_string(),
            self.effects.join("; "),
            self.remedial_actions.join("; "),
            self.duties
                .iter()
                .map(|d| format!("{}={}", d.key, d.status.as_str()))
                .collect::<Vec<_>>()
                .join("; "),
        ];
        let mut row = cells
            .iter()
            .map(|c| kiroku_domain::validate::csv_cell(c))
            .collect::<Vec<_>>()
            .join(",");
        row.push_str("\r\n");
        row
    }
}

/// The register as CSV: a header and one row a breach.
pub fn breach_register_csv(entries: &[BreachEntry]) -> String {
    let mut out = String::from(BREACH_CSV_HEADER);
    for e in entries {
        out.push_str(&e.csv_row());
    }
    out
}

impl App {
    /// Every incident in the period that involved personal data, as the
    /// GDPR Art. 33(5) register documents breaches. Reading it is audited.
    pub async fn breach_register(
        &self,
        caller: &Caller,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<BreachEntry>> {
        caller.require(Permission::IncidentRead)?;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .incidents(&kiroku_store::IncidentQuery {
                    detected_from: from,
                    detected_to: to,
                    after,
                    limit: kiroku_store::PAGE_MAX,
                    ..kiroku_store::IncidentQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(kiroku_store::PageCursor {
                at: last.times.detected_at,
                id: last.id,
            });
            let full = page.len() as i64 == kiroku_store::PAGE_MAX;
            for i in page.into_iter().filter(|i| i.personal_data.involved) {
                let pm = self
                    .store
                    .postmortem(i.id)
                    .await?
                    .map(|r| r.postmortem)
                    .unwrap_or_default();
                let duties = self
                    .store
                    .obligations(i.id)
                    .await?
                    .into_iter()
                    .map(|d| BreachDuty {
                        key: d.rule,
                        status: d.status,
                        due_at: d.due_at,
                        decided_at: d.decided_at,
                    })
                    .collect();
                let effects = [i.impact.business_impact.clone(), pm.damage.clone()]
                    .into_iter()
                    .filter(|t| !t.trim().is_empty())
                    .collect();
                let remedial_actions = pm
                    .responses
                    .iter()
                    .map(|a| a.text.clone())
                    .chain(pm.measures.iter().map(|m| m.text.clone()))
                    .collect();
                out.push(BreachEntry {
                    incident_id: i.id,
                    number: i.number,
                    title: i.title,
                    category: i.category,
                    status: i.status,
                    occurred_at: i.times.occurred_at,
                    detected_at: i.times.detected_at,
                    data_items: i.personal_data.items,
                    people_affected: i.personal_data.people_affected,
                    records_affected: i.impact.records_affected,
                    sensitive: i.personal_data.sensitive,
                    financial_risk: i.personal_data.financial_risk,
                    malicious_intent: i.personal_data.malicious_intent,
                    effects,
                    remedial_actions,
                    duties,
                });
            }
            if !full {
                break;
            }
        }
        self.audit_only(
            caller
                .event(
                    self.now(),
                    Operation::Read,
                    "breach_register_read",
                    Target::new("breach_register", None),
                )
                .with_change(None, Some(json!({ "entries": out.len() }))),
        )
        .await?;
        Ok(out)
    }
}
