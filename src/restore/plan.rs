//! Restore planning: from a snapshot tree to a list of things to create.
//!
//! The plan is pure data: which directories, files (with every chunk's
//! place in the file), hard links, symlinks and special files to create,
//! all under relative paths built only from names that passed
//! [`safe_name`]. Names with `/`, NUL, `.`, `..`, empty names, and
//! duplicate names in one directory are refused here, whatever the
//! repository says, so no planned path can leave the target or pass
//! through a restored symlink (invariant 4).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{Index, Node, NodeKind, Repository};

/// One chunk's place in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: Id,
    pub offset: u64,
    pub length: u32,
}

#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub rel: PathBuf,
    pub node: Node,
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Directories, parents before children.
    pub dirs: Vec<(PathBuf, Node)>,
    pub files: Vec<PlannedFile>,
    /// `(path, index into files)`: hard links to an earlier file.
    pub hardlinks: Vec<(PathBuf, usize)>,
    /// Symlinks, FIFOs, devices, sockets.
    pub others: Vec<(PathBuf, Node)>,
    /// Entries refused while planning, with the reason.
    pub refused: Vec<(String, String)>,
    pub total_bytes: u64,
}

/// Whether a name from a tree may be created in a directory.
pub fn safe_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        Err("empty name")
    } else if name == b"." || name == b".." {
        Err("name is `.` or `..`")
    } else if name.contains(&b'/') {
        Err("name contains `/`")
    } else if name.contains(&0) {
        Err("name contains a NUL byte")
    } else {
        Ok(())
    }
}

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
        let g = GlobBuilder::new(p)
            .literal_separator(p.contains('/'))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("pattern `{p}`: {e}")))?;
        if p.contains('/') {
            by_path.add(g);
        } else {
            by_name.add(g);
        }
    }
    let b = |s: GlobSetBuilder| s.build().map_err(|e| Error::InvalidArgument(e.to_string()));
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

    pub fn included(&self, path: &[u8], name: &[u8]) -> bool {
        self.include.as_ref().is_none_or(|s| matches(s, path, name))
    }
}

struct Planner<'a> {
    repo: &'a Repository,
    index: &'a Index,
    filter: &'a Filter,
    plan: Plan,
    linked: HashMap<(u64, u64), usize>,
}

/// Plans the restore of the tree `root`, or of the subtree at `subpath`.
pub fn plan(repo: &Repository, index: &Index, root: &Id, filter: &Filter) -> Result<Plan> {
    let mut p = Planner { repo, index, filter, plan: Plan::default(), linked: HashMap::new() };
    p.dir(root, b"", &PathBuf::new(), false)?;
    Ok(p.plan)
}

impl Planner<'_> {
    /// Plans a directory's entries; returns whether anything was planned.
    fn dir(&mut self, tree: &Id, path: &[u8], rel: &std::path::Path, inherited: bool) -> Result<bool> {
        let t = match self.repo.load_tree(self.index, tree) {
            Ok(t) => t,
            Err(e) => {
                let shown = if path.is_empty() { "/".to_string() } else { String::from_utf8_lossy(path).into_owned() };
                self.plan.refused.push((shown, e.to_string()));
                return Ok(false);
            }
        };
        let mut any = false;
        let mut seen = std::collections::HashSet::new();
        for n in &t.nodes {
            let mut p = path.to_vec();
            p.push(b'/');
            p.extend_from_slice(&n.name);
            let shown = String::from_utf8_lossy(&p).into_owned();
            if let Err(why) = safe_name(&n.name) {
                self.plan.refused.push((shown, format!("refused: {why}")));
                continue;
            }
            if !seen.insert(n.name.as_slice()) {
                self.plan.refused.push((shown, "refused: duplicate name in its directory".into()));
                continue;
            }
            if self.filter.excluded(&p, &n.name) {
                continue;
            }
            let included = inherited || self.filter.included(&p, &n.name);
            let child_rel = rel.join(OsStr::from_bytes(&n.name));
            match n.kind {
                NodeKind::Dir => {
                    let at = self.plan.dirs.len();
                    self.plan.dirs.push((child_rel.clone(), n.clone()));
                    let sub = match n.subtree {
                        Some(s) => self.dir(&s, &p, &child_rel, included)?,
                        None => false,
                    };
                    if sub || included {
                        any = true;
                    } else {
                        // Nothing below was included: drop it and everything after it.
                        self.plan.dirs.truncate(at);
                    }
                }
                _ if !included => {}
                NodeKind::File => {
                    any = true;
                    self.file(n, child_rel, shown);
                }
                _ => {
                    any = true;
                    self.plan.others.push((child_rel, n.clone()));
                }
            }
        }
        Ok(any)
    }

    fn file(&mut self, n: &Node, rel: PathBuf, shown: String) {
        if n.links > 1 {
            if let Some(&first) = self.linked.get(&(n.device, n.inode)) {
                self.plan.hardlinks.push((rel, first));
                return;
            }
        }
        let mut chunks = Vec::with_capacity(n.content.len());
        let mut offset = 0u64;
        for id in &n.content {
            match self.index.get(id) {
                Some(l) => {
                    chunks.push(ChunkRef { id: *id, offset, length: l.raw_length });
                    offset += l.raw_length as u64;
                }
                None => {
                    self.plan.refused.push((shown, format!("chunk {} is missing from the repository", id.short())));
                    return;
                }
            }
        }
        if n.links > 1 {
            self.linked.insert((n.device, n.inode), self.plan.files.len());
        }
        self.plan.total_bytes += offset;
        self.plan.files.push(PlannedFile { rel, node: n.clone(), chunks, size: offset });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(safe_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in [&b"a"[..], b"...", b"a\nb", b"\xff\xfe", &[b'x'; 255]] {
            assert!(safe_name(good).is_ok(), "{good:?} refused");
        }
    }

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
