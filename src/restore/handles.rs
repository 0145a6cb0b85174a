//! Directories beneath a restore target, reached through open handles.
//!
//! Nothing below the target is ever named from `/` (invariant 4). The
//! target is opened once, and every directory below it is reached from
//! that descriptor, or from an open ancestor: with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it
//! (probed once per target; `ENOSYS` means no), else with one
//! `openat(O_DIRECTORY | O_NOFOLLOW)` per component. A symlink met on the
//! way fails the look-up and is never followed, so a directory swapped for
//! a symlink while a restore runs leads nowhere. Entries are then created,
//! opened, linked and removed by name relative to their parent's handle,
//! which resolves exactly one component.
//!
//! A tree may hold more directories than a process may keep open, so the
//! handles live in a bounded cache: when it is full, the least recently
//! used half is closed, and a directory needed again is looked up again
//! (from its nearest open ancestor). A restore in batches lists only the
//! directories of one batch; an entry in a directory the batch does not
//! list (the file a hard link links to, restored by an earlier batch) is
//! reached with [`Handles::parent_of`], which looks its directory up from
//! the target, the same way.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// The parent of an entry directly in the target.
pub(crate) const ROOT: u32 = u32::MAX;
/// The parent of an entry whose directory is not listed: [`Handles::dir`]
/// refuses it (see [`Handles::parent_of`]).
pub(crate) const UNLISTED: u32 = u32::MAX - 1;

