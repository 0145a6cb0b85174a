//! What verification reports: the problems it names, the records that
//! verified, the chains and heads it found ([`VerifyReport`]), shared by
//! the verification of records ([`super::verify`]) and of heads
//! ([`super::verify_heads`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::key::LEGACY_KEY_ID;
use super::objects::CheckedHead;
use super::record::file_stem;
use super::store::{self, Loaded};

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// A record that should be there is not.
    Removed,
    /// A record is out of its place in the chain.
    Reordered,
    /// A record's content is not what was signed.
    Altered,
    /// A copy of a record presented in another place.
    Replayed,
    /// Signed by a key that is not trusted.
    Untrusted,
    /// Signed by a key after its revocation.
    Revoked,
    /// The evidence does not start with the repository's `init`.
    Restarted,
    /// A snapshot that claims another host than its signer's.
    Host,
    /// A snapshot dated ahead of its record or of now.
    Future,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Altered => "altered",
            ProblemKind::Replayed => "replayed",
            ProblemKind::Untrusted => "untrusted",
            ProblemKind::Revoked => "revoked",
            ProblemKind::Restarted => "restarted",
            ProblemKind::Host => "host",
            ProblemKind::Future => "future",
        }
    }

    /// Whether the problem is damage to the record (removed, reordered,
    /// altered, replayed or restarted), rather than a record that merely
    /// does not count (an untrusted or revoked signer, a wrong host, a
    /// future date).
    pub fn is_damage(self) -> bool {
        matches!(
            self,
            ProblemKind::Removed
                | ProblemKind::Reordered
                | ProblemKind::Altered
                | ProblemKind::Replayed
                | ProblemKind::Restarted
        )
    }
}

/// One problem, naming the chain, seq and object or file at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The chain: `legacy` or a key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The seq at fault: the record's own, or the one its name gives when
    /// the record cannot be trusted; the first of a run of removed ones.
    pub seq: Option<u64>,
    /// The object or file at fault (for a removed record, the name it
    /// would have).
    pub file: Option<String>,
    pub detail: String,
}

/// A record that verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedRecord {
    /// `legacy` or the key id of its signer.
    pub signer: String,
    /// The signer's host: pinned by the auditor, or as enrolled.
    pub host: Option<String>,
    pub seq: u64,
    pub file: String,
    pub kind: String,
    pub time: String,
    pub policy: Option<String>,
    /// Hex BLAKE3 of the record's signed bytes.
    pub hash: String,
    /// Appended by its key after that key's revocation: it does not count.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// A backup whose snapshot names another host than its signer's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host_mismatch: bool,
    /// A backup whose snapshot is dated in the future.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub future: bool,
    #[serde(skip)]
    pub payload: Value,
}

impl VerifiedRecord {
    /// The record's own time.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time).ok().map(|t| t.with_timezone(&Utc))
    }

    /// Whether it counts as evidence of what it says (not revoked, and its
    /// snapshot neither claims another host nor comes from the future).
    pub fn counts(&self) -> bool {
        !self.revoked && !self.host_mismatch && !self.future
    }
}

/// The last record of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: u64,
    /// Hex BLAKE3 of its signed bytes.
    pub hash: String,
}

/// One sub-chain, as verified.
#[derive(Debug, Clone, Serialize)]
pub struct ChainSummary {
    pub signer: String,
    /// Its host: pinned, or as enrolled; for a chain that is not trusted,
    /// the host its record 0 claims (which nothing proves).
    pub host: Option<String>,
    pub legacy: bool,
    pub trusted: bool,
    /// Records stored (verified or not).
    pub records: usize,
    pub verified: usize,
    /// Its highest verified record.
    pub last: Option<Head>,
}

/// The newest repository head that verified and names only records that
/// are there.
#[derive(Debug, Clone, Serialize)]
pub struct HeadSummary {
    /// `head:<hash>`: what an auditor keeps as an anchor.
    pub text: String,
    pub hash: String,
    pub time: DateTime<Utc>,
    pub signer: String,
    pub chains: usize,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Record files or objects examined.
    pub files: usize,
    /// The records whose signature verified under a trusted key.
    pub records: Vec<VerifiedRecord>,
    /// The repository the records belong to.
    pub repository: Option<String>,
    /// With a single chain, its last record when nothing is wrong: note
    /// it, and check it at the next audit with [`VerifyReport::check_anchor`].
    pub head: Option<Head>,
    pub problems: Vec<Problem>,
    pub chains: Vec<ChainSummary>,
    /// The newest repository head it can prove.
    pub newest_head: Option<HeadSummary>,
    /// With anchors: whether the newest head covers each of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newer_than_anchors: Option<bool>,
    /// What the reader should know that is not a problem.
    pub notes: Vec<String>,
    #[serde(skip)]
    pub(super) heads: Vec<CheckedHead>,
    #[serde(skip)]
    pub(super) head_hashes: BTreeSet<String>,
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

    pub(super) fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    pub(super) fn sort(&mut self) {
        self.problems.sort_by(|a, b| {
            (a.signer.as_deref() != Some(LEGACY_KEY_ID), &a.signer, a.seq, &a.file, a.kind).cmp(&(
                b.signer.as_deref() != Some(LEGACY_KEY_ID),
                &b.signer,
                b.seq,
                &b.file,
                b.kind,
            ))
        });
        self.problems.dedup();
    }
}

/// How a removed record of `chain` would be named where `l` was read.
pub(super) fn shown_for(l: &Loaded, chain: &str, seq: u64) -> String {
    if l.from_repository {
        store::record_key(chain, seq)
    } else {
        store::export_path(chain, seq)
    }
}

/// The problem for records `from..=to` of `chain` missing; `why` adds how
/// it is known (a head that names a later one).
pub(super) fn removed(l: &Loaded, chain: &str, from: u64, to: u64, why: Option<String>) -> Problem {
    let mut detail = if from == to {
        format!("record {from} is missing")
    } else {
        format!("records {from} to {to} ({} records) are missing", to - from + 1)
    };
    if let Some(w) = why {
        detail.push_str(&format!(", but {w}: they were removed"));
    }
    Problem {
        kind: ProblemKind::Removed,
        signer: Some(chain.to_string()),
        seq: Some(from),
        file: Some(shown_for(l, chain, from)),
        detail,
    }
}

/// The file name of a legacy record in an export (kept for callers).
pub fn legacy_file(seq: u64) -> String {
    format!("{}.json", file_stem(seq))
}

/// A problem of record `seq` of `chain`, presented as `file`.
pub(super) fn problem(kind: ProblemKind, chain: &str, seq: u64, file: &str, detail: String) -> Problem {
    Problem { kind, signer: Some(chain.to_string()), seq: Some(seq), file: Some(file.to_string()), detail }
}
