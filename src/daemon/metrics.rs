//! `GET /metrics`: Prometheus text format through `prometheus-client`.
//!
//! Every scrape builds a fresh registry from the state database and the
//! daemon's own counters, so the figures survive restarts and a run
//! recorded by `cairn drill` from another process shows up too. Series
//! (labels `policy`, `kind`):
//! - `cairn_job_last_success_timestamp_seconds`, `cairn_job_last_duration_seconds`,
//!   `cairn_job_last_bytes`: of the newest successful run;
//! - `cairn_job_runs_total{outcome}` and `cairn_job_failures_total`;
//! - `cairn_job_running`, `cairn_job_running_seconds` (for "stuck" alerts),
//!   `cairn_job_next_run_timestamp_seconds`,
//!   `cairn_job_interval_seconds` (between two slots);
//! - a scheduled job that never succeeded has a last success of 0;
//! - `cairn_recovery_point_age_seconds`, `cairn_rpo_objective_seconds`,
//!   `cairn_rpo_breached` (per policy; 1 too when there has been no backup
//!   for longer than the RPO since the policy's first run);
//! - `cairn_drill_last_success` (1 pass, 0 fail), `cairn_drill_last_timestamp_seconds`,
//!   `cairn_drill_rto_measured_seconds`, `cairn_drill_rto_objective_seconds`,
//!   `cairn_drill_needs_verification` (per policy);
//! - `cairn_evidence_ok` (per policy): 1 when the evidence check after its
//!   last backup found nothing wrong, 0 when it found damage;
//! - `cairn_policies{state="valid"|"invalid"}`, `cairn_daemon_start_timestamp_seconds`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::{Outcome, State};
use crate::status::{DrillState, RpoState, StatusReport};

