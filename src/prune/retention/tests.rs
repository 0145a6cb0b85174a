use std::collections::{BTreeMap, HashMap};

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const YEAR: i64 = 365 * DAY;

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

/// A snapshot from a spec: `TIME [host=H] [paths=/a,/b] [tags=a,b]
/// [policy=P] [id=HH]`; host `h` and paths `/x` by default, and an id
/// derived from the spec unless `id=HH` (a hex byte) is given.
fn snap(spec: &str) -> SnapshotRef {
    let mut words = spec.split_whitespace();
    let mut s = SnapshotRef {
        id: Id::hash_of(spec.as_bytes()),
        time: t(words.next().unwrap()),
        host: "h".into(),
        paths: vec!["/x".into()],
        tags: vec![],
        policy: None,
    };
    for w in words {
        let (k, v) = w.split_once('=').unwrap();
        match k {
            "host" => s.host = v.into(),
            "paths" => s.paths = v.split(',').map(String::from).collect(),
            "tags" => s.tags = v.split(',').map(String::from).collect(),
            "policy" => s.policy = Some(v.into()),
            "id" => s.id = Id([u8::from_str_radix(v, 16).unwrap(); 32]),
            _ => panic!("bad spec word `{w}`"),
        }
    }
    s
}

struct Case {
    name: &'static str,
    now: &'static str,
    rules: KeepRules,
    snaps: &'static [&'static str],
    /// The snapshots kept, with their reasons joined by `; `; every
    /// other one must be forgotten with "matched no rule".
    keep: &'static [(&'static str, &'static str)],
    /// Moving `now` forward changes the outcome (a snapshot lies in
    /// the future); every other case must not depend on it at all.
    now_matters: bool,
}

