//! Writing one restored entry: creation, contents, metadata, all relative
//! to the handle of the directory it lies in ([`super::handles`]).
//!
//! Into a fresh target (one that did not exist or was empty) files are
//! created when their first chunk arrives: a file of one chunk is created,
//! written, given its metadata through the open descriptor and closed in
//! one go, which is most files of a source tree. Larger files are created
//! once at full size (so skipped zero blocks stay holes) and finished by
//! whichever worker writes their last chunk. Into an existing target each
//! file is first compared chunk by chunk with what is there, and only the
//! chunks that differ are written.
//!
//! A file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, and its device
//! and inode are recorded: whenever it is opened again by name, the
//! descriptor must still be that file, or the write fails. An existing
//! file is written into only if it has no other link (its one name is in
//! the target), checked on the open descriptor against what the name
//! showed before.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::fsmeta;
use crate::repo::{Node, NodeKind, Repository};

use super::handles::open_at;
use super::plan::PlannedFile;
use super::privileged;
use super::state::{Ident, State};

/// Flags for opening an existing entry by name: never through a symlink,
/// and never blocking on a FIFO or adopting a terminal put in its place.
fn by_name(access: OFlag) -> OFlag {
    access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
}

fn ident_of(file: &File) -> std::io::Result<Ident> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Creates `name` in `dir` as a new, private, empty file.
fn create_new(dir: RawFd, name: &OsStr) -> std::io::Result<File> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
    Ok(File::from(open_at(dir, name, flags, 0o600)?))
}

/// Opens `name` in `dir` again; it must still be the file `ident`.
fn reopen(dir: RawFd, name: &OsStr, access: OFlag, ident: Ident) -> std::io::Result<File> {
    let file = File::from(open_at(dir, name, by_name(access), 0)?);
    if ident_of(&file)? != ident {
        return Err(std::io::Error::other("it was replaced by another file while the restore ran"));
    }
    Ok(file)
}

/// Removes whatever non-directory entry `name` is in `dir` (a symlink is
/// removed as a link).
pub(super) fn clear_entry(dir: RawFd, name: &OsStr) -> std::io::Result<()> {
    match fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            Err(std::io::Error::other("a directory is in the way"))
        }
        Ok(_) => Ok(nix::unistd::unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)?),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The handle of the directory file `fi` lies in, and its name there.
fn place<'p>(st: &'p State<'_>, fi: usize) -> std::io::Result<(std::sync::Arc<OwnedFd>, &'p OsStr)> {
    let rel = &st.plan.files[fi].rel;
    let name = rel.file_name().unwrap_or(rel.as_os_str());
    Ok((st.dirs.dir(st.file_dir[fi])?, name))
}

fn recorded(st: &State<'_>, fi: usize) -> std::io::Result<Ident> {
    st.ident[fi].lock().unwrap().ok_or_else(|| std::io::Error::other("the file was never created"))
}

/// Writes one chunk into its place in file `fi`, creating the file when
/// this is its first chunk and finishing it when this is its last.
pub(super) fn write_chunk(st: &State<'_>, fi: usize, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let f = &st.plan.files[fi];
    let (dir, name) = place(st, fi)?;
    let dir = dir.as_raw_fd();
    if st.fresh && f.chunks.len() == 1 {
        let file = create_new(dir, name)?;
        let end = write_sparse(&file, data, offset)?;
        if end < f.size {
            file.set_len(f.size)?;
        }
        st.count_written(data.len());
        return finish(st, fi, &file);
    }
    let file = if st.fresh {
        let mut ident = st.ident[fi].lock().unwrap();
        match *ident {
            Some(id) => {
                drop(ident);
                reopen(dir, name, OFlag::O_WRONLY, id)?
            }
            // The first chunk: others wait until the file exists.
            None => {
                let file = create_new(dir, name)?;
                file.set_len(f.size)?;
                *ident = Some(ident_of(&file)?);
                file
            }
        }
    } else {
        reopen(dir, name, OFlag::O_WRONLY, recorded(st, fi)?)?
    };
    if st.existed[fi] {
        file.write_all_at(data, offset)?;
    } else {
        write_sparse(&file, data, offset)?;
    }
    st.count_written(data.len());
    if st.remaining[fi].fetch_sub(1, Ordering::AcqRel) == 1 {
        finish(st, fi, &file)?;
    }
    Ok(())
}

