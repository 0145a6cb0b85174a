//! Restore planning: from a snapshot tree to a list of things to create.
//!
//! The plan is pure data: which directories, files (with every chunk's
//! place in the file), hard links, symlinks and special files to create,
//! all under relative paths built only from names that passed
//! [`safe_name`]. Names with `/`, NUL, `.`, `..`, empty names, and
//! duplicate names in one directory are refused here, whatever the
//! repository says, so no planned path can leave the target or pass
//! through a restored symlink (invariant 4).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{walk, Index, Node, NodeKind, Repository, Tree};

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

    pub fn included(&self, path: &[u8], name: &[u8]) -> bool {
        self.include.as_ref().is_none_or(|s| matches(s, path, name))
    }
}

struct Planner<'a> {
    repo: &'a Repository,
    index: &'a Index,
    filter: &'a Filter,
    plan: Plan,
    /// The files planned for each hard-link identity `(device, inode)`:
    /// more than one when members disagree about their content.
    linked: HashMap<(u64, u64), Vec<usize>>,
    /// The trees the measure before the plan loaded, taken as planned.
    trees: walk::TreeCache,
}

/// How many nodes of the trees measured before planning are kept for the
/// plan (some tens of MB at most): a tree of up to this size is read,
/// decrypted and decoded once, not twice; a larger one loads the rest again.
const PLAN_TREE_CACHE_NODES: usize = 1 << 17;

/// A directory being planned: its tree and how far through it.
struct DirFrame {
    tree: Tree,
    next: usize,
    /// Length of the snapshot path (in the planner's buffer) of this directory.
    path_len: usize,
    rel: PathBuf,
    /// Whether an include pattern matched this directory or one above it.
    included: bool,
    /// Where this directory's own entry is in `plan.dirs` (none for the root).
    at: Option<usize>,
    /// Whether anything was planned below it.
    any: bool,
    seen: HashSet<Vec<u8>>,
}

/// Plans the restore of the tree `root` within the default limits
/// ([`walk::Limits::default`]).
pub fn plan(repo: &Repository, index: &Index, root: &Id, filter: &Filter) -> Result<Plan> {
    plan_within(repo, index, root, filter, &walk::Limits::default())
}

/// Plans the restore of the tree `root`. The tree is measured first
/// ([`walk::measure`]): one that nests deeper than `limits.max_depth` or
/// expands to more than `limits.max_entries` entries is refused before
/// anything is planned, since the plan holds every path.
pub fn plan_within(
    repo: &Repository,
    index: &Index,
    root: &Id,
    filter: &Filter,
    limits: &walk::Limits,
) -> Result<Plan> {
    let mut trees = walk::TreeCache::with_budget(PLAN_TREE_CACHE_NODES);
    walk::measure_keeping(repo, index, root, limits, &mut trees)?;
    let mut p = Planner { repo, index, filter, plan: Plan::default(), linked: HashMap::new(), trees };
    p.walk(root, limits.max_depth)?;
    Ok(p.plan)
}

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

impl Planner<'_> {
    /// The tree at `path`, or `None` when it cannot be read (then it is
    /// refused, and the rest goes on).
    fn load(&mut self, tree: &Id, path: &[u8]) -> Option<Tree> {
        if let Some(t) = self.trees.take(tree) {
            return Some(t);
        }
        match self.repo.load_tree(self.index, tree) {
            Ok(t) => Some(t),
            Err(e) => {
                self.plan.refused.push((shown(path), e.to_string()));
                None
            }
        }
    }

    /// Plans every entry below `root`, depth first with an explicit stack.
    fn walk(&mut self, root: &Id, max_depth: usize) -> Result<()> {
        let mut path: Vec<u8> = Vec::new();
        let Some(tree) = self.load(root, b"") else { return Ok(()) };
        let frame = |tree, path_len, rel, included, at| DirFrame {
            tree,
            next: 0,
            path_len,
            rel,
            included,
            at,
            any: false,
            seen: HashSet::new(),
        };
        let mut stack = vec![frame(tree, 0, PathBuf::new(), false, None)];
        while let Some(top) = stack.last_mut() {
            let Some(n) = top.tree.nodes.get(top.next) else {
                let done = stack.pop().expect("not empty");
                let (Some(at), Some(parent)) = (done.at, stack.last_mut()) else { continue };
                if done.any || done.included {
                    parent.any = true;
                } else {
                    // Nothing below was included: drop it and everything after it.
                    self.plan.dirs.truncate(at);
                }
                continue;
            };
            top.next += 1;
            path.truncate(top.path_len);
            path.push(b'/');
            path.extend_from_slice(&n.name);
            let shown = String::from_utf8_lossy(&path).into_owned();
            if let Err(why) = safe_name(&n.name) {
                self.plan.refused.push((shown, format!("refused: {why}")));
                continue;
            }
            if !top.seen.insert(n.name.clone()) {
                self.plan.refused.push((shown, "refused: duplicate name in its directory".into()));
                continue;
            }
            if self.filter.excluded(&path, &n.name) {
                continue;
            }
            let included = top.included || self.filter.included(&path, &n.name);
            let child_rel = top.rel.join(OsStr::from_bytes(&n.name));
            match n.kind {
                NodeKind::Dir => {
                    let at = self.plan.dirs.len();
                    self.plan.dirs.push((child_rel.clone(), n.clone()));
                    let sub = n.subtree;
                    if stack.len() >= max_depth {
                        return Err(Error::TreeTooDeep {
                            tree: root.short(),
                            path: walk::abbreviate(&path, 120),
                            limit: max_depth,
                        });
                    }
                    match sub.and_then(|s| self.load(&s, &path)) {
                        Some(tree) => stack.push(frame(tree, path.len(), child_rel, included, Some(at))),
                        None if included => stack.last_mut().expect("not empty").any = true,
                        None => self.plan.dirs.truncate(at),
                    }
                }
                _ if !included => {}
                NodeKind::File => {
                    let n = n.clone();
                    top.any = true;
                    self.file(&n, child_rel, shown);
                }
                _ => {
                    top.any = true;
                    self.plan.others.push((child_rel, n.clone()));
                }
            }
        }
        Ok(())
    }

    /// Plans one file. Its size is what its chunks hold; a node that says
    /// otherwise is damage, and is named. A hard link whose content list
    /// differs from the other members' is damage too: it is restored from
    /// its own content, not linked, and named.
    fn file(&mut self, n: &Node, rel: PathBuf, shown: String) {
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
        if offset != n.size {
            self.plan.refused.push((
                shown.clone(),
                format!(
                    "its size says {} bytes, its chunks hold {offset}: restored from its chunks (the snapshot is damaged)",
                    n.size
                ),
            ));
        }
        let identity = (n.device, n.inode);
        if n.links > 1 {
            if let Some(members) = self.linked.get(&identity) {
                let files = &self.plan.files;
                if let Some(&same) = members.iter().find(|&&i| files[i].node.content == n.content) {
                    self.plan.hardlinks.push((rel, same));
                    return;
                }
                let first = &files[members[0]];
                self.plan.refused.push((
                    shown,
                    format!(
                        "hard link to /{} not made: their contents differ (the snapshot is damaged); restored from \
                         its own content",
                        first.rel.display()
                    ),
                ));
            }
            self.linked.entry(identity).or_default().push(self.plan.files.len());
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
