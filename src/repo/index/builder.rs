//! Building an [`Index`] from the plaintext of index files, one file at a
//! time: packs are interned, slots sorted, and prefix collisions settled
//! with the full ids the caller re-reads.

use std::collections::{HashMap, HashSet};

use super::slots::Slots;
use super::{
    key_of, with_slots, BlobKind, BlobLocation, FullIds, Index, IndexFile, IndexMode, IndexVisitor, PackEntries,
    PackInfo, PackMeta, FROM_HEADER, ID_BATCH,
};
use crate::id::Id;
use crate::repo::keyset::KeyDirectory;

/// Builds an [`Index`] from index files, one at a time.
pub struct IndexBuilder {
    ix: Index,
    /// Per pack, where its keys start in `ix.members` (for the removal of
    /// superseded packs); `usize::MAX` for packs whose blobs are slots.
    member_start: Vec<usize>,
    /// Packs listed by more than one index file: the other files.
    also_in: HashMap<u32, Vec<u32>>,
    superseded: HashSet<Id>,
    /// Packs left out, as if no index file listed them.
    exclude: HashSet<Id>,
    /// Packs whose copy of a blob is used only when no other pack has one.
    demote: HashSet<Id>,
    /// Full ids asked for at once (see [`Index::settle_peak_bytes`]).
    id_batch: usize,
}

impl IndexBuilder {
    pub fn new(mode: IndexMode) -> IndexBuilder {
        IndexBuilder {
            ix: Index::empty(mode),
            member_start: Vec::new(),
            also_in: HashMap::new(),
            superseded: HashSet::new(),
            exclude: HashSet::new(),
            demote: HashSet::new(),
            id_batch: ID_BATCH,
        }
    }

    /// Leaves these packs out of the index (a backup, for the packs of the
    /// prune marks it honours: their blobs are stored again if needed).
    pub fn exclude(mut self, packs: HashSet<Id>) -> IndexBuilder {
        self.exclude = packs;
        self
    }

    /// A blob that one of these packs and another pack both hold is
    /// located in the other (prune, for marked packs: a marked pack whose
    /// used blobs were copied elsewhere is then seen as unused).
    pub fn demote(mut self, packs: HashSet<Id>) -> IndexBuilder {
        self.demote = packs;
        self
    }

    /// Asks for at most `n` full ids at once when settling shared keys
    /// (default [`ID_BATCH`]): fewer holds less memory, and re-reads an
    /// index file whose requests span batches once per batch.
    pub fn id_batch(mut self, n: usize) -> IndexBuilder {
        self.id_batch = n.max(1);
        self
    }

