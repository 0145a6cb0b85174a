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
//! **Appends are serialised** by an exclusive lock in `evidence/locks/`
//! (the mechanism of [`crate::repo::lock`], in its own directory, so it
//! neither waits for nor blocks backups and prune). Under it an appender
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

pub mod canonical;
pub mod key;
pub mod payload;
pub mod record;
pub mod verify;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use ed25519_dalek::SigningKey;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::repo::{blob, limits, lock, Repository};

pub use verify::{verify_dir, Head, Problem, ProblemKind, VerifiedRecord, VerifyReport};

/// Where the records are stored.
pub const RECORDS_DIR: &str = "evidence/records";
/// Where appenders lock each other out.
pub const LOCKS_DIR: &str = "evidence/locks";
/// How long an append waits for the lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A record that was appended.
#[derive(Debug, Clone, Serialize)]
pub struct AppendedRecord {
    pub seq: u64,
    /// Hex BLAKE3 of the signed record's canonical bytes.
    pub hash: String,
    /// Base64 (standard, padded) ed25519 signature.
    pub signature: String,
    /// The signed record, `sig` included.
    pub record: Value,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub dir: std::path::PathBuf,
    /// Record files written.
    pub records: u64,
    /// The highest seq in the repository, when there is a record.
    pub last_seq: Option<u64>,
    /// The hash of that last record.
    pub head: Option<String>,
    pub public_key: String,
    /// Records that could not be read from the repository (seq, error):
    /// they are not exported, and verification will report them removed.
    pub unreadable: Vec<(u64, String)>,
}

fn record_key(seq: u64) -> String {
    format!("{RECORDS_DIR}/{}", record::file_stem(seq))
}

/// The seqs of the stored records, ascending.
fn stored_seqs(repo: &Repository) -> Result<Vec<u64>> {
    let prefix = format!("{RECORDS_DIR}/");
    let mut seqs: Vec<u64> = repo
        .backend()
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| o.key.strip_prefix(&prefix).and_then(record::parse_stem))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Loads and opens the record object `seq`: its signed canonical bytes.
fn load_record(repo: &Repository, seq: u64) -> Result<Vec<u8>> {
    let k = record_key(seq);
    let sealed = repo.backend().get(&k)?;
    let plain = blob::open_object(repo.key(), &sealed, limits::EVIDENCE_RECORD)
        .map_err(|e| crate::repo::blob_error(format!("evidence record `{k}`"), e))?;
    let v: Value = serde_json::from_slice(&plain).map_err(|e| Error::format(format!("evidence record `{k}`"), e))?;
    if v.get("seq").and_then(Value::as_u64) != Some(seq) {
        return Err(Error::format(format!("evidence record `{k}`"), "its seq differs from its name"));
    }
    Ok(plain)
}

/// The plain integrity of the evidence stored in the repository, for
/// `cairn check`: every record opens, parses and carries the seq of its
/// name, and the signing key opens (and exists when records do). Each
/// failure is a problem naming its object. Signatures and the chain are
/// what `cairn evidence verify` checks.
pub fn check_integrity(repo: &Repository) -> Result<Vec<crate::check::Problem>> {
    let problem = |object: String, e: &Error| crate::check::Problem { object, message: e.to_string() };
    let mut out = Vec::new();
    let seqs = stored_seqs(repo)?;
    for &seq in &seqs {
        match load_record(repo, seq) {
            Ok(_) => {}
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => out.push(problem(record_key(seq), &e)),
        }
    }
    match key::load(repo) {
        Ok(Some(_)) => {}
        Ok(None) if seqs.is_empty() => {}
        Ok(None) => {
            out.push(problem(key::KEY_OBJECT.into(), &Error::EvidenceKeyMissing { records: seqs.len() as u64 }))
        }
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => out.push(problem(key::KEY_OBJECT.into(), &e)),
    }
    Ok(out)
}

