//! `cairn prune`: plan, show, and (unless `--dry-run`) execute.

use crate::error::{Error, Result};
use crate::jobs;
use crate::prune::gc::{self, Action, PrunePlan};
use crate::prune::marking::{MarkStep, DEFAULT_SAFETY_MARGIN};

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
    /// How long a pack stays marked before a prune deletes it (e.g. 23h; 0s
    /// deletes at once what no running backup holds)
    #[arg(long, value_name = "DURATION", env = "CAIRN_PRUNE_SAFETY_MARGIN",
          default_value_t = crate::duration::Duration::from_secs(DEFAULT_SAFETY_MARGIN.as_secs()))]
    pub safety_margin: crate::duration::Duration,
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
        "{} snapshots use {} blobs; packs: keep {} ({}), repack {} ({} to copy), unused {} and {} unindexed; \
         delete now {} ({}), mark {}, marked earlier {} ({} marked in all); unused left {}",
        plan.snapshots,
        plan.used_blobs,
        plan.count(Action::Keep),
        human_bytes(plan.keep_bytes),
        plan.count(Action::Repack),
        human_bytes(plan.repack_bytes),
        plan.count(Action::Delete),
        plan.unindexed.len(),
        plan.deleted_now().len(),
        human_bytes(plan.delete_bytes),
        plan.marked_now().len(),
        plan.waiting().len(),
        human_bytes(plan.marked_bytes),
        human_bytes(plan.unused_after)
    )
}

/// One line per mark that is not ripe: when its packs become deletable,
/// and which running commands they wait for.
fn waiting_marks(plan: &PrunePlan) -> Vec<String> {
    let mut lines = Vec::new();
    for m in plan.marks.iter().filter(|m| !m.ripe && !m.suspicious) {
        let mut l = format!(
            "mark {} ({} packs, made {}): deletable from {}",
            m.id.short(),
            m.packs,
            m.time.format("%Y-%m-%d %H:%M UTC"),
            m.deletable_from.format("%Y-%m-%d %H:%M UTC")
        );
        if !m.waiting_for.is_empty() {
            l.push_str(&format!(" and once these end: {}", m.waiting_for.join("; ")));
        }
        lines.push(l);
    }
    for (id, e) in &plan.damaged_marks {
        lines.push(format!(
            "mark {} does not open ({e}): ignored, its packs are marked again; while it is there, marked packs \
             stay listed in full (a larger index). Remove `marks/{id}` once you know where it came from",
            id.short()
        ));
    }
    lines
}

/// What a prune found that someone must look into: marks and locks dated
/// in the future (a host with a wrong clock, or a forgery).
fn suspicious(plan: &PrunePlan) -> Vec<String> {
    let marks = plan.marks.iter().filter(|m| m.suspicious).map(|m| {
        format!(
            "mark {} ({} packs) is dated {}, in the future (a wrong clock or a forged mark): nothing is deleted by \
             it; its unused packs are marked again and it is removed",
            m.id.short(),
            m.packs,
            m.time.format("%Y-%m-%d %H:%M UTC")
        )
    });
    let locks = plan.suspicious_locks.iter().map(|l| {
        format!("lock {l}: its holder's clock is wrong, or it is forged; it still counts while the storage sees it refreshed")
    });
    marks.chain(locks).collect()
}

pub fn run(g: &GlobalArgs, a: &PruneArgs, p: &Printer) -> Result<i32> {
    let opts =
        jobs::prune::PruneOptions { max_unused: parse_percent(&a.max_unused)?, margin: a.safety_margin.to_std() };
    // The plan is shown before anything is deleted.
    let mut planned = |plan: &PrunePlan| {
        if !a.dry_run {
            p.info(summary(plan));
            for l in waiting_marks(plan) {
                p.info(l);
            }
            for l in suspicious(plan) {
                p.warn(l);
            }
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
    let done = match jobs::prune::prune(&a.retry_lock.apply(repo_options(g), p), &opts, a.dry_run, &mut planned) {
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
                for l in waiting_marks(plan) {
                    p.info(l);
                }
                for l in suspicious(plan) {
                    p.warn(l);
                }
                let locked: std::collections::HashMap<&str, _> =
                    plan.locked.iter().map(|(k, t)| (k.as_str(), t)).collect();
                let until = |k: &str| {
                    locked
                        .get(k)
                        .map(|t| format!(" (locked until {})", t.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default()
                };
                // One line per pack: what happens to it now, and to the
                // unused and the repacked ones, where they stand in the two phases.
                let phase = |m: &MarkStep| match m {
                    MarkStep::None => String::new(),
                    MarkStep::New => ", then mark".to_string(),
                    MarkStep::Waiting { deletable_from, .. } => {
                        format!(", marked: deletable from {}", deletable_from.format("%Y-%m-%d %H:%M UTC"))
                    }
                    MarkStep::DeleteNow { .. } => String::new(),
                };
                for pk in plan.packs.iter().filter(|x| x.action != Action::Keep) {
                    let k = crate::repo::pack_key(&pk.id);
                    let what = match (pk.action, &pk.mark) {
                        (_, MarkStep::DeleteNow { .. }) => "delete",
                        (Action::Repack, _) => "repack",
                        _ => "unused",
                    };
                    p.data(format!("{what} {k}{}{}", phase(&pk.mark), until(&k)));
                }
                for u in &plan.unindexed {
                    let what = if matches!(u.mark, MarkStep::DeleteNow { .. }) { "delete" } else { "unindexed" };
                    p.data(format!("{what} {}{}{}", u.key, phase(&u.mark), until(&u.key)));
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
                    "deleted {} packs ({} freed), marked {} for a later prune, wrote {} new packs and {} index files",
                    report.packs_deleted,
                    human_bytes(report.bytes_freed),
                    report.packs_marked,
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
        let scheduled = crate::jobs::prune::PruneOptions::default();
        if std::env::var_os("CAIRN_PRUNE_SAFETY_MARGIN").is_none() {
            assert_eq!(a.prune.safety_margin.to_std(), scheduled.margin);
        }
    }
}
