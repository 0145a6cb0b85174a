//! Bandwidth limits (`--limit-upload`, `--limit-download`, in KiB/s as
//! restic's): a layer over any backend that paces the bytes it sends and
//! receives through a token bucket each way, shared by all the threads that
//! use the backend.
//!
//! The bucket fills at the rate and holds at most one second of it (the
//! burst). A transfer takes its bytes at once, and may leave the bucket in
//! debt; it then waits until the debt would be paid back, so the next
//! transfer, from whatever thread, waits its turn after it. Uploads are
//! paced before they are sent; downloads after they arrive (their size is
//! known only then), which slows the next one down. The bucket is pure
//! arithmetic on instants it is given ([`TokenBucket::take`]); only
//! [`RateLimited`] reads the clock and sleeps.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Backend, BackendResult, BucketLockStatus, Leftover, LockMode, ObjectInfo, WritePolicy};

/// The limits, in KiB/s; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub upload_kib: Option<u64>,
    pub download_kib: Option<u64>,
}

impl RateLimits {
    pub fn is_unlimited(&self) -> bool {
        self.upload_kib.is_none() && self.download_kib.is_none()
    }
}

/// A token bucket of bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: f64,
    /// The most it holds: one second of the rate.
    burst: f64,
    /// May be negative: a debt that the next takers wait out.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`, filling at `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64, now: Instant) -> TokenBucket {
        let rate = bytes_per_sec.max(1) as f64;
        TokenBucket { rate, burst: rate, tokens: rate, last: now }
    }

    /// Takes `n` bytes at `now`: how long the taker must wait before it
    /// sends (or after it received) them. Instants earlier than the last
    /// one seen count as that one.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A backend whose transfers are paced by [`RateLimits`].
pub struct RateLimited<B> {
    inner: B,
    up: Option<Mutex<TokenBucket>>,
    down: Option<Mutex<TokenBucket>>,
}

impl<B: Backend> RateLimited<B> {
    pub fn new(inner: B, limits: RateLimits) -> Self {
        let now = Instant::now();
        let bucket = |kib: u64| Mutex::new(TokenBucket::new(kib.saturating_mul(1024), now));
        RateLimited { inner, up: limits.upload_kib.map(bucket), down: limits.download_kib.map(bucket) }
    }
}

fn pace(bucket: &Option<Mutex<TokenBucket>>, n: usize) {
    if let Some(b) = bucket {
        let wait = b.lock().unwrap_or_else(|p| p.into_inner()).take(n as u64, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

impl<B: Backend> Backend for RateLimited<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        let r = self.inner.get(key)?;
        pace(&self.down, r.len());
        Ok(r)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        let r = self.inner.get_range(key, offset, length)?;
        pace(&self.down, r.len());
        Ok(r)
    }
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        pace(&self.up, data.len());
        self.inner.put(key, data)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        self.inner.delete(key)
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.inner.stat(key)
    }
    fn put_data_pack(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        pace(&self.up, data.len());
        self.inner.put_data_pack(key, data)
    }
    fn put_hashed(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        pace(&self.up, data.len());
        self.inner.put_hashed(key, data)
    }
    fn put_known_absent(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        pace(&self.up, data.len());
        self.inner.put_known_absent(key, data)
    }
    fn delete_many(&self, keys: &[String]) -> BackendResult<()> {
        self.inner.delete_many(keys)
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        pace(&self.up, data.len());
        self.inner.put_mutable(key, data)
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn set_write_policy(&self, policy: &WritePolicy) {
        self.inner.set_write_policy(policy)
    }
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        self.inner.probe_conditional_put()
    }
    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        self.inner.bucket_lock_status()
    }
    fn extend_retention(&self, key: &str, mode: LockMode, until: DateTime<Utc>) -> BackendResult<()> {
        self.inner.extend_retention(key, mode, until)
    }
    fn retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        self.inner.retention(key)
    }
    fn server_time(&self) -> Option<DateTime<Utc>> {
        self.inner.server_time()
    }
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        self.inner.leftovers()
    }
    fn delete_leftover(&self, key: &str) -> BackendResult<()> {
        self.inner.delete_leftover(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn a_full_bucket_lets_one_second_through_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100 * KIB, t0);
        assert_eq!(b.take(100 * KIB, t0), Duration::ZERO, "the burst: one second of the rate");
        // 50 KiB more at once: half a second of debt.
        assert_eq!(b.take(50 * KIB, t0), Duration::from_millis(500));
        // The next taker at the same instant waits behind that debt.
        assert_eq!(b.take(100 * KIB, t0), Duration::from_millis(1500));
        // 1.5 s later the debt is paid for all but the last taker's second.
        assert_eq!(b.take(0, t0 + Duration::from_millis(1500)), Duration::ZERO);
    }

    #[test]
    fn over_a_long_transfer_the_average_is_the_rate() {
        // 10 MiB in 64 KiB pieces at 256 KiB/s, each taker sending only
        // once its wait is over: the clock ends at (10 MiB - burst) / rate.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(256 * KIB, t0);
        let mut now = t0;
        for _ in 0..160 {
            now += b.take(64 * KIB, now);
        }
        let secs = (now - t0).as_secs_f64();
        assert!((secs - (10.0 * 1024.0 - 256.0) / 256.0).abs() < 1e-6, "{secs}");
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10 * KIB, t0);
        assert_eq!(b.take(10 * KIB, t0), Duration::ZERO);
        // An hour idle buys one second of burst, not an hour's.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.take(10 * KIB, later), Duration::ZERO);
        assert_eq!(b.take(10 * KIB, later), Duration::from_secs(1));
        // An instant from the past counts as the last one seen.
        assert_eq!(b.take(0, t0), Duration::from_secs(1));
    }

    #[test]
    fn limits_apply_to_the_direction_they_name() {
        let d = tempfile::tempdir().unwrap();
        let limited = RateLimited::new(
            super::super::LocalBackend::new(d.path()),
            RateLimits { upload_kib: Some(1), download_kib: None },
        );
        assert!(limited.up.is_some() && limited.down.is_none());
        assert!(RateLimits::default().is_unlimited());
        // Within the burst nothing waits; the data goes through unchanged.
        limited.put("config", b"0123456789").unwrap();
        assert_eq!(limited.get("config").unwrap(), b"0123456789");
    }
}
