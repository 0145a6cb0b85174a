//! The fields of a cron expression: their names, ranges and value names,
//! and the parser of one field (a comma-separated list of `*`, `?`, `N`,
//! `N-M`, each with an optional `/STEP`) into the set of values it stands
//! for. Errors name the field and point at the token at fault, so that a
//! policy diagnostic can say "minute 61 is out of range 0-59" at the
//! column of the `61`. Days of week are crontab's: 0 and 7 are Sunday.

use std::collections::BTreeSet;

/// A problem in a cron expression: where (byte offset inside the
/// expression) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub offset: usize,
    pub message: String,
}

pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) names: &'static [&'static str],
    /// Whether `?` is allowed.
    pub(crate) day: bool,
}

const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
pub(crate) const SECOND: Field = Field { name: "second", min: 0, max: 59, names: &[], day: false };
pub(crate) const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], day: false };
pub(crate) const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], day: false };
pub(crate) const DOM: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[], day: true };
pub(crate) const MONTH: Field = Field { name: "month", min: 1, max: 12, names: MONTHS, day: false };
pub(crate) const DOW: Field = Field { name: "day-of-week", min: 0, max: 7, names: DAYS, day: true };
pub(crate) const YEAR: Field = Field { name: "year", min: 1970, max: 2100, names: &[], day: false };

impl Field {
    /// The value of a number or name at `offset`.
    fn value(&self, tok: &str, offset: usize) -> Result<u32, CronError> {
        let err = |message: String| Err(CronError { offset, message });
        if tok.is_empty() {
            return err(format!("{} is empty here: expected a number, a range or `*`", self.name));
        }
        if tok.bytes().all(|b| b.is_ascii_digit()) {
            return match tok.parse::<u32>() {
                Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
                _ => err(format!("{} {tok} is out of range {}-{}", self.name, self.min, self.max)),
            };
        }
        let lower = tok.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // Month names start at 1, day names at 0 (Sunday).
            return Ok(i as u32 + if self.names == MONTHS { 1 } else { 0 });
        }
        match self.names.first() {
            Some(first) => err(format!(
                "{} `{tok}` is neither a name ({}-{}) nor a number {}-{}",
                self.name,
                first.to_uppercase(),
                self.names[self.names.len() - 1].to_uppercase(),
                self.min,
                self.max
            )),
            None => err(format!("{} `{tok}` is not a number {}-{}", self.name, self.min, self.max)),
        }
    }

    /// The set of values a whole field (a comma-separated list) stands for.
    pub(crate) fn parse(&self, text: &str, offset: usize) -> Result<BTreeSet<u32>, CronError> {
        let mut set = BTreeSet::new();
        let mut at = offset;
        for item in text.split(',') {
            let (base, step) = match item.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (item, None),
            };
            let (lo, hi) = if base == "*" || base == "?" {
                if base == "?" && !self.day {
                    return Err(CronError {
                        offset: at,
                        message: format!("{}: `?` is allowed only in day-of-month and day-of-week", self.name),
                    });
                }
                (self.min, self.max)
            } else if let Some((a, b)) = base.split_once('-') {
                let (lo, hi) = (self.value(a, at)?, self.value(b, at + a.len() + 1)?);
                if lo > hi {
                    return Err(CronError {
                        offset: at,
                        message: format!("{} range {base} runs backwards", self.name),
                    });
                }
                (lo, hi)
            } else {
                let v = self.value(base, at)?;
                (v, if step.is_some() { self.max } else { v })
            };
            let step_at = at + base.len() + 1;
            let step = match step {
                None => 1,
                Some(s) => match s.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(CronError {
                            offset: step_at,
                            message: format!("{} step `{s}` must be a number of at least 1", self.name),
                        })
                    }
                },
            };
            set.extend((lo..=hi).step_by(step as usize));
            at += item.len() + 1;
        }
        if self.names == DAYS && set.remove(&7) {
            set.insert(0);
        }
        Ok(set)
    }

    pub(crate) fn full(&self, set: &BTreeSet<u32>) -> bool {
        let max = if self.names == DAYS { 6 } else { self.max };
        (self.min..=max).all(|v| set.contains(&v))
    }
}
