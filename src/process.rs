//! External commands: hooks, command sources, and the waiting and killing
//! that drill validation commands share with them. The policy's hooks are
//! run by the jobs (`crate::jobs`); this module knows only commands.
//!
//! Both run with `sh -c` in a process group of their own, with standard
//! input closed. Where their output goes is the caller's choice
//! ([`OutputTo`]): for a command run by hand, their standard output goes to
//! our standard error (stdout carries data only) and their standard error
//! is inherited; for the daemon, each line of either becomes one log record
//! naming the policy, the job and the stream ([`Origin`]), so that a log in
//! JSON stays one object per line. A line longer than [`MAX_LOG_LINE`]
//! bytes is cut, and its record says how many bytes were left out.
//!
//! Every child cairn starts (hooks, command sources, password commands,
//! drill validation commands) gets the environment [`ChildEnv`] builds and
//! nothing else: the allow-listed variables of [`INHERITED`] (and `LC_*`),
//! the variables its policy names in `env`, and cairn's own `CAIRN_*` job
//! variables. The daemon's environment holds every policy's password
//! variable and the cloud credentials; a child sees none of them unless its
//! policy names it.
//!
//! - A hook ([`run_hook`]) has a timeout; when it runs out, the whole
//!   process group is killed (SIGKILL), so a hook that started children of
//!   its own leaves nothing behind.
//! - A command source ([`CommandSource`]) is a reader over the command's
//!   standard output, streamed into the backup as it comes. When the
//!   output ends, the reader waits for the command and, if it failed,
//!   returns a read error instead of the end of the stream. The backup then
//!   fails before its snapshot (the commit point) is written, so a failed
//!   dump never becomes a snapshot; the chunks it stored are left for the
//!   next backup to adopt or for prune to remove. Dropping the reader early
//!   kills the command's process group.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::duration::Duration;
use crate::error::{Error, Result};

/// `exited with status 3`, `was killed by signal 9`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => status.to_string(),
    }
}

fn failure(what: &str, msg: impl Into<String>) -> Error {
    Error::io(what, std::io::Error::other(msg.into()))
}

/// The variables every child inherits from cairn's environment when set
/// (besides `LC_*`): what a shell needs to find programs, speak the
/// locale and tell the time and the user.
pub const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME"];

fn inherited(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    INHERITED.contains(&name.as_ref()) || name.starts_with("LC_")
}

/// The whole environment of a child process, built from an allow-list;
/// the one way cairn gives a child its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    vars: Vec<(OsString, OsString)>,
}

impl ChildEnv {
    /// The environment for a child of a policy that names `pass` (its
    /// `env` field; empty without a policy), taken from cairn's own.
    pub fn new(pass: &[String]) -> ChildEnv {
        ChildEnv::from_parent(std::env::vars_os(), pass)
    }

    /// As [`ChildEnv::new`], from the given parent environment: the
    /// variables of [`INHERITED`], `LC_*`, and those named in `pass`.
    pub fn from_parent(parent: impl IntoIterator<Item = (OsString, OsString)>, pass: &[String]) -> ChildEnv {
        let mut vars: Vec<(OsString, OsString)> =
            parent.into_iter().filter(|(k, _)| inherited(k) || pass.iter().any(|p| OsStr::new(p) == k)).collect();
        vars.sort();
        ChildEnv { vars }
    }

    /// Adds (or replaces) one of cairn's job variables (`CAIRN_POLICY`…).
    pub fn with(mut self, name: &str, value: impl AsRef<OsStr>) -> ChildEnv {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.into(), value.as_ref().to_os_string()));
        self.vars.sort();
        self
    }

    /// The names of the variables passed, sorted (never their values).
    pub fn names(&self) -> Vec<String> {
        self.vars.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect()
    }

    /// Gives `cmd` this environment and nothing else.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env_clear();
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }
}

/// Where a child's standard output and error go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputTo {
    /// Our standard error, as the child writes it: a command run by hand
    /// shows what its hooks print.
    #[default]
    Terminal,
    /// One `tracing` record per line, naming the policy, the job and the
    /// stream (the daemon).
    Log,
}

/// Whom a child runs for, named in the records its output becomes.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The policy, when there is one.
    pub policy: Option<String>,
    /// The job: `backup`, `drill`, `open` (a password command)…
    pub job: &'static str,
    pub output: OutputTo,
}

