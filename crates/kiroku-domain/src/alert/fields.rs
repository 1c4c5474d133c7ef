//! Field rules the alert formats share. Every field is first read as a
//! lenient `serde_json::Value`, so that a field of the wrong type or size
//! becomes one problem naming it while the rest of the request is still
//! checked.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    AlertLink, EVENTS_PER_REQUEST_MAX, LABEL_NAME_MAX, LABEL_VALUE_MAX, LABELS_MAX, Problems,
};
use crate::ValidationError;

/// The request body: a JSON object read into `T`, a struct of `Value`
/// fields or a map, so that no single field's type can fail it.
pub(super) fn body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problems> {
    let invalid = |message: String| vec![ValidationError::new("body", "invalid_json", message)];
    // Some senders (Windows tools writing "UTF-8 with BOM") lead with a
    // byte order mark, which RFC 8259 lets a parser ignore.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid(format!(
            "must be a JSON object, not {}",
            kind(&value)
        )));
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// A nested JSON object read into `T` as [`body`] reads the whole request.
pub(super) fn object<T: DeserializeOwned>(
    field: &str,
    value: Value,
    required: bool,
    problems: &mut Problems,
) -> Option<T> {
    match value {
        Value::Null => {
            if required {
                problems.push(missing(field));
            }
            None
        }
        Value::Object(_) => serde_json::from_value(value)
            .map_err(|e| problems.push(ValidationError::new(field, "invalid_type", e.to_string())))
            .ok(),
        other => {
            problems.push(wrong_type(field, "a JSON object", &other));
            None
        }
    }
}

/// The events of a batch: an array of at most [`EVENTS_PER_REQUEST_MAX`]
/// items. Too many is one problem and no items, so that a huge batch is
/// not checked item by item.
pub(super) fn batch(field: &str, value: Value, problems: &mut Problems) -> Vec<Value> {
    match value {
        Value::Array(items) if items.len() > EVENTS_PER_REQUEST_MAX => {
            problems.push(ValidationError::new(
                field,
                "too_many",
                format!("must have at most {EVENTS_PER_REQUEST_MAX} items"),
            ));
            Vec::new()
        }
        Value::Array(items) => items,
        Value::Null => {
            problems.push(missing(field));
            Vec::new()
        }
        other => {
            problems.push(wrong_type(field, "an array", &other));
            Vec::new()
        }
    }
}

/// `key` of `object`, null when absent.
pub(super) fn get<'a>(object: &'a Map<String, Value>, key: &str) -> &'a Value {
    static ABSENT: Value = Value::Null;
    object.get(key).unwrap_or(&ABSENT)
}

/// The dotted path of `name` inside `parent` (the top level when empty).
/// A key that is the empty string is written `""`, so that an error about
/// it still names a field.
pub(super) fn path(parent: &str, name: &str) -> String {
    let name = if name.is_empty() { "\"\"" } else { name };
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// A string kept exactly as sent (keys, label values), at most `max`
/// characters; empty reads as absent.
pub(super) fn verbatim(
    field: &str,
    value: &Value,
    max: usize,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    checked(field, value, str::to_string, max, required, problems)
}

/// A key the alert is found by again (a dedup key, a fingerprint, a
/// routing key): [`verbatim`], but with no NUL, which PostgreSQL cannot
/// keep in text, so that a key is taken or refused alike on every store.
pub(super) fn key(
    field: &str,
    value: &Value,
    max: usize,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    let key = verbatim(field, value, max, required, problems)?;
    if key.contains('\0') {
        problems.push(ValidationError::new(
            field,
            "invalid_characters",
            "must not contain NUL (\\u0000)",
        ));
        return None;
    }
    Some(key)
}

/// A one-line text (see [`one_line`]), at most `max` characters once
/// cleaned; empty reads as absent.
pub(super) fn line(
    field: &str,
    value: &Value,
    max: usize,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    checked(field, value, one_line, max, required, problems)
}

fn checked(
    field: &str,
    value: &Value,
    clean: fn(&str) -> String,
    max: usize,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => clean(s),
        other => {
            problems.push(wrong_type(field, "a string", other));
            return None;
        }
    };
    if text.is_empty() {
        if required {
            problems.push(missing(field));
        }
        None
    } else if text.chars().count() > max {
        problems.push(too_long(field, max));
        None
    } else {
        Some(text)
    }
}

