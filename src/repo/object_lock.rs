//! The retention step: keeps the S3 Object Lock window over everything the
//! repository still holds, not only over what was written recently.
//!
//! Every object is written locked until `write time + period + margin`
//! ([`ObjectLock::until`]). The step, run by `cairn prune`, by
//! `cairn retention extend` and (on a schedule) by the daemon, extends the
//! objects whose lock ends within `period + margin / 2` to
//! `now + period + margin`. After a step at `t`, every object is locked
//! until at least `t + period + margin / 2`, so the window of `period`
//! stays whole as long as a step succeeds at least every `margin / 2`.
//!
//! To know which objects need it without a request per object, the step
//! keeps a log of its completed passes, and [`Model`] replays it over an
//! object's store time (from the listing): a lower bound of the object's
//! retain-until date. Each pass appends a record to `maintenance/retention/`
//! only after every extension it made succeeded, so a failed pass is simply
//! not in the log and its objects look older than they are (they are
//! extended again, never missed). A bound too low costs a request; the
//! storage refuses to shorten a lock, so it cannot do harm. Backup hosts
//! cannot write under `maintenance/` (see [`super::duties`]), so they
//! cannot forge the log to make the step skip objects.
//!
//! Per pass: one `ListObjectsV2` per 1000 objects, one `PutObjectRetention`
//! per object due, at most [`crate::backend::Backend::concurrency`] in
//! flight, and two small objects (the log read and written).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{is_mutable_key, ObjectLock};
use crate::error::{Error, Result};

use super::{blob, duties, limits, Repository};

/// Where the log of completed passes lives: `<seq, 12 digits>`, sealed.
pub const LOG_DIR: &str = "maintenance/retention";
/// How far cairn's clock (which sets a new object's retain-until date) may
/// be behind the storage's (which stamps its store time): S3 refuses a
/// SigV4 request whose time is more than 15 minutes off its own. The model
/// leans on the safe side by this much.
pub const CLOCK_SLACK_SECS: i64 = 15 * 60;

/// One log record: every completed pass so far, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogRecord {
    v: u32,
    seq: u64,
    passes: Vec<Pass>,
}

/// A completed pass of the retention step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass {
    /// The storage's clock (unix seconds) just before it listed the
    /// repository: it saw every object stored in an earlier second.
    pub listed: i64,
    /// The time it ran as (unix seconds): it extended locks to
    /// `at + period + margin`. The same as `listed`, except in tests and
    /// benchmarks that run a pass as if later.
    pub at: i64,
}

/// A lower bound of each object's retain-until date, from its store time
/// and the passes since: a pure function, so it can be tested without a
/// clock or a storage.
#[derive(Debug, Clone)]
pub struct Model {
    lock: ObjectLock,
    /// Ascending by `at`.
    passes: Vec<Pass>,
}

impl Model {
    pub fn new(lock: ObjectLock, mut passes: Vec<Pass>) -> Model {
        passes.sort_unstable_by_key(|p| (p.at, p.listed));
        Model { lock, passes }
    }

    fn period_margin(&self) -> i64 {
        (self.lock.period_secs + self.lock.margin_secs) as i64
    }

    /// The threshold of a pass at `t`: objects locked until before it are extended.
    fn threshold(&self, t: i64) -> i64 {
        t + self.lock.period_secs as i64 + self.lock.margin_secs as i64 / 2
    }

    /// A date the object stored at `stored` is surely locked until.
    pub fn locked_until(&self, stored: DateTime<Utc>) -> DateTime<Utc> {
        let stored = stored.timestamp();
        let mut until = stored + self.period_margin() - CLOCK_SLACK_SECS;
        let mut from = 0;
        loop {
            // The first pass whose threshold is above the current bound,
            // and that listed after the object was stored, extended it.
            let rest = &self.passes[from..];
            let i = rest.partition_point(|p| self.threshold(p.at) <= until);
            let Some(k) = rest[i..].iter().position(|p| p.listed > stored) else { break };
            until = rest[i + k].at + self.period_margin();
            from += i + k + 1;
        }
        DateTime::from_timestamp(until, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Whether a pass at `now` extends the object stored at `stored`.
    pub fn due(&self, stored: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.locked_until(stored).timestamp() < self.threshold(now.timestamp())
    }
}

/// How a pass runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtendOptions {
    /// Count what is due, change nothing.
    pub dry_run: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Serialize)]
