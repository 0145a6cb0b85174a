//! Garbage collection: remove data that no snapshot references.
//!
//! `plan` decides, `execute` does — so `--dry-run` and the report both
//! come from the plan. Planning walks every snapshot's trees into the set
//! of used blobs, then classifies each pack: fully used packs are kept,
//! fully unused ones removed, and partly used ones repacked (their used
//! blobs copied into new packs) from the most wasteful down, until the
//! unused bytes left are within `--max-unused`. Packs in no index (left by
//! interrupted backups) are removed too.
//!
//! Safety against a concurrent backup, in two phases: a pack to remove
//! (unused, unindexed, or repacked) is first marked, and deleted by a later
//! prune only when its mark is ripe and the walk still finds it unused
//! ([`super::marking`] states the rules and why they suffice). Until then
//! it stays in the index, and a backup that honours its mark stores again
//! any blob that only it holds. Prunes exclude each other; backups never
//! wait for a prune, nor a prune for a backup ([`crate::repo::lock`]).
//!
//! Safety against a crash: execution only ever moves from one consistent
//! state to the next. New packs are stored first; then new index files
//! listing every kept and new pack; then one small index file that
//! *supersedes* the old ones; only then are the old index files
//! deleted, then the marks made, then the packs of ripe marks deleted. Interrupted anywhere, the repository holds at worst duplicate
//! index entries or unindexed packs, which `check` accepts, and every
//! snapshot's data is still indexed and stored.
//!
//! Memory grows with the number of blobs, never with the amount of data,
//! and stays within 64 bytes per blob all included ([`PrunePlan::memory_bytes`]):
//! the index with locations (32 bytes per blob, see [`crate::repo::index`]),
//! two bits per blob for the used set, and one record per pack. The full
//! ids of the blobs are not held: repacking reads them from each pack's
//! header, and the index files are rewritten from the old ones, one file at
//! a time. Time grows with the number of blobs and trees; the data read is
//! only what is repacked.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::keyset::key_of;
use crate::repo::lock::{self, REPOSITORY_LOCKS};
use crate::repo::marks::{self, MarkList};
use crate::repo::pack::PackEntry;
use crate::repo::writer::RepoWriter;
use crate::repo::{pack, pack_key, BlobKind, Index, IndexFile, IndexMode, NodeKind, PackFilter, Repository};

use super::index_rewrite::{self, Listing};
use super::marking::{self, MarkState, MarkStep, MarksByPack};

/// The unused space, in percent of the kept packs' bytes, that prune
/// tolerates before it repacks, unless told otherwise (`--max-unused`, and
/// every scheduled prune).
pub const DEFAULT_MAX_UNUSED_PERCENT: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Repack,
    Delete,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackPlan {
    pub id: Id,
    pub kind: BlobKind,
    pub size: u64,
    pub used_blobs: u64,
    pub unused_blobs: u64,
    pub used_bytes: u64,
    pub unused_bytes: u64,
    pub action: Action,
    /// Where it stands in the two phases (`None` for a pack kept).
    pub mark: MarkStep,
    /// The pack's number in the plan's index.
    #[serde(skip)]
    n: u32,
    /// A mark names it (suspicious ones included), whatever this prune does.
    #[serde(skip)]
    named_by_mark: bool,
}

/// A stored pack that no index lists.
#[derive(Debug, Clone, Serialize)]
pub struct Unindexed {
    pub key: String,
    pub id: Id,
    pub size: u64,
    pub mark: MarkStep,
}

/// What a prune knows before it walks: the marks, judged against the live
/// locks it listed first, at its clock's "now", with its margin.
#[derive(Debug)]
pub struct Marking {
    pub now: chrono::DateTime<chrono::Utc>,
    pub margin: std::time::Duration,
    pub list: MarkList,
    pub states: Vec<MarkState>,
    /// Live locks whose own time is in the future: they count all the
    /// same, and are named.
    pub suspicious_locks: Vec<String>,
}

