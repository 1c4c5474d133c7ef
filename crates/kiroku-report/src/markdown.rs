//! GitHub-flavoured Markdown. Every text is escaped so that it reads back as
//! the same text: nothing typed into an incident can open a heading, a list,
//! a link, a table cell or raw HTML.

use crate::document::{Block, Document, Lang};
use crate::text::clean;

pub fn render(doc: &Document) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("# ");
    push_flat(&mut out, &doc.title, " ");
    out.push('\n');

    // Two lists in a row would merge into one unless the second one changes
    // its marker, so remember the marker the block just written ended with.
    let mut previous_marker: Option<Marker> = None;
    for block in &doc.blocks {
        let mut marker = None;
        match block {
            Block::Heading { level, text } => {
                out.push('\n');
                for _ in 0..=(*level).clamp(1, 3) {
                    out.push('#');
                }
                out.push(' ');
                push_flat(&mut out, text, " ");
                out.push('\n');
            }
            Block::Paragraph { text } => {
                let cleaned = clean(text);
                let lines = content_lines(&cleaned);
                if !lines.is_empty() {
                    out.push('\n');
                    push_lines(&mut out, &lines, "");
                    out.push('\n');
                }
            }
            Block::Fields { fields } => {
                let bullet = Marker::Bullet.after(previous_marker);
                let separator = match doc.lang {
                    Lang::Ja => "：",
                    Lang::En => ": ",
                };
                out.push('\n');
                for (label, value) in fields {
                    push_marker(&mut out, bullet, 0);
                    let mut label_text = String::new();
                    push_flat(&mut label_text, label, " ");
                    if !label_text.is_empty() {
                        out.push_str("**");
                        out.push_str(&label_text);
                        out.push_str("**");
                        out.push_str(separator);
                    }
                    let cleaned = clean(value);
                    push_lines(&mut out, &content_lines(&cleaned), "  ");
                    out.push('\n');
                }
                marker = Some(bullet);
            }
            Block::List { ordered, items } => {
                let kind = if *ordered {
                    Marker::Number
                } else {
                    Marker::Bullet
                };
                let list_marker = kind.after(previous_marker);
                out.push('\n');
                for (index, item) in items.iter().enumerate() {
                    let width = push_marker(&mut out, list_marker, index + 1);
                    let cleaned = clean(item);
                    push_lines(&mut out, &content_lines(&cleaned), &" ".repeat(width));
                    out.push('\n');
                }
                marker = Some(list_marker);
            }
            Block::Checklist { items } => {
                let bullet = Marker::Bullet.after(previous_marker);
                out.push('\n');
                for (checked, item) in items {
                    push_marker(&mut out, bullet, 0);
                    out.push_str(if *checked { "[x] " } else { "[ ] " });
                    let cleaned = clean(item);
                    push_lines(&mut out, &content_lines(&cleaned), "  ");
                    out.push('\n');
                }
                marker = Some(bullet);
            }
            Block::Table { headers, rows } => push_table(&mut out, headers, rows),
            Block::Code { text } => {
                let cleaned = clean(text);
                let fence = "`".repeat(longest_backtick_run(&cleaned).max(2) + 1);
                out.push('\n');
                out.push_str(&fence);
                out.push('\n');
                out.push_str(&cleaned);
                if !cleaned.is_empty() && !cleaned.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&fence);
                out.push('\n');
            }
            Block::Rule => out.push_str("\n---\n"),
        }
        previous_marker = marker;
    }
    out
}

/// How a list's items are marked. Each kind has two spellings, and a list
/// right after one of the same kind takes the other so that it stays apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Bullet,
    OtherBullet,
    Number,
    OtherNumber,
}

impl Marker {
    fn after(self, previous: Option<Marker>) -> Marker {
        match (self, previous) {
            (Marker::Bullet, Some(Marker::Bullet)) => Marker::OtherBullet,
            (Marker::Number, Some(Marker::Number)) => Marker::OtherNumber,
            (marker, _) => marker,
        }
    }
}

