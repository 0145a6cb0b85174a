//! `cairn policy validate|show`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::error::{Error, Result};
use crate::policy;

use super::output::Printer;
use super::{GlobalArgs, EXIT_ERROR, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The directory of policy files.
#[derive(clap::Args, Debug, Clone)]
pub struct PoliciesDir {
    /// Directory of policy files (*.toml)
    #[arg(long = "policies", env = "CAIRN_POLICIES", default_value = policy::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check policy files; print every problem as FILE:LINE:COLUMN: FIELD: MESSAGE
    Validate(ValidateArgs),
    /// Print a policy with its defaults filled in, and its next backup times
    Show(ShowArgs),
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// A policy file, or a directory of them (default: --policies)
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub policies: PoliciesDir,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The policy's name
    pub name: String,
    #[command(flatten)]
    pub policies: PoliciesDir,
    /// How many upcoming backup times to print
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub next: usize,
    /// Compute the upcoming times from this instant instead of now (RFC 3339)
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub now: Option<DateTime<Utc>>,
}

pub fn run(_g: &GlobalArgs, a: &PolicyArgs, p: &Printer) -> Result<i32> {
    match &a.command {
        PolicyCommand::Validate(v) => validate(v, p),
        PolicyCommand::Show(s) => show(s, p),
    }
}

fn validate(a: &ValidateArgs, p: &Printer) -> Result<i32> {
    let target = a.target.as_deref().unwrap_or(&a.policies.dir);
    let (policies, diags) = if target.is_dir() {
        policy::load_dir(target)
    } else {
        match policy::load_file(target) {
            Ok(pol) => (vec![pol], Vec::new()),
            Err(d) => (Vec::new(), d),
        }
    };
    if p.json {
        p.json(&serde_json::json!({
            "valid": diags.is_empty(),
            "policies": policies.iter().map(|x| serde_json::json!({ "name": x.name, "file": x.file })).collect::<Vec<_>>(),
            "diagnostics": diags,
        }));
    } else {
        for d in &diags {
            p.data(d.to_string());
        }
        let names: Vec<&str> = policies.iter().map(|x| x.name.as_str()).collect();
        match (policies.len(), diags.len()) {
            (0, 0) => p.info(format!("no policy files (*.toml) in {}", target.display())),
            (_, 0) => p.info(format!("{} valid polic{}: {}", names.len(), plural(names.len()), names.join(", "))),
            (_, n) => p.info(format!("{n} problem(s); {} valid polic{}", names.len(), plural(names.len()))),
        }
    }
    Ok(if diags.is_empty() { EXIT_OK } else { EXIT_ERROR })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "y"
    } else {
        "ies"
    }
}

fn show(a: &ShowArgs, p: &Printer) -> Result<i32> {
    let pol = policy::find(&a.policies.dir, &a.name)?;
    let now = a.now.unwrap_or_else(Utc::now);
    let tz = pol.schedule.timezone.0;
    let next = pol.schedule.next_backups(now, a.next);
    if p.json {
        let times: Vec<_> = next
            .iter()
            .map(|t| {
                serde_json::json!({
                    "local": t.with_timezone(&tz).to_rfc3339(),
                    "utc": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "jitter_ms": policy::jitter_delay(&pol.name, *t, pol.schedule.jitter).as_millis() as u64,
                })
            })
            .collect();
        p.json(&serde_json::json!({ "file": pol.file, "policy": pol, "next_backups": times }));
        return Ok(EXIT_OK);
    }
    p.data(format!("# {}", pol.file.display()));
    let text = toml::to_string_pretty(&pol).map_err(|e| Error::format(format!("policy `{}`", pol.name), e))?;
    p.data(text.trim_end());
    p.data("");
    match &pol.schedule.backup {
        None => p.data("# no backup schedule: this policy runs only with `cairn backup --policy`"),
        Some(c) => {
            p.data(format!("# next backups ({c}, {}):", pol.schedule.timezone));
            for t in &next {
                let jitter = policy::jitter_delay(&pol.name, *t, pol.schedule.jitter);
                let j =
                    if jitter.is_zero() { String::new() } else { format!("  + jitter {:.0}s", jitter.as_secs_f64()) };
                p.data(format!(
                    "#   {:<25} {}{j}",
                    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
                    t.format("%Y-%m-%dT%H:%M:%SZ")
                ));
            }
        }
    }
    Ok(EXIT_OK)
}
