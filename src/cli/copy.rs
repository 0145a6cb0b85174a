//! `cairn copy --to URL [SNAPSHOT…]`: snapshots copied into a second
//! repository, which has its own password (`--to-password-file`,
//! `CAIRN_TO_PASSWORD`, `--to-password-command`, in that order, as the
//! usual sources of the first one). `cairn copy --policy NAME` runs the
//! policy's `[copy]` as the daemon does. Both show their progress as a
//! backup does ([`super::progress`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use crate::error::{Error, Result};
use crate::jobs::copy::{CopyJob, CopyOptions};
use crate::jobs::RepoOptions;
use crate::policy::{self, PasswordSource};

use super::output::{human_bytes, Printer};
use super::progress::{Display, Meter};
use super::{repo_options, GlobalArgs, RetryLock, EXIT_OK, EXIT_PARTIAL};

/// The variable that holds the destination's password itself.
pub const TO_PASSWORD_ENV: &str = "CAIRN_TO_PASSWORD";

#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy into: a path, file:///path or s3://bucket/prefix (the global S3
    /// options apply to both)
    #[arg(long, env = "CAIRN_TO_REPO", value_name = "URL", required_unless_present = "policy")]
    pub to: Option<String>,
    /// Read the destination's password from this file (first line)
    #[arg(long, env = "CAIRN_TO_PASSWORD_FILE", value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Run this command with `sh -c`; the first line it prints is the destination's password
    /// (after --to-password-file and CAIRN_TO_PASSWORD)
    #[arg(long, env = "CAIRN_TO_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub to_password_command: Option<String>,
    /// Snapshots to copy: id prefixes or `latest` (default: every snapshot the destination lacks)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub retry_lock: RetryLock,
    /// Run this policy's copy, as the daemon does: its repository, its [copy] repository and
    /// password, every snapshot of the policy the copy lacks
    #[arg(long, value_name = "NAME", conflicts_with = "snapshots")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub policies: super::policy::PoliciesDir,
    /// With --policy: the state directory the run and the copy's point are recorded in
    #[command(flatten)]
    pub state: super::daemon::StateDir,
}

/// Where the destination's password comes from.
fn to_password(a: &CopyArgs) -> Result<PasswordSource> {
    if let Some(f) = &a.to_password_file {
        return Ok(PasswordSource::File(f.clone()));
    }
    if std::env::var_os(TO_PASSWORD_ENV).is_some() {
        return Ok(PasswordSource::Env(TO_PASSWORD_ENV.into()));
    }
    if let Some(c) = &a.to_password_command {
        return Ok(PasswordSource::Command(c.clone()));
    }
    Err(Error::CopyNeedsPassword)
}

/// The destination's options: the global ones, with its URL and password.
pub fn destination(from: &RepoOptions, url: &str, password: PasswordSource) -> RepoOptions {
    RepoOptions {
        url: Some(url.to_string()),
        password: Some(password),
        password_file: None,
        prompt: None,
        ..from.clone()
    }
}

pub fn run(g: &GlobalArgs, a: &CopyArgs, p: &Printer) -> Result<i32> {
    let from = a.retry_lock.apply(repo_options(g), p);
    let meter = Arc::new(Meter::new(false));
    let interval = g.progress_interval.unwrap_or(super::progress::DEFAULT_INTERVAL);
    let job = match (&a.policy, &a.to) {
        (Some(_), Some(_)) => {
            return Err(Error::FlagConflict(
                "--policy copies into the policy's [copy] repository: leave out --to (and CAIRN_TO_REPO)".into(),
            ))
        }
        (Some(name), None) => {
            let pol = policy::find(&a.policies.dir, name)?;
            let state = a.state.resolve();
            // Signed with the key of the state directory the run is recorded in.
            let from = RepoOptions { evidence_state: Some(state.clone()), ..from };
            let shown = Display::start(meter.clone(), p.tty, p.quiet, interval);
            let job = crate::jobs::copy::policy(&from, &pol, &*meter, Some(&state));
            shown.finish(job.error.is_none());
            job
        }
        (None, to) => {
            let to = destination(&from, to.as_deref().unwrap_or_default(), to_password(a)?);
            let opts = CopyOptions { snapshots: a.snapshots.clone(), policy: None };
            let shown = Display::start(meter.clone(), p.tty, p.quiet, interval);
            let job = crate::jobs::copy::copy(&from, &to, &opts, &*meter);
            shown.finish(job.error.is_none());
            job
        }
    };
    print(&job, p);
    if let Some(e) = &job.unrecorded {
        p.warn(format!("the copy is over, but it was not recorded in the state: {e}"));
    }
    match job.error {
        Some(e) => Err(e),
        // Finished, but the source's evidence check held snapshots back:
        // the off-site copy lacks them until someone looks (exit 3, as a
        // backup that skipped files).
        None if !job.held.is_empty() => Ok(EXIT_PARTIAL),
        None => Ok(EXIT_OK),
    }
}

