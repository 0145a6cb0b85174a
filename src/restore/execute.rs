//! Restore execution: directories, file contents by pack, metadata.
//!
//! Everything below the target is reached through directory handles
//! ([`super::handles`]): the target is opened once, each directory is
//! created (`mkdirat`) and opened (`O_DIRECTORY | O_NOFOLLOW`) relative to
//! its parent's handle, and every entry is created, opened, linked or
//! removed relative to its directory's handle. Contents are fetched pack
//! by pack: the blobs needed from one pack are sorted by offset and read
//! with as few range requests as possible (one for the pack when most of
//! it is needed), each blob is opened and checked against its id, then
//! written with `pwrite` to every place that needs it ([`super::files`]).
//! Metadata is set after contents through a descriptor of the entry
//! itself, directories last and deepest first so their times stick.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Error, Result};
use crate::fsmeta;
use crate::id::Id;
use crate::repo::{blob, pack_key, Index, NodeKind, Repository};

use super::files::{clear_entry, create_other, finish_unwritten, prepare_file, write_chunk, Ident};
use super::handles::{dir_flags, open_at, Handles};
use super::plan::Plan;
use super::{parallel, privileged};
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

/// What the workers share while writing files.
pub(super) struct State<'a> {
    pub plan: &'a Plan,
    /// The target's directories.
    pub dirs: &'a Handles<'a>,
    /// The target was new or empty: files are created as chunks arrive.
    pub fresh: bool,
    pub as_root: bool,
    /// Set-id bits and file capabilities are left out ([`privileged`]).
    pub strip: bool,
    /// Whether each file existed before (then zeros must be written).
    pub existed: Vec<bool>,
    /// Each file's identity once it exists (fresh multi-chunk files
    /// record it when their first chunk creates them; the others wait).
    pub ident: Vec<Mutex<Option<Ident>>>,
    /// Chunk writes still due per file; the last one finishes the file.
    pub remaining: Vec<AtomicU32>,
    pub finished: Vec<AtomicBool>,
    pub failed: Vec<OnceLock<String>>,
    pub warnings: Mutex<Vec<String>>,
    bytes_written: AtomicU64,
    bytes_fetched: AtomicU64,
    first_byte: OnceLock<Instant>,
}

