//! The HTML page skeleton and tables.

use std::fmt::Write;

use super::{Align, Column};
pub use crate::text::html_escape as esc;

/// Opens a self-contained page: doctype, UTF-8, a viewport for phones,
/// the generator, the title (escaped here) and the inline `style`; then
/// `<body>`.
pub fn begin(out: &mut String, title: &str, style: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"cairn {}\">\
         <title>{}</title><style>{style}</style></head><body>\n",
        esc(crate::VERSION),
        esc(title)
    );
}

/// Closes the page [`begin`] opened.
pub fn end(out: &mut String) {
    out.push_str("</body></html>\n");
}

/// The `class` attribute of a column's cells (the head's: `with` false).
fn class_attr(c: &Column<'_>, with: bool) -> String {
    let mut classes = Vec::new();
    if c.align == Align::Right {
        classes.push("num");
    }
    if with && !c.class.is_empty() {
        classes.push(c.class);
    }
    if classes.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", classes.join(" "))
    }
}

/// An HTML table, its head written at once and its rows as they come.
/// Cells are HTML: escape text with [`esc`].
pub struct Table {
    html: String,
    /// The `class` attribute of each column's cells.
    cells: Vec<String>,
}

impl Table {
    /// A table with `class` (none when empty) and these columns.
    pub fn new(class: &str, columns: &[Column<'_>]) -> Table {
        let mut html = if class.is_empty() { "<table>".to_string() } else { format!("<table class=\"{class}\">") };
        html.push_str("<thead><tr>");
        for c in columns {
            let _ = write!(html, "<th{}>{}</th>", class_attr(c, false), esc(c.title));
        }
        html.push_str("</tr></thead><tbody>");
        Table { html, cells: columns.iter().map(|c| class_attr(c, true)).collect() }
    }

    /// A row; `class` (none when empty) goes on the `<tr>`.
    pub fn row_with_class(&mut self, class: &str, cells: &[String]) {
        if class.is_empty() {
            self.html.push_str("<tr>");
        } else {
            let _ = write!(self.html, "<tr class=\"{class}\">");
        }
        for (i, cell) in cells.iter().enumerate() {
            let class = self.cells.get(i).map(String::as_str).unwrap_or("");
            let _ = write!(self.html, "<td{class}>{cell}</td>");
        }
        self.html.push_str("</tr>");
    }

    pub fn row(&mut self, cells: &[String]) {
        self.row_with_class("", cells);
    }

    /// A row of text across every column, muted (what a cut list left out).
    pub fn note(&mut self, text: &str) {
        let _ = write!(self.html, "<tr><td colspan=\"{}\" class=\"muted\">{}</td></tr>", self.cells.len(), esc(text));
    }

    /// The table's HTML.
    pub fn finish(mut self) -> String {
        self.html.push_str("</tbody></table>");
        self.html
    }
}

/// A two-column table of labels and values, both HTML, with `class`.
pub fn key_values(class: &str, rows: &[(&str, String)]) -> String {
    let mut html = if class.is_empty() { "<table>".to_string() } else { format!("<table class=\"{class}\">") };
    for (k, v) in rows {
        let _ = write!(html, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    html.push_str("</table>");
    html
}

#[cfg(test)]
mod tests {
    use super::super::{col, num};
    use super::*;

    #[test]
    fn a_page_is_self_contained_and_its_title_escaped() {
        let mut s = String::new();
        begin(&mut s, "a <b> & c", "body{margin:0}");
        s.push_str("<p>x</p>");
        end(&mut s);
        assert!(s.starts_with("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"), "{s}");
        assert!(s.contains("<title>a &lt;b&gt; &amp; c</title><style>body{margin:0}</style></head><body>\n<p>x</p>"));
        assert!(s.ends_with("</body></html>\n"));
        assert!(!s.contains("<script") && !s.contains("src=") && !s.contains("href="), "{s}");
    }

    #[test]
    fn tables_escape_titles_align_numbers_and_note_what_was_left_out() {
        let mut t = Table::new("runs", &[col("a<b"), num("n"), col("e").class("error")]);
        t.row(&["x".into(), "1".into(), "e1".into()]);
        t.row_with_class("red", &["y".into(), "2".into(), "e2".into()]);
        t.note("… and 3 more");
        assert_eq!(
            t.finish(),
            "<table class=\"runs\"><thead><tr><th>a&lt;b</th><th class=\"num\">n</th><th>e</th></tr></thead><tbody>\
             <tr><td>x</td><td class=\"num\">1</td><td class=\"error\">e1</td></tr>\
             <tr class=\"red\"><td>y</td><td class=\"num\">2</td><td class=\"error\">e2</td></tr>\
             <tr><td colspan=\"3\" class=\"muted\">… and 3 more</td></tr></tbody></table>"
        );
        assert_eq!(key_values("", &[("k", "<b>v</b>".into())]), "<table><tr><th>k</th><td><b>v</b></td></tr></table>");
    }
}
