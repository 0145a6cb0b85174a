//! Garbage collection: remove data that no snapshot references.
//!
//! `plan` decides, `execute` does — so `--dry-run` and the report both
//! come from the plan. Planning walks every snapshot's trees into the set
//! of used blobs, then classifies each pack: fully used packs are kept,
//! fully unused ones deleted, and partly used ones repacked (their used
//! blobs copied into new packs) from the most wasteful down, until the
//! unused bytes left are within `--max-unused`. Packs in no index (left by
//! interrupted backups) are deleted too.
//!
//! Safety against a concurrent backup: prune holds the repository's
//! exclusive lock, which no backup holds at the same time (backups take a
//! shared one; see [`crate::repo::lock`]).
//!
//! Safety against a crash: execution only ever moves from one consistent
//! state to the next. New packs are stored first; then new index files
//! listing every kept and new pack; then one small index file that
//! *supersedes* the old ones; only then are packs and old index files
//! deleted. Interrupted anywhere, the repository holds at worst duplicate
//! index entries or unindexed packs, which `check` accepts, and every
//! snapshot's data is still indexed and stored.
//!
//! Memory and time grow with the number of blobs and trees (the index),
//! never with the amount of data, except for the bytes actually repacked.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::pack::PackEntry;
use crate::repo::writer::RepoWriter;
use crate::repo::{pack_key, BlobKind, IndexFile, NodeKind, PackInfo, Repository};

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
    #[serde(skip)]
    entries: Vec<PackEntry>,
    /// Positions in `entries` of the blobs this pack provides (the
    /// index's chosen copy of a used blob).
    #[serde(skip)]
    used: Vec<u32>,
}

#[derive(Debug, Default, Serialize)]
pub struct PrunePlan {
    pub snapshots: usize,
    pub used_blobs: usize,
    pub packs: Vec<PackPlan>,
    /// Stored packs that no index lists, with their sizes.
    pub unindexed: Vec<(String, u64)>,
    pub old_index_files: Vec<Id>,
    pub keep_bytes: u64,
    pub delete_bytes: u64,
    pub repack_bytes: u64,
    /// Unused bytes left in kept packs after the plan runs.
    pub unused_after: u64,
    /// Blobs in the in-memory index, and the bytes it takes.
    pub index_blobs: usize,
    pub index_memory_bytes: usize,
}

