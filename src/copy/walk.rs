//! The copier: a snapshot's trees walked on one thread, their files'
//! contents copied on the content pipeline's threads, and each directory
//! written in the destination as soon as it is complete, bottom-up
//! ([`OpenDirs`], as a backup writes them).
//!
//! ```text
//! walk (1 thread): source trees, explicit stack ─▶ file jobs (≤ MAX_IN_FLIGHT out)
//!    ▲ one report per file: its node completes   ▼
//!    │ its directory, which may be written      readers (N): source chunks
//!    └──────────────────────────────────────────  → cut, keyed BLAKE3 → new?
//!                                                 sealers (N) → packs → uploaders
//! ```
//!
//! A source tree is copied once per run: a directory met again reuses the
//! copy (waiting for it if its files are still in the pipeline), and so
//! does one that an earlier copy of the same host and paths holds
//! ([`Copier::learn`]). Either counts as present for the progress: its
//! files and bytes, summed when it was walked or learned.

use std::collections::{HashMap, HashSet};

use crate::backup::dirs::OpenDirs;
use crate::backup::pipeline::{self, Chunks, Counters, Pipeline, Shared, MAX_IN_FLIGHT};
use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::keyset::KeySet;
use crate::repo::walk::{abbreviate, MAX_DEPTH};
use crate::repo::writer::RepoWriter;
use crate::repo::{Index, Node, NodeKind, Repository};

use super::content::{ContentDone, ContentJob, ContentReader};
use super::{CopyCounts, CopyProgress};

/// A source tree's copy in the destination, and the regular files and
/// bytes below it.
#[derive(Debug, Clone, Copy)]
struct TreeCopy {
    dst: Id,
    files: u64,
    bytes: u64,
}

/// Copies trees and file contents from one repository into another
/// through the destination's session writer.
pub struct Copier<'a> {
    src: &'a Repository,
    src_index: &'a Index,
    dst: &'a Repository,
    dst_index: &'a Index,
    /// Blobs stored by the sessions of this copy that finished (the
    /// destination's index was loaded before them).
    stored: KeySet,
    /// Cut file contents again: the chunker parameters differ.
    rechunk: bool,
    threads: usize,
    /// Source tree id → its copy, for this run.
    trees: HashMap<Id, TreeCopy>,
    pub counts: CopyCounts,
}

/// A directory of the walk: its source tree's entries not yet seen.
struct Frame {
    source: Id,
    dir: u32,
    nodes: std::vec::IntoIter<Node>,
    path_len: usize,
    files: u64,
    bytes: u64,
}

