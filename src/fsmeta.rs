//! File metadata: reading it into tree nodes, and putting it back.
//!
//! Everything here works on the entry itself, never on what a symlink
//! points to: reading uses `lstat` and `lgetxattr`, and metadata is put
//! back through a descriptor of the entry (restore opens it relative to
//! its parent directory's handle), never by path.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::Metadata;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, Gid, Group, Uid, User};

use crate::repo::tree::{Node, NodeKind, Xattr};

/// Caches uid/gid → name look-ups, which hit NSS each time otherwise.
#[derive(Default)]
pub struct NameCache {
    users: Mutex<HashMap<u32, Option<Arc<str>>>>,
    groups: Mutex<HashMap<u32, Option<Arc<str>>>>,
}

impl NameCache {
    /// The user name of `uid`, shared between all nodes that have it.
    pub fn user(&self, uid: u32) -> Option<Arc<str>> {
        self.users
            .lock()
            .unwrap()
            .entry(uid)
            .or_insert_with(|| User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name.into()))
            .clone()
    }

    pub fn group(&self, gid: u32) -> Option<Arc<str>> {
        self.groups
            .lock()
            .unwrap()
            .entry(gid)
            .or_insert_with(|| Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name.into()))
            .clone()
    }
}

pub fn kind_of(md: &Metadata) -> NodeKind {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// The kind of an entry from the file-type bits of its `st_mode`.
pub fn kind_of_mode(mode: u32) -> NodeKind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFCHR => NodeKind::Chardev,
        libc::S_IFBLK => NodeKind::Blockdev,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => NodeKind::File,
    }
}

/// A node for `name` from what `fstatat(.., AT_SYMLINK_NOFOLLOW)` said
/// (the same fields as [`node_from_metadata`]).
#[allow(clippy::unnecessary_cast, reason = "stat field types differ between platforms")]
pub fn node_from_stat(name: &[u8], st: &nix::sys::stat::FileStat, names: &NameCache) -> Node {
    let kind = kind_of_mode(st.st_mode as u32);
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = st.st_mode as u32 & 0o7777;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    n.user = names.user(st.st_uid);
    n.group = names.group(st.st_gid);
    n.mtime = st.st_mtime as i64;
    n.mtime_nsec = st.st_mtime_nsec as u32;
    n.ctime = st.st_ctime as i64;
    n.ctime_nsec = st.st_ctime_nsec as u32;
    n.inode = st.st_ino as u64;
    n.device = st.st_dev as u64;
    n.links = if kind == NodeKind::Dir { 0 } else { st.st_nlink as u64 };
    if kind == NodeKind::File {
        n.size = st.st_size as u64;
    }
    if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
        n.rdev = st.st_rdev as u64;
    }
    n
}

/// A node for `name` from its `lstat` metadata (without content, subtree,
/// target or xattrs).
pub fn node_from_metadata(name: &[u8], md: &Metadata, names: &NameCache) -> Node {
    let kind = kind_of(md);
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.user = names.user(md.uid());
    n.group = names.group(md.gid());
    n.mtime = md.mtime();
    n.mtime_nsec = md.mtime_nsec() as u32;
    n.ctime = md.ctime();
    n.ctime_nsec = md.ctime_nsec() as u32;
    n.inode = md.ino();
    n.device = md.dev();
    n.links = if kind == NodeKind::Dir { 0 } else { md.nlink() };
    if kind == NodeKind::File {
        n.size = md.len();
    }
    if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
        n.rdev = md.rdev();
    }
    n
}

/// The extended attributes of `name` in the directory `dir` (not
/// following it when it is a symlink), as [`read_xattrs`] gives them. The
/// path goes through `/proc/self/fd/N`, which names the directory by its
/// handle: a directory above it renamed, or swapped for a symlink, while
/// the scan runs changes nothing (a path from the root would be looked up
/// again, component by component, as root).
pub fn read_xattrs_at(dir: BorrowedFd<'_>, name: &OsStr) -> Vec<Xattr> {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name);
    read_xattrs(&path)
}

/// The extended attributes of `path` (not following symlinks). Errors
/// (no support on this file system, no permission) give an empty list.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    sorted_xattrs(names, |name| xattr::get(path, name))
}

/// The extended attributes of the open file `file`, as [`read_xattrs`]
/// gives them: what a reader that opened the file reads, with no look-up
/// by name at all.
pub fn read_xattrs_of(file: &std::fs::File) -> Vec<Xattr> {
    use xattr::FileExt;
    let Ok(names) = file.list_xattr() else { return Vec::new() };
    sorted_xattrs(names, |name| file.get_xattr(name))
}

