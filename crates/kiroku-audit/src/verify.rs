//! Offline verification of a whole audit log: fed stored events in
//! sequence order, it recomputes every leaf and the tree, and checks every
//! signed (and witnessed) tree head against the recomputed roots. It stops
//! at the first problem and says where and what.

use std::collections::HashMap;

use serde::Serialize;

use crate::canonical::{doc_leaf, doc_matches_leaf, doc_seq};
use crate::head::{SignedTreeHead, verify_head};
use crate::merkle::{CompactRange, from_hex, hex, leaf_hash};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The event's bytes no longer hash to its recorded leaf.
    Changed,
    /// A sequence number is missing.
    Deleted,
    /// An event was put in before this one (later events shifted).
    Inserted,
    /// Events were swapped or moved.
    Reordered,
    /// A signed head covers events that are no longer there.
    Truncated,
    /// The recomputed tree disagrees with a signed head.
    HeadMismatch,
    /// A head's signature does not verify, or names an unknown key.
    BadSignature,
    /// The database disagrees with a head witnessed outside it.
    WitnessMismatch,
    /// An archive file is missing, altered, or does not cover its range.
    ArchiveMismatch,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Changed => "changed",
            Problem::Deleted => "deleted",
            Problem::Inserted => "inserted",
            Problem::Reordered => "reordered",
            Problem::Truncated => "truncated",
            Problem::HeadMismatch => "head_mismatch",
            Problem::BadSignature => "bad_signature",
            Problem::WitnessMismatch => "witness_mismatch",
            Problem::ArchiveMismatch => "archive_mismatch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The first sequence number affected, when one can be named.
    pub seq: Option<u64>,
    pub problem: Problem,
    pub detail: String,
}

/// Where a tree head to check came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Database = 0,
    Witness = 1,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub events: u64,
    /// Archived events whose contents were not at hand: checked by the
    /// leaves the tree records, not by their bytes.
    pub archived_by_leaf_only: u64,
    pub heads_checked: u64,
    pub witnessed_checked: u64,
    pub root_hash: String,
}

pub struct Verifier {
    range: CompactRange,
    /// Heads to check, by size, smallest first.
    checkpoints: Vec<(SignedTreeHead, Origin)>,
    next: usize,
    /// The largest size each kind of head vouched for so far.
    last_good: [u64; 2],
    summary: Summary,
    finding: Option<Finding>,
    /// Roots first: events that a head covers are checked by the roots
    /// alone (see [`Verifier::roots_first`]); up to this size.
    roots_only_up_to: u64,
}

fn finding(seq: Option<u64>, problem: Problem, detail: String) -> Option<Finding> {
    Some(Finding {
        seq,
        problem,
        detail,
    })
}

impl Verifier {
    /// `keys` maps key ids to public keys (hex); `witnessed` heads carry
    /// their own public key, so a database re-signed under a new key
    /// cannot vouch for them.
    pub fn new(
        heads: Vec<SignedTreeHead>,
        keys: &HashMap<String, String>,
        witnessed: Vec<(SignedTreeHead, String)>,
    ) -> Self {
        let mut v = Verifier {
            range: CompactRange::new(),
            checkpoints: Vec::new(),
            next: 0,
            last_good: [0, 0],
            summary: Summary::default(),
            finding: None,
            roots_only_up_to: 0,
        };
        for h in heads {
            let ok = match keys.get(&h.key_id) {
                Some(public) => verify_head(&h, public).map_err(|e| e.to_string()),
                None => Err(format!("key {} is not registered", h.key_id)),
            };
            if let Err(e) = ok {
                v.finding = v.finding.or(finding(
                    None,
                    Problem::BadSignature,
                    format!("tree head at size {}: {e}", h.head.tree_size),
                ));
            }
            v.checkpoints.push((h, Origin::Database));
        }
        for (h, public) in witnessed {
            if let Err(e) = verify_head(&h, &public) {
                v.finding = v.finding.or(finding(
                    None,
                    Problem::BadSignature,
                    format!("witnessed head at size {}: {e}", h.head.tree_size),
                ));
            }
            v.checkpoints.push((h, Origin::Witness));
        }
        v.checkpoints.sort_by_key(|(h, _)| h.head.tree_size);
        v
    }

    /// A quicker pass for a log that is expected to verify: events that a
    /// signed or witnessed head covers are hashed into the tree and checked
    /// by the heads' roots alone, which decide their integrity; the
    /// per-event checks that only name a problem (recorded leaf, the seq
    /// the event was written with) run for the events beyond the last
    /// head. A finding from this pass says only that something is wrong:
    /// run a full pass to name it, and take the full pass's word.
    pub fn roots_first(mut self) -> Self {
        self.roots_only_up_to = self.checkpoints.last().map_or(0, |(h, _)| h.head.tree_size);
        self
    }

    /// The first problem found so far.
    pub fn finding(&self) -> Option<&Finding> {
        self.finding.as_ref()
    }

    /// Whether `row_seq` is the next event; a finding if not.
    fn next_is(&mut self, row_seq: u64) -> bool {
        if self.finding.is_some() {
            return false;
        }
        let expected = self.range.size() + 1;
        if row_seq != expected {
            self.finding = finding(
                Some(expected),
                Problem::Deleted,
                format!("event {expected} is missing (the next stored event is {row_seq})"),
            );
            return false;
        }
        true
    }

