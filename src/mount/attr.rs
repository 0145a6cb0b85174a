//! File attributes as restore would give them: mode, owner, times, sizes,
//! link counts and device numbers from the snapshot's nodes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType};

use crate::browse::FileLayout;
use crate::repo::{Index, Node, NodeKind};

/// The block size reported to readers: `cat` and `cp` read this much at once.
pub const BLKSIZE: u32 = 1 << 20;

pub fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Chardev => FileType::CharDevice,
        NodeKind::Blockdev => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// A time from seconds and nanoseconds since the epoch (before it too).
pub fn time(secs: i64, nsec: u32) -> SystemTime {
    let nsec = nsec.min(999_999_999);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

/// A device number as the kernel's 32-bit form (`new_encode_dev`): major
/// in bits 8–19, minor in bits 0–7 and 20–31.
pub fn rdev32(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The size restore would give a file: the sum of its chunks' lengths,
/// or the recorded size when a chunk is missing (reading it then fails).
pub fn file_size(node: &Node, index: &Index) -> u64 {
    FileLayout::new(node, index).map(|l| l.size()).unwrap_or(node.size)
}

/// A directory made up by the mount (`/`, `/ids`, a snapshot's root).
pub fn synthetic_dir(ino: u64, t: SystemTime, owner: (u32, u32)) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: FileType::Directory,
        perm: 0o555,
        nlink: 1,
        uid: owner.0,
        gid: owner.1,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// A symlink made up by the mount (`latest`).
pub fn synthetic_link(ino: u64, target_len: usize, t: SystemTime, owner: (u32, u32)) -> FileAttr {
    FileAttr { kind: FileType::Symlink, perm: 0o777, size: target_len as u64, ..synthetic_dir(ino, t, owner) }
}

/// The attributes of a snapshot entry. A directory has one link: its
/// number of subdirectories is not known until it is read, and 1 tells
/// `find` not to count on it.
pub fn of_node(ino: u64, n: &Node, index: &Index) -> FileAttr {
    let size = match n.kind {
        NodeKind::File => file_size(n, index),
        NodeKind::Symlink => n.target.as_ref().map_or(0, |t| t.len() as u64),
        _ => 0,
    };
    let mtime = time(n.mtime, n.mtime_nsec);
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: time(n.ctime, n.ctime_nsec),
        crtime: mtime,
        kind: file_type(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink: if n.kind == NodeKind::File { n.links.clamp(1, u32::MAX as u64) as u32 } else { 1 },
        uid: n.uid,
        gid: n.gid,
        rdev: if matches!(n.kind, NodeKind::Chardev | NodeKind::Blockdev) { rdev32(n.rdev) } else { 0 },
        blksize: BLKSIZE,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_and_times_convert() {
        let dev = libc::makedev(8, 1);
        assert_eq!(rdev32(dev), 0x801);
        let big = libc::makedev(259, 0x12345);
        let r = rdev32(big);
        assert_eq!((r >> 8) & 0xfff, 259);
        assert_eq!((r & 0xff) | ((r >> 12) & !0xff), 0x12345);
        assert_eq!(time(1, 5).duration_since(UNIX_EPOCH).unwrap(), Duration::new(1, 5));
        assert_eq!(UNIX_EPOCH.duration_since(time(-2, 500_000_000)).unwrap(), Duration::from_millis(1500));
    }
}
