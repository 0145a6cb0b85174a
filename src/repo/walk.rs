//! Walking snapshot trees without recursion, and measuring them first.
//!
//! Repository data is not trusted to be shallow or small: a forged tree
//! can nest 100,000 directories deep, or point two entries of each of 32
//! levels at the same subtree (2³² paths in 34 blobs). So every walk keeps
//! its own stack and refuses to go deeper than [`MAX_DEPTH`], and
//! [`measure`] counts what a tree expands to by one pass over its
//! *distinct* subtrees (each loaded once, its count remembered by id), so
//! a command can refuse a snapshot that expands past a limit before it
//! does any work. `ls`, `restore`, `diff` and `find` measure, then walk.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::id::Id;

use super::{Index, Node, NodeKind, Repository, Tree};

/// How deep directories may nest, in levels below the snapshot's root.
/// Linux's `PATH_MAX` (4096 bytes) allows about 2,048 levels of one-letter
/// names, so no real file system comes near; a deeper tree is damage.
pub const MAX_DEPTH: usize = 4096;

/// How many entries (files, directories and others, counted along every
/// path) a snapshot may expand to before commands that visit every path
/// refuse it, unless given a higher `--max-entries`.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000_000;

/// What a walk or a measurement may meet before it refuses the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: usize,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_depth: MAX_DEPTH, max_entries: DEFAULT_MAX_ENTRIES }
    }
}

impl Limits {
    /// The default limits with another entry limit (`--max-entries`).
    pub fn with_max_entries(max_entries: Option<u64>) -> Limits {
        Limits { max_entries: max_entries.unwrap_or(DEFAULT_MAX_ENTRIES), ..Limits::default() }
    }
}

/// What a tree expands to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// Entries along every path, the tree's own included.
    pub entries: u64,
    /// Levels of the deepest path (1 for a tree without subdirectories).
    pub depth: usize,
    /// Distinct trees (each loaded once).
    pub trees: usize,
    /// Distinct subtrees that could not be loaded, counted as empty.
    pub unreadable: usize,
}

/// At most `max` characters of `path`, with `…` in the middle when cut.
pub fn abbreviate(path: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(path);
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.into_owned();
    }
    let half = max / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head}…{tail}")
}

fn too_deep(root: &Id, path: &[u8], limit: usize) -> Error {
    Error::TreeTooDeep { tree: root.short(), path: abbreviate(path, 120), limit }
}

/// One tree being measured: its subdirectories, and the sums so far.
struct MeasureFrame {
    id: Id,
    /// Length of the shared path buffer before this tree's name.
    path_len: usize,
    subdirs: Vec<(Vec<u8>, Id)>,
    next: usize,
    entries: u64,
    /// Levels below this tree (0 when it has no subdirectories).
    below: usize,
}

fn measure_frame(tree: &Tree, id: Id, path_len: usize) -> MeasureFrame {
    let subdirs = tree
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Dir)
        .filter_map(|n| n.subtree.map(|s| (n.name.clone(), s)))
        .collect();
    MeasureFrame { id, path_len, subdirs, next: 0, entries: tree.nodes.len() as u64, below: 0 }
}

/// Counts the entries and levels the tree `root` expands to, loading each
/// distinct tree once: entries(tree) = its nodes plus the entries of each
/// subdirectory's tree, remembered by tree id. Fails with
/// [`Error::TreeTooDeep`] past `limits.max_depth` levels, and with
/// [`Error::TooManyEntries`] as soon as the count passes
/// `limits.max_entries`. A root tree that cannot be loaded fails as
/// [`Repository::load_tree`] does; a subtree that cannot be loaded counts
/// as empty (in [`Extent::unreadable`]), for the walk to name. Memory: one small entry per distinct
/// tree, and the trees along one path.
pub fn measure(repo: &Repository, index: &Index, root: &Id, limits: &Limits) -> Result<Extent> {
    measure_keeping(repo, index, root, limits, &mut TreeCache::with_budget(0), &mut |_| {})
}

/// Decoded trees a [`measure`] loaded, kept within a budget of nodes for
/// the walk that follows it, which takes each once instead of reading,
/// decrypting and decoding it again. A tree shared by several paths is
/// taken by the first and loaded again by the others.
pub struct TreeCache {
    trees: HashMap<Id, Tree>,
    nodes: usize,
    max_nodes: usize,
}