impl State<'_> {
    fn fail(&self, file: usize, reason: String) {
        let _ = self.failed[file].set(reason);
    }

    pub fn count_written(&self, n: usize) {
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
        self.first_byte.get_or_init(Instant::now);
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Makes `name` in `parent` a real directory and opens it. In an existing
/// target, a non-directory in the way (a symlink included) is removed
/// first, as a link: nothing is ever looked up through it.
fn make_dir(parent: RawFd, name: &OsStr, fresh: bool) -> std::io::Result<OwnedFd> {
    if !fresh {
        match open_at(parent, name, dir_flags(), 0) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => match fstatat(Some(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => return Err(e),
                Ok(_) => nix::unistd::unlinkat(Some(parent), name, UnlinkatFlags::NoRemoveDir)?,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    // Private until its own mode is set, at the end.
    nix::sys::stat::mkdirat(Some(parent), name, Mode::from_bits_truncate(0o700))?;
    open_at(parent, name, dir_flags(), 0)
}

/// Whether a directory holds no entry.
fn is_empty(dir: &OwnedFd) -> std::io::Result<bool> {
    let mut d = nix::dir::Dir::openat(Some(dir.as_raw_fd()), ".", dir_flags(), Mode::empty())?;
    for e in d.iter() {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `rel` lies below one of the directories that failed.
fn below_failed(rel: &Path, failed: &HashSet<&Path>) -> bool {
    !failed.is_empty() && rel.ancestors().skip(1).any(|a| failed.contains(a))
}

pub fn execute(repo: &Repository, index: &Index, plan: &Plan, opts: &RestoreOptions) -> Result<RestoreReport> {
    let target = &opts.target;
    let threads = opts.threads.max(1);
    let mut report = RestoreReport::default();
    report.failures.extend(plan.refused.iter().map(|(p, r)| Failure { path: p.clone(), reason: r.clone() }));

    std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let root = Handles::open_root(target).map_err(|e| Error::io(target, e))?;
    let fresh = is_empty(&root).map_err(|e| Error::io(target, e))?;
    let dirs = Handles::new(root, plan.dirs.iter().map(|(rel, _)| rel.as_path()));
    let as_root = fsmeta::is_root();
    let strip = as_root && !opts.privileged;

    let mut dir_ok = vec![true; plan.dirs.len()];
    // Directories that could not be made real directories: nothing below
    // them is touched.
    let mut failed_dirs: HashSet<&Path> = HashSet::new();
    for (i, (rel, _)) in plan.dirs.iter().enumerate() {
        let r = if below_failed(rel, &failed_dirs) {
            Err(std::io::Error::other("a directory above it could not be created"))
        } else {
            let (parent, name) = dirs.locate(rel);
            dirs.dir(parent).and_then(|p| make_dir(p.as_raw_fd(), name, fresh)).map(|fd| dirs.insert(i as u32, fd))
        };
        if let Err(e) = r {
            dir_ok[i] = false;
            failed_dirs.insert(rel);
            report.failures.push(Failure { path: shown(rel), reason: format!("cannot create directory: {e}") });
        }
    }
    report.dirs = dir_ok.iter().filter(|x| **x).count() as u64;

    let n = plan.files.len();
    let failed: Vec<OnceLock<String>> = (0..n).map(|_| OnceLock::new()).collect();
    let needed: Vec<Mutex<Option<Vec<bool>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let existed: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let ident: Vec<Mutex<Option<Ident>>> = (0..n).map(|_| Mutex::new(None)).collect();
    for (i, f) in plan.files.iter().enumerate() {
        if below_failed(&f.rel, &failed_dirs) {
            let _ = failed[i].set("its directory could not be created".into());
        }
    }
    if !fresh {
        // Compare with what is already there, in parallel.
        parallel(threads, n, |i| {
            if failed[i].get().is_some() {
                return;
            }
            let f = &plan.files[i];
            let mut buf = Vec::new();
            let (d, name) = dirs.locate(&f.rel);
            match dirs.dir(d).and_then(|dir| prepare_file(repo, dir.as_raw_fd(), name, f, &mut buf)) {
                Ok((was_there, need, id)) => {
                    existed[i].store(was_there, Ordering::Relaxed);
                    *needed[i].lock().unwrap() = Some(need);
                    *ident[i].lock().unwrap() = Some(id);
                }
                Err(e) => {
                    let _ = failed[i].set(e.to_string());
                }
            }
        });
    }

    // Group the needed chunks by pack, and count the writes due per file.
    let mut by_blob: HashMap<Id, Vec<Dest>> = HashMap::new();
    let mut remaining = vec![0u32; n];
    for (fi, f) in plan.files.iter().enumerate() {
        if failed[fi].get().is_some() {
            continue;
        }
        let need = needed[fi].lock().unwrap();
        for (ci, c) in f.chunks.iter().enumerate() {
            if need.as_ref().is_none_or(|v| v[ci]) {
                by_blob.entry(c.id).or_default().push(Dest { file: fi as u32, offset: c.offset });
                remaining[fi] += 1;
            }
        }
    }
    let state = State {
        plan,
        dirs: &dirs,
        fresh,
        as_root,
        strip,
        existed: existed.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
        ident,
        remaining: remaining.iter().map(|r| AtomicU32::new(*r)).collect(),
        finished: (0..n).map(|_| AtomicBool::new(false)).collect(),
        failed,
        warnings: Mutex::new(Vec::new()),
        bytes_written: AtomicU64::new(0),
        bytes_fetched: AtomicU64::new(0),
        first_byte: OnceLock::new(),
    };
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
    // Remote storage: keep enough packs in flight to hide the latency.
    let fetchers = threads.max(repo.backend().concurrency());
    parallel(fetchers, packs.len(), |i| restore_pack(repo, index, packs[i].0, &packs[i].1, &state));
    report.timings.transfer = transfer_start.elapsed();
    report.timings.first_byte = state.first_byte.get().map(|t| t.duration_since(transfer_start));

    let meta_start = Instant::now();
    // Files no chunk write finished: empty ones, and ones already in place.
    parallel(threads, n, |fi| {
        if state.failed[fi].get().is_none() && !state.finished[fi].load(Ordering::Acquire) {
            if let Err(e) = finish_unwritten(&state, fi) {
                state.fail(fi, e.to_string());
            }
        }
    });
    for (fi, f) in plan.files.iter().enumerate() {
        if let Some(reason) = state.failed[fi].get() {
            report.failures.push(Failure { path: shown(&f.rel), reason: reason.clone() });
            if !state.existed[fi] && !below_failed(&f.rel, &failed_dirs) {
                // Do not leave a half-written file that looks restored.
                let (d, name) = dirs.locate(&f.rel);
                if let Ok(dir) = dirs.dir(d) {
                    let _ = nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir);
                }
            }
            continue;
        }
        report.files += 1;
        report.bytes += f.size;
        if state.existed[fi] && remaining[fi] == 0 {
            report.files_unchanged += 1;
        }
        if strip {
            report.withheld.extend(privileged::withheld(&f.node).map(|reason| Failure { path: shown(&f.rel), reason }));
        }
    }
    report.warnings.append(&mut state.warnings.lock().unwrap());
    for (rel, first) in &plan.hardlinks {
        let r = if below_failed(rel, &failed_dirs) {
            Err(std::io::Error::other("its directory could not be created"))
        } else if state.failed[*first].get().is_some() {
            Err(std::io::Error::other("the file it links to was not restored"))
        } else {
            hard_link(&dirs, &plan.files[*first].rel, rel)
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
        let withheld = if strip { privileged::withheld(node) } else { None };
        if matches!(node.kind, NodeKind::Chardev | NodeKind::Blockdev) && withheld.is_some() {
            report.withheld.extend(withheld.map(|reason| Failure { path: shown(rel), reason }));
            continue;
        }
        let node = if strip { privileged::strip(node) } else { std::borrow::Cow::Borrowed(node) };
        let (d, _) = dirs.locate(rel);
        match dirs.dir(d).and_then(|dir| create_other(dir.as_raw_fd(), rel, &node, as_root, &mut report.warnings)) {
            Ok(true) => {
                report.others += 1;
                report.withheld.extend(withheld.map(|reason| Failure { path: shown(rel), reason }));
            }
            Ok(false) => {}
            Err(e) => report.failures.push(Failure { path: shown(rel), reason: e.to_string() }),
        }
    }
    // Directories last, deepest first, so their mtimes stick; each through
    // its own handle.
    for (i, (rel, node)) in plan.dirs.iter().enumerate().rev() {
        if dir_ok[i] {
            let r = dirs.dir(i as u32).and_then(|fd| fsmeta::apply_metadata_fd(fd.as_fd(), node, as_root));
            match r {
                Ok(w) => report.warnings.extend(w.into_iter().map(|w| format!("{}: {w}", shown(rel)))),
                Err(e) => report.failures.push(Failure { path: shown(rel), reason: format!("metadata: {e}") }),
            }
        }
    }
    report.timings.metadata = meta_start.elapsed();
    report.bytes_written = state.bytes_written.load(Ordering::Relaxed);
    report.bytes_fetched = state.bytes_fetched.load(Ordering::Relaxed);
    Ok(report)
}

/// Links `rel` to the restored file `first`, both by name relative to
/// their directories' handles; a symlink at `first` would be linked as a
/// link, never followed.
fn hard_link(dirs: &Handles<'_>, first: &Path, rel: &Path) -> std::io::Result<()> {
    let (sd, sname) = dirs.locate(first);
    let (dd, dname) = dirs.locate(rel);
    let (from, to) = (dirs.dir(sd)?, dirs.dir(dd)?);
    clear_entry(to.as_raw_fd(), dname)?;
    nix::unistd::linkat(Some(from.as_raw_fd()), sname, Some(to.as_raw_fd()), dname, AtFlags::empty())?;
    Ok(())
}

fn restore_pack(repo: &Repository, index: &Index, pack: u32, work: &[BlobWork], st: &State<'_>) {
    let key = pack_key(&index.pack(pack).id);
    let mut order: Vec<&BlobWork> = work.iter().collect();
    order.sort_by_key(|w| w.offset);
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
                if let Err(e) = write_chunk(st, fi, d.offset, &plain) {
                    st.fail(fi, format!("write at {}: {e}", d.offset));
                }
            }
        }
    }
}
