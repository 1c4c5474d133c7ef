//! The audit trail's files outside the database: the tree-signing key, the
//! witness directory of signed tree heads, and archives of old events.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use kiroku_audit::{SignedTreeHead, TreeKey};

use serde::{Deserialize, Serialize};

fn unhex32(s: &str) -> Option<[u8; 32]> {
    kiroku_audit::hex::decode_array(s.trim())
}

/// A 32-byte secret from the environment variable `env` (64 hex digits)
/// when set, else from the file at `path`, created with mode 0600 on first use.
fn secret(env: &str, path: &Path, what: &str) -> anyhow::Result<[u8; 32]> {
    if let Ok(hex) = std::env::var(env) {
        return unhex32(&hex).with_context(|| format!("{env} must be 64 hex digits (32 bytes)"));
    }
    match std::fs::read_to_string(path) {
        Ok(text) => unhex32(&text)
            .with_context(|| format!("{} does not hold a {what} (64 hex digits)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| anyhow::anyhow!("no randomness for a {what}: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create the {what} {}", path.display()))?;
            writeln!(f, "{}", kiroku_audit::hex::encode(&key))?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the {what} {}", path.display())),
    }
}

/// The tree-signing key: `KIROKU_AUDIT_SIGNING_KEY` (hex Ed25519 seed) or
/// its key file.
pub fn signing_key(path: &Path) -> anyhow::Result<TreeKey> {
    Ok(TreeKey::from_seed(secret(
        "KIROKU_AUDIT_SIGNING_KEY",
        path,
        "signing key",
    )?))
}

/// The key-encryption key that wraps subjects' data keys:
/// `KIROKU_AUDIT_KEK` or its key file. Keep a copy apart from the
/// database: without it no sealed value can be opened.
pub fn data_kek(path: &Path) -> anyhow::Result<[u8; 32]> {
    secret("KIROKU_AUDIT_KEK", path, "key-encryption key")
}

/// The key that signs acknowledgement links and calendar feeds:
/// `KIROKU_LINK_KEY` or its key file.
pub fn link_key(path: &Path) -> anyhow::Result<kiroku_app::LinkKey> {
    Ok(kiroku_app::LinkKey::new(secret(
        "KIROKU_LINK_KEY",
        path,
        "link key",
    )?))
}

/// A head as the witness keeps it: with the public key that signed it, so
/// that it can be checked without the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Witnessed {
    #[serde(flatten)]
    pub head: SignedTreeHead,
    pub public_key: String,
}

/// The witness directory: one read-only file per head, never overwritten.
pub struct DirWitness {
    pub dir: std::path::PathBuf,
}

#[async_trait::async_trait]
impl kiroku_app::HeadWitness for DirWitness {
    async fn witness(&self, head: &SignedTreeHead, public_hex: &str) -> Result<(), String> {
        let (dir, head, public) = (self.dir.clone(), head.clone(), public_hex.to_string());
        tokio::task::spawn_blocking(move || write_witness(&dir, &head, &public))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))
    }
}

/// A receiver outside the database that takes each head as JSON by POST
/// (the same body as a witness file); anything but 2xx is a failure.
pub struct WebhookWitness {
    pub client: reqwest::Client,
    pub url: String,
}

impl WebhookWitness {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("kiroku/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookWitness {
            client,
            url: url.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl kiroku_app::HeadWitness for WebhookWitness {
    async fn witness(&self, head: &SignedTreeHead, public_hex: &str) -> Result<(), String> {
        let body = Witnessed {
            head: head.clone(),
            public_key: public_hex.to_string(),
        };
        let res = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("the witness webhook answered {}", res.status()))
        }
    }
}

/// Writes `{size:020}.json`; a file already there is left alone.
fn write_witness(dir: &Path, head: &SignedTreeHead, public_key: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the witness directory {}", dir.display()))?;
    let path = dir.join(format!("{:020}.json", head.head.tree_size));
    let body = serde_json::to_vec(&Witnessed {
        head: head.clone(),
        public_key: public_key.to_string(),
    })?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(&body)?;
            f.sync_all()?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

pub fn read_witness(dir: &Path) -> anyhow::Result<Vec<(SignedTreeHead, String)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the witness directory {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let w: Witnessed = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a witnessed tree head", path.display()))?;
        out.push((w.head, w.public_key));
    }
    if out.is_empty() {
        bail!(
            "the witness directory {} holds no tree heads",
            dir.display()
        );
    }
    Ok(out)
}

/// What an online check established.
#[derive(Debug, Clone, Serialize)]
pub struct OnlineReport {
    pub trusted_size: u64,
    pub latest_size: u64,
    pub latest_root: String,
    pub key_id: String,
}

impl std::fmt::Display for OnlineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's head at size {} (root {}, key {}) extends the trusted head at size {}",
            self.latest_size, self.latest_root, self.key_id, self.trusted_size
        )
    }
}

