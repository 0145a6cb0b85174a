//! Restore execution: directories, file contents by pack, metadata.
//!
//! Contents are fetched pack by pack: the blobs needed from one pack are
//! sorted by offset and read with as few range requests as possible
//! (neighbours less than 256 KiB apart are read together), each blob is
//! opened and checked against its id, then written with `pwrite` to every
//! place that needs it. All-zero chunks are not written into fresh files,
//! which were sized up front, so holes stay holes.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::fsmeta;
use crate::id::Id;
use crate::repo::{blob, pack_key, Index, Node, NodeKind, Repository};

use super::plan::{Plan, PlannedFile};
use super::{Failure, RestoreOptions, RestoreReport};

/// Largest gap between two needed blobs that is read rather than skipped.
const COALESCE_GAP: u64 = 256 * 1024;

/// One place a chunk must be written.
#[derive(Debug, Clone, Copy)]
struct Dest {
    file: u32,
    offset: u64,
}

struct BlobWork {
    id: Id,
    offset: u32,
    length: u32,
    raw_length: u32,
    dests: Vec<Dest>,
}

struct State<'a> {
    plan: &'a Plan,
    target: &'a Path,
    /// Whether each file existed before (then zeros must be written).
    existed: Vec<bool>,
    failed: Vec<OnceLock<String>>,
    bytes_written: AtomicU64,
    bytes_fetched: AtomicU64,
    first_byte: Mutex<Option<Instant>>,
}

