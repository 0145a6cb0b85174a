//! The validation command: an application-level check of the restored data
//! (`pg_restore --list dump`, `sqlite3 db 'PRAGMA integrity_check'`, a
//! test suite…), run in the restore target.
//!
//! It runs like a hook (`sh -c`, standard input closed, a process group of
//! its own whose every member is killed when the timeout runs out), with
//! two differences: its standard output and error are captured together
//! into one pipe, of which the last [`TAIL_BYTES`] are kept for the report,
//! and the report records the names of the environment variables it was
//! given (never their values). When its origin asks for log records (the
//! daemon), each line of its output is also one record naming the policy,
//! the job and the stream `output` (stdout and stderr share the pipe, so
//! that the report keeps their order). Its environment is the allow-listed one of
//! [`ChildEnv`], like every child's: no password and no cloud credential
//! unless its policy names the variable in `env`, because its output ends
//! up in reports (secrets never do).

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::policy::HookCommand;
use crate::process::{describe, read_lines, wait_or_kill, ChildEnv, Origin, OutputTo, Waited};

/// How much of the end of the output is kept.
pub const TAIL_BYTES: usize = 4096;

/// How the validation command went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub command: String,
    pub timeout_s: u64,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration_s: f64,
    /// The names of the environment variables it was given, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Bytes the command wrote (stdout and stderr together).
    pub output_bytes: u64,
    /// The last bytes of its output (at most [`TAIL_BYTES`], lossy UTF-8).
    pub output_tail: String,
    /// Why it failed, in words (`exited with status 3`, `timed out after 5m…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * TAIL_BYTES {
            self.buf.drain(..self.buf.len() - TAIL_BYTES);
        }
    }

    fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(TAIL_BYTES);
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

/// A reader that keeps the tail of what passes through it.
struct Kept<'a, R> {
    reader: &'a mut R,
    tail: &'a Mutex<Tail>,
}

impl<R: Read> Read for Kept<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.tail.lock().unwrap().push(&buf[..n]);
        Ok(n)
    }
}

/// The command line of `hook`: `sh -c`, in `cwd`, stdin closed, its own
/// process group, the environment `env` and nothing else.
fn command(hook: &HookCommand, cwd: &Path, env: &ChildEnv) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&hook.command).current_dir(cwd).stdin(Stdio::null()).process_group(0);
    env.apply(&mut cmd);
    cmd
}

