//! The scheduler daemon: runs every policy's backups, prunes and drills at
//! their times, unattended, for months.
//!
//! Shape:
//! - [`engine`] decides (pure, clock-free): what is due, what may start
//!   under the policy locks and the job limits, what to retry, what a
//!   missed night means;
//! - [`jobs`] does: each job on its own thread, recorded in the state
//!   database before and after, a panic caught and turned into the job's
//!   error;
//! - this module is the loop that joins them: one task on the daemon's own
//!   tokio runtime that sleeps until the engine's next wake-up (at most a
//!   minute) or an event: a job finished, a `run-now` request, SIGHUP
//!   (reload the policies; running jobs carry on with the policy they
//!   started with), SIGTERM/SIGINT (start nothing more, give running jobs
//!   the grace period, mark any still running as interrupted, exit 0);
//! - [`control`] is the door for `cairn run-now`: a Unix socket in the
//!   state directory, mode 0600, that checks its peer's credentials (root
//!   or the daemon's user) and logs the uid that asked;
//! - [`http`] serves `/healthz`, `/status` and `/metrics`, read-only, on
//!   loopback (elsewhere only with a bearer token), checking `Host` on
//!   every route; [`metrics`] and the status model ([`crate::status`]) read
//!   the state database, so they say the same as `cairn status`; [`notify`]
//!   posts webhooks and pings.
//!
//! One daemon per state directory: it holds an exclusive `flock` on
//! `daemon.lock` there, listens on `daemon.sock` there, and records its pid
//! and address in the state so that `cairn status` finds it.

pub mod control;
pub mod engine;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod notify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::jobs::record::RunSummary;
use crate::jobs::RepoOptions;
use crate::policy::{self, Diagnostic, Policy};
use crate::state::State;
use engine::{Engine, JobSpec, Limits};
use jobs::{Executor, Finished};
use notify::{Event as NotifyEvent, Notifier, Ping};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub policies_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Where to serve HTTP; `None`: no HTTP API.
    pub listen: Option<SocketAddr>,
    /// The file holding the bearer token every HTTP request must carry;
    /// required for a listen address other than loopback.
    pub listen_token_file: Option<PathBuf>,
    pub limits: Limits,
    /// How long running jobs may take to finish after SIGTERM.
    pub grace: Duration,
}

/// The longest the loop sleeps; also bounds how late a wall-clock jump
/// (a suspended host, a corrected clock) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// At exit, how long notifications still being delivered may take.
const NOTIFY_FLUSH: Duration = Duration::from_secs(15);

/// Notifications in flight: each job's start ping (its end waits for it,
/// so the pings arrive in order) and the deliveries to finish at exit.
struct Outbox {
    notifier: Option<Notifier>,
    start_pings: std::collections::HashMap<String, tokio::task::JoinHandle<()>>,
    pending: Vec<tokio::task::JoinHandle<()>>,
}

impl Outbox {
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.pending.retain(|h| !h.is_finished());
        self.pending.push(tokio::spawn(task));
    }

    /// Waits for the deliveries in flight, at most `limit`.
    async fn flush(self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for h in self.pending.into_iter().chain(self.start_pings.into_values()) {
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                tracing::warn!("stopping before every notification was delivered");
                return;
            }
        }
    }
}

enum Event {
    Finished(Box<Finished>),
    Reload,
    Stop(&'static str),
}

type Current = Arc<RwLock<(Vec<Policy>, Vec<Diagnostic>)>>;

/// Runs the daemon until SIGTERM or SIGINT. With `repo`, the daemon also
/// reads each policy's newest snapshot at start-up.
pub fn run(opts: DaemonOptions, executor: Arc<dyn Executor>, repo: Option<RepoOptions>) -> Result<()> {
    if let Some(addr) = opts.listen {
        http::check_listen(addr, opts.listen_token_file.is_some())?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairn-daemon")
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    rt.block_on(serve(opts, executor, repo))
}

/// Takes the state directory's daemon lock, or says who holds it.
fn lock_state_dir(state: &State) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state.dir().join("daemon.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(crate::private::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        let pid = state.daemon_value("pid").ok().flatten().unwrap_or_else(|| "?".into());
        Error::DaemonRunning { pid, state_dir: state.dir().to_path_buf() }
    })
}

