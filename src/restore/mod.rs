//! Restore: plan, then fetch, write, set metadata, and optionally verify.
//!
//! The plan ([`plan`]) lists what to create; execution ([`execute`])
//! creates directories, prepares files (reusing content already in the
//! target when a chunk there hashes to the right id), fetches each needed
//! pack once with a few coalesced range reads, several packs in parallel,
//! writes every place that needs each chunk, and sets metadata after
//! contents, directories last. A file that cannot be restored exactly is
//! named in the report and the restore exits non-zero (invariant 5).
//! Every entry is reached through directory handles opened beneath the
//! target, never through a symlink ([`handles`], invariant 4), and a root
//! restore leaves out set-id bits and device nodes unless asked
//! ([`privileged`]).

pub mod execute;
mod files;
pub(crate) mod handles;
pub mod plan;
mod privileged;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::pool::{parallel, parallel_with};
use crate::repo::{Index, Repository};

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
    #[serde(skip)]
    pub timings: Timings,
}

impl RestoreReport {
    /// Every item was restored exactly, nothing left out.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.withheld.is_empty()
    }
}

/// Restores the tree `root` into `opts.target`, within the default limits.
pub fn run(repo: &Repository, index: &Index, root: &Id, opts: &RestoreOptions) -> Result<RestoreReport> {
    run_within(repo, index, root, opts, &crate::repo::walk::Limits::default())
}

/// Restores the tree `root` into `opts.target`; a tree past `limits` is
/// refused before anything is written (see [`plan::plan_within`]).
pub fn run_within(
    repo: &Repository,
    index: &Index,
    root: &Id,
    opts: &RestoreOptions,
    limits: &crate::repo::walk::Limits,
) -> Result<RestoreReport> {
    let t0 = std::time::Instant::now();
    let filter = Filter::new(&opts.include, &opts.exclude)?;
    let plan = plan::plan_within(repo, index, root, &filter, limits)?;
    let plan_time = t0.elapsed();
    let mut report = execute::execute(repo, index, &plan, opts)?;
    report.timings.plan = plan_time;
    if opts.verify {
        let t = std::time::Instant::now();
        let failures = verify::verify(repo, &plan, &opts.target, opts.threads);
        report.verified_files = (plan.files.len() + plan.hardlinks.len() - failures.len()) as u64;
        for f in failures {
            if !report.failures.iter().any(|x| x.path == f.path) {
                report.failures.push(f);
            }
        }
        report.timings.verify = t.elapsed();
    }
    report.failures.sort_by(|a, b| a.path.cmp(&b.path));
    report.withheld.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}
