//! File metadata: reading it into tree nodes, and putting it back.
//!
//! Everything here works on the entry itself, never on what a symlink
//! points to (`lstat`, `lchown`, `utimensat(AT_SYMLINK_NOFOLLOW)`,
//! `lgetxattr`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User};

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

/// The extended attributes of `path` (not following symlinks). Errors
/// (no support on this file system, no permission) give an empty list.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = xattr::get(path, &name).ok().flatten()?;
            Some(Xattr { name: name.as_bytes().to_vec(), value })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Sets the extended attributes of `path`. Attributes outside the `user.`
/// namespace need privileges; failures on those are returned as warnings
/// rather than errors.
pub fn write_xattrs(path: &Path, xattrs: &[Xattr]) -> Result<Vec<String>, std::io::Error> {
    let mut warnings = Vec::new();
    for x in xattrs {
        let name = OsStr::from_bytes(&x.name);
        if let Err(e) = xattr::set(path, name, &x.value) {
            if x.name.starts_with(b"user.") {
                return Err(e);
            }
            warnings.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
        }
    }
    Ok(warnings)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sets owner (when running as root), mode (not on symlinks), then times.
pub fn apply_metadata(path: &Path, node: &Node, as_root: bool) -> std::io::Result<()> {
    if as_root {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?;
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))?;
    }
    set_mtime(path, node)
}

pub fn set_mtime(path: &Path, node: &Node) -> std::io::Result<()> {
    let mtime = TimeSpec::new(node.mtime, node.mtime_nsec as i64);
    let atime = TimeSpec::UTIME_OMIT;
    utimensat(None, path, &atime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(std::io::Error::from)
}

/// Sets owner (as root), extended attributes, mode and mtime through an
/// open file, in that order (chown clears set-id bits; times go last).
/// One open file instead of four path look-ups per file. Returns warnings
/// for attributes outside `user.` that could not be set.
pub fn apply_metadata_fd(file: &std::fs::File, node: &Node, as_root: bool) -> std::io::Result<Vec<String>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    use xattr::FileExt;
    if as_root {
        std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?;
    }
    let mut warnings = Vec::new();
    for x in &node.xattrs {
        if let Err(e) = file.set_xattr(OsStr::from_bytes(&x.name), &x.value) {
            if x.name.starts_with(b"user.") {
                return Err(e);
            }
            warnings.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(node.mode))?;
    let mtime = TimeSpec::new(node.mtime, node.mtime_nsec as i64);
    nix::sys::stat::futimens(file.as_raw_fd(), &TimeSpec::UTIME_OMIT, &mtime).map_err(std::io::Error::from)?;
    Ok(warnings)
}
