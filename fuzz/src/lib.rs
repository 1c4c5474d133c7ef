//! What the fuzz targets check beyond "no panic": each parser's documented
//! promises about what it accepts and how it refuses.

use kiroku_domain::ValidationError;
use kiroku_domain::alert::{
    AlertAction, AlertEvent, DEDUP_KEY_MAX, EVENTS_PER_REQUEST_MAX, LABEL_NAME_MAX,
    LABEL_VALUE_MAX, LABELS_MAX, Problems, SOURCE_MAX, SUMMARY_MAX,
};

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A refusal names at least one problem, and each problem its field and code.
pub fn check_problems(problems: &Problems) {
    assert!(!problems.is_empty(), "refused without a reason");
    for p in problems {
        check_refusal(p);
    }
}

pub fn check_refusal(p: &ValidationError) {
    assert!(!p.field.is_empty(), "a problem without a field: {p:?}");
    assert!(!p.code.is_empty(), "a problem without a code: {p:?}");
}

/// An accepted event keeps every limit `docs/intake.md` gives senders.
pub fn check_event(e: &AlertEvent) {
    assert!(chars(&e.summary) <= SUMMARY_MAX, "summary too long");
    assert!(chars(&e.source) <= SOURCE_MAX, "source too long");
    for one_line in [&e.summary, &e.source] {
        assert!(
            !one_line.chars().any(char::is_control),
            "control character kept in {one_line:?}"
        );
    }
    if let Some(key) = &e.dedup_key {
        assert!(chars(key) <= DEDUP_KEY_MAX, "dedup_key too long");
    }
    if matches!(e.action, AlertAction::Acknowledge | AlertAction::Resolve) {
        assert!(e.dedup_key.is_some(), "a follow-up without its dedup_key");
    }
    assert!(e.labels.len() <= LABELS_MAX, "too many labels");
    for (name, value) in &e.labels {
        assert!(chars(name) <= LABEL_NAME_MAX, "label name too long");
        assert!(chars(value) <= LABEL_VALUE_MAX, "label value too long");
    }
    for link in &e.links {
        // Schemes are case-insensitive (RFC 3986): `HTTPS://` is a web link.
        let scheme = link
            .href
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        assert!(
            matches!(scheme.as_deref(), Some("http" | "https")),
            "a link that is not http(s): {:?}",
            link.href
        );
    }
}

/// A webhook's outcome: a bounded batch of events that each keep the
/// limits, or problems that each name their field.
pub fn check_batch(outcome: &Result<Vec<AlertEvent>, Problems>) {
    match outcome {
        Ok(events) => {
            assert!(events.len() <= EVENTS_PER_REQUEST_MAX, "batch too large");
            events.iter().for_each(check_event);
        }
        Err(problems) => check_problems(problems),
    }
}

/// The only elements the HTML renderer writes; anything else came from
/// the input unescaped.
const HTML_ELEMENTS: [&str; 26] = [
    "!doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p",
    "table", "thead", "tbody", "tr", "th", "td", "ul", "ol", "li", "span", "pre", "code", "hr",
    "br",
];

/// Every `<` in a rendered page opens or closes one of the renderer's own
/// elements, so no typed text became markup (a `<script` least of all).
pub fn check_html(page: &str) {
    for (at, _) in page.match_indices('<') {
        let rest = &page[at + 1..];
        let name: String = rest
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(
            HTML_ELEMENTS.contains(&name.as_str()),
            "<{name} in the page: {:?}",
            &page[at..page.len().min(at + 80)]
        );
    }
}

/// Outside code fences, a rendered Markdown file has no raw `<`, so no
/// typed text became inline HTML.
pub fn check_markdown(text: &str) {
    let mut fence: Option<usize> = None;
    for line in text.lines() {
        let ticks = line.trim_start().chars().take_while(|&c| c == '`').count();
        match fence {
            // A fence closes with a line of at least as many backticks.
            Some(open) if ticks >= open && line.trim().chars().all(|c| c == '`') => fence = None,
            Some(_) => {}
            None if ticks >= 3 => fence = Some(ticks),
            None => assert!(!line.contains('<'), "raw < in {line:?}"),
        }
    }
    assert!(fence.is_none(), "an unclosed code fence");
}
