//! Prune's marks: the packs a prune found unused, which a later prune
//! deletes once it is safe (see `crate::prune::gc` for the rules).
//!
//! A mark is a sealed, create-only object `marks/<hash>` holding when it
//! was made and the packs it marks. It is never replaced: a prune that
//! finds more garbage writes another mark, and the prune that acts on a
//! ripe mark deletes it after the packs it names are gone. Marks live
//! outside `locks/` because they are not state that changes: every
//! backup reads them, no backup may remove one (a backup-host credential
//! deletes only under `locks/`), and `cairn unlock --remove-all` must not
//! sweep them away with the locks. Removing a mark is always safe (its
//! packs are only deleted later, once marked again); planting one gains
//! nothing, since a prune deletes only packs its own walk of every
//! snapshot finds unused.
//!
//! A backup honours a mark by leaving its packs out of the index it
//! deduplicates against, and says which marks it honours in its lock
//! ([`super::lock::LockInfo::marks`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

use super::{limits, Repository};

/// Where marks live.
pub const MARKS: &str = "marks";
/// The version of the mark layout this build writes.
pub const MARK_VERSION: u32 = 1;

/// A mark's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub v: u32,
    /// When it was made, by the storage server's clock where the backend
    /// has one (S3 `Date` headers), else by the marking host's.
    pub time: DateTime<Utc>,
    /// The packs marked.
    pub packs: Vec<Id>,
}

/// A mark found in the repository.
#[derive(Debug, Clone)]
pub struct Marked {
    pub id: Id,
    pub mark: Mark,
    /// When the storage stored it, by its own clock, where it says.
    pub stored: Option<DateTime<Utc>>,
}

/// Every mark of the repository, and those that do not open (damaged or
/// forged), named with why. A mark removed while listing is left out.
#[derive(Debug, Default)]
pub struct MarkList {
    pub marks: Vec<Marked>,
    pub damaged: Vec<(Id, String)>,
}

impl MarkList {
    pub fn ids(&self) -> Vec<Id> {
        self.marks.iter().map(|m| m.id).collect()
    }

    /// The packs of every mark.
    pub fn packs(&self) -> HashSet<Id> {
        self.marks.iter().flat_map(|m| m.mark.packs.iter().copied()).collect()
    }
}

/// Lists and opens every mark.
pub fn list(repo: &Repository) -> Result<MarkList> {
    let mut out = MarkList::default();
    let prefix = format!("{MARKS}/");
    let listed: Vec<(Id, Option<DateTime<Utc>>)> = repo
        .backend()
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| Some((o.key.strip_prefix(&prefix)?.parse().ok()?, o.modified)))
        .collect();
    if let Some(c) = repo.cache() {
        c.retain(MARKS, &listed.iter().map(|(id, _)| *id).collect());
    }
    for (id, stored) in listed {
        match repo.load_object(MARKS, &id, limits::MARK) {
            Ok(plain) => match serde_json::from_slice::<Mark>(&plain) {
                Ok(mark) => out.marks.push(Marked { id, mark, stored }),
                Err(e) => out.damaged.push((id, e.to_string())),
            },
            Err(Error::Backend(e)) if e.is_not_found() => {} // a prune removed it meanwhile
            Err(e @ (Error::Integrity { .. } | Error::Format { .. } | Error::TooLarge { .. })) => {
                out.damaged.push((id, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    out.marks.sort_by(|a, b| a.mark.time.cmp(&b.mark.time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The most packs one mark names (about 6.7 MB of JSON, well inside
/// [`limits::MARK`]); a prune that marks more writes several marks.
pub const MAX_PACKS_PER_MARK: usize = 100_000;

/// Stores a new mark of `packs`, made at `time`, as several marks when
/// there are more than [`MAX_PACKS_PER_MARK`]; returns their ids.
pub fn save(repo: &Repository, time: DateTime<Utc>, packs: Vec<Id>) -> Result<Vec<Id>> {
    packs
        .chunks(MAX_PACKS_PER_MARK)
        .map(|part| {
            let mark = Mark { v: MARK_VERSION, time, packs: part.to_vec() };
            repo.save_object(MARKS, &serde_json::to_vec(&mark).expect("mark serialises"))
        })
        .collect()
}

/// Removes a mark; one already gone counts as removed.
pub fn remove(repo: &Repository, id: &Id) -> Result<()> {
    match repo.backend().delete(&format!("{MARKS}/{id}")) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The time marks are made and judged by: the storage's own clock
/// ([`super::lock::storage_clock`]), the one that stamps every object.
pub fn clock(repo: &Repository) -> DateTime<Utc> {
    super::lock::storage_clock(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_mark_a_prune_writes_opens_within_the_limit() {
        let mark = Mark { v: MARK_VERSION, time: Utc::now(), packs: vec![Id::hash_of(b"p"); MAX_PACKS_PER_MARK] };
        let len = serde_json::to_vec(&mark).unwrap().len() as u64;
        assert!(len < limits::MARK / 2, "{len} bytes");
    }
}
