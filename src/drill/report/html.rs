//! The HTML form of a drill report: one self-contained page (the skeleton
//! and tables of [`crate::page`]). The style is inline, the phase chart is
//! an inline SVG ([`super::chart`]), and there are no scripts, fonts,
//! images or links to fetch, so the page shows the same offline, in an
//! archive, or attached to an audit ticket.

use std::fmt::Write;

use super::{chart, human_bytes, DrillReport};
use crate::text::{human_duration, human_duration_against, human_duration_opt, human_duration_opt_against};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:2em auto;\
padding:0 1em;color:#1d1d1f;line-height:1.45}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;\
border-bottom:1px solid #ddd;padding-bottom:.2em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;\
padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f6}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}pre{background:#f6f6f8;padding:.7em;overflow:auto;\
white-space:pre-wrap}.verdict{display:inline-block;padding:.1em .6em;border-radius:4px;color:#fff;font-weight:600}\
.pass{background:#2e7d32}.fail{background:#c62828}.miss{color:#c62828;font-weight:600}.ok{color:#2e7d32}\
svg{max-width:100%;height:auto}";

use crate::page::html::{self as page, key_values, Table};
use crate::page::{col, num};
pub use crate::text::html_escape as esc;

fn met(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "<span class=\"ok\">met</span>",
        Some(false) => "<span class=\"miss\">missed</span>",
        None => "not judged",
    }
}

/// A two-column table of (label, already escaped HTML).
fn table(s: &mut String, rows: &[(&str, String)]) {
    s.push_str(&key_values("", rows));
    s.push('\n');
}

fn code(s: &str) -> String {
    format!("<code>{}</code>", esc(s))
}

pub fn render(r: &DrillReport) -> String {
    let mut s = String::new();
    let (class, verdict) = match r.verdict.failure_kind {
        None => ("pass", "PASS".to_string()),
        Some(k) => ("fail", format!("FAIL ({})", k.as_str())),
    };
    page::begin(&mut s, &format!("Restore drill {} — {verdict}", r.drill_id), STYLE);
    let _ =
        writeln!(s, "<h1>Restore drill {} <span class=\"verdict {class}\">{verdict}</span></h1>", code(&r.drill_id));
    table(
        &mut s,
        &[
            ("policy", format!("{} — {} — {}", code(&r.policy.name), esc(&r.policy.file), code(&r.policy.hash))),
            ("started by", esc(&r.started_by)),
            ("trigger", esc(&r.trigger)),
            ("tool", esc(&format!("{} {}", r.tool.name, r.tool.version))),
            ("scheduled", r.times.scheduled_at.map(|t| esc(&t.to_rfc3339())).unwrap_or_else(|| "—".into())),
            ("started (UTC)", esc(&r.times.started_at.to_rfc3339())),
            ("ended (UTC)", esc(&r.times.ended_at.to_rfc3339())),
            ("seed", r.seed.to_string()),
            ("report schema", code(&r.schema)),
        ],
    );

    s.push_str("<h2>Verdict</h2>\n");
    let _ = writeln!(s, "<p><span class=\"verdict {class}\">{verdict}</span></p>");
    if !r.verdict.issues.is_empty() {
        s.push_str("<ul>");
        for i in &r.verdict.issues {
            let _ = write!(s, "<li><b>{}</b>: {}</li>", i.kind.as_str(), esc(&i.message));
        }
        s.push_str("</ul>\n");
    }

    s.push_str("<h2>Recovery time (RTO)</h2>\n");
    let _ = writeln!(
        s,
        "<p>Objective {}, measured <b>{}</b>: {}. Time to first byte: {}.</p>",
        human_duration_opt(r.rto.objective_s),
        human_duration_against(r.rto.measured_s, r.rto.objective_s),
        met(r.rto.met),
        human_duration_opt(r.first_byte_s)
    );
    if let Some(svg) = chart::phase_chart(r) {
        let _ = writeln!(
            s,
            "<figure>{svg}<figcaption>Phases of the drill (blue: counted in the RTO).</figcaption></figure>"
        );
    }
    let mut phases = Table::new("", &[col("phase"), num("start"), num("duration"), col("in RTO")]);
    for p in &r.phases {
        let err =
            p.error.as_deref().map(|e| format!(" <span class=\"miss\">failed: {}</span>", esc(e))).unwrap_or_default();
        phases.row(&[
            format!("{}{err}", esc(&p.name)),
            format!("{:.3} s", p.start_s),
            format!("{:.3} s", p.duration_s),
            (if p.in_rto { "yes" } else { "no" }).into(),
        ]);
    }
    s.push_str(&phases.finish());
    s.push('\n');

    s.push_str("<h2>Recovery point (RPO)</h2>\n");
    let _ = writeln!(
        s,
        "<p>Objective {}, achieved {} (recovery point age {}, newest snapshot age {}; judged on the {}): {}.</p>",
        human_duration_opt(r.rpo.objective_s),
        human_duration_opt_against(r.rpo.achieved_s, r.rpo.objective_s),
        human_duration_opt(r.rpo.recovery_point_age_s),
        human_duration_opt(r.rpo.newest_snapshot_age_s),
        esc(&r.rpo.judged_on.replace('_', " ")),
        met(r.rpo.met)
    );
    match &r.recovery_point {
        None => s.push_str("<p>No recovery point was chosen.</p>\n"),
        Some(p) => table(
            &mut s,
            &[
                ("snapshot", code(&p.snapshot_id)),
                ("time (UTC)", esc(&p.time.to_rfc3339())),
                ("host", esc(&p.host)),
                ("paths", esc(&p.paths.join(", "))),
                ("tree", code(&p.tree)),
                (
                    "chosen",
                    esc(&format!(
                        "{}{} among {} snapshot(s); newest: {}",
                        p.choice,
                        p.window_s.map(|w| format!(" within {}", human_duration(w as f64))).unwrap_or_default(),
                        p.candidates,
                        p.is_newest
                    )),
                ),
                ("content", esc(&format!("{} files, {}", p.files, human_bytes(p.bytes)))),
            ],
        ),
    }

    integrity(&mut s, r);

    s.push_str("<h2>Validation</h2>\n");
    match &r.validation {
        None => s.push_str("<p>No validation command.</p>\n"),
        Some(v) => {
            let result = if v.passed {
                "<span class=\"ok\">passed</span>".to_string()
            } else {
                format!("<span class=\"miss\">failed: {}</span>", esc(v.error.as_deref().unwrap_or("")))
            };
            let _ = writeln!(
                s,
                "<p>{} (timeout {}): {result}. Exit code {}, signal {}, {:.3} s, {} bytes of output.</p>\
                 <pre>{}</pre>",
                code(&v.command),
                human_duration(v.timeout_s as f64),
                v.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
                v.signal.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
                v.duration_s,
                v.output_bytes,
                esc(&v.output_tail)
            );
        }
    }

    let e = &r.environment;
    let sc = &r.scope;
    s.push_str("<h2>Repository, target and scope</h2>\n");
    table(
        &mut s,
        &[
            (
                "repository",
                format!("{} (id {})", esc(&r.repository.location), esc(r.repository.id.as_deref().unwrap_or("—"))),
            ),
            ("host", esc(&format!("{} ({}, {} CPUs, user {})", e.host, e.arch, e.cpus, e.user))),
            ("OS / kernel", esc(&format!("{} / {}", e.os, e.kernel))),
            (
                "target",
                format!("{} ({})", code(&e.target), esc(e.filesystem.as_deref().unwrap_or("file system unknown"))),
            ),
            (
                "restored",
                esc(&format!(
                    "{} files ({}), {} directories, {} hard links, {} other; fetched {} from {} packs; {} threads",
                    sc.files,
                    human_bytes(sc.bytes),
                    sc.dirs,
                    sc.links,
                    sc.others,
                    human_bytes(sc.bytes_fetched),
                    sc.packs_fetched,
                    sc.threads
                )),
            ),
        ],
    );

    let c = &r.cleanup;
    s.push_str("<h2>Cleanup</h2>\n");
    let _ = writeln!(
        s,
        "<p>{} {}: {} files, {} directories, {} other entries, {}; checked afterwards: {}.{}</p>",
        esc(&c.action),
        code(&c.path),
        c.files_removed,
        c.dirs_removed,
        c.others_removed,
        human_bytes(c.bytes_removed),
        if c.verified { "<span class=\"ok\">gone</span>" } else { "<span class=\"miss\">still there</span>" },
        c.error.as_deref().map(|e| format!(" <span class=\"miss\">{}</span>", esc(e))).unwrap_or_default()
    );

    if !r.warnings.is_empty() {
        s.push_str("<h2>Warnings</h2><ul>");
        for w in &r.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>\n");
    }

    s.push_str("<h2>Evidence</h2>\n");
    match &r.evidence {
        Some(ev) if ev.status == "signed" => table(
            &mut s,
            &[
                ("record", ev.seq.map(|n| format!("#{n}")).unwrap_or_default()),
                ("record hash", code(ev.hash.as_deref().unwrap_or(""))),
                ("signature", code(ev.signature.as_deref().unwrap_or(""))),
                ("report body", code(&ev.report_blake3)),
            ],
        ),
        Some(ev) => {
            let _ = writeln!(
                s,
                "<p>{}. Report body {}.</p>",
                esc(ev.note.as_deref().unwrap_or("no evidence record (not signed)")),
                code(&ev.report_blake3)
            );
        }
        None => s.push_str("<p>No evidence record (not signed).</p>\n"),
    }
    page::end(&mut s);
    s
}

fn integrity(s: &mut String, r: &DrillReport) {
    let i = &r.integrity;
    s.push_str("<h2>Integrity</h2>\n");
    let _ = writeln!(
        s,
        "<p>Method <b>{}</b>: each file re-read from the scratch copy and compared with the snapshot: {}.</p>",
        esc(&i.method),
        esc(&i.compared.join(", "))
    );
    if let Some(smp) = &i.sample {
        let _ = writeln!(
            s,
            "<p>Sample: {} % of {} files = {} files, seed {}, list hash {}.</p>",
            smp.percent,
            smp.population,
            smp.size,
            smp.seed,
            code(&smp.list_blake3)
        );
        if let Some(paths) = &smp.paths {
            let _ =
                writeln!(s, "<details><summary>sampled paths</summary><pre>{}</pre></details>", esc(&paths.join("\n")));
        }
    }
    let _ = writeln!(
        s,
        "<p>Checked {} files ({}) and {} other entries: <b>{} mismatch(es)</b>.</p>",
        i.files_checked,
        human_bytes(i.bytes_checked),
        i.entries_checked,
        i.mismatches
    );
    if !i.mismatched.is_empty() {
        let mut t = Table::new("", &[col("path"), col("problem")]);
        for m in &i.mismatched {
            t.row(&[code(&m.path), esc(&m.reason)]);
        }
        s.push_str(&t.finish());
        s.push('\n');
    }
    if let Some(sp) = &i.spot_check {
        let _ = writeln!(
            s,
            "<p>Source spot-check: {} of {} requested live files looked at; {} match, {} changed since, {} gone, \
             {} unreadable, <b>{} mismatched</b>.{}</p>",
            sp.checked,
            sp.requested,
            sp.matched,
            sp.changed_since.len(),
            sp.gone.len(),
            sp.unreadable.len(),
            sp.mismatched.len(),
            sp.note.as_deref().map(|n| format!(" {}", esc(n))).unwrap_or_default()
        );
        if !sp.mismatched.is_empty() {
            s.push_str("<ul>");
            for m in &sp.mismatched {
                let _ = write!(s, "<li>{}: {}</li>", code(&m.path), esc(&m.reason));
            }
            s.push_str("</ul>\n");
        }
    }
}