/// Sets a complete file's metadata through its descriptor.
pub(super) fn finish(st: &State<'_>, fi: usize, file: &File) -> std::io::Result<()> {
    let node = &st.plan.files[fi].node;
    let node = if st.strip { privileged::strip(node) } else { std::borrow::Cow::Borrowed(node) };
    if node.links > 1 {
        // Hard links (of this batch or a later one) link to this inode only.
        *st.ident[fi].lock().unwrap() = Some(ident_of(file)?);
    }
    let warnings = fsmeta::apply_metadata_fd(file.as_fd(), &node, st.as_root)?;
    if !warnings.is_empty() {
        let p = st.plan.files[fi].rel.display().to_string();
        st.warnings.lock().unwrap().extend(warnings.into_iter().map(|w| format!("{p}: {w}")));
    }
    st.finished[fi].store(true, Ordering::Release);
    Ok(())
}

/// Finishes a file that no chunk write finished: an empty file, or one
/// whose content was already in place.
pub(super) fn finish_unwritten(st: &State<'_>, fi: usize) -> std::io::Result<()> {
    let f = &st.plan.files[fi];
    let (dir, name) = place(st, fi)?;
    let dir = dir.as_raw_fd();
    let ident = *st.ident[fi].lock().unwrap();
    let file = match ident {
        None if st.fresh => {
            let file = create_new(dir, name)?;
            file.set_len(f.size)?;
            file
        }
        None => return Err(std::io::Error::other("the file was never created")),
        Some(id) => {
            let file = reopen(dir, name, OFlag::O_RDONLY, id)?;
            if file.metadata()?.len() != f.size {
                reopen(dir, name, OFlag::O_WRONLY, id)?.set_len(f.size)?;
            }
            file
        }
    };
    finish(st, fi, &file)
}

/// Creates a fresh file or inspects an existing one in `dir`. Returns
/// whether it existed, which chunks still need writing, and the file's
/// identity.
pub(super) fn prepare_file(
    repo: &Repository,
    dir: RawFd,
    name: &OsStr,
    f: &PlannedFile,
    buf: &mut Vec<u8>,
) -> std::io::Result<(bool, Vec<bool>, Ident)> {
    let seen = match fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return create_fresh(dir, name, f),
        Err(e) => return Err(e.into()),
    };
    let kind = SFlag::from_bits_truncate(seen.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFDIR {
        return Err(std::io::Error::other("a directory is in the way"));
    }
    // A file with other hard links may be shared with something outside
    // the target: never write into it, replace it. So is anything that is
    // not a regular file.
    if kind != SFlag::S_IFREG || seen.st_nlink != 1 {
        return replace(dir, name, f);
    }
    let file = match open_at(dir, name, by_name(OFlag::O_RDONLY), 0) {
        Ok(fd) => File::from(fd),
        // Not readable by this (unprivileged) user: start afresh.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return replace(dir, name, f),
        Err(e) => return Err(e),
    };
    let m = file.metadata()?;
    // The name may have been swapped between the look-up and the open.
    if !m.is_file() || m.nlink() != 1 || (m.dev(), m.ino()) != (seen.st_dev, seen.st_ino) {
        return replace(dir, name, f);
    }
    let ident = (m.dev(), m.ino());
    if m.mode() & 0o200 == 0 {
        // Left read-only by an earlier restore: its final mode is set
        // again after the contents.
        nix::sys::stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate((m.mode() & 0o7777) | 0o200))?;
    }
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
        reopen(dir, name, OFlag::O_WRONLY, ident)?.set_len(f.size)?;
    }
    Ok((true, need, ident))
}