impl Origin {
    pub fn new(policy: Option<&str>, job: &'static str, output: OutputTo) -> Origin {
        Origin { policy: policy.map(str::to_string), job, output }
    }

    /// The record of one line that `command` wrote on `stream`; `cut`
    /// bytes of it were left out (it was longer than [`MAX_LOG_LINE`]).
    pub fn record(&self, command: &str, stream: &'static str, line: &str, cut: u64) {
        let policy = self.policy.as_deref();
        if cut > 0 {
            tracing::info!(policy, job = self.job, command, stream, cut_bytes = cut, "{line}");
        } else {
            tracing::info!(policy, job = self.job, command, stream, "{line}");
        }
    }

    /// Records every line of `bytes` (output already captured).
    pub fn record_all(&self, command: &str, stream: &'static str, bytes: &[u8]) {
        read_lines(bytes, |line, cut| self.record(command, stream, line, cut));
    }
}

/// The most bytes of one line of a child's output a log record carries.
pub const MAX_LOG_LINE: usize = 4096;

/// Calls `emit` with each line `r` gives (without its line end, lossy
/// UTF-8) and the number of bytes cut from it past [`MAX_LOG_LINE`]. Ends
/// at the end of the stream or at a read error.
pub fn read_lines(r: impl Read, mut emit: impl FnMut(&str, u64)) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(MAX_LOG_LINE as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut cut = 0u64;
        if line.last() != Some(&b'\n') && line.len() == MAX_LOG_LINE {
            // Skip the rest of the line.
            loop {
                let buf = match r.fill_buf() {
                    Ok(b) if !b.is_empty() => b,
                    _ => break,
                };
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        cut += i as u64;
                        r.consume(i + 1);
                        break;
                    }
                    None => {
                        let n = buf.len();
                        cut += n as u64;
                        r.consume(n);
                    }
                }
            }
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        emit(&String::from_utf8_lossy(&line), cut);
    }
}

/// Threads that turn each line of a child's piped output into a record.
struct LineLoggers {
    done: std::sync::mpsc::Receiver<()>,
    streams: usize,
}

impl LineLoggers {
    /// Starts a thread for each of `child`'s piped streams (none when its
    /// output goes to the terminal).
    fn start(child: &mut Child, origin: &Origin, command: &str) -> LineLoggers {
        let (tx, done) = std::sync::mpsc::channel();
        let mut streams = 0;
        let mut spawn = |r: Box<dyn Read + Send>, stream: &'static str| {
            let (origin, command, tx) = (origin.clone(), command.to_string(), tx.clone());
            streams += 1;
            std::thread::spawn(move || {
                read_lines(r, |line, cut| origin.record(&command, stream, line, cut));
                let _ = tx.send(());
            });
        };
        if let Some(out) = child.stdout.take() {
            spawn(Box::new(out), "stdout");
        }
        if let Some(err) = child.stderr.take() {
            spawn(Box::new(err), "stderr");
        }
        LineLoggers { done, streams }
    }

    /// Waits until every stream ended, or `limit` passed: a process that
    /// left the group may still hold a pipe, and the job does not wait
    /// for it (its thread logs what comes later).
    fn finish(self, limit: std::time::Duration) {
        let deadline = Instant::now() + limit;
        for _ in 0..self.streams {
            if self.done.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                return;
            }
        }
    }
}

fn shell(command: &str, env: &ChildEnv, output: OutputTo) -> std::io::Result<Command> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null()).process_group(0);
    match output {
        OutputTo::Terminal => {
            cmd.stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?)).stderr(Stdio::inherit());
        }
        OutputTo::Log => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    env.apply(&mut cmd);
    Ok(cmd)
}

