//! `cairn backup`.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::backup::{self, BackupOptions, Source};
use crate::error::{Error, Result};
use crate::{jobs, policy};

use super::output::{human_bytes, Printer};
use super::progress::{Display, Meter};
use super::{repo_options, threads, GlobalArgs, EXIT_OK, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Leave out paths matching GLOB (repeatable; without `/` it matches names)
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Leave out directories that contain a file with this name
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Stay on the file system of each path given
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Store standard input as one file instead of reading paths
    #[arg(long, requires = "stdin_name")]
    pub stdin: bool,
    /// The file name to store standard input under
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Option<String>,
    /// Record this time for the snapshot (RFC 3339), e.g. for imports
    #[arg(long, value_name = "RFC3339")]
    pub time: Option<DateTime<Utc>>,
    /// Do not compare with a parent snapshot: read every file
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub retry_lock: super::RetryLock,
    /// Read and chunk everything, and say what would be stored; write nothing
    #[arg(long, short = 'n', conflicts_with = "policy")]
    pub dry_run: bool,
    /// Run one backup of this policy: its source, repository, hooks and tag
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["paths", "stdin", "stdin_name", "excludes", "exclude_files", "exclude_if_present", "one_file_system"]
    )]
    pub policy: Option<String>,
    #[command(flatten)]
    pub policies: super::policy::PoliciesDir,
    /// With --policy: the state directory the run is recorded in
    #[command(flatten)]
    pub state: super::daemon::StateDir,
}

/// The progress display of a backup ([`super::progress`]).
fn display(g: &GlobalArgs, p: &Printer, stream: bool) -> (Arc<Meter>, Display) {
    let meter = Arc::new(Meter::new(stream));
    let interval = g.progress_interval.unwrap_or(super::progress::DEFAULT_INTERVAL);
    let shown = Display::start(meter.clone(), p.tty, p.quiet, interval);
    (meter, shown)
}

pub fn run(g: &GlobalArgs, a: BackupArgs, p: &Printer) -> Result<i32> {
    if let Some(name) = &a.policy {
        return policy_backup(g, &a, name, p);
    }
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        excludes.extend(backup::excludes::read_exclude_file(f)?);
    }
    let source = if a.stdin {
        if !a.paths.is_empty() {
            return Err(Error::FlagConflict("--stdin takes no paths".into()));
        }
        Source::Stdin { name: a.stdin_name.clone().unwrap_or_default(), reader: Box::new(std::io::stdin()) }
    } else {
        if a.paths.is_empty() {
            return Err(Error::NothingToBackUp { stdin: true });
        }
        Source::Paths(a.paths.clone())
    };
    let opts = BackupOptions {
        tags: a.tags.clone(),
        host: a.host.clone(),
        excludes,
        exclude_if_present: a.exclude_if_present.clone(),
        one_file_system: a.one_file_system,
        time: a.time,
        policy: None,
        parent: if a.force { Some(None) } else { None },
        threads: threads(g),
    };
    let repo = a.retry_lock.apply(repo_options(g), p);
    let (meter, shown) = display(g, p, a.stdin);
    if a.dry_run {
        let report = jobs::backup::dry_run(&repo, source, &opts, &*meter);
        shown.finish(report.is_ok());
        return Ok(print_dry_run(&report?, p));
    }
    let done = jobs::backup::paths(&repo, source, &opts, &*meter);
    shown.finish(done.as_ref().is_ok_and(|d| d.result.is_ok()));
    let done = done?;
    super::evidence::note("backup", &done.evidence, p);
    Ok(print_report(&done.result?, p))
}

/// `cairn backup --policy NAME`.
fn policy_backup(g: &GlobalArgs, a: &BackupArgs, name: &str, p: &Printer) -> Result<i32> {
    let pol = policy::find(&a.policies.dir, name)?;
    let opts = jobs::backup::JobOptions {
        time: a.time,
        host: a.host.clone(),
        tags: a.tags.clone(),
        force: a.force,
        ..Default::default()
    };
    let (meter, shown) = display(g, p, matches!(pol.source, policy::Source::Command { .. }));
    let state = a.state.resolve();
    // Signed with the key of the state directory the run is recorded in.
    let repo =
        crate::jobs::RepoOptions { evidence_state: Some(state.clone()), ..a.retry_lock.apply(repo_options(g), p) };
    let out = jobs::backup::policy(&repo, &pol, &opts, &*meter, Some(&state));
    shown.finish(out.report.is_some());
    if let Some(evidence) = &out.evidence {
        super::evidence::note("backup", evidence, p);
    }
    if let Some(e) = &out.unrecorded {
        p.warn(format!("the backup is done, but it was not recorded in the state: {e}"));
    }
    let code = match &out.report {
        Some(r) => print_report(r, p),
        None => EXIT_OK,
    };
    for w in &out.warnings {
        p.warn(w);
    }
    if let Some(e) = out.error {
        if out.report.is_some() {
            // The snapshot is saved; say why the job still failed.
            p.error(&e);
            return Ok(super::exit_code_of(&e));
        }
        return Err(e);
    }
    Ok(code)
}

/// Prints what a `--dry-run` found; returns the exit code a backup would
/// have had.
fn print_dry_run(report: &backup::BackupReport, p: &Printer) -> i32 {
    for w in &report.warnings {
        p.warn(w);
    }
    let s = &report.snapshot.summary;
    if p.json {
        p.json(&serde_json::json!({ "dry_run": true, "parent": report.snapshot.parent, "summary": s }));
    } else {
        p.info(format!(
            "dry run, nothing written:\n  files: {} new, {} changed, {} unchanged ({} in all, {})\n  would read {}, and add {} of new data ({} stored) in {} blobs, {} packs",
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.files_total,
            human_bytes(s.bytes_total),
            human_bytes(s.bytes_read),
            human_bytes(s.data_added),
            human_bytes(s.bytes_added),
            s.blobs_added,
            s.packs_added,
        ));
    }
    if report.incomplete() {
        p.warn(format!("{} file(s) could not be read:", s.skipped.len()));
        for f in &s.skipped {
            p.warn_item(format!("{}: {}", f.path, f.reason));
        }
        return EXIT_PARTIAL;
    }
    EXIT_OK
}

/// Prints a backup's report; returns the exit code it calls for.
fn print_report(report: &backup::BackupReport, p: &Printer) -> i32 {
    for w in &report.warnings {
        p.warn(w);
    }
    let s = &report.snapshot.summary;
    if p.json {
        p.json(&serde_json::json!({
            "snapshot": report.snapshot_id,
            "short_id": report.snapshot_id.short(),
            "parent": report.snapshot.parent,
            "summary": s,
        }));
    } else {
        p.data(report.snapshot_id.to_hex());
        p.info(format!(
            "snapshot {} saved\n  files: {} new, {} changed, {} unchanged ({} in all, {})\n  read {}, added {} ({} stored) in {} blobs, {} packs\n  took {:.2} s",
            report.snapshot_id.short(),
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.files_total,
            human_bytes(s.bytes_total),
            human_bytes(s.bytes_read),
            human_bytes(s.data_added),
            human_bytes(s.bytes_added),
            s.blobs_added,
            s.packs_added,
            s.duration_secs
        ));
    }
    if report.incomplete() {
        p.warn(format!("{} file(s) could not be backed up:", s.skipped.len()));
        for f in &s.skipped {
            p.warn_item(format!("{}: {}", f.path, f.reason));
        }
        return EXIT_PARTIAL;
    }
    EXIT_OK
}