/// Takes the append lock, retrying with random back-off while another
/// appender holds it (or races for it), for up to [`LOCK_WAIT`].
fn lock_appends(repo: &Repository, kind: &str) -> Result<lock::Lock> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut delay_ms = 20u64;
    loop {
        match lock::acquire_in(repo, LOCKS_DIR, true, &format!("evidence append ({kind})")) {
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                let ms = rand::thread_rng().gen_range(delay_ms / 2..=delay_ms * 3 / 2);
                std::thread::sleep(Duration::from_millis(ms));
                delay_ms = (delay_ms * 2).min(1000);
            }
            r => return r,
        }
    }
}

/// The signing key, created if the repository has none and no record
/// exists. Call with the append lock held.
fn signing_key_locked(repo: &Repository, seqs: &[u64]) -> Result<SigningKey> {
    match key::load(repo)? {
        Some(k) => Ok(k),
        None if seqs.is_empty() => key::create(repo),
        // A new key would make every older record fail verification.
        None => Err(Error::EvidenceKeyMissing { records: seqs.len() as u64 }),
    }
}

/// Appends a record of `kind` (`backup`, `prune`, `drill`…: 1–32 of a-z,
/// 0-9, `_`, `-`) about `policy`, with `payload`, a JSON object whose
/// numbers are all integers within ±(2^53 − 1) (durations in
/// milliseconds, say). Safe against concurrent appenders in other
/// processes and threads. Creates the signing key if the repository has
/// none yet.
pub fn append(repo: &Repository, kind: &str, policy: Option<&str>, payload: Value) -> Result<AppendedRecord> {
    if !record::valid_kind(kind) {
        return Err(Error::InvalidArgument(format!(
            "evidence record kind `{kind}`: use 1 to 32 of a-z, 0-9, `_` and `-`, starting with a letter"
        )));
    }
    if !payload.is_object() {
        return Err(Error::InvalidArgument("an evidence payload must be a JSON object".into()));
    }
    // Refuse what cannot be signed before taking the lock.
    canonical::to_canonical(&payload).map_err(|e| {
        Error::InvalidArgument(format!("evidence payload: {}", e.to_string().replacen('$', "payload", 1)))
    })?;
    let _lock = lock_appends(repo, kind)?;
    let seqs = stored_seqs(repo)?;
    let signing = signing_key_locked(repo, &seqs)?;
    let (seq, prev) = match seqs.last() {
        None => (0, Value::Null),
        Some(&last) => {
            let bytes = load_record(repo, last)?;
            (last + 1, Value::String(blake3::hash(&bytes).to_hex().to_string()))
        }
    };
    let Value::Object(mut rec) = json!({
        "v": record::RECORD_VERSION,
        "seq": seq,
        "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "kind": kind,
        "policy": policy,
        "repository": repo.id().to_hex(),
        "prev": prev,
        "payload": payload,
    }) else {
        unreachable!("json! of an object is an object")
    };
    let (sig, signed) =
        record::sign(&signing, &mut rec).map_err(|e| Error::InvalidArgument(format!("evidence record: {e}")))?;
    if signed.len() as u64 > limits::EVIDENCE_RECORD {
        // No reader would open it, and the chain could not go on past it.
        return Err(Error::TooLarge {
            what: format!("evidence record {seq}"),
            detail: format!("{} bytes, above the limit of {}", signed.len(), limits::EVIDENCE_RECORD),
        });
    }
    repo.backend().put(&record_key(seq), &blob::seal_object(repo.key(), &signed))?;
    Ok(AppendedRecord {
        seq,
        hash: blake3::hash(&signed).to_hex().to_string(),
        signature: key::B64.encode(sig.to_bytes()),
        record: Value::Object(rec),
    })
}

/// Starts the chain of a new repository: its key and record 0, `init`.
pub fn start_chain(repo: &Repository) -> Result<AppendedRecord> {
    append(
        repo,
        "init",
        None,
        json!({
            "program_version": crate::VERSION,
            "hostname": crate::host::hostname(),
            "username": crate::host::username(),
        }),
    )
}

