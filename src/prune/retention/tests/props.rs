//! Property tests of retention: invariants over random snapshot sets,
//! rules and clocks (the case tables are in `tests.rs`).

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

use super::super::*;
use super::{secs, t, DAY, HOUR, YEAR};

fn base() -> DateTime<Utc> {
    t("2024-01-01T00:00:00Z")
}

fn id_of(i: usize) -> Id {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Id(b)
}

/// Up to 40 snapshots over three years, in 2 hosts x 2 path sets x
/// with or without a policy; half of the times are whole hours so
/// that periods repeat and times tie.
fn snapshots() -> impl Strategy<Value = Vec<SnapshotRef>> {
    let time = prop_oneof![(0i64..2000).prop_map(|h| h * HOUR), 0i64..3 * YEAR];
    prop::collection::vec((time, 0usize..2, 0usize..2, 0u8..4, any::<bool>()), 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (offset, host, paths, tags, policy))| SnapshotRef {
                id: id_of(i),
                time: base() + secs(offset),
                host: ["a", "b"][host].into(),
                paths: [vec!["/x".to_string()], vec!["/y".to_string(), "/x".to_string()]][paths].clone(),
                tags: ["db", "x"]
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| tags & (1 << b) != 0)
                    .map(|(_, t)| t.to_string())
                    .collect(),
                policy: policy.then(|| "p".to_string()),
            })
            .collect()
    })
}

fn keep_rules() -> impl Strategy<Value = KeepRules> {
    let n = || proptest::option::of(0u32..5);
    (
        n(),
        n(),
        n(),
        n(),
        n(),
        n(),
        proptest::option::of((0i64..90 * DAY).prop_map(secs)),
        proptest::sample::subsequence(vec!["db", "x", "db,x"], 0..=2),
    )
        .prop_map(|(last, hourly, daily, weekly, monthly, yearly, within, tags)| KeepRules {
            keep_last: last,
            keep_hourly: hourly,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
            keep_yearly: yearly,
            keep_within: within,
            keep_tags: tags.into_iter().map(String::from).collect(),
        })
}

/// A clock somewhere from a year before the first possible snapshot
/// to a year after the last, so that some snapshots lie in the future.
fn clock() -> impl Strategy<Value = DateTime<Utc>> {
    (-YEAR..4 * YEAR).prop_map(|s| base() + secs(s))
}

fn kept(ds: &[Decision]) -> HashSet<Id> {
    ds.iter().filter(|d| d.is_kept()).map(|d| d.id).collect()
}

/// Every rule of `a`, plus the rules of `b` (the larger count or
/// duration where both have one).
fn union(a: &KeepRules, b: &KeepRules) -> KeepRules {
    let max = |x: Option<u32>, y: Option<u32>| x.max(y);
    let mut tags = a.keep_tags.clone();
    tags.extend(b.keep_tags.iter().cloned());
    KeepRules {
        keep_last: max(a.keep_last, b.keep_last),
        keep_hourly: max(a.keep_hourly, b.keep_hourly),
        keep_daily: max(a.keep_daily, b.keep_daily),
        keep_weekly: max(a.keep_weekly, b.keep_weekly),
        keep_monthly: max(a.keep_monthly, b.keep_monthly),
        keep_yearly: max(a.keep_yearly, b.keep_yearly),
        keep_within: a.keep_within.max(b.keep_within),
        keep_tags: tags,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_snapshot_gets_exactly_one_decision(snaps in snapshots(), rules in keep_rules(), now in clock()) {
        match apply(&snaps, &rules, now) {
            Err(_) => prop_assert!(rules.is_empty()),
            Ok(ds) => {
                prop_assert!(!rules.is_empty());
                let mut got: Vec<Id> = ds.iter().map(|d| d.id).collect();
                let mut want: Vec<Id> = snaps.iter().map(|s| s.id).collect();
                got.sort();
                want.sort();
                prop_assert_eq!(got, want);
                for d in &ds {
                    let no_rule = d.reasons == [Reason::NoRule];
                    prop_assert_eq!(d.is_kept(), !no_rule, "{:?}", d);
                    prop_assert!(!d.reasons.is_empty());
                    if d.is_kept() {
                        prop_assert!(d.reasons.iter().all(|r| r.rule().is_some()));
                    }
                }
            }
        }
    }

    #[test]
    fn keep_last_keeps_the_n_newest_of_every_group(
        snaps in snapshots(), mut rules in keep_rules(), n in 1u32..6, now in clock()
    ) {
        rules.keep_last = Some(n);
        let ds = apply(&snaps, &rules, now).unwrap();
        let mut groups: BTreeMap<GroupKey, Vec<&Decision>> = BTreeMap::new();
        for d in &ds {
            groups.entry(d.group.clone()).or_default().push(d);
        }
        for (g, list) in groups {
            let want = (n as usize).min(list.len());
            prop_assert!(list.iter().filter(|d| d.is_kept()).count() >= want, "group {}", g);
            // Decisions come newest first: the first n are the last n.
            for d in &list[..want] {
                prop_assert!(d.reasons.contains(&Reason::Last { n }), "{:?}", d);
            }
        }
    }

    #[test]
    fn adding_rules_never_forgets_a_kept_snapshot(
        snaps in snapshots(), a in keep_rules(), b in keep_rules(), now in clock()
    ) {
        prop_assume!(!a.is_empty());
        let more = union(&a, &b);
        let before = kept(&apply(&snaps, &a, now).unwrap());
        let after = kept(&apply(&snaps, &more, now).unwrap());
        prop_assert!(before.is_subset(&after), "{:?} forgot {:?}", more, before.difference(&after).collect::<Vec<_>>());
    }

    #[test]
    fn input_order_does_not_matter(
        (snaps, shuffled) in snapshots().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        rules in keep_rules(),
        now in clock(),
    ) {
        prop_assume!(!rules.is_empty());
        prop_assert_eq!(apply(&snaps, &rules, now).unwrap(), apply(&shuffled, &rules, now).unwrap());
    }

    #[test]
    fn without_keep_within_now_does_not_matter(
        snaps in snapshots(), mut rules in keep_rules(), now1 in clock(), now2 in clock()
    ) {
        rules.keep_within = None;
        prop_assume!(!rules.is_empty());
        prop_assert_eq!(apply(&snaps, &rules, now1).unwrap(), apply(&snaps, &rules, now2).unwrap());
    }

    #[test]
    fn shifting_every_time_and_now_together_changes_nothing(
        mut snaps in snapshots(), mut rules in keep_rules(), now in clock(), shift in -10 * YEAR..10 * YEAR
    ) {
        // Calendar periods move with such a shift; the other rules must not.
        (rules.keep_hourly, rules.keep_daily, rules.keep_weekly, rules.keep_monthly, rules.keep_yearly) =
            (None, None, None, None, None);
        prop_assume!(!rules.is_empty());
        let summary = |ds: Vec<Decision>| -> BTreeSet<(Id, Action, Vec<String>)> {
            ds.into_iter().map(|d| (d.id, d.action, d.reasons.iter().map(ToString::to_string).collect())).collect()
        };
        let before = summary(apply(&snaps, &rules, now).unwrap());
        for s in &mut snaps {
            s.time += secs(shift);
        }
        let after = summary(apply(&snaps, &rules, now + secs(shift)).unwrap());
        prop_assert_eq!(before, after);
    }
}
