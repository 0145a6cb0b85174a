//! One backup of a policy, hooks included: what `cairn backup --policy`
//! and the daemon run.
//!
//! Order: the `before` hook (a failure stops the job); open the repository
//! (through a function the caller gives, so that the command line and the
//! daemon each set it up their way); the backup, tagged with the policy's
//! name and recording it; then the `after` hook on success, or
//! `on_failure` on any failure (`before`, opening, the backup, the source
//! command, or `after` itself). Every hook gets `CAIRN_POLICY`; `after`
//! gets `CAIRN_SNAPSHOT` (the new snapshot's id); `on_failure` gets
//! `CAIRN_ERROR` (the error message, which never holds a secret) and
//! `CAIRN_SNAPSHOT` when a snapshot was saved before the failure.
//!
//! Passwords named by a policy are read here too ([`read_password`]).

use chrono::{DateTime, Utc};

use crate::backup::{self, BackupOptions, BackupReport, Progress};
use crate::error::{Error, Result};
use crate::repo::Repository;

use super::process::{run_hook, CommandSource};
use super::{PasswordSource, Policy, Source};

/// What the caller may add to a policy's backup.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Record this time instead of now.
    pub time: Option<DateTime<Utc>>,
    /// Record this host name instead of this machine's.
    pub host: Option<String>,
    /// Tags besides the policy's name.
    pub tags: Vec<String>,
    /// Read every file instead of comparing with a parent snapshot.
    pub force: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

/// How a job went.
#[derive(Default)]
pub struct JobOutcome {
    /// The snapshot saved, if one was.
    pub report: Option<BackupReport>,
    /// Why the job failed; `None` when it succeeded.
    pub error: Option<Error>,
    /// Problems that did not change the outcome (`on_failure` failing).
    pub warnings: Vec<String>,
    /// The repository the job opened (for its evidence record); `None`
    /// when it never got that far.
    pub repo: Option<Repository>,
}

impl JobOutcome {
    /// The payload of the job's evidence record, when it opened the
    /// repository and there is an outcome to record.
    pub fn evidence_payload(&self, elapsed: std::time::Duration) -> Option<serde_json::Value> {
        self.repo.as_ref()?;
        let result = self.report.as_ref().map(Ok).or_else(|| self.error.as_ref().map(Err))?;
        Some(crate::evidence::payload::backup(result, self.error.as_ref(), elapsed))
    }

    /// The snapshot saved, as the policy's newest recovery point.
    pub fn recovery_point(&self) -> Option<crate::state::RecoveryPoint> {
        self.report.as_ref().map(|r| crate::state::RecoveryPoint {
            snapshot_id: r.snapshot_id.to_hex(),
            time: r.snapshot.time,
            tree: r.snapshot.tree.to_hex(),
        })
    }
}

/// Runs one backup of `policy`. `open` opens its repository (after the
/// `before` hook, which may be what makes it reachable).
pub fn run_backup(
    policy: &Policy,
    open: impl FnOnce() -> Result<Repository>,
    opts: &JobOptions,
    progress: &dyn Progress,
) -> JobOutcome {
    let name = policy.name.as_str();
    let mut out = JobOutcome::default();
    let opened = std::cell::RefCell::new(None);
    let open = || open().inspect(|r| *opened.borrow_mut() = Some(r.clone()));
    let result = backup_between_hooks(policy, open, opts, progress);
    out.repo = opened.into_inner();
    match result {
        Ok(report) => {
            let id = report.snapshot_id.to_hex();
            if let Some(h) = &policy.hooks.after {
                if let Err(e) = run_hook("after", h, &[("CAIRN_POLICY", name), ("CAIRN_SNAPSHOT", &id)]) {
                    out.error = Some(e);
                }
            }
            out.report = Some(report);
        }
        Err(e) => out.error = Some(e),
    }
    if let (Some(e), Some(h)) = (&out.error, &policy.hooks.on_failure) {
        let msg = e.to_string();
        let id = out.report.as_ref().map(|r| r.snapshot_id.to_hex());
        let mut env = vec![("CAIRN_POLICY", name), ("CAIRN_ERROR", msg.as_str())];
        if let Some(id) = &id {
            env.push(("CAIRN_SNAPSHOT", id));
        }
        if let Err(he) = run_hook("on_failure", h, &env) {
            out.warnings.push(he.to_string());
        }
    }
    out
}

