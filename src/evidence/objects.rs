//! The signed objects besides records: repository heads and enrolled keys.
//!
//! A **head** (`evidence/heads/…`) is written at each append. It commits to
//! the head (seq and hash) of every sub-chain its writer knew of, and is
//! signed by the writer:
//!
//! ```json
//! {"chains":{"<key id or legacy>":{"hash":"…","seq":41},…},"kind":"head",
//!  "repository":"<id>","sig":"…","signer":"<key id or legacy>","time":"…","v":1}
//! ```
//!
//! Deleting a sub-chain's newest records is then caught by any later head
//! that still names them. Its one-line text, `head:<hash>` (the BLAKE3 of
//! its signed canonical bytes), is what an auditor keeps as an anchor.
//!
//! An **enrolled key** (`evidence/keys/<key id>`) says which host a key
//! belongs to, signed by that key itself:
//!
//! ```json
//! {"enrolled_at":"…","host":"db1","key_id":"…","kind":"key","public_key":"cairn-evidence-ed25519:…",
//!  "repository":"<id>","sig":"…","v":1}
//! ```
//!
//! It is an index, not a trust root: anyone with the password can enroll a
//! key of their own. The auditor's keys file says which keys count.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::key::{key_id, parse_public};
use super::record::{check_signed, sign};
use super::signer::Signer;

pub const HEAD_VERSION: u64 = 1;
/// The prefix of a head's one-line text form.
pub const HEAD_PREFIX: &str = "head:";

/// A sub-chain's head as a head object names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

/// Sub-chain heads by chain (`legacy` or a key id).
pub type Chains = BTreeMap<String, ChainHead>;

/// A head whose signature and members checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedHead {
    pub signer: String,
    pub time: DateTime<Utc>,
    pub repository: String,
    pub chains: Chains,
    /// BLAKE3 of the signed bytes.
    pub hash: String,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object is an object"),
    }
}

/// Signs a head; returns its canonical bytes and hash.
pub fn sign_head(
    signer: &Signer,
    repository: &str,
    time: DateTime<Utc>,
    chains: &Chains,
) -> Result<(Vec<u8>, String), String> {
    let mut h = object(json!({
        "v": HEAD_VERSION,
        "kind": "head",
        "repository": repository,
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "signer": signer.key_id(),
        "chains": chains,
    }));
    let (_, bytes) = sign(signer, &mut h)?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    Ok((bytes, hash))
}

/// The signer a head claims, read without checking it.
pub fn claimed_head_signer(text: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(text).ok()?;
    (v.get("kind")? == "head").then(|| v.get("signer")?.as_str().map(str::to_string))?
}

fn time_field(m: &Map<String, Value>, name: &str) -> Result<DateTime<Utc>, String> {
    m.get(name)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("signed, but `{name}` is not an RFC 3339 time"))
}

fn is_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Checks a head under `key`.
pub fn check_head(text: &[u8], key: &VerifyingKey) -> Result<CheckedHead, String> {
    let (m, hash) = check_signed(text, key)?;
    if m.get("v").and_then(Value::as_u64) != Some(HEAD_VERSION) || m.get("kind").and_then(Value::as_str) != Some("head")
    {
        return Err(format!("signed, but not a head of version {HEAD_VERSION}"));
    }
    let chains: Chains = serde_json::from_value(m.get("chains").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("signed, but `chains` is malformed: {e}"))?;
    if let Some((c, h)) = chains.iter().find(|(_, h)| !is_hash(&h.hash)) {
        return Err(format!("signed, but the hash it gives for chain {c} ({}) is not 64 lowercase hex digits", h.hash));
    }
    Ok(CheckedHead {
        signer: m.get("signer").and_then(Value::as_str).ok_or("signed, but `signer` is missing")?.to_string(),
        time: time_field(&m, "time")?,
        repository: m.get("repository").and_then(Value::as_str).ok_or("signed, but `repository` is missing")?.into(),
        chains,
        hash,
    })
}

/// `head:<hash>`.
pub fn head_text(hash: &str) -> String {
    format!("{HEAD_PREFIX}{hash}")
}

/// An enrolled key, as its self-signed object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrolledKey {
    pub key_id: String,
    #[serde(skip)]
    pub public: VerifyingKey,
    pub public_key: String,
    pub host: String,
    pub enrolled_at: DateTime<Utc>,
    pub repository: String,
}

/// Signs the object that registers `signer` for `host` in a repository.
pub fn sign_key_object(signer: &Signer, repository: &str, host: &str, time: DateTime<Utc>) -> Result<Vec<u8>, String> {
    let mut k = object(json!({
        "v": 1,
        "kind": "key",
        "key_id": signer.key_id(),
        "public_key": signer.public_text(),
        "host": host,
        "enrolled_at": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "repository": repository,
    }));
    sign(signer, &mut k).map(|(_, b)| b)
}

/// Checks an enrolled key's object: signed by the key it names, whose id
/// it must carry.
pub fn check_key_object(text: &[u8]) -> Result<EnrolledKey, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let public_text = v.get("public_key").and_then(Value::as_str).ok_or("no `public_key`")?.to_string();
    let public = parse_public(&public_text).map_err(|e| e.to_string())?;
    let (m, _) = check_signed(text, &public)?;
    if m.get("kind").and_then(Value::as_str) != Some("key") {
        return Err("signed, but not a key object".into());
    }
    let id = m.get("key_id").and_then(Value::as_str).unwrap_or_default();
    if id != key_id(&public) {
        return Err(format!("it names key id {id}, but its public key's id is {}", key_id(&public)));
    }
    Ok(EnrolledKey {
        key_id: id.to_string(),
        public,
        public_key: public_text,
        host: m.get("host").and_then(Value::as_str).ok_or("signed, but `host` is missing")?.into(),
        enrolled_at: time_field(&m, "enrolled_at")?,
        repository: m.get("repository").and_then(Value::as_str).unwrap_or_default().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::signer::KeySource;
    use ed25519_dalek::SigningKey;

    #[test]
    fn heads_and_key_objects_sign_and_check() {
        let s = Signer::host(SigningKey::generate(&mut rand::rngs::OsRng), KeySource::State);
        let mut chains = Chains::new();
        chains.insert(s.key_id().into(), ChainHead { seq: 3, hash: "a".repeat(64) });
        let t = Utc::now();
        let (bytes, hash) = sign_head(&s, "r", t, &chains).unwrap();
        assert_eq!(claimed_head_signer(&bytes).as_deref(), Some(s.key_id()));
        let h = check_head(&bytes, s.public()).unwrap();
        assert_eq!((h.chains, h.hash, h.repository.as_str()), (chains.clone(), hash, "r"));
        let other = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        assert!(check_head(&bytes, &other).unwrap_err().contains("signature"));

        let k = sign_key_object(&s, "r", "db1", t).unwrap();
        let e = check_key_object(&k).unwrap();
        assert_eq!((e.key_id.as_str(), e.host.as_str()), (s.key_id(), "db1"));
        let forged = String::from_utf8(k).unwrap().replace("db1", "db2");
        assert!(check_key_object(forged.as_bytes()).is_err());
        // A record is not a head.
        assert!(check_head(b"{}", s.public()).is_err());
    }
}
