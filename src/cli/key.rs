//! `cairn key add|list|remove`: the passwords that open the repository.

use std::path::PathBuf;

use crate::crypto::KdfParams;
use crate::error::Result;
use crate::repo::{duties, keys};

use super::output::Printer;
use super::{open_repo, password, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub cmd: KeyCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a password (read from --new-password-file, CAIRN_NEW_PASSWORD, or a prompt)
    Add {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Argon2id memory in KiB (default 65536; 19456 to 262144)
        #[arg(long, hide = true, value_parser = super::kdf_memory_kib())]
        kdf_memory_kib: Option<u32>,
    },
    /// List the key slots
    List,
    /// Remove a key slot by id prefix (not the one in use, never the last)
    Remove { id: String },
}

pub fn run(g: &GlobalArgs, a: &KeyArgs, p: &Printer) -> Result<i32> {
    match &a.cmd {
        KeyCmd::Add { new_password_file, kdf_memory_kib } => {
            let repo = open_repo(g)?;
            let new = match (new_password_file, std::env::var_os("CAIRN_NEW_PASSWORD")) {
                (Some(f), _) => password::from_file(f)?,
                (None, Some(v)) => password::Password(std::os::unix::ffi::OsStringExt::into_vec(v)),
                (None, None) => password::prompt("new password: ", true)?,
            };
            let mut params = KdfParams::default();
            if let Some(m) = kdf_memory_kib {
                params.memory_kib = *m;
            }
            let id = keys::add_slot(repo.backend().as_ref(), repo.key(), &new.0, params)?;
            if p.json {
                p.json(&serde_json::json!({ "id": id }));
            } else {
                p.data(id.to_hex());
                p.info(format!("added key slot {}", id.short()));
            }
        }
        KeyCmd::List => {
            let repo = open_repo(g)?;
            let slots = keys::list(repo.backend().as_ref(), &repo.key_slot())?;
            if p.json {
                p.json(&slots);
            } else {
                for s in &slots {
                    let mark = if s.current { "*" } else { " " };
                    match (&s.problem, s.created) {
                        (Some(problem), _) => p.data(format!("{mark} {}  {problem}", s.id.short())),
                        (None, Some(created)) => p.data(format!(
                            "{mark} {}  {}  {}@{}",
                            s.id.short(),
                            created.format("%Y-%m-%d %H:%M:%S"),
                            s.username,
                            s.hostname
                        )),
                        (None, None) => p.data(format!("{mark} {}", s.id.short())),
                    }
                }
            }
        }
        KeyCmd::Remove { id } => {
            // Opened whole, so that a credential that may not delete fails
            // at once, before the slot is looked for.
            let repo = open_repo(g)?;
            duties::probe_repo(&repo, duties::Maintenance::KeyRemove)?;
            let removed = keys::remove(repo.backend().as_ref(), &repo.key_slot(), id)?;
            if p.json {
                p.json(&serde_json::json!({ "removed": removed }));
            } else {
                p.data(removed.to_hex());
                p.info(format!("removed key slot {}", removed.short()));
            }
        }
    }
    Ok(EXIT_OK)
}
