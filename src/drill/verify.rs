//! Verification of the restored scratch copy against the snapshot.
//!
//! Each selected file is opened through the scratch target's directory
//! handles (as the restore wrote it, never through a symlink), its size,
//! mode, mtime (and owner, as root) are compared with the snapshot's node
//! through the open descriptor, and its content is re-read chunk by chunk
//! and hashed with the repository's keyed BLAKE3, which must give the
//! chunk id the snapshot lists at that offset. Nothing is read from the
//! repository again: the plan already holds every chunk's id, offset and
//! length. Files are spread over worker threads.
//!
//! Full verification checks every file, and also every hard link (same
//! inode as its file), symlink (target), directory (type, mode, mtime) and
//! FIFO. Sampled verification checks a seeded sample of the files only,
//! and the sample is recorded: its size, seed, the BLAKE3 of the sorted
//! path list, and the list itself when it has at most
//! [`MAX_LISTED_SAMPLE`] paths.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::pool::parallel_with;
use crate::repo::{Node, NodeKind, Repository};
use crate::restore::handles::Handles;
use crate::restore::plan::{Plan, PlannedFile};
use crate::restore::verify::{chunks_match, ChunkFault};

use super::select;
use super::VerifyChoice;

/// Samples up to this size are listed path by path in the report.
pub const MAX_LISTED_SAMPLE: usize = 1000;

/// A restored entry that does not match the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mismatch {
    /// The path as in the snapshot (`/srv/www/index.html`).
    pub path: String,
    pub reason: String,
}

/// The recorded sample of a sampled verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub percent: f64,
    pub seed: u64,
    /// Files the sample was drawn from.
    pub population: u64,
    pub size: u64,
    /// BLAKE3 of the sampled snapshot paths, sorted, each followed by `\n`.
    pub list_blake3: String,
    /// The sampled paths, sorted; absent when there are more than
    /// [`MAX_LISTED_SAMPLE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// Hard links, symlinks, directories and FIFOs checked (full only).
    pub entries_checked: u64,
    pub mismatches: Vec<Mismatch>,
}

/// The path of a planned entry as the snapshot names it.
pub fn snapshot_path(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// The files to verify (indices into `plan.files`) and, for a sample, its record.
pub fn select_files(plan: &Plan, choice: VerifyChoice, seed: u64) -> (Vec<usize>, Option<Sample>) {
    match choice {
        VerifyChoice::Full => ((0..plan.files.len()).collect(), None),
        VerifyChoice::Sample(percent) => {
            let paths: Vec<String> = plan.files.iter().map(|f| snapshot_path(&f.rel)).collect();
            let n = paths.len();
            let k = if n == 0 { 0 } else { ((n as f64 * percent / 100.0).ceil() as usize).clamp(1, n) };
            let chosen = select::sample(seed, "verify", &paths, k);
            let mut listed: Vec<String> = chosen.iter().map(|i| paths[*i].clone()).collect();
            listed.sort();
            let mut h = blake3::Hasher::new();
            for p in &listed {
                h.update(p.as_bytes());
                h.update(b"\n");
            }
            let sample = Sample {
                percent,
                seed,
                population: n as u64,
                size: k as u64,
                list_blake3: h.finalize().to_hex().to_string(),
                paths: (listed.len() <= MAX_LISTED_SAMPLE).then_some(listed),
            };
            (chosen, Some(sample))
        }
    }
}

/// Compares what `fstat`/`lstat` says with the snapshot's node.
fn metadata_differs(m: &std::fs::Metadata, node: &Node, as_root: bool) -> Option<String> {
    if m.mode() & 0o7777 != node.mode {
        return Some(format!("mode {:o} differs from the snapshot's {:o}", m.mode() & 0o7777, node.mode));
    }
    if (m.mtime(), m.mtime_nsec() as u32) != (node.mtime, node.mtime_nsec) {
        return Some(format!(
            "mtime {}.{:09} differs from the snapshot's {}.{:09}",
            m.mtime(),
            m.mtime_nsec(),
            node.mtime,
            node.mtime_nsec
        ));
    }
    if as_root && (m.uid(), m.gid()) != (node.uid, node.gid) {
        return Some(format!("owner {}:{} differs from the snapshot's {}:{}", m.uid(), m.gid(), node.uid, node.gid));
    }
    None
}

/// Checks one restored file, opened through its directory's handle;
/// returns why it does not match, if it does not.
fn check_file(
    repo: &Repository,
    dirs: &Handles<'_>,
    f: &PlannedFile,
    as_root: bool,
    buf: &mut Vec<u8>,
) -> Option<String> {
    let file = match dirs.open_file(&f.rel) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot open the restored file: {e}")),
    };
    let m = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot stat the restored file: {e}")),
    };
    if m.len() != f.size {
        return Some(format!("size {} differs from the snapshot's {}", m.len(), f.size));
    }
    if let Some(why) = metadata_differs(&m, &f.node, as_root) {
        return Some(why);
    }
    match chunks_match(repo, &file, &f.chunks, buf) {
        Ok(()) => None,
        Err(ChunkFault::Read(offset, e)) => Some(format!("read at offset {offset}: {e}")),
        Err(ChunkFault::Differs(offset, id)) => {
            Some(format!("content at offset {offset} does not match chunk {}", id.short()))
        }
    }
}

