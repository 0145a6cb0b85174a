//! Where the repository password comes from, in this order:
//! `--password-file F` (or `CAIRN_PASSWORD_FILE`), `CAIRN_PASSWORD`,
//! `CAIRN_PASSWORD_COMMAND` (run with `sh -c`, first line of stdout), and
//! finally a prompt when stdin is a terminal. The password never appears
//! in any message.

use std::io::IsTerminal;
use std::path::Path;

use crate::error::{Error, Result};

pub struct Password(pub Vec<u8>);

impl Drop for Password {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    v
}

pub fn from_file(path: &Path) -> Result<Password> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default().to_vec();
    Ok(Password(trim_newline(first_line)))
}

pub fn from_command(cmd: &str) -> Result<Password> {
    let line = crate::policy::job::secret_from_command(cmd, "CAIRN_PASSWORD_COMMAND")?
        .map_err(|status| Error::InvalidArgument(format!("CAIRN_PASSWORD_COMMAND failed ({status})")))?;
    Ok(Password(trim_newline(line)))
}

/// The repository password, from the first source that gives one.
pub fn resolve(file: Option<&Path>, confirm: bool) -> Result<Password> {
    let p = if let Some(f) = file {
        from_file(f)?
    } else if let Some(p) = std::env::var_os("CAIRN_PASSWORD") {
        Password(std::os::unix::ffi::OsStringExt::into_vec(p))
    } else if let Ok(cmd) = std::env::var("CAIRN_PASSWORD_COMMAND") {
        from_command(&cmd)?
    } else {
        prompt("repository password: ", confirm)?
    };
    if p.0.is_empty() {
        return Err(Error::InvalidArgument("the password is empty".into()));
    }
    Ok(p)
}

/// Asks on the terminal; refuses when stdin is not one.
pub fn prompt(what: &str, confirm: bool) -> Result<Password> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::NoPassword);
    }
    let p = rpassword::prompt_password(what).map_err(|e| Error::io("terminal", e))?;
    if confirm {
        let again = rpassword::prompt_password("enter it again: ").map_err(|e| Error::io("terminal", e))?;
        if again != p {
            return Err(Error::InvalidArgument("the passwords do not match".into()));
        }
    }
    if p.is_empty() {
        return Err(Error::InvalidArgument("the password is empty".into()));
    }
    Ok(Password(p.into_bytes()))
}
