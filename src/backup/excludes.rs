//! Which paths a backup leaves out (globs, and directories holding a
//! marker file), the exclude files that list them, and the absolute,
//! lexically normal form of the paths it is given.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Which paths to leave out.
pub struct Excludes {
    by_name: GlobSet,
    by_path: GlobSet,
    if_present: Vec<String>,
}

impl Excludes {
    /// Patterns without a `/` match a name anywhere; patterns with one
    /// match the whole absolute path (`**` crosses directories).
    pub fn new(patterns: &[String], if_present: &[String]) -> Result<Excludes> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let bad = |e: globset::Error| Error::BadPattern {
                what: "exclude pattern",
                pattern: p.to_string(),
                detail: e.to_string(),
            };
            if p.contains('/') {
                let glob = globset::GlobBuilder::new(p).literal_separator(true).build().map_err(bad)?;
                by_path.add(glob);
                if !p.ends_with("/**") {
                    by_path.add(
                        globset::GlobBuilder::new(&format!("{p}/**")).literal_separator(true).build().map_err(bad)?,
                    );
                }
            } else {
                by_name.add(Glob::new(p).map_err(bad)?);
            }
        }
        let bad = |e: globset::Error| Error::BadPattern {
            what: "exclude patterns",
            pattern: patterns.join(" "),
            detail: e.to_string(),
        };
        Ok(Excludes {
            by_name: by_name.build().map_err(bad)?,
            by_path: by_path.build().map_err(bad)?,
            if_present: if_present.to_vec(),
        })
    }

    /// Whether a directory holding `names` is left out: one of them is a
    /// marker file (`--exclude-if-present`).
    pub fn marks_excluded(&self, names: &[std::ffi::OsString]) -> bool {
        self.if_present.iter().any(|m| names.iter().any(|n| n.as_bytes() == m.as_bytes()))
    }

    pub fn excluded(&self, path: &Path, name: &[u8]) -> bool {
        self.by_name.is_match(OsStr::from_bytes(name)) || self.by_path.is_match(path)
    }
}

/// Reads patterns from an exclude file: one per line, `#` starts a comment.
pub fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// Makes a path absolute and lexically normal (no `.`/`..`), without
/// resolving symlinks.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}
