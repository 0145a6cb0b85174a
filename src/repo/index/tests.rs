use std::collections::HashSet;

use super::*;

fn id(i: u64) -> Id {
    Id::hash_of(&i.to_le_bytes())
}

fn pack_id(p: u64) -> Id {
    Id::hash_of(format!("pack {p}").as_bytes())
}

/// A pack of `n` blobs numbered from `first`, laid out one after another.
fn pack(p: u64, kind: BlobKind, first: u64, n: u64) -> (PackInfo, Vec<PackEntry>) {
    let entries = (0..n)
        .map(|i| PackEntry { kind, id: id(first + i), offset: i as u32 * 100, length: 100, raw_length: 80 })
        .collect();
    (PackInfo { id: pack_id(p), kind, size: n * 100 + 40 }, entries)
}

/// Index files by id, and the full ids a builder may ask for.
#[derive(Default)]
struct Files(Vec<(Id, IndexFile)>);

impl Files {
    fn add(&mut self, f: IndexFile) -> Id {
        let fid = Id::hash_of(&f.encode());
        self.0.push((fid, f));
        fid
    }

    fn build(&self, mode: IndexMode) -> (Index, usize) {
        self.build_with(IndexBuilder::new(mode))
    }

    fn build_with(&self, mut b: IndexBuilder) -> (Index, usize) {
        for (fid, f) in &self.0 {
            b.add_file(*fid, &f.encode()).unwrap();
        }
        let mut asked = 0;
        let ix = b.finish(&mut |reqs: &[IdRequest]| -> Result<Vec<Id>, String> {
            asked += reqs.len();
            reqs.iter().map(|r| self.full_id(r)).collect()
        });
        (ix.unwrap(), asked)
    }

    fn full_id(&self, r: &IdRequest) -> Result<Id, String> {
        let PackSource::File(fid) = &r.source else { return Err("not from a file".into()) };
        let f = &self.0.iter().find(|(i, _)| i == fid).ok_or("no such file")?.1;
        let (_, entries) = f.packs.iter().find(|(p, _)| p.id == r.pack).ok_or("no such pack")?;
        Ok(entries.iter().find(|e| e.offset == r.offset).ok_or("no such offset")?.id)
    }
}

fn file(packs: Vec<(PackInfo, Vec<PackEntry>)>) -> IndexFile {
    IndexFile { supersedes: Vec::new(), packs }
}

#[test]
fn lookups_find_every_blob_and_the_index_stays_within_its_budget() {
    // 200,000 blobs in 100 packs, over 10 index files.
    let mut files = Files::default();
    for f in 0..10u64 {
        files.add(file((0..10).map(|p| pack(f * 10 + p, BlobKind::Data, (f * 10 + p) * 2000, 2000)).collect()));
    }
    // With locations: 32-byte slots; compact: 16 bytes for these small
    // blobs.
    for (mode, low, high) in [(IndexMode::Locations, 32.0, 40.0), (IndexMode::Compact, 16.0, 17.0)] {
        let (ix, asked) = files.build(mode);
        assert_eq!(asked, 0, "no shared prefix, nothing to resolve");
        assert_eq!(ix.len(), 200_000);
        let l = ix.get(&id(54_321)).unwrap();
        assert_eq!(ix.pack(l.pack).id, pack_id(27));
        assert_eq!((l.offset, l.length, l.raw_length), (321 * 100, 100, 80));
        assert!(ix.get(&id(200_000)).is_none() && !ix.contains(&id(200_000)));
        assert_eq!(ix.pack_contents(l.pack), (2000, 200_000));
        for i in (0..200_000).step_by(997) {
            let l = ix.get(&id(i)).unwrap();
            assert_eq!((ix.pack(l.pack).id, l.offset), (pack_id(i / 2000), (i % 2000) as u32 * 100), "{mode:?}");
        }
        let per_blob = ix.memory_bytes() as f64 / ix.len() as f64;
        assert!(per_blob <= high, "{mode:?}: {per_blob} bytes per blob with locations");
        assert!(per_blob >= low, "{mode:?}: {per_blob}: the accounting misses the slots");
    }

    // A backup keeps data blobs as keys only.
    let (m, _) = files.build(IndexMode::Membership);
    assert!(m.contains(&id(54_321)) && !m.contains(&id(200_000)));
    assert!(m.get(&id(54_321)).is_none(), "no location for data blobs");
    let per_blob = m.memory_bytes() as f64 / m.len() as f64;
    assert!(per_blob <= 17.0, "{per_blob} bytes per blob in a backup");
}

