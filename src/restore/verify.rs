//! Verification of restored files: re-read each one and check every chunk
//! against its keyed id, and the size against the plan. Files are opened
//! through the target's directory handles, as the restore wrote them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::id::Id;
use crate::repo::Repository;

use super::handles::Handles;
use super::plan::{ChunkRef, Plan, PlannedFile};
use super::Failure;

/// Where a file's content departs from its chunks.
pub enum ChunkFault {
    /// Reading at this offset failed.
    Read(u64, std::io::Error),
    /// The content at this offset is not this chunk.
    Differs(u64, Id),
}

/// Re-reads each chunk from `file` and checks it against its keyed id.
pub fn chunks_match(repo: &Repository, file: &File, chunks: &[ChunkRef], buf: &mut Vec<u8>) -> Result<(), ChunkFault> {
    for c in chunks {
        buf.resize(c.length as usize, 0);
        file.read_exact_at(buf, c.offset).map_err(|e| ChunkFault::Read(c.offset, e))?;
        if repo.key().blob_id(buf) != c.id {
            return Err(ChunkFault::Differs(c.offset, c.id));
        }
    }
    Ok(())
}

/// Checks one restored file, opened through its directory's handle
/// without following a symlink; returns why it is wrong, if it is.
fn check_file(repo: &Repository, dirs: &Handles<'_>, f: &PlannedFile, buf: &mut Vec<u8>) -> Option<String> {
    let file = match dirs.open_file(&f.rel) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot open for verification: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.len() != f.size => return Some(format!("size {} differs from {}", m.len(), f.size)),
        Err(e) => return Some(e.to_string()),
        _ => {}
    }
    match chunks_match(repo, &file, &f.chunks, buf) {
        Ok(()) => None,
        Err(ChunkFault::Read(offset, e)) => Some(format!("read at {offset}: {e}")),
        Err(ChunkFault::Differs(offset, id)) => {
            Some(format!("content at offset {offset} does not match chunk {}", id.short()))
        }
    }
}

/// Verifies every planned file under `target`, in parallel.
pub fn verify(repo: &Repository, plan: &Plan, target: &Path, threads: usize) -> Vec<Failure> {
    let root = match Handles::open_root(target) {
        Ok(root) => root,
        Err(e) => {
            let reason = format!("cannot open the target {} for verification: {e}", target.display());
            return plan
                .files
                .iter()
                .map(|f| Failure { path: f.rel.display().to_string(), reason: reason.clone() })
                .collect();
        }
    };
    let dirs = Handles::new(root, plan.dirs.iter().map(|(rel, _)| rel.as_path()));
    let failures = Mutex::new(Vec::new());
    super::parallel_with(threads, plan.files.len(), Vec::new, |buf, i| {
        let f = &plan.files[i];
        if let Some(reason) = check_file(repo, &dirs, f, buf) {
            failures.lock().unwrap().push(Failure { path: f.rel.display().to_string(), reason });
        }
    });
    failures.into_inner().unwrap()
}
