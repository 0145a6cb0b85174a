//! Retention: which snapshots to keep, as a pure function of the snapshots
//! and "now".
//!
//! [`apply`] sorts the snapshots into groups (same host, same set of paths,
//! same policy) and applies the [`KeepRules`] to each group on its own,
//! walking from the newest snapshot to the oldest, with restic's semantics:
//!
//! - `keep_last n` keeps the `n` newest snapshots;
//! - `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly` and
//!   `keep_yearly n` keep the newest snapshot of each distinct hour, day, ISO
//!   week, month or year, until `n` periods have been kept. When a rule still
//!   has count left at the group's oldest snapshot, that one is kept too
//!   ("oldest daily"), so that a young repository keeps its whole history;
//! - `keep_within d` keeps every snapshot newer than `latest - d`, where
//!   `latest` is the group's newest snapshot that is not later than `now`.
//!   Anchoring on the newest snapshot rather than on the clock means that a
//!   host whose backups stopped keeps its last `d` of snapshots instead of
//!   losing all of them;
//! - `keep_tags` keeps every snapshot that has all the tags of one of the
//!   entries (an entry is a tag, or a comma-separated list of tags).
//!
//! A snapshot is kept when any rule keeps it, and every decision lists all
//! the rules that keep it. Periods are taken in UTC, not in local time as
//! restic does, so the outcome does not depend on the machine's time zone;
//! ties in time are broken by snapshot id, so it does not depend on the
//! order the snapshots were listed in either. Rules that could keep nothing
//! are refused: "forget everything" is never a default. `docs/RETENTION.md`
//! lists every difference from restic, with examples.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Snapshot;

/// What retention needs to know about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub policy: Option<String>,
}

impl SnapshotRef {
    pub fn new(id: Id, s: &Snapshot) -> SnapshotRef {
        SnapshotRef {
            id,
            time: s.time,
            host: s.hostname.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
            policy: s.policy.clone(),
        }
    }

    /// The group this snapshot's rules are applied in.
    pub fn group(&self) -> GroupKey {
        let mut paths = self.paths.clone();
        paths.sort();
        GroupKey { host: self.host.clone(), paths, policy: self.policy.clone() }
    }

    /// Whether the snapshot has every tag of `list`, a tag or a
    /// comma-separated list of tags (as in `--keep-tag a,b`).
    pub fn has_tags(&self, list: &str) -> bool {
        split_tags(list).all(|t| self.tags.iter().any(|have| have == t))
    }
}

fn split_tags(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Snapshots with the same key form a group; rules apply per group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    pub host: String,
    /// Sorted, so the order paths were given in does not matter.
    pub paths: Vec<String>,
    pub policy: Option<String>,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host {}, paths {}", self.host, self.paths.join(" "))?;
        if let Some(p) = &self.policy {
            write!(f, ", policy {p}")?;
        }
        Ok(())
    }
}

/// The retention rules. A count of 0 and a zero duration are the same as
/// leaving the rule out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepRules {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Duration>,
    /// Each entry is a tag, or comma-separated tags that must all be present.
    pub keep_tags: Vec<String>,
}

impl KeepRules {
    /// The counting rules that are in force, in evaluation order.
    fn counts(&self) -> Vec<(Rule, u32)> {
        [
            (Rule::Last, self.keep_last),
            (Rule::Hourly, self.keep_hourly),
            (Rule::Daily, self.keep_daily),
            (Rule::Weekly, self.keep_weekly),
            (Rule::Monthly, self.keep_monthly),
            (Rule::Yearly, self.keep_yearly),
        ]
        .into_iter()
        .filter_map(|(r, n)| n.filter(|n| *n > 0).map(|n| (r, n)))
        .collect()
    }

    fn within(&self) -> Option<Duration> {
        self.keep_within.filter(|d| *d > Duration::zero())
    }

    /// Whether no rule is in force, so that applying them would forget
    /// every snapshot.
    pub fn is_empty(&self) -> bool {
        self.counts().is_empty() && self.within().is_none() && self.keep_tags.is_empty()
    }