fn rules() -> KeepRules {
    KeepRules::default()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "keep_last alone",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_last: Some(3), ..rules() },
            snaps: &[
                "2026-11-16T10:00:00Z",
                "2026-11-17T10:00:00Z",
                "2026-11-18T10:00:00Z",
                "2026-11-19T10:00:00Z",
                "2026-11-20T10:00:00Z",
            ],
            keep: &[
                ("2026-11-20T10:00:00Z", "last 3"),
                ("2026-11-19T10:00:00Z", "last 3"),
                ("2026-11-18T10:00:00Z", "last 3"),
            ],
            now_matters: false,
        },
        Case {
            name: "keep_last larger than the group keeps all",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_last: Some(10), ..rules() },
            snaps: &["2026-11-18T10:00:00Z", "2026-11-19T10:00:00Z"],
            keep: &[("2026-11-19T10:00:00Z", "last 10"), ("2026-11-18T10:00:00Z", "last 10")],
            now_matters: false,
        },
        Case {
            name: "keep_hourly keeps the newest of each hour",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_hourly: Some(2), ..rules() },
            snaps: &[
                "2026-11-20T12:30:00Z",
                "2026-11-20T13:00:00Z",
                "2026-11-20T13:59:59Z",
                "2026-11-20T14:10:00Z",
                "2026-11-20T14:50:00Z",
            ],
            keep: &[
                ("2026-11-20T14:50:00Z", "hourly (2026-11-20 14:00)"),
                ("2026-11-20T13:59:59Z", "hourly (2026-11-20 13:00)"),
            ],
            now_matters: false,
        },
        Case {
            name: "keep_daily, count used up before the oldest",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_daily: Some(2), ..rules() },
            snaps: &["2026-11-18T10:00:00Z", "2026-11-19T10:00:00Z", "2026-11-20T10:00:00Z", "2026-11-20T23:00:00Z"],
            keep: &[("2026-11-20T23:00:00Z", "daily (2026-11-20)"), ("2026-11-19T10:00:00Z", "daily (2026-11-19)")],
            now_matters: false,
        },
        Case {
            name: "keep_daily with count left also keeps the oldest",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_daily: Some(5), ..rules() },
            snaps: &["2026-11-20T01:00:00Z", "2026-11-20T10:00:00Z", "2026-11-20T23:00:00Z"],
            keep: &[
                ("2026-11-20T23:00:00Z", "daily (2026-11-20)"),
                ("2026-11-20T01:00:00Z", "oldest daily (2026-11-20)"),
            ],
            now_matters: false,
        },
        Case {
            // In UTC+2, the three newest would all fall on 2026-11-21.
            name: "days are UTC days",
            now: "2026-11-22T00:00:00Z",
            rules: KeepRules { keep_daily: Some(2), ..rules() },
            snaps: &["2026-11-20T12:00:00Z", "2026-11-20T23:30:00Z", "2026-11-21T00:30:00Z", "2026-11-21T01:00:00Z"],
            keep: &[("2026-11-21T01:00:00Z", "daily (2026-11-21)"), ("2026-11-20T23:30:00Z", "daily (2026-11-20)")],
            now_matters: false,
        },
        Case {
            name: "keep_weekly across the 2026/2027 year end (ISO week 53)",
            now: "2027-01-05T00:00:00Z",
            rules: KeepRules { keep_weekly: Some(3), ..rules() },
            snaps: &[
                "2026-12-20T10:00:00Z", // Sun, 2026-W51
                "2026-12-27T10:00:00Z", // Sun, 2026-W52
                "2026-12-28T10:00:00Z", // Mon, 2026-W53
                "2026-12-31T10:00:00Z", // Thu, 2026-W53
                "2027-01-01T10:00:00Z", // Fri, 2026-W53
                "2027-01-03T10:00:00Z", // Sun, 2026-W53
                "2027-01-04T10:00:00Z", // Mon, 2027-W01
            ],
            keep: &[
                ("2027-01-04T10:00:00Z", "weekly (2027-W01)"),
                ("2027-01-03T10:00:00Z", "weekly (2026-W53)"),
                ("2026-12-27T10:00:00Z", "weekly (2026-W52)"),
            ],
            now_matters: false,
        },
        Case {
            name: "ISO week 2026-W01 starts in December 2025; years are calendar years",
            now: "2026-01-06T00:00:00Z",
            rules: KeepRules { keep_weekly: Some(3), keep_yearly: Some(2), ..rules() },
            snaps: &[
                "2025-12-28T10:00:00Z", // Sun, 2025-W52
                "2025-12-29T10:00:00Z", // Mon, 2026-W01
                "2025-12-30T10:00:00Z", // Tue, 2026-W01
                "2026-01-01T10:00:00Z", // Thu, 2026-W01
                "2026-01-05T10:00:00Z", // Mon, 2026-W02
            ],
            keep: &[
                ("2026-01-05T10:00:00Z", "weekly (2026-W02); yearly (2026)"),
                ("2026-01-01T10:00:00Z", "weekly (2026-W01)"),
                ("2025-12-30T10:00:00Z", "yearly (2025)"),
                ("2025-12-28T10:00:00Z", "weekly (2025-W52)"),
            ],
            now_matters: false,
        },
        Case {
            name: "keep_monthly",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_monthly: Some(2), ..rules() },
            snaps: &[
                "2026-09-15T10:00:00Z",
                "2026-10-01T00:00:00Z",
                "2026-10-31T23:59:59Z",
                "2026-11-02T10:00:00Z",
                "2026-11-20T10:00:00Z",
            ],
            keep: &[("2026-11-20T10:00:00Z", "monthly (2026-11)"), ("2026-10-31T23:59:59Z", "monthly (2026-10)")],
            now_matters: false,
        },
        Case {
            name: "keep_yearly with count left keeps the oldest (a young repository)",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_yearly: Some(5), ..rules() },
            snaps: &["2025-03-01T10:00:00Z", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-06-01T10:00:00Z"],
            keep: &[
                ("2026-06-01T10:00:00Z", "yearly (2026)"),
                ("2025-12-31T23:59:59Z", "yearly (2025)"),
                ("2025-03-01T10:00:00Z", "oldest yearly (2025)"),
            ],
            now_matters: false,
        },
        Case {
            name: "keep_within: exactly on the boundary is forgotten",
            now: "2026-11-20T12:00:00Z",
            rules: KeepRules { keep_within: Some(Duration::days(7)), ..rules() },
            snaps: &["2026-11-01T12:00:00Z", "2026-11-13T12:00:00Z", "2026-11-13T12:00:01Z", "2026-11-20T12:00:00Z"],
            keep: &[("2026-11-20T12:00:00Z", "within 7d"), ("2026-11-13T12:00:01Z", "within 7d")],
            now_matters: false,
        },
        Case {
            name: "keep_within in minutes",
            now: "2026-11-20T12:05:00Z",
            rules: KeepRules { keep_within: Some(Duration::minutes(45)), ..rules() },
            snaps: &["2026-11-20T11:15:00Z", "2026-11-20T11:15:01Z", "2026-11-20T12:00:00Z"],
            keep: &[("2026-11-20T12:00:00Z", "within 45m"), ("2026-11-20T11:15:01Z", "within 45m")],
            now_matters: false,
        },
        Case {
            name: "keep_within counts back from the newest snapshot, not from now (backups stopped)",
            now: "2027-03-01T00:00:00Z",
            rules: KeepRules { keep_within: Some(Duration::days(7)), ..rules() },
            snaps: &["2026-11-10T12:00:00Z", "2026-11-18T12:00:00Z", "2026-11-20T12:00:00Z"],
            keep: &[("2026-11-20T12:00:00Z", "within 7d"), ("2026-11-18T12:00:00Z", "within 7d")],
            now_matters: false,
        },
        Case {
            name: "keep_within is not anchored on a snapshot from the future",
            now: "2026-11-20T12:00:00Z",
            rules: KeepRules { keep_within: Some(Duration::days(7)), ..rules() },
            snaps: &["2026-11-10T12:00:00Z", "2026-11-14T12:00:00Z", "2026-11-20T11:00:00Z", "2026-12-20T12:00:00Z"],
            keep: &[
                ("2026-12-20T12:00:00Z", "within 7d"),
                ("2026-11-20T11:00:00Z", "within 7d"),
                ("2026-11-14T12:00:00Z", "within 7d"),
            ],
            now_matters: true,
        },
        Case {
            name: "keep_tags: any entry; an entry with commas needs all its tags",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_tags: vec!["db".into(), "weekly,monthly".into()], ..rules() },
            snaps: &[
                "2026-11-16T10:00:00Z",
                "2026-11-17T10:00:00Z tags=monthly,weekly",
                "2026-11-18T10:00:00Z tags=weekly",
                "2026-11-19T10:00:00Z tags=db,weekly",
                "2026-11-20T10:00:00Z tags=db",
            ],
            keep: &[
                ("2026-11-20T10:00:00Z tags=db", "tag db"),
                ("2026-11-19T10:00:00Z tags=db,weekly", "tag db"),
                ("2026-11-17T10:00:00Z tags=monthly,weekly", "tags weekly,monthly"),
            ],
            now_matters: false,
        },
        Case {
            name: "combination of last, daily, weekly and tags",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules {
                keep_last: Some(2),
                keep_daily: Some(3),
                keep_weekly: Some(2),
                keep_tags: vec!["keep".into()],
                ..rules()
            },
            snaps: &[
                "2026-11-01T08:00:00Z",
                "2026-11-08T08:00:00Z tags=keep",
                "2026-11-13T08:00:00Z",
                "2026-11-15T08:00:00Z",
                "2026-11-17T08:00:00Z",
                "2026-11-19T08:00:00Z",
                "2026-11-20T08:00:00Z",
                "2026-11-20T18:00:00Z",
            ],
            keep: &[
                ("2026-11-20T18:00:00Z", "last 2; daily (2026-11-20); weekly (2026-W47)"),
                ("2026-11-20T08:00:00Z", "last 2"),
                ("2026-11-19T08:00:00Z", "daily (2026-11-19)"),
                ("2026-11-17T08:00:00Z", "daily (2026-11-17)"),
                ("2026-11-15T08:00:00Z", "weekly (2026-W46)"),
                ("2026-11-08T08:00:00Z tags=keep", "tag keep"),
            ],
            now_matters: false,
        },
        Case {
            name: "combination of last, within and tags",
            now: "2026-11-25T00:00:00Z",
            rules: KeepRules {
                keep_last: Some(1),
                keep_within: Some(Duration::hours(6)),
                keep_tags: vec!["db".into()],
                ..rules()
            },
            snaps: &[
                "2026-11-01T10:00:00Z tags=db",
                "2026-11-20T06:00:00Z",
                "2026-11-20T06:00:01Z",
                "2026-11-20T12:00:00Z",
            ],
            keep: &[
                ("2026-11-20T12:00:00Z", "last 1; within 6h"),
                ("2026-11-20T06:00:01Z", "within 6h"),
                ("2026-11-01T10:00:00Z tags=db", "tag db"),
            ],
            now_matters: false,
        },
        Case {
            name: "ties in time are broken by id",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_last: Some(1), keep_daily: Some(2), ..rules() },
            snaps: &["2026-11-19T10:00:00Z", "2026-11-20T10:00:00Z id=02", "2026-11-20T10:00:00Z id=01"],
            keep: &[
                ("2026-11-20T10:00:00Z id=01", "last 1; daily (2026-11-20)"),
                ("2026-11-19T10:00:00Z", "daily (2026-11-19)"),
            ],
            now_matters: false,
        },
        Case {
            name: "groups: host, set of paths and policy each make a group",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_last: Some(1), ..rules() },
            snaps: &[
                "2026-11-19T10:00:00Z host=a",
                "2026-11-20T10:00:00Z host=a",
                "2026-11-17T10:00:00Z host=b",
                "2026-11-18T10:00:00Z host=b",
                "2026-11-15T10:00:00Z host=a paths=/y,/x",
                "2026-11-20T11:00:00Z host=a paths=/x,/y",
                "2026-11-13T10:00:00Z host=a policy=db",
                "2026-11-14T10:00:00Z host=a policy=db",
            ],
            keep: &[
                ("2026-11-20T10:00:00Z host=a", "last 1"),
                ("2026-11-18T10:00:00Z host=b", "last 1"),
                ("2026-11-20T11:00:00Z host=a paths=/x,/y", "last 1"),
                ("2026-11-14T10:00:00Z host=a policy=db", "last 1"),
            ],
            now_matters: false,
        },
        Case {
            name: "a count of 0 is no rule",
            now: "2026-11-21T00:00:00Z",
            rules: KeepRules { keep_last: Some(0), keep_daily: Some(1), ..rules() },
            snaps: &["2026-11-19T10:00:00Z", "2026-11-20T08:00:00Z", "2026-11-20T10:00:00Z"],
            keep: &[("2026-11-20T10:00:00Z", "daily (2026-11-20)")],
            now_matters: false,
        },
    ]
}

