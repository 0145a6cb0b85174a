//! The repository as it was: a read-only view of a versioned S3 bucket at
//! a point in time (`--as-of TIME`), after kopia's `--point-in-time`.
//!
//! Each key reads as its newest version stored at or before the time;
//! versions written later, and delete markers set later, are ignored, and a
//! key whose newest entry at that time is a delete marker (or that had no
//! version yet) does not exist. Entries are found with `ListObjectVersions`
//! and read with `GetObject` and their version id. Two entries of one key
//! stamped with the same time are ordered as the storage lists them; a
//! delete marker is taken as the newer of a marker and a version with the
//! same time, so a time given to the second is read as "after everything
//! stamped with it".
//!
//! Listings are resolved once per top-level directory (`data/`, `index/`…)
//! and kept, so reading many objects costs one `GetObject` each. Every
//! write is refused: `repair undelete` writes through the live backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::s3::{classify, from_smithy, Failure, S3Backend};
use super::{Backend, BackendError, BackendErrorKind, BackendResult, ObjectInfo};

/// One key's entry at the view's time.
#[derive(Debug, Clone)]
struct Version {
    id: String,
    size: u64,
    modified: DateTime<Utc>,
}

/// One entry of `ListObjectVersions`: a version or a delete marker.
struct Entry {
    key: String,
    version: Option<Version>,
    modified: DateTime<Utc>,
}

pub struct AsOfBackend {
    s3: S3Backend,
    at: DateTime<Utc>,
    /// Resolved listings, by the prefix that was listed.
    resolved: Mutex<HashMap<String, Arc<BTreeMap<String, Version>>>>,
}

