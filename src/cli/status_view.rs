//! The handover screen: `cairn status` as a table a shift lead reads at a
//! glance, worst news in red, then what runs now, then what needs someone.

use chrono::{DateTime, Utc};

use crate::state::RunRow;
use crate::status::{DrillState, PolicyStatus, RpoState, StatusReport};

use super::output::human_bytes;

#[derive(Clone, Copy)]
pub(super) enum Tone {
    Good,
    Info,
    Warn,
    Bad,
    Plain,
}

pub(super) struct Cell(pub String, pub Tone);

pub(super) fn paint(text: &str, tone: Tone, color: bool) -> String {
    let code = match tone {
        Tone::Good => "32",
        Tone::Info => "36",
        Tone::Warn => "33",
        Tone::Bad => "1;31",
        Tone::Plain => return text.to_string(),
    };
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// "3m", "2h 5m", "4d 2h".
pub fn short_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 if s % 3600 < 60 => format!("{}h", s / 3600),
        3600..=86399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ if s % 86400 < 3600 => format!("{}d", s / 86400),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

pub(super) fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ago", short_duration((now - t).num_seconds() as f64))
}

/// The worst news first; a running job is added to it, never hides it.
fn health(p: &PolicyStatus) -> Cell {
    let (text, tone) = if p.failing {
        ("FAILING", Tone::Bad)
    } else if p.evidence.as_ref().is_some_and(|e| !e.ok) {
        ("EVIDENCE DAMAGED", Tone::Bad)
    } else {
        match (p.rpo.state, p.drill.state) {
            (RpoState::Breached, _) => ("RPO BREACHED", Tone::Bad),
            (_, DrillState::Fail) => ("DRILL FAILED", Tone::Bad),
            (RpoState::AtRisk, _) => ("AT RISK", Tone::Warn),
            (RpoState::NoBackup, _) => ("NO BACKUP", Tone::Warn),
            _ if !p.configured => ("UNCONFIGURED", Tone::Warn),
            _ => ("OK", Tone::Good),
        }
    };
    match (p.running.first(), tone) {
        (Some(r), Tone::Good) => Cell(format!("RUNNING {}", r.kind), Tone::Info),
        (Some(r), _) => Cell(format!("{text} · running {}", r.kind), tone),
        (None, _) => Cell(text.into(), tone),
    }
}

fn run_cell(r: Option<&RunRow>, now: DateTime<Utc>, tone: Tone) -> Cell {
    match r {
        Some(r) => Cell(format!("{} {}", r.kind, ago(r.ended_at.unwrap_or(r.started_at), now)), tone),
        None => Cell("—".into(), Tone::Plain),
    }
}

/// An age against its objective (the RPO, or a copy's lag); `nothing`
/// names what is missing when there is no age yet.
fn objective_cell(state: RpoState, age_s: Option<f64>, objective_s: Option<f64>, nothing: &str) -> Cell {
    let age = age_s.map(short_duration);
    let obj = objective_s.map(short_duration);
    match state {
        RpoState::Ok => Cell(format!("ok {}/{}", age.unwrap_or_default(), obj.unwrap_or_default()), Tone::Good),
        RpoState::AtRisk => {
            Cell(format!("AT RISK {}/{}", age.unwrap_or_default(), obj.unwrap_or_default()), Tone::Warn)
        }
        RpoState::Breached => {
            let text = match age {
                Some(age) => format!("BREACHED {age}/{}", obj.unwrap_or_default()),
                None => format!("BREACHED no {nothing} (rpo {})", obj.unwrap_or_default()),
            };
            Cell(text, Tone::Bad)
        }
        RpoState::NoBackup => Cell(format!("no {nothing} yet (rpo {})", obj.unwrap_or_default()), Tone::Warn),
        RpoState::NoObjective => Cell(age.map(|a| format!("{a} (no rpo)")).unwrap_or_else(|| "—".into()), Tone::Plain),
    }
}

fn row(p: &PolicyStatus, now: DateTime<Utc>, daemon_up: bool) -> Vec<Cell> {
    let last_failure_tone = if p.failing { Tone::Bad } else { Tone::Plain };
    let next = match p.next.first() {
        // Nothing runs scheduled jobs without a daemon: say so where it matters.
        Some(n) if !daemon_up => Cell(format!("{} due, no daemon", n.kind), Tone::Warn),
        Some(n) if n.due <= now => Cell(format!("{} due now", n.kind), Tone::Info),
        Some(n) => Cell(format!("{} in {}", n.kind, short_duration((n.due - now).num_seconds() as f64)), Tone::Plain),
        None => Cell("not scheduled".into(), Tone::Plain),
    };
    let rpo = objective_cell(p.rpo.state, p.rpo.age_s, p.rpo.objective_s, "backup");
    let last_drill = p.drill.last.as_ref().map(|d| ago(d.started_at, now)).unwrap_or_default();
    let drill = match p.drill.state {
        DrillState::Pass => Cell(format!("pass {last_drill}"), Tone::Good),
        DrillState::Fail => Cell(format!("FAIL {last_drill}"), Tone::Bad),
        DrillState::NeedsVerification => Cell("needs verification".into(), Tone::Warn),
        DrillState::Never => Cell("never drilled".into(), Tone::Warn),
        DrillState::NotConfigured => Cell("no drills".into(), Tone::Plain),
    };
    vec![
        Cell(p.name.clone(), Tone::Plain),
        health(p),
        run_cell(p.last_success.as_ref(), now, Tone::Plain),
        run_cell(p.last_failure.as_ref(), now, last_failure_tone),
        next,
        rpo,
        drill,
    ]
}

