//! Sensitive values in audit events (seed 001 No.50): sealed before they are
//! hashed, by the app's transaction (`tx.rs`), so that no append can skip it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use kiroku_audit::seal::{at_path, open_value, seal_value, sealed_by, unwrap_key, wrap_key};
use kiroku_domain::{AuditEvent, Permission, Target};
use kiroku_store::{Result as StoreResult, StoreError, Tx};
use serde_json::{Value, json};

use crate::{App, AppError, Caller, Result};

/// What happens to sensitive values: encrypted (production), masked for
/// good (development, where no one needs them back), or kept (off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealMode {
    Encrypt,
    Mask,
    Off,
}

/// Paths under an event's `before` / `after` that hold sensitive values,
/// for events about targets of one kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRule {
    pub target: String,
    /// e.g. `after.personal_data`, or `before` for the whole value.
    pub paths: Vec<String>,
}

pub struct Sealer {
    pub kek: [u8; 32],
    pub mode: SealMode,
    pub rules: Vec<SealRule>,
}

impl Sealer {
    /// Personal-data facts of incidents and users' email addresses.
    pub fn default_rules() -> Vec<SealRule> {
        let both = |field: &str| vec![format!("before.{field}"), format!("after.{field}")];
        vec![
            SealRule {
                target: "incident".into(),
                paths: both("personal_data"),
            },
            SealRule {
                target: "user".into(),
                paths: both("email"),
            },
        ]
    }

    fn paths(&self, target: &str) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter(move |r| r.target == target)
            .flat_map(|r| r.paths.iter().map(String::as_str))
    }
}

fn random<const N: usize>() -> StoreResult<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| StoreError::Backend(format!("random source: {e}")))?;
    Ok(b)
}

/// The value at `before.x.y` / `after.x.y` of an event.
fn value_at<'a>(event: &'a mut AuditEvent, path: &str) -> Option<&'a mut Value> {
    let (side, rest) = path
        .split_once('.')
        .map_or((path, None), |(s, r)| (s, Some(r)));
    let root = match side {
        "before" => event.before.as_mut()?,
        "after" => event.after.as_mut()?,
        _ => return None,
    };
    match rest {
        Some(rest) => at_path(root, rest),
        None => Some(root),
    }
}

/// Whose data key seals values in events about `target`.
pub(crate) fn subject_of(target: &Target) -> String {
    format!("{}:{}", target.kind, target.id.as_deref().unwrap_or("-"))
}

/// A transaction's sealing: the policy, and the data keys it has used so
/// far (each subject's key is read or made once per transaction).
pub(crate) struct SealKeys {
    sealer: Arc<Sealer>,
    keys: HashMap<String, (i64, [u8; 32])>,
    /// Subjects made in this transaction under fresh ids: none can have a
    /// key yet, so theirs is made without reading for one first.
    made: HashSet<String>,
}

impl SealKeys {
    pub(crate) fn new(sealer: Arc<Sealer>) -> Self {
        SealKeys {
            sealer,
            keys: HashMap::new(),
            made: HashSet::new(),
        }
    }

    /// Notes that `subject` was made in this transaction.
    pub(crate) fn made(&mut self, subject: String) {
        self.made.insert(subject);
    }

    /// Whether events about targets of `kind` have anything to seal.
    pub(crate) fn applies_to(&self, kind: &str) -> bool {
        self.sealer.paths(kind).next().is_some()
    }

    /// Forgets a shredded subject's key, so that new data gets a new one.
    pub(crate) fn forget(&mut self, subject: &str) {
        self.keys.remove(subject);
        self.made.remove(subject);
    }

    /// The subject's live data key, made (or remade after a shred) on first use.
    async fn key(&mut self, inner: &mut dyn Tx, subject: &str) -> StoreResult<(i64, [u8; 32])> {
        if let Some(k) = self.keys.get(subject) {
            return Ok(*k);
        }
        let current = if self.made.contains(subject) {
            None
        } else {
            inner.current_subject_key(subject).await?
        };
        let key = match current {
            Some((generation, Some(wrapped))) => {
                let dek = unwrap_key(&self.sealer.kek, &wrapped)
                    .map_err(|e| StoreError::Corrupt(format!("data key of {subject}: {e}")))?;
                (generation, dek)
            }
            current => {
                let generation = current.map_or(1, |(g, _)| g + 1);
                let dek = random::<32>()?;
                let wrapped = wrap_key(&self.sealer.kek, &dek, random::<24>()?);
                inner
                    .insert_subject_key(subject, generation, &wrapped, Timestamp::now())
                    .await?;
                (generation, dek)
            }
        };
        self.keys.insert(subject.to_string(), key);
        Ok(key)
    }

