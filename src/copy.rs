//! Copying snapshots into another repository (`cairn copy`), which has its
//! own key, password and chunker seed.
//!
//! Blob ids are keyed with each repository's own key, so nothing of the
//! source can be named in the destination without reading it: every tree
//! is rewritten, and every chunk of file content is read, opened and
//! hashed again with the destination's key. A chunk the destination holds
//! already (in its index, or stored earlier in this session) is not sent.
//!
//! - Same chunker parameters (sizes and gear seed): each source chunk
//!   becomes one destination chunk, as it is.
//! - Other parameters: the file's content is read back in order, as a
//!   restore would, and cut again by the destination's chunker, so the
//!   copy deduplicates against what backups into the destination store.
//!
//! Trees are walked with an explicit stack ([`MAX_DEPTH`] levels at most,
//! as every walk of repository data), and written bottom-up as each
//! directory is complete; a source tree met twice (unchanged subtrees are
//! shared between snapshots) is copied once per session.
//!
//! A copied snapshot keeps the source's time, host, paths, tags and
//! summary, and records in `original` the snapshot it first came from, so
//! a copy of a copy still says where it started and the next copy knows
//! which snapshots the destination holds already.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::walk::{abbreviate, MAX_DEPTH};
use crate::repo::writer::{adopt_unindexed_packs, RepoWriter, WriterStats};
use crate::repo::{BlobKind, Index, IndexMode, Node, NodeKind, Repository, Snapshot, Tree};

/// What a copy session read and wrote, besides what the writer counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyCounts {
    /// Regular files whose content was copied.
    pub files: u64,
    /// Bytes of file content read from the source.
    pub bytes: u64,
    /// Distinct source trees rewritten.
    pub trees: u64,
    /// Chunks of file content the destination lacked, sent to it.
    pub chunks_added: u64,
}

/// Receives progress events while a snapshot is copied.
pub trait CopyProgress {
    /// A regular file's content was copied (`bytes` of it).
    fn file_done(&self, _path: &[u8], _bytes: u64) {}
}

/// Progress that goes nowhere.
pub struct NoCopyProgress;
impl CopyProgress for NoCopyProgress {}

/// Copies trees and file contents from one repository into another
/// through the destination's session writer.
pub struct Copier<'a> {
    src: &'a Repository,
    src_index: &'a Index,
    dst: &'a Repository,
    dst_index: &'a Index,
    /// Blobs stored by the sessions of this copy that finished (the
    /// destination's index was loaded before them).
    stored: HashSet<Id>,
    /// Blobs the current session stored or found.
    session: Vec<Id>,
    /// Cut file contents again: the chunker parameters differ.
    rechunk: Option<Chunker>,
    enc: Encoder,
    /// Source tree id → destination tree id, for this session.
    trees: HashMap<Id, Id>,
    pub counts: CopyCounts,
    /// The largest tree written, as readers accept ([`crate::repo::limits::TREE`]).
    tree_limit: u64,
}

