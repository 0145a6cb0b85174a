//! The repository: the on-disk format on top of a storage backend.
//!
//! Object layout (keys in the backend; see `docs/FORMAT.md`):
//! - `cairn`: plaintext marker `{"format":"cairn","version":1,"id":…}`;
//! - `keys/<id>`: key slots, plaintext JSON wrapping the master key;
//! - `config`: sealed JSON with the chunker, compression and pack sizes;
//! - `data/<2 hex>/<id>`: packs of data or tree blobs;
//! - `index/<id>`: sealed index files;
//! - `snapshots/<id>`: sealed snapshots;
//! - `evidence/…`: the signed evidence chain and its key (see [`crate::evidence`]);
//! - `locks/…`: locks, the only objects ever replaced or removed outside
//!   maintenance (see [`crate::backend::MUTABLE_PREFIX`]);
//! - `marks/<id>`: the packs a prune found unused and deletes later (see [`marks`]);
//! - `maintenance/…`: with Object Lock, the retention step's log and the
//!   maintenance permission probe (see [`object_lock`], [`duties`]).
//!
//! Everything but the marker and the key slots is sealed, and nothing is
//! used before its seal is opened: that is invariant 1.

pub mod blob;
pub mod cache;
mod config;
pub use config::{Config, StorageSettings};
pub mod duties;
mod fetch;
pub mod index;
pub mod index_file;
pub mod keys;
pub mod keyset;
pub mod limits;
pub mod litter;
mod load_index;
mod opening;
pub use load_index::PackFilter;
pub mod lock;
pub mod marks;
pub mod object_lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod undelete;
pub mod walk;
pub mod write_start;
pub mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ObjectLock};
use crate::chunk::ChunkerParams;
use crate::crypto::{KdfParams, MasterKey};
use crate::error::{Error, LogWarnings, Result, WarningSink};
use crate::id::Id;

pub use index::{BlobLocation, Index, IndexBuilder, IndexFile, IndexMode, PackInfo};
pub use snapshot::{Snapshot, Summary};
pub use tree::{Node, NodeKind, Tree};

/// The repository format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const MARKER_KEY: &str = "cairn";
pub const CONFIG_KEY: &str = "config";
/// The evidence signing key's object (`crate::evidence::key::KEY_OBJECT`),
/// which opening probes without depending on the evidence module.
pub(crate) const EVIDENCE_KEY_OBJECT: &str = "evidence/key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
}

impl BlobKind {
    pub fn from_u8(b: u8) -> Option<BlobKind> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    version: u32,
    id: Id,
}

/// Why slots that opened with the password gave keys that do not open the
/// config: if one of those keys opens another sealed object of this
/// repository, the key is right and the config is damaged; otherwise the
/// slot came from another repository.
fn misfit_error(backend: &dyn Backend, misfits: &[keys::Unlocked]) -> Error {
    let config_damaged = || Error::Integrity { what: format!("object `{CONFIG_KEY}`") };
    let mut probes: Vec<String> = vec![crate::repo::EVIDENCE_KEY_OBJECT.to_string()];
    for dir in ["index/", "snapshots/", "locks/"] {
        if let Ok(list) = backend.list(dir) {
            probes.extend(list.into_iter().take(2).map(|o| o.key));
        }
    }
    for p in probes {
        let Ok(bytes) = backend.get(&p) else { continue };
        if misfits.iter().any(|u| u.key.open(&bytes).is_ok()) {
            return config_damaged();
        }
    }
    Error::ForeignKeySlot { slot: format!("keys/{}", misfits[0].slot) }
}

/// Parses the plaintext of `snapshots/<id>`.
fn decode_snapshot(id: &Id, plain: &[u8]) -> Result<Snapshot> {
    Snapshot::decode(plain).map_err(|e| Error::format(format!("snapshot `snapshots/{id}`"), e))
}

/// Turns a blob or object decoding error about `what` into the library's
/// error: a size limit is [`Error::TooLarge`], anything else damage.
pub(crate) fn blob_error(what: String, e: blob::BlobError) -> Error {
    if e.is_size_limit() {
        Error::TooLarge { what, detail: e.to_string() }
    } else {
        Error::Integrity { what: format!("{what} ({e})") }
    }
}

