//! Writing one restored file: creation, contents, metadata.
//!
//! Into a fresh target (one that did not exist or was empty) files are
//! created when their first chunk arrives: a file of one chunk is created,
//! written, given its metadata through the open descriptor and closed in
//! one go, which is most files of a source tree. Larger files are created
//! once at full size (so skipped zero blocks stay holes) and finished by
//! whichever worker writes their last chunk. Into an existing target each
//! file is first compared chunk by chunk with what is there, and only the
//! chunks that differ are written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::fsmeta;
use crate::repo::{Node, NodeKind, Repository};

use super::execute::State;
use super::plan::PlannedFile;

pub(super) fn open_for_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Removes whatever non-directory entry is at `path`.
pub(super) fn clear_entry(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Err(std::io::Error::other("a directory is in the way")),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes one chunk into its place in file `fi`, creating the file when
/// this is its first chunk and finishing it when this is its last.
pub(super) fn write_chunk(st: &State<'_>, fi: usize, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let f = &st.plan.files[fi];
    let path = st.target.join(&f.rel);
    if st.fresh && f.chunks.len() == 1 {
        let file = create_new(&path)?;
        let end = write_sparse(&file, data, offset)?;
        if end < f.size {
            file.set_len(f.size)?;
        }
        st.count_written(data.len());
        return finish(st, fi, &file);
    }
    let file = if st.fresh {
        let mut created = st.created[fi].lock().unwrap();
        if *created {
            open_for_write(&path)?
        } else {
            let file = create_new(&path)?;
            file.set_len(f.size)?;
            *created = true;
            file
        }
    } else {
        open_for_write(&path)?
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
    let warnings = fsmeta::apply_metadata_fd(file, node, st.as_root)?;
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
    let path = st.target.join(&f.rel);
    let created = *st.created[fi].lock().unwrap();
    let file = if st.fresh && !created {
        let file = create_new(&path)?;
        file.set_len(f.size)?;
        file
    } else {
        let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path)?;
        if file.metadata()?.len() != f.size {
            open_for_write(&path)?.set_len(f.size)?;
        }
        file
    };
    finish(st, fi, &file)
}

/// Creates a fresh file or inspects an existing one. Returns whether it
/// existed and which chunks still need writing.
pub(super) fn prepare_file(
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

/// Creates a symlink, FIFO or device. Returns false when the entry was
/// skipped with a warning (devices when not root, sockets).
pub(super) fn create_other(
    path: &Path,
    node: &Node,
    as_root: bool,
    warnings: &mut Vec<String>,
) -> std::io::Result<bool> {
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
            set_metadata(path, node, as_root, warnings)?;
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
            set_metadata(path, node, as_root, warnings)?;
            Ok(true)
        }
        NodeKind::Socket => {
            warnings.push(format!("{}: socket not restored (sockets are created by their programs)", path.display()));
            Ok(false)
        }
        NodeKind::File | NodeKind::Dir => unreachable!("files and directories are planned separately"),
    }
}

/// Sets metadata by path (directories, FIFOs and devices).
pub(super) fn set_metadata(path: &Path, node: &Node, as_root: bool, warnings: &mut Vec<String>) -> std::io::Result<()> {
    if !node.xattrs.is_empty() {
        warnings
            .extend(fsmeta::write_xattrs(path, &node.xattrs)?.into_iter().map(|w| format!("{}: {w}", path.display())));
    }
    fsmeta::apply_metadata(path, node, as_root)
}
