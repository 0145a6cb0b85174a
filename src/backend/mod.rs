//! Storage backends: one small trait, several implementations.
//!
//! A backend stores opaque, immutable objects under slash-separated keys
//! (`data/3f/3f9a…`, `snapshots/…`). It knows nothing of encryption or
//! formats; [`crate::repo`] builds the repository on top of it. The trait is
//! synchronous: the engine gets its parallelism from worker threads, and a
//! network backend drives its own async runtime behind these calls.
//!
//! Contract every implementation keeps:
//! - `put` is atomic and durable: once it returns, the whole object is
//!   stored and survives a crash; a crash before leaves no object (or only
//!   a temporary that `list` never shows).
//! - `put` never replaces an object: when the key exists with the same
//!   bytes it succeeds (a retried upload), with other bytes it fails with
//!   an error that names the key ([`BackendError::is_already_exists`]).
//!   Only keys under [`MUTABLE_PREFIX`] change, through `put_mutable`.
//! - `get_range` returns exactly the bytes asked for, or an error.
//! - `list` returns every object under a prefix, with its size.

pub mod as_of;
pub mod discard;
#[cfg(test)]
mod forwarding_tests;
pub mod limit;
pub mod local;
#[cfg(test)]
pub(crate) mod meeting;
pub mod object_lock;
pub mod parts;
pub mod s3;
mod s3_clock;
mod s3_lock;
mod s3_put;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// For test wrappers that watch one kind of read: the writes, listings,
/// deletes and stats of a [`Backend`], passed to the wrapped `self.inner`.
#[cfg(test)]
macro_rules! forward_writes_and_listings_to_inner {
    () => {
        fn put(&self, key: &str, data: &[u8]) -> $crate::backend::BackendResult<()> {
            self.inner.put(key, data)
        }
        fn put_mutable(&self, key: &str, data: &[u8]) -> $crate::backend::BackendResult<()> {
            self.inner.put_mutable(key, data)
        }
        fn list(&self, prefix: &str) -> $crate::backend::BackendResult<Vec<$crate::backend::ObjectInfo>> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> $crate::backend::BackendResult<()> {
            self.inner.delete(key)
        }
        fn stat(&self, key: &str) -> $crate::backend::BackendResult<u64> {
            self.inner.stat(key)
        }
    };
}
#[cfg(test)]
pub(crate) use forward_writes_and_listings_to_inner;

pub use as_of::AsOfBackend;
pub use local::LocalBackend;
pub use object_lock::{BucketLockStatus, LockMode, ObjectLock, WritePolicy};
pub use s3::{S3Backend, S3Options};

pub use crate::error::{
    BackendError, BackendErrorKind, BackendResult, CODE_ACCESS_DENIED, CODE_ALREADY_EXISTS, CODE_PRECONDITION_FAILED,
    CODE_UNREACHABLE,
};

/// The one prefix under which objects may be replaced or deleted by any
/// credential: locks, and probes that leave nothing behind. A bucket
/// policy can then allow `s3:DeleteObject` here and nowhere else.
pub const MUTABLE_PREFIX: &str = "locks/";

/// Whether `key` lives under [`MUTABLE_PREFIX`].
pub fn is_mutable_key(key: &str) -> bool {
    key.starts_with(MUTABLE_PREFIX)
}

/// The error for a `put_mutable` outside [`MUTABLE_PREFIX`]: a bug in the
/// caller, refused before any request.
pub(crate) fn refuse_mutable(key: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Permanent,
        "replace",
        key,
        format!("only objects under `{MUTABLE_PREFIX}` may be replaced; every other object is written once"),
    )
}

/// An object found by [`Backend::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When the storage stored it (its clock), when it says.
    pub modified: Option<DateTime<Utc>>,
}

/// A temporary object a killed write left behind (the local backend's
/// `.tmp-*` files), which is never part of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its key, relative to the repository root like an object's.
    pub key: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The storage trait. Keys are relative, slash-separated, never absolute.
