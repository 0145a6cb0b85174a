//! What `cairn check` (and the daemon after each backup) checks of the
//! evidence, with the password:
//!
//! 1. every evidence object opens, and every record verifies under the key
//!    its chain enrolled (or the legacy key), with the chains whole and the
//!    heads honoured ([`super::verify`]); an auditor's keys file may be
//!    given instead of the repository's own enrolled keys;
//! 2. the snapshots agree with the records ([`crosscheck`], a pure
//!    function): every snapshot has the backup record that names it (or an
//!    adopting `init`, or an `accept`), every snapshot a backup record names
//!    that is gone has the `forget` or `prune` record that removed it, no
//!    snapshot claims another host than its record's signer, and none is
//!    dated ahead of the clock or of its record.
//!
//! Anything else is damage. The snapshots flagged (from the future, of
//! another host, or recorded nowhere) are left out of `latest`, of the
//! recovery point and of retention until an admin accepts them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::key::{self, read_key, LEGACY_KEY_ID};
use super::store::{self, load_repository};
use super::trust::Trust;
use super::verify::{enrolled_trust, verify_loaded, VerifiedRecord, VerifyReport};
use crate::check::Problem;
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;

/// What the cross-check needs to know of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub host: String,
}

impl SnapshotInfo {
    pub fn of(id: Id, s: &crate::repo::Snapshot) -> SnapshotInfo {
        SnapshotInfo { id, time: s.time, host: s.hostname.clone() }
    }
}

/// Why a snapshot is not taken at its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flag {
    /// Dated ahead of the clock (or of its record) by more than the skew.
    Future,
    /// Its host is not the host of the key that signed its record.
    OtherHost,
    /// No record names it.
    Unrecorded,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Future => "dated in the future",
            Flag::OtherHost => "claims another host",
            Flag::Unrecorded => "no evidence record",
        }
    }
}

/// The outcome of the evidence check.
#[derive(Debug, Default, Serialize)]
pub struct EvidenceCheck {
    /// Each finding, naming its object: all are damage.
    pub problems: Vec<Problem>,
    /// Snapshots not to be taken at their word (unless accepted).
    pub flagged: BTreeMap<Id, Flag>,
    pub records: usize,
    pub chains: usize,
    /// The newest head that verified (`head:<hash>`).
    pub newest_head: Option<String>,
    pub notes: Vec<String>,
}

