//! The HTML page's evidence section (a report from evidence): the
//! repositories read and what verifying them found, the silent hosts, the
//! records that do not count and why, and the snapshots they name.

use std::fmt::Write;

use super::{more, EvidenceSection, LIST_MAX};
use crate::page::col;
use crate::page::html::Table;
use crate::text::html_escape as esc;

/// `<section id="evidence">`.
pub(super) fn evidence(w: &mut String, e: &EvidenceSection) {
    let _ = write!(
        w,
        "<section id=\"evidence\"><h2>Evidence</h2><p class=\"lead\">The records every figure of this report \
         comes from: signed by host keys, verified under the keys file's trusted keys. Records that do not verify \
         or do not count are listed here, and counted nowhere else.</p>"
    );
    let mut t =
        Table::new("repositories", &[col("Repository"), col("Evidence"), col("Records verified"), col("Newest head")]);
    for r in &e.repositories {
        let (class, state) = match (&r.error, r.intact) {
            (Some(err), _) => ("red", format!("<strong>not read</strong>: {}", esc(err))),
            (None, true) => ("green", "intact".to_string()),
            (None, false) => {
                let mut s = format!("<strong>{} problem(s)</strong><ul class=\"problems\">", r.problem_count);
                for p in &r.problems {
                    let _ = write!(s, "<li>{}</li>", esc(p));
                }
                if r.problem_count > r.problems.len() {
                    let _ = write!(s, "<li class=\"muted\">… and {} more</li>", r.problem_count - r.problems.len());
                }
                s.push_str("</ul>");
                ("amber", s)
            }
        };
        t.row_with_class(
            class,
            &[
                format!(
                    "<code>{}</code>{}",
                    esc(&r.location),
                    r.repository
                        .as_ref()
                        .map(|id| format!("<br><span class=\"muted\">{}</span>", esc(&crate::text::id_prefix(id, 16))))
                        .unwrap_or_default()
                ),
                state,
                format!("{} in {} chain(s)", r.records_verified, r.chains),
                r.newest_head.as_deref().map(|h| format!("<code>{}</code>", esc(h))).unwrap_or_else(|| "—".into()),
            ],
        );
    }
    w.push_str(&t.finish());
    if !e.silent_hosts.is_empty() {
        let _ = write!(
            w,
            "<h3>Silent hosts</h3><p class=\"warn\">{}</p>",
            e.silent_hosts.iter().map(|h| esc(h)).collect::<Vec<_>>().join(", ")
        );
    }
    if !e.admin_keys.is_empty() {
        let _ = write!(
            w,
            "<h3>Administrators' keys</h3><p>{} (revocations and acceptances only)</p>",
            e.admin_keys.iter().map(|h| esc(h)).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = write!(w, "<h3 id=\"not-counted\">Records not counted</h3>");
    if e.not_counted.is_empty() {
        let _ = write!(w, "<p class=\"muted\">none: every record verified under a trusted key counts</p>");
    } else {
        let mut t = Table::new(
            "not-counted",
            &[col("Why"), col("Host"), col("Record"), col("Kind"), col("Detail").class("error")],
        );
        for u in e.not_counted.iter().take(LIST_MAX) {
            let record = match (&u.signer, u.seq) {
                (Some(s), Some(q)) => format!("<code>{}/{q}</code>", esc(s)),
                (Some(s), None) => format!("<code>{}</code> (every record)", esc(s)),
                _ => "—".into(),
            };
            let kind = match (&u.kind, &u.policy) {
                (Some(k), Some(p)) => format!("{} of {}", esc(k), esc(p)),
                (Some(k), None) => esc(k),
                _ => "—".into(),
            };
            t.row_with_class(
                "amber",
                &[
                    format!("<span class=\"badge amber\">{}</span>", u.reason),
                    esc(u.host.as_deref().unwrap_or("?")),
                    record,
                    kind,
                    esc(&u.detail),
                ],
            );
        }
        if let Some(line) = more(e.not_counted.len(), "records") {
            t.note(&line);
        }
        w.push_str(&t.finish());
    }
    if !e.flagged_snapshots.is_empty() {
        let _ = write!(w, "<h3 id=\"flagged\">Flagged snapshots</h3>");
        let mut t = Table::new("flagged", &[col("Snapshot"), col("Host"), col("Policy"), col("Why")]);
        for f in e.flagged_snapshots.iter().take(LIST_MAX) {
            t.row(&[
                format!("<code>{}</code>", esc(&crate::text::id_prefix(&f.snapshot, 16))),
                esc(&f.host),
                esc(f.policy.as_deref().unwrap_or("—")),
                esc(&f.why),
            ]);
        }
        if let Some(line) = more(e.flagged_snapshots.len(), "snapshots") {
            t.note(&line);
        }
        w.push_str(&t.finish());
    }
    let _ = writeln!(w, "</section>");
}
