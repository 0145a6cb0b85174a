//! The tamper-evident evidence chain: an append-only, signed, hash-chained
//! log of what happened to a repository (its creation, every backup,
//! forget and prune, every drill), which an auditor can check without the
//! password. The jobs (`crate::jobs`) append the records, one per job.
//!
//! **Records** ([`record`]) are JSON objects. Each is signed with the
//! repository's ed25519 key over its canonical JSON ([`canonical`]: RFC
//! 8785, integers only) without the `sig` member; the BLAKE3 hash of the
//! canonical JSON *with* `sig` is what the next record names in `prev`.
//! Record 0 (`kind: "init"`, written by `init`) has `prev: null`.
//!
//! **The key** ([`key`]) is made at `init`, or, for a repository made
//! before evidence existed, at the first append. Its secret is sealed with a
//! key derived from the master key and stored in `evidence/key`. Its public
//! half, in the text form `cairn-evidence-ed25519:<base64>`, is all an
//! auditor needs.
//!
//! **Storage**: record `seq` is the metadata object
//! `evidence/records/<seq, 12 digits>`, sealed like every other object,
//! whose plaintext is exactly the record's signed canonical bytes.
//! Objects are never rewritten.
//!
//! **Appends are serialised** by an exclusive lock in `locks/evidence/`
//! (the mechanism of [`crate::repo::lock`], in its own directory under the
//! one prefix where objects may be replaced and removed, so it neither
//! waits for nor blocks backups and prune). Records are written once, with
//! `If-None-Match: *`: a second appender that got past the lock anyway
//! (a lock thought stale) fails on the record's key instead of forking the
//! chain. Under it an appender
//! reads the tail (list, then load the highest seq), and writes seq + 1.
//! Two appenders that race for the lock both back off and retry after a
//! random delay, so concurrent processes never fork the chain.
//!
//! **Export** writes one file per record plus the public key; **verify**
//! ([`verify`]) needs only those files and the key, and names every removed,
//! reordered or altered record.
//!
//! What it proves: records cannot be changed, dropped or reordered, by
//! whoever holds the storage or the exported files, without verification
//! saying so; removing the newest records is seen only by comparison with
//! a head (seq and hash) noted earlier. Whoever has the repository password
//! can read the signing key, and so could write a whole new chain: an
//! auditor who keeps the head of each audit detects that too.

pub mod append;
mod append_head;
mod append_legacy;
pub mod canonical;
mod chain_record;
pub mod check;
mod export;
pub mod fleet;
pub mod fleet_read;
pub mod key;
pub mod objects;
pub mod payload;
pub mod record;
pub mod signer;
pub mod store;
pub mod trust;
pub mod verify;
mod verify_claims;
mod verify_heads;
mod verify_report;

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::repo::Repository;

pub use append::{AppendedRecord, Appender};
pub use append_head::newest_head;
pub use store::RECORDS_DIR;
pub use trust::{read_keys_file, Trust};
pub use verify::{verify_dir, Anchor, Head, Problem, ProblemKind, VerifiedRecord, VerifyReport};

/// Where appenders lock each other out.
pub const LOCKS_DIR: &str = crate::repo::lock::EVIDENCE_LOCKS;
/// How long an append waits for the lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What [`export`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub dir: std::path::PathBuf,
    /// Record files written.
    pub records: u64,
    /// The legacy chain's highest seq, when it has a record.
    pub last_seq: Option<u64>,
    /// The hash of that last record.
    pub head: Option<String>,
    /// The legacy key, when the repository has one.
    pub public_key: Option<String>,
    /// Host chains exported: (key id, records).
    pub chains: Vec<(String, u64)>,
    /// Repository heads exported.
    pub heads: u64,
    /// Objects that could not be read from the repository (object, error):
    /// they are not exported, and verification will report them removed.
    pub unreadable: Vec<(String, String)>,
}

/// Appends a record to the legacy chain (a process with no host key, and
/// tests): see [`Appender::append`].
pub fn append(repo: &Repository, kind: &str, policy: Option<&str>, payload: Value) -> Result<AppendedRecord> {
    Appender::legacy().append(repo, kind, policy, payload)
}

fn init_payload() -> Value {
    json!({
        "program_version": crate::VERSION,
        "hostname": crate::host::hostname(),
        "username": crate::host::username(),
    })
}

/// Starts the chain of a new repository with record 0, `init`: signed by
/// the legacy key (made now) for a host without a key of its own.
pub fn start_chain(repo: &Repository) -> Result<AppendedRecord> {
    start_chain_with(repo, &Appender::legacy())
}

/// Starts the chain of a new repository with `appender`'s key.
pub fn start_chain_with(repo: &Repository, appender: &Appender) -> Result<AppendedRecord> {
    appender.append(repo, "init", None, init_payload())
}

/// Starts the chain of a repository made before cairn kept evidence: its
/// `init` lists every snapshot it holds, so that `check` finds each one
/// recorded. Refused when the repository has any evidence record.
pub fn adopt(repo: &Repository, appender: &Appender) -> Result<AppendedRecord> {
    if !repo.backend().list(&format!("{RECORDS_DIR}/"))?.is_empty() {
        return Err(Error::NoEvidence(
            "this repository already has an evidence chain: nothing to adopt (`cairn check` names what is wrong \
             with it)"
                .into(),
        ));
    }
    let mut ids: Vec<String> = repo.list_ids("snapshots")?.iter().map(|i| i.to_hex()).collect();
    ids.sort();
    let mut payload = init_payload();
    payload["adopted_snapshots"] = json!(ids);
    appender.append_with(repo, "init", None, payload, true)
}

/// The legacy key's public half in its one-line text form. A repository
/// with no evidence at all (nor snapshots) gets its legacy key now.
pub fn public_key_text(repo: &Repository) -> Result<String> {
    if let Some(k) = key::load(repo)? {
        return Ok(key::public_text(&k.verifying_key()));
    }
    let records = repo.backend().list(&format!("{RECORDS_DIR}/"))?;
    let legacy_records = records
        .iter()
        .filter(|o| matches!(store::classify(&o.key), store::Name::Record { chain, .. } if chain == key::LEGACY_KEY_ID))
        .count();
    if legacy_records > 0 {
        return Err(Error::EvidenceKeyMissing { records: legacy_records as u64 });
    }
    if !records.is_empty() {
        return Err(Error::NoEvidence(
            "this repository has no legacy key: its evidence is signed by host keys, which `cairn evidence keys` \
             lists"
                .into(),
        ));
    }
    match append_legacy::legacy_append(repo, "init", None, &init_payload(), false)? {
        Some(_) => Ok(key::public_text(&key::load(repo)?.expect("just made").verifying_key())),
        None => Err(Error::NoEvidence("this repository has no legacy key".into())),
    }
}

pub use export::export;

#[cfg(test)]
pub(crate) mod synthetic;
#[cfg(test)]
mod tests;
