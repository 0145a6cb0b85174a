//! The Markdown form of a drill report: the same facts as the JSON, laid
//! out for a person (or a ticket). Long lists are cut; `report.json` has
//! them whole.

use std::fmt::Write;

use super::{human_bytes, DrillReport};
use crate::text::{human_duration, human_duration_against, human_duration_opt, human_duration_opt_against};

/// Mismatched files listed at most.
const MAX_LISTED: usize = 200;

use crate::page::markdown::{key_values, Table};
use crate::page::{col, num};
pub(crate) use crate::text::markdown_cell as cell;

/// Inline code that survives backticks in `s`, for running text.
fn code_text(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{}{pad}{fence}", s.replace(['\n', '\r'], " "))
}

/// Inline code for a table cell (`|` escaped).
fn code(s: &str) -> String {
    cell(&code_text(s))
}

fn met(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not judged",
    }
}

pub fn render(r: &DrillReport) -> String {
    let mut s = String::new();
    let verdict = match r.verdict.failure_kind {
        None => "PASS".to_string(),
        Some(k) => format!("FAIL ({})", k.as_str()),
    };
    let _ = writeln!(s, "# Restore drill {} — {verdict}\n", code_text(&r.drill_id));
    let rows = [
        ("policy", format!("{} ({}, {})", code(&r.policy.name), cell(&r.policy.file), code(&r.policy.hash))),
        ("started by", cell(&r.started_by)),
        ("trigger", r.trigger.clone()),
        ("tool", format!("{} {}", r.tool.name, r.tool.version)),
        ("scheduled", r.times.scheduled_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "—".into())),
        ("started (UTC)", r.times.started_at.to_rfc3339()),
        ("ended (UTC)", r.times.ended_at.to_rfc3339()),
        ("seed", r.seed.to_string()),
        ("report schema", code(&r.schema)),
    ];
    s.push_str(&key_values(&rows));

    let _ = writeln!(s, "\n## Verdict\n\n**{verdict}**\n");
    for i in &r.verdict.issues {
        let _ = writeln!(s, "- {}: {}", i.kind.as_str(), cell(&i.message));
    }

    let _ = writeln!(s, "\n## Recovery point\n");
    match &r.recovery_point {
        None => s.push_str("No recovery point was chosen.\n"),
        Some(p) => {
            let window = p.window_s.map(|w| format!(" within {}", human_duration(w as f64))).unwrap_or_default();
            s.push_str(&key_values(&[
                ("snapshot", code(&p.snapshot_id)),
                ("time (UTC)", p.time.to_rfc3339()),
                ("host", cell(&p.host)),
                ("paths", cell(&p.paths.join(", "))),
                ("tree", code(&p.tree)),
                (
                    "chosen",
                    format!("{}{window}, among {} snapshot(s); newest: {}", p.choice, p.candidates, p.is_newest),
                ),
                ("content", format!("{} files, {}", p.files, human_bytes(p.bytes))),
            ]));
        }
    }

    let _ = writeln!(s, "\n## Repository and target environment\n");
    let e = &r.environment;
    s.push_str(&key_values(&[
        ("repository", format!("{} (id {})", cell(&r.repository.location), r.repository.id.as_deref().unwrap_or("—"))),
        ("host", format!("{} ({}, {} CPUs, user {})", cell(&e.host), e.arch, e.cpus, cell(&e.user))),
        ("OS / kernel", format!("{} / {}", cell(&e.os), cell(&e.kernel))),
        ("target", format!("{} ({})", cell(&e.target), e.filesystem.as_deref().unwrap_or("file system unknown"))),
    ]));

    let _ = writeln!(s, "\n## Recovery time (RTO)\n");
    let _ = writeln!(
        s,
        "Objective {}, measured **{}**: {}. Time to first byte: {}.\n",
        human_duration_opt(r.rto.objective_s),
        human_duration_against(r.rto.measured_s, r.rto.objective_s),
        met(r.rto.met),
        human_duration_opt(r.first_byte_s)
    );
    let mut phases = Table::new(&[col("phase"), num("start"), num("duration"), col("in RTO")]);
    for p in &r.phases {
        let err = p.error.as_deref().map(|e| format!(" — failed: {}", cell(e))).unwrap_or_default();
        phases.row(&[
            format!("{}{err}", p.name),
            format!("{:.3} s", p.start_s),
            format!("{:.3} s", p.duration_s),
            (if p.in_rto { "yes" } else { "no" }).into(),
        ]);
    }
    s.push_str(&phases.finish());

    let _ = writeln!(s, "\n## Recovery point age (RPO)\n");
    let _ = writeln!(
        s,
        "Objective {}, achieved {} (recovery point age {}, newest snapshot age {}; judged on the {}): {}.",
        human_duration_opt(r.rpo.objective_s),
        human_duration_opt_against(r.rpo.achieved_s, r.rpo.objective_s),
        human_duration_opt(r.rpo.recovery_point_age_s),
        human_duration_opt(r.rpo.newest_snapshot_age_s),
        r.rpo.judged_on.replace('_', " "),
        met(r.rpo.met)
    );

    integrity(&mut s, r);

    let _ = writeln!(s, "\n## Validation\n");
    match &r.validation {
        None => s.push_str("No validation command.\n"),
        Some(v) => {
            let result = if v.passed {
                "passed".to_string()
            } else {
                format!("**failed**: {}", v.error.as_deref().unwrap_or(""))
            };
            let _ =
                writeln!(s, "{} (timeout {}): {result}.", code_text(&v.command), human_duration(v.timeout_s as f64));
            let _ = writeln!(
                s,
                "Exit code {}, signal {}, {:.3} s, {} bytes of output. Last lines:\n",
                v.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
                v.signal.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
                v.duration_s,
                v.output_bytes
            );
            let longest = v.output_tail.split(|c| c != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat(longest.max(2) + 1);
            let _ = writeln!(s, "{fence}text\n{}\n{fence}", v.output_tail.trim_end_matches('\n'));
        }
    }

    let sc = &r.scope;
    let _ = writeln!(s, "\n## Scope\n");
    let _ = writeln!(
        s,
        "Restored {} files ({}), {} directories, {} hard links, {} other entries; fetched {} from {} packs; {} threads.",
        sc.files,
        human_bytes(sc.bytes),
        sc.dirs,
        sc.links,
        sc.others,
        human_bytes(sc.bytes_fetched),
        sc.packs_fetched,
        sc.threads
    );

    let c = &r.cleanup;
    let _ = writeln!(s, "\n## Cleanup\n");
    let _ = writeln!(
        s,
        "{} {}: {} files, {} directories, {} other entries, {}; checked afterwards: {}.",
        c.action,
        code_text(&c.path),
        c.files_removed,
        c.dirs_removed,
        c.others_removed,
        human_bytes(c.bytes_removed),
        if c.verified { "gone" } else { "**still there**" }
    );
    if let Some(e) = &c.error {
        let _ = writeln!(s, "\n**Cleanup problem:** {}", cell(e));
    }

    if !r.warnings.is_empty() {
        let _ = writeln!(s, "\n## Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(s, "- {}", cell(w));
        }
    }

    let _ = writeln!(s, "\n## Evidence\n");
    match &r.evidence {
        Some(ev) if ev.status == "signed" => {
            let _ = writeln!(
                s,
                "Evidence record #{} {}, signature {}. Report body {}.",
                ev.seq.unwrap_or_default(),
                code_text(ev.hash.as_deref().unwrap_or("")),
                code_text(ev.signature.as_deref().unwrap_or("")),
                code_text(&ev.report_blake3)
            );
        }
        Some(ev) => {
            let _ = writeln!(
                s,
                "{}. Report body {}.",
                ev.note.as_deref().unwrap_or("no evidence record (not signed)"),
                code_text(&ev.report_blake3)
            );
        }
        None => s.push_str("No evidence record (not signed).\n"),
    }
    s
}

