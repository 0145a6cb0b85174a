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
//! Trees are walked with an explicit stack (`MAX_DEPTH` levels at most,
//! as every walk of repository data), files are copied on the backup's
//! content pipeline, several at once, and directories are written
//! bottom-up as each is complete ([`walk`]); a source tree met twice
//! (unchanged subtrees are shared between snapshots) is copied once per
//! run.
//!
//! A copied snapshot keeps the source's time, host, paths, tags and
//! summary, and records in `original` the snapshot it first came from, so
//! a copy of a copy still says where it started and the next copy knows
//! which snapshots the destination holds already.
//!
//! Only a destination snapshot that its evidence records counts as held
//! without question. One that no record names (a copy killed after
//! committing it and before its `copy` record; or one planted by someone
//! else with the password, claiming an `original`) is copied again: the
//! copy of a tree is deterministic for the destination's key and chunker,
//! so an honest one re-derives exactly (and nothing is sent: every blob
//! is there). It is then taken as this copy's own ([`CopyReport::resumed`],
//! recorded by the caller); anything else is left as it is (its check
//! still flags it) and the snapshot is copied anew. Earlier copies that
//! no record names are never used to skip reading a directory either.

mod content;
mod walk;

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::write_start;
use crate::repo::writer::WriterStats;
use crate::repo::{IndexMode, Repository, Snapshot};

pub use walk::Copier;

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
    /// Regular files, and their bytes, of directories that were not read:
    /// an earlier copy holds them, or this one copied them once already.
    pub files_present: u64,
    pub bytes_present: u64,
}

impl CopyCounts {
    fn present(&mut self, files: u64, bytes: u64) {
        self.files_present += files;
        self.bytes_present += bytes;
    }

    /// The regular files of the snapshots copied, read or present.
    pub fn files_total(&self) -> u64 {
        self.files + self.files_present
    }

    /// Their bytes.
    pub fn bytes_total(&self) -> u64 {
        self.bytes + self.bytes_present
    }
}

/// Receives progress events while snapshots are copied (on the thread
/// that called [`run`]); every method has a no-op default.
pub trait CopyProgress {
    /// The snapshots to copy hold `files` regular files of `bytes` in all
    /// (their summaries say so): the total.
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// A regular file goes to the readers.
    fn queued(&self, _path: &[u8]) {}
    /// A regular file's content was copied (`bytes` of it).
    fn file_done(&self, _path: &[u8], _bytes: u64) {}
    /// The directory at `path` is copied already (by an earlier copy, or
    /// earlier in this one): its `files` and `bytes` count as done.
    fn present(&self, _path: &[u8], _files: u64, _bytes: u64) {}
}

/// Progress that goes nowhere.
pub struct NoCopyProgress;
impl CopyProgress for NoCopyProgress {}

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
    /// Snapshots an earlier copy wrote into the destination and never
    /// recorded (it was stopped first), each re-derived exactly from its
    /// source by this copy: its record lists them as written.
    pub resumed: Vec<Copied>,
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

/// Answers which of the destination's snapshots (all that open) no
/// evidence record names: the caller's evidence check, which sits above
/// this layer.
pub type FindUnrecorded<'a> = dyn Fn(&[(Id, Snapshot)]) -> Result<HashSet<Id>> + 'a;