/// Runs `hook` in `cwd` (see `command`), capturing the tail of its output.
pub fn run(hook: &HookCommand, cwd: &Path, env: &ChildEnv, origin: &Origin) -> Validation {
    let started = Instant::now();
    let mut v = Validation {
        command: hook.command.clone(),
        timeout_s: hook.timeout.as_secs(),
        env: env.names(),
        ..Default::default()
    };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let spawned = std::io::pipe().and_then(|(reader, writer)| {
        let mut cmd = command(hook, cwd, env);
        cmd.stdout(writer.try_clone()?).stderr(writer);
        let child = cmd.spawn()?;
        drop(cmd); // closes our copies of the pipe's write end
        Ok((child, reader))
    });
    let (mut child, mut reader) = match spawned {
        Ok(x) => x,
        Err(e) => {
            v.error = Some(format!("could not start: {e}"));
            v.duration_s = started.elapsed().as_secs_f64();
            return v;
        }
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let tail = tail.clone();
        let origin = (origin.output == OutputTo::Log).then(|| origin.clone());
        std::thread::spawn(move || {
            let mut kept = Kept { reader: &mut reader, tail: &tail };
            match origin {
                Some(o) => read_lines(&mut kept, |line, cut| o.record("validation command", "output", line, cut)),
                None => {
                    let _ = std::io::copy(&mut kept, &mut std::io::sink());
                }
            }
            let _ = done_tx.send(());
        });
    }
    let status = match wait_or_kill(&mut child, started + hook.timeout.to_std()) {
        Ok(Waited::Exited(status)) => Some(status),
        Ok(Waited::TimedOut(status)) => {
            v.timed_out = true;
            status
        }
        Err(e) => {
            v.error = Some(format!("waiting for it: {e}"));
            None
        }
    };
    // The group is gone; a process that left it may still hold the pipe,
    // so wait only briefly for the rest of the output.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    v.duration_s = started.elapsed().as_secs_f64();
    if let Some(s) = status {
        v.exit_code = s.code();
        v.signal = s.signal();
        if v.timed_out {
            v.error = Some(format!("timed out after {}; its process group was killed", hook.timeout));
        } else if !s.success() {
            v.error = Some(describe(s));
        }
    }
    v.passed = v.error.is_none();
    let t = tail.lock().unwrap();
    v.output_bytes = t.total;
    v.output_tail = t.text();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Duration as PDuration;

    fn hook(cmd: &str, secs: u64) -> HookCommand {
        HookCommand { command: cmd.into(), timeout: PDuration::from_secs(secs) }
    }

    #[test]
    fn a_passing_command_runs_in_the_target_and_its_output_is_kept() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("marker"), b"x").unwrap();
        let v = run(
            &hook("test -f marker && echo ok-$CAIRN_DRILL_ID && echo err >&2", 10),
            d.path(),
            &ChildEnv::new(&[]).with("CAIRN_DRILL_ID", "d1"),
            &Origin::default(),
        );
        assert!(v.passed, "{v:?}");
        assert_eq!(v.exit_code, Some(0));
        assert_eq!(v.output_tail, "ok-d1\nerr\n");
        assert_eq!(v.output_bytes, 10);
    }

    #[test]
    fn a_failing_command_records_its_status_and_the_tail_of_its_output() {
        let d = tempfile::tempdir().unwrap();
        let v =
            run(&hook("seq 1 5000; echo last words; exit 7", 10), d.path(), &ChildEnv::new(&[]), &Origin::default());
        assert!(!v.passed);
        assert_eq!(v.exit_code, Some(7));
        assert_eq!(v.error.as_deref(), Some("exited with status 7"));
        assert!(v.output_tail.ends_with("4999\n5000\nlast words\n"), "{}", v.output_tail);
        assert!(v.output_tail.len() <= TAIL_BYTES);
        assert!(v.output_bytes > TAIL_BYTES as u64);
    }

    #[test]
    fn a_command_that_times_out_is_killed_with_its_group() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("grandchild");
        // A grandchild that would outlive the command by a minute unless its group is killed.
        let cmd = format!("echo started; sleep 60 & echo $! > {}; wait", pid_file.display());
        let v = run(&hook(&cmd, 1), d.path(), &ChildEnv::new(&[]), &Origin::default());
        assert!(v.timed_out && !v.passed);
        assert_eq!(v.signal, Some(9));
        assert_eq!(v.output_tail, "started\n");
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
        // Killed, it is gone or a zombie waiting for init; wait for that
        // (the deadline only stops a test that would hang).
        let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
            Err(_) => true,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dead() {
            assert!(Instant::now() < deadline, "a child of the command (pid {pid}) survived the timeout");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_command_gets_its_environment_only_and_the_report_names_it() {
        let d = tempfile::tempdir().unwrap();
        let parent = [("PATH", "/usr/bin:/bin"), ("WEB_PW", "web-secret"), ("AWS_SECRET_ACCESS_KEY", "aws-secret")];
        let parent = parent.iter().map(|(k, v)| (k.into(), v.into()));
        let env = ChildEnv::from_parent(parent, &[]).with("CAIRN_DRILL_ID", "d1");
        let v = run(&hook("env", 10), d.path(), &env, &Origin::default());
        assert!(v.passed, "{v:?}");
        assert_eq!(v.env, ["CAIRN_DRILL_ID", "PATH"]);
        assert!(v.output_tail.contains("CAIRN_DRILL_ID=d1"), "{}", v.output_tail);
        assert!(!v.output_tail.contains("secret"), "{}", v.output_tail);
    }
}
