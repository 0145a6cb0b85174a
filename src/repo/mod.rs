//! The repository: the on-disk format on top of a storage backend.
//!
//! Object layout (keys in the backend; see `docs/FORMAT.md`):
//! - `cairn`: plaintext marker `{"format":"cairn","version":1,"id":…}`;
//! - `keys/<id>`: key slots, plaintext JSON wrapping the master key;
//! - `config`: sealed JSON with the chunker, compression and pack sizes;
//! - `data/<2 hex>/<id>`: packs of data or tree blobs;
//! - `index/<id>`: sealed index files;
//! - `snapshots/<id>`: sealed snapshots.
//!
//! Everything but the marker and the key slots is sealed, and nothing is
//! used before its seal is opened: that is invariant 1.

pub mod blob;
pub mod index;
pub mod keys;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::chunk::ChunkerParams;
use crate::crypto::{KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::id::Id;

pub use index::{BlobLocation, Index, IndexFile, PackInfo};
pub use snapshot::{Snapshot, Summary};
pub use tree::{Node, NodeKind, Tree};

/// The repository format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const MARKER_KEY: &str = "cairn";
pub const CONFIG_KEY: &str = "config";

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

/// Repository-wide settings, fixed at `init` and sealed in `config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: Id,
    pub chunker: ChunkerParams,
    /// zstd level for blobs.
    pub compression: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    pub created: DateTime<Utc>,
}

/// Choices made at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression: i32,
    pub pack_size: u32,
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression: 3,
            pack_size: 16 * 1024 * 1024,
            kdf: KdfParams::default(),
        }
    }
}

/// An open repository: a backend, the master key and the config.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: Config,
}

