//! A standalone HTML5 page, styled to print on A4 from any browser. It has
//! no script and loads nothing: every text is escaped and the policy in its
//! head forbids everything but its own style sheet.

use kiroku_domain::validate::escape_markup;

use crate::document::{Block, Document};
use crate::text::clean;

const STYLE: &str = r#"@page { size: A4; margin: 18mm 16mm; }
html {
  font-family: "IPAexGothic", "IPAGothic", "Noto Sans CJK JP", "Hiragino Sans",
    "Hiragino Kaku Gothic ProN", "Yu Gothic", "Meiryo", sans-serif;
  font-size: 10.5pt;
  line-height: 1.6;
  color: #000;
  background: #fff;
  -webkit-print-color-adjust: exact;
  print-color-adjust: exact;
}
body { margin: 0; }
@media screen { body { max-width: 178mm; margin: 2em auto; padding: 0 1em; } }
h1, h2, h3, h4 { line-height: 1.35; break-after: avoid; page-break-after: avoid; }
h1 { font-size: 18pt; margin: 0 0 0.8em; }
h2 { font-size: 14pt; margin: 1.2em 0 0.4em; }
h3 { font-size: 12pt; margin: 1em 0 0.4em; }
h4 { font-size: 11pt; margin: 1em 0 0.3em; }
p { margin: 0 0 0.6em; }
ul, ol { margin: 0 0 0.6em; padding-left: 1.8em; }
ul.checklist { list-style: none; padding-left: 0.2em; }
.box { display: inline-block; width: 1.3em; }
table { border-collapse: collapse; width: 100%; margin: 0 0 0.8em; font-size: 9.5pt; }
th, td {
  border: 0.5pt solid #000;
  padding: 2pt 4pt;
  text-align: left;
  vertical-align: top;
  overflow-wrap: anywhere;
}
thead { display: table-header-group; }
thead th { background: #e8e8e8; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.fields th { width: 28%; background: #f2f2f2; font-weight: normal; }
pre {
  font-family: "IPAGothic", "Noto Sans Mono CJK JP", monospace;
  font-size: 9pt;
  background: #f2f2f2;
  padding: 4pt 6pt;
  margin: 0 0 0.8em;
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}
hr { border: 0; border-top: 0.5pt solid #000; margin: 1em 0; }
"#;

pub fn render(doc: &Document) -> String {
    let mut out = String::with_capacity(STYLE.len() + 1024);
    out.push_str("<!doctype html>\n<html lang=\"");
    out.push_str(doc.lang.tag());
    out.push_str("\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>");
    push_flat(&mut out, &doc.title);
    out.push_str("</title>\n<style>\n");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>");
    push_text(&mut out, &doc.title);
    out.push_str("</h1>\n");
    for block in &doc.blocks {
        push_block(&mut out, block);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn push_block(out: &mut String, block: &Block) {
    match block {
        Block::Heading { level, text } => {
            // The title is the page's h1, so sections start at h2.
            let tag = match level {
                0 | 1 => "h2",
                2 => "h3",
                _ => "h4",
            };
            push_element(out, tag, text);
            out.push('\n');
        }
        Block::Paragraph { text } => {
            push_element(out, "p", text);
            out.push('\n');
        }
        Block::Fields { fields } => {
            out.push_str("<table class=\"fields\">\n<tbody>\n");
            for (label, value) in fields {
                out.push_str("<tr><th scope=\"row\">");
                push_text(out, label);
                out.push_str("</th><td>");
                push_text(out, value);
                out.push_str("</td></tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::List { ordered, items } => {
            let tag = if *ordered { "ol" } else { "ul" };
            out.push_str(&format!("<{tag}>\n"));
            for item in items {
                push_element(out, "li", item);
                out.push('\n');
            }
            out.push_str(&format!("</{tag}>\n"));
        }
        Block::Checklist { items } => {
            out.push_str("<ul class=\"checklist\">\n");
            for (checked, item) in items {
                out.push_str("<li><span class=\"box\">");
                out.push(if *checked { '☑' } else { '☐' });
                out.push_str("</span>");
                push_text(out, item);
                out.push_str("</li>\n");
            }
            out.push_str("</ul>\n");
        }
        Block::Table { headers, rows } => push_table(out, headers, rows),
        Block::Code { text } => {
            out.push_str("<pre><code>");
            out.push_str(&escape_markup(&clean(text)));
            out.push_str("</code></pre>\n");
        }
        Block::Rule => out.push_str("<hr>\n"),
    }
}

fn push_table(out: &mut String, headers: &[String], rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).fold(headers.len(), usize::max);
    if columns == 0 {
        return;
    }
    let push_row = |out: &mut String, cells: &[String], tag: &str| {
        out.push_str("<tr>");
        for column in 0..columns {
            push_element(out, tag, cells.get(column).map_or("", String::as_str));
        }
        out.push_str("</tr>\n");
    };
    out.push_str("<table>\n");
    if !headers.is_empty() {
        out.push_str("<thead>\n");
        push_row(out, headers, "th");
        out.push_str("</thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in rows {
        push_row(out, row, "td");
    }
    out.push_str("</tbody>\n</table>\n");
}

fn push_element(out: &mut String, tag: &str, text: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    push_text(out, text);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// Escaped text whose line breaks show as `<br>`.
fn push_text(out: &mut String, text: &str) {
    for (index, line) in clean(text).split('\n').enumerate() {
        if index > 0 {
            out.push_str("<br>");
        }
        out.push_str(&escape_markup(line));
    }
}

/// Escaped text on one line, for the `<title>`.
fn push_flat(out: &mut String, text: &str) {
    out.push_str(&escape_markup(&clean(text).replace('\n', " ")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Lang;
    use crate::test_support::{hostile_document, sample_document};

    #[test]
    fn hostile_text_stays_text_in_every_block() {
        let out = render(&hostile_document());
        for c in ['\u{0}', '\u{1b}', '\u{7f}', '\u{85}'] {
            assert!(!out.contains(c), "control {c:?} survived");
        }
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("href"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(out.contains("&lt;img src=x onerror=alert(1)&gt;"), "{out}");
        assert!(
            out.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        // Each hostile text is shown in full in every kind of block.
        let shown = out.matches("&lt;script&gt;alert(1)&lt;/script&gt;").count();
        assert_eq!(shown, 17, "{out}");
        // Attribute quotes cannot be broken out of either.
        assert!(out.contains("&quot;q&quot; &#39;a&#39;"), "{out}");
    }

    #[test]
    fn page_is_standalone_and_print_ready() {
        let doc = Document {
            lang: Lang::En,
            title: "Report".into(),
            blocks: vec![Block::Paragraph {
                text: "one\ntwo".into(),
            }],
        };
        let out = render(&doc);
        assert!(out.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(out.contains("<meta charset=\"utf-8\">"));
        assert!(out.contains("@page { size: A4; margin: 18mm 16mm; }"));
        assert!(out.contains("thead { display: table-header-group; }"));
        assert!(out.contains("<p>one<br>two</p>"));
        assert!(!out.contains("<script"));
        assert!(out.ends_with("</html>\n"));
    }

    #[test]
    fn japanese_report() {
        insta::assert_snapshot!(render(&sample_document()));
    }
}