impl PrunePlan {
    pub fn count(&self, a: Action) -> usize {
        self.packs.iter().filter(|p| p.action == a).count()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub packs_deleted: usize,
    pub packs_written: u64,
    pub bytes_freed: u64,
    pub index_files_written: usize,
    pub index_files_deleted: usize,
    /// Temporaries that killed writes left, removed first.
    pub litter: crate::repo::litter::Swept,
}

/// Walks every snapshot and returns the set of blobs they use. Any
/// unreadable snapshot or tree stops the prune: deleting on partial
/// knowledge could destroy what it references.
fn used_blobs(repo: &Repository, index: &crate::repo::Index) -> Result<(HashSet<Id>, usize)> {
    let mut used: HashSet<Id> = HashSet::new();
    let ids = repo.list_ids("snapshots")?;
    for sid in &ids {
        let snap = repo.load_snapshot(sid)?;
        let mut stack = vec![snap.tree];
        while let Some(t) = stack.pop() {
            if !used.insert(t) {
                continue; // shared subtree already walked
            }
            let tree = repo.load_tree(index, &t)?;
            for n in &tree.nodes {
                match n.kind {
                    NodeKind::Dir => stack.extend(n.subtree),
                    NodeKind::File => used.extend(n.content.iter().copied()),
                    _ => {}
                }
            }
        }
    }
    for id in &used {
        if !index.contains(id) {
            return Err(Error::Integrity {
                what: format!(
                    "blob {id}, used by a snapshot, is in no index (run `cairn check`; prune refuses to run)"
                ),
            });
        }
    }
    Ok((used, ids.len()))
}

pub fn plan(repo: &Repository, max_unused: f64) -> Result<PrunePlan> {
    // Every index file is replaced, unreadable ones included: their packs
    // count as unindexed (and a snapshot needing them stops the prune).
    let old_index_files: Vec<Id> = repo.list_ids("index")?;
    let files = repo.load_index_files()?;
    let superseded: HashSet<Id> = files.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
    let mut index = crate::repo::Index::new();
    let mut packs: HashMap<Id, (PackInfo, Vec<PackEntry>)> = HashMap::new();
    // Entries are moved, never copied: prune's memory is the index's.
    for (id, f) in files {
        if superseded.contains(&id) {
            continue;
        }
        for (info, entries) in f.packs {
            if let std::collections::hash_map::Entry::Vacant(v) = packs.entry(info.id) {
                index.add_pack(info.clone(), &entries);
                v.insert((info, entries));
            }
        }
    }
    index.compact();
    let (used, snapshots) = used_blobs(repo, &index)?;

    let mut plan = PrunePlan {
        snapshots,
        used_blobs: used.len(),
        index_blobs: index.len(),
        index_memory_bytes: index.memory_bytes(),
        old_index_files,
        ..Default::default()
    };
    let mut partial = Vec::new();
    for (pid, (info, entries)) in packs {
        let mut p = PackPlan {
            id: pid,
            kind: info.kind,
            size: info.size,
            used_blobs: 0,
            unused_blobs: 0,
            used_bytes: 0,
            unused_bytes: 0,
            action: Action::Keep,
            entries: Vec::new(),
            used: Vec::new(),
        };
        for (pos, e) in entries.iter().enumerate() {
            // Used, and this pack holds the copy the index uses.
            let provides = used.contains(&e.id) && index.get(&e.id).is_some_and(|l| index.pack(l.pack).id == pid);
            if provides {
                p.used_blobs += 1;
                p.used_bytes += e.length as u64;
                p.used.push(pos as u32);
            } else {
                p.unused_blobs += 1;
                p.unused_bytes += e.length as u64;
            }
        }
        p.entries = entries;
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
    for p in &plan.packs {
        match p.action {
            Action::Keep => plan.keep_bytes += p.size,
            Action::Repack => plan.repack_bytes += p.used_bytes,
            Action::Delete => plan.delete_bytes += p.size,
        }
    }
    plan.packs.sort_by_key(|p| p.id);
    let indexed: HashSet<Id> = plan.packs.iter().map(|p| p.id).collect();
    for o in repo.backend().list("data/")? {
        if let Some(id) = o.key.rsplit('/').next().and_then(|n| n.parse::<Id>().ok()) {
            if !indexed.contains(&id) {
                plan.delete_bytes += o.size;
                plan.unindexed.push((o.key, o.size));
            }
        }
    }
    Ok(plan)
}

pub fn execute(repo: &Repository, plan: &PrunePlan) -> Result<PruneReport> {
    let mut report = PruneReport { litter: crate::repo::litter::sweep(repo), ..Default::default() };
    // 1. Copy the used blobs of packs to repack into new packs.
    let writer = RepoWriter::new(repo, repo.backend().concurrency().clamp(1, 4), usize::MAX);
    writer.keep_stored_entries();
    for p in plan.packs.iter().filter(|p| p.action == Action::Repack) {
        let key = pack_key(&p.id);
        let data = repo.backend().get(&key)?;
        if Id::hash_of(&data) != p.id {
            return Err(Error::Integrity { what: format!("pack `{key}` (content does not match its name)") });
        }
        for e in p.used.iter().map(|&i| &p.entries[i as usize]) {
            let sealed = &data[e.offset as usize..e.offset as usize + e.length as usize];
            // Copied sealed as it is, but only after checking it opens.
            crate::repo::blob::decode(repo.key(), sealed, &e.id, e.raw_length as u64)
                .map_err(|err| Error::Integrity { what: format!("blob {} in pack `{key}` ({err})", e.id.short()) })?;
            writer.add_blob(e.kind, e.id, e.raw_length, sealed)?;
        }
    }
    let stats = writer.finish()?;
    crate::failpoint::hit!("prune::packs_written");
    report.packs_written = stats.packs;

    // 2. New index files for every kept and new pack, then the file that
    //    supersedes all the old ones.
    let mut entries: Vec<(PackInfo, Vec<PackEntry>)> = plan
        .packs
        .iter()
        .filter(|p| p.action == Action::Keep)
        .map(|p| (PackInfo { id: p.id, kind: p.kind, size: p.size }, p.entries.clone()))
        .collect();
    entries.extend(stats.stored.iter().cloned());
    for file in crate::repo::index::split_into_files(entries) {
        repo.save_index_file(&file)?;
        crate::failpoint::hit!("prune::index_written");
        report.index_files_written += 1;
    }
    let mut old: Vec<Id> = plan.old_index_files.clone();
    old.extend(stats.index_files.iter().copied());
    repo.save_index_file(&IndexFile { supersedes: old.clone(), packs: Vec::new() })?;
    crate::failpoint::hit!("prune::superseded");
    report.index_files_written += 1;

    // 3. Only now delete packs, then the superseded index files.
    let mut doomed: Vec<String> = plan
        .packs
        .iter()
        .filter(|p| p.action != Action::Keep)
        .map(|p| {
            report.bytes_freed += p.size;
            pack_key(&p.id)
        })
        .collect();
    for (key, size) in &plan.unindexed {
        report.bytes_freed += size;
        doomed.push(key.clone());
    }
    repo.backend().delete_many(&doomed)?;
    crate::failpoint::hit!("prune::packs_deleted");
    report.packs_deleted = doomed.len();
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
    if let Some(c) = repo.cache() {
        let keep: HashSet<Id> = repo.list_ids("index")?.into_iter().collect();
        c.retain("index", &keep);
    }
    Ok(report)
}
