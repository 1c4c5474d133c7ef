//! The audit trail's own operations: signing tree heads, proofs, reading
//! events, and verifying the whole log.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use kiroku_audit::merkle::{self, hex};
use kiroku_audit::verify::{Finding, Summary, Verifier};
use kiroku_audit::{NodeId, SignedTreeHead, TreeHead, TreeKey};
use kiroku_domain::{Actor, AuditEvent, Operation, Permission, Source, Target};
use kiroku_store::{ArchiveRecord, AuditQuery, AuditScan};
use serde::{Deserialize, Serialize};
use serde_json::json;

use tokio::sync::oneshot;

use crate::group::{GroupCommit, Grouped, replicate};
use crate::{App, AppError, Caller, Result};

/// Events verified between two progress reports.
const PROGRESS_EVERY: u64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub audit_path: Vec<String>,
    pub root_hash: String,
    /// The signed head of that size, when one was signed.
    pub signed_head: Option<SignedTreeHead>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub first_root: String,
    pub second_root: String,
    pub proof: Vec<String>,
}

/// Somewhere outside the database that keeps every signed head (a
/// directory, a webhook), so that a database rewritten wholesale is caught.
#[async_trait::async_trait]
pub trait HeadWitness: Send + Sync {
    async fn witness(
        &self,
        head: &SignedTreeHead,
        public_hex: &str,
    ) -> std::result::Result<(), String>;
}

/// The tree-signing key and the witnesses each new head goes to.
pub struct TreeSigner {
    pub key: TreeKey,
    pub witnesses: Vec<Box<dyn HeadWitness>>,
}

/// Hashes of the tree's upper nodes, kept in memory once read. A stored
/// node covers a complete subtree, so its hash never changes; the upper
/// levels are few (one node of level 10 per 1,024 events) and on every
/// proof's path, while their pages lie scattered over a large log. Proofs
/// then read only their lower levels. `kiroku audit verify` reads the
/// database itself, never this.
#[derive(Default)]
pub(crate) struct UpperNodes(Mutex<HashMap<NodeId, merkle::Hash>>);

impl UpperNodes {
    /// The lowest level kept: a path's 10 lower nodes are still read.
    const LEVEL_MIN: u8 = 10;
    /// Past this many (every upper node of a log of 2^26 events, about
    /// 5 MiB), the set starts again.
    const MAX: usize = 1 << 16;

    /// The nodes known, and the ids still to read.
    fn split(&self, ids: &[NodeId]) -> (HashMap<NodeId, merkle::Hash>, Vec<NodeId>) {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = HashMap::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for id in ids {
            match known.get(id) {
                Some(h) => {
                    found.insert(*id, *h);
                }
                None => unknown.push(*id),
            }
        }
        (found, unknown)
    }

    fn keep(&self, read: &HashMap<NodeId, merkle::Hash>) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= Self::MAX {
            known.clear();
        }
        known.extend(read.iter().filter(|(id, _)| id.level >= Self::LEVEL_MIN));
    }
}

