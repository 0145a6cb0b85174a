//! One evidence record: its fields, how it is signed, and how it is checked.
//!
//! A record is a JSON object with these members, all always present:
//!
//! | member | type | meaning |
//! | --- | --- | --- |
//! | `v` | integer | record version: 2 (1 in the legacy chain) |
//! | `signer` | string | version 2 only: the key id of the signer, whose sub-chain holds it |
//! | `seq` | integer | position in the signer's sub-chain (the legacy chain's), from 0 |
//! | `time` | string | when it was appended, RFC 3339 UTC |
//! | `kind` | string | `init`, `backup`, `prune`, `drill`, … |
//! | `policy` | string or null | the policy it concerns |
//! | `repository` | string | the repository id, 64 hex digits |
//! | `prev` | string or null | hex BLAKE3 of the previous record's signed bytes; null for seq 0 |
//! | `payload` | object | what happened, by kind |
//! | `sig` | string | base64 ed25519 signature |
//!
//! The signature is over `canonical(record without sig)`; the record's
//! hash, which the next record names in `prev`, is
//! `BLAKE3(canonical(record with sig))`: the signed bytes.

use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use super::canonical::{to_canonical, CanonicalError};
use super::key::B64;

/// The version of the records a host key signs (they name their signer).
pub const RECORD_VERSION: u64 = 2;
/// The version of the legacy chain's records, signed with the repository's
/// sealed key (`evidence/key`); they name no signer.
pub const LEGACY_RECORD_VERSION: u64 = 1;
/// The member that carries the signature.
pub const SIG: &str = "sig";

/// A record's file name in an export (and its object name in the
/// repository, under `evidence/records/`): the seq, zero-padded to 12 digits.
pub fn file_stem(seq: u64) -> String {
    format!("{seq:012}")
}

