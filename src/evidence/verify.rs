//! Verifying an exported chain with nothing but its files and the public key.
//!
//! Each file `<seq>.json` is checked on its own first (signature, members),
//! then the chain as a whole:
//! - a record whose signature does not verify, or that is not a record, is
//!   **altered**;
//! - a seq that no file accounts for, between 0 and the highest seq seen,
//!   was **removed** (runs of missing seqs are reported once);
//! - a validly signed record in a file named for another seq, a second
//!   record with the same seq, or a record whose `prev` is not the hash of
//!   the record before it, is **reordered**.
//!
//! The chain is followed by the seq each record carries under its
//! signature; file names only say where each record was presented, which
//! is how a swap of two files shows.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

use super::key::parse_public;
use super::record::{self, file_stem, Checked};

/// What is wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// A record that should be there is not.
    Removed,
    /// A record is out of its place in the chain.
    Reordered,
    /// A record's content is not what was signed.
    Altered,
}

/// One problem, naming the seq and the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The seq at fault: the record's own, or the one its file name gives
    /// when the record cannot be trusted; the first of a run of removed ones.
    pub seq: Option<u64>,
    /// The file at fault (or, for a removed record, the name it would have).
    pub file: Option<String>,
    pub detail: String,
}

/// A record that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedRecord {
    pub seq: u64,
    pub file: String,
    pub kind: String,
    pub time: String,
    pub policy: Option<String>,
    /// Hex BLAKE3 of the record's signed bytes.
    pub hash: String,
}

/// The last record of an intact chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: u64,
    /// Hex BLAKE3 of its signed bytes.
    pub hash: String,
}

/// The outcome of [`verify_dir`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Record files examined.
    pub files: usize,
    /// The records whose signature verified, by seq.
    pub records: Vec<VerifiedRecord>,
    /// The repository the records belong to.
    pub repository: Option<String>,
    /// The last record, when the chain is intact: note it, and check it
    /// at the next audit with [`VerifyReport::check_anchor`].
    pub head: Option<Head>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether no record at all verified, although there were records:
    /// the public key is most likely not the one that signed them.
    pub fn nothing_verified(&self) -> bool {
        self.files > 0 && self.records.is_empty()
    }

    /// Checks that record `seq` is present with hash `hash`, as noted at an
    /// earlier audit: this detects records removed from the end of the
    /// chain, and a chain rewritten since, which the records alone cannot.
    pub fn check_anchor(&mut self, seq: u64, hash: &str) {
        let file = Some(format!("{}.json", file_stem(seq)));
        let problem = match self.records.iter().find(|r| r.seq == seq) {
            Some(r) if r.hash.eq_ignore_ascii_case(hash.trim()) => return,
            Some(r) => Problem {
                kind: ProblemKind::Altered,
                seq: Some(seq),
                file: Some(r.file.clone()),
                detail: format!(
                    "the anchor says record {seq} has hash {hash}, but it has {}: the chain was rewritten",
                    r.hash
                ),
            },
            None => Problem {
                kind: ProblemKind::Removed,
                seq: Some(seq),
                file,
                detail: format!("the anchor names record {seq}, which is not here (or does not verify)"),
            },
        };
        self.problems.push(problem);
        self.problems.sort_by(|a, b| a.seq.cmp(&b.seq).then(a.file.cmp(&b.file)));
        self.head = None;
    }
}