fn backup_between_hooks(
    policy: &Policy,
    open: impl FnOnce() -> Result<Repository>,
    opts: &JobOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let name = policy.name.as_str();
    if let Some(h) = &policy.hooks.before {
        run_hook("before", h, &[("CAIRN_POLICY", name)])?;
    }
    let repo = open()?;
    let mut tags = vec![policy.name.clone()];
    tags.extend(opts.tags.iter().filter(|t| **t != policy.name).cloned());
    let mut bo = BackupOptions {
        tags,
        host: opts.host.clone(),
        time: opts.time,
        policy: Some(policy.name.clone()),
        parent: if opts.force { Some(None) } else { None },
        ..Default::default()
    };
    if opts.threads > 0 {
        bo.threads = opts.threads;
    }
    match &policy.source {
        Source::Paths { paths, exclude, exclude_if_present, one_file_system } => {
            bo.excludes = exclude.clone();
            bo.exclude_if_present = exclude_if_present.clone();
            bo.one_file_system = *one_file_system;
            backup::run(&repo, backup::Source::Paths(paths.clone()), &bo, progress)
        }
        Source::Command { command, stored_as } => {
            let (reader, status) = CommandSource::spawn(command, &[("CAIRN_POLICY", name)])?;
            let source = backup::Source::Stdin { name: stored_as.clone(), reader: Box::new(reader) };
            // The command's failure is the real error, not the read error it caused.
            backup::run(&repo, source, &bo, progress).map_err(|e| status.failure().unwrap_or(e))
        }
    }
}

/// A password read from a policy's source; zeroed when dropped.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

fn first_line(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(i) = v.iter().position(|b| *b == b'\n') {
        v.truncate(i);
    }
    if v.last() == Some(&b'\r') {
        v.pop();
    }
    v
}

/// Runs a secret-printing command with `sh -c` (stdin closed, stderr
/// passed through) and returns the first line of its output, or its exit
/// status when it failed. `what` names the command in I/O errors.
pub fn secret_from_command(cmd: &str, what: &str) -> Result<std::result::Result<Vec<u8>, std::process::ExitStatus>> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::io(what, e))?;
    Ok(if out.status.success() { Ok(first_line(out.stdout)) } else { Err(out.status) })
}

/// Reads the password a policy names (first line of a file or of a
/// command's output; an environment variable whole). Errors name the
/// source, never the password.
pub fn read_password(src: &PasswordSource) -> Result<Secret> {
    let pw = match src {
        PasswordSource::Env(var) => {
            std::env::var_os(var).map(std::os::unix::ffi::OsStringExt::into_vec).ok_or_else(|| {
                Error::InvalidArgument(format!("password_env: the environment variable {var} is not set"))
            })?
        }
        PasswordSource::File(path) => first_line(std::fs::read(path).map_err(|e| Error::io(path, e))?),
        PasswordSource::Command(cmd) => secret_from_command(cmd, "password_command")?.map_err(|status| {
            Error::InvalidArgument(format!("password_command {}", super::process::describe(status)))
        })?,
    };
    if pw.is_empty() {
        return Err(Error::InvalidArgument("the policy's password source gives an empty password".into()));
    }
    Ok(Secret(pw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_from_the_named_source_and_never_appear_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from file\r\nsecond line\n").unwrap();
        assert_eq!(read_password(&PasswordSource::File(f)).unwrap().as_bytes(), b"from file");
        let cmd = PasswordSource::Command("printf 'from command\\nmore'".into());
        assert_eq!(read_password(&cmd).unwrap().as_bytes(), b"from command");
        // A variable no test sets: reading one that is set would race with other tests.
        let e = read_password(&PasswordSource::Env("CAIRN_TEST_UNSET_PASSWORD_VAR".into())).unwrap_err();
        assert_eq!(e.to_string(), "password_env: the environment variable CAIRN_TEST_UNSET_PASSWORD_VAR is not set");
        let e = read_password(&PasswordSource::Command("echo sekrit; exit 2".into())).unwrap_err();
        assert_eq!(e.to_string(), "password_command exited with status 2");
        let e = read_password(&PasswordSource::Command("true".into())).unwrap_err();
        assert!(e.to_string().contains("empty password"), "{e}");
    }
}
