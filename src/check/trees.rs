//! The structural check of snapshot trees.
//!
//! Each distinct tree is loaded and verified once, by id, whatever the
//! number of snapshots and paths that reach it (a forged tree can make
//! 2³² paths out of 33 trees): its chunks must be indexed, each file's
//! size must equal the sum of its chunks, and each directory must have a
//! subtree. What a later pass needs is kept per tree as [`Facts`]: its
//! subdirectories, its hard-link members and whether damage lies below.
//! Then, per snapshot, without loading any tree again:
//! - the depth: past [`MAX_DEPTH`] levels the snapshot is damage;
//! - hard links: members of one `(device, inode)` must share one content list;
//! - the files that damage affects, by path, at most
//!   [`AFFECTED_PER_SNAPSHOT`] per snapshot.
//!
//! Every traversal keeps its own stack: no recursion on repository data.

use std::collections::{HashMap, HashSet};

use crate::id::Id;
use crate::repo::keyset::{key_of, Key};
use crate::repo::walk::{abbreviate, MAX_DEPTH};
use crate::repo::{Index, NodeKind, Repository, Tree};

use super::{Affected, CheckReport, Problem};

/// The most files one snapshot lists as affected; a snapshot with more
/// is named in [`CheckReport::affected_not_listed`].
pub const AFFECTED_PER_SNAPSHOT: usize = 1000;

/// A hard-link member: its name in its tree and its identity.
struct Link {
    name: Vec<u8>,
    identity: (u64, u64),
    /// The BLAKE3 hash of its content list.
    content: Id,
}

/// What the per-snapshot passes need to know of one verified tree.
#[derive(Default)]
struct Facts {
    subdirs: Vec<(Vec<u8>, Id)>,
    links: Vec<Link>,
    /// Files of this tree whose content is damaged, missing or of the wrong size.
    damaged_files: Vec<Vec<u8>>,
    /// Levels of the deepest path below and including this tree.
    levels: usize,
    /// Whether damage lies in this tree or below it.
    damage_below: bool,
    /// Whether hard-link members lie in this tree or below it.
    links_below: bool,
}

/// A tree known to the check: verified, or unusable (not indexed, in a
/// damaged pack, or not decodable; reported where it was found).
enum Known {
    Good(Facts),
    Bad,
}

/// The damage found by reading packs, which trees and files inherit.
pub struct Damage<'a> {
    /// Packs missing from storage or of the wrong size, by index number.
    pub missing_packs: &'a HashSet<u32>,
    /// Blobs read damaged, by key (the index keeps no full id).
    pub bad_blobs: &'a HashSet<Key>,
}

impl Damage<'_> {
    /// Whether a blob is unusable: read damaged, or in a missing pack.
    fn hit(&self, index: &Index, id: &Id) -> bool {
        self.bad_blobs.contains(&key_of(id)) || index.get(id).is_some_and(|l| self.missing_packs.contains(&l.pack))
    }
}

pub struct TreeCheck<'a> {
    repo: &'a Repository,
    index: &'a Index,
    damage: Damage<'a>,
    known: HashMap<Id, Known>,
    /// Objects already reported, so that each is reported once.
    reported: HashSet<Id>,
}

fn content_hash(content: &[Id]) -> Id {
    let mut h = blake3::Hasher::new();
    for c in content {
        h.update(c.as_bytes());
    }
    Id(*h.finalize().as_bytes())
}

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// One tree of a per-snapshot walk: how far through its subdirectories.
struct Frame {
    id: Id,
    path_len: usize,
    next: usize,
}

