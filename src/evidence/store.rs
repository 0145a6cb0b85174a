//! Where evidence objects live, and reading them back in bulk.
//!
//! Object names (all under `evidence/`):
//!
//! | object | what |
//! | --- | --- |
//! | `evidence/key` | the legacy signer's key pair, sealed with the master key |
//! | `evidence/records/<seq>` | a record of the legacy chain (12 digits) |
//! | `evidence/records/<key id>/<seq>` | a record of a host's sub-chain |
//! | `evidence/keys/<key id>` | an enrolled host key (host, public key, time; self-signed) |
//! | `evidence/heads/<YYYY-MM-DD>/<YYYYMMDDTHHMMSS.ffffff>Z-<key id>-<seq>` | a repository head |
//!
//! Everything but `evidence/key` written since host keys exist is sealed
//! with the read key ([`super::key::read_key`]); legacy records written
//! before are sealed with the master key. A reader tries the keys it has.
//! Nothing here is ever rewritten.
//!
//! An export directory holds the plaintexts as files, all at its top level:
//! `<seq>.json` for the legacy chain (as exports always had),
//! `chain-<key id>-<seq>.json` for host chains, `key-<key id>.json` and
//! `head-<time>Z-<key id>-<seq>.json`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::key::{is_key_id, LEGACY_KEY_ID};
use super::record::{file_stem, parse_stem};
use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::repo::{blob, limits};

pub const RECORDS_DIR: &str = "evidence/records";
pub const KEYS_DIR: &str = "evidence/keys";
pub const HEADS_DIR: &str = "evidence/heads";

/// The object of record `seq` of the chain `chain` (a key id, or `legacy`).
pub fn record_key(chain: &str, seq: u64) -> String {
    if chain == LEGACY_KEY_ID {
        format!("{RECORDS_DIR}/{}", file_stem(seq))
    } else {
        format!("{RECORDS_DIR}/{chain}/{}", file_stem(seq))
    }
}

pub fn key_object(key_id: &str) -> String {
    format!("{KEYS_DIR}/{key_id}")
}

/// The day bucket of heads written at `time`.
pub fn head_bucket(time: DateTime<Utc>) -> String {
    format!("{HEADS_DIR}/{}/", time.format("%Y-%m-%d"))
}

/// A new head's object name: time, signer and the seq it was written for,
/// so that no two appenders ever pick the same name.
pub fn head_key(time: DateTime<Utc>, key_id: &str, seq: u64) -> String {
    format!("{}{}Z-{key_id}-{}", head_bucket(time), time.format("%Y%m%dT%H%M%S%.6f"), file_stem(seq))
}

/// What an object under `evidence/` is, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Record {
        chain: String,
        seq: u64,
    },
    Key(String),
    /// The part after `evidence/heads/`.
    Head(String),
    Other,
}

pub fn classify(key: &str) -> Name {
    if let Some(rest) = key.strip_prefix(&format!("{RECORDS_DIR}/")) {
        return match rest.split_once('/') {
            None => parse_stem(rest).map_or(Name::Other, |seq| Name::Record { chain: LEGACY_KEY_ID.into(), seq }),
            Some((chain, stem)) if is_key_id(chain) => {
                parse_stem(stem).map_or(Name::Other, |seq| Name::Record { chain: chain.into(), seq })
            }
            Some(_) => Name::Other,
        };
    }
    if let Some(rest) = key.strip_prefix(&format!("{KEYS_DIR}/")) {
        return if is_key_id(rest) { Name::Key(rest.into()) } else { Name::Other };
    }
    if let Some(rest) = key.strip_prefix(&format!("{HEADS_DIR}/")) {
        return if rest.contains('/') && !rest.ends_with('/') { Name::Head(rest.into()) } else { Name::Other };
    }
    Name::Other
}

/// One stored record, as read.
#[derive(Debug, Clone)]
pub struct RecordItem {
    /// `legacy` or a key id: the sub-chain its name puts it in.
    pub chain: String,
    /// The seq its name gives.
    pub seq: u64,
    /// Where it was read: an object name, or a file of an export.
    pub shown: String,
    pub bytes: Vec<u8>,
}

/// Everything read from a repository's `evidence/` or an export.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub records: Vec<RecordItem>,
    /// (name after `heads/`, shown, bytes).
    pub heads: Vec<(String, String, Vec<u8>)>,
    /// (key id, shown, bytes).
    pub keys: Vec<(String, String, Vec<u8>)>,
    /// Objects that could not be opened: (shown, why).
    pub unreadable: Vec<(String, String)>,
    /// Objects opened only with the master key (legacy records from before
    /// the read key): readable by password holders and through an export.
    pub master_sealed: usize,
    /// Read from a repository (names are object names), not an export.
    pub from_repository: bool,
}