impl Marking {
    /// Lists the live locks under `locks/` first, then the marks, and
    /// judges the marks. The walk of the snapshots must come after this.
    pub fn read(repo: &Repository, margin: std::time::Duration) -> Result<Marking> {
        let locks = lock::judge_by_storage(repo, REPOSITORY_LOCKS)?;
        let now = locks.now;
        let list = marks::list(repo)?;
        let states = marking::judge(&list.marks, &locks.live, now, margin);
        let suspicious_locks =
            locks.suspicious.into_iter().map(|(key, l, why)| format!("{key}: {} ({why})", l.describe())).collect();
        Ok(Marking { now, margin, list, states, suspicious_locks })
    }
}

#[derive(Debug, Default, Serialize)]
pub struct PrunePlan {
    pub snapshots: usize,
    pub used_blobs: usize,
    pub packs: Vec<PackPlan>,
    /// Stored packs that no index lists.
    pub unindexed: Vec<Unindexed>,
    pub old_index_files: Vec<Id>,
    /// The marks found, as this prune judged them; the ripe ones are
    /// removed once their packs are deleted.
    pub marks: Vec<MarkState>,
    /// Marks that do not open, with why: ignored (their packs are marked again).
    pub damaged_marks: Vec<(Id, String)>,
    /// Live locks dated in the future (a wrong clock, or forged): they
    /// count all the same.
    pub suspicious_locks: Vec<String>,
    /// The safety margin, in seconds.
    pub margin_secs: u64,
    pub keep_bytes: u64,
    /// Bytes of the packs deleted now.
    pub delete_bytes: u64,
    /// Bytes of the packs marked (by this prune or an earlier one) and not
    /// deleted now.
    pub marked_bytes: u64,
    pub repack_bytes: u64,
    /// Unused bytes left in kept packs after the plan runs.
    pub unused_after: u64,
    /// Blobs in the in-memory index, and the bytes it takes.
    pub index_blobs: usize,
    pub index_memory_bytes: usize,
    /// With S3 Object Lock: the objects to delete that are locked, and
    /// until when. Deleting them leaves a delete marker at once; the
    /// storage keeps the data until the lock ends (and the bucket's
    /// lifecycle rule removes it), so they never make prune fail.
    pub locked: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Bytes the whole plan holds: index, used set and packs.
    pub memory_bytes: usize,
    #[serde(skip)]
    index: Index,
    #[serde(skip)]
    used: UsedSet,
}

/// Two bits per slot of the index: used by a snapshot, and (for trees)
/// walked. They are apart because a tree's bytes may also be a file's
/// content: such a blob is used before its tree is walked.
#[derive(Debug, Default)]
struct UsedSet(Vec<u64>);

impl UsedSet {
    fn new(slots: usize) -> UsedSet {
        UsedSet(vec![0; (slots * 2).div_ceil(64)])
    }
    fn get(&self, bit: usize) -> bool {
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }
    /// Sets a bit; false when it was set already.
    fn set(&mut self, bit: usize) -> bool {
        let was = self.get(bit);
        self.0[bit / 64] |= 1 << (bit % 64);
        !was
    }
    fn used(&self, pos: usize) -> bool {
        self.get(2 * pos)
    }
    fn mark_used(&mut self, pos: usize) -> bool {
        self.set(2 * pos)
    }
    fn mark_walked(&mut self, pos: usize) -> bool {
        self.set(2 * pos + 1)
    }
    fn memory_bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

impl PrunePlan {
    pub fn count(&self, a: Action) -> usize {
        self.packs.iter().filter(|p| p.action == a).count()
    }

    /// The keys and sizes of the packs deleted now.
    pub fn deleted_now(&self) -> Vec<(String, u64)> {
        let now = |m: &MarkStep| matches!(m, MarkStep::DeleteNow { .. });
        let packs = self.packs.iter().filter(|p| now(&p.mark)).map(|p| (pack_key(&p.id), p.size));
        packs.chain(self.unindexed.iter().filter(|u| now(&u.mark)).map(|u| (u.key.clone(), u.size))).collect()
    }