impl<'a> Copier<'a> {
    /// A copier from `src` (read through its index in locations mode)
    /// into `dst`, whose index says what it holds.
    pub fn new(src: &'a Repository, src_index: &'a Index, dst: &'a Repository, dst_index: &'a Index) -> Copier<'a> {
        let same = src.config().chunker == dst.config().chunker;
        Copier {
            src,
            src_index,
            dst,
            dst_index,
            stored: HashSet::new(),
            session: Vec::new(),
            rechunk: (!same).then(|| Chunker::new(dst.config().chunker)),
            enc: Encoder::new(dst.config().compression),
            trees: HashMap::new(),
            counts: CopyCounts::default(),
            tree_limit: crate::repo::limits::TREE,
        }
    }

    /// Whether file contents are cut again (the chunker parameters differ).
    pub fn rechunks(&self) -> bool {
        self.rechunk.is_some()
    }

    /// Stores a blob through `writer` unless the destination has it.
    fn store(&mut self, writer: &RepoWriter, kind: BlobKind, data: &[u8]) -> Result<Id> {
        too_large(kind, data, if kind == BlobKind::Tree { self.tree_limit } else { u32::MAX as u64 })?;
        let id = self.dst.key().blob_id(data);
        if !self.stored.contains(&id) && writer.claim(self.dst_index, &id) {
            let mut sealed = Vec::with_capacity(data.len() / 2 + 64);
            self.enc.encode_into(self.dst.key(), data, &mut sealed);
            writer.add_blob(kind, id, data.len() as u32, &sealed)?;
            if kind == BlobKind::Data {
                self.counts.chunks_added += 1;
            }
        }
        self.session.push(id);
        Ok(id)
    }

    /// The session whose writer is `writer` ended with its packs and index
    /// stored: what it stored counts as present from now on.
    pub fn session_stored(&mut self) {
        self.stored.extend(self.session.drain(..));
    }

    /// The session ended without storing everything: forget what it
    /// meant to store, and the trees it copied.
    pub fn session_failed(&mut self) {
        self.session.clear();
        self.trees.clear();
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
        }
        let Some(subs) = self.compare(src_root, dst_root)? else { return Ok(()) };
        let mut stack = vec![Frame { s: *src_root, d: *dst_root, subs, next: 0, ok: true }];
        while let Some(depth) = stack.len().checked_sub(1) {
            let top = &mut stack[depth];
            if !top.ok || top.next == top.subs.len() {
                let done = stack.pop().expect("not empty");
                match stack.last_mut() {
                    _ if done.ok => {
                        self.trees.insert(done.s, done.d);
                    }
                    Some(parent) => parent.ok = false,
                    None => {}
                }
                continue;
            }
            let (x, y) = top.subs[top.next];
            top.next += 1;
            if let Some(known) = self.trees.get(&x) {
                top.ok &= *known == y;
                continue;
            }
            if depth + 1 >= MAX_DEPTH {
                top.ok = false;
                continue;
            }
            match self.compare(&x, &y)? {
                Some(subs) => stack.push(Frame { s: x, d: y, subs, next: 0, ok: true }),
                None => top.ok = false,
            }
        }
        Ok(())
    }

    /// The pairs of subtrees of two trees that match as a tree and its
    /// copy; `None` when they do not.
    fn compare(&self, s: &Id, d: &Id) -> Result<Option<Vec<(Id, Id)>>> {
        if !self.dst_index.contains(d) {
            return Ok(None);
        }
        let (st, dt) = (self.src.load_tree(self.src_index, s)?, self.dst.load_tree(self.dst_index, d)?);
        if st.nodes.len() != dt.nodes.len() {
            return Ok(None);
        }
        let bare = |n: &Node| Node { content: Vec::new(), subtree: None, ..n.clone() };
        let mut subs = Vec::new();
        for (a, b) in st.nodes.iter().zip(&dt.nodes) {
            if bare(a) != bare(b) || !b.content.iter().all(|c| self.dst_index.contains(c)) {
                return Ok(None);
            }
            if self.rechunk.is_none() && a.content.len() != b.content.len() {
                return Ok(None);
            }
            match (a.subtree, b.subtree) {
                (Some(x), Some(y)) => subs.push((x, y)),
                (None, None) => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(subs))
    }

    /// Copies the tree `root` and everything below it through `writer`
    /// (one session); returns the id of its copy in the destination.
    pub fn copy_tree(&mut self, writer: &RepoWriter, root: &Id, progress: &dyn CopyProgress) -> Result<Id> {
        if let Some(done) = self.trees.get(root) {
            return Ok(*done);
        }
        struct Frame {
            id: Id,
            tree: Tree,
            next: usize,
            /// The nodes copied so far.
            out: Vec<Node>,
            /// The directory node in the parent that waits for this tree's copy.
            node: Option<Node>,
            path_len: usize,
        }
        let mut path: Vec<u8> = Vec::new();
        let tree = self.src.load_tree(self.src_index, root)?;
        let mut stack = vec![Frame { id: *root, tree, next: 0, out: Vec::new(), node: None, path_len: 0 }];
        loop {
            let top = stack.last_mut().expect("the root frame is popped last");
            let Some(n) = top.tree.nodes.get(top.next) else {
                let done = stack.pop().expect("not empty");
                let copied = Tree::new(done.out).encode();
                let id = self.store(writer, BlobKind::Tree, &copied)?;
                self.trees.insert(done.id, id);
                self.counts.trees += 1;
                match stack.last_mut() {
                    None => return Ok(id),
                    Some(parent) => {
                        let mut node = done.node.expect("a subtree's frame holds its node");
                        node.subtree = Some(id);
                        parent.out.push(node);
                        continue;
                    }
                }
            };
            let mut node = n.clone();
            top.next += 1;
            let path_len = top.path_len;
            path.truncate(path_len);
            path.push(b'/');
            path.extend_from_slice(&node.name);
            match node.kind {
                NodeKind::Dir => {
                    let Some(sub) = node.subtree else {
                        top.out.push(node);
                        continue;
                    };
                    if let Some(done) = self.trees.get(&sub) {
                        node.subtree = Some(*done);
                        top.out.push(node);
                        continue;
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(Error::TreeTooDeep {
                            tree: root.short(),
                            path: abbreviate(&path, 120),
                            limit: MAX_DEPTH,
                        });
                    }
                    let tree = self.src.load_tree(self.src_index, &sub)?;
                    stack.push(Frame {
                        id: sub,
                        tree,
                        next: 0,
                        out: Vec::new(),
                        node: Some(node),
                        path_len: path.len(),
                    });
                }
                NodeKind::File => {
                    node.content = self.copy_content(writer, &node, &path)?;
                    self.counts.files += 1;
                    self.counts.bytes += node.size;
                    progress.file_done(&path, node.size);
                    top.out.push(node);
                }
                _ => top.out.push(node),
            }
        }
    }

    /// Copies one file's content; returns its chunk list in the destination.
    fn copy_content(&mut self, writer: &RepoWriter, node: &Node, path: &[u8]) -> Result<Vec<Id>> {
        let what = || String::from_utf8_lossy(path).into_owned();
        let Some(mut chunker) = self.rechunk.take() else {
            let mut out = Vec::with_capacity(node.content.len());
            let mut size = 0u64;
            for id in &node.content {
                let data = self.src.read_blob(self.src_index, id)?;
                size += data.len() as u64;
                out.push(self.store(writer, BlobKind::Data, &data)?);
            }
            check_size(size, node.size, what)?;
            return Ok(out);
        };
        let mut failed = None;
        let reader = Contents {
            src: self.src,
            index: self.src_index,
            ids: &node.content,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            failed: &mut failed,
        };
        let mut out = Vec::new();
        let mut stored = None;
        let read = chunker.chunk_stream::<_, std::io::Error>(reader, |chunk| {
            match self.store(writer, BlobKind::Data, chunk) {
                Ok(id) => {
                    out.push(id);
                    Ok(())
                }
                Err(e) => {
                    stored = Some(e);
                    Err(std::io::Error::other("store failed"))
                }
            }
        });
        self.rechunk = Some(chunker);
        if let Some(e) = stored.or(failed) {
            return Err(e);
        }
        let size = read.map_err(|e| Error::io(what(), e))?;
        check_size(size, node.size, what)?;
        Ok(out)
    }
}

