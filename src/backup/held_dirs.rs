//! The directory handles that file jobs in flight hold.
//!
//! A file is opened by its reader from its directory's handle
//! ([`super::dirfd::open_file_at`]), so each job in flight keeps that
//! handle open, even after the scan has left the directory. A tree with
//! one changed file in each of thousands of directories, backed up to a
//! slow storage, would then hold a descriptor per job in flight; where the
//! limit of open files is 1024 (containers, some service managers), the
//! scan's own opens would start to fail. The scan therefore waits for jobs
//! to finish before it holds more distinct directories than a budget taken
//! from that limit.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Counts the jobs in flight per directory handle.
#[derive(Debug)]
pub struct HeldDirs {
    jobs: HashMap<usize, usize>,
    budget: usize,
}

/// The key of a handle: its address, unique while any job holds it.
pub fn key_of(dir: &Arc<OwnedFd>) -> usize {
    Arc::as_ptr(dir) as usize
}

impl HeldDirs {
    /// A budget of a quarter of the soft limit of open files, between 16
    /// and 256 directories.
    pub fn new() -> HeldDirs {
        let mut lim = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
        // SAFETY: a valid pointer to an rlimit the call fills in.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            lim.rlim_cur = 1024;
        }
        HeldDirs::with_budget((lim.rlim_cur / 4).clamp(16, 256) as usize)
    }

    pub fn with_budget(budget: usize) -> HeldDirs {
        HeldDirs { jobs: HashMap::new(), budget }
    }

    /// Whether a job of `dir` may start without holding one directory
    /// more than the budget.
    pub fn has_room(&self, dir: &Arc<OwnedFd>) -> bool {
        self.jobs.len() < self.budget || self.jobs.contains_key(&key_of(dir))
    }

    /// A job of `dir` starts; `release(key_of(dir))` ends it.
    pub fn hold(&mut self, dir: &Arc<OwnedFd>) {
        *self.jobs.entry(key_of(dir)).or_default() += 1;
    }

    /// A job of the directory `key` ended.
    pub fn release(&mut self, key: usize) {
        if let Some(n) = self.jobs.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.jobs.remove(&key);
            }
        }
    }

    /// Distinct directories held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_beyond_the_budget_waits_and_one_already_held_does_not() {
        let open = || Arc::new(OwnedFd::from(std::fs::File::open("/").unwrap()));
        let (a, b, c) = (open(), open(), open());
        let mut h = HeldDirs::with_budget(2);
        let (ka, kb) = (key_of(&a), key_of(&b));
        h.hold(&a);
        h.hold(&a);
        h.hold(&b);
        assert_eq!(h.held(), 2);
        assert!(!h.has_room(&c), "a third directory waits");
        assert!(h.has_room(&a) && h.has_room(&b), "more jobs of a held one do not");
        h.release(kb);
        assert!(h.has_room(&c));
        h.release(ka);
        assert_eq!(h.held(), 1, "a still has a job");
        h.release(ka);
        assert_eq!(h.held(), 0);
        assert!(HeldDirs::new().budget >= 16);
    }
}