/// Whether the rules use calendar periods (which move when snapshot
/// times are shifted by other than whole periods).
fn has_calendar_rule(r: &KeepRules) -> bool {
    [r.keep_hourly, r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly].iter().any(|n| n.unwrap_or(0) > 0)
}

/// The outcome per snapshot spec, as `keep: reason; reason`, with every
/// snapshot time shifted by `shift` and now by `shift + now_shift`.
fn outcome(case: &Case, shift: Duration, now_shift: Duration) -> BTreeMap<&'static str, String> {
    let snaps: Vec<SnapshotRef> = case
        .snaps
        .iter()
        .map(|spec| {
            let mut s = snap(spec);
            s.time += shift;
            s
        })
        .collect();
    let spec_of: HashMap<Id, &'static str> = case.snaps.iter().zip(&snaps).map(|(spec, s)| (s.id, *spec)).collect();
    assert_eq!(spec_of.len(), snaps.len(), "case `{}`: duplicate ids", case.name);
    let decisions = apply(&snaps, &case.rules, t(case.now) + shift + now_shift).unwrap();
    assert_eq!(decisions.len(), snaps.len());
    decisions
        .iter()
        .map(|d| {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            (spec_of[&d.id], format!("{}: {}", d.action, reasons.join("; ")))
        })
        .collect()
}

