//! The one clean-up every renderer applies to a block's text before it
//! escapes it for its own format.

use std::borrow::Cow;

/// Drops the C0 and C1 control characters (and DEL), which no format can
/// show and some read as commands, keeping `\n`; a tab becomes one space.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_cleaning) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter_map(|c| match c {
                '\t' => Some(' '),
                c if needs_cleaning(c) => None,
                c => Some(c),
            })
            .collect(),
    )
}

fn needs_cleaning(c: char) -> bool {
    c != '\n' && c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_text_borrowed() {
        assert!(matches!(clean("障害報告\nline two"), Cow::Borrowed(_)));
    }

    #[test]
    fn strips_controls_and_turns_tabs_into_spaces() {
        assert_eq!(
            clean("a\u{0}b\u{1b}[31mc\u{7f}d\u{85}e\u{9f}\r\n\tf"),
            "ab[31mcde\n f"
        );
    }
}
