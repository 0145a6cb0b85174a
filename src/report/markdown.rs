//! The Markdown form: the same sections as the HTML page, as GitHub-style
//! tables, without charts (the RPO breaches and drill times are listed
//! instead). Every value from the state (errors, reasons) is escaped so it
//! cannot break a table.

use std::fmt::Write;

use super::*;
use crate::page::col;
use crate::page::markdown::{key_values, Table};
use crate::text::markdown_cell as cell;

/// The status as a coloured marker and a word, e.g. `🔴 red`.
pub fn badge(s: Status) -> String {
    let dot = match s {
        Status::Green => "🟢",
        Status::Amber => "🟠",
        Status::Red => "🔴",
    };
    format!("{dot} {}", s.as_str())
}

/// The report as Markdown.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "# cairn compliance report\n");
    let mut head = vec![("Period", format!("{} to {}", when(r.period.since), when(r.period.until)))];
    if r.period.evaluated_until < r.period.until {
        head.push(("Evaluated up to", when(r.period.evaluated_until)));
    }
    head.extend([
        ("Generated at", when(r.generated_at)),
        ("Host", cell(&r.host)),
        ("cairn version", r.cairn_version.clone()),
    ]);
    if let Some(e) = &r.evidence {
        head.push((
            "Source",
            format!("verified evidence of {} repositories (no state database)", e.repositories.len()),
        ));
        head.push(("Hosts", r.hosts.len().to_string()));
    } else {
        head.push(("State directory", format!("`{}`", cell(&r.state_dir))));
        head.push(("Policy directory", format!("`{}`", cell(&r.policies_dir))));
    }
    head.push(("Overall status", format!("**{}** ({})", badge(r.status), r.status.label())));
    let _ = writeln!(w, "{}", key_values(&head));
    for n in &r.notices {
        let _ = writeln!(w, "> **Note:** {}\n", n.replace('\n', " "));
    }
    hosts(w, r);

    let _ = writeln!(w, "## Summary\n");
    let s = &r.summary;
    let _ = writeln!(
        w,
        "{}: {} green, {} amber, {} red. Backups: {} succeeded, {} failed, {} scheduled slots. \
         Drills: {} of {} passed.\n",
        super::findings::plural(s.policies as u64, "policy", "policies"),
        s.green,
        s.amber,
        s.red,
        s.backups_succeeded,
        s.backups_failed,
        s.backups_scheduled,
        s.drills_passed,
        s.drills
    );
    if !r.policies.is_empty() {
        let mut t = Table::new(&[
            col("Policy"),
            col("Status"),
            col("Backups covered / scheduled"),
            col("Failed runs"),
            col("RPO"),
            col("RPO now"),
            col("RPO breached"),
            col("Drills passed"),
            col("RTO worst / objective"),
            col("Verification"),
        ]);
        for p in &r.policies {
            t.row(&[
                format!("{}{}", p.label(), if p.in_policy_dir || p.host.is_some() { "" } else { " (removed)" }),
                badge(p.status),
                coverage(&p.backups),
                p.backups.failed.to_string(),
                human_opt(p.objectives.rpo_s),
                human_opt(p.rpo.age_at_end_s),
                breached(&p.rpo),
                drills_passed(&p.drills),
                format!(
                    "{} / {}",
                    human_opt_against(p.drills.rto_worst_s, p.objectives.rto_s),
                    human_opt(p.objectives.rto_s)
                ),
                verification(&p.verification),
            ]);
        }
        let _ = writeln!(w, "{}", t.finish());
    }

    let _ = writeln!(w, "## Controls\n");
    let mut t =
        Table::new(&[col("Framework"), col("Control"), col("Status"), col("Evidence in this report"), col("Sections")]);
    for c in &r.controls {
        t.row(&[
            c.framework.to_string(),
            format!("**{}** {}", c.id, c.title),
            badge(c.status),
            cell(&c.evidence),
            c.sections.join(", "),
        ]);
    }
    let _ = writeln!(w, "{}", t.finish());

    let _ = writeln!(w, "## Drill coverage\n");
    let never: Vec<String> = r.policies.iter().filter(|p| p.verification.never_drilled).map(|p| p.label()).collect();
    let verify: Vec<String> =
        r.policies.iter().filter(|p| p.verification.needs_verification == Some(true)).map(|p| p.label()).collect();
    let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let _ = writeln!(w, "- Never drilled: {}", list(&never));
    let _ = writeln!(w, "- Needs verification (content changed since the last passing drill): {}\n", list(&verify));

    for p in &r.policies {
        policy(w, p);
    }
    let _ = writeln!(w, "---\n\n{}", METHOD);
    o
}