fn integrity(s: &mut String, r: &DrillReport) {
    let i = &r.integrity;
    let _ = writeln!(s, "\n## Integrity\n");
    let _ = writeln!(
        s,
        "Method: **{}**: each file re-read from the scratch copy; compared with the snapshot: {} \
         (content: every chunk re-hashed with the repository's keyed BLAKE3 against the snapshot's chunk id).",
        i.method,
        i.compared.join(", ")
    );
    if let Some(smp) = &i.sample {
        let _ = writeln!(
            s,
            "\nSample: {} % of {} files = {} files, seed {}, list hash {}{}.",
            smp.percent,
            smp.population,
            smp.size,
            smp.seed,
            code_text(&smp.list_blake3),
            if smp.paths.is_some() { " (paths in report.json)" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "\nChecked {} files ({}) and {} other entries: **{} mismatch(es)**.",
        i.files_checked,
        human_bytes(i.bytes_checked),
        i.entries_checked,
        i.mismatches
    );
    if !i.mismatched.is_empty() {
        let mut t = Table::new(&[col("path"), col("problem")]);
        for m in i.mismatched.iter().take(MAX_LISTED) {
            t.row(&[code(&m.path), cell(&m.reason)]);
        }
        let _ = write!(s, "\n{}", t.finish());
        if i.mismatched.len() > MAX_LISTED {
            let _ = writeln!(s, "\n… and {} more in report.json.", i.mismatched.len() - MAX_LISTED);
        }
    }
    if let Some(sp) = &i.spot_check {
        let _ = writeln!(
            s,
            "\nSource spot-check: {} of {} requested live files looked at; {} match, {} changed since, {} gone, \
             {} unreadable, **{} mismatched**.{}",
            sp.checked,
            sp.requested,
            sp.matched,
            sp.changed_since.len(),
            sp.gone.len(),
            sp.unreadable.len(),
            sp.mismatched.len(),
            sp.note.as_deref().map(|n| format!(" {}", cell(n))).unwrap_or_default()
        );
        for m in &sp.mismatched {
            let _ = writeln!(s, "- {}: {}", code_text(&m.path), m.reason.replace('\n', " "));
        }
    }
}
