//! The bytes an audit event is hashed as: its stored JSON document
//! canonicalised by RFC 8785 (JCS), so that anyone can recompute them from
//! the JSON alone, whatever key order or spacing it was stored with.

use std::io::Write;

use kiroku_domain::AuditEvent;

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

/// An audit event's canonical JSON text, written member by member in
/// RFC 8785 order. The same bytes as [`canonical_doc`] (a test holds them
/// equal for any event), at a fraction of the cost: the general
/// canonicaliser buffers and sorts every member of every object, and every
/// append pays for it once per event.
pub fn canonical_event(e: &AuditEvent) -> Result<String, CanonicalError> {
    let mut w = Writer(Vec::with_capacity(512));
    w.member("{\"action\":", &e.action)?;
    w.member(",\"actor\":{\"id\":", &e.actor.id)?;
    w.member(",\"kind\":", &e.actor.kind)?;
    w.member(",\"name\":", &e.actor.name)?;
    w.member(",\"role\":", &e.actor.role)?;
    w.raw("},\"after\":");
    w.optional_value(e.after.as_ref())?;
    w.raw(",\"before\":");
    w.optional_value(e.before.as_ref())?;
    w.member(",\"error_code\":", &e.error_code)?;
    w.member(",\"id\":", &e.id)?;
    w.member(",\"operation\":", &e.operation)?;
    w.member(",\"outcome\":", &e.outcome)?;
    w.raw(",\"seq\":");
    w.integer(e.seq)?;
    w.member(",\"source\":{\"channel\":", &e.source.channel)?;
    w.member(",\"ip\":", &e.source.ip)?;
    w.member(",\"user_agent\":", &e.source.user_agent)?;
    w.member("},\"target\":{\"id\":", &e.target.id)?;
    w.member(",\"kind\":", &e.target.kind)?;
    w.member("},\"time\":", &e.time)?;
    w.raw("}");
    String::from_utf8(w.0).map_err(|e| CanonicalError(e.to_string()))
}

/// Integers JSON numbers carry exactly (RFC 8785 numbers are doubles).
const EXACT_INTEGER: u64 = 1 << 53;

struct Writer(Vec<u8>);

impl Writer {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// A string, null or unit variant: serde_json escapes strings exactly as
    /// RFC 8785 does (the two short escapes and lower-case `\u00xx`).
    fn scalar<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        serde_json::to_writer(&mut self.0, v).map_err(|e| CanonicalError(e.to_string()))
    }

    /// `prefix` (punctuation and the member's key), then its scalar value.
    fn member<T: serde::Serialize + ?Sized>(
        &mut self,
        prefix: &str,
        v: &T,
    ) -> Result<(), CanonicalError> {
        self.raw(prefix);
        self.scalar(v)
    }

    fn general<T: serde::Serialize>(&mut self, v: &T) -> Result<(), CanonicalError> {
        let text =
            serde_json_canonicalizer::to_string(v).map_err(|e| CanonicalError(e.to_string()))?;
        self.raw(&text);
        Ok(())
    }

    fn integer(&mut self, n: i64) -> Result<(), CanonicalError> {
        if n.unsigned_abs() <= EXACT_INTEGER {
            write!(self.0, "{n}").map_err(|e| CanonicalError(e.to_string()))
        } else {
            self.general(&n)
        }
    }

    /// `items` between `open` and `close`, comma-separated.
    fn list<T>(
        &mut self,
        open: &str,
        items: &[T],
        close: &str,
        mut each: impl FnMut(&mut Self, &T) -> Result<(), CanonicalError>,
    ) -> Result<(), CanonicalError> {
        self.raw(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            each(self, item)?;
        }
        self.raw(close);
        Ok(())
    }

    fn optional_value(&mut self, v: Option<&serde_json::Value>) -> Result<(), CanonicalError> {
        match v {
            None => {
                self.raw("null");
                Ok(())
            }
            Some(v) => self.value(v),
        }
    }

    fn value(&mut self, v: &serde_json::Value) -> Result<(), CanonicalError> {
        use serde_json::Value;
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) if i.unsigned_abs() <= EXACT_INTEGER => self.integer(i),
                // Fractions and large integers take ECMAScript's number form.
                _ => self.general(n),
            },
            Value::Array(items) => self.list("[", items, "]", |w, item| w.value(item)),
            Value::Object(members) => {
                // Sorted by UTF-16 code units, which differs from byte order
                // only for keys with characters above U+E000.
                let mut keys: Vec<&String> = members.keys().collect();
                if keys.iter().any(|k| k.chars().any(|c| c >= '\u{e000}')) {
                    keys.sort_unstable_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                } else {
                    keys.sort_unstable();
                }
                self.list("{", &keys, "}", |w, k| {
                    w.scalar(*k)?;
                    w.raw(":");
                    w.value(&members[*k])
                })
            }
            other => self.scalar(other),
        }
    }
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

