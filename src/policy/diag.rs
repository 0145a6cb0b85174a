//! Diagnostics: one problem in a policy file, located by line and column.
//!
//! Every problem the loader finds becomes a [`Diagnostic`]; none stops the
//! search for the others. Positions come from the byte spans the TOML
//! parser keeps for every key and value, turned into a 1-based line and a
//! 1-based column counted in characters (what editors show). The rendered
//! form is the one compilers use, so editors and CI annotate it:
//!
//! ```text
//! web.toml:7:12: schedule.backup: bad cron expression "61 * * * *": minute 61 is out of range 0-59
//! ```
//!
//! Messages never repeat a value that may be a secret: an inline password
//! is reported by its key only.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as it was named to the loader.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The field at fault, as a dotted path (`schedule.backup`,
    /// `source.paths[2]`), or empty for the file as a whole.
    pub field: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Turns byte offsets of one source text into lines and columns.
pub(crate) struct Locator<'s> {
    src: &'s str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl<'s> Locator<'s> {
    pub(crate) fn new(src: &'s str) -> Locator<'s> {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Locator { src, line_starts }
    }

    /// 1-based line of a byte offset (clamped to the end).
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset.min(self.src.len()))
    }

    /// 1-based (line, column) of a byte offset; offsets past the end or
    /// inside a character are clamped.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.src[start..offset].chars().count() + 1)
    }
}

/// Collects the diagnostics of one file.
pub(crate) struct Sink<'s> {
    file: &'s Path,
    loc: Locator<'s>,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(file: &'s Path, src: &'s str) -> Sink<'s> {
        Sink { file, loc: Locator::new(src), diags: Vec::new() }
    }

    pub(crate) fn src(&self) -> &'s str {
        self.loc.src
    }

    /// Records a problem at byte `offset`.
    pub(crate) fn error(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = self.loc.position(offset);
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// The diagnostics in file order.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| (d.line, d.column));
        self.diags.dedup();
        self.diags
    }
}

/// A diagnostic about a whole file (unreadable, not TOML…), at 1:1.
pub(crate) fn file_error(file: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic { file: file.to_path_buf(), line: 1, column: 1, field: String::new(), message: message.into() }
}

/// Levenshtein distance between two short strings.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The known name closest to `word`, when it is close enough to be a typo:
/// at most a third of the word's length in edits (at least one).
pub fn did_you_mean<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (word.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(&word.to_ascii_lowercase(), k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let l = Locator::new("ab\nçd = 1\n\nx");
        assert_eq!(l.position(0), (1, 1));
        assert_eq!(l.position(2), (1, 3));
        assert_eq!(l.position(3), (2, 1));
        // `ç` is two bytes but one column.
        assert_eq!(l.position(5), (2, 2));
        assert_eq!(l.position(11), (3, 1));
        assert_eq!(l.position(12), (4, 1));
        assert_eq!(l.position(99), (4, 2));
    }

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("keep_daily", "keep_daily", 0),
            ("keep_dialy", "keep_daily", 2),
            ("keep_daly", "keep_daily", 1),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
            ("abc", "", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} / {b}");
        }
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let known = ["keep_last", "keep_daily", "keep_weekly", "keep_within"];
        assert_eq!(did_you_mean("keep_daly", &known), Some("keep_daily"));
        assert_eq!(did_you_mean("keep_dialy", &known), Some("keep_daily"));
        assert_eq!(did_you_mean("Keep_Weekly", &known), Some("keep_weekly"));
        assert_eq!(did_you_mean("retain", &known), None);
        assert_eq!(did_you_mean("x", &known), None);
    }
}