/// Writes an item's marker and returns how wide it is, which is the indent
/// its continuation lines need.
fn push_marker(out: &mut String, marker: Marker, number: usize) -> usize {
    let before = out.len();
    match marker {
        Marker::Bullet => out.push_str("- "),
        Marker::OtherBullet => out.push_str("* "),
        Marker::Number => out.push_str(&format!("{number}. ")),
        Marker::OtherNumber => out.push_str(&format!("{number}) ")),
    }
    out.len() - before
}

fn push_table(out: &mut String, headers: &[String], rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).fold(headers.len(), usize::max);
    if columns == 0 {
        return;
    }
    let empty = String::new();
    let push_row = |out: &mut String, cells: &[String]| {
        out.push('|');
        for column in 0..columns {
            out.push(' ');
            push_flat(out, cells.get(column).unwrap_or(&empty), " / ");
            out.push_str(" |");
        }
        out.push('\n');
    };
    out.push('\n');
    push_row(out, headers);
    out.push('|');
    for _ in 0..columns {
        out.push_str(" --- |");
    }
    out.push('\n');
    for row in rows {
        push_row(out, row);
    }
}

/// The lines of a text worth writing: blank lines at either end say nothing
/// and would end the Markdown block early.
fn content_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.split('\n').collect();
    let is_blank = |line: &&str| line.trim_matches(' ').is_empty();
    let Some(first) = lines.iter().position(|line| !is_blank(line)) else {
        return Vec::new();
    };
    let last = lines
        .iter()
        .rposition(|line| !is_blank(line))
        .unwrap_or(first);
    lines[first..=last].to_vec()
}

/// Writes lines as one Markdown paragraph with hard breaks between them
/// (a backslash at a line's end); `indent` keeps them inside a list item.
fn push_lines(out: &mut String, lines: &[&str], indent: &str) {
    for (index, line) in lines.iter().enumerate() {
        if index > 0 {
            out.push_str("\\\n");
            out.push_str(indent);
        }
        push_line(out, line);
    }
}

/// Writes a text on one line, its lines joined by `separator`: for titles,
/// headings, labels and table cells.
fn push_flat(out: &mut String, text: &str, separator: &str) {
    let cleaned = clean(text);
    let mut first = true;
    for line in cleaned.split('\n') {
        if line.trim_matches(' ').is_empty() {
            continue;
        }
        if !first {
            out.push_str(separator);
        }
        first = false;
        push_inline(out, line.trim_matches(' '));
    }
}

/// Escapes one line that starts a line of the output. Leading spaces are
/// dropped (four would start a code block), and what only means something
/// at a line's start (a list marker, a setext underline) is escaped there.
fn push_line(out: &mut String, line: &str) {
    let line = line.trim_matches(' ');
    let mut rest = line;
    match line.chars().next() {
        Some(c @ ('-' | '+' | '=')) => {
            out.push('\\');
            out.push(c);
            rest = &line[1..];
        }
        Some('0'..='9') => {
            let digits = line.bytes().take_while(u8::is_ascii_digit).count();
            if let Some(c @ (b'.' | b')')) = line.as_bytes().get(digits) {
                out.push_str(&line[..digits]);
                out.push('\\');
                out.push(char::from(*c));
                rest = &line[digits + 1..];
            }
        }
        _ => {}
    }
    push_inline(out, rest);
}

/// Escapes text inside a line: emphasis, code spans, links, strike-through,
/// pipes, headings' closing hashes, math, entities and HTML.
fn push_inline(out: &mut String, text: &str) {
    let mut previous = None;
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '|' | '#' | '$' => {
                out.push('\\');
                out.push(c);
            }
            // An escaped bracket already makes no link; escaping what
            // follows it as well keeps even a naive filter from seeing one.
            '(' if previous == Some(']') => out.push_str("\\("),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
        previous = Some(c);
    }
}

