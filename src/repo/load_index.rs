//! Loading the index: every index file into one compact in-memory index
//! (the full ids of colliding prefixes read back from their index files or
//! pack headers), and reading or writing one index file.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::id::Id;

use super::index::{IdRequest, IndexVisitor, PackEntries, PackSource};
use super::{limits, pack, pack_key, Index, IndexBuilder, IndexFile, IndexMode, PackInfo, Repository, Snapshot};

impl Repository {
    /// Reads every index file into one in-memory index with locations.
    pub fn load_index(&self) -> Result<Index> {
        self.load_index_as(IndexMode::Locations)
    }

    /// Reads every index file into one in-memory index, one file at a time.
    /// One damaged index file must not make the others useless: it is
    /// skipped with a warning, and the blobs it lists are just unknown (and
    /// `check` reports it).
    pub fn load_index_as(&self, mode: IndexMode) -> Result<Index> {
        self.load_index_filtered(mode, &PackFilter::default())
    }

    /// [`Repository::find_snapshot`] and [`Repository::load_index_as`] at
    /// once: on remote storage each lists and reads, round trip after
    /// round trip, and a restore needs both before it starts. A snapshot
    /// that is not found is said at once, without waiting for the index
    /// (minutes in a large repository): the load is left to finish on its
    /// own, and its result is dropped. For a command that exits on that
    /// error (`cairn restore`): a process that lives on would keep loading
    /// an index nobody uses.
    pub(crate) fn find_snapshot_and_index(&self, spec: &str, mode: IndexMode) -> Result<((Id, Snapshot), Index)> {
        let this = self.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.load_index_as(mode)));
            let _ = tx.send(loaded);
        });
        let found = self.find_snapshot(spec)?;
        match rx.recv() {
            Ok(Ok(index)) => Ok((found, index?)),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => unreachable!("the index load sends before it ends"),
        }
    }

    /// [`Repository::load_index_as`], with packs left out or located last
    /// as `filter` says. An index file that a prune removed between the
    /// listing and the reading (it wrote the files that replace it first)
    /// starts the load again, up to [`VANISHED_RETRIES`] times; then the
    /// index is what could be read, which is safe for a backup (what it
    /// does not know it stores again).
    pub fn load_index_filtered(&self, mode: IndexMode, filter: &PackFilter) -> Result<Index> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut vanished = false;
            let ids = self.list_ids("index")?;
            let built = self.build_index_from(ids, mode, filter, &mut |id, e| {
                if is_vanished(&e) {
                    vanished = true;
                    return Ok(());
                }
                if e.is_retryable() || matches!(e, Error::Backend(_)) {
                    return Err(e);
                }
                self.warn(format!("skipping index file index/{id}: {e}"));
                Ok(())
            });
            match built {
                Ok(index) if !vanished || attempt > VANISHED_RETRIES => return Ok(index),
                Err(e) if !is_vanished(&e) || attempt > VANISHED_RETRIES => return Err(e),
                _ => {}
            }
        }
    }

    /// Builds the index from every index file; each file that cannot be
    /// read or decoded goes to `bad`, which skips it (`Ok`) or stops.
    pub fn build_index(&self, mode: IndexMode, bad: &mut dyn FnMut(&Id, Error) -> Result<()>) -> Result<Index> {
        self.build_index_from(self.list_ids("index")?, mode, &PackFilter::default(), bad)
    }

    fn build_index_from(
        &self,
        ids: Vec<Id>,
        mode: IndexMode,
        filter: &PackFilter,
        bad: &mut dyn FnMut(&Id, Error) -> Result<()>,
    ) -> Result<Index> {
        if let Some(c) = &self.cache {
            c.retain("index", &ids.iter().copied().collect());
        }
        let mut b = IndexBuilder::new(mode).exclude(filter.exclude.clone()).demote(filter.demote.clone());
        self.for_each_object("index", &ids, limits::INDEX_FILE, |id, loaded| {
            let r = loaded.and_then(|plain| {
                IndexFile::check_sizes_of(&plain, self.config.max_chunk(), limits::TREE)
                    .and_then(|()| b.add_file(id, &plain))
                    .map_err(|e| Error::format(format!("index file `index/{id}`"), e))
            });
            match r {
                Ok(()) => Ok(()),
                Err(e) => bad(&id, e),
            }
        })?;
        b.finish(&mut |reqs| self.full_ids(reqs))
    }

    /// Adds packs adopted from their headers to `index`.
    pub fn add_adopted_packs(&self, index: &mut Index, packs: &[(PackInfo, Vec<pack::PackEntry>)]) -> Result<()> {
        index.add_packs(packs, &mut |reqs| self.full_ids(reqs))
    }

    /// The full ids of index entries, read again from the index file or
    /// pack header they came from (the in-memory index keeps a prefix).
    fn full_ids(&self, reqs: &[IdRequest]) -> Result<Vec<Id>> {
        use std::collections::HashMap;
        let mut wanted: HashMap<&PackSource, HashMap<Id, Vec<usize>>> = HashMap::new();
        for (i, r) in reqs.iter().enumerate() {
            wanted.entry(&r.source).or_default().entry(r.pack).or_default().push(i);
        }
        let mut out: Vec<Option<Id>> = vec![None; reqs.len()];
        let mut fill = |pack: &Id, entries: &mut dyn Iterator<Item = pack::PackEntry>, asked: &[usize]| {
            let at: HashMap<u32, Id> = entries.map(|e| (e.offset, e.id)).collect();
            for &i in asked {
                out[i] = at.get(&reqs[i].offset).copied().filter(|_| reqs[i].pack == *pack);
            }
        };
        for (source, packs) in &wanted {
            match source {
                PackSource::File(fid) => {
                    let plain = self.load_object("index", fid, limits::INDEX_FILE)?;
                    let mut v = VisitPacks { packs, fill: &mut fill };
                    IndexFile::visit(&plain, &mut v)
                        .map_err(|e| Error::format(format!("index file `index/{fid}`"), e))?;
                }
                PackSource::Header { size } => {
                    for (pack, asked) in packs {
                        let entries = self.read_pack_header(pack, *size)?;
                        fill(pack, &mut entries.into_iter(), asked);
                    }
                }
            }
        }
        out.into_iter()
            .zip(reqs)
            .map(|(id, r)| {
                id.ok_or_else(|| Error::Integrity {
                    what: format!(
                        "index entry at offset {} of pack `{}` (not where the index was read from)",
                        r.offset,
                        pack_key(&r.pack)
                    ),
                })
            })
            .collect()
    }

    /// Loads, decodes and checks one index file: every entry must fit the
    /// largest blob of its pack's kind ([`Config::max_chunk`] for data,
    /// [`limits::TREE`] for trees), or the file is damage.
    pub fn load_index_file(&self, id: &Id) -> Result<IndexFile> {
        let what = || format!("index file `index/{id}`");
        let plain = self.load_object("index", id, limits::INDEX_FILE)?;
        let f = IndexFile::decode(&plain).map_err(|e| Error::format(what(), e))?;
        f.check_sizes(self.config.max_chunk(), limits::TREE).map_err(|e| Error::format(what(), e))?;
        Ok(f)
    }

    pub fn save_index_file(&self, f: &IndexFile) -> Result<Id> {
        self.save_object("index", &f.encode())
    }
}