pub struct ExtendReport {
    /// Objects the repository holds (outside `locks/`).
    pub objects: u64,
    /// Objects whose lock was extended (or would be, in a dry run).
    pub extended: u64,
    /// Their new retain-until date.
    pub until: DateTime<Utc>,
    /// The earliest lock end of the objects left alone, by the model.
    pub earliest_left: Option<DateTime<Utc>>,
    /// Requests made: listing pages, retention puts, the log.
    pub requests: u64,
    /// Passes in the log before this one.
    pub passes_before: usize,
    pub dry_run: bool,
}

fn log_key(seq: u64) -> String {
    format!("{LOG_DIR}/{seq:012}")
}

/// The newest log record that opens: `(its seq, the passes)`; an empty
/// log is `(None, [])`. A record that does not open is skipped for an
/// older one (fewer passes: objects look older, so nothing is missed).
fn load_log(repo: &Repository) -> Result<(Option<u64>, Vec<Pass>, u64)> {
    let prefix = format!("{LOG_DIR}/");
    let listed = repo.backend().list(&prefix)?;
    let mut seqs: Vec<u64> =
        listed.iter().filter_map(|o| o.key.strip_prefix(&prefix).and_then(|n| n.parse().ok())).collect();
    seqs.sort_unstable();
    let mut requests = 1;
    let newest = seqs.last().copied();
    for &seq in seqs.iter().rev() {
        requests += 1;
        let k = log_key(seq);
        let rec = repo
            .backend()
            .get(&k)
            .map_err(Error::from)
            .and_then(|sealed| {
                blob::open_object(repo.key(), &sealed, limits::RETENTION_LOG_RECORD)
                    .map_err(|e| crate::repo::blob_error(format!("`{k}`"), e))
            })
            .and_then(|plain| serde_json::from_slice::<LogRecord>(&plain).map_err(|e| Error::format(&k, e)));
        match rec {
            Ok(r) if r.seq == seq => return Ok((newest, r.passes, requests)),
            Ok(_) => repo.warn(format!("retention log record `{k}` names another seq; using an older one")),
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => repo.warn(format!("retention log record unreadable, using an older one: {e}")),
        }
    }
    Ok((newest, Vec::new(), requests))
}

/// Runs one pass of the retention step at `now` (see the module
/// documentation). Fails at once, before any change, when the credential
/// cannot write the log (a backup host's).
pub fn extend(repo: &Repository, now: DateTime<Utc>, opts: ExtendOptions) -> Result<ExtendReport> {
    let lock =
        repo.config().storage.object_lock.ok_or_else(|| Error::NotImmutable { location: repo.backend().location() })?;
    if !opts.dry_run {
        duties::probe_repo(repo, duties::Maintenance::Retention)?;
    }
    let (newest, passes, mut requests) = load_log(repo)?;
    let passes_before = passes.len();
    let model = Model::new(lock, passes.clone());
    let listed_at = storage_clock(repo)?;
    requests += 3;
    let listed = repo.backend().list("")?;
    requests += (listed.len() as u64).div_ceil(1000).max(1);
    let held: Vec<_> = listed.into_iter().filter(|o| !is_mutable_key(&o.key)).collect();
    let mut earliest_left: Option<DateTime<Utc>> = None;
    let mut due = Vec::new();
    for o in &held {
        // Without a store time, assume the worst: it is due.
        match o.modified {
            Some(m) if !model.due(m, now) => {
                let u = model.locked_until(m);
                earliest_left = Some(earliest_left.map_or(u, |e| e.min(u)));
            }
            _ => due.push(o.key.as_str()),
        }
    }
    let until = lock.until(now);
    let mut report = ExtendReport {
        objects: held.len() as u64,
        extended: due.len() as u64,
        until,
        earliest_left,
        requests,
        passes_before,
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(report);
    }
    report.requests += extend_all(repo, &due, lock, until)?;
    // Record the pass only now that every extension succeeded.
    let mut passes = passes;
    passes.push(Pass { listed: listed_at, at: now.timestamp() });
    let seq = newest.map_or(0, |s| s + 1);
    let rec = LogRecord { v: 1, seq, passes };
    let sealed = blob::seal_object(repo.key(), &serde_json::to_vec(&rec).expect("log record serialises"));
    repo.backend().put(&log_key(seq), &sealed).map_err(|e| {
        if e.is_already_exists() {
            Error::RetentionStepRace { seq }
        } else {
            e.into()
        }
    })?;
    report.requests += 1;
    Ok(report)
}