#[test]
fn a_backup_index_keeps_the_location_of_tree_blobs() {
    let mut files = Files::default();
    files.add(file(vec![pack(1, BlobKind::Data, 0, 10), pack(2, BlobKind::Tree, 10, 5)]));
    let (m, _) = files.build(IndexMode::Membership);
    assert_eq!(m.len(), 15);
    assert!(m.contains(&id(3)) && m.get(&id(3)).is_none());
    assert_eq!(m.get(&id(12)).map(|l| m.pack(l.pack).id), Some(pack_id(2)));
}

#[test]
fn a_blob_stored_twice_keeps_its_first_location() {
    let mut files = Files::default();
    files.add(file(vec![pack(1, BlobKind::Data, 0, 10)]));
    // Pack 2 holds blobs 5..15: 5..10 again.
    files.add(file(vec![pack(2, BlobKind::Data, 5, 10)]));
    for mode in [IndexMode::Locations, IndexMode::Compact] {
        let (ix, asked) = files.build(mode);
        assert_eq!(asked, 10, "the five shared prefixes, two slots each");
        assert_eq!(ix.len(), 15);
        assert_eq!(ix.pack(ix.get(&id(7)).unwrap().pack).id, pack_id(1));
        assert_eq!(ix.pack(ix.get(&id(12)).unwrap().pack).id, pack_id(2));
        assert_eq!(ix.pack_contents(1), (10, 1000), "pack 2 still holds its copies");
    }
}

/// Pack `p` holding `ids`, 10 bytes each, one after another.
fn small_pack(p: u64, ids: &[Id]) -> (PackInfo, Vec<PackEntry>) {
    let entries = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| PackEntry { kind: BlobKind::Data, id, offset: i as u32 * 10, length: 10, raw_length: 8 })
        .collect();
    (PackInfo { id: pack_id(p), kind: BlobKind::Data, size: 100 }, entries)
}

/// An id that shares the 16-byte prefix of `of`.
fn twin(of: &Id, n: u8) -> Id {
    let mut b = of.0;
    b[31] ^= n;
    Id(b)
}

/// An id that shares only the 6-byte prefix of `of` (the key of a compact
/// slot).
fn near_twin(of: &Id, n: u8) -> Id {
    let mut b = of.0;
    b[6] ^= n;
    Id(b)
}

#[test]
fn blobs_whose_prefixes_collide_each_find_their_own_location() {
    let a = id(1);
    let (b, absent) = (twin(&a, 1), twin(&a, 2));
    let mut files = Files::default();
    files.add(file(vec![small_pack(1, &[a, id(2)])]));
    files.add(file(vec![small_pack(2, &[b, a])]));
    for mode in [IndexMode::Locations, IndexMode::Compact] {
        let (ix, _) = files.build(mode);
        assert_eq!(ix.len(), 3, "a, b and blob 2; the second copy of a is dropped");
        let at = |i: &Id| ix.get(i).map(|l| (ix.pack(l.pack).id, l.offset));
        assert_eq!(at(&a), Some((pack_id(1), 0)));
        assert_eq!(at(&b), Some((pack_id(2), 0)));
        assert_eq!(at(&absent), None, "an absent id is not found through its prefix twin");
        assert!(!ix.contains(&absent));
        assert_ne!(ix.position(&a), ix.position(&b));
    }
}

#[test]
fn a_compact_index_tells_apart_blobs_that_share_its_shorter_key() {
    // a and b share 6 bytes (a compact key) but not 16; c shares a's 16.
    let a = id(1);
    let (b, c) = (near_twin(&a, 1), twin(&a, 1));
    let mut files = Files::default();
    files.add(file(vec![small_pack(1, &[a, b, id(2)])]));
    files.add(file(vec![small_pack(2, &[c, b, id(3)])]));
    let (wide, asked_wide) = files.build(IndexMode::Locations);
    let (ix, asked) = files.build(IndexMode::Compact);
    assert_eq!(asked_wide, 4, "a and c share 16 bytes, and b is listed twice");
    assert_eq!(asked, 4, "a, b, b again and c share 6 bytes");
    for ix in [&wide, &ix] {
        assert_eq!(ix.len(), 5, "a, b, c, 2 and 3; the second copy of b is dropped");
        let at = |i: &Id| ix.get(i).map(|l| (ix.pack(l.pack).id, l.offset));
        assert_eq!(at(&a), Some((pack_id(1), 0)));
        assert_eq!(at(&b), Some((pack_id(1), 10)), "the first copy");
        assert_eq!(at(&c), Some((pack_id(2), 0)));
        assert_eq!(at(&id(3)), Some((pack_id(2), 20)));
        assert_eq!(at(&near_twin(&a, 2)), None, "an absent id whose key is a collided one's");
    }
    // What a compact key cannot tell: an absent id sharing the 6 bytes of
    // a key no other blob has is taken for that blob (its read then
    // fails the full-id check).
    let two = id(2);
    assert_eq!(ix.get(&near_twin(&two, 1)), ix.get(&two));
    assert_eq!(wide.get(&near_twin(&two, 1)), None);
}

