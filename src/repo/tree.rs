//! Trees: one directory's entries, stored as a CBOR blob in tree packs.
//!
//! A tree is `{"v": 1, "nodes": [node…]}` with nodes sorted by name (raw
//! bytes). Names are byte strings, so any Unix name round-trips exactly.
//! A directory node points at its subtree's id; a file node lists its
//! content chunk ids in order. Fields with default values are omitted.

use serde::{Deserialize, Serialize};

use crate::id::Id;

mod fast;

pub const TREE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Chardev,
    Blockdev,
    Socket,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<std::sync::Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<std::sync::Arc<str>>,
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub mtime_nsec: u32,
    #[serde(default)]
    pub ctime: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ctime_nsec: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub inode: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub device: u64,
    /// Hard link count when the file was read; above 1, restore links
    /// entries that share `(device, inode)`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub links: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub size: u64,
    /// Chunk ids of a file's content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// The tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// The target of a symlink, as raw bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub target: Option<Vec<u8>>,
    /// Device number of a character or block device.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<serde_bytes::ByteBuf>::deserialize(d).map(|o| o.map(|b| b.into_vec()))
    }
}

impl Node {
    /// A node with the given name and kind and every other field empty.
    pub fn new(name: impl Into<Vec<u8>>, kind: NodeKind) -> Node {
        Node {
            name: name.into(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            inode: 0,
            device: 0,
            links: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    pub v: u32,
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn new(mut nodes: Vec<Node>) -> Tree {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree { v: TREE_VERSION, nodes }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 96);
        ciborium::into_writer(self, &mut out).expect("serialising to memory cannot fail");
        out
    }

    /// Decodes a tree: the layout cairn writes directly ([`fast`]),
    /// anything else with the generic decoder, which gives the same tree
    /// ([`Tree::decode_generic`]).
    pub fn decode(b: &[u8]) -> Result<Tree, String> {
        match fast::tree(b) {
            Some(t) => Tree::checked(t),
            None => Tree::decode_generic(b),
        }
    }

    /// Decodes a tree with the generic CBOR decoder: the reference that
    /// [`Tree::decode`] agrees with (the fuzz tests compare them).
    pub fn decode_generic(b: &[u8]) -> Result<Tree, String> {
        Tree::checked(ciborium::from_reader(b).map_err(|e| e.to_string())?)
    }

    fn checked(t: Tree) -> Result<Tree, String> {
        if t.v != TREE_VERSION {
            return Err(format!("unknown tree version {}", t.v));
        }
        Ok(t)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.position(name).map(|i| &self.nodes[i])
    }

    /// Where the node named `name` is among the (sorted) nodes.
    pub fn position(&self, name: &[u8]) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok()
    }
}

/// The walk of a snapshot tree, without recursion (see [`super::walk`]).
pub use super::walk::walk;

/// Finds the node at `path` (e.g. `/home/a/file`) below the tree `root`.
/// The empty path and `/` give `None` (the root has no node).
pub fn lookup(repo: &super::Repository, index: &super::Index, root: &Id, path: &[u8]) -> crate::Result<Option<Node>> {
    let mut tree = *root;
    let comps: Vec<&[u8]> = path.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
    for (i, c) in comps.iter().enumerate() {
        let t = repo.load_tree(index, &tree)?;
        let Some(n) = t.find(c) else { return Ok(None) };
        if i + 1 == comps.len() {
            return Ok(Some(n.clone()));
        }
        match (n.kind, n.subtree) {
            (NodeKind::Dir, Some(s)) => tree = s,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_round_trips_arbitrary_names() {
        let mut f = Node::new(b"caf\xe9\nname".to_vec(), NodeKind::File);
        f.content = vec![Id::hash_of(b"x")];
        f.size = 10;
        let mut l = Node::new(vec![b'a'; 255], NodeKind::Symlink);
        l.target = Some(b"../\xffdangling".to_vec());
        let t = Tree::new(vec![f, l]);
        let back = Tree::decode(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert!(back.find(b"caf\xe9\nname").is_some());
        assert!(back.find(b"nope").is_none());
    }
}