fn load_policies(dir: &std::path::Path) -> (Vec<Policy>, Vec<Diagnostic>) {
    let (policies, diags) = policy::load_dir(dir);
    for d in &diags {
        tracing::error!(file = %d.file.display(), line = d.line, "invalid policy, skipped: {d}");
    }
    let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(dir = %dir.display(), valid = policies.len(), invalid_problems = diags.len(), policies = %names.join(", "), "policies loaded");
    (policies, diags)
}

async fn serve(opts: DaemonOptions, executor: Arc<dyn Executor>, repo: Option<RepoOptions>) -> Result<()> {
    let state = Arc::new(State::open(&opts.state_dir)?);
    let _lock = lock_state_dir(&state)?;
    let started = Utc::now();
    let closed = state.close_orphaned_runs(started)?;
    let (policies, diags) = load_policies(&opts.policies_dir);
    // Drills killed with their process left their scratch copies; with no
    // drill running (another process's would be), they go now.
    let drill_running = state.running()?.iter().any(|r| r.kind == crate::state::JobKind::Drill);
    if !drill_running {
        for path in crate::drill::scratch::sweep_leftovers(state.dir(), &policies) {
            tracing::warn!(path = %path.display(), "removed the scratch copy a killed drill left behind");
        }
    }
    let mut engine = Engine::new(opts.limits);
    engine.load(policies.clone(), &state, started);
    for r in &closed {
        tracing::warn!(policy = %r.policy, kind = %r.kind, started = %r.started_at, "a run left unfinished by a previous daemon is marked interrupted; it runs again now");
        if r.trigger != crate::state::Trigger::Command {
            engine.rerun_interrupted(&r.policy, r.kind, r.scheduled_at, started);
        }
    }
    let current: Current = Arc::new(RwLock::new((policies, diags)));
    if let Some(repo) = repo {
        let (state, list) = (state.clone(), engine.policies().cloned().collect::<Vec<_>>());
        std::thread::spawn(move || {
            jobs::enroll_everywhere(&list, &repo);
            for (policy, e) in crate::jobs::record::refresh_recovery_points(&list, &repo, &state) {
                tracing::error!(policy = %policy, error = %e, "cannot refresh the recovery point");
            }
        });
    }

    let heartbeat = Arc::new(AtomicI64::new(started.timestamp()));
    let (run_now_tx, mut run_now_rx) = mpsc::unbounded_channel::<control::RunNow>();
    let control = control::bind(&opts.state_dir)?;
    tokio::spawn(control::serve(control, run_now_tx));
    if let Some(addr) = opts.listen {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::io(format!("listen address {addr}"), e))?;
        let local = listener.local_addr().map_err(|e| Error::io(format!("listen address {addr}"), e))?;
        let api = Arc::new(api(&opts, &state, &current, started, heartbeat.clone()));
        let token = opts.listen_token_file.as_deref().map(http::read_token).transpose()?;
        let guard = http::Guard { listen: local, token };
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, http::router(api, guard)).await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        state.set_daemon_value("listen", Some(&local.to_string()))?;
        tracing::info!(address = %local, token = token.is_some(), "serving /healthz, /status and /metrics");
    } else {
        state.set_daemon_value("listen", None)?;
    }
    state.set_daemon_value("pid", Some(&std::process::id().to_string()))?;
    state.set_daemon_value("started_at", Some(&crate::state::ts(started)))?;

    let (events, mut inbox) = mpsc::unbounded_channel::<Event>();
    spawn_signal_handlers(events.clone())?;
    let mut outbox = Outbox { notifier: Notifier::new(), start_pings: Default::default(), pending: Vec::new() };
    let mut stop_deadline: Option<Instant> = None;
    tracing::info!(pid = std::process::id(), state = %opts.state_dir.display(), "cairn daemon started");

    let mut last_sweep = Instant::now();
    loop {
        let now = Utc::now();
        heartbeat.store(now.timestamp(), Ordering::Relaxed);
        for job in engine.tick(&state, now) {
            start_job(job, &state, &executor, &events, &mut outbox);
        }
        if last_sweep.elapsed() >= MAX_SLEEP {
            // Runs of other processes (a killed `cairn drill`) that died.
            last_sweep = Instant::now();
            if let Err(e) = state.close_dead_runs(now) {
                tracing::error!(error = %e, "cannot check the state for dead runs");
            }
        }
        if stop_deadline.is_some() && engine.running_count() == 0 {
            break;
        }
        let mut sleep = engine.next_wakeup(now).map_or(MAX_SLEEP, |t| (t - now).to_std().unwrap_or(Duration::ZERO));
        sleep = sleep.min(MAX_SLEEP);
        if let Some(d) = stop_deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    running = engine.running_count(),
                    "grace period over: stopping with jobs still running; they are marked interrupted, and the \
                     next backup reuses the data they stored"
                );
                break;
            }
            sleep = sleep.min(left);
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            Some(ev) = inbox.recv() => match ev {
                Event::Finished(f) => job_finished(*f, &mut engine, &mut outbox),
                Event::Reload => {
                    let (mut policies, diags) = load_policies(&opts.policies_dir);
                    keep_last_valid(&mut policies, &diags, engine.policies());
                    engine.load(policies.clone(), &state, Utc::now());
                    *current.write().unwrap_or_else(|p| p.into_inner()) = (policies, diags);
                }
                Event::Stop(signal) => {
                    let running = engine.stop();
                    tracing::info!(signal, running, grace_s = opts.grace.as_secs(), "stopping: no new jobs start");
                    stop_deadline.get_or_insert(Instant::now() + opts.grace);
                }
            },
            Some(req) = run_now_rx.recv() => {
                let answer = if stop_deadline.is_some() {
                    Err("the daemon is stopping".to_string())
                } else if engine.policy(&req.policy).is_none() {
                    let names: Vec<&str> = engine.policies().map(|p| p.name.as_str()).collect();
                    Err(format!("no valid policy named `{}` (valid: {})", req.policy, names.join(", ")))
                } else {
                    let r = engine.request(&req.policy, req.kind, Utc::now());
                    tracing::info!(policy = %req.policy, kind = %req.kind, uid = req.uid, outcome = ?r, "run-now requested");
                    Ok(r)
                };
                let _ = req.reply.send(answer);
            }
        }
    }
    let _ = std::fs::remove_file(control::socket_path(&opts.state_dir));
    let interrupted = state.close_orphaned_runs(Utc::now())?.len();
    outbox.flush(NOTIFY_FLUSH).await;
    state.set_daemon_value("pid", None)?;
    state.set_daemon_value("listen", None)?;
    tracing::info!(interrupted, "cairn daemon stopped");
    Ok(())
}

