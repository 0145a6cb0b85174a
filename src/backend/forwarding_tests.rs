//! Every wrapper layer forwards what the storage says about itself: a
//! trait method with a default that a wrapper forgets falls back to the
//! default silently (the local backend's missing `probe_conditional_put`
//! was that bug). A new wrapper joins [`every_wrapper_forwards_what_the_storage_says`].

use std::sync::{Arc, Mutex};

use chrono::TimeZone;

use super::discard::Discarding;
use super::limit::{RateLimited, RateLimits};
use super::*;

/// A storage whose every answer about itself differs from the defaults.
#[derive(Default)]
struct Probe {
    calls: Mutex<Vec<String>>,
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap()
}

impl Backend for Probe {
    fn location(&self) -> String {
        "probe".into()
    }
    fn get(&self, _key: &str) -> BackendResult<Vec<u8>> {
        Ok(b"object".to_vec())
    }
    fn get_range(&self, _key: &str, _offset: u64, _length: u64) -> BackendResult<Vec<u8>> {
        Ok(b"range".to_vec())
    }
    fn put(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("put {key}"));
        Ok(())
    }
    fn put_mutable(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("put_mutable {key}"));
        Ok(())
    }
    fn put_data_pack(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("put_data_pack {key}"));
        Ok(())
    }
    fn put_hashed(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("put_hashed {key}"));
        Ok(())
    }
    fn put_known_absent(&self, key: &str, _data: &[u8]) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("put_known_absent {key}"));
        Ok(())
    }
    fn list(&self, _prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        Ok(vec![ObjectInfo { key: "data/00/x".into(), size: 3, modified: Some(at()) }])
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("delete {key}"));
        Ok(())
    }
    fn stat(&self, _key: &str) -> BackendResult<u64> {
        Ok(42)
    }
    fn concurrency(&self) -> usize {
        77
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn set_write_policy(&self, policy: &WritePolicy) {
        self.calls.lock().unwrap().push(format!("policy {}", policy.conditional_put));
    }
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        Ok(true)
    }
    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        Ok(BucketLockStatus { versioning: true, object_lock: true })
    }
    fn extend_retention(&self, key: &str, _mode: LockMode, _until: DateTime<Utc>) -> BackendResult<()> {
        self.calls.lock().unwrap().push(format!("extend {key}"));
        Ok(())
    }
    fn retention(&self, _key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        Ok(Some(at()))
    }
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        Ok(vec![Leftover { key: ".tmp-1".into(), size: 1, modified: std::time::UNIX_EPOCH }])
    }
    fn server_time(&self) -> Option<DateTime<Utc>> {
        Some(at())
    }
}

/// What `b` says about its storage, and what reached the probe.
fn answers(b: &dyn Backend, probe: &Probe) -> Vec<String> {
    b.set_write_policy(&WritePolicy { conditional_put: true, object_lock: None });
    let extended = b.extend_retention("data/00/x", LockMode::Compliance, at()).is_ok();
    // Writes that storage ignoring `If-None-Match` makes without a HEAD:
    // a wrapper that let them fall back to `put` would add the round trip.
    let hashed = blake3::hash(b"x").to_hex();
    b.put_data_pack(&format!("data/{}/{hashed}", &hashed[..2]), b"x").unwrap();
    b.put_hashed(&format!("index/{hashed}"), b"x").unwrap();
    b.put_known_absent("evidence/records/k/00000000000000000001", b"x").unwrap();
    let mut out = vec![
        format!("concurrency {}", b.concurrency()),
        format!("remote {}", b.is_remote()),
        format!("read-only {}", b.is_read_only()),
        format!("conditional {:?}", b.probe_conditional_put().ok()),
        format!("lock {:?}", b.bucket_lock_status().ok()),
        format!("retention {:?}", b.retention("data/00/x").ok()),
        format!("leftovers {}", b.leftovers().map(|l| l.len()).unwrap_or(0)),
        format!("clock {:?}", b.server_time()),
        format!("extended {extended}"),
    ];
    out.extend(probe.calls.lock().unwrap().drain(..));
    out
}

#[test]
fn every_wrapper_forwards_what_the_storage_says() {
    let direct = Arc::new(Probe::default());
    let want = answers(direct.as_ref(), &direct);
    assert!(want.contains(&"clock Some(2031-05-06T07:08:09Z)".to_string()), "{want:?}");
    assert!(want.contains(&"policy true".to_string()) && want.contains(&"extend data/00/x".to_string()));

    type Wrap = fn(Arc<Probe>) -> Box<dyn Backend>;
    let wrappers: [(&str, Wrap); 3] = [
        ("Arc", |p| Box::new(p as Arc<dyn Backend>)),
        ("counting", |p| Box::new(CountingBackend::new(p))),
        ("rate-limited", |p| Box::new(RateLimited::new(p, RateLimits::default()))),
    ];
    for (name, wrap) in wrappers {
        let probe = Arc::new(Probe::default());
        let b = wrap(probe.clone());
        assert_eq!(answers(b.as_ref(), &probe), want, "{name} does not forward everything");
    }
    // A dry run's layer forwards every question and no write (probing
    // for conditional writes writes an object).
    let probe = Arc::new(Probe::default());
    let b = Discarding::new(probe.clone());
    let got = answers(&b, &probe);
    let question = |a: &&String| !["policy", "extend", "conditional", "put"].iter().any(|w| a.starts_with(w));
    assert_eq!(got.iter().filter(question).collect::<Vec<_>>(), want.iter().filter(question).collect::<Vec<_>>());
    assert!(!got.iter().any(|a| a == "extend data/00/x"), "a dry run extended a retention: {got:?}");
    assert!(!got.iter().any(|a| a.starts_with("put")), "a dry run wrote: {got:?}");
}