    /// Adds the plaintext of the index file `id`. A damaged file adds
    /// nothing and gives the reason.
    pub fn add_file(&mut self, id: Id, plain: &[u8]) -> Result<(), String> {
        struct Add<'a> {
            b: &'a mut IndexBuilder,
            file: u32,
        }
        impl IndexVisitor for Add<'_> {
            fn supersedes(&mut self, id: Id) {
                self.b.superseded.insert(id);
            }
            fn pack(&mut self, info: PackInfo, entries: PackEntries<'_>) {
                self.b.add_pack(self.file, info, entries);
            }
        }
        let file = self.ix.files.len() as u32;
        IndexFile::visit(plain, &mut Add { b: self, file })?;
        self.ix.files.push((id, true));
        Ok(())
    }

    fn add_pack(&mut self, file: u32, info: PackInfo, entries: PackEntries<'_>) {
        if self.exclude.contains(&info.id) {
            return;
        }
        if let Some(&n) = self.ix.pack_numbers.get(&info.id) {
            self.also_in.entry(n).or_default().push(file);
            return;
        }
        let ix = &mut self.ix;
        let n = ix.packs.len() as u32;
        let mut meta = PackMeta { source: file, blobs: entries.len() as u32, bytes: 0 };
        if ix.mode == IndexMode::Membership && info.kind == BlobKind::Data {
            self.member_start.push(ix.members.len());
            ix.members.reserve(entries.len());
            for e in entries {
                meta.bytes += e.length as u64;
                ix.members.push(key_of(&e.id));
            }
        } else {
            self.member_start.push(usize::MAX);
            with_slots!(mut ix, |s| {
                s.reserve(entries.len());
                for e in entries {
                    meta.bytes += e.length as u64;
                    s.add(
                        &e.id,
                        BlobLocation { pack: n, offset: e.offset, length: e.length, raw_length: e.raw_length },
                    );
                }
            });
        }
        ix.meta.push(meta);
        ix.pack_numbers.insert(info.id, n);
        ix.packs.push(info);
    }

    /// Drops what superseded files alone listed, sorts, and settles shared
    /// prefixes (asking `full_ids` for the ids it needs).
    pub fn finish<E>(mut self, full_ids: &mut FullIds<'_, E>) -> Result<Index, E> {
        for f in &mut self.ix.files {
            f.1 = !self.superseded.contains(&f.0);
        }
        self.drop_superseded_packs();
        self.number_demoted_last();
        let mut ix = self.ix;
        ix.members.sort_unstable();
        ix.members.dedup();
        ix.members.shrink_to_fit();
        ix.members_dir = KeyDirectory::new(&ix.members, |m| m);
        with_slots!(mut ix, |s| {
            s.sort();
            s.keep_first(s.len());
        });
        ix.packs.shrink_to_fit();
        ix.meta.shrink_to_fit();
        ix.settle(HashMap::new(), full_ids, self.id_batch)?;
        Ok(ix)
    }

    /// Renumbers the packs so that demoted ones come last: of the slots a
    /// blob stored twice has, [`Index::settle`] keeps the lowest pack number.
    fn number_demoted_last(&mut self) {
        let ix = &mut self.ix;
        if self.demote.is_empty() || !ix.packs.iter().any(|p| self.demote.contains(&p.id)) {
            return;
        }
        let order: Vec<usize> = (0..ix.packs.len())
            .filter(|&n| !self.demote.contains(&ix.packs[n].id))
            .chain((0..ix.packs.len()).filter(|&n| self.demote.contains(&ix.packs[n].id)))
            .collect();
        let mut renumber = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = new as u32;
        }
        with_slots!(mut ix, |s| s.renumber(&renumber));
        ix.packs = order.iter().map(|&n| ix.packs[n].clone()).collect();
        ix.meta = order.iter().map(|&n| ix.meta[n]).collect();
        ix.pack_numbers = ix.packs.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
    }

    /// A pack listed only by superseded files is not in the index.
    fn drop_superseded_packs(&mut self) {
        let ix = &mut self.ix;
        let live = |f: u32| ix.files[f as usize].1;
        let dead: Vec<bool> = (0..ix.packs.len() as u32)
            .map(|n| {
                let m = ix.meta[n as usize];
                m.source != FROM_HEADER
                    && !live(m.source)
                    && !self.also_in.get(&n).is_some_and(|fs| fs.iter().any(|&f| live(f)))
            })
            .collect();
        if !dead.contains(&true) {
            return;
        }
        let mut renumber = vec![u32::MAX; dead.len()];
        let mut next = 0u32;
        for (n, d) in dead.iter().enumerate() {
            if !d {
                renumber[n] = next;
                next += 1;
            }
        }
        with_slots!(mut ix, |s| s.renumber(&renumber));
        // Member keys were added pack after pack: move the live runs down.
        let mut w = 0;
        for (n, &is_dead) in dead.iter().enumerate() {
            let start = self.member_start[n];
            if start == usize::MAX {
                continue;
            }
            let len = ix.meta[n].blobs as usize;
            if !is_dead {
                ix.members.copy_within(start..start + len, w);
                w += len;
            }
        }
        ix.members.truncate(w);
        ix.packs = std::mem::take(&mut ix.packs).into_iter().enumerate().filter(|p| !dead[p.0]).map(|p| p.1).collect();
        ix.meta = std::mem::take(&mut ix.meta).into_iter().enumerate().filter(|m| !dead[m.0]).map(|m| m.1).collect();
        ix.pack_numbers = ix.packs.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
    }
}
