//! The drill's scratch target: refusing anything near live data, and
//! removing it afterwards with proof.
//!
//! A target is accepted only when it is missing or an empty directory (not
//! a symlink), and when, with symlinks resolved, it neither lies inside
//! nor contains any of the policy's source paths. For a missing target the
//! nearest existing ancestor is resolved and the rest appended, so a
//! symlinked parent cannot smuggle the restore into a source tree. The
//! checks run before anything is created.
//!
//! Cleanup works through directory handles, never by path below the
//! target: it lists the tree (making read-only restored directories
//! writable so their entries can go), unlinks the files on several
//! threads, sweeps the directories away deepest first (with anything that
//! appeared meanwhile), counting files, directories, other entries and
//! file bytes as they go, and then checks that the target no longer exists
//! (or, for a directory the caller gave, that it is empty). A symlink
//! found where a directory was is removed as a link, never followed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::restore::handles::{dir_flags, open_at, refused_symlink, Handles, ROOT};

/// A prepared scratch target.
#[derive(Debug, Clone)]
pub struct Scratch {
    pub path: PathBuf,
    /// The drill created the directory (then it removes it, not only its contents).
    pub created: bool,
}

/// What cleanup did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cleanup {
    pub path: String,
    /// `removed`: the drill created the directory and removed it;
    /// `emptied`: the caller's directory was emptied and left in place.
    pub action: String,
    pub files_removed: u64,
    pub dirs_removed: u64,
    pub others_removed: u64,
    pub bytes_removed: u64,
    /// Checked after removal: the path no longer exists (or is empty).
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_s: f64,
}

fn refuse(target: &Path, reason: impl Into<String>) -> Error {
    Error::UnsafeDrillTarget { target: target.to_path_buf(), reason: reason.into() }
}

/// Lexically removes `.` components; `..` is refused by the caller.
fn absolute(p: &Path) -> Result<PathBuf> {
    let abs =
        if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map_err(|e| Error::io(".", e))?.join(p) };
    Ok(abs.components().filter(|c| !matches!(c, Component::CurDir)).collect())
}

/// `p` with symlinks resolved as far as it exists; the missing rest is
/// appended as written.
fn resolve(p: &Path) -> Result<PathBuf> {
    let abs = absolute(p)?;
    let mut existing = abs.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut c) => {
                for r in rest.iter().rev() {
                    c.push(r);
                }
                return Ok(c);
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => return Ok(abs),
            },
        }
    }
}

/// Checks a target against the policy's sources and prepares it.
pub fn prepare(given: Option<&Path>, state_dir: &Path, drill_id: &str, sources: &[PathBuf]) -> Result<Scratch> {
    let path = match given {
        Some(p) => absolute(p)?,
        None => absolute(&state_dir.join("scratch").join(drill_id))?,
    };
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(refuse(&path, "it contains `..`"));
    }
    let resolved = resolve(&path)?;
    for src in sources {
        let s = resolve(src)?;
        if resolved.starts_with(&s) {
            return Err(refuse(&path, format!("it is inside the policy's source path {}", src.display())));
        }
        if s.starts_with(&resolved) {
            return Err(refuse(&path, format!("it contains the policy's source path {}", src.display())));
        }
    }
    let created = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => return Err(refuse(&path, "it is a symbolic link")),
        Ok(m) if !m.is_dir() => return Err(refuse(&path, "it is not a directory")),
        Ok(_) => {
            let mut rd = std::fs::read_dir(&path).map_err(|e| Error::io(&path, e))?;
            if rd.next().is_some() {
                return Err(refuse(&path, "it is not empty (a drill never restores over existing data)"));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                // `<state>/scratch` and any other missing parent: 0700 too.
                crate::private::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            // Restored data may be confidential: only the drill's user may
            // look. The mode is given at creation, never set later by path
            // (a chmod by path would follow a symlink swapped in meanwhile).
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|e| Error::io(&path, e))?;
            true
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    Ok(Scratch { path, created })
}

/// Opens the directory `name` in `parent` for removing its entries,
/// never through a symlink: the directory itself is opened (`O_PATH`), made
/// readable, writable and searchable by its owner if it was not, then
/// opened for reading through that same handle.
fn open_for_removal(parent: RawFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    let path = open_at(parent, name, flags, 0)?;
    let st = nix::sys::stat::fstat(path.as_raw_fd())?;
    if st.st_mode & 0o700 != 0o700 {
        crate::fsmeta::chmod_opath(path.as_fd(), (st.st_mode & 0o7777) | 0o700)?;
    }
    open_at(path.as_raw_fd(), OsStr::new("."), dir_flags(), 0)
}