/// The `seq` member of a stored document's top-level object, or None when
/// it has none (or not a plain integer). Where `seq` appears twice the last
/// one counts, as in ECMAScript's `JSON.parse`.
///
/// Hand-written rather than a serde parse because verification reads one
/// per event and serde's pass over the whole document costs as much as its
/// SHA-256: this walks backwards from the end, where `seq` sits in a
/// canonical event (only `source`, `target` and `time` sort after it). It
/// never trusts the text: any shape it does not expect gives None, and the
/// caller falls back to a full parse. What precedes `seq` is not read; the
/// leaf hash vouches for that.
pub fn doc_seq(doc: &str) -> Option<u64> {
    let b = doc.as_bytes();
    let mut i = b.len();
    while i > 0 && b[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    if i == 0 || b[i - 1] != b'}' {
        return None;
    }
    i -= 1;
    // Depth below the top-level object, and the last two tokens seen at
    // depth 1 (backwards): an integer, then a colon, then the key.
    let mut depth = 1u32;
    let mut number: Option<(usize, usize)> = None;
    let mut colon_after_number = false;
    loop {
        while i > 0 && b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        if i == 0 {
            return None;
        }
        let c = b[i - 1];
        match c {
            b'"' => {
                let end = i - 1;
                // The opening quote: the nearest one before not escaped by
                // an odd run of backslashes.
                let mut j = end;
                let start = loop {
                    let q = b[..j].iter().rposition(|&x| x == b'"')?;
                    let slashes = b[..q].iter().rev().take_while(|&&x| x == b'\\').count();
                    if slashes % 2 == 0 {
                        break q;
                    }
                    j = q;
                };
                i = start;
                if depth == 1 && colon_after_number && &b[start + 1..end] == b"seq" {
                    let (from, to) = number?;
                    return doc[from..to].parse().ok();
                }
                number = None;
                colon_after_number = false;
            }
            b'}' | b']' => {
                depth += 1;
                i -= 1;
                number = None;
                colon_after_number = false;
            }
            b'{' | b'[' => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
                i -= 1;
                number = None;
                colon_after_number = false;
            }
            b':' => {
                colon_after_number = number.is_some();
                i -= 1;
            }
            b',' => {
                number = None;
                colon_after_number = false;
                i -= 1;
            }
            _ => {
                let end = i;
                while i > 0
                    && !matches!(b[i - 1], b'"' | b'{' | b'}' | b'[' | b']' | b':' | b',')
                    && !b[i - 1].is_ascii_whitespace()
                {
                    i -= 1;
                }
                let scalar = &b[i..end];
                number = (depth == 1
                    && !scalar.is_empty()
                    && scalar.len() <= 20
                    && scalar.iter().all(u8::is_ascii_digit))
                .then_some((i, end));
                colon_after_number = false;
            }
        }
    }
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

    #[test]
    fn seq_is_read_from_the_top_level_only() {
        assert_eq!(
            doc_seq(r#"{"a":{"seq":1},"seq":42,"z":{"seq":3}}"#),
            Some(42)
        );
        assert_eq!(doc_seq(r#"{"seq":7}"#), Some(7));
        assert_eq!(doc_seq(" { \"seq\" : 7 } \n"), Some(7));
        assert_eq!(
            doc_seq(r#"{"seq":1,"seq":2}"#),
            Some(2),
            "the last wins, as in JSON.parse"
        );
        assert_eq!(
            doc_seq(r#"{"x":"\",\"seq\":5,\"","y":1}"#),
            None,
            "inside a string"
        );
        assert_eq!(
            doc_seq(r#"{"x":"a\\","seq":5}"#),
            Some(5),
            "an escaped backslash ends a string"
        );
        assert_eq!(doc_seq(r#"{"after":{"seq":5}}"#), None);
        assert_eq!(doc_seq(r#"{"seq":"5"}"#), None);
        assert_eq!(doc_seq(r#"{"seq":-5}"#), None);
        assert_eq!(doc_seq(r#"{"seq":5.5}"#), None);
        assert_eq!(doc_seq(r#"["seq",5]"#), None);
        // What precedes `seq` is not read: the leaf hash vouches for it.
        assert_eq!(doc_seq(r#"x"seq":5}"#), Some(5));
        assert_eq!(doc_seq(""), None);
        assert_eq!(doc_seq("}"), None);
        assert_eq!(doc_seq(r#"{"seq":99999999999999999999999}"#), None);
    }

    proptest::proptest! {
        /// On any JSON object, the scan agrees with a full parse wherever it
        /// answers, and answers for every canonical event.
        #[test]
        fn seq_scan_agrees_with_a_parse(
            // RFC 8785 numbers are IEEE doubles: exact up to 2^53.
            seq in 0u64..(1 << 53),
            text in ".{0,40}",
            key in "[a-z]{1,6}",
            nested in proptest::prelude::any::<bool>(),
        ) {
            let at: jiff::Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
            let mut e = AuditEvent::success(
                at,
                &Actor::system(),
                &Source::system(),
                Operation::Execute,
                &text,
                Target::new("system", Some(text.clone())),
            );
            e.seq = seq as i64;
            if nested {
                e = e.with_change(None, Some(serde_json::json!({ key.clone(): { "seq": 1, "s": text.clone() } })));
            }
            let doc = canonical_doc(&e).unwrap();
            proptest::prop_assert_eq!(doc_seq(&doc), Some(e.seq as u64));
            let mut other = serde_json::Map::new();
            other.insert(key, serde_json::Value::String(text));
            other.insert("seq".into(), serde_json::json!(seq));
            let shuffled = serde_json::to_string(&other).unwrap();
            proptest::prop_assert_eq!(doc_seq(&shuffled), Some(seq));
        }

        #[test]
        fn seq_scan_never_panics(doc in "\\PC{0,80}") {
            let _ = doc_seq(&doc);
        }
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\\u{7f}\u{e000}-\u{e0ff}\u{10000}-\u{10100}]{0,6}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "[a-z\u{e000}-\u{e0ff}\u{10000}-\u{10100}\\x00-\\x1f]{0,4}",
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The event writer gives the general canonicaliser's bytes for any
        /// event, so stored documents stay RFC 8785 whichever wrote them.
        #[test]
        fn event_writer_matches_the_canonicaliser(
            seq in proptest::prelude::any::<i64>(),
            text in "\\PC{0,20}",
            control in "[\\x00-\\x1f\"\\\\]{0,4}",
            present in proptest::prelude::any::<[bool; 8]>(),
            before in arb_value(),
            after in arb_value(),
        ) {
            let at: jiff::Timestamp = "2026-11-21T00:00:00.123456789Z".parse().unwrap();
            let some = |on: bool, s: &str| on.then(|| s.to_string());
            let actor = Actor {
                kind: kiroku_domain::ActorKind::User,
                id: some(present[0], &control),
                name: some(present[1], &text),
                role: some(present[2], "admin"),
            };
            let source = Source {
                ip: some(present[3], "192.0.2.1"),
                user_agent: some(present[4], &format!("{text}{control}")),
                channel: text.clone(),
            };
            let mut e = AuditEvent::success(at, &actor, &source, Operation::Update, &text, Target::new(&control, some(present[5], &text)));
            e.seq = seq;
            e.error_code = some(present[6], &control);
            if present[7] {
                e = e.with_change(Some(before), Some(after));
            }
            proptest::prop_assert_eq!(canonical_event(&e).unwrap(), canonical_doc(&e).unwrap());
        }
    }
}
