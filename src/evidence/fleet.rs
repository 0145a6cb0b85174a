//! The evidence of a fleet: what the verified records of one or more
//! repositories say about each host and each of its policies (its backups
//! and drills, when it was last heard of), and what they hold that does
//! not count. A pure function of verification reports ([`digest`]): the
//! reports and the handover screen built from evidence alone (`cairn report
//! --repo … --keys`, `cairn status --repo … --keys`) read nothing else.
//!
//! What counts: a record that verified under a key of the auditor's keys
//! file, that its key signed before its revocation, and (for a backup)
//! whose snapshot neither claims another host than its signer's nor is
//! dated ahead of its record. Everything else is listed in
//! [`Fleet::not_counted`], each with why, and the snapshots of the backups
//! that do not count in [`Fleet::flagged`].
//!
//! A record's host is its signer's: the host the keys file pins for the
//! key (else the one its enrolment names). A legacy record (signed with the
//! repository's sealed key, which every password holder has) names no
//! signer host: its backups and drills of a policy are put under the host
//! their payload claims, and its other records (the repository's `init`)
//! under none.
//!
//! A host whose records that count are administration alone (a key
//! revoked, a snapshot accepted: [`HostFacts::is_admin`]) is an
//! administrator's key, listed in [`Fleet::admins`], not a host that went
//! silent: it backs nothing up. One that ever signed a backup or a drill
//! that counts stays a host.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::key::LEGACY_KEY_ID;
use super::verify_report::{ProblemKind, VerifiedRecord, VerifyReport};

/// How many problems of one repository are listed; the rest are counted.
pub const PROBLEMS_LISTED: usize = 25;

/// One repository's evidence as read: verified, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it was read (the repository's location).
    pub location: String,
    pub read: Result<VerifyReport, String>,
}

/// One repository, as the fleet's reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct RepositorySummary {
    pub location: String,
    /// The repository id the records name.
    pub repository: Option<String>,
    /// Why its evidence could not be read: nothing of it counts.
    pub error: Option<String>,
    pub intact: bool,
    pub records_verified: usize,
    pub chains: usize,
    pub problem_count: usize,
    /// Whether any of its problems, listed or not, is damage
    /// ([`super::ProblemKind::is_damage`]).
    pub damaged: bool,
    /// The first problems, each `kind: object: detail`.
    pub problems: Vec<String>,
    /// The newest head it can prove (`head:<hash>`).
    pub newest_head: Option<String>,
}

/// A backup record that counts.
#[derive(Debug, Clone, Serialize)]
pub struct BackupFact {
    pub repository: String,
    pub signer: String,
    pub seq: u64,
    /// When it was recorded (after the snapshot was saved).
    pub time: DateTime<Utc>,
    /// `success`, `partial` or `failure`.
    pub outcome: String,
    pub snapshot: Option<String>,
    /// The snapshot's time: the data is as of then.
    pub snapshot_time: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

impl BackupFact {
    /// Whether it saved a snapshot (a partial backup did: some files were skipped).
    pub fn saved(&self) -> bool {
        matches!(self.outcome.as_str(), "success" | "partial") && self.snapshot.is_some()
    }

    /// When the backup started: its snapshot's time, else the record's
    /// time less its duration.
    pub fn started(&self) -> DateTime<Utc> {
        self.snapshot_time
            .unwrap_or_else(|| self.time - chrono::Duration::milliseconds(self.duration_ms.unwrap_or(0) as i64))
    }
}

/// A drill record that counts.
#[derive(Debug, Clone, Serialize)]
pub struct DrillFact {
    pub repository: String,
    pub signer: String,
    pub seq: u64,
    /// Hex BLAKE3 of the record.
    pub hash: String,
    pub time: DateTime<Utc>,
    pub drill_id: String,
    /// `pass` or `fail`.
    pub verdict: String,
    pub failure_kind: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub rto_measured_s: Option<f64>,
    pub rto_objective_s: Option<f64>,
    pub rpo_objective_s: Option<f64>,
    pub rpo_achieved_s: Option<f64>,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
}

/// What counts of one policy on one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyFacts {
    /// Oldest first.
    pub backups: Vec<BackupFact>,
    /// Oldest first.
    pub drills: Vec<DrillFact>,
}

/// What counts of one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    pub host: String,
    /// The key ids that signed its records (`legacy` for the sealed key).
    pub keys: BTreeSet<String>,
    /// The repositories it wrote to (locations).
    pub repositories: BTreeSet<String>,
    /// Its newest record that counts, of any kind, whatever its date: a
    /// view judges silence with [`HostFacts::last_record_until`].
    pub last_record: Option<DateTime<Utc>>,
    /// When each of its records that count was made.
    #[serde(skip)]
    pub record_times: Vec<DateTime<Utc>>,
    /// Its records that count, of any kind.
    pub records: usize,
    /// The kinds of its records that count.
    #[serde(skip)]
    pub kinds: BTreeSet<String>,
    pub policies: BTreeMap<String, PolicyFacts>,
}