#[test]
fn a_compact_index_keeps_large_locations_whole_and_only_those_of_the_slots_it_keeps() {
    // Pack 1: blobs 0..10 of 100,000 bytes (too long to pack); pack 2:
    // blobs 5..15 of 100 bytes; pack 3, in another file: blobs 0..5 of
    // 100,000 bytes again. Each blob stored twice keeps its first copy.
    let large = |p: u64, first: u64, n: u64| {
        let entries = (0..n)
            .map(|i| PackEntry {
                kind: BlobKind::Data,
                id: id(first + i),
                offset: i as u32 * 100_000,
                length: 100_000,
                raw_length: 99_000,
            })
            .collect();
        (PackInfo { id: pack_id(p), kind: BlobKind::Data, size: n * 100_000 + 40 }, entries)
    };
    let mut files = Files::default();
    files.add(file(vec![large(1, 0, 10), pack(2, BlobKind::Data, 5, 10)]));
    files.add(file(vec![large(3, 0, 5)]));
    let (ix, asked) = files.build(IndexMode::Compact);
    assert_eq!(asked, 20, "blobs 0..10 are listed twice");
    assert_eq!(ix.len(), 15);
    for i in 0..10 {
        let l = ix.get(&id(i)).unwrap();
        assert_eq!(
            (ix.pack(l.pack).id, l.offset, l.length, l.raw_length),
            (pack_id(1), i as u32 * 100_000, 100_000, 99_000)
        );
    }
    let l = ix.get(&id(12)).unwrap();
    assert_eq!((ix.pack(l.pack).id, l.offset, l.length), (pack_id(2), 700, 100));
    assert_eq!(ix.tight.overflowing(), 10);
    assert_eq!(ix.tight.overflow_entries(), 10, "the dropped copies' entries are gone");
    assert_eq!(ix.tight.memory_bytes(), 15 * 16 + 10 * 16, "16 bytes a slot, 16 more for a large one");
}

#[test]
fn packs_only_superseded_files_list_are_dropped() {
    let mut files = Files::default();
    let old = files.add(file(vec![pack(1, BlobKind::Data, 0, 10), pack(2, BlobKind::Data, 10, 10)]));
    // The replacement lists pack 2 only, and is read after the old file.
    let new = files.add(file(vec![pack(2, BlobKind::Data, 10, 10)]));
    files.add(IndexFile { supersedes: vec![old], packs: Vec::new() });
    for mode in [IndexMode::Locations, IndexMode::Membership, IndexMode::Compact] {
        let (ix, _) = files.build(mode);
        assert_eq!(ix.packs().len(), 1, "{mode:?}");
        assert!(!ix.has_pack(&pack_id(1)) && ix.has_pack(&pack_id(2)));
        assert!(!ix.contains(&id(3)) && ix.contains(&id(13)), "{mode:?}");
        assert_eq!(ix.len(), 10);
        assert!(ix.files().all(|f| *f != old) && ix.files().any(|f| *f == new));
    }
    for mode in [IndexMode::Locations, IndexMode::Compact] {
        let (ix, _) = files.build(mode);
        assert_eq!(ix.get(&id(13)).unwrap().pack, 0, "pack numbers follow the packs kept");
        assert_eq!(ix.get(&id(13)).unwrap().offset, 300);
    }
}

