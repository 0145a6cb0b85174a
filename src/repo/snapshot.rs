//! Snapshots: the commit point of a backup.
//!
//! A snapshot is a sealed JSON object under `snapshots/<id>`, written only
//! after every pack and index entry it depends on is durably stored. Its id
//! is the BLAKE3 hash of the stored bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;

pub const SNAPSHOT_VERSION: u32 = 1;

/// A file the backup could not store, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub files_total: u64,
    /// Bytes of file content in the snapshot.
    pub bytes_total: u64,
    /// Bytes of file content read from disk during this backup.
    pub bytes_read: u64,
    /// Bytes of new blobs (before compression) added to the repository.
    pub data_added: u64,
    /// Bytes stored (packs after compression and encryption).
    pub bytes_added: u64,
    pub blobs_added: u64,
    pub packs_added: u64,
    pub duration_secs: f64,
    /// Files that changed while they were read (stored as read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_during_backup: Vec<String>,
    /// Files that could not be read or vanished; not in the snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u32,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub tree: Id,
    pub program_version: String,
    pub summary: Summary,
}

impl Snapshot {
    /// Whether this snapshot is a candidate parent for a backup of `paths`
    /// from `host` (same host, same set of paths).
    pub fn same_source(&self, host: &str, paths: &[String]) -> bool {
        let mut a = self.paths.clone();
        let mut b = paths.to_vec();
        a.sort();
        b.sort();
        self.hostname == host && a == b
    }
}
