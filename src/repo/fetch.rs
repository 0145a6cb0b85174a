//! Fetching many metadata objects at once: the index files and snapshots a
//! command opens at its start. On remote storage with an empty cache (a new
//! host, a disaster-recovery restore), one object at a time costs one round
//! trip each, so a year of daily backups would wait 365 round trips twice
//! before doing anything. Up to the backend's concurrency are fetched at
//! once; a local backend (concurrency 1), and a window the cache holds
//! whole, are read one at a time as before. A window holds up to that many
//! objects at once (an index file is at most 100,000 entries, a few MB).

use std::sync::Mutex;

use crate::error::Result;
use crate::id::Id;

use super::Repository;

impl Repository {
    /// Opens `dir/<id>` for each of `ids` ([`Repository::load_object`],
    /// so through the cache), fetching up to the backend's concurrency at
    /// once, and hands each result to `each` in the order of `ids`. At most
    /// one window of that many objects is held at a time; an error `each`
    /// returns stops the walk.
    pub(crate) fn for_each_object(
        &self,
        dir: &str,
        ids: &[Id],
        limit: u64,
        mut each: impl FnMut(Id, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let window = self.backend.concurrency().max(1);
        let cached = |id: &Id| self.cache.as_ref().is_some_and(|c| c.has(dir, id));
        for chunk in ids.chunks(window) {
            // Cached objects are local reads: one at a time, so that a
            // window of large index files is not held for nothing.
            if chunk.len() == 1 || chunk.iter().all(cached) {
                for id in chunk {
                    each(*id, self.load_object(dir, id, limit))?;
                }
                continue;
            }
            let slots: Vec<Mutex<Option<Result<Vec<u8>>>>> = chunk.iter().map(|_| Mutex::new(None)).collect();
            crate::pool::parallel(chunk.len(), chunk.len(), |i| {
                let r = self.load_object(dir, &chunk[i], limit);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
            for (id, slot) in chunk.iter().zip(slots) {
                let r = slot.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every slot is filled");
                each(*id, r)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
