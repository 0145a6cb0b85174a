//! Restore execution of one batch: directories, file contents by pack,
//! metadata.
//!
//! Everything below the target is reached through directory handles
//! ([`super::handles`]): the target is opened once, each directory is
//! created (`mkdirat`) and opened (`O_DIRECTORY | O_NOFOLLOW`) relative to
//! its parent's handle, and every entry is created, opened, linked or
//! removed relative to its directory's handle; a directory an earlier
//! batch made is looked up again the same way. Contents are fetched pack
//! by pack and written with `pwrite` to every place that needs them, in
//! several directories at once ([`super::transfer`], [`super::files`]).
//! Metadata is set after contents through a descriptor of the entry
//! itself, and a directory's after all its entries, children first, in
//! the batch that plans its last entry, so its times stick.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Error, Result};
use crate::fsmeta;
use crate::id::Id;
use crate::repo::{Index, NodeKind, Repository};

use super::carry::Carry;
use super::files::{clear_entry, create_other, finish_unwritten, prepare_file};
use super::handles::{dir_flags, open_at, Handles};
use super::plan::{Ident, LinkTo, Made, Plan, PlannedDir, Written};
use super::state::State;
use super::transfer::{self, BlobWork, Dest};
use super::{parallel, privileged};
use super::{Failure, RestoreOptions, RestoreReport};

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

/// The target of a restore, opened once for all its batches.
pub(super) struct Target {
    path: PathBuf,
    root: OwnedFd,
    /// It was missing or empty when the restore began: files are created
    /// as their chunks arrive, never compared.
    pub(super) fresh: bool,
    as_root: bool,
    /// Set-id bits and file capabilities are left out ([`privileged`]).
    strip: bool,
}

impl Target {
    /// Creates `path` when it is missing, and opens it.
    pub fn open(path: &Path, privileged: bool) -> Result<Target> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let root = Handles::open_root(path).map_err(|e| Error::io(path, e))?;
        let fresh = is_empty(&root).map_err(|e| Error::io(path, e))?;
        let as_root = fsmeta::is_root();
        Ok(Target { path: path.to_path_buf(), root, fresh, as_root, strip: as_root && !privileged })
    }
}

/// Restores a whole plan (one batch) into `opts.target`.
pub fn execute(repo: &Repository, index: &Index, plan: &Plan, opts: &RestoreOptions) -> Result<RestoreReport> {
    let target = Target::open(&opts.target, opts.privileged)?;
    let mut report = execute_batch(repo, index, &target, plan, opts.threads, &mut Carry::none())?.0;
    report.batches = 1;
    report.largest_batch = plan.items() as u64;
    Ok(report)
}

/// Runs of `files` (in order) that lie in one directory, at most `most`
/// long: tasks that let workers create files in different directories.
fn by_directory(files: &[usize], file_dir: &[u32], most: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (k, &fi) in files.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if r.len() < most && file_dir[files[r.start]] == file_dir[fi] => r.end = k + 1,
            _ => runs.push(k..k + 1),
        }
    }
    runs
}