fn sorted_xattrs(
    names: impl Iterator<Item = std::ffi::OsString>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Vec<Xattr> {
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = get(&name).ok().flatten()?;
            Some(Xattr { name: name.as_bytes().to_vec(), value })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sets owner (as root), extended attributes, mode and mtime through an
/// open file or directory, in that order (chown clears set-id bits; times
/// go last). Nothing is looked up by name. Returns warnings for attributes
/// outside `user.` that could not be set (they need privileges).
pub fn apply_metadata_fd(fd: BorrowedFd<'_>, node: &Node, as_root: bool) -> std::io::Result<Vec<String>> {
    if as_root {
        fchown(fd.as_raw_fd(), Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)))?;
    }
    let warnings = set_xattrs(&node.xattrs, |name, value| {
        // SAFETY: a valid descriptor, and C strings and a buffer that outlive the call.
        unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) }
    })?;
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(node.mode))?;
    let mtime = TimeSpec::new(node.mtime, node.mtime_nsec as i64);
    futimens(fd.as_raw_fd(), &TimeSpec::UTIME_OMIT, &mtime)?;
    Ok(warnings)
}

/// The same for an `O_PATH` descriptor of a symlink, FIFO or device node
/// (opened without following it, and never opened for I/O: opening a
/// device may act on it). `fchown`, `fchmod` and `fsetxattr` refuse such
/// a descriptor, so the owner and times are set with `AT_EMPTY_PATH`, and
/// the mode and xattrs through `/proc/self/fd/N`, which names that very
/// inode whatever happens to its name meanwhile. A symlink's mode is never
/// set (it has none).
pub fn apply_metadata_opath(fd: BorrowedFd<'_>, node: &Node, as_root: bool) -> std::io::Result<Vec<String>> {
    let raw = fd.as_raw_fd();
    if as_root {
        let (uid, gid) = (Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)));
        nix::unistd::fchownat(Some(raw), "", uid, gid, AtFlags::AT_EMPTY_PATH)?;
    }
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{raw}")).expect("no NUL in a number");
    let warnings = set_xattrs(&node.xattrs, |name, value| {
        // SAFETY: C strings and a buffer that outlive the call.
        unsafe { libc::setxattr(proc_path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) }
    })?;
    if node.kind != NodeKind::Symlink {
        chmod_opath(fd, node.mode)?;
    }
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: node.mtime, tv_nsec: node.mtime_nsec as libc::c_long },
    ];
    // SAFETY: a valid descriptor, an empty C string and two timespecs.
    let r = unsafe { libc::utimensat(raw, c"".as_ptr(), times.as_ptr(), libc::AT_EMPTY_PATH) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(warnings)
}

/// Sets the mode of what an `O_PATH` descriptor (of anything but a
/// symlink) refers to, through `/proc/self/fd/N`.
pub fn chmod_opath(fd: BorrowedFd<'_>, mode: u32) -> std::io::Result<()> {
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number");
    // SAFETY: a C string that outlives the call.
    if unsafe { libc::chmod(proc_path.as_ptr(), mode as libc::mode_t) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("setting the mode through /proc/self/fd: {e}")));
    }
    Ok(())
}

/// Sets each xattr with `set` (which returns what the system call did).
/// A `user.` attribute that fails is an error; others need privileges and
/// become warnings.
fn set_xattrs(xattrs: &[Xattr], set: impl Fn(&CStr, &[u8]) -> libc::c_int) -> std::io::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for x in xattrs {
        let Ok(name) = CString::new(x.name.clone()) else {
            warnings.push(format!("xattr {}: the name holds a NUL byte", String::from_utf8_lossy(&x.name)));
            continue;
        };
        if set(&name, &x.value) != 0 {
            let e = std::io::Error::last_os_error();
            if x.name.starts_with(b"user.") {
                return Err(e);
            }
            warnings.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn who(x: &[Xattr]) -> Option<&[u8]> {
        x.iter().find(|x| x.name == b"user.who").map(|x| x.value.as_slice())
    }

    #[test]
    fn bug_xattrs_were_read_by_a_path_that_a_local_user_could_swap_under_the_scan() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
        xattr::set(d.join("f"), "user.who", b"scanned").unwrap();
        std::os::unix::fs::symlink("f", d.join("l")).unwrap();
        let handle = std::fs::File::open(&d).unwrap();
        // The directory is moved away and another put in its place.
        std::fs::rename(&d, t.path().join("moved")).unwrap();
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
        xattr::set(d.join("f"), "user.who", b"planted").unwrap();
        assert_eq!(who(&read_xattrs(&d.join("f"))), Some(&b"planted"[..]), "what a path reads");
        let at = |name: &str| read_xattrs_at(handle.as_fd(), OsStr::new(name));
        assert_eq!(who(&at("f")), Some(&b"scanned"[..]), "the handle's directory, wherever it went");
        assert_eq!(who(&at("l")), None, "a symlink's own, not its target's");
        assert!(at("missing").is_empty());
    }
}
