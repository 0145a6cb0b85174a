//! The session writer: packs blobs, stores packs, and publishes the index.
//!
//! Workers hand sealed blobs to [`RepoWriter::add_blob`]; blobs of each kind
//! collect in an open pack, and a full pack goes through a bounded channel
//! to uploader threads while the workers keep going. A pack's index entries
//! are published (an index file is written) only after the pack itself was
//! stored, every `checkpoint_packs` packs (or [`CHECKPOINT_BLOBS`] blobs)
//! and at the end, so an interrupted session leaves stored packs that the
//! next one can reuse, and never an index entry without its pack
//! (invariant 2).
//!
//! The blobs a session stores are remembered by their 16-byte key in a
//! [`KeySet`] (about 17 bytes per new blob), so a backup of millions of
//! small files does not hold millions of full ids.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::Id;

use super::cache::Cache;
use super::index::{Index, PackInfo};
use super::keyset::{key_of, KeySet};
use super::pack::{FinishedPack, PackBuilder, PackEntry};
use super::{blob, pack_key, BlobKind, Repository};

/// What a writing session stored.
#[derive(Debug, Default, Clone)]
pub struct WriterStats {
    pub packs: u64,
    pub blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub index_files: Vec<Id>,
}

/// An index file is written at the latest when the stored packs not yet
/// indexed hold this many blobs (packs of small files hold ~100,000 each),
/// which bounds both the entries held here and the size of one index file.
pub const CHECKPOINT_BLOBS: usize = 100_000;

struct Uploaded {
    pending: Vec<(PackInfo, Vec<PackEntry>)>,
    pending_blobs: usize,
    stats: WriterStats,
}

pub struct RepoWriter {
    key: MasterKey,
    backend: Arc<dyn Backend>,
    pack_size: usize,
    open: [Mutex<PackBuilder>; 2],
    claimed: Mutex<KeySet>,
    tx: Option<Sender<FinishedPack>>,
    uploaders: Vec<JoinHandle<Result<()>>>,
    shared: Arc<Mutex<Uploaded>>,
    blobs: AtomicU64,
    cache: Option<Arc<Cache>>,
    /// Uploaders waiting for a pack.
    idle: Arc<AtomicUsize>,
}