/// Checks a directory, symlink or FIFO; `None` when it matches (or is of
/// a kind that is not checked).
fn check_entry(dirs: &Handles<'_>, rel: &Path, node: &Node, as_root: bool) -> Option<String> {
    let m = match dirs.lstat(rel) {
        Ok(m) => m,
        Err(e) => return Some(format!("missing from the restore: {e}")),
    };
    let ft = m.file_type();
    match node.kind {
        NodeKind::Dir if !ft.is_dir() => Some("not a directory".into()),
        NodeKind::Dir => metadata_differs(&m, node, as_root),
        NodeKind::Symlink if !ft.is_symlink() => Some("not a symbolic link".into()),
        NodeKind::Symlink => {
            use std::os::unix::ffi::OsStrExt;
            match dirs.read_link(rel) {
                Ok(t) if t.as_bytes() == node.target.as_deref().unwrap_or_default() => None,
                Ok(t) => Some(format!("symlink target {} differs from the snapshot's", Path::new(&t).display())),
                Err(e) => Some(format!("cannot read the symlink: {e}")),
            }
        }
        NodeKind::Fifo => {
            use std::os::unix::fs::FileTypeExt;
            (!ft.is_fifo()).then(|| "not a FIFO".to_string())
        }
        _ => None,
    }
}