/// Kills a process group created with `process_group(0)`, whose id is the
/// leader's pid.
pub(crate) fn kill_group(child: &Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: killpg only sends a signal; the group is the one we created.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// How a process waited on with a deadline ended.
pub(crate) enum Waited {
    Exited(ExitStatus),
    /// Its process group was killed at the deadline (the status after the kill).
    TimedOut(Option<ExitStatus>),
}

/// Waits for `child` (the leader of its own process group) until
/// `deadline`, then kills the group. An error waiting kills it too.
pub(crate) fn wait_or_kill(child: &mut Child, deadline: Instant) -> std::io::Result<Waited> {
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Waited::Exited(status)),
            Ok(None) => {}
            Err(e) => {
                kill_group(child);
                let _ = child.wait();
                return Err(e);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(child);
            return Ok(Waited::TimedOut(child.wait().ok()));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// Runs hook `label` (`before`, `after`, `on_failure`…) to completion or
/// until `timeout`; fails if it fails, cannot start, or times out. Its
/// output goes where `origin` says.
pub fn run_hook(label: &str, command: &str, timeout: Duration, env: &ChildEnv, origin: &Origin) -> Result<()> {
    let what = format!("{label} hook");
    let mut child = shell(command, env, origin.output).and_then(|mut c| c.spawn()).map_err(|e| Error::io(&what, e))?;
    tracing::info!(policy = origin.policy.as_deref(), job = origin.job, "{what} started");
    let loggers = LineLoggers::start(&mut child, origin, &what);
    let waited = wait_or_kill(&mut child, Instant::now() + timeout.to_std());
    loggers.finish(std::time::Duration::from_secs(2));
    match waited.map_err(|e| Error::io(&what, e))? {
        Waited::Exited(status) if status.success() => Ok(()),
        Waited::Exited(status) => Err(failure(&what, describe(status))),
        Waited::TimedOut(_) => Err(failure(&what, format!("timed out after {timeout}; its process group was killed"))),
    }
}

/// The standard output of a running command source, as a reader.
pub struct CommandSource {
    child: Child,
    stdout: ChildStdout,
    status: Arc<Mutex<Option<ExitStatus>>>,
    done: bool,
}

/// Tells, after the backup, whether the command source failed.
#[derive(Clone)]
pub struct SourceStatus(Arc<Mutex<Option<ExitStatus>>>);

impl SourceStatus {
    /// The command's failure, once it has exited unsuccessfully.
    pub fn failure(&self) -> Option<Error> {
        let s = (*self.0.lock().expect("status lock"))?;
        (!s.success()).then(|| failure("source command", describe(s)))
    }
}

impl CommandSource {
    /// Starts `command`; its standard output is the data, its standard
    /// error goes where `origin` says.
    pub fn spawn(command: &str, env: &ChildEnv, origin: &Origin) -> Result<(CommandSource, SourceStatus)> {
        let mut child = shell(command, env, origin.output)
            .and_then(|mut c| c.stdout(Stdio::piped()).spawn())
            .map_err(|e| Error::io("source command", e))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Only its standard error is left to log; the thread ends with it.
        let _ = LineLoggers::start(&mut child, origin, "source command");
        let status = Arc::new(Mutex::new(None));
        Ok((CommandSource { child, stdout, status: status.clone(), done: false }, SourceStatus(status)))
    }
}

impl Read for CommandSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let status = self.child.wait()?;
            self.done = true;
            *self.status.lock().expect("status lock") = Some(status);
            if !status.success() {
                return Err(std::io::Error::other(format!("the source command {}", describe(status))));
            }
        }
        Ok(n)
    }
}