/// A chunk list is the file's only when its bytes add up to its size.
fn check_size(read: u64, size: u64, what: impl Fn() -> String) -> Result<()> {
    if read != size {
        return Err(Error::format(
            format!("file `{}` of the source", what()),
            format!("its chunks hold {read} bytes, its entry says {size}"),
        ));
    }
    Ok(())
}

/// A file's content read back chunk by chunk from the source.
struct Contents<'a> {
    src: &'a Repository,
    index: &'a Index,
    ids: &'a [Id],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    /// Why reading stopped (the chunker only sees an I/O error).
    failed: &'a mut Option<Error>,
}

impl Read for Contents<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next) else { return Ok(0) };
            self.next += 1;
            self.buf = match self.src.read_blob(self.index, id) {
                Ok(b) => b,
                Err(e) => {
                    *self.failed = Some(e);
                    return Err(std::io::Error::other("the source could not be read"));
                }
            };
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The snapshot a copy of `source` (whose id is `source_id`) holds in the
/// destination, with its tree `tree` and its `parent` there, if copied.
pub fn copied_snapshot(source_id: Id, source: &Snapshot, tree: Id, parent: Option<Id>) -> Snapshot {
    Snapshot {
        tree,
        parent,
        original: Some(source.original.unwrap_or(source_id)),
        program_version: crate::VERSION.to_string(),
        ..source.clone()
    }
}

