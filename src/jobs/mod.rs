//! The jobs: one library function per kind of work cairn does on a
//! repository, called alike by the command line and the daemon.
//!
//! | job | function | evidence record |
//! | --- | --- | --- |
//! | create a repository | [`init::init`] | `init` (record 0) |
//! | back up a policy, hooks included | [`backup::policy`] | `backup` |
//! | back up paths or standard input | [`backup::paths`] | `backup` |
//! | forget snapshots by retention rules | [`forget::forget`] | `forget` (not for a dry run) |
//! | remove unused data | [`prune::prune`] | `prune` (not for a dry run) |
//! | a policy's scheduled forget and prune | [`prune::policy`] | `prune` |
//! | a restore drill (of the policy's copy: [`drill::from_copy`]) | [`drill::drill`] | `drill` |
//! | copy snapshots into another repository | [`copy::copy`], a policy's [`copy::policy`] | `copy`, in both |
//!
//! Each opens the repository through [`open::RepoOptions`] (the global
//! flags, with a policy's own settings in their place), takes the lock
//! its work needs, runs it, appends exactly one evidence record of the
//! outcome, writes its rows in the state database where it has a policy
//! ([`record`]), and returns a typed outcome for the caller to print or
//! log. Nothing here prints.

pub mod backup;
pub mod copy;
pub mod drill;
pub mod forget;
pub mod init;
pub mod open;
pub mod password;
pub mod prune;
pub mod record;

pub use open::RepoOptions;

use crate::error::Error;
use crate::evidence::AppendedRecord;

/// A job that failed, and the evidence record of its failure when it got
/// as far as opening the repository.
#[derive(Debug)]
pub struct Failed {
    pub error: Error,
    /// `None` when nothing was recorded (the repository could not be
    /// opened, or the job failed before it changed anything).
    pub evidence: Option<Box<crate::Result<AppendedRecord>>>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed { error, evidence: None }
    }
}
