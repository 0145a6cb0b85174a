//! `cairn completion SHELL` and `cairn man [COMMAND]`: shell completions and
//! manual pages generated from the command line definition, on stdout.

use std::io::Write;

use clap::CommandFactory;

use crate::error::{Error, Result};

use super::{Cli, EXIT_OK};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete for
    pub shell: Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// The page of this command (e.g. `restore`, `key`) instead of cairn(1)
    pub command: Option<String>,
}

pub fn completion(a: &CompletionArgs) -> Result<i32> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut out);
    write_stdout(&out)
}

pub fn man(a: &ManArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &a.command {
        None => cmd,
        Some(name) => cmd.find_subcommand(name).cloned().ok_or_else(|| Error::UnknownCommand(name.to_string()))?,
    };
    let mut out = Vec::new();
    let source = format!("cairn {}", env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(page).source(source).render(&mut out).map_err(|e| Error::io("the manual page", e))?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        // `cairn man | head` is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("standard output", e)),
        _ => Ok(EXIT_OK),
    }
}
