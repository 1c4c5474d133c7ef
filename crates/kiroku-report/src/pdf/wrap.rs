//! Line breaking over widths alone, so it can be tested without a font.
//!
//! Japanese may break between any two characters, Latin text only at
//! spaces, and a minimal 禁則 keeps closing punctuation off a line's start
//! and opening brackets off its end. A run that has no break in the width
//! (a long word, a row of 。) is broken by character.

use std::ops::Range;

/// One character as the breaker sees it: how wide it is and how it may
/// break.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Piece {
    pub width: f32,
    pub class: BreakClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakClass {
    /// A space: lines break after it, and it hangs past the line's end.
    Space,
    /// A hard line break; it is in no line.
    Newline,
    /// Part of a word: no break next to it.
    Word,
    /// Kana, kanji, full-width forms: a break may come before or after.
    Wide,
    /// 、。」 and the like: a break may come after, never before.
    WideClosing,
    /// 「『（ and the like: a break may come before, never after.
    WideOpening,
    /// `)` `,` `.` and the like: no line starts with one.
    NarrowClosing,
    /// `(` `[` `{`: no line ends with one.
    NarrowOpening,
}

impl BreakClass {
    pub(crate) fn of(c: char) -> BreakClass {
        match c {
            '\n' => BreakClass::Newline,
            ' ' | '\u{2000}'..='\u{200a}' => BreakClass::Space,
            '、' | '。' | '，' | '．' | '」' | '』' | '）' | '！' | '？' | '］' | '｝' | '〕'
            | '〉' | '》' | '】' | '：' | '；' | '・' | 'ー' | '々' | 'ぁ' | 'ぃ' | 'ぅ' | 'ぇ'
            | 'ぉ' | 'っ' | 'ゃ' | 'ゅ' | 'ょ' | 'ゎ' | 'ァ' | 'ィ' | 'ゥ' | 'ェ' | 'ォ' | 'ッ'
            | 'ャ' | 'ュ' | 'ョ' | 'ヮ' | 'ヵ' | 'ヶ' => BreakClass::WideClosing,
            '「' | '『' | '（' | '［' | '｛' | '〔' | '〈' | '《' | '【' => {
                BreakClass::WideOpening
            }
            ')' | ']' | '}' | ',' | '.' | '!' | '?' | ':' | ';' => BreakClass::NarrowClosing,
            '(' | '[' | '{' => BreakClass::NarrowOpening,
            '\u{2e80}'..='\u{9fff}'
            | '\u{ac00}'..='\u{d7af}'
            | '\u{f900}'..='\u{faff}'
            | '\u{fe30}'..='\u{fe4f}'
            | '\u{ff00}'..='\u{ffef}'
            | '\u{20000}'..='\u{3ffff}' => BreakClass::Wide,
            _ => BreakClass::Word,
        }
    }

    fn forbids_line_start(self) -> bool {
        matches!(
            self,
            BreakClass::Space | BreakClass::WideClosing | BreakClass::NarrowClosing
        )
    }

    fn forbids_line_end(self) -> bool {
        matches!(self, BreakClass::WideOpening | BreakClass::NarrowOpening)
    }

    fn breaks_after(self) -> bool {
        matches!(
            self,
            BreakClass::Space | BreakClass::Wide | BreakClass::WideClosing
        )
    }

    fn breaks_before(self) -> bool {
        matches!(self, BreakClass::Wide | BreakClass::WideOpening)
    }
}

/// Whether a line may start at `pieces[at]`, given the piece before it.
fn may_break_before(pieces: &[Piece], at: usize) -> bool {
    let (before, here) = (pieces[at - 1].class, pieces[at].class);
    !here.forbids_line_start()
        && !before.forbids_line_end()
        && (before.breaks_after() || here.breaks_before())
}