impl TreeCache {
    /// A cache that keeps trees while they hold at most `max_nodes` nodes
    /// in all (a node is a few hundred bytes with its name and chunk ids).
    pub fn with_budget(max_nodes: usize) -> TreeCache {
        TreeCache { trees: HashMap::new(), nodes: 0, max_nodes }
    }

    fn keep(&mut self, id: Id, tree: Tree) {
        if self.nodes + tree.nodes.len() <= self.max_nodes {
            self.nodes += tree.nodes.len();
            self.trees.insert(id, tree);
        }
    }

    /// The tree `id`, if it was kept (and not taken yet).
    pub fn take(&mut self, id: &Id) -> Option<Tree> {
        let t = self.trees.remove(id)?;
        self.nodes -= t.nodes.len();
        Some(t)
    }

    /// Nodes held now.
    pub fn nodes(&self) -> usize {
        self.nodes
    }
}

/// [`measure`], keeping the trees it loads in `cache` (within its budget),
/// and showing each distinct tree it loads to `visit` once.
pub fn measure_keeping(
    repo: &Repository,
    index: &Index,
    root: &Id,
    limits: &Limits,
    cache: &mut TreeCache,
    visit: &mut dyn FnMut(&Tree),
) -> Result<Extent> {
    let mut memo: HashMap<Id, (u64, usize)> = HashMap::new();
    let mut unreadable = 0;
    let mut path: Vec<u8> = Vec::new();
    let root_tree = repo.load_tree(index, root)?;
    let mut stack = vec![measure_frame(&root_tree, *root, 0)];
    visit(&root_tree);
    cache.keep(*root, root_tree);
    let refuse = |entries: u64| Error::TooManyEntries { tree: root.short(), entries, limit: limits.max_entries };
    loop {
        let depth = stack.len();
        let top = stack.last_mut().expect("the stack holds the root until the end");
        if top.entries > limits.max_entries {
            return Err(refuse(top.entries));
        }
        if top.next < top.subdirs.len() {
            let (name, child) = &top.subdirs[top.next];
            let child = *child;
            top.next += 1;
            path.truncate(top.path_len);
            path.push(b'/');
            path.extend_from_slice(name);
            if let Some(&(entries, levels)) = memo.get(&child) {
                if depth + levels > limits.max_depth {
                    return Err(too_deep(root, &path, limits.max_depth));
                }
                top.entries = top.entries.saturating_add(entries);
                top.below = top.below.max(levels);
                continue;
            }
            if depth + 1 > limits.max_depth {
                return Err(too_deep(root, &path, limits.max_depth));
            }
            match repo.load_tree(index, &child) {
                Ok(tree) => {
                    stack.push(measure_frame(&tree, child, path.len()));
                    visit(&tree);
                    cache.keep(child, tree);
                }
                // Counted as empty: whoever walks the tree meets it and
                // names it, and the rest stays usable.
                Err(_) => {
                    memo.insert(child, (0, 0));
                    unreadable += 1;
                }
            }
            continue;
        }
        let done = stack.pop().expect("not empty");
        let levels = done.below + 1;
        memo.insert(done.id, (done.entries, levels));
        match stack.last_mut() {
            Some(parent) => {
                parent.entries = parent.entries.saturating_add(done.entries);
                parent.below = parent.below.max(levels);
            }
            None => {
                let trees = memo.len() - unreadable;
                return Ok(Extent { entries: done.entries, depth: levels, trees, unreadable });
            }
        }
    }
}