#[test]
fn adopted_packs_join_and_blobs_already_indexed_keep_their_place() {
    let mut files = Files::default();
    files.add(file(vec![pack(1, BlobKind::Data, 0, 10), pack(2, BlobKind::Tree, 100, 3)]));
    for mode in [IndexMode::Locations, IndexMode::Compact] {
        let (mut ix, _) = files.build(mode);
        let adopted = vec![pack(3, BlobKind::Data, 5, 10), pack(1, BlobKind::Data, 0, 10)];
        let mut asked = Vec::new();
        ix.add_packs(&adopted, &mut |reqs: &[IdRequest]| -> Result<Vec<Id>, String> {
            asked.extend_from_slice(reqs);
            reqs.iter()
                .map(|r| match r.source {
                    PackSource::Header { .. } => {
                        let p = adopted.iter().find(|p| p.0.id == r.pack).unwrap();
                        Ok(p.1.iter().find(|e| e.offset == r.offset).unwrap().id)
                    }
                    PackSource::File(_) => files.full_id(r),
                })
                .collect()
        })
        .unwrap();
        assert_eq!(ix.packs().len(), 3, "pack 1 is indexed already");
        assert_eq!(ix.len(), 18);
        assert_eq!(ix.pack(ix.get(&id(7)).unwrap().pack).id, pack_id(1));
        assert_eq!(ix.pack(ix.get(&id(14)).unwrap().pack).id, pack_id(3));
        assert!(asked.iter().any(|r| matches!(r.source, PackSource::Header { .. })));
        assert!(ix.get(&id(101)).is_some());
    }
}

#[test]
fn slots_by_pack_lists_each_pack_in_offset_order() {
    let mut files = Files::default();
    files.add(file(vec![pack(1, BlobKind::Data, 0, 50), pack(2, BlobKind::Tree, 50, 20)]));
    for mode in [IndexMode::Locations, IndexMode::Compact] {
        let (ix, _) = files.build(mode);
        let by = ix.slots_by_pack();
        for n in 0..2u32 {
            let offsets: Vec<u32> = by.of(n).iter().map(|&p| ix.location(p as usize).offset).collect();
            assert_eq!(offsets.len(), if n == 0 { 50 } else { 20 });
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
            assert!(by.of(n).iter().all(|&p| ix.location(p as usize).pack == n));
        }
    }
}

#[test]
fn excluded_packs_are_left_out_and_a_demoted_pack_gives_up_every_blob_another_holds() {
    let mut files = Files::default();
    // Pack 1 holds blobs 0..10 and pack 2 blobs 5..15: 5..10 are in both.
    files.add(file(vec![pack(1, BlobKind::Data, 0, 10)]));
    files.add(file(vec![pack(2, BlobKind::Data, 5, 10)]));
    let in_pack = |ix: &Index, blob: u64| ix.pack(ix.get(&id(blob)).unwrap().pack).id;
    let (plain, _) = files.build(IndexMode::Locations);
    assert_eq!(in_pack(&plain, 7), pack_id(1), "the first copy");
    let demoted: HashSet<Id> = [pack_id(1)].into();
    let (ix, _) = files.build_with(IndexBuilder::new(IndexMode::Locations).demote(demoted));
    assert_eq!(ix.len(), 15);
    assert!((5..15).all(|b| in_pack(&ix, b) == pack_id(2)), "the other copy");
    assert!((0..5).all(|b| in_pack(&ix, b) == pack_id(1)), "what only the demoted pack holds stays there");
    assert_eq!(ix.pack_contents(ix.pack_number(&pack_id(1)).unwrap()), (10, 1000), "it still holds ten");
    let excluded: HashSet<Id> = [pack_id(2)].into();
    let (m, _) = files.build_with(IndexBuilder::new(IndexMode::Membership).exclude(excluded));
    assert!(!m.has_pack(&pack_id(2)));
    assert!((0..10).all(|b| m.contains(&id(b))) && (10..15).all(|b| !m.contains(&id(b))));
}