impl<'a> Copier<'a> {
    /// A copier from `src` (read through its compact index: every blob read is checked against its id)
    /// into `dst`, whose index says what it holds, with `threads` readers
    /// and as many sealers.
    pub fn new(
        src: &'a Repository,
        src_index: &'a Index,
        dst: &'a Repository,
        dst_index: &'a Index,
        threads: usize,
    ) -> Copier<'a> {
        Copier {
            src,
            src_index,
            dst,
            dst_index,
            stored: KeySet::new(),
            rechunk: src.config().chunker != dst.config().chunker,
            threads: threads.max(1),
            trees: HashMap::new(),
            counts: CopyCounts::default(),
        }
    }

    /// Whether file contents are cut again (the chunker parameters differ).
    pub fn rechunks(&self) -> bool {
        self.rechunk
    }

    /// A writer session that takes what earlier sessions stored as stored.
    pub fn session(&mut self, uploaders: usize) -> RepoWriter {
        RepoWriter::new(self.dst, uploaders, 64).with_claimed(std::mem::take(&mut self.stored))
    }

    /// The session whose writer is `writer` ended: what it stored counts
    /// as present from now on. When it failed, what it meant to store and
    /// the trees it copied are forgotten.
    pub fn end_session(&mut self, writer: RepoWriter) -> Result<crate::repo::writer::WriterStats> {
        match writer.finish_with_claims() {
            Ok((stats, claimed)) => {
                self.stored = claimed;
                Ok(stats)
            }
            Err(e) => {
                self.trees.clear();
                Err(e)
            }
        }
    }

    /// Learns that `dst_root`, a tree of the destination, is the copy of
    /// `src_root` (the trees of a snapshot and of its earlier copy), so
    /// that the directories they share with what is copied now are not
    /// read again. A pair is taken only when both trees hold the same
    /// entries with the same metadata, every chunk and tree of the copy is
    /// in the destination's index, and every pair below holds too.
    pub fn learn(&mut self, src_root: &Id, dst_root: &Id) -> Result<()> {
        struct Frame {
            s: Id,
            d: Id,
            subs: Vec<(Id, Id)>,
            next: usize,
            ok: bool,
            files: u64,
            bytes: u64,
        }
        let Some((subs, files, bytes)) = self.compare(src_root, dst_root)? else { return Ok(()) };
        let mut stack = vec![Frame { s: *src_root, d: *dst_root, subs, next: 0, ok: true, files, bytes }];
        while let Some(depth) = stack.len().checked_sub(1) {
            let top = &mut stack[depth];
            if !top.ok || top.next == top.subs.len() {
                let done = stack.pop().expect("not empty");
                match stack.last_mut() {
                    _ if done.ok => {
                        self.trees.insert(done.s, TreeCopy { dst: done.d, files: done.files, bytes: done.bytes });
                        if let Some(parent) = stack.last_mut() {
                            parent.files += done.files;
                            parent.bytes += done.bytes;
                        }
                    }
                    Some(parent) => parent.ok = false,
                    None => {}
                }
                continue;
            }
            let (x, y) = top.subs[top.next];
            top.next += 1;
            if let Some(known) = self.trees.get(&x) {
                top.ok &= known.dst == y;
                top.files += known.files;
                top.bytes += known.bytes;
                continue;
            }
            if depth + 1 >= MAX_DEPTH {
                top.ok = false;
                continue;
            }
            match self.compare(&x, &y)? {
                Some((subs, files, bytes)) => stack.push(Frame { s: x, d: y, subs, next: 0, ok: true, files, bytes }),
                None => top.ok = false,
            }
        }
        Ok(())
    }

    /// The pairs of subtrees of two trees that match as a tree and its
    /// copy, and the regular files and bytes of the tree itself; `None`
    /// when they do not match.
    #[allow(clippy::type_complexity)]
    fn compare(&self, s: &Id, d: &Id) -> Result<Option<(Vec<(Id, Id)>, u64, u64)>> {
        if !self.dst_index.contains(d) {
            return Ok(None);
        }
        let (st, dt) = (self.src.load_tree(self.src_index, s)?, self.dst.load_tree(self.dst_index, d)?);
        if st.nodes.len() != dt.nodes.len() {
            return Ok(None);
        }
        let bare = |n: &Node| Node { content: Vec::new(), subtree: None, ..n.clone() };
        let (mut subs, mut files, mut bytes) = (Vec::new(), 0, 0);
        for (a, b) in st.nodes.iter().zip(&dt.nodes) {
            if bare(a) != bare(b) || !b.content.iter().all(|c| self.dst_index.contains(c)) {
                return Ok(None);
            }
            if !self.rechunk && a.content.len() != b.content.len() {
                return Ok(None);
            }
            if a.kind == NodeKind::File {
                files += 1;
                bytes += a.size;
            }
            match (a.subtree, b.subtree) {
                (Some(x), Some(y)) => subs.push((x, y)),
                (None, None) => {}
                _ => return Ok(None),
            }
        }
        Ok(Some((subs, files, bytes)))
    }

    /// Copies the tree `root` and everything below it through `writer`
    /// (one session); returns the id of its copy in the destination.
    pub fn copy_tree(&mut self, writer: &RepoWriter, root: &Id, progress: &dyn CopyProgress) -> Result<Id> {
        if let Some(done) = self.trees.get(root).copied() {
            self.counts.present(done.files, done.bytes);
            progress.present(b"/", done.files, done.bytes);
            return Ok(done.dst);
        }
        let reader = ContentReader {
            src: self.src,
            index: self.src_index,
            rechunk: self.rechunk,
            keep_payloads: self.src.config().compression == self.dst.config().compression,
        };
        let counters = Counters::default();
        let shared = Shared::default();
        let (dst, dst_index, threads) = (self.dst, self.dst_index, self.threads);
        let copied = std::thread::scope(|s| {
            let read =
                move |chunker: &mut Chunker, chunks: &Chunks<'_>, job: ContentJob| reader.read(chunker, chunks, job);
            let pipe = pipeline::start_with(s, dst, dst_index, writer, threads, &counters, &shared, read);
            let dirs = OpenDirs::new(dst_index, writer, Encoder::new(dst.config().compression));
            let mut walk = Walk { copier: self, pipe, dirs, progress, walked: HashMap::new(), open: HashSet::new() };
            walk.run(root)
        });
        // Chunks sealed count as added, also when the copy failed later.
        self.counts.chunks_added += counters.new_blobs.load(std::sync::atomic::Ordering::Relaxed);
        copied
    }
}

/// One tree being copied.
struct Walk<'c, 'a, 'w> {
    copier: &'c mut Copier<'a>,
    pipe: Pipeline<'w, ContentJob, ContentDone>,
    dirs: OpenDirs<'w>,
    progress: &'w dyn CopyProgress,
    /// Source trees walked to their end and not yet written: their files and bytes.
    walked: HashMap<Id, (u64, u64)>,
    /// Source trees opened and not yet written.
    open: HashSet<Id>,
}