/// A record, or a whole chain, that does not count.
#[derive(Debug, Clone, Serialize)]
pub struct Uncounted {
    pub repository: String,
    pub signer: Option<String>,
    /// The signer's host; for an untrusted chain, the one it claims.
    pub host: Option<String>,
    pub seq: Option<u64>,
    pub kind: Option<String>,
    pub policy: Option<String>,
    pub time: Option<String>,
    /// `untrusted`, `revoked`, `host` or `future`.
    pub reason: &'static str,
    pub detail: String,
}

/// A snapshot whose backup record does not count: named in the reports.
#[derive(Debug, Clone, Serialize)]
pub struct FlaggedSnapshot {
    pub repository: String,
    pub snapshot: String,
    pub host: String,
    pub policy: Option<String>,
    pub why: String,
}

/// The kinds of record an administrator signs: a key revoked, a flagged
/// snapshot accepted.
pub const ADMIN_KINDS: [&str; 2] = ["revoke", "accept"];

/// Everything the reports and the handover screen read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fleet {
    pub repositories: Vec<RepositorySummary>,
    pub hosts: BTreeMap<String, HostFacts>,
    /// The keys' hosts that signed administration alone
    /// ([`HostFacts::is_admin`]): no host of the fleet, never silent.
    pub admins: BTreeMap<String, HostFacts>,
    pub not_counted: Vec<Uncounted>,
    pub flagged: Vec<FlaggedSnapshot>,
}

impl Fleet {
    /// Whether every repository was read and its evidence is intact.
    pub fn intact(&self) -> bool {
        self.repositories.iter().all(|r| r.error.is_none() && r.intact)
    }
}

impl HostFacts {
    /// Whether its records that count are an administrator's: a
    /// revocation or an acceptance, and nothing else but its own
    /// enrolment (or the repository's `init`). A host that ever backed up or drilled (or wrote any other
    /// record) is a host, silent or not.
    pub fn is_admin(&self) -> bool {
        let admin = |k: &String| ADMIN_KINDS.contains(&k.as_str());
        self.kinds.iter().any(admin) && self.kinds.iter().all(|k| admin(k) || k == "enroll" || k == "init")
    }

    /// Its newest record that counts made by `end`: a record dated after
    /// it (a clock that jumped ahead once) never keeps a host from being
    /// silent.
    pub fn last_record_until(&self, end: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.record_times.iter().copied().filter(|t| *t <= end).max()
    }
}

