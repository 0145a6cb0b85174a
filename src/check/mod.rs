//! Repository checks.
//!
//! Structure (always): every index file opens; every indexed pack is
//! stored with the recorded size; every snapshot opens, and every tree and
//! chunk it references is indexed and every tree decodes, each distinct
//! tree once; file sizes match their chunks, hard links agree, and no
//! snapshot nests deeper than the walk's limit ([`trees`]). With `--read-data` (or a subset of packs), every blob of every
//! pack read is opened, decompressed and hashed again, and the pack header
//! is compared with the index. Damage is reported by object name, with the
//! snapshots and files it affects.
//!
//! Packs that are stored but in no index are not errors: an interrupted
//! backup leaves them, the next backup adopts them, and prune removes
//! them if nobody does. Nor are the temporary files and stale locks that
//! killed processes leave: they are reported as litter, which the next
//! backup, prune or `cairn unlock` removes. Key slots that cannot be used
//! (damaged, or asking for more than the Argon2id cap) are errors.
//!
//! The evidence is checked by [`crate::evidence::check::check_repository`]
//! (every record verifies, and the snapshots agree with the records), which
//! `cairn check` adds to this report (evidence sits above this module).

mod trees;

pub use trees::AFFECTED_PER_SNAPSHOT;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::seq::SliceRandom;
use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::repo::keyset::{key_of, Key};
use crate::repo::{blob, keys, litter, pack, pack_key, Index, IndexMode, Repository};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A random subset of the packs, as a fraction in `(0, 1]`.
    Subset(f64),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The object at fault: `data/..`, `index/..`, `snapshots/..`, a blob.
    pub object: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Affected {
    pub snapshot: String,
    pub path: String,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub index_files: usize,
    pub packs: usize,
    pub snapshots: usize,
    pub trees: usize,
    pub packs_read: usize,
    pub blobs_read: usize,
    pub errors: Vec<Problem>,
    /// Packs with damage found by reading them, by storage key.
    pub damaged_packs: Vec<String>,
    /// Snapshot files that depend on missing or damaged objects.
    pub affected: Vec<Affected>,
    /// Snapshots with more affected files than are listed (short ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected_not_listed: Vec<String>,
    /// Stored packs that no index lists (harmless leftovers).
    pub unindexed_packs: Vec<String>,
    /// Temporary files of interrupted writes.
    pub temporaries: Vec<litter::Temporary>,
    /// Locks that no longer count (dead, old, from the future, unreadable).
    pub stale_locks: Vec<litter::StaleLock>,
    /// Every snapshot that opened: id, time, host (for the evidence
    /// cross-check, which sits above this module).
    #[serde(skip)]
    pub snapshot_list: Vec<(Id, chrono::DateTime<chrono::Utc>, String)>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn check(repo: &Repository, read: ReadData, threads: usize) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    for slot in keys::list(repo.backend().as_ref(), &repo.key_slot())? {
        if let Some(problem) = slot.problem {
            r.errors.push(Problem { object: format!("keys/{}", slot.id), message: format!("key slot {problem}") });
        }
    }
    let found = litter::survey(repo)?;
    r.temporaries = found.temporaries;
    r.stale_locks = found.stale_locks;
    // Index files, one by one, so one bad file does not hide the others.
    let index = repo.build_index(IndexMode::Locations, &mut |id, e| {
        r.errors.push(Problem { object: format!("index/{id}"), message: e.to_string() });
        Ok(())
    })?;
    r.index_files = index.files_read();

    // Packs: indexed ones must be stored, with the recorded size.
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list("data/")?
        .into_iter()
        .filter_map(|o| o.key.rsplit('/').next().and_then(|n| n.parse().ok()).map(|id| (id, o.size)))
        .collect();
    let mut missing_packs: HashSet<u32> = HashSet::new();
    for (n, p) in index.packs().iter().enumerate() {
        match stored.get(&p.id) {
            None => {
                missing_packs.insert(n as u32);
                r.errors.push(Problem { object: pack_key(&p.id), message: "indexed but missing from storage".into() });
            }
            Some(&size) if size != p.size => {
                missing_packs.insert(n as u32);
                r.errors.push(Problem {
                    object: pack_key(&p.id),
                    message: format!("stored size {size} differs from the indexed {}", p.size),
                })
            }
            _ => {}
        }
    }
    r.packs = index.packs().len();
    r.unindexed_packs = stored.keys().filter(|id| !index.has_pack(id)).map(pack_key).collect();
    r.unindexed_packs.sort();

    // Read data: open and hash every blob of the chosen packs.
    // Damaged blobs, by key (the index keeps no full id).
    let mut bad_blobs: HashSet<Key> = HashSet::new();
    let mut chosen: Vec<u32> = (0..index.packs().len() as u32).filter(|n| !missing_packs.contains(n)).collect();
    match read {
        ReadData::None => chosen.clear(),
        ReadData::All => {}
        ReadData::Subset(frac) => {
            chosen.shuffle(&mut rand::thread_rng());
            let keep = ((chosen.len() as f64 * frac).ceil() as usize).min(chosen.len());
            chosen.truncate(keep);
        }
    }
    if !chosen.is_empty() {
        let by_pack = index.slots_by_pack();
        let next = AtomicUsize::new(0);
        let found: Mutex<Vec<PackFindings>> = Mutex::new(Vec::new());
        let blobs_read = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&n) = chosen.get(i) else { break };
                    let (bad, msgs, count) = read_pack(repo, &index, n, by_pack.of(n));
                    blobs_read.fetch_add(count, Ordering::Relaxed);
                    if !msgs.is_empty() {
                        found.lock().unwrap().push((pack_key(&index.pack(n).id), bad, msgs));
                    }
                });
            }
        });
        r.packs_read = chosen.len();
        r.blobs_read = blobs_read.into_inner();
        let mut found = found.into_inner().unwrap();
        found.sort();
        for (key, bad, msgs) in found {
            bad_blobs.extend(bad);
            for m in msgs {
                r.errors.push(Problem { object: key.clone(), message: m });
            }
            r.damaged_packs.push(key);
        }
    }

    // Snapshots and their trees, each distinct tree verified once. A blob
    // is unusable when its pack is missing or it was read damaged.
    let mut trees =
        trees::TreeCheck::new(repo, &index, trees::Damage { missing_packs: &missing_packs, bad_blobs: &bad_blobs });
    for sid in repo.list_ids("snapshots")? {
        match repo.load_snapshot(&sid) {
            Ok(snap) => {
                r.snapshots += 1;
                r.snapshot_list.push((sid, snap.time, snap.hostname.clone()));
                trees.snapshot(&mut r, &sid, &snap.tree);
            }
            Err(e) => r.errors.push(Problem { object: format!("snapshots/{sid}"), message: e.to_string() }),
        }
    }
    r.affected.sort();
    r.affected.dedup();
    Ok(r)
}

