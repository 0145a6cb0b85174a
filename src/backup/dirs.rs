//! The directories of a backup that are open: being scanned, or waiting
//! for files in the pipeline or for subdirectories.
//!
//! A directory is written (its tree blob stored) as soon as it is complete:
//! scanned to the end, every file reported back by the pipeline, every
//! subdirectory written. Its node, with the new tree's id, then completes
//! its entry in the directory above, which may complete that one in turn.
//! So trees are written bottom-up while the scan goes on, and only the
//! current path and the directories with files in flight are in memory.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::writer::RepoWriter;
use crate::repo::{limits, BlobKind, Index, Node, Tree};

/// Where an entry lives: the directory's slot and the entry's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub dir: u32,
    pub entry: u32,
}

struct OpenDir {
    /// The directory's own node; its subtree is set when it is written.
    node: Node,
    /// Where the written node goes; `None` for the root.
    up: Option<Place>,
    /// Entries in scan order; `None` for a file that could not be stored.
    entries: Vec<Option<Node>>,
    /// Entries not complete yet.
    pending: u32,
    /// Still being scanned: more entries may come.
    scanning: bool,
    /// The tree this directory copies (`crate::copy`), reported with the
    /// id of its own tree once written ([`OpenDirs::take_copied`]).
    copy_of: Option<Id>,
}

/// The open directories, in reusable slots.
pub struct OpenDirs<'a> {
    slots: Vec<Option<OpenDir>>,
    free: Vec<u32>,
    index: &'a Index,
    writer: &'a RepoWriter,
    enc: Encoder,
    /// Directories written (the root not included).
    pub written: u64,
    /// Of those, the ones that took their tree in the parent snapshot.
    pub unchanged: u64,
    root: Option<Id>,
    /// Trees written for directories opened with [`OpenDirs::open_copy`]:
    /// (the tree copied, the tree written).
    copied: Vec<(Id, Id)>,
}

impl<'a> OpenDirs<'a> {
    pub fn new(index: &'a Index, writer: &'a RepoWriter, enc: Encoder) -> OpenDirs<'a> {
        OpenDirs {
            slots: Vec::new(),
            free: Vec::new(),
            index,
            writer,
            enc,
            written: 0,
            unchanged: 0,
            root: None,
            copied: Vec::new(),
        }
    }

    /// Opens a directory for scanning. `up` is its pending entry in the
    /// directory above ([`OpenDirs::add_pending`]), `None` for the root.
    pub fn open(&mut self, node: Node, up: Option<Place>) -> u32 {
        self.open_dir(OpenDir { node, up, entries: Vec::new(), pending: 0, scanning: true, copy_of: None })
    }

    /// Opens a directory that copies the tree `source` of another
    /// repository: once written, the pair is in [`OpenDirs::take_copied`].
    pub fn open_copy(&mut self, node: Node, up: Option<Place>, source: Id) -> u32 {
        self.open_dir(OpenDir { node, up, entries: Vec::new(), pending: 0, scanning: true, copy_of: Some(source) })
    }

    /// The trees copied and written since the last call: (source, written).
    pub fn take_copied(&mut self) -> Vec<(Id, Id)> {
        std::mem::take(&mut self.copied)
    }

    fn open_dir(&mut self, d: OpenDir) -> u32 {
        match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(d);
                s
            }
            None => {
                self.slots.push(Some(d));
                self.slots.len() as u32 - 1
            }
        }
    }

    fn dir(&mut self, d: u32) -> &mut OpenDir {
        self.slots[d as usize].as_mut().expect("an open directory")
    }

    /// Adds a complete entry.
    pub fn add(&mut self, d: u32, node: Node) {
        self.dir(d).entries.push(Some(node));
    }

    /// Adds an entry that is completed later ([`OpenDirs::complete`]):
    /// a file in the pipeline or a subdirectory. `node` may be changed
    /// until then through [`OpenDirs::node_mut`].
    pub fn add_pending(&mut self, d: u32, node: Node) -> Place {
        let dir = self.dir(d);
        dir.entries.push(Some(node));
        dir.pending += 1;
        Place { dir: d, entry: dir.entries.len() as u32 - 1 }
    }

    /// Adds a subdirectory's entry, completed when it is written.
    pub fn add_subdir(&mut self, d: u32) -> Place {
        self.add_pending(d, Node::new(Vec::new(), crate::repo::NodeKind::Dir))
    }

    pub fn node_mut(&mut self, p: Place) -> &mut Node {
        self.dir(p.dir).entries[p.entry as usize].as_mut().expect("a pending entry")
    }

    /// Completes a pending entry; `keep: false` leaves it out of the tree.
    pub fn complete(&mut self, p: Place, keep: bool) -> Result<()> {
        let dir = self.dir(p.dir);
        if !keep {
            dir.entries[p.entry as usize] = None;
        }
        dir.pending -= 1;
        if !dir.scanning && dir.pending == 0 {
            self.write(p.dir, None)?;
        }
        Ok(())
    }

    /// The directory was scanned to the end.
    pub fn close(&mut self, d: u32) -> Result<()> {
        self.close_unless_same(d, None)
    }

    /// The directory was scanned to the end; `earlier` is its tree in the
    /// parent snapshot, with its id. When the directory is complete now
    /// and its entries are exactly that tree's nodes, that tree is its
    /// tree: nothing is encoded, hashed or looked up but the id (an
    /// unchanged backup spent a tenth of its time writing trees it had).
    pub fn close_unless_same(&mut self, d: u32, earlier: Option<(Id, Tree)>) -> Result<()> {
        let dir = self.dir(d);
        dir.scanning = false;
        if dir.pending == 0 {
            self.write(d, earlier)?;
        }
        Ok(())
    }

    /// Writes a complete directory's tree (or takes `earlier`'s, when it
    /// is the same), and the directories above it that this completes.
    fn write(&mut self, mut d: u32, mut earlier: Option<(Id, Tree)>) -> Result<()> {
        loop {
            let dir = self.slots[d as usize].take().expect("an open directory");
            self.free.push(d);
            let id = match earlier.take() {
                Some((id, tree)) if self.index.contains(&id) && same_nodes(&dir.entries, &tree.nodes) => {
                    self.unchanged += u64::from(dir.up.is_some());
                    id
                }
                _ => {
                    let bytes = Tree::new(dir.entries.into_iter().flatten().collect()).encode();
                    tree_within(&bytes, limits::TREE, || path_of(&self.slots, dir.up, &dir.node.name))?;
                    self.writer.store_blob(self.index, BlobKind::Tree, &bytes, &mut self.enc)?.0
                }
            };
            if let Some(source) = dir.copy_of {
                self.copied.push((source, id));
            }
            let Some(up) = dir.up else {
                self.root = Some(id);
                return Ok(());
            };
            self.written += 1;
            let mut node = dir.node;
            node.subtree = Some(id);
            let above = self.dir(up.dir);
            above.entries[up.entry as usize] = Some(node);
            above.pending -= 1;
            if above.scanning || above.pending > 0 {
                return Ok(());
            }
            d = up.dir;
        }
    }

    /// The root's tree id, once everything is written.
    pub fn root(&self) -> Option<Id> {
        self.root
    }

    /// Directories open now (for tests of the memory bound).
    pub fn open_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Whether a directory's entries, in scan order (sorted by name, as a
