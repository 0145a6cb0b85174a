//! The repository head, written after each append: one signed object that
//! commits to every sub-chain's newest record, and the search for the
//! newest head that verifies, which an append starts from.

use chrono::Utc;

use super::chain_record::AppendedRecord;
use super::key::{self, LEGACY_KEY_ID};
use super::objects::{self, ChainHead, Chains, CheckedHead};
use super::signer::Signer;
use super::store::{self, Name};
use crate::error::{Error, Result};
use crate::repo::{blob, limits, Repository};

/// Writes the head after a first `init` record.
pub(super) fn finish(
    repo: &Repository,
    s: &Signer,
    rk: &crate::crypto::MasterKey,
    r: AppendedRecord,
    warnings: Vec<String>,
) -> Result<AppendedRecord> {
    let mut chains = Chains::new();
    chains.insert(r.signer.clone(), ChainHead { seq: r.seq, hash: r.hash.clone() });
    finish_with(repo, s, rk, r, warnings, chains)
}

/// Writes the head for `r`; a head that cannot be written is a warning
/// (the record stands, and the next append's head covers it).
pub(super) fn finish_with(
    repo: &Repository,
    s: &Signer,
    rk: &crate::crypto::MasterKey,
    mut r: AppendedRecord,
    mut warnings: Vec<String>,
    chains: Chains,
) -> Result<AppendedRecord> {
    let now = Utc::now();
    let written = objects::sign_head(s, &repo.id().to_hex(), now, &chains)
        .map_err(|e| Error::EvidenceSigner { detail: e })
        .and_then(|(bytes, hash)| {
            // Named by its signer and the record just written, which no
            // other appender could write: the name is new.
            let name = store::head_key(now, s.key_id(), r.seq);
            repo.backend().put_known_absent(&name, &blob::seal_object(rk, &bytes))?;
            Ok(hash)
        });
    match written {
        Ok(h) => r.head = Some(objects::head_text(&h)),
        Err(e) => warnings.push(format!("the evidence head was not written: {e}")),
    }
    r.warnings = warnings;
    Ok(r)
}

/// The newest head that verifies, looked for in the buckets of the last
/// week first, then among all heads.
pub fn newest_head(repo: &Repository, rk: &crate::crypto::MasterKey) -> Result<Option<CheckedHead>> {
    newest_head_among(repo, rk, &head_names(repo)?, None)
}

/// The names of the newest heads: those of the newest bucket of the last
/// week that has any, else of all buckets. An append lists them while it
/// reads its chain's tail, and then looks among them.
pub(super) fn head_names(repo: &Repository) -> Result<Vec<String>> {
    let now = Utc::now();
    let mut names: Vec<String> = Vec::new();
    for days in 0..=7 {
        names = repo
            .backend()
            .list(&store::head_bucket(now - chrono::Duration::days(days)))?
            .into_iter()
            .map(|o| o.key)
            .collect();
        if !names.is_empty() {
            break;
        }
    }
    if names.is_empty() {
        names = repo.backend().list(&format!("{}/", store::HEADS_DIR))?.into_iter().map(|o| o.key).collect();
    }
    names.retain(|n| matches!(store::classify(n), Name::Head(_)));
    names.sort();
    Ok(names)
}

/// The newest head among `names` (as [`head_names`] lists them) that
/// verifies. `held` is the appender's own key (its id and public half):
/// a head that claims it is checked with it, not with the key object
/// read from the repository (one round trip less when this host wrote
/// the newest head).
pub(super) fn newest_head_among(
    repo: &Repository,
    rk: &crate::crypto::MasterKey,
    names: &[String],
    held: Option<(&str, ed25519_dalek::VerifyingKey)>,
) -> Result<Option<CheckedHead>> {
    let mut legacy: Option<Option<ed25519_dalek::VerifyingKey>> = None;
    for name in names.iter().rev().take(5) {
        let Ok(sealed) = repo.backend().get(name) else { continue };
        let Ok(plain) = blob::open_object(rk, &sealed, limits::EVIDENCE_RECORD) else { continue };
        let Some(signer) = objects::claimed_head_signer(&plain) else { continue };
        let public = if let Some((_, k)) = held.filter(|(id, _)| *id == signer) {
            Some(k)
        } else if signer == LEGACY_KEY_ID {
            let k = legacy.get_or_insert_with(|| key::load(repo).ok().flatten().map(|k| k.verifying_key()));
            *k
        } else {
            enrolled_key(repo, rk, &signer).map(|k| k.public)
        };
        let Some(public) = public else { continue };
        if let Ok(h) = objects::check_head(&plain, &public) {
            if h.repository == repo.id().to_hex() {
                return Ok(Some(h));
            }
        }
    }
    Ok(None)
}

/// The enrolled key object of `key_id`, when it is there and checks.
pub(super) fn enrolled_key(
    repo: &Repository,
    rk: &crate::crypto::MasterKey,
    key_id: &str,
) -> Option<objects::EnrolledKey> {
    let sealed = repo.backend().get(&store::key_object(key_id)).ok()?;
    let plain = blob::open_object(rk, &sealed, limits::EVIDENCE_RECORD).ok()?;
    objects::check_key_object(&plain).ok().filter(|k| k.key_id == key_id)
}
