//! Test-only: the evidence of a made-up fleet, signed record by record with
//! real host keys at the times a test chooses, and verified by the real
//! verification ([`super::verify::verify_loaded`]). The fleet reports and
//! the handover screen are tested on it.

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use super::key::{key_id, public_text};
use super::record::sign;
use super::store::{record_key, Loaded, RecordItem};
use super::trust::{Trust, TrustedKey};
use super::verify::{verify_loaded, VerifyReport};

struct Chain {
    key: SigningKey,
    host: String,
    next: u64,
    prev: Option<String>,
}

/// One repository's evidence, written by several hosts.
pub struct Synthetic {
    repository: String,
    chains: Vec<Chain>,
    loaded: Loaded,
    /// The auditor's keys: every host added as trusted.
    pub trust: Trust,
}

/// An RFC 3339 time, as records carry it.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Synthetic {
    pub fn new(repository_byte: u8) -> Synthetic {
        Synthetic {
            repository: format!("{repository_byte:02x}").repeat(32),
            chains: Vec::new(),
            loaded: Loaded { from_repository: true, ..Default::default() },
            trust: Trust { pinned: true, ..Default::default() },
        }
    }

    /// A host with a key of its own, enrolled at `at` (the first host's
    /// record 0 is the repository's `init`); `trusted`: in the auditor's
    /// keys file. Returns its index.
    pub fn host(&mut self, name: &str, trusted: bool, at: DateTime<Utc>) -> usize {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let id = key_id(&key.verifying_key());
        if trusted {
            self.trust.keys.insert(
                id.clone(),
                TrustedKey {
                    key_id: id.clone(),
                    public: key.verifying_key(),
                    host: Some(name.into()),
                    revoked_after: None,
                },
            );
        }
        let kind = if self.chains.is_empty() { "init" } else { "enroll" };
        self.chains.push(Chain { key, host: name.into(), next: 0, prev: None });
        let i = self.chains.len() - 1;
        let payload =
            json!({"key_id": id, "public_key": public_text(&self.chains[i].key.verifying_key()), "host": name});
        self.append(i, kind, None, at, payload);
        i
    }

    /// The key id of host `i`.
    pub fn key_id(&self, i: usize) -> String {
        key_id(&self.chains[i].key.verifying_key())
    }

    /// Signs and stores the next record of host `i`.
    pub fn append(&mut self, i: usize, kind: &str, policy: Option<&str>, at: DateTime<Utc>, payload: Value) {
        let c = &mut self.chains[i];
        let id = key_id(&c.key.verifying_key());
        let Value::Object(mut r) = json!({
            "v": 2, "signer": id, "seq": c.next, "time": stamp(at), "kind": kind, "policy": policy,
            "repository": self.repository, "prev": c.prev, "payload": payload,
        }) else {
            unreachable!()
        };
        let (_, bytes) = sign(&c.key, &mut r).unwrap();
        c.prev = Some(blake3::hash(&bytes).to_hex().to_string());
        self.loaded.records.push(RecordItem { chain: id.clone(), seq: c.next, shown: record_key(&id, c.next), bytes });
        c.next += 1;
    }

    /// A successful backup of `policy` by host `i` that started at
    /// `started` and was recorded `minutes` later.
    pub fn backup(&mut self, i: usize, policy: &str, started: DateTime<Utc>, minutes: i64) {
        let host = self.chains[i].host.clone();
        let snapshot = blake3::hash(format!("{host}/{policy}/{started}").as_bytes()).to_hex().to_string();
        let payload = json!({
            "outcome": "success", "snapshot": snapshot, "snapshot_time": stamp(started), "hostname": host,
            "paths": ["/srv"], "files": 10, "bytes": 1000, "bytes_added": 10, "files_skipped": 0,
            "duration_ms": minutes * 60_000, "error": null,
        });
        self.append(i, "backup", Some(policy), started + chrono::Duration::minutes(minutes), payload);
    }

    /// A backup of host `i` whose snapshot claims `claimed` as its host.
    pub fn backup_claiming(&mut self, i: usize, policy: &str, started: DateTime<Utc>, claimed: &str) {
        let snapshot = blake3::hash(format!("{claimed}/{policy}/{started}/forged").as_bytes()).to_hex().to_string();
        let payload = json!({
            "outcome": "success", "snapshot": snapshot, "snapshot_time": stamp(started), "hostname": claimed,
            "duration_ms": 60_000, "error": null,
        });
        self.append(i, "backup", Some(policy), started + chrono::Duration::minutes(1), payload);
    }

    /// A drill of `policy` by host `i` at `at`, taking `rto_s`, against
    /// the objectives `(rpo_s, rto_s)`.
    pub fn drill(&mut self, i: usize, policy: &str, at: DateTime<Utc>, pass: bool, rto_s: i64, objectives: (i64, i64)) {
        let payload = json!({
            "type": "drill", "drill_id": format!("d-{}-{policy}-{}", self.chains[i].host, at.timestamp()),
            "policy": policy, "verdict": if pass { "pass" } else { "fail" },
            "failure_kind": if pass { Value::Null } else { json!("integrity") },
            "rto_objective_ms": objectives.1 * 1000, "rto_measured_ms": rto_s * 1000,
            "rpo_objective_ms": objectives.0 * 1000, "rpo_achieved_ms": 3_600_000,
            "started_at": at, "ended_at": at + chrono::Duration::seconds(rto_s),
        });
        self.append(i, "drill", Some(policy), at + chrono::Duration::seconds(rto_s), payload);
    }

    /// Stores every record written into `backend`, sealed with the read
    /// key `reader`, as an appender would have.
    pub fn store(&self, backend: &dyn crate::backend::Backend, reader: &crate::crypto::MasterKey) {
        for r in &self.loaded.records {
            backend.put(&r.shown, &crate::repo::blob::seal_object(reader, &r.bytes)).unwrap();
        }
    }

    /// Verifies everything written, with [`Synthetic::trust`], at `now`.
    pub fn verify(&self, now: DateTime<Utc>) -> VerifyReport {
        let mut l = self.loaded.clone();
        l.records.sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
        verify_loaded(&l, &self.trust, now)
    }
}