impl AsOfBackend {
    /// A view of `s3` at `at`. Refuses a bucket without versioning: there
    /// is no past to read there.
    pub fn new(s3: S3Backend, at: DateTime<Utc>) -> BackendResult<AsOfBackend> {
        if !s3.lock_status()?.versioning {
            return Err(BackendError::new(
                BackendErrorKind::Permanent,
                "read the past of",
                s3.location(),
                "the bucket has no versioning, so it keeps no earlier versions to read",
            ));
        }
        Ok(AsOfBackend { s3, at, resolved: Mutex::new(HashMap::new()) })
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    fn refuse(&self, key: &str) -> BackendError {
        BackendError::new(
            BackendErrorKind::Permanent,
            "write",
            self.s3.shown(key),
            format!("the repository as of {} is read-only", self.at.format("%Y-%m-%d %H:%M:%S UTC")),
        )
    }

    /// Every entry under `prefix`, versions and delete markers.
    fn list_entries(&self, prefix: &str) -> BackendResult<Vec<Entry>> {
        let full = self.s3.full_key(prefix);
        let strip = self.s3.full_key("");
        let mut out = Vec::new();
        let mut marker: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self.s3.run("list the versions of", prefix, || async {
                self.s3
                    .client
                    .list_object_versions()
                    .bucket(&self.s3.opts.bucket)
                    .prefix(&full)
                    .set_key_marker(marker.0.clone())
                    .set_version_id_marker(marker.1.clone())
                    .send()
                    .await
                    .map_err(|e| classify(&e))
            })?;
            let rel = |k: Option<&str>| k.and_then(|k| k.strip_prefix(&strip)).map(String::from);
            for v in page.versions() {
                let (Some(key), Some(id), Some(t)) =
                    (rel(v.key()), v.version_id(), v.last_modified().and_then(from_smithy))
                else {
                    continue;
                };
                let size = v.size().unwrap_or(0).max(0) as u64;
                out.push(Entry { key, version: Some(Version { id: id.to_string(), size, modified: t }), modified: t });
            }
            for m in page.delete_markers() {
                if let (Some(key), Some(t)) = (rel(m.key()), m.last_modified().and_then(from_smithy)) {
                    out.push(Entry { key, version: None, modified: t });
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            marker = (page.next_key_marker().map(String::from), page.next_version_id_marker().map(String::from));
            if marker.0.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The keys under `prefix` that existed at the view's time, with the
    /// version each had then.
    fn resolve_prefix(&self, prefix: &str) -> BackendResult<Arc<BTreeMap<String, Version>>> {
        if let Some(m) = self.resolved.lock().expect("never poisoned").get(prefix) {
            return Ok(m.clone());
        }
        let map = Arc::new(newest_at(self.list_entries(prefix)?, self.at));
        self.resolved.lock().expect("never poisoned").insert(prefix.to_string(), map.clone());
        Ok(map)
    }

    /// The version of `key` at the view's time; `NotFound` when it had none.
    fn resolve(&self, op: &'static str, key: &str) -> BackendResult<Version> {
        // A key is looked up in the listing of its top-level directory, or
        // of itself when it has none (`config`, `cairn`).
        let scope = match key.split_once('/') {
            Some((top, _)) => format!("{top}/"),
            None => key.to_string(),
        };
        self.resolve_prefix(&scope)?.get(key).cloned().ok_or_else(|| {
            BackendError::new(
                BackendErrorKind::NotFound,
                op,
                self.s3.shown(key),
                format!("no version as of {}", self.at.format("%Y-%m-%d %H:%M:%S UTC")),
            )
        })
    }
}

/// For each key, its newest entry at or before `at`, unless that is a
/// delete marker (which wins a tie with a version of the same time).
fn newest_at(entries: Vec<Entry>, at: DateTime<Utc>) -> BTreeMap<String, Version> {
    let mut newest: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries.into_iter().filter(|e| e.modified <= at) {
        let replace = match newest.get(&e.key) {
            None => true,
            Some(cur) => e.modified > cur.modified || (e.modified == cur.modified && e.version.is_none()),
        };
        if replace {
            newest.insert(e.key.clone(), e);
        }
    }
    newest.into_iter().filter_map(|(k, e)| e.version.map(|v| (k, v))).collect()
}

impl Backend for AsOfBackend {
    fn location(&self) -> String {
        format!("{} as of {}", self.s3.location(), self.at.format("%Y-%m-%d %H:%M:%S UTC"))
    }

    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        let v = self.resolve("download", key)?;
        self.s3.run("download", key, || self.s3.get_body(key, Some(&v.id), None))
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let v = self.resolve("download", key)?;
        let range = format!("bytes={}-{}", offset, offset + length - 1);
        self.s3.run("download", key, || async {
            let b = self.s3.get_body(key, Some(&v.id), Some(range.clone())).await?;
            if b.len() as u64 != length {
                return Err(Failure {
                    kind: BackendErrorKind::Transient,
                    message: format!("range {offset}+{length} returned {} bytes", b.len()),
                    code: None,
                });
            }
            Ok(b)
        })
    }

    fn put(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        Err(self.refuse(key))
    }

    fn put_mutable(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        Err(self.refuse(key))
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        Ok(self
            .resolve_prefix(prefix)?
            .iter()
            .map(|(k, v)| ObjectInfo { key: k.clone(), size: v.size, modified: Some(v.modified) })
            .collect())
    }

    fn delete(&self, key: &str) -> BackendResult<()> {
        Err(self.refuse(key))
    }

    fn stat(&self, key: &str) -> BackendResult<u64> {
        Ok(self.resolve("stat", key)?.size)
    }

    fn put_data_pack(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        Err(self.refuse(key))
    }

    fn put_hashed(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        Err(self.refuse(key))
    }

    fn put_known_absent(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        Err(self.refuse(key))
    }

    fn delete_many(&self, keys: &[String]) -> BackendResult<()> {
        Err(self.refuse(keys.first().map(String::as_str).unwrap_or("")))
    }

    fn concurrency(&self) -> usize {
        self.s3.concurrency()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn is_read_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn version(key: &str, id: &str, at: &str) -> Entry {
        Entry { key: key.into(), version: Some(Version { id: id.into(), size: 1, modified: t(at) }), modified: t(at) }
    }

    fn marker(key: &str, at: &str) -> Entry {
        Entry { key: key.into(), version: None, modified: t(at) }
    }

    #[test]
    fn each_key_reads_as_its_newest_entry_at_the_time() {
        let entries = vec![
            version("a", "a1", "2025-01-01T00:00:00Z"),
            version("a", "a2", "2025-01-03T00:00:00Z"), // later: ignored
            version("b", "b1", "2025-01-01T00:00:00Z"),
            marker("b", "2025-01-03T00:00:00Z"), // deleted later: b still there
            version("c", "c1", "2025-01-01T00:00:00Z"),
            marker("c", "2025-01-02T00:00:00Z"),        // deleted before: gone
            version("d", "d1", "2025-01-04T00:00:00Z"), // not there yet
            version("e", "e1", "2025-01-01T00:00:00Z"),
            marker("e", "2025-01-01T12:00:00Z"),
            version("e", "e2", "2025-01-01T18:00:00Z"), // written back after a deletion
        ];
        let m = newest_at(entries, t("2025-01-02T12:00:00Z"));
        let got: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.id.as_str())).collect();
        assert_eq!(got, vec![("a", "a1"), ("b", "b1"), ("e", "e2")]);
    }

    #[test]
    fn a_delete_marker_wins_a_tie_with_a_version() {
        let entries = vec![version("a", "a1", "2025-01-01T00:00:00Z"), marker("a", "2025-01-01T00:00:00Z")];
        assert!(newest_at(entries, t("2025-01-01T00:00:00Z")).is_empty());
    }
}
