//! The index files a prune writes for the packs it keeps listed.
//!
//! A pack deleted now is no longer listed. A kept pack is listed whole. A
//! pack marked for a later prune stays listed until then, but without the
//! blobs that another listing holds for as long as anyone may need them:
//! an entry is left out when
//!
//! - this prune copied the blob into a new pack (the pack was repacked and
//!   the blob is used), or
//! - the index (the marked packs demoted) puts the blob in another pack
//!   that no mark names: the copy a backup stored again because it
//!   honoured the mark, or an older copy that stays.
//!
//! Without this, every repacked blob is listed twice until its old pack is
//! deleted (a day later, by default), and every command that loads the
//! index pays for settling the pairs: at 10 M blobs, `check` after a prune
//! held 122.7 bytes per blob instead of 35.
//!
//! Why no blob is lost. A backup B that took blob w from the marked pack
//! P started before P's mark (it would have honoured it otherwise), so its
//! lock names no mark made since, and none of those ripens while B runs. The copy
//! the listing keeps is in a new pack or a pack no mark names, so any mark
//! that could delete it is made after P's, and waits for B; once B ended,
//! its snapshot is walked and the copy is used. A pack never leaves out a
//! blob the index puts in it unless it copied it, and the index puts each
//! blob in one pack, so one listing always stays. A copy in a pack that an
//! earlier mark names does not count: that mark may ripen under B (B
//! honours it) and take the copy while P no longer lists w. What stays
//! listed of P is what is not held that way, so a backup from before the
//! mark that took one of those keeps P from being deleted, as before
//! ([`super::marking`]). A pack all of whose blobs are elsewhere stays
//! listed with no entries, still accounted for, and is deleted when its
//! mark ripens.
//!
//! The argument needs every reader that honours this prune's marks to
//! read this prune's listings: `gc::execute` deletes the files it
//! supersedes before it stores any mark (an older file may still list a
//! blob left out here, and a reader takes a pack's entries from the first
//! file it reads; `repair undelete` may bring such a file back, and its
//! listings then hold more entries than this prune's, never fewer). For
//! the same reason, while a mark that does not open is there, no pack
//! counts as named by none (so one damaged mark, which no prune removes,
//! turns this compaction off until someone deletes it).
//!
//! Each pack is listed from the index file the index took its entries
//! from, superseded or not: after a prune that stopped between its
//! superseding file and its mark, a superseded file lists a pack whole
//! and a live one without what that prune copied, and the index may have
//! placed a used blob by the first.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::index::{split_into_files, IndexVisitor, PackEntries, MAX_BLOBS_PER_FILE};
use crate::repo::pack::PackEntry;
use crate::repo::{limits, pack_key, Index, IndexFile, PackInfo, Repository};

/// What a prune lists of one pack of its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Deleted now: not listed.
    Gone,
    /// Kept: listed with every entry. `marked` when a mark names it all
    /// the same (an earlier prune's, for a pack that is used again): that
    /// mark may ripen and delete it while a backup that took a blob from
    /// another marked pack, and honours this mark, still runs.
    Whole { marked: bool },
    /// Marked, to be deleted by a later prune: listed with the blobs no
    /// other listing holds. `repacked` when this prune copied its used
    /// blobs into new packs.
    Marked { repacked: bool },
}

/// Whether the entry of `id` in pack `n` (marked) is held by another
/// listing that outlives every backup which may have taken it from `n`,
/// given each pack's listing and which slots are used: a new pack of this
/// prune, or a pack no mark names. A mark made later than `n`'s waits for
/// every backup that did not honour `n`'s; a mark made earlier may not.
fn held_elsewhere(index: &Index, listing: &[Listing], used: &dyn Fn(usize) -> bool, n: u32, id: &Id) -> bool {
    let Listing::Marked { repacked } = listing[n as usize] else { return false };
    let Some(pos) = index.position(id) else { return false };
    let at = index.location(pos).pack;
    if at == n {
        repacked && used(pos)
    } else {
        listing[at as usize] == Listing::Whole { marked: false }
    }
}

