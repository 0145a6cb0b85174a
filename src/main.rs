//! The `cairn` binary: parse the command line, run, map the outcome to an
//! exit code. Everything else lives in the library and `cli/`.
#![allow(clippy::exit, clippy::print_stderr, reason = "the binary's entry point ends the process with its exit code")]

fn main() {
    #[cfg(feature = "failpoints")]
    if let Err(e) = cairn::failpoint::arm_from_env() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let code = cairn::cli::main();
    std::process::exit(code);
}
