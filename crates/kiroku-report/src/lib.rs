//! Reports built from an incident's data and rendered to files.

pub mod communication;
pub mod db_incident;
pub mod document;
#[cfg(test)]
mod golden;
pub mod html;
pub mod input;
pub mod markdown;
pub mod pdf;
pub mod postmortem;
pub mod regulator;
pub mod shimatsusho;
#[cfg(test)]
mod test_support;
mod text;

pub use document::{Block, Document, Lang};
pub use input::{Gravity, Kind, ObligationLine, Pattern, ReportInput};
pub use pdf::{Fonts, PdfError};

/// The document of report `kind`; `pattern` picks the 始末書's pattern
/// (its category's when `None`), `lang` the postmortem's language (the
/// 始末書 and the DB incident report are Japanese forms).
pub fn build(
    kind: Kind,
    input: &ReportInput<'_>,
    pattern: Option<Pattern>,
    lang: Lang,
) -> Document {
    match kind {
        Kind::Shimatsusho => shimatsusho::build(
            input,
            pattern.unwrap_or_else(|| Pattern::of_category(&input.incident.category)),
        ),
        Kind::DbIncident => db_incident::build(input),
        Kind::Postmortem => postmortem::build(input, lang),
        Kind::AppiReport => regulator::appi(input),
        Kind::GdprNotification => regulator::gdpr(input),
    }
}
