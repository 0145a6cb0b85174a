//! Repository heads in verification, and the anchors an auditor kept.
//!
//! Every head signed by a trusted key must name only records that are
//! there, with the hashes it gives: a record a head names that is gone was
//! removed (a sub-chain cut at its end included, which the records alone
//! cannot show), and one with another hash was rewritten. The newest head
//! with nothing wrong is the newest head verification can prove.
//!
//! An **anchor** is what an auditor noted at an earlier audit: a head
//! (`head:<hash>`, as `cairn evidence head` prints it), or one record
//! (`SEQ:HASH` in the legacy chain, `KEYID:SEQ:HASH` in a host's). An
//! anchored head must still be there; an anchored record must still be
//! there with that hash. The report then says whether the newest provable
//! head covers every anchor (names each chain at least as far).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::key::{is_key_id, LEGACY_KEY_ID};
use super::objects::{check_head, claimed_head_signer, head_text, CheckedHead, HEAD_PREFIX};
use super::record::Checked;
use super::store::Loaded;
use super::trust::Trust;
use super::verify_report::{removed, HeadSummary, Problem, ProblemKind, VerifyReport};
use crate::error::{Error, Result};

/// Something an earlier audit noted, to be found again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// Record `seq` of `chain` (`legacy` or a key id) had this hash.
    Record { chain: String, seq: u64, hash: String },
    /// A repository head, by its hash.
    Head(String),
}

fn is_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Anchor {
    /// `head:HASH`, `SEQ:HASH` (legacy chain) or `KEYID:SEQ:HASH`.
    pub fn parse(s: &str) -> Result<Anchor> {
        let bad = || Error::BadFlag {
            flag: "--anchor".into(),
            value: s.to_string(),
            expected: "expected head:HASH (from `cairn evidence head`), SEQ:HASH or KEYID:SEQ:HASH, HASH being \
                           64 hex digits"
                .into(),
        };
        let t = s.trim();
        if let Some(h) = t.strip_prefix(HEAD_PREFIX) {
            return if is_hash(h) { Ok(Anchor::Head(h.to_ascii_lowercase())) } else { Err(bad()) };
        }
        let parts: Vec<&str> = t.split(':').map(str::trim).collect();
        let (chain, seq, hash) = match parts.as_slice() {
            [seq, hash] => (LEGACY_KEY_ID.to_string(), *seq, *hash),
            [chain, seq, hash] if is_key_id(chain) || *chain == LEGACY_KEY_ID => (chain.to_string(), *seq, *hash),
            _ => return Err(bad()),
        };
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if !is_hash(hash) {
            return Err(bad());
        }
        Ok(Anchor::Record { chain, seq, hash: hash.to_ascii_lowercase() })
    }
}

type Verified = BTreeMap<String, BTreeMap<u64, (Checked, String)>>;

