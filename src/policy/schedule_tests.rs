use super::*;

use chrono_tz::Europe::Berlin;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn next(expr: &str, tz: Tz, after: &str, n: usize) -> Vec<String> {
    let c = CronExpr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
    c.next_after(tz, utc(after), n).iter().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).collect()
}

#[test]
fn cron_errors_name_the_field_and_point_at_it() {
    for (expr, offset, message) in [
        ("61 * * * *", 0, "minute 61 is out of range 0-59"),
        ("0 24 * * *", 2, "hour 24 is out of range 0-23"),
        ("0 0 32 * *", 4, "day-of-month 32 is out of range 1-31"),
        ("0 0 0 * *", 4, "day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", 6, "month 13 is out of range 1-12"),
        ("0 0 * * 8", 8, "day-of-week 8 is out of range 0-7"),
        ("0 0 * * FUN", 8, "day-of-week `FUN` is neither a name (SUN-SAT) nor a number 0-7"),
        ("0 0 * Foo *", 6, "month `Foo` is neither a name (JAN-DEC) nor a number 1-12"),
        ("0 0 1,x * *", 6, "day-of-month `x` is not a number 1-31"),
        ("*/0 * * * *", 2, "minute step `0` must be a number of at least 1"),
        ("*/x * * * *", 2, "minute step `x` must be a number of at least 1"),
        ("0 5-1 * * *", 2, "hour range 5-1 runs backwards"),
        ("0 1-99 * * *", 4, "hour 99 is out of range 0-23"),
        ("0 1, * * *", 4, "hour is empty here: expected a number, a range or `*`"),
        ("? * * * *", 0, "minute: `?` is allowed only in day-of-month and day-of-week"),
        ("60 0 0 * * *", 0, "second 60 is out of range 0-59"),
        ("0 0 0 * * * 1969", 12, "year 1969 is out of range 1970-2100"),
        ("  0 0 24 * * *", 6, "hour 24 is out of range 0-23"),
        ("@fortnightly", 0, "unknown shorthand `@fortnightly` (expected @yearly, @monthly, @weekly, @daily or @hourly)"),
        ("", 0, "expected a cron expression like \"0 3 * * *\""),
        ("* * * *", 0, "expected 5 fields (minute hour day-of-month month day-of-week), or 6 or 7 with a second first and a year last, found 4"),
        ("0 0 0 0 0 0 0 0", 0, "found 8"),
        ("0 0 30 2 *", 0, "this expression never fires (no such date)"),
    ] {
        let errs = CronExpr::parse(expr).map(|_| ()).unwrap_err();
        let e = &errs[0];
        assert!(e.message.starts_with(message) || e.message.ends_with(message), "{expr}: got `{}`", e.message);
        assert_eq!(e.offset, offset, "{expr}: {}", e.message);
    }
}

#[test]
fn every_wrong_field_is_reported() {
    let errs = CronExpr::parse("61 25 * 13 *").map(|_| ()).unwrap_err();
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.offset, e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (0, "minute 61 is out of range 0-59"),
            (3, "hour 25 is out of range 0-23"),
            (8, "month 13 is out of range 1-12")
        ]
    );
}

#[test]
fn accepted_forms() {
    for expr in [
        "0 3 * * *",
        "*/15 * * * *",
        "0-30/10 9-17 * * mon-fri",
        "5/20 * * * *",
        "0 0 1,15 jan,JUL ?",
        "0 0 ? * SUN",
        "30 0 3 * * *",
        "0 0 3 * * * 2030-2035",
        "@daily",
        "@Hourly",
        "@annually",
        "  0   3 * *   *  ",
    ] {
        assert!(CronExpr::parse(expr).is_ok(), "{expr}: {:?}", CronExpr::parse(expr).err());
    }
    assert_eq!(CronExpr::parse("  0   3 * *   *  ").unwrap().source(), "0 3 * * *");
    assert_eq!(CronExpr::parse(" @daily ").unwrap().source(), "@daily");
}

