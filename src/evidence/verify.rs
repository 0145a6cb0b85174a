//! Verifying evidence with nothing but the records and the trusted keys.
//!
//! Input: everything read from a repository's `evidence/` or an export
//! ([`Loaded`]) and the keys that count ([`Trust`]). Each sub-chain is
//! checked on its own first:
//! - a record whose signature does not verify under its chain's key, or
//!   that is not a record, is **altered**;
//! - a seq that no record accounts for, between 0 and the highest seq seen
//!   (or named by a head), was **removed** (runs are reported once);
//! - a validly signed record in a place named for another seq, a second
//!   record with one seq, or a `prev` that is not the hash of the record
//!   before, is **reordered**; the very same record presented under another
//!   seq is **replayed**;
//! - a chain whose key the auditor did not pin is **untrusted**, and none of
//!   its records count; records of a key after its revocation (in the keys
//!   file, or by a `revoke` record) are **revoked**;
//! - record 0 of a chain is its `init` or `enroll`, and exactly one chain
//!   holds the repository's `init`; otherwise the evidence was **restarted**.
//!
//! Then the heads: every trusted head must name records that are there
//! with the hashes it gives ([`super::verify_heads`]). Then what the
//! records say: a backup whose snapshot claims another host than its
//! signer's (**host**), or a time ahead of its record or of now by more than
//! the allowed clock skew (**future**), is reported unless an `accept`
//! record of a trusted key names the snapshot.
//! Those judgements of what records claim live in [`super::verify_claims`].
//!
//! The chain is followed by the seq each record carries under its
//! signature; names only say where each record was presented, which is
//! how a swap of two files shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::key::{parse_public, LEGACY_KEY_ID};
use super::objects;
use super::record::{self, Checked};
use super::store::{self, Loaded, RecordItem};
use super::trust::{Trust, TrustedKey};
use crate::error::Result;

use super::verify_claims::{chain_hosts, revocations, snapshot_flags};
pub use super::verify_heads::Anchor;
pub use super::verify_report::legacy_file;
use super::verify_report::{problem, removed, shown_for};
pub use super::verify_report::{ChainSummary, Head, HeadSummary, Problem, ProblemKind, VerifiedRecord, VerifyReport};

/// Verifies every record file of an export directory against one key (the
/// one-line form `cairn evidence pubkey` prints): the legacy chain, or a
/// chain of that key. Needs no repository and no password.
pub fn verify_dir(dir: &Path, pubkey_text: &str) -> Result<VerifyReport> {
    let key = parse_public(pubkey_text)?;
    verify_dir_with(dir, &Trust::single(key), Utc::now())
}

/// Verifies an export directory with the keys of `trust`.
pub fn verify_dir_with(dir: &Path, trust: &Trust, now: DateTime<Utc>) -> Result<VerifyReport> {
    Ok(verify_loaded(&store::load_dir(dir)?, trust, now))
}

