//! The scan's look-ups, relative to an open handle of the directory.
//!
//! Every entry below a backup path is named by one component relative to
//! its directory's descriptor, never by its full path: `fstatat` with
//! `AT_SYMLINK_NOFOLLOW` describes it, `openat` with `O_DIRECTORY |
//! O_NOFOLLOW` enters it, `readlinkat` reads it. The kernel thus resolves
//! one name per entry (not the whole path again, as `lstat(path)` does),
//! and a directory swapped for a symlink after its parent was listed is
//! refused when it is entered, never followed out of the tree.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

/// How every directory handle is opened: never through a symlink.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// A look-up that did not follow a symlink says so, rather than "too many
/// levels of symbolic links".
fn refused_symlink(e: Errno) -> std::io::Error {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => {
            std::io::Error::other("not a directory any more: a symbolic link or a file is in the way (never followed)")
        }
        e => e.into(),
    }
}

/// Opens the directory at `path`, following symlinks on the way (the
/// directories above a backup path are taken as given).
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `lstat` of `name` in the directory `dir`.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<FileStat> {
    Ok(nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
}

/// Opens the subdirectory `name` of `dir`, and checks it is the entry
/// `seen` described (same device and inode): a symlink or anything else
/// put in its place since is refused, never followed.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr, seen: &FileStat) -> std::io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, dir_flags(), Mode::empty()).map_err(refused_symlink)?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let now = nix::sys::stat::fstat(fd.as_raw_fd())?;
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino) {
        return Err(std::io::Error::other("replaced by another directory while the backup ran (not entered)"));
    }
    Ok(fd)
}

/// Opens the file `name` in `dir` for reading: never through a symlink,
/// and without blocking when a FIFO was put in its place (the caller
/// checks that it is the regular file it statted); reads then block as
/// usual. Access times are left alone where the kernel allows it
/// (`O_NOATIME` needs the file's owner or root). A file under another
/// process's lease refuses a non-blocking open: it is then opened as an
/// `O_PATH` descriptor, checked to be a regular file, and opened again
/// through `/proc/self/fd/N`, which names that very inode, so the open
/// waits for the lease's break and nothing put in its place meanwhile (a
/// FIFO) can hold it.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<std::fs::File> {
    let at = Some(dir.as_raw_fd());
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match open_noatime(at, name, flags | OFlag::O_NONBLOCK) {
        Err(Errno::EWOULDBLOCK) => return open_leased(dir, name),
        // SAFETY: openat returned a new descriptor that nothing else owns.
        r => unsafe { OwnedFd::from_raw_fd(r?) },
    };
    let status = OFlag::from_bits_truncate(nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?);
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(status - OFlag::O_NONBLOCK))?;
    Ok(std::fs::File::from(fd))
}

/// `openat` with `O_NOATIME` where the kernel allows it.
fn open_noatime<P: ?Sized + nix::NixPath>(at: Option<i32>, name: &P, flags: OFlag) -> nix::Result<i32> {
    match nix::fcntl::openat(at, name, flags | OFlag::O_NOATIME, Mode::empty()) {
        Err(Errno::EPERM) => nix::fcntl::openat(at, name, flags, Mode::empty()),
        r => r,
    }
}

