//! The local metadata cache for remote repositories.
//!
//! Index files, snapshots and tree packs are immutable and named by the
//! hash of their bytes, so a cached copy is checked by hashing it again
//! before use: a corrupt entry is deleted and fetched anew, never trusted.
//! Entries are used only for names the repository lists right now, and
//! entries the repository no longer lists are removed when it is listed,
//! so a stale cache cannot resurrect deleted objects. With the cache, an
//! incremental backup of an unchanged tree downloads nothing but the key
//! slot and a few listings.
//!
//! Layout: `<base>/<repository id>/{index,snapshots,packs}/<id>`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{LogWarnings, WarningSink};
use crate::id::Id;

#[derive(Default)]
struct Fetching {
    ids: HashSet<Id>,
    /// Readers waiting for another's download (seen by tests).
    waiting: usize,
}

pub struct Cache {
    dir: PathBuf,
    packs: Mutex<HashMap<Id, Arc<Vec<u8>>>>,
    /// Tree packs being fetched: a second reader waits for the first
    /// rather than download the same pack again.
    fetching: Mutex<Fetching>,
    fetched: Condvar,
    /// Where a corrupt or unwritable entry is told (a cache problem only
    /// costs a download).
    warnings: WarningSink,
}

/// The default cache base: `$CAIRN_CACHE_DIR`, `$XDG_CACHE_HOME/cairn`, or
/// `~/.cache/cairn`.
pub fn default_base() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("cairn"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cairn"))
}

impl Cache {
    pub fn open(base: &Path, repo: &Id) -> std::io::Result<Cache> {
        let dir = base.join(repo.to_hex());
        for sub in ["index", "snapshots", "packs"] {
            crate::private::create_dir_all(&dir.join(sub))?;
        }
        Ok(Cache {
            dir,
            packs: Mutex::new(HashMap::new()),
            fetching: Mutex::new(Fetching::default()),
            fetched: Condvar::new(),
            warnings: Arc::new(LogWarnings),
        })
    }

    /// This cache, telling its problems to `sink`.
    pub fn with_warnings(mut self, sink: WarningSink) -> Cache {
        self.warnings = sink;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, kind: &str, id: &Id) -> PathBuf {
        self.dir.join(kind).join(id.to_hex())
    }

    /// Whether an entry for the object exists (unchecked: [`Cache::get`]
    /// still hashes it).
    pub fn has(&self, kind: &str, id: &Id) -> bool {
        self.path(kind, id).is_file()
    }

    /// A cached object whose bytes still hash to its id.
    pub fn get(&self, kind: &str, id: &Id) -> Option<Vec<u8>> {
        let p = self.path(kind, id);
        let bytes = std::fs::read(&p).ok()?;
        if Id::hash_of(&bytes) == *id {
            Some(bytes)
        } else {
            self.warnings.warn(format!("cache entry {} is corrupt; fetching it again", p.display()));
            let _ = std::fs::remove_file(&p);
            None
        }
    }

