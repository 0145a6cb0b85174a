//! Pages for people, shared by the drill reports (`crate::drill::report`)
//! and the compliance report (`crate::report`): one HTML page skeleton
//! ([`html::begin`], [`html::end`]: self-contained, with the style inline,
//! no script and nothing to fetch), one way to lay out tables in HTML
//! ([`html::Table`]) and in Markdown ([`markdown::Table`]), with cells
//! escaped by [`crate::text`], and one file writer that replaces a report
//! by rename ([`write_file`]).

mod file;
pub mod html;
pub mod markdown;

pub use file::{write_file, write_user_file};

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers: right-aligned, in tabular figures.
    Right,
}

/// A column of a table: its title (plain text), alignment, and in HTML a
/// class for its cells.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub title: &'a str,
    pub align: Align,
    pub class: &'a str,
}

impl<'a> Column<'a> {
    /// The same column, its HTML cells of class `class`.
    pub const fn class(self, class: &'a str) -> Column<'a> {
        Column { class, ..self }
    }
}

/// A left-aligned column.
pub const fn col(title: &str) -> Column<'_> {
    Column { title, align: Align::Left, class: "" }
}

/// A right-aligned (numeric) column.
pub const fn num(title: &str) -> Column<'_> {
    Column { title, align: Align::Right, class: "" }
}
