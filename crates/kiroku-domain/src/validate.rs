//! Input limits and the error that names the field at fault.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

pub const TITLE_MAX: usize = 200;
pub const TEXT_MAX: usize = 20_000;
pub const SHORT_MAX: usize = 200;
pub const LIST_MAX: usize = 100;

/// A one-line text: trimmed, non-empty when `required`, at most `max`
/// characters, no control characters.
pub fn line(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<String, ValidationError> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(ValidationError::new(field, "required", "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(ValidationError::new(
            field,
            "too_long",
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "invalid_characters",
            "must not contain control characters or line breaks",
        ));
    }
    Ok(v.to_string())
}

/// Whether [`text`] refuses `c`: a control character other than a line
/// break or a tab.
pub fn refused_in_text(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// A multi-line text: line breaks and tabs allowed, other control characters not.
pub fn text(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<String, ValidationError> {
    let v = value.trim_end();
    if required && v.trim().is_empty() {
        return Err(ValidationError::new(field, "required", "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(ValidationError::new(
            field,
            "too_long",
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(refused_in_text) {
        return Err(ValidationError::new(
            field,
            "invalid_characters",
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

/// A list of one-line items, deduplicated in order.
pub fn lines(
    field: &str,
    values: &[String],
    max_items: usize,
    max_len: usize,
) -> Result<Vec<String>, ValidationError> {
    if values.len() > max_items {
        return Err(ValidationError::new(
            field,
            "too_many",
            format!("must have at most {max_items} items"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = line(field, v, max_len, true)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

pub fn non_negative(field: &str, value: Option<i64>) -> Result<Option<i64>, ValidationError> {
    match value {
        Some(n) if n < 0 => Err(ValidationError::new(
            field,
            "out_of_range",
            "must not be negative",
        )),
        other => Ok(other),
    }
}

/// Text that goes into HTML or XML (mail bodies, pages, TwiML): the five
/// characters markup gives meaning to, as entities both understand.
pub fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// One CSV (RFC 4180) cell: a leading `'` defuses text a spreadsheet would
/// run as a formula, then the cell is quoted if it holds a comma, quote or
/// line break.
pub fn csv_cell(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if defused.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_rules() {
        assert_eq!(line("t", "  a  ", 5, true).unwrap(), "a");
        assert_eq!(line("t", " ", 5, true).unwrap_err().code, "required");
        assert_eq!(line("t", "abcdef", 5, true).unwrap_err().code, "too_long");
        assert_eq!(
            line("t", "a\nb", 5, true).unwrap_err().code,
            "invalid_characters"
        );
        assert_eq!(line("t", "データ消失", 5, true).unwrap(), "データ消失");
    }

    proptest! {
        #[test]
        fn accepted_lines_respect_limits(s in ".{0,300}") {
            if let Ok(v) = line("f", &s, 200, false) {
                prop_assert!(v.chars().count() <= 200);
                prop_assert!(!v.chars().any(char::is_control));
            }
        }

        #[test]
        fn accepted_texts_respect_limits(s in "(?s).{0,300}") {
            if let Ok(v) = text("f", &s, 250, false) {
                prop_assert!(v.chars().count() <= 250);
            }
        }
    }
}
