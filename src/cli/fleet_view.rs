//! The handover screen of a fleet (`cairn status --repo … --keys`): one
//! line per host and policy, worst news in red; then the silent hosts, what
//! the evidence holds that does not count, and each repository's evidence.

use crate::status::fleet::{FleetStatus, HostPolicy, HostStatus};
use crate::status::{DrillState, RpoState};

use super::status_view::{ago, paint, short_duration, table, Cell, Tone};

fn health(h: &HostStatus, p: &HostPolicy) -> Cell {
    let (text, tone) = if h.silent {
        ("SILENT", Tone::Bad)
    } else if p.failing {
        ("FAILING", Tone::Bad)
    } else {
        match (p.rpo_state, p.drill_state) {
            (RpoState::Breached, _) => ("RPO BREACHED", Tone::Bad),
            (_, DrillState::Fail) => ("DRILL FAILED", Tone::Bad),
            (RpoState::AtRisk, _) => ("AT RISK", Tone::Warn),
            (RpoState::NoBackup, _) => ("NO BACKUP", Tone::Warn),
            _ => ("OK", Tone::Good),
        }
    };
    Cell(text.into(), tone)
}

fn row(h: &HostStatus, p: &HostPolicy, now: chrono::DateTime<chrono::Utc>) -> Vec<Cell> {
    let age = p.rpo_age_s.map(short_duration).unwrap_or_default();
    let obj = p.rpo_objective_s.map(short_duration).unwrap_or_default();
    let rpo = match p.rpo_state {
        RpoState::Ok => Cell(format!("ok {age}/{obj}"), Tone::Good),
        RpoState::AtRisk => Cell(format!("AT RISK {age}/{obj}"), Tone::Warn),
        RpoState::Breached => Cell(format!("BREACHED {age}/{obj}"), Tone::Bad),
        RpoState::NoBackup => Cell(format!("no backup (rpo {obj})"), Tone::Warn),
        RpoState::NoObjective => {
            Cell(if age.is_empty() { "—".into() } else { format!("{age} (no rpo: never drilled)") }, Tone::Plain)
        }
    };
    let drill = match (&p.last_drill, p.drill_state) {
        (Some(d), DrillState::Pass) => Cell(format!("pass {}", ago(d.started_at, now)), Tone::Good),
        (Some(d), _) => Cell(format!("FAIL {}", ago(d.started_at, now)), Tone::Bad),
        (None, _) => Cell("never drilled".into(), Tone::Warn),
    };
    let backup = match &p.last_backup {
        Some(b) => Cell(
            format!(
                "{} ({})",
                ago(b.data_as_of, now),
                b.snapshot.as_deref().map_or_else(|| "-".into(), |s| crate::text::id_prefix(s, 8))
            ),
            Tone::Plain,
        ),
        None => Cell("—".into(), Tone::Warn),
    };
    vec![Cell(h.host.clone(), Tone::Plain), Cell(p.policy.clone(), Tone::Plain), health(h, p), backup, rpo, drill]
}

/// The whole screen.
pub fn render(s: &FleetStatus, color: bool) -> String {
    let now = s.generated_at;
    let mut out = format!(
        "cairn status · {} · verified evidence of {} repositor{}, {} host(s)\n",
        now.format("%Y-%m-%d %H:%M:%S UTC"),
        s.repositories.len(),
        if s.repositories.len() == 1 { "y" } else { "ies" },
        s.hosts.len()
    );
    let mut rows = Vec::new();
    for h in &s.hosts {
        if h.policies.is_empty() {
            let last = h.last_record.map(|t| format!("no policy; last record {}", ago(t, now)));
            let tone = if h.silent { Tone::Bad } else { Tone::Plain };
            rows.push(vec![
                Cell(h.host.clone(), Tone::Plain),
                Cell("—".into(), Tone::Plain),
                Cell(if h.silent { "SILENT" } else { "OK" }.into(), tone),
                Cell(last.unwrap_or_default(), Tone::Plain),
                Cell(String::new(), Tone::Plain),
                Cell(String::new(), Tone::Plain),
            ]);
        }
        rows.extend(h.policies.iter().map(|p| row(h, p, now)));
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("no host has a record that counts under the trusted keys\n");
    } else {
        let header = ["HOST", "POLICY", "HEALTH", "LAST VERIFIED BACKUP", "RPO (age/objective)", "LAST DRILL"];
        table(&mut out, &header, &rows, color);
    }
    if !s.silent.is_empty() {
        out.push_str(&format!(
            "\n{}\n",
            paint(
                &format!("Silent (no record that counts for {}):", short_duration(s.silent_after_s)),
                Tone::Bad,
                color
            )
        ));
        for h in s.hosts.iter().filter(|h| h.silent) {
            let last =
                h.last_record.map(|t| format!("last record {}", ago(t, now))).unwrap_or_else(|| "no record".into());
            out.push_str(&format!("  {}  {last}\n", h.host));
        }
    }
    if !s.admins.is_empty() {
        out.push_str(&format!("\nAdministrators' keys (revocations and acceptances only): {}\n", s.admins.join(", ")));
    }
    if !s.not_counted.is_empty() {
        out.push_str(&format!("\n{}\n", paint("Not counted:", Tone::Bad, color)));
        for u in &s.not_counted {
            let what = match (&u.signer, u.seq) {
                (Some(k), Some(q)) => format!("record {k}/{q}"),
                (Some(k), None) => format!("key {k}"),
                _ => "records".into(),
            };
            out.push_str(&format!("  {} {what} (host {}): {}\n", u.reason, u.host.as_deref().unwrap_or("?"), u.detail));
        }
    }
    if !s.flagged.is_empty() {
        out.push_str(&format!("\n{}\n", paint("Flagged snapshots:", Tone::Bad, color)));
        for f in &s.flagged {
            let policy = f.policy.as_deref().map(|p| format!(" policy {p}")).unwrap_or_default();
            out.push_str(&format!("  {} host {}{policy}: {}\n", crate::text::id_prefix(&f.snapshot, 8), f.host, f.why));
        }
    }
    out.push_str("\nEvidence:\n");
    for r in &s.repositories {
        let state = match (&r.error, r.intact) {
            (Some(e), _) => paint(&format!("NOT READ: {e}"), Tone::Bad, color),
            (None, true) => format!("intact, {} record(s) verified", r.records_verified),
            (None, false) => paint(
                &format!("{} problem(s), {} record(s) verified", r.problem_count, r.records_verified),
                Tone::Bad,
                color,
            ),
        };
        out.push_str(&format!("  {}: {state}\n", r.location));
        for p in &r.problems {
            out.push_str(&format!("    {p}\n"));
        }
    }
    out
}
