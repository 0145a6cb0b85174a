//! The corruption matrix: flip, truncate, zero, delete, swap and resurrect
//! (a file an earlier forget + prune deleted), on every kind of file:
//! config, key slot, index file, data pack, snapshot, evidence record,
//! evidence key. Each trial damages one pristine repository, then undoes
//! the damage.
//!
//! No command dies of a signal, and no snapshot restores with exit 0 but
//! other bytes: each is byte-exact or an error (exit ≠ 0), and whenever a
//! restore fails, `check --read-data` does not pass.

use std::os::unix::process::ExitStatusExt;

use super::{restore, text, Repo, Rng, Store};
use crate::torture_support::kills::Model;

pub const KINDS: &[&str] = &["config", "keys", "index", "data", "snapshots", "evidence/records", "evidence/key"];
pub const ACTIONS: &[&str] = &["flip", "truncate", "zero", "delete", "swap", "resurrect"];

/// What a run counts.
#[derive(Default, Debug)]
pub struct CorruptionStats {
    pub trials: u64,
    /// Trials that damaged something (the others had nothing to act on,
    /// such as a second config to swap with).
    pub applied: u64,
    /// Applied, and `check --read-data` did not pass.
    pub found: u64,
    /// Applied, `check --read-data` passed, and every snapshot restored
    /// byte-exact (or its file was deleted and it did not restore).
    pub harmless: u64,
    /// Restores of a snapshot whose file was deleted (each refused).
    pub deleted_snapshots: u64,
    pub restores: usize,
}

/// The objects of one kind: `kind` itself, or the keys under `kind/`.
fn objects_of(store: &dyn Store, kind: &str) -> Vec<String> {
    let under = format!("{kind}/");
    store.keys().into_iter().filter(|k| k == kind || k.starts_with(&under)).collect()
}

/// Applies `action` to an object of `kind` chosen by `rng`; returns what was
/// done and the keys it touched, or `None` when the repository has nothing
/// to do it with.
fn corrupt(
    store: &dyn Store,
    grave: &dyn Store,
    kind: &str,
    action: &str,
    rng: &mut Rng,
) -> Option<(String, Vec<String>)> {
    let files = objects_of(store, kind);
    let victim = files.get(rng.below(files.len().max(1)))?.clone();
    let bytes = store.get(&victim).unwrap();
    match action {
        "flip" => {
            if bytes.is_empty() {
                return None;
            }
            let mut b = bytes;
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
            store.put(&victim, &b);
        }
        "truncate" => store.put(&victim, &bytes[..rng.below(bytes.len().max(1))]),
        "zero" => {
            let mut b = bytes;
            let start = rng.below(b.len().max(1));
            let end = (start + 1 + rng.below(4096)).min(b.len());
            b[start..end].fill(0);
            store.put(&victim, &b);
        }
        "delete" => store.delete(&victim),
        "swap" => {
            let other = files.iter().find(|f| **f != victim)?.clone();
            let theirs = store.get(&other).unwrap();
            store.put(&other, &bytes);
            store.put(&victim, &theirs);
            return Some((format!("swap {victim} and {other}"), vec![victim, other]));
        }
        "resurrect" => {
            // An object of this kind that an earlier forget and prune deleted.
            let now: std::collections::BTreeSet<String> = files.into_iter().collect();
            let gone: Vec<String> = objects_of(grave, kind).into_iter().filter(|g| !now.contains(g)).collect();
            let g = gone.get(rng.below(gone.len().max(1)))?.clone();
            store.put(&g, &grave.get(&g).unwrap());
            return Some((format!("resurrect {g}"), vec![g]));
        }
        _ => unreachable!(),
    }
    Some((format!("{action} {victim}"), vec![victim]))
}