/// Text on one line: each run of control characters and line breaks,
/// with the blanks around it, becomes a single space; the ends are trimmed.
pub(super) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`one_line`], cut to `max` characters: for text the sender does not
/// control, where refusing the alert would lose it.
pub(super) fn clipped_line(text: &str, max: usize) -> String {
    cut(&one_line(text), max).trim_end().to_string()
}

/// A map of label names to values: at most [`LABELS_MAX`] labels, names
/// and values within their lengths. Any other content (odd Unicode, NUL
/// characters) is kept as sent: only lengths matter.
pub(super) fn labels(
    field: &str,
    value: &Value,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    label_map(field, value, Beyond::Refuse, problems).0
}

/// [`labels`] from a sender that cannot mend what it sends (Alertmanager,
/// Grafana), which would drop a whole group refused for one alert's
/// labels: beyond the limits they are cut instead. Of more than
/// [`LABELS_MAX`] labels, those named in `kept_first` are kept, then the
/// others in the order of their names; longer names and values are
/// shortened. Returns whether anything was cut. Values of the wrong type
/// are still refused: no sender of the format sends them.
pub(super) fn clipped_labels(
    field: &str,
    value: &Value,
    kept_first: &[&str],
    problems: &mut Problems,
) -> (BTreeMap<String, String>, bool) {
    label_map(field, value, Beyond::Clip(kept_first), problems)
}

/// What becomes of labels beyond the limits.
#[derive(Clone, Copy, PartialEq)]
enum Beyond<'a> {
    Refuse,
    /// Cut, keeping the labels of these names first.
    Clip(&'a [&'a str]),
}

fn label_map(
    field: &str,
    value: &Value,
    beyond: Beyond,
    problems: &mut Problems,
) -> (BTreeMap<String, String>, bool) {
    let mut labels = BTreeMap::new();
    let object = match value {
        Value::Null => return (labels, false),
        Value::Object(object) => object,
        other => {
            problems.push(wrong_type(field, "an object of strings", other));
            return (labels, false);
        }
    };
    let mut clipped = object.len() > LABELS_MAX;
    let mut names: Vec<&String> = object.keys().collect();
    match beyond {
        Beyond::Refuse if clipped => {
            problems.push(ValidationError::new(
                field,
                "too_many",
                format!("must have at most {LABELS_MAX} labels"),
            ));
            return (labels, false);
        }
        Beyond::Clip(kept_first) if clipped => {
            names.sort_by_key(|name| (!kept_first.contains(&name.as_str()), *name));
            names.truncate(LABELS_MAX);
        }
        _ => {}
    }
    for (name, value) in names.into_iter().map(|name| (name, &object[name])) {
        let value = match value {
            Value::String(v) => v,
            other => {
                problems.push(ValidationError::new(
                    field,
                    "invalid_type",
                    format!("label {name:?} must be a string, not {}", kind(other)),
                ));
                continue;
            }
        };
        let long_name = name.chars().count() > LABEL_NAME_MAX;
        let long_value = value.chars().count() > LABEL_VALUE_MAX;
        if beyond == Beyond::Refuse && (long_name || long_value) {
            let message = if long_name {
                format!("label names must be at most {LABEL_NAME_MAX} characters")
            } else {
                format!("label {name:?} must be at most {LABEL_VALUE_MAX} characters")
            };
            problems.push(ValidationError::new(field, "too_long", message));
            continue;
        }
        clipped |= long_name || long_value;
        labels.insert(
            cut(name, LABEL_NAME_MAX).to_string(),
            cut(value, LABEL_VALUE_MAX).to_string(),
        );
    }
    (labels, clipped)
}

/// The first `max` characters of `text`.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A time as RFC 3339 writes it (`2026-11-21T09:00:00+09:00`); ISO 8601's
/// offsets without a colon (`+0000`, as in PagerDuty's examples) are read too.
pub(super) fn time(field: &str, value: &Value, problems: &mut Problems) -> Option<Timestamp> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) if has_four_digit_year(s) => s.as_str(),
        _ => "",
    };
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t);
    }
    let message = if past_the_latest_time(text) {
        format!(
            "must be no later than {}, the latest time Kiroku stores",
            Timestamp::from_second(Timestamp::MAX.as_second()).unwrap_or(Timestamp::MAX)
        )
    } else {
        "must be an RFC 3339 time with an offset, such as 2026-11-21T09:00:00+09:00".to_string()
    };
    problems.push(ValidationError::new(field, "invalid_time", message));
    None
}

