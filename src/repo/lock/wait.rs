//! Waiting for a repository lock instead of failing at once
//! (`--retry-lock DURATION`, and the daemon's own jobs).
//!
//! A command that meets a live lock in the way tries again after a pause
//! that doubles from [`FIRST_DELAY`] up to [`MAX_DELAY`], jittered so that
//! several waiters do not retry in step, and never sleeps past its
//! patience. It says once that it waits, and for whom ([`Waiting`], through
//! the caller's `on_wait`: the library prints nothing). When the patience
//! is spent the last [`Error::Locked`] is returned, naming the holder, its
//! hint saying how long it waited. Errors other than a lock in the way are
//! returned at once.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::{Error, Result};

/// How long the daemon's jobs wait for a lock in the way (a backup that
/// meets a prune, a prune that meets a backup) before they fail.
pub const DAEMON_LOCK_WAIT: Duration = Duration::from_secs(10 * 60);
/// The first pause between attempts.
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest pause between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// What a waiter is told once, when it starts to wait.
#[derive(Debug)]
pub struct Waiting<'a> {
    /// The holder of the lock in the way, as [`super::LockInfo::describe`] gives it.
    pub holder: &'a str,
    /// How long it will keep trying.
    pub patience: Duration,
}

/// Told once that the waiting starts (the caller prints or logs it).
pub type OnWait = Arc<dyn Fn(&Waiting<'_>) + Send + Sync>;

/// How to wait for a lock in the way.
#[derive(Clone)]
pub struct LockWait {
    pub patience: Duration,
    /// Called once, when the first attempt meets a live lock.
    pub on_wait: Option<OnWait>,
}

impl fmt::Debug for LockWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockWait").field("patience", &self.patience).finish_non_exhaustive()
    }
}

impl LockWait {
    pub fn new(patience: Duration) -> LockWait {
        LockWait { patience, on_wait: None }
    }

    pub fn on_wait(mut self, f: impl Fn(&Waiting<'_>) + Send + Sync + 'static) -> LockWait {
        self.on_wait = Some(Arc::new(f));
        self
    }
}

/// Time for the waiting loop: the system's, or a test's.
pub(super) trait Clock {
    fn now(&mut self) -> Instant;
    fn sleep(&mut self, d: Duration);
    /// A factor in [0.75, 1.25] applied to each pause.
    fn jitter(&mut self) -> f64;
}

pub(super) struct SystemClock;

impl Clock for SystemClock {
    fn now(&mut self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
    fn jitter(&mut self) -> f64 {
        rand::thread_rng().gen_range(0.75..=1.25)
    }
}

/// The pause after the `attempt`-th failed attempt (from 0): doubling from
/// [`FIRST_DELAY`], at most [`MAX_DELAY`], times `jitter`, and never more
/// than what is `left` of the patience.
pub(super) fn next_delay(attempt: u32, left: Duration, jitter: f64) -> Duration {
    let doubled = FIRST_DELAY.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    doubled.min(MAX_DELAY).mul_f64(jitter.clamp(0.75, 1.25)).min(left)
}

/// Calls `attempt` until it returns anything but [`Error::Locked`], or the
/// patience of `w` is spent.
pub(super) fn acquire_waiting<T>(
    w: &LockWait,
    clock: &mut impl Clock,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = clock.now() + w.patience;
    let mut tries = 0u32;
    loop {
        match attempt() {
            Err(Error::Locked { holder, remedy }) => {
                let now = clock.now();
                if now >= deadline {
                    if tries == 0 {
                        return Err(Error::Locked { holder, remedy });
                    }
                    let waited = crate::text::human_duration(w.patience.as_secs_f64());
                    return Err(Error::Locked {
                        holder,
                        remedy: format!("still locked after waiting {waited} (--retry-lock); {remedy}"),
                    });
                }
                if tries == 0 {
                    if let Some(tell) = &w.on_wait {
                        tell(&Waiting { holder: &holder, patience: w.patience });
                    }
                }
                let pause = next_delay(tries, deadline - now, clock.jitter());
                clock.sleep(pause);
                tries = tries.saturating_add(1);
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A clock that moves only when slept on, with no jitter.
    struct FakeClock {
        now: Instant,
        slept: Vec<Duration>,
    }

    impl Clock for FakeClock {
        fn now(&mut self) -> Instant {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.slept.push(d);
            self.now += d;
        }
        fn jitter(&mut self) -> f64 {
            1.0
        }
    }

    fn locked() -> Error {
        Error::Locked { holder: "backup of u@h (pid 7, since …)".into(), remedy: "wait for it".into() }
    }

    fn clock() -> FakeClock {
        FakeClock { now: Instant::now(), slept: Vec::new() }
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_never_pass_the_patience() {
        let ms = |a, left_ms| next_delay(a, Duration::from_millis(left_ms), 1.0).as_millis();
        assert_eq!(
            [ms(0, 99_000), ms(1, 99_000), ms(2, 99_000), ms(4, 99_000), ms(5, 99_000)],
            [500, 1000, 2000, 8000, 10_000]
        );
        assert_eq!(ms(40, 99_000), 10_000, "no overflow however long it waits");
        assert_eq!(ms(3, 300), 300, "cut to what is left");
        assert_eq!(next_delay(0, Duration::from_secs(9), 2.0), Duration::from_millis(625), "jitter is bounded");
    }

    #[test]
    fn it_tells_once_whom_it_waits_for_and_takes_the_lock_once_free() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let w = LockWait::new(Duration::from_secs(60))
            .on_wait(move |x| t.lock().unwrap().push((x.holder.to_string(), x.patience)));
        let mut c = clock();
        let mut calls = 0;
        let got = acquire_waiting(&w, &mut c, || {
            calls += 1;
            if calls < 4 {
                Err(locked())
            } else {
                Ok("the lock")
            }
        });
        assert_eq!(got.unwrap(), "the lock");
        assert_eq!(*told.lock().unwrap(), [("backup of u@h (pid 7, since …)".to_string(), Duration::from_secs(60))]);
        assert_eq!(c.slept, [500, 1000, 2000].map(Duration::from_millis));
    }

    #[test]
    fn a_lock_never_released_fails_after_the_patience_naming_the_holder() {
        let w = LockWait::new(Duration::from_secs(30));
        let mut c = clock();
        let start = c.now;
        let Err(Error::Locked { holder, remedy }) = acquire_waiting(&w, &mut c, || Err::<(), _>(locked())) else {
            panic!("took a lock that was never free")
        };
        assert_eq!(c.now - start, Duration::from_secs(30), "waited exactly its patience: {:?}", c.slept);
        assert_eq!(holder, "backup of u@h (pid 7, since …)");
        assert!(remedy.starts_with("still locked after waiting 30.0 s (--retry-lock); wait for it"), "{remedy}");
    }

    #[test]
    fn other_errors_and_no_patience_return_at_once() {
        let mut c = clock();
        let e = acquire_waiting(&LockWait::new(Duration::from_secs(60)), &mut c, || Err::<(), _>(Error::NoPassword));
        assert!(matches!(e, Err(Error::NoPassword)));
        let e = acquire_waiting(&LockWait::new(Duration::ZERO), &mut c, || Err::<(), _>(locked()));
        assert!(matches!(e, Err(Error::Locked { remedy, .. }) if remedy == "wait for it"));
        assert!(c.slept.is_empty());
    }
}