impl Walk<'_, '_, '_> {
    fn run(&mut self, root: &Id) -> Result<Id> {
        let mut path: Vec<u8> = Vec::new();
        let tree = self.copier.src.load_tree(self.copier.src_index, root)?;
        let dir = self.dirs.open_copy(Node::new(Vec::new(), NodeKind::Dir), None, *root);
        self.open.insert(*root);
        let mut stack =
            vec![Frame { source: *root, dir, nodes: tree.nodes.into_iter(), path_len: 0, files: 0, bytes: 0 }];
        while let Some(top) = stack.last_mut() {
            let Some(mut node) = top.nodes.next() else {
                let done = stack.pop().expect("not empty");
                self.walked.insert(done.source, (done.files, done.bytes));
                if let Some(parent) = stack.last_mut() {
                    parent.files += done.files;
                    parent.bytes += done.bytes;
                }
                self.dirs.close(done.dir)?;
                self.written();
                continue;
            };
            path.truncate(top.path_len);
            path.push(b'/');
            path.extend_from_slice(&node.name);
            match node.kind {
                NodeKind::Dir => {
                    let Some(sub) = node.subtree else {
                        self.dirs.add(top.dir, node);
                        continue;
                    };
                    let (dir, depth) = (top.dir, stack.len());
                    if self.open.contains(&sub) {
                        // Met again while its files are in the pipeline.
                        self.wait_for(&sub, &path)?;
                    }
                    if let Some(done) = self.copier.trees.get(&sub).copied() {
                        node.subtree = Some(done.dst);
                        self.dirs.add(dir, node);
                        self.copier.counts.present(done.files, done.bytes);
                        self.progress.present(&path, done.files, done.bytes);
                        let top = stack.last_mut().expect("not empty");
                        top.files += done.files;
                        top.bytes += done.bytes;
                        continue;
                    }
                    if depth >= MAX_DEPTH {
                        return Err(Error::TreeTooDeep {
                            tree: root.short(),
                            path: abbreviate(&path, 120),
                            limit: MAX_DEPTH,
                        });
                    }
                    let tree = self.copier.src.load_tree(self.copier.src_index, &sub)?;
                    let up = self.dirs.add_subdir(dir);
                    let d = self.dirs.open_copy(node, Some(up), sub);
                    self.open.insert(sub);
                    stack.push(Frame {
                        source: sub,
                        dir: d,
                        nodes: tree.nodes.into_iter(),
                        path_len: path.len(),
                        files: 0,
                        bytes: 0,
                    });
                }
                NodeKind::File => {
                    top.files += 1;
                    top.bytes += node.size;
                    let dir = top.dir;
                    if node.content.is_empty() {
                        self.check_empty(&node, &path)?;
                        self.copier.counts.files += 1;
                        self.progress.file_done(&path, 0);
                        self.dirs.add(dir, node);
                        continue;
                    }
                    while self.pipe.in_flight() >= MAX_IN_FLIGHT {
                        let d = self.pipe.wait()?;
                        self.done(d)?;
                    }
                    while let Some(d) = self.pipe.ready()? {
                        self.done(d)?;
                    }
                    let content = std::mem::take(&mut node.content);
                    let size = node.size;
                    let place = self.dirs.add_pending(dir, node);
                    self.progress.queued(&path);
                    self.pipe.send(ContentJob { content, size, path: path.clone(), place })?;
                }
                _ => self.dirs.add(top.dir, node),
            }
        }
        self.pipe.close();
        while self.pipe.in_flight() > 0 {
            let d = self.pipe.wait()?;
            self.done(d)?;
        }
        self.written();
        let root = self.dirs.root().expect("every directory is written once its files are");
        Ok(root)
    }

    /// A file without chunks is empty.
    fn check_empty(&self, node: &Node, path: &[u8]) -> Result<()> {
        if node.size != 0 {
            return Err(Error::format(
                format!("file `{}` of the source", String::from_utf8_lossy(path)),
                format!("it has no chunks, its entry says {} bytes", node.size),
            ));
        }
        Ok(())
    }

    /// A file came back from the pipeline.
    fn done(&mut self, d: ContentDone) -> Result<()> {
        self.dirs.node_mut(d.place).content = d.content;
        self.copier.counts.files += 1;
        self.copier.counts.bytes += d.size;
        self.progress.file_done(&d.path, d.size);
        self.dirs.complete(d.place, true)?;
        self.written();
        Ok(())
    }

    /// Takes note of the directories written since the last call.
    fn written(&mut self) {
        for (source, dst) in self.dirs.take_copied() {
            let (files, bytes) = self.walked.remove(&source).unwrap_or_default();
            self.open.remove(&source);
            self.copier.trees.insert(source, TreeCopy { dst, files, bytes });
            self.copier.counts.trees += 1;
        }
    }

    /// Waits until the tree `sub`, walked to its end, is written.
    fn wait_for(&mut self, sub: &Id, path: &[u8]) -> Result<()> {
        while self.open.contains(sub) {
            if self.pipe.in_flight() == 0 || !self.walked.contains_key(sub) {
                // Not walked to its end: it holds itself.
                return Err(Error::format(
                    format!("directory `{}` of the source", String::from_utf8_lossy(path)),
                    "its tree contains itself",
                ));
            }
            let d = self.pipe.wait()?;
            self.done(d)?;
        }
        Ok(())
    }
}