/// Breaks `pieces` into lines no wider than `max_width`, except a line of
/// a single piece that is wider by itself. Each line is a range of
/// `pieces` without its trailing spaces or its newline; spaces at the start
/// of a wrapped line are dropped, those after a hard break kept. There is
/// always at least one line, which may be empty.
pub(crate) fn break_lines(pieces: &[Piece], max_width: f32) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let mut width = 0.0;
        let mut last_break = None;
        let mut at = start;
        // Where this line ends, where the next one starts, and whether the
        // text ended here.
        let (end, next, finished) = loop {
            let Some(piece) = pieces.get(at) else {
                break (at, at, true);
            };
            if piece.class == BreakClass::Newline {
                break (at, at + 1, false);
            }
            if at > start && may_break_before(pieces, at) {
                last_break = Some(at);
            }
            // Spaces may run past the end: they are trimmed from it.
            if piece.class != BreakClass::Space && at > start && width + piece.width > max_width {
                let end = last_break.unwrap_or(at);
                let mut next = end;
                while pieces
                    .get(next)
                    .is_some_and(|p| p.class == BreakClass::Space)
                {
                    next += 1;
                }
                break (end, next, false);
            }
            width += piece.width;
            at += 1;
        };
        let mut trimmed = end;
        while trimmed > start && pieces[trimmed - 1].class == BreakClass::Space {
            trimmed -= 1;
        }
        lines.push(start..trimmed);
        if finished {
            return lines;
        }
        start = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<Piece> {
        text.chars()
            .map(|c| Piece {
                width: if c.is_ascii() { 0.5 } else { 1.0 },
                class: BreakClass::of(c),
            })
            .collect()
    }

    fn lines(text: &str, max_width: f32) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        break_lines(&pieces(text), max_width)
            .into_iter()
            .map(|range| chars[range].iter().collect())
            .collect()
    }

    /// Every line fits, or is one piece too wide by itself; no piece but
    /// spaces and newlines is lost, and lines come in order.
    fn assert_well_broken(text: &str, max_width: f32) {
        let pieces = pieces(text);
        let ranges = break_lines(&pieces, max_width);
        assert!(!ranges.is_empty());
        let mut covered = 0;
        for range in &ranges {
            let width: f32 = pieces[range.clone()].iter().map(|p| p.width).sum();
            assert!(
                width <= max_width + 1e-4 || range.len() == 1,
                "line {range:?} is {width} wide, more than {max_width}"
            );
            assert!(range.start >= covered, "lines overlap at {range:?}");
            for skipped in &pieces[covered..range.start] {
                assert!(matches!(
                    skipped.class,
                    BreakClass::Space | BreakClass::Newline
                ));
            }
            covered = range.end;
        }
        for skipped in &pieces[covered..] {
            assert!(matches!(
                skipped.class,
                BreakClass::Space | BreakClass::Newline
            ));
        }
    }

    #[test]
    fn latin_breaks_at_spaces() {
        assert_eq!(
            lines("the quick brown fox", 5.0),
            ["the quick", "brown fox"]
        );
    }

    #[test]
    fn japanese_breaks_anywhere_but_keeps_kinsoku() {
        assert_eq!(lines("あいうえお", 2.0), ["あい", "うえ", "お"]);
        // 。 may not start a line, so う goes down with it.
        assert_eq!(lines("あいう。", 3.0), ["あい", "う。"]);
        // 「 may not end a line.
        assert_eq!(lines("あい「う」", 3.0), ["あい", "「う」"]);
    }

    #[test]
    fn mixed_text_breaks_between_scripts() {
        assert_eq!(lines("日本語English", 5.0), ["日本語", "English"]);
    }

    #[test]
    fn hard_breaks_keep_indentation_and_empty_lines() {
        assert_eq!(lines("a\n\n  b\n", 10.0), ["a", "", "  b", ""]);
    }

    #[test]
    fn long_word_breaks_by_character() {
        assert_eq!(lines("abcdefgh", 2.0), ["abcd", "efgh"]);
        let word = "x".repeat(10_000);
        let broken = lines(&word, 10.0);
        assert_eq!(broken.len(), 500);
        assert!(broken.iter().all(|line| line.len() == 20));
        assert_well_broken(&word, 10.0);
    }

    #[test]
    fn nasty_inputs_never_overflow() {
        let only_spaces = " ".repeat(1000);
        let only_kinsoku = "、。，．」』）！？".repeat(50);
        let only_openers = "「『（".repeat(50);
        let word_after_space = format!("a {}", "w".repeat(300));
        let cases = [
            "",
            " ",
            "\n",
            only_spaces.as_str(),
            only_kinsoku.as_str(),
            only_openers.as_str(),
            word_after_space.as_str(),
            "あ。\n\n \n。。。「「「",
        ];
        for text in cases {
            for max_width in [0.0, 0.4, 1.0, 3.5, 40.0] {
                assert_well_broken(text, max_width);
            }
        }
        assert_eq!(lines(&only_spaces, 3.0), [""]);
        assert_eq!(lines("", 3.0), [""]);
    }

    #[test]
    fn a_piece_wider_than_the_line_stands_alone() {
        assert_eq!(lines("あい", 0.5), ["あ", "い"]);
    }
}