    /// Feeds the recorded leaf of an archived event whose bytes are not at
    /// hand. Returns false once a problem is found.
    pub fn archived_leaf(&mut self, seq: u64, leaf: crate::Hash) -> bool {
        if !self.next_is(seq) {
            return false;
        }
        self.range.push(leaf);
        self.summary.events += 1;
        self.summary.archived_by_leaf_only += 1;
        self.check_heads()
    }

    /// Records a problem with an archive as a whole (missing, altered).
    pub fn archive_problem(&mut self, seq: u64, detail: String) {
        self.finding = self
            .finding
            .take()
            .or(finding(Some(seq), Problem::ArchiveMismatch, detail));
    }

    /// Feeds the next stored event. Returns false once a problem is found.
    /// Bytes rather than text: in a pass by roots nothing needs decoding.
    pub fn event(&mut self, row_seq: u64, stored_leaf: &[u8], doc: &[u8]) -> bool {
        if !self.next_is(row_seq) {
            return false;
        }
        if row_seq <= self.roots_only_up_to {
            self.range.push(leaf_hash(doc));
            self.summary.events += 1;
            return self.check_heads();
        }
        let (Ok(stored_leaf), Ok(doc)) =
            (std::str::from_utf8(stored_leaf), std::str::from_utf8(doc))
        else {
            self.finding = finding(
                Some(row_seq),
                Problem::Changed,
                "the event or its recorded leaf is not UTF-8 text".into(),
            );
            return false;
        };
        /// Reads only `seq`, without building the whole document.
        #[derive(serde::Deserialize)]
        struct Seq {
            seq: u64,
        }
        let doc_seq = doc_seq(doc).or_else(|| serde_json::from_str::<Seq>(doc).ok().map(|d| d.seq));
        match doc_seq {
            Some(s) if s == row_seq => {}
            Some(s) if s < row_seq => {
                self.finding = finding(
                    Some(s),
                    Problem::Inserted,
                    format!(
                        "the event stored as {row_seq} was written as {s}: an event was inserted before it"
                    ),
                );
                return false;
            }
            Some(s) => {
                self.finding = finding(
                    Some(row_seq),
                    Problem::Reordered,
                    format!("the event stored as {row_seq} was written as {s}"),
                );
                return false;
            }
            None => {
                self.finding = finding(
                    Some(row_seq),
                    Problem::Changed,
                    "the event is not a readable audit event".into(),
                );
                return false;
            }
        }
        let Some(leaf) = from_hex(stored_leaf) else {
            self.finding = finding(
                Some(row_seq),
                Problem::Changed,
                format!("its recorded leaf {stored_leaf:?} is not a hash"),
            );
            return false;
        };
        match doc_matches_leaf(doc, &leaf) {
            Ok(true) => {}
            Ok(false) => {
                let actual = doc_leaf(doc).map(|h| hex(&h)).unwrap_or_default();
                self.finding = finding(
                    Some(row_seq),
                    Problem::Changed,
                    format!(
                        "its content hashes to {actual} but its leaf is recorded as {stored_leaf}"
                    ),
                );
                return false;
            }
            Err(e) => {
                self.finding = finding(Some(row_seq), Problem::Changed, e.to_string());
                return false;
            }
        }
        self.range.push(leaf);
        self.summary.events += 1;
        self.check_heads()
    }

    fn check_heads(&mut self) -> bool {
        let size = self.range.size();
        while let Some((h, origin)) = self.checkpoints.get(self.next) {
            if h.head.tree_size > size {
                break;
            }
            let root = hex(&self.range.root());
            let slot = *origin as usize;
            if h.head.tree_size == size && h.head.root_hash != root {
                let (problem, what) = match origin {
                    Origin::Database => (Problem::HeadMismatch, "signed"),
                    Origin::Witness => (Problem::WitnessMismatch, "witnessed"),
                };
                let first = self.last_good[slot] + 1;
                self.finding = finding(
                    Some(first),
                    problem,
                    format!(
                        "the {what} head at size {size} has root {}, the events give {root}: an event in {first}..={size} differs",
                        h.head.root_hash,
                    ),
                );
                return false;
            }
            match origin {
                Origin::Database => self.summary.heads_checked += 1,
                Origin::Witness => self.summary.witnessed_checked += 1,
            }
            self.last_good[slot] = size;
            self.next += 1;
        }
        true
    }

    /// Ends the pass: heads beyond the events mean the log was cut short.
    pub fn finish(mut self, recorded_size: u64) -> Result<Summary, Finding> {
        if let Some(f) = self.finding.take() {
            return Err(f);
        }
        let size = self.range.size();
        if let Some((h, origin)) = self.checkpoints.get(self.next) {
            let what = if *origin == Origin::Witness {
                "witnessed"
            } else {
                "signed"
            };
            return Err(Finding {
                seq: Some(size + 1),
                problem: Problem::Truncated,
                detail: format!(
                    "a {what} head covers {} events but only {size} are stored",
                    h.head.tree_size
                ),
            });
        }
        if recorded_size != size {
            return Err(Finding {
                seq: Some(size.min(recorded_size) + 1),
                problem: if recorded_size > size {
                    Problem::Truncated
                } else {
                    Problem::Inserted
                },
                detail: format!("the log records {recorded_size} events but {size} are stored"),
            });
        }
        self.summary.root_hash = hex(&self.range.root());
        Ok(self.summary)
    }
}
