//! Backup: scan the sources, store what is new, commit a snapshot.
//!
//! Order of events, which is what makes a crash at any instant harmless:
//! 1. take the lock, naming the prune marks it honours, and load the index
//!    without the marked packs; adopt packs that an interrupted backup
//!    stored but never indexed (marked ones excepted);
//! 2. scan the sources against the parent snapshot ([`scan`]), reading
//!    changed files through the parallel pipeline ([`pipeline`]) and
//!    writing each directory's tree as soon as it is complete ([`dirs`]),
//!    bottom-up;
//! 3. store the last packs and the index (packs first, then their index);
//! 4. write the snapshot: the commit point. Tree packs may be stored
//!    before the data packs their trees refer to, but no snapshot refers
//!    to any of them before every pack of the session is stored.

mod dirfd;
pub mod dirs;
pub mod excludes;
mod held_dirs;
pub mod pipeline;
pub mod prefetch;
pub mod scan;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::host;
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::write_start;
use crate::repo::writer::RepoWriter;
use crate::repo::{BlobKind, Index, Node, NodeKind, Repository, Snapshot, Summary, Tree};

use excludes::Excludes;
use pipeline::Counters;
use scan::Walker;

/// Receives progress events; every method has a no-op default.
pub trait Progress: Sync {
    /// Regular files found so far and their bytes: the total grows while
    /// the scan goes on (files are read as they are found).
    fn scanned(&self, _files: u64, _bytes: u64) {}
    /// A regular file found by the scan goes to the readers: it was
    /// examined (`lstat`) but is not opened yet. Called on the scan's thread.
    fn queued(&self, _path: &Path) {}
    /// A reader takes a regular file to read it now (several files are
    /// read at once, one per reader). Called on the reader's thread, just
    /// before it opens the file.
    fn reading(&self, _path: &Path) {}
    /// A regular file is stored (read, or unchanged since the parent), with
    /// `bytes` as stored: what the summary counts. Called on the scan's
    /// thread, for each path of a hard-linked file.
    fn file_done(&self, _path: &Path, _bytes: u64) {}
    /// An entry could not be backed up (it is in the summary's `skipped`):
    /// `found` is its size when [`Progress::scanned`] had counted it.
    fn skipped(&self, _path: &Path, _found: Option<u64>) {}
    /// A stream ([`Source::Stdin`]) gave `bytes` more.
    fn streamed(&self, _bytes: u64) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What to back up.
pub enum Source<'a> {
    Paths(Vec<PathBuf>),
    /// A stream stored as one file named `name` (e.g. a database dump).
    Stdin {
        name: String,
        reader: Box<dyn Read + Send + 'a>,
    },
}

pub struct BackupOptions {
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub excludes: Vec<String>,
    pub exclude_if_present: Vec<String>,
    pub one_file_system: bool,
    /// The time to record (default: now).
    pub time: Option<DateTime<Utc>>,
    pub policy: Option<String>,
    /// Use this parent instead of looking one up; `Some(None)` for none.
    pub parent: Option<Option<Id>>,
    pub threads: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            tags: Vec::new(),
            host: None,
            excludes: Vec::new(),
            exclude_if_present: Vec::new(),
            one_file_system: false,
            time: None,
            policy: None,
            parent: None,
            threads: default_threads(),
        }
    }
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

#[derive(Debug)]
pub struct BackupReport {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    /// Non-fatal problems (changed files, unreadable parent trees…).
    pub warnings: Vec<String>,
    pub adopted_packs: usize,
}

impl BackupReport {
    /// True when some files could not be stored (exit code 3).
    pub fn incomplete(&self) -> bool {
        !self.snapshot.summary.skipped.is_empty()
    }
}

/// Refuses a snapshot time more than [`crate::repo::lock::MAX_CLOCK_SKEW`]
/// ahead of this machine's clock (`now`) or of the storage server's
/// (`server`, when it has one).
pub fn check_time(time: DateTime<Utc>, now: DateTime<Utc>, server: Option<DateTime<Utc>>) -> Result<()> {
    let skew = crate::repo::lock::MAX_CLOCK_SKEW;
    let limit = chrono::Duration::from_std(skew).expect("small");
    let show = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (clock, at) in [("clock of this machine", Some(now)), ("storage server's clock", server)] {
        if let Some(at) = at.filter(|at| time > *at + limit) {
            return Err(Error::FutureTime { time: show(time), now: show(at), clock, skew_s: skew.as_secs() });
        }
    }
    Ok(())
}

