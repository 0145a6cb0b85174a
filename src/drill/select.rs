//! Choosing the recovery point, and the seeded choices of a drill.
//!
//! Every random decision of a drill (which snapshot, which files are
//! verified, which live files are spot-checked) is a pure function of one
//! 64-bit seed, recorded in the report: [`rank`] hashes the seed, a domain
//! and an item with BLAKE3, so the same seed gives the same choices on any
//! machine and any version of the `rand` crate, and a choice does not
//! depend on the order in which items were listed.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::policy::Duration;
use crate::repo::Snapshot;

/// A seeded pseudo-random rank of `item` within `domain`.
pub fn rank(seed: u64, domain: &str, item: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("cairn drill seeded choice v1");
    h.update(&seed.to_le_bytes());
    h.update(&(domain.len() as u64).to_le_bytes());
    h.update(domain.as_bytes());
    h.update(item);
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The `k` items with the lowest rank: a seeded sample of exactly `k`.
/// Returns indices into `items`, in the items' order.
pub fn sample<T: AsRef<[u8]>>(seed: u64, domain: &str, items: &[T], k: usize) -> Vec<usize> {
    let mut ranked: Vec<(u64, usize)> =
        items.iter().enumerate().map(|(i, x)| (rank(seed, domain, x.as_ref()), i)).collect();
    ranked.sort_unstable();
    let mut chosen: Vec<usize> = ranked.into_iter().take(k).map(|(_, i)| i).collect();
    chosen.sort_unstable();
    chosen
}

/// How the recovery point is chosen, after the policy's default is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Latest,
    /// Within this window before the drill's start.
    Random(Duration),
    Id(String),
}

impl Choice {
    pub fn name(&self) -> &'static str {
        match self {
            Choice::Latest => "latest",
            Choice::Random(_) => "random",
            Choice::Id(_) => "id",
        }
    }
}

/// The snapshot a drill restores, and how it was found.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub id: Id,
    pub snapshot: Snapshot,
    /// Snapshots it was chosen from (the window's, for a random choice).
    pub candidates: usize,
    /// The policy's newest snapshot (time), to judge the RPO.
    pub newest: DateTime<Utc>,
    pub is_newest: bool,
}

/// Chooses among `all` (every snapshot of the repository, oldest first)
/// the one to restore for `policy`.
pub fn choose(all: &[(Id, Snapshot)], policy: &str, choice: &Choice, seed: u64, now: DateTime<Utc>) -> Result<Chosen> {
    // A snapshot dated in the future is never the recovery point.
    let mine: Vec<&(Id, Snapshot)> = all
        .iter()
        .filter(|(_, s)| s.policy.as_deref() == Some(policy) && !crate::repo::is_future(s.time, now))
        .collect();
    let none = |detail: String| Error::NoRecoveryPoint { policy: policy.to_string(), detail };
    let Some(newest) = mine.last().map(|(id, s)| (*id, s.time)) else {
        return Err(none("the repository holds no snapshot of this policy".into()));
    };
    let (picked, candidates) = match choice {
        Choice::Latest => (*mine.last().expect("not empty"), mine.len()),
        Choice::Random(window) => {
            let from = now - window.to_chrono();
            let within: Vec<&&(Id, Snapshot)> = mine.iter().filter(|(_, s)| s.time >= from).collect();
            if within.is_empty() {
                return Err(none(format!(
                    "no snapshot in the last {window} (random_window); the newest is from {}",
                    newest.1.format("%Y-%m-%d %H:%M:%S UTC")
                )));
            }
            let i = (rank(seed, "recovery-point", &[]) % within.len() as u64) as usize;
            (*within[i], within.len())
        }
        Choice::Id(spec) => (by_id(all, policy, spec)?, 1),
    };
    Ok(Chosen {
        id: picked.0,
        snapshot: picked.1.clone(),
        candidates,
        newest: newest.1,
        is_newest: picked.0 == newest.0,
    })
}

