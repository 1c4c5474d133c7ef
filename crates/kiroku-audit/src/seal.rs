//! Sensitive values in audit events, sealed before hashing: each value is
//! encrypted (XChaCha20-Poly1305) under its subject's data key, and data
//! keys are stored wrapped by a key-encryption key. The tree commits to the
//! ciphertext, so verification needs no key, and destroying a subject's
//! data key erases its data without touching the tree.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::{Value, json};

use crate::hex::{decode, encode};

pub const SEALED: &str = "kiroku_sealed";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the key does not open it (wrong key, or the data was altered)")]
    Rejected,
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key))
}

/// Wraps a data key under the key-encryption key: hex(nonce ‖ ciphertext).
pub fn wrap_key(kek: &[u8; 32], dek: &[u8; 32], nonce: [u8; 24]) -> String {
    let ct = cipher(kek)
        .encrypt(XNonce::from_slice(&nonce), dek.as_slice())
        .expect("encryption of 32 bytes");
    encode(&[nonce.as_slice(), &ct].concat())
}

pub fn unwrap_key(kek: &[u8; 32], wrapped: &str) -> Result<[u8; 32], SealError> {
    let bytes = decode(wrapped).ok_or(SealError::Malformed)?;
    if bytes.len() < 24 {
        return Err(SealError::Malformed);
    }
    let (nonce, ct) = bytes.split_at(24);
    let dek = cipher(kek)
        .decrypt(XNonce::from_slice(nonce), ct)
        .map_err(|_| SealError::Rejected)?;
    dek.try_into().map_err(|_| SealError::Malformed)
}

/// `{"kiroku_sealed": "v1", "subject", "key", "nonce", "ciphertext"}`; the
/// subject and key generation are bound in as associated data.
pub fn seal_value(
    dek: &[u8; 32],
    subject: &str,
    generation: i64,
    value: &Value,
    nonce: [u8; 24],
) -> Value {
    let aad = format!("{subject}\n{generation}");
    let plain = serde_json::to_vec(value).expect("JSON values serialise");
    let ct = cipher(dek)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: aad.as_bytes(),
            },
        )
        .expect("encryption");
    json!({ SEALED: "v1", "subject": subject, "key": generation, "nonce": encode(&nonce), "ciphertext": STANDARD.encode(ct) })
}

/// The subject and key generation of a sealed value, if `v` is one.
pub fn sealed_by(v: &Value) -> Option<(&str, i64)> {
    if v.get(SEALED)?.as_str()? != "v1" {
        return None;
    }
    Some((v.get("subject")?.as_str()?, v.get("key")?.as_i64()?))
}

pub fn open_value(dek: &[u8; 32], sealed: &Value) -> Result<Value, SealError> {
    let (subject, generation) = sealed_by(sealed).ok_or(SealError::Malformed)?;
    let nonce = sealed
        .get("nonce")
        .and_then(Value::as_str)
        .and_then(decode)
        .filter(|n| n.len() == 24)
        .ok_or(SealError::Malformed)?;
    let ct = sealed
        .get("ciphertext")
        .and_then(Value::as_str)
        .and_then(|c| STANDARD.decode(c).ok())
        .ok_or(SealError::Malformed)?;
    let aad = format!("{subject}\n{generation}");
    let plain = cipher(dek)
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SealError::Rejected)?;
    serde_json::from_slice(&plain).map_err(|_| SealError::Malformed)
}

/// The value at a dotted path (`personal_data.items`), for replacing.
pub fn at_path<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(v, |v, key| v.get_mut(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_wrap_unwrap() {
        let (kek, dek) = ([1u8; 32], [2u8; 32]);
        let wrapped = wrap_key(&kek, &dek, [3; 24]);
        assert_eq!(unwrap_key(&kek, &wrapped).unwrap(), dek);
        assert_eq!(unwrap_key(&[9; 32], &wrapped), Err(SealError::Rejected));
        let value = json!({"items": ["氏名", "メールアドレス"], "people_affected": 1200});
        let sealed = seal_value(&dek, "incident:1", 1, &value, [4; 24]);
        assert!(!sealed.to_string().contains("氏名"));
        assert_eq!(sealed_by(&sealed), Some(("incident:1", 1)));
        assert_eq!(open_value(&dek, &sealed).unwrap(), value);
        assert_eq!(open_value(&[5; 32], &sealed), Err(SealError::Rejected));
        let mut moved = sealed.clone();
        moved["subject"] = json!("incident:2");
        assert_eq!(
            open_value(&dek, &moved),
            Err(SealError::Rejected),
            "bound to its subject"
        );
        let mut doc = json!({"after": {"personal_data": {"items": []}}});
        assert!(at_path(&mut doc, "after.personal_data").is_some());
        assert!(at_path(&mut doc, "after.missing").is_none());
    }
}
