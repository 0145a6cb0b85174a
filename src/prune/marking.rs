//! The two phases of deletion, decided as a pure function of the marks,
//! the live locks, "now" and the safety margin.
//!
//! A prune never deletes a pack it has just found unused. It marks it
//! ([`crate::repo::marks`]); a later prune (or the same one, in a second
//! pass, when the margin is zero) deletes it only when the mark is
//! [ripe](MarkState::ripe) and its own walk of every snapshot, made after
//! it listed the locks, still finds the pack unused:
//!
//! - **the margin:** the mark is at least `margin` old by the storage's
//!   own clock ([`crate::repo::lock::storage_clock`]): from the later of
//!   the time it says and the time the storage stored it ([`made`]);
//! - **the locks:** every live lock under `locks/` names the mark among
//!   those its holder honours (a forget's and a prune's excepted: they
//!   store nothing a snapshot refers to). A backup that started before the
//!   mark existed cannot name it, so its packs wait until it ends;
//! - **not plausible:** a mark dated more than the lock clock skew in the
//!   future is never ripe; its packs still unused are marked again, and
//!   the prune removes it once the new mark is stored, so that backups do
//!   not leave its packs out of their dedup until a date that may never
//!   come.
//!
//! The live locks are those the storage wrote within the lock staleness
//! time by its own clock ([`crate::repo::lock::judge_by_storage`]): no
//! host's clock, neither the prune's nor the holder's, decides that a
//! running backup's lock no longer counts.
//!
//! Why this is enough, for a blob `u` that only a marked pack `P` holds,
//! and a backup `B` whose snapshot would refer to `u`: `B` could only take
//! `u` from its index if it did not honour the mark `M`, so `M` was in
//! neither of its two listings of marks. If `B`'s lock was there when the
//! prune listed the locks, it does not name `M`: `M` is not ripe. If `B`
//! ended before, its snapshot is there for the walk: `P` is used. If `B`
//! wrote its lock after the listing, its second listing of marks came after
//! `M` was made, so it saw `M` (and honours it) unless `M` was already
//! removed, which happens only after `P` is deleted and, before that, the
//! index files listing `P` are superseded: `B`'s index, loaded after that
//! listing, has no `P`. The margin is a second line, for a backup whose
//! lock went stale while it still ran.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::id::Id;
use crate::repo::lock::{LockInfo, FORGET_PURPOSE, MAX_CLOCK_SKEW, PRUNE_PURPOSE};
use crate::repo::marks::Marked;

/// How old a mark must be before its packs are deleted, unless told
/// otherwise (`prune --safety-margin`, and every scheduled prune): just
/// under a day, so that a daily prune deletes what the previous day's
/// marked. Backups that run longer are covered by their locks; the margin
/// covers a backup whose lock went stale (not refreshed for 30 minutes)
/// while it still ran.
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(23 * 3600);

/// A mark as this prune judges it.
#[derive(Debug, Clone, Serialize)]
pub struct MarkState {
    pub id: Id,
    pub time: DateTime<Utc>,
    /// Packs it names.
    pub packs: usize,
    /// When its margin has passed.
    pub deletable_from: DateTime<Utc>,
    /// The live locks that do not name it: its packs wait for them to end.
    pub waiting_for: Vec<String>,
    /// Dated more than the clock skew in the future: never ripe.
    pub suspicious: bool,
    /// Its unused packs are deleted now.
    pub ripe: bool,
}

/// Judges every mark at `now`, against the live locks under `locks/`.
pub fn judge(marks: &[Marked], locks: &[LockInfo], now: DateTime<Utc>, margin: Duration) -> Vec<MarkState> {
    let skew = chrono::Duration::from_std(MAX_CLOCK_SKEW).expect("small");
    let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
    marks
        .iter()
        .map(|m| {
            let waiting_for: Vec<String> = locks
                .iter()
                .filter(|l| l.purpose != FORGET_PURPOSE && l.purpose != PRUNE_PURPOSE)
                .filter(|l| !l.marks.as_ref().is_some_and(|ms| ms.contains(&m.id)))
                .map(|l| l.describe())
                .collect();
            let made = made(m);
            let suspicious = made > now + skew;
            let deletable_from = made.checked_add_signed(margin).unwrap_or(DateTime::<Utc>::MAX_UTC);
            MarkState {
                id: m.id,
                time: made,
                packs: m.mark.packs.len(),
                ripe: !suspicious && now + CLOCK_RESOLUTION > deletable_from && waiting_for.is_empty(),
                deletable_from,
                waiting_for,
                suspicious,
            }
        })
        .collect()
}