/// Restores one batch into `target`; returns its report, and what it made
/// for the batches after it. The packs it reads whole for later batches
/// are held in `carry`, and what earlier batches held is taken from there.
pub(super) fn execute_batch(
    repo: &Repository,
    index: &Index,
    target: &Target,
    plan: &Plan,
    threads: usize,
    carry: &mut Carry,
) -> Result<(RestoreReport, Written)> {
    let threads = threads.max(1);
    let (fresh, as_root, strip) = (target.fresh, target.as_root, target.strip);
    let mut report = RestoreReport::default();
    report.failures.extend(plan.refused.iter().map(|(p, r)| Failure { path: p.clone(), reason: r.clone() }));

    let root = target.root.try_clone().map_err(|e| Error::io(&target.path, e))?;
    let dirs = Handles::new(root, plan.dirs.iter().map(|d| d.rel.as_path()));

    let mut dir_ok = vec![true; plan.dirs.len()];
    // Directories that could not be made real directories: nothing below
    // them is touched.
    let mut failed_dirs: HashSet<&Path> = HashSet::new();
    for (i, d) in plan.dirs.iter().enumerate() {
        let rel = d.rel.as_path();
        let failure = match d.made {
            Made::Earlier => continue,
            // Named by the batch that could not make it.
            Made::Failed => None,
            Made::Here if below_failed(rel, &failed_dirs) => {
                Some(std::io::Error::other("a directory above it could not be created"))
            }
            Made::Here => {
                let (parent, name) = dirs.locate(rel);
                match dirs.dir(parent).and_then(|p| make_dir(p.as_raw_fd(), name, fresh)) {
                    Ok(fd) => {
                        dirs.insert(i as u32, fd);
                        continue;
                    }
                    Err(e) => Some(e),
                }
            }
        };
        dir_ok[i] = false;
        failed_dirs.insert(rel);
        if let Some(e) = failure {
            report.failures.push(Failure { path: shown(rel), reason: format!("cannot create directory: {e}") });
        }
    }
    report.dirs = plan.dirs.iter().zip(&dir_ok).filter(|(d, ok)| d.made == Made::Here && **ok).count() as u64;

    let n = plan.files.len();
    let file_dir: Vec<u32> = plan.files.iter().map(|f| dirs.locate(&f.rel).0).collect();
    let failed: Vec<OnceLock<String>> = (0..n).map(|_| OnceLock::new()).collect();
    let needed: Vec<Mutex<Option<Vec<bool>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let existed: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let ident: Vec<Mutex<Option<super::state::Ident>>> = (0..n).map(|_| Mutex::new(None)).collect();
    for (i, f) in plan.files.iter().enumerate() {
        if below_failed(&f.rel, &failed_dirs) {
            let _ = failed[i].set("its directory could not be created".into());
        }
    }
    let all: Vec<usize> = (0..n).collect();
    if !fresh {
        // Compare with what is already there, in parallel.
        let runs = by_directory(&all, &file_dir, 64);
        parallel(threads, runs.len(), |r| {
            let mut buf = Vec::new();
            for i in runs[r].clone() {
                if failed[i].get().is_some() {
                    continue;
                }
                let f = &plan.files[i];
                let name = f.rel.file_name().unwrap_or(f.rel.as_os_str());
                match dirs.dir(file_dir[i]).and_then(|dir| prepare_file(repo, dir.as_raw_fd(), name, f, &mut buf)) {
                    Ok((was_there, need, id)) => {
                        existed[i].store(was_there, Ordering::Relaxed);
                        *needed[i].lock().unwrap() = Some(need);
                        *ident[i].lock().unwrap() = Some(id);
                    }
                    Err(e) => {
                        let _ = failed[i].set(e.to_string());
                    }
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
    drop(needed);
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
    let mut ranges = carry.ranges(by_pack);
    let mut read = ranges.iter().filter(|r| r.is_read()).map(|r| r.pack()).collect::<Vec<_>>();
    read.dedup();
    report.packs_fetched = read.len() as u64;
    let state = State {
        plan,
        dirs: &dirs,
        file_dir,
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

    let transfer_start = Instant::now();
    // Remote storage: keep enough ranges in flight to hide the latency.
    let fetchers = threads.max(repo.backend().concurrency());
    transfer::transfer(repo, index, &ranges, &state, fetchers, carry.ahead());
    carry.keep(&mut ranges);
    drop(ranges);
    report.timings.transfer = transfer_start.elapsed();
    report.timings.first_byte = state.first_byte.get().map(|t| t.duration_since(transfer_start));

    let meta_start = Instant::now();
    // Files no chunk write finished: empty ones, and ones already in place;
    // directory by directory, several at once.
    let unwritten: Vec<usize> = all
        .into_iter()
        .filter(|&fi| state.failed[fi].get().is_none() && !state.finished[fi].load(Ordering::Acquire))
        .collect();
    let runs = by_directory(&unwritten, &state.file_dir, 64);
    parallel(threads, runs.len(), |r| {
        for &fi in &unwritten[runs[r].clone()] {
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
                let name = f.rel.file_name().unwrap_or(f.rel.as_os_str());
                if let Ok(dir) = dirs.dir(state.file_dir[fi]) {
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
    // Links whose file is no longer the inode restored, restored from
    // their own content instead.
    let mut own_content = Vec::new();
    for link in &plan.hardlinks {
        let rel = &link.rel;
        let first = plan.link_first(link);
        let ident = match &link.to {
            LinkTo::File(i) if state.failed[*i].get().is_none() => *state.ident[*i].lock().unwrap(),
            LinkTo::File(_) => None,
            LinkTo::Earlier { ident, .. } => *ident,
        };
        let r = if below_failed(rel, &failed_dirs) {
            Err(LinkError::Io(std::io::Error::other("its directory could not be created")))
        } else if let Some(ident) = ident {
            hard_link(&dirs, first, ident, rel)
        } else {
            Err(LinkError::Io(std::io::Error::other("the file it links to was not restored")))
        };
        match r {
            Ok(()) => report.links += 1,
            Err(LinkError::Io(e)) => {
                report.failures.push(Failure { path: shown(rel), reason: format!("hard link: {e}") })
            }
            Err(LinkError::Replaced(why)) => {
                let reason = format!(
                    "hard link to /{} not made: {why} since it was restored; restored from its own content",
                    first.display()
                );
                report.failures.push(Failure { path: shown(rel), reason });
                own_content.push(plan.link_as_file(link));
            }
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
    // Directories whose entries are all written, children first, so their
    // mtimes stick; each through its own handle.
    for &i in &plan.finished {
        if !dir_ok[i] {
            continue;
        }
        let d = &plan.dirs[i];
        let r = dirs.dir(i as u32).and_then(|fd| fsmeta::apply_metadata_fd(fd.as_fd(), &d.node, as_root));
        match r {
            Ok(w) => report.warnings.extend(w.into_iter().map(|w| format!("{}: {w}", shown(&d.rel)))),
            Err(e) => report.failures.push(Failure { path: shown(&d.rel), reason: format!("metadata: {e}") }),
        }
    }
    report.timings.metadata = meta_start.elapsed();
    report.bytes_written = state.bytes_written.load(Ordering::Relaxed);
    report.bytes_fetched = state.bytes_fetched.load(Ordering::Relaxed);
    let files = state.failed.iter().zip(&state.ident).map(|(f, id)| f.get().map_or(*id.lock().unwrap(), |_| None));
    let written = Written { dirs_ok: dir_ok, files: files.collect() };
    drop(state);
    if !own_content.is_empty() {
        // Into the directories this batch made or reached, none finished
        // yet (a link's directory is finished after its last entry).
        let dirs = plan.dirs.iter().zip(&written.dirs_ok);
        let own = Plan {
            dirs: dirs
                .map(|(d, ok)| PlannedDir { made: if *ok { Made::Earlier } else { Made::Failed }, ..d.clone() })
                .collect(),
            total_bytes: own_content.iter().map(|f| f.size).sum(),
            files: own_content,
            ..Plan::default()
        };
        let (r, _) = execute_batch(repo, index, target, &own, threads, carry)?;
        report.add(r);
    }
    Ok((report, written))
}

/// Why a hard link was not made.
#[derive(Debug)]
enum LinkError {
    /// The name of the file it links to holds another inode than the one
    /// restored (someone who may write to that directory replaced it).
    Replaced(&'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> LinkError {
        LinkError::Io(e)
    }
}

impl From<Errno> for LinkError {
    fn from(e: Errno) -> LinkError {
        LinkError::Io(e.into())
    }
}

/// Links `rel` to the restored file `first`, which must still be the
/// inode `ident` that restore created: `first` is opened through its
/// directory's handle (`O_PATH | O_NOFOLLOW`, so a symlink is never
/// followed), checked on that descriptor, and the link is made from the
/// descriptor, so the check and the link are about the same inode. The
/// directory of `first` may be one an earlier batch finished and gave to
/// its owner, who may have replaced the name since.
fn hard_link(dirs: &Handles<'_>, first: &Path, ident: Ident, rel: &Path) -> std::result::Result<(), LinkError> {
    let (from, sname) = dirs.parent_of(first)?;
    let (dd, dname) = dirs.locate(rel);
    let to = dirs.dir(dd)?;
    let source = match open_at(from.as_raw_fd(), sname, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            clear_entry(to.as_raw_fd(), dname)?;
            return Err(LinkError::Replaced("it was removed"));
        }
        Err(e) => return Err(e.into()),
    };
    let st = nix::sys::stat::fstat(source.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG || (st.st_dev, st.st_ino) != ident {
        clear_entry(to.as_raw_fd(), dname)?;
        return Err(LinkError::Replaced("its name holds another file"));
    }
    clear_entry(to.as_raw_fd(), dname)?;
    link_descriptor(&source, to.as_raw_fd(), dname)?;
    Ok(())
}

/// Makes `name` in `dir` a hard link of the inode `source` (an `O_PATH`
/// descriptor) is: with `AT_EMPTY_PATH` where the process may
/// (`CAP_DAC_READ_SEARCH`, which root has), else through
/// `/proc/self/fd` with `AT_SYMLINK_FOLLOW`, which names the descriptor's
/// inode and nothing else.
fn link_descriptor(source: &OwnedFd, dir: RawFd, name: &OsStr) -> std::io::Result<()> {
    match nix::unistd::linkat(
        Some(source.as_raw_fd()),
        Path::new(""),
        Some(dir),
        Path::new(name),
        AtFlags::AT_EMPTY_PATH,
    ) {
        Err(Errno::ENOENT | Errno::EPERM | Errno::EACCES) => {}
        r => return Ok(r?),
    }
    let proc = format!("/proc/self/fd/{}", source.as_raw_fd());
    nix::unistd::linkat(None, Path::new(&proc), Some(dir), Path::new(name), AtFlags::AT_SYMLINK_FOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn ident(p: &Path) -> Ident {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn bug_a_hard_link_is_made_to_the_inode_restored_and_never_to_another_at_its_name() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("first"), b"content").unwrap();
        let restored = ident(&p("first"));
        for fallback in [false, true] {
            let h = Handles::new(Handles::open_root(d.path()).unwrap(), []);
            let name = if fallback { "via-proc" } else { "link" };
            if fallback {
                // What a process without CAP_DAC_READ_SEARCH does.
                let source = open_at(h.root().as_raw_fd(), OsStr::new("first"), OFlag::O_PATH, 0).unwrap();
                let proc = format!("/proc/self/fd/{}", source.as_raw_fd());
                nix::unistd::linkat(
                    None,
                    Path::new(&proc),
                    Some(h.root().as_raw_fd()),
                    Path::new(name),
                    AtFlags::AT_SYMLINK_FOLLOW,
                )
                .unwrap();
            } else {
                hard_link(&h, Path::new("first"), restored, Path::new(name)).unwrap();
            }
            assert_eq!(ident(&p(name)), restored);
        }
        let h = Handles::new(Handles::open_root(d.path()).unwrap(), []);
        // The same content at the name, but another inode.
        std::fs::rename(p("first"), p("restored")).unwrap();
        std::fs::write(p("first"), b"content").unwrap();
        std::fs::write(p("second"), b"was here").unwrap();
        let e = hard_link(&h, Path::new("first"), restored, Path::new("second")).unwrap_err();
        assert!(matches!(e, LinkError::Replaced("its name holds another file")), "{e:?}");
        assert!(!p("second").exists(), "what was at the link's name is removed, for its own content");
        // A symlink to the restored inode is not followed.
        std::fs::remove_file(p("first")).unwrap();
        std::os::unix::fs::symlink(p("restored"), p("first")).unwrap();
        let e = hard_link(&h, Path::new("first"), restored, Path::new("second")).unwrap_err();
        assert!(matches!(e, LinkError::Replaced(_)), "{e:?}");
        // Gone.
        std::fs::remove_file(p("first")).unwrap();
        let e = hard_link(&h, Path::new("first"), restored, Path::new("second")).unwrap_err();
        assert!(matches!(e, LinkError::Replaced("it was removed")), "{e:?}");
        assert!(!p("second").exists());
    }
}
