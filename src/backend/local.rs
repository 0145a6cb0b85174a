//! The local-directory backend: the embedded default, and the one tests use.
//!
//! Objects are files under the root, keyed by their relative path. A `put`
//! writes a hidden temporary file beside the target, fsyncs it, moves it
//! into place without replacing anything (`renameat2(RENAME_NOREPLACE)`, or
//! `link` where the file system lacks it) and fsyncs the directory, so an
//! object is either wholly there and durable or absent, and an existing one
//! is never replaced: if the key exists with the same bytes the put
//! succeeds, with other bytes it fails naming the key. Only locks
//! (`put_mutable`) are renamed over. Temporaries (`.tmp-*`) are never listed.
//!
//! The repository is private whatever the umask: directories are created
//! 0700 and objects 0600 (the key slots among them, which would allow an
//! offline password guess), each temporary with `O_EXCL | O_NOFOLLOW`
//! (`crate::private`).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{
    is_mutable_key, refuse_mutable, Backend, BackendError, BackendErrorKind, BackendResult, Leftover, ObjectInfo,
};

/// The name prefix of the temporary files `put` writes before renaming.
pub const TEMP_PREFIX: &str = ".tmp-";

pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> BackendResult<PathBuf> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(BackendError::new(BackendErrorKind::Permanent, "resolve", key, "invalid object key"));
        }
        Ok(self.root.join(key))
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, and fsyncs the parent of each
/// directory created, so a new `data/xx/` survives a power loss together
/// with the object stored in it.
fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
    crate::private::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => fsync_dir(p)?,
            _ => fsync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Moves `tmp` to `target` unless `target` exists (then `AlreadyExists`).
