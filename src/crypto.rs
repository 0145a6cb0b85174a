//! Key derivation, authenticated encryption and keyed chunk ids.
//!
//! A repository has one random *master key* made of two 32-byte secrets:
//! - `enc`: the XChaCha20-Poly1305 key that seals every stored object
//!   (a fresh random 24-byte nonce per object, so no nonce bookkeeping);
//! - `id`: the BLAKE3 key for blob ids, so identical plaintext dedups but
//!   ids reveal nothing to someone without the key.
//!
//! The master key is stored only wrapped, in key slots: each slot seals it
//! with a key derived by Argon2id from one password and the slot's salt.
//! Sealed layout: `nonce (24) || ciphertext || tag (16)`.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::id::Id;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes that sealing adds to a plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Authentication of sealed data failed: it was altered, or the key is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authentication failed")]
pub struct AuthError;

/// The repository master key. Never printed: `Debug` shows nothing secret.
#[derive(Clone)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort: do not leave key bytes behind in freed memory.
        self.enc.iter_mut().for_each(|b| *b = 0);
        self.id.iter_mut().for_each(|b| *b = 0);
    }
}

impl MasterKey {
    pub fn random() -> MasterKey {
        let mut k = MasterKey { enc: [0; 32], id: [0; 32] };
        rand::rngs::OsRng.fill_bytes(&mut k.enc);
        rand::rngs::OsRng.fill_bytes(&mut k.id);
        k
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.enc);
        b[32..].copy_from_slice(&self.id);
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != 64 {
            return None;
        }
        let mut k = MasterKey { enc: [0; 32], id: [0; 32] };
        k.enc.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..]);
        Some(k)
    }

    /// The keyed id of a blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    /// Derives a sub-key for another purpose (e.g. the evidence signing key
    /// seal), so the master secrets are never used for two things.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(&self.enc);
        material[32..].copy_from_slice(&self.id);
        blake3::derive_key(context, &material)
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.enc, plaintext)
    }

    /// Seals the concatenation of `parts` and appends the result to `out`
    /// (no intermediate copy of the plaintext).
    pub fn seal_into(&self, parts: &[&[u8]], out: &mut Vec<u8>) {
        seal_into(&self.enc, parts, out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        open_with(&self.enc, sealed)
    }

    /// [`MasterKey::open`] into `buf` (cleared first), which a caller
    /// opening many blobs reuses instead of allocating one per blob.
    pub fn open_into(&self, sealed: &[u8], buf: &mut Vec<u8>) -> Result<(), AuthError> {
        open_into(&self.enc, sealed, buf)
    }
}

fn seal_into(key: &[u8; 32], parts: &[&[u8]], out: &mut Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let start = out.len();
    out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + OVERHEAD);
    out.extend_from_slice(&nonce);
    for p in parts {
        out.extend_from_slice(p);
    }
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut out[start + NONCE_LEN..])
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory sizes");
    out.extend_from_slice(&tag);
}

pub fn seal_with(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    seal_into(key, &[plaintext], &mut out);
    out
}

pub fn open_with(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut buf = Vec::new();
    open_into(key, sealed, &mut buf)?;
    Ok(buf)
}

