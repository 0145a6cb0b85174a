//! What the verified records say about their signers, checked against
//! the auditor's keys: the host each chain enrolled as, the revocations
//! (in the keys file or by `revoke` records), and the snapshots whose host
//! or time a record's signer could not honestly claim.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::key::LEGACY_KEY_ID;
use super::record::Checked;
use super::trust::{RevokedAfter, Trust};
use super::verify_report::{problem, ProblemKind, VerifyReport};

/// Each trusted chain's host: the one the auditor pinned, else the one its
/// record 0 enrolled. A pinned host that the key enrolled under another
/// name is a problem.
pub(super) fn chain_hosts(
    verified: &BTreeMap<String, BTreeMap<u64, (Checked, String)>>,
    trust: &Trust,
    r: &mut VerifyReport,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for (chain, m) in verified {
        if chain == LEGACY_KEY_ID {
            out.insert(chain.clone(), None);
            continue;
        }
        let enrolled = m.get(&0).and_then(|(c, _)| enrolled_host(c));
        let pinned = trust.get(chain).and_then(|k| k.host.clone());
        if let (Some(p), Some(e), Some((_, file))) = (&pinned, &enrolled, m.get(&0)) {
            if p != e && trust.pinned {
                r.push(problem(
                    ProblemKind::Host,
                    chain,
                    0,
                    file,
                    format!("the keys file pins this key for host {p}, but it enrolled itself as host {e}"),
                ));
            }
        }
        out.insert(chain.clone(), pinned.or(enrolled));
    }
    out
}

/// Records by (chain, seq).
pub(super) type RecordSet = BTreeSet<(String, u64)>;

/// Records after their key's revocation: by the keys file, or by a
/// `revoke` record of a trusted key.
pub(super) fn revocations(
    verified: &BTreeMap<String, BTreeMap<u64, (Checked, String)>>,
    trust: &Trust,
    r: &mut VerifyReport,
) -> RecordSet {
    let mut limits: BTreeMap<String, Vec<(RevokedAfter, String)>> = BTreeMap::new();
    for (chain, k) in &trust.keys {
        if let Some(after) = k.revoked_after {
            limits.entry(chain.clone()).or_default().push((after, "the keys file".into()));
        }
    }
    for (chain, m) in verified {
        for (seq, (c, _)) in m {
            if c.kind != "revoke" {
                continue;
            }
            let (Some(target), Some(after)) =
                (c.payload.get("key_id").and_then(Value::as_str), c.payload.get("after_seq").and_then(Value::as_u64))
            else {
                continue;
            };
            limits
                .entry(target.to_string())
                .or_default()
                .push((RevokedAfter::Seq(after), format!("the revoke record {chain}/{seq} of {}", c.time)));
        }
    }
    let mut out = BTreeSet::new();
    for (chain, list) in &limits {
        let Some(m) = verified.get(chain) else { continue };
        for (seq, (c, file)) in m {
            let t = DateTime::parse_from_rfc3339(&c.time).ok().map(|t| t.with_timezone(&Utc));
            let by = list.iter().find(|(after, _)| match after {
                RevokedAfter::Seq(s) => seq > s,
                RevokedAfter::Time(limit) => t.is_some_and(|t| t > *limit),
            });
            if let Some((after, source)) = by {
                out.insert((chain.clone(), *seq));
                let what = match c.kind.as_str() {
                    "backup" | "drill" => format!(
                        "a `{}` record{}",
                        c.kind,
                        c.policy.as_ref().map(|p| format!(" of policy {p}")).unwrap_or_default()
                    ),
                    k => format!("a `{k}` record"),
                };
                r.push(problem(
                    ProblemKind::Revoked,
                    chain,
                    *seq,
                    file,
                    format!("{what} of {} signed after the key was revoked (after {after}, by {source})", c.time),
                ));
            }
        }
    }
    out
}

/// Backup records whose snapshot claims another host than the signer's,
/// or a time ahead of the record's own or of `now` by more than the
/// allowed skew; an `accept` record of a trusted key, signed before any
/// revocation of it, clears a snapshot.
pub(super) fn snapshot_flags(
    verified: &BTreeMap<String, BTreeMap<u64, (Checked, String)>>,
    hosts: &BTreeMap<String, Option<String>>,
    revoked: &RecordSet,
    now: DateTime<Utc>,
    r: &mut VerifyReport,
) -> (RecordSet, RecordSet) {
    let skew = chrono::Duration::from_std(crate::repo::lock::MAX_CLOCK_SKEW).expect("small");
    let accepted: BTreeSet<&str> = verified
        .iter()
        .flat_map(|(chain, m)| m.iter().map(move |(seq, rec)| (chain, seq, rec)))
        .filter(|(chain, seq, _)| !revoked.contains(&((*chain).clone(), **seq)))
        .map(|(_, _, rec)| rec)
        .filter(|(c, _)| c.kind == "accept")
        .filter_map(|(c, _)| c.payload.get("snapshot").and_then(Value::as_str))
        .collect();
    let (mut host_flags, mut future_flags) = (BTreeSet::new(), BTreeSet::new());
    for (chain, m) in verified {
        for (seq, (c, file)) in m {
            if c.kind != "backup" {
                continue;
            }
            let Some(snapshot) = c.payload.get("snapshot").and_then(Value::as_str) else { continue };
            if accepted.contains(snapshot) {
                continue;
            }
            let short = crate::text::id_prefix(snapshot, 8);
            let claimed = c.payload.get("hostname").and_then(Value::as_str);
            if let (Some(Some(signer_host)), Some(claimed)) = (hosts.get(chain), claimed) {
                if signer_host != claimed {
                    host_flags.insert((chain.clone(), *seq));
                    r.push(problem(
                        ProblemKind::Host,
                        chain,
                        *seq,
                        file,
                        format!(
                            "snapshot {short} claims host {claimed}, but its record is signed by the key of host \
                             {signer_host}: it is not counted (`cairn evidence accept {short}` accepts it)"
                        ),
                    ));
                }
            }
            let time = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
            let (Some(st), Some(rt)) =
                (c.payload.get("snapshot_time").and_then(Value::as_str).and_then(time), time(&c.time))
            else {
                continue;
            };
            let limit = rt.min(now) + skew;
            if st > limit {
                future_flags.insert((chain.clone(), *seq));
                let against = if rt <= now { format!("its record's time {}", c.time) } else { "now".to_string() };
                r.push(problem(
                    ProblemKind::Future,
                    chain,
                    *seq,
                    file,
                    format!(
                        "snapshot {short} is dated {}, more than {} s ahead of {against}: it is not counted as a \
                         recovery point",
                        st.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        skew.num_seconds()
                    ),
                ));
            }
        }
    }
    (host_flags, future_flags)
}

/// The host a chain's record 0 enrols (unverified until checked).
fn enrolled_host(c: &Checked) -> Option<String> {
    c.payload.get("host").and_then(Value::as_str).map(str::to_string)
}
