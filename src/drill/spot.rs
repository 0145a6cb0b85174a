//! Source spot-check: do the live files still match the recovery point?
//!
//! A seeded sample of the snapshot's files is looked up at their original
//! (live) paths. A file whose size or mtime differs from the snapshot's,
//! or that is no longer a regular file, changed since the recovery point
//! was taken: that is expected of live data and not a failure. A missing
//! file is reported as gone. A file with the same size and mtime is read
//! and hashed chunk by chunk against the snapshot's chunk ids; a
//! difference there (silent corruption of the source or of the backup,
//! or a change that kept the mtime) is a mismatch, which fails the drill's
//! integrity unless the file's size or mtime moved while it was read.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::repo::Repository;
use crate::restore::plan::{Plan, PlannedFile};
use crate::restore::verify::{chunks_match, ChunkFault};

use super::select;
use super::verify::{snapshot_path, Mismatch};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpotCheck {
    pub requested: u64,
    /// Files looked at (at most `requested`, at most the snapshot's files).
    pub checked: u64,
    /// Same size, mtime and content as in the recovery point.
    pub matched: u64,
    /// Size, mtime or type changed since the recovery point: not a failure.
    pub changed_since: Vec<String>,
    /// No longer exists at its live path: not a failure.
    pub gone: Vec<String>,
    /// Could not be read (permissions…): not a failure, but not checked.
    pub unreadable: Vec<Mismatch>,
    /// Same size and mtime, different content: an integrity failure.
    pub mismatched: Vec<Mismatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

enum Finding {
    Matched,
    Changed,
    Gone,
    Unreadable(String),
    Mismatched(String),
}

fn same_as_snapshot(m: &std::fs::Metadata, f: &PlannedFile) -> bool {
    m.is_file() && m.len() == f.size && (m.mtime(), m.mtime_nsec() as u32) == (f.node.mtime, f.node.mtime_nsec)
}

fn open_live(path: &Path) -> std::io::Result<std::fs::File> {
    // O_NOATIME keeps the check from touching the live file's atime; it
    // needs ownership (or root), so fall back without it.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME)
        .open(path)
        .or_else(|_| OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path))
}

fn check(repo: &Repository, live: &Path, f: &PlannedFile, buf: &mut Vec<u8>) -> Finding {
    let m = match std::fs::symlink_metadata(live) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Finding::Gone,
        Err(e) => return Finding::Unreadable(e.to_string()),
    };
    if !same_as_snapshot(&m, f) {
        return Finding::Changed;
    }
    let file = match open_live(live) {
        Ok(file) => file,
        Err(e) => return Finding::Unreadable(e.to_string()),
    };
    match chunks_match(repo, &file, &f.chunks, buf) {
        Ok(()) => Finding::Matched,
        Err(ChunkFault::Read(offset, e)) => Finding::Unreadable(format!("read at offset {offset}: {e}")),
        // Written to while we read it? Then it simply changed.
        Err(ChunkFault::Differs(offset, _)) => match file.metadata() {
            Ok(now) if same_as_snapshot(&now, f) => Finding::Mismatched(format!(
                "live content at offset {offset} differs from the recovery point although size and mtime are unchanged"
            )),
            _ => Finding::Changed,
        },
    }
}

/// Spot-checks `n` seeded files of the plan against their live paths.
pub fn spot_check(repo: &Repository, plan: &Plan, n: usize, seed: u64) -> SpotCheck {
    let paths: Vec<String> = plan.files.iter().map(|f| snapshot_path(&f.rel)).collect();
    let chosen = select::sample(seed, "spot-check", &paths, n);
    let mut out = SpotCheck { requested: n as u64, checked: chosen.len() as u64, ..Default::default() };
    let mut buf = Vec::new();
    for i in chosen {
        let f = &plan.files[i];
        let live = PathBuf::from(&paths[i]);
        match check(repo, &live, f, &mut buf) {
            Finding::Matched => out.matched += 1,
            Finding::Changed => out.changed_since.push(paths[i].clone()),
            Finding::Gone => out.gone.push(paths[i].clone()),
            Finding::Unreadable(reason) => out.unreadable.push(Mismatch { path: paths[i].clone(), reason }),
            Finding::Mismatched(reason) => out.mismatched.push(Mismatch { path: paths[i].clone(), reason }),
        }
    }
    out
}
