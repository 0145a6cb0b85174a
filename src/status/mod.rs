//! The status of every policy, as `cairn status` and the daemon's `GET
//! /status` and `/metrics` show it: built from the state database and the
//! policy files alone, so it reads the same whether or not the daemon runs
//! (and needs no daemon to be built).
//!
//! The RPO state compares the newest recovery point's age with the
//! policy's `rpo`: `ok`, `at-risk` past 80 % of it, `breached` past it.
//! The drill state is the last drill's verdict, or `needs-verification`
//! when the content changed since the last passing drill, or `never`.

pub mod fleet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::jobs::copy::CopyPoint;
use crate::policy::{next_slot, Diagnostic, Policy};
use crate::state::{DrillRow, JobKind, Outcome, RecoveryPoint, RunRow, State};

/// The share of the RPO after which a policy is "at risk".
pub const AT_RISK: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RpoState {
    Ok,
    AtRisk,
    Breached,
    /// No snapshot known.
    NoBackup,
    /// The policy sets no `rpo`.
    NoObjective,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillState {
    Pass,
    Fail,
    NeedsVerification,
    Never,
    NotConfigured,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rpo {
    pub state: RpoState,
    pub age_s: Option<f64>,
    pub objective_s: Option<f64>,
    pub newest: Option<RecoveryPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    pub state: DrillState,
    pub last: Option<DrillRow>,
    pub last_pass: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextRun {
    pub kind: JobKind,
    pub due: DateTime<Utc>,
    /// The time between two slots of this schedule (for "late" alerts).
    pub interval_s: Option<f64>,
}

fn interval_s(p: &Policy, kind: JobKind, now: DateTime<Utc>) -> Option<f64> {
    let (a, _) = next_slot(p, kind, now)?;
    let (b, _) = next_slot(p, kind, a)?;
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

/// Where the daemon records a policy's last evidence check among its
/// values in the state (followed by the policy's name).
pub const EVIDENCE_KEY_PREFIX: &str = "evidence:";
pub use crate::jobs::copy::COPY_KEY_PREFIX;

/// How far a policy's `[copy]` lags: the age of the newest of its
/// snapshots the copy holds, judged against the copy's own `rpo` (else the
/// policy's) as the RPO is.
#[derive(Debug, Clone, Serialize)]
pub struct CopyLag {
    pub state: RpoState,
    pub lag_s: Option<f64>,
    pub objective_s: Option<f64>,
    /// The newest snapshot in the copy, when a copy ran.
    pub newest: Option<CopyPoint>,
}

/// A snapshot the evidence check flagged.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FlaggedSnapshot {
    pub snapshot: String,
    pub why: String,
}

/// The daemon's last evidence cross-check of a policy's repository (after
/// its last backup), as recorded in the state.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvidenceState {
    pub ok: bool,
    pub checked_at: String,
    pub problems: usize,
    /// The first problems, each naming its object.
    #[serde(default)]
    pub first: Vec<String>,
    #[serde(default)]
    pub flagged: Vec<FlaggedSnapshot>,
    #[serde(default)]
    pub newest_head: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    /// Whether a valid policy file defines it now (a policy known only
    /// from the state was removed or is invalid).
    pub configured: bool,
    pub last_success: Option<RunRow>,
    pub last_failure: Option<RunRow>,
    /// Whether the newest finished run of any kind failed.
    pub failing: bool,
    pub next: Vec<NextRun>,
    pub running: Vec<RunRow>,
    pub rpo: Rpo,
    pub drill: Drill,
    /// The last evidence check, when the daemon made one.
    pub evidence: Option<EvidenceState>,
    /// The copy's lag, for a policy with `[copy]` (or a copy recorded).
    pub copy: Option<CopyLag>,
}

impl PolicyStatus {
    /// Needs someone's attention: failing, RPO at risk or breached, drill
    /// failed or content not verified.
    pub fn attention(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.failing {
            if let Some(f) = &self.last_failure {
                v.push(format!("{} failed: {}", f.kind, f.error.as_deref().unwrap_or("unknown error")));
            }
        }
        match self.rpo.state {
            RpoState::Breached => v.push("RPO breached".into()),
            RpoState::AtRisk => v.push("RPO at risk".into()),
            RpoState::NoBackup if self.rpo.objective_s.is_some() => v.push("no backup yet".into()),
            _ => {}
        }
        match self.drill.state {
            DrillState::Fail => v.push("last drill failed".into()),
            DrillState::NeedsVerification => {
                v.push("needs verification (content changed since the last passing drill)".into())
            }
            DrillState::Never => v.push("never drilled".into()),
            _ => {}
        }
        if let Some(c) = &self.copy {
            match c.state {
                RpoState::Breached => v.push("copy lag past its RPO".into()),
                RpoState::AtRisk => v.push("copy lag at risk".into()),
                RpoState::NoBackup if c.objective_s.is_some() => v.push("no copy yet".into()),
                _ => {}
            }
        }
        if !self.configured {
            v.push("no valid policy file defines it".into());
        }
        if let Some(e) = self.evidence.as_ref().filter(|e| !e.ok) {
            let first = e.first.first().map(|f| format!(": {f}")).unwrap_or_default();
            v.push(format!("evidence damaged ({} problem(s)){first}", e.problems));
        }
        for f in self.evidence.iter().flat_map(|e| &e.flagged) {
            v.push(format!("snapshot {} flagged: {}", crate::text::id_prefix(&f.snapshot, 8), f.why));
        }
        v
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonInfo {
    pub pid: Option<u32>,
    pub listen: Option<String>,
    pub started_at: Option<String>,
    /// Whether that process still exists.
    pub alive: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub state_dir: String,
    pub daemon: Option<DaemonInfo>,
    pub policies: Vec<PolicyStatus>,
    /// Problems in the policy files.
    pub invalid_policies: Vec<Diagnostic>,
}

pub const SCHEMA: &str = "cairn.status/1";

/// The status of every policy in `policies` and in the state.
pub fn build(
    state: Option<&State>,
    state_dir: &std::path::Path,
    policies: &[Policy],
    invalid: Vec<Diagnostic>,
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    let mut names: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
    if let Some(s) = state {
        names.extend(s.known_policies()?);
    }
    names.sort();
    names.dedup();
    let running = match state {
        Some(s) => s.running()?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for name in names {
        let policy = policies.iter().find(|p| p.name == name);
        let mine = running.iter().filter(|r| r.policy == name).cloned().collect();
        out.push(policy_status(state, &name, policy, mine, now)?);
    }
    let daemon = match state {
        Some(s) => daemon_info(s)?,
        None => None,
    };
    Ok(StatusReport {
        schema: SCHEMA,
        generated_at: now,
        state_dir: state_dir.display().to_string(),
        daemon,
        policies: out,
        invalid_policies: invalid,
    })
}

fn daemon_info(s: &State) -> Result<Option<DaemonInfo>> {
    let Some(pid) = s.daemon_value("pid")? else { return Ok(None) };
    let pid: Option<u32> = pid.parse().ok();
    let alive = pid.is_some_and(crate::host::process_alive);
    Ok(Some(DaemonInfo { pid, listen: s.daemon_value("listen")?, started_at: s.daemon_value("started_at")?, alive }))
}

fn policy_status(
    state: Option<&State>,
    name: &str,
    policy: Option<&Policy>,
    running: Vec<RunRow>,
    now: DateTime<Utc>,
) -> Result<PolicyStatus> {
    let (mut last_success, mut last_failure, mut next) = (None, None, Vec::new());
    let (mut rp, mut drills) = (None, (None, None));
    let mut evidence = None;
    let mut copy_point = None;
    if let Some(s) = state {
        copy_point = s
            .daemon_value(&format!("{COPY_KEY_PREFIX}{name}"))?
            .and_then(|v| serde_json::from_str::<CopyPoint>(&v).ok());
        evidence = s
            .daemon_value(&format!("{}{name}", EVIDENCE_KEY_PREFIX))?
            .and_then(|v| serde_json::from_str::<EvidenceState>(&v).ok());
        for kind in JobKind::ALL {
            pick_newest(&mut last_success, s.last_run(name, kind, &[Outcome::Success])?);
            pick_newest(&mut last_failure, s.last_run(name, kind, &[Outcome::Failure, Outcome::Interrupted])?);
            if let Some(p) = policy {
                if let Some((_, due)) = s.next_due(name, kind)? {
                    next.push(NextRun { kind, due, interval_s: interval_s(p, kind, now) });
                }
            }
        }
        rp = s.recovery_point(name)?;
        drills = s.last_drills(name)?;
    }
    let changed = crate::state::content_changed(rp.as_ref(), drills.1.as_ref());
    // The newest finished run is the later of the last success and failure.
    let newest = [&last_success, &last_failure].into_iter().flatten().max_by_key(|r| (r.started_at, r.id));
    // Without a daemon's record, the time a daemon would run it.
    if let Some(p) = policy {
        for kind in JobKind::ALL {
            if !next.iter().any(|n| n.kind == kind) {
                if let Some((_, due)) = next_slot(p, kind, now) {
                    next.push(NextRun { kind, due, interval_s: interval_s(p, kind, now) });
                }
            }
        }
    }
    next.sort_by_key(|n| n.due);
    let failing = newest.is_some_and(|r: &RunRow| r.outcome != Outcome::Success);
    let objective = policy.and_then(|p| p.objectives.rpo).map(|d| d.to_std().as_secs_f64());
    let age = rp.as_ref().map(|r| (now - r.time).num_milliseconds().max(0) as f64 / 1000.0);
    // With no backup yet, the clock runs from the policy's first run: a
    // new policy is not in breach before its first backup could be taken.
    let first_run = match state {
        Some(s) => s.first_run(name)?,
        None => None,
    };
    let waiting_s = first_run.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    let rpo_state = judge(objective, age, waiting_s);
    let copy = (policy.is_some_and(|p| p.copy.is_some()) || copy_point.is_some()).then(|| {
        let objective = policy
            .and_then(|p| p.copy.as_ref().and_then(|c| c.rpo).or(p.objectives.rpo))
            .map(|d| d.to_std().as_secs_f64());
        let lag = copy_point.as_ref().map(|c| (now - c.time).num_milliseconds().max(0) as f64 / 1000.0);
        CopyLag { state: judge(objective, lag, waiting_s), lag_s: lag, objective_s: objective, newest: copy_point }
    });
    let (last, pass) = drills;
    // A failed drill is the worse news, whatever changed since.
    let drill_state = match (&last, changed) {
        (Some(d), _) if !d.passed() => DrillState::Fail,
        (_, Some(true)) => DrillState::NeedsVerification,
        (Some(_), _) => DrillState::Pass,
        (None, _) if policy.is_some_and(|p| p.drill.is_none()) => DrillState::NotConfigured,
        (None, _) => DrillState::Never,
    };
    Ok(PolicyStatus {
        name: name.to_string(),
        configured: policy.is_some(),
        last_success,
        last_failure,
        failing,
        next,
        running,
        rpo: Rpo { state: rpo_state, age_s: age, objective_s: objective, newest: rp },
        drill: Drill { state: drill_state, last, last_pass: pass.map(|d| d.started_at) },
        evidence,
        copy,
    })
}

fn pick_newest(slot: &mut Option<RunRow>, candidate: Option<RunRow>) {
    if let Some(c) = candidate {
        if slot.as_ref().is_none_or(|s| c.started_at > s.started_at) {
            *slot = Some(c);
        }
    }
}

/// An age against its objective: `waiting_s` is how long the policy has
/// existed (no recovery point yet is a breach once it exceeds the objective).
fn judge(objective: Option<f64>, age: Option<f64>, waiting_s: Option<f64>) -> RpoState {
    match (objective, age) {
        (None, _) => RpoState::NoObjective,
        (Some(o), None) if waiting_s.is_some_and(|w| w > o) => RpoState::Breached,
        (Some(_), None) => RpoState::NoBackup,
        (Some(o), Some(a)) if a > o => RpoState::Breached,
        (Some(o), Some(a)) if a > AT_RISK * o => RpoState::AtRisk,
        _ => RpoState::Ok,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn policy(name: &str, extra: &str) -> Policy {
        crate::policy::for_tests(name, "/r", extra)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
    }

    fn rp(state: &State, name: &str, age_h: i64) {
        let r = RecoveryPoint { snapshot_id: "s".into(), time: now() - Duration::hours(age_h), tree: "t".into() };
        state.set_recovery_point(name, &r).unwrap();
    }

    #[test]
    fn rpo_is_ok_then_at_risk_past_80_percent_then_breached() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let ps = vec![
            policy("fresh", "[objectives]\nrpo = \"10h\"\n"),
            policy("risky", "[objectives]\nrpo = \"10h\"\n"),
            policy("late", "[objectives]\nrpo = \"10h\"\n"),
            policy("empty", "[objectives]\nrpo = \"10h\"\n"),
            policy("free", ""),
            policy("never", "[objectives]\nrpo = \"10h\"\n"),
        ];
        // Failing since its first run, 11 hours ago: no backup for longer than the RPO.
        let new = crate::state::NewRun {
            policy: "never".into(),
            kind: JobKind::Backup,
            trigger: crate::state::Trigger::Schedule,
            scheduled_at: None,
            started_at: now() - Duration::hours(11),
            attempt: 1,
        };
        state.start_run(&new).unwrap();
        rp(&state, "fresh", 8); // exactly 80 %: still ok
        rp(&state, "risky", 9);
        rp(&state, "late", 11);
        rp(&state, "free", 100);
        let r = build(Some(&state), dir.path(), &ps, Vec::new(), now()).unwrap();
        let got: Vec<(&str, RpoState)> = r.policies.iter().map(|p| (p.name.as_str(), p.rpo.state)).collect();
        assert_eq!(
            got,
            [
                ("empty", RpoState::NoBackup),
                ("free", RpoState::NoObjective),
                ("fresh", RpoState::Ok),
                ("late", RpoState::Breached),
                ("never", RpoState::Breached),
                ("risky", RpoState::AtRisk)
            ]
        );
        assert_eq!(r.policies[3].rpo.age_s, Some(11.0 * 3600.0));
        assert_eq!(r.policies[4].rpo.age_s, None, "breached with no recovery point at all");
    }

    #[test]
    fn bug_a_failed_drill_of_changed_content_showed_as_needs_verification() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let ps = vec![policy("web", "[drill]\nschedule = \"@weekly\"\n")];
        let drill = |id: &str, h: i64, verdict: &str, tree: &str| DrillRow {
            drill_id: id.into(),
            policy: "web".into(),
            run_id: None,
            started_by: "schedule".into(),
            started_at: now() - Duration::hours(h),
            ended_at: now() - Duration::hours(h),
            snapshot_id: None,
            snapshot_time: None,
            tree: Some(tree.into()),
            verdict: verdict.into(),
            failure_kind: None,
            reasons: vec![],
            rto_objective_s: None,
            rto_measured_s: None,
            rpo_objective_s: None,
            rpo_achieved_s: None,
            files_checked: 0,
            bytes_checked: 0,
            mismatches: 0,
            report_dir: None,
            evidence_hash: None,
        };
        // Monday passes on tree A; the content changes to B; Wednesday's drill of B fails.
        state.record_drill(&drill("mon", 48, "pass", "A")).unwrap();
        let r = RecoveryPoint { snapshot_id: "s".into(), time: now() - Duration::hours(30), tree: "B".into() };
        state.set_recovery_point("web", &r).unwrap();
        state.record_drill(&drill("wed", 1, "fail", "B")).unwrap();
        let s = build(Some(&state), dir.path(), &ps, Vec::new(), now()).unwrap();
        assert_eq!(s.policies[0].drill.state, DrillState::Fail);
        assert!(s.policies[0].attention().contains(&"last drill failed".to_string()));
    }

    #[test]
    fn the_daemons_evidence_check_shows_in_attention() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let ps = vec![policy("web", "")];
        let v = serde_json::json!({"ok": false, "checked_at": "x", "problems": 2,
            "first": ["snapshots/ab: snapshot ab has no backup record"],
            "flagged": [{"snapshot": "abcdef0123", "why": "dated in the future"}]});
        state.set_daemon_value("evidence:web", Some(&v.to_string())).unwrap();
        let s = build(Some(&state), dir.path(), &ps, Vec::new(), now()).unwrap();
        let a = s.policies[0].attention();
        assert!(a.iter().any(|x| x.starts_with("evidence damaged (2 problem(s)): snapshots/ab")), "{a:?}");
        assert!(a.contains(&"snapshot abcdef01 flagged: dated in the future".to_string()), "{a:?}");
    }
}
