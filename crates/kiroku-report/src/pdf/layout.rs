//! Blocks laid out on A4 pages, by hand: no well-kept crate sets Japanese
//! text into paged PDF without pulling in a whole typesetting system, and a
//! report needs little: wrapped lines, ruled tables that break across pages
//! with their header repeated, lists with hanging indents.
//!
//! Layout only measures and places; `pdf.rs` draws the pages it returns,
//! once their number is known for the footers.

use std::ops::Range;

use super::fonts::Fonts;
use super::wrap::{BreakClass, Piece, break_lines};
use crate::document::{Block, Document};
use crate::text::clean;

const MM: f32 = 72.0 / 25.4;
pub(crate) const PAGE_WIDTH: f32 = 210.0 * MM;
pub(crate) const PAGE_HEIGHT: f32 = 297.0 * MM;
const MARGIN_X: f32 = 16.0 * MM;
const MARGIN_Y: f32 = 18.0 * MM;
const LEFT: f32 = MARGIN_X;
const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN_X;
const TOP: f32 = MARGIN_Y;
const BOTTOM: f32 = PAGE_HEIGHT - MARGIN_Y;
/// The footer's baseline, inside the bottom margin.
pub(crate) const FOOTER_BASELINE: f32 = PAGE_HEIGHT - 10.0 * MM;
pub(crate) const FOOTER_SIZE: f32 = 8.0;

/// A font size and the distance between baselines, in points.
#[derive(Debug, Clone, Copy)]
struct TextStyle {
    size: f32,
    line_height: f32,
}

const TITLE: TextStyle = TextStyle {
    size: 18.0,
    line_height: 24.0,
};
const HEADINGS: [TextStyle; 3] = [
    TextStyle {
        size: 14.5,
        line_height: 20.0,
    },
    TextStyle {
        size: 12.5,
        line_height: 17.5,
    },
    TextStyle {
        size: 11.0,
        line_height: 16.0,
    },
];
const BODY: TextStyle = TextStyle {
    size: 10.0,
    line_height: 15.0,
};
const CELL: TextStyle = TextStyle {
    size: 9.0,
    line_height: 13.0,
};
const CODE: TextStyle = TextStyle {
    size: 9.0,
    line_height: 13.0,
};

/// Grey levels of backgrounds (0 black, 255 white).
const HEADER_FILL: u8 = 228;
const LABEL_FILL: u8 = 240;
const CODE_FILL: u8 = 242;

/// Space after each kind of block, in points.
const BLOCK_GAP: f32 = 7.0;
const ITEM_GAP: f32 = 2.0;

/// A page of things to draw, in points from the page's top left.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub fills: Vec<(Area, u8)>,
    pub strokes: Vec<Stroke>,
    pub texts: Vec<PlacedLine>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Area {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// A thin line to draw: a box's outline or one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stroke {
    Frame(Area),
    Segment { from: (f32, f32), to: (f32, f32) },
}

#[derive(Debug)]
pub(crate) struct PlacedLine {
    pub x: f32,
    pub baseline: f32,
    pub size: f32,
    pub line: Line,
}

/// One line of text ready to draw: its characters, which the PDF keeps so
/// that the text can be searched and copied, and their glyphs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Line {
    pub text: String,
    pub glyphs: Vec<LineGlyph>,
    /// In ems.
    pub width: f32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LineGlyph {
    pub id: u32,
    /// In ems.
    pub advance: f32,
    /// The bytes of the line's text this glyph shows.
    pub text: (usize, usize),
}

/// A text measured once, then broken into lines at whatever width.
struct Shaped {
    text: String,
    glyphs: Vec<u32>,
    pieces: Vec<Piece>,
    /// The byte each character starts at, and the text's length last.
    offsets: Vec<usize>,
}

impl Shaped {
    fn new(fonts: &Fonts, text: &str) -> Shaped {
        let text = clean(text).into_owned();
        let count = text.len();
        let mut glyphs = Vec::with_capacity(count);
        let mut pieces = Vec::with_capacity(count);
        let mut offsets = Vec::with_capacity(count + 1);
        for (offset, c) in text.char_indices() {
            let class = BreakClass::of(c);
            let glyph = if class == BreakClass::Newline {
                0
            } else {
                fonts.glyph(c)
            };
            let width = if class == BreakClass::Newline {
                0.0
            } else {
                fonts.advance(glyph)
            };
            glyphs.push(glyph);
            pieces.push(Piece { width, class });
            offsets.push(offset);
        }
        offsets.push(text.len());
        Shaped {
            text,
            glyphs,
            pieces,
            offsets,
        }
    }

