//! The end of a drill: from what it found to the verdict, the report, the
//! evidence record, the report files and the state records, in that order.

use chrono::{SubsecRound, Utc};

use crate::error::Result;
use crate::policy::Policy;
use crate::repo::Repository;
use crate::state::{DrillRow, Outcome, RunFinish};

use super::report::{self, DrillReport, Evidence, Integrity, RecoveryPointInfo, RepositoryInfo, Rpo, Rto};
use super::session::{what, Drill};
use super::verdict::{self, FailureKind, Findings, Issue, Verdict};
use super::verify::Mismatch;
use super::{DrillOutcome, VerifyChoice};

/// `blake3:<hex>` of the effective policy (its canonical JSON).
pub fn policy_hash(policy: &Policy) -> String {
    report::blake3_of(&serde_json::to_value(policy).expect("policies serialise"))
}

/// Restore failures first, then verification mismatches of other paths.
fn mismatched(d: &Drill<'_>) -> Vec<Mismatch> {
    let mut all = d.restore_failures.clone();
    if let Some(v) = &d.verified {
        for m in &v.mismatches {
            if !all.iter().any(|x| x.path == m.path) {
                all.push(m.clone());
            }
        }
    }
    all.sort();
    all
}

fn build(d: &Drill<'_>) -> DrillReport {
    let ended_at = Utc::now().trunc_subsecs(3);
    let secs = |t: chrono::DateTime<Utc>| crate::duration::secs(d.started_at - t);
    let mismatched = mismatched(d);
    let measured: f64 = d.phases.iter().filter(|p| p.in_rto).map(|p| p.duration_s).sum();
    let objectives = &d.policy.objectives;
    let rto_objective = objectives.rto.map(|o| o.as_secs() as f64);
    let rpo_objective = objectives.rpo.map(|o| o.as_secs() as f64);
    let point_age = d.chosen.as_ref().map(|c| secs(c.snapshot.time));
    let newest_age = d.chosen.as_ref().map(|c| secs(c.newest));
    let judged_on_point = d.chosen.as_ref().is_none_or(|c| c.is_newest);
    let achieved = if judged_on_point { point_age } else { newest_age };
    let of = if judged_on_point { "the recovery point" } else { "the newest snapshot of the policy" };
    // Every phase that failed is an error of the drill.
    let errors: Vec<String> =
        d.phases.iter().filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", what(&p.name)))).collect();
    let judge = errors.is_empty();
    let spot_mismatched = d.spot.as_ref().map(|s| s.mismatched.clone()).unwrap_or_default();
    let verdict = verdict::decide(&Findings {
        errors: &errors,
        mismatched: &mismatched,
        spot_mismatched: &spot_mismatched,
        validation: d.validation.as_ref(),
        rto: rto_objective.map(|o| (o, measured)),
        rpo: rpo_objective.zip(achieved).map(|(o, a)| (o, a, of)),
    });
    let mut compared = vec!["content", "size", "mode", "mtime"];
    if crate::fsmeta::is_root() {
        compared.push("owner");
    }
    let verified = d.verified.clone().unwrap_or_default();
    DrillReport {
        schema: report::SCHEMA.into(),
        drill_id: d.drill_id.clone(),
        policy: report::PolicyInfo {
            name: d.policy.name.clone(),
            file: d.policy.file.display().to_string(),
            hash: policy_hash(d.policy),
        },
        started_by: d.opts.started_by.as_str().to_string(),
        trigger: d.opts.trigger.as_str().to_string(),
        tool: report::ToolInfo { name: "cairn".into(), version: crate::VERSION.into() },
        times: report::Times {
            scheduled_at: d.opts.scheduled_at,
            started_at: d.started_at,
            ended_at,
            duration_s: d.clock.elapsed().as_secs_f64(),
        },
        seed: d.seed,
        recovery_point: d.chosen.as_ref().map(|c| RecoveryPointInfo {
            choice: d.settings.choice.name().into(),
            window_s: match &d.settings.choice {
                super::select::Choice::Random(w) => Some(w.as_secs()),
                _ => None,
            },
            candidates: c.candidates,
            snapshot_id: c.id.to_hex(),
            time: c.snapshot.time,
            host: c.snapshot.hostname.clone(),
            paths: c.snapshot.paths.clone(),
            tags: c.snapshot.tags.clone(),
            tree: c.snapshot.tree.to_hex(),
            files: c.snapshot.summary.files_total,
            bytes: c.snapshot.summary.bytes_total,
            is_newest: c.is_newest,
        }),
        repository: RepositoryInfo { location: d.location.clone(), id: d.repo_id.clone() },
        environment: d.environment.clone(),
        scope: d.scope.clone(),
        phases: d.phases.clone(),
        first_byte_s: d.first_byte_s,
        rto: Rto {
            objective_s: rto_objective,
            measured_s: measured,
            met: rto_objective.filter(|_| judge).map(|o| !crate::text::exceeds(measured, o)),
        },
        rpo: Rpo {
            objective_s: rpo_objective,
            achieved_s: achieved,
            recovery_point_age_s: point_age,
            newest_snapshot_age_s: newest_age,
            judged_on: if judged_on_point { "recovery_point" } else { "newest_snapshot" }.into(),
            met: rpo_objective.zip(achieved).filter(|_| judge).map(|(o, a)| !crate::text::exceeds(a, o)),
        },
        integrity: Integrity {
            method: match d.settings.verify {
                VerifyChoice::Full => "full",
                VerifyChoice::Sample(_) => "sample",
            }
            .into(),
            compared: compared.into_iter().map(String::from).collect(),
            sample: d.sample.clone(),
            files_checked: verified.files_checked,
            bytes_checked: verified.bytes_checked,
            entries_checked: verified.entries_checked,
            mismatches: mismatched.len() as u64,
            mismatched,
            spot_check: d.spot.clone(),
        },
        validation: d.validation.clone(),
        cleanup: d.cleanup.clone(),
        verdict,
        warnings: d.warnings.clone(),
        evidence: None,
    }
}