/// Verifies every `<seq>.json` file in `dir` against `pubkey_text` (the
/// one-line form `cairn evidence pubkey` prints). Needs no repository and
/// no password. Errors only when `dir` or a file cannot be read or the key
/// is malformed; everything wrong with the records is in the report.
pub fn verify_dir(dir: &Path, pubkey_text: &str) -> Result<VerifyReport> {
    let key = parse_public(pubkey_text)?;
    let mut files: Vec<(u64, String)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name.strip_suffix(".json").and_then(record::parse_stem) {
            files.push((seq, name.to_string()));
        }
    }
    files.sort();
    let mut report = VerifyReport { files: files.len(), ..Default::default() };
    // Seqs some file accounts for: valid records by their signed seq,
    // others by their file name.
    let mut accounted = std::collections::BTreeSet::new();
    let mut by_seq: BTreeMap<u64, (Checked, String)> = BTreeMap::new();
    for (name_seq, name) in &files {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let problem = |kind, seq, detail: String| Problem { kind, seq: Some(seq), file: Some(name.clone()), detail };
        match record::check(&bytes, &key) {
            Err(detail) => {
                report.problems.push(problem(ProblemKind::Altered, *name_seq, detail));
                accounted.insert(*name_seq);
            }
            Ok(c) => {
                accounted.insert(c.seq);
                if c.seq != *name_seq {
                    report.problems.push(problem(
                        ProblemKind::Reordered,
                        c.seq,
                        format!("holds record {} where record {} belongs", c.seq, name_seq),
                    ));
                }
                if let Some((_, first)) = by_seq.get(&c.seq) {
                    report.problems.push(problem(
                        ProblemKind::Reordered,
                        c.seq,
                        format!("a second record with seq {} (the first is in {first})", c.seq),
                    ));
                    continue;
                }
                by_seq.insert(c.seq, (c, name.clone()));
            }
        }
    }
    // One repository: the one most records name.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, _) in by_seq.values() {
        *counts.entry(c.repository.as_str()).or_default() += 1;
    }
    let repository = counts.iter().max_by_key(|(r, n)| (**n, std::cmp::Reverse(**r))).map(|(r, _)| r.to_string());
    // Removed: every gap between 0 and the highest seq accounted for.
    match accounted.last() {
        None => report.problems.push(Problem {
            kind: ProblemKind::Removed,
            seq: Some(0),
            file: Some(format!("{}.json", file_stem(0))),
            detail: "there are no records at all (every chain starts with record 0)".into(),
        }),
        Some(&max) => {
            let mut expected = 0u64;
            for &s in accounted.iter().chain(std::iter::once(&(max + 1))) {
                if s > expected {
                    let detail = if s - expected == 1 {
                        format!("record {expected} is missing")
                    } else {
                        format!("records {expected} to {} ({} records) are missing", s - 1, s - expected)
                    };
                    report.problems.push(Problem {
                        kind: ProblemKind::Removed,
                        seq: Some(expected),
                        file: Some(format!("{}.json", file_stem(expected))),
                        detail,
                    });
                }
                expected = s + 1;
            }
        }
    }
    // The links, between records that verified.
    for (seq, (c, name)) in &by_seq {
        let problem = |kind, detail: String| Problem { kind, seq: Some(*seq), file: Some(name.clone()), detail };
        if Some(&c.repository) != repository.as_ref() {
            report.problems.push(problem(
                ProblemKind::Altered,
                format!("belongs to repository {}, not {}", c.repository, repository.as_deref().unwrap_or("?")),
            ));
        }
        match (seq, &c.prev) {
            (0, None) => {}
            (0, Some(_)) => report
                .problems
                .push(problem(ProblemKind::Reordered, "record 0 starts the chain, yet names a previous record".into())),
            (_, None) => report.problems.push(problem(
                ProblemKind::Reordered,
                "names no previous record, yet only record 0 starts the chain".into(),
            )),
            (s, Some(prev)) => {
                if let Some((before, before_name)) = by_seq.get(&(s - 1)) {
                    if *prev != before.hash {
                        report.problems.push(problem(
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
    report.records = by_seq
        .iter()
        .map(|(seq, (c, name))| VerifiedRecord {
            seq: *seq,
            file: name.clone(),
            kind: c.kind.clone(),
            time: c.time.clone(),
            policy: c.policy.clone(),
            hash: c.hash.clone(),
        })
        .collect();
    report.repository = repository;
    report.problems.sort_by(|a, b| a.seq.cmp(&b.seq).then(a.file.cmp(&b.file)));
    if report.problems.is_empty() {
        report.head = report.records.last().map(|r| Head { seq: r.seq, hash: r.hash.clone() });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use serde_json::{json, Value};

    use super::super::key::public_text;
    use super::super::record::sign;
    use super::*;

    /// A chain of `n` records written to a directory as `export` writes it.
    fn chain(n: u64) -> (tempfile::TempDir, SigningKey) {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        (chain_signed(&key, n, "backup"), key)
    }

    fn chain_signed(key: &SigningKey, n: u64, kind: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut prev: Option<String> = None;
        for seq in 0..n {
            let Value::Object(mut r) = json!({
                "v": 1, "seq": seq, "time": format!("2025-03-01T02:00:{seq:02}.000000Z"), "kind": kind,
                "policy": "db", "repository": "cd".repeat(32), "prev": prev, "payload": {"outcome": "success"},
            }) else {
                unreachable!()
            };
            let (_, bytes) = sign(key, &mut r).unwrap();
            prev = Some(blake3::hash(&bytes).to_hex().to_string());
            std::fs::write(dir.path().join(format!("{}.json", file_stem(seq))), [&bytes[..], b"\n"].concat()).unwrap();
        }
        std::fs::write(dir.path().join("pubkey.txt"), public_text(&key.verifying_key())).unwrap();
        dir
    }

    fn verify(dir: &Path, key: &SigningKey) -> VerifyReport {
        verify_dir(dir, &public_text(&key.verifying_key())).unwrap()
    }

    fn kinds(r: &VerifyReport) -> Vec<(ProblemKind, Option<u64>)> {
        r.problems.iter().map(|p| (p.kind, p.seq)).collect()
    }

    fn path(dir: &Path, seq: u64) -> std::path::PathBuf {
        dir.join(format!("{}.json", file_stem(seq)))
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let (dir, key) = chain(5);
        let r = verify(dir.path(), &key);
        assert!(r.is_intact(), "{:?}", r.problems);
        assert_eq!((r.files, r.records.len()), (5, 5));
        assert_eq!(r.head.as_ref().unwrap().seq, 4);
        assert_eq!(r.repository.as_deref(), Some("cd".repeat(32).as_str()));
    }

    #[test]
    fn anchors_catch_a_truncated_or_rewritten_chain() {
        let (dir, key) = chain(5);
        let head = verify(dir.path(), &key).head.unwrap();
        let mut r = verify(dir.path(), &key);
        r.check_anchor(head.seq, &head.hash);
        assert!(r.is_intact());
        // The newest record removed: the records alone cannot tell…
        std::fs::remove_file(path(dir.path(), 4)).unwrap();
        let mut r = verify(dir.path(), &key);
        assert!(r.is_intact());
        // …the anchor can.
        r.check_anchor(head.seq, &head.hash);
        assert_eq!(kinds(&r), [(ProblemKind::Removed, Some(4))]);
        assert!(r.head.is_none());
        // A chain rewritten by the key's holder verifies on its own, but not
        // against an anchor from before.
        let rewritten = chain_signed(&key, 5, "drill");
        let mut r = verify(rewritten.path(), &key);
        assert!(r.is_intact());
        r.check_anchor(3, &verify(dir.path(), &key).records[3].hash);
        assert_eq!(kinds(&r), [(ProblemKind::Altered, Some(3))]);
    }

    #[test]
    fn a_removed_record_is_named() {
        let (dir, key) = chain(6);
        std::fs::remove_file(path(dir.path(), 2)).unwrap();
        let r = verify(dir.path(), &key);
        assert_eq!(kinds(&r), [(ProblemKind::Removed, Some(2))]);
        assert_eq!(r.problems[0].file.as_deref(), Some("000000000002.json"));
        assert!(r.head.is_none());
        // A run of removed records is one problem; so is a missing start.
        std::fs::remove_file(path(dir.path(), 3)).unwrap();
        std::fs::remove_file(path(dir.path(), 0)).unwrap();
        let r = verify(dir.path(), &key);
        assert_eq!(kinds(&r), [(ProblemKind::Removed, Some(0)), (ProblemKind::Removed, Some(2))]);
        assert!(r.problems[1].detail.contains("2 to 3"), "{}", r.problems[1].detail);
    }

    #[test]
    fn swapped_records_are_reordered() {
        let (dir, key) = chain(6);
        let (a, b) = (path(dir.path(), 1), path(dir.path(), 4));
        let tmp = dir.path().join("tmp");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        let r = verify(dir.path(), &key);
        assert_eq!(kinds(&r), [(ProblemKind::Reordered, Some(1)), (ProblemKind::Reordered, Some(4))]);
        assert_eq!(r.problems[0].file.as_deref(), Some("000000000004.json"));
        assert_eq!(r.problems[1].file.as_deref(), Some("000000000001.json"));
    }

    #[test]
    fn an_edited_record_is_altered_and_only_that_one() {
        let (dir, key) = chain(5);
        let p = path(dir.path(), 3);
        let text = std::fs::read_to_string(&p).unwrap().replace("\"success\"", "\"failure\"");
        std::fs::write(&p, text).unwrap();
        let r = verify(dir.path(), &key);
        assert_eq!(kinds(&r), [(ProblemKind::Altered, Some(3))]);
        assert!(r.problems[0].detail.contains("signature"), "{}", r.problems[0].detail);
        std::fs::write(&p, "not json").unwrap();
        assert_eq!(kinds(&verify(dir.path(), &key)), [(ProblemKind::Altered, Some(3))]);
    }

    #[test]
    fn a_record_from_another_chain_does_not_link() {
        // Both chains are signed by the same key: only the links tell them apart.
        let (dir, key) = chain(4);
        let other = chain_signed(&key, 4, "drill");
        std::fs::copy(path(other.path(), 2), path(dir.path(), 2)).unwrap();
        let r = verify(dir.path(), &key);
        assert_eq!(kinds(&r), [(ProblemKind::Reordered, Some(2)), (ProblemKind::Reordered, Some(3))]);
    }

    #[test]
    fn a_wrong_key_verifies_nothing_and_a_bad_key_is_an_error() {
        let (dir, _) = chain(3);
        let r = verify(dir.path(), &SigningKey::generate(&mut rand::rngs::OsRng));
        assert!(r.nothing_verified());
        assert_eq!(r.problems.iter().filter(|p| p.kind == ProblemKind::Altered).count(), 3);
        assert!(matches!(verify_dir(dir.path(), "ssh-ed25519 AAAA"), Err(Error::InvalidPublicKey { .. })));
    }

    #[test]
    fn an_empty_directory_is_not_an_intact_chain() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(kinds(&verify(dir.path(), &key)), [(ProblemKind::Removed, Some(0))]);
    }
}