    /// `event` with its sensitive values sealed (or masked).
    pub(crate) async fn seal(
        &mut self,
        inner: &mut dyn Tx,
        event: &AuditEvent,
    ) -> StoreResult<AuditEvent> {
        let mut event = event.clone();
        let sealer = self.sealer.clone();
        let subject = subject_of(&event.target);
        let kind = event.target.kind.clone();
        for path in sealer.paths(&kind) {
            let Some(value) = value_at(&mut event, path)
                .filter(|v| !v.is_null())
                .map(|v| v.take())
            else {
                continue;
            };
            let replacement = match sealer.mode {
                SealMode::Off => value,
                SealMode::Mask => json!("[masked]"),
                SealMode::Encrypt => {
                    let (generation, dek) = self.key(inner, &subject).await?;
                    seal_value(&dek, &subject, generation, &value, random::<24>()?)
                }
            };
            if let Some(slot) = value_at(&mut event, path) {
                *slot = replacement;
            }
        }
        Ok(event)
    }
}

/// Replaces every sealed value inside `v` with its plaintext (or a note
/// that it was shredded); returns the subjects opened.
async fn open_all(
    app: &App,
    kek: &[u8; 32],
    v: &mut Value,
    opened: &mut Vec<String>,
) -> Result<()> {
    if let Some((subject, generation)) = sealed_by(v) {
        let subject = subject.to_string();
        *v = match app.store.subject_key(&subject, generation).await? {
            Some(Some(wrapped)) => {
                let dek =
                    unwrap_key(kek, &wrapped).map_err(|e| AppError::Internal(e.to_string()))?;
                open_value(&dek, v).map_err(|e| AppError::Internal(e.to_string()))?
            }
            Some(None) => json!({ "kiroku_shredded": subject }),
            None => {
                return Err(AppError::Internal(format!(
                    "no data key {subject} #{generation}"
                )));
            }
        };
        opened.push(subject);
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                Box::pin(open_all(app, kek, x, opened)).await?;
            }
        }
        Value::Array(xs) => {
            for x in xs {
                Box::pin(open_all(app, kek, x, opened)).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl App {
    /// One audit event with its sealed values opened; the decrypting read
    /// is itself audited.
    pub async fn audit_event_opened(
        &self,
        caller: &Caller,
        seq: i64,
    ) -> Result<(AuditEvent, String)> {
        let (mut event, leaf) = self.audit_event(caller, seq).await?;
        let sealer = self
            .sealer
            .as_ref()
            .ok_or_else(|| AppError::Unavailable("no key-encryption key is configured".into()))?;
        let mut opened = Vec::new();
        for side in [&mut event.before, &mut event.after].into_iter().flatten() {
            open_all(self, &sealer.kek, side, &mut opened).await?;
        }
        if !opened.is_empty() {
            let e = caller
                .event(
                    self.now(),
                    kiroku_domain::Operation::Read,
                    "audit_decrypt",
                    kiroku_domain::Target::new("audit_event", Some(seq.to_string())),
                )
                .with_change(None, Some(json!({ "subjects": opened })));
            self.audit_only(e).await?;
        }
        Ok((event, leaf))
    }

    /// Destroys a subject's data keys (an erasure request): its sealed
    /// values can no longer be opened, and the tree still verifies.
    pub async fn shred_subject(&self, caller: &Caller, subject: &str) -> Result<u64> {
        caller.require(Permission::UserManage)?;
        let subject = kiroku_domain::validate::line("subject", subject, 300, true)?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let n = tx.shred_subject(&subject, now).await?;
        if n == 0 {
            return Err(AppError::NotFound {
                what: "live data key for that subject",
            });
        }
        let e = caller
            .event(
                now,
                kiroku_domain::Operation::Delete,
                "audit_subject_shred",
                kiroku_domain::Target::new("audit_subject", Some(subject)),
            )
            .with_change(None, Some(json!({ "keys_destroyed": n })));
        tx.append_audit(&e).await?;
        tx.commit().await?;
        Ok(n)
    }
}
