//! `cairn mount`: the snapshots of a repository as a read-only FUSE file
//! system.
//!
//! ```text
//! /ids/<short id>/…                  every snapshot, by id (any unique prefix of 8+ digits also works)
//! /hosts/<host>/<time>/…             by host and time in UTC, e.g. /hosts/web1/2026-12-04T02:00:07/
//! /hosts/<host>/latest -> <time>     the host's newest snapshot
//! /latest -> ids/<short id>          the newest snapshot of the repository (as `restore latest`)
//! ```
//!
//! Inside a snapshot, entries are what restore would create: the names
//! [`crate::restore::plan::safe_name`] refuses, and repeated names, are
//! left out ([`crate::browse::Dir`]); modes, owners, times, symlink
//! targets, device numbers, hard links and extended attributes are the
//! recorded ones. Nothing is read at mount time. Trees are read when a
//! directory is opened or looked into, and file contents chunk by chunk
//! as they are read, through caches bounded by bytes.

mod attr;
mod catalog;
mod fs;
mod inodes;
mod reads;

use std::path::{Path, PathBuf};

use fuser::MountOption;

use crate::error::{Error, Result};
use crate::repo::Repository;

pub use fs::Options;

/// A mounted file system, serving nothing until [`Mounted::run`].
pub struct Mounted {
    session: fuser::Session<fs::CairnFs>,
    mountpoint: PathBuf,
}

fn mount_error(action: &'static str, mountpoint: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Mount { action, mountpoint: mountpoint.to_path_buf(), detail: detail.to_string() }
}

/// Mounts the repository's snapshots at `mountpoint`, an empty directory.
pub fn mount(repo: Repository, mountpoint: &Path, opts: Options) -> Result<Mounted> {
    let md = std::fs::metadata(mountpoint).map_err(|e| Error::io(mountpoint, e))?;
    if !md.is_dir() {
        return Err(Error::NotADirectory { path: mountpoint.to_path_buf() });
    }
    if std::fs::read_dir(mountpoint).map_err(|e| Error::io(mountpoint, e))?.next().is_some() {
        return Err(Error::NotEmpty { path: mountpoint.to_path_buf(), why: "mounting would hide what it holds" });
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(mount_error("cannot mount", mountpoint, "/dev/fuse does not exist"));
    }
    let mountpoint = mountpoint.canonicalize().map_err(|e| Error::io(mountpoint, e))?;
    let fs = fs::CairnFs::new(repo, opts);
    fs.warm_up();
    let options = [
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
    ];
    let session =
        fuser::Session::new(fs, &mountpoint, &options).map_err(|e| mount_error("cannot mount", &mountpoint, e))?;
    Ok(Mounted { session, mountpoint })
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Serves the kernel's requests until the file system is unmounted
    /// ([`unmount`], `fusermount3 -u`, `umount`).
    pub fn run(self) -> Result<()> {
        let Mounted { mut session, mountpoint } = self;
        let served = session.run();
        if served.is_err() {
            let _ = unmount(&mountpoint, true);
        }
        // The session's own drop would unmount by path once more: fuser
        // reads a closed connection as still mounted, so that fails at
        // best, and at worst unmounts what was mounted there since. The
        // process ends right after; its descriptors go with it.
        std::mem::forget(session);
        served.map_err(|e| mount_error("lost the FUSE connection of", &mountpoint, e))
    }
}

/// Unmounts the file system at `mountpoint`. A busy one (a process has a
/// file or directory open in it) fails, unless `lazy`: then it is detached
/// at once and goes when the last open file is closed.
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        let flags = if lazy { nix::mount::MntFlags::MNT_DETACH } else { nix::mount::MntFlags::empty() };
        return nix::mount::umount2(mountpoint, flags).map_err(|e| mount_error("cannot unmount", mountpoint, e));
    }
    // Others go through the set-uid helper of fuse3 (fuse2's as a fallback).
    let mut last = None;
    for helper in ["fusermount3", "fusermount"] {
        let mut c = std::process::Command::new(helper);
        c.arg("-u").arg("-q");
        if lazy {
            c.arg("-z");
        }
        c.arg("--").arg(mountpoint).env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
        match c.output() {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => return Err(mount_error("cannot unmount", mountpoint, String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => last = Some(e),
        }
    }
    Err(mount_error("cannot unmount", mountpoint, last.map(|e| e.to_string()).unwrap_or_default()))
}