impl State<'_> {
    fn fail(&self, file: usize, reason: String) {
        let _ = self.failed[file].set(reason);
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Makes `path` a real directory: an existing non-directory entry (a
/// symlink included) is removed first, so nothing is ever written through
/// a symlink.
fn ensure_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => {
            std::fs::remove_file(path)?;
            std::fs::create_dir(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(path),
        Err(e) => Err(e),
    }
}

/// Whether `rel` lies below one of the directories that failed.
fn below_failed(rel: &Path, failed: &HashSet<&Path>) -> bool {
    !failed.is_empty() && rel.ancestors().skip(1).any(|a| failed.contains(a))
}

/// Removes whatever non-directory entry is at `path`.
fn clear_entry(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Err(std::io::Error::other("a directory is in the way")),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_for_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

pub fn execute(repo: &Repository, index: &Index, plan: &Plan, opts: &RestoreOptions) -> Result<RestoreReport> {
    let target = &opts.target;
    let threads = opts.threads.max(1);
    let mut report = RestoreReport::default();
    report.failures.extend(plan.refused.iter().map(|(p, r)| Failure { path: p.clone(), reason: r.clone() }));

    std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let mut dir_ok = vec![true; plan.dirs.len()];
    // Directories that could not be made real directories: nothing below
    // them is touched, since the old entry (say, a symlink) is still there.
    let mut failed_dirs: HashSet<&Path> = HashSet::new();
    for (i, (rel, _)) in plan.dirs.iter().enumerate() {
        let r = if below_failed(rel, &failed_dirs) {
            Err(std::io::Error::other("a directory above it could not be created"))
        } else {
            ensure_dir(&target.join(rel))
        };
        if let Err(e) = r {
            dir_ok[i] = false;
            failed_dirs.insert(rel);
            report.failures.push(Failure { path: shown(rel), reason: format!("cannot create directory: {e}") });
        }
    }
    report.dirs = dir_ok.iter().filter(|x| **x).count() as u64;

    // Prepare files in parallel: create, or compare what is already there.
    let needed: Vec<Mutex<Vec<bool>>> = plan.files.iter().map(|f| Mutex::new(vec![true; f.chunks.len()])).collect();
    let existed: Vec<AtomicUsize> = plan.files.iter().map(|_| AtomicUsize::new(0)).collect();
    let failed: Vec<OnceLock<String>> = plan.files.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = plan.files.get(i) else { break };
                    if below_failed(&f.rel, &failed_dirs) {
                        let _ = failed[i].set("its directory could not be created".into());
                        continue;
                    }
                    match prepare_file(repo, &target.join(&f.rel), f, &mut buf) {
                        Ok((was_there, need)) => {
                            existed[i].store(was_there as usize, Ordering::Relaxed);
                            *needed[i].lock().unwrap() = need;
                        }
                        Err(e) => {
                            let _ = failed[i].set(e.to_string());
                        }
                    }
                }
            });
        }
    });
    let state = State {
        plan,
        target,
        existed: existed.iter().map(|a| a.load(Ordering::Relaxed) == 1).collect(),
        failed,
        bytes_written: AtomicU64::new(0),
        bytes_fetched: AtomicU64::new(0),
        first_byte: Mutex::new(None),
    };

    // Group the needed chunks by pack.
    let mut by_blob: HashMap<Id, Vec<Dest>> = HashMap::new();
    for (fi, f) in plan.files.iter().enumerate() {
        if state.failed[fi].get().is_some() {
            continue;
        }
        let need = needed[fi].lock().unwrap();
        for (c, n) in f.chunks.iter().zip(need.iter()) {
            if *n {
                by_blob.entry(c.id).or_default().push(Dest { file: fi as u32, offset: c.offset });
            }
        }
    }
    let mut by_pack: HashMap<u32, Vec<BlobWork>> = HashMap::new();
    for (id, dests) in by_blob {
        let l = index.get(&id).expect("planned chunks are indexed");
        by_pack.entry(l.pack).or_default().push(BlobWork {
            id,
            offset: l.offset,
            length: l.length,
            raw_length: l.raw_length,
            dests,
        });
    }
    let mut packs: Vec<(u32, Vec<BlobWork>)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(p, _)| *p);
    report.packs_fetched = packs.len() as u64;

    let transfer_start = Instant::now();
    let next = AtomicUsize::new(0);
    let packs_ref = &packs;
    // Remote storage: keep enough packs in flight to hide the latency.
    let fetchers = threads.max(repo.backend().concurrency()).min(packs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..fetchers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((pack, work)) = packs_ref.get(i) else { break };
                restore_pack(repo, index, *pack, work, &state);
            });
        }
    });
    report.timings.transfer = transfer_start.elapsed();
    report.timings.first_byte = state.first_byte.lock().unwrap().map(|t| t.duration_since(transfer_start));

    let meta_start = Instant::now();
    let as_root = fsmeta::is_root();
    // Files: final size, then metadata.
    for (fi, f) in plan.files.iter().enumerate() {
        let path = target.join(&f.rel);
        if let Some(reason) = state.failed[fi].get() {
            report.failures.push(Failure { path: shown(&f.rel), reason: reason.clone() });
            if !state.existed[fi] && !below_failed(&f.rel, &failed_dirs) {
                // Do not leave a half-written file that looks restored.
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let r = (|| -> std::io::Result<()> {
            if std::fs::symlink_metadata(&path)?.len() != f.size {
                open_for_write(&path)?.set_len(f.size)?;
            }
            finish_metadata(&path, &f.node, as_root, &mut report.warnings)
        })();
        match r {
            Ok(()) => {
                report.files += 1;
                report.bytes += f.size;
                if state.existed[fi] && !needed[fi].lock().unwrap().iter().any(|n| *n) {
                    report.files_unchanged += 1;
                }
            }
            Err(e) => report.failures.push(Failure { path: shown(&f.rel), reason: e.to_string() }),
        }
    }
    for (rel, first) in &plan.hardlinks {
        let path = target.join(rel);
        let src = target.join(&plan.files[*first].rel);
        let r = if below_failed(rel, &failed_dirs) {
            Err(std::io::Error::other("its directory could not be created"))
        } else if state.failed[*first].get().is_some() {
            Err(std::io::Error::other("the file it links to was not restored"))
        } else {
            clear_entry(&path).and_then(|_| std::fs::hard_link(&src, &path))
        };
        match r {
            Ok(()) => report.links += 1,
            Err(e) => report.failures.push(Failure { path: shown(rel), reason: format!("hard link: {e}") }),
        }
    }
    for (rel, node) in &plan.others {
        if below_failed(rel, &failed_dirs) {
            report.failures.push(Failure { path: shown(rel), reason: "its directory could not be created".into() });
            continue;
        }
        match create_other(&target.join(rel), node, as_root, &mut report.warnings) {
            Ok(true) => report.others += 1,
            Ok(false) => {}
            Err(e) => report.failures.push(Failure { path: shown(rel), reason: e.to_string() }),
        }
    }
    // Directories last, deepest first, so their mtimes stick.
    for (i, (rel, node)) in plan.dirs.iter().enumerate().rev() {
        if dir_ok[i] {
            if let Err(e) = finish_metadata(&target.join(rel), node, as_root, &mut report.warnings) {
                report.failures.push(Failure { path: shown(rel), reason: format!("metadata: {e}") });
            }
        }
    }
    report.timings.metadata = meta_start.elapsed();
    report.bytes_written = state.bytes_written.load(Ordering::Relaxed);
    report.bytes_fetched = state.bytes_fetched.load(Ordering::Relaxed);
    Ok(report)
}

fn finish_metadata(path: &Path, node: &Node, as_root: bool, warnings: &mut Vec<String>) -> std::io::Result<()> {
    if !node.xattrs.is_empty() {
        warnings
            .extend(fsmeta::write_xattrs(path, &node.xattrs)?.into_iter().map(|w| format!("{}: {w}", path.display())));
    }
    fsmeta::apply_metadata(path, node, as_root)
}

/// Creates a fresh file or inspects an existing one. Returns whether it
/// existed and which chunks still need writing.
fn prepare_file(
    repo: &Repository,
    path: &Path,
    f: &PlannedFile,
    buf: &mut Vec<u8>,
) -> std::io::Result<(bool, Vec<bool>)> {
    match std::fs::symlink_metadata(path) {
        // A file with other hard links may be shared with something outside
        // the target: never write into it, replace it.
        Ok(m) if m.file_type().is_file() && m.nlink() > 1 => {
            std::fs::remove_file(path)?;
            create_fresh(path, f)
        }
        Ok(m) if m.file_type().is_file() => {
            if m.mode() & 0o200 == 0 {
                // Left read-only by an earlier restore: its final mode is set
                // again after the contents.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode((m.mode() & 0o7777) | 0o200))?;
            }
            let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
            let len = m.len();
            let mut need = vec![true; f.chunks.len()];
            for (i, c) in f.chunks.iter().enumerate() {
                if c.offset + c.length as u64 > len {
                    break;
                }
                buf.resize(c.length as usize, 0);
                file.read_exact_at(buf, c.offset)?;
                need[i] = repo.key().blob_id(buf) != c.id;
            }
            if len > f.size {
                file.set_len(f.size)?;
            }
            Ok((true, need))
        }
        Ok(m) if m.file_type().is_dir() => Err(std::io::Error::other("a directory is in the way")),
        Ok(_) => {
            std::fs::remove_file(path)?;
            create_fresh(path, f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_fresh(path, f),
        Err(e) => Err(e),
    }
}

fn create_fresh(path: &Path, f: &PlannedFile) -> std::io::Result<(bool, Vec<bool>)> {
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)?;
    file.set_len(f.size)?;
    Ok((false, vec![true; f.chunks.len()]))
}

fn restore_pack(repo: &Repository, index: &Index, pack: u32, work: &[BlobWork], st: &State<'_>) {
    let key = pack_key(&index.pack(pack).id);
    let mut order: Vec<&BlobWork> = work.iter().collect();
    order.sort_by_key(|w| w.offset);
    let mut files: HashMap<u32, File> = HashMap::new();
    // One request for the pack when most of it is needed; otherwise one
    // per run of blobs that lie close together.
    let needed: u64 = order.iter().map(|w| w.length as u64).sum();
    let span = order.last().map(|w| w.offset as u64 + w.length as u64).unwrap_or(0)
        - order.first().map(|w| w.offset as u64).unwrap_or(0);
    let gap = if needed * 2 >= span { u64::MAX } else { COALESCE_GAP };
    let mut i = 0;
    while i < order.len() {
        let start = order[i].offset as u64;
        let mut end = start + order[i].length as u64;
        let mut j = i + 1;
        while j < order.len() && (order[j].offset as u64) <= end.saturating_add(gap) {
            end = end.max(order[j].offset as u64 + order[j].length as u64);
            j += 1;
        }
        let group = &order[i..j];
        i = j;
        let data = match repo.backend().get_range(&key, start, end - start) {
            Ok(d) => d,
            Err(e) => {
                for w in group {
                    for d in &w.dests {
                        st.fail(d.file as usize, format!("reading pack `{key}`: {e}"));
                    }
                }
                continue;
            }
        };
        st.bytes_fetched.fetch_add(data.len() as u64, Ordering::Relaxed);
        for w in group {
            let at = (w.offset as u64 - start) as usize;
            let sealed = &data[at..at + w.length as usize];
            let plain = match blob::decode(repo.key(), sealed, &w.id, w.raw_length as u64) {
                Ok(p) => p,
                Err(e) => {
                    for d in &w.dests {
                        st.fail(d.file as usize, format!("chunk {} in pack `{key}` is damaged: {e}", w.id.short()));
                    }
                    continue;
                }
            };
            for d in &w.dests {
                let fi = d.file as usize;
                if st.failed[fi].get().is_some() {
                    continue;
                }
                if files.len() > 64 && !files.contains_key(&d.file) {
                    files.clear();
                }
                let file = match files.entry(d.file) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match open_for_write(&st.target.join(&st.plan.files[fi].rel)) {
                            Ok(f) => v.insert(f),
                            Err(e) => {
                                st.fail(fi, format!("open for writing: {e}"));
                                continue;
                            }
                        }
                    }
                };
                let r = if st.existed[fi] {
                    file.write_all_at(&plain, d.offset)
                } else {
                    write_sparse(file, &plain, d.offset)
                };
                if let Err(e) = r {
                    st.fail(fi, format!("write at {}: {e}", d.offset));
                    continue;
                }
                st.bytes_written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                let mut fb = st.first_byte.lock().unwrap();
                if fb.is_none() {
                    *fb = Some(Instant::now());
                }
            }
        }
    }
}

