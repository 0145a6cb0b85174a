//! The directories of a backup that are open: being scanned, or waiting
//! for files in the pipeline or for subdirectories.
//!
//! A directory is written (its tree blob stored) as soon as it is complete:
//! scanned to the end, every file reported back by the pipeline, every
//! subdirectory written. Its node, with the new tree's id, then completes
//! its entry in the directory above, which may complete that one in turn.
//! So trees are written bottom-up while the scan goes on, and only the
//! current path and the directories with files in flight are in memory.

use crate::error::Result;
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::writer::RepoWriter;
use crate::repo::{BlobKind, Index, Node, Tree};

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
    root: Option<Id>,
}

impl<'a> OpenDirs<'a> {
    pub fn new(index: &'a Index, writer: &'a RepoWriter, enc: Encoder) -> OpenDirs<'a> {
        OpenDirs { slots: Vec::new(), free: Vec::new(), index, writer, enc, written: 0, root: None }
    }

    /// Opens a directory for scanning. `up` is its pending entry in the
    /// directory above ([`OpenDirs::add_pending`]), `None` for the root.
    pub fn open(&mut self, node: Node, up: Option<Place>) -> u32 {
        let d = OpenDir { node, up, entries: Vec::new(), pending: 0, scanning: true };
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
            self.write(p.dir)?;
        }
        Ok(())
    }

    /// The directory was scanned to the end.
    pub fn close(&mut self, d: u32) -> Result<()> {
        let dir = self.dir(d);
        dir.scanning = false;
        if dir.pending == 0 {
            self.write(d)?;
        }
        Ok(())
    }

    /// Writes a complete directory's tree, and the directories above it
    /// that this completes.
    fn write(&mut self, mut d: u32) -> Result<()> {
        loop {
            let dir = self.slots[d as usize].take().expect("an open directory");
            self.free.push(d);
            let tree = Tree::new(dir.entries.into_iter().flatten().collect());
            let (id, _) = self.writer.store_blob(self.index, BlobKind::Tree, &tree.encode(), &mut self.enc)?;
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