/// Runs one backup and commits its snapshot.
pub fn run(
    repo: &Repository,
    source: Source<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    run_locked(repo, source, opts, progress).map(|c| c.report)
}

/// A committed backup, and the repository lock it took, still held: on
/// remote storage, removing it is a round trip, which the caller makes
/// beside its next one (the evidence record) by dropping it there.
pub struct Committed {
    pub report: BackupReport,
    pub lock: crate::repo::lock::Lock,
}

/// [`run`], returning the lock with the report ([`Committed`]).
pub fn run_locked(
    repo: &Repository,
    source: Source<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Committed> {
    let started = Instant::now();
    let time = opts.time.unwrap_or_else(Utc::now);
    // A snapshot from the future would count as the newest recovery point for ever.
    check_time(time, Utc::now(), repo.backend().server_time())?;
    let host = opts.host.clone().unwrap_or_else(host::hostname);
    // Shared: backups run side by side, and beside a prune. The marks
    // listed before the lock is written are named in it; those listed
    // after are honoured too (see `crate::prune::marking`). The snapshots
    // (to find the parent) are listed beside the index.
    let (writing, listed) =
        write_start::start(repo, "backup", || opts.parent.is_none().then(|| repo.list_snapshots()))?;
    let write_start::Started { lock, index, adopted } = writing;
    crate::failpoint::hit!("backup::index_loaded");
    let mut warnings: Vec<String> =
        adopted.unreadable.iter().map(|(k, e)| format!("pack `{k}` is in no index and unreadable: {e}")).collect();
    // What killed writes left (their dead locks went when ours was taken).
    let swept = crate::repo::litter::sweep(repo);
    warnings.extend(swept.failed.iter().map(|e| format!("could not remove litter: {e}")));

    let (paths, abs_paths) = match &source {
        Source::Paths(p) => {
            if p.is_empty() {
                return Err(Error::NothingToBackUp { stdin: false });
            }
            let mut abs = p.iter().map(|x| excludes::absolute(x)).collect::<Result<Vec<_>>>()?;
            // Parents before children, so a path inside another is covered by it.
            abs.sort();
            abs.dedup();
            (abs.iter().map(|a| a.display().to_string()).collect::<Vec<_>>(), abs)
        }
        Source::Stdin { name, .. } => {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Error::BadStreamName(name.clone()));
            }
            (vec![format!("/{name}")], Vec::new())
        }
    };

    // The parent found in the listing is used as listed: read again, a
    // parent forgotten since the listing (made while the index loaded)
    // would fail the backup on a local directory, and come from the cache
    // on remote storage anyway. Its trees are read below; while no prune
    // has removed them, it is a parent like any other, and the snapshot
    // names it even though it was forgotten.
    let (parent_id, parent) = match (opts.parent, listed) {
        (Some(p), _) => (p, None),
        (None, listed) => {
            let list = listed.expect("listed when no parent was given")?;
            warnings.extend(list.damaged.iter().map(|(id, e)| {
                format!("snapshot {} cannot be read, so it was not considered as the parent: {e}", id.short())
            }));
            match list.snapshots.into_iter().rev().find(|(_, s)| s.same_source(&host, &paths)) {
                Some((id, s)) => (Some(id), Some(s)),
                None => (None, None),
            }
        }
    };
    let parent_tree = match parent_id {
        Some(id) => {
            let s = match parent {
                Some(s) => s,
                None => repo.load_snapshot(&id)?,
            };
            match repo.load_tree(&index, &s.tree) {
                Ok(t) => Some(t),
                Err(e) => {
                    warnings.push(format!("parent snapshot {} unreadable, reading everything: {e}", id.short()));
                    None
                }
            }
        }
        None => None,
    };

    // Remote storage wants more uploads in flight; each holds one pack.
    let uploaders = repo.backend().concurrency().clamp(1, 4);
    let writer = RepoWriter::new(repo, uploaders, 64);
    let counters = Counters::default();
    let mut summary = Summary::default();
    let stored = (|| -> Result<Id> {
        Ok(match source {
            Source::Paths(_) => {
                let excludes = Excludes::new(&opts.excludes, &opts.exclude_if_present)?;
                let shared = pipeline::Shared::default();
                let scanned = std::thread::scope(|s| {
                    let pipe = pipeline::start(s, repo, &index, &writer, opts.threads, &counters, &shared, progress);
                    let dirs = dirs::OpenDirs::new(&index, &writer, Encoder::new(repo.config().compression));
                    let excludes = &excludes;
                    let ahead = prefetch::TreesAhead::start(s, repo, &index);
                    let mut w =
                        Walker::new(&index, dirs, excludes, opts.one_file_system, pipe, progress, parent_tree, ahead);
                    for p in &abs_paths {
                        w.add_path(p)?;
                    }
                    w.finish()
                })?;
                summary = scanned.summary;
                warnings.extend(scanned.warnings);
                scanned.root
            }
            Source::Stdin { name, reader } => {
                let content = store_stream(repo, &index, &writer, reader, &counters, &name, progress)?;
                let mut node = Node::new(name.into_bytes(), NodeKind::File);
                node.mode = 0o600;
                node.mtime = time.timestamp();
                node.mtime_nsec = time.timestamp_subsec_nanos();
                node.size = counters.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
                node.content = content;
                node.uid = nix::unistd::getuid().as_raw();
                node.gid = nix::unistd::getgid().as_raw();
                summary.files_new = 1;
                summary.files_total = 1;
                summary.bytes_total = node.size;
                let mut enc = Encoder::new(repo.config().compression);
                writer.store_blob(&index, BlobKind::Tree, &Tree::new(vec![node]).encode(), &mut enc)?.0
            }
        })
    })();
    // A failed upload stops the uploaders and the workers then only see
    // that they stopped: the upload's own error says what went wrong.
    let root_id = match stored {
        Ok(id) => id,
        Err(e) => return Err(writer.finish().err().unwrap_or(e)),
    };
    let stats = writer.finish()?;
    summary.bytes_read = counters.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
    summary.data_added = stats.raw_bytes;
    summary.bytes_added = stats.stored_bytes;
    summary.blobs_added = stats.blobs;
    summary.packs_added = stats.packs;
    summary.duration_secs = started.elapsed().as_secs_f64();
    let snapshot = Snapshot {
        v: crate::repo::snapshot::SNAPSHOT_VERSION,
        time,
        hostname: host,
        username: host::username(),
        paths,
        tags: opts.tags.clone(),
        policy: opts.policy.clone(),
        parent: parent_id,
        tree: root_id,
        program_version: crate::VERSION.to_string(),
        original: None,
        summary,
    };
    // The report keeps every skipped and changed file; the stored snapshot
    // lists as many as keep it well inside its size limit.
    let mut stored = snapshot.clone();
    stored.summary.trim_lists(crate::repo::limits::SNAPSHOT_LISTS);
    crate::failpoint::hit!("backup::before_snapshot");
    let snapshot_id = repo.save_snapshot(&stored)?;
    crate::failpoint::hit!("backup::after_snapshot");
    let report = BackupReport { snapshot_id, snapshot, warnings, adopted_packs: adopted.packs };
    Ok(Committed { report, lock })
}

