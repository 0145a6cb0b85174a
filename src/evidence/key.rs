//! The evidence signing key: one ed25519 key pair per repository.
//!
//! It is stored at [`KEY_OBJECT`] as a metadata object (sealed with the
//! master key like `config`), whose JSON holds the public key in the clear
//! and the 32-byte secret seed sealed once more, with a key derived from the
//! master key for this use only:
//!
//! ```json
//! { "v": 1, "algorithm": "ed25519", "public": "<base64, 32 bytes>",
//!   "secret": "<base64 of seal(derive(SEAL_CONTEXT), seed)>", "created": "…" }
//! ```
//!
//! The public key's text form, which `cairn evidence pubkey` prints and
//! auditors hand to `cairn evidence verify --pubkey`, is one line:
//! `cairn-evidence-ed25519:<standard base64 of the 32 key bytes>`.
//!
//! Every password holder can unseal this key, so since host keys exist
//! ([`super::signer`]) it is the **legacy signer**: its records form the
//! legacy chain (`evidence/records/<seq>`), verification names them as
//! such, and an auditor trusts them only as far as the keys file says.
//!
//! The **read key** ([`read_key`]) seals the evidence objects written
//! since: records, heads and enrolled keys. It is derived from the master
//! key (so every password holder has it, and nothing in storage can be
//! deleted to lose it), and `cairn evidence reader-key` exports it for an
//! auditor, who can then read the evidence and nothing else.

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::error::{Error, Result};
use crate::repo::{blob, limits, Repository};

/// Where the key pair is stored.
pub const KEY_OBJECT: &str = crate::repo::EVIDENCE_KEY_OBJECT;
/// The prefix of the public key's text form.
pub const PUBKEY_PREFIX: &str = "cairn-evidence-ed25519:";
/// The derivation context of the key that seals the secret seed.
const SEAL_CONTEXT: &str = "cairn evidence signing key seal v1";
/// The derivation context of the evidence read key.
const READ_CONTEXT: &str = "cairn evidence read key v1";
/// The prefix of the read key's text form.
pub const READER_PREFIX: &str = "cairn-evidence-reader:";
/// The key id of the legacy signer (host key ids are hex, so never this).
pub const LEGACY_KEY_ID: &str = "legacy";

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    v: u32,
    algorithm: String,
    public: String,
    secret: String,
    created: DateTime<Utc>,
}

/// The public key in its one-line text form.
pub fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBKEY_PREFIX}{}", B64.encode(key.as_bytes()))
}

/// A public key's id: the first 16 hex digits of the BLAKE3 hash of its 32
/// bytes. It names the key's sub-chain and objects; the key itself, not
/// the id, is what signatures are checked with.
pub fn key_id(key: &VerifyingKey) -> String {
    blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
}

/// Whether `s` has the form of a host key id (16 lowercase hex digits).
pub fn is_key_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The evidence read key of a repository: it seals every evidence object
/// written since host keys exist, and opens nothing else.
pub fn read_key(repo: &Repository) -> crypto::MasterKey {
    reader_from_secret(&repo.key().derive(READ_CONTEXT))
}

fn reader_from_secret(secret: &[u8; 32]) -> crypto::MasterKey {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(secret);
    // The second half keys blob ids, which evidence objects never use.
    bytes[32..].copy_from_slice(blake3::derive_key("cairn evidence read key ids v1", secret).as_slice());
    let k = crypto::MasterKey::from_bytes(&bytes).expect("64 bytes");
    bytes.iter_mut().for_each(|b| *b = 0);
    k
}

/// The read key's one-line text form, for `cairn evidence reader-key`.
pub fn reader_text(repo: &Repository) -> String {
    let mut secret = repo.key().derive(READ_CONTEXT);
    let text = format!("{READER_PREFIX}{}", B64.encode(secret));
    secret.iter_mut().for_each(|b| *b = 0);
    text
}

