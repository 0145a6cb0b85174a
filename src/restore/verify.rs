//! Verification of restored files: re-read each one and check every chunk
//! against its keyed id, and the size against the plan.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::repo::Repository;

use super::plan::{Plan, PlannedFile};
use super::Failure;

/// Checks one restored file; returns why it is wrong, if it is.
pub fn check_file(repo: &Repository, path: &Path, f: &PlannedFile, buf: &mut Vec<u8>) -> Option<String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot open for verification: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.len() != f.size => return Some(format!("size {} differs from {}", m.len(), f.size)),
        Err(e) => return Some(e.to_string()),
        _ => {}
    }
    for c in &f.chunks {
        buf.resize(c.length as usize, 0);
        if let Err(e) = file.read_exact_at(buf, c.offset) {
            return Some(format!("read at {}: {e}", c.offset));
        }
        if repo.key().blob_id(buf) != c.id {
            return Some(format!("content at offset {} does not match chunk {}", c.offset, c.id.short()));
        }
    }
    None
}

/// Verifies every planned file under `target`, in parallel.
pub fn verify(repo: &Repository, plan: &Plan, target: &Path, threads: usize) -> Vec<Failure> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = plan.files.get(i) else { break };
                    let path = target.join(&f.rel);
                    if let Some(reason) = check_file(repo, &path, f, &mut buf) {
                        failures.lock().unwrap().push(Failure { path: f.rel.display().to_string(), reason });
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}
