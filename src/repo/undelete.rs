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

/// What to write back besides the repository's data.
#[derive(Default)]
pub struct UndeleteOptions<'k> {
    /// Show what would be written back; write nothing.
    pub dry_run: bool,
    /// Write back key slots removed since then too. Without it, a slot
    /// removed with `key remove` (after a password leaked, say) stays
    /// removed, unless the repository has no slot left at all.
    pub key_slots: bool,
    /// Keys that open evidence objects besides the master key (the
    /// evidence read key, which the caller derives).
    pub evidence_openers: Vec<&'k crate::crypto::MasterKey>,
}

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
fn check(repo: &Repository, key: &str, bytes: &[u8], opts: &UndeleteOptions<'_>) -> std::result::Result<(), String> {
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
        ["evidence", ..] => {
            let any = |k: &crate::crypto::MasterKey| blob::open_object(k, bytes, limits::EVIDENCE_RECORD).is_ok();
            if opts.evidence_openers.iter().any(|k| any(k)) {
                Ok(())
            } else {
                opens(limits::EVIDENCE_RECORD)
            }
        }
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
pub fn undelete(past: &Repository, now: &dyn Backend, opts: &UndeleteOptions<'_>) -> Result<UndeleteReport> {
    let dry_run = opts.dry_run;
    // Written the way the repository says, with its retention.
    now.set_write_policy(&past.config().storage.write_policy());
    let present: HashSet<String> = now.list("")?.into_iter().map(|o| o.key).collect();
    let no_slot_left = !present.iter().any(|k| k.starts_with("keys/"));
    let then = past.backend().list("")?;
    let mut report = UndeleteReport { then: then.len() as u64, dry_run, ..Default::default() };
    // Locks are never written back (a lock of the past would block today's
    // jobs), the legacy evidence lock directory included.
    let is_lock = |k: &str| is_mutable_key(k) || k.starts_with(&format!("{}/", super::lock::LEGACY_EVIDENCE_LOCKS));
    let mut missing: Vec<_> = then.into_iter().filter(|o| !is_lock(&o.key) && !present.contains(&o.key)).collect();
    missing.sort_by(|a, b| (rank(&a.key), &a.key).cmp(&(rank(&b.key), &b.key)));
    for o in missing {
        if o.key.starts_with("keys/") && !opts.key_slots && !no_slot_left {
            report.refused.push((
                o.key,
                "a key slot removed since then stays removed (its password may have leaked); \
                 pass --include-key-slots to bring it back"
                    .into(),
            ));
            continue;
        }
        let bytes = past.backend().get(&o.key)?;
        if let Err(why) = check(past, &o.key, &bytes, opts) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::LocalBackend;
    use crate::crypto::KdfParams;
    use crate::repo::{keys, InitOptions};

    /// The past is a copy of the repository taken before a key slot was
    /// removed; `now` is the repository after `key remove`.
    #[test]
    fn bug_an_undelete_brought_back_a_key_slot_removed_after_a_leak() {
        let d = tempfile::tempdir().unwrap();
        let kdf = KdfParams::CHEAPEST;
        let (then_dir, now_dir) = (d.path().join("then"), d.path().join("now"));
        let repo =
            Repository::init(Arc::new(LocalBackend::new(&then_dir)), b"pw", InitOptions { kdf, ..Default::default() })
                .unwrap();
        let leaked = keys::add_slot(repo.backend().as_ref(), repo.key(), b"leaked", kdf).unwrap();
        let now = LocalBackend::new(&now_dir);
        for o in repo.backend().list("").unwrap() {
            now.put(&o.key, &repo.backend().get(&o.key).unwrap()).unwrap();
        }
        let slot = format!("keys/{leaked}");
        now.delete(&slot).unwrap();

        let r = undelete(&repo, &now, &UndeleteOptions::default()).unwrap();
        assert!(r.restored.is_empty(), "{:?}", r.restored);
        assert_eq!(r.refused.len(), 1, "{:?}", r.refused);
        assert!(r.refused[0].0 == slot && r.refused[0].1.contains("--include-key-slots"), "{:?}", r.refused);
        assert!(now.get(&slot).is_err(), "the removed slot stays removed");

        let asked = UndeleteOptions { key_slots: true, ..Default::default() };
        assert_eq!(undelete(&repo, &now, &asked).unwrap().restored, std::slice::from_ref(&slot));
        assert!(now.get(&slot).is_ok());
    }
}