/// A running job's progress, with the time left at its rate so far.
fn progress_text(r: &RunRow, now: DateTime<Utc>) -> String {
    let Some(v) = &r.progress else { return "starting".into() };
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let (fd, ft, bd, bt) = (n("files_done"), n("files_total"), n("bytes_done"), n("bytes_total"));
    if bt > 0 {
        let elapsed = (now - r.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        let eta = (bd > 0 && bt > bd && elapsed > 0.0).then(|| (bt - bd) as f64 * elapsed / bd as f64);
        format!(
            "{fd}/{ft} files, {}/{} ({:.0}%){}",
            human_bytes(bd),
            human_bytes(bt),
            100.0 * bd as f64 / bt as f64,
            eta.map(|s| format!(", ETA {}", short_duration(s))).unwrap_or_default()
        )
    } else if bd > 0 {
        // A stream: no total, so no share or time left.
        format!("{} read", human_bytes(bd))
    } else {
        v.to_string()
    }
}

/// Lays `rows` out in columns under `header`; returns the column widths.
pub(super) fn table(out: &mut String, header: &[&str], rows: &[Vec<Cell>], color: bool) -> Vec<usize> {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|c| c[i].0.chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let head: Vec<String> = header.iter().zip(&widths).map(|(h, w)| format!("{h:<w$}")).collect();
    out.push_str(&paint(head.join("  ").trim_end(), Tone::Plain, color));
    out.push('\n');
    for cells in rows {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let pad = w.saturating_sub(c.0.chars().count());
                format!("{}{}", paint(&c.0, c.1, color), " ".repeat(pad))
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    widths
}

/// The whole screen. `no_state`: nothing was ever recorded.
pub fn render(r: &StatusReport, color: bool, no_state: bool) -> String {
    let now = r.generated_at;
    let mut out = String::new();
    let daemon = match &r.daemon {
        Some(d) if d.alive => {
            let url = d.listen.as_deref().map(|l| format!(", http://{l}")).unwrap_or_default();
            paint(&format!("daemon running (pid {}{url})", d.pid.unwrap_or(0)), Tone::Good, color)
        }
        Some(d) if d.pid.is_some() => {
            paint(&format!("daemon NOT running (pid {} is gone)", d.pid.unwrap_or(0)), Tone::Bad, color)
        }
        _ => paint("daemon not running", Tone::Warn, color),
    };
    out.push_str(&format!("cairn status · {} · {daemon}\n", now.format("%Y-%m-%d %H:%M:%S UTC")));
    if no_state {
        out.push_str(&format!("no state recorded yet in {} (the daemon writes it)\n", r.state_dir));
    }
    if r.policies.is_empty() {
        out.push_str("no policies\n");
        return out;
    }
    let header = ["POLICY", "HEALTH", "LAST SUCCESS", "LAST FAILURE", "NEXT RUN", "RPO (age/objective)", "DRILL"];
    let daemon_up = r.daemon.as_ref().is_some_and(|d| d.alive);
    let rows: Vec<Vec<Cell>> = r.policies.iter().map(|p| row(p, now, daemon_up)).collect();
    out.push('\n');
    let widths = table(&mut out, &header, &rows, color);
    let copies: Vec<_> = r.policies.iter().filter_map(|p| p.copy.as_ref().map(|c| (p.name.as_str(), c))).collect();
    if !copies.is_empty() {
        out.push_str("\nCopies (lag of the newest snapshot copied/objective):\n");
        for (name, c) in copies {
            let cell = objective_cell(c.state, c.lag_s, c.objective_s, "copy");
            let to = c.newest.as_ref().map(|n| format!(" in {}", n.to)).unwrap_or_default();
            out.push_str(&format!("  {name:<w$}  {}{to}\n", paint(&cell.0, cell.1, color), w = widths[0]));
        }
    }
    let running: Vec<&RunRow> = r.policies.iter().flat_map(|p| &p.running).collect();
    if !running.is_empty() {
        out.push_str("\nRunning now:\n");
        for j in running {
            out.push_str(&format!(
                "  {:<w$}  {} ({}, attempt {}) for {}: {}\n",
                j.policy,
                j.kind,
                j.trigger.as_str(),
                j.attempt,
                short_duration((now - j.started_at).num_seconds() as f64),
                progress_text(j, now),
                w = widths[0]
            ));
        }
    }
    let attention: Vec<(&str, String)> =
        r.policies.iter().flat_map(|p| p.attention().into_iter().map(move |a| (p.name.as_str(), a))).collect();
    if !attention.is_empty() {
        out.push_str(&format!("\n{}\n", paint("Needs attention:", Tone::Bad, color)));
        for (name, a) in attention {
            out.push_str(&format!("  {name:<w$}  {a}\n", w = widths[0]));
        }
    }
    if !r.invalid_policies.is_empty() {
        out.push_str(&format!("\n{}\n", paint("Invalid policy files (skipped):", Tone::Bad, color)));
        for d in &r.invalid_policies {
            out.push_str(&format!("  {d}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::policy::Policy;
    use crate::state::{JobKind, NewRun, Outcome, RunFinish, State, Trigger};
    use crate::status::{build, DrillState};

    fn policy(name: &str, extra: &str) -> Policy {
        crate::policy::for_tests(name, "/r", extra)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
    }

    fn run(state: &State, name: &str, kind: JobKind, ago_h: i64, outcome: Outcome) -> i64 {
        let at = now() - Duration::hours(ago_h);
        let new = NewRun {
            policy: name.into(),
            kind,
            trigger: Trigger::Schedule,
            scheduled_at: None,
            started_at: at,
            attempt: 1,
        };
        let id = state.start_run(&new).unwrap();
        if outcome != Outcome::Running {
            let error = (outcome == Outcome::Failure).then(|| "disk full".to_string());
            state.finish_run(id, &RunFinish { ended_at: at, outcome, error, ..Default::default() }).unwrap();
        }
        id
    }

    #[test]
    fn a_failure_followed_by_a_success_is_not_failing_and_the_screen_says_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let ps = vec![policy("web", "[drill]\nschedule = \"@weekly\"\n"), policy("db", "")];
        run(&state, "web", JobKind::Backup, 5, Outcome::Failure);
        run(&state, "web", JobKind::Backup, 4, Outcome::Success);
        run(&state, "db", JobKind::Backup, 3, Outcome::Success);
        run(&state, "db", JobKind::Prune, 2, Outcome::Failure);
        let id = run(&state, "db", JobKind::Backup, 1, Outcome::Running);
        let progress = serde_json::json!({"files_done": 3, "files_total": 4, "bytes_done": 512, "bytes_total": 1024});
        state.set_progress(id, &progress).unwrap();
        let r = build(Some(&state), dir.path(), &ps, Vec::new(), now()).unwrap();
        let (db, web) = (&r.policies[0], &r.policies[1]);
        assert!(!web.failing && web.last_failure.is_some(), "an old failure stays visible but is not current");
        assert_eq!(web.drill.state, DrillState::Never);
        assert!(db.failing, "the newest finished run (prune) failed");
        assert_eq!(db.running.len(), 1);
        assert_eq!(db.drill.state, DrillState::NotConfigured);
        assert_eq!(db.attention(), ["prune failed: disk full"]);
        assert_eq!(web.attention(), ["never drilled"]);
        let screen = render(&r, false, false);
        assert!(screen.contains("FAILING · running backup") && screen.contains("never drilled"), "{screen}");
        assert!(
            screen.contains("Running now:") && screen.contains("3/4 files, 512 B/1.0 KiB (50%), ETA 1h"),
            "{screen}"
        );
        assert!(screen.contains("prune 2h ago") && !screen.contains('\x1b'), "no colour when asked for none: {screen}");
    }

    #[test]
    fn bug_short_durations_said_1h_0m_and_1d_0h() {
        assert_eq!(short_duration(3600.0), "1h");
        assert_eq!(short_duration(3659.0), "1h");
        assert_eq!(short_duration(3660.0), "1h 1m");
        assert_eq!(short_duration(86400.0), "1d");
        assert_eq!(short_duration(86400.0 + 3599.0), "1d");
        assert_eq!(short_duration(86400.0 + 3600.0), "1d 1h");
        assert_eq!(short_duration(59.0), "59s");
        assert_eq!(short_duration(120.0), "2m");
    }

    #[test]
    fn bug_no_backup_read_as_a_broken_age_over_objective() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let ps = vec![policy("new", "[objectives]\nrpo = \"2m\"\n"), policy("web", "[objectives]\nrpo = \"2m\"\n")];
        run(&state, "web", JobKind::Backup, 3, Outcome::Failure);
        let r = build(Some(&state), dir.path(), &ps, Vec::new(), now()).unwrap();
        let screen = render(&r, false, false);
        assert!(screen.contains("no backup yet (rpo 2m)"), "{screen}");
        assert!(screen.contains("BREACHED no backup (rpo 2m)"), "{screen}");
        assert!(!screen.contains(" /2m"), "{screen}");
    }
}