fn longest_backtick_run(text: &str) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for c in text.chars() {
        if c == '`' {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hostile_document, sample_document, table_document};

    #[test]
    fn hostile_text_stays_text_in_every_block() {
        let out = render(&hostile_document());
        for c in ['\u{0}', '\u{1b}', '\u{7f}', '\u{85}'] {
            assert!(!out.contains(c), "control {c:?} survived");
        }
        // The code block keeps its text as typed, behind a fence longer
        // than any run of backticks inside it; everything else is escaped.
        let fence = "\n````\n```\n<script>alert(1)</script>\n````\n";
        assert!(out.contains(fence), "{out}");
        let outside_code = out.replace(fence, "\n");
        assert!(!outside_code.contains('<'), "{outside_code}");
        assert!(!outside_code.contains("```"), "{outside_code}");
        assert!(!outside_code.contains("[link]"), "{outside_code}");
        assert!(outside_code.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!outside_code.contains("](javascript"), "{outside_code}");
        assert!(outside_code.contains("\\[link\\]\\(javascript:x)"));
        for line in outside_code.lines() {
            let line = line.trim_start_matches(' ');
            for structure in ["# heading", "- item", "+ plus", "> quote", "1. one", "==="] {
                assert!(!line.starts_with(structure), "{line}");
            }
        }
        // Every pipe typed in a cell is escaped, so each row keeps its two
        // cells: three unescaped pipes.
        let rows: Vec<&str> = out.lines().filter(|line| line.starts_with('|')).collect();
        assert_eq!(rows.len(), 4, "{out}");
        for row in rows {
            let unescaped_pipes = row
                .char_indices()
                .filter(|&(at, c)| c == '|' && !row[..at].ends_with('\\'))
                .count();
            assert_eq!(unescaped_pipes, 3, "{row}");
        }
    }

    #[test]
    fn line_starts_are_escaped_after_breaks() {
        let doc = Document {
            lang: Lang::En,
            title: "t".into(),
            blocks: vec![Block::Paragraph {
                text: "one\n# two\n- three\n10. four\n    five\n\n===\n> six\n".into(),
            }],
        };
        assert_eq!(
            render(&doc),
            "# t\n\none\\\n\\# two\\\n\\- three\\\n10\\. four\\\nfive\\\n\\\n\\===\\\n&gt; six\n"
        );
    }

    #[test]
    fn adjacent_lists_keep_apart() {
        let doc = Document {
            lang: Lang::En,
            title: "t".into(),
            blocks: vec![
                Block::List {
                    ordered: false,
                    items: vec!["a".into()],
                },
                Block::Checklist {
                    items: vec![(true, "b".into())],
                },
                Block::List {
                    ordered: true,
                    items: vec!["c".into()],
                },
                Block::List {
                    ordered: true,
                    items: vec!["d\ne".into()],
                },
            ],
        };
        assert_eq!(
            render(&doc),
            "# t\n\n- a\n\n* [x] b\n\n1. c\n\n1) d\\\n   e\n"
        );
    }

    #[test]
    fn ragged_and_empty_tables() {
        let doc = Document {
            lang: Lang::En,
            title: "t".into(),
            blocks: vec![
                Block::Table {
                    headers: vec![],
                    rows: vec![],
                },
                Block::Table {
                    headers: vec!["a".into()],
                    rows: vec![vec!["1".into(), "2\n3".into()], vec![]],
                },
            ],
        };
        assert_eq!(
            render(&doc),
            "# t\n\n| a |  |\n| --- | --- |\n| 1 | 2 / 3 |\n|  |  |\n"
        );
    }

    #[test]
    fn japanese_report() {
        insta::assert_snapshot!(render(&sample_document()));
    }

    #[test]
    fn thousand_row_table_is_fast() {
        let doc = table_document(1000);
        let started = std::time::Instant::now();
        let out = render(&doc);
        let elapsed = started.elapsed();
        assert!(out.lines().count() > 1000);
        println!("markdown, 1,000-row table: {elapsed:?}");
    }
}
