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
//!
//! `CAIRN_TEST_HITS_FILE=PATH` appends the name of every point passed to
//! PATH, one a line: a test counts the passes of a command that is not
//! killed, then kills the same command on the same repository at a pass
//! it knows will come.
//!
//! `CAIRN_TEST_PAUSE_AT=NAME[:N]` with `CAIRN_TEST_PAUSE_FIFO=PATH` (a
//! named pipe the test made) pauses there instead: the process opens the
//! pipe for reading, which the test sees when its own non-blocking open for
//! writing succeeds, and goes on once the test closes its end. Tests force
//! interleavings with it (a backup held after loading its index while a
//! prune runs) without guessing at delays.

/// Every point there is, with what is on storage when it fires.
pub const POINTS: &[(&str, &str)] = &[
    ("writer::pack_stored", "a pack is stored; no index file lists it yet"),
    ("writer::index_stored", "an index file of stored packs is stored"),
    ("backup::index_loaded", "a backup holds its lock and has loaded the index it deduplicates against"),
    ("backup::reading", "a reader took a file to read and the progress names it; the file is not opened yet"),
    ("backup::before_snapshot", "a backup's packs and index files are stored; its snapshot is not"),
    ("backup::after_snapshot", "the snapshot is stored; the lock is still held, no evidence record yet"),
    ("prune::snapshots_listed", "prune listed the snapshots it walks; it has not loaded the index yet"),
    ("prune::packs_written", "prune stored its repacked packs (and their index file)"),
    ("prune::index_written", "prune stored one new index file of kept and repacked packs"),
    ("prune::superseded", "prune stored the index file that supersedes the old ones; nothing deleted yet"),
    ("prune::index_deleted", "prune deleted one superseded index file; no mark of its own is stored, no pack deleted"),
    (
        "prune::marked",
        "prune deleted the superseded index files and stored its mark of the packs a later prune deletes",
    ),
    ("prune::packs_deleted", "prune deleted the packs of ripe marks; the ripe marks remain"),
    ("keys::slot_stored", "a new key slot is stored (by `init` or `key add`)"),
    ("forget::snapshot_deleted", "forget deleted one snapshot"),
    (
        "copy::snapshot_committed",
        "a copied snapshot is stored in the destination; no copy record is, in either repository",
    ),
    ("restore::between_batches", "a restore wrote (and verified) one batch; the next, if any, is not planned yet"),
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
/// The variable that names the point to pause at, as `NAME` or `NAME:N`.
pub const PAUSE_AT_ENV: &str = "CAIRN_TEST_PAUSE_AT";
/// The named pipe a pause waits on.
pub const PAUSE_FIFO_ENV: &str = "CAIRN_TEST_PAUSE_FIFO";
/// The file every pass of every point is appended to, one name a line.
pub const HITS_FILE_ENV: &str = "CAIRN_TEST_HITS_FILE";

/// Arms the points named by `CAIRN_TEST_KILL_AT` and `CAIRN_TEST_PAUSE_AT`,
/// and the record of passes `CAIRN_TEST_HITS_FILE`, if set. Refuses a name
/// that is not in [`POINTS`], so that a test with a typo fails instead of
/// waiting for a kill that cannot come.
///
/// The record lets a test learn which points a command passes, and how
/// often, in a run that is not killed, and then choose a kill that is
/// certain to come in the same command on the same repository: each pass
/// is appended (one `write` of `NAME\n` to a file opened for appending)
/// before the kill or pause of that pass, so a killed run's record ends
/// with the point it died at.
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> Result<(), String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let kill = point_from_env(KILL_AT_ENV)?;
    let pause = point_from_env(PAUSE_AT_ENV)?;
    let fifo = match pause {
        Some(_) => {
            Some(std::env::var_os(PAUSE_FIFO_ENV).ok_or_else(|| format!("{PAUSE_AT_ENV} needs {PAUSE_FIFO_ENV}"))?)
        }
        None => None,
    };
    let hits = std::env::var_os(HITS_FILE_ENV).map(std::path::PathBuf::from);
    for &(name, _) in POINTS {
        let kill_nth = kill.filter(|(p, _)| *p == name).map(|(_, n)| n);
        let pause_nth = pause.filter(|(p, _)| *p == name).map(|(_, n)| n);
        if kill_nth.is_none() && pause_nth.is_none() && hits.is_none() {
            continue;
        }
        let passed = AtomicUsize::new(0);
        let (hits, fifo) = (hits.clone(), fifo.clone());
        fail::cfg_callback(name, move || {
            let pass = passed.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(path) = &hits {
                record_hit(path, name);
            }
            if kill_nth == Some(pass) {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            if let (Some(fifo), true) = (&fifo, pause_nth == Some(pass)) {
                use std::io::Read;
                // Blocks until the test opens its end, then until it closes it.
                if let Ok(mut f) = std::fs::File::open(fifo) {
                    let _ = f.read_to_end(&mut Vec::new());
                }
            }
        })?;
    }
    Ok(())
}

/// Appends `NAME\n` to the record of passes in one write, so that lines of
/// threads passing at once never interleave. A pass that cannot be recorded
/// is left out: a record that undercounts only makes a test choose among
/// fewer passes, each still certain to come.
#[cfg(feature = "failpoints")]
fn record_hit(path: &std::path::Path, name: &str) {
    use std::io::Write;
    let line = format!("{name}\n");
    let _ =
        std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(line.as_bytes()));
}

/// The point and count a variable names, checked against [`POINTS`], so
/// that a test with a typo fails instead of waiting for a kill that cannot come.
#[cfg(feature = "failpoints")]
fn point_from_env(var: &str) -> Result<Option<(&'static str, usize)>, String> {
    let Some(spec) = std::env::var_os(var) else { return Ok(None) };
    let spec = spec.to_string_lossy();
    // Names hold `::`, so the count is what follows a last single `:`.
    let (name, nth) = match spec.rsplit_once(':') {
        Some((n, k)) if !n.ends_with(':') => {
            (n, k.parse::<usize>().map_err(|_| format!("{var}=`{spec}`: N must be a number"))?)
        }
        _ => (&*spec, 1),
    };
    match POINTS.iter().find(|(p, _)| *p == name) {
        Some((p, _)) if nth > 0 => Ok(Some((p, nth))),
        _ => Err(format!("{var}=`{spec}`: no such failpoint (or N is 0); see src/failpoint.rs")),
    }
}
