//! A4 PDF set in one Japanese font, which krilla embeds as a subset. The
//! pages are laid out first (`layout.rs`) and drawn after, once their
//! number is known for the "n / N" footers.

mod fonts;
mod layout;
mod wrap;

use std::path::PathBuf;

use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, Stroke as PdfStroke};
use krilla::surface::Surface;
use krilla::text::{Glyph, GlyphId};

pub use fonts::{FONT_PATHS, Fonts};
use layout::{Line, LineGlyph, Page, Stroke};

use crate::document::Document;
use crate::text::clean;

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("cannot read the font file {}: {source}", path.display())]
    FontFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a usable font: {0}")]
    BadFont(String),
    #[error("no Japanese font is installed; install fonts-ipaexfont-gothic")]
    NoFontInstalled,
    #[error("cannot write the PDF: {0}")]
    Write(String),
}

const STROKE_WIDTH: f32 = 0.5;
const FOOTER_GREY: u8 = 90;

pub fn render(doc: &Document, fonts: &Fonts) -> Result<Vec<u8>, PdfError> {
    let pages = layout::lay_out(doc, fonts);
    let mut pdf = krilla::Document::new();
    pdf.set_metadata(
        Metadata::new()
            .title(clean(&doc.title).replace('\n', " "))
            .language(doc.lang.tag().to_string())
            .creator("Kiroku".to_string()),
    );
    let page_count = pages.len();
    for (index, page) in pages.iter().enumerate() {
        let settings = PageSettings::from_wh(layout::PAGE_WIDTH, layout::PAGE_HEIGHT)
            .ok_or_else(|| PdfError::Write("the page size is invalid".into()))?;
        let mut pdf_page = pdf.start_page_with(settings);
        let mut surface = pdf_page.surface();
        draw_page(&mut surface, page, fonts);
        let footer = layout::single_line(fonts, &format!("{} / {page_count}", index + 1));
        let footer_x = (layout::PAGE_WIDTH - footer.width * layout::FOOTER_SIZE) / 2.0;
        surface.set_fill(Some(grey_fill(FOOTER_GREY)));
        draw_line(
            &mut surface,
            fonts,
            footer_x,
            layout::FOOTER_BASELINE,
            layout::FOOTER_SIZE,
            &footer,
        );
        surface.finish();
        pdf_page.finish();
    }
    pdf.finish()
        .map_err(|error| PdfError::Write(format!("{error:?}")))
}

/// Backgrounds first, then rules over them, then text over both.
fn draw_page(surface: &mut Surface<'_>, page: &Page, fonts: &Fonts) {
    surface.set_stroke(None);
    for (area, grey) in &page.fills {
        let Some(rect) = Rect::from_xywh(area.x, area.y, area.width, area.height) else {
            continue;
        };
        let mut path = PathBuilder::new();
        path.push_rect(rect);
        if let Some(path) = path.finish() {
            surface.set_fill(Some(grey_fill(*grey)));
            surface.draw_path(&path);
        }
    }

    let mut path = PathBuilder::new();
    for stroke in &page.strokes {
        match *stroke {
            Stroke::Frame(area) => {
                if let Some(rect) = Rect::from_xywh(area.x, area.y, area.width, area.height) {
                    path.push_rect(rect);
                }
            }
            Stroke::Segment { from, to } => {
                path.move_to(from.0, from.1);
                path.line_to(to.0, to.1);
            }
        }
    }
    if let Some(path) = path.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(PdfStroke {
            width: STROKE_WIDTH,
            ..PdfStroke::default()
        }));
        surface.draw_path(&path);
        surface.set_stroke(None);
    }

    surface.set_fill(Some(Fill::default()));
    for placed in &page.texts {
        draw_line(
            surface,
            fonts,
            placed.x,
            placed.baseline,
            placed.size,
            &placed.line,
        );
    }
}

fn draw_line(
    surface: &mut Surface<'_>,
    fonts: &Fonts,
    x: f32,
    baseline: f32,
    size: f32,
    line: &Line,
) {
    if line.glyphs.is_empty() {
        return;
    }
    surface.draw_glyphs(
        Point::from_xy(x, baseline),
        &line.glyphs,
        fonts.font().clone(),
        &line.text,
        size,
        false,
    );
}

fn grey_fill(grey: u8) -> Fill {
    Fill {
        paint: luma::Color::new(grey).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::NonZero,
    }
}

