//! Private files and directories, whatever the umask.
//!
//! cairn runs as root on a host with the default umask 022, under which
//! every file would be world-readable. What cairn writes for itself (the
//! repository on a local backend, with its key slots; the state directory
//! and its database; drill and compliance reports) is created here with
//! mode 0600 for files and 0700 for directories, stated at creation (the
//! umask can only take bits away from these, never add any).
//!
//! A new file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`: it is never an
//! existing file, and never a symlink someone planted in its place. A file
//! replaced whole ([`write_atomic`]) goes through such a temporary and a
//! rename, and a target that is a symlink is refused.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// The mode of every file cairn creates for itself.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory cairn creates for itself.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each with mode 0700; an existing
/// directory is left as it is.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates a new file, mode 0600, for writing: `O_EXCL` (never an existing
/// file) and `O_NOFOLLOW` (never through a symlink in its place).
pub fn create_new(path: &Path) -> std::io::Result<File> {
    create_new_with_mode(path, FILE_MODE)
}

/// [`create_new`] with another mode (which the umask then narrows).
fn create_new_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Refuses `path` when it is a symlink (a report path, say: someone with
/// write access to the directory could point it at a file of root's).
pub fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Untrusted {
            path: path.to_path_buf(),
            reason: "it is a symbolic link, and cairn never writes through one".into(),
            fix: format!("remove the link (`rm {}`) or write elsewhere", path.display()),
        }),
        _ => Ok(()),
    }
}

/// Replaces `path` whole with `bytes`, mode 0600: written to a new
/// temporary beside it (see [`create_new`]), synced, then renamed over
/// it, so a reader never sees half a file. A `path` that is a symlink is
/// refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with_mode(path, bytes, FILE_MODE)
}

/// [`write_atomic`] for a file the user named (`report --out`): it keeps
/// the user's umask (mode 0666 less the umask), as any file the user
/// writes would, and is still never written through a symlink.
pub fn write_atomic_for_user(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with_mode(path, bytes, 0o666)
}

fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    refuse_symlink(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}-{}", std::process::id(), crate::Id::random().short()));
    let written = create_new_with_mode(&tmp, mode).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // Never remove what create_new did not create (an existing file or a planted link).
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Runs `f` under umask `mask` (tests set 022, the default that made
/// cairn's files world-readable).
#[cfg(test)]
pub(crate) fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(mask) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn files_and_directories_are_private_under_umask_022() {
        let d = tempfile::tempdir().unwrap();
        let (a, f) = (d.path().join("a/b"), d.path().join("a/b/f"));
        with_umask(0o022, || {
            create_dir_all(&a).unwrap();
            write_atomic(&f, b"x").unwrap();
        });
        assert_eq!((mode(&d.path().join("a")), mode(&a), mode(&f)), (0o700, 0o700, 0o600));
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
        let names: Vec<_> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f"], "no temporary is left");
    }

    #[test]
    fn a_symlink_is_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"root's").unwrap();
        let link = d.path().join("report.html");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = write_atomic(&link, b"evil").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(e.hint().unwrap().contains("rm "), "{e:?}");
        // A link planted where a new file goes is not followed either.
        let planted = d.path().join("new");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(create_new(&planted).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's");
    }
}