#[test]
fn five_fields_are_crontab_with_seconds_at_zero() {
    // 2025-03-31 is a Monday: 1 is Monday, as in crontab.
    assert_eq!(next("0 3 * * 1", Tz::UTC, "2025-03-28T00:00:00Z", 2), ["2025-03-31T03:00:00Z", "2025-04-07T03:00:00Z"]);
    assert_eq!(next("0 3 * * MON", Tz::UTC, "2025-03-28T00:00:00Z", 1), ["2025-03-31T03:00:00Z"]);
    // 0 and 7 are both Sunday.
    assert_eq!(next("0 3 * * 0", Tz::UTC, "2025-03-28T00:00:00Z", 1), ["2025-03-30T03:00:00Z"]);
    assert_eq!(next("0 3 * * 7", Tz::UTC, "2025-03-28T00:00:00Z", 1), ["2025-03-30T03:00:00Z"]);
    assert_eq!(
        next("0 3 * * 5-7", Tz::UTC, "2025-03-27T00:00:00Z", 3),
        ["2025-03-28T03:00:00Z", "2025-03-29T03:00:00Z", "2025-03-30T03:00:00Z"]
    );
    // The same day numbers with seconds.
    assert_eq!(next("15 0 3 * * 1", Tz::UTC, "2025-03-28T00:00:00Z", 1), ["2025-03-31T03:00:15Z"]);
    assert_eq!(
        next("*/20 * * * * *", Tz::UTC, "2025-03-28T00:00:00Z", 3),
        ["2025-03-28T00:00:20Z", "2025-03-28T00:00:40Z", "2025-03-28T00:01:00Z"]
    );
    assert_eq!(next("0 0 12 1 1 * 2030", Tz::UTC, "2025-03-28T00:00:00Z", 2), ["2030-01-01T12:00:00Z"]);
    assert_eq!(next("@weekly", Tz::UTC, "2025-03-28T00:00:00Z", 1), ["2025-03-30T00:00:00Z"]);
}

#[test]
fn either_day_field_matches_when_both_are_restricted() {
    // The 13th, and every Friday (2025-06-13 is both: once).
    assert_eq!(
        next("0 0 13 * 5", Tz::UTC, "2025-06-01T00:00:00Z", 4),
        ["2025-06-06T00:00:00Z", "2025-06-13T00:00:00Z", "2025-06-20T00:00:00Z", "2025-06-27T00:00:00Z"]
    );
    assert_eq!(
        next("0 0 1 * 1", Tz::UTC, "2025-06-28T00:00:00Z", 3),
        ["2025-06-30T00:00:00Z", "2025-07-01T00:00:00Z", "2025-07-07T00:00:00Z"]
    );
}

#[test]
fn fire_times_are_strictly_after_and_bounded() {
    assert_eq!(next("0 3 * * *", Tz::UTC, "2025-03-28T03:00:00Z", 1), ["2025-03-29T03:00:00Z"]);
    assert!(next("0 3 * * *", Tz::UTC, "2025-03-28T03:00:00Z", 0).is_empty());
    assert!(next("0 0 12 1 1 * 2020", Tz::UTC, "2025-03-28T00:00:00Z", 3).is_empty());
    assert_eq!(next("0 0 12 1 1 * 2030", Tz::UTC, "2025-03-28T00:00:00Z", 3).len(), 1);
}

