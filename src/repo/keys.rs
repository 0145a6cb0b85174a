//! Key slots: the master key wrapped once per password.
//!
//! A slot is plaintext JSON under `keys/<id>`: the Argon2id parameters and
//! salt, and the 64-byte master key sealed with the key derived from the
//! password. Adding a password adds a slot; removing one deletes it (never
//! the last one).
//!
//! Opening judges every slot before hashing anything: a slot above
//! [`limits::KEY_SLOT`](super::limits::KEY_SLOT) bytes, or that does not
//! parse, is damaged; one whose parameters exceed [`KdfParams::CAP`] is
//! refused. The others are tried in this order, at most
//! [`MAX_SLOTS_TRIED`] of them: the slot named by [`KeyHints::key_id`]
//! (`CAIRN_KEY_ID`), the slot that opened last time on this machine
//! ([`KeyHints::cache_base`], recorded only when there is more than one
//! slot to choose from), then the cheapest first, so a planted costly
//! slot is tried only when every cheaper one failed. A slot that opens
//! must also open the repository's config; one that does not came from
//! another repository. When nothing opens, the error names the real cause:
//! a wrong password, a damaged or refused slot, a foreign slot, or too many
//! slots to try.

use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::crypto::{self, KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::host::{hostname, username};
use crate::id::Id;

use super::limits;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// At most this many slots are hashed in one attempt to open; set
/// `CAIRN_KEY_ID` to reach a slot beyond them.
pub const MAX_SLOTS_TRIED: usize = 16;
/// The file, under the cache base and the repository id, that records the
/// slot that opened last (its id only: nothing secret).
pub const LAST_SLOT_FILE: &str = "key-slot";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    pub version: u32,
    pub kdf: String,
    pub params: KdfParams,
    pub salt: String,
    pub wrapped_key: String,
    pub created: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
}

/// What `cairn key list` shows of a slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    pub id: Id,
    /// `None` for a slot that does not parse.
    pub created: Option<DateTime<Utc>>,
    pub hostname: String,
    pub username: String,
    /// Whether this slot opened with the password in use.
    pub current: bool,
    /// Why the slot cannot be used (damaged, or its parameters refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Which slots to try first.
#[derive(Debug, Clone, Default)]
pub struct KeyHints {
    /// A slot id prefix to try before any other (`CAIRN_KEY_ID`).
    pub key_id: Option<String>,
    /// Where to read and record the slot that opened last:
    /// `<cache_base>/<repository id>/key-slot`.
    pub cache_base: Option<PathBuf>,
}

impl KeyHints {
    /// `CAIRN_KEY_ID`, and the default cache base for the last slot used.
    pub fn from_env() -> KeyHints {
        KeyHints {
            key_id: std::env::var("CAIRN_KEY_ID").ok().filter(|s| !s.trim().is_empty()),
            cache_base: super::cache::default_base(),
        }
    }

    fn last_slot_path(&self, repo: &Id) -> Option<PathBuf> {
        self.cache_base.as_ref().map(|b| b.join(repo.to_hex()).join(LAST_SLOT_FILE))
    }