/// Copies `chosen` (snapshots of `src`, oldest first) into `dst` with
/// `threads` readers and sealers (more readers from remote storage), each one
/// committed as soon as its packs and index are stored, so a copy that is
/// killed keeps the snapshots it finished and the packs of the one it was
/// copying (the next copy indexes them and sends nothing twice). Takes a
/// shared lock in both repositories: a prune of either waits. `report`
/// holds what was done when it fails, too.
///
/// `unrecorded` answers which of the destination's snapshots no evidence
/// record names (see the module's notes); when it fails, that is a warning
/// and every snapshot of the destination counts as recorded.
pub fn run(
    src: &Repository,
    dst: &Repository,
    chosen: &[(Id, Snapshot)],
    threads: usize,
    unrecorded: &FindUnrecorded<'_>,
    progress: &dyn CopyProgress,
    report: &mut CopyReport,
) -> Result<()> {
    if src.id() == dst.id() {
        return Err(Error::CopyIntoItself { repository: src.id().short() });
    }
    let _src_lock = crate::repo::lock::acquire(src, false, "copy from")?;
    // The destination is written as a backup writes: its prune marks are
    // honoured, so what only marked packs hold is stored again (see
    // `crate::prune::marking`). The source's index loads meanwhile.
    let (writing, src_index) = write_start::start(dst, "copy to", || src.load_index_as(IndexMode::Compact))?;
    let write_start::Started { lock: _dst_lock, index: dst_index, adopted } = writing;
    let src_index = src_index?;
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
    // Fails closed: when the destination's evidence cannot be checked, no
    // snapshot there counts as recorded, so none is taken as a copy made
    // (only an exact re-derivation is) and none stands in for a source tree.
    let unrecorded = unrecorded(&existing.snapshots).unwrap_or_else(|e| {
        report.warnings.push(format!(
            "the destination's evidence could not be checked, so no snapshot there is taken as a copy made \
             unless this copy re-derives it exactly: {e}"
        ));
        existing.snapshots.iter().map(|(id, _)| *id).collect()
    });
    let (recorded, unrecorded): (Vec<_>, Vec<_>) =
        existing.snapshots.into_iter().partition(|(id, _)| !unrecorded.contains(id));
    // Where each origin is in the destination, as recorded; and the
    // snapshots no record names, which may be a stopped copy's.
    let mut held =
        Held { at: recorded.iter().map(|(id, s)| (origin(*id, s), *id)).collect(), unrecorded: HashMap::new() };
    for (id, s) in unrecorded {
        held.unrecorded.entry(origin(id, &s)).or_default().push((id, s));
    }
    // Each reader waits for one chunk at a time: from remote storage, as
    // many readers as requests may be in flight.
    let readers = if src.backend().is_remote() { threads.max(src.backend().concurrency()) } else { threads };
    let mut copier = Copier::new(src, &src_index, dst, &dst_index, readers);
    report.rechunked = copier.rechunks();
    if chosen.iter().any(|(id, s)| !held.at.contains_key(&origin(*id, s))) {
        learn_from_earlier_copies(&mut copier, src, &recorded, chosen, &mut report.warnings);
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

/// The destination's snapshots by origin.
struct Held {
    /// Recorded in its evidence: the one of each origin.
    at: HashMap<Id, Id>,
    /// Named by no record.
    unrecorded: HashMap<Id, Vec<(Id, Snapshot)>>,
}

fn copy_each(
    copier: &mut Copier<'_>,
    dst: &Repository,
    chosen: &[(Id, Snapshot)],
    progress: &dyn CopyProgress,
    held: &mut Held,
    report: &mut CopyReport,
) -> Result<()> {
    let origins: HashMap<Id, Id> = chosen.iter().map(|(id, s)| (*id, origin(*id, s))).collect();
    let uploaders = dst.backend().concurrency().clamp(1, 4);
    let to_copy = chosen.iter().filter(|(id, s)| !held.at.contains_key(&origin(*id, s)));
    let (files, bytes) = to_copy.fold((0, 0), |(f, b), (_, s)| (f + s.summary.files_total, b + s.summary.bytes_total));
    progress.planned(files, bytes);
    for (id, s) in chosen {
        let copied = |snapshot| Copied { source: *id, snapshot, time: s.time, host: s.hostname.clone() };
        if let Some(there) = held.at.get(&origin(*id, s)) {
            report.present.push(copied(*there));
            continue;
        }
        let writer = copier.session(uploaders);
        let tree = match copier.copy_tree(&writer, &s.tree, progress) {
            Ok(t) => t,
            // What was stored stays (a later copy adopts its packs); an
            // upload's own error says more than the stage that stopped.
            Err(e) => return Err(copier.end_session(writer).err().unwrap_or(e)),
        };
        let stats = copier.end_session(writer)?;
        add_stats(&mut report.stored, stats);
        let parent = s.parent.and_then(|p| held.at.get(origins.get(&p).unwrap_or(&p)).copied());
        let copy = copied_snapshot(*id, s, tree, parent);
        // A stopped copy's snapshot is this very copy, but for the
        // program that wrote it.
        let same =
            |there: &Snapshot| Snapshot { program_version: there.program_version.clone(), ..copy.clone() } == *there;
        let stopped = held.unrecorded.get(&origin(*id, s)).and_then(|c| c.iter().find(|(_, there)| same(there)));
        if let Some(there) = stopped.map(|(there, _)| *there) {
            held.at.insert(origin(*id, s), there);
            report.resumed.push(copied(there));
            continue;
        }
        let new = dst.save_snapshot(&copy)?;
        crate::failpoint::hit!("copy::snapshot_committed");
        held.at.insert(origin(*id, s), new);
        report.copied.push(copied(new));
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
mod tests;