fn open_into(key: &[u8; 32], sealed: &[u8], buf: &mut Vec<u8>) -> Result<(), AuthError> {
    buf.clear();
    if sealed.len() < OVERHEAD {
        return Err(AuthError);
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    buf.extend_from_slice(ct);
    cipher.decrypt_in_place_detached(XNonce::from_slice(nonce), b"", buf, tag.into()).map_err(|_| {
        buf.clear();
        AuthError
    })
}

/// Argon2id cost parameters, stored in each key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes: about a quarter of a second on a current core.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// The least memory a new slot may use: 19 MiB, OWASP's minimum for Argon2id.
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    /// The cheapest parameters a new slot accepts: quick repositories for tests.
    #[cfg(test)]
    pub const CHEAPEST: KdfParams = KdfParams { memory_kib: Self::MIN_MEMORY_KIB, iterations: 1, parallelism: 1 };
    /// The costliest parameters cairn ever writes into a new slot (`init
    /// --kdf-memory-kib` goes up to 256 MiB; passes and lanes are fixed).
    pub const MOST_COSTLY_NEW: KdfParams = KdfParams { memory_kib: 256 * 1024, iterations: 3, parallelism: 1 };
    /// The most a stored slot may ask for: four times [`Self::MOST_COSTLY_NEW`]
    /// in each parameter. A slot's parameters are not authenticated, so a
    /// planted slot could otherwise make every open take minutes and
    /// gigabytes; one above the cap is refused before any hashing.
    pub const CAP: KdfParams = KdfParams {
        memory_kib: 4 * Self::MOST_COSTLY_NEW.memory_kib,
        iterations: 4 * Self::MOST_COSTLY_NEW.iterations,
        parallelism: 4 * Self::MOST_COSTLY_NEW.parallelism,
    };

    /// Checks parameters for a new slot: at least [`Self::MIN_MEMORY_KIB`],
    /// at most [`Self::MOST_COSTLY_NEW`].
    pub fn check_new(&self) -> Result<(), String> {
        let max = Self::MOST_COSTLY_NEW;
        if self.memory_kib < Self::MIN_MEMORY_KIB {
            return Err(format!(
                "Argon2id memory of {} KiB is below the minimum of {} KiB (19 MiB, OWASP's minimum for Argon2id)",
                self.memory_kib,
                Self::MIN_MEMORY_KIB
            ));
        }
        if self.memory_kib > max.memory_kib
            || !(1..=max.iterations).contains(&self.iterations)
            || !(1..=max.parallelism).contains(&self.parallelism)
        {
            return Err(format!("Argon2id parameters {self} are outside what cairn writes (at most {max})"));
        }
        Ok(())
    }

    /// Checks a stored slot's parameters against [`Self::CAP`].
    pub fn check_cap(&self) -> Result<(), String> {
        let cap = Self::CAP;
        if self.memory_kib > cap.memory_kib || self.iterations > cap.iterations || self.parallelism > cap.parallelism {
            return Err(format!("its Argon2id parameters {self} exceed the cap of {cap}"));
        }
        Ok(())
    }

    /// A relative measure of what deriving with these parameters costs.
    pub fn cost(&self) -> u64 {
        self.memory_kib as u64 * self.iterations as u64
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} KiB × {} passes × {} lanes", self.memory_kib, self.iterations, self.parallelism)
    }
}

/// Derives the 32-byte slot key from a password with Argon2id.
pub fn derive_slot_key(password: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32], String> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| format!("invalid Argon2id parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    argon.hash_password_into(password, salt, &mut out).map_err(|e| format!("Argon2id failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let k = MasterKey::random();
        let sealed = k.seal(b"hello");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(k.open(&sealed).unwrap(), b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(k.open(&bad), Err(AuthError), "flip at byte {i} went unnoticed");
        }
        assert_eq!(MasterKey::random().open(&sealed), Err(AuthError));
        assert_eq!(k.open(&sealed[..10]), Err(AuthError));
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::random();
        let b = MasterKey::random();
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), Id::hash_of(b"x"));
    }

    #[test]
    fn new_slots_need_the_owasp_minimum_and_stored_slots_are_capped_at_four_times_the_most_costly_new_one() {
        assert_eq!(KdfParams::default().check_new(), Ok(()));
        let p = |memory_kib, iterations, parallelism| KdfParams { memory_kib, iterations, parallelism };
        assert_eq!(p(19456, 1, 1).check_new(), Ok(()));
        assert!(p(19455, 3, 1).check_new().unwrap_err().contains("below the minimum of 19456 KiB"));
        assert!(p(1024, 1, 1).check_new().is_err());
        assert!(p(256 * 1024 + 1, 3, 1).check_new().is_err());
        assert!(p(65536, 4, 1).check_new().is_err());
        assert!(p(65536, 3, 2).check_new().is_err());
        assert_eq!(KdfParams::CAP, p(1024 * 1024, 12, 4));
        assert_eq!(KdfParams::CAP.check_cap(), Ok(()));
        for over in [p(1024 * 1024 + 1, 1, 1), p(1024, 13, 1), p(1024, 1, 5), p(4 << 20, 64, 64)] {
            assert!(over.check_cap().unwrap_err().contains("exceed the cap"), "{over} passed the cap");
        }
        // Old slots below today's minimum still open.
        assert_eq!(p(1024, 1, 1).check_cap(), Ok(()));
    }

    #[test]
    fn master_key_bytes_round_trip() {
        let k = MasterKey::random();
        let k2 = MasterKey::from_bytes(&k.to_bytes()).unwrap();
        assert_eq!(k.blob_id(b"q"), k2.blob_id(b"q"));
        assert!(format!("{k:?}").find(&hex::encode(&k.to_bytes()[..4])).is_none());
    }
}