/// Refuses a blob of `kind` above `limit` bytes before it is stored: a tree
/// a re-chunked copy makes larger than readers accept, or any blob whose
/// length its index entry cannot hold.
fn too_large(kind: BlobKind, data: &[u8], limit: u64) -> Result<()> {
    if data.len() as u64 <= limit {
        return Ok(());
    }
    Err(Error::TooLarge {
        what: format!("a {} blob of the copy", if kind == BlobKind::Tree { "tree" } else { "data" }),
        detail: format!(
            "{} bytes, above the limit of {limit}: the destination could not read it back, so nothing of it is \
             stored (copy into a repository with larger chunk sizes, or split the directory in the source)",
            data.len()
        ),
    })
}

/// The snapshot a snapshot started as: itself, or the one it was copied from.
pub fn origin(id: Id, s: &Snapshot) -> Id {
    s.original.unwrap_or(id)
}

/// One snapshot copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Its id in the source.
    pub source: Id,
    /// Its id in the destination.
    pub snapshot: Id,
    pub time: chrono::DateTime<chrono::Utc>,
    pub host: String,
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// The snapshots copied, in the order given (oldest first).
    pub copied: Vec<Copied>,
    /// The snapshots given that the destination holds already.
    pub present: Vec<Copied>,
    /// File contents were cut again by the destination's chunker.
    pub rechunked: bool,
    pub counts: CopyCounts,
    /// What the destination's writers stored (summed over the snapshots).
    pub stored: WriterStats,
    /// Packs an interrupted copy or backup had stored in the destination
    /// without an index, indexed and reused.
    pub adopted_packs: usize,
    pub warnings: Vec<String>,
}

/// Copies `chosen` (snapshots of `src`, oldest first) into `dst`, each one
/// committed as soon as its packs and index are stored, so a copy that is
/// killed keeps the snapshots it finished and the packs of the one it was
/// copying (the next copy indexes them and sends nothing twice). Takes a
/// shared lock in both repositories: a prune of either waits. `report`
/// holds what was done when it fails, too.
pub fn run(
    src: &Repository,
    dst: &Repository,
    chosen: &[(Id, Snapshot)],
    progress: &dyn CopyProgress,
    report: &mut CopyReport,
) -> Result<()> {
    if src.id() == dst.id() {
        return Err(Error::CopyIntoItself { repository: src.id().short() });
    }
    let _src_lock = crate::repo::lock::acquire(src, false, "copy from")?;
    // The destination is written as a backup writes: its prune marks are
    // honoured, so what only marked packs hold is stored again (see
    // `crate::prune::marking`).
    let before = crate::repo::marks::list(dst)?;
    let _dst_lock = crate::repo::lock::acquire_honouring(dst, "copy to", before.ids())?;
    let after = crate::repo::marks::list(dst)?;
    let marked: std::collections::HashSet<Id> = before.packs().union(&after.packs()).copied().collect();
    let src_index = src.load_index()?;
    let filter = crate::repo::PackFilter { exclude: marked.clone(), demote: std::collections::HashSet::new() };
    let mut dst_index = dst.load_index_filtered(IndexMode::Membership, &filter)?;
    let adopted = adopt_unindexed_packs(dst, &mut dst_index, &marked)?;
    report.adopted_packs = adopted.packs;
    report.warnings.extend(
        adopted
            .unreadable
            .iter()
            .map(|(k, e)| format!("pack `{k}` of the destination is in no index and unreadable: {e}")),
    );
    let swept = crate::repo::litter::sweep(dst);
    report.warnings.extend(swept.failed.iter().map(|e| format!("could not remove litter: {e}")));
    let existing = dst.list_snapshots()?;
    report.warnings.extend(existing.damaged.iter().map(|(id, e)| {
        format!(
            "snapshot {} of the destination cannot be read; a snapshot it copied may be copied again: {e}",
            id.short()
        )
    }));
    // Where each origin is in the destination.
    let mut held: HashMap<Id, Id> = existing.snapshots.iter().map(|(id, s)| (origin(*id, s), *id)).collect();
    let mut copier = Copier::new(src, &src_index, dst, &dst_index);
    report.rechunked = copier.rechunks();
    if chosen.iter().any(|(id, s)| !held.contains_key(&origin(*id, s))) {
        learn_from_earlier_copies(&mut copier, src, &existing.snapshots, chosen, &mut report.warnings);
    }
    let result = copy_each(&mut copier, dst, chosen, progress, &mut held, report);
    report.counts = copier.counts;
    result
}