    /// Refuses rules that would forget everything, a negative duration and
    /// empty tag lists.
    pub fn validate(&self) -> Result<()> {
        if let Some(d) = self.keep_within.filter(|d| *d < Duration::zero()) {
            return Err(Error::BadRetention(format!("keep-within must not be negative (got {d})")));
        }
        if let Some(t) = self.keep_tags.iter().find(|t| split_tags(t).next().is_none()) {
            return Err(Error::BadRetention(format!("keep-tag `{t}` names no tag")));
        }
        if self.is_empty() {
            return Err(Error::BadRetention(
                "no retention rule given, and cairn will not forget every snapshot: give at least one of \
                 --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly \
                 (above 0), --keep-within or --keep-tag, or --policy NAME"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The rules in force, as `keep-last 3, keep-daily 7, keep-within 7d`.
impl fmt::Display for KeepRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.counts().iter().map(|(r, n)| format!("keep-{} {n}", r.name())).collect();
        if let Some(d) = self.within() {
            parts.push(format!("keep-within {}", show_duration(d)));
        }
        parts.extend(self.keep_tags.iter().map(|t| format!("keep-tag {t}")));
        if parts.is_empty() {
            return f.write_str("no rule");
        }
        f.write_str(&parts.join(", "))
    }
}

/// A retention rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    Tags,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::Within => "within",
            Rule::Tags => "tag",
        }
    }
}

