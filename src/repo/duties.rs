//! Separated duties: the storage credential of a backup host may add to a
//! repository but not remove from it; removing (forget, prune, key
//! remove) and the Object Lock retention log belong to the maintenance
//! host. `docs/STORAGE.md` gives each role's exact IAM policy.
//!
//! A maintenance operation calls [`probe`] before it changes anything, so
//! that a credential without the permissions fails at once, naming the
//! permission and the role that has it, and never half-way. The probes
//! leave nothing behind that matters:
//!
//! - **delete**: `DeleteObject` of a key that never exists,
//!   `<dir>/cairn-delete-probe`, in each directory the operation deletes
//!   from. Without the permission the storage answers 403 before it looks
//!   at the key. With it, an unversioned bucket changes nothing; a
//!   versioned one records a delete marker for the never-written key,
//!   which no listing of current objects shows and which the bucket
//!   lifecycle rule of `docs/STORAGE.md` (`ExpiredObjectDeleteMarker`)
//!   removes.
//! - **maintenance log** (Object Lock only): a create-only `PutObject` of
//!   [`MAINTENANCE_PROBE`], which `init` wrote with the same bytes. With the
//!   permission the storage refuses the write as a precondition failure
//!   (412: the object exists) and the bytes compare equal; without it,
//!   403. Nothing is written either way.

use crate::backend::Backend;
use crate::error::{Error, Result};

use super::Repository;

/// The role that backs up: put, get, list; delete only under `locks/`.
pub const ROLE_BACKUP: &str = "backup host";
/// The role that also deletes and changes retention: forget, prune, key remove.
pub const ROLE_MAINTENANCE: &str = "maintenance host";

/// The object whose create-only re-write probes for the maintenance role.
pub const MAINTENANCE_PROBE: &str = "maintenance/probe";
const MAINTENANCE_PROBE_BYTES: &[u8] = b"cairn maintenance permission probe\n";
/// The name, in each directory, that a delete probe removes (it never exists).
pub const DELETE_PROBE: &str = "cairn-delete-probe";

/// A maintenance operation, and what it will do to the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    Forget,
    Prune,
    KeyRemove,
    /// The Object Lock retention step alone.
    Retention,
}

impl Maintenance {
    pub fn name(self) -> &'static str {
        match self {
            Maintenance::Forget => "forget",
            Maintenance::Prune => "prune",
            Maintenance::KeyRemove => "key remove",
            Maintenance::Retention => "retention extend",
        }
    }

    /// The directories it deletes objects from.
    fn deletes_in(self) -> &'static [&'static str] {
        match self {
            Maintenance::Forget => &["snapshots/"],
            Maintenance::Prune => &["data/", "index/", "marks/"],
            Maintenance::KeyRemove => &["keys/"],
            Maintenance::Retention => &[],
        }
    }

    /// Whether it writes the retention log (when the repository has Object Lock).
    fn writes_retention_log(self) -> bool {
        matches!(self, Maintenance::Prune | Maintenance::Retention)
    }
}

/// Checks, without harm, that the credential in use may do everything
/// `op` will do. `object_lock`: the repository has Object Lock.
pub fn probe(backend: &dyn Backend, op: Maintenance, object_lock: bool) -> Result<()> {
    for dir in op.deletes_in() {
        match backend.delete(&format!("{dir}{DELETE_PROBE}")) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.is_access_denied() => {
                return Err(missing(op, "s3:DeleteObject", &e.object, DELETE_PROBE));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if object_lock && op.writes_retention_log() {
        match backend.put(MAINTENANCE_PROBE, MAINTENANCE_PROBE_BYTES) {
            Ok(()) => {}
            Err(e) if e.is_access_denied() => {
                return Err(missing(op, "s3:PutObject", &e.object, "probe"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// [`probe`] for an open repository.
pub fn probe_repo(repo: &Repository, op: Maintenance) -> Result<()> {
    probe(repo.backend().as_ref(), op, repo.config().storage.object_lock.is_some())
}

/// Writes the object that [`probe`] re-writes (at `init`, with Object Lock).
pub(crate) fn create_maintenance_probe(repo: &Repository) -> Result<()> {
    repo.backend().put(MAINTENANCE_PROBE, MAINTENANCE_PROBE_BYTES)?;
    Ok(())
}

/// The error for a refused probe of `object` (its last component `name`
/// stands for the whole directory).
fn missing(op: Maintenance, permission: &str, object: &str, name: &str) -> Error {
    let dir = object.strip_suffix(name).unwrap_or(object);
    Error::MissingPermission {
        operation: op.name().to_string(),
        permission: permission.to_string(),
        object: format!("{dir}*"),
        role: ROLE_MAINTENANCE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, BackendErrorKind, BackendResult, LocalBackend, ObjectInfo};

    /// A backend whose credential may not delete outside `locks/` nor
    /// write under `maintenance/`, like the backup host role.
    struct BackupRole(LocalBackend);

    fn denied(op: &'static str, key: &str) -> BackendError {
        BackendError::new(BackendErrorKind::Permanent, op, format!("s3://b/p/{key}"), "HTTP 403 (AccessDenied)")
            .with_code(crate::backend::CODE_ACCESS_DENIED)
    }

    impl Backend for BackupRole {
        fn location(&self) -> String {
            self.0.location()
        }
        fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
            self.0.get(key)
        }
        fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
            self.0.get_range(key, offset, length)
        }
        fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
            if key.starts_with("maintenance/") {
                return Err(denied("upload", key));
            }
            self.0.put(key, data)
        }
        fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
            self.0.put_mutable(key, data)
        }
        fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
            self.0.list(prefix)
        }
        fn delete(&self, key: &str) -> BackendResult<()> {
            if !key.starts_with("locks/") {
                return Err(denied("delete", key));
            }
            self.0.delete(key)
        }
        fn stat(&self, key: &str) -> BackendResult<u64> {
            self.0.stat(key)
        }
    }

    #[test]
    fn a_backup_credential_fails_each_maintenance_probe_naming_permission_and_role() {
        let dir = tempfile::tempdir().unwrap();
        let b = BackupRole(LocalBackend::new(dir.path()));
        let cases = [
            (Maintenance::Forget, false, "s3:DeleteObject on s3://b/p/snapshots/*"),
            (Maintenance::Prune, false, "s3:DeleteObject on s3://b/p/data/*"),
            (Maintenance::KeyRemove, false, "s3:DeleteObject on s3://b/p/keys/*"),
            (Maintenance::Retention, true, "s3:PutObject on s3://b/p/maintenance/*"),
        ];
        for (op, lock, needs) in cases {
            let e = probe(&b, op, lock).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(needs) && msg.contains("maintenance host"), "{op:?}: {msg}");
            assert!(e.hint().unwrap().contains("maintenance host"));
        }
        // A retention step on a repository without Object Lock writes no log.
        probe(&b, Maintenance::Retention, false).unwrap();
    }

    #[test]
    fn the_probes_pass_with_full_permissions_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put(MAINTENANCE_PROBE, MAINTENANCE_PROBE_BYTES).unwrap();
        for op in [Maintenance::Forget, Maintenance::Prune, Maintenance::KeyRemove, Maintenance::Retention] {
            probe(&b, op, true).unwrap();
        }
        let left: Vec<String> = b.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(left, vec![MAINTENANCE_PROBE.to_string()]);
    }
}
