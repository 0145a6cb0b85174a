//! Where a repository password comes from.
//!
//! - A policy's own source ([`from_policy_source`]): `password_env` (the
//!   variable whole), `password_file` or `password_command` (their first
//!   line).
//! - Otherwise cairn's usual sources, in this order ([`usual`]):
//!   `--password-file F` (or `CAIRN_PASSWORD_FILE`), `CAIRN_PASSWORD`,
//!   `CAIRN_PASSWORD_COMMAND` (run with `sh -c`, first line of stdout), and
//!   last a prompt, which only the command line can offer ([`Prompt`]).
//!
//! A password is zeroed when dropped and never appears in a message:
//! errors name the source, never what it gave. A password command gets
//! the allow-listed environment of [`ChildEnv`] (with the variables its
//! policy names), never the daemon's whole one.

use std::path::Path;

use crate::error::{Error, Result};
use crate::policy::PasswordSource;
use crate::process::{ChildEnv, Origin, OutputTo};

/// A repository password; zeroed when dropped.
pub struct Password(pub Vec<u8>);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

/// Asks for the password on a terminal (`confirm`: ask twice). The
/// command line gives one; the library never prompts by itself.
pub type Prompt = fn(confirm: bool) -> Result<Password>;

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    v
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

/// Runs a secret-printing command with `sh -c` (stdin closed, the
/// environment `env`) and returns the first line of its output, or its
/// exit status when it failed. Its standard error goes where `origin` says
/// (passed through, or one log record per line). `what` names the command
/// in I/O errors.
pub fn secret_from_command(
    cmd: &str,
    what: &'static str,
    env: &ChildEnv,
    origin: &Origin,
) -> Result<std::result::Result<Vec<u8>, std::process::ExitStatus>> {
    let mut command = std::process::Command::new("sh");
    let stderr = match origin.output {
        OutputTo::Terminal => std::process::Stdio::inherit(),
        OutputTo::Log => std::process::Stdio::piped(),
    };
    command.arg("-c").arg(cmd).stdin(std::process::Stdio::null()).stderr(stderr);
    env.apply(&mut command);
    let out = command.output().map_err(|e| Error::io(what, e))?;
    // Its standard output is the secret: only its standard error is logged.
    origin.record_all(what, "stderr", &out.stderr);
    Ok(if out.status.success() { Ok(first_line(out.stdout)) } else { Err(out.status) })
}

/// The first line of a password file (`--password-file`).
pub fn from_file(path: &Path) -> Result<Password> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default().to_vec();
    Ok(Password(trim_newline(first_line)))
}

/// The first line of `CAIRN_PASSWORD_COMMAND`'s output.
pub fn from_command(cmd: &str, env: &ChildEnv, origin: &Origin) -> Result<Password> {
    let line = secret_from_command(cmd, "CAIRN_PASSWORD_COMMAND", env, origin)?.map_err(|status| {
        Error::PasswordCommandFailed { what: "CAIRN_PASSWORD_COMMAND", how: crate::process::describe(status) }
    })?;
    Ok(Password(trim_newline(line)))
}

/// The password from cairn's usual sources, but the prompt: `file`
/// (`--password-file`), else `CAIRN_PASSWORD`, else
/// `CAIRN_PASSWORD_COMMAND` (run with `env`); `None` when none is set.
pub fn usual(file: Option<&Path>, env: &ChildEnv, origin: &Origin) -> Result<Option<Password>> {
    Ok(if let Some(f) = file {
        Some(from_file(f)?)
    } else if let Some(p) = std::env::var_os("CAIRN_PASSWORD") {
        Some(Password(std::os::unix::ffi::OsStringExt::into_vec(p)))
    } else if let Ok(cmd) = std::env::var("CAIRN_PASSWORD_COMMAND") {
        Some(from_command(&cmd, env, origin)?)
    } else {
        None
    })
}

/// The password from cairn's usual sources, then `prompt`; without a
/// prompt, no source is [`Error::NoPassword`]. An empty password is refused.
pub fn resolve(
    file: Option<&Path>,
    env: &ChildEnv,
    origin: &Origin,
    prompt: Option<Prompt>,
    confirm: bool,
) -> Result<Password> {
    let p = match usual(file, env, origin)? {
        Some(p) => p,
        None => match prompt {
            Some(ask) => ask(confirm)?,
            None => return Err(Error::NoPassword),
        },
    };
    if p.0.is_empty() {
        return Err(Error::EmptyPassword { what: "the password" });
    }
    Ok(p)
}

/// Reads the password a policy names (first line of a file or of a
/// command's output; an environment variable whole). Errors name the
/// source, never the password. A command runs with `env`.
pub fn from_policy_source(src: &PasswordSource, env: &ChildEnv, origin: &Origin) -> Result<Password> {
    let pw = match src {
        PasswordSource::Env(var) => std::env::var_os(var)
            .map(std::os::unix::ffi::OsStringExt::into_vec)
            .ok_or_else(|| Error::PasswordEnvUnset { var: var.clone() })?,
        PasswordSource::File(path) => first_line(std::fs::read(path).map_err(|e| Error::io(path, e))?),
        PasswordSource::Command(cmd) => {
            secret_from_command(cmd, "password_command", env, origin)?.map_err(|status| {
                Error::PasswordCommandFailed { what: "password_command", how: crate::process::describe(status) }
            })?
        }
    };
    if pw.is_empty() {
        return Err(Error::EmptyPassword { what: "the password from the policy's password source" });
    }
    Ok(Password(pw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_from_the_named_source_and_never_appear_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from file\r\nsecond line\n").unwrap();
        assert_eq!(
            from_policy_source(&PasswordSource::File(f), &ChildEnv::new(&[]), &Origin::default()).unwrap().as_bytes(),
            b"from file"
        );
        let cmd = PasswordSource::Command("printf 'from command\\nmore'".into());
        assert_eq!(
            from_policy_source(&cmd, &ChildEnv::new(&[]), &Origin::default()).unwrap().as_bytes(),
            b"from command"
        );
        // A variable no test sets: reading one that is set would race with other tests.
        let e = from_policy_source(
            &PasswordSource::Env("CAIRN_TEST_UNSET_PASSWORD_VAR".into()),
            &ChildEnv::new(&[]),
            &Origin::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "password_env: the environment variable CAIRN_TEST_UNSET_PASSWORD_VAR is not set");
        let e = from_policy_source(
            &PasswordSource::Command("echo sekrit; exit 2".into()),
            &ChildEnv::new(&[]),
            &Origin::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "password_command exited with status 2");
        let e = from_policy_source(&PasswordSource::Command("true".into()), &ChildEnv::new(&[]), &Origin::default())
            .unwrap_err();
        assert_eq!(e.to_string(), "the password from the policy's password source is empty");
        assert_eq!(format!("{:?}", Password(b"sekrit".to_vec())), "Password(..)");
    }

    #[test]
    fn a_password_file_gives_its_first_line_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "first\r\nsecond\n").unwrap();
        assert_eq!(
            resolve(Some(&f), &ChildEnv::new(&[]), &Origin::default(), None, false).unwrap().as_bytes(),
            b"first"
        );
        std::fs::write(&f, "\nsecond\n").unwrap();
        assert_eq!(
            resolve(Some(&f), &ChildEnv::new(&[]), &Origin::default(), None, false).unwrap_err().to_string(),
            "the password is empty"
        );
    }
}