/// Verifies everything in `l` with the keys of `trust`, at `now`.
pub fn verify_loaded(l: &Loaded, trust: &Trust, now: DateTime<Utc>) -> VerifyReport {
    // With several repositories' legacy keys pinned: this one's.
    let legacy = l.records.iter().filter(|i| i.chain == LEGACY_KEY_ID).map(|i| (i.seq, i.bytes.as_slice()));
    let resolved = trust.for_legacy_chain(legacy);
    let trust: &Trust = &resolved;
    let mut r = VerifyReport { files: l.records.len(), ..Default::default() };
    let mut unreadable: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (shown, why) in &l.unreadable {
        let (what, signer, seq) = match store::classify(shown) {
            store::Name::Record { chain, seq } => {
                unreadable.entry(chain.clone()).or_default().insert(seq);
                ("record", Some(chain), Some(seq))
            }
            store::Name::Head(_) => ("head", None, None),
            store::Name::Key(k) => ("key", Some(k), None),
            store::Name::Other => ("object", None, None),
        };
        r.push(Problem {
            kind: ProblemKind::Altered,
            signer,
            seq,
            file: Some(shown.clone()),
            detail: format!(
                "evidence {what} `{shown}` does not open ({why}): it was altered or damaged, or sealed with a key \
                 not given"
            ),
        });
    }
    if l.master_sealed > 0 {
        r.notes.push(format!(
            "{} legacy record(s) are sealed with the master key (written before the read key): password holders \
             read them, and an export carries them",
            l.master_sealed
        ));
    }
    let mut by_chain: BTreeMap<&str, Vec<&RecordItem>> = BTreeMap::new();
    for item in &l.records {
        by_chain.entry(item.chain.as_str()).or_default().push(item);
    }
    let mut verified: BTreeMap<String, BTreeMap<u64, (Checked, String)>> = BTreeMap::new();
    let mut accounted: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (chain, items) in &by_chain {
        let Some(key) = trust.get(chain) else {
            let claimed = items.iter().find(|i| i.seq == 0).and_then(|i| {
                serde_json::from_slice::<Value>(&i.bytes)
                    .ok()?
                    .get("payload")?
                    .get("host")?
                    .as_str()
                    .map(str::to_string)
            });
            r.push(Problem {
                kind: ProblemKind::Untrusted,
                signer: Some(chain.to_string()),
                seq: None,
                file: Some(shown_for(l, chain, 0)),
                detail: format!(
                    "{} record(s) signed by key {chain}{}, which is not among the trusted keys: none of them counts",
                    items.len(),
                    claimed.as_ref().map(|h| format!(" (enrolled for host {h})")).unwrap_or_default()
                ),
            });
            r.chains.push(ChainSummary {
                signer: chain.to_string(),
                host: claimed,
                legacy: *chain == LEGACY_KEY_ID,
                trusted: false,
                records: items.len(),
                verified: 0,
                last: None,
            });
            continue;
        };
        let (good, acc) = verify_chain(l, chain, items, key, unreadable.remove(*chain).unwrap_or_default(), &mut r);
        accounted.insert(chain.to_string(), acc);
        verified.insert(chain.to_string(), good);
    }
    if by_chain.is_empty() {
        r.push(Problem {
            kind: ProblemKind::Removed,
            signer: Some(LEGACY_KEY_ID.into()),
            seq: Some(0),
            file: Some(shown_for(l, LEGACY_KEY_ID, 0)),
            detail: "there are no records at all (every chain starts with record 0)".into(),
        });
    }
    // One repository: the one most records name.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, _) in verified.values().flat_map(|m| m.values()) {
        *counts.entry(c.repository.as_str()).or_default() += 1;
    }
    let repository = counts.iter().max_by_key(|(r, n)| (**n, std::cmp::Reverse(**r))).map(|(r, _)| r.to_string());
    for (chain, m) in &verified {
        for (seq, (c, name)) in m {
            if Some(&c.repository) != repository.as_ref() {
                r.push(problem(
                    ProblemKind::Altered,
                    chain,
                    *seq,
                    name,
                    format!("belongs to repository {}, not {}", c.repository, repository.as_deref().unwrap_or("?")),
                ));
            }
        }
    }
    check_init(l, &verified, &by_chain, &mut r);
    let hosts = chain_hosts(&verified, trust, &mut r);
    let revoked = revocations(&verified, trust, &mut r);
    super::verify_heads::check_heads(l, trust, &verified, &accounted, repository.as_deref(), &mut r);
    let (host_flags, future_flags) = snapshot_flags(&verified, &hosts, &revoked, now, &mut r);
    for (chain, m) in &verified {
        for (seq, (c, name)) in m {
            let key = (chain.clone(), *seq);
            r.records.push(VerifiedRecord {
                signer: chain.clone(),
                host: hosts.get(chain).cloned().flatten(),
                seq: *seq,
                file: name.clone(),
                kind: c.kind.clone(),
                time: c.time.clone(),
                policy: c.policy.clone(),
                hash: c.hash.clone(),
                revoked: revoked.contains(&key),
                host_mismatch: host_flags.contains(&key),
                future: future_flags.contains(&key),
                payload: c.payload.clone(),
            });
        }
        let s = ChainSummary {
            signer: chain.clone(),
            host: hosts.get(chain).cloned().flatten(),
            legacy: chain == LEGACY_KEY_ID,
            trusted: true,
            records: by_chain.get(chain.as_str()).map_or(0, Vec::len),
            verified: m.len(),
            last: m.iter().next_back().map(|(s, (c, _))| Head { seq: *s, hash: c.hash.clone() }),
        };
        if s.legacy && s.verified > 0 {
            r.notes.push(format!(
                "{} record(s) are signed by the legacy key (`evidence/key`), which every holder of the repository \
                 password can use",
                s.verified
            ));
        }
        r.chains.push(s);
    }
    r.chains.sort_by(|a, b| (!a.legacy, &a.signer).cmp(&(!b.legacy, &b.signer)));
    r.repository = repository;
    r.sort();
    if r.problems.is_empty() && r.chains.len() == 1 {
        r.head = r.chains[0].last.clone();
    }
    r
}

