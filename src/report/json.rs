//! The JSON form: the [`Report`] serialised as it is, under the versioned
//! schema name in its `schema` field ([`super::SCHEMA`]). Times are RFC 3339
//! UTC, durations are seconds (`*_s`, fractional), shares are fractions in
//! `[0, 1]`, and an unknown value is `null`. `docs/REPORTS.md` lists every
//! field.

use super::Report;

/// The report as pretty-printed JSON, with a final newline.
pub fn render(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("the report serialises");
    s.push('\n');
    s
}
