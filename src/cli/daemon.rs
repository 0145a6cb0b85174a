//! `cairn daemon`, `cairn status` and `cairn run-now`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use crate::daemon::engine::Limits;
use crate::daemon::jobs::RepoExecutor;
use crate::daemon::{self, DaemonOptions};
use crate::error::{Error, Result};
use crate::policy;
use crate::state::{self, JobKind, State};
use crate::status;

use super::output::Printer;
use super::policy::PoliciesDir;
use super::{GlobalArgs, EXIT_OK};

/// The state directory.
#[derive(clap::Args, Debug, Clone)]
pub struct StateDir {
    /// State directory (default /var/lib/cairn for root, ~/.local/state/cairn otherwise)
    #[arg(long = "state", env = "CAIRN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateDir {
    pub fn resolve(&self) -> PathBuf {
        state::resolve_dir(self.state_dir.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub policies: PoliciesDir,
    #[command(flatten)]
    pub state: StateDir,
    /// Serve /healthz, /status and /metrics here ("none": no HTTP); an address other than loopback needs --listen-token-file
    #[arg(long, default_value = "127.0.0.1:9898", value_name = "ADDR")]
    pub listen: String,
    /// A file (mode 0600) whose first line is the bearer token every HTTP request must carry
    #[arg(long, value_name = "FILE")]
    pub listen_token_file: Option<PathBuf>,
    /// Jobs running at once, at most
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_jobs: usize,
    /// Jobs running at once on one repository, at most
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_jobs_per_repo: usize,
    /// After SIGTERM, how long running jobs may take to finish
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub grace: policy::Duration,
    /// Log lines as text or as JSON objects (on stderr)
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

pub fn run(g: &GlobalArgs, a: &DaemonArgs) -> Result<i32> {
    let listen = match a.listen.as_str() {
        "none" | "" => None,
        s => Some(s.parse::<SocketAddr>().map_err(|e| Error::BadFlag {
            flag: "--listen".into(),
            value: s.to_string(),
            expected: format!("{e}; give ADDRESS:PORT such as 127.0.0.1:9898, or `none`"),
        })?),
    };
    let opts = DaemonOptions {
        policies_dir: a.policies.dir.clone(),
        state_dir: a.state.resolve(),
        listen,
        listen_token_file: a.listen_token_file.clone(),
        limits: Limits { max_jobs: a.max_jobs, max_per_repo: a.max_jobs_per_repo },
        grace: a.grace.to_std(),
    };
    let mut repo = super::repo_options(g);
    // `--threads 0` leaves one per core to each job.
    repo.threads = g.threads.filter(|n| *n > 0);
    // The daemon signs evidence with the key in its own state directory.
    repo.evidence_state = Some(opts.state_dir.clone());
    // Its log is all it writes: warnings and what hooks, command sources
    // and password commands print become log records.
    repo.warnings = None;
    repo.child_output = crate::process::OutputTo::Log;
    let executor = RepoExecutor::new(repo.clone());
    daemon::run(opts, Arc::new(executor), Some(repo))?;
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub policies: PoliciesDir,
    #[command(flatten)]
    pub state: StateDir,
    #[command(flatten)]
    pub fleet: super::fleet::FleetArgs,
    /// Show the status as if it were this instant (RFC 3339)
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub now: Option<chrono::DateTime<Utc>>,
}

pub fn status(g: &GlobalArgs, a: &StatusArgs, p: &Printer) -> Result<i32> {
    if a.fleet.uses_evidence() {
        return fleet_status(g, a, p);
    }
    let dir = a.state.resolve();
    let state = State::open_existing(&dir)?;
    let (policies, diags) =
        if a.policies.dir.is_dir() { policy::load_dir(&a.policies.dir) } else { (Vec::new(), Vec::new()) };
    let report = status::build(state.as_ref(), &dir, &policies, diags, a.now.unwrap_or_else(Utc::now))?;
    if p.json {
        p.json(&report);
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
        p.data(super::status_view::render(&report, color, state.is_none()));
    }
    Ok(EXIT_OK)
}

/// `cairn status --repo … --keys FILE`: every host of those repositories,
/// from their verified evidence alone.
fn fleet_status(g: &GlobalArgs, a: &StatusArgs, p: &Printer) -> Result<i32> {
    let now = a.now.unwrap_or_else(Utc::now);
    let fleet = super::fleet::read(g, &a.fleet, now)?;
    let screen = status::fleet::build(&fleet, now, a.fleet.silent_after());
    if p.json {
        p.json(&screen);
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
        p.data(super::fleet_view::render(&screen, color));
    }
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct RunNowArgs {
    /// The policy's name
    pub policy: String,
    /// Which job to run
    #[arg(long, default_value = "backup", value_parser = ["backup", "prune", "drill", "copy"])]
    pub kind: String,
    /// The daemon's state directory; run-now talks to its control socket there
    #[command(flatten)]
    pub state: StateDir,
}

/// Asks the daemon, through its control socket, to run a job now.
pub fn run_now(a: &RunNowArgs, p: &Printer) -> Result<i32> {
    let kind: JobKind =
        a.kind.parse().map_err(|expected| Error::BadFlag { flag: "--kind".into(), value: a.kind.clone(), expected })?;
    let answer = daemon::control::request(&a.state.resolve(), &a.policy, kind)?;
    if p.json {
        p.json(&answer);
    } else if answer.already_queued {
        p.info(format!("a {kind} of `{}` was already waiting to start", a.policy));
    } else {
        p.info(format!("{kind} of `{}` queued; `cairn status` shows it running", a.policy));
    }
    Ok(EXIT_OK)
}
