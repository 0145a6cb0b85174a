//! `cairn forget`: applies retention rules and deletes the snapshots they
//! forget. Only snapshot objects are deleted; the data they referenced stays
//! until `cairn prune` removes what no snapshot uses any more.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::policy;
use crate::prune;
use crate::prune::retention::{self, Action, Decision, KeepRules, Reason, SnapshotRef};
use crate::repo::{lock, Repository};

use super::output::Printer;
use super::{open_repo, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Apply this policy's retention rules to its snapshots, in its repository
    #[arg(long, value_name = "NAME", conflicts_with_all = policy::KEEP_RULES)]
    pub policy: Option<String>,
    #[command(flatten)]
    pub policies: super::policy::PoliciesDir,
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

    fn selects(&self, s: &SnapshotRef) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty() || self.tags.iter().any(|t| s.has_tags(t)))
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
    // The rules are checked before the repository is opened: a forget
    // without rules fails fast and touches nothing.
    let (repo, rules, policy_name) = match &a.policy {
        Some(name) => {
            let pol = policy::find(&a.policies.dir, name)?;
            let rules = KeepRules::from_policy(&pol.retention);
            if rules.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "policy `{name}` ({}) has no retention rule, so it keeps every snapshot: nothing to forget",
                    pol.file.display()
                )));
            }
            rules.validate()?;
            (super::policy::open_repo(g, &pol)?, rules, Some(pol.name))
        }
        None => {
            let rules = a.keep_rules();
            rules.validate()?;
            (open_repo(g)?, rules, None)
        }
    };
    // A shared lock: forget may run beside backups, not during a prune.
    let _lock = if a.dry_run { None } else { Some(lock::acquire(&repo, false, "forget")?) };
    let now = Utc::now();
    let listed = repo.list_snapshots()?;
    // Snapshots the evidence does not vouch for stay out of retention.
    let (held, unread) = crate::evidence::check::held_snapshots(&repo, &listed, now);
    if let Some(e) = unread {
        p.warn(format!("the evidence could not be checked ({e}): only snapshots dated in the future are held"));
    }
    let snapshots: Vec<SnapshotRef> = listed
        .iter()
        .map(|(id, s)| SnapshotRef::new(*id, s))
        .filter(|s| policy_name.is_none() || s.policy == policy_name)
        .filter(|s| a.selects(s))
        .collect();
    let decisions = retention::apply_holding(&snapshots, &rules, now, &held)?;
    let forgotten: Vec<Id> = decisions.iter().filter(|d| !d.is_kept()).map(|d| d.id).collect();
    let kept = decisions.len() - forgotten.len();

    if !p.json {
        p.info(format!("applying {rules} (periods in UTC) to {} snapshot(s)", snapshots.len()));
        print_table(p, &by_id(&snapshots), &decisions);
        p.info(format!("keep {kept}, forget {} snapshot(s)", forgotten.len()));
    }
    let removed = if a.dry_run {
        Vec::new()
    } else {
        let (removed, failed) = remove(&repo, &forgotten, p);
        // What vanished is recorded, so that `check` finds each snapshot's removal.
        let payload = crate::evidence::payload::forget(&rules.to_string(), &removed, kept, failed.as_ref());
        super::evidence::record(&repo, "forget", policy_name.as_deref(), payload, None, p);
        if let Some(e) = failed {
            return Err(e);
        }
        removed
    };
    if p.json {
        p.json(&Report {
            dry_run: a.dry_run,
            rules: rules.to_string(),
            now,
            groups: groups_json(&by_id(&snapshots), &decisions),
            kept,
            forgotten: forgotten.len(),
            removed,
        });
    } else if a.dry_run {
        p.info(format!("dry run: would remove {} snapshot(s)", forgotten.len()));
    } else if !forgotten.is_empty() {
        p.info(format!("removed {} snapshot(s); `cairn prune` frees the data only they used", forgotten.len()));
    }
    Ok(EXIT_OK)
}

/// Deletes the forgotten snapshot objects (see [`prune::delete_snapshots`]);
/// returns those removed, and the error that stopped it, if one did.
fn remove(repo: &Repository, ids: &[Id], p: &Printer) -> (Vec<Id>, Option<Error>) {
    match prune::delete_snapshots(repo, ids) {
        Ok(removed) => (removed, None),
        Err((n, e)) => {
            p.warn(format!("removed {n} of {} snapshot(s) before this error", ids.len()));
            (ids[..n].to_vec(), Some(e))
        }
    }
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
