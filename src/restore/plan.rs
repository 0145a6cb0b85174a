//! Restore planning: from a snapshot tree to batches of things to create.
//!
//! A plan is pure data: which directories, files (with every chunk's
//! place in the file), hard links, symlinks and special files to create,
//! all under relative paths built only from names that passed
//! [`safe_name`]. Names with `/`, NUL, `.`, `..`, empty names, and
//! duplicate names in one directory are refused here, whatever the
//! repository says, so no planned path can leave the target or pass
//! through a restored symlink (invariant 4).
//!
//! A snapshot is planned in batches ([`Batches`]): the walk stops once a
//! batch holds [`BATCH_ITEMS`] items, the batch is executed and dropped,
//! and the walk goes on where it stopped. What lives from one batch to the
//! next is the current path (each directory's tree, with the node to give
//! it once its last entry is written), and the hard-link groups with
//! members not seen yet; so restore memory does not grow with the number
//! of files. A directory is planned only once something below it is (or an
//! include pattern names it), and finished (given its metadata) in the
//! batch that plans its last entry, after its children.

use std::path::{Path, PathBuf};

use crate::id::Id;
use crate::repo::Node;

pub use super::filter::Filter;

mod batches;
pub use batches::{plan, plan_within, Batches};

/// The items one batch holds at most: entries, the places of their chunks,
/// directories made or reached, and directories finished. A single file
/// with more chunks than this is a batch of its own. While a batch is
/// planned and written, an item costs a few hundred bytes.
pub const BATCH_ITEMS: usize = 16_384;

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

/// A directory a batch makes or works in.
#[derive(Debug, Clone)]
pub struct PlannedDir {
    pub rel: PathBuf,
    pub node: Node,
    pub made: Made,
}

/// Which batch makes a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// This batch.
    Here,
    /// An earlier batch: this one only reaches it again, through handles.
    Earlier,
    /// An earlier batch could not make it: nothing below it is touched.
    Failed,
}

/// A hard link to make, and the file it links to.
#[derive(Debug, Clone)]
pub struct PlannedLink {
    pub rel: PathBuf,
    pub to: LinkTo,
}

/// A file's (device, inode) in the target, as restore created it.
pub type Ident = (u64, u64);

#[derive(Debug, Clone)]
pub enum LinkTo {
    /// A file of this batch (an index into [`Plan::files`]).
    File(usize),
    /// A file an earlier batch restored (or failed to). Its directory may
    /// have been given its owner since, so the name is linked only while it
    /// is still the inode that batch created (`ident`); otherwise this
    /// member is restored from its own content (`own`).
    Earlier { first: PathBuf, ident: Option<Ident>, own: Box<PlannedFile> },
}

/// One batch of a restore (or, from [`plan`], the whole snapshot).
#[derive(Debug, Default)]
pub struct Plan {
    /// Directories this batch makes or works in, parents first.
    pub dirs: Vec<PlannedDir>,
    pub files: Vec<PlannedFile>,
    pub hardlinks: Vec<PlannedLink>,
    /// Symlinks, FIFOs, devices, sockets.
    pub others: Vec<(PathBuf, Node)>,
    /// Entries refused while planning, with the reason.
    pub refused: Vec<(String, String)>,
    /// Directories (indices into `dirs`) whose last entry is in this batch
    /// or an earlier one, children first: their metadata is set after this
    /// batch's entries.
    pub finished: Vec<usize>,
    pub total_bytes: u64,
}

impl Plan {
    /// What the batch holds, counted as [`BATCH_ITEMS`] counts it.
    pub fn items(&self) -> usize {
        self.dirs.len()
            + self.files.iter().map(|f| 1 + f.chunks.len()).sum::<usize>()
            + self.hardlinks.iter().map(PlannedLink::items).sum::<usize>()
            + self.others.len()
            + self.refused.len()
            + self.finished.len()
    }

    /// The path of the file a hard link links to.
    pub fn link_first<'a>(&'a self, link: &'a PlannedLink) -> &'a Path {
        match &link.to {
            LinkTo::File(i) => &self.files[*i].rel,
            LinkTo::Earlier { first, .. } => first,
        }
    }

    /// The content a hard link must show (the file it links to has the
    /// same content list); `size` and `chunks` are what matter.
    pub fn link_content<'a>(&'a self, link: &'a PlannedLink) -> &'a PlannedFile {
        match &link.to {
            LinkTo::File(i) => &self.files[*i],
            LinkTo::Earlier { own, .. } => own,
        }
    }

    /// A hard link as a file of its own: its path, with its content and
    /// node (hard links share their inode's metadata).
    pub fn link_as_file(&self, link: &PlannedLink) -> PlannedFile {
        PlannedFile { rel: link.rel.clone(), ..self.link_content(link).clone() }
    }
}

impl PlannedLink {
    /// What it holds, counted as [`BATCH_ITEMS`] counts it: a link to an
    /// earlier batch's file carries its own chunk list.
    pub fn items(&self) -> usize {
        match &self.to {
            LinkTo::File(_) => 1,
            LinkTo::Earlier { own, .. } => 1 + own.chunks.len(),
        }
    }
}

/// What executing a batch did, for the batches after it.
#[derive(Debug, Default)]
pub struct Written {
    /// Per directory of the batch: whether it is in place.
    pub dirs_ok: Vec<bool>,
    /// Per file of the batch with other links (hard links of later
    /// batches may link to it): its identity once restored; `None` when it
    /// was not restored, and for the other files.
    pub files: Vec<Option<Ident>>,
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
}
