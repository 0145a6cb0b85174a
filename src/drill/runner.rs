//! The drill runner: the steps described in [`super`], in order, each
//! timed as a phase. A failing phase is recorded (with its error) and the
//! phases that depend on it are skipped, but cleanup, the verdict, the
//! evidence, the reports and the state records always happen: every drill
//! that started leaves a report. Only problems found before it starts are
//! returned as errors, and then nothing is recorded: inputs it refuses (a
//! target that is not empty or near live data, a bad sample percentage or
//! seed) as [`DrillError::Refused`], and an unusable scratch directory or
//! state database as [`DrillError::Failed`].

use std::path::PathBuf;
use std::time::Instant;

use chrono::{SubsecRound, Utc};

use crate::error::{Error, Result};
use crate::policy::{Policy, RecoveryPoint, Source, VerifyMode};
use crate::process::ChildEnv;
use crate::repo::{lock, Repository};
use crate::restore::{self, plan::Plan, RestoreOptions};
use crate::state::{JobKind, NewRun, State};

use super::report::{Phase, Scope};
use super::scratch;
use super::select::{self, Choice};
use super::session::{Drill, Settings};
use super::spot::{self, SpotCheck};
use super::validate;
use super::verify::{self, Mismatch};
use super::{assemble, DrillError, DrillOptions, DrillOutcome, VerifyChoice};

impl Settings {
    fn of(policy: &Policy, opts: &DrillOptions<'_>) -> Result<Settings> {
        let drill = policy.drill.as_ref();
        let window = drill.map(|d| d.random_window).unwrap_or_else(crate::policy::default_window);
        let choice = match &opts.snapshot {
            super::SnapshotChoice::Policy => match drill.map(|d| d.recovery_point) {
                Some(RecoveryPoint::Random) => Choice::Random(window),
                _ => Choice::Latest,
            },
            super::SnapshotChoice::Latest => Choice::Latest,
            super::SnapshotChoice::Random => Choice::Random(window),
            super::SnapshotChoice::Id(id) => Choice::Id(id.clone()),
        };
        let verify = opts.verify.unwrap_or(match drill {
            Some(d) if d.verify == VerifyMode::Sample => VerifyChoice::Sample(d.sample_percent),
            _ => VerifyChoice::Full,
        });
        if let VerifyChoice::Sample(p) = verify {
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::BadDrillSetting(format!("sample percentage {p} is not in (0, 100]")));
            }
        }
        Ok(Settings { choice, verify, validate: drill.and_then(|d| d.validate.clone()) })
    }
}

