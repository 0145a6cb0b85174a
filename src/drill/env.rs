//! The environment a drill ran in, for the report: host, OS, kernel, CPUs,
//! and the file system of the restore target.

use std::path::Path;

use super::report::Environment;

fn os_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim_matches('"').to_string())).filter(|v| !v.is_empty())
    };
    field("PRETTY_NAME=").or_else(|| field("NAME=")).unwrap_or_else(|| std::env::consts::OS.to_string())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The file system type of `path`, by name (`ext4`, `tmpfs`, …), or its
/// magic number in hex when the name is unknown.
pub fn filesystem(path: &Path) -> Option<String> {
    use nix::sys::statfs::*;
    let t = statfs(path).ok()?.filesystem_type();
    let known = [
        (EXT4_SUPER_MAGIC, "ext2/3/4"),
        (TMPFS_MAGIC, "tmpfs"),
        (XFS_SUPER_MAGIC, "xfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
        (OVERLAYFS_SUPER_MAGIC, "overlay"),
        (NFS_SUPER_MAGIC, "nfs"),
        (FUSE_SUPER_MAGIC, "fuse"),
    ];
    Some(match known.iter().find(|(m, _)| *m == t) {
        Some((_, name)) => name.to_string(),
        None => format!("0x{:x}", t.0),
    })
}

pub fn environment(target: &Path) -> Environment {
    Environment {
        host: crate::host::hostname(),
        os: os_name(),
        kernel: kernel(),
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        user: crate::host::username(),
        target: target.display().to_string(),
        filesystem: filesystem(target),
    }
}
