//! A least-recently-used cache bounded by the bytes of what it holds, and
//! a loader on top that loads each missing item once however many callers
//! want it at the same time.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::Result;
use crate::id::Id;

use super::Shared;

struct Slot<V> {
    value: V,
    weight: usize,
    tick: u64,
}

/// Holds at most `budget` bytes (as weighed by the caller); the least
/// recently used items go first. An item heavier than the whole budget is
/// not kept.
pub struct Lru<K, V> {
    map: HashMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    tick: u64,
    used: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub fn new(budget: usize) -> Lru<K, V> {
        Lru { map: HashMap::new(), order: BTreeMap::new(), tick: 0, used: 0, budget }
    }

    pub fn get(&mut self, k: &K) -> Option<V> {
        self.tick += 1;
        let slot = self.map.get_mut(k)?;
        self.order.remove(&slot.tick);
        slot.tick = self.tick;
        self.order.insert(self.tick, k.clone());
        Some(slot.value.clone())
    }

    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub fn insert(&mut self, k: K, value: V, weight: usize) {
        if let Some(old) = self.map.remove(&k) {
            self.order.remove(&old.tick);
            self.used -= old.weight;
        }
        if weight > self.budget {
            return;
        }
        while self.used + weight > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(s) = self.map.remove(&oldest) {
                self.used -= s.weight;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, k.clone());
        self.map.insert(k, Slot { value, weight, tick: self.tick });
        self.used += weight;
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

type Pending<V> = Arc<OnceLock<Shared<V>>>;

/// An [`Lru`] of items by id, filled by a load function. Callers that
/// want an item being loaded wait for that load instead of starting
/// another. Failed loads are not cached: the next caller tries again.
pub struct Loader<V> {
    lru: Mutex<Lru<Id, V>>,
    pending: Mutex<HashMap<Id, Pending<V>>>,
    loads: AtomicU64,
}

impl<V: Clone> Loader<V> {
    pub fn new(budget: usize) -> Loader<V> {
        Loader { lru: Mutex::new(Lru::new(budget)), pending: Mutex::new(HashMap::new()), loads: AtomicU64::new(0) }
    }

    pub fn get(&self, id: &Id, weight: impl FnOnce(&V) -> usize, load: impl FnOnce() -> Result<V>) -> Shared<V> {
        if let Some(v) = self.lru.lock().unwrap().get(id) {
            return Ok(v);
        }
        let slot = self.pending.lock().unwrap().entry(*id).or_default().clone();
        let result = slot
            .get_or_init(|| {
                // Another caller may have finished this load between the
                // look-up above and taking the slot.
                if let Some(v) = self.lru.lock().unwrap().get(id) {
                    return Ok(v);
                }
                self.loads.fetch_add(1, Ordering::Relaxed);
                let r = load().map_err(Arc::new);
                if let Ok(v) = &r {
                    let w = weight(v);
                    self.lru.lock().unwrap().insert(*id, v.clone(), w);
                }
                r
            })
            .clone();
        let mut pending = self.pending.lock().unwrap();
        if pending.get(id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            pending.remove(id);
        }
        result
    }

    /// Whether `id` is cached or being loaded.
    pub fn contains_or_pending(&self, id: &Id) -> bool {
        self.lru.lock().unwrap().contains(id) || self.pending.lock().unwrap().contains_key(id)
    }

    /// Loads done so far (cache misses).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.lru.lock().unwrap().used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn the_least_recently_used_go_first_and_the_budget_holds() {
        let mut l: Lru<u32, u32> = Lru::new(10);
        l.insert(1, 1, 4);
        l.insert(2, 2, 4);
        assert_eq!(l.get(&1), Some(1)); // 2 is now the oldest
        l.insert(3, 3, 4);
        assert_eq!(l.get(&2), None, "the least recently used went");
        assert_eq!((l.get(&1), l.get(&3)), (Some(1), Some(3)));
        assert_eq!(l.used(), 8);
        l.insert(4, 4, 11);
        assert_eq!(l.get(&4), None, "heavier than the budget: not kept");
        assert_eq!(l.len(), 2);
        l.insert(1, 10, 10);
        assert_eq!((l.get(&1), l.len(), l.used()), (Some(10), 1, 10), "replacing re-weighs");
    }

    #[test]
    fn loads_are_cached_and_failures_are_not() {
        let loader: Loader<Arc<Vec<u8>>> = Loader::new(1 << 20);
        let id = Id::hash_of(b"x");
        for _ in 0..3 {
            let v = loader.get(&id, |v| v.len(), || Ok(Arc::new(vec![7; 100]))).unwrap();
            assert_eq!(v.len(), 100);
        }
        assert_eq!(loader.loads(), 1, "three callers, one load");
        assert!(loader.contains_or_pending(&id));
        let other = Id::hash_of(b"y");
        let fail = loader.get(&other, |v| v.len(), || Err(Error::format("test object", "boom")));
        assert!(fail.is_err());
        assert!(!loader.contains_or_pending(&other), "a failed load leaves nothing behind");
        let ok = loader.get(&other, |v| v.len(), || Ok(Arc::new(vec![1])));
        assert_eq!(ok.unwrap().len(), 1, "a failed load is not remembered");
        assert_eq!(loader.loads(), 3);
        assert_eq!(loader.used(), 101);
    }
}
