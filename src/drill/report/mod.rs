//! The drill report: one data structure, written in three forms.
//!
//! - [`json`]: the machine-readable form, schema [`SCHEMA`]
//!   (`docs/DRILLS.md` documents every field). Adding a field is a
//!   compatible change; renaming, removing or changing the meaning of one
//!   bumps the version.
//! - [`markdown`]: for people and tickets.
//! - [`html`]: one self-contained page (inline CSS and an inline SVG chart
//!   of the phases; no scripts, fonts or other external assets) that an
//!   auditor can open anywhere.
//!
//! The report body is hashed for the evidence record: the BLAKE3 of the
//! canonical JSON (keys sorted, no whitespace) of the report *without* its
//! `evidence` member ([`body_blake3`]). An auditor removes `evidence`
//! from `report.json`, canonicalises, hashes, and compares with the
//! signed evidence record.
//!
//! Nothing secret goes into a report: the repository is named by its
//! location (credentials in a URL are masked), the policy by name, file
//! and hash, and the validation command's environment has no passwords.

pub mod chart;
pub mod html;
pub mod json;
pub mod markdown;
mod types;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use types::*;

/// The version tag of the JSON report.
pub const SCHEMA: &str = "cairn.drill-report/1";

/// File names inside `<state>/reports/<drill id>/`.
pub const JSON_FILE: &str = "report.json";
pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";

pub use crate::text::human_bytes;

/// Canonical JSON in the manner of RFC 8785 (JCS), so that any JCS
/// library reproduces it: the evidence chain's form
/// ([`crate::evidence::canonical`]) with numbers in their shortest
/// round-trip form (report numbers are rounded to microseconds, see
/// [`round_floats`], so exponents never occur).
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    use crate::evidence::canonical::{to_canonical_with, Numbers};
    to_canonical_with(v, Numbers::Shortest).expect("every number has a shortest form")
}

/// Rounds every non-integer number to microseconds (6 decimals), so that
/// what the report says survives any JSON parser exactly and hashes the
/// same after a round trip.
pub fn round_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if !(n.is_u64() || n.is_i64()) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(r) = serde_json::Number::from_f64((x * 1e6).round() / 1e6) {
                *n = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(round_floats),
        serde_json::Value::Object(m) => m.values_mut().for_each(round_floats),
        _ => {}
    }
}

/// The report with every float rounded (see [`round_floats`]).
pub fn rounded(r: DrillReport) -> DrillReport {
    let mut v = serde_json::to_value(&r).expect("drill reports serialise");
    round_floats(&mut v);
    serde_json::from_value(v).unwrap_or(r)
}

/// `blake3:<hex>` of the canonical JSON of `v`.
pub fn blake3_of(v: &serde_json::Value) -> String {
    format!("blake3:{}", blake3::hash(&canonical_json(v)).to_hex())
}

/// The hash of a report's body: the report without its `evidence` member.
pub fn body_blake3(report: &serde_json::Value) -> String {
    let mut body = report.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("evidence");
    }
    blake3_of(&body)
}

/// Masks credentials written into a URL (`https://user:pw@host` →
/// `https://***@host`).
pub fn mask_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Writes `report.json`, `report.md` and `report.html` into `dir`
/// (created, 0700; the files are 0600); returns their paths.
pub fn write_all(report: &DrillReport, dir: &Path) -> Result<Vec<PathBuf>> {
    crate::private::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let forms = [
        (JSON_FILE, json::render(report)),
        (MARKDOWN_FILE, markdown::render(report)),
        (HTML_FILE, html::render(report)),
    ];
    let mut out = Vec::new();
    for (name, text) in forms {
        let path = dir.join(name);
        crate::page::write_file(&path, text.as_bytes())?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