#[test]
fn spring_forward_in_berlin() {
    // 2025-03-30: 02:00 CET becomes 03:00 CEST; 02:xx does not exist.
    // A daily 02:30 fires once, an hour later in wall-clock terms.
    assert_eq!(
        next("30 2 * * *", Berlin, "2025-03-28T12:00:00Z", 3),
        ["2025-03-29T01:30:00Z", "2025-03-30T01:30:00Z", "2025-03-31T00:30:00Z"]
    );
    // Hourly and half-hourly keep one fire per real hour / half hour.
    assert_eq!(
        next("0 * * * *", Berlin, "2025-03-29T22:30:00Z", 4),
        ["2025-03-29T23:00:00Z", "2025-03-30T00:00:00Z", "2025-03-30T01:00:00Z", "2025-03-30T02:00:00Z"]
    );
    assert_eq!(
        next("*/30 * * * *", Berlin, "2025-03-30T00:00:00Z", 4),
        ["2025-03-30T00:30:00Z", "2025-03-30T01:00:00Z", "2025-03-30T01:30:00Z", "2025-03-30T02:00:00Z"]
    );
    // A daily 03:00 is not moved.
    assert_eq!(next("0 3 * * *", Berlin, "2025-03-29T12:00:00Z", 2), ["2025-03-30T01:00:00Z", "2025-03-31T01:00:00Z"]);
}

#[test]
fn fall_back_in_berlin() {
    // 2025-10-26: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
    // A daily 02:30 fires once, at the first 02:30.
    assert_eq!(
        next("30 2 * * *", Berlin, "2025-10-25T12:00:00Z", 3),
        ["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z", "2025-10-28T01:30:00Z"]
    );
    // ... also when asked between the two 02:30s.
    assert_eq!(next("30 2 * * *", Berlin, "2025-10-26T00:45:00Z", 1), ["2025-10-27T01:30:00Z"]);
    // Hourly fires in both 02:00s: every real hour.
    assert_eq!(
        next("0 * * * *", Berlin, "2025-10-25T22:30:00Z", 4),
        ["2025-10-25T23:00:00Z", "2025-10-26T00:00:00Z", "2025-10-26T01:00:00Z", "2025-10-26T02:00:00Z"]
    );
    // Asked inside the first pass of the repeated hour (02:40 CEST).
    assert_eq!(
        next("*/30 * * * *", Berlin, "2025-10-26T00:40:00Z", 3),
        ["2025-10-26T01:00:00Z", "2025-10-26T01:30:00Z", "2025-10-26T02:00:00Z"]
    );
    // Asked inside the second pass (02:10 CET).
    assert_eq!(
        next("*/30 * * * *", Berlin, "2025-10-26T01:10:00Z", 2),
        ["2025-10-26T01:30:00Z", "2025-10-26T02:00:00Z"]
    );
}

#[test]
fn jitter_is_deterministic_and_within_bounds() {
    let max = Duration::from_secs(900);
    let slot = utc("2025-03-28T03:00:00Z");
    let j = jitter_delay("web", slot, max);
    assert_eq!(j, jitter_delay("web", slot, max), "same inputs, same delay");
    assert_eq!(jitter_delay("web", slot, Duration::ZERO), std::time::Duration::ZERO);
    let mut delays = Vec::new();
    for i in 0..1000 {
        let d = jitter_delay("web", slot + chrono::Duration::hours(i), max);
        assert!(d <= max.to_std(), "{d:?}");
        delays.push(d.as_secs());
    }
    // Spread over the whole range, and different for another policy.
    assert!(delays.iter().any(|d| *d < 90) && delays.iter().any(|d| *d > 810), "{delays:?}");
    let other: Vec<u64> =
        (0..1000).map(|i| jitter_delay("db", slot + chrono::Duration::hours(i), max).as_secs()).collect();
    assert_ne!(delays, other);
    assert!(jitter_delay("web", slot, Duration::from_secs(1)) <= std::time::Duration::from_secs(1));
    jitter_delay("web", slot, Duration::from_secs(u64::MAX)); // no overflow
}

#[test]
fn timezones_parse_by_iana_name() {
    assert_eq!("Europe/Berlin".parse::<Timezone>().unwrap().to_string(), "Europe/Berlin");
    assert_eq!(Timezone::default().to_string(), "UTC");
    let e = "Mars/Olympus".parse::<Timezone>().unwrap_err();
    assert_eq!(e, "expected an IANA time zone like \"Europe/Berlin\" or \"UTC\", found \"Mars/Olympus\"");
}