/// How often a load of the index starts again when an index file vanished.
pub const VANISHED_RETRIES: usize = 3;

/// Packs an index leaves out, or locates last (see [`IndexBuilder`]).
#[derive(Debug, Default, Clone)]
pub struct PackFilter {
    pub exclude: HashSet<Id>,
    pub demote: HashSet<Id>,
}

fn is_vanished(e: &Error) -> bool {
    matches!(e, Error::Backend(b) if b.is_not_found())
}

/// Receives a pack's id, its entries and the requests for it.
type FillIds<'a> = dyn FnMut(&Id, &mut dyn Iterator<Item = pack::PackEntry>, &[usize]) + 'a;

/// Hands the entries of the packs asked for to `fill`.
struct VisitPacks<'a> {
    packs: &'a std::collections::HashMap<Id, Vec<usize>>,
    fill: &'a mut FillIds<'a>,
}

impl IndexVisitor for VisitPacks<'_> {
    fn supersedes(&mut self, _: Id) {}
    fn pack(&mut self, info: PackInfo, mut entries: PackEntries<'_>) {
        if let Some(asked) = self.packs.get(&info.id) {
            (self.fill)(&info.id, &mut entries, asked);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::backend::meeting::Meeting;
    use crate::backend::LocalBackend;
    use crate::crypto::KdfParams;
    use crate::error::Error;
    use crate::repo::{IndexMode, InitOptions, Repository};

    /// Review finding: `restore` of a mistyped snapshot waited for the
    /// whole index to load (minutes in a large repository) before it said
    /// the snapshot was not found. Here the index listing never ends (it
    /// waits for a request that never comes), and the error comes anyway.
    #[test]
    fn bug_a_snapshot_not_found_waited_for_the_index_to_load() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
        let mut repo = Repository::init(Arc::new(LocalBackend::new(d.path().join("repo"))), b"pw", opts).unwrap();
        let meeting = Meeting::new(repo.backend().clone(), &[&["index/", "never/"]]);
        repo.wrap_backend(|_| meeting.clone());
        meeting.arm();
        let e = repo.find_snapshot_and_index("deadbeef", IndexMode::Compact).unwrap_err();
        assert!(matches!(e, Error::SnapshotNotFound(_)), "{e}");
        assert!(!meeting.gave_up(), "the error waited for the index load");
    }
}
