//! Schedules: cron expressions, time zones, and jitter.
//!
//! **Syntax.** An expression has 5 fields (`minute hour day-of-month month
//! day-of-week`, standard crontab), 6 (a `second` field first) or 7 (and a
//! `year` last), or is one of `@yearly` (`@annually`), `@monthly`,
//! `@weekly`, `@daily` (`@midnight`) and `@hourly`. Each field is a list of
//! `*`, `N`, `N-M`, with an optional `/STEP` (`*/15`, `0-30/10`, `5/20`,
//! the last meaning 5 to the end of the range); `?` means `*` in the two day
//! fields; months and days take English names (`JAN`, `mon-fri`). Day of
//! week numbers are crontab's in every form: 0 and 7 are Sunday, 1 is
//! Monday. When both day fields are restricted, a day matching either one
//! fires, as in crontab.
//!
//! We parse every field ourselves, so that an error names the field and
//! the value at fault, and hand the `cron` crate a normalised expression of
//! plain lists. That crate then enumerates matching *wall-clock* times (we
//! run it in UTC as a stand-in for naive local time), and we place each
//! wall-clock time in the policy's time zone:
//!
//! - a time that does not exist (the hour skipped when clocks spring
//!   forward) fires at the same distance after the transition, as if the
//!   clock had not moved yet: 02:30 on a day going 02:00→03:00 fires at
//!   03:30 (once, even if 03:30 also matches);
//! - a time that happens twice (the hour repeated when clocks fall back)
//!   fires once, at its first occurrence, unless the hour field is `*`
//!   (the expression fires every hour): then it fires in both, so that
//!   hourly schedules keep their rhythm through the repeated hour.
//!
//! **Jitter** delays each fire by a pseudo-random amount in `[0, jitter]`
//! derived from the policy name and the slot time alone
//! ([`jitter_delay`]): it spreads policies that share a schedule, and is
//! the same on every run and every host, so it can be tested and reasoned
//! about. Nothing here reads the clock: "now" is always an argument.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::cronfield::{Field, DOM, DOW, HOUR, MINUTE, MONTH, SECOND, YEAR};
use crate::duration::Duration;

pub use super::cronfield::CronError;

/// A parsed, checked cron expression.
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CronExpr {
    source: String,
    /// Whether the expression fires every hour (see the module doc on
    /// repeated hours).
    every_hour: bool,
    /// One schedule, or two when both day fields are restricted (either
    /// may match).
    schedules: Vec<cron::Schedule>,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.source)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &CronExpr) -> bool {
        self.source == other.source
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl From<CronExpr> for String {
    fn from(c: CronExpr) -> String {
        c.source
    }
}

impl TryFrom<String> for CronExpr {
    type Error = String;
    fn try_from(s: String) -> Result<CronExpr, String> {
        CronExpr::parse(&s).map_err(|e| e.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))
    }
}

impl FromStr for CronExpr {
    type Err = Vec<CronError>;
    fn from_str(s: &str) -> Result<CronExpr, Vec<CronError>> {
        CronExpr::parse(s)
    }
}

fn join(set: &BTreeSet<u32>, shift: u32) -> String {
    set.iter().map(|v| (v + shift).to_string()).collect::<Vec<_>>().join(",")
}