    /// The slot recorded as opening last for `repo`, if any.
    pub fn last_slot(&self, repo: &Id) -> Option<Id> {
        let p = self.last_slot_path(repo)?;
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Records `slot` as the one that opened `repo`; failures only cost
    /// the order of the next attempt.
    pub fn remember(&self, repo: &Id, slot: &Id) {
        if self.last_slot(repo) == Some(*slot) {
            return;
        }
        if let Some(p) = self.last_slot_path(repo) {
            if let Err(e) = write_private(&p, format!("{slot}\n").as_bytes()) {
                tracing::debug!("could not record the key slot used in {}: {e}", p.display());
            }
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    crate::private::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    crate::private::write_atomic(path, bytes)
}

fn slot_key(id: &Id) -> String {
    format!("keys/{id}")
}

/// Adds a slot that opens `key` with `password`; returns the slot id.
/// `params` must pass [`KdfParams::check_new`].
pub fn add_slot(backend: &dyn Backend, key: &MasterKey, password: &[u8], params: KdfParams) -> Result<Id> {
    if password.is_empty() {
        return Err(Error::EmptyPassword { what: "the password" });
    }
    params.check_new().map_err(|detail| Error::KdfSettings { detail })?;
    let mut salt = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let wrap = crypto::derive_slot_key(password, &salt, params).map_err(|detail| Error::KdfSettings { detail })?;
    let wrapped = crypto::seal_with(&wrap, &key.to_bytes());
    let slot = KeySlot {
        version: 1,
        kdf: "argon2id".into(),
        params,
        salt: B64.encode(salt),
        wrapped_key: B64.encode(wrapped),
        created: Utc::now(),
        hostname: hostname(),
        username: username(),
    };
    let id = Id::random();
    backend.put(&slot_key(&id), &serde_json::to_vec_pretty(&slot).expect("slot serialises"))?;
    crate::failpoint::hit!("keys::slot_stored");
    Ok(id)
}

/// A slot ready to be tried: its decoded salt and wrapped key.
struct Usable {
    id: Id,
    params: KdfParams,
    salt: Vec<u8>,
    wrapped: Vec<u8>,
}

/// One stored slot, judged without hashing.
enum Judged {
    Usable(Usable),
    /// Not usable: too large, not parseable, or bad fields.
    Damaged(Id, String),
    /// Parameters above [`KdfParams::CAP`]: never hashed.
    Refused(Id, String),
}

/// Every slot with its parsed JSON (when it parses) and verdict.
fn judge_slots(backend: &dyn Backend) -> Result<Vec<(Id, Option<KeySlot>, Judged)>> {
    let mut out = Vec::new();
    for o in backend.list("keys/")? {
        let Some(id) = o.key.strip_prefix("keys/").and_then(|n| n.parse::<Id>().ok()) else { continue };
        if o.size > limits::KEY_SLOT {
            let why = format!("it is {} bytes, above the {} bytes a key slot may hold", o.size, limits::KEY_SLOT);
            out.push((id, None, Judged::Damaged(id, why)));
            continue;
        }
        let bytes = match backend.get(&o.key) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue, // removed meanwhile
            Err(e) => return Err(e.into()),
        };
        if bytes.len() as u64 > limits::KEY_SLOT {
            let why = format!("it is {} bytes, above the {} bytes a key slot may hold", bytes.len(), limits::KEY_SLOT);
            out.push((id, None, Judged::Damaged(id, why)));
            continue;
        }
        match serde_json::from_slice::<KeySlot>(&bytes) {
            Ok(slot) => {
                let verdict = judge(id, &slot);
                out.push((id, Some(slot), verdict));
            }
            Err(e) => out.push((id, None, Judged::Damaged(id, format!("it is not a key slot: {e}")))),
        }
    }
    Ok(out)
}

/// Judges the bytes of one key slot as opening would, without hashing:
/// `Ok` when the slot could be tried, the reason otherwise. A seam for
/// the fuzz tests (`tests/fuzz`); opening uses [`judge_slots`].
#[doc(hidden)]
pub fn judge_bytes(bytes: &[u8]) -> std::result::Result<(), String> {
    let slot: KeySlot = serde_json::from_slice(bytes).map_err(|e| format!("it is not a key slot: {e}"))?;
    match judge(Id::hash_of(bytes), &slot) {
        Judged::Usable(_) => Ok(()),
        Judged::Damaged(_, why) | Judged::Refused(_, why) => Err(why),
    }
}

fn judge(id: Id, slot: &KeySlot) -> Judged {
    if slot.kdf != "argon2id" {
        return Judged::Damaged(id, format!("unknown key derivation `{}`", slot.kdf));
    }
    if let Err(e) = slot.params.check_cap() {
        return Judged::Refused(id, e);
    }
    if let Err(e) = argon2::Params::new(slot.params.memory_kib, slot.params.iterations, slot.params.parallelism, None) {
        return Judged::Damaged(id, format!("invalid Argon2id parameters {}: {e}", slot.params));
    }
    let salt = match B64.decode(&slot.salt) {
        Ok(s) if (8..=64).contains(&s.len()) => s,
        Ok(s) => return Judged::Damaged(id, format!("its salt is {} bytes (expected 8 to 64)", s.len())),
        Err(_) => return Judged::Damaged(id, "its salt is not base64".into()),
    };
    let wrapped = match B64.decode(&slot.wrapped_key) {
        Ok(w) if w.len() == 64 + crypto::OVERHEAD => w,
        Ok(w) => {
            return Judged::Damaged(
                id,
                format!("its wrapped key is {} bytes (expected {})", w.len(), 64 + crypto::OVERHEAD),
            )
        }
        Err(_) => return Judged::Damaged(id, "its wrapped key is not base64".into()),
    };
    Judged::Usable(Usable { id, params: slot.params, salt, wrapped })
}

/// A slot that opened with the password, and the master key it holds.
pub struct Unlocked {
    pub slot: Id,
    pub key: MasterKey,
}

/// The outcome of trying the slots.
pub enum Opened {
    /// A slot opened and its key fits the repository.
    Fits(Unlocked),
    /// Slots opened, but none of their keys fits the repository (their ids,
    /// with the keys): either they belong to another repository or the
    /// repository's config is damaged, which the caller tells apart.
    Misfits(Vec<Unlocked>),
}

/// The key slots as read from storage and judged, for [`unlock`]: read
/// while the marker and the config are fetched (each a round trip).
pub struct SlotsRead(Vec<(Id, Option<KeySlot>, Judged)>);

/// Lists and reads every key slot.
pub fn read_slots(backend: &dyn Backend) -> Result<SlotsRead> {
    judge_slots(backend).map(SlotsRead)
}

/// Tries the slots `read` from `backend` (see the module documentation for
/// the order and the bounds) until one opens with `password` and its key
/// `fits` the repository. `repo` is the repository id of the marker, for
/// the record of the slot used last.
pub fn unlock(
    read: SlotsRead,
    backend: &dyn Backend,
    password: &[u8],
    hints: &KeyHints,
    repo: &Id,
    fits: &mut dyn FnMut(&MasterKey) -> bool,
) -> Result<Opened> {
    let judged = read.0;
    if judged.is_empty() {
        return Err(Error::NoKeySlots { location: backend.location() });
    }
    let mut usable = Vec::new();
    let mut damaged = Vec::new();
    let mut refused = Vec::new();
    for (_, _, j) in judged {
        match j {
            Judged::Usable(u) => usable.push(u),
            Judged::Damaged(id, why) => damaged.push((id, why)),
            Judged::Refused(id, why) => refused.push((id, why)),
        }
    }
    let named = hints.key_id.as_deref().map(|p| p.trim().to_ascii_lowercase());
    let last = hints.last_slot(repo);
    // Named first, then the last one used, then the cheapest.
    usable.sort_by_key(|u| {
        let is_named = named.as_deref().is_some_and(|p| u.id.to_hex().starts_with(p));
        (!is_named, Some(u.id) != last, u.params.cost(), u.id)
    });
    let total = usable.len();
    let mut misfits = Vec::new();
    for u in usable.iter().take(MAX_SLOTS_TRIED) {
        let Ok(wrap) = crypto::derive_slot_key(password, &u.salt, u.params) else { continue };
        let Some(key) = crypto::open_with(&wrap, &u.wrapped).ok().and_then(|raw| MasterKey::from_bytes(&raw)) else {
            continue;
        };
        if fits(&key) {
            // With one slot there is no order to remember (and nothing is written).
            if total > 1 {
                hints.remember(repo, &u.id);
            }
            return Ok(Opened::Fits(Unlocked { slot: u.id, key }));
        }
        misfits.push(Unlocked { slot: u.id, key });
    }
    if !misfits.is_empty() {
        return Ok(Opened::Misfits(misfits));
    }
    if let Some((id, detail)) = damaged.into_iter().next() {
        return Err(Error::KeySlotDamaged { slot: slot_key(&id), detail });
    }
    if let Some((id, detail)) = refused.into_iter().next() {
        return Err(Error::KeySlotRefused { slot: slot_key(&id), detail });
    }
    if total > MAX_SLOTS_TRIED {
        return Err(Error::TooManyKeySlots { location: backend.location(), tried: MAX_SLOTS_TRIED, total });
    }
    Err(Error::WrongPassword { location: backend.location(), slots: total })
}

/// Lists the slots, marking `current` (the slot the repository was opened
/// with) and naming what is wrong with the unusable ones.
pub fn list(backend: &dyn Backend, current: &Id) -> Result<Vec<SlotInfo>> {
    Ok(judge_slots(backend)?
        .into_iter()
        .map(|(id, slot, verdict)| {
            let problem = match verdict {
                Judged::Usable(_) => None,
                Judged::Damaged(_, why) => Some(format!("damaged: {why}")),
                Judged::Refused(_, why) => Some(format!("never tried: {why}")),
            };
            let (created, hostname, username) = match slot {
                Some(s) => (Some(s.created), s.hostname, s.username),
                None => (None, String::new(), String::new()),
            };
            SlotInfo { id, created, hostname, username, current: id == *current, problem }
        })
        .collect())
}

/// Removes the slot whose id starts with `prefix` (damaged and refused
/// slots included). Refuses to remove the last slot, and `current`, the
/// slot of the password in use (so you cannot lock yourself out by mistake).
pub fn remove(backend: &dyn Backend, current: &Id, prefix: &str) -> Result<Id> {
    let ids: Vec<Id> = backend
        .list("keys/")?
        .into_iter()
        .filter_map(|o| o.key.strip_prefix("keys/").and_then(|n| n.parse::<Id>().ok()))
        .collect();
    let prefix_l = prefix.to_ascii_lowercase();
    let matches: Vec<Id> = ids.iter().copied().filter(|id| id.to_hex().starts_with(&prefix_l)).collect();
    let id = match matches.as_slice() {
        [one] if !prefix.is_empty() => *one,
        [_] | [] => return Err(Error::KeySlotNotFound { prefix: prefix.to_string() }),
        _ => return Err(Error::AmbiguousKeySlot { prefix: prefix.to_string() }),
    };
    if id == *current {
        return Err(Error::RemovingOwnKeySlot { slot: id.short() });
    }
    if ids.len() <= 1 {
        return Err(Error::LastKeySlot);
    }
    backend.delete(&slot_key(&id))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

    const PW: &[u8] = b"slot test password";

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        (d, b)
    }

    fn open(b: &LocalBackend, pw: &[u8], hints: &KeyHints, key: &MasterKey) -> Result<Opened> {
        let want = key.to_bytes();
        unlock(read_slots(b)?, b, pw, hints, &Id::hash_of(b"repo"), &mut |k| k.to_bytes() == want)
    }

    fn opened_slot(r: Result<Opened>) -> Id {
        match r {
            Ok(Opened::Fits(u)) => u.slot,
            Ok(Opened::Misfits(_)) => panic!("misfit"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Writes a slot by hand (as a forger would), bypassing `add_slot`'s checks.
    fn plant(b: &LocalBackend, params: KdfParams) -> Id {
        let slot = KeySlot {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: B64.encode([7u8; 32]),
            wrapped_key: B64.encode([0u8; 104]),
            created: Utc::now(),
            hostname: "h".into(),
            username: "u".into(),
        };
        let id = Id::random();
        b.put(&slot_key(&id), &serde_json::to_vec(&slot).unwrap()).unwrap();
        id
    }

    #[test]
    fn a_slot_above_the_cap_is_refused_unhashed_and_named() {
        let (_d, b) = backend();
        let key = MasterKey::random();
        add_slot(&b, &key, PW, KdfParams::CHEAPEST).unwrap();
        // 4 GiB × 64 passes: hashing it would take minutes and 4 GiB.
        let huge = plant(&b, KdfParams { memory_kib: 4 << 20, iterations: 64, parallelism: 64 });
        match open(&b, b"wrong password", &KeyHints::default(), &key) {
            Err(Error::KeySlotRefused { slot, detail }) => {
                assert_eq!(slot, format!("keys/{huge}"));
                assert!(detail.contains("exceed the cap"), "{detail}");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("opened with a wrong password"),
        }
        // The right password opens the good slot, which is tried first.
        assert_ne!(opened_slot(open(&b, PW, &KeyHints::default(), &key)), huge);
    }

    #[test]
    fn a_damaged_slot_is_told_apart_from_a_wrong_password() {
        let (_d, b) = backend();
        let key = MasterKey::random();
        add_slot(&b, &key, PW, KdfParams::CHEAPEST).unwrap();
        assert!(matches!(open(&b, b"wrong", &KeyHints::default(), &key), Err(Error::WrongPassword { slots: 1, .. })));
        let bad = Id::random();
        b.put(&slot_key(&bad), b"{\"version\": 1, \"kdf\": \"argon2id\"").unwrap();
        match open(&b, b"wrong", &KeyHints::default(), &key) {
            Err(Error::KeySlotDamaged { slot, detail }) => {
                assert_eq!(slot, format!("keys/{bad}"));
                assert!(detail.contains("not a key slot"), "{detail}");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("opened"),
        }
        // A damaged slot does not keep a good password out.
        opened_slot(open(&b, PW, &KeyHints::default(), &key));
        let big = Id::random();
        b.put(&slot_key(&big), &vec![b' '; limits::KEY_SLOT as usize + 1]).unwrap();
        let listed = list(&b, &Id::random()).unwrap();
        let problem = |id: Id| listed.iter().find(|s| s.id == id).unwrap().problem.clone().unwrap();
        assert!(problem(big).contains("above the 4096 bytes"), "{}", problem(big));
        assert!(problem(bad).starts_with("damaged: "));
    }

    #[test]
    fn no_slots_at_all_is_its_own_error() {
        let (_d, b) = backend();
        assert!(matches!(open(&b, PW, &KeyHints::default(), &MasterKey::random()), Err(Error::NoKeySlots { .. })));
    }

    #[test]
    fn a_slot_whose_key_does_not_fit_is_a_misfit_and_another_that_fits_wins() {
        let (_d, b) = backend();
        let mine = MasterKey::random();
        let foreign = MasterKey::random();
        let f = add_slot(&b, &foreign, PW, KdfParams::CHEAPEST).unwrap();
        match open(&b, PW, &KeyHints::default(), &mine) {
            Ok(Opened::Misfits(m)) => assert_eq!(m.iter().map(|u| u.slot).collect::<Vec<_>>(), vec![f]),
            _ => panic!("expected a misfit"),
        }
        let good = add_slot(&b, &mine, PW, KdfParams::CHEAPEST).unwrap();
        assert_eq!(opened_slot(open(&b, PW, &KeyHints::default(), &mine)), good);
    }

    #[test]
    fn the_named_slot_then_the_last_used_then_the_cheapest_is_tried_first() {
        let (d, b) = backend();
        let key = MasterKey::random();
        // Same password in three slots: the order decides which opens.
        let costly = KdfParams { memory_kib: KdfParams::MIN_MEMORY_KIB, iterations: 2, parallelism: 1 };
        let a = add_slot(&b, &key, PW, costly).unwrap();
        let c = add_slot(&b, &key, PW, KdfParams::CHEAPEST).unwrap();
        let hints = KeyHints { key_id: None, cache_base: Some(d.path().join("cache")) };
        assert_eq!(opened_slot(open(&b, PW, &hints, &key)), c, "the cheapest first");
        let named = KeyHints { key_id: Some(a.to_hex()[..8].to_uppercase()), ..hints.clone() };
        assert_eq!(opened_slot(open(&b, PW, &named, &key)), a, "CAIRN_KEY_ID first");
        // That success was recorded: without a name, `a` now comes first.
        assert_eq!(hints.last_slot(&Id::hash_of(b"repo")), Some(a));
        assert_eq!(opened_slot(open(&b, PW, &hints, &key)), a, "the last used first");
        let record = hints.last_slot_path(&Id::hash_of(b"repo")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&record).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn with_a_single_slot_nothing_is_recorded() {
        let (d, b) = backend();
        let key = MasterKey::random();
        add_slot(&b, &key, PW, KdfParams::CHEAPEST).unwrap();
        let hints = KeyHints { key_id: None, cache_base: Some(d.path().join("cache")) };
        opened_slot(open(&b, PW, &hints, &key));
        assert!(!d.path().join("cache").exists(), "a lone slot was recorded");
    }

    #[test]
    fn at_most_max_slots_are_hashed_and_the_error_says_so() {
        let (_d, b) = backend();
        let key = MasterKey::random();
        for _ in 0..MAX_SLOTS_TRIED {
            add_slot(&b, &MasterKey::random(), b"other", KdfParams::CHEAPEST).unwrap();
        }
        // The right slot is the most costly, so it sorts last: never tried.
        let costly = KdfParams { memory_kib: KdfParams::MIN_MEMORY_KIB, iterations: 2, parallelism: 1 };
        let mine = add_slot(&b, &key, PW, costly).unwrap();
        match open(&b, PW, &KeyHints::default(), &key) {
            Err(Error::TooManyKeySlots { tried, total, .. }) => assert_eq!((tried, total), (16, 17)),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a 17th slot was tried"),
        }
        let named = KeyHints { key_id: Some(mine.to_hex()), cache_base: None };
        assert_eq!(opened_slot(open(&b, PW, &named, &key)), mine);
    }

    #[test]
    fn new_slots_below_the_owasp_minimum_are_refused() {
        let (_d, b) = backend();
        let weak = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
        let e = add_slot(&b, &MasterKey::random(), PW, weak).unwrap_err();
        assert!(e.to_string().contains("below the minimum of 19456 KiB"), "{e}");
        assert!(b.list("keys/").unwrap().is_empty());
    }

    #[test]
    fn remove_reaches_damaged_slots_but_never_the_current_or_last_one() {
        let (_d, b) = backend();
        let key = MasterKey::random();
        let mine = add_slot(&b, &key, PW, KdfParams::CHEAPEST).unwrap();
        assert!(remove(&b, &mine, &mine.to_hex()[..6]).unwrap_err().to_string().contains("your password opens"));
        let bad = Id::random();
        b.put(&slot_key(&bad), b"not json").unwrap();
        assert_eq!(remove(&b, &mine, &bad.to_hex()).unwrap(), bad);
        assert!(remove(&b, &Id::random(), &mine.to_hex()).unwrap_err().to_string().contains("last key slot"));
        assert!(remove(&b, &mine, "").is_err());
    }
}
