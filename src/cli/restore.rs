//! `cairn restore`.

use std::path::PathBuf;

use crate::error::Result;
use crate::restore::{self, RestoreOptions};

use super::output::{human_bytes, Printer};
use super::{open_repo, threads, GlobalArgs, EXIT_OK, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id prefix or `latest`
    pub snapshot: String,
    /// Directory to restore into (created when missing)
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Only restore paths matching GLOB (repeatable)
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out paths matching GLOB (repeatable)
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read every restored file back and check it against the snapshot
    #[arg(long)]
    pub verify: bool,
    /// Refuse a snapshot that expands to more entries than N (default 100000000)
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
    /// Plan and write at most N items at a time (entries, chunk places and
    /// directories; default 16384): memory grows with N, not with the
    /// number of files
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_items: Option<u64>,
    /// As root, also restore set-uid and set-gid bits, file capabilities
    /// and device nodes (left out and listed otherwise, exit code 3)
    #[arg(long)]
    pub restore_privileged: bool,
    #[command(flatten)]
    pub at: super::AsOfArg,
}

pub fn run(g: &GlobalArgs, a: &RestoreArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(&a.at.apply(g))?;
    let ((sid, snap), index) = repo.find_snapshot_and_index(&a.snapshot, crate::repo::IndexMode::Compact)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        verify: a.verify,
        threads: threads(g),
        privileged: a.restore_privileged,
    };
    p.info(format!(
        "restoring snapshot {} of {} to {}",
        sid.short(),
        snap.time.format("%Y-%m-%d %H:%M:%S UTC"),
        a.target.display()
    ));
    let started = std::time::Instant::now();
    let limits = crate::repo::walk::Limits::with_max_entries(a.max_entries);
    let batch = a.batch_items.map_or(restore::plan::BATCH_ITEMS, |n| n.try_into().unwrap_or(usize::MAX));
    let r = restore::run_in_batches(&repo, &index, &snap.tree, &opts, &limits, batch)?;
    for w in &r.warnings {
        p.warn(w);
    }
    if p.json {
        p.json(&serde_json::json!({ "snapshot": sid, "target": a.target, "report": r, "seconds": started.elapsed().as_secs_f64() }));
    } else {
        p.info(format!(
            "restored {} files ({}), {} directories, {} links, {} other; wrote {}, {} files already in place; {:.2} s",
            r.files,
            human_bytes(r.bytes),
            r.dirs,
            r.links,
            r.others,
            human_bytes(r.bytes_written),
            r.files_unchanged,
            started.elapsed().as_secs_f64()
        ));
        if a.verify && r.ok() {
            p.info(format!("verified {} files: all match the snapshot", r.verified_files));
        }
    }
    if !r.failures.is_empty() {
        p.warn(format!("{} item(s) could not be restored exactly:", r.failures.len()));
        for f in &r.failures {
            p.warn_item(format!("{}: {}", f.path, f.reason));
        }
    }
    if !r.withheld.is_empty() {
        p.warn(format!(
            "{} item(s) left out: a root restore does not recreate set-uid or set-gid bits, file capabilities \
             or device nodes unless --restore-privileged is given:",
            r.withheld.len()
        ));
        for f in &r.withheld {
            p.warn_item(format!("{}: {}", f.path, f.reason));
        }
    }
    if !r.ok() {
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}