pub trait Backend: Send + Sync {
    /// Where the repository lives, for messages and reports; no secrets.
    fn location(&self) -> String;
    fn get(&self, key: &str) -> BackendResult<Vec<u8>>;
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>>;
    /// Stores a new object; never replaces one (see the module's contract).
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()>;
    /// Stores or replaces an object under [`MUTABLE_PREFIX`] (a lock);
    /// refuses any other key.
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()>;
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>>;
    fn delete(&self, key: &str) -> BackendResult<()>;
    /// The size of an object; `NotFound` when it does not exist.
    fn stat(&self, key: &str) -> BackendResult<u64>;
    /// Stores a data pack (cold storage classes apply to these only).
    /// Its name is its hash, as for [`Backend::put_hashed`].
    fn put_data_pack(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.put(key, data)
    }
    /// Stores a new object whose name ends in the hex BLAKE3 hash of
    /// `data` (a pack, an index file, a snapshot): an object already under
    /// that name holds these very bytes, so writing it again replaces
    /// nothing, and storage that ignores `If-None-Match` is not asked first
    /// whether it exists (one round trip less per object).
    fn put_hashed(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.put(key, data)
    }
    /// Stores a new object under a key that a listing, made while holding
    /// the lock that serialises every writer of such keys, did not find
    /// (an evidence record, and the head naming it): storage that ignores
    /// `If-None-Match` is not asked again whether it exists (one round
    /// trip less). Storage that honours it still refuses to replace one.
    fn put_known_absent(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.put(key, data)
    }
    /// Deletes several objects (batched where the backend can).
    fn delete_many(&self, keys: &[String]) -> BackendResult<()> {
        keys.iter().try_for_each(|k| self.delete(k))
    }
    /// Requests worth having in flight at once.
    fn concurrency(&self) -> usize {
        2
    }
    /// Whether requests cross a network (then metadata is cached locally).
    fn is_remote(&self) -> bool {
        false
    }
    /// Whether every write is refused (a view of the past, `--as-of`).
    fn is_read_only(&self) -> bool {
        false
    }
    /// How to write from now on, from the repository config: whether the
    /// storage honours `If-None-Match: *` and the Object Lock retention.
    fn set_write_policy(&self, _policy: &WritePolicy) {}
    /// Whether the storage refuses `If-None-Match: *` on an existing key.
    /// Writes and removes one probe object under [`MUTABLE_PREFIX`].
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        Ok(false)
    }
    /// Whether the bucket has versioning and Object Lock enabled.
    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        Ok(BucketLockStatus::default())
    }
    /// Sets the retention of the current version of `key` to `until`
    /// (never shortens it: a storage refusal because the object is already
    /// locked longer is success).
    fn extend_retention(&self, key: &str, _mode: LockMode, _until: DateTime<Utc>) -> BackendResult<()> {
        Err(object_lock::unsupported(key, "extend the retention of"))
    }
    /// The retain-until date of the current version of `key`, if any.
    fn retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        Err(object_lock::unsupported(key, "read the retention of"))
    }
    /// Temporaries of interrupted writes; none where `put` leaves none.
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        Ok(Vec::new())
    }
    /// The storage server's clock, as its last response said (S3's `Date`
    /// header); `None` for storage without a clock of its own (a local
    /// directory) or before any response.
    fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }
    /// Deletes one of [`Backend::leftovers`] by its key; nothing else.
    fn delete_leftover(&self, key: &str) -> BackendResult<()> {
        Err(BackendError::new(
            BackendErrorKind::Permanent,
            "delete leftover",
            key,
            "this backend leaves no temporaries",
        ))
    }
}

impl<T: Backend + ?Sized> Backend for Arc<T> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        (**self).get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        (**self).put(key, data)
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        (**self).put_mutable(key, data)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        (**self).delete(key)
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        (**self).stat(key)
    }
    fn put_data_pack(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        (**self).put_data_pack(key, data)
    }
    fn put_hashed(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        (**self).put_hashed(key, data)
    }
    fn put_known_absent(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        (**self).put_known_absent(key, data)
    }
    fn delete_many(&self, keys: &[String]) -> BackendResult<()> {
        (**self).delete_many(keys)
    }
    fn concurrency(&self) -> usize {
        (**self).concurrency()
    }
    fn is_remote(&self) -> bool {
        (**self).is_remote()
    }
    fn is_read_only(&self) -> bool {
        (**self).is_read_only()
    }
    fn set_write_policy(&self, policy: &WritePolicy) {
        (**self).set_write_policy(policy)
    }
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        (**self).probe_conditional_put()
    }
    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        (**self).bucket_lock_status()
    }
    fn extend_retention(&self, key: &str, mode: LockMode, until: DateTime<Utc>) -> BackendResult<()> {
        (**self).extend_retention(key, mode, until)
    }
    fn retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        (**self).retention(key)
    }
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        (**self).leftovers()
    }
    fn delete_leftover(&self, key: &str) -> BackendResult<()> {
        (**self).delete_leftover(key)
    }
    fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        (**self).server_time()
    }
}