/// A time written as RFC 3339 asks, with an offset, that still does not
/// read as a timestamp: it lies past the last one there is (early in
/// 9999-12-30), since a four-digit year cannot lie before the first.
fn past_the_latest_time(text: &str) -> bool {
    jiff::fmt::temporal::Pieces::parse(text)
        .is_ok_and(|p| p.offset().is_some() && p.time().is_some())
}

/// RFC 3339's year is four digits: the signed years of ISO 8601's expanded
/// form, which the timestamp parser also reads, are refused.
fn has_four_digit_year(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// `[{"href": …, "text": …}]`: each `href` an http or https URL, each
/// `text` optional.
pub(super) fn links(field: &str, value: &Value, problems: &mut Problems) -> Vec<AlertLink> {
    let items = match value {
        Value::Null => return Vec::new(),
        Value::Array(items) => items,
        other => {
            problems.push(wrong_type(field, "an array", other));
            return Vec::new();
        }
    };
    let mut links = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(item) = item else {
            problems.push(wrong_type(&at, "a JSON object", item));
            continue;
        };
        let href_field = path(&at, "href");
        let href = verbatim(&href_field, get(item, "href"), usize::MAX, true, problems);
        let text = line(
            &path(&at, "text"),
            get(item, "text"),
            usize::MAX,
            false,
            problems,
        );
        if let Some(href) = href {
            match web_link(&href, text.as_deref().unwrap_or_default()) {
                Some(link) => links.push(link),
                None => problems.push(ValidationError::new(
                    &href_field,
                    "invalid_value",
                    "must be an http or https URL",
                )),
            }
        }
    }
    links
}

/// A link, unless `href` is not an http or https URL: a `javascript:` or
/// `data:` URL must never reach a page as a link.
pub(super) fn web_link(href: &str, text: &str) -> Option<AlertLink> {
    let href = href.trim();
    let scheme_end = href.find("://")?;
    let scheme = &href[..scheme_end];
    let is_web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let has_host = href.len() > scheme_end + 3;
    let is_one_line = !href.chars().any(char::is_control);
    (is_web && has_host && is_one_line).then(|| AlertLink {
        href: href.to_string(),
        text: Some(one_line(text)).filter(|t| !t.is_empty()),
    })
}

fn missing(field: &str) -> ValidationError {
    ValidationError::new(field, "required", "must not be empty")
}