    /// What the rewritten index lists of each pack, by its number in the
    /// plan's index.
    fn listings(&self) -> Vec<Listing> {
        let mut listing = vec![Listing::Gone; self.index.packs().len()];
        for p in &self.packs {
            listing[p.n as usize] = match p.mark {
                MarkStep::DeleteNow { .. } => Listing::Gone,
                MarkStep::None => Listing::Whole { marked: p.named_by_mark },
                MarkStep::New | MarkStep::Waiting { .. } => Listing::Marked { repacked: p.action == Action::Repack },
            };
        }
        listing
    }

    /// The packs this prune marks.
    pub fn marked_now(&self) -> Vec<Id> {
        let packs = self.packs.iter().filter(|p| p.mark == MarkStep::New).map(|p| p.id);
        packs.chain(self.unindexed.iter().filter(|u| u.mark == MarkStep::New).map(|u| u.id)).collect()
    }

    /// The packs that earlier marks hold, with when each becomes deletable.
    pub fn waiting(&self) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        let w = |m: &MarkStep| match m {
            MarkStep::Waiting { deletable_from, .. } => Some(*deletable_from),
            _ => None,
        };
        let packs = self.packs.iter().filter_map(|p| w(&p.mark).map(|t| (pack_key(&p.id), t)));
        packs.chain(self.unindexed.iter().filter_map(|u| w(&u.mark).map(|t| (u.key.clone(), t)))).collect()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub packs_deleted: usize,
    /// Packs this prune marked, for a later one to delete.
    pub packs_marked: usize,
    /// Ripe marks removed once their packs were deleted.
    pub marks_removed: usize,
    /// Marks dated in the future removed once their unused packs were
    /// marked again.
    pub suspicious_marks_removed: usize,
    pub packs_written: u64,
    pub bytes_freed: u64,
    pub index_files_written: usize,
    pub index_files_deleted: usize,
    /// Temporaries that killed writes left, removed first.
    pub litter: crate::repo::litter::Swept,
}

/// Walks the snapshots `ids` and marks the blobs they use; returns the
/// number walked. Any unreadable snapshot or tree stops the prune:
/// deleting on partial knowledge could destroy what it references.
///
/// `ids` were listed before `index` was loaded: a backup writes its index
/// files before its snapshot, so every blob of a listed snapshot is in the
/// index, and a snapshot that ends after the listing is not walked (its
/// lock or its mark keeps its packs). Listed after the index, a backup
/// ending in between made the prune refuse: its snapshot's blobs were in
/// no index the prune had loaded.
fn mark_used(repo: &Repository, ids: &[Id], index: &Index, used: &mut UsedSet) -> Result<usize> {
    let not_indexed = |id: &Id| Error::UsedBlobNotIndexed { blob: id.to_string() };
    let mut missing = None;
    let mut walked = 0;
    for sid in ids {
        let snap = match repo.load_snapshot(sid) {
            Ok(s) => s,
            // A forget removed it since the listing: its data is not used by it.
            Err(Error::Backend(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        walked += 1;
        let mut stack = vec![snap.tree];
        while let Some(t) = stack.pop() {
            let pos = index.position(&t).ok_or_else(|| not_indexed(&t))?;
            used.mark_used(pos);
            if !used.mark_walked(pos) {
                continue; // shared subtree already walked
            }
            let tree = repo.load_tree(index, &t)?;
            for n in &tree.nodes {
                match n.kind {
                    NodeKind::Dir => stack.extend(n.subtree),
                    NodeKind::File => {
                        for c in &n.content {
                            match index.position(c) {
                                Some(p) => {
                                    used.mark_used(p);
                                }
                                None => {
                                    missing.get_or_insert(*c);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    match missing {
        Some(id) => Err(not_indexed(&id)),
        None => Ok(walked),
    }
}

/// Plans a prune; `marking` must have been read before (its locks listed
/// before the walk of the snapshots starts).
pub fn plan(repo: &Repository, max_unused: f64, marking: &Marking) -> Result<PrunePlan> {
    // The snapshots first, then the index (see `mark_used`).
    let snapshot_ids = repo.list_ids("snapshots")?;
    crate::failpoint::hit!("prune::snapshots_listed");
    // Every index file is replaced, unreadable ones included: their packs
    // count as unindexed (and a snapshot needing them stops the prune).
    let old_index_files: Vec<Id> = repo.list_ids("index")?;
    let by_pack = MarksByPack::new(&marking.list.marks, &marking.states);
    // A blob that a marked pack and another both hold counts in the other,
    // so a repacked pack is seen unused and its copies as used.
    // A mark that does not open may name any pack (one a newer build wrote,
    // say): then no pack counts as named by none.
    let named = marking.list.packs();
    let unknown_marks = !marking.list.damaged.is_empty();
    let demote: HashSet<Id> = named.iter().filter(|p| by_pack.is_marked(p)).copied().collect();
    let index = repo.load_index_filtered(IndexMode::Locations, &PackFilter { exclude: HashSet::new(), demote })?;
    let mut used = UsedSet::new(index.slot_count());
    let snapshots = mark_used(repo, &snapshot_ids, &index, &mut used)?;
    drop(snapshot_ids);

    // Used blobs and bytes per pack: a used blob counts in the pack that
    // holds the copy the index uses.
    let mut per_pack = vec![(0u64, 0u64); index.packs().len()];
    let mut used_blobs = 0;
    for pos in (0..index.slot_count()).filter(|&p| used.used(p)) {
        let l = index.location(pos);
        per_pack[l.pack as usize].0 += 1;
        per_pack[l.pack as usize].1 += l.length as u64;
        used_blobs += 1;
    }
    let mut plan = PrunePlan {
        snapshots,
        used_blobs,
        index_blobs: index.len(),
        index_memory_bytes: index.memory_bytes(),
        old_index_files,
        marks: marking.states.clone(),
        damaged_marks: marking.list.damaged.clone(),
        suspicious_locks: marking.suspicious_locks.clone(),
        margin_secs: marking.margin.as_secs(),
        ..Default::default()
    };
    let mut partial = Vec::new();
    for (n, info) in index.packs().iter().enumerate() {
        let (blobs, bytes) = index.pack_contents(n as u32);
        let (used_blobs, used_bytes) = per_pack[n];
        let mut p = PackPlan {
            id: info.id,
            kind: info.kind,
            size: info.size,
            used_blobs,
            unused_blobs: (blobs as u64).saturating_sub(used_blobs),
            used_bytes,
            unused_bytes: bytes.saturating_sub(used_bytes),
            action: Action::Keep,
            mark: MarkStep::None,
            n: n as u32,
            named_by_mark: unknown_marks || named.contains(&info.id),
        };
        p.action = if p.used_blobs == 0 {
            Action::Delete
        } else if p.unused_blobs > 0 {
            partial.push(plan.packs.len());
            Action::Keep
        } else {
            Action::Keep
        };
        plan.packs.push(p);
    }
    drop(per_pack);
    // Repack the most wasteful partly used packs until the unused bytes
    // left are within the limit.
    let kept_bytes: u64 =
        plan.packs.iter().filter(|p| p.action == Action::Keep).map(|p| p.used_bytes + p.unused_bytes).sum();
    let mut unused: u64 = plan.packs.iter().filter(|p| p.action == Action::Keep).map(|p| p.unused_bytes).sum();
    partial.sort_by(|a, b| {
        let r = |p: &PackPlan| p.unused_bytes as f64 / (p.used_bytes + p.unused_bytes).max(1) as f64;
        r(&plan.packs[*b]).total_cmp(&r(&plan.packs[*a]))
    });
    for i in partial {
        if (unused as f64) <= max_unused * kept_bytes as f64 {
            break;
        }
        plan.packs[i].action = Action::Repack;
        unused -= plan.packs[i].unused_bytes;
    }
    plan.unused_after = unused;
    for p in &mut plan.packs {
        p.mark = match p.action {
            Action::Keep => MarkStep::None,
            Action::Repack => by_pack.step(&p.id, false),
            Action::Delete => by_pack.step(&p.id, true),
        };
        match p.action {
            Action::Keep => plan.keep_bytes += p.size,
            Action::Repack => plan.repack_bytes += p.used_bytes,
            Action::Delete => {}
        }
    }
    plan.packs.sort_by_key(|p| p.id);
    for o in repo.backend().list("data/")? {
        if let Some(id) = o.key.rsplit('/').next().and_then(|n| n.parse::<Id>().ok()) {
            if !index.has_pack(&id) {
                plan.unindexed.push(Unindexed { key: o.key, id, size: o.size, mark: by_pack.step(&id, true) });
            }
        }
    }
    let sizes = plan.packs.iter().map(|p| (&p.mark, p.size)).chain(plan.unindexed.iter().map(|u| (&u.mark, u.size)));
    for (mark, size) in sizes.collect::<Vec<_>>() {
        match mark {
            MarkStep::DeleteNow { .. } => plan.delete_bytes += size,
            MarkStep::New | MarkStep::Waiting { .. } => plan.marked_bytes += size,
            MarkStep::None => {}
        }
    }
    let mut doomed: Vec<String> = plan.deleted_now().into_iter().map(|(k, _)| k).collect();
    doomed.extend(plan.old_index_files.iter().map(|id| format!("index/{id}")));
    plan.locked = crate::repo::object_lock::locked_until(repo, &doomed, chrono::Utc::now())?;
    plan.memory_bytes = index.memory_bytes()
        + used.memory_bytes()
        + plan.packs.capacity() * std::mem::size_of::<PackPlan>()
        + plan.unindexed.capacity() * std::mem::size_of::<Unindexed>()
        + plan.old_index_files.capacity() * std::mem::size_of::<Id>();
    plan.index = index;
    plan.used = used;
    Ok(plan)
}

pub fn execute(repo: &Repository, plan: &PrunePlan) -> Result<PruneReport> {
    let mut report = PruneReport { litter: crate::repo::litter::sweep(repo), ..Default::default() };
    let index = &plan.index;
    // 1. Copy the used blobs of packs to repack into new packs. The new
    //    packs are indexed by the writer's own index files.
    let writer = RepoWriter::new(repo, repo.backend().concurrency().clamp(1, 4), usize::MAX);
    let repack: HashSet<u32> = plan.packs.iter().filter(|p| p.action == Action::Repack).map(|p| p.n).collect();
    let mut to_copy: HashMap<u32, Vec<u32>> = HashMap::new();
    for pos in (0..index.slot_count()).filter(|&p| plan.used.used(p)) {
        let n = index.location(pos).pack;
        if repack.contains(&n) {
            to_copy.entry(n).or_default().push(pos as u32);
        }
    }
    for p in plan.packs.iter().filter(|p| p.action == Action::Repack) {
        copy_used_blobs(repo, index, p, to_copy.remove(&p.n).unwrap_or_default(), &writer)?;
    }
    let stats = writer.finish()?;
    crate::failpoint::hit!("prune::packs_written");
    report.packs_written = stats.packs;

    // 2. New index files for every pack but those deleted now (a marked
    //    pack stays listed until it is deleted, with the blobs stored
    //    nowhere else), then the file that supersedes all the old ones.
    report.index_files_written += index_rewrite::rewrite(repo, index, &plan.listings(), &|pos| plan.used.used(pos))?;
    let old: Vec<Id> = plan.old_index_files.clone();
    repo.save_index_file(&IndexFile { supersedes: old.clone(), packs: Vec::new() })?;
    crate::failpoint::hit!("prune::superseded");
    report.index_files_written += 1;

    // 3. Delete the superseded index files before any mark is made: a
    //    reader that honours this prune's marks (it started after them)
    //    then reads this prune's listing of every pack, never an older
    //    one that lists a blob this prune left out where the reader may
    //    take it (an older listing is read first when its id sorts first).
    let old_keys: Vec<String> = old.iter().map(|id| format!("index/{id}")).collect();
    // An index file may be gone already (an earlier prune was interrupted).
    for k in &old_keys {
        match repo.backend().delete(k) {
            Ok(()) => {
                crate::failpoint::hit!("prune::index_deleted");
                report.index_files_deleted += 1
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }

    // 4. Mark what a later prune deletes.
    let marked = plan.marked_now();
    if !marked.is_empty() {
        report.packs_marked = marked.len();
        marks::save(repo, marks::clock(repo), marked)?;
        crate::failpoint::hit!("prune::marked");
    }

    // 5. Only now delete the packs of ripe marks, then the ripe marks.
    let doomed: Vec<String> = plan
        .deleted_now()
        .into_iter()
        .map(|(key, size)| {
            report.bytes_freed += size;
            key
        })
        .collect();
    if !doomed.is_empty() {
        repo.backend().delete_many(&doomed)?;
        crate::failpoint::hit!("prune::packs_deleted");
    }
    report.packs_deleted = doomed.len();
    for m in plan.marks.iter().filter(|m| m.ripe) {
        marks::remove(repo, &m.id)?;
        report.marks_removed += 1;
    }
    // A mark dated in the future would keep backups from deduplicating
    // against its packs until that date. Its packs still unused were marked
    // again above, correctly dated: it goes now.
    for m in plan.marks.iter().filter(|m| m.suspicious) {
        marks::remove(repo, &m.id)?;
        report.suspicious_marks_removed += 1;
    }
    if let Some(c) = repo.cache() {
        let keep: HashSet<Id> = repo.list_ids("index")?.into_iter().collect();
        c.retain("index", &keep);
    }
    Ok(report)
}

/// Copies the blobs of pack `p` at the index slots `used` into the
/// writer. Their full ids come from the pack's authenticated header; a
/// used blob that the header does not show where the index says stops the
/// prune before anything is deleted.
fn copy_used_blobs(repo: &Repository, index: &Index, p: &PackPlan, used: Vec<u32>, writer: &RepoWriter) -> Result<()> {
    let key = pack_key(&p.id);
    let data = repo.backend().get(&key)?;
    if Id::hash_of(&data) != p.id {
        return Err(Error::Integrity { what: format!("pack `{key}` (content does not match its name)") });
    }
    let bad = |d: String| Error::Integrity { what: format!("pack `{key}` header ({d})") };
    let hlen = pack::header_len_from_trailer(&data).ok_or_else(|| bad("pack too short".into()))? as usize;
    if hlen + 4 > data.len() {
        return Err(bad(format!("header length {hlen} exceeds the pack")));
    }
    let start = data.len() - 4 - hlen;
    let plain = repo.key().open(&data[start..data.len() - 4]).map_err(|_| bad("authentication failed".into()))?;
    let entries = pack::decode_header(&plain).map_err(bad)?;
    let at: HashMap<u32, &PackEntry> = entries.iter().map(|e| (e.offset, e)).collect();
    for pos in used.into_iter().map(|p| p as usize) {
        let l = index.location(pos);
        let e = at
            .get(&l.offset)
            .filter(|e| e.length == l.length && key_of(&e.id) == *index.key(pos))
            .ok_or_else(|| bad(format!("no blob at offset {} where the index has one", l.offset)))?;
        let sealed = data
            .get(l.offset as usize..l.offset as usize + l.length as usize)
            .ok_or_else(|| bad(format!("blob at offset {} runs past the end of the pack", l.offset)))?;
        // Copied sealed as it is, but only after checking it opens.
        crate::repo::blob::decode(repo.key(), sealed, &e.id, l.raw_length as u64)
            .map_err(|err| Error::Integrity { what: format!("blob {} in pack `{key}` ({err})", e.id.short()) })?;
        writer.add_blob(e.kind, e.id, l.raw_length, sealed)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