/// The snapshot `spec` (an id or a unique prefix) names among `all`; it
/// must be one of `policy`'s.
pub fn by_id<'a>(all: &'a [(Id, Snapshot)], policy: &str, spec: &str) -> Result<&'a (Id, Snapshot)> {
    let one = crate::repo::by_id_prefix(all, |(id, _)| *id, spec)?;
    if one.1.policy.as_deref() != Some(policy) {
        return Err(Error::NotPolicySnapshot {
            snapshot: one.0.short(),
            policy: policy.to_string(),
            owner: match &one.1.policy {
                Some(p) => format!("it belongs to policy `{p}`"),
                None => "it was not taken by a policy".into(),
            },
        });
    }
    Ok(one)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Summary;

    fn snap(policy: Option<&str>, days_ago: i64, now: DateTime<Utc>) -> Snapshot {
        Snapshot {
            v: 1,
            time: now - chrono::Duration::days(days_ago),
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/srv".into()],
            tags: vec![],
            policy: policy.map(Into::into),
            parent: None,
            tree: Id::hash_of(&days_ago.to_le_bytes()),
            program_version: "0".into(),
            original: None,
            summary: Summary::default(),
        }
    }

    fn repo(now: DateTime<Utc>) -> Vec<(Id, Snapshot)> {
        let mut v: Vec<(Id, Snapshot)> = [
            (Some("web"), 60),
            (Some("web"), 20),
            (Some("db"), 3),
            (Some("web"), 10),
            (None, 1),
            (Some("web"), 5),
            (Some("web"), 2),
        ]
        .iter()
        .map(|(p, d)| (Id::hash_of(format!("{p:?}{d}").as_bytes()), snap(*p, *d, now)))
        .collect();
        v.sort_by_key(|(_, s)| s.time);
        v
    }

    #[test]
    fn latest_is_the_policys_newest_snapshot() {
        let now = Utc::now();
        let all = repo(now);
        let c = choose(&all, "web", &Choice::Latest, 0, now).unwrap();
        assert_eq!(c.snapshot.time, now - chrono::Duration::days(2));
        assert!(c.is_newest);
        assert_eq!(c.candidates, 5);
        let e = choose(&all, "mail", &Choice::Latest, 0, now).unwrap_err();
        assert!(matches!(e, Error::NoRecoveryPoint { .. }), "{e}");
    }

    #[test]
    fn bug_a_snapshot_dated_2099_was_the_recovery_point_of_every_drill() {
        let now = Utc::now();
        let mut all = repo(now);
        all.push((Id::hash_of(b"2099"), snap(Some("web"), -(80 * 365), now)));
        let c = choose(&all, "web", &Choice::Latest, 0, now).unwrap();
        assert_eq!(c.snapshot.time, now - chrono::Duration::days(2), "the forged snapshot is never the latest");
        assert_eq!(c.newest, now - chrono::Duration::days(2), "nor the newest, which the RPO is judged by");
    }

    #[test]
    fn random_stays_in_the_window_is_seeded_and_varies_with_the_seed() {
        let now = Utc::now();
        let all = repo(now);
        let window = Choice::Random(Duration::from_secs(30 * 86400));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let a = choose(&all, "web", &window, seed, now).unwrap();
            let b = choose(&all, "web", &window, seed, now).unwrap();
            assert_eq!(a.id, b.id, "same seed, same choice");
            assert_eq!(a.candidates, 4, "the 60-day-old snapshot is outside the window");
            assert_eq!(a.snapshot.policy.as_deref(), Some("web"));
            assert!(a.snapshot.time >= now - chrono::Duration::days(30));
            seen.insert(a.id);
        }
        assert_eq!(seen.len(), 4, "40 seeds should reach each of the 4 candidates");
        let e = choose(&all, "web", &Choice::Random(Duration::from_secs(86400)), 1, now).unwrap_err();
        assert!(e.to_string().contains("no snapshot in the last 1d"), "{e}");
    }

    #[test]
    fn an_id_must_be_a_snapshot_of_the_policy() {
        let now = Utc::now();
        let all = repo(now);
        let db = all.iter().find(|(_, s)| s.policy.as_deref() == Some("db")).unwrap().0;
        let e = choose(&all, "web", &Choice::Id(db.to_hex()[..12].into()), 0, now).unwrap_err();
        assert!(e.to_string().contains("belongs to policy `db`"), "{e}");
        let old = all[0].0;
        let c = choose(&all, "web", &Choice::Id(old.to_hex()[..10].into()), 0, now).unwrap();
        assert_eq!(c.id, old);
        assert!(!c.is_newest);
        assert!(matches!(choose(&all, "web", &Choice::Id("zz".into()), 0, now), Err(Error::SnapshotNotFound(_))));
    }

    #[test]
    fn samples_have_the_asked_size_and_depend_only_on_seed_and_items() {
        let items: Vec<String> = (0..200).map(|i| format!("/srv/f{i}")).collect();
        let a = sample(7, "verify", &items, 20);
        assert_eq!(a.len(), 20);
        assert_eq!(a, sample(7, "verify", &items, 20));
        assert_ne!(a, sample(8, "verify", &items, 20));
        assert_ne!(a, sample(7, "spot-check", &items, 20));
        // Listing order does not matter.
        let mut rev = items.clone();
        rev.reverse();
        let mut from_rev: Vec<&String> = sample(7, "verify", &rev, 20).iter().map(|i| &rev[*i]).collect();
        let mut from_fwd: Vec<&String> = a.iter().map(|i| &items[*i]).collect();
        from_rev.sort();
        from_fwd.sort();
        assert_eq!(from_rev, from_fwd);
        assert_eq!(sample(7, "verify", &items, 500).len(), 200);
    }
}