/// Depth-first walk of a snapshot tree, with an explicit stack. `visit`
/// gets each node with its path (bytes, `/`-separated, starting with
/// `prefix` then `/`) and returns whether to descend into it (directories
/// only). Trees are loaded as needed, and only the trees along the current
/// path are held, so memory stays flat however many paths the tree has.
/// Past [`MAX_DEPTH`] levels it fails with [`Error::TreeTooDeep`]. It
/// does not bound the number of paths: measure first ([`measure`]).
pub fn walk(
    repo: &Repository,
    index: &Index,
    root: &Id,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &Node) -> Result<bool>,
) -> Result<()> {
    struct Frame {
        tree: Tree,
        next: usize,
        path_len: usize,
    }
    let mut path = prefix.to_vec();
    let mut stack = vec![Frame { tree: repo.load_tree(index, root)?, next: 0, path_len: path.len() }];
    while let Some(top) = stack.last_mut() {
        let Some(n) = top.tree.nodes.get(top.next) else {
            stack.pop();
            continue;
        };
        top.next += 1;
        path.truncate(top.path_len);
        path.push(b'/');
        path.extend_from_slice(&n.name);
        let descend = visit(&path, n)? && n.kind == NodeKind::Dir;
        let Some(sub) = n.subtree.filter(|_| descend) else { continue };
        if stack.len() >= MAX_DEPTH {
            return Err(too_deep(root, &path, MAX_DEPTH));
        }
        let tree = repo.load_tree(index, &sub)?;
        stack.push(Frame { tree, next: 0, path_len: path.len() });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::LocalBackend;
    use crate::crypto::KdfParams;
    use crate::repo::blob::Encoder;
    use crate::repo::writer::RepoWriter;
    use crate::repo::{BlobKind, InitOptions};

    /// A repository in a temporary directory, with a cheap key derivation.
    pub(crate) fn repo() -> (tempfile::TempDir, Repository) {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
        let r = Repository::init(Arc::new(LocalBackend::new(d.path().join("repo"))), b"walk tests", opts).unwrap();
        (d, r)
    }

    /// Stores trees as a backup would, for a test to walk.
    pub(crate) struct Trees {
        writer: Option<RepoWriter>,
        index: Index,
        enc: Encoder,
    }

    impl Trees {
        pub(crate) fn new(repo: &Repository) -> Trees {
            Trees { writer: Some(RepoWriter::new(repo, 1, 64)), index: Index::new(), enc: Encoder::new(1) }
        }

        pub(crate) fn tree(&mut self, nodes: Vec<Node>) -> Id {
            let w = self.writer.as_ref().unwrap();
            w.store_blob(&self.index, BlobKind::Tree, &Tree::new(nodes).encode(), &mut self.enc).unwrap().0
        }

        /// Stores the packs and returns the repository's index.
        pub(crate) fn finish(mut self, repo: &Repository) -> Index {
            self.writer.take().unwrap().finish().unwrap();
            repo.load_index().unwrap()
        }
    }

    pub(crate) fn dir(name: &str, subtree: Id) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
        n.subtree = Some(subtree);
        n
    }

    /// A chain of `levels` directories named `d`, each holding the next;
    /// returns the root tree.
    pub(crate) fn chain(trees: &mut Trees, levels: usize) -> Id {
        let mut t = trees.tree(vec![Node::new(b"leaf".to_vec(), NodeKind::Fifo)]);
        for _ in 0..levels {
            t = trees.tree(vec![dir("d", t)]);
        }
        t
    }

    /// `levels` levels of two directories `a` and `b` that share one
    /// subtree, over one file: 2^levels paths in levels + 1 trees.
    pub(crate) fn doubling(trees: &mut Trees, levels: usize) -> Id {
        let mut t = trees.tree(vec![Node::new(b"f".to_vec(), NodeKind::Fifo)]);
        for _ in 0..levels {
            t = trees.tree(vec![dir("a", t), dir("b", t)]);
        }
        t
    }

    #[test]
    fn a_shared_subtree_is_counted_along_every_path_but_loaded_once() {
        let (_d, repo) = repo();
        let mut trees = Trees::new(&repo);
        let root = doubling(&mut trees, 10);
        let index = trees.finish(&repo);
        let e = measure(&repo, &index, &root, &Limits::default()).unwrap();
        // Level k holds 2 + 2 * (entries of level k - 1), and level 0 one file.
        let expected = (0..10).fold(1u64, |e, _| 2 + 2 * e);
        assert_eq!(e, Extent { entries: expected, depth: 11, trees: 11, unreadable: 0 });
        let mut walked = 0u64;
        walk(&repo, &index, &root, b"", &mut |_, _| {
            walked += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(walked, expected);
    }

    #[test]
    fn a_measure_keeps_each_distinct_tree_once_within_its_budget_for_the_walk_after_it() {
        let (_d, repo) = repo();
        let mut trees = Trees::new(&repo);
        let root = doubling(&mut trees, 10); // 11 distinct trees of 2 nodes (1 at the bottom)
        let index = trees.finish(&repo);
        let mut all = TreeCache::with_budget(usize::MAX);
        let e = measure_keeping(&repo, &index, &root, &Limits::default(), &mut all, &mut |_| {}).unwrap();
        assert_eq!(e.trees, 11);
        assert_eq!(all.nodes(), 21, "each distinct tree kept once");
        let top = all.take(&root).expect("the root was kept");
        assert_eq!(top.nodes.len(), 2);
        assert!(all.take(&root).is_none(), "taken once; a second path loads it again");
        assert_eq!(all.nodes(), 19);
        // A budget smaller than the whole keeps the first trees that fit, never more.
        let mut some = TreeCache::with_budget(5);
        measure_keeping(&repo, &index, &root, &Limits::default(), &mut some, &mut |_| {}).unwrap();
        assert!(some.nodes() <= 5 && some.nodes() > 0, "{}", some.nodes());
        let mut none = TreeCache::with_budget(0);
        measure_keeping(&repo, &index, &root, &Limits::default(), &mut none, &mut |_| {}).unwrap();
        assert_eq!(none.nodes(), 0);
    }

    #[test]
    fn two_to_the_64_paths_are_refused_after_a_few_dozen_trees() {
        let (_d, repo) = repo();
        let mut trees = Trees::new(&repo);
        let root = doubling(&mut trees, 64);
        let index = trees.finish(&repo);
        // The count saturates rather than overflows; the limit refuses it.
        let limits = Limits { max_entries: u64::MAX - 1, ..Limits::default() };
        match measure(&repo, &index, &root, &limits) {
            Err(Error::TooManyEntries { entries, limit, .. }) => {
                assert_eq!((entries, limit), (u64::MAX, u64::MAX - 1))
            }
            other => panic!("not refused: {other:?}"),
        }
        let e = measure(&repo, &index, &root, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("more than 100000000 entries"), "{e}");
    }

    #[test]
    fn a_tree_deeper_than_the_limit_is_refused_by_measure_and_walk() {
        let (_d, repo) = repo();
        let mut trees = Trees::new(&repo);
        let deep = chain(&mut trees, MAX_DEPTH);
        let ok = chain(&mut trees, MAX_DEPTH - 1);
        let index = trees.finish(&repo);
        // MAX_DEPTH - 1 directories and the leaf: MAX_DEPTH levels.
        let e = measure(&repo, &index, &ok, &Limits::default()).unwrap();
        assert_eq!(e.depth, MAX_DEPTH);
        let err = measure(&repo, &index, &deep, &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::TreeTooDeep { limit: MAX_DEPTH, .. }), "{err}");
        assert!(err.to_string().contains("deeper than 4096 levels"), "{err}");
        let err = walk(&repo, &index, &deep, b"", &mut |_, _| Ok(true)).unwrap_err();
        assert!(matches!(err, Error::TreeTooDeep { .. }), "{err}");
        walk(&repo, &index, &ok, b"", &mut |_, _| Ok(true)).unwrap();
    }

    #[test]
    fn a_remembered_subtree_still_counts_its_depth() {
        // `a` is shallow and measured first; `b` reaches the same deep
        // chain below MAX_DEPTH - 10 more levels.
        let (_d, repo) = repo();
        let mut trees = Trees::new(&repo);
        let deep = chain(&mut trees, 20);
        let mut b = deep;
        for _ in 0..MAX_DEPTH - 10 {
            b = trees.tree(vec![dir("x", b)]);
        }
        let root = trees.tree(vec![dir("a", deep), dir("b", b)]);
        let index = trees.finish(&repo);
        let err = measure(&repo, &index, &root, &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::TreeTooDeep { .. }), "{err}");
    }

    #[test]
    fn long_paths_are_abbreviated_in_the_middle() {
        assert_eq!(abbreviate(b"/a/b", 10), "/a/b");
        let long = b"/a".repeat(100);
        let s = abbreviate(&long, 20);
        assert_eq!(s, format!("{}…{}", "/a".repeat(5), "/a".repeat(5)));
    }
}