#[test]
fn bug_blobs_stored_twice_by_the_hundred_thousand_settle_in_bounded_batches_and_memory() {
    // After a prune repacked, its rewritten index lists every repacked
    // blob twice (the marked old pack and the new one) until the old pack
    // is deleted. 200,000 blobs in packs 0..100, all repacked into packs
    // 100..200 laid out differently; plus a blob whose key collides with
    // one of them (in both copies too).
    let a = id(5);
    let b = twin(&a, 1);
    let mut files = Files::default();
    for f in 0..10u64 {
        files.add(file((0..10).map(|p| pack(f * 10 + p, BlobKind::Data, (f * 10 + p) * 2000, 2000)).collect()));
    }
    for f in 0..10u64 {
        // Each new pack holds the second half of one old pack and the
        // first half of the next (the last, the second half only).
        files.add(file(
            (0..10)
                .map(|p| {
                    let q = f * 10 + p;
                    pack(100 + q, BlobKind::Data, q * 2000 + 1000, if q == 99 { 1000 } else { 2000 })
                })
                .collect(),
        ));
    }
    // The first 1000 blobs, which the shifted layout leaves out, and b.
    let twin_entry = PackEntry { kind: BlobKind::Data, id: b, offset: 100_000, length: 100, raw_length: 80 };
    let (info, mut entries) = pack(200, BlobKind::Data, 0, 1000);
    entries.push(twin_entry);
    files.add(file(vec![(info, entries)]));
    let (info, entries) = pack(201, BlobKind::Data, 200_000, 0);
    files.add(file(vec![(info, entries.into_iter().chain([twin_entry]).collect())]));

    let batch = 4096;
    let build = |b: IndexBuilder| {
        let (mut calls, mut asked, mut max_call, mut file_reads) = (0, 0, 0, 0);
        let mut b = b.id_batch(batch);
        for (fid, f) in &files.0 {
            b.add_file(*fid, &f.encode()).unwrap();
        }
        let ix = b
            .finish(&mut |reqs: &[IdRequest]| -> Result<Vec<Id>, String> {
                calls += 1;
                asked += reqs.len();
                max_call = usize::max(max_call, reqs.len());
                file_reads += reqs.iter().map(|r| &r.source).collect::<HashSet<_>>().len();
                reqs.iter().map(|r| files.full_id(r)).collect()
            })
            .unwrap();
        (ix, calls, asked, max_call, file_reads)
    };
    let (ix, calls, asked, max_call, file_reads) = build(IndexBuilder::new(IndexMode::Locations));
    let shared = 2 * 200_000 + 2;
    assert_eq!(asked, shared, "every slot of a shared key, once");
    assert!(max_call <= batch, "{max_call} full ids asked at once");
    // Grouped by source: a batch boundary splits at most one file, so
    // a file is read again only where a batch ends inside it.
    assert!(file_reads <= 22 + calls, "{file_reads} file reads in {calls} batches");

    assert_eq!(ix.len(), 200_001, "each blob once, and the colliding twin");
    let at = |ix: &Index, i: &Id| ix.get(i).map(|l| (ix.pack(l.pack).id, l.offset));
    assert_eq!(at(&ix, &id(54_321)), Some((pack_id(27), 321 * 100)), "the first copy");
    assert_eq!(at(&ix, &id(999)), Some((pack_id(0), 999 * 100)));
    assert_eq!(at(&ix, &a), Some((pack_id(0), 500)));
    assert_eq!(at(&ix, &b), Some((pack_id(200), 100_000)));
    assert_eq!(at(&ix, &twin(&a, 2)), None, "an absent twin is not found");
    assert_ne!(ix.position(&a), ix.position(&b));

    let per_blob = ix.settle_peak_bytes() as f64 / 200_000.0;
    assert!(per_blob <= 48.0, "settling held {per_blob} bytes per blob stored twice");
    assert!(per_blob >= 40.0, "{per_blob}: the accounting misses the shared slots");
    let per_blob = ix.memory_bytes() as f64 / ix.len() as f64;
    assert!(per_blob <= 40.0, "{per_blob} bytes per blob once settled");

    // Prune demotes the marked old packs: every blob is then located in
    // its new copy, the first 1000 (held by both pack 0 and pack 200) too.
    let old: HashSet<Id> = (0..100).map(pack_id).collect();
    let (ix, ..) = build(IndexBuilder::new(IndexMode::Locations).demote(old));
    assert_eq!(ix.len(), 200_001);
    assert_eq!(at(&ix, &id(54_321)), Some((pack_id(126), 1321 * 100)));
    assert_eq!(at(&ix, &id(999)), Some((pack_id(200), 999 * 100)));
    assert_eq!(at(&ix, &b), Some((pack_id(200), 100_000)));
    assert!(ix.get(&a).is_some_and(|l| ix.pack(l.pack).id == pack_id(200)));

    // A compact index settles the same way, in half the memory.
    let (ix, _, asked, ..) = build(IndexBuilder::new(IndexMode::Compact));
    assert_eq!(asked, shared);
    assert_eq!(ix.len(), 200_001);
    assert_eq!(at(&ix, &id(54_321)), Some((pack_id(27), 321 * 100)));
    assert_eq!(at(&ix, &a), Some((pack_id(0), 500)));
    assert_eq!(at(&ix, &b), Some((pack_id(200), 100_000)));
    assert_eq!(at(&ix, &twin(&a, 2)), None);
    let per_blob = ix.memory_bytes() as f64 / ix.len() as f64;
    assert!(per_blob <= 20.0, "{per_blob} bytes per blob once settled");
}