impl Glyph for LineGlyph {
    fn glyph_id(&self) -> GlyphId {
        GlyphId::new(self.id)
    }

    fn text_range(&self) -> std::ops::Range<usize> {
        self.text.0..self.text.1
    }

    fn x_advance(&self, size: f32) -> f32 {
        self.advance * size
    }

    fn x_offset(&self, _size: f32) -> f32 {
        0.0
    }

    fn y_offset(&self, _size: f32) -> f32 {
        0.0
    }

    fn y_advance(&self, _size: f32) -> f32 {
        0.0
    }

    fn location(&self) -> Option<krilla::surface::Location> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    use super::*;
    use crate::document::{Block, Lang};
    use crate::test_support::{sample_document, table_document};

    const IPAEX_GOTHIC: &str = "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf";

    /// The IPAex font, read once for all tests; `None` after saying why
    /// when it is not installed.
    fn ipaex() -> Option<&'static Fonts> {
        static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
        let fonts = FONTS.get_or_init(|| {
            if !Path::new(IPAEX_GOTHIC).exists() {
                return None;
            }
            match Fonts::load(IPAEX_GOTHIC) {
                Ok(fonts) => Some(fonts),
                Err(error) => panic!("{IPAEX_GOTHIC} is installed but unusable: {error}"),
            }
        });
        if fonts.is_none() {
            println!(
                "SKIP: {IPAEX_GOTHIC} is not installed (apt-get install fonts-ipaexfont-gothic)"
            );
        }
        fonts.as_ref()
    }

    fn pdftotext_installed() -> bool {
        let found = Command::new("pdftotext").arg("-v").output().is_ok();
        if !found {
            println!("SKIP: pdftotext is not on PATH (apt-get install poppler-utils)");
        }
        found
    }

    fn extract_text(pdf: &[u8]) -> String {
        let file = std::env::temp_dir().join(format!(
            "kiroku-report-{}-{:?}.pdf",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&file, pdf).expect("write the PDF to a temporary file");
        let output = Command::new("pdftotext")
            .arg("-layout")
            .arg(&file)
            .arg("-")
            .output()
            .expect("run pdftotext");
        let _ = std::fs::remove_file(&file);
        assert!(
            output.status.success(),
            "pdftotext failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("pdftotext writes UTF-8")
    }

    /// Every kind of block, Japanese text, and a table long enough to run
    /// over several pages.
    fn full_document() -> Document {
        let mut doc = sample_document();
        let table = table_document(200);
        doc.blocks.push(Block::Heading {
            level: 1,
            text: "時系列の詳細".into(),
        });
        doc.blocks.extend(table.blocks.into_iter().skip(1));
        doc.blocks.push(Block::Paragraph {
            text: "以上のとおり報告いたします。".into(),
        });
        doc
    }

    #[test]
    fn every_block_reads_back_from_the_pdf() {
        let Some(fonts) = ipaex() else { return };
        let pdf = render(&full_document(), fonts).expect("render");
        assert!(pdf.starts_with(b"%PDF-"));
        if !pdftotext_installed() {
            return;
        }
        let text = extract_text(&pdf);
        for expected in [
            "始末書（システム障害について）",
            "事案の概要",
            "経緯",
            "影響範囲",
            "再発防止策",
            "実行したコマンド",
            "時系列の詳細",
            "情報システム部",
            "山田 太郎",
            "受注データの消失",
            "DELETE FROM orders;",
            "バックアップから復旧完了",
            "第1行：データベースの応答遅延を検知し",
            "第200行：データベースの応答遅延を検知し",
            "以上、深くお詫び申し上げます。",
            "以上のとおり報告いたします。",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} is missing from:\n{text}"
            );
        }
        let pages: Vec<&str> = text
            .split('\u{c}')
            .filter(|page| !page.trim().is_empty())
            .collect();
        assert!(pages.len() >= 3, "{} pages", pages.len());
        // pdftotext may drop the footer's narrow spaces.
        let footer = |page: &str| {
            page.lines()
                .rfind(|line| !line.trim().is_empty())
                .map(|line| line.replace(' ', ""))
        };
        let last = pages.len();
        assert_eq!(footer(pages[0]), Some(format!("1/{last}")));
        assert_eq!(footer(pages[last - 1]), Some(format!("{last}/{last}")));
        // The table's header row is repeated on each page it runs onto.
        for page in &pages[1..] {
            assert!(page.contains("担当者"), "no header on:\n{page}");
        }
    }

    #[test]
    fn metadata_names_the_title_and_language() {
        let Some(fonts) = ipaex() else { return };
        let pdf = render(&sample_document(), fonts).expect("render");
        let raw = String::from_utf8_lossy(&pdf);
        assert!(
            raw.contains("<dc:language>") || raw.contains("/Lang"),
            "no language"
        );
        assert!(
            raw.contains("(ja)") || raw.contains(">ja<"),
            "language is not ja"
        );
    }

    #[test]
    fn nasty_text_never_panics() {
        let Some(fonts) = ipaex() else { return };
        let long_word = "x".repeat(10_000);
        let huge = "長".repeat(100_000);
        let controls = "\u{0}\u{1}\u{1b}[31m\u{7f}\u{85}\u{9f}\t\r\n".repeat(20);
        let missing_glyphs = "😀𠮷\u{10ffff}\u{fffd}\u{200b}\u{202e}عربي".to_string();
        let kinsoku = "、。」』）！？".repeat(500);
        let texts = [
            String::new(),
            " ".repeat(500),
            "\n".repeat(300),
            long_word,
            huge.clone(),
            controls,
            missing_glyphs,
            kinsoku,
        ];
        let mut blocks = vec![Block::Rule];
        for text in &texts {
            blocks.extend([
                Block::Heading {
                    level: 0,
                    text: text.clone(),
                },
                Block::Heading {
                    level: 200,
                    text: text.clone(),
                },
                Block::Paragraph { text: text.clone() },
                Block::Fields {
                    fields: vec![(text.clone(), text.clone()), (String::new(), text.clone())],
                },
                Block::List {
                    ordered: true,
                    items: vec![text.clone(), String::new()],
                },
                Block::Checklist {
                    items: vec![(true, text.clone()), (false, String::new())],
                },
                Block::Table {
                    headers: vec![text.clone()],
                    rows: vec![vec![text.clone(), text.clone()], vec![]],
                },
                Block::Code { text: text.clone() },
            ]);
        }
        blocks.extend([
            Block::Table {
                headers: vec![],
                rows: vec![],
            },
            Block::Table {
                headers: (0..300).map(|column| format!("列{column}")).collect(),
                rows: vec![vec!["値".into(); 300]],
            },
            Block::Fields { fields: vec![] },
            Block::List {
                ordered: false,
                items: vec![],
            },
        ]);
        let doc = Document {
            lang: Lang::Ja,
            title: huge,
            blocks,
        };
        let pdf = render(&doc, fonts).expect("render");
        assert!(pdf.starts_with(b"%PDF-"));
    }

    #[test]
    fn an_empty_document_is_one_page() {
        let Some(fonts) = ipaex() else { return };
        let doc = Document {
            lang: Lang::En,
            title: String::new(),
            blocks: vec![],
        };
        let pages = layout::lay_out(&doc, fonts);
        assert_eq!(pages.len(), 1);
        assert!(render(&doc, fonts).expect("render").starts_with(b"%PDF-"));
    }

    #[test]
    fn laid_out_text_stays_inside_the_margins() {
        let Some(fonts) = ipaex() else { return };
        for page in layout::lay_out(&full_document(), fonts) {
            for placed in &page.texts {
                let right = placed.x + placed.line.width * placed.size;
                assert!(placed.x >= 16.0 * 72.0 / 25.4 - 0.01, "{placed:?}");
                assert!(
                    right <= layout::PAGE_WIDTH - 16.0 * 72.0 / 25.4 + 0.01,
                    "{placed:?}"
                );
                assert!(placed.baseline <= layout::PAGE_HEIGHT - 18.0 * 72.0 / 25.4);
            }
        }
    }

    #[test]
    fn thousand_row_table_timing() {
        let Some(fonts) = ipaex() else { return };
        let doc = table_document(1000);
        // The first run also warms caches; the best of a few is reported.
        let mut best = std::time::Duration::MAX;
        let mut size = 0;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            size = render(&doc, fonts).expect("render").len();
            best = best.min(started.elapsed());
        }
        println!("pdf, 1,000-row table: {best:?}, {size} bytes");
    }
}
