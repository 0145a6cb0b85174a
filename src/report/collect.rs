//! Reading what a report needs, once: the valid policies of the policy
//! directory (problems become notices, never errors), and the rows of the
//! state database (an absent database is reported, not created).

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{Input, Period, StateRows};
use crate::error::Result;
use crate::policy;
use crate::state::State;

/// Reads the policies of `policies_dir` and the state of `state_dir` for
/// a report of `period` generated at `now` on `host`.
pub fn collect(
    state_dir: &Path,
    policies_dir: &Path,
    period: Period,
    now: DateTime<Utc>,
    host: String,
) -> Result<Input> {
    let (policies, diags) = policy::load_dir(policies_dir);
    let mut policy_problems: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    if !diags.is_empty() && policies_dir.is_dir() {
        policy_problems.push(format!(
            "invalid files are left out; `cairn policy validate --policies {}` lists every problem",
            policies_dir.display()
        ));
    }
    let state = match State::open_existing(state_dir)? {
        None => None,
        Some(s) => {
            let mut rows = StateRows {
                runs: s.runs(None, None, Some(period.until))?,
                drills: s.drills(None, None, Some(period.until))?,
                ..Default::default()
            };
            for name in s.known_policies()? {
                if let Some(rp) = s.recovery_point(&name)? {
                    rows.recovery_points.insert(name.clone(), rp);
                }
                if let Some(changed) = s.content_changed_since_drill(&name)? {
                    rows.content_changed.insert(name.clone(), changed);
                }
                let key = format!("{}{name}", crate::status::EVIDENCE_KEY_PREFIX);
                if let Some(check) = s.daemon_value(&key)?.and_then(|v| serde_json::from_str(&v).ok()) {
                    rows.evidence_checks.insert(name, check);
                }
            }
            Some(rows)
        }
    };
    Ok(Input {
        period,
        now,
        host,
        state_dir: state_dir.display().to_string(),
        policies_dir: policies_dir.display().to_string(),
        policies,
        policy_problems,
        state,
        evidence: None,
    })
}