/// How every directory handle is opened.
pub(crate) fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// `openat(dir, name, flags)` for one name: with `O_NOFOLLOW` it never
/// follows a symlink, and a name never holds `/` (the plan refused those).
pub(crate) fn open_at(dir: RawFd, name: &OsStr, flags: OFlag, mode: u32) -> std::io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir), name, flags | OFlag::O_CLOEXEC, Mode::from_bits_truncate(mode))
        .map_err(refused_symlink)?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ELOOP` from a look-up that does not follow symlinks means one was in
/// the way, and so does `ENOTDIR` when a directory was asked for: say so,
/// rather than "too many levels of symbolic links".
pub(crate) fn refused_symlink(e: Errno) -> std::io::Error {
    match e {
        Errno::ELOOP => std::io::Error::other("a symbolic link is in the way (never followed)"),
        Errno::ENOTDIR => {
            std::io::Error::other("not a directory: a symbolic link or a file is in the way (never followed)")
        }
        Errno::EXDEV => std::io::Error::other("the path leaves the target (refused)"),
        e => e.into(),
    }
}

/// The open-file limit, for sizing the cache.
fn open_file_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    }
}

/// Opened handles, with the tick of their last use.
struct Cache {
    slots: Vec<Option<(Arc<OwnedFd>, u64)>>,
    open: usize,
    cap: usize,
    tick: u64,
}

impl Cache {
    fn get(&mut self, d: u32) -> Option<Arc<OwnedFd>> {
        self.tick += 1;
        let tick = self.tick;
        self.slots[d as usize].as_mut().map(|(fd, used)| {
            *used = tick;
            fd.clone()
        })
    }

    /// Keeps `fd` for `d`; returns the handles closed to make room (to be
    /// dropped outside the lock).
    fn put(&mut self, d: u32, fd: Arc<OwnedFd>) -> Vec<Arc<OwnedFd>> {
        let mut closed = Vec::new();
        if self.open >= self.cap {
            let mut ticks: Vec<u64> = self.slots.iter().flatten().map(|(_, t)| *t).collect();
            let mid = ticks.len() / 2;
            let oldest_kept = *ticks.select_nth_unstable(mid).1;
            for s in &mut self.slots {
                if s.as_ref().is_some_and(|(_, t)| *t < oldest_kept) {
                    closed.extend(s.take().map(|(fd, _)| fd));
                }
            }
            self.open -= closed.len();
        }
        self.tick += 1;
        if self.slots[d as usize].replace((fd, self.tick)).is_none() {
            self.open += 1;
        }
        closed
    }
}

/// The target's handle and the directories below it (each a relative
/// path whose parent comes earlier in the list).
pub(crate) struct Handles<'a> {
    root: Arc<OwnedFd>,
    dirs: Vec<&'a Path>,
    parent: Vec<u32>,
    index: HashMap<&'a [u8], u32>,
    cache: Mutex<Cache>,
    openat2: bool,
}

impl<'a> Handles<'a> {
    /// Handles below `root` (an open directory) for `dirs`, relative paths
    /// listed parents first.
    pub fn new(root: OwnedFd, dirs: impl IntoIterator<Item = &'a Path>) -> Handles<'a> {
        let dirs: Vec<&Path> = dirs.into_iter().collect();
        let mut index = HashMap::with_capacity(dirs.len());
        let mut parent = Vec::with_capacity(dirs.len());
        for (i, d) in dirs.iter().enumerate() {
            parent.push(d.parent().and_then(|p| index.get(p.as_os_str().as_bytes()).copied()).unwrap_or(ROOT));
            index.insert(d.as_os_str().as_bytes(), i as u32);
        }
        let cap = (open_file_limit() / 4).clamp(64, 4096) as usize;
        let openat2 = probe_openat2(root.as_raw_fd());
        Handles {
            root: Arc::new(root),
            parent,
            index,
            cache: Mutex::new(Cache { slots: vec![None; dirs.len()], open: 0, cap, tick: 0 }),
            dirs,
            openat2,
        }
    }

    /// Opens the directory `target` (following symlinks in the path the
    /// caller gave: that is the caller's choice) as the root.
    pub fn open_root(target: &Path) -> std::io::Result<OwnedFd> {
        let fd = nix::fcntl::open(target, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        // SAFETY: open returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// The directory a relative path lies in (an index into the
    /// directories, [`ROOT`], or [`UNLISTED`]) and its last component.
    pub fn locate<'p>(&self, rel: &'p Path) -> (u32, &'p OsStr) {
        let parent = rel.parent().map(|p| p.as_os_str().as_bytes()).unwrap_or_default();
        let d = if parent.is_empty() { ROOT } else { self.index.get(parent).copied().unwrap_or(UNLISTED) };
        (d, rel.file_name().unwrap_or(rel.as_os_str()))
    }

    /// A handle of the directory `rel` lies in, and its last component; a
    /// directory not listed is looked up from the target (not kept).
    pub fn parent_of<'p>(&self, rel: &'p Path) -> std::io::Result<(Arc<OwnedFd>, &'p OsStr)> {
        match self.locate(rel) {
            (UNLISTED, name) => {
                let parent = rel.parent().unwrap_or(Path::new(""));
                Ok((Arc::new(self.resolve(self.root.as_raw_fd(), parent)?), name))
            }
            (d, name) => Ok((self.dir(d)?, name)),
        }
    }

    /// Keeps a handle the caller opened for directory `d` (say, right after
    /// creating it) and returns it shared.
    pub fn insert(&self, d: u32, fd: OwnedFd) -> Arc<OwnedFd> {
        let fd = Arc::new(fd);
        let closed = self.cache.lock().unwrap().put(d, fd.clone());
        drop(closed);
        fd
    }

    /// A handle of directory `d` ([`ROOT`]: the target), looked up from
    /// its nearest open ancestor without following any symlink.
    pub fn dir(&self, d: u32) -> std::io::Result<Arc<OwnedFd>> {
        if d == ROOT {
            return Ok(self.root.clone());
        }
        if d == UNLISTED {
            return Err(std::io::Error::other("its directory is not among those this restore reaches"));
        }
        let (base, from) = {
            let mut cache = self.cache.lock().unwrap();
            if let Some(fd) = cache.get(d) {
                return Ok(fd);
            }
            let mut a = self.parent[d as usize];
            loop {
                if a == ROOT {
                    break (self.root.clone(), ROOT);
                }
                if let Some(fd) = cache.get(a) {
                    break (fd, a);
                }
                a = self.parent[a as usize];
            }
        };
        let path = self.dirs[d as usize];
        let rest = if from == ROOT { path } else { path.strip_prefix(self.dirs[from as usize]).unwrap_or(path) };
        let fd = self.resolve(base.as_raw_fd(), rest)?;
        Ok(self.insert(d, fd))
    }

    /// Opens the regular file `rel` for reading, through its directory's
    /// handle. Anything else at that name (a symlink, a FIFO, a device) is
    /// refused before it is opened.
    pub fn open_file(&self, rel: &Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::MetadataExt;
        let (dir, name) = self.parent_of(rel)?;
        let seen = nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let not_regular = || std::io::Error::other("not a regular file");
        if nix::sys::stat::SFlag::from_bits_truncate(seen.st_mode) & nix::sys::stat::SFlag::S_IFMT
            != nix::sys::stat::SFlag::S_IFREG
        {
            return Err(not_regular());
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let file = std::fs::File::from(open_at(dir.as_raw_fd(), name, flags, 0)?);
        let m = file.metadata()?;
        if !m.is_file() || (m.dev(), m.ino()) != (seen.st_dev, seen.st_ino) {
            return Err(not_regular());
        }
        Ok(file)
    }

    /// What `lstat` says about `rel`, asked through its directory's handle.
    pub fn lstat(&self, rel: &Path) -> std::io::Result<std::fs::Metadata> {
        let (dir, name) = self.parent_of(rel)?;
        std::fs::File::from(open_at(dir.as_raw_fd(), name, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0)?).metadata()
    }

    /// The target of the symlink `rel`, read through its directory's handle.
    pub fn read_link(&self, rel: &Path) -> std::io::Result<std::ffi::OsString> {
        let (dir, name) = self.parent_of(rel)?;
        Ok(nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)?)
    }

    /// Opens the directory `rest` below `base`, never following a symlink
    /// and never leaving `base`.
    fn resolve(&self, base: RawFd, rest: &Path) -> std::io::Result<OwnedFd> {
        if self.openat2 {
            let how = OpenHow::new()
                .flags(dir_flags())
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            let fd = nix::fcntl::openat2(base, rest, how).map_err(refused_symlink)?;
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let mut names = rest.components().map(|c| c.as_os_str());
        let first = names.next().ok_or_else(|| std::io::Error::other("empty directory path"))?;
        let mut fd = open_at(base, first, dir_flags(), 0)?;
        for name in names {
            fd = open_at(fd.as_raw_fd(), name, dir_flags(), 0)?;
        }
        Ok(fd)
    }

    /// Resolves component by component even where `openat2` exists (to
    /// test the fallback).
    #[cfg(test)]
    pub fn without_openat2(mut self) -> Self {
        self.openat2 = false;
        self
    }
}

/// Whether this kernel has `openat2` (Linux 5.6). A seccomp filter may
/// answer `EPERM` or `ENOSYS` for a system call it does not know.
fn probe_openat2(root: RawFd) -> bool {
    let how = OpenHow::new().flags(dir_flags()).resolve(ResolveFlag::RESOLVE_BENEATH);
    match nix::fcntl::openat2(root, ".", how) {
        Ok(fd) => {
            // SAFETY: the probe's own descriptor, closed right away.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            true
        }
        Err(Errno::ENOSYS | Errno::EPERM) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tree() -> (tempfile::TempDir, Vec<PathBuf>) {
        let d = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = ["a", "a/b", "a/b/c", "a/d", "e"].iter().map(PathBuf::from).collect();
        for p in &dirs {
            std::fs::create_dir(d.path().join(p)).unwrap();
        }
        (d, dirs)
    }

    fn ino(fd: &OwnedFd) -> u64 {
        nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_ino
    }

    fn ino_of(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn directories_are_found_with_and_without_openat2_and_after_eviction() {
        let (d, dirs) = tree();
        for fallback in [false, true] {
            let mut h = Handles::new(Handles::open_root(d.path()).unwrap(), dirs.iter().map(PathBuf::as_path));
            if fallback {
                h = h.without_openat2();
            }
            // A cache of one handle: every look-up evicts another.
            h.cache.lock().unwrap().cap = 1;
            for round in 0..2 {
                for (i, p) in dirs.iter().enumerate().rev() {
                    let fd = h.dir(i as u32).unwrap();
                    assert_eq!(
                        ino(&fd),
                        ino_of(&d.path().join(p)),
                        "{} (fallback {fallback}, round {round})",
                        p.display()
                    );
                }
            }
            assert!(h.cache.lock().unwrap().open <= 2);
            assert_eq!(h.locate(Path::new("a/b/file")), (1, OsStr::new("file")));
            assert_eq!(h.locate(Path::new("top")), (ROOT, OsStr::new("top")));
        }
    }

    #[test]
    fn an_entry_in_a_directory_not_listed_is_reached_from_the_target_never_through_a_symlink() {
        let (d, _) = tree();
        std::fs::write(d.path().join("a/b/c/file"), b"x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("c")).unwrap();
        std::fs::write(outside.path().join("c/file"), b"outside").unwrap();
        for fallback in [false, true] {
            // Only `e` is listed, as in a later batch.
            let mut h = Handles::new(Handles::open_root(d.path()).unwrap(), [Path::new("e")]);
            if fallback {
                h = h.without_openat2();
            }
            let file = Path::new("a/b/c/file");
            let (place, name) = h.locate(file);
            assert_eq!((place, name), (UNLISTED, OsStr::new("file")));
            assert!(h.dir(place).is_err(), "an unlisted directory is never taken for the target");
            let (dir, name) = h.parent_of(file).unwrap();
            assert_eq!(ino(&dir), ino_of(&d.path().join("a/b/c")));
            assert_eq!(name, "file");
            let mut content = String::new();
            std::io::Read::read_to_string(&mut h.open_file(file).unwrap(), &mut content).unwrap();
            assert_eq!(content, "x");
            // `b` swapped for a symlink to a tree with the same names.
            std::fs::rename(d.path().join("a/b"), d.path().join("a/b.real")).unwrap();
            std::os::unix::fs::symlink(outside.path(), d.path().join("a/b")).unwrap();
            let e = h.parent_of(file).unwrap_err();
            assert!(e.to_string().contains("(never followed)"), "{e}");
            assert!(h.open_file(file).is_err() && h.lstat(file).is_err());
            std::fs::remove_file(d.path().join("a/b")).unwrap();
            std::fs::rename(d.path().join("a/b.real"), d.path().join("a/b")).unwrap();
        }
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_never_followed() {
        let (d, dirs) = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("b/c")).unwrap();
        for fallback in [false, true] {
            let mut h = Handles::new(Handles::open_root(d.path()).unwrap(), dirs.iter().map(PathBuf::as_path));
            if fallback {
                h = h.without_openat2();
            }
            // `a` becomes a symlink to a tree with the same names, after its
            // handle was dropped.
            std::fs::rename(d.path().join("a"), d.path().join("a.real")).unwrap();
            std::os::unix::fs::symlink(outside.path(), d.path().join("a")).unwrap();
            for i in 0..4u32 {
                let e = h.dir(i).expect_err("looked up through a symlink");
                assert!(e.to_string().contains("(never followed)"), "{e}");
            }
            assert!(h.dir(4).is_ok());
            std::fs::remove_file(d.path().join("a")).unwrap();
            std::fs::rename(d.path().join("a.real"), d.path().join("a")).unwrap();
            // A deeper component swapped, with `a` open already.
            let a = h.dir(0).unwrap();
            std::fs::rename(d.path().join("a/b"), d.path().join("a/b.real")).unwrap();
            std::os::unix::fs::symlink(outside.path().join("b"), d.path().join("a/b")).unwrap();
            assert!(h.dir(2).unwrap_err().to_string().contains("(never followed)"));
            assert!(h.dir(1).is_err());
            assert_eq!(ino(&a), ino_of(&d.path().join("a")));
            std::fs::remove_file(d.path().join("a/b")).unwrap();
            std::fs::rename(d.path().join("a/b.real"), d.path().join("a/b")).unwrap();
        }
    }

    #[test]
    fn an_open_handle_keeps_its_directory_when_the_name_is_swapped() {
        let (d, dirs) = tree();
        let h = Handles::new(Handles::open_root(d.path()).unwrap(), dirs.iter().map(PathBuf::as_path));
        let b = h.dir(1).unwrap();
        let before = ino(&b);
        std::fs::rename(d.path().join("a/b"), d.path().join("a/b.moved")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("a/b")).unwrap();
        // Still the same directory, now at `a/b.moved`: still in the target.
        assert_eq!(ino(&h.dir(1).unwrap()), before);
        assert_eq!(ino_of(&d.path().join("a/b.moved")), before);
    }
}
