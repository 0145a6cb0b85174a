//! The parent snapshot's trees, fetched ahead of the scan.
//!
//! The scan loads a directory's tree in the parent snapshot when it enters
//! the directory ([`super::scan`]). On remote storage without the metadata
//! cache (a new host, `--no-cache`) each load is one round trip, so an
//! unchanged backup waits one round trip per directory. Workers fetch the
//! trees the scan will enter next, up to the backend's concurrency at once
//! (the workers and the scan together):
//! every loaded tree adds its subdirectories' trees to the queue, and the
//! queue is taken in the scan's order (depth first, by name), so the trees
//! fetched are those the scan reaches soonest.
//!
//! Memory stays bounded: at most [`AHEAD_PER_REQUEST`] trees per request in
//! flight, and [`AHEAD_BYTES`] bytes, are held ahead of the scan (one tree
//! always may be), and what the scan passed by (a directory deleted since
//! the parent snapshot, or excluded) is dropped as soon as it has. A tree
//! is known by its position in the parent snapshot: the entry indices from
//! the root, which sort in the scan's order. What the scan asks for that
//! was not fetched ahead (or was fetched for another id) it loads itself,
//! so the trees the scan sees are those it would load one at a time.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

use crate::error::Result;
use crate::id::Id;
use crate::repo::{Index, NodeKind, Repository, Tree};

/// A tree's position in the parent snapshot: the entry indices from the
/// root tree (the root is empty). Positions compare in the scan's order.
pub type Pos = Vec<u32>;

/// A directory's tree in the parent snapshot, with its position.
pub struct ParentTree {
    pub tree: Tree,
    pub pos: Pos,
    /// The tree's id (`None` for the snapshot's root).
    pub id: Option<Id>,
}

/// Trees held ahead per request the backend takes at once.
pub const AHEAD_PER_REQUEST: usize = 4;
/// Bytes of trees (as decoded, from the index) held ahead at most.
pub const AHEAD_BYTES: u64 = 64 << 20;

struct Fetched {
    id: Id,
    bytes: u64,
    tree: Result<Tree>,
}

#[derive(Default)]
struct State {
    /// Trees to fetch, taken smallest position first.
    todo: BTreeMap<Pos, Id>,
    /// Being fetched: position → (id, bytes).
    busy: BTreeMap<Pos, (Id, u64)>,
    ready: BTreeMap<Pos, Fetched>,
    /// Bytes of `busy` and `ready`.
    held: u64,
    /// The position the scan asked for last: all before it was passed by.
    cursor: Pos,
    stop: bool,
}

impl State {
    fn held_trees(&self) -> usize {
        self.busy.len() + self.ready.len()
    }

    /// Queues the subdirectories' trees of `tree`, found at `pos`, unless
    /// the scan passed them by.
    fn add_children(&mut self, pos: &Pos, tree: &Tree) {
        for (i, n) in tree.nodes.iter().enumerate() {
            if let (NodeKind::Dir, Some(id)) = (n.kind, n.subtree) {
                let mut p = pos.clone();
                p.push(i as u32);
                if p > self.cursor {
                    self.todo.insert(p, id);
                }
            }
        }
    }

    /// The scan is at `pos`: drop everything before it.
    fn pass_to(&mut self, pos: &Pos) {
        self.cursor = pos.clone();
        self.todo = self.todo.split_off(pos);
        let kept = self.ready.split_off(pos);
        for f in std::mem::replace(&mut self.ready, kept).into_values() {
            self.held -= f.bytes;
        }
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scan's handle on the workers; dropping it stops them.
pub struct TreesAhead<'a> {
    repo: &'a Repository,
    index: &'a Index,
    /// `None` when the backend takes one request at a time.
    shared: Option<Arc<Shared>>,
}

impl<'a> TreesAhead<'a> {
    /// Starts the workers in `scope`: one fewer than the backend takes
    /// requests at once, since the scan loads what was not fetched ahead
    /// itself; none for a backend that takes one.
    pub fn start<'scope>(scope: &'scope Scope<'scope, '_>, repo: &'a Repository, index: &'a Index) -> TreesAhead<'a>
    where
        'a: 'scope,
    {
        let workers = repo.backend().concurrency().saturating_sub(1);
        if workers == 0 {
            return TreesAhead { repo, index, shared: None };
        }
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let most = (workers + 1) * AHEAD_PER_REQUEST;
        for _ in 0..workers {
            let shared = shared.clone();
            scope.spawn(move || work(&shared, repo, index, most));
        }
        TreesAhead { repo, index, shared: Some(shared) }
    }

