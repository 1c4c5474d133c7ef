//! Replaying a record the intake journal's applier dropped and kept
//! (`Journal::keep_dropped`), once its cause is mended: through the same
//! write path as intake, in one transaction with an audit event naming the
//! operator and the file.
//!
//! Only bytes the audit log says were dropped and kept are replayed: the
//! drop's audit event names the journal, the record's number and the
//! SHA-256 of what was kept. A file edited since, or one whose record was
//! applied after all (a crash between keeping it and recording the drop),
//! is refused. The replay's transaction marks the record, so each dropped
//! record applies once, whatever its file is called.

use kiroku_domain::{Operation, Permission, Target, ValidationError};
use kiroku_store::AuditQuery;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::journaled::{Request, kept_digest};
use super::{Accepted, Provenance};
use crate::{App, AppError, Caller, Result};

/// What a second replay of the same record is refused as.
pub(super) const ALREADY: &str = "a replay of this record";

/// The most drops of the same bytes looked at: a sender repeating one
/// request word for word, dropped each time.
const DROPS_MAX: i64 = 100;

/// What a replay did.
#[derive(Debug, Serialize)]
pub struct Replayed {
    /// The SHA-256 of the kept bytes, as the audit events name them.
    pub sha256: String,
    pub journal: Uuid,
    pub seq: u64,
    pub integration_id: Uuid,
    pub service_id: Uuid,
    /// What each event did, as intake would have answered without the
    /// journal.
    pub events: Vec<Accepted>,
}

/// The id a replayed record is marked by: made from its journal and
/// number, a UUID of version 8, never a journal's own (version 7).
fn replay_id(journal: Uuid, seq: u64) -> Uuid {
    let digest = Sha256::new()
        .chain_update(journal.as_bytes())
        .chain_update(seq.to_be_bytes())
        .finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

impl App {
    /// Applies `bytes`, the content of `file`, a record the journal kept
    /// when it dropped it. Refused when no drop kept these bytes, or when
    /// every record that did is replayed already.
    pub async fn replay_kept_intake(
        &self,
        caller: &Caller,
        file: &str,
        bytes: &[u8],
    ) -> Result<Replayed> {
        caller.require(Permission::ServiceManage)?;
        let sha256 = kept_digest(bytes);
        let drops = self.drops_keeping(&sha256).await?;
        if drops.is_empty() {
            return Err(ValidationError::new(
                "file",
                "not_kept",
                format!(
                    "no dropped intake record was kept with these bytes (SHA-256 {sha256}): \
                     replay a file the audit log names (kept_in), unchanged"
                ),
            )
            .into());
        }
        let mut request: Request = serde_json::from_slice(bytes).map_err(|e| {
            ValidationError::new(
                "file",
                "not_a_request",
                format!("{file} holds a record that is no request, which cannot be applied: {e}"),
            )
        })?;
        // The first of the records kept with these bytes not yet replayed;
        // the mark in the transaction settles a race for it.
        let mut unreplayed = None;
        for (journal, seq) in drops {
            let id = replay_id(journal, seq);
            if self.store.intake_journal_applied(id).await? == 0 {
                unreplayed = Some((journal, seq, id));
                break;
            }
        }
        let (journal, seq, id) = unreplayed.ok_or(AppError::Duplicate {
            what: ALREADY,
            field: "file",
        })?;
        // The integration as it is now, still of the record's service.
        let recorded = &request.integration;
        let integration = self
            .store
            .integration(recorded.id)
            .await?
            .filter(|i| i.service_id == recorded.service_id)
            .ok_or(AppError::NotFound {
                what: "the record's integration",
            })?;
        request.integration = kiroku_domain::alert::Integration {
            key: String::new(),
            ..integration
        };
        let (integration_id, service_id) = (request.integration.id, request.integration.service_id);
        let event = caller
            .event(
                self.now(),
                Operation::Execute,
                "alert_intake_replay",
                Target::new("intake_journal", Some(journal.to_string())),
            )
            .with_change(
                None,
                Some(json!({
                    "seq": seq,
                    "file": file,
                    "sha256": sha256,
                    "integration_id": integration_id,
                    "events": request.events.len(),
                })),
            );
        let mut jobs = [self.unanswered_job(request).await?];
        let (results, committed) = self
            .apply_batch(&mut jobs, Provenance::Replay(id, Box::new(event)))
            .await?;
        committed.wait().await.map_err(|e| {
            AppError::Unavailable(format!(
                "the replay is committed, but the database did not confirm its sync ({e}); \
                 replaying again is refused if it was kept"
            ))
        })?;
        Ok(Replayed {
            sha256,
            journal,
            seq,
            integration_id,
            service_id,
            events: results.into_iter().flatten().collect(),
        })
    }

    /// The records (journal, number) whose drop kept bytes of `sha256`,
    /// oldest first.
    async fn drops_keeping(&self, sha256: &str) -> Result<Vec<(Uuid, u64)>> {
        let events = self
            .store
            .audit_events(&AuditQuery {
                action: Some("alert_intake".into()),
                target_kind: Some("intake_journal".into()),
                outcome: Some("failure".into()),
                text: Some(sha256.into()),
                limit: DROPS_MAX,
                ..Default::default()
            })
            .await?;
        Ok(events
            .iter()
            .filter_map(|e| {
                let kept = e.after.as_ref()?;
                if kept["sha256"] != sha256 {
                    return None;
                }
                let journal = e.target.id.as_deref()?.parse().ok()?;
                Some((journal, kept["seq"].as_u64()?))
            })
            .collect())
    }
}
