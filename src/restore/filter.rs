//! Include and exclude patterns for a restore, matched against snapshot
//! paths.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Include and exclude patterns, matched against snapshot paths like
/// `/home/a/file`. A pattern without `/` matches a name anywhere.
pub struct Filter {
    include: Option<(GlobSet, GlobSet)>,
    exclude: (GlobSet, GlobSet),
}

fn build(patterns: &[String]) -> Result<(GlobSet, GlobSet)> {
    let mut by_name = GlobSetBuilder::new();
    let mut by_path = GlobSetBuilder::new();
    for p in patterns {
        let g = GlobBuilder::new(p).literal_separator(p.contains('/')).build().map_err(|e| Error::BadPattern {
            what: "pattern",
            pattern: p.to_string(),
            detail: e.to_string(),
        })?;
        if p.contains('/') {
            by_path.add(g);
        } else {
            by_name.add(g);
        }
    }
    let b = |s: GlobSetBuilder| {
        s.build().map_err(|e| Error::BadPattern {
            what: "patterns",
            pattern: patterns.join(" "),
            detail: e.to_string(),
        })
    };
    Ok((b(by_name)?, b(by_path)?))
}

fn matches(sets: &(GlobSet, GlobSet), path: &[u8], name: &[u8]) -> bool {
    sets.0.is_match(OsStr::from_bytes(name)) || sets.1.is_match(OsStr::from_bytes(path))
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        Ok(Filter { include: if include.is_empty() { None } else { Some(build(include)?) }, exclude: build(exclude)? })
    }

    pub fn excluded(&self, path: &[u8], name: &[u8]) -> bool {
        matches(&self.exclude, path, name)
    }

    /// Whether it lets every entry through (no pattern given).
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.0.is_empty() && self.exclude.1.is_empty()
    }

    pub fn included(&self, path: &[u8], name: &[u8]) -> bool {
        self.include.as_ref().is_none_or(|s| matches(s, path, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_names_and_paths() {
        let f = Filter::new(&["*.c".into()], &["/src/skip/**".into()]).unwrap();
        assert!(f.included(b"/src/a.c", b"a.c"));
        assert!(!f.included(b"/src/a.h", b"a.h"));
        assert!(f.excluded(b"/src/skip/x.c", b"x.c"));
        assert!(!f.excluded(b"/src/keep/x.c", b"x.c"));
        let all = Filter::new(&[], &[]).unwrap();
        assert!(all.included(b"/x", b"x") && !all.excluded(b"/x", b"x"));
    }
}