    /// The scan holds the root tree of the parent snapshot: its
    /// subdirectories are fetched ahead.
    pub fn root(&self, tree: &Tree) {
        if let Some(s) = &self.shared {
            s.lock().add_children(&Vec::new(), tree);
            s.changed.notify_all();
        }
    }

    /// The tree `id` at `pos`, for the scan entering it: fetched ahead, or
    /// loaded now. Positions asked for must not decrease.
    pub fn take(&self, pos: &Pos, id: &Id) -> Result<Tree> {
        let Some(s) = &self.shared else {
            return self.repo.load_tree(self.index, id);
        };
        let mut st = s.lock();
        st.pass_to(pos);
        // What was passed by frees room for the workers.
        s.changed.notify_all();
        loop {
            if st.ready.get(pos).is_some_and(|f| f.id == *id) {
                let f = st.ready.remove(pos).expect("just seen");
                st.held -= f.bytes;
                s.changed.notify_all();
                return f.tree;
            }
            if st.busy.get(pos).is_some_and(|(b, _)| b == id) {
                st = s.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            break;
        }
        st.todo.remove(pos);
        drop(st);
        let tree = self.repo.load_tree(self.index, id);
        if let Ok(t) = &tree {
            s.lock().add_children(pos, t);
            s.changed.notify_all();
        }
        tree
    }
}

impl Drop for TreesAhead<'_> {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.lock().stop = true;
            s.changed.notify_all();
        }
    }
}

/// A fetch in progress: released from `busy` if the worker unwinds.
struct Busy<'a> {
    s: &'a Shared,
    pos: &'a Pos,
    bytes: u64,
    done: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.s.lock();
            st.busy.remove(self.pos);
            st.held -= self.bytes;
            drop(st);
            self.s.changed.notify_all();
        }
    }
}

/// One worker: fetch the next tree while fewer than `most` trees and
/// [`AHEAD_BYTES`] are held ahead (one always may be).
fn work(s: &Shared, repo: &Repository, index: &Index, most: usize) {
    let mut st = s.lock();
    loop {
        if st.stop {
            return;
        }
        let room = st.held_trees() == 0 || (st.held_trees() < most && st.held < AHEAD_BYTES);
        let Some((pos, id)) = (if room { st.todo.pop_first() } else { None }) else {
            st = s.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let bytes = index.get(&id).map_or(0, |l| l.raw_length as u64);
        st.busy.insert(pos.clone(), (id, bytes));
        st.held += bytes;
        drop(st);
        // Should the fetch panic, the scan waiting for this position is
        // released (it then loads the tree itself) instead of waiting forever.
        let mut busy = Busy { s, pos: &pos, bytes, done: false };
        let tree = repo.load_tree(index, &id);
        busy.done = true;
        drop(busy);
        st = s.lock();
        st.busy.remove(&pos);
        if pos < st.cursor {
            st.held -= bytes; // passed by while it was fetched
        } else {
            if let Ok(t) = &tree {
                st.add_children(&pos, t);
            }
            st.ready.insert(pos, Fetched { id, bytes, tree });
        }
        s.changed.notify_all();
    }
}

#[cfg(test)]
#[path = "prefetch_tests.rs"]
mod tests;