impl Drop for CommandSource {
    fn drop(&mut self) {
        if !self.done {
            kill_group(&self.child);
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn hooks_succeed_fail_and_see_their_environment() {
        run_hook(
            "before",
            "test \"$CAIRN_POLICY\" = web",
            secs(10),
            &ChildEnv::new(&[]).with("CAIRN_POLICY", "web"),
            &Origin::default(),
        )
        .unwrap();
        let e = run_hook("before", "exit 3", secs(10), &ChildEnv::default(), &Origin::default()).unwrap_err();
        assert_eq!(e.to_string(), "before hook: exited with status 3");
    }

    #[test]
    fn a_hook_that_times_out_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        // A grandchild that would outlive the hook by a minute unless its group is killed.
        let cmd = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
        let e = run_hook("after", &cmd, secs(1), &ChildEnv::new(&[]), &Origin::default()).unwrap_err();
        assert_eq!(e.to_string(), "after hook: timed out after 1s; its process group was killed");
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
        // Killed, it is gone or a zombie waiting for init; wait for that
        // (the deadline only stops a test that would hang).
        let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
            Err(_) => true,
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while !dead() {
            assert!(Instant::now() < deadline, "a child of the hook (pid {pid}) survived the timeout");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_failing_source_command_is_a_read_error_at_the_end() {
        let (mut ok, status) = CommandSource::spawn("printf hello", &ChildEnv::new(&[]), &Origin::default()).unwrap();
        let mut out = String::new();
        ok.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        assert!(status.failure().is_none());

        let (mut bad, status) =
            CommandSource::spawn("printf partial; exit 4", &ChildEnv::new(&[]), &Origin::default()).unwrap();
        let mut out = Vec::new();
        let e = bad.read_to_end(&mut out).unwrap_err();
        assert_eq!(out, b"partial");
        assert_eq!(e.to_string(), "the source command exited with status 4");
        assert_eq!(status.failure().unwrap().to_string(), "source command: exited with status 4");
    }

    fn parent(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn a_child_environment_is_the_allow_list_plus_what_the_policy_names() {
        let daemon = parent(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("LC_TIME", "C"),
            ("TZ", "UTC"),
            ("CAIRN_PASSWORD", "global-secret"),
            ("WEB_PW", "web-secret"),
            ("DB_PW", "db-secret"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("PGHOST", "db1"),
        ]);
        let env = ChildEnv::from_parent(daemon.clone(), &["PGHOST".into(), "DB_PW".into()]).with("CAIRN_POLICY", "db");
        assert_eq!(env.names(), ["CAIRN_POLICY", "DB_PW", "HOME", "LC_TIME", "PATH", "PGHOST", "TZ"]);
        let bare = ChildEnv::from_parent(daemon, &[]);
        assert_eq!(bare.names(), ["HOME", "LC_TIME", "PATH", "TZ"]);
    }

    /// What a real child sees: it prints its environment, and neither the
    /// parent's secrets nor anything else outside the allow-list is there.
    #[test]
    fn a_child_sees_only_its_environment() {
        let env = ChildEnv::from_parent(
            parent(&[("PATH", "/usr/bin:/bin"), ("CAIRN_PASSWORD", "s3cret"), ("AWS_SECRET_ACCESS_KEY", "k3y")]),
            &[],
        )
        .with("CAIRN_POLICY", "web");
        let (mut src, _) = CommandSource::spawn("env", &env, &Origin::default()).unwrap();
        let mut out = String::new();
        src.read_to_string(&mut out).unwrap();
        let mut names: Vec<&str> = out.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
        names.sort();
        // sh may add PWD, SHLVL and `_` of its own.
        names.retain(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n));
        assert_eq!(names, ["CAIRN_POLICY", "PATH"], "{out}");
        assert!(!out.contains("s3cret") && !out.contains("k3y"), "{out}");
    }

    fn lines_of(bytes: &[u8]) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        read_lines(bytes, |l, cut| v.push((l.to_string(), cut)));
        v
    }

    #[test]
    fn output_is_split_into_lines_and_a_long_line_is_cut_with_its_count() {
        assert_eq!(
            lines_of(b"one\r\ntwo\n\nlast"),
            [("one".into(), 0), ("two".into(), 0), ("".into(), 0), ("last".into(), 0)]
        );
        let mut long = vec![b'x'; MAX_LOG_LINE + 100];
        long.extend_from_slice(b"\nafter\n");
        let got = lines_of(&long);
        assert_eq!(got.len(), 2, "{:?}", got.iter().map(|(l, c)| (l.len(), *c)).collect::<Vec<_>>());
        assert_eq!((got[0].0.len(), got[0].1), (MAX_LOG_LINE, 100));
        assert_eq!(got[1], ("after".into(), 0));
        assert!(lines_of(b"").is_empty());
    }

    #[test]
    fn a_logged_hook_still_fails_and_its_output_does_not_hold_it_up() {
        let origin = Origin::new(Some("web"), "backup", OutputTo::Log);
        run_hook("before", "echo out; echo err >&2", secs(10), &ChildEnv::new(&[]), &origin).unwrap();
        let e = run_hook("before", "echo out; exit 3", secs(10), &ChildEnv::new(&[]), &origin).unwrap_err();
        assert_eq!(e.to_string(), "before hook: exited with status 3");
    }
}