impl Drill<'_> {
    fn record_phase(&mut self, name: &str, start: f64, duration: f64, in_rto: bool, error: Option<String>) {
        self.phases.push(Phase { name: name.into(), start_s: start, duration_s: duration, in_rto, error });
    }

    /// Runs one phase, timed; an error is recorded and gives `None`.
    fn phase<T>(&mut self, name: &str, in_rto: bool, f: impl FnOnce(&mut Self) -> Result<T>) -> Option<T> {
        let progress = serde_json::json!({ "drill_id": self.drill_id, "phase": name });
        let _ = self.state.set_progress(self.run_id, &progress);
        let start = self.clock.elapsed().as_secs_f64();
        let r = f(self);
        let duration = self.clock.elapsed().as_secs_f64() - start;
        let error = r.as_ref().err().map(|e| e.to_string());
        self.record_phase(name, start, duration, in_rto, error);
        r.ok()
    }

    /// Open, select, restore, verify, spot-check, validate. Returns the
    /// repository when it could be opened (the evidence goes there).
    fn body(&mut self, open: impl FnOnce() -> Result<Repository>) -> Option<Repository> {
        let (repo, lock, index) = self.phase("open", true, |_| {
            let repo = open()?;
            // A prune must not delete packs under the drill's feet.
            let lock = lock::acquire(&repo, false, "drill")?;
            let index = repo.load_index_as(crate::repo::IndexMode::Compact)?;
            Ok((repo, lock, index))
        })?;
        self.location = super::report::mask_userinfo(&repo.backend().location());
        self.repo_id = Some(repo.id().to_hex());
        let (policy, choice, seed, now) =
            (self.policy.name.clone(), self.settings.choice.clone(), self.seed, self.started_at);
        // From here on, every exit returns the repository: a drill that
        // fails to find or plan its recovery point is evidence too.
        let Some(chosen) = self.phase("select", true, |_| {
            // `latest` and a random choice both need every snapshot: a
            // damaged one may be the newest, or in the window.
            let list = repo.list_snapshots()?;
            let all = if matches!(choice, select::Choice::Id(_)) { &list.snapshots } else { list.complete()? };
            select::choose(all, &policy, &choice, seed, now)
        }) else {
            return Some(repo);
        };
        self.chosen = Some(chosen.clone());
        let tree = chosen.snapshot.tree;
        let Some(plan) =
            self.phase("plan", true, |_| restore::plan::plan(&repo, &index, &tree, &restore::Filter::new(&[], &[])?))
        else {
            return Some(repo);
        };
        let restored = self.restore(&repo, &index, &plan);
        if restored {
            let (files, sample) = verify::select_files(&plan, self.settings.verify, self.seed);
            self.sample = sample;
            let full = self.settings.verify == VerifyChoice::Full;
            let (target, threads) = (self.scratch.path.clone(), self.opts.threads);
            self.verified =
                self.phase("verify", true, |_| Ok(verify::verify(&repo, &plan, &target, &files, full, threads)));
        }
        drop(lock);
        self.spot_check(&repo, &plan);
        self.validate(restored);
        Some(repo)
    }

    /// The transfer and write phases; returns whether the restore ran to the end.
    fn restore(&mut self, repo: &Repository, index: &crate::repo::Index, plan: &Plan) -> bool {
        let _ = self
            .state
            .set_progress(self.run_id, &serde_json::json!({ "drill_id": self.drill_id, "phase": "transfer" }));
        let opts = RestoreOptions {
            target: self.scratch.path.clone(),
            include: Vec::new(),
            exclude: Vec::new(),
            verify: false,
            threads: self.opts.threads.max(1),
            // The scratch copy must be the snapshot exactly, set-id bits and
            // device nodes included, for verification to judge it; it is
            // private to the drill's user and removed at the end.
            privileged: true,
        };
        let start = self.clock.elapsed().as_secs_f64();
        let r = restore::execute::execute(repo, index, plan, &opts);
        let total = self.clock.elapsed().as_secs_f64() - start;
        let report = match r {
            Ok(report) => report,
            Err(e) => {
                self.record_phase("transfer", start, total, true, Some(e.to_string()));
                return false;
            }
        };
        let write = report.timings.metadata.as_secs_f64().min(total);
        self.record_phase("transfer", start, total - write, true, None);
        self.record_phase("write", start + total - write, write, true, None);
        // From the start of the restore (the plan) to the first byte written.
        let before_transfer = (total - write - report.timings.transfer.as_secs_f64()).max(0.0);
        let plan_s = self.phases.iter().find(|p| p.name == "plan").map(|p| p.duration_s).unwrap_or(0.0);
        self.first_byte_s = report.timings.first_byte.map(|fb| plan_s + before_transfer + fb.as_secs_f64());
        self.scope = Scope {
            files: report.files,
            dirs: report.dirs,
            links: report.links,
            others: report.others,
            bytes: report.bytes,
            packs_fetched: report.packs_fetched,
            bytes_fetched: report.bytes_fetched,
            threads: opts.threads,
        };
        self.restore_failures = report
            .failures
            .into_iter()
            .map(|f| Mismatch {
                path: if f.path.starts_with('/') { f.path } else { format!("/{}", f.path) },
                reason: format!("not restored: {}", f.reason),
            })
            .collect();
        self.warnings.extend(report.warnings);
        true
    }

    fn spot_check(&mut self, repo: &Repository, plan: &Plan) {
        let n = self.opts.spot_check;
        if n == 0 {
            return;
        }
        if let Source::Command { .. } = self.policy.source {
            self.spot = Some(SpotCheck {
                requested: n as u64,
                note: Some("not applicable: the policy's source is a command, not files".into()),
                ..Default::default()
            });
            return;
        }
        let seed = self.seed;
        self.spot = self.phase("spot_check", false, |_| Ok(spot::spot_check(repo, plan, n, seed)));
    }

    fn validate(&mut self, restored: bool) {
        let Some(hook) = self.settings.validate.clone() else { return };
        if !restored {
            self.warnings.push("the validation command did not run: the restore did not complete".into());
            return;
        }
        let target = self.scratch.path.clone();
        let snapshot = self.chosen.as_ref().map(|c| c.id.to_hex()).unwrap_or_default();
        let env = ChildEnv::new(&self.policy.env)
            .with("CAIRN_POLICY", &self.policy.name)
            .with("CAIRN_DRILL_ID", &self.drill_id)
            .with("CAIRN_SNAPSHOT", snapshot)
            .with("CAIRN_RESTORE_TARGET", &target);
        // A failing command is a finding, not an error of the phase.
        let origin = crate::process::Origin::new(Some(&self.policy.name), "drill", self.opts.child_output);
        self.validation = self.phase("validate", true, |_| Ok(validate::run(&hook, &target, &env, &origin)));
    }
}

