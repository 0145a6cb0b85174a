//! `cairn prune`: plan, show, and (unless `--dry-run`) execute.

use crate::error::{Error, Result};
use crate::jobs;
use crate::prune::gc::{self, Action, PrunePlan};

use super::output::{human_bytes, Printer};
use super::{repo_options, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Show what would be removed and repacked, and change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Unused space to tolerate in kept packs before repacking, e.g. 5%
    #[arg(long, value_name = "P%", default_value_t = format!("{}%", gc::DEFAULT_MAX_UNUSED_PERCENT))]
    pub max_unused: String,
    #[command(flatten)]
    pub retry_lock: super::RetryLock,
}

fn parse_percent(s: &str) -> Result<f64> {
    let v: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| Error::BadFlag {
        flag: "--max-unused".into(),
        value: s.to_string(),
        expected: "expected a percentage such as 5%".into(),
    })?;
    if !(0.0..=100.0).contains(&v) {
        return Err(Error::BadFlag {
            flag: "--max-unused".into(),
            value: s.to_string(),
            expected: "must be between 0% and 100%".into(),
        });
    }
    Ok(v / 100.0)
}

fn summary(plan: &PrunePlan) -> String {
    format!(
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
    )
}

pub fn run(g: &GlobalArgs, a: &PruneArgs, p: &Printer) -> Result<i32> {
    let max_unused = parse_percent(&a.max_unused)?;
    // The plan is shown before anything is deleted.
    let mut planned = |plan: &PrunePlan| {
        if !a.dry_run {
            p.info(summary(plan));
            if let Some(latest) = plan.locked.iter().map(|(_, t)| t).max() {
                p.info(format!(
                    "{} object(s) to delete are locked, until {} at the latest: they are deleted now (a delete marker) \
                     and the storage keeps their data until the lock ends",
                    plan.locked.len(),
                    latest.format("%Y-%m-%d %H:%M UTC")
                ));
            }
        }
    };
    let done = match jobs::prune::prune(&a.retry_lock.apply(repo_options(g), p), max_unused, a.dry_run, &mut planned) {
        Ok(done) => done,
        Err(failed) => {
            if let Some(evidence) = failed.evidence.as_deref() {
                super::evidence::note("prune", evidence, p);
            }
            return Err(failed.error);
        }
    };
    if let Some(evidence) = &done.evidence {
        super::evidence::note("prune", evidence, p);
    }
    let plan = &done.plan;
    match &done.report {
        None => {
            if p.json {
                p.json(&serde_json::json!({ "dry_run": true, "plan": plan }));
            } else {
                p.info(format!("dry run: {}", summary(plan)));
                let locked: std::collections::HashMap<&str, _> =
                    plan.locked.iter().map(|(k, t)| (k.as_str(), t)).collect();
                let until = |k: &str| {
                    locked
                        .get(k)
                        .map(|t| format!(" (locked until {})", t.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default()
                };
                for pk in plan.packs.iter().filter(|x| x.action != Action::Keep) {
                    let k = crate::repo::pack_key(&pk.id);
                    p.data(format!("{} {k}{}", format!("{:?}", pk.action).to_lowercase(), until(&k)));
                }
                for (k, _) in &plan.unindexed {
                    p.data(format!("delete {k}{}", until(k)));
                }
            }
        }
        Some(report) => {
            if p.json {
                p.json(&serde_json::json!({
                    "dry_run": false, "plan": plan, "report": report, "retention": done.retention
                }));
            } else {
                p.info(format!(
                    "deleted {} packs ({} freed), wrote {} new packs and {} index files",
                    report.packs_deleted,
                    human_bytes(report.bytes_freed),
                    report.packs_written,
                    report.index_files_written
                ));
                if !report.litter.temporaries.is_empty() {
                    p.info(format!(
                        "removed {} temporary file(s) left by killed writes",
                        report.litter.temporaries.len()
                    ));
                }
            }
            for f in &report.litter.failed {
                p.warn(format!("could not remove litter: {f}"));
            }
            if let (Some(r), false) = (&done.retention, p.json) {
                p.info(format!(
                    "retention: extended the lock of {} of {} object(s) to {}",
                    r.extended,
                    r.objects,
                    r.until.format("%Y-%m-%d %H:%M UTC")
                ));
            }
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        prune: super::PruneArgs,
    }

    #[test]
    fn the_flag_default_is_the_one_scheduled_prunes_use() {
        let a = Args::parse_from(["prune"]);
        assert_eq!(a.prune.max_unused, "5%");
        assert_eq!(super::parse_percent(&a.prune.max_unused).unwrap(), crate::jobs::prune::default_max_unused());
    }
}