/// When a mark counts as made: the later of the time it says (the marking
/// prune's storage clock, or an older build's host clock) and the time the
/// storage stored it, by the storage's clock. Neither a wrong clock of the
/// marking host nor of this one makes a mark ripen early.
pub fn made(m: &Marked) -> DateTime<Utc> {
    match m.stored {
        Some(stored) => m.mark.time.max(stored),
        None => m.mark.time,
    }
}

/// How far apart two readings of one storage clock may be for one moment:
/// HTTP `Date` headers, which give "now" on S3, have whole seconds, while a
/// mark's time and its stored time may not. A mark ripens this much early,
/// which a margin of hours cannot notice; without it, a margin of zero
/// waited for the next second on S3.
pub const CLOCK_RESOLUTION: chrono::Duration = chrono::Duration::seconds(1);

/// Where a pack that prune would remove stands in the two phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum MarkStep {
    /// Not to be removed: nothing to mark.
    None,
    /// Marked by this prune; deleted by a later one.
    New,
    /// Marked earlier, and its mark is not ripe yet.
    Waiting { mark: Id, deletable_from: DateTime<Utc> },
    /// Unused, and its mark is ripe: deleted now.
    DeleteNow { mark: Id },
}

/// The marks of each pack, from the judged marks.
pub struct MarksByPack<'a> {
    states: &'a [MarkState],
    of: HashMap<Id, Vec<usize>>,
}