fn replace(dir: RawFd, name: &OsStr, f: &PlannedFile) -> std::io::Result<(bool, Vec<bool>, Ident)> {
    nix::unistd::unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)?;
    create_fresh(dir, name, f)
}

fn create_fresh(dir: RawFd, name: &OsStr, f: &PlannedFile) -> std::io::Result<(bool, Vec<bool>, Ident)> {
    let file = create_new(dir, name)?;
    file.set_len(f.size)?;
    Ok((false, vec![true; f.chunks.len()], ident_of(&file)?))
}

/// Writes `data` at `offset` into a fresh (pre-sized, all-hole) file,
/// skipping 4 KiB blocks that are all zeros so that holes stay holes.
/// Returns the end of the last byte written.
fn write_sparse(file: &File, data: &[u8], offset: u64) -> std::io::Result<u64> {
    const BLOCK: usize = 4096;
    let mut pos = 0usize;
    let mut run_start: Option<usize> = None;
    let mut end_written = 0u64;
    while pos < data.len() {
        // Blocks are aligned to the file, not to the chunk.
        let block_end = ((offset as usize + pos) / BLOCK + 1) * BLOCK - offset as usize;
        let end = block_end.min(data.len());
        let zero = data[pos..end].iter().all(|b| *b == 0);
        match (zero, run_start) {
            (true, Some(s)) => {
                file.write_all_at(&data[s..pos], offset + s as u64)?;
                end_written = offset + pos as u64;
                run_start = None;
            }
            (false, None) => run_start = Some(pos),
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&data[s..], offset + s as u64)?;
        end_written = offset + data.len() as u64;
    }
    Ok(end_written)
}

/// Creates a symlink, FIFO or device `rel` in `dir` (the directory `rel`
/// lies in). Returns false when
/// the entry was skipped with a warning (devices when not root, sockets).
/// The caller has already left out what a root restore must not create
/// ([`privileged`]).
pub(super) fn create_other(
    dir: RawFd,
    rel: &Path,
    node: &Node,
    as_root: bool,
    warnings: &mut Vec<String>,
) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let name = rel.file_name().unwrap_or(rel.as_os_str());
    let shown = || rel.display().to_string();
    let kind = match node.kind {
        NodeKind::Symlink => {
            clear_entry(dir, name)?;
            let target = OsStr::from_bytes(node.target.as_deref().unwrap_or_default());
            nix::unistd::symlinkat(target, Some(dir), name)?;
            SFlag::S_IFLNK
        }
        NodeKind::Fifo => {
            clear_entry(dir, name)?;
            nix::sys::stat::mknodat(Some(dir), name, SFlag::S_IFIFO, Mode::from_bits_truncate(0o600), 0)?;
            SFlag::S_IFIFO
        }
        NodeKind::Chardev | NodeKind::Blockdev => {
            if !as_root {
                warnings.push(format!("{}: device node not restored (needs root)", shown()));
                return Ok(false);
            }
            clear_entry(dir, name)?;
            let kind = if node.kind == NodeKind::Chardev { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            // Private until its own mode is set.
            nix::sys::stat::mknodat(Some(dir), name, kind, Mode::from_bits_truncate(0o600), node.rdev as libc::dev_t)?;
            kind
        }
        NodeKind::Socket => {
            warnings.push(format!("{}: socket not restored (sockets are created by their programs)", shown()));
            return Ok(false);
        }
        NodeKind::File | NodeKind::Dir => unreachable!("files and directories are planned separately"),
    };
    // The entry just made, opened without following or opening it for
    // I/O; if its name now shows something else, nothing is changed.
    let fd = open_at(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0)?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != kind || st.st_nlink != 1 {
        return Err(std::io::Error::other("it was replaced by another entry while the restore ran"));
    }
    let w = fsmeta::apply_metadata_opath(fd.as_fd(), node, as_root)?;
    warnings.extend(w.into_iter().map(|w| format!("{}: {w}", shown())));
    Ok(true)
}
