//! One directory of a snapshot, as restore would create it.

use std::collections::HashSet;

use crate::repo::{Node, Tree};
use crate::restore::plan::safe_name;

/// The entries of a tree that restore would create, sorted by name and
/// unique, and the ones it would refuse, with the reason.
#[derive(Debug)]
pub struct Dir {
    nodes: Vec<Node>,
    refused: Vec<(Vec<u8>, &'static str)>,
}

impl Dir {
    /// Sorts the tree's nodes out the way restore's plan does: a name
    /// [`safe_name`] refuses is left out, and of several nodes with one
    /// name the first (in stored order) is kept.
    pub fn new(tree: Tree) -> Dir {
        let mut seen = HashSet::new();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut refused = Vec::new();
        for n in tree.nodes {
            if let Err(why) = safe_name(&n.name) {
                refused.push((n.name, why));
            } else if !seen.insert(n.name.clone()) {
                refused.push((n.name, "duplicate name in its directory"));
            } else {
                nodes.push(n);
            }
        }
        // Stored trees are sorted, but nothing from the repository is trusted.
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Dir { nodes, refused }
    }

    /// The entries, sorted by name.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }

    /// Names left out, with the reason.
    pub fn refused(&self) -> &[(Vec<u8>, &'static str)] {
        &self.refused
    }

    /// Bytes held, roughly, for the cache budget.
    pub fn weight(&self) -> usize {
        let node = |n: &Node| {
            std::mem::size_of::<Node>()
                + n.name.len()
                + n.content.len() * 32
                + n.target.as_ref().map_or(0, Vec::len)
                + n.xattrs.iter().map(|x| x.name.len() + x.value.len() + 48).sum::<usize>()
        };
        std::mem::size_of::<Dir>() + self.nodes.iter().map(node).sum::<usize>() + self.refused.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::NodeKind;

    #[test]
    fn names_restore_refuses_are_left_out_and_the_first_of_duplicates_is_kept() {
        let mut first = Node::new(b"dup".to_vec(), NodeKind::File);
        first.size = 1;
        let mut second = Node::new(b"dup".to_vec(), NodeKind::File);
        second.size = 2;
        // Unsorted on purpose: the repository is not trusted to sort.
        let t = Tree {
            v: 1,
            nodes: vec![
                Node::new(b"z".to_vec(), NodeKind::Dir),
                first,
                Node::new(b"..".to_vec(), NodeKind::Dir),
                Node::new(b".".to_vec(), NodeKind::Dir),
                Node::new(b"a/b".to_vec(), NodeKind::File),
                Node::new(b"nul\0".to_vec(), NodeKind::File),
                Node::new(Vec::new(), NodeKind::File),
                second,
                Node::new(b"a".to_vec(), NodeKind::Symlink),
            ],
        };
        let d = Dir::new(t);
        let names: Vec<&[u8]> = d.nodes().iter().map(|n| n.name.as_slice()).collect();
        assert_eq!(names, [&b"a"[..], b"dup", b"z"]);
        assert_eq!(d.get(b"dup").unwrap().size, 1, "the first of two is kept, as restore keeps it");
        assert!(d.get(b"..").is_none() && d.get(b"a/b").is_none() && d.get(b"").is_none());
        let refused: Vec<(&[u8], &str)> = d.refused().iter().map(|(n, w)| (n.as_slice(), *w)).collect();
        assert_eq!(refused.len(), 6, "{refused:?}");
        assert!(refused.contains(&(&b"dup"[..], "duplicate name in its directory")));
        assert!(refused.contains(&(&b"a/b"[..], "name contains `/`")));
        assert!(d.weight() > 0);
    }
}
