//! Markdown tables (GitHub style).

use std::fmt::Write;

use super::{Align, Column};
pub use crate::text::markdown_cell as cell;

/// A Markdown table. Cells are Markdown: escape text with [`cell`], so a
/// `|` or a line break in a value cannot break the table.
pub struct Table {
    md: String,
}

impl Table {
    pub fn new(columns: &[Column<'_>]) -> Table {
        let mut md = String::from("|");
        for c in columns {
            let _ = write!(md, " {} |", cell(c.title));
        }
        md.push_str("\n|");
        for c in columns {
            md.push_str(match c.align {
                Align::Left => " --- |",
                Align::Right => " ---: |",
            });
        }
        md.push('\n');
        Table { md }
    }

    pub fn row(&mut self, cells: &[String]) {
        self.md.push('|');
        for c in cells {
            let _ = write!(self.md, " {c} |");
        }
        self.md.push('\n');
    }

    /// The table, ending with a line break.
    pub fn finish(self) -> String {
        self.md
    }
}

/// A table of labels and values without a header row's titles.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let mut md = String::from("| | |\n| --- | --- |\n");
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::super::{col, num};
    use super::*;

    #[test]
    fn tables_have_a_header_alignment_and_escaped_cells() {
        let mut t = Table::new(&[col("path"), num("bytes")]);
        t.row(&[cell("a|b\nc"), "3".into()]);
        assert_eq!(t.finish(), "| path | bytes |\n| --- | ---: |\n| a\\|b c | 3 |\n");
        assert_eq!(key_values(&[("host", "h".into())]), "| | |\n| --- | --- |\n| host | h |\n");
    }
}