/// Prints what a copy did (a failed one too: the snapshots it finished).
pub fn print(job: &CopyJob, p: &Printer) {
    for (name, ev) in [("copy (source)", &job.evidence_from), ("copy (destination)", &job.evidence_to)] {
        if let Some(ev) = ev {
            super::evidence::note(name, ev, p);
        }
    }
    for w in &job.report.warnings {
        p.warn(w);
    }
    for (id, why) in &job.held {
        p.warn(format!(
            "snapshot {} is not copied: the evidence check of the source holds it ({why}); `cairn check` on the \
             source says why, and `cairn evidence accept` releases it",
            id.short()
        ));
    }
    let r = &job.report;
    if p.json {
        p.json(&json!({
            "from": job.from_id,
            "to": job.to_id,
            "copied": r.copied.iter().map(|c| json!({
                "source": c.source, "snapshot": c.snapshot, "host": c.host, "time": c.time,
            })).collect::<Vec<_>>(),
            "resumed": r.resumed.iter().map(|c| json!({ "source": c.source, "snapshot": c.snapshot })).collect::<Vec<_>>(),
            "present": r.present.iter().map(|c| json!({ "source": c.source, "snapshot": c.snapshot })).collect::<Vec<_>>(),
            "held": job.held.iter().map(|(id, why)| json!({ "snapshot": id, "reason": why })).collect::<Vec<_>>(),
            "rechunked": r.rechunked,
            "files": r.counts.files,
            "bytes": r.counts.bytes,
            "files_total": r.counts.files_total(),
            "bytes_total": r.counts.bytes_total(),
            "blobs_added": r.stored.blobs,
            "chunks_added": r.counts.chunks_added,
            "data_added": r.stored.raw_bytes,
            "bytes_added": r.stored.stored_bytes,
            "packs_added": r.stored.packs,
            "packs_adopted": r.adopted_packs,
            "error": job.error.as_ref().map(|e| e.to_string()),
        }));
        return;
    }
    for c in &r.copied {
        p.data(format!(
            "copied {} as {} ({}, {})",
            c.source.short(),
            c.snapshot.short(),
            c.host,
            c.time.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    for c in &r.resumed {
        p.data(format!(
            "recorded {} as the copy of {}: a copy stopped after writing it, and it is what this copy would write",
            c.snapshot.short(),
            c.source.short()
        ));
    }
    if r.adopted_packs > 0 {
        p.info(format!("reused {} pack(s) an interrupted run had stored", r.adopted_packs));
    }
    p.info(format!(
        "{} snapshot(s) copied{}, {} already there; {} file(s) ({}) in all, {} read ({}), {} added in {} pack(s){}",
        r.copied.len(),
        match r.resumed.len() {
            0 => String::new(),
            n => format!(", {n} recorded after a stopped copy"),
        },
        r.present.len(),
        r.counts.files_total(),
        human_bytes(r.counts.bytes_total()),
        r.counts.files,
        human_bytes(r.counts.bytes),
        human_bytes(r.stored.stored_bytes),
        r.stored.packs,
        if r.rechunked { " (cut again: the chunker parameters differ)" } else { "" }
    ));
}
