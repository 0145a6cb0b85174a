//! `cairn daemon`, `cairn status` and `cairn run-now`.

use std::io::{Read, Write};
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
    /// Serve /healthz, /status, /metrics and /run-now here ("none": no HTTP)
    #[arg(long, default_value = "127.0.0.1:9898", value_name = "ADDR")]
    pub listen: String,
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
        s => Some(s.parse::<SocketAddr>().map_err(|e| Error::InvalidArgument(format!("--listen `{s}`: {e}")))?),
    };
    let opts = DaemonOptions {
        policies_dir: a.policies.dir.clone(),
        state_dir: a.state.resolve(),
        listen,
        limits: Limits { max_jobs: a.max_jobs, max_per_repo: a.max_jobs_per_repo },
        grace: a.grace.to_std(),
    };
    let mut repo = super::repo_options(g);
    // `--threads 0` leaves one per core to each job.
    repo.threads = g.threads.filter(|n| *n > 0);
    // The daemon signs evidence with the key in its own state directory.
    repo.evidence_state = Some(opts.state_dir.clone());
    let executor = RepoExecutor { repo: repo.clone() };
    daemon::run(opts, Arc::new(executor), Some(repo))?;
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub policies: PoliciesDir,
    #[command(flatten)]
    pub state: StateDir,
}

pub fn status(a: &StatusArgs, p: &Printer) -> Result<i32> {
    let dir = a.state.resolve();
    let state = State::open_existing(&dir)?;
    let (policies, diags) =
        if a.policies.dir.is_dir() { policy::load_dir(&a.policies.dir) } else { (Vec::new(), Vec::new()) };
    let report = status::build(state.as_ref(), &dir, &policies, diags, Utc::now())?;
    if p.json {
        p.json(&report);
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
        p.data(super::status_view::render(&report, color, state.is_none()));
    }
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct RunNowArgs {
    /// The policy's name
    pub policy: String,
    /// Which job to run
    #[arg(long, default_value = "backup", value_parser = ["backup", "prune", "drill"])]
    pub kind: String,
    #[command(flatten)]
    pub state: StateDir,
    /// The daemon's address (default: the one it recorded in the state)
    #[arg(long, value_name = "ADDR")]
    pub daemon: Option<SocketAddr>,
}

pub fn run_now(a: &RunNowArgs, p: &Printer) -> Result<i32> {
    let kind: JobKind = a.kind.parse().map_err(Error::InvalidArgument)?;
    let addr = match a.daemon {
        Some(addr) => addr,
        None => daemon_address(&a.state.resolve())?,
    };
    let path = format!("/run-now?policy={}&kind={kind}", url_encode(&a.policy));
    let (code, body) = http_post(addr, &path)?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
    if code != 202 {
        let msg = v.get("error").and_then(|e| e.as_str()).unwrap_or(&body).to_string();
        return Err(Error::InvalidArgument(format!("the daemon at {addr} refused: {msg}")));
    }
    if p.json {
        p.json(&v);
    } else if v.get("already_queued").and_then(|x| x.as_bool()) == Some(true) {
        p.info(format!("a {kind} of `{}` was already waiting to start", a.policy));
    } else {
        p.info(format!("{kind} of `{}` queued; `cairn status` shows it running", a.policy));
    }
    Ok(EXIT_OK)
}

fn daemon_address(dir: &std::path::Path) -> Result<SocketAddr> {
    let hint = || {
        Error::InvalidArgument(format!(
            "no running cairn daemon recorded in {} (start one with `cairn daemon`, or pass --daemon ADDR)",
            dir.display()
        ))
    };
    let state = State::open_existing(dir)?.ok_or_else(hint)?;
    let listen = state.daemon_value("listen")?.ok_or_else(hint)?;
    listen.parse().map_err(|_| hint())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A bare HTTP/1.1 POST on loopback: the daemon's API needs no more.
fn http_post(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let what = format!("the daemon at {addr}");
    let io = |e| Error::io(&what, e);
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)).map_err(io)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).map_err(io)?;
    let header = crate::daemon::http::REQUEST_HEADER;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{header}: run-now\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(io)?;
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}