/// Counts of requests made through a [`CountingBackend`].
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub get: AtomicU64,
    pub get_range: AtomicU64,
    pub put: AtomicU64,
    pub list: AtomicU64,
    pub delete: AtomicU64,
    pub stat: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        [&self.get, &self.get_range, &self.put, &self.list, &self.delete, &self.stat]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "GET {} / range GET {} / PUT {} / LIST {} / DELETE {} / HEAD {}; {} bytes down, {} bytes up",
            l(&self.get),
            l(&self.get_range),
            l(&self.put),
            l(&self.list),
            l(&self.delete),
            l(&self.stat),
            l(&self.bytes_in),
            l(&self.bytes_out)
        )
    }
}

/// A layer that counts every request, for tests and `--stats`.
pub struct CountingBackend<B> {
    inner: B,
    pub counts: Arc<RequestCounts>,
}

impl<B: Backend> CountingBackend<B> {
    pub fn new(inner: B) -> Self {
        CountingBackend { inner, counts: Arc::default() }
    }
}

impl<B: Backend> Backend for CountingBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.counts.get.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.get(key)?;
        self.counts.bytes_in.fetch_add(r.len() as u64, Ordering::Relaxed);
        Ok(r)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        self.counts.get_range.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.get_range(key, offset, length)?;
        self.counts.bytes_in.fetch_add(r.len() as u64, Ordering::Relaxed);
        Ok(r)
    }
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.put(key, data)
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.put_mutable(key, data)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.counts.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        self.counts.delete.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key)
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.counts.stat.fetch_add(1, Ordering::Relaxed);
        self.inner.stat(key)
    }
    fn put_data_pack(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.put_data_pack(key, data)
    }
    fn put_hashed(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.put_hashed(key, data)
    }
    fn put_known_absent(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.put_known_absent(key, data)
    }
    fn delete_many(&self, keys: &[String]) -> BackendResult<()> {
        self.counts.delete.fetch_add(keys.len().div_ceil(1000) as u64, Ordering::Relaxed);
        self.inner.delete_many(keys)
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn set_write_policy(&self, policy: &WritePolicy) {
        self.inner.set_write_policy(policy)
    }
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        self.inner.probe_conditional_put()
    }
    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        self.inner.bucket_lock_status()
    }
    fn extend_retention(&self, key: &str, mode: LockMode, until: DateTime<Utc>) -> BackendResult<()> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.inner.extend_retention(key, mode, until)
    }
    fn retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        self.counts.stat.fetch_add(1, Ordering::Relaxed);
        self.inner.retention(key)
    }
    /// Not counted: no backend that has leftovers makes requests for them.
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        self.inner.leftovers()
    }
    fn delete_leftover(&self, key: &str) -> BackendResult<()> {
        self.counts.delete.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_leftover(key)
    }
    fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.inner.server_time()
    }
}

/// Settings that apply to some kinds of repository URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_path_style: Option<bool>,
    pub s3_storage_class: Option<String>,
    pub s3_concurrency: Option<usize>,
    /// A named AWS profile instead of the default chain's (see [`S3Options::profile`]).
    pub s3_profile: Option<String>,
    /// Read the repository as it was at this time (a versioned S3 bucket;
    /// see [`AsOfBackend`]).
    pub as_of: Option<DateTime<Utc>>,
}

/// Opens the backend a repository URL names: a plain path, `file:///path`
/// or `s3://bucket[/prefix]`.
pub fn open_url(url: &str, o: &OpenOptions) -> Result<Arc<dyn Backend>, crate::Error> {
    if o.as_of.is_some() && !url.starts_with("s3://") {
        return Err(crate::Error::AsOfNeedsVersions { url: url.to_string() });
    }
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(Arc::new(LocalBackend::new(rest)));
    }
    if url.starts_with("s3://") {
        let mut s = S3Options::from_url(url)
            .map_err(|problem| crate::Error::BadRepositoryUrl { url: url.to_string(), problem })?;
        s.endpoint = o.s3_endpoint.clone();
        s.region = o.s3_region.clone();
        s.path_style = o.s3_path_style;
        s.storage_class = o.s3_storage_class.clone();
        if let Some(c) = o.s3_concurrency {
            s.concurrency = c.max(1);
        }
        s.profile = o.s3_profile.clone();
        let b = S3Backend::new(s)?;
        return match o.as_of {
            Some(at) => Ok(Arc::new(AsOfBackend::new(b, at)?)),
            None => Ok(Arc::new(b)),
        };
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(crate::Error::BadRepositoryUrl {
            url: url.to_string(),
            problem: format!("unknown scheme `{scheme}` (use a path, file:///path or s3://bucket/prefix)"),
        });
    }
    if url.is_empty() {
        return Err(crate::Error::BadRepositoryUrl { url: String::new(), problem: "the URL is empty".into() });
    }
    Ok(Arc::new(LocalBackend::new(url)))
}