/// The names in a directory, with whether each is a directory (`lstat`).
fn entries(dir: &OwnedFd) -> std::io::Result<Vec<(OsString, nix::sys::stat::FileStat)>> {
    let mut d = nix::dir::Dir::openat(Some(dir.as_raw_fd()), ".", dir_flags(), Mode::empty())?;
    let mut out = Vec::new();
    for e in d.iter() {
        let name = OsStr::from_bytes(e?.file_name().to_bytes()).to_os_string();
        if name == "." || name == ".." {
            continue;
        }
        match fstatat(Some(dir.as_raw_fd()), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => out.push((name, st)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_file(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// The non-directories of one directory (an index into the listed
/// directories, or [`ROOT`]), with their `lstat`.
type Group = (u32, Vec<(OsString, nix::sys::stat::FileStat)>);

/// Lists the tree below `dir` (at `rel`, index `d`) through directory
/// handles: the directories (parents first) and the other entries of each.
/// Directories that cannot be listed are left to the sweep.
fn list(dir: &OwnedFd, d: u32, rel: &Path, dirs: &mut Vec<PathBuf>, groups: &mut Vec<Group>) {
    let Ok(all) = entries(dir) else { return };
    let (subdirs, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, st)| is_dir(st));
    groups.push((d, others));
    for (name, _) in subdirs {
        let Ok(sub) = open_for_removal(dir.as_raw_fd(), &name) else { continue };
        let sub_rel = rel.join(&name);
        dirs.push(sub_rel.clone());
        list(&sub, (dirs.len() - 1) as u32, &sub_rel, dirs, groups);
    }
}

/// What was removed, counted as it goes.
#[derive(Default)]
struct Removed {
    files: AtomicU64,
    others: AtomicU64,
    bytes: AtomicU64,
    dirs: AtomicU64,
}

impl Removed {
    fn count(&self, st: &nix::sys::stat::FileStat) {
        if is_dir(st) {
            self.dirs.fetch_add(1, Ordering::Relaxed);
        } else if is_file(st) {
            self.files.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(st.st_size as u64, Ordering::Relaxed);
        } else {
            self.others.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Removes everything below `dir` (at `rel`), depth first, through
/// handles: a subdirectory is opened without following a symlink, and
/// whatever is not a directory (a symlink swapped in for one included) is
/// unlinked as it is.
fn sweep(dir: &OwnedFd, rel: &Path, removed: &Removed, errors: &Mutex<Vec<String>>) {
    let all = match entries(dir) {
        Ok(all) => all,
        Err(e) => return errors.lock().unwrap().push(format!("listing {}: {e}", rel.display())),
    };
    for (name, st) in all {
        let at = rel.join(&name);
        if is_dir(&st) {
            match open_for_removal(dir.as_raw_fd(), &name) {
                Ok(sub) => sweep(&sub, &at, removed, errors),
                Err(e) => errors.lock().unwrap().push(format!("{}: {e}", at.display())),
            }
        }
        let flag = if is_dir(&st) { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
        match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name.as_os_str(), flag) {
            Ok(()) => removed.count(&st),
            Err(Errno::ENOENT) => {}
            Err(e) => errors.lock().unwrap().push(format!("{}: {e}", at.display())),
        }
    }
}

/// Removes the scratch target (its contents, and itself if the drill
/// created it), counting what went, and checks the result.
///
/// Nothing below the target is named from `/`: the target is opened
/// once, its tree is listed through directory handles, the files are
/// unlinked on several threads relative to their directory's handle
/// ([`Handles`], which never follows a symlink), and a final sweep removes
/// the directories, deepest first, with whatever appeared meanwhile. A
/// symlink found where a directory was is unlinked as a link, never
/// followed, so a directory swapped while the drill ran cannot make
/// cleanup delete anything outside the target.
pub fn remove(s: &Scratch, threads: usize) -> Cleanup {
    let t0 = Instant::now();
    let mut c = Cleanup {
        path: s.path.display().to_string(),
        action: if s.created { "removed" } else { "emptied" }.into(),
        ..Default::default()
    };
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let removed = Removed::default();
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = match nix::fcntl::open(&s.path, flags, Mode::empty()) {
        // SAFETY: open returned a new descriptor that nothing else owns.
        Ok(fd) => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::ENOENT) => None,
        Err(e) => {
            errors.lock().unwrap().push(format!("opening {}: {}", s.path.display(), refused_symlink(e)));
            None
        }
    };
    if let Some(root) = root {
        let (mut dirs, mut groups) = (Vec::new(), Vec::new());
        list(&root, ROOT, Path::new(""), &mut dirs, &mut groups);
        let handles = Handles::new(root, dirs.iter().map(PathBuf::as_path));
        // Files first, on several threads; what fails here is retried by
        // the sweep, which reports it if it fails again.
        crate::pool::parallel(threads.clamp(1, 8), groups.len(), |g| {
            let (d, names) = &groups[g];
            let Ok(dir) = handles.dir(*d) else { return };
            for (name, st) in names {
                if nix::unistd::unlinkat(Some(dir.as_raw_fd()), name.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                    removed.count(st);
                }
            }
        });
        sweep(handles.root(), &s.path, &removed, &errors);
    }
    if s.created {
        match std::fs::remove_dir(&s.path) {
            Ok(()) => {
                removed.dirs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.lock().unwrap().push(format!("{}: {e}", s.path.display())),
        }
    }
    c.files_removed = removed.files.into_inner();
    c.others_removed = removed.others.into_inner();
    c.bytes_removed = removed.bytes.into_inner();
    c.dirs_removed = removed.dirs.into_inner();
    c.verified = if s.created {
        matches!(std::fs::symlink_metadata(&s.path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    } else {
        std::fs::read_dir(&s.path).map(|mut rd| rd.next().is_none()).unwrap_or(false)
    };
    let errors = errors.into_inner().unwrap();
    if !errors.is_empty() || !c.verified {
        let shown: Vec<&str> = errors.iter().take(5).map(String::as_str).collect();
        c.error = Some(format!(
            "the scratch target {} was not fully removed ({} problem(s)){}{}",
            s.path.display(),
            errors.len(),
            if shown.is_empty() { "" } else { ": " },
            shown.join("; ")
        ));
    }
    c.duration_s = t0.elapsed().as_secs_f64();
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn reason(r: Result<Scratch>) -> String {
        match r {
            Err(Error::UnsafeDrillTarget { reason, .. }) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn targets_near_live_data_are_refused_before_anything_is_created() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let src = root.join("srv/www");
        std::fs::create_dir_all(&src).unwrap();
        let sources = vec![src.clone()];
        let state = root.join("state");
        // Inside a source, even when it does not exist yet.
        let r = reason(prepare(Some(&src.join("drill/x")), &state, "d1", &sources));
        assert!(r.contains("inside the policy's source path"), "{r}");
        assert!(!src.join("drill").exists());
        // The source itself, and a directory containing it.
        assert!(reason(prepare(Some(&src), &state, "d1", &sources)).contains("inside"));
        assert!(
            reason(prepare(Some(&root.join("srv")), &state, "d1", &sources)).contains("contains the policy's source")
        );
        assert!(reason(prepare(Some(Path::new("/")), &state, "d1", &sources)).contains("contains"));
        // Through a symlinked parent.
        std::os::unix::fs::symlink(&src, root.join("link")).unwrap();
        assert!(reason(prepare(Some(&root.join("link/new")), &state, "d1", &sources)).contains("inside"));
        assert!(reason(prepare(Some(&root.join("link")), &state, "d1", &sources)).contains("inside"));
        // With `..`.
        assert!(reason(prepare(Some(&root.join("a/../srv/www/x")), &state, "d1", &sources)).contains(".."));
        // Not empty.
        let full = root.join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("keep"), b"x").unwrap();
        assert!(reason(prepare(Some(&full), &state, "d1", &sources)).contains("not empty"));
        assert_eq!(std::fs::read(full.join("keep")).unwrap(), b"x");
        // The default scratch under a state directory inside a source.
        let r = reason(prepare(None, &src.join("state"), "d1", &sources));
        assert!(r.contains("inside"), "{r}");
        assert!(!src.join("state").exists());
    }

    #[test]
    fn the_default_target_is_created_private_and_removed_with_counts() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let s = prepare(None, &state, "d1", &[d.path().join("src")]).unwrap();
        assert!(s.created);
        assert_eq!(s.path, absolute(&state.join("scratch/d1")).unwrap());
        assert_eq!(std::fs::metadata(&s.path).unwrap().mode() & 0o777, 0o700);
        std::fs::create_dir_all(s.path.join("a/b")).unwrap();
        std::fs::write(s.path.join("a/b/f1"), vec![1u8; 1000]).unwrap();
        std::fs::write(s.path.join("a/f2"), vec![2u8; 24]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", s.path.join("a/ln")).unwrap();
        // A read-only directory, as a snapshot may hold.
        std::fs::set_permissions(s.path.join("a/b"), std::fs::Permissions::from_mode(0o555)).unwrap();
        let c = remove(&s, 2);
        assert_eq!(c.error, None);
        assert!(c.verified);
        assert_eq!((c.files_removed, c.others_removed, c.dirs_removed, c.bytes_removed), (2, 1, 3, 1024));
        assert_eq!(c.action, "removed");
        assert!(!s.path.exists());
        assert!(std::fs::metadata("/etc/passwd").is_ok(), "a symlink's target is never touched");
    }

    #[test]
    fn a_given_empty_directory_is_emptied_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("given");
        std::fs::create_dir(&t).unwrap();
        let s = prepare(Some(&t), &d.path().join("state"), "d1", &[]).unwrap();
        assert!(!s.created);
        std::fs::write(t.join("f"), b"abc").unwrap();
        let c = remove(&s, 1);
        assert!(c.verified && c.error.is_none(), "{c:?}");
        assert_eq!(c.action, "emptied");
        assert_eq!((c.files_removed, c.bytes_removed, c.dirs_removed), (1, 3, 0));
        assert!(t.is_dir() && std::fs::read_dir(&t).unwrap().next().is_none());
    }
}

/// Whether `name` has the form of a drill id of `policy`
/// (`YYYYMMDDTHHMMSSZ-<policy>-<6 hex digits>`, see `new_drill_id`).
fn is_drill_dir_of(name: &str, policy: &str) -> bool {
    let b = name.as_bytes();
    let stamp_ok = b.len() > 17 && b[8] == b'T' && b[15] == b'Z' && b[16] == b'-';
    let Some(rest) = name.get(17..).and_then(|r| r.strip_prefix(policy)).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    stamp_ok && rest.len() == 6 && rest.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Removes what killed drills left behind: the drill directories of
/// `policies` in `<state>/scratch` and in each policy's own scratch
/// directory. Call it only when no drill runs (the daemon does at
/// start-up). Returns the directories removed.
pub fn sweep_leftovers(state_dir: &Path, policies: &[crate::policy::Policy]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for p in policies {
        let mut bases = vec![state_dir.join("scratch")];
        bases.extend(p.drill.as_ref().and_then(|d| d.scratch.clone()));
        for base in bases {
            let Ok(rd) = std::fs::read_dir(&base) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && is_drill_dir_of(&name.to_string_lossy(), &p.name) {
                    // The same handle-based removal as a drill's own
                    // cleanup: nothing below is named from `/`.
                    let path = e.path();
                    if remove(&Scratch { path: path.clone(), created: true }, 1).error.is_none() {
                        removed.push(path);
                    }
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn only_drill_directories_of_known_policies_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        let left = scratch.join("20261125T021229Z-web-618db4");
        std::fs::create_dir_all(left.join("srv/www")).unwrap();
        std::fs::write(left.join("srv/www/index.html"), "x").unwrap();
        for keep in ["20261125T021229Z-db-618db4", "20261125T021229Z-web-zzzzzz", "notes"] {
            std::fs::create_dir_all(scratch.join(keep)).unwrap();
        }
        let web = crate::policy::for_tests("web", "/r", "");
        assert_eq!(sweep_leftovers(dir.path(), &[web]), std::slice::from_ref(&left));
        assert!(!left.exists());
        let mut rest: Vec<String> =
            std::fs::read_dir(&scratch).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        rest.sort();
        assert_eq!(rest, ["20261125T021229Z-db-618db4", "20261125T021229Z-web-zzzzzz", "notes"]);
        assert!(is_drill_dir_of(&crate::drill::new_drill_id("web", chrono::Utc::now()), "web"));
    }
}