impl CronExpr {
    /// Parses and checks an expression; every field in error is reported.
    pub fn parse(expr: &str) -> Result<CronExpr, Vec<CronError>> {
        let one = |offset, message: String| Err(vec![CronError { offset, message }]);
        let lead = expr.len() - expr.trim_start().len();
        let body = expr.trim();
        let text = match body.to_ascii_lowercase().as_str() {
            "" => return one(0, "expected a cron expression like \"0 3 * * *\"".into()),
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return one(
                    lead,
                    format!("unknown shorthand `{body}` (expected @yearly, @monthly, @weekly, @daily or @hourly)"),
                )
            }
            _ => body,
        };
        // Fields and their offsets inside `expr` (shorthands map to offset 0).
        let mut parts: Vec<(usize, &str)> = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    parts.push((if text == body { lead + s } else { 0 }, &text[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        let fields: &[Field] = match parts.len() {
            5 => &[MINUTE, HOUR, DOM, MONTH, DOW],
            6 => &[SECOND, MINUTE, HOUR, DOM, MONTH, DOW],
            7 => &[SECOND, MINUTE, HOUR, DOM, MONTH, DOW, YEAR],
            n => {
                return one(
                    lead,
                    format!(
                        "expected 5 fields (minute hour day-of-month month day-of-week), \
                         or 6 or 7 with a second first and a year last, found {n}"
                    ),
                )
            }
        };
        let mut errors = Vec::new();
        let mut sets = Vec::new();
        for (f, (off, text)) in fields.iter().zip(&parts) {
            match f.parse(text, *off) {
                Ok(s) => sets.push(s),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if parts.len() == 5 {
            sets.insert(0, BTreeSet::from([0]));
        }
        let all: [&Field; 7] = [&SECOND, &MINUTE, &HOUR, &DOM, &MONTH, &DOW, &YEAR];
        let list = |i: usize, force_all: bool| -> String {
            match sets.get(i) {
                None => "*".into(),
                Some(s) if force_all || all[i].full(s) => "*".into(),
                // The cron crate numbers days of week 1 (Sunday) to 7.
                Some(s) => join(s, u32::from(i == 5)),
            }
        };
        let dom_restricted = !DOM.full(&sets[3]);
        let dow_restricted = !DOW.full(&sets[5]);
        let variants: &[(bool, bool)] =
            if dom_restricted && dow_restricted { &[(false, true), (true, false)] } else { &[(false, false)] };
        let mut schedules = Vec::new();
        for &(dom_all, dow_all) in variants {
            let normal = format!(
                "{} {} {} {} {} {} {}",
                list(0, false),
                list(1, false),
                list(2, false),
                list(3, dom_all),
                list(4, false),
                list(5, dow_all),
                list(6, false)
            );
            match cron::Schedule::from_str(&normal) {
                Ok(s) => schedules.push(s),
                Err(e) => return one(lead, format!("not accepted by the scheduler: {e}")),
            }
        }
        let source = if text == body { parts.iter().map(|p| p.1).collect::<Vec<_>>().join(" ") } else { body.into() };
        let c = CronExpr { source, every_hour: HOUR.full(&sets[2]), schedules };
        if c.wall_times_after(NaiveDateTime::default()).next().is_none() {
            return one(lead, "this expression never fires (no such date)".into());
        }
        Ok(c)
    }

    /// The expression as written (whitespace normalised).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Matching wall-clock times strictly after `t`, in order.
    fn wall_times_after(&self, t: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        let start = Utc.from_utc_datetime(&t);
        let mut its: Vec<_> =
            self.schedules.iter().map(|s| s.after(&start).map(|d| d.naive_utc()).peekable()).collect();
        std::iter::from_fn(move || {
            let min = its.iter_mut().filter_map(|it| it.peek().copied()).min()?;
            for it in &mut its {
                if it.peek() == Some(&min) {
                    it.next();
                }
            }
            Some(min)
        })
    }

    /// The instants at which wall-clock time `t` fires in `tz` (see the
    /// module doc for skipped and repeated hours).
    fn instants(&self, tz: Tz, t: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(a) => vec![a.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) if self.every_hour => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => vec![a.min(b).with_timezone(&Utc)],
            LocalResult::None => {
                // In a gap: use the offset in force before it.
                let before = tz.offset_from_utc_datetime(&(t - chrono::Duration::hours(48))).fix();
                vec![Utc.from_utc_datetime(&(t - chrono::Duration::seconds(i64::from(before.local_minus_utc()))))]
            }
        }
    }

    /// The next `n` fire times strictly after `after`, for a schedule in
    /// time zone `tz` (without jitter).
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        // Skipped and repeated hours move instants by at most a few hours
        // relative to wall-clock order: look that far around.
        let margin = chrono::Duration::hours(3);
        let local_after = after.with_timezone(&tz).naive_local();
        let mut found = BTreeSet::new();
        if n == 0 {
            return Vec::new();
        }
        for t in self.wall_times_after(local_after - margin) {
            if found.len() >= n {
                let nth: &DateTime<Utc> = found.iter().nth(n - 1).expect("n found");
                if t > nth.with_timezone(&tz).naive_local() + margin {
                    break;
                }
            }
            found.extend(self.instants(tz, t).into_iter().filter(|i| *i > after));
        }
        found.into_iter().take(n).collect()
    }

    /// The next fire time strictly after `after`.
    pub fn next(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(tz, after, 1).into_iter().next()
    }
}

/// The delay added to slot `slot` of policy `policy`: in `[0, max]`,
/// millisecond resolution, a pure function of its arguments.
pub fn jitter_delay(policy: &str, slot: DateTime<Utc>, max: Duration) -> std::time::Duration {
    if max.is_zero() {
        return std::time::Duration::ZERO;
    }
    let mut h = blake3::Hasher::new();
    h.update(b"cairn schedule jitter\0");
    h.update(policy.as_bytes());
    h.update(&[0]);
    h.update(&slot.timestamp().to_le_bytes());
    let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    std::time::Duration::from_millis(x % max.as_secs().saturating_mul(1000).saturating_add(1))
}

/// An IANA time zone (`Europe/Berlin`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Timezone(pub Tz);

impl Default for Timezone {
    fn default() -> Timezone {
        Timezone(Tz::UTC)
    }
}

impl FromStr for Timezone {
    type Err = String;
    fn from_str(s: &str) -> Result<Timezone, String> {
        s.parse::<Tz>()
            .map(Timezone)
            .map_err(|_| format!("expected an IANA time zone like \"Europe/Berlin\" or \"UTC\", found \"{s}\""))
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl From<Timezone> for String {
    fn from(t: Timezone) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for Timezone {
    type Error = String;
    fn try_from(s: String) -> Result<Timezone, String> {
        s.parse()
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
