//! `cairn report`: the compliance report for a period, from this host's
//! state database, or (`--repo … --keys FILE`) from the verified evidence
//! of repositories alone. The figures come from `crate::report`; this file
//! parses the flags, picks the form and writes it to stdout or `--out`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::report::{self, Format, Period};

use super::output::Printer;
use super::policy::PoliciesDir;
use super::{GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Start of the period: YYYY-MM-DD (UTC) or an RFC 3339 time [default: 30 days before --until]
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// End of the period, exclusive; a date includes that whole day [default: now]
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Form of the report [default: from --out's extension, else json with --json, else md]
    #[arg(long, value_name = "FORMAT", value_parser = ["html", "md", "markdown", "json", "csv"])]
    pub format: Option<String>,
    /// Write the report to this file instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub policies: PoliciesDir,
    /// State directory [default: CAIRN_STATE_DIR, else /var/lib/cairn for root, else ~/.local/state/cairn]
    #[arg(long = "state", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Generate the report as if it were this instant (RFC 3339)
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub now: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub fleet: super::fleet::FleetArgs,
    /// Check the state's rows against each policy's repository's evidence, counting only the records
    /// that verify under the auditor's --keys FILE (opens the repositories; needs --keys)
    #[arg(long)]
    pub check_evidence: bool,
}

pub fn run(g: &GlobalArgs, a: &ReportArgs, p: &Printer) -> Result<i32> {
    let format = choose_format(a.format.as_deref(), a.out.as_deref(), g.json)?;
    let now = a.now.unwrap_or_else(Utc::now);
    let period = Period::from_flags(a.since.as_deref(), a.until.as_deref(), now)?;
    let host = crate::host::hostname();
    let built = if a.fleet.uses_evidence() && !a.check_evidence {
        // From the verified evidence alone: no state database, no policy files.
        let fleet = super::fleet::read(g, &a.fleet, now)?;
        report::build_fleet(&report::FleetInput {
            period,
            now,
            generated_on: host,
            fleet,
            silent_after: a.fleet.silent_after(),
        })
    } else {
        let state_dir = crate::state::resolve_dir(a.state.as_deref());
        let mut input = report::collect(&state_dir, &a.policies.dir, period, now, host)?;
        let mut checked_against = None;
        if a.check_evidence {
            let keys = a.fleet.keys.as_deref().ok_or_else(check_evidence_needs_keys)?;
            let (trust, _) = super::evidence::trust_from(None, Some(keys), &[])?;
            input.evidence = Some(check_evidence(g, &input.policies, &trust, now));
            checked_against = Some(keys.display().to_string());
        }
        let mut built = report::build(&input);
        if let Some(keys) = checked_against {
            built.notices.push(format!(
                "The rows of the state database were checked against the evidence records that verify under the \
                 keys pinned in {keys}, made before each key's revocation; the repositories' own lists of \
                 enrolled keys were not trusted."
            ));
        }
        built
    };
    let text = report::render(&built, format);
    match &a.out {
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).map_err(|e| Error::io("standard output", e))?;
        }
        Some(path) => {
            crate::page::write_user_file(path, text.as_bytes())?;
            let hosts = if built.hosts.is_empty() { String::new() } else { format!("{} host(s), ", built.hosts.len()) };
            p.info(format!(
                "wrote the compliance report ({hosts}{} polic{}, overall {}) to {}",
                built.policies.len(),
                if built.policies.len() == 1 { "y" } else { "ies" },
                built.status.as_str(),
                path.display()
            ));
        }
    }
    Ok(EXIT_OK)
}

/// `--check-evidence` without `--keys`: refused. Checking the rows against
/// the keys a repository enrolled would let whoever holds the password
/// (every backup host) enrol a key and back any row they forged.
fn check_evidence_needs_keys() -> Error {
    Error::VerifyNeeds(
        "--check-evidence counts only the evidence records that verify under the auditor's trusted keys: give \
         them with --keys FILE (a repository's own list of enrolled keys is not a trust root; `cairn evidence \
         keys` prints its lines, to check with each host)"
            .into(),
    )
}

/// What each policy's repository's evidence backs under the auditor's
/// keys `trust`, with the drills its `[copy]` repository's evidence backs
/// (`drill --from-copy` signs there); a repository that cannot be opened
/// or read leaves its policy's rows unchecked, with why.
fn check_evidence(
    g: &GlobalArgs,
    policies: &[crate::policy::Policy],
    trust: &crate::evidence::trust::Trust,
    now: DateTime<Utc>,
) -> std::collections::BTreeMap<String, report::RowEvidence> {
    let opts = super::repo_options(g);
    policies
        .iter()
        .map(|pol| {
            let backing = |repo: crate::repo::Repository| crate::evidence::check::backing(&repo, trust, now);
            let read = opts.open_policy(pol).and_then(backing).map_err(|e| e.to_string());
            let read = read.and_then(|(snapshots, mut drills)| {
                // `drill --from-copy` signs into the copy's chain.
                if let (Some(copy), Some(o)) = (&pol.copy, opts.for_copy(pol)) {
                    let (_, on_copy) = o
                        .open()
                        .and_then(backing)
                        .map_err(|e| format!("its [copy] repository {}: {e}", copy.to.url))?;
                    drills.extend(on_copy);
                }
                Ok((snapshots, drills))
            });
            let e = match read {
                Ok((snapshots, drills)) => report::RowEvidence::Read { snapshots, drills },
                Err(why) => report::RowEvidence::Unread(why),
            };
            (pol.name.clone(), e)
        })
        .collect()
}

/// `--format`, else `--out`'s extension, else JSON with `--json`, else Markdown.
fn choose_format(flag: Option<&str>, out: Option<&Path>, json: bool) -> Result<Format> {
    if let Some(f) = flag {
        return Format::from_name(f).ok_or_else(|| Error::BadFlag {
            flag: "--format".into(),
            value: f.to_string(),
            expected: "expected html, md, json or csv".into(),
        });
    }
    if let Some(path) = out {
        return Format::from_path(path).ok_or_else(|| Error::BadFlag {
            flag: "--out".into(),
            value: path.display().to_string(),
            expected: "cannot tell the format from the file name; name it .html, .md, .json or .csv, or pass \
                           --format"
                .into(),
        });
    }
    Ok(if json { Format::Json } else { Format::Markdown })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_flag_then_the_extension_then_json() {
        let md = Some(Path::new("r.md"));
        assert_eq!(choose_format(Some("csv"), md, false).unwrap(), Format::Csv);
        assert_eq!(choose_format(None, Some(Path::new("out/r.HTML")), true).unwrap(), Format::Html);
        assert_eq!(choose_format(None, md, true).unwrap(), Format::Markdown);
        assert_eq!(choose_format(None, None, true).unwrap(), Format::Json);
        assert_eq!(choose_format(None, None, false).unwrap(), Format::Markdown);
        let e = choose_format(None, Some(Path::new("r.pdf")), false).unwrap_err().to_string();
        assert!(e.contains("--out `r.pdf`") && e.contains("--format"), "{e}");
    }
}
