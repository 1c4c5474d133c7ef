//! The bytes an audit event is hashed as: its stored JSON document
//! canonicalised by RFC 8785 (JCS), so that anyone can recompute them from
//! the JSON alone, whatever key order or spacing it was stored with.

use crate::merkle::{Hash, leaf_hash};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonicalisable JSON: {0}")]
pub struct CanonicalError(pub String);

/// RFC 8785 canonical bytes of a JSON text.
pub fn canonical_bytes(doc: &str) -> Result<Vec<u8>, CanonicalError> {
    let v: serde_json::Value =
        serde_json::from_str(doc).map_err(|e| CanonicalError(e.to_string()))?;
    serde_json_canonicalizer::to_vec(&v).map_err(|e| CanonicalError(e.to_string()))
}

/// The leaf hash of a stored document: SHA-256(0x00 ‖ canonical bytes).
pub fn doc_leaf(doc: &str) -> Result<Hash, CanonicalError> {
    Ok(leaf_hash(&canonical_bytes(doc)?))
}

/// A value's canonical JSON text: what Kiroku stores, so that its bytes
/// are the leaf's bytes.
pub fn canonical_doc<T: serde::Serialize>(value: &T) -> Result<String, CanonicalError> {
    serde_json_canonicalizer::to_string(value).map_err(|e| CanonicalError(e.to_string()))
}

/// Whether `doc` hashes to `leaf`, hashing the stored bytes first (they are
/// canonical when Kiroku wrote them) and canonicalising only when that
/// fails. Sound either way: a leaf is a SHA-256 preimage commitment.
pub fn doc_matches_leaf(doc: &str, leaf: &Hash) -> Result<bool, CanonicalError> {
    if leaf_hash(doc.as_bytes()) == *leaf {
        return Ok(true);
    }
    Ok(doc_leaf(doc)? == *leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiroku_domain::{Actor, AuditEvent, Operation, Source, Target};

    #[test]
    fn keys_are_sorted_and_whitespace_is_gone() {
        let at: jiff::Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
        let mut e = AuditEvent::success(
            at,
            &Actor::system(),
            &Source::system(),
            Operation::Execute,
            "sys_startup",
            Target::new("system", None),
        );
        e.id = "01900000-0000-7000-8000-000000000000".parse().unwrap();
        e.seq = 7;
        let doc = serde_json::to_string_pretty(&e).unwrap();
        let text = String::from_utf8(canonical_bytes(&doc).unwrap()).unwrap();
        assert!(text.starts_with(r#"{"action":"sys_startup","actor":{"id":null,"kind":"system","name":"kiroku","role":null},"after":null,"before":null,"error_code":null,"id":"01900000-0000-7000-8000-000000000000","operation":"execute","outcome":"success","seq":7,"#), "{text}");
        assert!(!text.contains(": ") && !text.contains(", "));
        // Spacing and key order do not change the leaf.
        assert_eq!(
            doc_leaf(&doc).unwrap(),
            doc_leaf(&serde_json::to_string(&e).unwrap()).unwrap()
        );
        assert!(doc_leaf("{not json").is_err());
        let stored = canonical_doc(&e).unwrap();
        assert_eq!(stored, text);
        let leaf = doc_leaf(&doc).unwrap();
        assert!(
            doc_matches_leaf(&stored, &leaf).unwrap(),
            "canonical bytes, fast path"
        );
        assert!(
            doc_matches_leaf(&doc, &leaf).unwrap(),
            "other spacing, slow path"
        );
        assert!(!doc_matches_leaf(&stored.replace("sys_startup", "sys_shutdown"), &leaf).unwrap());
    }

    #[test]
    fn rfc8785_number_and_string_forms() {
        let text = String::from_utf8(
            canonical_bytes(r#"{"b":1E2,"a":"\u00e9\n","c":[1.0,-0,1e-7]}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(text, "{\"a\":\"é\\n\",\"b\":100,\"c\":[1,0,1e-7]}");
    }
}