impl RepoWriter {
    /// Starts a session with `uploaders` upload threads; an index file is
    /// written after every `checkpoint_packs` stored packs.
    pub fn new(repo: &Repository, uploaders: usize, checkpoint_packs: usize) -> RepoWriter {
        let pack_size = repo.config().pack_size as usize;
        // A rendezvous: packs are handed over only to a free uploader.
        let (tx, rx) = bounded::<FinishedPack>(0);
        let idle = Arc::new(AtomicUsize::new(0));
        let shared =
            Arc::new(Mutex::new(Uploaded { pending: Vec::new(), pending_blobs: 0, stats: WriterStats::default() }));
        let handles = (0..uploaders.max(1))
            .map(|_| {
                let rx = rx.clone();
                let backend = repo.backend().clone();
                let key = repo.key().clone();
                let shared = shared.clone();
                let cache = repo.cache().cloned();
                let idle = idle.clone();
                std::thread::spawn(move || -> Result<()> {
                    loop {
                        idle.fetch_add(1, Ordering::SeqCst);
                        let received = rx.recv();
                        idle.fetch_sub(1, Ordering::SeqCst);
                        let Ok(p) = received else { break };
                        match p.kind {
                            BlobKind::Data => backend.put_data_pack(&pack_key(&p.id), &p.bytes)?,
                            BlobKind::Tree => backend.put_hashed(&pack_key(&p.id), &p.bytes)?,
                        }
                        crate::failpoint::hit!("writer::pack_stored");
                        let info = PackInfo { id: p.id, kind: p.kind, size: p.bytes.len() as u64 };
                        let checkpoint = {
                            let mut s = shared.lock().unwrap();
                            s.stats.packs += 1;
                            s.stats.raw_bytes += p.raw_bytes;
                            s.stats.stored_bytes += p.bytes.len() as u64;
                            s.pending_blobs += p.entries.len();
                            s.pending.push((info, p.entries));
                            let due = s.pending.len() >= checkpoint_packs || s.pending_blobs >= CHECKPOINT_BLOBS;
                            due.then(|| {
                                s.pending_blobs = 0;
                                std::mem::take(&mut s.pending)
                            })
                        };
                        if let Some(packs) = checkpoint {
                            let ids = write_index(&backend, &key, cache.as_deref(), packs)?;
                            shared.lock().unwrap().stats.index_files.extend(ids);
                        }
                        if let (Some(c), BlobKind::Tree) = (&cache, p.kind) {
                            c.put_pack(&p.id, p.bytes);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        RepoWriter {
            key: repo.key().clone(),
            backend: repo.backend().clone(),
            pack_size,
            open: [
                Mutex::new(PackBuilder::new(BlobKind::Data, pack_size + pack_size / 8)),
                Mutex::new(PackBuilder::new(BlobKind::Tree, 0)),
            ],
            claimed: Mutex::new(KeySet::new()),
            tx: Some(tx),
            uploaders: handles,
            shared,
            blobs: AtomicU64::new(0),
            cache: repo.cache().cloned(),
            idle,
        }
    }

    /// A session that takes `claimed` (what earlier sessions of the same
    /// run stored, which the index loaded before them does not list) as
    /// stored already.
    pub fn with_claimed(self, claimed: KeySet) -> RepoWriter {
        *self.claimed.lock().unwrap() = claimed;
        self
    }

    /// True when the blob is new and this caller must store it; false when
    /// it is in `index` already or another worker claimed it.
    pub fn claim(&self, index: &Index, id: &Id) -> bool {
        !index.contains(id) && self.claimed.lock().unwrap().insert(key_of(id))
    }

    /// Adds a sealed blob to the open pack of its kind.
    pub fn add_blob(&self, kind: BlobKind, id: Id, raw_length: u32, sealed: &[u8]) -> Result<()> {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        let full = {
            let mut b = self.open[kind as usize].lock().unwrap();
            b.add(id, raw_length, sealed);
            // A full pack goes when an uploader is free to take it; until
            // then it keeps growing (to twice the target at most), so no
            // finished pack sits in memory waiting for an uploader.
            if b.len() >= self.pack_size && (self.idle.load(Ordering::SeqCst) > 0 || b.len() >= 2 * self.pack_size) {
                let cap = if kind == BlobKind::Data { self.pack_size + self.pack_size / 8 } else { 0 };
                Some(std::mem::replace(&mut *b, PackBuilder::new(kind, cap)))
            } else {
                None
            }
        };
        match full {
            Some(b) => self.send(b),
            None => Ok(()),
        }
    }

    /// Encodes (compress + seal) and adds a blob; returns its id and
    /// whether it was new.
    pub fn store_blob(
        &self,
        index: &Index,
        kind: BlobKind,
        data: &[u8],
        encoder: &mut blob::Encoder,
    ) -> Result<(Id, bool)> {
        let id = self.key.blob_id(data);
        if !self.claim(index, &id) {
            return Ok((id, false));
        }
        let mut sealed = Vec::with_capacity(data.len() / 2 + 64);
        encoder.encode_into(&self.key, data, &mut sealed);
        self.add_blob(kind, id, data.len() as u32, &sealed)?;
        Ok((id, true))
    }

    fn send(&self, b: PackBuilder) -> Result<()> {
        let p = b.finish(&self.key);
        let tx = self.tx.as_ref().expect("writer is open");
        tx.send(p).map_err(|_| Error::Stopped("pack uploader"))
    }

    /// Stores the open packs and the final index file; returns the stats.
    /// On an upload error the first such error is returned.
    pub fn finish(self) -> Result<WriterStats> {
        self.finish_with_claims().map(|(stats, _)| stats)
    }

    /// [`RepoWriter::finish`], which also hands on the blobs claimed (all
    /// stored once it succeeds), for the next session of the same run
    /// ([`RepoWriter::with_claimed`]).
    pub fn finish_with_claims(mut self) -> Result<(WriterStats, KeySet)> {
        let mut result = Ok(());
        for kind in [BlobKind::Data, BlobKind::Tree] {
            let b = std::mem::replace(&mut *self.open[kind as usize].lock().unwrap(), PackBuilder::new(kind, 0));
            if !b.is_empty() && result.is_ok() {
                result = self.send(b);
            }
        }
        drop(self.tx.take());
        for h in std::mem::take(&mut self.uploaders) {
            let r = h.join().unwrap_or_else(|_| Err(Error::Stopped("pack uploader (it panicked)")));
            if let Err(e) = r {
                // An upload error explains a failed send better than the send.
                result = Err(e);
            }
        }
        result?;
        let mut s = self.shared.lock().unwrap();
        let pending = std::mem::take(&mut s.pending);
        if !pending.is_empty() {
            let ids = write_index(&self.backend, &self.key, self.cache.as_deref(), pending)?;
            s.stats.index_files.extend(ids);
        }
        s.stats.blobs = self.blobs.load(Ordering::Relaxed);
        let claimed = std::mem::take(&mut *self.claimed.lock().unwrap());
        Ok((std::mem::take(&mut s.stats), claimed))
    }
}

impl Drop for RepoWriter {
    fn drop(&mut self) {
        drop(self.tx.take());
        for h in std::mem::take(&mut self.uploaders) {
            let _ = h.join();
        }
    }
}

/// Writes index files for `packs`, each of at most
/// [`MAX_BLOBS_PER_FILE`](super::index::MAX_BLOBS_PER_FILE) blobs plus one
/// pack's (a pack's entries are never split), so that every file stays far
/// inside the readers' limit; returns their ids.
fn write_index(
    backend: &Arc<dyn Backend>,
    key: &MasterKey,
    cache: Option<&Cache>,
    packs: Vec<(PackInfo, Vec<PackEntry>)>,
) -> Result<Vec<Id>> {
    let mut ids = Vec::new();
    for f in super::index::split_into_files(packs) {
        let sealed = blob::seal_object(key, &f.encode());
        let id = Id::hash_of(&sealed);
        backend.put_hashed(&format!("index/{id}"), &sealed)?;
        crate::failpoint::hit!("writer::index_stored");
        if let Some(c) = cache {
            c.put("index", &id, &sealed);
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Indexes packs that are stored but in no index file (left by an
/// interrupted backup), so their blobs are reused instead of stored again;
/// `listed` is the listing of `data/`.
/// Packs whose header does not open are left alone and reported; packs in
/// `marked` (of the prune marks the backup honours) are left alone too.
pub fn adopt_unindexed_packs(
    repo: &Repository,
    index: &mut Index,
    marked: &std::collections::HashSet<Id>,
    listed: Vec<crate::backend::ObjectInfo>,
) -> Result<AdoptReport> {
    let mut report = AdoptReport::default();
    let mut adopted = Vec::new();
    for o in listed {
        let Some(id) = o.key.rsplit('/').next().and_then(|n| n.parse::<Id>().ok()) else { continue };
        if index.has_pack(&id) || marked.contains(&id) {
            continue;
        }
        match repo.read_pack_header(&id, o.size) {
            Ok(entries) if !entries.is_empty() => {
                let kind = entries[0].kind;
                adopted.push((PackInfo { id, kind, size: o.size }, entries));
            }
            Ok(_) => report.unreadable.push((o.key.clone(), "empty pack".into())),
            // A prune deleted it since the listing: nothing to adopt.
            Err(Error::Backend(e)) if e.is_not_found() => {}
            Err(e) => report.unreadable.push((o.key.clone(), e.to_string())),
        }
    }
    if !adopted.is_empty() {
        repo.add_adopted_packs(index, &adopted)?;
        report.packs = adopted.len();
        write_index(repo.backend(), repo.key(), repo.cache().map(|c| c.as_ref()), adopted)?;
    }
    Ok(report)
}

#[derive(Debug, Default)]
pub struct AdoptReport {
    pub packs: usize,
    pub unreadable: Vec<(String, String)>,
}