/// What the evidence record says about a drill.
fn evidence_payload(r: &DrillReport, body: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "drill",
        "report_schema": r.schema,
        "drill_id": r.drill_id,
        "policy": r.policy.name,
        "policy_hash": r.policy.hash,
        "verdict": r.verdict.result,
        "failure_kind": r.verdict.failure_kind,
        // Milliseconds: evidence records hold integers only, so that any
        // JSON parser reproduces the signed bytes.
        "rto_objective_ms": millis(r.rto.objective_s),
        "rto_measured_ms": millis(r.rto.measured_s),
        "rpo_objective_ms": millis(r.rpo.objective_s),
        "rpo_achieved_ms": millis(r.rpo.achieved_s),
        "snapshot_id": r.recovery_point.as_ref().map(|p| &p.snapshot_id),
        "snapshot_time": r.recovery_point.as_ref().map(|p| p.time),
        "tree": r.recovery_point.as_ref().map(|p| &p.tree),
        "started_at": r.times.started_at,
        "ended_at": r.times.ended_at,
        "report_blake3": body,
    })
}

fn millis(secs: impl Into<Option<f64>>) -> Option<i64> {
    secs.into().map(|s| (s * 1000.0).round() as i64)
}

fn body_hash(r: &DrillReport) -> String {
    report::body_blake3(&serde_json::to_value(r).expect("drill reports serialise"))
}

