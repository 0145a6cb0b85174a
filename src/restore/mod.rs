//! Restore: plan, then fetch, write, set metadata, and optionally verify,
//! one bounded batch at a time.
//!
//! The plan ([`plan`]) lists what to create, in batches of at most
//! [`plan::BATCH_ITEMS`] items: each batch is planned, executed, verified
//! and dropped before the next, so memory does not grow with the number
//! of files. Execution ([`execute`]) creates directories, prepares files
//! (reusing content already in the target when a chunk there hashes to
//! the right id), fetches each needed pack with a few coalesced range
//! reads, several packs in parallel (a pack the snapshot uses densely is
//! read whole once and held for the batches after, [`carry`]; on remote
//! storage such packs are read ahead of the batches, [`ahead`]), writes every place
//! that needs each chunk, files in several directories at once
//! ([`transfer`]), and sets metadata after contents, each directory's
//! after its entries. A file that cannot be restored exactly is named in
//! the report and the restore exits non-zero (invariant 5).
//! Every entry is reached through directory handles opened beneath the
//! target, never through a symlink ([`handles`], invariant 4), and a root
//! restore leaves out set-id bits and device nodes unless asked
//! ([`privileged`]).

mod ahead;
mod carry;
pub mod execute;
mod files;
mod filter;
pub(crate) mod handles;
pub mod plan;
mod privileged;
mod spans;
mod state;
mod transfer;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::pool::{parallel, parallel_with};
use crate::repo::{walk, Index, Repository};

pub use plan::{Filter, Plan};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub verify: bool,
    pub threads: usize,
    /// Restore set-uid and set-gid bits, file capabilities and device
    /// nodes when running as root (`--restore-privileged`).
    pub privileged: bool,
}

/// A file (or other entry) that was not restored exactly, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub path: String,
    pub reason: String,
}

/// Time spent in each phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub plan: Duration,
    /// From the start of the transfer to the first byte written.
    pub first_byte: Option<Duration>,
    pub transfer: Duration,
    pub metadata: Duration,
    pub verify: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub others: u64,
    pub bytes: u64,
    /// Bytes written to the target (less than `bytes` when the target
    /// already held some of the content).
    pub bytes_written: u64,
    /// Files whose content was already in place.
    pub files_unchanged: u64,
    pub packs_fetched: u64,
    pub bytes_fetched: u64,
    pub failures: Vec<Failure>,
    /// What a root restore left out without `--restore-privileged`:
    /// set-id bits and file capabilities (the file itself is restored),
    /// and device nodes.
    pub withheld: Vec<Failure>,
    pub warnings: Vec<String>,
    pub verified_files: u64,
    /// Batches the restore was planned and written in.
    pub batches: u64,
    /// Items in the largest batch ([`Plan::items`]), what restore memory
    /// grows with: at most [`plan::BATCH_ITEMS`], unless one file has more
    /// chunks.
    pub largest_batch: u64,
    #[serde(skip)]
    pub timings: Timings,
}

impl RestoreReport {
    /// Every item was restored exactly, nothing left out.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.withheld.is_empty()
    }

    /// Adds the report of one more batch.
    fn add(&mut self, b: RestoreReport) {
        self.files += b.files;
        self.dirs += b.dirs;
        self.links += b.links;
        self.others += b.others;
        self.bytes += b.bytes;
        self.bytes_written += b.bytes_written;
        self.files_unchanged += b.files_unchanged;
        self.packs_fetched += b.packs_fetched;
        self.bytes_fetched += b.bytes_fetched;
        self.failures.extend(b.failures);
        self.withheld.extend(b.withheld);
        self.warnings.extend(b.warnings);
        self.verified_files += b.verified_files;
        self.batches += b.batches;
        self.largest_batch = self.largest_batch.max(b.largest_batch);
        let t = &mut self.timings;
        t.plan += b.timings.plan;
        // From the start of the first batch's transfer.
        t.first_byte = t.first_byte.or(b.timings.first_byte.map(|fb| t.transfer + fb));
        t.transfer += b.timings.transfer;
        t.metadata += b.timings.metadata;
        t.verify += b.timings.verify;
    }
}

/// Restores the tree `root` into `opts.target`, within the default limits.
pub fn run(repo: &Repository, index: &Index, root: &Id, opts: &RestoreOptions) -> Result<RestoreReport> {
    run_within(repo, index, root, opts, &walk::Limits::default())
}

/// Restores the tree `root` into `opts.target`; a tree past `limits` is
/// refused before anything is written (see [`plan::Batches::new`]).
pub fn run_within(
    repo: &Repository,
    index: &Index,
    root: &Id,
    opts: &RestoreOptions,
    limits: &walk::Limits,
) -> Result<RestoreReport> {
    run_in_batches(repo, index, root, opts, limits, plan::BATCH_ITEMS)
}

/// [`run_within`], in batches of at most `batch_items` items
/// ([`Plan::items`]).
pub fn run_in_batches(
    repo: &Repository,
    index: &Index,
    root: &Id,
    opts: &RestoreOptions,
    limits: &walk::Limits,
    batch_items: usize,
) -> Result<RestoreReport> {
    let t0 = std::time::Instant::now();
    let filter = Filter::new(&opts.include, &opts.exclude)?;
    let mut batches = plan::Batches::new(repo, index, root, &filter, limits, batch_items)?;
    let target = execute::Target::open(&opts.target, opts.privileged)?;
    // Into a target that holds files already, a batch writes only the chunks
    // they lack, so a pack the snapshot uses densely may be needed sparsely:
    // no whole-span reads there.
    let spans = batches.take_pack_spans().filter(|_| target.fresh);
    // On remote storage the dense packs are read ahead of the batches.
    let ahead = spans.as_ref().filter(|_| repo.backend().is_remote()).map(ahead::ReadAhead::new);
    let mut carry = spans.map_or_else(carry::Carry::none, carry::Carry::new).reading_ahead(ahead.clone());
    std::thread::scope(|scope| {
        let _stop = ahead.as_ref().map(|a| a.start(scope, repo, index));
        write_batches(repo, index, &mut batches, &target, opts, &mut carry, t0)
    })
}

/// Plans, writes and verifies the batches in turn.
fn write_batches(
    repo: &Repository,
    index: &Index,
    batches: &mut plan::Batches<'_>,
    target: &execute::Target,
    opts: &RestoreOptions,
    carry: &mut carry::Carry,
    t0: std::time::Instant,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    let mut planned = t0;
    while let Some(plan) = batches.next_batch()? {
        let plan_time = planned.elapsed();
        let (mut r, written) = execute::execute_batch(repo, index, target, plan, opts.threads, carry)?;
        r.timings.plan = plan_time;
        r.batches = 1;
        r.largest_batch = plan.items() as u64;
        if opts.verify {
            let t = std::time::Instant::now();
            let failures = verify::verify(repo, plan, &opts.target, opts.threads);
            r.verified_files = (plan.files.len() + plan.hardlinks.len() - failures.len()) as u64;
            for f in failures {
                if !r.failures.iter().any(|x| x.path == f.path) {
                    r.failures.push(f);
                }
            }
            r.timings.verify = t.elapsed();
        }
        batches.written(written);
        report.add(r);
        crate::failpoint::hit!("restore::between_batches");
        planned = std::time::Instant::now();
    }
    report.timings.plan += planned.elapsed();
    report.failures.sort_by(|a, b| a.path.cmp(&b.path));
    report.withheld.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}
