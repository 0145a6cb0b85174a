//! `cairn prune`: plan, show, and (unless `--dry-run`) execute.

use crate::error::{Error, Result};
use crate::prune::gc::{self, Action};
use crate::repo::{lock, Repository};

use super::output::{human_bytes, Printer};
use super::{open_repo, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Show what would be removed and repacked, and change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Unused space to tolerate in kept packs before repacking, e.g. 5%
    #[arg(long, value_name = "P%", default_value = "5%")]
    pub max_unused: String,
}

fn parse_percent(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("--max-unused `{s}`: expected a percentage such as 5%")))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(Error::InvalidArgument(format!("--max-unused `{s}`: must be between 0% and 100%")));
    }
    Ok(v / 100.0)
}

pub fn run(g: &GlobalArgs, a: &PruneArgs, p: &Printer) -> Result<i32> {
    let max_unused = parse_percent(&a.max_unused)?;
    let repo = open_repo(g)?;
    let started = std::time::Instant::now();
    let result = prune(&repo, a, max_unused, p);
    // A dry run changes nothing, and leaves no evidence.
    if !a.dry_run {
        let r = result.as_ref().map(|o| {
            let (plan, report) = o.as_ref().expect("a prune that is not a dry run has a report");
            (plan, report)
        });
        super::evidence::record(&repo, "prune", None, crate::evidence::payload::prune(r, started.elapsed()), None, p);
    }
    result.map(|_| EXIT_OK)
}

/// Plans and (unless `--dry-run`) executes; returns the plan and report of
/// an executed prune.
fn prune(
    repo: &Repository,
    a: &PruneArgs,
    max_unused: f64,
    p: &Printer,
) -> Result<Option<(gc::PrunePlan, gc::PruneReport)>> {
    // The plan is made under the lock, so nothing changes between plan and deletion.
    let _lock = if a.dry_run { None } else { Some(lock::acquire(repo, true, "prune")?) };
    let plan = gc::plan(repo, max_unused)?;
    let summary = format!(
        "{} snapshots use {} blobs; packs: keep {} ({}), repack {} ({} to copy), delete {} and {} unindexed ({}); unused left {}",
        plan.snapshots,
        plan.used_blobs,
        plan.count(Action::Keep),
        human_bytes(plan.keep_bytes),
        plan.count(Action::Repack),
        human_bytes(plan.repack_bytes),
        plan.count(Action::Delete),
        plan.unindexed.len(),
        human_bytes(plan.delete_bytes),
        human_bytes(plan.unused_after)
    );
    if a.dry_run {
        if p.json {
            p.json(&serde_json::json!({ "dry_run": true, "plan": plan }));
        } else {
            p.info(format!("dry run: {summary}"));
            for pk in plan.packs.iter().filter(|x| x.action != Action::Keep) {
                p.data(format!("{:?} data/{}/{}", pk.action, &pk.id.to_hex()[..2], pk.id).to_lowercase());
            }
            for (k, _) in &plan.unindexed {
                p.data(format!("delete {k}"));
            }
        }
        return Ok(None);
    }
    p.info(summary);
    let report = gc::execute(repo, &plan)?;
    if p.json {
        p.json(&serde_json::json!({ "dry_run": false, "plan": plan, "report": report }));
    } else {
        p.info(format!(
            "deleted {} packs ({} freed), wrote {} new packs and {} index files",
            report.packs_deleted,
            human_bytes(report.bytes_freed),
            report.packs_written,
            report.index_files_written
        ));
        let l = &report.litter;
        if !l.temporaries.is_empty() {
            p.info(format!("removed {} temporary file(s) left by killed writes", l.temporaries.len()));
        }
    }
    for f in &report.litter.failed {
        p.warn(format!("could not remove litter: {f}"));
    }
    Ok(Some((plan, report)))
}
