//! The `cairn` binary: parse the command line, run, map the outcome to an
//! exit code. Everything else lives in the library and `cli/`.

fn main() {
    let code = cairn::cli::main();
    std::process::exit(code);
}