impl<'a> MarksByPack<'a> {
    /// `marks` and `states` in the same order ([`judge`]'s).
    pub fn new(marks: &[Marked], states: &'a [MarkState]) -> MarksByPack<'a> {
        let mut of: HashMap<Id, Vec<usize>> = HashMap::new();
        for (i, m) in marks.iter().enumerate() {
            for p in &m.mark.packs {
                of.entry(*p).or_default().push(i);
            }
        }
        MarksByPack { states, of }
    }

    /// Whether a plausible mark names the pack (a backup leaves such packs
    /// out of its index, and prune locates their blobs elsewhere first).
    pub fn is_marked(&self, pack: &Id) -> bool {
        self.of.get(pack).is_some_and(|ms| ms.iter().any(|&i| !self.states[i].suspicious))
    }

    /// The step of a pack prune would remove: `unused` when no snapshot
    /// uses it (to delete), false when it is to be repacked (its used blobs
    /// are copied now, and the pack itself waits for a mark like the rest).
    pub fn step(&self, pack: &Id, unused: bool) -> MarkStep {
        let marks: Vec<&MarkState> =
            self.of.get(pack).into_iter().flatten().map(|&i| &self.states[i]).filter(|s| !s.suspicious).collect();
        if unused {
            if let Some(m) = marks.iter().find(|m| m.ripe) {
                return MarkStep::DeleteNow { mark: m.id };
            }
        }
        // A ripe mark is removed at the end of this prune: only a mark that
        // stays keeps a pack marked.
        match marks.iter().filter(|m| !m.ripe).min_by_key(|m| m.deletable_from) {
            Some(m) => MarkStep::Waiting { mark: m.id, deletable_from: m.deletable_from },
            None => MarkStep::New,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::marks::{Mark, MARK_VERSION};
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, h, m, 0).unwrap()
    }

    fn mark(n: u8, time: DateTime<Utc>, packs: &[Id]) -> Marked {
        Marked { id: Id::hash_of(&[n]), mark: Mark { v: MARK_VERSION, time, packs: packs.to_vec() }, stored: None }
    }

    fn lock(purpose: &str, marks: Option<Vec<Id>>) -> LockInfo {
        LockInfo {
            exclusive: false,
            hostname: "h".into(),
            username: "u".into(),
            pid: 7,
            time: t(9, 0),
            refreshed: t(9, 0),
            purpose: purpose.into(),
            marks,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_mark_ripens_once_its_margin_passed_and_every_lock_names_it() {
        let m = mark(1, t(10, 0), &[Id::hash_of(b"p")]);
        let judged = |locks: &[LockInfo], now| judge(std::slice::from_ref(&m), locks, now, HOUR)[0].clone();
        let s = judged(&[], t(10, 59));
        assert!(!s.ripe && s.deletable_from == t(11, 0), "{s:?}");
        assert!(judged(&[], t(11, 0)).ripe, "the margin has passed");
        let naming = lock("backup", Some(vec![Id::hash_of(b"other"), m.id]));
        assert!(judged(&[naming], t(12, 0)).ripe, "a backup that honours it");
        let older = lock("backup", None);
        let s = judged(std::slice::from_ref(&older), t(12, 0));
        assert!(!s.ripe && s.waiting_for == [older.describe()], "a backup from before the mark: {s:?}");
        let other = lock("backup", Some(vec![Id::hash_of(b"other")]));
        assert!(!judged(&[other], t(12, 0)).ripe, "a backup that listed the marks before this one existed");
        assert!(!judged(&[lock("drill", None)], t(12, 0)).ripe, "a drill may read its packs");
        let quiet = [lock(FORGET_PURPOSE, None), lock(PRUNE_PURPOSE, None)];
        assert!(judged(&quiet, t(12, 0)).ripe, "forgets and prunes store nothing");
        let zero = judge(std::slice::from_ref(&m), &[], t(10, 0), Duration::ZERO);
        assert!(zero[0].ripe, "with no margin, at once");
    }

    #[test]
    fn bug_a_mark_made_in_the_same_second_as_the_next_prune_was_not_ripe_on_s3_with_no_margin() {
        // The marking prune read "now" as 10:00:00 plus 0.4 s since the
        // storage's last response; the next prune reads 10:00:00 plus 0.1 s
        // (its `Date` header has the same whole second).
        let later = |ms| t(10, 0) + chrono::Duration::milliseconds(ms);
        let m = Marked { stored: Some(later(400)), ..mark(1, later(400), &[Id::hash_of(b"p")]) };
        assert!(judge(std::slice::from_ref(&m), &[], later(100), Duration::ZERO)[0].ripe);
        assert!(!judge(std::slice::from_ref(&m), &[], later(100), Duration::from_secs(2))[0].ripe);
    }

    #[test]
    fn a_mark_from_the_future_never_ripens_and_its_packs_are_marked_again() {
        let p = Id::hash_of(b"p");
        let marks = [mark(1, t(23, 0), &[p])];
        let states = judge(&marks, &[], t(10, 0), Duration::ZERO);
        assert!(states[0].suspicious && !states[0].ripe);
        let by = MarksByPack::new(&marks, &states);
        assert!(!by.is_marked(&p));
        assert_eq!(by.step(&p, true), MarkStep::New);
    }

    #[test]
    fn each_pack_is_deleted_waits_or_is_marked_as_its_marks_say() {
        let (a, b, c, d) = (Id::hash_of(b"a"), Id::hash_of(b"b"), Id::hash_of(b"c"), Id::hash_of(b"d"));
        let marks = [mark(1, t(8, 0), &[a, b]), mark(2, t(9, 30), &[b, c])];
        let states = judge(&marks, &[], t(10, 0), HOUR);
        assert!(states[0].ripe && !states[1].ripe);
        let by = MarksByPack::new(&marks, &states);
        assert_eq!(by.step(&a, true), MarkStep::DeleteNow { mark: marks[0].id });
        assert_eq!(by.step(&b, true), MarkStep::DeleteNow { mark: marks[0].id }, "one ripe mark is enough");
        let waiting = MarkStep::Waiting { mark: marks[1].id, deletable_from: t(10, 30) };
        assert_eq!(by.step(&c, true), waiting);
        assert_eq!(by.step(&d, true), MarkStep::New, "not marked yet");
        // A pack to repack is never deleted now: its mark goes with this
        // prune when ripe, so it is marked again; it waits for one that stays.
        assert_eq!(by.step(&a, false), MarkStep::New);
        assert_eq!(by.step(&b, false), waiting);
    }
}