impl<'a> TreeCheck<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, damage: Damage<'a>) -> TreeCheck<'a> {
        TreeCheck { repo, index, damage, known: HashMap::new(), reported: HashSet::new() }
    }

    /// Checks the snapshot `sid` whose root tree is `root`.
    pub fn snapshot(&mut self, r: &mut CheckReport, sid: &Id, root: &Id) {
        if let Err(deep) = self.verify(r, sid, root) {
            r.errors.push(Problem { object: format!("snapshots/{sid}"), message: deep });
            return;
        }
        match &self.known[root] {
            Known::Bad => {
                self.affect(r, sid, "/".into());
            }
            Known::Good(f) => {
                let (links, damage) = (f.links_below, f.damage_below);
                if links {
                    self.hard_links(r, sid, root);
                }
                if damage {
                    self.affected(r, sid, root);
                }
            }
        }
    }

    fn affect(&self, r: &mut CheckReport, sid: &Id, path: String) {
        r.affected.push(Affected { snapshot: sid.short(), path });
    }

    /// Verifies every tree below `root` not verified yet, children before
    /// parents (an explicit stack, at most [`MAX_DEPTH`] trees high).
    /// Fails, with the message, when the snapshot nests too deep.
    fn verify(&mut self, r: &mut CheckReport, sid: &Id, root: &Id) -> Result<(), String> {
        let too_deep = |path: &[u8]| {
            crate::Error::TreeTooDeep { tree: root.short(), path: abbreviate(path, 120), limit: MAX_DEPTH }.to_string()
        };
        let mut path: Vec<u8> = Vec::new();
        if !self.load(r, sid, root, b"") {
            return Ok(());
        }
        let mut stack = vec![Frame { id: *root, path_len: 0, next: 0 }];
        while let Some(top) = stack.last_mut() {
            let Some(Known::Good(facts)) = self.known.get(&top.id) else { unreachable!("only good trees are pushed") };
            if let Some((name, child)) = facts.subdirs.get(top.next) {
                let child = *child;
                top.next += 1;
                path.truncate(top.path_len);
                path.push(b'/');
                path.extend_from_slice(name);
                let depth = stack.len();
                match self.known.get(&child) {
                    Some(Known::Good(f)) if depth + f.levels > MAX_DEPTH => return Err(too_deep(&path)),
                    Some(_) => {}
                    None if depth + 1 > MAX_DEPTH => return Err(too_deep(&path)),
                    None => {
                        if self.load(r, sid, &child, &path) {
                            stack.push(Frame { id: child, path_len: path.len(), next: 0 });
                        }
                    }
                }
                continue;
            }
            // Every subdirectory is known: sum up what lies below.
            let done = stack.pop().expect("not empty");
            let Some(Known::Good(facts)) = self.known.get(&done.id) else { unreachable!() };
            let (mut levels, mut damage, mut links) = (0, false, false);
            for (_, child) in &facts.subdirs {
                match &self.known[child] {
                    Known::Good(f) => {
                        levels = levels.max(f.levels);
                        damage |= f.damage_below;
                        links |= f.links_below;
                    }
                    Known::Bad => damage = true,
                }
            }
            let Some(Known::Good(facts)) = self.known.get_mut(&done.id) else { unreachable!() };
            facts.levels = levels + 1;
            facts.damage_below |= damage;
            facts.links_below |= links;
        }
        Ok(())
    }

    /// Loads and verifies one tree met at `path` of snapshot `sid`, and
    /// records what it is; returns whether it is good.
    fn load(&mut self, r: &mut CheckReport, sid: &Id, tid: &Id, path: &[u8]) -> bool {
        if let Some(k) = self.known.get(tid) {
            return matches!(k, Known::Good(_));
        }
        let at = shown(path);
        // Blobs are deduplicated by id whatever their kind, so a tree may
        // live in a data pack (its bytes were seen as file content first).
        let tree = if !self.index.contains(tid) {
            Err(format!("referenced by {at} of snapshot {} but not indexed", sid.short()))
        } else if self.damage.hit(self.index, tid) {
            // Its pack is already reported.
            Err(String::new())
        } else {
            self.repo.load_tree(self.index, tid).map_err(|e| e.to_string())
        };
        match tree {
            Ok(t) => {
                r.trees += 1;
                let facts = self.facts(r, sid, tid, &t, path);
                self.known.insert(*tid, Known::Good(facts));
                true
            }
            Err(message) => {
                if !message.is_empty() && self.reported.insert(*tid) {
                    r.errors.push(Problem { object: format!("tree {tid}"), message });
                }
                self.known.insert(*tid, Known::Bad);
                false
            }
        }
    }

    /// Verifies the nodes of one tree; reports what is wrong with them.
    fn facts(&mut self, r: &mut CheckReport, sid: &Id, tid: &Id, tree: &Tree, path: &[u8]) -> Facts {
        let mut f = Facts::default();
        for n in &tree.nodes {
            let p = format!("{}/{}", String::from_utf8_lossy(path), n.name_lossy());
            match n.kind {
                NodeKind::Dir => match n.subtree {
                    Some(s) => f.subdirs.push((n.name.clone(), s)),
                    None => r.errors.push(Problem {
                        object: format!("tree {tid}"),
                        message: format!("directory {p} has no subtree"),
                    }),
                },
                NodeKind::File => {
                    if self.file_is_damaged(r, sid, tid, n, &p) {
                        f.damaged_files.push(n.name.clone());
                    }
                    if n.links > 1 {
                        f.links.push(Link {
                            name: n.name.clone(),
                            identity: (n.device, n.inode),
                            content: content_hash(&n.content),
                        });
                    }
                }
                _ => {}
            }
        }
        f.damage_below = !f.damaged_files.is_empty();
        f.links_below = !f.links.is_empty();
        f
    }

    /// Whether a file's content cannot be restored as its node says:
    /// a chunk not indexed (reported), in a damaged pack (reported with
    /// the pack), or a size other than its chunks' (reported).
    fn file_is_damaged(&mut self, r: &mut CheckReport, sid: &Id, tid: &Id, n: &crate::repo::Node, p: &str) -> bool {
        let mut damaged = false;
        let mut sum = Some(0u64);
        for c in &n.content {
            match self.index.get(c) {
                None => {
                    if self.reported.insert(*c) {
                        r.errors.push(Problem {
                            object: format!("blob {c}"),
                            message: format!("chunk of {p} is not indexed"),
                        });
                    }
                    damaged = true;
                    sum = None;
                }
                Some(l) => {
                    damaged |= self.damage.hit(self.index, c);
                    sum = sum.map(|s| s + l.raw_length as u64);
                }
            }
        }
        if let Some(sum) = sum.filter(|s| *s != n.size) {
            r.errors.push(Problem {
                object: format!("tree {tid}"),
                message: format!("snapshot {} {p}: its size says {} bytes, its chunks hold {sum}", sid.short(), n.size),
            });
            damaged = true;
        }
        damaged
    }

    /// Walks the distinct trees of one snapshot that hold hard links, each
    /// once, and reports members of one identity with different contents.
    fn hard_links(&self, r: &mut CheckReport, sid: &Id, root: &Id) {
        let mut groups: HashMap<(u64, u64), (Id, String)> = HashMap::new();
        let mut seen: HashSet<Id> = HashSet::new();
        let mut visit = |facts: &Facts, path: &[u8]| {
            for l in &facts.links {
                let p = format!("{}/{}", String::from_utf8_lossy(path), String::from_utf8_lossy(&l.name));
                match groups.get(&l.identity) {
                    None => {
                        groups.insert(l.identity, (l.content, p));
                    }
                    Some((content, first)) if *content != l.content => {
                        r.errors.push(Problem {
                            object: format!("snapshots/{sid}"),
                            message: format!(
                                "snapshot {}: {p} is a hard link to {first} (device {}, inode {}) with other \
                                 content: the members of a hard link must share one content list",
                                sid.short(),
                                l.identity.0,
                                l.identity.1
                            ),
                        });
                        r.affected.push(Affected { snapshot: sid.short(), path: p });
                    }
                    Some(_) => {}
                }
            }
        };
        // Only trees with links below are worth entering, each once.
        let mut enter = |child: &Id, f: &Facts| f.links_below && seen.insert(*child);
        self.each_tree(root, &mut visit, &mut enter);
    }

    /// Lists the files of one snapshot that damage affects, entering only
    /// subtrees with damage below, until [`AFFECTED_PER_SNAPSHOT`] are
    /// found: each tree entered leads to at least one, so the work is
    /// bounded by that number times the depth.
    fn affected(&self, r: &mut CheckReport, sid: &Id, root: &Id) {
        let found = std::cell::RefCell::new(Vec::<String>::new());
        let mut visit = |facts: &Facts, path: &[u8]| {
            let mut found = found.borrow_mut();
            let at = |name: &[u8]| format!("{}/{}", String::from_utf8_lossy(path), String::from_utf8_lossy(name));
            for (name, child) in &facts.subdirs {
                if matches!(self.known.get(child), Some(Known::Bad)) {
                    found.push(at(name));
                }
            }
            found.extend(facts.damaged_files.iter().map(|name| at(name)));
        };
        let mut enter = |_: &Id, f: &Facts| f.damage_below && found.borrow().len() <= AFFECTED_PER_SNAPSHOT;
        self.each_tree(root, &mut visit, &mut enter);
        let mut found = found.into_inner();
        if found.len() > AFFECTED_PER_SNAPSHOT {
            found.truncate(AFFECTED_PER_SNAPSHOT);
            r.affected_not_listed.push(sid.short());
        }
        r.affected.extend(found.into_iter().map(|path| Affected { snapshot: sid.short(), path }));
    }

    /// Depth-first over the good trees below `root`, with their paths:
    /// `visit` sees each tree entered, and `enter` says which subtrees to
    /// enter.
    fn each_tree(&self, root: &Id, visit: &mut dyn FnMut(&Facts, &[u8]), enter: &mut dyn FnMut(&Id, &Facts) -> bool) {
        let mut path: Vec<u8> = Vec::new();
        let mut stack = vec![Frame { id: *root, path_len: 0, next: 0 }];
        while let Some(top) = stack.last_mut() {
            let Some(Known::Good(facts)) = self.known.get(&top.id) else {
                stack.pop();
                continue;
            };
            path.truncate(top.path_len);
            if top.next == 0 {
                visit(facts, &path);
            }
            let Some((name, child)) = facts.subdirs.get(top.next) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let wanted = match self.known.get(child) {
                Some(Known::Good(f)) => enter(child, f),
                _ => false,
            };
            // `verify` measured the depth; this only guards the stack.
            if wanted && stack.len() < MAX_DEPTH {
                path.push(b'/');
                path.extend_from_slice(name);
                stack.push(Frame { id: *child, path_len: path.len(), next: 0 });
            }
        }
    }
}
