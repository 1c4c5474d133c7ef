//! The one font a PDF is set in, read once and shared: its glyph for each
//! character and each glyph's advance, looked up while text is measured,
//! and the font itself, which krilla subsets into every file.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use super::PdfError;

/// Where Debian installs Japanese fonts, best first: IPAex Gothic
/// (fonts-ipaexfont-gothic), whichever Gothic the system chose
/// (fonts-japanese-gothic), then Noto Sans CJK (fonts-noto-cjk; the
/// collection's first face, which is Japanese).
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// A font ready to set reports in. Cloning is cheap: clones share it.
#[derive(Clone)]
pub struct Fonts(Arc<Face>);

struct Face {
    font: krilla::text::Font,
    /// The glyph of each code point of the Basic Multilingual Plane, where
    /// nearly all text is: one index instead of a search. 0 (.notdef) where
    /// the font has none.
    bmp_glyphs: Box<[u32]>,
    /// The glyphs of the other planes, sorted by code point.
    astral_glyphs: Vec<(u32, u32)>,
    /// Each glyph's advance, in ems.
    advances: Box<[f32]>,
    /// Above and below the baseline, in ems; `descent` is negative.
    ascent: f32,
    descent: f32,
}

const BMP_SIZE: usize = 0x1_0000;

impl Fonts {
    /// Reads a TrueType or OpenType font (the first face of a collection).
    pub fn from_bytes(regular: Vec<u8>) -> Result<Fonts, PdfError> {
        let font_ref =
            FontRef::from_index(&regular, 0).map_err(|e| PdfError::BadFont(e.to_string()))?;
        let charmap = font_ref.charmap();
        if !charmap.has_map() {
            return Err(PdfError::BadFont("it maps no Unicode characters".into()));
        }
        let mut bmp_glyphs = vec![0u32; BMP_SIZE].into_boxed_slice();
        let mut astral_glyphs = Vec::new();
        for (code_point, glyph) in charmap.mappings() {
            match bmp_glyphs.get_mut(code_point as usize) {
                Some(slot) => *slot = glyph.to_u32(),
                None => astral_glyphs.push((code_point, glyph.to_u32())),
            }
        }
        astral_glyphs.sort_unstable();

        let metrics = font_ref.metrics(Size::unscaled(), LocationRef::default());
        if metrics.units_per_em == 0 || metrics.glyph_count == 0 {
            return Err(PdfError::BadFont("it has no glyphs or no em size".into()));
        }
        let units_per_em = f32::from(metrics.units_per_em);
        let glyph_metrics = font_ref.glyph_metrics(Size::unscaled(), LocationRef::default());
        let advances = (0..u32::from(metrics.glyph_count))
            .map(|glyph| {
                glyph_metrics
                    .advance_width(skrifa::GlyphId::new(glyph))
                    .unwrap_or(0.0)
                    / units_per_em
            })
            .collect();
        let (ascent, descent) = (
            metrics.ascent / units_per_em,
            metrics.descent / units_per_em,
        );

        let font = krilla::text::Font::new(regular.into(), 0)
            .ok_or_else(|| PdfError::BadFont("it has no outlines to embed".into()))?;
        Ok(Fonts(Arc::new(Face {
            font,
            bmp_glyphs,
            astral_glyphs,
            advances,
            // A font whose vertical metrics are missing still sets lines.
            ascent: if ascent > 0.0 { ascent } else { 0.88 },
            descent: if descent < 0.0 { descent } else { -0.12 },
        })))
    }

    /// Reads one font file.
    pub fn load(path: impl AsRef<Path>) -> Result<Fonts, PdfError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PdfError::FontFile {
            path: path.to_path_buf(),
            source,
        })?;
        Fonts::from_bytes(bytes)
    }

    /// Reads the first of [`FONT_PATHS`] that is installed and usable.
    pub fn load_installed() -> Result<Fonts, PdfError> {
        let mut last_error = None;
        for path in FONT_PATHS {
            match Fonts::load(path) {
                Ok(fonts) => return Ok(fonts),
                Err(PdfError::FontFile { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or(PdfError::NoFontInstalled))
    }

    pub(crate) fn font(&self) -> &krilla::text::Font {
        &self.0.font
    }

    /// The glyph that shows `c`, or 0 (.notdef) when the font has none.
    pub(crate) fn glyph(&self, c: char) -> u32 {
        let code_point = u32::from(c);
        match self.0.bmp_glyphs.get(code_point as usize) {
            Some(&glyph) => glyph,
            None => self
                .0
                .astral_glyphs
                .binary_search_by_key(&code_point, |&(point, _)| point)
                .map_or(0, |found| self.0.astral_glyphs[found].1),
        }
    }

    pub(crate) fn has_glyph(&self, c: char) -> bool {
        self.glyph(c) != 0
    }

    /// A glyph's advance in ems.
    pub(crate) fn advance(&self, glyph: u32) -> f32 {
        self.0.advances.get(glyph as usize).copied().unwrap_or(0.0)
    }

    /// How far a line's glyphs reach above and below its baseline, in ems.
    pub(crate) fn ascent_and_descent(&self) -> (f32, f32) {
        (self.0.ascent, self.0.descent)
    }
}

impl fmt::Debug for Fonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fonts")
            .field("glyphs", &self.0.advances.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fonts_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Fonts>();
    }

    #[test]
    fn garbage_is_not_a_font() {
        assert!(matches!(
            Fonts::from_bytes(b"not a font at all".to_vec()),
            Err(PdfError::BadFont(_))
        ));
        assert!(matches!(
            Fonts::from_bytes(Vec::new()),
            Err(PdfError::BadFont(_))
        ));
        assert!(matches!(
            Fonts::load("/nonexistent/font.ttf"),
            Err(PdfError::FontFile { .. })
        ));
    }
}