/// Pairs each snapshot to copy with the newest earlier snapshot of the
/// same host and paths that the destination holds a copy of, and learns
/// their trees ([`Copier::learn`]). Only an optimisation: what cannot be
/// read is a warning, and those directories are read again.
fn learn_from_earlier_copies(
    copier: &mut Copier<'_>,
    src: &Repository,
    dst_snapshots: &[(Id, Snapshot)],
    chosen: &[(Id, Snapshot)],
    warnings: &mut Vec<String>,
) {
    let all = match src.list_snapshots() {
        Ok(l) => l.snapshots,
        Err(e) => {
            warnings.push(format!("the source's snapshots could not be listed again, so every file is read: {e}"));
            return;
        }
    };
    let copies: HashMap<Id, &Snapshot> = dst_snapshots.iter().map(|(id, s)| (origin(*id, s), s)).collect();
    let mut pairs: Vec<(Id, Id)> = Vec::new();
    for (id, s) in chosen.iter().filter(|(id, s)| !copies.contains_key(&origin(*id, s))) {
        let base = all
            .iter()
            .filter(|(b, bs)| b != id && bs.time <= s.time && bs.same_source(&s.hostname, &s.paths))
            .filter_map(|(b, bs)| copies.get(&origin(*b, bs)).map(|c| (bs.time, (bs.tree, c.tree))))
            .max_by_key(|(time, _)| *time);
        if let Some((_, pair)) = base.filter(|(_, p)| !pairs.contains(p)) {
            pairs.push(pair);
        }
    }
    for (s, d) in pairs {
        if let Err(e) = copier.learn(&s, &d) {
            warnings.push(format!(
                "the trees of an earlier copy could not be compared, so their directories are read again: {e}"
            ));
        }
    }
}

fn copy_each(
    copier: &mut Copier<'_>,
    dst: &Repository,
    chosen: &[(Id, Snapshot)],
    progress: &dyn CopyProgress,
    held: &mut HashMap<Id, Id>,
    report: &mut CopyReport,
) -> Result<()> {
    let origins: HashMap<Id, Id> = chosen.iter().map(|(id, s)| (*id, origin(*id, s))).collect();
    let uploaders = dst.backend().concurrency().clamp(1, 4);
    for (id, s) in chosen {
        if let Some(there) = held.get(&origin(*id, s)) {
            report.present.push(Copied { source: *id, snapshot: *there, time: s.time, host: s.hostname.clone() });
            continue;
        }
        let writer = RepoWriter::new(dst, uploaders, 64);
        let tree = match copier.copy_tree(&writer, &s.tree, progress) {
            Ok(t) => t,
            Err(e) => {
                copier.session_failed();
                return Err(writer.finish().err().unwrap_or(e));
            }
        };
        let stats = match writer.finish() {
            Ok(st) => st,
            Err(e) => {
                copier.session_failed();
                return Err(e);
            }
        };
        copier.session_stored();
        add_stats(&mut report.stored, stats);
        let parent = s.parent.and_then(|p| held.get(origins.get(&p).unwrap_or(&p)).copied());
        let copy = copied_snapshot(*id, s, tree, parent);
        let new = dst.save_snapshot(&copy)?;
        held.insert(origin(*id, s), new);
        report.copied.push(Copied { source: *id, snapshot: new, time: s.time, host: s.hostname.clone() });
    }
    Ok(())
}

fn add_stats(sum: &mut WriterStats, s: WriterStats) {
    sum.packs += s.packs;
    sum.blobs += s.blobs;
    sum.raw_bytes += s.raw_bytes;
    sum.stored_bytes += s.stored_bytes;
    sum.index_files.extend(s.index_files);
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