impl App {
    /// Registers the signing key's public half (once), as an audited key
    /// operation.
    pub async fn register_signing_key(&self) -> Result<()> {
        let key = &self.signer()?.key;
        let keys = self.store.audit_keys().await?;
        if keys.iter().any(|(id, _)| *id == key.key_id()) {
            return Ok(());
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        tx.insert_audit_key(&key.key_id(), &key.public_hex(), now)
            .await?;
        let event = AuditEvent::success(
            now,
            &Actor::system(),
            &Source::system(),
            Operation::Create,
            "audit_key_registered",
            Target::new("audit_key", Some(key.key_id())),
        )
        .with_change(None, Some(json!({ "public_key": key.public_hex() })));
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    fn signer(&self) -> Result<&TreeSigner> {
        self.signer
            .as_deref()
            .ok_or_else(|| AppError::Unavailable("no tree-signing key is configured".into()))
    }

    /// Signs a head now, on request (auditor, admin); answers the latest
    /// head, new or not.
    pub async fn sign_tree_head_now(
        &self,
        caller: &Caller,
    ) -> Result<(bool, Option<SignedTreeHead>)> {
        caller.require(Permission::AuditRead)?;
        match self.sign_tree_head().await? {
            Some(head) => Ok((true, Some(head))),
            None => Ok((
                false,
                self.store.tree_heads(None, 1).await?.into_iter().next(),
            )),
        }
    }

    /// Signs a head for the current tree if it grew since the last one,
    /// and hands it to every witness.
    pub async fn sign_tree_head(&self) -> Result<Option<SignedTreeHead>> {
        let signer = self.signer()?;
        let key = &signer.key;
        let size = self.store.audit_size().await?;
        let latest = self.store.tree_heads(None, 1).await?;
        if size == 0 || latest.first().is_some_and(|h| h.head.tree_size >= size) {
            return Ok(None);
        }
        let root = self.root(size).await?;
        let head = key.sign(TreeHead::new(size, &root, self.now()));
        // Another node may have signed this size first; theirs stands.
        if !self.store.insert_tree_head(&head).await? {
            return Ok(None);
        }
        for w in &signer.witnesses {
            // The head is already in the database; a witness that is down
            // is logged, and the next head will reach it.
            if let Err(e) = w.witness(&head, &key.public_hex()).await {
                tracing::error!(error = %e, size = head.head.tree_size, "a witness did not take a tree head");
            }
        }
        Ok(Some(head))
    }

    /// Runs a tree computation over stored nodes, fetched in one go; the
    /// upper levels' come from memory once read.
    async fn with_nodes<T>(
        &self,
        run: impl Fn(&mut dyn FnMut(NodeId) -> merkle::Hash) -> T,
    ) -> Result<T> {
        let ids = merkle::nodes_needed(|get| {
            run(get);
        });
        let (mut nodes, unknown) = self.upper_nodes.split(&ids);
        if !unknown.is_empty() {
            let read = self.store.audit_nodes(&unknown).await?;
            self.upper_nodes.keep(&read);
            nodes.extend(read);
        }
        if let Some(missing) = ids.iter().find(|id| !nodes.contains_key(id)) {
            return Err(AppError::Damaged(format!(
                "audit tree node {missing:?} is missing"
            )));
        }
        Ok(run(&mut |id| nodes[&id]))
    }

    async fn root(&self, size: u64) -> Result<merkle::Hash> {
        self.with_nodes(|get| merkle::root(size, get)).await
    }

    fn check_size(&self, field: &str, value: u64, size: u64) -> Result<()> {
        if value == 0 || value > size {
            return Err(AppError::invalid(
                field,
                "out_of_range",
                format!("must be between 1 and the log's size, {size}"),
            ));
        }
        Ok(())
    }

    pub async fn inclusion_proof(
        &self,
        caller: &Caller,
        seq: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof> {
        caller.require(Permission::AuditRead)?;
        // Named sizes let the log's size, the nodes and the signed head be
        // read at once, each on a reader of its own; the sizes are checked
        // before anything read for them is used.
        let heads = |t: u64| self.store.tree_heads(Some(t.saturating_add(1)), 1);
        let (size, tree_size, proof, heads) = match tree_size {
            Some(t) => {
                let (size, proof, heads) = tokio::join!(
                    self.store.audit_size(),
                    self.leaf_path_root(seq, t),
                    heads(t)
                );
                (size?, t, proof, heads)
            }
            None => {
                let size = self.store.audit_size().await?;
                let (proof, heads) = tokio::join!(self.leaf_path_root(seq, size), heads(size));
                (size, size, proof, heads)
            }
        };
        self.check_size("tree_size", tree_size, size)?;
        self.check_size("seq", seq, tree_size)?;
        let index = seq - 1;
        let (leaf, path, root) = proof?;
        let signed_head = heads?.into_iter().find(|h| h.head.tree_size == tree_size);
        Ok(InclusionProof {
            seq,
            leaf_index: index,
            tree_size,
            leaf_hash: hex(&leaf),
            audit_path: path.iter().map(hex).collect(),
            root_hash: hex(&root),
            signed_head,
        })
    }

    /// The leaf of `seq`, its inclusion path and the root, in one read of
    /// the stored nodes.
    async fn leaf_path_root(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<(merkle::Hash, Vec<merkle::Hash>, merkle::Hash)> {
        let index = seq.wrapping_sub(1);
        self.with_nodes(|get| {
            let leaf = get(NodeId { level: 0, index });
            let path = merkle::inclusion_proof(index, tree_size, get).unwrap_or_default();
            (leaf, path, merkle::root(tree_size, get))
        })
        .await
    }

    pub async fn consistency_proof(
        &self,
        caller: &Caller,
        first: u64,
        second: Option<u64>,
    ) -> Result<ConsistencyProof> {
        caller.require(Permission::AuditRead)?;
        let size = self.store.audit_size().await?;
        let second = second.unwrap_or(size);
        self.check_size("second", second, size)?;
        self.check_size("first", first, second)?;
        let (proof, first_root, second_root) = self
            .with_nodes(|get| {
                let proof = merkle::consistency_proof(first, second, get).unwrap_or_default();
                (proof, merkle::root(first, get), merkle::root(second, get))
            })
            .await?;
        Ok(ConsistencyProof {
            first,
            second,
            first_root: hex(&first_root),
            second_root: hex(&second_root),
            proof: proof.iter().map(hex).collect(),
        })
    }

    /// Searches the audit log (auditor, admin).
    pub async fn audit_events(&self, caller: &Caller, q: AuditQuery) -> Result<Vec<AuditEvent>> {
        caller.require(Permission::AuditRead)?;
        if let Some(o) = &q.outcome
            && o != "success"
            && o != "failure"
        {
            return Err(AppError::invalid(
                "result",
                "unknown_value",
                "must be success or failure",
            ));
        }
        if let Some(t) = &q.text {
            kiroku_domain::validate::line("q", t, kiroku_domain::validate::SHORT_MAX, false)?;
        }
        if !(1..=kiroku_store::PAGE_MAX).contains(&q.limit) {
            return Err(AppError::invalid(
                "limit",
                "out_of_range",
                format!("must be between 1 and {}", kiroku_store::PAGE_MAX),
            ));
        }
        Ok(self.store.audit_events(&q).await?)
    }

    pub async fn tree_heads(
        &self,
        caller: &Caller,
        below: Option<u64>,
        limit: i64,
    ) -> Result<Vec<SignedTreeHead>> {
        caller.require(Permission::AuditRead)?;
        if !(1..=kiroku_store::PAGE_MAX).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                "out_of_range",
                format!("must be between 1 and {}", kiroku_store::PAGE_MAX),
            ));
        }
        Ok(self.store.tree_heads(below, limit).await?)
    }

    pub async fn audit_event(&self, caller: &Caller, seq: i64) -> Result<(AuditEvent, String)> {
        caller.require(Permission::AuditRead)?;
        self.store
            .audit_event(seq)
            .await?
            .ok_or(AppError::NotFound {
                what: "audit event",
            })
    }

    /// Verifies the whole log from the database alone (and `witnessed`
    /// heads, each with its public key). Events are read through `scan`
    /// when the backend offers one (on a blocking thread), else page by
    /// page. A first pass checks signed ranges by their roots; should it
    /// find anything, a full pass names what and where. `progress` hears
    /// (checked, total).
    pub async fn verify_audit(
        &self,
        witnessed: Vec<(SignedTreeHead, String)>,
        mut archive: impl FnMut(&ArchiveRecord) -> ArchiveContents,
        mut scan: Option<Box<dyn AuditScan>>,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<std::result::Result<Summary, Finding>> {
        let keys: HashMap<String, String> = self.store.audit_keys().await?.into_iter().collect();
        let mut heads = Vec::new();
        let mut below = None;
        loop {
            let page = self.store.tree_heads(below, 200).await?;
            let Some(last) = page.last() else { break };
            below = Some(last.head.tree_size);
            heads.extend(page);
        }
        // Read after the heads, so that no head read covers more than this;
        // events appended meanwhile are left to the next verification.
        let total = self.store.audit_size().await?;
        let mut outcome = Ok(Summary::default());
        for roots_first in [true, false] {
            let mut v = Verifier::new(heads.clone(), &keys, witnessed.clone());
            if roots_first {
                v = v.roots_first();
            }
            let pass = (v, scan, progress);
            let (v, back_scan, back_progress) = self.verify_pass(pass, total, &mut archive).await?;
            (scan, progress) = (back_scan, back_progress);
            outcome = v.finish(total);
            if outcome.is_ok() {
                break;
            }
        }
        Ok(outcome)
    }

    /// One pass over every event; hands its tools back for another.
    async fn verify_pass<P: FnMut(u64, u64) + Send + 'static>(
        &self,
        (mut v, scan, mut progress): (Verifier, Option<Box<dyn AuditScan>>, P),
        total: u64,
        archive: &mut impl FnMut(&ArchiveRecord) -> ArchiveContents,
    ) -> Result<(Verifier, Option<Box<dyn AuditScan>>, P)> {
        let mut after = 0;
        // Archived ranges first (they are the oldest), then the rows.
        for a in self.store.audit_archives().await? {
            if !self.verify_archive(&mut v, &a, archive(&a)).await? {
                return Ok((v, scan, progress));
            }
            after = a.to_seq;
            progress(after as u64, total);
        }
        if let Some(mut scan) = scan {
            return tokio::task::spawn_blocking(move || {
                let mut fed = 0u64;
                scan.scan(after, total as i64, &mut |seq, leaf, doc| {
                    fed += 1;
                    if fed.is_multiple_of(PROGRESS_EVERY) {
                        progress(seq as u64, total);
                    }
                    v.event(seq as u64, leaf, doc)
                })?;
                progress(total, total);
                Ok((v, Some(scan), progress))
            })
            .await
            .map_err(|e| AppError::Internal(format!("the audit scan stopped: {e}")))?;
        }
        'pages: loop {
            let page = self.store.audit_raw(after, PROGRESS_EVERY as i64).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                if e.seq as u64 > total
                    || !v.event(e.seq as u64, e.leaf_hash.as_bytes(), e.doc.as_bytes())
                {
                    break 'pages;
                }
            }
            after = page.last().map_or(after, |e| e.seq);
            progress(after as u64, total);
        }
        Ok((v, scan, progress))
    }

    /// Feeds one archived range: each line's bytes against the leaf the
    /// tree recorded when the archive is at hand, else the leaves alone.
    async fn verify_archive(
        &self,
        v: &mut Verifier,
        a: &ArchiveRecord,
        contents: ArchiveContents,
    ) -> Result<bool> {
        let mut lines = match contents {
            ArchiveContents::Unreadable(why) => {
                v.archive_problem(a.from_seq as u64, format!("archive {}: {why}", a.file));
                return Ok(false);
            }
            ArchiveContents::LeavesOnly => None,
            ArchiveContents::Lines(lines) => Some(lines),
        };
        let mut after = a.from_seq - 1;
        while after < a.to_seq {
            let leaves = self.store.audit_leaves(after, a.to_seq, 10_000).await?;
            let Some(&(last, _)) = leaves.last() else {
                v.archive_problem(
                    (after + 1) as u64,
                    format!(
                        "the tree holds no leaf for event {} of archive {}",
                        after + 1,
                        a.file
                    ),
                );
                return Ok(false);
            };
            for (seq, leaf) in leaves {
                let ok = match &mut lines {
                    None => v.archived_leaf(seq as u64, leaf),
                    Some(lines) => match lines.next() {
                        Some(Ok(doc)) => v.event(seq as u64, hex(&leaf).as_bytes(), doc.as_bytes()),
                        Some(Err(e)) => {
                            v.archive_problem(seq as u64, format!("archive {}: {e}", a.file));
                            false
                        }
                        None => {
                            v.archive_problem(
                                seq as u64,
                                format!("archive {} ends before event {seq}", a.file),
                            );
                            false
                        }
                    },
                };
                if !ok {
                    return Ok(false);
                }
            }
            after = last;
        }
        if let Some(mut lines) = lines
            && lines.next().is_some()
        {
            v.archive_problem(
                (a.to_seq + 1) as u64,
                format!(
                    "archive {} holds more than events {}..={}",
                    a.file, a.from_seq, a.to_seq
                ),
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// The range `kiroku audit archive` would move out now: from the first
    /// event not yet archived up to the last one stamped before `before`,
    /// and no further than the latest signed head, so that every archived
    /// event is already vouched for.
    pub async fn archivable(
        &self,
        caller: &Caller,
        before: Timestamp,
    ) -> Result<Option<(i64, i64)>> {
        caller.require(Permission::UserManage)?;
        let from = self
            .store
            .audit_archives()
            .await?
            .last()
            .map_or(1, |a| a.to_seq + 1);
        let signed = self
            .store
            .tree_heads(None, 1)
            .await?
            .first()
            .map_or(0, |h| h.head.tree_size as i64);
        let to = self
            .store
            .audit_seq_before(before)
            .await?
            .unwrap_or(0)
            .min(signed);
        Ok((to >= from).then_some((from, to)))
    }

    /// Stored documents of events `after < seq <= up_to`, oldest first, for
    /// writing an archive.
    pub async fn archive_docs(
        &self,
        caller: &Caller,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, String)>> {
        caller.require(Permission::UserManage)?;
        let page = self.store.audit_raw(after, 10_000).await?;
        Ok(page
            .into_iter()
            .take_while(|e| e.seq <= up_to)
            .map(|e| (e.seq, e.doc))
            .collect())
    }

    /// Records that events `from..=to` are in an archive file and removes
    /// their rows, in one audited transaction.
    pub async fn record_archive(&self, caller: &Caller, archive: ArchiveRecord) -> Result<u64> {
        caller.require(Permission::UserManage)?;
        let expected = self
            .store
            .audit_archives()
            .await?
            .last()
            .map_or(1, |a| a.to_seq + 1);
        if archive.from_seq != expected || archive.to_seq < archive.from_seq {
            return Err(AppError::invalid(
                "from_seq",
                "out_of_range",
                format!("the next archive must start at event {expected}"),
            ));
        }
        let mut tx = self.begin().await?;
        let removed = tx.archive_audit(&archive).await?;
        let expected_rows = (archive.to_seq - archive.from_seq + 1) as u64;
        if removed != expected_rows {
            // Rolled back on drop: an archive must cover rows that exist.
            return Err(AppError::Damaged(format!(
                "events {}..={}: {removed} rows found, {expected_rows} expected",
                archive.from_seq, archive.to_seq
            )));
        }
        tx.append_audit(
            &caller
                .event(
                    self.now(),
                    Operation::Delete,
                    "audit_archive",
                    Target::new(
                        "audit_log",
                        Some(format!("{}-{}", archive.from_seq, archive.to_seq)),
                    ),
                )
                .with_change(None, Some(json!(archive))),
        )
        .await?;
        tx.commit().await?;
        Ok(removed)
    }
}

/// What verification gets to see of one archive.
pub enum ArchiveContents {
    /// Not at hand: its events are checked by the leaves the tree records.
    LeavesOnly,
    /// The file's lines, in order, once its digest has been checked.
    Lines(Box<dyn Iterator<Item = std::result::Result<String, String>> + Send>),
    /// Missing, unreadable, or not the file that was archived.
    Unreadable(String),
}

/// The most events one request may send.
pub const INGEST_BATCH_MAX: usize = 1000;

/// An audit event another application sends, with the MUST fields of the
/// audit-trail design. `seq`, `id` and hashes are the server's to assign:
/// when sent they are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalEvent {
    pub time: jiff::Timestamp,
    pub actor: ExternalActor,
    pub operation: Operation,
    pub action: String,
    pub target: ExternalTarget,
    #[serde(default)]
    pub before: Option<serde_json::Value>,
    #[serde(default)]
    pub after: Option<serde_json::Value>,
    pub source: ExternalSource,
    pub result: kiroku_domain::Outcome,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default, rename = "seq")]
    pub ignored_seq: Option<serde_json::Value>,
    #[serde(default, rename = "id")]
    pub ignored_id: Option<serde_json::Value>,
    #[serde(default, rename = "leaf_hash")]
    pub ignored_leaf_hash: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalActor {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalTarget {
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSource {
    pub ip: String,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// JSON that canonicalises exactly: integers within ±2^53 (RFC 8785 numbers
/// are IEEE doubles), bounded depth.
fn check_value(field: &str, v: &serde_json::Value, depth: usize) -> Result<()> {
    use serde_json::Value;
    if depth > 32 {
        return Err(AppError::invalid(
            field,
            "too_deep",
            "must nest at most 32 levels",
        ));
    }
    match v {
        Value::Number(n) => {
            let exact = n.as_i64().is_some_and(|i| i.unsigned_abs() <= 1 << 53)
                || n.as_u64().is_some_and(|u| u <= 1 << 53)
                || (n.as_i64().is_none()
                    && n.as_u64().is_none()
                    && n.as_f64().is_some_and(f64::is_finite));
            if exact {
                Ok(())
            } else {
                Err(AppError::invalid(
                    field,
                    "out_of_range",
                    "numbers beyond ±2^53 must be sent as strings",
                ))
            }
        }
        Value::Array(xs) => xs.iter().try_for_each(|x| check_value(field, x, depth + 1)),
        Value::Object(m) => m
            .values()
            .try_for_each(|x| check_value(field, x, depth + 1)),
        _ => Ok(()),
    }
}

impl ExternalEvent {
    fn into_event(self, at: &str, channel: &str) -> Result<AuditEvent> {
        use kiroku_domain::validate::line;
        let f = |name: &str| format!("{at}.{name}");
        let opt = |name: &str, v: Option<String>, max: usize| -> Result<Option<String>> {
            v.map(|v| line(&f(name), &v, max, true))
                .transpose()
                .map_err(AppError::from)
        };
        let ip = line(&f("source.ip"), &self.source.ip, 64, true)?;
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(AppError::invalid(
                &f("source.ip"),
                "invalid_ip",
                "must be an IPv4 or IPv6 address",
            ));
        }
        for (name, v) in [("before", &self.before), ("after", &self.after)] {
            if let Some(v) = v {
                check_value(&f(name), v, 0)?;
            }
        }
        Ok(AuditEvent {
            seq: 0,
            id: uuid::Uuid::now_v7(),
            time: self.time,
            actor: Actor {
                kind: kiroku_domain::ActorKind::User,
                id: Some(line(&f("actor.id"), &self.actor.id, 200, true)?),
                name: opt("actor.name", self.actor.name, 200)?,
                role: opt("actor.role", self.actor.role, 100)?,
            },
            operation: self.operation,
            action: line(&f("action"), &self.action, 100, true)?,
            target: Target {
                kind: line(&f("target.kind"), &self.target.kind, 100, true)?,
                id: opt("target.id", self.target.id, 200)?,
            },
            before: self.before,
            after: self.after,
            source: Source {
                ip: Some(ip),
                user_agent: opt("source.user_agent", self.source.user_agent, 512)?,
                channel: channel.to_string(),
            },
            outcome: self.result,
            error_code: opt("error_code", self.error_code, 100)?,
        })
    }
}

/// A request's events checked and made into audit events, all or none,
/// `channel` naming who sent them; pure, so the fuzz targets run exactly
/// what ingestion runs before it queues.
pub fn external_audit_events(events: Vec<ExternalEvent>, channel: &str) -> Result<Vec<AuditEvent>> {
    if events.is_empty() {
        return Err(AppError::invalid(
            "events",
            "required",
            "send at least one event",
        ));
    }
    if events.len() > INGEST_BATCH_MAX {
        return Err(AppError::invalid(
            "events",
            "too_many",
            format!("send at most {INGEST_BATCH_MAX} events at once"),
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.into_event(&format!("events[{i}]"), channel))
        .collect()
}

impl App {
    /// Appends other applications' audit events, all or none, in one
    /// transaction; returns their sequence numbers.
    pub async fn ingest_audit_events(
        &self,
        caller: &Caller,
        events: Vec<ExternalEvent>,
    ) -> Result<Vec<i64>> {
        caller.require(Permission::AuditIngest)?;
        let channel = format!(
            "ingest:{}",
            caller.user().map_or("local", |u| u.name.as_str())
        );
        let events = external_audit_events(events, &channel)?;
        let (reply, answer) = oneshot::channel();
        self.audit_ingest
            .submit(
                IngestJob { events, reply },
                answer,
                self,
                |app, batch| async move { app.commit_ingested(batch).await },
            )
            .await
    }

    /// One transaction for every queued submission; each hears its own
    /// sequence numbers.
    async fn commit_ingested(&self, mut jobs: Vec<IngestJob>) {
        let sizes: Vec<usize> = jobs.iter().map(|j| j.events.len()).collect();
        let events: Vec<AuditEvent> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.events))
            .collect();
        let appended = async {
            let mut tx = self.begin().await?;
            let seqs = tx.append_audit_batch(events).await?;
            tx.commit().await?;
            Ok::<_, AppError>(seqs)
        }
        .await;
        match appended {
            Ok(seqs) => {
                let mut rest = &seqs[..];
                for (job, size) in jobs.into_iter().zip(sizes) {
                    let (mine, after) = rest.split_at(size.min(rest.len()));
                    rest = after;
                    let _ = job.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit event batch failed");
                for job in jobs {
                    let _ = job.reply.send(Err(replicate(&e)));
                }
            }
        }
    }
}

/// One submission of external audit events, waiting for a commit.
pub(crate) struct IngestJob {
    events: Vec<AuditEvent>,
    reply: oneshot::Sender<Result<Vec<i64>>>,
}

impl Grouped for IngestJob {
    fn weight(&self) -> usize {
        self.events.len()
    }
}

/// Submissions share a commit up to this many events.
const INGEST_GROUP_MAX: usize = 5_000;

pub(crate) fn ingest_group_commit() -> GroupCommit<IngestJob> {
    GroupCommit::new(INGEST_GROUP_MAX)
}

/// Formats an export can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One canonical event per line: `SHA-256(0x00 ‖ line)` is its leaf.
    JsonLines,
    Csv,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" => Some(ExportFormat::JsonLines),
            "csv" => Some(ExportFormat::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::JsonLines => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// What comes before the first event.
    pub fn header(self) -> &'static str {
        match self {
            ExportFormat::JsonLines => "",
            ExportFormat::Csv => {
                "seq,time,actor_kind,actor_id,actor_name,actor_role,operation,action,target_kind,target_id,outcome,error_code,source_ip,user_agent,channel,before,after\r\n"
            }
        }
    }
}

fn csv_row(e: &AuditEvent) -> String {
    let json =
        |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        e.seq.to_string(),
        e.time.to_string(),
        serde_json::to_value(e.actor.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        o(&e.actor.id),
        o(&e.actor.name),
        o(&e.actor.role),
        serde_json::to_value(e.operation)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        e.action.clone(),
        e.target.kind.clone(),
        o(&e.target.id),
        if e.outcome == kiroku_domain::Outcome::Success {
            "success".into()
        } else {
            "failure".into()
        },
        o(&e.error_code),
        o(&e.source.ip),
        o(&e.source.user_agent),
        e.source.channel.clone(),
        json(&e.before),
        json(&e.after),
    ];
    let mut row = fields
        .iter()
        .map(|f| kiroku_domain::validate::csv_cell(f))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

impl App {
    /// Starts an export: checks the right and records it, exports being
    /// the kind of operation the audit trail must show.
    pub async fn begin_export(
        &self,
        caller: &Caller,
        q: &AuditQuery,
        format: ExportFormat,
    ) -> Result<()> {
        caller.require(Permission::AuditRead)?;
        let event = caller
            .event(
                self.now(),
                Operation::Read,
                "audit_export",
                Target::new("audit_log", None),
            )
            .with_change(
                None,
                Some(json!({
                    "format": if format == ExportFormat::Csv { "csv" } else { "jsonl" },
                    "from": q.time_from,
                    "to": q.time_to,
                })),
            );
        self.audit_only(event).await
    }

    /// The next chunk of an export after `q.after_seq`, and where the one
    /// after it starts (None at the end).
    pub async fn export_chunk(
        &self,
        q: &AuditQuery,
        format: ExportFormat,
    ) -> Result<(String, Option<i64>)> {
        let page = self.store.audit_events(q).await?;
        let mut out = String::with_capacity(page.len() * 512);
        for e in &page {
            match format {
                ExportFormat::JsonLines => {
                    out.push_str(
                        &kiroku_audit::canonical_event(e)
                            .map_err(|e| AppError::Internal(e.to_string()))?,
                    );
                    out.push('\n');
                }
                ExportFormat::Csv => out.push_str(&csv_row(e)),
            }
        }
        let next = (page.len() as i64 == q.limit)
            .then(|| page.last().map(|e| e.seq))
            .flatten();
        Ok((out, next))
    }
}
