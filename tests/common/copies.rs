//! A second repository with its own password, and `cairn copy` into it
//! from the test's repository (tests/copy.rs, tests/copy_resume.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::Env;

pub const OTHER_PASSWORD: &str = "another password for the off-site copy";

/// A second repository beside the test's first, with its own password.
pub struct Dest {
    pub repo: PathBuf,
}

impl Dest {
    /// `cairn init` of a second repository with `init` arguments.
    pub fn new(env: &Env, name: &str, init: &[&str]) -> Dest {
        let d = Dest { repo: env.path(name) };
        let mut args = vec!["init", "--kdf-memory-kib", "19456"];
        args.extend_from_slice(init);
        let out = d.command(env).args(&args).output().unwrap();
        assert!(out.status.success(), "init of {name}: {}", String::from_utf8_lossy(&out.stderr));
        d
    }

    /// cairn on this repository, with its password.
    pub fn command(&self, env: &Env) -> Command {
        let mut c = env.command();
        c.env("CAIRN_REPO", &self.repo).env("CAIRN_PASSWORD", OTHER_PASSWORD);
        c
    }

    pub fn ok(&self, env: &Env, args: &[&str]) -> String {
        let out = self.command(env).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "cairn {args:?} on the destination failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn url(&self) -> &str {
        self.repo.to_str().unwrap()
    }
}

/// `cairn copy --to DEST --json` from the test's repository, the
/// destination's password in `CAIRN_TO_PASSWORD`.
pub fn copy_command(env: &Env, dest: &Dest, extra: &[&str]) -> Command {
    let mut c = env.command();
    c.env("CAIRN_TO_PASSWORD", OTHER_PASSWORD).args(["copy", "--json", "--to", dest.url()]).args(extra);
    c.env_remove("CAIRN_TO_PASSWORD_FILE").env_remove("CAIRN_TO_PASSWORD_COMMAND").env_remove("CAIRN_TO_REPO");
    c
}

pub fn copy(env: &Env, dest: &Dest, extra: &[&str]) -> Value {
    let out = copy_command(env, dest, extra).output().unwrap();
    assert!(
        out.status.success(),
        "copy failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The evidence records of `kind` that an export of the repository
/// `command` opens holds.
pub fn records(env: &Env, mut command: Command, kind: &str) -> Vec<Value> {
    let out_dir = env.path(&format!("export-{}", std::process::id() as u128 * 1000 + rand_suffix()));
    let out = command.args(["evidence", "export", "--out", out_dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let mut found = Vec::new();
    for e in walk(&out_dir) {
        if e.extension().is_some_and(|x| x == "json") {
            let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&e).unwrap()) else { continue };
            if v["kind"] == kind {
                found.push(v);
            }
        }
    }
    found
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1000
}