/// Appends the evidence record (when there is a sink and a repository)
/// and sets the report's `evidence` section.
fn sign(d: &Drill<'_>, r: &mut DrillReport, repo: Option<&Repository>) {
    let unsigned = |r: &DrillReport, note: String| Evidence {
        status: "unsigned".into(),
        report_blake3: body_hash(r),
        seq: None,
        hash: None,
        signature: None,
        note: Some(note),
    };
    let (sink, repo) = match (d.opts.evidence, repo) {
        (None, _) => {
            r.evidence = Some(unsigned(r, "no evidence record (not signed)".into()));
            return;
        }
        (Some(_), None) => {
            r.evidence =
                Some(unsigned(r, "no evidence record (not signed): the repository could not be opened".into()));
            return;
        }
        (Some(s), Some(repo)) => (s, repo),
    };
    let body = body_hash(r);
    match sink.append(repo, evidence_payload(r, &body)) {
        Ok(e) => {
            r.evidence = Some(Evidence {
                status: "signed".into(),
                report_blake3: body,
                seq: Some(e.seq),
                hash: Some(e.hash),
                signature: Some(e.signature),
                note: None,
            })
        }
        Err(e) => {
            // The drill cannot count as proven without its evidence.
            r.verdict.add(FailureKind::Error, format!("error: appending the evidence record: {e}"));
            r.evidence = Some(unsigned(r, "no evidence record (not signed): appending it failed".into()));
        }
    }
}

fn drill_row(r: &DrillReport, run_id: i64, report_dir: Option<String>) -> DrillRow {
    let v: &Verdict = &r.verdict;
    DrillRow {
        drill_id: r.drill_id.clone(),
        policy: r.policy.name.clone(),
        run_id: Some(run_id),
        started_by: r.started_by.clone(),
        started_at: r.times.started_at,
        ended_at: r.times.ended_at,
        snapshot_id: r.recovery_point.as_ref().map(|p| p.snapshot_id.clone()),
        snapshot_time: r.recovery_point.as_ref().map(|p| p.time),
        tree: r.recovery_point.as_ref().map(|p| p.tree.clone()),
        verdict: v.result.clone(),
        failure_kind: v.failure_kind.map(|k| k.as_str().to_string()),
        reasons: v.reasons(),
        rto_objective_s: r.rto.objective_s,
        // A drill that failed with an error restored nothing to time.
        rto_measured_s: (v.failure_kind != Some(FailureKind::Error)).then_some(r.rto.measured_s),
        rpo_objective_s: r.rpo.objective_s,
        rpo_achieved_s: r.rpo.achieved_s,
        files_checked: r.integrity.files_checked,
        bytes_checked: r.integrity.bytes_checked,
        mismatches: r.integrity.mismatches,
        report_dir,
        evidence_hash: r.evidence.as_ref().and_then(|e| e.hash.clone()),
    }
}

/// Verdict → evidence → report files → state records.
pub(super) fn finish(d: Drill<'_>, repo: Option<&Repository>) -> Result<DrillOutcome> {
    let mut r = report::rounded(build(&d));
    sign(&d, &mut r, repo);
    let dir = d.state.dir().join("reports").join(&d.drill_id);
    let written = report::write_all(&r, &dir);
    let report_dir = written.as_ref().ok().map(|_| dir.display().to_string());
    let row = drill_row(&r, d.run_id, report_dir);
    let recorded = d.state.record_drill(&row);
    let mut error = r.verdict.issues.first().map(|i: &Issue| i.message.clone());
    if let Err(e) = &written {
        error = Some(format!("writing the drill reports: {e}"));
    }
    // A run the caller recorded (the daemon's) is finished by the caller.
    let finished = if d.opts.run_id.is_some() {
        Ok(())
    } else {
        d.state.finish_run(
            d.run_id,
            &RunFinish {
                ended_at: Utc::now(),
                outcome: if r.verdict.passed() && written.is_ok() { Outcome::Success } else { Outcome::Failure },
                snapshot_id: row.snapshot_id.clone(),
                bytes: Some(r.scope.bytes),
                error,
                duration_s: Some(d.clock.elapsed().as_secs_f64()),
            },
        )
    };
    let files = written?;
    recorded?;
    finished?;
    Ok(DrillOutcome { report: r, report_dir: dir, files })
}
