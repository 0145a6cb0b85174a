//! The repository password on the command line: cairn's usual sources
//! (`--password-file F` or `CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD`,
//! `CAIRN_PASSWORD_COMMAND`; see [`crate::jobs::password`]), and finally a
//! prompt when stdin is a terminal. The password never appears in any
//! message.

use std::io::IsTerminal;
use std::path::Path;

use crate::error::{Error, Result};
pub use crate::jobs::password::{from_file, Password};

/// The repository password, from the first source that gives one.
pub fn resolve(file: Option<&Path>, confirm: bool) -> Result<Password> {
    crate::jobs::password::resolve(
        file,
        &crate::process::ChildEnv::new(&[]),
        &crate::process::Origin::default(),
        Some(prompt_repository),
        confirm,
    )
}

/// The prompt of the usual sources.
pub fn prompt_repository(confirm: bool) -> Result<Password> {
    prompt("repository password: ", confirm)
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
            return Err(Error::PasswordsDiffer);
        }
    }
    if p.is_empty() {
        return Err(Error::EmptyPassword { what: "the password" });
    }
    Ok(Password(p.into_bytes()))
}
