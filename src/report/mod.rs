//! The compliance report (`cairn report`): for a period, per policy, were
//! backups taken as scheduled, was the newest recovery point within the RPO
//! at every instant, were restores drilled, did they pass and meet the RTO,
//! and which audit controls that evidence answers. `docs/REPORTS.md`
//! documents every figure and the JSON and CSV schemas.
//!
//! Design:
//! - two steps. [`collect`] reads the state database and the policy
//!   directory once into an [`Input`] (plain rows, no handles); [`build`]
//!   turns an `Input` into a [`Report`] as a *pure function* of the rows,
//!   the policies, the period and "now", so every figure can be tested with
//!   hand-made rows and a fixed clock (`build.rs`); the types are in
//!   `types.rs`;
//! - the `Report` is the single source of truth for every form: JSON is
//!   its serde serialisation under a versioned schema ([`SCHEMA`]), and the
//!   Markdown, CSV and HTML renderers only lay it out ([`json`],
//!   [`markdown`], [`csv`], [`html`], with the SVG charts in [`charts`]);
//! - the period is evaluated up to `min(until, now)`: slots that have not
//!   come yet are not "missed", and a recovery point cannot age in the future;
//! - a report from evidence alone ([`fleet`], `cairn report --repo … --keys`)
//!   turns each host's verified records into the same rows, and builds each
//!   host's policies with the same function, adding a per-host table and
//!   the evidence read; a report from the state can check its rows against
//!   the evidence (`verified.rs`, `--check-evidence`);
//! - statuses are green / amber / red, each backed by findings that say why;
//!   the mapping to audit controls ([`controls`]) derives its statuses from
//!   the same per-policy figures, so nothing is judged twice differently.

mod build;
pub mod charts;
mod collect;
pub mod controls;
pub mod csv;
mod findings;
pub mod fleet;
pub mod html;
mod html_evidence;
pub mod json;
pub mod markdown;
mod types;
mod verified;

use chrono::{DateTime, Utc};

pub use build::build;
pub use collect::collect;
pub use fleet::{build_fleet, FleetInput};
pub use types::*;

/// The schema name and version of the JSON form; bumped on any change that
/// is not a pure addition.
pub const SCHEMA: &str = "cairn.compliance-report/1";

/// A report form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
    Csv,
}

impl Format {
    /// `html`, `md` (or `markdown`), `json`, `csv`.
    pub fn from_name(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "html" | "htm" => Some(Format::Html),
            "md" | "markdown" => Some(Format::Markdown),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The form a file name's extension asks for.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        path.extension().and_then(|e| e.to_str()).and_then(Format::from_name)
    }
}

/// Lays a report out in one form.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Html => html::render(report),
        Format::Markdown => markdown::render(report),
        Format::Json => json::render(report),
        Format::Csv => csv::render(report),
    }
}

/// How many failed runs, breaches or drills the HTML and Markdown forms
/// list per policy; the rest is counted, and the JSON form has them all.
pub const LIST_MAX: usize = 25;

/// The line that stands for the rows left out of a list.
pub(crate) fn more(n: usize, what: &str) -> Option<String> {
    (n > LIST_MAX).then(|| format!("… and {} more {what} (the JSON form lists them all)", n - LIST_MAX))
}

/// The first missed slots, for people: `a, b, c and 12 more`.
pub(crate) fn missed(b: &Backups) -> String {
    const SHOWN: usize = 8;
    let total = b.scheduled.zip(b.slots_covered).map_or(b.missed_slots.len() as u64, |(s, c)| s - c);
    let mut s = b.missed_slots.iter().take(SHOWN).map(|t| when(*t)).collect::<Vec<_>>().join(", ");
    if total > SHOWN as u64 {
        s.push_str(&format!(" and {} more", total - SHOWN as u64));
    }
    s
}

pub(crate) use crate::duration::secs;

pub use crate::text::{
    human_duration, human_duration_opt as human_opt, human_duration_opt_against as human_opt_against,
};

/// A share as a percentage, `—` when absent.
pub fn percent(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 1.0 => "100%".into(),
        // Rounded down, so that 99.96% never reads as 100%.
        Some(x) => format!("{:.1}%", (x * 1000.0).floor() / 10.0),
        None => "—".into(),
    }
}

/// A time for people, in UTC to the minute.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod render_tests;
#[cfg(test)]
mod tests;
