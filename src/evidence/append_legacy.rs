//! The legacy chain: the records signed with the repository's sealed key,
//! appended under the evidence lock by hosts that have no key of their
//! own. Existing repositories keep verifying; new ones use host keys.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use super::append_head::{finish_with, head_names, newest_head_among};
use super::chain_record::{init_payload, load_record, refuse_restart, write_record, AppendedRecord};
use super::key::{self, read_key, LEGACY_KEY_ID};
use super::objects::ChainHead;
use super::signer::Signer;
use super::store::{self, Name};
use super::{LOCKS_DIR, LOCK_WAIT};
use crate::error::{Error, Result};
use crate::pool::{beside, drop_beside};
use crate::repo::{lock, Repository};

/// Takes the legacy chain's append lock, retrying with random back-off
/// while another appender holds it (or races for it), for up to [`LOCK_WAIT`].
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

/// Appends to the legacy chain under the evidence lock. `None`: the
/// repository has no legacy key and its evidence is signed by host keys,
/// so this host needs one.
pub(super) fn legacy_append(
    repo: &Repository,
    kind: &str,
    policy: Option<&str>,
    payload: &Value,
    adopting: bool,
) -> Result<Option<AppendedRecord>> {
    let lock = lock_appends(repo, kind)?;
    // What the append starts from, read at once (on remote storage each
    // is a round trip): the records, the key and the newest heads' names.
    let (all, (loaded, heads)) = beside(
        || repo.backend().list(&format!("{}/", store::RECORDS_DIR)),
        || beside(|| key::load(repo), || head_names(repo)),
    );
    let all = all?;
    let mut host_chains = false;
    let mut seqs: Vec<u64> = Vec::new();
    for o in &all {
        match store::classify(&o.key) {
            Name::Record { chain, seq } if chain == LEGACY_KEY_ID => seqs.push(seq),
            Name::Record { .. } => host_chains = true,
            _ => {}
        }
    }
    seqs.sort_unstable();
    let signing = match loaded? {
        Some(k) => k,
        None if seqs.is_empty() && !host_chains => {
            if kind != "init" && !adopting {
                refuse_restart(repo)?;
            }
            key::create(repo)?
        }
        None if seqs.is_empty() => return Ok(None),
        // A new key would make every older record fail verification.
        None => return Err(Error::EvidenceKeyMissing { records: seqs.len() as u64 }),
    };
    if seqs.is_empty() && host_chains {
        // The legacy chain is empty while host chains exist: it never
        // starts now (its record 0 would be no `init`).
        return Ok(None);
    }
    let s = Signer::legacy(signing);
    let rk = read_key(repo);
    let mut warnings = Vec::new();
    // A head that cannot be listed or read is no head: the append goes on.
    let heads = heads.unwrap_or_default();
    let newest = || newest_head_among(repo, &rk, &heads, Some((LEGACY_KEY_ID, *s.public()))).ok().flatten();
    let (seq, prev, head) = match seqs.last() {
        None if kind == "init" => (0, None, newest()),
        None => {
            if !adopting {
                refuse_restart(repo)?;
            }
            let first = write_record(repo, &s, &rk, LEGACY_KEY_ID, 0, None, "init", None, init_payload(), false)?;
            (1, Some(first.hash), newest())
        }
        Some(&last) => {
            // The tail and the newest head at once, too.
            let (bytes, head) = beside(|| load_record(repo, LEGACY_KEY_ID, last), newest);
            (last + 1, Some(blake3::hash(&bytes?).to_hex().to_string()), head)
        }
    };
    let (mut seq, mut prev) = (seq, prev);
    if let Some(h) = head.as_ref().and_then(|h| h.chains.get(LEGACY_KEY_ID)) {
        if h.seq >= seq {
            warnings.push(format!(
                "legacy evidence records {seq} to {} are missing from the repository, but the newest head names \
                 record {}: they were removed; appending after them",
                h.seq, h.seq
            ));
            (seq, prev) = (h.seq + 1, Some(h.hash.clone()));
        }
    }
    let r = write_record(repo, &s, &rk, LEGACY_KEY_ID, seq, prev.as_deref(), kind, policy, payload.clone(), false)?;
    let mut chains = head.map(|h| h.chains).unwrap_or_default();
    chains.insert(LEGACY_KEY_ID.into(), ChainHead { seq, hash: r.hash.clone() });
    // The record is in place, and the next appender lists it: the lock
    // goes while the head is written (a round trip less). That appender
    // may not see this head yet and start from the one before, as it may
    // whenever a host chain's head lands beside it; its head names this
    // chain's newer record anyway.
    drop_beside(Some(lock), || finish_with(repo, &s, &rk, r, warnings, chains)).map(Some)
}