/// On reload, a policy whose file became invalid keeps running as it was
/// (its schedule, alerts and status must not vanish over a typo); the
/// problem is logged and listed by `cairn status` until it is fixed.
fn keep_last_valid<'a>(policies: &mut Vec<Policy>, diags: &[Diagnostic], old: impl Iterator<Item = &'a Arc<Policy>>) {
    for p in old {
        let file_invalid = diags.iter().any(|d| d.file == p.file);
        if file_invalid && !policies.iter().any(|n| n.name == p.name) {
            tracing::warn!(policy = %p.name, file = %p.file.display(), "the policy file is invalid now: keeping its last valid version");
            policies.push((**p).clone());
        }
    }
}

fn api(
    opts: &DaemonOptions,
    state: &Arc<State>,
    current: &Current,
    started: chrono::DateTime<Utc>,
    heartbeat: Arc<AtomicI64>,
) -> http::Api {
    let report = {
        let (state, current, dir) = (state.clone(), current.clone(), opts.state_dir.clone());
        move || {
            let (p, d) = current.read().unwrap_or_else(|p| p.into_inner()).clone();
            crate::status::build(Some(&state), &dir, &p, d, Utc::now())
        }
    };
    let report = Arc::new(report);
    let metrics = {
        let (state, current, report) = (state.clone(), current.clone(), report.clone());
        let started = started.timestamp_millis() as f64 / 1000.0;
        move || {
            let invalid_files = {
                let cur = current.read().unwrap_or_else(|p| p.into_inner());
                let mut files: Vec<&std::path::Path> = cur.1.iter().map(|d| d.file.as_path()).collect();
                files.dedup();
                files.len()
            };
            Ok(metrics::render(&report()?, Some(&state), invalid_files, started))
        }
    };
    http::Api { status: Box::new(move || report()), metrics: Box::new(metrics), heartbeat }
}