/// The storage's clock, in whole seconds: the store time of a small object
/// written (and removed again) under `locks/`. Everything stored in an
/// earlier second was stored before this returned.
fn storage_clock(repo: &Repository) -> Result<i64> {
    let key = format!("locks/clock-{}", crate::id::Id::random().to_hex());
    repo.backend().put_mutable(&key, b"")?;
    let stamped = repo.backend().list(&key)?.into_iter().find(|o| o.key == key).and_then(|o| o.modified);
    repo.backend().delete(&key)?;
    // A storage that stamps nothing: cairn's own clock, on the safe side.
    Ok(stamped.map_or(Utc::now().timestamp() - CLOCK_SLACK_SECS, |t| t.timestamp()))
}

/// Extends every key in `keys` to `until`, several at once; the first
/// error stops the others and is returned. Returns the requests made.
fn extend_all(repo: &Repository, keys: &[&str], lock: ObjectLock, until: DateTime<Utc>) -> Result<u64> {
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let workers = repo.backend().concurrency().clamp(1, 64).min(keys.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.lock().expect("never poisoned").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else { return };
                match repo.backend().extend_retention(key, lock.mode, until) {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.lock().expect("never poisoned").get_or_insert(e.into());
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("never poisoned") {
        Some(e) => Err(e),
        None => Ok(done.into_inner()),
    }
}

/// The lock end of each of `keys` that is still in the future at `now`
/// (a HEAD each, several at once), for prune's plan.
pub fn locked_until(repo: &Repository, keys: &[String], now: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>> {
    if repo.config().storage.object_lock.is_none() || keys.is_empty() {
        return Ok(Vec::new());
    }
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(String, DateTime<Utc>)>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let workers = repo.backend().concurrency().clamp(1, 64).min(keys.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else { return };
                match repo.backend().retention(key) {
                    Ok(Some(t)) if t > now => out.lock().expect("never poisoned").push((key.clone(), t)),
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        failed.lock().expect("never poisoned").get_or_insert(e.into());
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("never poisoned") {
        return Err(e);
    }
    let mut v = out.into_inner().expect("never poisoned");
    v.sort();
    Ok(v)
}

/// Parses a window such as `30d`, `12h` or `4w` into seconds (at least a day).
pub fn parse_period(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| format!("`{s}`: expected a number and a unit, such as 30d"))?;
    let unit_secs = match unit {
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(format!("`{s}`: the unit must be h, d, w or y")),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(|| format!("`{s}` is too long"))?;
    if secs < 86_400 {
        return Err(format!("`{s}`: an immutable window shorter than a day protects next to nothing"));
    }
    if secs > 100 * 365 * 86_400 {
        return Err(format!("`{s}`: more than 100 years"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LockMode;

    const DAY: i64 = 86_400;

    fn lock() -> ObjectLock {
        ObjectLock { mode: LockMode::Compliance, period_secs: 30 * DAY as u64, margin_secs: 14 * DAY as u64 }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// Passes that ran at the times they listed.
    fn passes_at(times: &[i64]) -> Vec<Pass> {
        times.iter().map(|&t| Pass { listed: t, at: t }).collect()
    }

    /// The real retain-until date after the given passes, computed the
    /// way a pass decides, object by object, one pass at a time.
    fn simulate(stored: i64, passes: &[i64]) -> i64 {
        let l = lock();
        let mut until = stored + (l.period_secs + l.margin_secs) as i64;
        for &t in passes.iter().filter(|&&t| t > stored) {
            let m = Model::new(l, passes_at(&passes.iter().copied().filter(|&p| p < t).collect::<Vec<_>>()));
            if m.due(at(stored), at(t)) {
                until = until.max(t + (l.period_secs + l.margin_secs) as i64);
            }
        }
        until
    }

    #[test]
    fn a_new_object_is_locked_for_period_and_margin_less_the_clock_slack() {
        let m = Model::new(lock(), vec![]);
        assert_eq!(m.locked_until(at(1000)).timestamp(), 1000 + 44 * DAY - CLOCK_SLACK_SECS);
        // Not due until its lock ends within period + margin / 2.
        assert!(!m.due(at(0), at(6 * DAY)));
        assert!(m.due(at(0), at(7 * DAY)));
    }

    #[test]
    fn daily_passes_extend_each_object_about_once_per_half_margin() {
        let passes: Vec<i64> = (1..=120).map(|d| d * DAY).collect();
        let stored = DAY / 2;
        let mut extensions = 0;
        for (i, &t) in passes.iter().enumerate() {
            let m = Model::new(lock(), passes_at(&passes[..i]));
            if m.due(at(stored), at(t)) {
                extensions += 1;
            }
        }
        // Extended by the first daily pass after half the 14-day margin has
        // gone: every 8 days, 15 times in 120 days (not 120 times).
        assert_eq!(extensions, 15, "{extensions} extensions in 120 days");
    }

    #[test]
    fn the_model_never_promises_more_than_the_passes_gave_and_always_covers_the_window() {
        // Irregular passes: gaps of 1 to 6 days.
        let mut passes = Vec::new();
        let mut t = 3 * DAY;
        for i in 0..200 {
            t += (1 + (i * 7919) % 6) * DAY + (i * 37) % 3600;
            passes.push(t);
        }
        for stored in [0, DAY / 3, 10 * DAY + 17, 100 * DAY + 5, t - 2 * DAY] {
            let real = simulate(stored, &passes);
            let model = Model::new(lock(), passes_at(&passes)).locked_until(at(stored)).timestamp();
            assert!(model <= real, "stored {stored}: model {model} above real {real}");
            // Right after each pass, the object is locked for the window and half the margin.
            for (i, &p) in passes.iter().enumerate().filter(|(_, &p)| p > stored) {
                let after = Model::new(lock(), passes_at(&passes[..=i])).locked_until(at(stored)).timestamp();
                assert!(after >= p + 30 * DAY + 7 * DAY, "stored {stored}, pass {p}: locked only to {after}");
            }
        }
    }

    #[test]
    fn a_pass_extends_only_what_it_listed() {
        // A pass listed at day 1 and ran as if at day 20 (a test's `--at`).
        let pass = Pass { listed: DAY, at: 20 * DAY };
        let m = Model::new(lock(), vec![pass]);
        // Stored before the listing: extended to day 20 + 44.
        assert_eq!(m.locked_until(at(0)).timestamp(), 64 * DAY);
        assert_eq!(m.locked_until(at(DAY - 1)).timestamp(), 64 * DAY);
        // Stored in the second of the listing, or after it: maybe not seen, not counted.
        assert_eq!(m.locked_until(at(DAY)).timestamp(), 45 * DAY - CLOCK_SLACK_SECS);
        assert_eq!(m.locked_until(at(5 * DAY)).timestamp(), 49 * DAY - CLOCK_SLACK_SECS);
    }

    #[test]
    fn periods_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_period("30d"), Ok(30 * 86_400));
        assert_eq!(parse_period("4w"), Ok(28 * 86_400));
        assert_eq!(parse_period("36h"), Ok(36 * 3600));
        assert!(parse_period("12h").is_err());
        assert!(parse_period("30").is_err());
        assert!(parse_period("d").is_err());
        assert!(parse_period("101y").is_err());
    }
}