/// Checks every head signed by a trusted key against the verified records,
/// reports what they name that is missing or different, and finds the
/// newest head with nothing wrong.
pub(super) fn check_heads(
    l: &Loaded,
    trust: &Trust,
    verified: &Verified,
    accounted: &BTreeMap<String, BTreeSet<u64>>,
    repository: Option<&str>,
    r: &mut VerifyReport,
) {
    // (chain, seq) named but missing → (head, its time), the first head seen.
    let mut missing: BTreeMap<String, (u64, String, DateTime<Utc>)> = BTreeMap::new();
    let (mut untrusted, mut good): (usize, Vec<CheckedHead>) = (0, Vec::new());
    for (_, shown, bytes) in &l.heads {
        let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        r.head_hashes.insert(blake3::hash(text).to_hex().to_string());
        let altered = |detail: String| Problem {
            kind: ProblemKind::Altered,
            signer: None,
            seq: None,
            file: Some(shown.clone()),
            detail,
        };
        let Some(signer) = claimed_head_signer(bytes) else {
            r.problems.push(altered("not a head (not JSON, or no signer)".into()));
            continue;
        };
        let Some(key) = trust.get(&signer) else {
            untrusted += 1;
            continue;
        };
        let h = match check_head(bytes, &key.public) {
            Ok(h) => h,
            // With no record of its chain verifying, the key given is just
            // not this chain's: the records say so already.
            Err(_) if verified.get(&signer).is_none_or(|m| m.is_empty()) => {
                untrusted += 1;
                continue;
            }
            Err(d) => {
                r.problems.push(altered(d));
                continue;
            }
        };
        let mut fine = true;
        if Some(h.repository.as_str()) != repository && repository.is_some() {
            r.problems.push(altered(format!(
                "a head of repository {}, not {}",
                h.repository,
                repository.unwrap_or("?")
            )));
            fine = false;
        }
        for (chain, ch) in &h.chains {
            if trust.get(chain).is_none() {
                continue;
            }
            match verified.get(chain).and_then(|m| m.get(&ch.seq)) {
                Some((c, _)) if c.hash == ch.hash => {}
                Some((c, file)) => {
                    fine = false;
                    r.problems.push(Problem {
                        kind: ProblemKind::Altered,
                        signer: Some(chain.clone()),
                        seq: Some(ch.seq),
                        file: Some(file.clone()),
                        detail: format!(
                            "head {shown} ({}) names this record with hash {}, but it has {}: the chain was \
                             rewritten after that head",
                            h.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            ch.hash,
                            c.hash
                        ),
                    });
                }
                None => {
                    fine = false;
                    let known = accounted.get(chain).is_some_and(|a| a.contains(&ch.seq));
                    if !known {
                        let e = missing.entry(chain.clone()).or_insert((ch.seq, shown.clone(), h.time));
                        if ch.seq > e.0 {
                            *e = (ch.seq, shown.clone(), h.time);
                        }
                    }
                }
            }
        }
        if fine {
            good.push(h.clone());
        }
        r.heads.push(h);
    }
    for (chain, (seq, shown, time)) in missing {
        let tail = accounted.get(&chain).and_then(|a| a.last().copied());
        let from = tail.map_or(0, |t| t + 1);
        if seq >= from {
            let why = format!(
                "head {shown} ({}) names record {seq}",
                time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            r.problems.push(removed(l, &chain, from, seq, Some(why)));
        }
    }
    if untrusted > 0 {
        r.notes.push(format!("{untrusted} head(s) signed by keys that are not trusted were not used"));
    }
    if l.heads.is_empty() && !l.records.is_empty() {
        r.notes.push(
            "there is no repository head (evidence written before heads existed): removing the newest records is \
             seen only against an anchor"
                .into(),
        );
    }
    r.newest_head = good.iter().max_by(|a, b| (a.time, &a.hash).cmp(&(b.time, &b.hash))).map(|h| HeadSummary {
        text: head_text(&h.hash),
        hash: h.hash.clone(),
        time: h.time,
        signer: h.signer.clone(),
        chains: h.chains.len(),
    });
}

impl VerifyReport {
    /// Checks that legacy record `seq` is present with hash `hash`, as
    /// noted at an earlier audit.
    pub fn check_anchor(&mut self, seq: u64, hash: &str) {
        self.check_anchors(&[Anchor::Record {
            chain: LEGACY_KEY_ID.into(),
            seq,
            hash: hash.trim().to_ascii_lowercase(),
        }]);
    }

    /// Checks every anchor, and whether the newest provable head covers
    /// them all.
    pub fn check_anchors(&mut self, anchors: &[Anchor]) {
        if anchors.is_empty() {
            return;
        }
        let newest = self.newest_head.as_ref().and_then(|n| self.heads.iter().find(|h| h.hash == n.hash)).cloned();
        let mut covered = newest.is_some();
        for a in anchors {
            let problem = match a {
                Anchor::Record { chain, seq, hash } => {
                    if let Some(n) = &newest {
                        covered &= n.chains.get(chain).is_some_and(|c| c.seq >= *seq);
                    }
                    let file = if chain == LEGACY_KEY_ID {
                        super::verify_report::legacy_file(*seq)
                    } else {
                        super::store::export_path(chain, *seq)
                    };
                    match self.records.iter().find(|r| &r.signer == chain && r.seq == *seq) {
                        Some(r) if r.hash.eq_ignore_ascii_case(hash) => continue,
                        Some(r) => Problem {
                            kind: ProblemKind::Altered,
                            signer: Some(chain.clone()),
                            seq: Some(*seq),
                            file: Some(r.file.clone()),
                            detail: format!(
                                "the anchor says record {seq} has hash {hash}, but it has {}: the chain was rewritten",
                                r.hash
                            ),
                        },
                        None => Problem {
                            kind: ProblemKind::Removed,
                            signer: Some(chain.clone()),
                            seq: Some(*seq),
                            file: Some(file),
                            detail: format!("the anchor names record {seq}, which is not here (or does not verify)"),
                        },
                    }
                }
                Anchor::Head(hash) => {
                    let found = self.heads.iter().find(|h| &h.hash == hash).cloned();
                    match (found, &newest) {
                        (Some(a), Some(n)) => {
                            covered &= a.chains.iter().all(|(c, x)| n.chains.get(c).is_some_and(|y| y.seq >= x.seq));
                            continue;
                        }
                        (Some(_), None) => {
                            covered = false;
                            continue;
                        }
                        (None, _) => {
                            covered = false;
                            let here = self.head_hashes.contains(hash);
                            Problem {
                                kind: if here { ProblemKind::Untrusted } else { ProblemKind::Removed },
                                signer: None,
                                seq: None,
                                file: None,
                                detail: if here {
                                    format!(
                                        "the anchored head {} is here, but does not verify with a trusted key",
                                        head_text(hash)
                                    )
                                } else {
                                    format!(
                                        "the anchored head {} is not here: it was removed (or the anchor is of \
                                         another repository)",
                                        head_text(hash)
                                    )
                                },
                            }
                        }
                    }
                }
            };
            self.problems.push(problem);
        }
        self.newer_than_anchors = Some(covered);
        self.sort();
        if !self.problems.is_empty() {
            self.head = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse() {
        let h = "ab".repeat(32);
        assert_eq!(
            Anchor::parse(&format!("12:{h}")).unwrap(),
            Anchor::Record { chain: "legacy".into(), seq: 12, hash: h.clone() }
        );
        assert_eq!(
            Anchor::parse(&format!("12:{}", h.to_uppercase())).unwrap(),
            Anchor::parse(&format!("12:{h}")).unwrap()
        );
        assert_eq!(
            Anchor::parse(&format!("0123456789abcdef:3:{h}")).unwrap(),
            Anchor::Record { chain: "0123456789abcdef".into(), seq: 3, hash: h.clone() }
        );
        assert_eq!(Anchor::parse(&format!("head:{h}")).unwrap(), Anchor::Head(h.clone()));
        for bad in ["12", ":", &format!("x:{h}"), "3:abc", &format!("-1:{h}"), "head:abc", &format!("nothex:1:{h}")] {
            assert!(Anchor::parse(bad).is_err(), "{bad}");
        }
    }
}