fn spawn_signal_handlers(events: mpsc::UnboundedSender<Event>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Error::io("SIGHUP handler", e))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                Some(()) = hup.recv() => { tracing::info!("SIGHUP: reloading the policies"); Event::Reload }
                Some(()) = term.recv() => Event::Stop("SIGTERM"),
                Some(()) = int.recv() => Event::Stop("SIGINT"),
                else => break,
            };
            if events.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn start_job(
    job: JobSpec,
    state: &Arc<State>,
    executor: &Arc<dyn Executor>,
    events: &mpsc::UnboundedSender<Event>,
    outbox: &mut Outbox,
) {
    let p = &job.policy;
    tracing::info!(policy = %p.name, kind = %job.kind, trigger = job.trigger.as_str(), attempt = job.attempt, "job started");
    if let (Some(url), Some(n)) = (p.notify.ping.clone(), outbox.notifier.clone()) {
        let h = tokio::spawn(async move { n.ping(&url, Ping::Start, "").await });
        outbox.start_pings.insert(p.name.clone(), h);
    }
    let (state, executor, events2) = (state.clone(), executor.clone(), events.clone());
    let thread_job = job.clone();
    let spawned = std::thread::Builder::new().name(format!("job-{}-{}", p.name, job.kind)).spawn(move || {
        let fallback = thread_job.clone();
        let f =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jobs::run_job(thread_job, &state, &*executor)))
                .unwrap_or_else(|_| failed(fallback, "the job's thread panicked"));
        let _ = events2.send(Event::Finished(Box::new(f)));
    });
    if let Err(e) = spawned {
        let _ = events.send(Event::Finished(Box::new(failed(job, &format!("cannot start a thread: {e}")))));
    }
}

fn failed(job: JobSpec, msg: &str) -> Finished {
    let now = Utc::now();
    Finished { job, run_id: 0, started_at: now, ended_at: now, result: RunSummary::failed(msg) }
}

fn job_finished(f: Finished, engine: &mut Engine, outbox: &mut Outbox) {
    let retry_at = engine.finished(&f.job, f.result.ok, Utc::now());
    let p = f.job.policy.clone();
    let duration_s = (f.ended_at - f.started_at).num_milliseconds() as f64 / 1000.0;
    if f.result.ok {
        let snapshot = f.result.snapshot_id.as_deref();
        tracing::info!(policy = %p.name, kind = %f.job.kind, duration_s, snapshot, bytes = f.result.bytes, "job succeeded");
    } else {
        let retry = retry_at.map(|t| t.to_rfc3339());
        tracing::error!(policy = %p.name, kind = %f.job.kind, duration_s, attempt = f.job.attempt, retry_at = retry.as_deref(),
            error = f.result.error.as_deref().unwrap_or(""), "job failed");
    }
    let event = NotifyEvent {
        schema: notify::EVENT_SCHEMA,
        event: if f.result.ok { "job.succeeded" } else { "job.failed" },
        policy: p.name.clone(),
        kind: f.job.kind.to_string(),
        trigger: f.job.trigger.as_str().to_string(),
        attempt: f.job.attempt,
        host: crate::host::hostname(),
        run_id: f.run_id,
        started_at: f.started_at,
        ended_at: f.ended_at,
        duration_s,
        snapshot_id: f.result.snapshot_id.clone(),
        bytes: f.result.bytes,
        error: f.result.error.clone(),
        retry_at,
    };
    let start_ping = outbox.start_pings.remove(&p.name);
    let Some(n) = outbox.notifier.clone() else { return };
    outbox.spawn(async move {
        if let Some(h) = start_ping {
            let _ = h.await;
        }
        if event.error.is_some() || p.notify.on_success {
            n.send_event(&p.notify.webhooks, &event).await;
        }
        if let Some(url) = &p.notify.ping {
            match &event.error {
                None => n.ping(url, Ping::Success, "").await,
                Some(e) => n.ping(url, Ping::Fail, e).await,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_whose_file_turned_invalid_keeps_running_as_it_was() {
        let mut web = crate::policy::for_tests("web", "/r", "[schedule]\nbackup = \"@daily\"\n");
        web.file = PathBuf::from("/etc/cairn/policies/web.toml");
        let mut gone = crate::policy::for_tests("gone", "/g", "");
        gone.file = PathBuf::from("/etc/cairn/policies/gone.toml");
        let old = [Arc::new(web.clone()), Arc::new(gone)];
        let typo = Diagnostic {
            file: web.file.clone(),
            line: 3,
            column: 1,
            field: "schedule.backup".into(),
            message: "bad".into(),
        };
        let mut now_valid = Vec::new();
        keep_last_valid(&mut now_valid, &[typo], old.iter());
        assert_eq!(now_valid, [web], "web is kept; gone.toml was deleted, not broken, so gone goes");
    }
}
