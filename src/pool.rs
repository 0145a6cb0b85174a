//! A small pool of scoped worker threads over a range of indices: restore's
//! fetchers and finishers, restore and drill verification, and drill
//! cleanup all fan their work out through it.

/// Runs `f(i)` for every `i < n` on `threads` threads (at most `n`).
pub fn parallel(threads: usize, n: usize, f: impl Fn(usize) + Sync) {
    parallel_with(threads, n, || (), |_, i| f(i));
}

/// [`parallel`], with state each thread makes once with `init` and passes
/// to every `f` it runs (a read buffer).
pub fn parallel_with<S>(threads: usize, n: usize, init: impl Fn() -> S + Sync, f: impl Fn(&mut S, usize) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n).max(1) {
            s.spawn(|| {
                let mut state = init();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(&mut state, i);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

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
}
