//! The JSON form of a drill report (schema [`super::SCHEMA`]), pretty
//! printed. Its `evidence` member carries the hash of everything else; see
//! [`super::body_blake3`].

use super::DrillReport;

/// The report as pretty-printed JSON, with a final newline.
pub fn render(report: &DrillReport) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("drill reports serialise");
    s.push('\n');
    s
}

/// Reads a report back (for tools and tests); fails on another schema.
pub fn parse(text: &str) -> Result<DrillReport, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(super::SCHEMA) => serde_json::from_value(v).map_err(|e| e.to_string()),
        Some(other) => Err(format!("unsupported drill report schema `{other}` (this cairn reads {})", super::SCHEMA)),
        None => Err("not a cairn drill report: no `schema`".into()),
    }
}
