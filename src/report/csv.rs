//! The CSV form: one row per policy with its key figures, for spreadsheets
//! and audit tooling (RFC 4180: comma-separated, CRLF line ends, fields
//! quoted when they hold a comma, quote or line break). An unknown value is
//! an empty field; durations are seconds, shares fractions in `[0, 1]`,
//! booleans `true`/`false`, times RFC 3339 UTC. The columns, in order, are
//! [`COLUMNS`]; `docs/REPORTS.md` explains each.

use super::{PolicyReport, Report};

/// The header row.
pub const COLUMNS: &[&str] = &[
    "policy",
    "status",
    "in_policy_dir",
    "period_since",
    "period_until",
    "schedule",
    "timezone",
    "backups_scheduled",
    "backups_covered",
    "backups_missed",
    "backup_coverage",
    "backup_runs",
    "backups_succeeded",
    "backups_failed",
    "rpo_objective_s",
    "rpo_age_at_end_s",
    "rpo_worst_age_s",
    "rpo_breaches",
    "rpo_breached_s",
    "rpo_compliance",
    "drills",
    "drills_passed",
    "drills_failed",
    "drill_pass_rate",
    "rto_objective_s",
    "rto_last_s",
    "rto_worst_s",
    "rto_exceeded",
    "files_checked",
    "mismatches",
    "never_drilled",
    "last_drill",
    "last_passed_drill",
    "needs_verification",
    "findings",
    "host",
];

/// The report as CSV: a header and one row per policy.
pub fn render(report: &Report) -> String {
    let mut out = line(COLUMNS.iter().map(|c| c.to_string()));
    for p in &report.policies {
        out.push_str(&line(row(report, p)));
    }
    out
}

fn row(report: &Report, p: &PolicyReport) -> Vec<String> {
    let t = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let b = &p.backups;
    let r = &p.rpo;
    let d = &p.drills;
    let v = &p.verification;
    vec![
        p.name.clone(),
        p.status.as_str().into(),
        p.in_policy_dir.to_string(),
        t(report.period.since),
        t(report.period.evaluated_until),
        b.schedule.clone().unwrap_or_default(),
        b.timezone.clone().unwrap_or_default(),
        opt(b.scheduled),
        opt(b.slots_covered),
        opt(b.scheduled.zip(b.slots_covered).map(|(s, c)| s - c)),
        share(b.coverage),
        b.runs.to_string(),
        b.succeeded.to_string(),
        b.failed.to_string(),
        seconds(p.objectives.rpo_s),
        seconds(r.age_at_end_s),
        seconds(r.worst_age_s),
        r.breaches.len().to_string(),
        seconds(Some(r.breached_s)),
        share(r.compliance),
        d.count.to_string(),
        d.passed.to_string(),
        d.failed.to_string(),
        share(d.pass_rate),
        seconds(p.objectives.rto_s),
        seconds(d.rto_last_s),
        seconds(d.rto_worst_s),
        d.rto_exceeded.to_string(),
        d.files_checked.to_string(),
        d.mismatches.to_string(),
        v.never_drilled.to_string(),
        v.last_drill.map(t).unwrap_or_default(),
        v.last_passed.map(t).unwrap_or_default(),
        opt(v.needs_verification),
        p.findings
            .iter()
            .filter(|f| f.severity != super::Status::Green)
            .map(|f| format!("{}: {}", f.severity.as_str(), f.message))
            .collect::<Vec<_>>()
            .join("; "),
        p.host.clone().unwrap_or_default(),
    ]
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn seconds(v: Option<f64>) -> String {
    v.map(|s| format!("{}", (s * 1000.0).round() / 1000.0)).unwrap_or_default()
}

fn share(v: Option<f64>) -> String {
    // Rounded down, so that a share just under 1 never reads as 1.
    v.map(|s| format!("{}", (s * 10000.0).floor() / 10000.0)).unwrap_or_default()
}

/// One record, each field quoted when it needs to be.
fn line(fields: impl IntoIterator<Item = String>) -> String {
    let mut s: String = fields
        .into_iter()
        .map(|f| if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f })
        .collect::<Vec<_>>()
        .join(",");
    s.push_str("\r\n");
    s
}
