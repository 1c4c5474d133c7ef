//! Signed tree heads: a tree size and root, the time, and an Ed25519
//! signature over their canonical bytes by a key identified by the first
//! 16 hex digits of the SHA-256 of its public key.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{Hash, hex};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub tree_size: u64,
    /// Hex SHA-256.
    pub root_hash: String,
    pub time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    #[serde(flatten)]
    pub head: TreeHead,
    pub key_id: String,
    /// Hex Ed25519 signature over [`TreeHead::signed_bytes`].
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
    #[error("the signature is malformed")]
    Malformed,
    #[error("the signature does not match the tree head")]
    BadSignature,
    #[error("the head names key {0}, not the key it was checked with")]
    WrongKey(String),
}

impl TreeHead {
    pub fn new(tree_size: u64, root: &Hash, time: Timestamp) -> Self {
        // Stored with microsecond precision: sign what will be read back.
        let time = Timestamp::from_microsecond(time.as_microsecond()).unwrap_or(time);
        TreeHead {
            tree_size,
            root_hash: hex(root),
            time,
        }
    }

    /// RFC 8785 canonical JSON of
    /// `{"root_hash", "time", "tree_size", "type": "kiroku.tree_head.v1"}`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "type": "kiroku.tree_head.v1",
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "time": self.time,
        });
        serde_json_canonicalizer::to_vec(&v).expect("tree heads canonicalise")
    }
}

pub fn key_id(public: &[u8; 32]) -> String {
    crate::hex::encode(&Sha256::digest(public)[..8])
}

/// A tree-signing key.
pub struct TreeKey {
    key: SigningKey,
}

impl TreeKey {
    /// From a 32-byte secret seed (the key file holds it in hex).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        TreeKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        crate::hex::decode_array::<32>(s.trim()).map(Self::from_seed)
    }

    pub fn seed_hex(&self) -> String {
        crate::hex::encode(&self.key.to_bytes())
    }

    pub fn public_hex(&self) -> String {
        crate::hex::encode(&self.key.verifying_key().to_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, head: TreeHead) -> SignedTreeHead {
        let sig = self.key.sign(&head.signed_bytes());
        SignedTreeHead {
            key_id: self.key_id(),
            signature: crate::hex::encode(&sig.to_bytes()),
            head,
        }
    }
}

/// Checks a head's signature with the public key (hex) it names.
pub fn verify_head(sth: &SignedTreeHead, public_hex: &str) -> Result<(), HeadError> {
    let public = crate::hex::decode_array::<32>(public_hex).ok_or(HeadError::BadKey)?;
    if key_id(&public) != sth.key_id {
        return Err(HeadError::WrongKey(sth.key_id.clone()));
    }
    let key = VerifyingKey::from_bytes(&public).map_err(|_| HeadError::BadKey)?;
    let sig = crate::hex::decode_array::<64>(&sth.signature).ok_or(HeadError::Malformed)?;
    key.verify(&sth.head.signed_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| HeadError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1_key_and_round_trip() {
        // RFC 8032 §7.1 TEST 1 secret key and its public key.
        let k =
            TreeKey::from_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap();
        assert_eq!(
            k.public_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let head = TreeHead::new(
            8,
            &[7u8; 32],
            "2026-11-21T00:00:00.123456789Z".parse().unwrap(),
        );
        let sth = k.sign(head);
        verify_head(&sth, &k.public_hex()).unwrap();
        let mut forged = sth.clone();
        forged.head.tree_size = 9;
        assert_eq!(
            verify_head(&forged, &k.public_hex()),
            Err(HeadError::BadSignature)
        );
        let other = TreeKey::from_seed([1; 32]);
        assert!(matches!(
            verify_head(&sth, &other.public_hex()),
            Err(HeadError::WrongKey(_))
        ));
        let text = String::from_utf8(sth.head.signed_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"root_hash":"{}","time":"2026-11-21T00:00:00.123456Z","tree_size":8,"type":"kiroku.tree_head.v1"}}"#,
                "07".repeat(32)
            )
        );
    }
}
