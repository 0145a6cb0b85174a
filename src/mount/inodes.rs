//! Inode numbers for what the kernel has looked up.
//!
//! A directory inode stands for one path: the same tree can appear at two
//! places (two identical directories, or one snapshot under `/ids` and
//! under `/hosts`), and the kernel must see two directories. A file with
//! several links in one snapshot (same device and inode at backup) gets one
//! inode wherever it appears in that snapshot, as restore links them. Every
//! lookup the kernel is answered counts, and an inode is dropped when the
//! kernel forgets it as often: memory follows what the kernel caches, not
//! what was ever visited. Numbers are never reused.

use std::collections::HashMap;
use std::sync::Arc;

use crate::id::Id;
use crate::repo::{Node, NodeKind};

pub const ROOT: u64 = 1;
pub const IDS: u64 = 2;
pub const HOSTS: u64 = 3;
pub const LATEST: u64 = 4;
const FIRST_FREE: u64 = 5;

/// What an inode shows.
#[derive(Debug, Clone)]
pub enum What {
    Root,
    Ids,
    Hosts,
    /// `/latest`: a symlink to the newest snapshot under `/ids`.
    Latest,
    /// `/hosts/<host>`.
    Host(String),
    /// `/hosts/<host>/latest`: a symlink to the host's newest snapshot.
    HostLatest(String),
    /// The root directory of a snapshot.
    Snapshot {
        tree: Id,
        time: chrono::DateTime<chrono::Utc>,
    },
    /// An entry of a snapshot; `root` is the inode of its snapshot's root.
    Node {
        node: Arc<Node>,
        root: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Child(u64, Vec<u8>),
    Link { root: u64, device: u64, inode: u64 },
}

struct Entry {
    what: What,
    parent: u64,
    name: Vec<u8>,
    key: Option<Key>,
    lookups: u64,
}

pub struct Inodes {
    entries: HashMap<u64, Entry>,
    keys: HashMap<Key, u64>,
    next: u64,
}

fn key_of(parent: u64, name: &[u8], what: &What) -> Key {
    match what {
        What::Node { node, root } => node_key(parent, name, node, *root),
        _ => Key::Child(parent, name.to_vec()),
    }
}

fn node_key(parent: u64, name: &[u8], node: &Node, root: u64) -> Key {
    if node.kind == NodeKind::File && node.links > 1 {
        Key::Link { root, device: node.device, inode: node.inode }
    } else {
        Key::Child(parent, name.to_vec())
    }
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut entries = HashMap::new();
        for (ino, what, name) in [
            (ROOT, What::Root, &b""[..]),
            (IDS, What::Ids, b"ids"),
            (HOSTS, What::Hosts, b"hosts"),
            (LATEST, What::Latest, b"latest"),
        ] {
            entries.insert(ino, Entry { what, parent: ROOT, name: name.to_vec(), key: None, lookups: 0 });
        }
        Inodes { entries, keys: HashMap::new(), next: FIRST_FREE }
    }

    pub fn get(&self, ino: u64) -> Option<&What> {
        self.entries.get(&ino).map(|e| &e.what)
    }

    /// The inode of the directory `ino` is in.
    pub fn parent(&self, ino: u64) -> Option<u64> {
        self.entries.get(&ino).map(|e| e.parent)
    }

    /// The inode `what` (named `name` in `parent`) has, if the kernel knows it.
    pub fn peek(&self, parent: u64, node: &Node, root: u64) -> Option<u64> {
        self.keys.get(&node_key(parent, &node.name, node, root)).copied()
    }

    /// The inode of `name` in `parent` (not a snapshot entry), if the kernel knows it.
    pub fn peek_name(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.keys.get(&Key::Child(parent, name.to_vec())).copied()
    }

    /// The inode of `name` in `parent`, made from `what` when new; counts
    /// one lookup, which the kernel will forget.
    pub fn lookup(&mut self, parent: u64, name: &[u8], what: What) -> u64 {
        let key = key_of(parent, name, &what);
        let ino = match self.keys.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.keys.insert(key.clone(), ino);
                self.entries.insert(ino, Entry { what, parent, name: name.to_vec(), key: Some(key), lookups: 0 });
                ino
            }
        };
        if let Some(e) = self.entries.get_mut(&ino) {
            e.lookups += 1;
        }
        ino
    }

    /// The kernel dropped `n` of its lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        let Some(e) = self.entries.get_mut(&ino) else { return };
        let Some(key) = e.key.clone() else { return }; // the fixed inodes stay
        e.lookups = e.lookups.saturating_sub(n);
        if e.lookups == 0 {
            self.entries.remove(&ino);
            self.keys.remove(&key);
        }
    }

    /// The path of `ino` below the mount, for messages.
    pub fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(e) = self.entries.get(&ino) else { break };
            parts.push(String::from_utf8_lossy(&e.name).into_owned());
            ino = e.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Inodes held (the fixed ones included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, kind: NodeKind, links: u64, inode: u64) -> What {
        let mut n = Node::new(name.as_bytes().to_vec(), kind);
        n.links = links;
        n.inode = inode;
        n.device = 7;
        What::Node { node: Arc::new(n), root: 10 }
    }

    #[test]
    fn one_inode_per_path_and_per_linked_file_until_forgotten() {
        let mut t = Inodes::new();
        let a = t.lookup(20, b"a", node("a", NodeKind::Dir, 0, 1));
        let a_again = t.lookup(20, b"a", node("a", NodeKind::Dir, 0, 1));
        let a_elsewhere = t.lookup(21, b"a", node("a", NodeKind::Dir, 0, 1));
        assert_eq!(a, a_again);
        assert_ne!(a, a_elsewhere, "the same tree at two paths is two directories");
        let l1 = t.lookup(20, b"x", node("x", NodeKind::File, 2, 99));
        let l2 = t.lookup(21, b"y", node("y", NodeKind::File, 2, 99));
        assert_eq!(l1, l2, "hard links of one snapshot share an inode");
        let single = t.lookup(22, b"y", node("y", NodeKind::File, 1, 99));
        assert_ne!(single, l1, "a file with one link is its own");
        assert_eq!(t.path(a), "/a");
        assert_eq!(t.peek(20, &Node::new(b"a".to_vec(), NodeKind::Dir), 10), Some(a));
        assert_eq!(t.peek_name(20, b"a"), Some(a));

        t.forget(a, 1);
        assert!(t.get(a).is_some(), "looked up twice, forgotten once");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        let a_new = t.lookup(20, b"a", node("a", NodeKind::Dir, 0, 1));
        assert!(a_new > l2, "numbers are not reused");
        t.forget(l1, 2);
        assert!(t.get(l1).is_none());
        t.forget(ROOT, 5);
        assert!(t.get(ROOT).is_some(), "the fixed inodes stay");
        assert_eq!(t.len(), 4 + 3);
    }
}