/// Whether a host whose newest record that counts is at `last` is silent
/// at `end`: no record within `after` before it.
pub fn silent(last: Option<DateTime<Utc>>, end: DateTime<Utc>, after: chrono::Duration) -> bool {
    // A threshold before the start of time silences no one.
    let limit = end.checked_sub_signed(after);
    last.is_none_or(|t| limit.is_some_and(|l| t < l))
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn text(p: &Value, field: &str) -> Option<String> {
    p.get(field).and_then(Value::as_str).map(str::to_string)
}

fn seconds_of_ms(p: &Value, field: &str) -> Option<f64> {
    p.get(field).and_then(Value::as_i64).map(|ms| ms as f64 / 1000.0)
}

/// The host a record counts for.
fn host_of(r: &VerifiedRecord) -> String {
    r.host
        .clone()
        .or_else(|| if r.signer == LEGACY_KEY_ID { text(&r.payload, "hostname") } else { None })
        .unwrap_or_else(|| format!("(key {})", r.signer))
}

/// Digests the verified evidence of every source.
pub fn digest(sources: &[Source]) -> Fleet {
    let mut f = Fleet::default();
    for s in sources {
        let report = match &s.read {
            Ok(r) => r,
            Err(e) => {
                f.repositories.push(RepositorySummary {
                    location: s.location.clone(),
                    repository: None,
                    error: Some(e.clone()),
                    intact: false,
                    records_verified: 0,
                    chains: 0,
                    problem_count: 0,
                    damaged: false,
                    problems: Vec::new(),
                    newest_head: None,
                });
                continue;
            }
        };
        f.repositories.push(RepositorySummary {
            location: s.location.clone(),
            repository: report.repository.clone(),
            error: None,
            intact: report.is_intact(),
            records_verified: report.records.len(),
            chains: report.chains.len(),
            problem_count: report.problems.len(),
            damaged: report.problems.iter().any(|p| p.kind.is_damage()),
            problems: report
                .problems
                .iter()
                .take(PROBLEMS_LISTED)
                .map(|p| format!("{}: {}: {}", p.kind.as_str(), p.file.as_deref().unwrap_or("-"), p.detail))
                .collect(),
            newest_head: report.newest_head.as_ref().map(|h| h.text.clone()),
        });
        for c in report.chains.iter().filter(|c| !c.trusted) {
            let detail = report
                .problems
                .iter()
                .find(|p| p.kind == ProblemKind::Untrusted && p.signer.as_deref() == Some(c.signer.as_str()))
                .map(|p| p.detail.clone())
                .unwrap_or_else(|| format!("{} record(s) signed by a key that is not trusted", c.records));
            f.not_counted.push(Uncounted {
                repository: s.location.clone(),
                signer: Some(c.signer.clone()),
                host: c.host.clone(),
                seq: None,
                kind: None,
                policy: None,
                time: None,
                reason: "untrusted",
                detail,
            });
        }
        for r in &report.records {
            add_record(&mut f, &s.location, report, r);
        }
    }
    let (admins, hosts) = std::mem::take(&mut f.hosts).into_iter().partition(|(_, h)| h.is_admin());
    (f.admins, f.hosts) = (admins, hosts);
    for h in f.hosts.values_mut() {
        for p in h.policies.values_mut() {
            p.backups.sort_by_key(|b| (b.time, b.seq));
            p.drills.sort_by_key(|d| (d.started_at, d.seq));
        }
    }
    f
}

fn add_record(f: &mut Fleet, location: &str, report: &VerifyReport, r: &VerifiedRecord) {
    let host = host_of(r);
    if !r.counts() {
        let (reason, why) = if r.revoked {
            ("revoked", "signed after its key was revoked")
        } else if r.host_mismatch {
            ("host", "its snapshot claims another host than its signer's")
        } else {
            ("future", "its snapshot is dated ahead of its record")
        };
        let detail = report
            .problems
            .iter()
            .find(|p| p.signer.as_deref() == Some(r.signer.as_str()) && p.seq == Some(r.seq))
            .map(|p| p.detail.clone())
            .unwrap_or_else(|| why.to_string());
        f.not_counted.push(Uncounted {
            repository: location.to_string(),
            signer: Some(r.signer.clone()),
            host: Some(host.clone()),
            seq: Some(r.seq),
            kind: Some(r.kind.clone()),
            policy: r.policy.clone(),
            time: Some(r.time.clone()),
            reason,
            detail,
        });
        if let (true, Some(snapshot)) = (r.kind == "backup", text(&r.payload, "snapshot")) {
            f.flagged.push(FlaggedSnapshot {
                repository: location.to_string(),
                snapshot,
                host,
                policy: r.policy.clone(),
                why: why.to_string(),
            });
        }
        return;
    }
    // The legacy key is every password holder's: its records place no host,
    // but for the backups and drills of a policy they claim.
    if r.signer == LEGACY_KEY_ID && r.policy.is_none() {
        return;
    }
    let Some(at) = r.time() else { return };
    let h = f.hosts.entry(host.clone()).or_insert_with(|| HostFacts { host, ..Default::default() });
    h.keys.insert(r.signer.clone());
    h.repositories.insert(location.to_string());
    h.records += 1;
    h.kinds.insert(r.kind.clone());
    h.last_record = h.last_record.max(Some(at));
    h.record_times.push(at);
    let Some(policy) = r.policy.clone() else { return };
    let p = &r.payload;
    match r.kind.as_str() {
        "backup" => h.policies.entry(policy).or_default().backups.push(BackupFact {
            repository: location.to_string(),
            signer: r.signer.clone(),
            seq: r.seq,
            time: at,
            outcome: text(p, "outcome").unwrap_or_else(|| "failure".into()),
            snapshot: text(p, "snapshot"),
            snapshot_time: text(p, "snapshot_time").as_deref().and_then(time),
            duration_ms: p.get("duration_ms").and_then(Value::as_u64),
            error: text(p, "error"),
        }),
        "drill" => {
            let started_at = text(p, "started_at").as_deref().and_then(time).unwrap_or(at);
            h.policies.entry(policy).or_default().drills.push(DrillFact {
                repository: location.to_string(),
                signer: r.signer.clone(),
                seq: r.seq,
                hash: r.hash.clone(),
                time: at,
                drill_id: text(p, "drill_id").unwrap_or_default(),
                verdict: text(p, "verdict").unwrap_or_else(|| "fail".into()),
                failure_kind: text(p, "failure_kind"),
                started_at,
                ended_at: text(p, "ended_at").as_deref().and_then(time).unwrap_or(at),
                rto_measured_s: seconds_of_ms(p, "rto_measured_ms"),
                rto_objective_s: seconds_of_ms(p, "rto_objective_ms"),
                rpo_objective_s: seconds_of_ms(p, "rpo_objective_ms"),
                rpo_achieved_s: seconds_of_ms(p, "rpo_achieved_ms"),
                snapshot: text(p, "snapshot_id"),
                snapshot_time: text(p, "snapshot_time").as_deref().and_then(time),
            })
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