/// A damaged pack: its key, the keys of its bad blobs, and what was wrong.
type PackFindings = (String, Vec<Key>, Vec<String>);

/// Reads one pack whole: checks the header against the index and every
/// blob against its id. Returns bad blob keys, messages, blobs read.
fn read_pack(repo: &Repository, index: &Index, n: u32, slots: &[u32]) -> (Vec<Key>, Vec<String>, usize) {
    let info = index.pack(n);
    let key = pack_key(&info.id);
    let data = match repo.backend().get(&key) {
        Ok(d) => d,
        Err(e) => return (slots.iter().map(|&p| *index.key(p as usize)).collect(), vec![e.to_string()], 0),
    };
    let mut msgs = Vec::new();
    if Id::hash_of(&data) != info.id {
        msgs.push("content does not match the pack's name (altered or damaged)".to_string());
    }
    match header_of(repo, &data) {
        Ok(entries) => {
            let header: HashMap<u32, (Key, u32)> =
                entries.iter().map(|e| (e.offset, (key_of(&e.id), e.length))).collect();
            let agrees = |&p: &u32| {
                let l = index.location(p as usize);
                header.get(&l.offset) == Some(&(*index.key(p as usize), l.length))
            };
            if !slots.iter().all(agrees) {
                msgs.push("header disagrees with the index".into());
            }
        }
        Err(e) => msgs.push(format!("header: {e}")),
    }
    let mut bad = Vec::new();
    for &p in slots {
        let (k, l) = (index.key(p as usize), index.location(p as usize));
        let end = l.offset as usize + l.length as usize;
        let r = if end <= data.len() {
            verify_blob(repo, &data[l.offset as usize..end], k, l.raw_length as u64)
        } else {
            Err(blob::BlobError::Length { expected: end as u64, actual: data.len() as u64 })
        };
        if let Err(err) = r {
            msgs.push(format!("blob {}… at offset {}: {err}", hex::encode(k), l.offset));
            bad.push(*k);
        }
    }
    (bad, msgs, slots.len())
}

/// Opens, decompresses and hashes a blob, and checks it against the key
/// (id prefix) and raw length the index holds.
fn verify_blob(repo: &Repository, sealed: &[u8], k: &Key, raw_length: u64) -> std::result::Result<(), blob::BlobError> {
    let plain = repo.key().open(sealed).map_err(|_| blob::BlobError::Auth)?;
    let data = blob::decode_payload(&plain, raw_length)?;
    if data.len() as u64 != raw_length {
        return Err(blob::BlobError::Length { expected: raw_length, actual: data.len() as u64 });
    }
    let actual = repo.key().blob_id(&data);
    if key_of(&actual) != *k {
        return Err(blob::BlobError::IdMismatch { actual });
    }
    Ok(())
}

fn header_of(repo: &Repository, data: &[u8]) -> std::result::Result<Vec<pack::PackEntry>, String> {
    let (start, _) = pack::header_range(data, data.len() as u64)?;
    let plain =
        repo.key().open(&data[start as usize..data.len() - 4]).map_err(|_| "authentication failed".to_string())?;
    let entries = pack::decode_header(&plain)?;
    pack::validate_layout(&entries, start)?;
    Ok(entries)
}