/// How the figures are computed, in one paragraph (every form carries it).
pub const METHOD: &str = "Scheduled backups are the policy's cron slots in the period, in its time zone. A slot is \
covered when a successful backup was scheduled for it or started before the next slot. The recovery point's age \
at any instant is the time since the start of the newest successful backup that had finished by then; having no \
recovery point counts as a breach. Drills are judged against the RTO each drill recorded. Figures cover the \
period up to the time the report was generated.";

fn coverage(b: &Backups) -> String {
    match (b.scheduled, b.slots_covered) {
        (Some(n), Some(c)) => format!("{c} / {n} ({})", percent(b.coverage)),
        _ => format!("{} ok (no schedule)", b.succeeded),
    }
}

fn breached(r: &Rpo) -> String {
    match r.objective_s {
        None => "—".into(),
        Some(_) if r.breaches.is_empty() => "never".into(),
        Some(_) => format!("{}×, {}", r.breaches.len(), human_duration(r.breached_s)),
    }
}

fn drills_passed(d: &Drills) -> String {
    if d.count == 0 {
        "no drill".into()
    } else {
        format!("{} / {} ({})", d.passed, d.count, percent(d.pass_rate))
    }
}

fn verification(v: &Verification) -> String {
    if v.never_drilled {
        "never drilled".into()
    } else if v.needs_verification == Some(true) {
        "needs verification".into()
    } else {
        "verified".into()
    }
}

fn more_line(w: &mut String, line: Option<String>) {
    if let Some(l) = line {
        let _ = writeln!(w, "\n{l}");
    }
}

fn policy(w: &mut String, p: &PolicyReport) {
    let removed = if p.in_policy_dir || p.host.is_some() { "" } else { " (not in the policy directory any more)" };
    let _ = writeln!(w, "## Policy `{}`{removed}\n", p.label());
    if !p.description.is_empty() {
        let _ = writeln!(w, "{}\n", p.description);
    }
    let _ = writeln!(w, "Status: **{}** ({})\n", badge(p.status), p.status.label());
    if let Some(t) = p.tracked_since {
        let _ = writeln!(w, "First recorded on {}: judged from then.\n", t.format("%Y-%m-%d %H:%M UTC"));
    }
    for f in &p.findings {
        let _ = writeln!(w, "- {}: {}", badge(f.severity), f.message);
    }
    if !p.findings.is_empty() {
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "Objectives: RPO {}, RTO {}.\n", human_opt(p.objectives.rpo_s), human_opt(p.objectives.rto_s));

    let b = &p.backups;
    let _ = writeln!(w, "### Backups\n");
    match (&b.schedule, b.scheduled) {
        (Some(c), Some(n)) => {
            let tz = b.timezone.as_deref().unwrap_or("UTC");
            let _ = writeln!(w, "Schedule `{c}` ({tz}): {n} slots in the period, {}.", coverage(b));
        }
        _ => {
            let _ = writeln!(w, "No backup schedule known.");
        }
    }
    let _ = writeln!(w, "Runs: {} ({} succeeded, {} failed, {} running).\n", b.runs, b.succeeded, b.failed, b.running);
    if !b.missed_slots.is_empty() {
        let _ = writeln!(w, "Slots without a successful backup: {}.\n", missed(b));
    }
    if !b.failures.is_empty() {
        let mut t = Table::new(&[col("Started"), col("Outcome"), col("Trigger"), col("Attempt"), col("Error")]);
        for f in b.failures.iter().take(LIST_MAX) {
            t.row(&[
                when(f.started_at),
                f.outcome.clone(),
                f.trigger.clone(),
                f.attempt.to_string(),
                cell(f.error.as_deref().unwrap_or("—")),
            ]);
        }
        w.push_str(&t.finish());
        more_line(w, more(b.failures.len(), "failed runs"));
        let _ = writeln!(w);
    }

    let r = &p.rpo;
    let _ = writeln!(w, "### Recovery point age (RPO)\n");
    let _ = writeln!(
        w,
        "Objective {}; age at the end of the period {}; worst {}; within the objective {} of the period.\n",
        human_opt(r.objective_s),
        human_opt(r.age_at_end_s),
        human_opt_against(r.worst_age_s, r.objective_s),
        percent(r.compliance)
    );
    if !r.breaches.is_empty() {
        let mut t = Table::new(&[col("Breach from"), col("to"), col("Duration")]);
        for x in r.breaches.iter().take(LIST_MAX) {
            let to = if x.ongoing { format!("{} (ongoing)", when(x.end)) } else { when(x.end) };
            t.row(&[when(x.start), to, human_duration(x.duration_s)]);
        }
        w.push_str(&t.finish());
        more_line(w, more(r.breaches.len(), "breaches"));
        let _ = writeln!(w);
    }

    let d = &p.drills;
    let _ = writeln!(w, "### Restore drills\n");
    let sched = d.schedule.as_deref().map(|s| format!("schedule `{s}`")).unwrap_or_else(|| "no drill schedule".into());
    let _ = writeln!(
        w,
        "{} in the period ({sched}): {} passed, {} failed; pass rate {}. Files checked {}, mismatches {}.\n",
        d.count,
        d.passed,
        d.failed,
        percent(d.pass_rate),
        d.files_checked,
        d.mismatches
    );
    if !d.list.is_empty() {
        let mut t = Table::new(&[
            col("Started"),
            col("Verdict"),
            col("RTO measured"),
            col("RTO objective"),
            col("RPO achieved"),
            col("Files checked"),
            col("Mismatches"),
            col("Reasons"),
        ]);
        for x in d.list.iter().take(LIST_MAX) {
            t.row(&[
                when(x.started_at),
                cell(&x.verdict),
                human_opt_against(x.rto_measured_s, x.rto_objective_s),
                human_opt(x.rto_objective_s),
                human_opt(x.rpo_achieved_s),
                x.files_checked.to_string(),
                x.mismatches.to_string(),
                cell(&x.reasons.join("; ")),
            ]);
        }
        w.push_str(&t.finish());
        more_line(w, more(d.list.len(), "drills"));
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "### Restore time (RTO)\n");
    let _ = writeln!(
        w,
        "Objective {}; last measured {}; worst {}; above the objective in {} of {} drills.\n",
        human_opt(d.rto_objective_s),
        human_opt_against(d.rto_last_s, d.rto_objective_s),
        human_opt_against(d.rto_worst_s, d.rto_objective_s),
        d.rto_exceeded,
        d.count
    );
}

