//! The drill job: a restore drill of a policy (`cairn drill`, and the
//! daemon's scheduled drills), signed into the repository's evidence chain.
//!
//! Inputs are checked before anything is recorded: a snapshot given by id
//! must be one of the policy's (the repository is opened and its
//! snapshots listed once, before the drill starts, so this opening is not
//! part of the measured RTO), and the drill engine refuses a target that is
//! not empty or near live data, and a sample or seed out of range. A
//! refused input is [`DrillError::Refused`]: no run, no drill row, no
//! evidence record, no report. A drill that starts records its run and its
//! drill row ([`crate::drill`] does, from its first phase to its last), and
//! appends exactly one `drill` evidence record.

use crate::drill::{self, DrillError, DrillOptions, DrillOutcome, EvidenceRef, EvidenceSink, SnapshotChoice};
use crate::error::Result;
use crate::policy::Policy;
use crate::repo::Repository;
use crate::state::State;

use super::open::RepoOptions;

/// Signs drills into the repository's evidence, with the key of
/// [`RepoOptions::appender`].
struct RepositoryChain<'a> {
    policy: &'a str,
    repo: &'a RepoOptions,
}

impl EvidenceSink for RepositoryChain<'_> {
    fn append(&self, repo: &Repository, payload: serde_json::Value) -> Result<EvidenceRef> {
        let r = self.repo.append_evidence(repo, "drill", Some(self.policy), payload)?;
        for w in &r.warnings {
            repo.warn(format!("policy `{}`: {w}", self.policy));
        }
        Ok(EvidenceRef { seq: r.seq, hash: r.hash, signature: r.signature })
    }
}

/// Refuses a snapshot id that names no snapshot of `policy` (none, more
/// than one, or another policy's). When the repository cannot be opened
/// or listed, the drill itself will find out and record it; that is not
/// an input to refuse.
fn check_snapshot(repo: &RepoOptions, policy: &Policy, spec: &str) -> Result<(), DrillError> {
    let Ok(repository) = repo.open_policy(policy) else { return Ok(()) };
    let Ok(all) = repository.list_snapshots() else { return Ok(()) };
    drill::select::by_id(&all.snapshots, &policy.name, spec).map(|_| ()).map_err(DrillError::Refused)
}

/// Runs one drill of `policy`, recorded in `state`, its reports under
/// `<state>/reports/<drill id>/`. The evidence sink of `opts` is replaced
/// by the repository's chain (by none for a view of the past, `--as-of`).
pub fn drill(
    repo: &RepoOptions,
    policy: &Policy,
    state: &State,
    opts: &DrillOptions<'_>,
) -> Result<DrillOutcome, DrillError> {
    if let SnapshotChoice::Id(spec) = &opts.snapshot {
        check_snapshot(repo, policy, spec)?;
    }
    // A drill does not wait for a lock: the wait would count in its
    // measured restore time (the lock is taken in the `open` phase).
    let repo = &RepoOptions { lock_wait: None, ..repo.clone() };
    let chain = RepositoryChain { policy: &policy.name, repo };
    // A drill of the past (`--as-of`) is not signed: the past cannot be written to.
    let evidence: Option<&dyn EvidenceSink> = if repo.backend.as_of.is_some() { None } else { Some(&chain) };
    let opts = DrillOptions { evidence, child_output: repo.child_output, ..opts.clone() };
    drill::run(policy, || repo.open_policy(policy), state, &opts)
}

/// A drill of `policy` that restores from its `[copy]` repository (`cairn
/// drill --from-copy`): the off-site copy is the one a disaster leaves.
/// Signed into the copy's evidence chain, recorded under the policy's
/// name, with the copy's location in the report. A policy without
/// `[copy]` is a refused input.
pub fn from_copy(
    repo: &RepoOptions,
    policy: &Policy,
    state: &State,
    opts: &DrillOptions<'_>,
) -> Result<DrillOutcome, DrillError> {
    let Some(copy) = &policy.copy else {
        return Err(DrillError::Refused(crate::Error::NoCopySection {
            policy: policy.name.clone(),
            consequence: "there is no copy to drill",
        }));
    };
    let on_copy = Policy { repository: copy.to.clone(), ..policy.clone() };
    // The copy has its own password source; never the first repository's.
    let repo = RepoOptions { password_file: None, prompt: None, ..repo.clone() };
    drill(&repo, &on_copy, state, opts)
}
