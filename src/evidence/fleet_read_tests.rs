//! Reading a fleet's repositories: several records of each at once, both
//! repositories at once, and the same verification as one at a time.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;
use crate::backend::{BackendResult, LocalBackend};
use crate::evidence::synthetic::Synthetic;

/// How many requests each repository's backend says it takes at once.
const CONCURRENCY: usize = 4;

#[derive(Default)]
struct Flight {
    /// Record GETs in flight, per repository.
    in_flight: [usize; 2],
    /// The most at once, per repository.
    most: [usize; 2],
    /// Whether both repositories had a record GET in flight at once.
    both: bool,
    /// Whether each repository's first record GET was held.
    held: [bool; 2],
}

/// The GETs of records of both repositories, watched together.
#[derive(Default)]
struct Watch {
    flight: Mutex<Flight>,
    changed: Condvar,
}

/// A local backend that says it takes [`CONCURRENCY`] requests at once.
/// Its first record GET waits until another of its own has been in flight
/// beside it, and one of the other repository's beside one of its own:
/// read one at a time, or one
/// repository after the other, the peaks stay at one (after a 60 s
/// fallback that keeps such a failure from hanging; reads at once never
/// wait for it).
struct Watched {
    inner: LocalBackend,
    repo: usize,
    watch: Arc<Watch>,
}

impl Backend for Watched {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        if !key.starts_with("evidence/records/") {
            return self.inner.get(key);
        }
        let (me, other) = (self.repo, 1 - self.repo);
        {
            let mut f = self.watch.flight.lock().unwrap();
            f.in_flight[me] += 1;
            f.most[me] = f.most[me].max(f.in_flight[me]);
            f.both |= f.in_flight[other] > 0;
            self.watch.changed.notify_all();
            if !f.held[me] {
                f.held[me] = true;
                let _ = self
                    .watch
                    .changed
                    .wait_timeout_while(f, Duration::from_secs(60), |f| f.most[me] < 2 || !f.both)
                    .unwrap();
            }
        }
        let r = self.inner.get(key);
        self.watch.flight.lock().unwrap().in_flight[me] -= 1;
        r
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        self.inner.get_range(key, offset, length)
    }
    crate::backend::forward_writes_and_listings_to_inner!();
    fn concurrency(&self) -> usize {
        CONCURRENCY
    }
}

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
}

/// A repository's evidence: `hosts` hosts backing up two policies a day
/// for `days` days, and a drill on the last.
fn fleet(repository_byte: u8, names: &[&str], days: u32) -> Synthetic {
    let mut s = Synthetic::new(repository_byte);
    let hosts: Vec<usize> = names.iter().map(|n| s.host(n, true, day(1, 0))).collect();
    for d in 1..=days {
        for &h in &hosts {
            s.backup(h, "web", day(d, 2), 3);
            s.backup(h, "db", day(d, 3), 5);
        }
    }
    for &h in &hosts {
        s.drill(h, "db", day(days, 6), true, 600, (93_600, 3600));
    }
    s
}

#[test]
fn the_records_of_every_repository_are_read_several_at_once_and_verified_as_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let reader = MasterKey::random();
    let mut repos = [fleet(0xa1, &["h00", "h02", "h04"], 6), fleet(0xb2, &["h01", "h03"], 6)];
    // The auditor pins every host of both.
    let mut trust = Trust { pinned: true, ..Default::default() };
    for s in &repos {
        trust.keys.extend(s.trust.keys.clone());
    }
    let watch = Arc::new(Watch::default());
    let locations: Vec<String> = ["a", "b"].iter().map(|n| dir.path().join(n).display().to_string()).collect();
    for (s, l) in repos.iter_mut().zip(&locations) {
        s.trust = trust.clone();
        let b = LocalBackend::new(l);
        b.put("config", b"a repository").unwrap();
        s.store(&b, &reader);
    }
    let caller = std::thread::current().id();
    let open = |l: &str| -> Result<Arc<dyn Backend>> {
        // The CLI's request counters (`--stats`) are the opening thread's.
        assert_eq!(std::thread::current().id(), caller, "opened on the caller's thread");
        let repo = locations.iter().position(|x| x == l).unwrap();
        Ok(Arc::new(Watched { inner: LocalBackend::new(l), repo, watch: watch.clone() }))
    };
    let now = day(7, 0);
    let sources = read_sources(&locations, open, std::slice::from_ref(&reader), &trust, now);

    let f = watch.flight.lock().unwrap();
    assert!(f.most.iter().all(|m| *m >= 2), "records of one repository fetched {:?} at once", f.most);
    assert!(f.both, "the two repositories were read one after the other");
    for ((s, source), l) in repos.iter().zip(&sources).zip(&locations) {
        assert_eq!(&source.location, l, "the sources keep the order of the locations");
        let read = source.read.as_ref().unwrap();
        assert!(read.is_intact(), "{:?}", read.problems);
        let expected = s.verify(now);
        assert_eq!(read.records.len(), expected.records.len());
        assert_eq!(
            serde_json::to_value(read).unwrap(),
            serde_json::to_value(&expected).unwrap(),
            "read at once, verified as the records one by one in order"
        );
    }
}

#[test]
fn a_location_without_a_repository_is_named_and_the_other_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let reader = MasterKey::random();
    let s = fleet(0xa1, &["h00"], 2);
    let here = dir.path().join("here");
    let b = LocalBackend::new(here.clone());
    b.put("config", b"a repository").unwrap();
    s.store(&b, &reader);
    let locations = vec![dir.path().join("nothing").display().to_string(), here.display().to_string()];
    let open = |l: &str| -> Result<Arc<dyn Backend>> { Ok(Arc::new(LocalBackend::new(l))) };
    let sources = read_sources(&locations, open, std::slice::from_ref(&reader), &s.trust, day(3, 0));
    assert!(sources[0].read.as_ref().unwrap_err().contains("there is no cairn repository at"), "{:?}", sources[0].read);
    assert!(sources[1].read.as_ref().unwrap().is_intact());
}