/// Writes index files listing every pack not [`Listing::Gone`], with the
/// entries the index took for it (read again, one file at a time, from
/// the file it took them from, superseded or not: after an interrupted
/// prune a live file may list a pack with fewer entries than a superseded
/// one), less those a marked pack leaves out. Returns the number of files
/// written.
pub fn rewrite(repo: &Repository, index: &Index, listing: &[Listing], used: &dyn Fn(usize) -> bool) -> Result<usize> {
    struct Collect<'a> {
        index: &'a Index,
        file: &'a Id,
        listing: &'a [Listing],
        used: &'a dyn Fn(usize) -> bool,
        done: &'a mut [bool],
        batch: &'a mut IndexFile,
    }
    impl IndexVisitor for Collect<'_> {
        fn supersedes(&mut self, _: Id) {}
        fn pack(&mut self, info: PackInfo, entries: PackEntries<'_>) {
            let Some(n) = self.index.pack_number(&info.id) else { return };
            if self.listing[n as usize] == Listing::Gone || self.done[n as usize] {
                return;
            }
            if !self.index.listed_from(n, self.file) {
                return;
            }
            self.done[n as usize] = true;
            let (index, listing, used) = (self.index, self.listing, self.used);
            let kept: Vec<PackEntry> = entries.filter(|e| !held_elsewhere(index, listing, used, n, &e.id)).collect();
            self.batch.packs.push((info, kept));
        }
    }
    let mut done = vec![false; listing.len()];
    let mut batch = IndexFile::default();
    let mut written = 0;
    let mut save = |f: &IndexFile| -> Result<()> {
        repo.save_index_file(f)?;
        crate::failpoint::hit!("prune::index_written");
        written += 1;
        Ok(())
    };
    for fid in &index.sources_of(|n| listing[n as usize] != Listing::Gone) {
        let plain = repo.load_object("index", fid, limits::INDEX_FILE)?;
        let mut c = Collect { index, file: fid, listing, used, done: &mut done, batch: &mut batch };
        IndexFile::visit(&plain, &mut c).map_err(|e| Error::format(format!("index file `index/{fid}`"), e))?;
        // Full files go out now; the last, not full yet, collects more.
        let mut files = split_into_files(std::mem::take(&mut batch.packs));
        let last_full =
            files.last().is_some_and(|f| f.packs.iter().map(|p| p.1.len()).sum::<usize>() >= MAX_BLOBS_PER_FILE);
        if !last_full {
            batch = files.pop().unwrap_or_default();
        }
        for f in &files {
            save(f)?;
        }
    }
    if !batch.packs.is_empty() {
        save(&batch)?;
    }
    if let Some(n) = listing.iter().zip(&done).position(|(l, d)| *l != Listing::Gone && !d) {
        return Err(Error::Integrity {
            what: format!(
                "index files (pack `{}` is no longer listed; prune stopped)",
                pack_key(&index.pack(n as u32).id)
            ),
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::{IdRequest, IndexBuilder};
    use crate::repo::{BlobKind, IndexMode};

    fn entry(name: &str, offset: u32) -> PackEntry {
        PackEntry { kind: BlobKind::Data, id: Id::hash_of(name.as_bytes()), offset, length: 100, raw_length: 80 }
    }

    /// An index of pack `q` (number 0, where the index puts the blob both
    /// hold) and pack `p` (number 1): both hold `shared`, `p` also `own`.
    fn two_packs() -> Index {
        let pack = |name: &str, entries: Vec<PackEntry>| {
            (PackInfo { id: Id::hash_of(name.as_bytes()), kind: BlobKind::Data, size: 500 }, entries)
        };
        let packs = vec![pack("q", vec![entry("shared", 0)]), pack("p", vec![entry("own", 0), entry("shared", 100)])];
        let mut b = IndexBuilder::new(IndexMode::Locations);
        b.add_file(Id::hash_of(b"file"), &IndexFile { supersedes: Vec::new(), packs: packs.clone() }.encode()).unwrap();
        let index = b
            .finish(&mut |reqs: &[IdRequest]| -> std::result::Result<Vec<Id>, String> {
                let find = |r: &IdRequest| {
                    let (_, es) = packs.iter().find(|(i, _)| i.id == r.pack).unwrap();
                    es.iter().find(|e| e.offset == r.offset).unwrap().id
                };
                Ok(reqs.iter().map(find).collect())
            })
            .unwrap();
        assert_eq!(index.pack(index.get(&entry("shared", 0).id).unwrap().pack).id, Id::hash_of(b"q"));
        index
    }

    /// Which of (q's shared, p's shared, p's own) each pack leaves out.
    fn left_out(index: &Index, q: Listing, p: Listing, used: bool) -> [bool; 3] {
        let (listing, used) = ([q, p], move |_: usize| used);
        let out = |n: u32, name: &str| held_elsewhere(index, &listing, &used, n, &entry(name, 0).id);
        [out(0, "shared"), out(1, "shared"), out(1, "own")]
    }

    #[test]
    fn a_marked_pack_leaves_out_only_what_a_new_pack_or_a_pack_no_mark_names_holds() {
        let index = two_packs();
        let marked = Listing::Marked { repacked: false };
        let repacked = Listing::Marked { repacked: true };
        // Kept packs are listed whole, whatever they share.
        let kept = Listing::Whole { marked: false };
        assert_eq!(left_out(&index, kept, kept, true), [false; 3]);
        // The blob stays listed where the index puts it.
        assert_eq!(left_out(&index, kept, marked, false), [false, true, false]);
        // Unless a mark names that pack too: an earlier mark may ripen
        // under a backup that took the blob from the later-marked one.
        assert_eq!(left_out(&index, Listing::Whole { marked: true }, marked, false), [false; 3]);
        assert_eq!(left_out(&index, marked, marked, false), [false; 3]);
        // Its other copy goes now: the marked pack keeps listing it.
        assert_eq!(left_out(&index, Listing::Gone, marked, true), [false, false, false]);
        // Copied by this prune into a new pack: the pack it was copied
        // from no longer lists it; the other, marked too, keeps it.
        assert_eq!(left_out(&index, repacked, marked, true), [true, false, false]);
        // Not used, so not copied: both marked packs list it.
        assert_eq!(left_out(&index, repacked, repacked, false), [false; 3]);
    }
}