/// Verifies one chain's records under its key. Returns the records that
/// verified, by seq, and the seqs some stored record accounts for.
fn verify_chain(
    l: &Loaded,
    chain: &str,
    items: &[&RecordItem],
    key: &TrustedKey,
    mut accounted: BTreeSet<u64>,
    r: &mut VerifyReport,
) -> (BTreeMap<u64, (Checked, String)>, BTreeSet<u64>) {
    let legacy = chain == LEGACY_KEY_ID;
    let mut checked: Vec<(Checked, u64, String)> = Vec::new();
    for item in items {
        match record::check(&item.bytes, &key.public) {
            Err(detail) => {
                r.push(problem(ProblemKind::Altered, chain, item.seq, &item.shown, detail));
                accounted.insert(item.seq);
            }
            Ok(c) if c.signer.as_deref() != (!legacy).then_some(chain) => {
                let detail = match &c.signer {
                    Some(s) => format!("it names signer {s}, not the key of the chain it is in ({chain})"),
                    None => format!("a legacy record (it names no signer) in the chain of key {chain}"),
                };
                r.push(problem(ProblemKind::Altered, chain, item.seq, &item.shown, detail));
                accounted.insert(item.seq);
            }
            Ok(c) => {
                accounted.insert(c.seq);
                checked.push((c, item.seq, item.shown.clone()));
            }
        }
    }
    // Group by the seq under the signature: a copy of the same record in
    // another place is a replay, two different records one seq a fork.
    let mut by_seq: BTreeMap<u64, (Checked, String)> = BTreeMap::new();
    let mut groups: BTreeMap<u64, Vec<(Checked, u64, String)>> = BTreeMap::new();
    for x in checked {
        groups.entry(x.0.seq).or_default().push(x);
    }
    for (seq, mut group) in groups {
        // The one in its own place first.
        group.sort_by_key(|(_, name_seq, file)| (*name_seq != seq, file.clone()));
        let (first, first_name_seq, first_file) = group.remove(0);
        if first_name_seq != seq {
            r.push(problem(
                ProblemKind::Reordered,
                chain,
                seq,
                &first_file,
                format!("holds record {seq} where record {first_name_seq} belongs"),
            ));
        }
        for (c, name_seq, file) in group {
            if c.hash == first.hash {
                r.push(problem(
                    ProblemKind::Replayed,
                    chain,
                    seq,
                    &file,
                    format!("a copy of record {seq} ({first_file}) presented as record {name_seq}: it was replayed"),
                ));
            } else {
                if name_seq != seq {
                    r.push(problem(
                        ProblemKind::Reordered,
                        chain,
                        seq,
                        &file,
                        format!("holds record {seq} where record {name_seq} belongs"),
                    ));
                }
                r.push(problem(
                    ProblemKind::Reordered,
                    chain,
                    seq,
                    &file,
                    format!("a second record with seq {seq} (the first is in {first_file})"),
                ));
            }
        }
        by_seq.insert(seq, (first, first_file));
    }
    // Removed: every gap between 0 and the highest seq accounted for.
    if let Some(&max) = accounted.last() {
        let mut expected = 0u64;
        for &s in accounted.iter().chain(std::iter::once(&(max + 1))) {
            if s > expected {
                r.push(removed(l, chain, expected, s - 1, None));
            }
            expected = s + 1;
        }
    }
    // The links, and what record 0 must be.
    for (seq, (c, name)) in &by_seq {
        let p = |kind, detail: String| problem(kind, chain, *seq, name, detail);
        match (seq, &c.prev) {
            (0, None) => {
                let allowed: &[&str] = if legacy { &["init"] } else { &["init", "enroll"] };
                if !allowed.contains(&c.kind.as_str()) {
                    r.push(p(
                        ProblemKind::Restarted,
                        format!(
                            "record 0 is a `{}` record, not {}: the chain was started again",
                            c.kind,
                            allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" or ")
                        ),
                    ));
                }
                let enrols = c.payload.get("public_key").and_then(Value::as_str);
                if !legacy && enrols.and_then(|t| parse_public(t).ok()) != Some(key.public) {
                    r.push(p(ProblemKind::Altered, "record 0 does not enrol the key that signs this chain".into()));
                }
            }
            (0, Some(_)) => {
                r.push(p(ProblemKind::Reordered, "record 0 starts the chain, yet names a previous record".into()))
            }
            (_, None) => {
                r.push(p(ProblemKind::Reordered, "names no previous record, yet only record 0 starts the chain".into()))
            }
            (s, Some(prev)) => {
                if let Some((before, before_name)) = by_seq.get(&(s - 1)) {
                    if *prev != before.hash {
                        r.push(p(
                            ProblemKind::Reordered,
                            format!(
                                "its `prev` is not the hash of record {} ({before_name}): it does not follow that record",
                                s - 1
                            ),
                        ));
                    }
                }
            }
        }
    }
    (by_seq, accounted)
}