/// Opens a sealed evidence object with the first of `openers` that fits.
/// Returns the plaintext and the index of the key that opened it.
pub fn open_sealed(openers: &[&MasterKey], sealed: &[u8], limit: u64) -> std::result::Result<(Vec<u8>, usize), String> {
    let mut last = String::from("no key to open it with");
    for (i, k) in openers.iter().enumerate() {
        match blob::open_object(k, sealed, limit) {
            Ok(p) => return Ok((p, i)),
            Err(e) if e.is_size_limit() => return Err(e.to_string()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Reads every evidence object of a repository, `concurrency` at a time.
/// `openers` are tried in order; `master_index` names the one that is the
/// master key, if any, to count what only it opens.
pub fn load_repository(
    backend: &dyn Backend,
    openers: &[&MasterKey],
    master_index: Option<usize>,
    concurrency: usize,
) -> Result<Loaded> {
    let listed = backend.list("evidence/")?;
    let wanted: Vec<(String, Name)> = listed
        .into_iter()
        .filter_map(|o| match classify(&o.key) {
            Name::Other => None,
            n => Some((o.key, n)),
        })
        .collect();
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Loaded::default());
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..concurrency.clamp(1, 32) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((key, name)) = wanted.get(i) else { break };
                if failure.lock().unwrap().is_some() {
                    break;
                }
                let sealed = match backend.get(key) {
                    Ok(b) => b,
                    // Listed, then gone: report it as unreadable, never skip it.
                    Err(e) if e.is_not_found() => {
                        out.lock().unwrap().unreadable.push((key.clone(), "listed, but gone when read".into()));
                        continue;
                    }
                    Err(e) => {
                        failure.lock().unwrap().get_or_insert(e.into());
                        break;
                    }
                };
                let opened = open_sealed(openers, &sealed, limits::EVIDENCE_RECORD);
                let mut o = out.lock().unwrap();
                match opened {
                    Err(why) => o.unreadable.push((key.clone(), why)),
                    Ok((plain, used)) => {
                        if Some(used) == master_index {
                            o.master_sealed += 1;
                        }
                        match name {
                            Name::Record { chain, seq } => o.records.push(RecordItem {
                                chain: chain.clone(),
                                seq: *seq,
                                shown: key.clone(),
                                bytes: plain,
                            }),
                            Name::Key(id) => o.keys.push((id.clone(), key.clone(), plain)),
                            Name::Head(n) => o.heads.push((n.clone(), key.clone(), plain)),
                            Name::Other => {}
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    let mut l = out.into_inner().unwrap();
    l.from_repository = true;
    l.sort();
    Ok(l)
}

impl Loaded {
    fn sort(&mut self) {
        self.records.sort_by(|a, b| (&a.chain, a.seq, &a.shown).cmp(&(&b.chain, b.seq, &b.shown)));
        self.heads.sort();
        self.keys.sort();
        self.unreadable.sort();
    }
}

/// Reads an export directory (see the module doc). Files that do not fit
/// the layout are ignored.
pub fn load_dir(dir: &Path) -> Result<Loaded> {
    let mut names: Vec<(String, std::path::PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        if let Some(n) = e.file_name().to_str() {
            names.push((n.to_string(), e.path()));
        }
    }
    names.sort();
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
    let mut l = Loaded::default();
    for (name, path) in names {
        let Some(stem) = name.strip_suffix(".json") else { continue };
        if let Some(seq) = parse_stem(stem) {
            l.records.push(RecordItem { chain: LEGACY_KEY_ID.into(), seq, shown: name, bytes: read(&path)? });
        } else if let Some(rest) = stem.strip_prefix("chain-") {
            let Some((chain, seq)) = rest.split_once('-') else { continue };
            if let (true, Some(seq)) = (is_key_id(chain), parse_stem(seq)) {
                l.records.push(RecordItem { chain: chain.into(), seq, shown: name.clone(), bytes: read(&path)? });
            }
        } else if let Some(id) = stem.strip_prefix("key-").filter(|i| is_key_id(i)) {
            l.keys.push((id.to_string(), name.clone(), read(&path)?));
        } else if let Some(h) = stem.strip_prefix("head-") {
            l.heads.push((h.to_string(), name.clone(), read(&path)?));
        }
    }
    l.sort();
    Ok(l)
}

/// A record's file name in an export.
pub fn export_path(chain: &str, seq: u64) -> String {
    if chain == LEGACY_KEY_ID {
        format!("{}.json", file_stem(seq))
    } else {
        format!("chain-{chain}-{}.json", file_stem(seq))
    }
}

/// A head's file name in an export, from its name under `evidence/heads/`.
pub fn export_head_path(name: &str) -> String {
    format!("head-{}.json", name.rsplit('/').next().unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_and_made_alike() {
        let k = "0123456789abcdef";
        assert_eq!(classify(&record_key("legacy", 7)), Name::Record { chain: "legacy".into(), seq: 7 });
        assert_eq!(classify(&record_key(k, 7)), Name::Record { chain: k.into(), seq: 7 });
        assert_eq!(classify(&key_object(k)), Name::Key(k.into()));
        let t = DateTime::parse_from_rfc3339("2026-03-01T02:03:04.5Z").unwrap().with_timezone(&Utc);
        let h = head_key(t, k, 3);
        assert_eq!(h, format!("evidence/heads/2026-03-01/20260301T020304.500000Z-{k}-000000000003"));
        assert!(matches!(classify(&h), Name::Head(_)));
        for other in ["evidence/key", "evidence/records/x/1", "evidence/records/ABCDEF0123456789/1", "evidence/locks/a"]
        {
            assert_eq!(classify(other), Name::Other, "{other}");
        }
    }
}
