//! The library's error type.
//!
//! Every error names the object at fault (a file, a repository object, a
//! snapshot) and says whether trying again can help ([`Error::is_retryable`]).
//! Errors never carry secrets: passwords and keys are not part of any
//! variant, and backend errors name buckets and keys, never credentials.
//! The binary renders them as `error:` / `Caused by:` / `hint:`.

use std::path::PathBuf;

use crate::backend::BackendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error("wrong password: none of the {slots} key slot(s) of the repository at {location} opens with it")]
    WrongPassword { location: String, slots: usize },

    #[error("no password given")]
    NoPassword,

    #[error("{what} failed authentication: it was altered or damaged")]
    Integrity { what: String },

    #[error("malformed {what}: {detail}")]
    Format { what: String, detail: String },

    #[error("there is no cairn repository at {0}")]
    NoRepository(String),

    #[error("a repository already exists at {0}")]
    AlreadyExists(String),

    #[error("repository format version {found} is not supported (this cairn reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("no snapshot matches `{0}`")]
    SnapshotNotFound(String),

    #[error("snapshot prefix `{0}` matches more than one snapshot")]
    AmbiguousSnapshot(String),

    #[error("`{path}` is not in snapshot {snapshot}")]
    PathNotFound { snapshot: String, path: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    InvalidArgument(String),

    /// A pipeline stage stopped because another one failed; that failure
    /// is the real error and is reported instead where it is known.
    #[error("the {0} stopped")]
    Stopped(&'static str),

    /// The state database (job runs, schedules, drills) could not be used.
    #[error("state database {path}: {detail}")]
    State { path: PathBuf, detail: String },

    #[error("the repository is locked by {holder}")]
    Locked { holder: String },

    #[error("not an evidence public key: {detail}")]
    InvalidPublicKey { detail: String },

    #[error("the evidence signing key `evidence/key` is missing, but {records} evidence record(s) exist")]
    EvidenceKeyMissing { records: u64 },

    /// A drill was asked to restore where it could touch live data.
    #[error("refusing drill target {}: {reason}", target.display())]
    UnsafeDrillTarget { target: PathBuf, reason: String },

    /// A drill found no snapshot to restore.
    #[error("no recovery point for policy `{policy}`: {detail}")]
    NoRecoveryPoint { policy: String, detail: String },

    /// `init --immutable` on storage without S3 Object Lock.
    #[error("{location} cannot lock objects: {}", describe_lock_status(status))]
    ObjectLockUnavailable { location: String, status: crate::backend::BucketLockStatus },

    /// The credential in use lacks a permission an operation needs; found
    /// before the operation changed anything.
    #[error("`{operation}` needs {permission} on {object}, which this credential does not have; it belongs to the {role} role")]
    MissingPermission { operation: String, permission: String, object: String, role: String },
}

fn describe_lock_status(s: &crate::backend::BucketLockStatus) -> &'static str {
    match (s.versioning, s.object_lock) {
        (_, false) => "the bucket has no S3 Object Lock (or the storage does not implement it)",
        (false, true) => "the bucket has Object Lock but no versioning",
        (true, true) => "the bucket has versioning and Object Lock",
    }
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_retryable(),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            Error::Locked { .. } => true,
            _ => false,
        }
    }

    /// A suggestion for the user, shown as `hint:` under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::WrongPassword { .. } => Some(
                "check CAIRN_PASSWORD, --password-file or CAIRN_PASSWORD_COMMAND; \
                 `cairn key list` shows the slots once you are in"
                    .into(),
            ),
            Error::NoPassword => {
                Some("set CAIRN_PASSWORD, pass --password-file FILE, or set CAIRN_PASSWORD_COMMAND".into())
            }
            Error::NoRepository(_) => Some("create one with `cairn init`".into()),
            Error::SnapshotNotFound(_) | Error::AmbiguousSnapshot(_) => {
                Some("`cairn snapshots` lists the snapshots; give a longer id prefix or `latest`".into())
            }
            Error::Integrity { .. } => {
                Some("run `cairn check --read-data` to find every damaged object and the files it affects".into())
            }
            Error::Locked { .. } => Some("wait for the other operation to finish".into()),
            Error::UnsafeDrillTarget { .. } => Some(
                "a drill restores into an empty scratch directory away from the policy's sources; \
                 give an empty --target elsewhere, or leave it out to use <state>/scratch"
                    .into(),
            ),
            Error::NoRecoveryPoint { .. } => Some(
                "back the policy up first (`cairn backup --policy NAME`); `cairn snapshots` lists snapshots".into(),
            ),
            Error::State { .. } => {
                Some("check the state directory (--state DIR or CAIRN_STATE_DIR) and its permissions".into())
            }
            Error::ObjectLockUnavailable { .. } => Some(
                "create the bucket with Object Lock enabled (`aws s3api create-bucket … \
                 --object-lock-enabled-for-bucket`), or run init without --immutable; docs/STORAGE.md has the steps"
                    .into(),
            ),
            Error::MissingPermission { role, .. } => Some(format!(
                "run it with the {role} credential (e.g. --s3-profile NAME); docs/STORAGE.md lists each role's permissions"
            )),
            Error::InvalidPublicKey { .. } => Some(
                "give the key exactly as `cairn evidence pubkey` prints it: one line `cairn-evidence-ed25519:<base64>`"
                    .into(),
            ),
            Error::EvidenceKeyMissing { .. } => Some(
                "restore `evidence/key` from a copy of the repository; cairn does not sign with a new key, \
                 because the records signed with the old one would no longer verify"
                    .into(),
            ),
            _ => None,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub fn format(what: impl Into<String>, detail: impl std::fmt::Display) -> Error {
        Error::Format { what: what.into(), detail: detail.to_string() }
    }
}