/// Makes `store` hold what `pristine` holds again, after a trial that
/// touched `touched` (and whatever the commands themselves wrote).
fn undo(store: &dyn Store, pristine: &dyn Store, touched: &[String]) {
    let want: std::collections::BTreeSet<String> = pristine.keys().into_iter().collect();
    let have: std::collections::BTreeSet<String> = store.keys().into_iter().collect();
    for k in have.difference(&want) {
        store.delete(k);
    }
    for k in want.iter().filter(|k| !have.contains(*k) || touched.contains(k)) {
        store.put(k, &pristine.get(k).unwrap());
    }
    let after: Vec<String> = store.keys();
    assert_eq!(after, pristine.keys(), "the repository was not put back as it was");
}

/// Runs `trials` corruption trials on `repo` (a new, empty repository),
/// seeded by `seed`. Panics at the first silent corruption.
pub fn run(repo: &Repo, seed: u64, trials: u64) -> CorruptionStats {
    let mut rng = Rng::new(seed ^ 0x00c0_ffee);
    // Four backups; a copy of the repository (the grave); forget two and
    // prune, so that the grave holds objects to resurrect.
    let mut m = Model::new(repo);
    for _ in 0..4 {
        m.change_source(&mut rng);
        m.backup();
    }
    let grave = repo.store.sibling("grave");
    grave.remove_all();
    super::copy_into(&*repo.store, &*grave);
    repo.ok(&["forget", "--keep-last", "2"]);
    repo.ok(&["prune", "--max-unused", "0%"]);
    let listed: Vec<String> = repo.snapshots().into_iter().map(|s| s.0).collect();
    m.known.retain(|id, _| listed.contains(id));
    assert_eq!(m.known.len(), 2);
    let pristine = repo.store.sibling("pristine");
    pristine.remove_all();
    super::copy_into(&*repo.store, &*pristine);

    let mut stats = CorruptionStats { trials, ..Default::default() };
    for t in 0..trials {
        // Every kind in turn, the actions shifting by one each time round
        // the kinds (42 trials make every pair); the file and bytes by the seed.
        let (t, kinds) = (t as usize, KINDS.len());
        let kind = KINDS[t % kinds];
        let action = ACTIONS[(t % kinds + t / kinds) % ACTIONS.len()];
        let _ = std::fs::remove_dir_all(repo.cache_dir());
        let Some((what, touched)) = corrupt(&*repo.store, &*grave, kind, action, &mut rng) else { continue };
        stats.applied += 1;
        let check = repo.cairn(&["check", "--read-data"]);
        assert_eq!(check.status.signal(), None, "{what}: check died: {}", text(&check.stderr));
        let mut failed = Vec::new();
        let keys: std::collections::BTreeSet<String> = repo.store.keys().into_iter().collect();
        let ids: Vec<String> = m.known.keys().cloned().collect();
        for id in &ids {
            m.restores += 1;
            let (out, got) = restore(repo, id, &m.src, m.restores);
            assert_eq!(out.status.signal(), None, "{what}: restore {id} died: {}", text(&out.stderr));
            if !keys.contains(&format!("snapshots/{id}")) {
                // A deleted snapshot file looks like a forgotten snapshot:
                // only the evidence chain knows it existed (`cairn evidence
                // verify`). It must not restore.
                assert!(!out.status.success(), "{what}: restore {id} of a deleted snapshot exited 0");
                stats.deleted_snapshots += 1;
                continue;
            }
            if out.status.success() {
                let got = got.unwrap_or_default();
                assert_eq!(&got, &m.known[id], "{what}: restore {id} exited 0 with other bytes");
            } else {
                failed.push(id.clone());
            }
        }
        if !failed.is_empty() {
            assert!(
                !check.status.success(),
                "{what}: restore of {failed:?} fails, yet check --read-data passes:\n{}",
                text(&check.stdout)
            );
        }
        if check.status.success() {
            stats.harmless += 1;
        } else {
            stats.found += 1;
        }
        undo(&*repo.store, &*pristine, &touched);
    }
    stats.restores = m.restores;
    assert!(stats.applied > 0, "no trial had anything to damage");
    stats
}
