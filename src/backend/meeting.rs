//! A test wrapper that proves requests go out side by side: the first
//! request for each watched prefix (a listing, or a read of a key under
//! it; a watch written `delete PREFIX`, `put PREFIX` or `range PREFIX`
//! watches deletes, [`Backend::put_known_absent`] or ranged reads
//! instead) waits until every watch of its round has a request under
//! way; then the next round is watched. Requests made one
//! after another never all meet; the first waits alone, and after
//! [`GIVE_UP`] the wrapper lets it through and says so ([`Meeting::met`]).

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Backend, BackendResult, ObjectInfo};

/// How long the first arrival waits for the others: far above any
/// scheduling delay, and only ever waited out when the test fails.
const GIVE_UP: Duration = Duration::from_secs(60);

/// What a watch waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Delete,
    Put,
    Range,
}

pub(crate) struct Meeting {
    inner: Arc<dyn Backend>,
    rounds: Vec<Vec<(Kind, String)>>,
    state: Mutex<State>,
    all_here: Condvar,
}

#[derive(Default)]
struct State {
    armed: bool,
    round: usize,
    arrived: HashSet<usize>,
    gave_up: bool,
}

impl Meeting {
    /// Watches the prefixes of each round in turn, unarmed: requests pass
    /// until [`Meeting::arm`].
    pub(crate) fn new(inner: Arc<dyn Backend>, rounds: &[&[&str]]) -> Arc<Meeting> {
        let watch = |w: &&str| match w.split_once(' ') {
            Some(("delete", p)) => (Kind::Delete, p.to_string()),
            Some(("put", p)) => (Kind::Put, p.to_string()),
            Some(("range", p)) => (Kind::Range, p.to_string()),
            _ => (Kind::Read, w.to_string()),
        };
        let rounds = rounds.iter().map(|r| r.iter().map(watch).collect()).collect();
        Arc::new(Meeting { inner, rounds, state: Mutex::default(), all_here: Condvar::new() })
    }

    pub(crate) fn arm(&self) {
        *self.state.lock().unwrap() = State { armed: true, ..State::default() };
    }

    /// Whether, in every round, each watched prefix had a request under
    /// way at once.
    pub(crate) fn met(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.round == self.rounds.len() && !s.gave_up
    }

    /// Whether a request waited for the others until [`GIVE_UP`].
    pub(crate) fn gave_up(&self) -> bool {
        self.state.lock().unwrap().gave_up
    }

    fn arrive(&self, kind: Kind, key: &str) {
        let mut s = self.state.lock().unwrap();
        let round = s.round;
        if !s.armed || s.gave_up || round == self.rounds.len() {
            return;
        }
        let watched = &self.rounds[round];
        let Some(i) = watched.iter().position(|(k, w)| *k == kind && key.starts_with(w.as_str())) else { return };
        if !s.arrived.insert(i) {
            return;
        }
        if s.arrived.len() == watched.len() {
            s.round += 1;
            s.arrived.clear();
            self.all_here.notify_all();
            return;
        }
        let (mut s, timeout) =
            self.all_here.wait_timeout_while(s, GIVE_UP, |s| s.round == round && !s.gave_up).expect("meeting lock");
        if timeout.timed_out() {
            s.gave_up = true;
            self.all_here.notify_all();
        }
    }
}

impl Backend for Meeting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.arrive(Kind::Read, key);
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        self.arrive(Kind::Range, key);
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put(key, data)
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put_mutable(key, data)
    }
    fn put_data_pack(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put_data_pack(key, data)
    }
    fn put_hashed(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put_hashed(key, data)
    }
    fn put_known_absent(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.arrive(Kind::Put, key);
        self.inner.put_known_absent(key, data)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.arrive(Kind::Read, prefix);
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        self.arrive(Kind::Delete, key);
        self.inner.delete(key)
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.inner.stat(key)
    }
}