/// Verifies the files `files` (indices into `plan.files`) under `target`;
/// with `entries`, also hard links, symlinks, directories and FIFOs.
/// Everything is read through handles opened beneath the target, as the
/// restore wrote it: a directory swapped for a symlink meanwhile is a
/// mismatch, never a way out.
pub fn verify(
    repo: &Repository,
    plan: &Plan,
    target: &Path,
    files: &[usize],
    entries: bool,
    threads: usize,
) -> Verified {
    let as_root = crate::fsmeta::is_root();
    let root = match Handles::open_root(target) {
        Ok(root) => root,
        Err(e) => {
            let reason = format!("cannot open the scratch target {}: {e}", target.display());
            let mismatches =
                files.iter().map(|i| Mismatch { path: snapshot_path(&plan.files[*i].rel), reason: reason.clone() });
            return Verified {
                files_checked: files.len() as u64,
                mismatches: mismatches.collect(),
                ..Default::default()
            };
        }
    };
    let dirs = Handles::new(root, plan.dirs.iter().map(|d| d.rel.as_path()));
    let bytes = AtomicU64::new(0);
    let mismatches = Mutex::new(Vec::new());
    parallel_with(threads, files.len(), Vec::new, |buf, i| {
        let f = &plan.files[files[i]];
        bytes.fetch_add(f.size, Ordering::Relaxed);
        if let Some(reason) = check_file(repo, &dirs, f, as_root, buf) {
            mismatches.lock().unwrap().push(Mismatch { path: snapshot_path(&f.rel), reason });
        }
    });
    let mut out = Verified {
        files_checked: files.len() as u64,
        bytes_checked: bytes.into_inner(),
        entries_checked: 0,
        mismatches: mismatches.into_inner().unwrap(),
    };
    if entries {
        let mut bad = |rel: &Path, reason: String| out.mismatches.push(Mismatch { path: snapshot_path(rel), reason });
        for link in &plan.hardlinks {
            let (rel, first) = (&link.rel, plan.link_first(link));
            match (dirs.lstat(rel), dirs.lstat(first)) {
                (Ok(a), Ok(b)) if (a.dev(), a.ino()) == (b.dev(), b.ino()) => {}
                (Ok(_), Ok(_)) => bad(rel, format!("not a hard link of {}", snapshot_path(first))),
                (Err(e), _) | (_, Err(e)) => bad(rel, format!("hard link missing from the restore: {e}")),
            }
        }
        let dir_entries = plan.dirs.iter().map(|d| (&d.rel, &d.node));
        for (rel, node) in dir_entries.chain(plan.others.iter().map(|(rel, node)| (rel, node))) {
            if let Some(reason) = check_entry(&dirs, rel, node, as_root) {
                bad(rel, reason);
            }
        }
        out.entries_checked = (plan.hardlinks.len() + plan.dirs.len() + plan.others.len()) as u64;
    }
    out.mismatches.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::PlannedFile;
    use std::path::PathBuf;

    fn plan_of(n: usize) -> Plan {
        let mut p = Plan::default();
        for i in 0..n {
            p.files.push(PlannedFile {
                rel: PathBuf::from(format!("srv/f{i:03}")),
                node: Node::new(format!("f{i:03}").into_bytes(), NodeKind::File),
                chunks: vec![],
                size: 0,
            });
        }
        p
    }

    #[test]
    fn a_sample_is_recorded_and_reproducible() {
        let plan = plan_of(50);
        let (a, sa) = select_files(&plan, VerifyChoice::Sample(10.0), 42);
        let (b, sb) = select_files(&plan, VerifyChoice::Sample(10.0), 42);
        let (c, sc) = select_files(&plan, VerifyChoice::Sample(10.0), 43);
        assert_eq!(a.len(), 5);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_ne!(a, c);
        let (sa, sc) = (sa.unwrap(), sc.unwrap());
        assert_ne!(sa.list_blake3, sc.list_blake3);
        assert_eq!((sa.population, sa.size, sa.seed), (50, 5, 42));
        let listed = sa.paths.unwrap();
        assert_eq!(listed.len(), 5);
        assert!(listed.iter().all(|p| p.starts_with("/srv/f")), "{listed:?}");
        // At least one file, and never more than there are.
        assert_eq!(select_files(&plan, VerifyChoice::Sample(0.1), 1).0.len(), 1);
        assert_eq!(select_files(&plan, VerifyChoice::Sample(100.0), 1).0.len(), 50);
        assert_eq!(select_files(&plan, VerifyChoice::Full, 1), ((0..50).collect(), None));
    }

    #[test]
    fn a_huge_sample_is_recorded_by_count_seed_and_hash() {
        let plan = plan_of(MAX_LISTED_SAMPLE + 1);
        let (_, s) = select_files(&plan, VerifyChoice::Sample(100.0), 5);
        let s = s.unwrap();
        assert_eq!(s.size, MAX_LISTED_SAMPLE as u64 + 1);
        assert!(s.paths.is_none());
        assert_eq!(s.list_blake3.len(), 64);
    }
}