/// The seq a record object or file name stands for: only ASCII digits.
pub fn parse_stem(stem: &str) -> Option<u64> {
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Whether `kind` is acceptable: 1 to 32 of `a-z`, `0-9`, `_`, `-`,
/// starting with a letter.
pub fn valid_kind(kind: &str) -> bool {
    let b = kind.as_bytes();
    (1..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Whatever can sign bytes with ed25519: a key in memory, or a signer
/// whose secret lives elsewhere (a command in front of a KMS or TPM).
pub trait SignBytes {
    fn sign_bytes(&self, message: &[u8]) -> Result<Signature, String>;
}

impl SignBytes for ed25519_dalek::SigningKey {
    fn sign_bytes(&self, message: &[u8]) -> Result<Signature, String> {
        Ok(ed25519_dalek::Signer::sign(self, message))
    }
}

/// Signs `value` (an object without `sig`) and adds `sig`; returns the
/// signature and the signed object's canonical bytes. Records and heads
/// are signed this way.
pub fn sign<S: SignBytes + ?Sized>(key: &S, record: &mut Map<String, Value>) -> Result<(Signature, Vec<u8>), String> {
    let unsigned = to_canonical(&Value::Object(record.clone())).map_err(|e: CanonicalError| e.to_string())?;
    let sig = key.sign_bytes(&unsigned)?;
    record.insert(SIG.into(), Value::String(B64.encode(sig.to_bytes())));
    let signed = to_canonical(&Value::Object(record.clone())).map_err(|e| e.to_string())?;
    Ok((sig, signed))
}

/// Checks what every signed object needs before its members are read:
/// canonical form, then the signature under `key`. Returns the object
/// without `sig` and the hash of the signed bytes.
pub fn check_signed(text: &[u8], key: &VerifyingKey) -> Result<(Map<String, Value>, String), String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut record) = v else { return Err("not a JSON object".into()) };
    let signed = to_canonical(&Value::Object(record.clone())).map_err(|e| format!("no canonical form: {e}"))?;
    // Objects are written in canonical form; any other text could show a
    // reader something the signature does not cover (a member repeated:
    // JSON parsers disagree on which copy counts).
    if text.strip_suffix(b"\n").unwrap_or(text) != signed.as_slice() {
        return Err("not in canonical form (a member repeated, reordered or reformatted): it was altered".into());
    }
    let sig = match record.remove(SIG) {
        Some(Value::String(s)) => s,
        Some(_) => return Err(format!("`{SIG}` is not a string")),
        None => return Err(format!("no `{SIG}` member: it is not signed")),
    };
    let sig_bytes: [u8; 64] = B64
        .decode(&sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("`{SIG}` is not a base64 ed25519 signature"))?;
    let unsigned = to_canonical(&Value::Object(record.clone())).map_err(|e| format!("no canonical form: {e}"))?;
    key.verify_strict(&unsigned, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "the signature does not verify: the record was altered (or the key is not its signer)")?;
    Ok((record, blake3::hash(&signed).to_hex().to_string()))
}

/// The version and signer a record claims, read without checking it: to
/// know which key to check it with. `None` when it is not a record.
pub fn claimed_signer(text: &[u8]) -> Option<(u64, Option<String>)> {
    let v: Value = serde_json::from_slice(text).ok()?;
    let version = v.get("v")?.as_u64()?;
    Some((version, v.get("signer").and_then(Value::as_str).map(str::to_string)))
}

/// What a checked record says about its place in the chain.
#[derive(Debug, Clone)]
pub struct Checked {
    /// 1 (legacy chain) or 2.
    pub v: u64,
    /// The signer's key id (version 2); `None` in the legacy chain.
    pub signer: Option<String>,
    pub seq: u64,
    pub prev: Option<String>,
    pub hash: String,
    pub repository: String,
    pub kind: String,
    pub time: String,
    pub policy: Option<String>,
    pub payload: Value,
}

/// Checks one record as read back: its canonical form, its signature under
/// `key`, then its members. The error says what is wrong, for the report.
pub fn check(text: &[u8], key: &VerifyingKey) -> Result<Checked, String> {
    let (record, hash) = check_signed(text, key)?;
    // Signed by the key: from here on a fault is cairn's, not an attacker's,
    // but say so rather than trust it.
    let str_field = |name: &str| match record.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("signed, but `{name}` is missing or not a string")),
    };
    let opt_str = |name: &str| match record.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Null) => Ok(None),
        _ => Err(format!("signed, but `{name}` is missing or neither a string nor null")),
    };
    let v = record.get("v").and_then(Value::as_u64);
    let signer = match v {
        Some(LEGACY_RECORD_VERSION) => None,
        Some(RECORD_VERSION) => Some(str_field("signer")?),
        _ => {
            return Err(format!("signed, but its version `v` is neither {LEGACY_RECORD_VERSION} nor {RECORD_VERSION}"))
        }
    };
    let seq = record.get("seq").and_then(Value::as_u64).ok_or("signed, but `seq` is not a number")?;
    let payload = match record.get("payload") {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => return Err("signed, but `payload` is not an object".into()),
    };
    let prev = opt_str("prev")?;
    if let Some(p) = &prev {
        if p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err("signed, but `prev` is not 64 lowercase hex digits".into());
        }
    }
    Ok(Checked {
        v: v.unwrap_or_default(),
        signer,
        seq,
        prev,
        hash,
        repository: str_field("repository")?,
        kind: str_field("kind")?,
        time: str_field("time")?,
        policy: opt_str("policy")?,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn signed(key: &SigningKey, seq: u64, prev: Option<&str>) -> Vec<u8> {
        let Value::Object(mut r) = json!({
            "v": 1, "seq": seq, "time": "2025-03-01T02:00:00.000000Z", "kind": "backup", "policy": null,
            "repository": "ab".repeat(32), "prev": prev, "payload": {"files": 3},
        }) else {
            unreachable!()
        };
        sign(key, &mut r).unwrap().1
    }

    #[test]
    fn a_signed_record_checks_and_its_hash_is_of_the_signed_bytes() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let bytes = signed(&key, 0, None);
        let c = check(&bytes, &key.verifying_key()).unwrap();
        assert_eq!((c.seq, c.prev.as_deref(), c.kind.as_str()), (0, None, "backup"));
        assert_eq!(c.hash, blake3::hash(&bytes).to_hex().to_string());
        // A record is read as written: canonical bytes, one newline at most.
        let with_newline = [&bytes[..], b"\n"].concat();
        assert_eq!(check(&with_newline, &key.verifying_key()).unwrap().hash, c.hash);
        let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&bytes).unwrap()).unwrap();
        assert!(check(&pretty, &key.verifying_key()).unwrap_err().contains("not in canonical form"));
    }

    #[test]
    fn bug_a_repeated_member_showed_readers_a_forged_value_that_still_verified() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let bytes = signed(&key, 0, None);
        let text = String::from_utf8(bytes).unwrap();
        // serde_json keeps the last copy, a person or another parser the first.
        let forged = text.replacen("\"payload\":", "\"payload\":{\"files\":999},\"payload\":", 1);
        assert_ne!(forged, text);
        let e = check(forged.as_bytes(), &key.verifying_key()).unwrap_err();
        assert!(e.contains("not in canonical form"), "{e}");
    }

    #[test]
    fn any_change_to_a_member_breaks_the_signature() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let bytes = signed(&key, 4, Some(&"0".repeat(64)));
        let orig: Value = serde_json::from_slice(&bytes).unwrap();
        let edits: [(&str, Value); 7] = [
            ("seq", json!(5)),
            ("time", json!("2025-03-01T02:00:01.000000Z")),
            ("kind", json!("drill")),
            ("policy", json!("db")),
            ("prev", json!("1".repeat(64))),
            ("payload", json!({"files": 4})),
            ("extra", json!(true)),
        ];
        for (name, value) in edits {
            let mut v = orig.clone();
            v[name] = value;
            let e = check(&serde_json::to_vec(&v).unwrap(), &key.verifying_key()).unwrap_err();
            assert!(e.contains("signature does not verify"), "{name}: {e}");
        }
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        assert!(check(&bytes, &other.verifying_key()).unwrap_err().contains("signature"));
        let mut v = orig.clone();
        v.as_object_mut().unwrap().remove(SIG);
        assert!(check(&serde_json::to_vec(&v).unwrap(), &key.verifying_key()).unwrap_err().contains("not signed"));
        assert!(check(b"{\"v\":1", &key.verifying_key()).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn kinds_and_stems() {
        assert!(valid_kind("backup") && valid_kind("drill") && valid_kind("key-rotation_2"));
        assert!(!valid_kind("") && !valid_kind("Backup") && !valid_kind("2fa") && !valid_kind("a b"));
        assert_eq!(file_stem(7), "000000000007");
        assert_eq!(parse_stem("000000000007"), Some(7));
        assert_eq!(parse_stem("+7"), None);
        assert_eq!(parse_stem("7a"), None);
    }
}
