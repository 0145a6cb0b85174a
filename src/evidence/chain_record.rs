//! One chain's records in the repository: listing and loading them, and
//! writing the next one (create-only, sealed), which every kind of append
//! ([`super::append`], [`super::append_legacy`]) ends in.

use base64::Engine;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::key::{self, read_key, LEGACY_KEY_ID};
use super::record::{self, RECORD_VERSION};
use super::signer::Signer;
use super::store::{self, Name};
use crate::error::{Error, Result};
use crate::repo::{blob, limits, Repository};

/// A record that was appended.
#[derive(Debug, Clone, Serialize)]
pub struct AppendedRecord {
    /// The chain: `legacy` or the signer's key id.
    pub signer: String,
    pub seq: u64,
    /// Hex BLAKE3 of the signed record's canonical bytes.
    pub hash: String,
    /// Base64 (standard, padded) ed25519 signature.
    pub signature: String,
    /// The signed record, `sig` included.
    pub record: Value,
    /// The head written with it (`head:<hash>`), if writing one succeeded.
    pub head: Option<String>,
    /// What the append noticed and went past (records missing behind it).
    pub warnings: Vec<String>,
}

pub(super) fn init_payload() -> Value {
    json!({
        "program_version": crate::VERSION,
        "hostname": crate::host::hostname(),
        "username": crate::host::username(),
    })
}

/// With no record at all, a repository that holds snapshots had its chain
/// erased (or predates evidence): never start a new one under them.
pub(super) fn refuse_restart(repo: &Repository) -> Result<()> {
    let snapshots = repo.backend().list("snapshots/")?.len();
    if snapshots > 0 {
        return Err(Error::EvidenceChainMissing { snapshots });
    }
    Ok(())
}

/// The seqs stored in `chain`, ascending.
pub fn list_chain(repo: &Repository, chain: &str) -> Result<Vec<u64>> {
    let prefix = if chain == LEGACY_KEY_ID {
        format!("{}/", store::RECORDS_DIR)
    } else {
        format!("{}/{chain}/", store::RECORDS_DIR)
    };
    let mut seqs: Vec<u64> = repo
        .backend()
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| match store::classify(&o.key) {
            Name::Record { chain: c, seq } if c == chain => Some(seq),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Loads and opens record `seq` of `chain` (read key first, then the
/// master key, which sealed legacy records before the read key existed);
/// its name must match its seq.
pub fn load_record(repo: &Repository, chain: &str, seq: u64) -> Result<Vec<u8>> {
    let k = store::record_key(chain, seq);
    let sealed = repo.backend().get(&k)?;
    let rk = read_key(repo);
    let plain = match blob::open_object(&rk, &sealed, limits::EVIDENCE_RECORD) {
        Ok(p) => p,
        Err(e) if e.is_size_limit() => return Err(crate::repo::blob_error(format!("evidence record `{k}`"), e)),
        Err(_) => blob::open_object(repo.key(), &sealed, limits::EVIDENCE_RECORD)
            .map_err(|e| crate::repo::blob_error(format!("evidence record `{k}`"), e))?,
    };
    let v: Value = serde_json::from_slice(&plain).map_err(|e| Error::format(format!("evidence record `{k}`"), e))?;
    if v.get("seq").and_then(Value::as_u64) != Some(seq) {
        return Err(Error::format(format!("evidence record `{k}`"), "its seq differs from its name"));
    }
    Ok(plain)
}

/// The hash of this key's own record `seq`, which must verify with it.
pub(super) fn own_record_hash(
    repo: &Repository,
    s: &Signer,
    _rk: &crate::crypto::MasterKey,
    chain: &str,
    seq: u64,
) -> Result<String> {
    let bytes = load_record(repo, chain, seq)?;
    let c = record::check(&bytes, s.public())
        .map_err(|e| Error::Integrity { what: format!("evidence record `{}` ({e})", store::record_key(chain, seq)) })?;
    Ok(c.hash)
}

/// Signs and writes record `seq` of `chain`. Every caller holds the lock
/// that serialises the chain's appenders and listed the chain under it
/// without finding `seq`. With `checked` (a host key made in its state
/// directory, whose appends that directory's `append.lock` serialises,
/// and which its holder keeps even when paused), the storage is not asked
/// again whether the record exists
/// ([`crate::backend::Backend::put_known_absent`]). Otherwise the record
/// goes up only if the key is still free, asked just before (HEAD before
/// PUT on storage that ignores `If-None-Match`): a key from a file or a
/// command may sign in several state directories, and the legacy chain's
/// lock is in the repository, where it can be broken as stale (a paused
/// holder, a clock ahead) or by `cairn unlock`; the record written in its
/// place is never replaced.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_record(
    repo: &Repository,
    s: &Signer,
    rk: &crate::crypto::MasterKey,
    chain: &str,
    seq: u64,
    prev: Option<&str>,
    kind: &str,
    policy: Option<&str>,
    payload: Value,
    checked: bool,
) -> Result<AppendedRecord> {
    let mut rec: Map<String, Value> = Map::new();
    if s.is_legacy() {
        rec.insert("v".into(), json!(record::LEGACY_RECORD_VERSION));
    } else {
        rec.insert("v".into(), json!(RECORD_VERSION));
        rec.insert("signer".into(), json!(s.key_id()));
    }
    rec.insert("seq".into(), json!(seq));
    rec.insert("time".into(), json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
    rec.insert("kind".into(), json!(kind));
    rec.insert("policy".into(), json!(policy));
    rec.insert("repository".into(), json!(repo.id().to_hex()));
    rec.insert("prev".into(), json!(prev));
    rec.insert("payload".into(), payload);
    let (sig, signed) = record::sign(s, &mut rec).map_err(|e| Error::EvidenceSigner { detail: e })?;
    if signed.len() as u64 > limits::EVIDENCE_RECORD {
        // No reader would open it, and the chain could not go on past it.
        return Err(Error::TooLarge {
            what: format!("evidence record {seq}"),
            detail: format!("{} bytes, above the limit of {}", signed.len(), limits::EVIDENCE_RECORD),
        });
    }
    let (key, sealed) = (store::record_key(chain, seq), blob::seal_object(rk, &signed));
    if checked {
        repo.backend().put_known_absent(&key, &sealed)?;
    } else {
        repo.backend().put(&key, &sealed)?;
    }
    Ok(AppendedRecord {
        signer: chain.to_string(),
        seq,
        hash: blake3::hash(&signed).to_hex().to_string(),
        signature: key::B64.encode(sig.to_bytes()),
        record: Value::Object(rec),
        head: None,
        warnings: Vec::new(),
    })
}