/// The repository's public key in its one-line text form. A repository
/// made before evidence existed gets its key now.
pub fn public_key_text(repo: &Repository) -> Result<String> {
    let signing = match key::load(repo)? {
        Some(k) => k,
        None => {
            let _lock = lock_appends(repo, "key")?;
            let seqs = stored_seqs(repo)?;
            signing_key_locked(repo, &seqs)?
        }
    };
    Ok(key::public_text(&signing.verifying_key()))
}

/// Writes every record to `out` (which must be empty or not exist) as
/// `<seq, 12 digits>.json`, with `pubkey.txt`, `manifest.json` and
/// `README.txt`. Records that cannot be read are left out and listed in
/// the summary.
pub fn export(repo: &Repository, out: &Path) -> Result<ExportSummary> {
    match std::fs::read_dir(out) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::InvalidArgument(format!(
                    "{} is not empty: export into a new or empty directory, so no older file can stand in for a record",
                    out.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        }
        Err(e) => return Err(Error::io(out, e)),
    }
    let public_key = public_key_text(repo)?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        use std::io::Write;
        let p = out.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| Error::io(&p, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&p, e))
    };
    let seqs = stored_seqs(repo)?;
    let mut summary = ExportSummary {
        dir: out.to_path_buf(),
        records: 0,
        last_seq: seqs.last().copied(),
        head: None,
        public_key: public_key.clone(),
        unreadable: Vec::new(),
    };
    for &seq in &seqs {
        match load_record(repo, seq) {
            Ok(bytes) => {
                write(&format!("{}.json", record::file_stem(seq)), &[&bytes[..], b"\n"].concat())?;
                summary.records += 1;
                if Some(seq) == summary.last_seq {
                    summary.head = Some(blake3::hash(&bytes).to_hex().to_string());
                }
            }
            Err(e) if !e.is_retryable() => summary.unreadable.push((seq, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    write("pubkey.txt", format!("{public_key}\n").as_bytes())?;
    let manifest = json!({
        "format": "cairn-evidence-export",
        "v": 1,
        "repository": repo.id().to_hex(),
        "exported": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "program_version": crate::VERSION,
        "public_key": public_key,
        "records": summary.records,
        "last_seq": summary.last_seq,
        "head": summary.head,
        "unreadable": summary.unreadable.iter().map(|(s, e)| json!({"seq": s, "error": e})).collect::<Vec<_>>(),
    });
    write("manifest.json", format!("{}\n", serde_json::to_string_pretty(&manifest).expect("manifest")).as_bytes())?;
    write("README.txt", readme(&summary, &repo.id().to_hex()).as_bytes())?;
    Ok(summary)
}

fn readme(s: &ExportSummary, repository: &str) -> String {
    let head = match (s.last_seq, &s.head) {
        (Some(seq), Some(h)) => format!("record {seq}, hash {h}"),
        _ => "none".into(),
    };
    format!(
        "cairn evidence export\n\
         =====================\n\n\
         Repository: {repository}\n\
         Records:    {} file(s) NNNNNNNNNNNN.json, one signed record each\n\
         Head:       {head}\n\
         Public key: pubkey.txt\n\n\
         Verify, without the repository or its password:\n\n    \
         cairn evidence verify DIR --pubkey pubkey.txt\n\n\
         Take the public key from a source you trust (the operator's own\n\
         `cairn evidence pubkey`, or an earlier audit), not only from this\n\
         directory. Note the head: at the next audit, the record with this seq\n\
         must still have this hash (`--anchor SEQ:HASH`), which shows that no\n\
         record was removed from the end and that the chain was not rewritten.\n\n\
         Each record is canonical JSON (RFC 8785, integers only). `sig` is the\n\
         ed25519 signature of the record's canonical JSON without `sig`; `prev`\n\
         is the BLAKE3 hash of the previous record's canonical JSON with `sig`.\n\
         The full description is in cairn's docs/FORMAT.md, \"Evidence\".\n\
         manifest.json is a convenience and is not signed.\n",
        s.records
    )
}

#[cfg(test)]
mod tests;