/// The period (UTC) that `t` falls in for a calendar rule, as a number that
/// differs between periods.
fn period_key(rule: Rule, t: DateTime<Utc>) -> i64 {
    let (y, m, d, h) = (i64::from(t.year()), i64::from(t.month()), i64::from(t.day()), i64::from(t.hour()));
    match rule {
        Rule::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
        Rule::Daily => (y * 100 + m) * 100 + d,
        Rule::Weekly => {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        Rule::Monthly => y * 100 + m,
        Rule::Yearly => y,
        Rule::Last | Rule::Within | Rule::Tags => unreachable!("not a calendar rule"),
    }
}

/// The period (UTC) that `t` falls in, as shown in reasons.
fn period_label(rule: Rule, t: DateTime<Utc>) -> String {
    match rule {
        Rule::Hourly => t.format("%Y-%m-%d %H:00").to_string(),
        Rule::Daily => t.format("%Y-%m-%d").to_string(),
        Rule::Weekly => {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Rule::Monthly => t.format("%Y-%m").to_string(),
        Rule::Yearly => t.format("%Y").to_string(),
        Rule::Last | Rule::Within | Rule::Tags => unreachable!("not a calendar rule"),
    }
}

/// Why a snapshot is kept (or that nothing keeps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// One of the `n` newest snapshots of its group.
    Last { n: u32 },
    /// The newest snapshot of `period` for a calendar rule; `oldest` when it
    /// is kept only because it is the group's oldest snapshot and the rule
    /// had count left.
    Period { rule: Rule, period: String, oldest: bool },
    /// Newer than the group's latest snapshot minus `duration`.
    Within { duration: Duration },
    /// Has every tag of this `keep_tags` entry.
    Tags { tags: String },
    /// Forgotten: no rule keeps it.
    NoRule,
    /// Held out of retention: flagged by the evidence check (dated in the
    /// future, of another host, or recorded nowhere) until accepted.
    Held { why: String },
}

impl Reason {
    /// The rule behind this reason (`None` for [`Reason::NoRule`]).
    pub fn rule(&self) -> Option<Rule> {
        match self {
            Reason::Last { .. } => Some(Rule::Last),
            Reason::Period { rule, .. } => Some(*rule),
            Reason::Within { .. } => Some(Rule::Within),
            Reason::Tags { .. } => Some(Rule::Tags),
            Reason::NoRule | Reason::Held { .. } => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last { n } => write!(f, "last {n}"),
            Reason::Period { rule, period, oldest: false } => write!(f, "{} ({period})", rule.name()),
            Reason::Period { rule, period, oldest: true } => write!(f, "oldest {} ({period})", rule.name()),
            Reason::Within { duration } => write!(f, "within {}", show_duration(*duration)),
            Reason::Tags { tags } if tags.contains(',') => write!(f, "tags {tags}"),
            Reason::Tags { tags } => write!(f, "tag {tags}"),
            Reason::NoRule => f.write_str("matched no rule"),
            Reason::Held { why } => write!(f, "held: {why}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Forget,
    /// Neither kept nor forgotten: outside retention (see [`Reason::Held`]).
    Hold,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Keep => "keep",
            Action::Forget => "forget",
            Action::Hold => "hold",
        })
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub group: GroupKey,
    pub action: Action,
    /// Every rule that keeps the snapshot, or just [`Reason::NoRule`].
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// Whether the snapshot stays (kept, or held out of retention).
    pub fn is_kept(&self) -> bool {
        self.action != Action::Forget
    }
}

/// Decides, for every snapshot, whether `rules` keep it, and why.
///
/// The decisions come grouped (groups in [`GroupKey`] order), newest first
/// within a group, ties in time ordered by id. `now` matters only to tell
/// which snapshots lie in the future (clock skew): those are kept by
/// `keep_within` but never anchor it. Fails, deciding nothing, when the
/// rules are empty or invalid ([`KeepRules::validate`]).
pub fn apply(snapshots: &[SnapshotRef], rules: &KeepRules, now: DateTime<Utc>) -> Result<Vec<Decision>> {
    rules.validate()?;
    let mut groups: BTreeMap<GroupKey, Vec<&SnapshotRef>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(s.group()).or_default().push(s);
    }
    let mut out = Vec::with_capacity(snapshots.len());
    for (key, mut list) in groups {
        list.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
        apply_group(&key, &list, rules, now, &mut out);
    }
    Ok(out)
}

/// [`apply`], with the snapshots of `held` left out of retention: they
/// neither count for any rule (so forged snapshots cannot push real ones
/// out) nor are forgotten. Each gets a [`Action::Hold`] decision with its
/// reason, in its place among its group's.
pub fn apply_holding(
    snapshots: &[SnapshotRef],
    rules: &KeepRules,
    now: DateTime<Utc>,
    held: &BTreeMap<Id, String>,
) -> Result<Vec<Decision>> {
    let (aside, counted): (Vec<SnapshotRef>, Vec<SnapshotRef>) =
        snapshots.iter().cloned().partition(|s| held.contains_key(&s.id));
    let mut out = apply(&counted, rules, now)?;
    for s in aside {
        let why = held[&s.id].clone();
        out.push(Decision {
            id: s.id,
            time: s.time,
            group: s.group(),
            action: Action::Hold,
            reasons: vec![Reason::Held { why }],
        });
    }
    out.sort_by(|a, b| a.group.cmp(&b.group).then(b.time.cmp(&a.time)).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// A counting rule's state while walking a group from newest to oldest.
struct Bucket {
    rule: Rule,
    count: u32,
    left: u32,
    last: Option<i64>,
}

/// `list` is one group, sorted newest first.
fn apply_group(key: &GroupKey, list: &[&SnapshotRef], rules: &KeepRules, now: DateTime<Utc>, out: &mut Vec<Decision>) {
    let mut buckets: Vec<Bucket> =
        rules.counts().into_iter().map(|(rule, count)| Bucket { rule, count, left: count, last: None }).collect();
    // keep_within counts back from the newest snapshot that is not in the
    // future; when every snapshot is, from now (which keeps them all).
    let within = rules.within().map(|d| {
        let latest = list.iter().map(|s| s.time).find(|t| *t <= now).unwrap_or(now);
        // `None`: the cut-off lies before the earliest representable time.
        (d, latest.checked_sub_signed(d))
    });
    let oldest = list.len().saturating_sub(1);
    for (nr, s) in list.iter().enumerate() {
        let mut reasons = Vec::new();
        for b in buckets.iter_mut().filter(|b| b.left > 0) {
            let key = match b.rule {
                Rule::Last => nr as i64,
                r => period_key(r, s.time),
            };
            let new_period = b.last != Some(key);
            if new_period || nr == oldest {
                b.last = Some(key);
                b.left -= 1;
                reasons.push(match b.rule {
                    Rule::Last => Reason::Last { n: b.count },
                    r => Reason::Period { rule: r, period: period_label(r, s.time), oldest: !new_period },
                });
            }
        }
        if let Some((duration, cutoff)) = within {
            if cutoff.is_none_or(|c| s.time > c) {
                reasons.push(Reason::Within { duration });
            }
        }
        for list in rules.keep_tags.iter().filter(|t| s.has_tags(t)) {
            reasons.push(Reason::Tags { tags: split_tags(list).collect::<Vec<_>>().join(",") });
        }
        let action = if reasons.is_empty() {
            reasons.push(Reason::NoRule);
            Action::Forget
        } else {
            Action::Keep
        };
        out.push(Decision { id: s.id, time: s.time, group: key.clone(), action, reasons });
    }
}

/// Shows a duration in the syntax of policies and `--keep-within`
/// ([`crate::duration::Duration`]): whole days as days (`7d`, `14d`, `365d`,
/// as people write them), anything else as that type displays it. Either
/// way the text parses back to the same duration.
pub fn show_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    match u64::try_from(d.num_seconds()) {
        Ok(secs) if secs > 0 && secs.is_multiple_of(DAY) => format!("{}d", secs / DAY),
        Ok(secs) => crate::duration::Duration::from_secs(secs).to_string(),
        Err(_) => d.to_string(),
    }
}

#[cfg(test)]
mod tests;