fn expected(case: &Case) -> BTreeMap<&'static str, String> {
    for (spec, _) in case.keep {
        assert!(case.snaps.contains(spec), "case `{}`: `{spec}` is not among its snapshots", case.name);
    }
    case.snaps
        .iter()
        .map(|spec| match case.keep.iter().find(|(k, _)| k == spec) {
            Some((_, reasons)) => (*spec, format!("keep: {reasons}")),
            None => (*spec, "forget: matched no rule".to_string()),
        })
        .collect()
}

#[test]
fn table_at_a_fixed_clock_and_at_other_clocks() {
    let later = [secs(HOUR), secs(DAY), secs(YEAR), secs(366 * DAY), secs(10 * YEAR + 12345)];
    let shifts = [secs(HOUR), secs(DAY), secs(YEAR), secs(-YEAR), secs(-12345), secs(4 * YEAR + 7 * DAY + 1)];
    for case in cases() {
        let want = expected(&case);
        assert_eq!(outcome(&case, Duration::zero(), Duration::zero()), want, "case `{}`", case.name);
        // Time passing changes nothing: the calendar and count rules
        // ignore now, and keep_within counts from the newest snapshot.
        if !case.now_matters {
            for d in later {
                let got = outcome(&case, Duration::zero(), d);
                assert_eq!(got, want, "case `{}` with now + {}", case.name, show_duration(d));
            }
        }
        // keep_within, keep_last and keep_tags only see differences in
        // time: moving snapshots and now together changes nothing.
        if !has_calendar_rule(&case.rules) {
            for d in shifts {
                let got = outcome(&case, d, Duration::zero());
                assert_eq!(got, want, "case `{}` with every time shifted by {d}", case.name);
            }
        }
    }
}

