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
//! Cleanup lists the tree first (counting files, directories, other
//! entries and file bytes), makes read-only restored directories writable
//! so their entries can go, unlinks the files on several threads, removes
//! the directories deepest first, and then checks that the target no
//! longer exists (or, for a directory the caller gave, that it is empty).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
            // Restored data may be confidential: only the drill's user may look.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(&path, e))?;
            true
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    Ok(Scratch { path, created })
}

struct Listing {
    files: Vec<PathBuf>,
    /// Directories below the target, parents first.
    dirs: Vec<PathBuf>,
    others: u64,
    bytes: u64,
}

/// Lists everything below `root`, making directories writable and
/// searchable so their entries can be removed.
fn list(root: &Path, l: &mut Listing) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let m = e.metadata()?; // lstat: symlinks are not followed
            let p = e.path();
            if m.is_dir() {
                if m.mode() & 0o700 != 0o700 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode((m.mode() & 0o7777) | 0o700))?;
                }
                l.dirs.push(p.clone());
                stack.push(p);
            } else {
                if m.is_file() {
                    l.bytes += m.len();
                } else {
                    l.others += 1;
                }
                l.files.push(p);
            }
        }
    }
    Ok(())
}

/// Removes the scratch target (its contents, and itself if the drill
/// created it), counting what went, and checks the result.
pub fn remove(s: &Scratch, threads: usize) -> Cleanup {
    let t0 = Instant::now();
    let mut c = Cleanup {
        path: s.path.display().to_string(),
        action: if s.created { "removed" } else { "emptied" }.into(),
        ..Default::default()
    };
    let mut l = Listing { files: Vec::new(), dirs: Vec::new(), others: 0, bytes: 0 };
    let listed = match std::fs::symlink_metadata(&s.path) {
        Ok(_) => list(&s.path, &mut l),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if let Err(e) = listed {
        errors.lock().unwrap().push(format!("listing {}: {e}", s.path.display()));
    }
    let removed = AtomicUsize::new(0);
    crate::pool::parallel(threads.clamp(1, 8), l.files.len(), |i| {
        let p = &l.files[i];
        match std::fs::remove_file(p) {
            Ok(()) => {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => errors.lock().unwrap().push(format!("{}: {e}", p.display())),
        }
    });
    let all_files_gone = removed.load(Ordering::Relaxed) == l.files.len();
    if all_files_gone {
        c.files_removed = l.files.len() as u64 - l.others;
        c.others_removed = l.others;
        c.bytes_removed = l.bytes;
    }
    for d in l.dirs.iter().rev() {
        match std::fs::remove_dir(d) {
            Ok(()) => c.dirs_removed += 1,
            Err(e) => errors.lock().unwrap().push(format!("{}: {e}", d.display())),
        }
    }
    if s.created {
        match std::fs::remove_dir(&s.path) {
            Ok(()) => c.dirs_removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.lock().unwrap().push(format!("{}: {e}", s.path.display())),
        }
    }
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
                    let path = e.path();
                    if std::fs::remove_dir_all(&path).is_ok() {
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