/// Checks the server's latest signed head against a trusted one: same
/// key, valid signature, and a consistency proof from the trusted size.
pub async fn verify_online(
    client: &crate::client::Client,
    trusted: &Witnessed,
) -> anyhow::Result<OnlineReport> {
    use kiroku_audit::merkle::{from_hex, verify_consistency};
    kiroku_audit::verify_head(&trusted.head, &trusted.public_key)
        .context("the trusted head's own signature does not verify")?;
    let heads = client.get("/api/v1/audit/tree-heads?limit=1").await?;
    let latest: SignedTreeHead = serde_json::from_value(heads["latest"].clone())
        .context("the server has signed no tree head yet")?;
    if latest.key_id != trusted.head.key_id {
        bail!(
            "bad_signature: the server's latest head is signed by key {}, not the trusted key {}",
            latest.key_id,
            trusted.head.key_id
        );
    }
    kiroku_audit::verify_head(&latest, &trusted.public_key)
        .map_err(|e| anyhow::anyhow!("bad_signature: the server's latest head: {e}"))?;
    let (first, second) = (trusted.head.head.tree_size, latest.head.tree_size);
    if second < first {
        bail!(
            "truncated: the server's latest head covers {second} events, fewer than the trusted {first}"
        );
    }
    let proof = client
        .get(&format!(
            "/api/v1/audit/proofs/consistency?first={first}&second={second}"
        ))
        .await?;
    let hashes = proof["proof"]
        .as_array()
        .context("the server sent no consistency proof")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(from_hex)
                .context("a proof hash is malformed")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let root = |s: &str| from_hex(s).context("a root hash is malformed");
    verify_consistency(first, second, &root(&trusted.head.head.root_hash)?, &root(&latest.head.root_hash)?, &hashes)
        .map_err(|e| anyhow::anyhow!("inconsistent_head: the log at size {second} does not extend the trusted head at size {first}: {e}"))?;
    Ok(OnlineReport {
        trusted_size: first,
        latest_size: second,
        latest_root: latest.head.root_hash.clone(),
        key_id: latest.key_id,
    })
}

/// Writes events `from..=to` to `DIR/audit-FROM-TO.jsonl` (each line the
/// stored document, so that it hashes to its leaf), durably, then records
/// the archive, which removes the rows. A crash before the record leaves
/// a file that the next run writes again.
/// Moves the signed events older than `days` days, beyond those already
/// archived, to a file in `dir`; what was archived and how many rows left
/// the database, or None when nothing is old enough.
pub async fn archive_older_than(
    app: &kiroku_app::App,
    caller: &kiroku_app::Caller,
    dir: &Path,
    days: u32,
) -> anyhow::Result<Option<(kiroku_store::ArchiveRecord, u64)>> {
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * i64::from(days));
    let Some(range) = app
        .archivable(caller, before)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        return Ok(None);
    };
    let record = write_archive(app, caller, dir, range).await?;
    let removed = app
        .record_archive(caller, record.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some((record, removed)))
}

/// `[audit.archive]` at work: an archive pass at start and every hour.
pub async fn archive_on_schedule(app: kiroku_app::App, days: u32, dir: std::path::PathBuf) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match archive_older_than(&app, &kiroku_app::Caller::system(), &dir, days).await {
            Ok(Some((r, removed))) => tracing::info!(
                from = r.from_seq,
                to = r.to_seq,
                removed,
                file = %dir.join(&r.file).display(),
                "archived audit events"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not archive audit events"),
        }
    }
}

async fn write_archive(
    app: &kiroku_app::App,
    caller: &kiroku_app::Caller,
    dir: &Path,
    (from, to): (i64, i64),
) -> anyhow::Result<kiroku_store::ArchiveRecord> {
    use sha2::{Digest, Sha256};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = format!("audit-{from:020}-{to:020}.jsonl");
    let path = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial"));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut digest = Sha256::new();
    let mut after = from - 1;
    while after < to {
        let page = app
            .archive_docs(caller, after, to)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(&(last, _)) = page.last() else {
            bail!(
                "event {} is not in the database; run `kiroku audit verify`",
                after + 1
            );
        };
        for (seq, doc) in page {
            if seq != after + 1 {
                bail!(
                    "event {} is not in the database; run `kiroku audit verify`",
                    after + 1
                );
            }
            out.write_all(doc.as_bytes())?;
            out.write_all(b"\n")?;
            digest.update(doc.as_bytes());
            digest.update(b"\n");
            after = seq;
        }
        after = after.max(last);
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(kiroku_store::ArchiveRecord {
        from_seq: from,
        to_seq: to,
        file: name,
        sha256: kiroku_audit::hex::encode(&digest.finalize()),
        archived_at: jiff::Timestamp::now(),
    })
}

/// What `kiroku audit verify --archive DIR` shows verification of one
/// archive: its lines, once the file is found and its digest matches.
pub fn archive_contents(
    dir: &Path,
    a: &kiroku_store::ArchiveRecord,
) -> kiroku_app::ArchiveContents {
    use kiroku_app::ArchiveContents;
    use sha2::{Digest, Sha256};
    use std::io::BufRead;
    let path = dir.join(&a.file);
    let digest = std::fs::File::open(&path).and_then(|mut f| {
        let mut d = Sha256::new();
        std::io::copy(&mut f, &mut d)?;
        Ok(kiroku_audit::hex::encode(&d.finalize()))
    });
    match digest {
        Err(e) => ArchiveContents::Unreadable(format!("cannot read {}: {e}", path.display())),
        Ok(d) if d != a.sha256 => ArchiveContents::Unreadable(format!(
            "{} has SHA-256 {d}, but {} was archived",
            path.display(),
            a.sha256
        )),
        Ok(_) => match std::fs::File::open(&path) {
            Err(e) => ArchiveContents::Unreadable(format!("cannot read {}: {e}", path.display())),
            Ok(f) => ArchiveContents::Lines(Box::new(
                std::io::BufReader::new(f)
                    .lines()
                    .map(|l| l.map_err(|e| e.to_string())),
            )),
        },
    }
}