/// See [`open_file_at`]: a file under a lease, opened blocking.
fn open_leased(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<std::fs::File> {
    let path_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let inode =
        unsafe { OwnedFd::from_raw_fd(nix::fcntl::openat(Some(dir.as_raw_fd()), name, path_flags, Mode::empty())?) };
    let st = nix::sys::stat::fstat(inode.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(std::io::Error::other("no longer a regular file"));
    }
    let proc_path = format!("/proc/self/fd/{}", inode.as_raw_fd());
    let fd = open_noatime(None, proc_path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC)?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The target of the symlink `name` in `dir`.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<OsString> {
    Ok(nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)?)
}

/// The names in the directory `dir` (without `.` and `..`), unsorted; an
/// entry that cannot be read gives an error in its place.
pub fn names(dir: &OwnedFd) -> std::io::Result<Vec<std::io::Result<OsString>>> {
    // The listing reads through its own copy of the handle, which it
    // closes; `dir` stays open for the look-ups of its entries.
    let mut listing = nix::dir::Dir::from_fd(nix::unistd::dup(dir.as_fd().as_raw_fd())?)?;
    let mut out = Vec::new();
    for ent in listing.iter() {
        match ent {
            Ok(ent) => {
                let name = ent.file_name().to_bytes();
                if name != b"." && name != b".." {
                    out.push(Ok(OsStr::from_bytes(name).to_os_string()));
                }
            }
            Err(e) => out.push(Err(e.into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_swapped_for_a_symlink_after_it_was_statted_is_never_entered() {
        let t = tempfile::tempdir().unwrap();
        let (tree, outside) = (t.path().join("tree"), t.path().join("outside"));
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        let top = open_dir(&tree).unwrap();
        let listed: Vec<OsString> = names(&top).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(listed, vec![OsString::from("sub")]);
        let seen = lstat_at(top.as_fd(), OsStr::new("sub")).unwrap();
        assert_eq!(seen.st_mode & libc::S_IFMT, libc::S_IFDIR);
        // Swapped between the stat and the descent.
        std::fs::rename(tree.join("sub"), t.path().join("aside")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("sub")).unwrap();
        let e = open_subdir(top.as_fd(), OsStr::new("sub"), &seen).unwrap_err();
        assert!(e.to_string().contains("never followed"), "{e}");
        // Stat again, it is the symlink itself that is described.
        let now = lstat_at(top.as_fd(), OsStr::new("sub")).unwrap();
        assert_eq!(now.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(read_link_at(top.as_fd(), OsStr::new("sub")).unwrap(), outside.as_os_str());
        // Another directory put in its place is not entered either.
        std::fs::remove_file(tree.join("sub")).unwrap();
        std::fs::create_dir(tree.join("sub")).unwrap();
        let e = open_subdir(top.as_fd(), OsStr::new("sub"), &seen).unwrap_err();
        assert!(e.to_string().contains("replaced"), "{e}");
        // The original, statted afresh, is entered, and its handle lists it.
        std::fs::remove_dir(tree.join("sub")).unwrap();
        std::fs::rename(t.path().join("aside"), tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/f"), b"x").unwrap();
        let seen = lstat_at(top.as_fd(), OsStr::new("sub")).unwrap();
        let sub = open_subdir(top.as_fd(), OsStr::new("sub"), &seen).unwrap();
        let listed: Vec<OsString> = names(&sub).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(listed, vec![OsString::from("f")]);
        assert_eq!(lstat_at(sub.as_fd(), OsStr::new("f")).unwrap().st_size, 1);
    }

    /// Holds a write lease on `path` until `release` says, through a
    /// descriptor that is the file's only one.
    fn leased(path: &Path) -> std::fs::File {
        // The holder is told of a break by SIGIO, whose default ends the
        // process (the test's, here).
        // SAFETY: ignoring a signal.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: a valid descriptor.
        assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) }, 0, "a write lease");
        f
    }

    /// Waits until another open has started to break the lease on `f`.
    fn breaking(f: &std::fs::File) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // SAFETY: a valid descriptor.
        while unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLEASE) } == libc::F_WRLCK {
            assert!(std::time::Instant::now() < deadline, "the opener never tried to open the file");
            std::thread::yield_now();
        }
    }

    fn release(f: &std::fs::File) {
        // SAFETY: a valid descriptor.
        assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) }, 0);
    }

    #[test]
    fn a_file_is_opened_without_o_nonblock_left_and_under_a_lease_once_it_breaks_never_a_fifo_swapped_in() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"leased").unwrap();
        let dir = open_dir(t.path()).unwrap();
        let read = |r: std::io::Result<std::fs::File>| -> std::io::Result<Vec<u8>> {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut r?, &mut out)?;
            Ok(out)
        };
        // Unleased: reads block as usual afterwards.
        let f = open_file_at(dir.as_fd(), OsStr::new("f")).unwrap();
        let status =
            OFlag::from_bits_truncate(nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap());
        assert!(!status.contains(OFlag::O_NONBLOCK), "{status:?}");
        drop(f);
        // Leased: opened once the holder lets go.
        let holder = leased(&t.path().join("f"));
        std::thread::scope(|s| {
            let opener = s.spawn(|| read(open_file_at(dir.as_fd(), OsStr::new("f"))));
            breaking(&holder);
            release(&holder);
            assert_eq!(opener.join().unwrap().unwrap(), b"leased");
        });
        drop(holder);
        // Leased, and a FIFO renamed over it while the lease breaks: the
        // open gives the file or refuses, and never waits for a writer.
        let holder = leased(&t.path().join("f"));
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| tx.send(read(open_file_at(dir.as_fd(), OsStr::new("f")))).unwrap());
            breaking(&holder);
            std::fs::rename(&fifo, t.path().join("f")).unwrap();
            release(&holder);
            let got = rx.recv_timeout(std::time::Duration::from_secs(60));
            if got.is_err() {
                // Unblock the opener so that the scope ends, then fail.
                let _ = std::fs::OpenOptions::new().write(true).open(t.path().join("f"));
            }
            match got.expect("the open returned") {
                Ok(bytes) => assert_eq!(bytes, b"leased"),
                Err(e) => assert!(e.to_string().contains("regular file"), "{e}"),
            }
        });
    }
}
