//! Tamper evidence for the audit log, as plain functions.
//!
//! Each audit event is a leaf of an RFC 6962 Merkle tree over its RFC 8785
//! canonical JSON bytes. Storage keeps the hashes of complete subtrees
//! ([`NodeId`]); from them this crate builds roots, inclusion proofs and
//! consistency proofs, and checks them as RFC 9162 describes. Tree heads
//! are signed with Ed25519.

pub mod canonical;
pub mod head;
pub mod hex;
pub mod merkle;
pub mod seal;
pub mod verify;

pub use canonical::{
    CanonicalError, canonical_bytes, canonical_doc, canonical_event, doc_leaf, doc_matches_leaf,
};
pub use head::{HeadError, SignedTreeHead, TreeHead, TreeKey, verify_head};
pub use merkle::{CompactRange, Hash, NodeId, ProofError};
