//! The one shape every report takes before it is rendered: a title and a
//! list of blocks of plain text. Builders fill it from an incident's data;
//! each renderer (Markdown, HTML, PDF) turns it into bytes and escapes
//! everything itself, so no builder ever writes markup.

use serde::Serialize;

/// The language a report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    /// The BCP 47 tag, for `<html lang>` and the PDF's metadata.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub lang: Lang,
    pub title: String,
    pub blocks: Vec<Block>,
}

/// All text is plain: it may hold any characters, including markup and
/// control characters, and a renderer must show it as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Block {
    /// A section heading, level 1 (below the title) to 3.
    Heading {
        level: u8,
        text: String,
    },
    /// A paragraph; a `\n` inside is a line break.
    Paragraph {
        text: String,
    },
    /// Labelled values, one per line: 「発生日時：令和7年…」.
    Fields {
        fields: Vec<(String, String)>,
    },
    List {
        ordered: bool,
        items: Vec<String>,
    },
    /// Check boxes, ticked or not: the DB report's 症状.
    Checklist {
        items: Vec<(bool, String)>,
    },
    /// Rows as long as `headers`.
    Table {
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Preformatted text, kept as typed: a command, a log line.
    Code {
        text: String,
    },
    /// A horizontal rule between parts.
    Rule,
}
