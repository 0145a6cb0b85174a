//! `cairn policy validate|show`, and `cairn backup --policy NAME`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::error::{Error, Result};
use crate::policy::{self, job, Policy};
use crate::repo::Repository;

use super::output::Printer;
use super::{password, GlobalArgs, EXIT_ERROR, EXIT_OK};

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
    let text =
        toml::to_string_pretty(&pol).map_err(|e| Error::InvalidArgument(format!("policy `{}`: {e}", pol.name)))?;
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

/// Opens the repository of a policy the way the global options would:
/// its URL and S3 settings take the place of `--repo` and `--s3-*` (a
/// setting the policy leaves out keeps the global one), its password
/// source comes first and cairn's usual sources are the fallback.
pub fn open_repo(g: &GlobalArgs, pol: &Policy) -> Result<Repository> {
    let mut g = g.clone();
    g.repo = vec![pol.repository.url.clone()];
    if let Some(s3) = &pol.repository.s3 {
        g.s3_endpoint = s3.endpoint.clone().or(g.s3_endpoint);
        g.s3_path_style = s3.path_style.or(g.s3_path_style);
        g.s3_storage_class = s3.storage_class.clone().or(g.s3_storage_class);
        g.s3_concurrency = s3.concurrency.or(g.s3_concurrency);
    }
    let backend = super::open_backend(&g)?;
    let hints = super::key_hints(&g);
    let mut repo = match &pol.repository.password {
        Some(src) => Repository::open_with(backend, job::read_password(src)?.as_bytes(), &hints)?,
        None => Repository::open_with(backend, &password::resolve(g.password_file.as_deref(), false)?.0, &hints)?,
    };
    if repo.backend().is_remote() && !g.no_cache {
        if let Some(base) = g.cache_dir.clone().or_else(crate::repo::cache::default_base) {
            repo.enable_cache(&base)?;
        }
    }
    Ok(repo)
}

/// Records a policy backup run by hand in the state, as the daemon records
/// its own, so that `cairn status` and `cairn report` count it. A state
/// that cannot be written is a warning: the backup itself is done.
fn record_in_state(
    dir: &Path,
    pol: &Policy,
    started_at: DateTime<Utc>,
    took: std::time::Duration,
    out: &job::JobOutcome,
    p: &Printer,
) {
    use crate::state::{JobKind, NewRun, Outcome, RunFinish, State, Trigger};
    let record = || -> Result<()> {
        let state = State::open(dir)?;
        let new = NewRun {
            policy: pol.name.clone(),
            kind: JobKind::Backup,
            trigger: Trigger::Command,
            scheduled_at: None,
            started_at,
            attempt: 1,
        };
        let id = state.start_run(&new)?;
        let report = out.report.as_ref();
        state.finish_run(
            id,
            &RunFinish {
                ended_at: Utc::now(),
                outcome: if out.error.is_none() { Outcome::Success } else { Outcome::Failure },
                snapshot_id: report.map(|r| r.snapshot_id.to_hex()),
                bytes: report.map(|r| r.snapshot.summary.bytes_total),
                error: out.error.as_ref().map(|e| e.to_string()),
                duration_s: Some(took.as_secs_f64()),
            },
        )?;
        if let Some(rp) = out.recovery_point() {
            state.set_recovery_point(&pol.name, &rp)?;
        }
        Ok(())
    };
    if let Err(e) = record() {
        p.warn(format!("the backup is done, but it was not recorded in the state: {e}"));
    }
}

/// `cairn backup --policy NAME`.
pub fn backup(g: &GlobalArgs, a: &super::backup::BackupArgs, name: &str, dir: &Path, p: &Printer) -> Result<i32> {
    let pol = policy::find(dir, name)?;
    let opts = job::JobOptions {
        time: a.time,
        host: a.host.clone(),
        tags: a.tags.clone(),
        force: a.force,
        threads: super::threads(g),
    };
    let bar = super::backup::Bar::new(p);
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    let out = job::run_backup(&pol, || open_repo(g, &pol), &opts, &bar);
    bar.0.finish_and_clear();
    if let (Some(repo), Some(payload)) = (&out.repo, out.evidence_payload(started.elapsed())) {
        super::evidence::record(repo, "backup", Some(&pol.name), payload, a.state.state_dir.as_deref(), p);
    }
    record_in_state(&a.state.resolve(), &pol, started_at, started.elapsed(), &out, p);
    let code = match &out.report {
        Some(r) => super::backup::print_report(r, p),
        None => EXIT_OK,
    };
    for w in &out.warnings {
        p.warn(w);
    }
    if let Some(e) = out.error {
        if out.report.is_some() {
            // The snapshot is saved; say why the job still failed.
            eprint!("{}", super::output::render_error(&e));
            return Ok(EXIT_ERROR);
        }
        return Err(e);
    }
    Ok(code)
}