fn store_stream(
    repo: &Repository,
    index: &Index,
    writer: &RepoWriter,
    reader: Box<dyn Read + Send + '_>,
    counters: &Counters,
    name: &str,
    progress: &dyn Progress,
) -> Result<Vec<Id>> {
    let mut chunker = crate::chunk::Chunker::new(repo.config().chunker);
    let mut enc = Encoder::new(repo.config().compression);
    let mut content = Vec::new();
    let mut store_err = None;
    let r = chunker.chunk_stream::<_, std::io::Error>(reader, |chunk| {
        counters.bytes_read.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        progress.streamed(chunk.len() as u64);
        match writer.store_blob(index, BlobKind::Data, chunk, &mut enc) {
            Ok((id, _)) => {
                content.push(id);
                Ok(())
            }
            Err(e) => {
                store_err = Some(e);
                Err(std::io::Error::other("store failed"))
            }
        }
    });
    if let Some(e) = store_err {
        return Err(e);
    }
    r.map_err(|e| Error::io(format!("stream `{name}`"), e))?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_snapshot_time_ahead_of_either_clock_by_more_than_the_skew_is_refused() {
        use super::*;
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let m = chrono::Duration::minutes;
        assert!(check_time(now + m(5), now, None).is_ok(), "within the skew");
        assert!(check_time(now - chrono::Duration::days(30), now, Some(now)).is_ok(), "the past is fine (imports)");
        let e = check_time(now + m(6), now, None).unwrap_err();
        assert!(matches!(e, Error::FutureTime { clock: "clock of this machine", .. }), "{e}");
        // This machine's clock runs ahead: the storage's clock catches it.
        let e = check_time(now + m(10), now + m(20), Some(now)).unwrap_err();
        assert!(matches!(e, Error::FutureTime { clock: "storage server's clock", .. }), "{e}");
        assert!(e.to_string().contains("300 s ahead"), "{e}");
        let far = Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap();
        assert!(check_time(far, now, None).is_err());
    }
}