/// tree's nodes are), are exactly `nodes`: then its tree would encode to
/// the same bytes.
fn same_nodes(entries: &[Option<Node>], nodes: &[Node]) -> bool {
    entries.len() == nodes.len() && entries.iter().zip(nodes).all(|(e, n)| e.as_ref() == Some(n))
}

/// The path in the snapshot of the directory `name` whose entry is at `up`
/// (`None` for the root, whose path is empty), from the open directories
/// above it.
fn path_of(slots: &[Option<OpenDir>], mut up: Option<Place>, name: &[u8]) -> String {
    let mut names = Vec::new();
    if up.is_some() {
        names.push(name);
    }
    while let Some(p) = up {
        let above = slots[p.dir as usize].as_ref().expect("the directories above are open");
        up = above.up;
        if up.is_some() {
            names.push(&above.node.name);
        }
    }
    names.iter().rev().map(|n| format!("/{}", String::from_utf8_lossy(n))).collect()
}

/// Refuses a directory's encoded tree above `limit` bytes: no reader would
/// load it, so the backup fails rather than commit a snapshot that cannot
/// be restored. `at` gives the directory's path in the snapshot.
fn tree_within(bytes: &[u8], limit: u64, at: impl FnOnce() -> String) -> Result<()> {
    if bytes.len() as u64 <= limit {
        return Ok(());
    }
    let at = at();
    Err(Error::TooLarge {
        what: format!("the tree of directory {}", if at.is_empty() { "/" } else { &at }),
        detail: format!(
            "{} bytes, above the limit of {limit} (split the directory, or exclude part of it)",
            bytes.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::NodeKind;

    #[test]
    fn a_tree_above_the_limit_fails_the_backup_naming_its_directory() {
        let at = || "/srv/x".to_string();
        assert!(tree_within(&[0; 10], 10, at).is_ok());
        let e = tree_within(&[0; 11], 10, at).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the tree of directory /srv/x is too large: 11 bytes, above the limit of 10 (split the directory, or \
             exclude part of it)"
        );
        assert!(tree_within(&[0; 11], 10, String::new).unwrap_err().to_string().contains("directory / is"));
    }

    #[test]
    fn a_directory_is_named_by_its_path_from_the_open_directories_above() {
        let dir = |name: &str, up: Option<Place>| {
            Some(OpenDir {
                node: Node::new(name.as_bytes().to_vec(), NodeKind::Dir),
                up,
                entries: Vec::new(),
                pending: 0,
                scanning: true,
                copy_of: None,
            })
        };
        // Slot 2 is the root, slot 0 `srv` in it, slot 1 `x` in `srv`.
        let slots = vec![
            dir("srv", Some(Place { dir: 2, entry: 0 })),
            dir("x", Some(Place { dir: 0, entry: 3 })),
            dir("", None),
        ];
        assert_eq!(path_of(&slots, Some(Place { dir: 1, entry: 5 }), b"deep"), "/srv/x/deep");
        assert_eq!(path_of(&slots, Some(Place { dir: 2, entry: 1 }), b"top"), "/top");
        assert_eq!(path_of(&slots, None, b""), "");
    }
}