/// Whether a snapshot time lies more than [`lock::MAX_CLOCK_SKEW`] after
/// `now`: no honest writer makes one (`backup` refuses to), so it is never
/// the newest recovery point, `latest`, or a reason for retention.
pub fn is_future(time: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    time > now + chrono::Duration::from_std(lock::MAX_CLOCK_SKEW).expect("small")
}

/// Choices made at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression: i32,
    pub pack_size: u32,
    pub kdf: KdfParams,
    /// Lock every object with S3 Object Lock (the bucket must have it on).
    pub object_lock: Option<ObjectLock>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression: 3,
            pack_size: 16 * 1024 * 1024,
            kdf: KdfParams::default(),
            object_lock: None,
        }
    }
}

/// The one item whose id starts with the hex prefix `spec` (any case);
/// "no snapshot matches" or "more than one" otherwise.
pub fn by_id_prefix<'a, T>(items: &'a [T], id_of: impl Fn(&T) -> Id, spec: &str) -> Result<&'a T> {
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.is_empty() || !spec_l.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::SnapshotNotFound(spec.into()));
    }
    let mut matches = items.iter().filter(|t| id_of(t).to_hex().starts_with(&spec_l));
    match (matches.next(), matches.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(Error::SnapshotNotFound(spec.into())),
        (Some(_), Some(_)) => Err(Error::AmbiguousSnapshot(spec.into())),
    }
}

/// The snapshots of a repository ([`Repository::list_snapshots`]).
#[derive(Debug, Default)]
pub struct SnapshotList {
    /// The snapshots that open, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// The snapshots that do not open, by id, with why. Their time, host
    /// and paths are unknown: any of them may be the newest.
    pub damaged: Vec<(Id, Error)>,
}

impl SnapshotList {
    /// The snapshots, when every one of them opens. Otherwise the newest
    /// cannot be known, and anything that stands for "the newest" (the
    /// `latest` of a command, a drill's recovery point, a policy's RPO)
    /// would quietly mean an older one: [`Error::NewestUnknown`] instead.
    pub fn complete(&self) -> Result<&[(Id, Snapshot)]> {
        match self.damaged.first() {
            None => Ok(&self.snapshots),
            Some((id, e)) => Err(Error::NewestUnknown {
                snapshot: id.short(),
                detail: e.to_string(),
                others: self.damaged.len() - 1,
            }),
        }
    }
}

/// An open repository: a backend, the master key and the config.
#[derive(Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    /// The key slot the repository was opened (or created) with.
    key_slot: Id,
    config: Config,
    cache: Option<Arc<cache::Cache>>,
    /// How [`lock::acquire`] waits for a live lock in the way; `None`:
    /// it fails at once.
    lock_wait: Option<lock::LockWait>,
    /// Where warnings go (the CLI's printer, the daemon's log).
    warnings: WarningSink,
}