    /// The widest hard line, in ems.
    fn natural_width(&self) -> f32 {
        let mut widest: f32 = 0.0;
        let mut current = 0.0;
        for piece in &self.pieces {
            if piece.class == BreakClass::Newline {
                current = 0.0;
            } else {
                current += piece.width;
                widest = widest.max(current);
            }
        }
        widest
    }

    fn is_blank(&self) -> bool {
        self.pieces
            .iter()
            .all(|piece| matches!(piece.class, BreakClass::Space | BreakClass::Newline))
    }

    /// Lines no wider than `width` points at `size`.
    fn lines(&self, size: f32, width: f32) -> Vec<Line> {
        break_lines(&self.pieces, width / size)
            .into_iter()
            .map(|range| self.line(range))
            .collect()
    }

    fn line(&self, range: Range<usize>) -> Line {
        let base = self.offsets[range.start];
        let glyphs: Vec<LineGlyph> = range
            .clone()
            .map(|at| LineGlyph {
                id: self.glyphs[at],
                advance: self.pieces[at].width,
                text: (self.offsets[at] - base, self.offsets[at + 1] - base),
            })
            .collect();
        Line {
            text: self.text[base..self.offsets[range.end]].to_string(),
            width: glyphs.iter().map(|glyph| glyph.advance).sum(),
            glyphs,
        }
    }
}

/// A text set on one line, however long: the footer.
pub(crate) fn single_line(fonts: &Fonts, text: &str) -> Line {
    let shaped = Shaped::new(fonts, text);
    shaped.line(0..shaped.pieces.len())
}

#[derive(Debug, Clone, Copy)]
struct Column {
    x: f32,
    width: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns and how the cells in them are set.
struct Grid {
    columns: Vec<Column>,
    style: TextStyle,
    pad_x: f32,
    pad_y: f32,
    ruled: bool,
}

impl Grid {
    fn single(style: TextStyle, pad: f32) -> Grid {
        Grid {
            columns: vec![Column {
                x: LEFT,
                width: CONTENT_WIDTH,
            }],
            style,
            pad_x: pad,
            pad_y: pad,
            ruled: false,
        }
    }

    fn text_width(&self, column: usize) -> f32 {
        self.columns
            .get(column)
            .map_or(0.0, |column| column.width - 2.0 * self.pad_x)
    }

    fn height(&self, lines: usize) -> f32 {
        lines as f32 * self.style.line_height + 2.0 * self.pad_y
    }
}

#[derive(Debug, Clone)]
enum Content {
    Lines(Vec<Line>),
    /// A drawn check box, for fonts without ☑ and ☐.
    CheckBox(bool),
}

#[derive(Debug, Clone)]
struct Cell {
    content: Content,
    align: Align,
    fill: Option<u8>,
}

impl Cell {
    fn text(lines: Vec<Line>) -> Cell {
        Cell {
            content: Content::Lines(lines),
            align: Align::Left,
            fill: None,
        }
    }

    fn line_count(&self) -> usize {
        match &self.content {
            Content::Lines(lines) => lines.len(),
            Content::CheckBox(_) => 1,
        }
    }
}

/// The header row a table repeats at the top of each page it runs onto.
struct RepeatedHeader {
    cells: Vec<Cell>,
    lines: usize,
}

pub(crate) fn lay_out(doc: &Document, fonts: &Fonts) -> Vec<Page> {
    let mut composer = Composer {
        fonts,
        pages: vec![Page::default()],
        y: TOP,
        page_top: TOP,
    };
    composer.heading(&doc.title, TITLE);
    composer.gap(BLOCK_GAP);
    for block in &doc.blocks {
        composer.block(block);
    }
    composer.pages
}

struct Composer<'f> {
    fonts: &'f Fonts,
    pages: Vec<Page>,
    /// Where the next thing goes on the current page.
    y: f32,
    /// Where this page's content starts, below a repeated table header.
    page_top: f32,
}

