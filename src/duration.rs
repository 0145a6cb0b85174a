//! Durations as people write them in policies and flags (`--keep-within`,
//! `--grace`): `90s`, `90m`, `26h`, `7d`,
//! `2w`, or several parts together, largest first: `1h30m`, `1d12h`.
//!
//! Units are `s`, `m` (minutes), `h`, `d` (24 hours) and `w` (7 days).
//! There is no month or year unit, because their length varies; write
//! `30d` or `365d`. A duration is a whole number of seconds, shown in the
//! largest unit that divides it (`1h30m` is shown as `90m`, `14d` as `2w`),
//! and parses back to itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A span of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Duration {
    secs: u64,
}

const UNITS: [(char, u64); 5] = [('w', 7 * 86400), ('d', 86400), ('h', 3600), ('m', 60), ('s', 1)];

/// What a duration looks like, for error messages.
pub const EXPECTED: &str = "expected a duration like \"90m\", \"26h\" or \"7d\" (units s, m, h, d, w)";

/// A signed time span in seconds, to the millisecond (ages and periods in
/// the reports).
pub fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

impl Duration {
    pub const ZERO: Duration = Duration { secs: 0 };

    pub const fn from_secs(secs: u64) -> Duration {
        Duration { secs }
    }

    pub const fn as_secs(&self) -> u64 {
        self.secs
    }

    pub fn is_zero(&self) -> bool {
        self.secs == 0
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.secs)
    }

    pub fn to_chrono(self) -> chrono::Duration {
        i64::try_from(self.secs).ok().and_then(chrono::Duration::try_seconds).unwrap_or(chrono::Duration::MAX)
    }
}

impl FromStr for Duration {
    type Err = String;

    /// Parses `90m`, `1h30m`…; the error says what is wrong, after
    /// [`EXPECTED`].
    fn from_str(s: &str) -> Result<Duration, String> {
        let bad = |why: &str| format!("{EXPECTED}, found \"{s}\"{why}");
        if s.is_empty() {
            return Err(bad(""));
        }
        let mut secs: u64 = 0;
        let mut rest = s;
        let mut last_unit = u64::MAX;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad(""));
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad(": the number is too large"))?;
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(bad(": the number has no unit"));
            };
            let Some(&(_, size)) = UNITS.iter().find(|(c, _)| *c == unit) else {
                return Err(bad(&format!(": `{unit}` is not a unit")));
            };
            if size >= last_unit {
                return Err(bad(": give each unit once, largest first"));
            }
            last_unit = size;
            secs = n.checked_mul(size).and_then(|v| secs.checked_add(v)).ok_or_else(|| bad(": too large"))?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(Duration { secs })
    }
}

impl fmt::Display for Duration {
    /// In the largest unit that divides it: `26h`, `90m`, `2w`, `90061s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secs == 0 {
            return f.write_str("0s");
        }
        let (c, size) =
            UNITS.iter().copied().find(|(_, size)| self.secs.is_multiple_of(*size)).expect("seconds divide all");
        write!(f, "{}{c}", self.secs / size)
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for Duration {
    type Error = String;
    fn try_from(s: String) -> Result<Duration, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (s, secs) in [
            ("0s", 0),
            ("90s", 90),
            ("90m", 5400),
            ("26h", 93600),
            ("7d", 604800),
            ("2w", 1209600),
            ("1h30m", 5400),
            ("1d12h", 129600),
            ("1w2d3h4m5s", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ] {
            assert_eq!(s.parse::<Duration>(), Ok(Duration::from_secs(secs)), "{s}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for (s, why) in [
            ("", "found \"\""),
            ("90", "the number has no unit"),
            ("7 days", "` ` is not a unit"),
            ("7days", "found \"7days\""),
            ("1y", "`y` is not a unit"),
            ("1M", "`M` is not a unit"),
            ("m", "found \"m\""),
            ("-5m", "found \"-5m\""),
            ("1.5h", "`.` is not a unit"),
            ("30m1h", "largest first"),
            ("1h1h", "largest first"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999w", "too large"),
        ] {
            let e = s.parse::<Duration>().unwrap_err();
            assert!(e.starts_with(EXPECTED), "{s}: {e}");
            assert!(e.contains(why), "{s}: `{e}` should say `{why}`");
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (secs, s) in [
            (0, "0s"),
            (59, "59s"),
            (5400, "90m"),
            (93600, "26h"),
            (604800, "1w"),
            (1209600, "2w"),
            (864000, "10d"),
            (90061, "90061s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(d.to_string(), s);
            assert_eq!(s.parse::<Duration>(), Ok(d));
        }
        assert_eq!(Duration::from_secs(u64::MAX).to_chrono(), chrono::Duration::MAX);
    }
}
