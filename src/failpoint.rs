//! Named points where a test build can kill the process, so that crash
//! tests stop cairn at a known step instead of after a guessed delay.
//!
//! `crate::failpoint::hit!("backup::before_snapshot")` marks a point. It
//! compiles to nothing unless the `failpoints` cargo feature is on, which
//! only tests turn on (`cargo test --features failpoints`, as
//! `scripts/test.sh` does). In such a build, the binary started with
//! `CAIRN_TEST_KILL_AT=NAME[:N]` sends itself SIGKILL the Nth time (the
//! first by default) any thread passes the point NAME: no destructor runs,
//! no lock is released, exactly as a crash or `kill -9` would leave it.

/// Every point there is, with what is on storage when it fires.
pub const POINTS: &[(&str, &str)] = &[
    ("writer::pack_stored", "a pack is stored; no index file lists it yet"),
    ("writer::index_stored", "an index file of stored packs is stored"),
    ("backup::before_snapshot", "a backup's packs and index files are stored; its snapshot is not"),
    ("backup::after_snapshot", "the snapshot is stored; the lock is still held, no evidence record yet"),
    ("prune::packs_written", "prune stored its repacked packs (and their index file)"),
    ("prune::index_written", "prune stored one new index file of kept and repacked packs"),
    ("prune::superseded", "prune stored the index file that supersedes the old ones; nothing deleted yet"),
    ("prune::packs_deleted", "prune deleted the unused packs; the superseded index files remain"),
    ("prune::index_deleted", "prune deleted one superseded index file"),
    ("keys::slot_stored", "a new key slot is stored (by `init` or `key add`)"),
    ("forget::snapshot_deleted", "forget deleted one snapshot"),
];

#[cfg(feature = "failpoints")]
macro_rules! hit {
    ($name:literal) => {
        fail::fail_point!($name)
    };
}

#[cfg(not(feature = "failpoints"))]
macro_rules! hit {
    ($name:literal) => {};
}

pub(crate) use hit;

/// The variable that names the point to die at, as `NAME` or `NAME:N`.
pub const KILL_AT_ENV: &str = "CAIRN_TEST_KILL_AT";

/// Arms the point named by `CAIRN_TEST_KILL_AT`, if set. Refuses a name
/// that is not in [`POINTS`], so that a test with a typo fails instead of
/// waiting for a kill that cannot come.
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> Result<(), String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(spec) = std::env::var_os(KILL_AT_ENV) else { return Ok(()) };
    let spec = spec.to_string_lossy();
    // Names hold `::`, so the count is what follows a last single `:`.
    let (name, nth) = match spec.rsplit_once(':') {
        Some((n, k)) if !n.ends_with(':') => {
            (n, k.parse::<usize>().map_err(|_| format!("{KILL_AT_ENV}=`{spec}`: N must be a number"))?)
        }
        _ => (&*spec, 1),
    };
    if nth == 0 || !POINTS.iter().any(|(p, _)| *p == name) {
        return Err(format!("{KILL_AT_ENV}=`{spec}`: no such failpoint (or N is 0); see src/failpoint.rs"));
    }
    let passed = AtomicUsize::new(0);
    fail::cfg_callback(name, move || {
        if passed.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    })
}