type Labels = Vec<(String, String)>;
type G = Family<Labels, Gauge<f64, AtomicU64>>;
type C = Family<Labels, Counter<u64>>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> G {
    let f = G::default();
    reg.register(name, help, f.clone());
    f
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> C {
    let f = C::default();
    reg.register(name, help, f.clone());
    f
}

fn secs(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Renders the metrics of `status` (and the run counts of `state`).
pub fn render(status: &StatusReport, state: Option<&State>, invalid_files: usize, started: f64) -> String {
    let mut reg = Registry::default();
    let last_success =
        gauge(&mut reg, "cairn_job_last_success_timestamp_seconds", "When the newest successful run ended");
    let last_duration = gauge(&mut reg, "cairn_job_last_duration_seconds", "Duration of the newest successful run");
    let last_bytes = gauge(&mut reg, "cairn_job_last_bytes", "Bytes in the snapshot of the newest successful run");
    let runs = counter(&mut reg, "cairn_job_runs", "Runs recorded, by outcome");
    let failures = counter(&mut reg, "cairn_job_failures", "Runs that failed or were interrupted");
    let running = gauge(&mut reg, "cairn_job_running", "Whether a job of this kind runs now");
    let running_for = gauge(&mut reg, "cairn_job_running_seconds", "How long the running job has been running");
    let next = gauge(&mut reg, "cairn_job_next_run_timestamp_seconds", "When the next scheduled run is due");
    let interval = gauge(&mut reg, "cairn_job_interval_seconds", "Time between two slots of the job's schedule");
    let rp_age = gauge(&mut reg, "cairn_recovery_point_age_seconds", "Age of the newest recovery point");
    let rpo = gauge(&mut reg, "cairn_rpo_objective_seconds", "The policy's recovery point objective");
    let rpo_breached = gauge(&mut reg, "cairn_rpo_breached", "1 when the newest recovery point is older than the RPO");
    let drill_ok = gauge(&mut reg, "cairn_drill_last_success", "1 when the newest drill passed, 0 when it failed");
    let drill_time = gauge(&mut reg, "cairn_drill_last_timestamp_seconds", "When the newest drill started");
    let rto = gauge(&mut reg, "cairn_drill_rto_measured_seconds", "Restore time measured by the newest drill");
    let rto_obj = gauge(&mut reg, "cairn_drill_rto_objective_seconds", "The policy's recovery time objective");
    let needs =
        gauge(&mut reg, "cairn_drill_needs_verification", "1 when content changed since the last passing drill");
    let policies = gauge(&mut reg, "cairn_policies", "Policy files loaded, by state");
    let start = gauge(&mut reg, "cairn_daemon_start_timestamp_seconds", "When the daemon started");
    let evidence_ok = gauge(
        &mut reg,
        "cairn_evidence_ok",
        "1 when the last evidence check of the policy's repository found nothing wrong",
    );

    start.get_or_create(&Vec::new()).set(started);
    policies
        .get_or_create(&labels(&[("state", "valid")]))
        .set(status.policies.iter().filter(|p| p.configured).count() as f64);
    policies.get_or_create(&labels(&[("state", "invalid")])).set(invalid_files as f64);
    for p in &status.policies {
        let name = p.name.as_str();
        let pl = labels(&[("policy", name)]);
        if let Some(s) = state {
            for (kind, outcome, n) in s.run_counts(name).unwrap_or_default() {
                let l = labels(&[("policy", name), ("kind", kind.as_str()), ("outcome", outcome.as_str())]);
                runs.get_or_create(&l).inc_by(n);
                if matches!(outcome, Outcome::Failure | Outcome::Interrupted) {
                    failures.get_or_create(&labels(&[("policy", name), ("kind", kind.as_str())])).inc_by(n);
                }
            }
            for kind in crate::state::JobKind::ALL {
                if let Ok(Some(r)) = s.last_run(name, kind, &[Outcome::Success]) {
                    let l = labels(&[("policy", name), ("kind", kind.as_str())]);
                    last_success.get_or_create(&l).set(secs(r.ended_at.unwrap_or(r.started_at)));
                    if let Some(d) = r.duration_s {
                        last_duration.get_or_create(&l).set(d);
                    }
                    if let Some(b) = r.bytes {
                        last_bytes.get_or_create(&l).set(b as f64);
                    }
                }
            }
        }
        for r in &p.running {
            let l = labels(&[("policy", name), ("kind", r.kind.as_str())]);
            running.get_or_create(&l).set(1.0);
            running_for.get_or_create(&l).set((status.generated_at - r.started_at).num_milliseconds() as f64 / 1000.0);
        }
        for n in &p.next {
            let l = labels(&[("policy", name), ("kind", n.kind.as_str())]);
            next.get_or_create(&l).set(secs(n.due));
            if let Some(i) = n.interval_s {
                interval.get_or_create(&l).set(i);
            }
            // A scheduled job that never succeeded: 0, so that "no success
            // for too long" alerts fire for it too.
            let _ = last_success.get_or_create(&l);
        }
        if let Some(a) = p.rpo.age_s {
            rp_age.get_or_create(&pl).set(a);
        }
        if let Some(o) = p.rpo.objective_s {
            rpo.get_or_create(&pl).set(o);
            let breached = p.rpo.state == RpoState::Breached;
            rpo_breached.get_or_create(&pl).set(f64::from(u8::from(breached)));
        }
        if let Some(d) = &p.drill.last {
            drill_ok.get_or_create(&pl).set(f64::from(u8::from(d.passed())));
            drill_time.get_or_create(&pl).set(secs(d.started_at));
            if let Some(m) = d.rto_measured_s {
                rto.get_or_create(&pl).set(m);
            }
            if let Some(o) = d.rto_objective_s {
                rto_obj.get_or_create(&pl).set(o);
            }
        }
        if let Some(e) = &p.evidence {
            evidence_ok.get_or_create(&pl).set(f64::from(u8::from(e.ok)));
        }
        if p.drill.state != DrillState::NotConfigured {
            needs.get_or_create(&pl).set(f64::from(u8::from(p.drill.state == DrillState::NeedsVerification)));
        }
    }
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::state::{JobKind, NewRun, Trigger};

    #[test]
    fn a_stuck_job_shows_how_long_it_has_run_and_a_new_policy_is_not_yet_breached() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let p = crate::policy::for_tests("web", "/r", "[schedule]\nbackup = \"@daily\"\n[objectives]\nrpo = \"1d\"\n");
        let started_at = now - Duration::hours(2);
        let new = NewRun {
            policy: "web".into(),
            kind: JobKind::Backup,
            trigger: Trigger::Schedule,
            scheduled_at: None,
            started_at,
            attempt: 1,
        };
        state.start_run(&new).unwrap();
        let check = serde_json::json!({"ok": false, "checked_at": "x", "problems": 1});
        state.set_daemon_value("evidence:web", Some(&check.to_string())).unwrap();
        let status = crate::status::build(Some(&state), dir.path(), &[p], Vec::new(), now).unwrap();
        let text = render(&status, Some(&state), 0, 0.0);
        for want in [
            "cairn_evidence_ok{policy=\"web\"} 0",
            "cairn_job_running_seconds{policy=\"web\",kind=\"backup\"} 7200",
            "cairn_rpo_breached{policy=\"web\"} 0",
            "cairn_job_last_success_timestamp_seconds{policy=\"web\",kind=\"backup\"} 0",
            "cairn_job_interval_seconds{policy=\"web\",kind=\"backup\"} 86400",
        ] {
            assert!(text.contains(want), "no {want} in\n{text}");
        }
    }
}
