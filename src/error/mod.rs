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
//! included (`backend` re-exports it). What each error suggests is in
//! `hint.rs`; where warnings go, in `warnings.rs`.

mod hint;
mod warnings;

pub use warnings::{CollectWarnings, LogWarnings, WarningSink, Warnings};

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
/// cairn's code for storage it could not connect to (refused, reset,
/// timed out, name not resolved): no request reached it.
pub const CODE_UNREACHABLE: &str = "Unreachable";

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

    /// A snapshot uses a blob that no index file lists: prune stops before
    /// it deletes anything, as the blob's pack looks unused.
    #[error(
        "blob {blob}, used by a snapshot, is in no index: prune refuses to run, as it could delete the blob's pack"
    )]
    UsedBlobNotIndexed { blob: String },

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

    // ---- Where the repository is ----
    /// No `--repo` and no `CAIRN_REPO`.
    #[error("no repository given")]
    NoRepositoryGiven,

    /// A repository URL cairn cannot read.
    #[error("repository URL `{url}`: {problem}")]
    BadRepositoryUrl { url: String, problem: String },

    /// `--as-of` on storage that keeps no earlier versions of objects.
    #[error("--as-of reads earlier versions of objects, which only a versioned S3 bucket keeps; `{url}` is not an s3:// URL")]
    AsOfNeedsVersions { url: String },

    /// Several `--repo` for a command that works on one.
    #[error("{count} repositories given: this command works on one (`evidence verify`, and `report` and `status` with --keys, take several)")]
    SeveralRepositories { count: usize },

    // ---- Passwords and key slots ----
    /// An empty password (`what` says whose: `the password`, `the policy's password source`…).
    #[error("{what} is empty")]
    EmptyPassword { what: &'static str },

    /// The two passwords typed at a prompt differ.
    #[error("the passwords do not match")]
    PasswordsDiffer,

    /// A password command (`CAIRN_PASSWORD_COMMAND`, a policy's
    /// `password_command`) failed; `how` is `exited with status 1`…
    #[error("{what} {how}")]
    PasswordCommandFailed { what: &'static str, how: String },

    /// A policy's `password_env` names a variable that is not set.
    #[error("password_env: the environment variable {var} is not set")]
    PasswordEnvUnset { var: String },

    /// Key derivation settings cairn does not write.
    #[error("key derivation settings: {detail}")]
    KdfSettings { detail: String },

    #[error("no key slot matches `{prefix}`")]
    KeySlotNotFound { prefix: String },

    #[error("key slot prefix `{prefix}` is ambiguous")]
    AmbiguousKeySlot { prefix: String },

    /// `key remove` of the slot the password in use opens.
    #[error("key slot {slot} is the one your password opens; remove it using another password")]
    RemovingOwnKeySlot { slot: String },

    #[error("refusing to remove the last key slot")]
    LastKeySlot,

    // ---- Command-line values cairn checks after parsing ----
    /// A flag's value cairn cannot use; `expected` says what it takes.
    #[error("{flag} `{value}`: {expected}")]
    BadFlag { flag: String, value: String, expected: String },

    /// Flags that cannot go together, or a flag that needs another.
    #[error("{0}")]
    FlagConflict(String),

    /// `cairn man NAME` of a name that is no command.
    #[error("`{0}` is not a cairn command")]
    UnknownCommand(String),

    /// A glob or regular expression that does not compile.
    #[error("{what} `{pattern}`: {detail}")]
    BadPattern { what: &'static str, pattern: String, detail: String },

    // ---- Policies ----
    /// No valid policy of that name; `problems` in the directory's files.
    #[error(
        "no valid policy named `{name}` in {}{}",
        dir.display(),
        if *problems > 0 {
            format!(" ({problems} problem(s) in the policy files; `cairn policy validate --policies {}` lists them)", dir.display())
        } else {
            String::new()
        }
    )]
    PolicyNotFound { name: String, dir: PathBuf, problems: usize },

    /// A policy whose retention keeps everything was asked to forget.
    #[error("policy `{policy}` ({}) has no retention rule, so it keeps every snapshot: nothing to forget", file.display())]
    NoRetentionRule { policy: String, file: PathBuf },

    /// Retention rules cairn refuses (`--keep-*`, a policy's `[retention]`).
    #[error("{0}")]
    BadRetention(String),

    /// A drill setting or input out of range (`sample_percent`, `--seed`).
    #[error("{0}")]
    BadDrillSetting(String),

    /// `drill --snapshot` names a snapshot of another policy.
    #[error("snapshot {snapshot} is not a snapshot of policy `{policy}` ({owner})")]
    NotPolicySnapshot { snapshot: String, policy: String, owner: String },

    // ---- Files and paths given ----
    #[error("nothing to back up: give at least one path{}", if *stdin { ", or --stdin" } else { "" })]
    NothingToBackUp { stdin: bool },

    #[error("backing up `/` itself: name the directories below it")]
    BackupOfRoot,

    #[error("stream name `{0}` must be a plain file name")]
    BadStreamName(String),

    /// A path that must be a directory is not.
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    /// `dump` of something that is not a regular file.
    #[error("`{0}` is not a regular file")]
    NotARegularFile(String),

    /// A directory that must be empty is not (mountpoint, export).
    #[error("{} is not empty: {why}", path.display())]
    NotEmpty { path: PathBuf, why: &'static str },

    // ---- The daemon ----
    #[error("no running cairn daemon for the state directory {} (no one listens on {})", state_dir.display(), socket.display())]
    DaemonNotRunning { state_dir: PathBuf, socket: PathBuf },

    #[error("cannot reach the daemon's socket {}: permission denied (only root and the daemon's user may use it)", socket.display())]
    DaemonSocketDenied { socket: PathBuf },

    #[error("the daemon refused: {0}")]
    DaemonRefused(String),

    #[error("another cairn daemon (pid {pid}) uses the state directory {}", state_dir.display())]
    DaemonRunning { pid: String, state_dir: PathBuf },

    /// A `--listen` address the daemon refuses to serve on.
    #[error("--listen {addr}: {reason}")]
    UnsafeListen { addr: String, reason: String },

    /// A `--listen-token-file` too short to guard the API.
    #[error("{}: the token is shorter than 16 characters", path.display())]
    WeakToken { path: PathBuf },

    // ---- Evidence ----
    /// The repository's evidence is signed by host keys and this process has none.
    #[error("{0}")]
    NoHostKey(String),

    /// A record this process was asked to append is not one cairn writes.
    #[error("{0}")]
    BadEvidenceRecord(String),

    /// An evidence command that has nothing to work on.
    #[error("{0}")]
    NoEvidence(String),

    /// The trusted keys file (`verify --keys`) has a bad line.
    #[error("keys file {file}, line {line}: {detail}")]
    BadKeysFile { file: String, line: usize, detail: String },

    /// `evidence verify`, or a report or status from evidence, without
    /// what it needs to trust or read.
    #[error("{0}")]
    VerifyNeeds(String),

    // ---- Copies ----
    /// `cairn copy` with no password source for the destination.
    #[error("no password for the destination repository")]
    CopyNeedsPassword,

    /// The destination of a copy is its source.
    #[error("the destination is the source repository ({repository}): a copy goes to another repository")]
    CopyIntoItself { repository: String },

    /// A policy's copy, or a drill from it, for a policy without `[copy]`.
    #[error("policy `{policy}` has no [copy] section: {consequence}")]
    NoCopySection { policy: String, consequence: &'static str },

    /// A snapshot the source's evidence check holds, named for a copy.
    #[error(
        "snapshot {snapshot} is held by the evidence check of the source ({why}): it is not copied until accepted"
    )]
    SnapshotHeld { snapshot: String, why: String },

    // ---- Object Lock ----
    #[error("the repository at {location} has no Object Lock (it was made without `init --immutable`)")]
    NotImmutable { location: String },

    #[error(
        "another retention step recorded pass {seq} at the same time; this pass's extensions stand, \
         run `cairn retention extend` again to record it"
    )]
    RetentionStepRace { seq: u64 },

    /// Settings a new repository cannot have (chunk sizes, pack size…).
    #[error("repository settings: {0}")]
    BadRepositorySettings(String),

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

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub fn format(what: impl Into<String>, detail: impl std::fmt::Display) -> Error {
        Error::Format { what: what.into(), detail: detail.to_string() }
    }
}
