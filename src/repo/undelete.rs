//! `repair undelete --as-of TIME`: writes back, as new objects, what the
//! repository held at a past time and no longer holds (after an attacker
//! with the maintenance credential deleted it, or a mistaken prune),
//! reading the past from a versioned bucket ([`crate::backend::AsOfBackend`]).
//!
//! Nothing present is replaced: only missing keys are written, with the
//! repository's usual create-only put (and Object Lock retention). Each
//! object is checked before it is written back, as far as its kind allows:
//! content-addressed objects (packs, index files, snapshots) must hash to
//! their name, sealed objects must open with the repository's key, the
//! config and marker must name this repository. Packs go first, then index
//! files, then snapshots and the rest, so an interruption leaves nothing
//! that refers to an object not yet back.

use std::collections::HashSet;

use serde::Serialize;

use crate::backend::{is_mutable_key, Backend};
use crate::error::Result;
use crate::id::Id;

use super::{blob, limits, Config, Repository, CONFIG_KEY, MARKER_KEY};

/// What an undelete did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct UndeleteReport {
    /// Objects the repository held at the time.
    pub then: u64,
    /// Keys written back (or to write back).
    pub restored: Vec<String>,
    pub bytes: u64,
    /// Keys missing now whose past content failed its check: not written.
    pub refused: Vec<(String, String)>,
    pub dry_run: bool,
}

/// The order in which kinds of objects go back: what is referred to first.
fn rank(key: &str) -> u8 {
    match key.split('/').next().unwrap_or("") {
        "data" => 0,
        "index" => 1,
        "snapshots" => 2,
        _ => 3,
    }
}

/// Whether `bytes` may stand under `key` in `repo`; the reason if not.
fn check(repo: &Repository, key: &str, bytes: &[u8]) -> std::result::Result<(), String> {
    let named_by_hash = |name: &str| match name.parse::<Id>() {
        Ok(id) if Id::hash_of(bytes) == id => Ok(()),
        Ok(_) => Err("its content does not hash to its name".to_string()),
        Err(_) => Err("its name is not an object id".to_string()),
    };
    let opens =
        |limit| blob::open_object(repo.key(), bytes, limit).map(|_| ()).map_err(|e| format!("does not open: {e}"));
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["data", _, name] | ["index", name] | ["snapshots", name] => named_by_hash(name),
        [k] if *k == CONFIG_KEY => {
            let plain =
                blob::open_object(repo.key(), bytes, limits::CONFIG).map_err(|e| format!("does not open: {e}"))?;
            let c: Config = serde_json::from_slice(&plain).map_err(|e| format!("malformed: {e}"))?;
            if c.id == repo.id() {
                Ok(())
            } else {
                Err("it is the config of another repository".into())
            }
        }
        [k] if *k == MARKER_KEY => {
            let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("malformed: {e}"))?;
            if v.get("id").and_then(|i| i.as_str()) == Some(repo.id().to_hex().as_str()) {
                Ok(())
            } else {
                Err("it is the marker of another repository".into())
            }
        }
        // A key slot cannot be authenticated; it opens the repository only
        // for whoever knows its password, as it did at the time.
        ["keys", name] => match name.parse::<Id>() {
            Ok(_) => serde_json::from_slice::<super::keys::KeySlot>(bytes)
                .map(|_| ())
                .map_err(|e| format!("not a key slot: {e}")),
            Err(_) => Err("its name is not a slot id".into()),
        },
        ["evidence", "key"] => opens(limits::EVIDENCE_KEY),
        ["evidence", ..] => opens(limits::EVIDENCE_RECORD),
        ["maintenance", "probe"] => Ok(()),
        ["maintenance", ..] => opens(limits::RETENTION_LOG_RECORD),
        _ => Err("cairn writes no object under this key".into()),
    }
}

/// Writes back into `now` (the repository's storage today) every object
/// that `past` (the repository opened as of an earlier time) held and
/// `now` no longer holds. The repository is opened in the past, so that
/// even a deleted marker, key slot or config comes back. `dry_run`: only
/// report.
pub fn undelete(past: &Repository, now: &dyn Backend, dry_run: bool) -> Result<UndeleteReport> {
    // Written the way the repository says, with its retention.
    now.set_write_policy(&past.config().storage.write_policy());
    let present: HashSet<String> = now.list("")?.into_iter().map(|o| o.key).collect();
    let then = past.backend().list("")?;
    let mut report = UndeleteReport { then: then.len() as u64, dry_run, ..Default::default() };
    let mut missing: Vec<_> =
        then.into_iter().filter(|o| !is_mutable_key(&o.key) && !present.contains(&o.key)).collect();
    missing.sort_by(|a, b| (rank(&a.key), &a.key).cmp(&(rank(&b.key), &b.key)));
    for o in missing {
        let bytes = past.backend().get(&o.key)?;
        if let Err(why) = check(past, &o.key, &bytes) {
            report.refused.push((o.key, why));
            continue;
        }
        if !dry_run {
            now.put(&o.key, &bytes)?;
        }
        report.bytes += bytes.len() as u64;
        report.restored.push(o.key);
    }
    Ok(report)
}