impl Composer<'_> {
    fn block(&mut self, block: &Block) {
        match block {
            Block::Heading { level, text } => {
                let style = HEADINGS[usize::from((*level).clamp(1, 3)) - 1];
                self.gap(style.size * 0.6);
                self.heading(text, style);
                self.gap(style.size * 0.3);
            }
            Block::Paragraph { text } => {
                let shaped = Shaped::new(self.fonts, text);
                if !shaped.is_blank() {
                    let grid = Grid::single(BODY, 0.0);
                    let lines = shaped.lines(BODY.size, grid.text_width(0));
                    self.place_row(&grid, &mut [Cell::text(lines)], None);
                    self.gap(BLOCK_GAP);
                }
            }
            Block::Fields { fields } => self.fields(fields),
            Block::List { ordered, items } => {
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        let marker = if *ordered {
                            format!("{}.", index + 1)
                        } else {
                            "•".to_string()
                        };
                        let marker = Content::Lines(vec![single_line(self.fonts, &marker)]);
                        (marker, item.as_str())
                    })
                    .collect();
                self.list(items);
            }
            Block::Checklist { items } => {
                let glyphs_present = self.fonts.has_glyph('☑') && self.fonts.has_glyph('☐');
                let items = items
                    .iter()
                    .map(|(checked, item)| {
                        let marker = if glyphs_present {
                            let symbol = if *checked { "☑" } else { "☐" };
                            Content::Lines(vec![single_line(self.fonts, symbol)])
                        } else {
                            Content::CheckBox(*checked)
                        };
                        (marker, item.as_str())
                    })
                    .collect();
                self.list(items);
            }
            Block::Table { headers, rows } => self.table(headers, rows),
            Block::Code { text } => {
                let grid = Grid::single(CODE, 5.0);
                let lines = Shaped::new(self.fonts, text).lines(CODE.size, grid.text_width(0));
                let mut cell = Cell::text(lines);
                cell.fill = Some(CODE_FILL);
                self.place_row(&grid, &mut [cell], None);
                self.gap(BLOCK_GAP);
            }
            Block::Rule => {
                self.keep_room(BLOCK_GAP * 2.0);
                let y = self.y + BLOCK_GAP;
                self.page().strokes.push(Stroke::Segment {
                    from: (LEFT, y),
                    to: (LEFT + CONTENT_WIDTH, y),
                });
                self.y = y + BLOCK_GAP;
            }
        }
    }

    /// A title or heading, kept on the page with the line after it.
    fn heading(&mut self, text: &str, style: TextStyle) {
        let grid = Grid::single(style, 0.0);
        let lines = Shaped::new(self.fonts, text).lines(style.size, grid.text_width(0));
        self.keep_room(grid.height(lines.len()) + BODY.line_height);
        self.place_row(&grid, &mut [Cell::text(lines)], None);
    }

    /// Labels in a shaded column, values beside them, all ruled.
    fn fields(&mut self, fields: &[(String, String)]) {
        let shaped: Vec<(Shaped, Shaped)> = fields
            .iter()
            .map(|(label, value)| {
                (
                    Shaped::new(self.fonts, label),
                    Shaped::new(self.fonts, value),
                )
            })
            .collect();
        let pad = 4.0;
        let widest_label = shaped
            .iter()
            .map(|(label, _)| label.natural_width() * BODY.size)
            .fold(0.0, f32::max);
        let label_width =
            (widest_label + 2.0 * pad).clamp(CONTENT_WIDTH * 0.18, CONTENT_WIDTH * 0.35);
        let grid = Grid {
            columns: vec![
                Column {
                    x: LEFT,
                    width: label_width,
                },
                Column {
                    x: LEFT + label_width,
                    width: CONTENT_WIDTH - label_width,
                },
            ],
            style: BODY,
            pad_x: pad,
            pad_y: 2.5,
            ruled: true,
        };
        for (label, value) in &shaped {
            let mut label_cell = Cell::text(label.lines(BODY.size, grid.text_width(0)));
            label_cell.fill = Some(LABEL_FILL);
            let value_cell = Cell::text(value.lines(BODY.size, grid.text_width(1)));
            self.place_row(&grid, &mut [label_cell, value_cell], None);
        }
        self.gap(BLOCK_GAP);
    }

    /// Items after their markers, wrapped lines hanging under the text.
    fn list(&mut self, items: Vec<(Content, &str)>) {
        let indent = 4.0;
        let marker_gap = 5.0;
        let marker_width = items
            .iter()
            .map(|(marker, _)| match marker {
                Content::Lines(lines) => lines.iter().map(|line| line.width).fold(0.0, f32::max),
                Content::CheckBox(_) => 0.8,
            })
            .fold(0.0, f32::max)
            * BODY.size;
        let text_x = LEFT + indent + marker_width + marker_gap;
        let grid = Grid {
            columns: vec![
                Column {
                    x: LEFT + indent,
                    width: marker_width,
                },
                Column {
                    x: text_x,
                    width: LEFT + CONTENT_WIDTH - text_x,
                },
            ],
            style: BODY,
            pad_x: 0.0,
            pad_y: 0.0,
            ruled: false,
        };
        for (marker, text) in items {
            let lines = Shaped::new(self.fonts, text).lines(BODY.size, grid.text_width(1));
            let marker = Cell {
                content: marker,
                align: Align::Right,
                fill: None,
            };
            self.place_row(&grid, &mut [marker, Cell::text(lines)], None);
            self.gap(ITEM_GAP);
        }
        self.gap(BLOCK_GAP - ITEM_GAP);
    }

    fn table(&mut self, headers: &[String], rows: &[Vec<String>]) {
        let column_count = rows.iter().map(Vec::len).fold(headers.len(), usize::max);
        if column_count == 0 {
            return;
        }
        let shape_row = |cells: &[String]| -> Vec<Shaped> {
            (0..column_count)
                .map(|column| Shaped::new(self.fonts, cells.get(column).map_or("", String::as_str)))
                .collect()
        };
        let header = (!headers.is_empty()).then(|| shape_row(headers));
        let body: Vec<Vec<Shaped>> = rows.iter().map(|row| shape_row(row)).collect();

        let pad = 3.0;
        let mut natural = vec![0.0f32; column_count];
        for row in header.iter().chain(&body) {
            for (width, cell) in natural.iter_mut().zip(row) {
                *width = width.max(cell.natural_width() * CELL.size + 2.0 * pad);
            }
        }
        let mut x = LEFT;
        let columns = column_widths(&natural, CONTENT_WIDTH)
            .into_iter()
            .map(|width| {
                let column = Column { x, width };
                x += width;
                column
            })
            .collect();
        let grid = Grid {
            columns,
            style: CELL,
            pad_x: pad,
            pad_y: 2.0,
            ruled: true,
        };
        let set_row = |row: &[Shaped], fill: Option<u8>| -> Vec<Cell> {
            row.iter()
                .enumerate()
                .map(|(column, cell)| {
                    let mut cell = Cell::text(cell.lines(CELL.size, grid.text_width(column)));
                    cell.fill = fill;
                    cell
                })
                .collect()
        };

        let repeated = match header {
            Some(header) => {
                let mut cells = set_row(&header, Some(HEADER_FILL));
                let lines = cells.iter().map(Cell::line_count).max().unwrap_or(1);
                self.keep_room(grid.height(lines) + grid.height(1));
                // A header taller than a third of a page is shown once, not
                // repeated on every page until it leaves no room.
                let repeat = grid.height(lines) <= (BOTTOM - TOP) / 3.0;
                let repeated = repeat.then(|| RepeatedHeader {
                    cells: cells.clone(),
                    lines,
                });
                self.place_row(&grid, &mut cells, None);
                repeated
            }
            None => None,
        };
        for row in &body {
            let mut cells = set_row(row, None);
            self.place_row(&grid, &mut cells, repeated.as_ref());
        }
        self.gap(BLOCK_GAP);
    }

    fn page(&mut self) -> &mut Page {
        if self.pages.is_empty() {
            self.pages.push(Page::default());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn at_page_top(&self) -> bool {
        self.y <= self.page_top + 0.01
    }

    fn gap(&mut self, height: f32) {
        if !self.at_page_top() {
            self.y += height;
        }
    }

    /// Starts a new page unless `height` fits on this one or this one is
    /// still empty.
    fn keep_room(&mut self, height: f32) {
        if self.y + height > BOTTOM && !self.at_page_top() {
            self.new_page(None, None);
        }
    }

    fn new_page(&mut self, grid: Option<&Grid>, header: Option<&RepeatedHeader>) {
        self.pages.push(Page::default());
        self.y = TOP;
        if let (Some(grid), Some(header)) = (grid, header) {
            let mut cells = header.cells.clone();
            self.draw_lines(grid, &mut cells, 0..header.lines);
        }
        self.page_top = self.y;
    }

    /// Places a row, moving it whole to the next page when it fits there
    /// but not here, and splitting it between lines when it fits nowhere.
    fn place_row(&mut self, grid: &Grid, cells: &mut [Cell], header: Option<&RepeatedHeader>) {
        let line_height = grid.style.line_height;
        let total = cells.iter().map(Cell::line_count).max().unwrap_or(0).max(1);
        let header_height = header.map_or(0.0, |header| grid.height(header.lines));
        let fresh_page_room = BOTTOM - TOP - header_height;
        let mut done = 0;
        while done < total {
            let room = BOTTOM - self.y - 2.0 * grid.pad_y;
            let fit = if room > 0.0 {
                ((room + 0.01) / line_height).floor() as usize
            } else {
                0
            };
            let left = total - done;
            if left <= fit {
                self.draw_lines(grid, cells, done..total);
                return;
            }
            if !self.at_page_top() {
                let fits_fresh_page = done == 0 && grid.height(left) <= fresh_page_room;
                if fit == 0 || fits_fresh_page {
                    self.new_page(Some(grid), header);
                    continue;
                }
            }
            // At a page's top every line that fits is placed, at least one,
            // so each page makes progress.
            let take = fit.max(1);
            self.draw_lines(grid, cells, done..done + take);
            done += take;
            self.new_page(Some(grid), header);
        }
    }

    /// Draws `lines` of a row at the current position and moves below them.
    fn draw_lines(&mut self, grid: &Grid, cells: &mut [Cell], lines: Range<usize>) {
        let style = grid.style;
        let height = grid.height(lines.len());
        let (ascent, descent) = self.fonts.ascent_and_descent();
        let baseline_offset =
            (style.line_height - (ascent - descent) * style.size) / 2.0 + ascent * style.size;
        let top = self.y;
        let page = self.page();
        for (cell, column) in cells.iter_mut().zip(&grid.columns) {
            let area = Area {
                x: column.x,
                y: top,
                width: column.width,
                height,
            };
            if let Some(grey) = cell.fill {
                page.fills.push((area, grey));
            }
            if grid.ruled {
                page.strokes.push(Stroke::Frame(area));
            }
            let first_baseline = top + grid.pad_y + baseline_offset;
            match &mut cell.content {
                Content::Lines(cell_lines) => {
                    let end = lines.end.min(cell_lines.len());
                    let start = lines.start.min(end);
                    for (index, line) in cell_lines[start..end].iter_mut().enumerate() {
                        let line = std::mem::take(line);
                        let width = line.width * style.size;
                        let x = match cell.align {
                            Align::Left => column.x + grid.pad_x,
                            Align::Right => column.x + column.width - grid.pad_x - width,
                        };
                        page.texts.push(PlacedLine {
                            x,
                            baseline: first_baseline + index as f32 * style.line_height,
                            size: style.size,
                            line,
                        });
                    }
                }
                Content::CheckBox(checked) if lines.start == 0 => {
                    let side = 0.72 * style.size;
                    let x = column.x + column.width - grid.pad_x - side;
                    let y = first_baseline - side + 0.05 * style.size;
                    page.strokes.push(Stroke::Frame(Area {
                        x,
                        y,
                        width: side,
                        height: side,
                    }));
                    if *checked {
                        let at = |dx: f32, dy: f32| (x + dx * side, y + dy * side);
                        page.strokes.push(Stroke::Segment {
                            from: at(0.2, 0.5),
                            to: at(0.42, 0.75),
                        });
                        page.strokes.push(Stroke::Segment {
                            from: at(0.42, 0.75),
                            to: at(0.82, 0.2),
                        });
                    }
                }
                Content::CheckBox(_) => {}
            }
        }
        self.y = top + height;
    }
}

/// Column widths that add up to `total`: when all columns fit at their
/// natural widths, those widths stretched alike; otherwise a minimum each
/// and the rest shared in proportion to what each column would like.
fn column_widths(natural: &[f32], total: f32) -> Vec<f32> {
    let count = natural.len() as f32;
    let wanted: Vec<f32> = natural.iter().map(|width| width.min(total)).collect();
    let wanted_total: f32 = wanted.iter().sum();
    if wanted_total <= 0.0 {
        return vec![total / count; natural.len()];
    }
    if wanted_total <= total {
        let scale = total / wanted_total;
        return wanted.iter().map(|width| width * scale).collect();
    }
    let minimum = (total / count).min(40.0);
    let shared = total - minimum * count;
    wanted
        .iter()
        .map(|width| minimum + shared * width / wanted_total)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_widths_fill_the_line() {
        for natural in [
            vec![10.0, 20.0],
            vec![300.0, 400.0, 5.0],
            vec![0.0, 0.0],
            vec![1e9, 1.0, 1.0, 1.0],
            vec![3.0; 200],
        ] {
            let widths = column_widths(&natural, 500.0);
            let sum: f32 = widths.iter().sum();
            assert!((sum - 500.0).abs() < 0.01, "{natural:?} → {widths:?}");
            assert!(widths.iter().all(|width| *width > 0.0));
        }
        // When everything fits, no column is narrower than its text.
        let widths = column_widths(&[100.0, 50.0], 500.0);
        assert!(widths[0] >= 100.0 && widths[1] >= 50.0);
    }
}