/// Reads a read key from its text form.
pub fn parse_reader(text: &str) -> Result<crypto::MasterKey> {
    let bad = |detail: &str| Error::InvalidPublicKey { detail: format!("reader key: {detail}") };
    let b64 = text
        .trim()
        .strip_prefix(READER_PREFIX)
        .ok_or_else(|| bad(&format!("it does not start with `{READER_PREFIX}`")))?;
    let bytes = B64.decode(b64).map_err(|_| bad("the part after the prefix is not base64"))?;
    let secret: [u8; 32] = bytes.try_into().map_err(|_| bad("a reader key is 32 bytes"))?;
    Ok(reader_from_secret(&secret))
}

/// Reads a public key from its text form. Surrounding whitespace (a final
/// newline, say) is allowed; anything else is not.
pub fn parse_public(text: &str) -> Result<VerifyingKey> {
    let bad = |detail: &str| Error::InvalidPublicKey { detail: detail.to_string() };
    let t = text.trim();
    let Some(b64) = t.strip_prefix(PUBKEY_PREFIX) else {
        return Err(bad(&format!("it does not start with `{PUBKEY_PREFIX}`")));
    };
    let bytes = B64.decode(b64).map_err(|_| bad("the part after the prefix is not base64"))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| bad("an ed25519 public key is 32 bytes"))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| bad("the 32 bytes are not an ed25519 public key"))
}

/// Loads the repository's key pair; `None` when the repository has none yet.
pub fn load(repo: &Repository) -> Result<Option<SigningKey>> {
    let sealed = match repo.backend().get(KEY_OBJECT) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let damaged = |d: &str| Error::Integrity { what: format!("evidence signing key `{KEY_OBJECT}` ({d})") };
    let plain = blob::open_object(repo.key(), &sealed, limits::EVIDENCE_KEY).map_err(|e| damaged(&e.to_string()))?;
    let file: KeyFile = serde_json::from_slice(&plain).map_err(|e| Error::format(format!("`{KEY_OBJECT}`"), e))?;
    if file.v != 1 || file.algorithm != "ed25519" {
        return Err(Error::format(
            format!("`{KEY_OBJECT}`"),
            format!("unknown version {} or algorithm `{}`", file.v, file.algorithm),
        ));
    }
    let sealed_seed = B64.decode(&file.secret).map_err(|e| Error::format(format!("`{KEY_OBJECT}`"), e))?;
    let mut seed = crypto::open_with(&repo.key().derive(SEAL_CONTEXT), &sealed_seed)
        .map_err(|_| damaged("its secret does not open"))?;
    let signing = <[u8; 32]>::try_from(seed.as_slice()).ok().map(|s| SigningKey::from_bytes(&s));
    seed.iter_mut().for_each(|b| *b = 0);
    let signing = signing.ok_or_else(|| damaged("its secret is not 32 bytes"))?;
    if B64.encode(signing.verifying_key().as_bytes()) != file.public {
        return Err(damaged("its public half does not match its secret"));
    }
    Ok(Some(signing))
}

/// Creates and stores a new key pair. The caller holds the evidence lock,
/// so no other process can be creating one at the same time.
pub(super) fn create(repo: &Repository) -> Result<SigningKey> {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let file = KeyFile {
        v: 1,
        algorithm: "ed25519".into(),
        public: B64.encode(signing.verifying_key().as_bytes()),
        secret: B64.encode(crypto::seal_with(&repo.key().derive(SEAL_CONTEXT), signing.as_bytes())),
        created: Utc::now(),
    };
    let sealed = blob::seal_object(repo.key(), &serde_json::to_vec(&file).expect("key file serialises"));
    repo.backend().put(KEY_OBJECT, &sealed)?;
    Ok(signing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_text_round_trips_and_bad_text_is_refused() {
        let k = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let t = public_text(&k);
        assert!(t.starts_with(PUBKEY_PREFIX) && !t.contains('\n'));
        assert_eq!(parse_public(&format!("{t}\n")).unwrap(), k);
        for bad in ["", "ed25519:AAAA", &t[PUBKEY_PREFIX.len()..], &format!("{PUBKEY_PREFIX}!!!"), &t[..t.len() - 4]] {
            assert!(matches!(parse_public(bad), Err(Error::InvalidPublicKey { .. })), "{bad:?} was accepted");
        }
    }
}