pub fn pack_key(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

impl Repository {
    /// Creates a repository with one key slot for `password`.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], opts: InitOptions) -> Result<Repository> {
        match backend.stat(MARKER_KEY) {
            Ok(_) => return Err(Error::AlreadyExists(backend.location())),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        opts.chunker.validate().map_err(Error::InvalidArgument)?;
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
        };
        keys::add_slot(backend.as_ref(), &key, password, opts.kdf)?;
        let sealed = blob::seal_object(&key, &serde_json::to_vec(&config).expect("config serialises"));
        backend.put(CONFIG_KEY, &sealed)?;
        let marker = Marker { format: "cairn".into(), version: FORMAT_VERSION, id };
        // The marker goes last: a repository is only "there" once complete.
        backend.put(MARKER_KEY, &serde_json::to_vec_pretty(&marker).expect("marker serialises"))?;
        Ok(Repository { backend, key, config })
    }

    /// Opens an existing repository with `password`.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let marker_bytes = match backend.get(MARKER_KEY) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(Error::NoRepository(backend.location())),
            Err(e) => return Err(e.into()),
        };
        let marker: Marker =
            serde_json::from_slice(&marker_bytes).map_err(|e| Error::format(format!("marker `{MARKER_KEY}`"), e))?;
        if marker.format != "cairn" {
            return Err(Error::format(format!("marker `{MARKER_KEY}`"), "not a cairn repository"));
        }
        if marker.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: marker.version, supported: FORMAT_VERSION });
        }
        let key = keys::unlock(backend.as_ref(), password)?;
        let sealed = backend.get(CONFIG_KEY)?;
        let plain = blob::open_object(&key, &sealed)
            .map_err(|e| Error::Integrity { what: format!("object `{CONFIG_KEY}` ({e})") })?;
        let config: Config = serde_json::from_slice(&plain).map_err(|e| Error::format("config", e))?;
        if config.id != marker.id {
            return Err(Error::format("config", "its repository id differs from the marker's"));
        }
        Ok(Repository { backend, key, config })
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
        self.backend.put(&format!("{dir}/{id}"), &sealed)?;
        Ok(id)
    }

    /// Loads and opens a metadata object, checking that its name matches
    /// its contents.
    pub fn load_object(&self, dir: &str, id: &Id) -> Result<Vec<u8>> {
        let key = format!("{dir}/{id}");
        let sealed = self.backend.get(&key)?;
        if Id::hash_of(&sealed) != *id {
            return Err(Error::Integrity { what: format!("object `{key}` (content does not match its name)") });
        }
        blob::open_object(&self.key, &sealed).map_err(|e| Error::Integrity { what: format!("object `{key}` ({e})") })
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

    /// Reads every index file into one in-memory index.
    pub fn load_index(&self) -> Result<Index> {
        let files = self.load_index_files()?;
        let superseded: std::collections::HashSet<Id> =
            files.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
        let mut index = Index::new();
        for (id, f) in &files {
            if superseded.contains(id) {
                continue;
            }
            for (info, entries) in &f.packs {
                index.add_pack(info.clone(), entries);
            }
        }
        index.compact();
        Ok(index)
    }

    pub fn load_index_files(&self) -> Result<Vec<(Id, IndexFile)>> {
        let ids = self.list_ids("index")?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let plain = self.load_object("index", &id)?;
            let f = IndexFile::decode(&plain).map_err(|e| Error::format(format!("index file `index/{id}`"), e))?;
            out.push((id, f));
        }
        Ok(out)
    }

    pub fn save_index_file(&self, f: &IndexFile) -> Result<Id> {
        self.save_object("index", &f.encode())
    }

    /// All snapshots, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        for id in self.list_ids("snapshots")? {
            out.push((id, self.load_snapshot(&id)?));
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let plain = self.load_object("snapshots", id)?;
        let s: Snapshot =
            serde_json::from_slice(&plain).map_err(|e| Error::format(format!("snapshot `snapshots/{id}`"), e))?;
        if s.v != snapshot::SNAPSHOT_VERSION {
            return Err(Error::format(format!("snapshot `snapshots/{id}`"), format!("unknown version {}", s.v)));
        }
        Ok(s)
    }

    pub fn save_snapshot(&self, s: &Snapshot) -> Result<Id> {
        self.save_object("snapshots", &serde_json::to_vec(s).expect("snapshot serialises"))
    }

    /// Resolves `latest` or a unique id prefix to a snapshot.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            return self.list_snapshots()?.pop().ok_or_else(|| Error::SnapshotNotFound(spec.into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.is_empty() || !spec_l.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::SnapshotNotFound(spec.into()));
        }
        let matches: Vec<Id> =
            self.list_ids("snapshots")?.into_iter().filter(|id| id.to_hex().starts_with(&spec_l)).collect();
        match matches.as_slice() {
            [one] => Ok((*one, self.load_snapshot(one)?)),
            [] => Err(Error::SnapshotNotFound(spec.into())),
            _ => Err(Error::AmbiguousSnapshot(spec.into())),
        }
    }

    /// Fetches, opens and checks one blob.
    pub fn read_blob(&self, index: &Index, id: &Id) -> Result<Vec<u8>> {
        let loc =
            index.get(id).ok_or_else(|| Error::Integrity { what: format!("blob {id} (missing from the index)") })?;
        let pack = index.pack(loc.pack);
        let key = pack_key(&pack.id);
        let sealed = self.backend.get_range(&key, loc.offset as u64, loc.length as u64)?;
        blob::decode(&self.key, &sealed, id, loc.raw_length as u64)
            .map_err(|e| Error::Integrity { what: format!("blob {} in pack `{key}` ({e})", id.short()) })
    }

    pub fn load_tree(&self, index: &Index, id: &Id) -> Result<Tree> {
        let b = self.read_blob(index, id)?;
        Tree::decode(&b).map_err(|e| Error::format(format!("tree {id}"), e))
    }

    /// Reads and opens the header of a stored pack.
    pub fn read_pack_header(&self, pack: &Id, size: u64) -> Result<Vec<pack::PackEntry>> {
        let key = pack_key(pack);
        let tail_len = size.min(4096);
        let tail = self.backend.get_range(&key, size - tail_len, tail_len)?;
        let bad = |d: String| Error::Integrity { what: format!("pack `{key}` header ({d})") };
        let hlen = pack::header_len_from_trailer(&tail).ok_or_else(|| bad("pack too short".into()))? as u64;
        if hlen + 4 > size {
            return Err(bad(format!("header length {hlen} exceeds the pack size {size}")));
        }
        let sealed = if hlen + 4 <= tail_len {
            tail[(tail_len - 4 - hlen) as usize..(tail_len - 4) as usize].to_vec()
        } else {
            self.backend.get_range(&key, size - 4 - hlen, hlen)?
        };
        let plain = self.key.open(&sealed).map_err(|_| bad("authentication failed".into()))?;
        let entries = pack::decode_header(&plain).map_err(bad)?;
        pack::validate_layout(&entries, size - 4 - hlen).map_err(bad)?;
        Ok(entries)
    }
}
