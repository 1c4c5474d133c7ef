//! Portable encodings: times as microseconds, objects as JSON documents.

use jiff::Timestamp;
use kiroku_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub fn from_micros(us: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(us).map_err(|e| StoreError::Corrupt(format!("time {us}: {e}")))
}

pub fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(micros)
}

pub fn to_doc<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

pub fn from_doc<T: DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("document: {e}")))
}

/// The text the incident filter searches, lower-cased here rather than in
/// SQL so that both backends fold case the same way.
pub fn search_text(parts: &[&str]) -> String {
    parts.join("\n").to_lowercase()
}

/// A `LIKE` pattern matching `needle` anywhere, with `\` as escape.
pub fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
