//! `cairn forget`: applies retention rules and deletes the snapshots they
//! forget. Only snapshot objects are deleted; the data they referenced stays
//! until `cairn prune` removes what no snapshot uses any more.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::jobs::forget::{Decided, Selection};
use crate::prune::retention::{Action, Decision, KeepRules, Reason, SnapshotRef};
use crate::{jobs, policy};

use super::output::Printer;
use super::{repo_options, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Apply this policy's retention rules to its snapshots, in its repository
    #[arg(long, value_name = "NAME", conflicts_with_all = policy::KEEP_RULES)]
    pub policy: Option<String>,
    #[command(flatten)]
    pub policies: super::policy::PoliciesDir,
    #[command(flatten)]
    pub retry_lock: super::RetryLock,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one (UTC)
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one (UTC)
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one (UTC)
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one (UTC)
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one (UTC)
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots less than DURATION older than the newest one (e.g. 90m, 26h, 7d, 2w)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_within: Option<chrono::Duration>,
    /// Keep snapshots with this tag; `a,b` needs both (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG[,TAG]")]
    pub keep_tags: Vec<String>,
    /// Print the decisions; delete nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Only consider snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only consider snapshots with this tag; `a,b` needs both (repeatable)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
}

/// `--keep-within`, in the duration syntax of policy files.
fn parse_duration(s: &str) -> std::result::Result<chrono::Duration, String> {
    s.parse::<policy::Duration>().map(|d| d.to_chrono())
}

impl ForgetArgs {
    fn keep_rules(&self) -> KeepRules {
        KeepRules {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_tags: self.keep_tags.clone(),
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    rules: String,
    now: DateTime<Utc>,
    groups: Vec<GroupJson<'a>>,
    kept: usize,
    forgotten: usize,
    /// The snapshots deleted (none in a dry run).
    removed: Vec<Id>,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    host: &'a str,
    paths: &'a [String],
    policy: Option<&'a str>,
    snapshots: Vec<DecisionJson<'a>>,
}

#[derive(Serialize)]
struct DecisionJson<'a> {
    id: Id,
    short_id: String,
    time: DateTime<Utc>,
    tags: &'a [String],
    action: Action,
    reasons: &'a [Reason],
}

pub fn run(g: &GlobalArgs, a: &ForgetArgs, p: &Printer) -> Result<i32> {
    let (policy, rules) = match &a.policy {
        Some(name) => {
            let pol = policy::find(&a.policies.dir, name)?;
            let rules = jobs::forget::policy_rules(&pol)?;
            (Some(pol), rules)
        }
        None => (None, a.keep_rules()),
    };
    let selection = Selection { hosts: a.hosts.clone(), tags: a.tags.clone(), ..Default::default() };
    let mut show = |d: &Decided| {
        for (id, e) in &d.unreadable {
            p.warn(format!("snapshot {} cannot be read ({e}): these rules neither keep nor forget it", id.short()));
        }
        if let Some(e) = &d.unchecked {
            p.warn(format!("the evidence could not be checked ({e}): only snapshots dated in the future are held"));
        }
        if !p.json {
            p.info(format!("applying {} (periods in UTC) to {} snapshot(s)", d.rules, d.snapshots.len()));
            print_table(p, &by_id(&d.snapshots), &d.decisions);
            p.info(format!("keep {}, forget {} snapshot(s)", d.kept(), d.forgotten().len()));
        }
    };
    let out = match jobs::forget::forget(
        &a.retry_lock.apply(repo_options(g), p),
        policy.as_ref(),
        &rules,
        &selection,
        a.dry_run,
        &mut show,
    ) {
        Ok(out) => out,
        Err(failed) => return Err(failed.error),
    };
    if let Some(evidence) = &out.evidence {
        super::evidence::note("forget", evidence, p);
    }
    let d = &out.decided;
    let forgotten = d.forgotten().len();
    if let Some(e) = out.stopped {
        p.warn(format!("removed {} of {forgotten} snapshot(s) before this error", out.removed.len()));
        return Err(e);
    }
    if p.json {
        p.json(&Report {
            dry_run: a.dry_run,
            rules: d.rules.to_string(),
            now: d.now,
            groups: groups_json(&by_id(&d.snapshots), &d.decisions),
            kept: d.kept(),
            forgotten,
            removed: out.removed.clone(),
        });
    } else if a.dry_run {
        p.info(format!("dry run: would remove {forgotten} snapshot(s)"));
    } else if forgotten > 0 {
        p.info(format!("removed {forgotten} snapshot(s); `cairn prune` frees the data only they used"));
    }
    Ok(EXIT_OK)
}

type ById<'a> = HashMap<Id, &'a SnapshotRef>;

fn by_id(snapshots: &[SnapshotRef]) -> ById<'_> {
    snapshots.iter().map(|s| (s.id, s)).collect()
}

/// Decisions come grouped; yields each group's slice.
fn groups(decisions: &[Decision]) -> impl Iterator<Item = &[Decision]> {
    decisions.chunk_by(|a, b| a.group == b.group)
}

fn print_table(p: &Printer, snapshots: &ById, decisions: &[Decision]) {
    for (i, group) in groups(decisions).enumerate() {
        if i > 0 {
            p.data("");
        }
        p.data(format!("snapshots of {}:", group[0].group));
        p.data(format!("{:<8}  {:<19}  {:<6}  {:<16}  reasons", "id", "time (UTC)", "action", "tags"));
        for d in group {
            let s = snapshots[&d.id];
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            p.data(format!(
                "{:<8}  {:<19}  {:<6}  {:<16}  {}",
                d.id.short(),
                d.time.format("%Y-%m-%d %H:%M:%S"),
                d.action.to_string().to_uppercase(),
                s.tags.join(","),
                reasons.join(", ")
            ));
        }
    }
}

fn groups_json<'a>(snapshots: &ById<'a>, decisions: &'a [Decision]) -> Vec<GroupJson<'a>> {
    groups(decisions)
        .map(|group| {
            let key = &group[0].group;
            GroupJson {
                host: &key.host,
                paths: &key.paths,
                policy: key.policy.as_deref(),
                snapshots: group
                    .iter()
                    .map(|d| DecisionJson {
                        id: d.id,
                        short_id: d.id.short(),
                        time: d.time,
                        tags: &snapshots[&d.id].tags,
                        action: d.action,
                        reasons: &d.reasons,
                    })
                    .collect(),
            }
        })
        .collect()
}
