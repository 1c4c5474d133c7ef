//! Replaying a record the intake journal's applier dropped and kept
//! (`Journal::keep_dropped`), once its cause is mended: through the same
//! write path as intake, in one transaction with an audit event naming the
//! operator and the file, and a mark that makes the same bytes apply once.

use kiroku_domain::{Operation, Permission, Target, ValidationError};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::journaled::Request;
use super::{Accepted, Job, Provenance, WhileAway};
use crate::{App, AppError, Caller, Result};

/// What a second replay of the same bytes is refused as.
pub(super) const ALREADY: &str = "a replay of these bytes";

/// What a replay did.
#[derive(Debug, Serialize)]
pub struct Replayed {
    /// The SHA-256 of the kept bytes, as the audit event names them.
    pub sha256: String,
    pub integration_id: Uuid,
    pub service_id: Uuid,
    /// What each event did, as intake would have answered without the
    /// journal.
    pub events: Vec<Accepted>,
}

/// The id a kept record is marked by once replayed: the first 16 bytes of
/// its digest, so that the same bytes, under whatever file name, are
/// applied once.
fn replay_id(digest: &[u8]) -> Uuid {
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

impl App {
    /// Applies `bytes`, the content of `file`, a record the journal kept
    /// when it dropped it. Refused when these bytes were replayed before.
    pub async fn replay_kept_intake(
        &self,
        caller: &Caller,
        file: &str,
        bytes: &[u8],
    ) -> Result<Replayed> {
        caller.require(Permission::ServiceManage)?;
        let request: Request = serde_json::from_slice(bytes).map_err(|e| {
            ValidationError::new(
                "file",
                "not_a_kept_record",
                format!("{file} is not an intake record the journal kept: {e}"),
            )
        })?;
        let digest = Sha256::digest(bytes);
        let sha256 = kiroku_audit::hex::encode(&digest);
        let replay = replay_id(&digest);
        // Checked again, and awaited, by the mark in the transaction: this
        // read only spares the work of one bound to fail.
        if self.store.intake_journal_applied(replay).await? > 0 {
            return Err(AppError::Duplicate {
                what: ALREADY,
                field: "file",
            });
        }
        let (integration_id, service_id) = (request.integration.id, request.integration.service_id);
        let routed = self.routed_service(service_id, WhileAway::Wait).await?;
        let event = caller
            .event(
                self.now(),
                Operation::Execute,
                "alert_intake_replay",
                Target::new("integration", Some(integration_id.to_string())),
            )
            .with_change(
                None,
                Some(json!({
                    "file": file,
                    "sha256": sha256,
                    "events": request.events.len(),
                })),
            );
        // Nobody waits for this answer but the caller, who gets it below.
        let (reply, _) = oneshot::channel();
        let mut jobs = [Job {
            integration: request.integration,
            routed,
            source: request.source,
            events: request.events,
            reply,
        }];
        let (results, committed) = self
            .apply_batch(&mut jobs, Provenance::Replay(replay, Box::new(event)))
            .await?;
        committed.wait().await?;
        Ok(Replayed {
            sha256,
            integration_id,
            service_id,
            events: results.into_iter().flatten().collect(),
        })
    }
}