#[test]
fn a_future_snapshot_anchors_keep_within_once_now_passes_it() {
    let case = cases().into_iter().find(|c| c.now_matters).unwrap();
    let got = outcome(&case, Duration::zero(), Duration::days(60));
    let kept: Vec<&str> = got.iter().filter(|(_, v)| v.starts_with("keep")).map(|(k, _)| *k).collect();
    assert_eq!(kept, ["2026-12-20T12:00:00Z"]);
}

#[test]
fn decisions_come_grouped_newest_first() {
    let snaps: Vec<SnapshotRef> = [
        "2026-11-18T10:00:00Z host=b",
        "2026-11-19T10:00:00Z host=a",
        "2026-11-20T10:00:00Z host=b",
        "2026-11-17T10:00:00Z host=a",
    ]
    .iter()
    .map(|s| snap(s))
    .collect();
    let rules = KeepRules { keep_last: Some(1), ..rules() };
    let ds = apply(&snaps, &rules, t("2026-11-21T00:00:00Z")).unwrap();
    let order: Vec<(String, String)> =
        ds.iter().map(|d| (d.group.host.clone(), d.time.format("%d").to_string())).collect();
    let want = [("a", "19"), ("a", "17"), ("b", "20"), ("b", "18")];
    assert_eq!(order, want.map(|(h, d)| (h.to_string(), d.to_string())));
    assert_eq!(ds[0].group.to_string(), "host a, paths /x");
}

#[test]
fn rules_that_keep_nothing_are_refused() {
    let snaps = vec![snap("2026-11-20T10:00:00Z")];
    let now = t("2026-11-21T00:00:00Z");
    let refused = [
        rules(),
        KeepRules { keep_last: Some(0), keep_daily: Some(0), ..rules() },
        KeepRules { keep_within: Some(Duration::zero()), ..rules() },
        KeepRules { keep_within: Some(Duration::days(-1)), keep_last: Some(1), ..rules() },
        KeepRules { keep_tags: vec![" , ".into()], keep_last: Some(1), ..rules() },
    ];
    for r in refused {
        let e = apply(&snaps, &r, now).unwrap_err();
        assert!(matches!(e, Error::BadRetention(_)), "{r:?}: {e}");
    }
    assert!(apply(&snaps, &rules(), now).unwrap_err().to_string().contains("will not forget every snapshot"));
    // No snapshots at all is fine.
    assert!(apply(&[], &KeepRules { keep_last: Some(1), ..rules() }, now).unwrap().is_empty());
}