/// Exactly one `init`, at record 0 of its chain.
fn check_init(
    l: &Loaded,
    verified: &BTreeMap<String, BTreeMap<u64, (Checked, String)>>,
    by_chain: &BTreeMap<&str, Vec<&RecordItem>>,
    r: &mut VerifyReport,
) {
    let inits: Vec<(&String, u64, &String)> = verified
        .iter()
        .flat_map(|(chain, m)| m.iter().filter(|(_, (c, _))| c.kind == "init").map(move |(s, (_, f))| (chain, *s, f)))
        .collect();
    let untrusted_chains = by_chain.keys().any(|c| !verified.contains_key(*c));
    let any_verified = verified.values().any(|m| !m.is_empty());
    match inits.as_slice() {
        [] if any_verified && !untrusted_chains => {
            let first = verified.keys().next().map(String::as_str).unwrap_or(LEGACY_KEY_ID);
            r.push(Problem {
                kind: ProblemKind::Restarted,
                signer: Some(first.to_string()),
                seq: Some(0),
                file: Some(shown_for(l, first, 0)),
                detail: "no record is the repository's `init`: the evidence was erased and started again, or its \
                         beginning was removed"
                    .into(),
            });
        }
        [_first, rest @ ..] => {
            for (chain, seq, file) in rest {
                r.push(problem(
                    ProblemKind::Restarted,
                    chain,
                    *seq,
                    file,
                    "a second `init` record: the evidence was started again".into(),
                ));
            }
        }
        [] => {}
    }
}

/// Builds the trust of a password holder: the keys the repository itself
/// enrolled (each chain's record 0, else its key object) and the legacy key.
pub fn enrolled_trust(l: &Loaded, legacy: Option<ed25519_dalek::VerifyingKey>) -> Trust {
    let mut t = Trust { pinned: false, ..Default::default() };
    if let Some(k) = legacy {
        t.keys.insert(
            LEGACY_KEY_ID.into(),
            TrustedKey { key_id: LEGACY_KEY_ID.into(), public: k, host: None, revoked_after: None },
        );
    }
    for (id, _, bytes) in &l.keys {
        if let Ok(k) = objects::check_key_object(bytes) {
            if &k.key_id == id {
                t.keys.insert(
                    id.clone(),
                    TrustedKey { key_id: id.clone(), public: k.public, host: None, revoked_after: None },
                );
            }
        }
    }
    for item in l.records.iter().filter(|i| i.seq == 0 && i.chain != LEGACY_KEY_ID) {
        if t.keys.contains_key(&item.chain) {
            continue;
        }
        let claimed = serde_json::from_slice::<Value>(&item.bytes)
            .ok()
            .and_then(|v| v.get("payload")?.get("public_key")?.as_str().and_then(|p| parse_public(p).ok()));
        if let Some(public) = claimed.filter(|p| super::key::key_id(p) == item.chain) {
            t.keys.insert(
                item.chain.clone(),
                TrustedKey { key_id: item.chain.clone(), public, host: None, revoked_after: None },
            );
        }
    }
    t
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
