//! A small pool of scoped worker threads over a range of indices: restore's
//! fetchers, writers and finishers, restore and drill verification, and
//! drill cleanup all fan their work out through it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Runs `f(i)` for every `i < n` on `threads` threads (at most `n`).
pub fn parallel(threads: usize, n: usize, f: impl Fn(usize) + Sync) {
    parallel_with(threads, n, || (), |_, i| f(i));
}

/// [`parallel`], with state each thread makes once with `init` and passes
/// to every `f` it runs (a read buffer).
pub fn parallel_with<S>(threads: usize, n: usize, init: impl Fn() -> S + Sync, f: impl Fn(&mut S, usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n).max(1) {
            s.spawn(|| {
                let mut state = init();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(&mut state, i);
                }
            });
        }
    });
}

/// What a scoped thread returned; its panic goes on in the caller.
pub fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs `there` on a scoped thread while `here` runs on this one, and
/// returns both: two reads that each cost a round trip, made at once. A
/// panic in either goes on in the caller.
pub fn beside<A, B: Send>(here: impl FnOnce() -> A, there: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let there = s.spawn(there);
        let here = here();
        (here, joined(there))
    })
}

/// Runs `step` while `value`, if any, is dropped on a scoped thread (a
/// lock, whose removal is a round trip on remote storage), and returns
/// what `step` returned.
pub fn drop_beside<T, D: Send>(value: Option<D>, step: impl FnOnce() -> T) -> T {
    match value {
        Some(v) => beside(step, move || drop(v)).0,
        None => step(),
    }
}

/// Runs `produce(i)` for every `i < n` on `threads` threads; the items each
/// call returns are run with `consume` by whichever thread is free. A
/// thread takes a waiting item before it produces more, so the items of at
/// most `threads` calls of `produce` wait at any time (restore: one fetched
/// range of a pack is written by every thread, directory by directory,
/// before the next range is fetched).
pub fn produce_consume<W: Send>(
    threads: usize,
    n: usize,
    produce: impl Fn(usize) -> Vec<W> + Sync,
    consume: impl Fn(W) + Sync,
) {
    struct Queue<W> {
        items: VecDeque<W>,
        /// Calls of `produce` under way: their items may still come.
        producing: usize,
    }
    /// Counts a call of `produce` as over even when it panics, so that the
    /// other threads stop waiting for its items.
    struct Producing<'a, W>(&'a Mutex<Queue<W>>, &'a Condvar);
    impl<W> Drop for Producing<'_, W> {
        fn drop(&mut self) {
            let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
            q.producing -= 1;
            self.1.notify_all();
        }
    }
    let next = AtomicUsize::new(0);
    let queue = Mutex::new(Queue { items: VecDeque::new(), producing: 0 });
    let ready = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut q = queue.lock().unwrap();
                loop {
                    if let Some(w) = q.items.pop_front() {
                        drop(q);
                        consume(w);
                        q = queue.lock().unwrap();
                        continue;
                    }
                    if next.load(Ordering::Relaxed) < n {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i < n {
                            q.producing += 1;
                            drop(q);
                            let guard = Producing(&queue, &ready);
                            let items = produce(i);
                            std::mem::forget(guard);
                            q = queue.lock().unwrap();
                            q.items.extend(items);
                            q.producing -= 1;
                            ready.notify_all();
                            continue;
                        }
                    }
                    if q.producing == 0 {
                        break;
                    }
                    q = ready.wait(q).unwrap();
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn every_index_runs_once_whatever_the_thread_count() {
        for threads in [0, 1, 3, 64] {
            let seen: Vec<AtomicUsize> = (0..50).map(|_| AtomicUsize::new(0)).collect();
            super::parallel(threads, seen.len(), |i| {
                seen[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1), "{threads} thread(s)");
        }
        super::parallel(4, 0, |_| panic!("no index when n is 0"));
    }

    #[test]
    fn beside_returns_both_and_passes_on_a_panic_from_either_side() {
        assert_eq!(super::beside(|| 1, || "two"), (1, "two"));
        for there in [false, true] {
            let r = std::panic::catch_unwind(|| {
                super::beside(|| assert!(there, "here fails"), || assert!(!there, "there fails"))
            });
            assert!(r.is_err(), "the panic on the {} side was lost", if there { "spawned" } else { "calling" });
        }
    }

    #[test]
    fn every_produced_item_is_consumed_once_and_few_wait_at_a_time() {
        for threads in [0, 1, 2, 5] {
            let consumed: Vec<AtomicUsize> = (0..40 * 7).map(|_| AtomicUsize::new(0)).collect();
            let waiting = AtomicUsize::new(0);
            let most = AtomicUsize::new(0);
            super::produce_consume(
                threads,
                40,
                |i| {
                    let items: Vec<usize> = (0..7).map(|k| i * 7 + k).collect();
                    most.fetch_max(waiting.fetch_add(items.len(), Ordering::SeqCst) + items.len(), Ordering::SeqCst);
                    items
                },
                |item| {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    consumed[item].fetch_add(1, Ordering::Relaxed);
                },
            );
            assert!(consumed.iter().all(|n| n.load(Ordering::Relaxed) == 1), "{threads} thread(s)");
            // Items wait only while their producers' threads are busy.
            let most = most.into_inner();
            assert!(most <= threads.max(1) * 7, "{most} items waited with {threads} thread(s)");
        }
        super::produce_consume(3, 0, |_| -> Vec<()> { panic!("no index when n is 0") }, |_| {});
    }

    #[test]
    fn a_producer_that_panics_does_not_leave_the_others_waiting() {
        let consumed = Mutex::new(Vec::new());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::produce_consume(
                3,
                6,
                |i| if i == 2 { panic!("producer {i} fails") } else { vec![i] },
                |i| consumed.lock().unwrap().push(i),
            )
        }));
        assert!(r.is_err(), "the panic is passed on");
        let mut seen = consumed.into_inner().unwrap_or_else(|e| e.into_inner());
        seen.sort();
        assert_eq!(seen, [0, 1, 3, 4, 5]);
    }
}