fn too_long(field: &str, max: usize) -> ValidationError {
    ValidationError::new(
        field,
        "too_long",
        format!("must be at most {max} characters"),
    )
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> ValidationError {
    ValidationError::new(
        field,
        "invalid_type",
        format!("must be {expected}, not {}", kind(found)),
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Strategies the parsers' property tests share.
#[cfg(test)]
pub(super) mod arbitrary {
    use proptest::prelude::*;
    use serde_json::Value;

    /// Strings a parser looks for, so that generated bodies get past the
    /// first checks and reach the later ones.
    const WORDS: &[&str] = &[
        "trigger",
        "acknowledge",
        "resolve",
        "firing",
        "resolved",
        "1",
        "4",
        "critical",
        "warning",
        "page",
        "2015-07-17T08:42:58.315+0000",
        "0001-01-01T00:00:00Z",
        "https://example.com/",
        "javascript:alert(1)",
    ];

    /// Any JSON, its object keys often taken from `keys` (the format's own
    /// field names).
    pub(in crate::alert) fn json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            proptest::sample::select(WORDS).prop_map(Value::from),
            "(?s).{0,24}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            proptest::sample::select(keys).prop_map(String::from),
            ".{0,8}"
        ];
        leaf.prop_recursive(5, 96, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// One-line text of at most 62 characters that the parsers keep
    /// unchanged: no control characters, no blanks at either end.
    pub(in crate::alert) const CLEAN_LINE: &str =
        "[\\p{L}\\p{N}\\p{P}\\p{S}]([\\p{L}\\p{N}\\p{P}\\p{S} ]{0,60}[\\p{L}\\p{N}\\p{P}\\p{S}])?";
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn one_line_joins_lines_and_drops_control_characters() {
        assert_eq!(
            one_line("  disk\r\n  full \t on db-1 "),
            "disk full on db-1"
        );
        assert_eq!(one_line("a\u{2028}b\u{0}c\u{7f}d"), "a b c d");
        assert_eq!(one_line("two  spaces stay"), "two  spaces stay");
        assert_eq!(one_line("\n\r\t"), "");
    }

    #[test]
    fn clipped_line_counts_characters_not_bytes() {
        assert_eq!(clipped_line("データ消失", 3), "データ");
        assert_eq!(clipped_line("ab cd", 3), "ab");
        assert_eq!(clipped_line("🔥🔥", 5), "🔥🔥");
    }

    #[test]
    fn line_rules() {
        let mut problems = Problems::new();
        assert_eq!(
            line("f", &json!(" a\nb "), 3, true, &mut problems),
            Some("a b".into())
        );
        assert_eq!(
            line("f", &json!("データ消失"), 5, true, &mut problems),
            Some("データ消失".into())
        );
        assert!(problems.is_empty());

        assert_eq!(line("f", &json!("abcd"), 3, true, &mut problems), None);
        assert_eq!(line("f", &json!(" \n "), 3, true, &mut problems), None);
        assert_eq!(line("f", &Value::Null, 3, true, &mut problems), None);
        assert_eq!(line("f", &json!(7), 3, true, &mut problems), None);
        assert_eq!(line("f", &Value::Null, 3, false, &mut problems), None);
        let codes: Vec<_> = problems.iter().map(|p| p.code).collect();
        assert_eq!(codes, ["too_long", "required", "required", "invalid_type"]);
    }

    #[test]
    fn times_are_rfc_3339_with_an_offset() {
        let mut problems = Problems::new();
        let read = |s: &str, problems: &mut Problems| time("t", &json!(s), problems);
        assert_eq!(
            read("2015-07-17T08:42:58.315+0000", &mut problems),
            Some("2015-07-17T08:42:58.315Z".parse().unwrap())
        );
        assert_eq!(
            read("2026-11-21T09:00:00+09:00", &mut problems),
            Some("2026-11-21T00:00:00Z".parse().unwrap())
        );
        assert!(problems.is_empty());
        for bad in [
            "yesterday",
            "2026-11-21T09:00:00",
            "2026-13-01T00:00:00Z",
            "-000001-01-01T00:00:00Z",
            "+002026-11-21T00:00:00Z",
            "",
        ] {
            assert_eq!(read(bad, &mut problems), None, "{bad}");
        }
        assert_eq!(time("t", &json!(1_700_000_000), &mut problems), None);
        assert!(
            problems
                .iter()
                .all(|p| p.code == "invalid_time" && p.field == "t")
        );
        assert_eq!(problems.len(), 7);
        assert!(problems.iter().all(|p| p.message.contains("RFC 3339")));
        // Well formed, but past the last time there is: said so.
        let mut problems = Problems::new();
        assert!(read("9999-12-30T21:59:59Z", &mut problems).is_some());
        assert_eq!(read("9999-12-31T23:59:59Z", &mut problems), None);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, "invalid_time");
        assert!(
            problems[0]
                .message
                .contains("no later than 9999-12-30T22:00:00Z"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn labels_keep_odd_unicode_and_check_only_lengths() {
        let mut problems = Problems::new();
        let odd = json!({"rtl\u{200f}": "\u{202e}evil", "emoji": "🔥🚒", "nul": "a\u{0}b", "": ""});
        let kept = labels("labels", &odd, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(kept["rtl\u{200f}"], "\u{202e}evil");
        assert_eq!(kept["nul"], "a\u{0}b");
        assert_eq!(kept["emoji"], "🔥🚒");
        assert_eq!(kept[""], "");

        // Limits count characters: 1024 four-byte characters fit.
        let full = json!({"n".repeat(LABEL_NAME_MAX): "🔥".repeat(LABEL_VALUE_MAX)});
        assert_eq!(labels("labels", &full, &mut problems).len(), 1);
        assert!(problems.is_empty());
    }

    #[test]
    fn labels_beyond_their_limits_are_problems_on_the_map() {
        let mut problems = Problems::new();
        let many: Map<String, Value> = (0..=LABELS_MAX)
            .map(|i| (i.to_string(), json!("v")))
            .collect();
        labels("l", &Value::Object(many), &mut problems);
        let long_name = json!({"n".repeat(LABEL_NAME_MAX + 1): "v"});
        labels("l", &long_name, &mut problems);
        let long_value = json!({"n": "v".repeat(LABEL_VALUE_MAX + 1)});
        labels("l", &long_value, &mut problems);
        labels("l", &json!({"n": 1}), &mut problems);
        labels("l", &json!(["n"]), &mut problems);
        let codes: Vec<_> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.code))
            .collect();
        assert_eq!(
            codes,
            [
                ("l", "too_many"),
                ("l", "too_long"),
                ("l", "too_long"),
                ("l", "invalid_type"),
                ("l", "invalid_type"),
            ]
        );
    }

    #[test]
    fn links_must_be_web_urls() {
        let mut problems = Problems::new();
        let value = json!([
            {"href": "https://example.com/a", "text": "A\nlink"},
            {"href": "HTTP://example.com/b"},
            {"href": "javascript:alert(1)"},
            {"text": "no href"},
            "https://example.com/c",
            {"href": "https://"},
            {"href": " https://example.com/d\n"},
            {"href": "https://example.com/\u{0}x"},
        ]);
        let links = links("links", &value, &mut problems);
        assert_eq!(
            links,
            [
                AlertLink {
                    href: "https://example.com/a".into(),
                    text: Some("A link".into())
                },
                AlertLink {
                    href: "HTTP://example.com/b".into(),
                    text: None
                },
                AlertLink {
                    href: "https://example.com/d".into(),
                    text: None
                },
            ]
        );
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.code))
            .collect();
        assert_eq!(
            found,
            [
                ("links[2].href", "invalid_value"),
                ("links[3].href", "required"),
                ("links[4]", "invalid_type"),
                ("links[5].href", "invalid_value"),
                ("links[7].href", "invalid_value"),
            ]
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        for (body, message) in [
            (&b"not json"[..], "is not valid JSON"),
            (b"{\"a\": \"\xff\"}", "is not valid JSON"),
            (b"[]", "must be a JSON object, not an array"),
            (b"\"text\"", "must be a JSON object, not a string"),
        ] {
            let problems = body_map(body).unwrap_err();
            assert_eq!(problems.len(), 1);
            assert_eq!(
                (problems[0].field.as_str(), problems[0].code),
                ("body", "invalid_json")
            );
            assert!(
                problems[0].message.starts_with(message),
                "{}",
                problems[0].message
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        let problems = body_map(deep.as_bytes()).unwrap_err();
        assert_eq!(problems[0].code, "invalid_json");
        let deep_object = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert_eq!(
            body_map(deep_object.as_bytes()).unwrap_err()[0].code,
            "invalid_json"
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored_and_only_there() {
        let read = body_map(b"\xEF\xBB\xBF{\"a\": 1}").unwrap();
        assert_eq!(read["a"], 1);
        assert_eq!(
            body_map(b"{\"a\": 1}\xEF\xBB\xBF").unwrap_err()[0].code,
            "invalid_json"
        );
        assert_eq!(
            body_map(b"\xEF\xBB\xBF\xEF\xBB\xBF{}").unwrap_err()[0].code,
            "invalid_json"
        );
    }

    fn body_map(bytes: &[u8]) -> Result<Map<String, Value>, Problems> {
        body(bytes)
    }

    proptest! {
        #[test]
        fn accepted_lines_are_one_line_and_within_the_limit(s in "(?s).{0,80}", max in 0usize..40) {
            let mut problems = Problems::new();
            if let Some(v) = line("f", &json!(s), max, false, &mut problems) {
                prop_assert!(v.chars().count() <= max);
                prop_assert!(!v.chars().any(char::is_control));
                prop_assert_eq!(v.trim(), v.as_str());
            }
            let clipped = clipped_line(&s, max);
            prop_assert!(clipped.chars().count() <= max);
            prop_assert!(!clipped.chars().any(char::is_control));
        }

        #[test]
        fn clean_lines_are_kept_unchanged(s in arbitrary::CLEAN_LINE) {
            prop_assert_eq!(one_line(&s), s);
        }
    }
}