/// Writes `data` at `offset` into a fresh (pre-sized, all-hole) file,
/// skipping 4 KiB blocks that are all zeros so that holes stay holes.
fn write_sparse(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    const BLOCK: usize = 4096;
    let mut pos = 0usize;
    let mut run_start: Option<usize> = None;
    while pos < data.len() {
        // Blocks are aligned to the file, not to the chunk.
        let block_end = ((offset as usize + pos) / BLOCK + 1) * BLOCK - offset as usize;
        let end = block_end.min(data.len());
        let zero = data[pos..end].iter().all(|b| *b == 0);
        match (zero, run_start) {
            (true, Some(s)) => {
                file.write_all_at(&data[s..pos], offset + s as u64)?;
                run_start = None;
            }
            (false, None) => run_start = Some(pos),
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&data[s..], offset + s as u64)?;
    }
    Ok(())
}

/// Creates a symlink, FIFO or device. Returns false when the entry was
/// skipped with a warning (devices when not root, sockets).
fn create_other(path: &Path, node: &Node, as_root: bool, warnings: &mut Vec<String>) -> std::io::Result<bool> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    match node.kind {
        NodeKind::Symlink => {
            let target = node.target.as_deref().unwrap_or_default();
            clear_entry(path)?;
            std::os::unix::fs::symlink(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(target), path)?;
            if as_root {
                std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?;
            }
            if !node.xattrs.is_empty() {
                let _ = fsmeta::write_xattrs(path, &node.xattrs);
            }
            fsmeta::set_mtime(path, node)?;
            Ok(true)
        }
        NodeKind::Fifo => {
            clear_entry(path)?;
            nix::unistd::mkfifo(path, Mode::from_bits_truncate(node.mode)).map_err(std::io::Error::from)?;
            finish_metadata(path, node, as_root, warnings)?;
            Ok(true)
        }
        NodeKind::Chardev | NodeKind::Blockdev => {
            if !as_root {
                warnings.push(format!("{}: device node not restored (needs root)", path.display()));
                return Ok(false);
            }
            clear_entry(path)?;
            let kind = if node.kind == NodeKind::Chardev { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            mknod(path, kind, Mode::from_bits_truncate(node.mode), node.rdev as libc::dev_t)
                .map_err(std::io::Error::from)?;
            finish_metadata(path, node, as_root, warnings)?;
            Ok(true)
        }
        NodeKind::Socket => {
            warnings.push(format!("{}: socket not restored (sockets are created by their programs)", path.display()));
            Ok(false)
        }
        NodeKind::File | NodeKind::Dir => unreachable!("files and directories are planned separately"),
    }
}