impl EvidenceCheck {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the evidence of `repo` against `snapshots` (every snapshot that
/// opened) at `now`; `trust`: an auditor's keys, else the keys the
/// repository enrolled and its legacy key.
pub fn check_repository(
    repo: &Repository,
    snapshots: &[SnapshotInfo],
    trust: Option<&Trust>,
    now: DateTime<Utc>,
) -> Result<EvidenceCheck> {
    let mut out = EvidenceCheck::default();
    let rk = read_key(repo);
    let loaded = load_repository(repo.backend().as_ref(), &[&rk, repo.key()], Some(1), repo.backend().concurrency())?;
    let legacy_records = loaded.records.iter().filter(|r| r.chain == LEGACY_KEY_ID).count()
        + loaded
            .unreadable
            .iter()
            .filter(|(o, _)| matches!(store::classify(o), store::Name::Record { chain, .. } if chain == LEGACY_KEY_ID))
            .count();
    let legacy = match key::load(repo) {
        Ok(k) => k.map(|k| k.verifying_key()),
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => {
            out.problems.push(Problem { object: key::KEY_OBJECT.into(), message: e.to_string() });
            None
        }
    };
    if legacy.is_none() && legacy_records > 0 && out.problems.is_empty() {
        let e = crate::error::Error::EvidenceKeyMissing { records: legacy_records as u64 };
        out.problems.push(Problem { object: key::KEY_OBJECT.into(), message: e.to_string() });
    }
    let own;
    let trust = match trust {
        Some(t) => t,
        None => {
            own = enrolled_trust(&loaded, legacy);
            &own
        }
    };
    let report = verify_loaded(&loaded, trust, now);
    if loaded.records.is_empty() && !snapshots.is_empty() {
        out.problems.push(Problem {
            object: format!("{}/", store::RECORDS_DIR),
            message: format!(
                "the repository holds {} snapshot(s) but no evidence chain: it was erased (or the repository \
                 predates evidence: `cairn evidence adopt`)",
                snapshots.len()
            ),
        });
    } else if !loaded.records.is_empty() || !loaded.unreadable.is_empty() {
        out.problems.extend(report.problems.iter().map(|p| Problem {
            object: p.file.clone().unwrap_or_else(|| "evidence/".into()),
            message: p.detail.clone(),
        }));
    }
    let (problems, flagged) = crosscheck(&report.records, snapshots, now);
    out.problems.extend(problems);
    out.flagged = flagged;
    out.records = report.records.len();
    out.chains = report.chains.len();
    out.newest_head = report.newest_head.as_ref().map(|h| h.text.clone());
    out.notes = report.notes.clone();
    Ok(out)
}

/// The snapshots retention must hold (neither keep for a rule nor forget):
/// those the evidence check flags, with why. When the evidence cannot be
/// read, the snapshots dated in the future still are, and the error is
/// returned beside them for a warning.
pub fn held_snapshots(
    repo: &Repository,
    snapshots: &[(Id, crate::repo::Snapshot)],
    now: DateTime<Utc>,
) -> (BTreeMap<Id, String>, Option<crate::error::Error>) {
    let infos: Vec<SnapshotInfo> = snapshots.iter().map(|(id, s)| SnapshotInfo::of(*id, s)).collect();
    match check_repository(repo, &infos, None, now) {
        Ok(c) => (c.flagged.into_iter().map(|(id, f)| (id, f.as_str().to_string())).collect(), None),
        Err(e) => {
            let skew = chrono::Duration::from_std(crate::repo::lock::MAX_CLOCK_SKEW).expect("small");
            let future = infos
                .iter()
                .filter(|s| s.time > now + skew)
                .map(|s| (s.id, Flag::Future.as_str().to_string()))
                .collect();
            (future, Some(e))
        }
    }
}

/// The ids a record's payload lists under `field`.
fn ids(payload: &Value, field: &str) -> Vec<String> {
    payload
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Snapshots against records: a pure function of both and `now`. Returns
/// the findings and the snapshots flagged.
pub fn crosscheck(
    records: &[VerifiedRecord],
    snapshots: &[SnapshotInfo],
    now: DateTime<Utc>,
) -> (Vec<Problem>, BTreeMap<Id, Flag>) {
    let skew = chrono::Duration::from_std(crate::repo::lock::MAX_CLOCK_SKEW).expect("small");
    let counting: Vec<&VerifiedRecord> = records.iter().filter(|r| !r.revoked).collect();
    let accepted: BTreeSet<String> = counting
        .iter()
        .filter(|r| r.kind == "accept")
        .flat_map(|r| r.payload.get("snapshot").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let adopted: BTreeSet<String> =
        counting.iter().filter(|r| r.kind == "init").flat_map(|r| ids(&r.payload, "adopted_snapshots")).collect();
    let removed: BTreeSet<String> = counting
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "forget" | "prune"))
        .flat_map(|r| ids(&r.payload, "snapshots_removed"))
        .collect();
    let mut backed: BTreeMap<String, &VerifiedRecord> = BTreeMap::new();
    for r in counting.iter().filter(|r| r.kind == "backup") {
        if let Some(s) = r.payload.get("snapshot").and_then(Value::as_str) {
            backed.entry(s.to_string()).or_insert(r);
        }
    }
    // A copy (`cairn copy`) records the snapshots it wrote into the
    // destination (they claim the host of the backup they copy), and stands
    // for them as a backup record does for its own: one of them gone
    // without a forget or prune was deleted.
    let mut written: BTreeMap<String, &VerifiedRecord> = BTreeMap::new();
    for r in counting.iter().filter(|r| r.kind == "copy") {
        for s in ids(&r.payload, "snapshots_written") {
            written.entry(s).or_insert(r);
        }
    }
    let mut problems = Vec::new();
    let mut flagged = BTreeMap::new();
    let present: BTreeSet<String> = snapshots.iter().map(|s| s.id.to_hex()).collect();
    for s in snapshots {
        let id = s.id.to_hex();
        let object = format!("snapshots/{id}");
        let when = s.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if accepted.contains(&id) {
            continue;
        }
        let record = backed.get(&id);
        if record.is_none() && !adopted.contains(&id) && !written.contains_key(&id) {
            flagged.insert(s.id, Flag::Unrecorded);
            problems.push(Problem {
                object,
                message: format!(
                    "snapshot {} (host {}, {when}) has no backup record in the evidence: it was written outside \
                     cairn, or its record was removed; it is left out of `latest` and retention \
                     (`cairn evidence accept {}` accepts it)",
                    s.id.short(),
                    s.host,
                    s.id.short()
                ),
            });
            continue;
        }
        if let Some(host) = record.and_then(|r| r.host.as_deref()) {
            if host != s.host {
                flagged.insert(s.id, Flag::OtherHost);
                problems.push(Problem {
                    object: object.clone(),
                    message: format!(
                        "snapshot {} claims host {}, but its backup record is signed by the key of host {host}: \
                         it is left out of `latest` and retention until accepted",
                        s.id.short(),
                        s.host
                    ),
                });
            }
        }
        let record_time = record.and_then(|r| r.time());
        let limit = record_time.map_or(now, |t| t.min(now)) + skew;
        if s.time > limit {
            flagged.insert(s.id, Flag::Future);
            problems.push(Problem {
                object,
                message: format!(
                    "snapshot {} is dated {when}, more than {} s ahead of {}: it is left out of `latest`, the \
                     recovery point and retention",
                    s.id.short(),
                    skew.num_seconds(),
                    if record_time.is_some_and(|t| t < now) { "the time of its record" } else { "now" }
                ),
            });
        }
    }
    let recorded = backed
        .iter()
        .map(|(id, r)| (id, r, "backup"))
        .chain(written.iter().filter(|(id, _)| !backed.contains_key(*id)).map(|(id, r)| (id, r, "copy")));
    for (id, r, kind) in recorded {
        if present.contains(id) || removed.contains(id) || accepted.contains(id) {
            continue;
        }
        problems.push(Problem {
            object: format!("snapshots/{id}"),
            message: format!(
                "snapshot {} of {kind} record {}/{} ({}) is gone, and no forget or prune record removed it: it \
                 was deleted",
                crate::text::id_prefix(id, 8),
                r.signer,
                r.seq,
                r.time
            ),
        });
    }
    (problems, flagged)
}

/// Verifies a repository's evidence as an auditor would, with the read key
/// (no password) and the pinned keys.
pub fn verify_repository(
    backend: &dyn crate::backend::Backend,
    readers: &[crate::crypto::MasterKey],
    trust: &Trust,
    now: DateTime<Utc>,
) -> Result<VerifyReport> {
    let openers: Vec<&crate::crypto::MasterKey> = readers.iter().collect();
    let loaded = load_repository(backend, &openers, None, backend.concurrency().max(8))?;
    Ok(verify_loaded(&loaded, trust, now))
}

/// What the verified evidence of `repo` backs under the auditor's pinned
/// keys `trust` (never the repository's own list of enrolled keys, which
/// anyone with the password can add to): the snapshots that backup records
/// name, and the drill ids of drill records, that count (verified under a
/// pinned key, before its revocation, with an honest host and time). The
/// repository is opened with the password, so no read key is needed.
pub fn backing(
    repo: &Repository,
    trust: &Trust,
    now: DateTime<Utc>,
) -> Result<(std::collections::BTreeSet<String>, std::collections::BTreeSet<String>)> {
    let rk = read_key(repo);
    let loaded = load_repository(repo.backend().as_ref(), &[&rk, repo.key()], Some(1), repo.backend().concurrency())?;
    let report = verify_loaded(&loaded, trust, now);
    let (mut snapshots, mut drills) = (BTreeSet::new(), BTreeSet::new());
    for r in report.records.iter().filter(|r| r.counts()) {
        let field = |f: &str| r.payload.get(f).and_then(Value::as_str).map(str::to_string);
        match r.kind.as_str() {
            "backup" => snapshots.extend(field("snapshot")),
            "drill" => drills.extend(field("drill_id")),
            _ => {}
        }
    }
    Ok((snapshots, drills))
}