/// The paths a drill must never restore into or over.
fn source_paths(policy: &Policy) -> Vec<PathBuf> {
    match &policy.source {
        Source::Paths { paths, .. } => paths.clone(),
        Source::Command { .. } => Vec::new(),
    }
}

/// Runs one drill of `policy`. `open` opens its repository. The drill is
/// recorded in `state` (a run of kind `drill`, and a drill row), and its
/// reports are written to `<state>/reports/<drill id>/`.
pub fn run(
    policy: &Policy,
    open: impl FnOnce() -> Result<Repository>,
    state: &State,
    opts: &DrillOptions<'_>,
) -> Result<DrillOutcome, DrillError> {
    let started_at = Utc::now().trunc_subsecs(3);
    let clock = Instant::now();
    let settings = Settings::of(policy, opts).map_err(DrillError::Refused)?;
    let seed = match opts.seed {
        Some(s) if s > super::MAX_SEED => {
            let e = Error::BadDrillSetting(format!("seed {s} is above {} (2^53 - 1)", super::MAX_SEED));
            return Err(DrillError::Refused(e));
        }
        Some(s) => s,
        None => rand::random::<u64>() & super::MAX_SEED,
    };
    let drill_id = super::new_drill_id(&policy.name, started_at);
    // The policy's scratch directory, else `<state>/scratch`.
    let target = opts
        .target
        .clone()
        .or_else(|| policy.drill.as_ref().and_then(|d| d.scratch.as_ref()).map(|s| s.join(&drill_id)));
    let scratch =
        scratch::prepare(target.as_deref(), state.dir(), &drill_id, &source_paths(policy)).map_err(|e| match e {
            Error::UnsafeDrillTarget { .. } => DrillError::Refused(e),
            e => DrillError::Failed(e),
        })?;
    let new_run = NewRun {
        policy: policy.name.clone(),
        kind: JobKind::Drill,
        trigger: opts.trigger,
        scheduled_at: opts.scheduled_at,
        started_at,
        attempt: opts.attempt,
    };
    let started = match opts.run_id {
        Some(id) => Ok(id),
        None => state.start_run(&new_run),
    };
    let run_id = match started {
        Ok(id) => id,
        Err(e) => {
            scratch::remove(&scratch, opts.threads);
            return Err(DrillError::Failed(e));
        }
    };
    let mut d = Drill {
        policy,
        opts,
        state,
        settings,
        run_id,
        drill_id,
        seed,
        clock,
        started_at,
        environment: super::env::environment(&scratch.path),
        scratch,
        phases: Vec::new(),
        warnings: Vec::new(),
        location: super::report::mask_userinfo(&policy.repository.url),
        repo_id: None,
        chosen: None,
        scope: Scope::default(),
        first_byte_s: None,
        restore_failures: Vec::new(),
        verified: None,
        sample: None,
        spot: None,
        validation: None,
        cleanup: scratch::Cleanup::default(),
    };
    let repo = d.body(open);
    let start = d.clock.elapsed().as_secs_f64();
    let _ = d.state.set_progress(d.run_id, &serde_json::json!({ "drill_id": d.drill_id, "phase": "cleanup" }));
    d.cleanup = scratch::remove(&d.scratch, d.opts.threads);
    let error = d.cleanup.error.clone();
    d.record_phase("cleanup", start, d.clock.elapsed().as_secs_f64() - start, false, error);
    assemble::finish(d, repo.as_ref()).map_err(DrillError::Failed)
}
