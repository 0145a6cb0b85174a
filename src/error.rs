//! The library's error type.
//!
//! Every error names the object at fault (a file, a repository object, a
//! snapshot) and says whether trying again can help ([`Error::is_retryable`]).
//! Errors never carry secrets: passwords and keys are not part of any
//! variant, and backend errors name buckets and keys, never credentials.
//! The binary renders them as `error:` / `Caused by:` / `hint:`.
//!
//! The storage error ([`BackendError`]) is defined here too, not in
//! `backend/`, so that this module sits below everything, the backends
//! included (`backend` re-exports it).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure a backend met, which decides whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The object does not exist.
    NotFound,
    /// Trying again will not help (permissions, missing bucket, bad request).
    Permanent,
    /// Trying again may help (timeouts, resets, 5xx, throttling).
    Transient,
}

/// A failed storage operation, naming the object and the operation.
#[derive(Debug, thiserror::Error)]
#[error("{op} `{object}` failed: {message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub op: &'static str,
    pub object: String,
    pub message: String,
    /// The storage's own error code when it gave one (`AccessDenied`,
    /// `PreconditionFailed`…), or cairn's [`CODE_ALREADY_EXISTS`].
    pub code: Option<String>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The code of a refused `put`: the key holds other bytes.
pub const CODE_ALREADY_EXISTS: &str = "ObjectExists";
/// The code of a refused request for want of a permission.
pub const CODE_ACCESS_DENIED: &str = "AccessDenied";
/// The code of a conditional write the storage refused.
pub const CODE_PRECONDITION_FAILED: &str = "PreconditionFailed";

impl BackendError {
    pub fn new(
        kind: BackendErrorKind,
        op: &'static str,
        object: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        BackendError { kind, op, object: object.into(), message: message.into(), code: None, source: None }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The error of a `put` whose key already holds other bytes.
    pub fn already_exists(object: impl Into<String>) -> Self {
        BackendError::new(
            BackendErrorKind::Permanent,
            "upload",
            object,
            "an object with other content is already stored under this key, and cairn never replaces an object",
        )
        .with_code(CODE_ALREADY_EXISTS)
    }

    pub fn from_io(op: &'static str, object: impl Into<String>, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => BackendErrorKind::NotFound,
            K::Interrupted | K::TimedOut | K::WouldBlock => BackendErrorKind::Transient,
            _ => BackendErrorKind::Permanent,
        };
        let code = (e.kind() == K::PermissionDenied).then(|| CODE_ACCESS_DENIED.to_string());
        BackendError { kind, op, object: object.into(), message: e.to_string(), code, source: Some(Box::new(e)) }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }

    /// The credential in use may not do this.
    pub fn is_access_denied(&self) -> bool {
        self.code.as_deref() == Some(CODE_ACCESS_DENIED)
    }

    /// A `put` found other bytes under its key.
    pub fn is_already_exists(&self) -> bool {
        self.code.as_deref() == Some(CODE_ALREADY_EXISTS)
    }

    /// The storage refused a conditional write (`If-None-Match: *` on an existing key).
    pub fn is_precondition_failed(&self) -> bool {
        self.code.as_deref() == Some(CODE_PRECONDITION_FAILED)
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == BackendErrorKind::Transient
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error("wrong password: none of the {slots} key slot(s) of the repository at {location} opens with it")]
    WrongPassword { location: String, slots: usize },

    #[error("the repository at {location} has no key slots (`keys/` is empty): nothing can open it")]
    NoKeySlots { location: String },

    #[error("no key slot opens with this password, and key slot `{slot}` is damaged: {detail}")]
    KeySlotDamaged { slot: String, detail: String },

    #[error("no key slot opens with this password, and key slot `{slot}` was not tried: {detail}")]
    KeySlotRefused { slot: String, detail: String },

