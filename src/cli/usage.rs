//! Usage lines that show what the user typed, not what the environment filled in.
//!
//! clap builds the usage line of an error (a missing argument, a conflict)
//! from the arguments present, and counts those filled from the environment
//! (`CAIRN_REPO`, `CAIRN_PASSWORD_FILE`…) as present: `cairn drill` said
//! `Usage: cairn drill --policy <NAME> --repo <REPO> --password-file <PASSWORD_FILE>`.
//! No argument needs the environment to be valid (each one with an `env`
//! is optional), so parsing the same command line again with the
//! environment ignored gives the same error, with the usage line of the
//! command line alone.

use std::ffi::OsString;

use clap::CommandFactory;

/// The command line definition with every environment lookup removed.
fn without_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| a.env(None)).mut_subcommands(without_env)
}

/// `err`, from parsing `args`, with its usage line built without the
/// environment; `err` itself when parsing again gives another error.
pub fn without_env_values(err: clap::Error, args: impl IntoIterator<Item = OsString>) -> clap::Error {
    if !err.use_stderr() {
        return err; // --help and --version
    }
    match without_env(super::Cli::command()).try_get_matches_from(args) {
        Err(again) if again.kind() == err.kind() => again,
        _ => err,
    }
}
