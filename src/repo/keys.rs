//! Key slots: the master key wrapped once per password.
//!
//! A slot is plaintext JSON under `keys/<id>`: the Argon2id parameters and
//! salt, and the 64-byte master key sealed with the key derived from the
//! password. Adding a password adds a slot; removing one deletes it (never
//! the last one). Opening tries each slot in turn.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::crypto::{self, KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::host::{hostname, username};
use crate::id::Id;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

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
    pub created: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    /// Whether this slot opened with the password in use.
    pub current: bool,
}

fn slot_key(id: &Id) -> String {
    format!("keys/{id}")
}

/// Adds a slot that opens `key` with `password`; returns the slot id.
pub fn add_slot(backend: &dyn Backend, key: &MasterKey, password: &[u8], params: KdfParams) -> Result<Id> {
    if password.is_empty() {
        return Err(Error::InvalidArgument("the password is empty".into()));
    }
    let mut salt = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let wrap = crypto::derive_slot_key(password, &salt, params).map_err(Error::InvalidArgument)?;
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
    Ok(id)
}

fn load_slots(backend: &dyn Backend) -> Result<Vec<(Id, KeySlot)>> {
    let mut out = Vec::new();
    for o in backend.list("keys/")? {
        let Some(id) = o.key.strip_prefix("keys/").and_then(|n| n.parse::<Id>().ok()) else { continue };
        let bytes = backend.get(&o.key)?;
        match serde_json::from_slice::<KeySlot>(&bytes) {
            Ok(slot) => out.push((id, slot)),
            // A malformed slot must not lock out the good ones.
            Err(e) => tracing::warn!("ignoring malformed key slot `{}`: {e}", o.key),
        }
    }
    Ok(out)
}

/// Upper bounds on the (unauthenticated) Argon2id parameters of a slot, so
/// a tampered slot cannot make opening exhaust memory or time.
const MAX_KDF_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_KDF_ITERATIONS: u32 = 64;
const MAX_KDF_PARALLELISM: u32 = 64;

fn try_slot(slot: &KeySlot, password: &[u8]) -> Option<MasterKey> {
    let p = slot.params;
    if slot.kdf != "argon2id"
        || p.memory_kib > MAX_KDF_MEMORY_KIB
        || p.iterations > MAX_KDF_ITERATIONS
        || p.parallelism > MAX_KDF_PARALLELISM
    {
        return None;
    }
    let salt = B64.decode(&slot.salt).ok()?;
    let wrapped = B64.decode(&slot.wrapped_key).ok()?;
    let wrap = crypto::derive_slot_key(password, &salt, slot.params).ok()?;
    let raw = crypto::open_with(&wrap, &wrapped).ok()?;
    MasterKey::from_bytes(&raw)
}

/// Finds the slot `password` opens and returns the master key.
pub fn unlock(backend: &dyn Backend, password: &[u8]) -> Result<MasterKey> {
    unlock_slot(backend, password).map(|(_, k)| k)
}

fn unlock_slot(backend: &dyn Backend, password: &[u8]) -> Result<(Id, MasterKey)> {
    let slots = load_slots(backend)?;
    for (id, slot) in &slots {
        if let Some(k) = try_slot(slot, password) {
            return Ok((*id, k));
        }
    }
    Err(Error::WrongPassword { location: backend.location(), slots: slots.len() })
}

/// Lists the slots, marking the one `password` opens.
pub fn list(backend: &dyn Backend, password: &[u8]) -> Result<Vec<SlotInfo>> {
    let (current, _) = unlock_slot(backend, password)?;
    Ok(load_slots(backend)?
        .into_iter()
        .map(|(id, s)| SlotInfo {
            id,
            created: s.created,
            hostname: s.hostname,
            username: s.username,
            current: id == current,
        })
        .collect())
}

/// Removes the slot whose id starts with `prefix`. Refuses to remove the
/// last slot, and the slot of the password in use (so you cannot lock
/// yourself out by mistake).
pub fn remove(backend: &dyn Backend, password: &[u8], prefix: &str) -> Result<Id> {
    let (current, _) = unlock_slot(backend, password)?;
    let slots = load_slots(backend)?;
    let matches: Vec<Id> = slots.iter().map(|(id, _)| *id).filter(|id| id.to_hex().starts_with(prefix)).collect();
    let id = match matches.as_slice() {
        [one] => *one,
        [] => return Err(Error::InvalidArgument(format!("no key slot matches `{prefix}`"))),
        _ => return Err(Error::InvalidArgument(format!("key slot prefix `{prefix}` is ambiguous"))),
    };
    if id == current {
        return Err(Error::InvalidArgument(format!(
            "key slot {} is the one your password opens; remove it using another password",
            id.short()
        )));
    }
    if slots.len() <= 1 {
        return Err(Error::InvalidArgument("refusing to remove the last key slot".into()));
    }
    backend.delete(&slot_key(&id))?;
    Ok(id)
}
