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
    /// Directories whose tree in the parent snapshot held exactly their
    /// entries, and was taken as it was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dirs_unchanged: u64,
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
    /// Entries whose extended attributes were read from the file system;
    /// the others (unchanged since the parent snapshot) kept the parent's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub xattrs_read: u64,
    /// Entries of `changed_during_backup` left out of the stored snapshot
    /// to keep it within its size limit (see [`Summary::trim_lists`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changed_not_listed: u64,
    /// Entries of `skipped` left out of the stored snapshot, likewise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_not_listed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    /// Keeps the first entries of `skipped` and `changed_during_backup`
    /// whose text fits in `budget` bytes, and counts the others in
    /// `skipped_not_listed` and `changed_not_listed`, so that a backup with
    /// a million unreadable files still stores a snapshot any reader opens.
    pub fn trim_lists(&mut self, budget: u64) {
        // Roughly the JSON each entry takes, escapes aside.
        let mut left = budget;
        let mut fits = |bytes: usize| {
            let cost = bytes as u64 + 32;
            let ok = cost <= left;
            if ok {
                left -= cost;
            }
            ok
        };
        let keep = self.skipped.iter().take_while(|f| fits(f.path.len() + f.reason.len())).count();
        self.skipped_not_listed += (self.skipped.len() - keep) as u64;
        self.skipped.truncate(keep);
        let keep = self.changed_during_backup.iter().take_while(|p| fits(p.len())).count();
        self.changed_not_listed += (self.changed_during_backup.len() - keep) as u64;
        self.changed_during_backup.truncate(keep);
    }
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
    /// The snapshot this one is a copy of, as first backed up (`cairn
    /// copy` sets it; a copy of a copy names the first); `None` for a
    /// backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    pub summary: Summary,
}

impl Snapshot {
    /// Parses a snapshot's plaintext (JSON of a known version).
    pub fn decode(b: &[u8]) -> Result<Snapshot, String> {
        let s: Snapshot = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if s.v != SNAPSHOT_VERSION {
            return Err(format!("unknown version {}", s.v));
        }
        Ok(s)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_trimmed_to_the_budget_and_counted() {
        let mut s = Summary {
            skipped: (0..1000).map(|i| SkippedFile { path: format!("/f{i:04}"), reason: "gone".into() }).collect(),
            changed_during_backup: vec!["/c".into(); 10],
            ..Default::default()
        };
        s.trim_lists(4200);
        // Each skipped entry costs 6 + 4 + 32 = 42 bytes: 100 fit, and nothing after them.
        assert_eq!(s.skipped.len(), 100);
        assert_eq!(s.skipped_not_listed, 900);
        assert_eq!(s.skipped[99].path, "/f0099");
        assert!(s.changed_during_backup.is_empty());
        assert_eq!(s.changed_not_listed, 10);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"skipped_not_listed\":900"), "{json}");
        // Short lists are kept whole, and the counters stay out of the JSON.
        let mut short = Summary { changed_during_backup: vec!["/c".into()], ..Default::default() };
        short.trim_lists(4200);
        assert_eq!(short.changed_during_backup.len(), 1);
        assert!(!serde_json::to_string(&short).unwrap().contains("not_listed"));
    }
}