pub fn pack_key(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

impl Repository {
    /// Creates a repository with one key slot for `password`. It holds no
    /// evidence chain yet: `crate::jobs::init` makes the repositories
    /// `cairn init` creates, which start theirs ([`Repository::create`],
    /// then record 0, then [`Repository::publish`]).
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], opts: InitOptions) -> Result<Repository> {
        let repo = Repository::create(backend, password, opts)?;
        repo.publish()?;
        Ok(repo)
    }

    /// Stores a new repository's key slot and config, but not its marker:
    /// until [`Repository::publish`] writes it, there is no repository at
    /// that location for anyone else, and whatever else belongs to a new
    /// repository (the evidence chain's start) goes in first.
    pub fn create(backend: Arc<dyn Backend>, password: &[u8], opts: InitOptions) -> Result<Repository> {
        // Refuse anything already there, a half-made repository included:
        // its key slots would wrap another master key.
        if !backend.list("")?.is_empty() {
            return Err(Error::AlreadyExists(backend.location()));
        }
        if opts.object_lock.is_some() {
            let status = backend.bucket_lock_status()?;
            if !status.object_lock || !status.versioning {
                return Err(Error::ObjectLockUnavailable {
                    location: backend.location(),
                    versioning: status.versioning,
                    object_lock: status.object_lock,
                });
            }
        }
        // Once, here: does the storage refuse to replace an object when
        // asked not to? The answer is recorded in the config.
        let storage =
            StorageSettings { conditional_put: Some(backend.probe_conditional_put()?), object_lock: opts.object_lock };
        backend.set_write_policy(&storage.write_policy());
        let mut chunker = opts.chunker;
        if chunker.seed == 0 {
            chunker.seed = rand::random::<u64>() | 1;
        }
        let key = MasterKey::random();
        let id = Id::random();
        let config = Config {
            version: FORMAT_VERSION,
            id,
            chunker,
            compression: opts.compression,
            pack_size: opts.pack_size,
            created: Utc::now(),
            storage,
        };
        config.validate().map_err(Error::BadRepositorySettings)?;
        let key_slot = keys::add_slot(backend.as_ref(), &key, password, opts.kdf)?;
        let sealed = blob::seal_object(&key, &serde_json::to_vec(&config).expect("config serialises"));
        backend.put(CONFIG_KEY, &sealed)?;
        let repo = Repository {
            backend,
            key,
            key_slot,
            config,
            cache: None,
            lock_wait: None,
            warnings: Arc::new(LogWarnings),
        };
        if storage.object_lock.is_some() {
            duties::create_maintenance_probe(&repo)?;
        }
        Ok(repo)
    }

    /// Writes the marker of a repository made by [`Repository::create`].
    /// The marker goes last: a repository is only "there" once complete.
    pub fn publish(&self) -> Result<()> {
        let marker = Marker { format: "cairn".into(), version: FORMAT_VERSION, id: self.config.id };
        self.backend.put(MARKER_KEY, &serde_json::to_vec_pretty(&marker).expect("marker serialises"))?;
        Ok(())
    }

    /// Opens an existing repository with `password`, trying the key slots
    /// in their default order.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        Repository::open_with(backend, password, &keys::KeyHints::default())
    }

    /// Opens an existing repository with `password`, trying first the key
    /// slots `hints` name (see [`keys`]).
    pub fn open_with(backend: Arc<dyn Backend>, password: &[u8], hints: &keys::KeyHints) -> Result<Repository> {
        let opening::Read { marker: marker_bytes, config: config_read, slots: slots_read } =
            opening::read(backend.as_ref())?;
        let marker: Marker =
            serde_json::from_slice(&marker_bytes).map_err(|e| Error::format(format!("marker `{MARKER_KEY}`"), e))?;
        if marker.format != "cairn" {
            return Err(Error::format(format!("marker `{MARKER_KEY}`"), "not a cairn repository"));
        }
        if marker.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: marker.version, supported: FORMAT_VERSION });
        }
        let sealed = config_read?;
        // A slot's key must open the config too: one copied from another
        // repository opens with its password but fits nothing here.
        let opened =
            keys::unlock(slots_read?, backend.as_ref(), password, hints, &marker.id, &mut |k| k.open(&sealed).is_ok())?;
        let unlocked = match opened {
            keys::Opened::Fits(u) => u,
            keys::Opened::Misfits(m) => return Err(misfit_error(backend.as_ref(), &m)),
        };
        let key = unlocked.key;
        let plain = blob::open_object(&key, &sealed, limits::CONFIG)
            .map_err(|e| blob_error(format!("object `{CONFIG_KEY}`"), e))?;
        let config = Config::decode(&plain).map_err(|e| Error::format("config", e))?;
        if config.id != marker.id {
            return Err(Error::format("config", "its repository id differs from the marker's"));
        }
        config.validate().map_err(|e| Error::format("config", e))?;
        backend.set_write_policy(&config.storage.write_policy());
        Ok(Repository {
            backend,
            key,
            key_slot: unlocked.slot,
            config,
            cache: None,
            lock_wait: None,
            warnings: Arc::new(LogWarnings),
        })
    }

    /// The key slot this repository was opened (or created) with.
    pub fn key_slot(&self) -> Id {
        self.key_slot
    }

    /// Caches metadata under `base` (for remote repositories).
    pub fn enable_cache(&mut self, base: &std::path::Path) -> Result<()> {
        let c = cache::Cache::open(base, &self.config.id).map_err(|e| Error::io(base, e))?;
        self.cache = Some(Arc::new(c.with_warnings(self.warnings.clone())));
        Ok(())
    }

    /// Puts a layer over this handle's backend (`backup --dry-run`'s
    /// [`crate::backend::discard::Discarding`]).
    pub fn wrap_backend(&mut self, wrap: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>) {
        self.backend = wrap(self.backend.clone());
    }

    /// Makes [`lock::acquire`] on this handle (and its clones) retry while
    /// a live lock is in the way, for `wait.patience` (`--retry-lock`).
    /// Sends this handle's warnings to `sink` (set it before
    /// [`Repository::enable_cache`], whose cache warns there too).
    pub fn set_warnings(&mut self, sink: WarningSink) {
        self.warnings = sink;
    }

    /// A problem that does not stop the operation, for the user or the log.
    pub fn warn(&self, message: impl Into<String>) {
        self.warnings.warn(message.into());
    }

    pub fn warnings(&self) -> &WarningSink {
        &self.warnings
    }

    pub fn set_lock_wait(&mut self, wait: Option<lock::LockWait>) {
        self.lock_wait = wait;
    }

    pub fn lock_wait(&self) -> Option<&lock::LockWait> {
        self.lock_wait.as_ref()
    }

    pub fn cache(&self) -> Option<&Arc<cache::Cache>> {
        self.cache.as_ref()
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn id(&self) -> Id {
        self.config.id
    }

    /// Stores a sealed metadata object under `dir/<hash>` and returns its id.
    pub fn save_object(&self, dir: &str, plaintext: &[u8]) -> Result<Id> {
        let sealed = blob::seal_object(&self.key, plaintext);
        let id = Id::hash_of(&sealed);
        self.backend.put_hashed(&format!("{dir}/{id}"), &sealed)?;
        if let Some(c) = &self.cache {
            c.put(dir, &id, &sealed);
        }
        Ok(id)
    }

    /// Loads and opens a metadata object, checking that its name matches
    /// its contents; its plaintext may hold at most `limit` bytes.
    pub fn load_object(&self, dir: &str, id: &Id, limit: u64) -> Result<Vec<u8>> {
        let key = format!("{dir}/{id}");
        let cached = self.cache.as_ref().and_then(|c| c.get(dir, id));
        let sealed = match cached {
            Some(b) => b,
            None => {
                let b = self.backend.get(&key)?;
                if let Some(c) = self.cache.as_ref().filter(|_| Id::hash_of(&b) == *id) {
                    c.put(dir, id, &b);
                }
                b
            }
        };
        if Id::hash_of(&sealed) != *id {
            return Err(Error::Integrity { what: format!("object `{key}` (content does not match its name)") });
        }
        blob::open_object(&self.key, &sealed, limit).map_err(|e| blob_error(format!("object `{key}`"), e))
    }

    /// Ids of the objects stored under `dir/`.
    pub fn list_ids(&self, dir: &str) -> Result<Vec<Id>> {
        let prefix = format!("{dir}/");
        Ok(self
            .backend
            .list(&prefix)?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&prefix).and_then(|n| n.parse().ok()))
            .collect())
    }

    /// Every snapshot: those that open, oldest first, and those that do
    /// not (damaged, forged or too large), with the error. Nothing is
    /// skipped: each caller decides what damage means for it, and the
    /// command line shows it ([`SnapshotList`]).
    pub fn list_snapshots(&self) -> Result<SnapshotList> {
        let mut out = SnapshotList::default();
        let ids = self.list_ids("snapshots")?;
        if let Some(c) = &self.cache {
            c.retain("snapshots", &ids.iter().copied().collect());
        }
        self.for_each_object("snapshots", &ids, limits::SNAPSHOT, |id, loaded| {
            match loaded.and_then(|plain| decode_snapshot(&id, &plain)) {
                Ok(s) => out.snapshots.push((id, s)),
                Err(e @ (Error::Integrity { .. } | Error::Format { .. } | Error::TooLarge { .. })) => {
                    out.damaged.push((id, e))
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        out.snapshots.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        out.damaged.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        decode_snapshot(id, &self.load_object("snapshots", id, limits::SNAPSHOT)?)
    }

    /// Stores a snapshot; one above [`limits::SNAPSHOT`] is refused, since
    /// no reader would open it.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<Id> {
        let json = serde_json::to_vec(s).expect("snapshot serialises");
        if json.len() as u64 > limits::SNAPSHOT {
            return Err(Error::TooLarge {
                what: "the new snapshot".into(),
                detail: format!(
                    "{} bytes, above the limit of {} (too many paths or tags?)",
                    json.len(),
                    limits::SNAPSHOT
                ),
            });
        }
        self.save_object("snapshots", &json)
    }

    /// Resolves `latest` or a unique id prefix to a snapshot. `latest` is
    /// the newest snapshot not dated in the future ([`is_future`]): a
    /// snapshot "from 2099" never stands for the newest data.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            let now = Utc::now();
            let mut list = self.list_snapshots()?;
            list.complete()?;
            list.snapshots.retain(|(_, s)| !is_future(s.time, now));
            return list.snapshots.pop().ok_or_else(|| Error::SnapshotNotFound(spec.into()));
        }
        let ids = self.list_ids("snapshots")?;
        let id = *by_id_prefix(&ids, |id| *id, spec)?;
        Ok((id, self.load_snapshot(&id)?))
    }

    /// Fetches, opens and checks one data blob (a chunk of file content),
    /// which may be at most the repository's maximum chunk size.
    pub fn read_blob(&self, index: &Index, id: &Id) -> Result<Vec<u8>> {
        self.read_blob_within(index, id, self.config.max_chunk(), "chunk", blob::decode)
    }

    /// [`Repository::read_blob`], which also returns the blob's payload as
    /// stored (the codec byte and the body, see [`blob::decode_keeping_payload`]).
    pub fn read_blob_and_payload(&self, index: &Index, id: &Id) -> Result<(Vec<u8>, Vec<u8>)> {
        self.read_blob_within(index, id, self.config.max_chunk(), "chunk", blob::decode_keeping_payload)
    }

    /// Fetches, opens and checks one blob whose index entry must record at
    /// most `limit` bytes: an entry that claims more is refused before
    /// anything is fetched.
    fn read_blob_within<T>(
        &self,
        index: &Index,
        id: &Id,
        limit: u64,
        what: &str,
        decode_with: fn(&MasterKey, &[u8], &Id, u64) -> std::result::Result<T, blob::BlobError>,
    ) -> Result<T> {
        let loc =
            index.get(id).ok_or_else(|| Error::Integrity { what: format!("blob {id} (missing from the index)") })?;
        let pack = index.pack(loc.pack);
        let key = pack_key(&pack.id);
        if loc.raw_length as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("{what} {} in pack `{key}`", id.short()),
                detail: format!("its index entry claims {} bytes, above the limit of {limit}", loc.raw_length),
            });
        }
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.length as usize);
        let decode = |sealed: &[u8]| {
            decode_with(&self.key, sealed, id, loc.raw_length as u64)
                .map_err(|e| blob_error(format!("blob {} in pack `{key}`", id.short()), e))
        };
        // Tree packs of remote repositories are fetched whole, once, and cached.
        if let (Some(c), BlobKind::Tree) = (&self.cache, pack.kind) {
            let bytes = c.pack_or_fetch(&pack.id, || {
                let b = self.backend.get(&key)?;
                if Id::hash_of(&b) != pack.id {
                    return Err(Error::Integrity { what: format!("pack `{key}` (content does not match its name)") });
                }
                Ok(b)
            })?;
            if end > bytes.len() {
                return Err(Error::Integrity { what: format!("pack `{key}` is shorter than the index says") });
            }
            return decode(&bytes[start..end]);
        }
        let sealed = self.backend.get_range(&key, loc.offset as u64, loc.length as u64)?;
        decode(&sealed)
    }

    /// Loads a tree, which may be at most [`limits::TREE`] bytes.
    pub fn load_tree(&self, index: &Index, id: &Id) -> Result<Tree> {
        let b = self.read_blob_within(index, id, limits::TREE, "tree", blob::decode)?;
        Tree::decode(&b).map_err(|e| Error::format(format!("tree {id}"), e))
    }

    /// Reads and opens the header of a stored pack.
    pub fn read_pack_header(&self, pack: &Id, size: u64) -> Result<Vec<pack::PackEntry>> {
        let key = pack_key(pack);
        let tail_len = size.min(4096);
        let tail = self.backend.get_range(&key, size - tail_len, tail_len)?;
        let bad = |d: String| Error::Integrity { what: format!("pack `{key}` header ({d})") };
        let (start, hlen) = pack::header_range(&tail, size).map_err(bad)?;
        let sealed = if hlen + 4 <= tail_len {
            tail[(tail_len - 4 - hlen) as usize..(tail_len - 4) as usize].to_vec()
        } else {
            self.backend.get_range(&key, start, hlen)?
        };
        let plain = self.key.open(&sealed).map_err(|_| bad("authentication failed".into()))?;
        let entries = pack::decode_header(&plain).map_err(bad)?;
        pack::validate_layout(&entries, start).map_err(bad)?;
        Ok(entries)
    }
}