/// The hosts of a report from evidence, and what did not count.
fn hosts(w: &mut String, r: &Report) {
    let Some(e) = &r.evidence else { return };
    let _ = writeln!(w, "## Hosts\n");
    let mut t = Table::new(&[
        col("Host"),
        col("Status"),
        col("Policies (green / amber / red)"),
        col("Last verified backup"),
        col("Last drill"),
        col("Last record"),
    ]);
    let opt = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(when).unwrap_or_else(|| "—".into());
    for h in &r.hosts {
        t.row(&[
            cell(&h.host),
            badge(h.status),
            format!("{} ({} / {} / {})", h.policies, h.green, h.amber, h.red),
            opt(h.last_backup),
            opt(h.last_drill),
            format!("{}{}", opt(h.last_record), if h.silent { " **silent**" } else { "" }),
        ]);
    }
    let _ = writeln!(w, "{}", t.finish());
    let _ = writeln!(w, "## Evidence\n");
    for x in &e.repositories {
        let state = match (&x.error, x.intact) {
            (Some(err), _) => format!("not read: {err}"),
            (None, true) => "intact".into(),
            (None, false) => format!("{} problem(s)", x.problem_count),
        };
        let _ = writeln!(w, "- `{}`: {state}; {} record(s) verified", cell(&x.location), x.records_verified);
        for p in &x.problems {
            let _ = writeln!(w, "  - {}", p.replace('\n', " "));
        }
    }
    let _ = writeln!(w);
    for u in e.not_counted.iter().take(LIST_MAX) {
        let what = match (&u.signer, u.seq) {
            (Some(s), Some(q)) => format!("record {s}/{q}"),
            (Some(s), None) => format!("every record of key {s}"),
            _ => "records".into(),
        };
        let _ = writeln!(
            w,
            "- Not counted ({}): {what} of host {}: {}",
            u.reason,
            u.host.as_deref().unwrap_or("?"),
            u.detail
        );
    }
    for f in e.flagged_snapshots.iter().take(LIST_MAX) {
        let _ =
            writeln!(w, "- Flagged snapshot {} of host {}: {}", crate::text::id_prefix(&f.snapshot, 16), f.host, f.why);
    }
    let _ = writeln!(w);
}