    /// Stores an object; failures only cost a later download. A kind whose
    /// directory [`Cache::open`] did not make (marks, say) gets one here.
    pub fn put(&self, kind: &str, id: &Id, bytes: &[u8]) {
        let p = self.path(kind, id);
        let tmp = p.with_extension(format!("tmp-{}", Id::random().short()));
        let r = crate::private::create_dir_all(&self.dir.join(kind))
            .and_then(|_| crate::private::create_new(&tmp))
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|_| std::fs::rename(&tmp, &p));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            self.warnings.warn(format!("could not cache {}: {e}", p.display()));
        }
    }

    /// Removes cached objects of `kind` that are not in `keep`.
    pub fn retain(&self, kind: &str, keep: &HashSet<Id>) {
        let Ok(rd) = std::fs::read_dir(self.dir.join(kind)) else { return };
        for e in rd.flatten() {
            let name = e.file_name();
            let stale = match name.to_str().and_then(|n| n.parse::<Id>().ok()) {
                Some(id) => !keep.contains(&id),
                None => true, // temporaries of an interrupted write
            };
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// A tree pack, from memory or disk, checked against its id.
    pub fn pack(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        if let Some(p) = self.packs.lock().unwrap().get(id) {
            return Some(p.clone());
        }
        let bytes = Arc::new(self.get("packs", id)?);
        self.packs.lock().unwrap().insert(*id, bytes.clone());
        Some(bytes)
    }

    /// A tree pack from the cache, or else from `fetch`, called by one
    /// reader at a time per pack: readers of the same pack at once (the
    /// backup's trees fetched ahead) wait for the first one's download.
    pub fn pack_or_fetch<E>(&self, id: &Id, fetch: impl FnOnce() -> Result<Vec<u8>, E>) -> Result<Arc<Vec<u8>>, E> {
        loop {
            if let Some(p) = self.pack(id) {
                return Ok(p);
            }
            let mut f = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            if f.ids.insert(*id) {
                break;
            }
            f.waiting += 1;
            self.fetched.notify_all();
            while f.ids.contains(id) {
                f = self.fetched.wait(f).unwrap_or_else(|e| e.into_inner());
            }
            f.waiting -= 1;
        }
        // The claim is released however this ends (a panicking fetch too),
        // so that no reader of the pack waits forever.
        let _claim = Claim { cache: self, id };
        // Another reader may have finished between the look and the claim.
        let done = self.packs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        match done {
            Some(p) => Ok(p),
            None => fetch().map(|b| self.put_pack(id, b)),
        }
    }

    pub fn put_pack(&self, id: &Id, bytes: Vec<u8>) -> Arc<Vec<u8>> {
        self.put("packs", id, &bytes);
        let bytes = Arc::new(bytes);
        self.packs.lock().unwrap().insert(*id, bytes.clone());
        bytes
    }
}

/// One reader's claim to download a tree pack ([`Cache::pack_or_fetch`]).
struct Claim<'a> {
    cache: &'a Cache,
    id: &'a Id,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.cache.fetching.lock().unwrap_or_else(|e| e.into_inner()).ids.remove(self.id);
        self.cache.fetched.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_pack_read_by_two_at_once_is_downloaded_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), &Id::hash_of(b"repo")).unwrap();
        let id = Id::hash_of(b"pack");
        let downloads = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || -> Result<Vec<u8>, ()> {
            downloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(b"pack".to_vec())
        };
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                c.pack_or_fetch(&id, || {
                    // Download only once the second reader waits for this
                    // one (after 60 s without, so a failure cannot hang).
                    let f = c.fetching.lock().unwrap();
                    let _ = c.fetched.wait_timeout_while(f, std::time::Duration::from_secs(60), |f| f.waiting == 0);
                    fetch()
                })
            });
            // The second starts once the first holds the pack's claim.
            while !c.fetching.lock().unwrap().ids.contains(&id) {
                std::thread::yield_now();
            }
            assert_eq!(*c.pack_or_fetch(&id, fetch).unwrap(), b"pack");
            assert_eq!(*first.join().unwrap().unwrap(), b"pack");
        });
        assert_eq!(downloads.into_inner(), 1, "the second reader waited for the first's download");
    }

    /// Review finding: a download that panicked kept its claim on the
    /// pack, so every later reader of it waited forever. The claim is now
    /// released however the download ends.
    #[test]
    fn bug_a_download_that_panicked_left_every_later_reader_of_its_pack_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), &Id::hash_of(b"repo")).unwrap();
        let id = Id::hash_of(b"pack");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = c.pack_or_fetch(&id, || -> Result<Vec<u8>, ()> { panic!("a backend bug") });
        }));
        assert!(panicked.is_err());
        assert!(!c.fetching.lock().unwrap_or_else(|e| e.into_inner()).ids.contains(&id), "the claim is released");
        // And the next reader downloads it (a claim left behind would make it wait for ever).
        assert_eq!(*c.pack_or_fetch(&id, || -> Result<Vec<u8>, ()> { Ok(b"pack".to_vec()) }).unwrap(), b"pack");
    }

    /// Found by the rounds of backups and prunes on Garage: every prune
    /// warned "could not cache …/marks/…", as the cache had no `marks`
    /// directory, and fetched every mark again each time.
    #[test]
    fn bug_marks_were_never_cached_as_the_cache_had_no_directory_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let warnings = Arc::new(crate::error::CollectWarnings::default());
        let c = Cache::open(dir.path(), &Id::hash_of(b"repo")).unwrap().with_warnings(warnings.clone());
        let id = Id::hash_of(b"mark");
        c.put(crate::repo::marks::MARKS, &id, b"mark");
        assert_eq!(warnings.taken(), Vec::<String>::new());
        assert_eq!(c.get(crate::repo::marks::MARKS, &id).unwrap(), b"mark");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(c.dir().join(crate::repo::marks::MARKS)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "a private directory");
    }

    #[test]
    fn corrupt_entries_are_dropped_and_stale_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let warnings = Arc::new(crate::error::CollectWarnings::default());
        let c = Cache::open(dir.path(), &Id::hash_of(b"repo")).unwrap().with_warnings(warnings.clone());
        let id = Id::hash_of(b"object");
        c.put("index", &id, b"object");
        assert_eq!(c.get("index", &id).unwrap(), b"object");
        assert!(warnings.taken().is_empty());
        let entry = c.dir().join("index").join(id.to_hex());
        std::fs::write(&entry, b"tampered").unwrap();
        assert!(c.get("index", &id).is_none(), "a corrupt entry is never returned");
        assert!(!entry.exists(), "and it is removed");
        // Said to the sink it was given (the CLI's printer), not to the log.
        assert_eq!(warnings.taken(), [format!("cache entry {} is corrupt; fetching it again", entry.display())]);
        c.put("snapshots", &id, b"object");
        c.retain("snapshots", &HashSet::new());
        assert!(c.get("snapshots", &id).is_none(), "entries the repository no longer lists go");
    }
}