    #[error(
        "key slot `{slot}` opens with this password, but its key does not open this repository: \
         the slot belongs to another repository"
    )]
    ForeignKeySlot { slot: String },

    #[error("none of the {tried} key slots tried opens with this password ({total} slots; at most {tried} are tried) at {location}")]
    TooManyKeySlots { location: String, tried: usize, total: usize },

    #[error("no password given")]
    NoPassword,

    #[error("{what} failed authentication: it was altered or damaged")]
    Integrity { what: String },

    #[error("malformed {what}: {detail}")]
    Format { what: String, detail: String },

    /// An object or blob is larger than its kind allows; nothing beyond the
    /// limit was read or decompressed.
    #[error("{what} is too large: {detail}")]
    TooLarge { what: String, detail: String },

    /// A tree nests deeper than [`crate::repo::walk::MAX_DEPTH`]: damage.
    #[error("tree {tree}: directories nest deeper than {limit} levels (at {path})")]
    TreeTooDeep { tree: String, path: String, limit: usize },

    /// A tree expands to more entries than the command was allowed.
    #[error("tree {tree} expands to more than {limit} entries (files, directories and others along every path)")]
    TooManyEntries { tree: String, entries: u64, limit: u64 },

    #[error("there is no cairn repository at {0}")]
    NoRepository(String),

    #[error("a repository already exists at {0}")]
    AlreadyExists(String),

    #[error("repository format version {found} is not supported (this cairn reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("no snapshot matches `{0}`")]
    SnapshotNotFound(String),

    /// A snapshot cannot be read, so which one is the newest is not known.
    #[error(
        "the newest snapshot is not known: snapshot {snapshot} cannot be read ({detail}){}, and it may be the newest",
        if *others > 0 { format!(", nor {others} other(s)") } else { String::new() }
    )]
    NewestUnknown { snapshot: String, detail: String, others: usize },

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

    /// `remedy` says how to get past the holder (it is the hint).
    #[error("the repository is locked by {holder}")]
    Locked { holder: String, remedy: String },

    #[error("not an evidence public key: {detail}")]
    InvalidPublicKey { detail: String },

    #[error("the evidence signing key `evidence/key` is missing, but {records} evidence record(s) exist")]
    EvidenceKeyMissing { records: u64 },

    /// A host's evidence key file or directory cannot be used safely.
    #[error("evidence key {}: {detail}", path.display())]
    EvidenceKeyFile { path: PathBuf, detail: String },

    /// A key command (KMS, TPM) failed to give a key or a signature.
    #[error("evidence key command: {detail}")]
    EvidenceSigner { detail: String },

    /// The repository holds snapshots but no evidence chain: it was erased,
    /// or the repository predates evidence. Never a reason to start anew.
    #[error("the repository holds {snapshots} snapshot(s) but no evidence chain")]
    EvidenceChainMissing { snapshots: usize },

    /// A snapshot time too far ahead of this machine's or the storage's clock.
    #[error("refusing snapshot time {time}: it is more than {skew_s} s ahead of the {clock} ({now})")]
    FutureTime { time: String, now: String, clock: &'static str, skew_s: u64 },
    /// A file cairn must trust (a policy it runs, a path it writes as
    /// root) could be changed by someone else; `fix` (the hint) says how
    /// to make it safe.
    #[error("refusing {}: {reason}", path.display())]
    Untrusted { path: PathBuf, reason: String, fix: String },

    /// A drill was asked to restore where it could touch live data.
    #[error("refusing drill target {}: {reason}", target.display())]
    UnsafeDrillTarget { target: PathBuf, reason: String },

    /// A FUSE file system could not be mounted or unmounted.
    #[error("{action} {}: {detail}", mountpoint.display())]
    Mount { action: &'static str, mountpoint: PathBuf, detail: String },

    /// A drill found no snapshot to restore.
    #[error("no recovery point for policy `{policy}`: {detail}")]
    NoRecoveryPoint { policy: String, detail: String },

    /// `init --immutable` on storage without S3 Object Lock.
    #[error("{location} cannot lock objects: {}", describe_lock_status(*versioning, *object_lock))]
    ObjectLockUnavailable { location: String, versioning: bool, object_lock: bool },

    /// The credential in use lacks a permission an operation needs; found
    /// before the operation changed anything.
    #[error("`{operation}` needs {permission} on {object}, which this credential does not have; it belongs to the {role} role")]
    MissingPermission { operation: String, permission: String, object: String, role: String },
}

fn describe_lock_status(versioning: bool, object_lock: bool) -> &'static str {
    match (versioning, object_lock) {
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
            Error::NoKeySlots { .. } => Some(
                "the key slots were deleted: restore `keys/` from a copy of the repository; without a slot the \
                 data cannot be decrypted"
                    .into(),
            ),
            Error::KeySlotDamaged { slot, .. } => Some(format!(
                "if your password belongs to `{slot}`, restore that file from a copy of the repository; \
                 otherwise check the password. Any other password still opens the repository, and \
                 `cairn key remove` can then remove the damaged slot"
            )),
            Error::KeySlotRefused { slot, .. } => Some(format!(
                "cairn never writes such a slot, so someone planted `{slot}` (or it is damaged): check the password, \
                 and remove the slot with `cairn key remove` using a password that opens the repository"
            )),
            Error::ForeignKeySlot { slot } => Some(format!(
                "`{slot}` was copied from another repository: use the password of one of this repository's own \
                 slots, and remove the copy with `cairn key remove`"
            )),
            Error::TooManyKeySlots { .. } => Some(
                "set CAIRN_KEY_ID to the id (or a prefix) of your password's key slot, which is then tried first; \
                 `cairn key list` shows the ids"
                    .into(),
            ),
            Error::NoPassword => {
                Some("set CAIRN_PASSWORD, pass --password-file FILE, or set CAIRN_PASSWORD_COMMAND".into())
            }
            Error::NoRepository(_) => Some("create one with `cairn init`".into()),
            Error::SnapshotNotFound(_) | Error::AmbiguousSnapshot(_) => {
                Some("`cairn snapshots` lists the snapshots; give a longer id prefix or `latest`".into())
            }
            Error::NewestUnknown { .. } => Some(
                "name a snapshot explicitly or run `cairn check`. `cairn snapshots` lists the snapshots, damaged \
                 ones included; a damaged snapshot comes back from a copy of the repository, or is deleted from \
                 `snapshots/` in the storage"
                    .into(),
            ),
            Error::Integrity { .. } => {
                Some("run `cairn check --read-data` to find every damaged object and the files it affects".into())
            }
            Error::TooLarge { .. } => Some(
                "the object is damaged or was forged by someone with the password; cairn refuses to expand it \
                 past the limit of its kind (docs/FORMAT.md, \"Limits\"). `cairn check` lists every such object"
                    .into(),
            ),
            Error::TreeTooDeep { .. } => Some(
                "no file system nests that deep: the tree is damaged or forged. `cairn check` names the \
                 snapshots it affects; restore another snapshot"
                    .into(),
            ),
            Error::TooManyEntries { limit, .. } => Some(format!(
                "If the snapshot is genuine, raise the limit with --max-entries (now {limit}); a \
                 forged tree can repeat one subtree to make billions of paths, which `cairn check` shows as a \
                 few trees"
            )),
            Error::Locked { remedy, .. } => Some(remedy.clone()),
            Error::Untrusted { fix, .. } => Some(fix.clone()),
            Error::UnsafeDrillTarget { .. } => Some(
                "a drill restores into an empty scratch directory away from the policy's sources; \
                 give an empty --target elsewhere, or leave it out to use <state>/scratch"
                    .into(),
            ),
            Error::Mount { .. } => Some(
                "mounting needs the FUSE device /dev/fuse (`modprobe fuse`) and, unless run as root, \
                 fusermount3 from fuse3 (`apt-get install fuse3`); `fusermount3 -u MOUNTPOINT` or \
                 `umount MOUNTPOINT` undoes a mount left behind"
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
            Error::EvidenceKeyFile { .. } => Some(
                "a host key must be a file of its own (no symlink), owned by the user cairn runs as, mode 0600, \
                 in a directory only that user may enter; `cairn evidence enroll` makes one"
                    .into(),
            ),
            Error::EvidenceSigner { .. } => Some(
                "the command runs as `sh -c COMMAND` with CAIRN_EVIDENCE_OP=public (print the public key) or \
                 sign (sign stdin, print the base64 signature); try it by hand"
                    .into(),
            ),
            Error::EvidenceChainMissing { .. } => Some(
                "cairn never starts a new chain under existing snapshots: someone may have erased `evidence/`. \
                 Restore it from a copy (or from the bucket's object versions); if this repository was made \
                 before cairn kept evidence, `cairn evidence adopt` starts its chain with a record of every \
                 snapshot it holds"
                    .into(),
            ),
            Error::FutureTime { .. } => Some(
                "check this machine's clock (and the time given with --time); a snapshot from the future would \
                 count as the newest recovery point for ever"
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