#[test]
fn rules_display_like_the_flags() {
    let r = KeepRules {
        keep_last: Some(3),
        keep_daily: Some(7),
        keep_weekly: Some(0),
        keep_within: Some(Duration::days(14)),
        keep_tags: vec!["db".into(), "a,b".into()],
        ..rules()
    };
    assert_eq!(r.to_string(), "keep-last 3, keep-daily 7, keep-within 14d, keep-tag db, keep-tag a,b");
    assert_eq!(rules().to_string(), "no rule");
}

#[test]
fn durations_show_in_the_policy_syntax() {
    for (d, shown) in [(DAY, "1d"), (7 * DAY, "7d"), (14 * DAY, "14d"), (YEAR, "365d")] {
        assert_eq!(show_duration(secs(d)), shown);
    }
    assert_eq!(show_duration(Duration::zero()), "0s");
    for d in [45 * MINUTE, 90 * MINUTE, 6 * HOUR, 26 * HOUR, DAY + 61, 7 * DAY, YEAR] {
        let shown = show_duration(secs(d));
        assert_eq!(shown.parse::<crate::duration::Duration>().unwrap().to_chrono(), secs(d), "{shown}");
    }
}

#[test]
fn decisions_serialise_with_reasons_as_text() {
    let snaps = vec![snap("2026-11-20T10:00:00Z tags=db"), snap("2026-11-19T10:00:00Z")];
    let r = KeepRules { keep_tags: vec!["db".into()], ..rules() };
    let ds = apply(&snaps, &r, t("2026-11-21T00:00:00Z")).unwrap();
    let v = serde_json::to_value(&ds).unwrap();
    assert_eq!(v[0]["action"], "keep");
    assert_eq!(v[0]["reasons"], serde_json::json!(["tag db"]));
    assert_eq!(v[1]["action"], "forget");
    assert_eq!(v[1]["reasons"], serde_json::json!(["matched no rule"]));
    assert_eq!(v[1]["group"]["paths"], serde_json::json!(["/x"]));
}

mod props;

#[test]
fn bug_forged_snapshots_pushed_real_ones_out_of_keep_last() {
    // Three real snapshots, then three forged newer ones the evidence check flagged.
    let real: Vec<SnapshotRef> = (1..=3).map(|d| snap(&format!("2026-03-0{d}T02:00:00Z host=db1"))).collect();
    let forged: Vec<SnapshotRef> = (4..=6).map(|d| snap(&format!("2026-03-0{d}T02:00:00Z host=db1 tags=f"))).collect();
    let all: Vec<SnapshotRef> = real.iter().chain(&forged).cloned().collect();
    let rules = KeepRules { keep_last: Some(3), ..Default::default() };
    let now = t("2026-03-10T00:00:00Z");
    // Without the flags, keep-last 3 keeps the forged ones and forgets every real one.
    let plain = apply(&all, &rules, now).unwrap();
    assert!(real.iter().all(|r| plain.iter().any(|d| d.id == r.id && !d.is_kept())));
    let held: BTreeMap<Id, String> = forged.iter().map(|f| (f.id, "claims another host".to_string())).collect();
    let d = apply_holding(&all, &rules, now, &held).unwrap();
    assert_eq!(d.len(), 6);
    for f in &forged {
        let x = d.iter().find(|x| x.id == f.id).unwrap();
        assert_eq!(x.action, Action::Hold);
        assert_eq!(x.reasons[0].to_string(), "held: claims another host");
        assert!(x.is_kept(), "a held snapshot is never forgotten");
    }
    assert!(real.iter().all(|r| d.iter().any(|x| x.id == r.id && x.action == Action::Keep)), "{d:#?}");
    // Newest first within the group, held ones in their place.
    assert!(d.windows(2).all(|w| w[0].time >= w[1].time));
}