fn move_no_replace(tmp: &Path, target: &Path) -> std::io::Result<()> {
    use nix::errno::Errno;
    match nix::fcntl::renameat2(None, tmp, None, target, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(std::io::ErrorKind::AlreadyExists.into()),
        // No RENAME_NOREPLACE on this file system: a hard link also refuses
        // an existing name.
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            fs::hard_link(tmp, target)?;
            fs::remove_file(tmp)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a write failed because its target exists.
fn names_existing_file(e: &BackendError) -> bool {
    let io = e.source.as_ref().and_then(|s| s.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
}

impl LocalBackend {
    /// Writes `data` to a temporary beside `key`'s file, fsynced, then
    /// hands both paths to `place`, and fsyncs the directory.
    fn write_with(
        &self,
        key: &str,
        data: &[u8],
        place: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
    ) -> BackendResult<()> {
        let p = self.path(key)?;
        let dir = p.parent().expect("keys have a parent").to_path_buf();
        let err = |e| BackendError::from_io("write", key, e);
        if !dir.is_dir() {
            create_dirs_durably(&dir).map_err(err)?;
        }
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", crate::Id::random().short()));
        let write = || -> std::io::Result<()> {
            let mut f = crate::private::create_new(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            place(&tmp, &p)?;
            fsync_dir(&dir)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(e)
        })
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        let p = self.path(key)?;
        fs::read(&p).map_err(|e| BackendError::from_io("read", key, e))
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        let p = self.path(key)?;
        let f = File::open(&p).map_err(|e| BackendError::from_io("read", key, e))?;
        let mut buf = vec![0u8; length as usize];
        f.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                BackendError::new(
                    BackendErrorKind::Permanent,
                    "read",
                    key,
                    format!("range {offset}+{length} is past the end of the object"),
                )
            } else {
                BackendError::from_io("read", key, e)
            }
        })?;
        Ok(buf)
    }

    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        match self.write_with(key, data, move_no_replace) {
            Err(e) if names_existing_file(&e) => {
                // A retried or repeated write of the same object is success.
                if self.get(key)? == data {
                    Ok(())
                } else {
                    Err(BackendError::already_exists(key))
                }
            }
            r => r,
        }
    }

    /// Every `put` here is create-only by construction (`RENAME_NOREPLACE`
    /// or a hard link), so no probe object is needed.
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        Ok(true)
    }

    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        if !is_mutable_key(key) {
            return Err(refuse_mutable(key));
        }
        self.write_with(key, data, |tmp, p| fs::rename(tmp, p))
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let base = if prefix.is_empty() { self.root.clone() } else { self.path(prefix.trim_end_matches('/'))? };
        let mut stack = vec![base];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BackendError::from_io("list", prefix, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| BackendError::from_io("list", prefix, e))?;
                let name = ent.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                // An object deleted while we list (a lock being released)
                // is simply not listed.
                let ft = match ent.file_type() {
                    Ok(ft) => ft,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(BackendError::from_io("list", prefix, e)),
                };
                if ft.is_dir() {
                    stack.push(ent.path());
                } else if ft.is_file() {
                    let meta = match ent.metadata() {
                        Ok(m) => m,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(BackendError::from_io("list", prefix, e)),
                    };
                    let rel = ent.path();
                    let rel = rel.strip_prefix(&self.root).expect("under root");
                    out.push(ObjectInfo {
                        key: rel.to_string_lossy().into_owned(),
                        size: meta.len(),
                        modified: meta.modified().ok().map(chrono::DateTime::<chrono::Utc>::from),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> BackendResult<()> {
        let p = self.path(key)?;
        fs::remove_file(&p).map_err(|e| BackendError::from_io("delete", key, e))
    }

    fn stat(&self, key: &str) -> BackendResult<u64> {
        let p = self.path(key)?;
        fs::metadata(&p).map(|m| m.len()).map_err(|e| BackendError::from_io("stat", key, e))
    }

    /// One writer keeps a local disk busy; more only hold more packs in memory.
    fn concurrency(&self) -> usize {
        1
    }

    /// The `.tmp-*` files anywhere under the root (never through a symlink).
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        let err = |e| BackendError::from_io("list leftovers", "", e);
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            };
            for ent in rd {
                let ent = ent.map_err(err)?;
                let Ok(ft) = ent.file_type() else { continue };
                let name = ent.file_name();
                if ft.is_dir() {
                    stack.push(ent.path());
                } else if ft.is_file() && name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
                    let Ok(m) = ent.metadata() else { continue }; // removed meanwhile
                    let rel = ent.path();
                    let rel = rel.strip_prefix(&self.root).expect("under root");
                    out.push(Leftover {
                        key: rel.to_string_lossy().into_owned(),
                        size: m.len(),
                        modified: m.modified().map_err(err)?,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete_leftover(&self, key: &str) -> BackendResult<()> {
        if !key.rsplit('/').next().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
            return Err(BackendError::new(BackendErrorKind::Permanent, "delete leftover", key, "not a temporary file"));
        }
        let p = self.path(key)?;
        fs::remove_file(&p).map_err(|e| BackendError::from_io("delete", key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put("data/ab/abc", b"hello").unwrap();
        b.put("snapshots/x", b"s").unwrap();
        assert_eq!(b.get("data/ab/abc").unwrap(), b"hello");
        assert_eq!(b.get_range("data/ab/abc", 1, 3).unwrap(), b"ell");
        assert!(b.get_range("data/ab/abc", 3, 3).is_err());
        assert_eq!(b.stat("data/ab/abc").unwrap(), 5);
        let l = b.list("data/").unwrap();
        assert_eq!((l.len(), l[0].key.as_str(), l[0].size), (1, "data/ab/abc", 5));
        assert!(l[0].modified.is_some());
        b.delete("data/ab/abc").unwrap();
        assert!(b.get("data/ab/abc").unwrap_err().is_not_found());
        assert!(b.list("nothing/").unwrap().is_empty());
    }

    #[test]
    fn put_never_replaces_an_object_and_names_the_key_when_it_would() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put("snapshots/x", b"first").unwrap();
        // The same bytes again: a retried upload, success.
        b.put("snapshots/x", b"first").unwrap();
        let e = b.put("snapshots/x", b"other").unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert!(e.to_string().contains("snapshots/x"), "{e}");
        assert_eq!(b.get("snapshots/x").unwrap(), b"first");
        // No temporary is left behind by the refused write.
        let names: Vec<_> =
            fs::read_dir(dir.path().join("snapshots")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")]);
    }

    #[test]
    fn only_locks_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put_mutable("locks/a", b"one").unwrap();
        b.put_mutable("locks/a", b"two").unwrap();
        assert_eq!(b.get("locks/a").unwrap(), b"two");
        b.put("config", b"c").unwrap();
        let e = b.put_mutable("config", b"d").unwrap_err();
        assert!(e.to_string().contains("only objects under `locks/`"), "{e}");
        assert_eq!(b.get("config").unwrap(), b"c");
    }

    #[test]
    fn leftovers_are_the_temporaries_and_only_they_can_be_deleted_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put("data/ab/abc", b"hello").unwrap();
        assert!(b.leftovers().unwrap().is_empty(), "a finished put leaves nothing");
        std::fs::write(dir.path().join("data/ab/.tmp-123"), b"half a pack").unwrap();
        std::fs::write(dir.path().join(".tmp-9"), b"").unwrap();
        let l = b.leftovers().unwrap();
        assert_eq!(
            l.iter().map(|x| (x.key.as_str(), x.size)).collect::<Vec<_>>(),
            [(".tmp-9", 0), ("data/ab/.tmp-123", 11)]
        );
        assert!(b.delete_leftover("data/ab/abc").is_err(), "an object is not a leftover");
        assert!(b.delete_leftover("../.tmp-x").is_err());
        b.delete_leftover("data/ab/.tmp-123").unwrap();
        assert_eq!(b.leftovers().unwrap().len(), 1);
        assert_eq!(b.get("data/ab/abc").unwrap(), b"hello");
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        for k in ["../x", "/etc/passwd", "a/../../x", "", "a//b"] {
            assert!(b.put(k, b"x").is_err(), "key {k:?} accepted");
        }
    }
}
